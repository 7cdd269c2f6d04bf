"""AdaTape's config fields (declared once, shared by its models) and their checked form."""

from __future__ import annotations

import dataclasses

import ml_collections

from framework.errors import ConfigError
from projects.adatape import atr, tape_bank


@dataclasses.dataclass(frozen=True)
class AdaTapeSettings:
    """Everything about the tape, resolved from `config.model`."""

    bank_type: str
    bank_size: int
    bank_patch_size: int
    bank_position: str
    insert_layer: int
    max_tape_tokens: int
    num_candidates: int
    threshold: float
    key_dim: int
    step_cost: str
    query_source: str
    query_update: str
    query_noise_std: float
    bank_mask_rate: float
    early_exit: bool
    tape_mlp_dim: int
    separate_tape_ffn: bool
    ponder_weight: float


def add_adatape_fields(config: ml_collections.ConfigDict, *, insert_layer: int) -> None:
    """Declares every tape field with its default (the released values where there are)."""
    config.bank_type = "input"  # input | learn
    config.bank_size = 10000  # learn bank entries
    config.bank_patch_size = 8  # image input bank: patch of the finer embedding
    config.bank_position = "none"  # symbol input bank (parity): none | learned
    config.tape_insert_layer = insert_layer  # blocks run before reading the tape
    config.max_tape_tokens = 10  # T
    config.num_candidates = 5  # k
    config.halting_threshold = 2.0  # tau
    config.key_dim = ml_collections.config_dict.placeholder(int)  # None: hidden // heads
    config.step_cost = "sum_sq"  # sum_sq (1 - sum w^2) | max (1 - max w)
    config.query_source = "gap"  # gap | token (class token)
    config.query_update = "average"  # average | replace
    config.query_noise_std = 0.0  # training only
    config.bank_mask_rate = 0.0  # training only
    config.atr_early_exit = True  # skip the remaining reads once all examples halted
    config.tape_mlp_dim = 0  # GLU MLP on tape tokens; 0: none
    config.separate_tape_ffn = False  # own FFN for tape tokens after insertion
    config.ponder_weight = 0.01


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(f"model.{name} must be one of {allowed}, got {value!r}")
    return value


def settings_from_config(
    config: ml_collections.ConfigDict, *, hidden_size: int, num_heads: int, num_layers: int
) -> AdaTapeSettings:
    """Checks the tape fields (one-line errors naming the key) and resolves defaults."""
    c = config
    key_dim = c.key_dim if c.key_dim is not None else hidden_size // num_heads
    if not 0 < key_dim <= hidden_size:
        raise ConfigError(f"model.key_dim must lie in [1, {hidden_size}], got {key_dim}")
    if not 0 <= c.tape_insert_layer <= num_layers:
        raise ConfigError(
            f"model.tape_insert_layer must lie in [0, {num_layers}], got {c.tape_insert_layer}"
        )
    for name in ("max_tape_tokens", "num_candidates", "bank_size", "bank_patch_size"):
        if c[name] < 1:
            raise ConfigError(f"model.{name} must be positive, got {c[name]}")
    if c.halting_threshold <= 0:
        raise ConfigError(f"model.halting_threshold must be positive, got {c.halting_threshold}")
    if not 0 <= c.bank_mask_rate < 1:
        raise ConfigError(f"model.bank_mask_rate must lie in [0, 1), got {c.bank_mask_rate}")
    return AdaTapeSettings(
        bank_type=_one_of("bank_type", c.bank_type, tape_bank.BANK_TYPES),
        bank_size=c.bank_size,
        bank_patch_size=c.bank_patch_size,
        bank_position=_one_of("bank_position", c.bank_position, tape_bank.BANK_POSITIONS),
        insert_layer=c.tape_insert_layer,
        max_tape_tokens=c.max_tape_tokens,
        num_candidates=c.num_candidates,
        threshold=float(c.halting_threshold),
        key_dim=key_dim,
        step_cost=_one_of("step_cost", c.step_cost, atr.STEP_COSTS),
        query_source=_one_of("query_source", c.query_source, ("gap", "token")),
        query_update=_one_of("query_update", c.query_update, atr.QUERY_UPDATES),
        query_noise_std=float(c.query_noise_std),
        bank_mask_rate=float(c.bank_mask_rate),
        early_exit=bool(c.atr_early_exit),
        tape_mlp_dim=c.tape_mlp_dim,
        separate_tape_ffn=bool(c.separate_tape_ffn),
        ponder_weight=float(c.ponder_weight),
    )
