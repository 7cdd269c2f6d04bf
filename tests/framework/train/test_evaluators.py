"""Evaluators chosen by config: entries and their errors, several evaluators and splits in
one run, and config.json files written before `config.evals` (with `decode.*`)."""

import json
import os

import pytest

from configs.altup import finetune
from framework.config import loader, registry, schema
from framework.data import parity
from framework.errors import ConfigError
from framework.train import evaluators, run_config, trainer
from framework.train import experiment as experiment_lib
from framework.train.evaluators import metrics
from tests.framework.train.test_trainer import read_metrics, tiny_config
from tests.launch import cli

# The decode.* block every config.json held before config.evals.
OLD_DECODE = {"at_eval": False, "method": "greedy", "beam_size": 4, "alpha": 0.6, "max_length": 0}


def test_default_is_one_metrics_evaluator_and_add_eval_checks_entries():
    c = tiny_config()
    assert schema.resolve(c).evals.to_dict() == {
        "metrics": {"type": "metrics", "split": "", "every_steps": 0}
    }
    schema.add_eval(c, "held_out", "metrics", split="test", every_steps=5)
    c.evals.held_out.every_steps = 7  # an entry is a config field like any other
    with pytest.raises(AttributeError):
        c.evals.held_out.beam_size = 2  # and locked: the type's fields only
    resolved = schema.resolve(c)
    assert list(resolved.evals) == ["held_out", "metrics"]
    assert resolved.evals.held_out.to_dict() == {
        "type": "metrics",
        "split": "test",
        "every_steps": 7,
    }
    decoding = schema.eval_entry("decoding", "config.evals.decode", method="beam")
    assert (decoding.method, decoding.beam_size, decoding.alpha) == ("beam", 4, 0.6)


@pytest.mark.parametrize(
    "add,message",
    [
        (("x", "nope"), r"^config\.evals\.x\.type: unknown evaluator 'nope'; known: decoding, "),
        (("x", "decoding", {"beam_sise": 3}), r"^unknown config key config\.evals\.x\.beam_sise "),
        (("x", "decoding", {"method": "topk"}), r"^config\.evals\.x\.method must be greedy or "),
        (("x", "decoding", {"beam_size": "3"}), r"^config\.evals\.x\.beam_size='3': expected an? "),
        (("x", "metrics", {"every_steps": -1}), r"^config\.evals\.x\.every_steps must be >= 0"),
        (("x-y", "metrics"), r"^config\.evals\.x-y: an entry's name must be a Python identifier"),
        (("again", "metrics"), r"^config\.evals\.metrics and config\.evals\.again would write"),
    ],
)
def test_bad_entries_are_one_line_errors_naming_the_key(add, message):
    name, type_name, *fields = add
    with pytest.raises(ConfigError, match=message) as error:
        config = tiny_config()
        schema.add_eval(config, name, type_name, **(fields[0] if fields else {}))
        schema.resolve(config)
        raise AssertionError("no error")
    assert "\n" not in str(error.value)


def test_resolve_checks_entries_built_in_code():
    """`config.evals` set in code (not through add_eval) is checked entry by entry."""
    c = tiny_config()
    with c.unlocked():
        c.evals = {"metrics": {"type": "metrics"}, "odd": {"type": "metrics", "splitt": "a"}}
    with pytest.raises(ConfigError, match=r"^unknown config key config\.evals\.odd\.splitt "):
        schema.resolve(c)
    with c.unlocked():
        c.evals = {"bare": {"split": "a"}}
    with pytest.raises(ConfigError, match=r"^config\.evals\.bare\.type is not set; known: "):
        schema.resolve(c)
    with c.unlocked():
        c.evals = {}
    assert schema.resolve(c).evals.to_dict() == {}  # a run that evaluates nothing


def test_overrides_reach_an_entry_and_a_decode_key_says_where_it_went():
    config = loader.load_config(
        "configs/altup/finetune.py:task=polarity,size=tiny",
        **{"evals.decode.method": "beam", "evals.decode.beam_size": 2},
    )
    assert (config.evals.decode.method, config.evals.decode.beam_size) == ("beam", 2)
    with pytest.raises(ConfigError, match="evals.decode.beam_sise"):
        loader.set_field(config, "evals.decode.beam_sise", 2)
    old = tiny_config()
    with old.unlocked():
        old.decode = OLD_DECODE
    with pytest.raises(ConfigError, match=r"config\.decode is now an evaluator entry: .*add_eval"):
        schema.resolve(old)


class _TwoSplitParity(parity.Parity):
    """Parity with a second split, `head`: the first eval batch only."""

    def eval_batches(self, split=None):
        batches = super().eval_batches()
        return batches if split is None else iter([next(batches)])


def test_two_evaluators_on_two_splits_write_one_eval_row(tmp_path):
    """The default metrics keep their names; the `head` split's carry its entry's name,
    on its own cadence; both equal the metrics computed over those batches directly."""
    registry.DATASETS.register("two_split_parity_for_test")(_TwoSplitParity)
    c = tiny_config(**{"dataset.num_eval_examples": 50, "eval_batch_size": 16})
    with c.unlocked():
        c.dataset_name = "two_split_parity_for_test"
    schema.add_eval(c, "head", "metrics", split="head", every_steps=10)
    result = trainer.train_and_evaluate(c, str(tmp_path))

    rows = [r for r in read_metrics(tmp_path) if r["split"] == "eval"]
    assert [r["step"] for r in rows] == [10, 20]
    assert "accuracy" not in rows[0] and "head/accuracy" in rows[0]
    assert {"accuracy", "loss", "head/accuracy", "head/loss"} <= set(rows[1])
    experiment = experiment_lib.build_experiment(c)
    step = experiment.jit_eval_step()
    dataset, mesh = experiment.dataset, experiment.mesh
    everything = metrics.evaluate(step, result.params, dataset.eval_batches(), mesh)
    head = metrics.evaluate(step, result.params, dataset.eval_batches("head"), mesh)
    for name in ("accuracy", "loss"):
        assert rows[1][name] == pytest.approx(everything.scalars[name], rel=1e-6)
        assert rows[1][f"head/{name}"] == pytest.approx(head.scalars[name], rel=1e-6)
        assert result.eval[f"head/{name}"] == rows[1][f"head/{name}"]
    # Two sets of examples (16 of the 50): their mean losses differ.
    assert everything.scalars["loss"] != pytest.approx(head.scalars["loss"], rel=1e-6)


def test_a_decoding_entry_needs_a_text_task(tmp_path):
    c = tiny_config()
    schema.add_eval(c, "decode", "decoding")
    with pytest.raises(
        ConfigError,
        match=r"^config\.evals\.decode\.type='decoding' needs a text-task dataset .*Parity has",
    ):
        trainer.train_and_evaluate(c, str(tmp_path))
    assert not os.path.exists(tmp_path / "checkpoints")  # refused before training


def _write_old_config(workdir, config):
    """`config.json` as runs wrote it before config.evals: `decode.*`, no `evals`."""
    saved = json.loads(config.to_json_best_effort())
    evals = saved.pop("evals")
    saved["decode"] = dict(OLD_DECODE)
    if "decode" in evals:
        saved["decode"].update(evals["decode"], at_eval=True)
        for key in ("type", "split", "every_steps"):
            del saved["decode"][key]
    with open(os.path.join(workdir, run_config.CONFIG_FILE), "w") as f:
        json.dump(saved, f)
    return saved


def test_an_old_config_json_resumes_and_evaluates(tmp_path):
    trainer.train_and_evaluate(tiny_config(num_train_steps=10), str(tmp_path))
    _write_old_config(str(tmp_path), schema.resolve(tiny_config(num_train_steps=10)))
    result = trainer.train_and_evaluate(tiny_config(), str(tmp_path))  # 20 steps
    assert result.step == 20 and "accuracy" in result.eval
    with open(tmp_path / run_config.CHANGES_FILE) as f:
        changes = [json.loads(line)["changes"] for line in f]
    assert changes == [{"config.num_train_steps": [10, 20]}]  # nothing about decode/evals

    _write_old_config(str(tmp_path), schema.resolve(tiny_config()))
    from launch import evaluate

    with cli.parsed_flags(["evaluate", f"--workdir={tmp_path}"]):
        evaluate.main()
    evaluated = [r for r in read_metrics(tmp_path) if r["split"] == "evaluate"]
    final = [r for r in read_metrics(tmp_path) if r["split"] == "eval"][-1]
    assert evaluated[0]["accuracy"] == pytest.approx(final["accuracy"])


def test_old_decode_at_eval_becomes_the_decoding_entry(tmp_path):
    """A fine-tuning run's old config.json reads as today's fine-tuning config, decoding
    settings included, and resuming with today's config records no change."""
    new = finetune.get_config("task=polarity,size=tiny")
    new.evals.decode.method = "beam"
    new.evals.decode.beam_size = 2
    resolved = schema.resolve(new)
    saved = _write_old_config(str(tmp_path), resolved)
    assert saved["decode"] == {**OLD_DECODE, "at_eval": True, "method": "beam", "beam_size": 2}
    assert schema.resolve(run_config.saved_config(str(tmp_path))) == resolved
    run_config.check_config(resolved, str(tmp_path), resumed_step=6)
    assert not os.path.exists(tmp_path / run_config.CHANGES_FILE)
    with open(tmp_path / run_config.CONFIG_FILE) as f:
        rewritten = json.load(f)
    assert "decode" not in rewritten and rewritten["evals"]["decode"]["method"] == "beam"
    # Without at_eval the decode block is dropped: the default metrics only.
    _write_old_config(str(tmp_path), schema.resolve(tiny_config()))
    assert list(schema.resolve(run_config.saved_config(str(tmp_path))).evals) == ["metrics"]


def test_every_steps_may_change_on_resume_like_eval_every_steps(tmp_path):
    c = tiny_config(num_train_steps=10)
    trainer.train_and_evaluate(c, str(tmp_path))
    longer = tiny_config()
    longer.evals.metrics.every_steps = 5
    result = trainer.train_and_evaluate(longer, str(tmp_path))
    assert result.step == 20
    steps = [r["step"] for r in read_metrics(tmp_path) if r["split"] == "eval"]
    assert steps == [10, 15, 20]


def test_from_config_builds_the_entries_in_name_order():
    c = tiny_config()
    schema.add_eval(c, "a_head", "metrics", split="eval", every_steps=3)
    experiment = experiment_lib.build_experiment(c)
    built = evaluators.from_config(experiment, "/unused")
    assert [(e.name, type(e).__name__, e.prefix) for e in built] == [
        ("a_head", "Metrics", "a_head/"),
        ("metrics", "Metrics", ""),
    ]
    assert [e.every_steps() for e in built] == [3, c.eval_every_steps or 0]
    assert [s for s in range(1, 10) if built[0].due(s, is_last=False)] == [3, 6, 9]
    assert built[1].due(20, is_last=True) and not built[1].due(10, is_last=False)
