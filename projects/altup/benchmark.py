"""Side-by-side train-step times of T5 + AltUp variants, relative to dense.

The paper's claim is about speed at equal quality: AltUp and Recycled-AltUp should cost
about what the dense model of the same layer width costs per step. `step_times` builds
each model, jits one full train step (forward, backward, Adafactor update) on a fixed
random batch, and times all models in one process, interleaved round by round so that
machine noise hits every model alike.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from framework.models.t5 import SIZES
from projects.altup.model import T5AltUpModel


@dataclasses.dataclass
class StepTime:
    """One model's result; `relative` is its step time over the reference's."""

    name: str
    num_params: int
    compile_s: float
    step_s: float
    relative: float
    rounds_s: list[float]


def random_batch(
    batch_size: int, inputs_length: int, targets_length: int, vocab_size: int, seed: int = 0
) -> dict[str, jax.Array]:
    """A full (unpadded) seq2seq batch of random tokens in [1, vocab_size)."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(1, vocab_size, (batch_size, targets_length), dtype=np.int32)
    inputs = np.zeros_like(targets)
    inputs[:, 1:] = targets[:, :-1]
    return {
        "encoder_input_tokens": jnp.asarray(
            rng.integers(1, vocab_size, (batch_size, inputs_length), dtype=np.int32)
        ),
        "decoder_input_tokens": jnp.asarray(inputs),
        "decoder_target_tokens": jnp.asarray(targets),
        "mask": jnp.ones((batch_size,), jnp.float32),
    }


def _train_step(model: T5AltUpModel, tx: optax.GradientTransformation) -> Callable:
    def loss_fn(params, batch, rng):
        outputs, aux = model.apply(params, batch, train=True, rng=rng)
        num, den = model.metrics(outputs, batch)["loss"]
        loss = num.sum() / jnp.maximum(den.sum(), 1.0)
        for value in aux["aux_loss"].values():
            loss = loss + jnp.mean(value)
        return loss

    def step(params, opt_state, batch, rng):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch, rng)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return jax.jit(step, donate_argnums=(0, 1))


def _model_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Accepts a whole experiment config or just its `model` part."""
    return config.model if "model" in config else config


def _is_dense(config: ml_collections.ConfigDict) -> bool:
    return _model_config(config).altup.variant == "none"


def step_times(
    configs: Mapping[str, ml_collections.ConfigDict],
    *,
    batch_size: int = 8,
    inputs_length: int = 512,
    targets_length: int = 114,
    vocab_size: int = 32128,
    steps: int = 5,
    rounds: int = 3,
    reference: str | None = None,
    optimizer: optax.GradientTransformation | None = None,
    seed: int = 0,
) -> dict[str, StepTime]:
    """Times `steps` jitted train steps of every model per round, `rounds` rounds.

    configs: name -> `t5_altup` model config (or an experiment config holding one),
        e.g. T5-Small dense, AltUp K=2 and Recycled-AltUp.
    reference: the name step times are relative to; default the first dense model
        (`altup.variant == 'none'`), else the first.
    optimizer: default Adafactor with T5X's settings at a constant rate of 0.01.
    Returns name -> StepTime, with the median per-step time over rounds.
    """
    if not configs:
        raise ValueError("step_times needs at least one config")
    names = list(configs)
    if reference is None:
        dense = [n for n in names if _is_dense(configs[n])]
        reference = dense[0] if dense else names[0]
    if reference not in configs:
        raise ValueError(f"reference {reference!r} is not one of {names}")
    tx = optimizer or optax.adafactor(0.01, decay_rate=0.8, clipping_threshold=1.0)
    batch = random_batch(batch_size, inputs_length, targets_length, vocab_size, seed)

    runs: dict[str, dict[str, Any]] = {}
    for name in names:
        model = T5AltUpModel(_model_config(configs[name]), {"vocab_size": vocab_size})
        params = jax.jit(model.init)(jax.random.key(seed), batch)
        opt_state = tx.init(params)
        step = _train_step(model, tx)
        start = time.perf_counter()
        compiled = step.lower(params, opt_state, batch, jax.random.key(seed)).compile()
        compile_s = time.perf_counter() - start
        params, opt_state, loss = compiled(params, opt_state, batch, jax.random.key(seed))
        jax.block_until_ready(loss)  # one warm-up step
        runs[name] = {
            "step": compiled,
            "state": (params, opt_state),
            "num_params": sum(x.size for x in jax.tree.leaves(params)),
            "compile_s": compile_s,
            "times": [],
        }

    rng = jax.random.key(seed + 1)
    # Compile the key split now, not inside the first model's first timed round.
    rng, _ = jax.block_until_ready(jax.random.split(rng))
    for _ in range(rounds):
        for name in names:
            run = runs[name]
            params, opt_state = run["state"]
            start = time.perf_counter()
            for _ in range(steps):
                rng, step_rng = jax.random.split(rng)
                params, opt_state, loss = run["step"](params, opt_state, batch, step_rng)
            jax.block_until_ready((params, loss))
            run["times"].append((time.perf_counter() - start) / steps)
            run["state"] = (params, opt_state)

    reference_s = statistics.median(runs[reference]["times"])
    return {
        name: StepTime(
            name=name,
            num_params=run["num_params"],
            compile_s=run["compile_s"],
            step_s=statistics.median(run["times"]),
            relative=statistics.median(run["times"]) / reference_s,
            rounds_s=run["times"],
        )
        for name, run in runs.items()
    }


def t5_small_configs(
    variants: tuple[str, ...] = ("dense", "altup", "recycled", "sequence"), k: int = 2
) -> dict[str, ml_collections.ConfigDict]:
    """T5-Small model configs of the named variants (`dense` = altup.variant 'none')."""
    out = {}
    for variant in variants:
        config = T5AltUpModel.default_config()
        config.size = "small"
        config.altup.variant = "none" if variant == "dense" else variant
        config.altup.k = k
        out[variant] = config
    return out


def widen(config: ml_collections.ConfigDict, factor: int = 2) -> ml_collections.ConfigDict:
    """A copy of a `t5_altup` model config with d_model, d_ff and heads times `factor`.

    d_kv is kept, so attention is `factor` times wider too: every layer is `factor`
    times as wide (the paper's dense baseline with K-times wider layers).
    """
    config = config.copy_and_resolve_references()
    d_model, d_ff, num_heads, _, _ = SIZES[config.size]
    with config.unlocked():
        config.d_model = factor * (config.get("d_model") or d_model)
        config.d_ff = factor * (config.get("d_ff") or d_ff)
        config.num_heads = factor * (config.get("num_heads") or num_heads)
    return config


def format_table(results: Mapping[str, StepTime]) -> str:
    """A plain-text table of the results, one model per line."""
    lines = [f"{'model':<16}{'params':>14}{'step (ms)':>12}{'relative':>10}"]
    for r in results.values():
        lines.append(f"{r.name:<16}{r.num_params:>14,}{r.step_s * 1e3:>12.1f}{r.relative:>10.3f}")
    return "\n".join(lines)
