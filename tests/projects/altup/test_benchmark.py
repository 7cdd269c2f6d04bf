"""projects/altup/benchmark.py on tiny models: it trains and reports relative times."""

from __future__ import annotations

import numpy as np

from projects.altup import benchmark
from projects.altup.model import T5AltUpModel


def tiny(variant: str):
    config = T5AltUpModel.default_config()
    config.size = "tiny"
    config.num_layers = 1
    config.altup.variant = variant
    return config


def test_step_times_relative_to_dense():
    configs = {"altup": tiny("altup"), "dense": tiny("none")}
    results = benchmark.step_times(
        configs, batch_size=2, inputs_length=16, targets_length=8, vocab_size=64, steps=2,
        rounds=2,
    )  # fmt: skip
    assert list(results) == ["altup", "dense"]
    assert results["dense"].relative == 1.0
    for r in results.values():
        assert r.step_s > 0 and len(r.rounds_s) == 2
    np.testing.assert_allclose(
        results["altup"].relative, results["altup"].step_s / results["dense"].step_s
    )
    # AltUp K=2 adds the second embedding half, output rows and final-norm width.
    extra = results["altup"].num_params - results["dense"].num_params
    assert extra == 6 * 2 + 64 * (2 * 64 + 1)
    assert "relative" in benchmark.format_table(results)
