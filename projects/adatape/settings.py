"""AdaTape's settings: every tape field of `config.model`, declared once and checked.

`fields.declare(config, AdaTapeSettings, ...)` adds the fields to a model's
config; `fields.build(AdaTapeSettings, config).resolved(...)` gives the checked
settings that the tape bank, the encoder and ATR receive whole.
"""

from __future__ import annotations

import dataclasses

from framework.config import fields
from framework.errors import ConfigError
from projects.adatape import atr, tape_bank


@dataclasses.dataclass(frozen=True)
class AdaTapeSettings:
    """The tape fields, named as their config keys (defaults: the released values)."""

    bank_type: str = "input"  # input | learn
    bank_size: int = 10000  # learn bank entries
    bank_patch_size: int = 8  # image input bank: patch of the finer embedding
    bank_position: str = "none"  # symbol input bank (parity): none | learned
    bank_init: str = "lecun_normal"  # symbol input bank's projection kernel: lecun_normal | zeros
    tape_insert_layer: int = 0  # blocks run before reading the tape
    max_tape_tokens: int = 10  # T
    num_candidates: int = 5  # k; 0: max_tape_tokens // halting_threshold (the release's rule)
    halting_threshold: float = 2.0  # tau
    key_dim: int | None = None  # None: hidden_size // num_heads (see `resolved`)
    step_cost: str = "sum_sq"  # sum_sq (1 - sum w^2) | max (1 - max w)
    query_source: str = "gap"  # gap (mean of the tokens) | token (class token)
    query_update: str = "average"  # average | replace
    query_noise_std: float = 0.0  # training only
    query_noise: str = "per_read"  # per_read (scoring query) | release (once, raw query)
    bank_mask_rate: float = 0.0  # training only
    atr_early_exit: bool = True  # skip the remaining reads once all examples halted
    tape_mlp_dim: int = 0  # GLU MLP on tape tokens; 0: none
    separate_tape_ffn: bool = False  # own FFN for tape tokens after insertion
    ponder_weight: float = 0.01  # the ponder loss is ponder_weight * R

    def __post_init__(self) -> None:
        check_one_of, check_positive = fields.check_one_of, fields.check_positive
        check_one_of("model.bank_type", self.bank_type, tape_bank.BANK_TYPES)
        check_one_of("model.bank_position", self.bank_position, tape_bank.BANK_POSITIONS)
        check_one_of("model.bank_init", self.bank_init, tape_bank.BANK_INITS)
        check_one_of("model.step_cost", self.step_cost, atr.STEP_COSTS)
        check_one_of("model.query_source", self.query_source, atr.QUERY_SOURCES)
        check_one_of("model.query_update", self.query_update, atr.QUERY_UPDATES)
        check_one_of("model.query_noise", self.query_noise, atr.QUERY_NOISES)
        for name in ("max_tape_tokens", "bank_size", "bank_patch_size"):
            check_positive(f"model.{name}", getattr(self, name))
        if self.num_candidates < 0:
            raise ConfigError(
                f"model.num_candidates must be positive (or 0 for max_tape_tokens // "
                f"halting_threshold), got {self.num_candidates}"
            )
        if self.query_noise_std < 0:
            raise ConfigError(f"model.query_noise_std must be >= 0, got {self.query_noise_std}")
        check_positive("model.halting_threshold", self.halting_threshold)
        if self.key_dim is not None:
            check_positive("model.key_dim", self.key_dim)
        if self.tape_insert_layer < 0:
            raise ConfigError(f"model.tape_insert_layer must be >= 0, got {self.tape_insert_layer}")
        if self.tape_mlp_dim < 0:
            raise ConfigError(f"model.tape_mlp_dim must be >= 0, got {self.tape_mlp_dim}")
        if not 0 <= self.bank_mask_rate < 1:
            raise ConfigError(f"model.bank_mask_rate must lie in [0, 1), got {self.bank_mask_rate}")

    def resolved(self, *, hidden_size: int, num_heads: int, num_layers: int) -> AdaTapeSettings:
        """A copy for a model of these sizes: `key_dim` and `num_candidates` set, checked."""
        key_dim = self.key_dim if self.key_dim is not None else hidden_size // num_heads
        num_candidates = self.num_candidates or int(self.max_tape_tokens // self.halting_threshold)
        if num_candidates < 1:
            raise ConfigError(
                f"model.num_candidates=0 takes max_tape_tokens // halting_threshold = "
                f"{self.max_tape_tokens} // {self.halting_threshold} = 0 candidates; set it"
            )
        if not 0 < key_dim <= hidden_size:
            raise ConfigError(f"model.key_dim must lie in [1, {hidden_size}], got {key_dim}")
        if self.tape_insert_layer > num_layers:
            raise ConfigError(
                f"model.tape_insert_layer must lie in [0, {num_layers}], "
                f"got {self.tape_insert_layer}"
            )
        return dataclasses.replace(self, key_dim=key_dim, num_candidates=num_candidates)
