"""The mesh, the rules table, sharded train states and gradient accumulation.

Equalities are to float32 tolerance: a sharded matmul sums in another order.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from framework.config import loader, registry, schema
from framework.data import pipeline
from framework.errors import ConfigError
from framework.models import partitioning as pt
from framework.train import experiment as experiment_lib
from framework.train import sharding, trainer

MESHES = {
    "data=2": {"data": 2, "fsdp": 1, "model": 1},
    "fsdp=2": {"data": 1, "fsdp": 2, "model": 1},
    "model=2": {"data": 1, "fsdp": 1, "model": 2},
}


def tiny(model_name: str, dataset_name: str, *, batch_size: int = 8, **fields):
    """A locked config of a tiny model on generated data; `fields` are dotted keys."""
    c = schema.base_config(model_name, dataset_name)
    c.batch_size = batch_size
    c.eval_batch_size = 8
    c.lr.warmup_steps = 1
    c.compute_flops = False
    c.async_checkpointing = False
    for key, value in fields.items():
        loader.set_field(c, key.replace("__", "."), value)
    return c


IMAGES = dict(dataset__image_size=16, dataset__num_classes=4)
MODELS = {
    "vit": lambda: tiny("vit_classifier", "random_images", model__variant="nano/4", **IMAGES),
    "adatape_vit": lambda: tiny("adatape_vit", "random_images", model__variant="nano/4", **IMAGES),
    "uvit": lambda: tiny("uvit", "random_images", model__variant="nano/4", **IMAGES),
    "avit": lambda: tiny("avit", "random_images", model__variant="nano/4", **IMAGES),
    "t5_altup": lambda: tiny(
        "t5_altup",
        "random_seq2seq",
        model__size="tiny",
        dataset__inputs_length=16,
        dataset__targets_length=8,
        dataset__vocab_size=64,
    ),
}


def run_steps(config, mesh, steps: int = 3):
    """`steps` train steps from the initial state on `mesh`; the state on the host."""
    exp = experiment_lib.build_experiment(config, mesh)
    state = exp.init_state()
    step = exp.jit_train_step()
    batches = exp.dataset.train_batches(0)
    for _ in range(steps):
        state = step(state, pipeline.shard_batch(next(batches), exp.mesh))
    return jax.device_get(state)


def assert_close(a, b, rtol=2e-5, atol=1e-5):
    """Leaf by leaf, except attention key biases: softmax ignores a shift shared by all
    keys, so their gradient is exactly zero in theory and rounding noise in practice,
    which Adam's 1 / eps scales up to steps whose sign depends on the order of sums."""
    flat_a, tree_a = jax.tree_util.tree_flatten_with_path(a)
    flat_b, tree_b = jax.tree_util.tree_flatten_with_path(b)
    assert tree_a == tree_b
    for (path, x), (_, y) in zip(flat_a, flat_b):
        if sharding.path_keys(path)[-2:] == ("key", "bias"):
            continue
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=jax.tree_util.keystr(path))


# --- the mesh -------------------------------------------------------------------------


def test_mesh_shape_fills_the_free_axis_and_refuses_what_does_not_fit():
    assert sharding.mesh_shape({"data": -1, "fsdp": 1, "model": 1}, 8) == (8, 1, 1)
    assert sharding.mesh_shape({"data": 1, "fsdp": -1, "model": 2}, 8) == (1, 4, 2)
    assert sharding.mesh_shape({"data": 2, "fsdp": 2, "model": 2}, 8) == (2, 2, 2)
    with pytest.raises(ConfigError, match="needs 4 devices, there are 8"):
        sharding.mesh_shape({"data": 2, "fsdp": 2, "model": 1}, 8)
    with pytest.raises(ConfigError, match="3 does not divide the 8 devices"):
        sharding.mesh_shape({"data": -1, "fsdp": 3, "model": 1}, 8)
    with pytest.raises(ConfigError, match="at most one -1"):
        sharding.mesh_shape({"data": -1, "fsdp": -1, "model": 1}, 8)
    with pytest.raises(ConfigError, match="unknown axis 'tensor'"):
        sharding.mesh_shape({"tensor": 2}, 8)


def test_bad_mesh_or_batch_is_one_line_before_compiling():
    with pytest.raises(ConfigError, match=r"config.mesh: each axis must be a positive size"):
        schema.resolve(tiny("vit_classifier", "random_images", mesh__fsdp=0))
    with pytest.raises(ConfigError, match="fsdp=4 model=1: 4 does not divide the 2 devices"):
        experiment_lib.build_experiment(tiny("vit_classifier", "random_images", mesh__fsdp=4))
    with pytest.raises(ConfigError, match=r"batch_size=5 does not divide over 2 batch shards"):
        config = tiny("vit_classifier", "random_images", batch_size=5, mesh__fsdp=2)
        experiment_lib.build_experiment(config, sharding.make_mesh(config.mesh))
    with pytest.raises(ConfigError, match="in each of 4 micro-batches; use a multiple of 8"):
        config = tiny("vit_classifier", "random_images", batch_size=12, grad_accum_steps=4)
        experiment_lib.build_experiment(config)
    with pytest.raises(ConfigError, match="grad_accum_steps=5 must be positive and divide"):
        schema.resolve(tiny("vit_classifier", "random_images", grad_accum_steps=5))


# --- the rules --------------------------------------------------------------------------


def test_rules_split_kernels_by_fsdp_and_model_and_keep_activations_embed_whole():
    mesh = sharding.make_mesh({"data": 1, "fsdp": 2, "model": 1})
    spec = lambda names, shape: sharding.logical_sharding(names, shape, mesh).spec  # noqa: E731
    assert spec((pt.EMBED, pt.MLP), (8, 16)) == PartitionSpec("fsdp", None)
    # An activation: the batch takes fsdp (data has size 1), so embed stays whole.
    assert spec((pt.BATCH, pt.LENGTH, pt.EMBED), (4, 3, 8)) == PartitionSpec("fsdp", None, None)
    assert spec((pt.EMBED,), (7,)) == PartitionSpec(None)  # 2 does not divide 7: whole
    assert spec(None, (3, 3)) == PartitionSpec()
    mesh = sharding.make_mesh({"data": 1, "fsdp": 1, "model": 2})
    spec = lambda names, shape: sharding.logical_sharding(names, shape, mesh).spec  # noqa: E731
    assert spec((pt.EMBED, pt.HEADS, pt.KV), (8, 4, 2)) == PartitionSpec(None, "model", None)
    assert spec((pt.VOCAB, pt.EMBED), (64, 8)) == PartitionSpec("model", None)
    assert spec((pt.MLP, pt.EMBED), (16, 8)) == PartitionSpec("model", None)


def test_every_logical_name_has_a_rule():
    assert {name for name, _ in sharding.RULES} == set(pt.LOGICAL_AXES)


def _model_and_batch(config):
    config = schema.resolve(config)
    split = pipeline.HostSplit(config.batch_size, config.eval_batch_size)
    data = registry.DATASETS.get(config.dataset_name)(config.dataset, split, config.seed)
    model = registry.MODELS.get(config.model_name)(config.model, data.meta)
    return model, data.example_batch()


EVERY_MODEL = {
    **MODELS,
    "transformer_classifier": lambda: tiny(
        "transformer_classifier", "parity", model__vocab_size=3, dataset__length=8
    ),
    "ut_parity": lambda: tiny("ut_parity", "parity", model__vocab_size=3, dataset__length=8),
    "adatape_parity": lambda: tiny("adatape_parity", "parity", dataset__length=8),
    "t5": lambda: tiny(
        "t5",
        "random_seq2seq",
        model__size="tiny",
        dataset__inputs_length=8,
        dataset__targets_length=4,
        dataset__vocab_size=32,
    ),
}


def test_every_registered_model_is_covered_here():
    registry.import_all()
    assert set(registry.MODELS.names()) == {
        "vit_classifier" if n == "vit" else n for n in EVERY_MODEL
    }


@pytest.mark.parametrize("name", sorted(EVERY_MODEL))
def test_every_parameter_has_a_logical_name_the_rules_map(name):
    model, batch = _model_and_batch(EVERY_MODEL[name]())
    boxed = jax.eval_shape(model.init_boxed, jax.random.key(0), batch)
    axes = sharding.logical_axes(boxed)
    assert axes and sharding.unmapped_axes(axes) == []


def test_optimizer_state_is_sharded_like_its_parameters():
    mesh = sharding.make_mesh({"data": 1, "fsdp": 2, "model": 1})
    for name in ("adamw", "adafactor"):
        config = MODELS["vit"]()
        loader.set_field(config, "optimizer.name", name)
        # Adafactor factors kernels whose two largest axes both have 128 or more.
        loader.set_field(config, "model.hidden_size", 128)
        loader.set_field(config, "model.mlp_dim", 256)
        exp = experiment_lib.build_experiment(config, mesh)
        kernel = exp.abstract_state.params["encoder"]["block_0"]["mlp"]["fc1"]["kernel"]
        assert kernel.sharding.spec == PartitionSpec("fsdp", None)
        specs = {
            tuple(sharding.path_keys(p)): (leaf.shape, leaf.sharding.spec)
            for p, leaf in jax.tree_util.tree_flatten_with_path(exp.abstract_state.opt_state)[0]
        }
        fc1 = {k: v for k, v in specs.items() if k[-4:] == ("block_0", "mlp", "fc1", "kernel")}
        assert fc1, name
        if name == "adamw":  # mu and nu: the kernel's shape and sharding
            assert sorted(fc1.values()) == [((128, 256), PartitionSpec("fsdp", None))] * 2
        else:  # factored: v_row [128] split like the kernel's rows, v_col [256] whole
            shapes = {shape: spec for shape, spec in fc1.values()}
            assert shapes[(128,)] == PartitionSpec("fsdp")
            assert shapes[(256,)] == PartitionSpec(None)


# --- sharded training equals one device ------------------------------------------------


# A-ViT's blocks are ViT's (its halting is elementwise), and UViT's one shared block is
# ViT's, repeated under ACT (halting per token, no reduction across examples): the ViT
# row covers their sharding (and ACT under micro-batches is `ut_parity (ACT)` below).
@pytest.mark.parametrize("name", sorted(set(MODELS) - {"avit", "uvit"}))
def test_three_steps_on_every_mesh_equal_one_device(name):
    one = run_steps(MODELS[name](), sharding.make_mesh(devices=jax.devices()[:1]))
    for mesh_name, mesh_config in MESHES.items():
        got = run_steps(MODELS[name](), sharding.make_mesh(mesh_config))
        try:
            assert_close(got.params, one.params)
            assert_close(got.metric_sums, one.metric_sums, rtol=1e-4)
        except AssertionError as e:
            raise AssertionError(f"{name} on {mesh_name}: {e}") from None


def test_fsdp_holds_half_of_every_sharded_kernel_per_device():
    fsdp = experiment_lib.build_experiment(MODELS["vit"](), sharding.make_mesh(MESHES["fsdp=2"]))
    data = experiment_lib.build_experiment(MODELS["vit"](), sharding.make_mesh(MESHES["data=2"]))
    state = fsdp.init_state()
    flat = jax.tree_util.tree_flatten_with_path(state.params)[0]
    halved = 0
    for path, leaf in flat:
        names = fsdp.param_axes[sharding.path_keys(path)]
        if pt.EMBED in names and leaf.shape[names.index(pt.EMBED)] % 2 == 0:
            dim = names.index(pt.EMBED)
            for shard in leaf.addressable_shards:
                expected = list(leaf.shape)
                expected[dim] //= 2
                assert shard.data.shape == tuple(expected), path
            halved += 1
    assert halved >= 10
    fsdp_bytes = fsdp.compile_train_step()[1]["xla_argument_bytes_per_device"]
    data_bytes = data.compile_train_step()[1]["xla_argument_bytes_per_device"]
    assert 0.45 < fsdp_bytes / data_bytes < 0.6
    memory = fsdp.memory()
    assert memory["mesh_fsdp"] == 2
    assert memory["param_bytes_per_device"] * 2 == pytest.approx(
        data.memory()["param_bytes_per_device"], rel=0.05
    )


# --- gradient accumulation ---------------------------------------------------------------


ACCUM_MODELS = {
    "transformer_classifier": EVERY_MODEL["transformer_classifier"],
    "ut_parity (ACT)": EVERY_MODEL["ut_parity"],
    "adatape_parity": EVERY_MODEL["adatape_parity"],
    "t5": EVERY_MODEL["t5"],
}


def _padded(batch):
    """Padding examples all in micro-batch 0 (rows 0, 4) and, for T5, targets of many
    lengths, so per-micro-batch ratios would differ from the whole batch's."""
    batch = dict(batch)
    mask = np.ones_like(batch["mask"])
    mask[[0, 4]] = 0
    batch["mask"] = mask
    if "decoder_target_tokens" in batch:
        targets = np.array(batch["decoder_target_tokens"])
        for row in range(targets.shape[0]):
            targets[row, 1 + row % targets.shape[1] :] = 0
        batch["decoder_target_tokens"] = targets
    return batch


@pytest.mark.parametrize("name", sorted(ACCUM_MODELS))
def test_micro_batches_give_the_whole_batch_update(name):
    states = {}
    for k in (1, 4):
        config = ACCUM_MODELS[name]()
        loader.set_field(config, "grad_accum_steps", k)
        exp = experiment_lib.build_experiment(config)
        batch = pipeline.shard_batch(_padded(exp.example_batch), exp.mesh)
        states[k] = jax.device_get(exp.jit_train_step()(exp.init_state(), batch))
    assert_close(states[4].params, states[1].params)
    assert_close(states[4].metric_sums, states[1].metric_sums, rtol=1e-5)
    assert states[4].metric_sums["loss"][1] == 6.0 or name == "t5"


# --- bfloat16 ------------------------------------------------------------------------------


def test_bfloat16_vit_trains_and_starts_near_float32(tmp_path):
    losses = {}
    for dtype, steps in (("float32", 2), ("bfloat16", 30)):
        config = MODELS["vit"]()
        for key, value in {
            "model.dtype": dtype,
            "num_train_steps": steps,
            "log_every_steps": 1,
            "eval_every_steps": 0,
            "checkpoint_every_steps": 30,
            "dataset.class_signal": 1.0,
            "lr.base": 3e-3,
        }.items():
            loader.set_field(config, key, value)
        result = trainer.train_and_evaluate(config, str(tmp_path / dtype))
        rows = [r for r in trainer_metrics(tmp_path / dtype) if r["split"] == "train"]
        losses[dtype] = [r["loss"] for r in rows]
        assert result.step == steps
    first32, first16 = losses["float32"][0], losses["bfloat16"][0]
    assert first16 == pytest.approx(first32, rel=2e-2)
    assert np.mean(losses["bfloat16"][-5:]) < 0.7 * losses["bfloat16"][0]


def trainer_metrics(workdir):
    return [json.loads(line) for line in open(workdir / "metrics.jsonl")]


# --- checkpoints across meshes -------------------------------------------------------------


def test_save_on_one_mesh_resume_on_another(tmp_path):
    def config():
        c = MODELS["vit"]()
        for key, value in {
            "num_train_steps": 8,
            "log_every_steps": 2,
            "eval_every_steps": 0,
            "checkpoint_every_steps": 4,
        }.items():
            loader.set_field(c, key, value)
        return c

    straight = trainer.train_and_evaluate(
        config(), str(tmp_path / "straight"), mesh=sharding.make_mesh(MESHES["data=2"])
    )
    for first, second in (("fsdp=2", "data=2"), ("model=2", "one")):
        workdir = str(tmp_path / f"{first}-{second}")
        trainer.train_and_evaluate(
            config(), workdir, mesh=sharding.make_mesh(MESHES[first]), stop_after_step=4
        )
        mesh = (
            sharding.make_mesh(devices=jax.devices()[:1])
            if second == "one"
            else sharding.make_mesh(MESHES[second])
        )
        resumed = trainer.train_and_evaluate(config(), workdir, mesh=mesh)
        assert resumed.step == 8
        leaf = jax.tree.leaves(resumed.params)[0]
        assert leaf.sharding.mesh.shape == mesh.shape
        assert_close(jax.device_get(resumed.params), jax.device_get(straight.params))
        assert resumed.train["loss"] == pytest.approx(straight.train["loss"], rel=1e-4)


def test_memory_is_in_the_log_and_the_info_line(tmp_path, capsys):
    config = MODELS["vit"]()
    loader.set_field(config, "num_train_steps", 2)
    loader.set_field(config, "eval_every_steps", 0)
    trainer.train_and_evaluate(config, str(tmp_path), mesh=sharding.make_mesh(MESHES["fsdp=2"]))
    info = trainer_metrics(tmp_path)[0]
    assert info["split"] == "info" and info["mesh_fsdp"] == 2
    assert info["param_bytes_per_device"] > 0 and info["xla_temp_bytes_per_device"] > 0
    assert "mesh data=1 fsdp=2 model=1 (2 devices); per device: parameters" in (
        capsys.readouterr().out
    )


def test_compute_dtype_reaches_the_matmuls():
    config = MODELS["vit"]()
    loader.set_field(config, "model.dtype", "bfloat16")
    model, batch = _model_and_batch(config)
    params = model.init(jax.random.key(0), batch)
    assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype("float32")}
    hlo = jax.jit(lambda p: model.apply(p, batch, train=False)[0]).lower(params).as_text()
    assert "bf16" in hlo
