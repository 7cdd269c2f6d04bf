"""Adaptive Tape Reading against a NumPy restatement of the algorithm."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from projects.adatape import atr
from projects.adatape.settings import AdaTapeSettings


def _layer_norm(x: np.ndarray) -> np.ndarray:
    """Flax LayerNorm at init (scale 1, bias 0, eps 1e-6)."""
    x = x.astype(np.float64)
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-6)


def reference_atr(query, bank, *, key_dim, steps, k, tau, cost="sum_sq", update="average"):
    """ATR per example, step by step, in plain NumPy (float64)."""
    batch = query.shape[0]
    bank = np.broadcast_to(bank, (batch,) + bank.shape[-2:])
    out = {
        "indices": np.zeros((batch, steps, k), np.int64),
        "weights": np.zeros((batch, steps, k)),
        "tape": np.zeros((batch, steps, bank.shape[-1])),
        "length": np.zeros(batch, np.int64),
        "ponder": np.zeros(batch),
        "halting": np.zeros(batch),
        "used": np.zeros(bank.shape[:2], bool),
    }
    for b in range(batch):
        tokens = _layer_norm(bank[b])
        q = _layer_norm(query[b])[:key_dim]
        halting = ponder = 0.0
        for t in range(steps):
            if halting >= tau:
                break
            scores = tokens[:, :key_dim] @ q
            scores[out["used"][b]] = -np.inf
            top = np.argsort(-scores, kind="stable")[:k]
            z = scores[top] / np.sqrt(key_dim)
            w = np.exp(z - z.max())
            w /= w.sum()
            ponder += 1 - (w**2).sum() if cost == "sum_sq" else 1 - w.max()
            if halting + w[0] >= tau:
                halting = tau
            else:
                halting += w[0]
            emitted = w @ tokens[top]
            out["indices"][b, t], out["weights"][b, t], out["tape"][b, t] = top, w, emitted
            out["used"][b, top] = True
            out["length"][b] += 1
            q = (q + emitted[:key_dim]) / 2 if update == "average" else emitted[:key_dim]
        out["ponder"][b], out["halting"][b] = ponder, halting
    return out


def _variables(width: int) -> dict:
    """ATR's only parameters: the shared LayerNorm, at its init (what the reference uses)."""
    return {"params": {"norm": {"scale": jnp.ones(width), "bias": jnp.zeros(width)}}}


def run_atr(query, bank, *, train=False, rng=None, bank_valid=None, **settings):
    module = atr.AdaptiveTapeReading(settings=AdaTapeSettings(**settings))
    rngs = {"dropout": rng} if rng is not None else {}
    return module.apply(
        _variables(query.shape[-1]), query, bank, train=train, rngs=rngs, bank_valid=bank_valid
    )


def _mixed_batch(rng: np.random.Generator, batch=12, size=48, width=16):
    """Random bank; queries alternate between random and a copy of one bank entry
    (which makes peaky weights), so tape lengths vary across the batch."""
    bank = rng.normal(size=(batch, size, width)).astype(np.float32)
    query = rng.normal(size=(batch, width)).astype(np.float32)
    query[::2] = 3.0 * bank[np.arange(0, batch, 2), 0]
    return query, bank


SETTINGS = dict(key_dim=8, max_tape_tokens=8, num_candidates=3, halting_threshold=2.0)


@pytest.mark.parametrize(
    "cost,update",
    [("sum_sq", "average"), ("max", "replace")],
    ids=["sum_sq-average", "max-replace"],
)
def test_matches_numpy_reference(cost, update):
    query, bank = _mixed_batch(np.random.default_rng(0))
    got = run_atr(
        jnp.asarray(query), jnp.asarray(bank), step_cost=cost, query_update=update, **SETTINGS
    )
    want = reference_atr(query, bank, key_dim=8, steps=8, k=3, tau=2.0, cost=cost, update=update)
    np.testing.assert_array_equal(np.asarray(got.length), want["length"])
    valid = np.arange(8)[None] < want["length"][:, None]
    np.testing.assert_array_equal(np.asarray(got.valid), valid)
    np.testing.assert_array_equal(np.asarray(got.indices)[valid], want["indices"][valid])
    np.testing.assert_allclose(np.asarray(got.weights), want["weights"], atol=2e-5)
    np.testing.assert_allclose(np.asarray(got.tape), want["tape"], atol=5e-5)
    np.testing.assert_allclose(np.asarray(got.ponder), want["ponder"], atol=5e-5)
    np.testing.assert_allclose(np.asarray(got.halting), want["halting"], atol=1e-5)
    np.testing.assert_array_equal(np.asarray(got.used), want["used"])
    # The batch is built so that lengths and per-example weights differ.
    assert len(set(want["length"].tolist())) > 1
    first = np.asarray(got.weights)[:, 0]
    assert not np.allclose(first[0], first[1], atol=1e-3)


def test_shared_bank_matches_reference():
    rng = np.random.default_rng(1)
    bank = rng.normal(size=(40, 16)).astype(np.float32)
    query = rng.normal(size=(6, 16)).astype(np.float32)
    got = run_atr(jnp.asarray(query), jnp.asarray(bank), **SETTINGS)
    want = reference_atr(query, bank, key_dim=8, steps=8, k=3, tau=2.0)
    np.testing.assert_array_equal(np.asarray(got.length), want["length"])
    np.testing.assert_allclose(np.asarray(got.weights), want["weights"], atol=2e-5)
    np.testing.assert_allclose(np.asarray(got.tape), want["tape"], atol=5e-5)


def test_lengths_used_mask_and_no_rereads():
    query, bank = _mixed_batch(np.random.default_rng(2), batch=16)
    got = run_atr(jnp.asarray(query), jnp.asarray(bank), **SETTINGS)
    length = np.asarray(got.length)
    assert length.min() >= 2 and length.max() <= 8
    used = np.asarray(got.used)
    np.testing.assert_array_equal(used.sum(1), 3 * length)
    indices = np.asarray(got.indices)
    for b in range(len(length)):
        read = indices[b, : length[b]].ravel()
        assert len(set(read.tolist())) == len(read)  # no entry read twice
        assert used[b, read].all()
    # Slots past the length are empty.
    invalid = ~np.asarray(got.valid)
    assert np.all(np.asarray(got.tape)[invalid] == 0)
    assert np.all(np.asarray(got.weights)[invalid] == 0)


def test_early_exit_gives_identical_outputs():
    query, bank = _mixed_batch(np.random.default_rng(3))
    query[:] = 3.0 * bank[:, 0]  # peaky for every example: all halt well before T
    args = (jnp.asarray(query), jnp.asarray(bank))
    settings = dict(SETTINGS, max_tape_tokens=10)
    fast = run_atr(*args, atr_early_exit=True, **settings)
    slow = run_atr(*args, atr_early_exit=False, **settings)
    assert int(fast.length.max()) < 10  # so the early exit did skip steps
    for a, b in zip(jax.tree.leaves(fast), jax.tree.leaves(slow)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_gradients_reach_query_and_bank():
    query, bank = _mixed_batch(np.random.default_rng(4), batch=4)
    module = atr.AdaptiveTapeReading(settings=AdaTapeSettings(**SETTINGS))
    variables = _variables(16)
    probe = jnp.asarray(np.random.default_rng(5).normal(size=(4, 8, 16)), jnp.float32)

    def loss(q, b):
        out = module.apply(variables, q, b, train=False)
        return jnp.sum(out.tape * probe) + out.ponder.sum()

    gq, gb = jax.jit(jax.grad(loss, argnums=(0, 1)))(jnp.asarray(query), jnp.asarray(bank))
    for g in (gq, gb):
        assert np.all(np.isfinite(g)) and np.abs(g).max() > 1e-4
    # Bank entries that were never read get no gradient.
    out = module.apply(variables, query, bank, train=False)
    unread = ~np.asarray(out.used)
    assert np.abs(np.asarray(gb)[unread]).max() == 0.0


def test_training_noise_and_bank_masking():
    query, bank = _mixed_batch(np.random.default_rng(6), batch=8, size=64)
    args = (jnp.asarray(query), jnp.asarray(bank))
    plain = run_atr(*args, **SETTINGS)
    # Evaluation ignores both options, even when an RNG is given.
    both = dict(SETTINGS, query_noise_std=0.5, bank_mask_rate=0.5)
    evaluated = run_atr(*args, train=False, rng=jax.random.key(1), **both)
    np.testing.assert_array_equal(np.asarray(evaluated.tape), np.asarray(plain.tape))
    # In training, each option on its own changes what is read.
    for option in (dict(query_noise_std=0.5), dict(bank_mask_rate=0.5)):
        trained = run_atr(*args, train=True, rng=jax.random.key(1), **SETTINGS, **option)
        assert not np.array_equal(np.asarray(trained.indices), np.asarray(plain.indices))


def test_release_query_noise_is_drawn_once_on_the_raw_query():
    """Noise 'as released' equals noise-free ATR on the raw query plus that noise."""
    query, bank = _mixed_batch(np.random.default_rng(7), batch=8, size=64)
    args = (jnp.asarray(query), jnp.asarray(bank))
    noisy = dict(SETTINGS, query_noise_std=0.5, query_noise="release")
    module = atr.AdaptiveTapeReading(settings=AdaTapeSettings(**noisy))
    got, state = module.apply(
        _variables(16), *args, train=True, rngs={"dropout": jax.random.key(3)},
        mutable=["intermediates"],
    )  # fmt: skip
    (noise,) = state["intermediates"]["query_noise"]
    assert noise.shape == query.shape and 0.3 < float(jnp.std(noise)) < 0.7
    want = run_atr(args[0] + noise, args[1], **SETTINGS)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    per_read = run_atr(*args, train=True, rng=jax.random.key(3), query_noise_std=0.5,
                       **{k: v for k, v in SETTINGS.items()})  # fmt: skip
    assert not np.array_equal(np.asarray(per_read.indices), np.asarray(got.indices))


def test_reads_past_an_exhausted_bank_take_read_entries_at_zero_weight():
    """8 entries, 3 per read: the third read takes the 2 unread ones and one read one."""
    rng = np.random.default_rng(8)
    bank = rng.normal(size=(2, 8, 16)).astype(np.float32)
    query = rng.normal(size=(2, 16)).astype(np.float32)
    settings = dict(SETTINGS, max_tape_tokens=4, halting_threshold=10.0)
    got = run_atr(jnp.asarray(query), jnp.asarray(bank), **settings)
    assert np.asarray(got.length).tolist() == [4, 4]
    assert np.asarray(got.used).all()
    indices, weights = np.asarray(got.indices), np.asarray(got.weights)
    assert np.all(np.isfinite(weights)) and np.all(np.isfinite(np.asarray(got.tape)))
    for b in range(2):
        first_two = set(indices[b, :2].ravel().tolist())
        assert len(first_two) == 6
        third = indices[b, 2]
        fresh = [i not in first_two for i in third]
        assert sum(fresh) == 2  # the two entries left
        np.testing.assert_allclose(weights[b, 2][np.logical_not(fresh)], 0.0, atol=1e-6)
        np.testing.assert_allclose(weights[b, 2].sum(), 1.0, rtol=1e-5)


def test_padding_entries_are_read_only_once_real_ones_run_out():
    query, bank = _mixed_batch(np.random.default_rng(9), batch=4, size=12)
    valid = np.ones((4, 12), bool)
    valid[:, 7:] = False  # 7 real entries: reads 1 and 2 take 6, read 3 the last one
    settings = dict(SETTINGS, max_tape_tokens=3, halting_threshold=10.0)
    got = run_atr(jnp.asarray(query), jnp.asarray(bank), **settings, bank_valid=valid)
    indices, weights = np.asarray(got.indices), np.asarray(got.weights)
    assert np.all(indices[:, :2] < 7)
    for b in range(4):
        seen = set(indices[b, :2].ravel().tolist())
        fresh = np.array([i < 7 and i not in seen for i in indices[b, 2]])
        assert fresh.sum() == 1  # the last real entry; the others are read or padding
        np.testing.assert_allclose(weights[b, 2][~fresh], 0.0, atol=1e-6)
    assert np.all(np.asarray(got.used)[:, :7])
    # All entries valid is what no mask does.
    unmasked = run_atr(jnp.asarray(query), jnp.asarray(bank), **settings)
    all_valid = run_atr(
        jnp.asarray(query), jnp.asarray(bank), **settings, bank_valid=np.ones((4, 12), bool)
    )
    np.testing.assert_array_equal(np.asarray(all_valid.indices), np.asarray(unmasked.indices))


def test_rejects_a_bank_too_small():
    query = jnp.zeros((2, 16))
    with pytest.raises(ValueError, match="cannot supply 3 distinct candidates"):
        run_atr(query, jnp.zeros((2, 2, 16)), **SETTINGS)
