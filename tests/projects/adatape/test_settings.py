"""AdaTapeSettings: the only declaration of the tape fields, and its checks."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import pytest

from framework.config import fields
from framework.errors import ConfigError
from projects.adatape import atr, tape_bank
from projects.adatape.parity_model import AdaTapeParity
from projects.adatape.settings import AdaTapeSettings
from projects.adatape.vit_model import AdaTapeViT
from tests.projects import model_testing as mt

FIELDS = [f.name for f in dataclasses.fields(AdaTapeSettings)]


@pytest.mark.parametrize(
    "model_cls,overrides",
    [
        (AdaTapeParity, dict(tape_insert_layer=0, num_candidates=3)),
        (AdaTapeViT, dict(tape_insert_layer=1, bank_patch_size=2)),
    ],
    ids=["parity", "vit"],
)
def test_model_config_holds_the_settings_fields_and_defaults(model_cls, overrides):
    config = model_cls.default_config()
    # Every field is a config key with the dataclass default (or the model's own value).
    expected = dataclasses.asdict(AdaTapeSettings(**overrides))
    assert {name: config[name] for name in FIELDS} == expected
    assert fields.build(AdaTapeSettings, config) == AdaTapeSettings(**overrides)
    # The declared fields are exactly the dataclass fields.
    declared = ml_collections.ConfigDict()
    fields.declare(declared, AdaTapeSettings)
    assert sorted(declared.keys()) == sorted(FIELDS)
    assert config.get_type("key_dim") is int  # a typed placeholder


def test_option_tables_are_the_allowed_values():
    assert tuple(atr.STEP_COSTS) == ("sum_sq", "max")
    for field, allowed in [
        ("step_cost", atr.STEP_COSTS),
        ("query_source", atr.QUERY_SOURCES),
        ("query_update", atr.QUERY_UPDATES),
        ("bank_type", tape_bank.BANK_TYPES),
        ("bank_position", tape_bank.BANK_POSITIONS),
        ("bank_init", tape_bank.BANK_INITS),
        ("query_noise", atr.QUERY_NOISES),
    ]:
        for value in allowed:
            assert getattr(AdaTapeSettings(**{field: value}), field) == value


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("bank_type", "file", r"model.bank_type must be one of \('input', 'learn'\), got 'file'"),
        ("bank_position", "sine", "model.bank_position must be one of"),
        ("bank_init", "ones", "model.bank_init must be one of"),
        ("step_cost", "x", r"model.step_cost must be one of \('sum_sq', 'max'\), got 'x'"),
        ("query_source", "cls", "model.query_source must be one of"),
        ("query_update", "sum", "model.query_update must be one of"),
        ("max_tape_tokens", 0, "model.max_tape_tokens must be positive, got 0"),
        ("num_candidates", -1, "model.num_candidates must be positive"),
        ("bank_size", 0, "model.bank_size must be positive"),
        ("bank_patch_size", 0, "model.bank_patch_size must be positive"),
        ("halting_threshold", 0.0, "model.halting_threshold must be positive"),
        ("key_dim", 0, "model.key_dim must be positive"),
        ("tape_insert_layer", -1, "model.tape_insert_layer must be >= 0"),
        ("tape_mlp_dim", -2, "model.tape_mlp_dim must be >= 0"),
        ("bank_mask_rate", 1.0, r"model.bank_mask_rate must lie in \[0, 1\), got 1.0"),
        ("query_noise", "once", "model.query_noise must be one of"),
        ("query_noise_std", -0.1, "model.query_noise_std must be >= 0, got -0.1"),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_key(field, value, message):
    with pytest.raises(ConfigError, match=message) as error:
        AdaTapeSettings(**{field: value})
    assert "\n" not in str(error.value)


def test_resolved_sets_and_checks_the_context_dependent_fields():
    settings = AdaTapeSettings(tape_insert_layer=2)
    resolved = settings.resolved(hidden_size=64, num_heads=4, num_layers=2)
    assert resolved.key_dim == 16 and settings.key_dim is None
    assert dataclasses.replace(resolved, key_dim=None) == settings
    explicit = AdaTapeSettings(key_dim=8).resolved(hidden_size=64, num_heads=4, num_layers=2)
    assert explicit.key_dim == 8
    with pytest.raises(ConfigError, match=r"model.key_dim must lie in \[1, 64\], got 65"):
        AdaTapeSettings(key_dim=65).resolved(hidden_size=64, num_heads=4, num_layers=2)
    with pytest.raises(ConfigError, match=r"model.key_dim must lie in \[1, 4\], got 0"):
        AdaTapeSettings().resolved(hidden_size=4, num_heads=8, num_layers=2)
    with pytest.raises(ConfigError, match=r"model.tape_insert_layer must lie in \[0, 1\], got 2"):
        settings.resolved(hidden_size=64, num_heads=4, num_layers=1)
    # num_candidates 0: the release's rule, max_tape_tokens // halting_threshold.
    assert resolved.num_candidates == 5  # the default, kept
    release = AdaTapeSettings(num_candidates=0, max_tape_tokens=10, halting_threshold=3.0)
    assert release.resolved(hidden_size=64, num_heads=4, num_layers=2).num_candidates == 3
    with pytest.raises(ConfigError, match="10 // 20.0 = 0 candidates"):
        AdaTapeSettings(num_candidates=0, halting_threshold=20.0).resolved(
            hidden_size=64, num_heads=4, num_layers=2
        )


def test_atr_needs_resolved_settings():
    module = atr.AdaptiveTapeReading(settings=AdaTapeSettings())
    with pytest.raises(ValueError, match="resolved"):
        module.init(jax.random.key(0), jnp.zeros((2, 8)), jnp.zeros((2, 64, 8)), train=False)


@pytest.mark.parametrize(
    "model_name,dataset_name,data,model,message",
    [
        ("adatape_parity", "parity", dict(length=16), dict(step_cost="x"), "model.step_cost"),
        (
            "adatape_parity",
            "parity",
            dict(length=16),
            dict(hidden_size=32, num_layers=2, tape_insert_layer=3),
            "model.tape_insert_layer",
        ),
        (
            "adatape_vit",
            "random_images",
            dict(image_size=16, num_classes=5),
            dict(variant="nano/4", key_dim=10_000),
            "model.key_dim",
        ),
    ],
    ids=["parity-step_cost", "parity-insert_layer", "vit-key_dim"],
)
def test_models_report_bad_overrides(model_name, dataset_name, data, model, message):
    with pytest.raises(ConfigError, match=message):
        mt.build(model_name, dataset_name, dataset=data, **model)
