"""configs/altup/t5.py: argument parsing and the configs it builds."""

from __future__ import annotations

import re

import pytest

from configs.altup import t5 as altup_config
from framework.config import schema
from framework.train import trainer  # noqa: F401  (registers the default trainer)


def test_parse_arg_tokens():
    spec = altup_config.parse_arg("large,recycled,k=3,active=same,bf16")
    assert (spec["size"], spec["variant"], spec["k"], spec["active"]) == (
        "large", "recycled", 3, "same",
    )  # fmt: skip
    assert spec["bf16"] and spec["data"] == "c4"
    assert altup_config.parse_arg("tiny,sequence,stride=4")["stride"] == 4
    assert altup_config.parse_arg("tiny")["data"] == altup_config.DEFAULT_TEXT_DIR
    assert altup_config.parse_arg(None)["size"] == "small"
    spec = altup_config.parse_arg("tiny,altup,compute=predicted,readout=sum")
    assert (spec["compute"], spec["readout"]) == ("predicted", "sum")
    defaults = altup_config.parse_arg("tiny")
    assert (defaults["compute"], defaults["readout"]) == ("original", "concat")
    bad_args = {
        "medium": "unknown config arg 'medium'; known: size=tiny|mini|small|base|large|xl, ",
        "k=0": "k=0 must be a positive integer",
        "active=random": "'active=random': active must be one of alternating|same",
        "stride=x": "stride='x' is not an integer",
        "readout=mean": "readout must be one of concat|sum",
        "depth=3": "unknown config arg 'depth=3'",
    }
    for bad, message in bad_args.items():
        with pytest.raises(ValueError, match=re.escape(message)):
            altup_config.parse_arg(bad)


@pytest.mark.parametrize(
    "arg,variant,k,stride",
    [
        ("small,altup,k=2", "altup", 2, 2),
        ("base,recycled", "recycled", 2, 2),
        ("large,dense", "none", 2, 2),
        ("tiny,sequence,stride=3", "sequence", 2, 3),
    ],
)
def test_configs_resolve(arg, variant, k, stride):
    c = schema.resolve(altup_config.get_config(arg))
    assert c.model_name == "t5_altup" and c.dataset_name == "span_corruption"
    assert (c.model.altup.variant, c.model.altup.k, c.model.altup.sequence_stride) == (
        variant, k, stride,
    )  # fmt: skip
    assert c.model.size == arg.split(",")[0]
    assert c.optimizer.name == "adafactor" and c.lr.factors == "constant*rsqrt_decay"
    if c.model.size == "tiny":
        assert c.dataset.source == "text_files" and c.dataset.inputs_length == 64
    else:
        assert c.dataset.source == "tfds" and c.dataset.inputs_length == 512
        assert (c.dataset.targets_length, c.batch_size) == (114, 256)
