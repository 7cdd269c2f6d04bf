"""The shared `:arg` grammar (framework/config/args.py)."""

from __future__ import annotations

import pytest

from framework.config import args

SIZES = ("tiny", "small")


def parse(arg):
    return args.parse_arg(
        arg, choices={"size": SIZES, "mode": ("a", "b")}, size="small", mode="a", k=2,
        rate=0.5, bf16=False, data="",
    )  # fmt: skip


def test_defaults_typed_values_bare_choices_and_flags():
    assert parse(None).to_dict() == {
        "size": "small", "mode": "a", "k": 2, "rate": 0.5, "bf16": False, "data": "",
    }  # fmt: skip
    spec = parse(" tiny , k=3,rate=1e-3,bf16,data=/x/y=z, b")
    assert (spec.size, spec.k, spec.rate, spec.bf16, spec.data, spec.mode) == (
        "tiny", 3, 1e-3, True, "/x/y=z", "b",
    )  # fmt: skip
    assert isinstance(spec.k, int) and isinstance(spec.rate, float)
    assert parse("bf16=false").bf16 is False and parse("size=tiny").size == "tiny"
    assert parse("k=4,k=5").k == 5  # the last one counts, as with flags


@pytest.mark.parametrize(
    "arg, message",
    [
        ("huge", "unknown config arg 'huge'; known: size=tiny|small, mode=a|b, k=<int>, "
         "rate=<float>, bf16, data=<str>"),
        ("depth=3", "unknown config arg 'depth=3'"),
        ("size=huge", "config arg 'size=huge': size must be one of tiny|small"),
        ("k=two", "k='two' is not an integer"),
        ("rate=fast", "rate='fast' is not a number"),
        ("bf16=maybe", "bf16='maybe' is not a boolean"),
        ("k", "unknown config arg 'k'"),  # a non-boolean field needs a value
    ],
)  # fmt: skip
def test_bad_tokens_are_one_line_listing_what_is_known(arg, message):
    with pytest.raises(ValueError) as error:
        parse(arg)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_a_bare_token_in_two_fields_choices_is_ambiguous():
    with pytest.raises(ValueError, match="ambiguous config arg 'a'"):
        args.parse_arg("a", choices={"x": ("a",), "y": ("a", "b")}, x="a", y="b")
    with pytest.raises(TypeError, match="without a default"):
        args.parse_arg("", choices={"x": ("a",)})
