"""Sweep definitions (experiments.hyper) and their expansion into checked, named points."""

import json
import os
import types

import pytest

from framework.config import loader
from framework.errors import ConfigError
from framework.experiments import hyper, sweep_report, sweeps
from framework.launchers import local

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PARITY = os.path.join(ROOT, "configs/adatape/parity.py")


def overrides(points):
    return [p.as_dict for p in points]


def test_product_zip_fixed_chainit():
    lr = hyper.sweep("config.lr.base", [1e-3, 3e-4])
    k = hyper.sweep("config.model.k", [2, 3])
    assert overrides(hyper.product([lr, k])) == [
        {"config.lr.base": 1e-3, "config.model.k": 2},
        {"config.lr.base": 1e-3, "config.model.k": 3},
        {"config.lr.base": 3e-4, "config.model.k": 2},
        {"config.lr.base": 3e-4, "config.model.k": 3},
    ]
    assert overrides(hyper.zip([lr, k])) == [
        {"config.lr.base": 1e-3, "config.model.k": 2},
        {"config.lr.base": 3e-4, "config.model.k": 3},
    ]
    with_fixed = hyper.product([hyper.fixed("config.seed", 7), lr])
    assert overrides(with_fixed) == [
        {"config.seed": 7, "config.lr.base": 1e-3},
        {"config.seed": 7, "config.lr.base": 3e-4},
    ]
    # Fixed values are in the config but not in the name.
    assert [p.swept for p in with_fixed] == [
        (("config.lr.base", 1e-3),),
        (("config.lr.base", 3e-4),),
    ]
    assert len(hyper.chainit([lr, k])) == 4


@pytest.mark.parametrize(
    "build, message",
    [
        (
            lambda: hyper.zip([hyper.sweep("config.a", [1, 2]), hyper.sweep("config.b", [1])]),
            "one length",
        ),
        (
            lambda: hyper.product([hyper.sweep("config.a", [1]), hyper.sweep("config.a", [2])]),
            "config.a is set by more than one",
        ),
        (lambda: hyper.sweep("lr.base", [1]), "must name a config field"),
        (lambda: hyper.sweep("config.a", []), "has no values"),
        (
            lambda: hyper.points(hyper.chainit([hyper.sweep("config.a", [1, 2])] * 2)),
            "sweep points 1 and 3 are the same",
        ),
    ],
)
def test_bad_sweeps_are_one_line_errors(build, message):
    with pytest.raises(ConfigError, match=message) as e:
        build()
    assert "\n" not in str(e.value)


def test_slugs_are_readable_stable_and_unique():
    point = hyper.product([hyper.fixed("config.seed", 1), hyper.sweep("config.lr.base", [1e-3])])[0]
    assert sweeps.slug(point) == "lr.base=0.001"
    two = hyper.Point((("config.model.variant", "a/b"), ("config.model.sizes", (1, 2))))
    assert sweeps.slug(two) == "model.variant=a_b,model.sizes=1_2"
    long = hyper.Point((("config.experiment_name", "x" * 300),))
    name = sweeps.slug(long)
    assert len(name) == sweeps.MAX_SLUG and name == sweeps.slug(long)
    other = hyper.Point((("config.experiment_name", "x" * 299 + "y"),))
    assert sweeps.slug(other) != name


def _expand(get_hyper, arg="smoke", common=None):
    spec = f"{PARITY}:{arg}" if arg else PARITY
    module = types.SimpleNamespace(get_hyper=get_hyper)
    return sweeps.expand(spec, loader.load_config_file(spec), module, "/w", common)


def test_expansion_applies_the_preset_and_names_directories():
    sweep = _expand(loader.load_module(PARITY).get_hyper)
    assert len(sweep.points) == 6
    first = sweep.points[0]
    assert first.slug == "model.halting_threshold=1.0,model.num_candidates=2"
    assert first.workdir == f"/w/{first.slug}"
    assert first.num_train_steps == 60  # the :smoke preset's budget, not the default 5000
    assert sweep.swept_keys == ["config.model.halting_threshold", "config.model.num_candidates"]
    command = sweeps.train_command(sweep, first, python="python")
    assert command == [
        "python", "-m", "launch.train", f"--config={PARITY}:smoke", f"--workdir={first.workdir}",
        "--config.model.halting_threshold=1.0", "--config.model.num_candidates=2",
    ]  # fmt: skip


def test_get_hyper_may_take_the_preset_argument():
    sweep = _expand(lambda h, arg: h.sweep("config.seed", [1] if arg == "smoke" else [1, 2]))
    assert [p.slug for p in sweep.points] == ["seed=1"]


@pytest.mark.parametrize(
    "get_hyper, message",
    [
        (
            lambda h: h.sweep("config.lr.bse", [1.0]),
            r"sweep point 1 of 1 \(lr.bse=1.0\): no config field 'config.lr.bse'",
        ),
        (lambda h: h.sweep("config.modl.x", [1]), r"no config field 'modl' under config"),
        (
            lambda h: h.sweep("config.batch_size", [32, -1]),
            r"sweep point 2 of 2 \(batch_size=-1\): config.batch_size must be positive",
        ),
        (
            lambda h: h.sweep("config.model.bank_init", ["zeros", "ones"]),
            r"sweep point 2 of 2 \(model.bank_init='ones'\): .*bank_init",
        ),
        (lambda h: h.sweep("config.batch_size", ["big"]), r"sweep point 1 of 1 .*batch_size"),
        (lambda h: h.sweep("config.seed", [None]), r"cannot be given on the command line"),
        (lambda h: 1 / 0, r"ZeroDivisionError"),
    ],
)
def test_bad_points_name_the_point(get_hyper, message):
    with pytest.raises(ConfigError, match=message) as e:
        _expand(get_hyper)
    assert "\n" not in str(e.value)


def test_common_overrides_reach_every_point_and_must_not_repeat():
    sweep = _expand(lambda h: h.sweep("config.lr.base", [0.1]), common={"seed": 3})
    assert sweeps.train_command(sweep, sweep.points[0], python="python")[-2:] == [
        "--config.seed=3",
        "--config.lr.base=0.1",
    ]
    assert "Every point: seed=3" in sweep_report.markdown(sweep, sweeps.collect(sweep))
    with pytest.raises(ConfigError, match="also given as --config.seed"):
        _expand(lambda h: h.sweep("config.seed", [1]), common={"seed": 3})


def test_point_status_from_its_workdir(tmp_path):
    sweep = sweeps.expand(
        f"{PARITY}:smoke",
        loader.load_config_file(f"{PARITY}:smoke"),
        types.SimpleNamespace(get_hyper=lambda h: h.sweep("config.seed", [1, 2, 3])),
        str(tmp_path),
    )
    one, two, three = sweep.points
    os.makedirs(one.workdir)
    os.makedirs(two.workdir)
    rows = [
        {"step": 10, "split": "train", "loss": 0.9, "steps_per_sec": 1.0},
        {"step": 20, "split": "train", "loss": 0.8, "steps_per_sec": 4.0},
        {"step": 30, "split": "train", "loss": 0.7, "steps_per_sec": 6.0},
        {"step": 60, "split": "eval", "accuracy": 0.75},
    ]
    with open(os.path.join(one.workdir, "metrics.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    with open(os.path.join(two.workdir, "metrics.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows[:2])
    done, incomplete, not_started = sweeps.collect(sweep)
    assert done["status"] == "done" and done["eval"] == {"accuracy": 0.75}
    assert done["steps_per_sec"] == 5.0  # median after the first (compiling) interval
    assert done["train"] == {"loss": 0.7} and done["step"] == 60
    assert incomplete["status"] == "incomplete" and incomplete["step"] == 20
    assert not_started["status"] == "not started"
    assert sweep_report.main_metric([done, incomplete]) == "eval.accuracy"


def test_device_groups_give_each_process_its_own_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    assert local.device_groups(2) == [
        {"CUDA_VISIBLE_DEVICES": "0,1"},
        {"CUDA_VISIBLE_DEVICES": "2,3"},
    ]
    assert [g["CUDA_VISIBLE_DEVICES"] for g in local.device_groups(3)] == ["0", "1", "2"]
    with pytest.raises(ConfigError, match="--parallel=5 but this host has 4 GPU"):
        local.device_groups(5)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # a CPU host: every process as it is
    monkeypatch.setattr(local.host_env, "on_tpu_host", lambda: False)
    assert local.device_groups(2) == [{}, {}]
    monkeypatch.setattr(local.host_env, "on_tpu_host", lambda: True)
    with pytest.raises(ConfigError, match="TPU host's chips serve one process"):
        local.device_groups(2)


@pytest.mark.parametrize(
    "spec, count, first",
    [
        ("configs/adatape/parity.py", 6, "model.halting_threshold=1.0,model.num_candidates=2"),
        ("configs/altup/t5.py:tiny", 5, "model.altup.variant=none"),
        ("configs/images/fashion_mnist.py:vit", 4, "lr.base=0.0003"),
    ],
)
def test_each_projects_example_sweep_expands(spec, count, first):
    path = os.path.join(ROOT, spec.partition(":")[0])
    full = path + (":" + spec.partition(":")[2] if ":" in spec else "")
    sweep = sweeps.expand(full, loader.load_config_file(full), loader.load_module(path), "/w")
    assert len(sweep.points) == count and sweep.points[0].slug == first
