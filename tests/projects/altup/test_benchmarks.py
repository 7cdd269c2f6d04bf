"""AltUp's decode benchmark mode: built by `experiment.build_experiment`, timed through the
sharded `decoding.decode_batch` that evaluation uses, cached and uncached alike."""

import jax.numpy as jnp
import numpy as np
import pytest

from framework.errors import ConfigError
from framework.experiments.step_timing import BenchmarkArgs
from framework.models.t5 import decoding
from projects.altup import benchmarks

LENGTH = 6


def test_decode_benchmark_cached_and_uncached_tokens_agree():
    args = BenchmarkArgs(
        size="tiny", batch_size=2, inputs_length=16, vocab_size=64, decode_length=LENGTH
    )
    experiment, params, loops = benchmarks.decode_loops(args)
    assert list(loops) == ["cached", "uncached", "encoder alone"]
    assert experiment.mesh.devices.size == 2  # one row per (fake) device
    cached, uncached = loops["cached"].output, loops["uncached"].output
    assert cached.shape == (2, LENGTH)
    np.testing.assert_array_equal(cached, uncached)
    # The same tokens as one unsharded greedy decode of the experiment's encoder inputs,
    # running to the full length (EOS disabled).
    inputs = jnp.asarray(experiment.example_batch["encoder_input_tokens"])
    assert inputs.shape == (2, 16) and int(inputs.max()) < 64
    reference = decoding.jit_greedy_decode(
        experiment.model.module, params, inputs, max_length=LENGTH, eos_id=-1
    )
    np.testing.assert_array_equal(cached, np.asarray(reference))
    assert loops["encoder alone"].output.tokens.shape == (2, 16)


def test_decode_benchmark_refuses_a_variant_without_a_cache():
    with pytest.raises(ConfigError, match=r"^--variant=sequence: --mode=decode takes dense \|"):
        benchmarks.decode_loops(BenchmarkArgs(size="tiny", variant="sequence"))
