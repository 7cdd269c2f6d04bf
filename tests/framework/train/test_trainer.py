"""The trainer: eval averaging, sharding, exact resume, bad inputs, NaN handling."""

import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs.parity import transformer as parity_config
from framework.config import loader, registry, schema
from framework.data import parity, pipeline
from framework.errors import ConfigError
from framework.train import experiment as experiment_lib
from framework.train import run_record, steps, trainer
from framework.train.evaluators import metrics


def tiny_config(**overrides):
    c = parity_config.get_config("smoke")
    c.num_train_steps = 20
    c.log_every_steps = 5
    c.eval_every_steps = 0
    c.checkpoint_every_steps = 10
    c.compute_flops = False
    c.lr.warmup_steps = 2
    c.async_checkpointing = False
    for key, value in overrides.items():
        loader.set_field(c, key, value)
    return c


def read_metrics(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def restore_params(workdir, step):
    manager = ocp.CheckpointManager(
        os.path.join(workdir, "checkpoints"), item_handlers=ocp.StandardCheckpointHandler()
    )
    return manager.restore(step)["params"]


def test_eval_metrics_count_every_example_once(tmp_path):
    # 50 eval examples in batches of 16: the last batch has 2 real rows and 14 padding.
    c = tiny_config(**{"dataset.num_eval_examples": 50, "eval_batch_size": 16})
    c = schema.resolve(c)
    mesh = experiment_lib.make_mesh()
    split = pipeline.HostSplit(c.batch_size, c.eval_batch_size)
    data = parity.Parity(c.dataset, split, c.seed)
    model = registry.MODELS.get(c.model_name)(c.model, data.meta)
    params = model.init(jax.random.key(1), data.example_batch())
    eval_step = jax.jit(steps.make_eval_step(model))
    got = metrics.evaluate(eval_step, params, data.eval_batches(), mesh).scalars

    batches = list(data.eval_batches())
    assert len(batches) == 4 and batches[-1]["mask"].sum() == 2
    inputs = np.concatenate([b["inputs"][b["mask"] > 0] for b in batches])
    labels = np.concatenate([b["label"][b["mask"] > 0] for b in batches])
    assert len(labels) == 50
    logits = np.asarray(model.apply(params, {"inputs": inputs}, train=False)[0], np.float64)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected_loss = -log_probs[np.arange(50), labels].mean()
    expected_accuracy = (logits.argmax(-1) == labels).mean()
    assert got["loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert got["accuracy"] == pytest.approx(expected_accuracy)


def test_two_device_run_equals_one_device_run(tmp_path):
    assert jax.device_count() == 2
    one = trainer.train_and_evaluate(
        tiny_config(), str(tmp_path / "one"), mesh=experiment_lib.make_mesh(jax.devices()[:1])
    )
    two = trainer.train_and_evaluate(tiny_config(), str(tmp_path / "two"))
    # atol: the attention key bias has an exactly zero gradient (softmax ignores a shift
    # shared by all keys), so its values are rounding noise that Adam's 1/eps scales up
    # to about 1e-6; every other parameter is checked to rtol 2e-5.
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-5), one.params, two.params
    )
    assert one.train["loss"] == pytest.approx(two.train["loss"], rel=1e-5)
    assert one.eval["accuracy"] == pytest.approx(two.eval["accuracy"])


def test_interrupted_run_resumes_exactly(tmp_path, full_run):
    full, full_workdir = full_run
    part = trainer.train_and_evaluate(tiny_config(), str(tmp_path / "part"), stop_after_step=7)
    assert part.preempted and part.step == 7
    stopped = run_record.read(str(tmp_path / "part"))
    assert (stopped["status"], stopped["step"], stopped["num_train_steps"]) == ("stopped", 7, 20)
    resumed = trainer.train_and_evaluate(tiny_config(), str(tmp_path / "part"))
    assert resumed.step == 20 and not resumed.preempted
    done = run_record.read(str(tmp_path / "part"))  # the resumed run's record replaced it
    assert (done["status"], done["step"], done["eval"]) == ("done", 20, resumed.eval)
    jax.tree.map(np.testing.assert_array_equal, full.params, resumed.params)
    # Metric lines, including the window that straddles the interruption, are identical.
    strip = lambda rows: [
        {k: v for k, v in r.items() if not k.endswith("_per_sec")}  # noqa
        for r in rows
        if r["split"] != "info"
    ]
    assert strip(read_metrics(full_workdir)) == strip(read_metrics(tmp_path / "part"))


def test_unknown_config_key():
    c = tiny_config()
    with c.unlocked():
        c.model.hiden_size = 3
    with pytest.raises(ConfigError, match=r"unknown config key config\.model\.'hiden_size'"):
        schema.resolve(c)


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("model_name", "nope", "unknown model 'nope'; known: .*transformer_classifier"),
        ("dataset_name", "nope", "unknown dataset 'nope'; known: .*parity"),
        ("trainer_name", "nope", "unknown trainer 'nope'; known: default"),
    ],
)
def test_unknown_names_list_known_ones(field, value, message):
    c = tiny_config()
    c[field] = value
    with pytest.raises(ConfigError, match=message):
        schema.resolve(c)


def test_batch_size_must_divide_over_devices(tmp_path):
    with pytest.raises(ConfigError, match="batch_size=33 does not divide over 2 batch shards"):
        trainer.train_and_evaluate(tiny_config(batch_size=33), str(tmp_path))
    assert not os.path.exists(tmp_path / "checkpoints")


def test_incompatible_checkpoint_is_refused_and_kept(tmp_path):
    trainer.train_and_evaluate(tiny_config(num_train_steps=10), str(tmp_path))
    before = sorted(os.listdir(tmp_path / "checkpoints"))
    metrics_before = read_metrics(tmp_path)
    with pytest.raises(ConfigError, match="incompatible model: .*shape"):
        trainer.train_and_evaluate(tiny_config(**{"model.hidden_size": 16}), str(tmp_path))
    assert sorted(os.listdir(tmp_path / "checkpoints")) == before
    # launch.evaluate with another model's --config: the same check, its own advice.
    from launch import evaluate
    from tests.launch import cli

    wider = tmp_path / "wider.py"
    wider.write_text(
        "from configs.parity import transformer\n\n\ndef get_config():\n"
        "    c = transformer.get_config('smoke')\n    c.model.hidden_size = 16\n    return c\n"
    )
    argv = ["evaluate", f"--config={wider}", f"--workdir={tmp_path}"]
    with cli.parsed_flags(argv), pytest.raises(ConfigError, match=r"shape .*omit --config\)$"):
        evaluate.main()
    assert sorted(os.listdir(tmp_path / "checkpoints")) == before
    assert read_metrics(tmp_path) == metrics_before


class _PoisonedParity(parity.Parity):
    """Parity whose inputs become NaN from step 13 on."""

    def train_batches(self, start_step):
        for step, batch in enumerate(super().train_batches(start_step), start_step):
            if step >= 13:
                batch = dict(batch, inputs=np.full_like(batch["inputs"], np.nan))
            yield batch


def test_nan_loss_stops_with_step_and_keeps_good_checkpoint(tmp_path):
    registry.DATASETS.register("poisoned_parity_for_test")(_PoisonedParity)
    c = tiny_config(num_train_steps=30)
    c.dataset_name = "poisoned_parity_for_test"
    with pytest.raises(trainer.NonFiniteLossError, match="non-finite at step 14.*step 10"):
        trainer.train_and_evaluate(c, str(tmp_path))
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["10"]
    params = restore_params(tmp_path, 10)
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(params))


def test_mfu_is_logged_on_a_chip_of_the_table(tmp_path, monkeypatch, capsys):
    # The CPU is not in the chip table (no MFU); pretend it is a TPU v4.
    from framework.train import chips

    monkeypatch.setattr(chips, "for_device_kind", lambda kind: chips.get("v4"))
    trainer.train_and_evaluate(tiny_config(num_train_steps=10), str(tmp_path))
    rows = read_metrics(str(tmp_path))
    info = rows[0]
    assert info["split"] == "info" and info["train_flops_per_step"] > 0
    assert info["chip_peak_flops"] == 275e12
    train = [r for r in rows if r["split"] == "train"]
    devices = jax.device_count()
    for row in train:
        expected = info["train_flops_per_step"] * row["steps_per_sec"] / devices / 275e12
        assert row["mfu"] == pytest.approx(expected)
    assert "| MFU " in capsys.readouterr().out
