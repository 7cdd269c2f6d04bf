"""The tfds image builder: (seed, step) batches, process slices, eval padding, resume,
bad data, and every ImageNet config on tfds' mock ImageNet."""

import time

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs.adatape import imagenet as adatape_imagenet
from configs.baselines import avit, u2t, uvit, vit
from framework.config import schema
from framework.data import images, pipeline
from framework.data.pp import registry as pp
from framework.errors import ConfigError, DataError
from framework.train import experiment as experiment_lib
from framework.train import trainer
from tests.launch import cli

MOCK_EXAMPLES = 20


@pytest.fixture
def mock_imagenet():
    with tfds.testing.mock_data(
        num_examples=MOCK_EXAMPLES, policy=tfds.testing.MockPolicy.USE_CODE
    ):
        yield


def runlocal_dataset(config_module=vit, variant="S/16", **dataset_fields):
    c = config_module.get_config(f"{variant},runlocal")
    for key, value in dataset_fields.items():
        c.dataset[key] = value
    return c


def build(config, split=None, seed=0):
    split = split or pipeline.HostSplit(config.batch_size, config.eval_batch_size)
    return images.TfdsImages(config.dataset, split, seed)


def one_device_mesh():
    """Sharding is tested elsewhere; one device compiles these runs faster."""
    return experiment_lib.make_mesh(jax.devices()[:1])


def equal_batches(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_train_batch_is_a_function_of_seed_and_step(mock_imagenet):
    config = runlocal_dataset()  # inception crop, flip, RandAugment, one-hot, mixup
    data = build(config)
    stream = data.train_batches(0)
    first_four = [next(stream) for _ in range(4)]
    assert first_four[0]["inputs"].shape == (8, 32, 32, 3)
    assert first_four[0]["labels"].shape == (8, 1000)
    np.testing.assert_allclose(first_four[0]["labels"].sum(-1), 1.0, rtol=1e-6)
    # Resuming at step 3, and reading with one thread instead of eight, give the same batch.
    assert equal_batches(next(build(config).train_batches(3)), first_four[3])
    config.dataset.num_threads = 1
    assert equal_batches(next(build(config).train_batches(3)), first_four[3])
    # Another step or another seed is another batch.
    assert not np.array_equal(first_four[2]["inputs"], first_four[3]["inputs"])
    other_seed = next(build(config, seed=1).train_batches(3))
    assert not np.array_equal(other_seed["inputs"], first_four[3]["inputs"])


def test_processes_read_disjoint_slices_of_the_global_batch(mock_imagenet):
    config = runlocal_dataset(mixup={"mixup_alpha": 0.0, "cutmix_alpha": 0.0, "switch_prob": 0.5})
    whole = next(build(config).train_batches(2))
    parts = [
        next(build(config, pipeline.HostSplit(8, 8, index, 2)).train_batches(2)) for index in (0, 1)
    ]
    assert all(len(p["label"]) == 4 for p in parts)
    for key in ("inputs", "label", "labels"):
        np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), whole[key])


def test_eval_covers_the_split_once_padded_and_masked(mock_imagenet):
    config = runlocal_dataset()
    batches = list(build(config).eval_batches())  # 20 examples in batches of 8
    assert [b["mask"].sum() for b in batches] == [8, 8, 4]
    assert all(b["inputs"].shape == (8, 32, 32, 3) for b in batches)
    per_process = [
        list(build(config, pipeline.HostSplit(8, 8, i, 2)).eval_batches()) for i in (0, 1)
    ]
    assert len(per_process[0]) == len(per_process[1]) == 3  # every process steps alike
    assert sum(b["mask"].sum() for p in per_process for b in p) == MOCK_EXAMPLES
    assert "labels" not in batches[0]  # eval pp has no one-hot: top-1/top-5 from `label`


def test_eval_of_another_tfds_split(tmp_path):
    """A tiny prepared Fashion-MNIST (5 train, 3 test images): eval on its train split."""
    from framework.data.image_prepare import fashion_mnist
    from tests.launch.test_prepare_images import write_idx

    rng = np.random.default_rng(0)
    labels = {"train": [3, 1, 4, 0, 5], "t10k": [9, 2, 6]}
    for prefix, split_labels in labels.items():
        n = len(split_labels)
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.array(split_labels))
    data_dir = str(tmp_path / "tfds")
    fashion_mnist.prepare_fashion_mnist(data_dir, source_dir=str(tmp_path))
    config = images.TfdsImages.default_config()
    config.update(tfds_name="fashion_mnist", data_dir=data_dir, eval_split="test", num_threads=1)
    data = images.TfdsImages(config, pipeline.HostSplit(2, 2), 0)

    def read(split=None):
        batches = list(data.eval_batches(split) if split else data.eval_batches())
        mask = np.concatenate([b["mask"] for b in batches]).astype(bool)
        return np.concatenate([b["label"] for b in batches])[mask].tolist()

    def stored(split):  # tfds shuffles records when it prepares a data set
        source = images.open_source("fashion_mnist", split, data_dir)
        return [int(source[i]["label"]) for i in range(len(source))]

    assert read() == read("test") == stored("test")  # the configured split, as before
    assert sorted(read()) == sorted(labels["t10k"])
    assert read("train") == stored("train") and sorted(read("train")) == sorted(labels["train"])
    assert read("train[2:]") == stored("train")[2:]  # any tfds split string
    assert data.meta["num_eval_examples"] == 3
    with pytest.raises(ConfigError, match="has no split 'validation'"):
        data.eval_batches(split="validation")


def test_corrupt_image_names_its_record():
    preprocess = pp.parse("decode|value_range(-1, 1)")
    source = [{"image": b"not an image", "label": np.int64(0)}]
    row = images._EvalRow(
        source, preprocess, 0, 1, "my_data/train",
        split=pipeline.HostSplit(1, 1), num_records=1,
    )  # fmt: skip
    with pytest.raises(DataError, match=r"my_data/train\[0\]"):
        row(0)


def test_bad_pp_op_is_a_config_error_before_any_data_is_read():
    config = runlocal_dataset(pp_train="decode|inception_crop(32)|flipp")
    with pytest.raises(ConfigError, match="dataset.pp_train: unknown op 'flipp'"):
        build(config)


def test_missing_data_is_one_line_naming_the_command(tmp_path):
    start = time.perf_counter()
    result = cli.run(
        "launch.train",
        "--config=configs/baselines/vit.py:S/16,runlocal",
        f"--config.dataset.data_dir={tmp_path / 'no_data'}",
        f"--workdir={tmp_path / 'run'}",
    )
    seconds = time.perf_counter() - start
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: dataset 'imagenet2012' is not prepared in ")
    assert "ILSVRC2012_img_train.tar" in last
    assert "python -m launch.prepare_data imagenet2012 --manual_dir=" in last
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()
    assert seconds < 10  # 3 s idle: interpreter and imports (no TensorFlow) included


def test_image_run_resumes_exactly(tmp_path, mock_imagenet):
    def config():
        c = vit.get_config("S/16,runlocal")
        c.num_train_steps, c.checkpoint_every_steps, c.eval_every_steps = 6, 100, 0
        c.async_checkpointing, c.compute_flops = False, False
        return c

    mesh = one_device_mesh()
    straight = trainer.train_and_evaluate(config(), str(tmp_path / "straight"), mesh=mesh)
    part = trainer.train_and_evaluate(
        config(), str(tmp_path / "part"), mesh=mesh, stop_after_step=3
    )
    assert part.preempted and part.step == 3
    resumed = trainer.train_and_evaluate(config(), str(tmp_path / "part"), mesh=mesh)
    assert resumed.step == 6
    jax.tree.map(np.testing.assert_array_equal, straight.params, resumed.params)
    assert resumed.eval == straight.eval


IMAGENET_CONFIGS = {
    "vit": (vit, ("S/16", "Ti/16", "B/32", "B/16")),
    "adatape": (adatape_imagenet, ("S/16", "B/32", "B/16")),
    "uvit": (uvit, ("S/16",)),
    "u2t": (u2t, ("S/16",)),
    "avit": (avit, ("S/16", "Ti/16")),
}


@pytest.mark.parametrize("name", list(IMAGENET_CONFIGS))
def test_imagenet_configs_resolve_with_the_real_data_fields(name):
    module, variants = IMAGENET_CONFIGS[name]
    for variant in variants:  # the released sizes
        full = schema.resolve(module.get_config(variant))
        assert full.dataset_name == "tfds_images" and full.dataset.tfds_name == "imagenet2012"
        assert "inception_crop(224)" in full.dataset.pp_train
        assert "randaug(2, 15)" in full.dataset.pp_train


# Two configs train end to end here (every config resolves above; the UViT, U2T and
# A-ViT models train in tests/projects/baselines).
@pytest.mark.parametrize("name", ["vit", "adatape"])
def test_imagenet_config_trains_and_evaluates_on_mock_imagenet(name, tmp_path, mock_imagenet):
    module, variants = IMAGENET_CONFIGS[name]
    c = module.get_config(f"{variants[0]},runlocal")
    c.compute_flops, c.async_checkpointing = False, False
    result = trainer.train_and_evaluate(c, str(tmp_path), mesh=one_device_mesh())
    assert result.step == c.num_train_steps
    assert np.isfinite(result.train["loss"])
    assert 0.0 <= result.eval["accuracy"] <= result.eval["top5_accuracy"] <= 1.0


def test_one_hot_depth_must_match_the_classes(mock_imagenet):
    config = runlocal_dataset(pp_train="decode|inception_crop(32)|value_range(-1, 1)|onehot(2000)")
    with pytest.raises(
        ConfigError, match=r"makes 2000 one-hot classes but 'imagenet2012' has 1000"
    ):
        build(config).example_batch()


def test_one_hot_too_small_for_a_label_is_a_config_error(mock_imagenet):
    config = runlocal_dataset(pp_train="decode|inception_crop(32)|value_range(-1, 1)|onehot(10)")
    with pytest.raises(ConfigError, match=r"dataset.pp_train on 'imagenet2012': onehot: label \d+"):
        build(config).example_batch()
