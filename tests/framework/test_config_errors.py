"""Bad input found at config time, in-process: the config file loader, the workdir check,
and the value checks of `schema.resolve` (trainer, optimizer, schedule, model and
dataset classes), each a one-line ConfigError naming the file and line or the key.

The same classes run through the real CLI in `tests/launch/test_bad_input.py`.
"""

from __future__ import annotations

import json
import os

import pytest

from configs.altup import t5 as t5_config
from configs.parity import transformer as parity_config
from framework.config import loader, schema
from framework.data import pipeline
from framework.data.parity import Parity
from framework.data.text import sources
from framework.errors import ConfigError
from framework.models import transformer
from framework.train import workdir as workdir_lib
from tests.launch.test_bad_input import CONFIG_FILES


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("configs")
    for name, text in CONFIG_FILES.items():
        (root / name).write_text(text)
    return root


def load_error(argument: str) -> str:
    with pytest.raises(ConfigError) as e:
        loader.load_config_file(argument)
    message = str(e.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- the config file


def test_good_config_file_loads_locked_with_its_preset():
    config = loader.load_config_file("configs/parity/transformer.py:smoke")
    assert config.num_train_steps == 60 and config.model.hidden_size == 32
    with pytest.raises(AttributeError):
        config.model.hiden_size = 3


def test_missing_empty_and_directory_config_files():
    assert load_error("configs/parity/nope.py") == (
        "--config=configs/parity/nope.py: no such file configs/parity/nope.py"
    )
    assert load_error("").startswith("--config=: give a config file")
    assert "is a directory" in load_error("configs/parity:smoke")


@pytest.mark.parametrize(
    "name,expect",
    [
        ("syntax.py", "syntax.py:4: SyntaxError: "),
        ("raises.py", "raises.py:8: NameError: name 'foo' is not defined"),
        ("imports.py", "imports.py:3: ModuleNotFoundError: No module named 'no_such_module'"),
        ("no_get_config.py", "no_get_config.py: the file defines no get_config(arg) function"),
        ("returns_none.py", "returns_none.py: get_config() returned None (a missing return?)"),
        (
            "misspelt.py",
            "misspelt.py:7: no config field 'hiden_size' (did you mean 'hidden_size'?)",
        ),
        ("wrong_type.py", "wrong_type.py:7: TypeError: Could not override field 'batch_size'"),
        ("unknown_model.py", "unknown_model.py:5: unknown model 'nope'; known: "),
    ],
)
def test_config_file_errors_name_the_file_and_line(config_dir, name, expect):
    message = load_error(str(config_dir / name))
    assert expect in message, message
    assert message.startswith(str(config_dir)) or message.startswith("--config=")


def test_bad_preset_names_the_line_that_rejects_it():
    assert load_error("configs/parity/transformer.py:smok") == (
        "configs/parity/budget.py:16: ValueError: unknown config arg 'smok'; known: smoke"
    )
    assert "unknown config arg 'huge'" in load_error("configs/altup/t5.py:huge")


def test_a_preset_for_a_file_without_arguments(config_dir):
    path = config_dir / "no_arg.py"
    path.write_text("import ml_collections\n\n\ndef get_config():\n    return None\n")
    message = load_error(f"{path}:smoke")
    assert message.startswith(f"{path}: TypeError: get_config() takes 0 positional")


# ---------------------------------------------------------------- the workdir


def test_workdir_check_writes_nothing(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match=r"^--workdir=.*a_file: is a file, not a directory$"):
        workdir_lib.check_workdir(str(a_file))
    with pytest.raises(ConfigError, match="a_file is a file, so no directory can be made"):
        workdir_lib.check_workdir(str(a_file / "run" / "deeper"))
    with pytest.raises(ConfigError, match=r"^--workdir=/proc/x/run: cannot write there"):
        workdir_lib.check_workdir("/proc/x/run")
    with pytest.raises(ConfigError, match="^--workdir is required$"):
        workdir_lib.check_workdir("")
    workdir_lib.check_workdir(str(tmp_path / "new" / "run"))  # can be made: fine, and not made
    workdir_lib.check_workdir(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["a_file"]


# ---------------------------------------------------------------- values


def resolve_error(config, **overrides) -> str:
    for key, value in overrides.items():
        *parents, name = key.split("__")
        node = config
        for parent in parents:
            node = node[parent]
        node[name] = value
    with pytest.raises(ConfigError) as e:
        schema.resolve(config)
    return str(e.value)


PARITY_CASES = [
    ({"lr__base": float("nan")}, "config.lr.base must be a finite number >= 0, got nan"),
    ({"lr__base": float("inf")}, "config.lr.base must be a finite number >= 0, got inf"),
    ({"lr__base": -1.0}, "config.lr.base must be a finite number >= 0, got -1.0"),
    ({"lr__warmup_steps": -5}, "config.lr.warmup_steps must be >= 0"),
    ({"lr__factors": "constant*foo"}, "config.lr.factors: unknown lr factor 'foo'"),
    ({"lr__warmup_steps": 60}, "config.lr: decay ends at step 60, not after warmup_steps=60"),
    ({"optimizer__grad_clip_norm": -1.0}, "config.optimizer.grad_clip_norm must be a finite"),
    ({"optimizer__weight_decay": -0.1}, "config.optimizer.weight_decay must be a finite"),
    ({"optimizer__weight_decay": float("nan")}, "config.optimizer.weight_decay must be a finite"),
    ({"optimizer__name": "adam"}, "config.optimizer.name: unknown optimizer 'adam'"),
    ({"optimizer__b2": 1.5}, "config.optimizer.b2 must lie in [0, 1)"),
    ({"optimizer__weight_decay_mask": "bias"}, "config.optimizer.weight_decay_mask must be"),
    ({"seed": -1}, "config.seed must be an integer in [0, 2**63)"),
    ({"model__loss": "hinge"}, "config.model.loss must be one of ('softmax', 'sigmoid')"),
    ({"model__label_smoothing": 1.0}, "config.model.label_smoothing must lie in [0, 1)"),
    ({"model__pooling": "max"}, "config.model.pooling must be 'gap' or 'token'"),
    ({"model__num_heads": 5}, "config.model.num_heads=5 does not divide config.model.hidden_size"),
    ({"model__hidden_size": 0}, "config.model.hidden_size must be positive, got 0"),
    ({"model__mlp_dim": -1}, "config.model.mlp_dim must be positive"),
    ({"model__dropout_rate": 1.5}, "config.model.dropout_rate must lie in [0, 1), got 1.5"),
    ({"dataset__length": 0}, "config.dataset.length must be positive, got 0"),
    ({"dataset__variant": "x"}, "config.dataset.variant must be one of ('release', 'act')"),
    ({"dataset__encoding": "x"}, "config.dataset.encoding must be one of"),
    ({"dataset__num_eval_examples": 0}, "config.dataset.num_eval_examples must be positive"),
    ({"dataset__min_nonzero": 40}, "config.dataset.min_nonzero, max_nonzero: the nonzero range"),
    ({"dataset__curriculum_steps": -1}, "config.dataset.curriculum_steps must be >= 0, got -1"),
    (
        {"dataset__curriculum_steps": 10, "dataset__curriculum_start_length": 0},
        "config.dataset.curriculum_start_length must lie in [1, 32]",
    ),
    (
        {"dataset__curriculum_steps": 10, "dataset__encoding": "values"},
        "config.dataset.curriculum_steps needs config.dataset.encoding='one_hot'",
    ),
]


@pytest.mark.parametrize("overrides,expect", PARITY_CASES, ids=[str(c[0]) for c in PARITY_CASES])
def test_parity_values_checked_at_config_time(overrides, expect):
    message = resolve_error(parity_config.get_config("smoke"), **overrides)
    assert message.startswith(expect), message


T5_CASES = [
    ({"model__num_heads": 0}, "config.model.num_heads must be positive"),
    ({"model__d_kv": -1}, "config.model.d_kv must be positive"),
    ({"model__dtype": "float8"}, "config.model.dtype must be one of ('float32', 'bfloat16')"),
    ({"model__size": "huge"}, "config.model.size: unknown size 'huge'"),
    ({"model__z_loss": float("nan")}, "config.model.z_loss must be a finite number >= 0"),
    ({"model__altup__k": 0}, "model.altup.k must be positive"),
    ({"model__altup__variant": "x"}, "model.altup.variant must be one of"),
]


@pytest.mark.parametrize("overrides,expect", T5_CASES, ids=[str(c[0]) for c in T5_CASES])
def test_t5_values_checked_at_config_time(overrides, expect):
    message = resolve_error(t5_config.get_config("tiny,altup,data=random"), **overrides)
    assert expect in message, message


def test_span_corruption_values_checked_at_config_time():
    config = t5_config.get_config("tiny,dense,data=c4")
    config.dataset.vocab_path = "spm.model"
    assert resolve_error(config, dataset__noise_density=1.5).startswith(
        "config.dataset.noise_density must lie in (0, 1)"
    )


def test_models_and_datasets_check_on_construction_too():
    config = transformer.TransformerClassifier.default_config()
    config.loss = "hinge"
    with pytest.raises(ConfigError, match="config.model.loss"):
        transformer.TransformerClassifier(config, {"num_classes": 2})
    config = Parity.default_config()
    config.length = 0
    with pytest.raises(ConfigError, match="config.dataset.length"):
        Parity(config, pipeline.HostSplit(4, 4, 0, 1), 0)


def test_good_configs_still_resolve():
    schema.resolve(parity_config.get_config("smoke"))
    schema.resolve(t5_config.get_config("tiny,recycled,data=random"))


# ---------------------------------------------------------------- missing data


def test_unprepared_tfds_text_names_the_command(tmp_path):
    with pytest.raises(ConfigError) as e:
        sources.tfds_token_stream(None, "c4/en:3.1.0", "validation", data_dir=str(tmp_path))
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(
        f"config.dataset.tfds_name='c4/en:3.1.0' is not prepared in {tmp_path}"
    )
    assert "tfds build c4/en:3.1.0 --data_dir=DIR" in message


def test_a_json_config_loads_locked_and_bad_json_is_one_line(tmp_path):
    config = loader.load_config("configs/parity/transformer.py:smoke")
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config.to_dict()))
    again = loader.load_config_file(str(path))
    assert again.to_dict() == json.loads(json.dumps(config.to_dict()))
    with pytest.raises(AttributeError):
        again.no_such_field = 1  # locked, like a config file's config
    (tmp_path / "bad.json").write_text("{not json")
    assert load_error(str(tmp_path / "bad.json")).startswith(
        f"--config={tmp_path / 'bad.json'}: cannot read it as a JSON config: "
    )
    (tmp_path / "list.json").write_text("[1, 2]")
    listed = load_error(str(tmp_path / "list.json"))
    assert listed.endswith("holds a JSON list, not a config object")
    missing = str(tmp_path / "none.json")
    assert load_error(missing).endswith(f"no such file {missing}")


def test_a_table_finds_its_config_from_any_directory(tmp_path, monkeypatch):
    """Tables name configs by their path in the repository; from another directory the
    loader finds them beside the installed `configs` package."""
    monkeypatch.chdir(tmp_path)
    config = loader.load_config("configs/parity/transformer.py:smoke", seed=3)
    assert (config.experiment_name, config.seed) == ("parity_transformer", 3)
    with pytest.raises(ConfigError, match="no such file configs/parity/nope.py"):
        loader.load_config("configs/parity/nope.py")
    with pytest.raises(ConfigError, match="no config field 'sed'"):
        loader.load_config("configs/parity/transformer.py", sed=3)
