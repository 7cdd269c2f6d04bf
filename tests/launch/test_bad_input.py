"""Bad input to `python -m launch.train`: one line on stderr, exit status 2, nothing written.

`CASES` is the table of bad inputs tried as a new user would (config files, overrides,
values, workdirs, missing data). The default suite runs the cases marked `cli` (one
per class, about 3 s each); `BAD_INPUT_ALL_CASES=1` runs every case through the
real CLI. The other cases are also checked in-process in
`tests/framework/test_config_errors.py`.
"""

from __future__ import annotations

import dataclasses
import os

import pytest

from tests.launch import cli

PARITY = "--config=configs/parity/transformer.py:smoke"
T5_RANDOM = "--config=configs/altup/t5.py:tiny,dense,data=random"
VIT = "--config=configs/baselines/vit.py:smoke"
ADATAPE = "--config=configs/adatape/parity.py:smoke"
ALL_CASES = os.environ.get("BAD_INPUT_ALL_CASES") == "1"


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]  # `{files}`: the fixture directory; `{workdir}`: a fresh path
    expect: str  # in stderr's last line, after `error: `
    cli: bool = False  # run in the default suite
    workdir: bool = True  # add --workdir={workdir}
    devices: int = 1  # fake CPU devices of the command


def case(name, *args, expect, cli=False, workdir=True, devices=1):
    return Case(name, args, expect, cli, workdir, devices)


CASES = [
    # The config file.
    case("missing_file", "--config=configs/parity/nope.py", expect="configs/parity/nope.py"),
    case("directory", "--config=configs/parity:smoke", expect="is a directory"),
    case("syntax_error", "--config={files}/syntax.py", expect="syntax.py:4: SyntaxError"),
    case(
        "name_error",
        "--config={files}/raises.py",
        expect="raises.py:8: NameError: name 'foo' is not defined",
        cli=True,
    ),
    case("import_error", "--config={files}/imports.py", expect="imports.py:3: ModuleNotFoundError"),
    case("no_get_config", "--config={files}/no_get_config.py", expect="defines no get_config"),
    case("returns_none", "--config={files}/returns_none.py", expect="returned None"),
    case(
        "misspelt_key_in_file",
        "--config={files}/misspelt.py",
        expect="misspelt.py:7: no config field 'hiden_size' (did you mean 'hidden_size'?)",
    ),
    case("wrong_type_in_file", "--config={files}/wrong_type.py", expect="wrong_type.py:7:"),
    case(
        "unknown_model_in_file", "--config={files}/unknown_model.py", expect="unknown model 'nope'"
    ),
    case(
        "bad_preset",
        "--config=configs/parity/transformer.py:smok",
        expect="unknown config arg 'smok'",
    ),
    case("bad_t5_preset", "--config=configs/altup/t5.py:huge", expect="unknown config arg 'huge'"),
    case("empty_config", "--config=", expect="--config"),
    case("no_config", expect="--config is required"),
    # Overrides.
    case(
        "misspelt_override",
        PARITY,
        "--config.model.hiden_size=3",
        expect="--config.model.hiden_size=3: no config field",
        cli=True,
    ),
    case("override_wrong_type", PARITY, "--config.lr.base=abc", expect="lr.base"),
    case("override_unknown_section", PARITY, "--config.nosuch.x=1", expect="nosuch"),
    # Values, checked at config time.
    case("lr_nan", PARITY, "--config.lr.base=nan", expect="config.lr.base", cli=True),
    case("lr_negative", PARITY, "--config.lr.base=-1", expect="config.lr.base"),
    case("lr_inf", PARITY, "--config.lr.base=inf", expect="config.lr.base"),
    case("lr_warmup_negative", PARITY, "--config.lr.warmup_steps=-5", expect="lr.warmup_steps"),
    case(
        "clip_negative",
        PARITY,
        "--config.optimizer.grad_clip_norm=-1",
        expect="config.optimizer.grad_clip_norm",
    ),
    case(
        "weight_decay_negative",
        PARITY,
        "--config.optimizer.weight_decay=-0.1",
        expect="config.optimizer.weight_decay",
    ),
    case("optimizer_unknown", PARITY, "--config.optimizer.name=adam", expect="optimizer.name"),
    case("lr_factor_unknown", PARITY, "--config.lr.factors=constant*foo", expect="'foo'"),
    case("loss_unknown", PARITY, "--config.model.loss=hinge", expect="config.model.loss"),
    case("pooling_unknown", PARITY, "--config.model.pooling=max", expect="model.pooling"),
    case("heads_do_not_divide", PARITY, "--config.model.num_heads=5", expect="model.num_heads"),
    case("hidden_size_zero", PARITY, "--config.model.hidden_size=0", expect="model.hidden_size"),
    case("dropout_above_one", PARITY, "--config.model.dropout_rate=1.5", expect="dropout_rate"),
    case("t5_heads_zero", T5_RANDOM, "--config.model.num_heads=0", expect="model.num_heads"),
    case("t5_dtype_unknown", T5_RANDOM, "--config.model.dtype=float8", expect="model.dtype"),
    case("seed_negative", PARITY, "--config.seed=-1", expect="config.seed"),
    case(
        "batch_does_not_divide_over_devices",
        PARITY,
        "--config.batch_size=33",
        expect="config.batch_size=33 does not divide over 2 batch shards",
        devices=2,
        cli=True,
    ),
    case("vit_patch_does_not_divide", VIT, "--config.model.patch_size=5", expect="patch_size"),
    case("adatape_bank_too_small", ADATAPE, "--config.model.max_tape_tokens=20", expect="bank"),
    case("altup_k_zero", T5_RANDOM, "--config.model.altup.k=0", expect="model.altup.k"),
    case("parity_length_zero", PARITY, "--config.dataset.length=0", expect="dataset.length"),
    case("parity_variant_unknown", PARITY, "--config.dataset.variant=x", expect="dataset.variant"),
    case("parity_encoding_unknown", PARITY, "--config.dataset.encoding=x", expect="encoding"),
    # The workdir and the command line.
    case(
        "workdir_is_file",
        PARITY,
        "--workdir={files}/a_file",
        expect="--workdir={files}/a_file: ",
        workdir=False,
        cli=True,
    ),
    case(
        "workdir_under_file",
        PARITY,
        "--workdir={files}/a_file/run",
        expect="--workdir={files}/a_file/run: ",
        workdir=False,
    ),
    case(
        "workdir_proc",
        PARITY,
        "--workdir=/proc/x/run",
        expect="--workdir=/proc/x/run: ",
        workdir=False,
    ),
    case("workdir_empty", PARITY, "--workdir=", expect="--workdir is required", workdir=False),
    case("stray_argument", "foo", PARITY, expect="unexpected argument", cli=True),
    # Missing data.
    case(
        "text_dir_missing",
        "--config=configs/altup/t5.py:tiny,data={files}/no_such_dir",
        expect="prepare_data shakespeare",
    ),
    case(
        "text_files_missing",
        "--config=configs/altup/t5.py:tiny,data={files}/vocab_only",
        expect="prepare_data shakespeare",
        cli=True,
    ),
    case(
        "c4_not_prepared",
        "--config=configs/altup/t5.py:tiny,data=c4",
        "--config.dataset.vocab_path={files}/vocab_only/spm.model",
        "--config.dataset.data_dir={files}/empty_tfds",
        expect="c4/en",
    ),
    case(
        "images_not_prepared",
        "--config=configs/images/fashion_mnist.py:vit,tiny",
        "--config.dataset.data_dir={files}/empty_tfds",
        expect="prepare_data fashion_mnist",
    ),
]

CONFIG_FILES = {
    "syntax.py": """\
from framework.config import schema


def get_config(arg=None:
    return schema.base_config("transformer_classifier", "parity")
""",
    "raises.py": """\
from framework.config import schema


def get_config(arg=None):
    c = schema.base_config("transformer_classifier", "parity")
    c.batch_size = 32
    c.num_train_steps = 10
    c.lr.base = foo
    return c
""",
    "imports.py": """\
from framework.config import schema

import no_such_module  # noqa


def get_config(arg=None):
    return schema.base_config("transformer_classifier", "parity")
""",
    "no_get_config.py": """\
from framework.config import schema

CONFIG = schema.base_config("transformer_classifier", "parity")
""",
    "returns_none.py": """\
def get_config(arg=None):
    pass
""",
    "misspelt.py": """\
from framework.config import schema


def get_config(arg=None):
    c = schema.base_config("transformer_classifier", "parity")
    c.batch_size = 32
    c.model.hiden_size = 16
    return c
""",
    "wrong_type.py": """\
from framework.config import schema


def get_config(arg=None):
    c = schema.base_config("transformer_classifier", "parity")
    c.num_train_steps = 10
    c.batch_size = "big"
    return c
""",
    "unknown_model.py": """\
from framework.config import schema


def get_config(arg=None):
    return schema.base_config("nope", "parity")
""",
}


def make_files(root: str) -> str:
    """The config files, a plain file, a vocabulary without text, an empty tfds dir."""
    for name, text in CONFIG_FILES.items():
        with open(os.path.join(root, name), "w") as f:
            f.write(text)
    with open(os.path.join(root, "a_file"), "w") as f:
        f.write("not a directory\n")
    os.makedirs(os.path.join(root, "empty_tfds"))
    from framework.data.text import vocabulary

    corpus = os.path.join(root, "corpus.txt")
    words = [a + b + c for a in "bcdfg" for b in "aeiou" for c in "klmnp"]
    with open(corpus, "w") as f:
        for i in range(400):
            f.write(" ".join(words[(i * 7 + j * 3) % len(words)] for j in range(12)) + "\n")
    vocabulary.train_vocabulary(
        os.path.join(root, "vocab_only", "spm.model"), 200, files=[corpus], hard_vocab_limit=False
    )
    return root


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> str:
    return make_files(str(tmp_path_factory.mktemp("bad_input")))


def command_args(c: Case, files: str, workdir: str) -> list[str]:
    args = [a.format(files=files, workdir=workdir) for a in c.args]
    return args + ([f"--workdir={workdir}"] if c.workdir else [])


def snapshot(root: str) -> dict[str, float]:
    """Every path under `root` with its modification time."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            out[path] = os.lstat(path).st_mtime_ns
    return out


@pytest.mark.parametrize(
    "c",
    [
        pytest.param(
            c,
            id=c.name,
            marks=[] if c.cli or ALL_CASES else pytest.mark.skip("BAD_INPUT_ALL_CASES=1 runs it"),
        )
        for c in CASES
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(c, files, tmp_path):
    workdir = str(tmp_path / "run")
    before = snapshot(files)
    result = cli.run(
        "launch.train", *command_args(c, files, workdir), devices=c.devices, timeout=120
    )
    last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == 2, result.stderr[-3000:]
    assert last.startswith("error: "), result.stderr[-3000:]
    assert c.expect.format(files=files) in last, last
    assert not os.path.exists(workdir)
    assert snapshot(files) == before
