"""framework.config.fields: declaring a settings dataclass's fields and building it back."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import ml_collections
import pytest

from framework.config import fields
from framework.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Toy:
    """A settings dataclass of every kind of field the helpers handle."""

    name: str = "a"  # a | b
    count: int = 3
    rate: float = 0.5
    flag: bool = True
    width: int | None = None
    scale: Optional[float] = None
    sizes: tuple[int, ...] = dataclasses.field(default_factory=lambda: (1, 2))
    derived: int = dataclasses.field(default=0, init=False)

    def __post_init__(self) -> None:
        fields.check_one_of("model.name", self.name, ("a", "b"))
        fields.check_positive("model.count", self.count)


def declared(**overrides: Any) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    fields.declare(config, Toy, **overrides)
    return config


def test_declare_adds_every_init_field_with_its_default():
    config = declared()
    assert sorted(config.keys()) == sorted(
        ["name", "count", "rate", "flag", "width", "scale", "sizes"]
    )
    assert (config.name, config.count, config.rate, config.flag) == ("a", 3, 0.5, True)
    assert config.sizes == (1, 2)
    assert config.width is None and config.scale is None


def test_none_defaults_become_typed_placeholders():
    config = declared()
    assert config.get_type("width") is int
    assert config.get_type("scale") is float
    config.width = 7
    assert config.width == 7
    with pytest.raises(TypeError):
        config.width = "wide"
    config.scale = 2  # an int where a float goes is converted, as for any float field
    assert config.scale == 2.0 and isinstance(config.scale, float)
    with pytest.raises(TypeError):
        config.rate = "fast"


def test_overrides_replace_defaults_and_are_checked():
    config = declared(count=5, width=4)
    assert config.count == 5 and config.width == 4
    with pytest.raises(TypeError, match="nonexistent"):
        declared(nonexistent=1)
    with pytest.raises(ConfigError, match="model.count must be positive, got 0"):
        declared(count=0)


def test_declare_refuses_a_key_the_config_already_has():
    config = ml_collections.ConfigDict({"count": 1})
    with pytest.raises(ValueError, match="count"):
        fields.declare(config, Toy)


def test_unknown_types_and_missing_defaults_are_refused():
    @dataclasses.dataclass(frozen=True)
    class Ambiguous:
        value: int | str | None = None

    @dataclasses.dataclass(frozen=True)
    class Untyped:
        value: Any = None

    @dataclasses.dataclass(frozen=True)
    class NoDefault:
        value: int

    for cls, message in [
        (Ambiguous, "one other type"),
        (Untyped, "placeholder"),
        (NoDefault, "no default"),
    ]:
        config = ml_collections.ConfigDict()
        with pytest.raises(TypeError, match=message):
            fields.declare(config, cls)
        assert not config.keys()  # nothing half-declared
    with pytest.raises(TypeError, match="not a dataclass"):
        fields.declare(ml_collections.ConfigDict(), dict)


def test_round_trip_and_other_keys():
    config = declared()
    assert fields.build(Toy, config) == Toy()
    config.other = "not a field"  # a model config holds other fields too
    config.name, config.rate, config.width = "b", 2, 16
    built = fields.build(Toy, config)
    assert built == Toy(name="b", rate=2.0, width=16)
    assert isinstance(built.rate, float)
    assert fields.build(Toy, config, count=9).count == 9
    # Fields the config lacks keep their defaults.
    assert fields.build(Toy, ml_collections.ConfigDict({"count": 4})) == Toy(count=4)
    with pytest.raises(TypeError, match="other"):
        fields.build(Toy, config, other=1)


def test_build_checks_values():
    config = declared()
    config.name = "c"
    with pytest.raises(ConfigError, match=r"model.name must be one of \('a', 'b'\), got 'c'"):
        fields.build(Toy, config)


def test_a_locked_override_flow_works():
    """As in a config file: declared defaults, locked, overridden by key."""
    config = ml_collections.ConfigDict({"model": ml_collections.ConfigDict()})
    fields.declare(config.model, Toy, count=2)
    config.lock()
    config.update_from_flattened_dict({"model.width": 32, "model.name": "b"})
    with pytest.raises(AttributeError):
        config.model.widht = 1
    assert fields.build(Toy, config.model) == Toy(name="b", count=2, width=32)
