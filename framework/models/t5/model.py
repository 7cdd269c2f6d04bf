"""The registered `t5` model: teacher-forced sequence-to-sequence metrics and config."""

from __future__ import annotations

import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from framework import errors
from framework.config import fields, registry
from framework.models import base, flops
from framework.models import partitioning as pt
from framework.models.t5.layers import SIZES, T5Dims, dims_from_config
from framework.models.t5.stack import StackAdapter, T5Module

Array = jax.Array


def _sequences_all_correct(
    correct: Array, weights: Array, segment_ids: Array | None
) -> tuple[Array, Array]:
    """Per row: (sequences with every target token right, sequences present)."""
    if segment_ids is None:
        present = (weights.sum(-1) > 0).astype(jnp.float32)
        all_right = jnp.all((correct > 0) | (weights == 0), axis=-1).astype(jnp.float32)
        return all_right * present, present
    # Packed: one sequence per segment id 1..L.
    segments = jax.nn.one_hot(segment_ids, segment_ids.shape[-1] + 1)[..., 1:] * weights[..., None]
    present = (segments.sum(1) > 0).astype(jnp.float32)
    wrong = jnp.einsum("bl,bls->bs", weights * (1.0 - correct), segments) > 0
    return (present * (1.0 - wrong)).sum(-1), present.sum(-1)


def seq2seq_metrics(
    logits: Array,
    targets: Array,
    z_loss: float = 0.0,
    label_smoothing: float = 0.0,
    segment_ids: Array | None = None,
) -> base.MetricPairs:
    """Teacher-forced cross-entropy and accuracies as per-row (sum, count) pairs.

    Target token 0 is padding and counts nowhere, so the trainer's ratio of sums is a
    mean over real target tokens; `sequence_accuracy` counts whole target sequences
    (each packed example of a row separately when `segment_ids` are given).
    `loss` = cross-entropy + z_loss * logsumexp^2 per token (T5X's auxiliary z-loss
    keeps the softmax normaliser near 1). With label smoothing the entropy of the
    smoothed targets is subtracted, so a perfect model scores 0 (as in T5X).
    """
    logits = logits.astype(jnp.float32)
    vocab = logits.shape[-1]
    weights = (targets > 0).astype(jnp.float32)
    log_z = jax.nn.logsumexp(logits, axis=-1)
    log_probs = logits - log_z[..., None]
    if label_smoothing:
        confidence = 1.0 - label_smoothing
        low = label_smoothing / (vocab - 1)
        soft = jax.nn.one_hot(targets, vocab) * (confidence - low) + low
        min_entropy = -(confidence * math.log(confidence) + (vocab - 1) * low * math.log(low))
        cross_entropy = -(soft * log_probs).sum(-1) - min_entropy
    else:
        cross_entropy = -jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    z_term = z_loss * log_z**2
    correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
    num_tokens = weights.sum(-1)
    return {
        "loss": (((cross_entropy + z_term) * weights).sum(-1), num_tokens),
        "cross_entropy": ((cross_entropy * weights).sum(-1), num_tokens),
        "z_loss": ((z_term * weights).sum(-1), num_tokens),
        "accuracy": ((correct * weights).sum(-1), num_tokens),
        "sequence_accuracy": _sequences_all_correct(correct, weights, segment_ids),
    }


def encoder_layer_flops(dims: T5Dims, length: int) -> float:
    """One encoder layer on `length` positions: q, k, v, out and the gated MLP's three
    kernels at every position, self-attention among them."""
    d, inner = dims.d_model, dims.num_heads * dims.d_kv
    kernels = 4 * d * inner + 3 * d * dims.d_ff
    return flops.dense(kernels, length) + flops.attention(length, length, inner)


def decoder_layer_flops(dims: T5Dims, length: int, memory_length: int) -> float:
    """One decoder layer on `length` positions: self-attention (causal, computed whole),
    cross-attention whose keys and values project the `memory_length` encoder
    positions, and the gated MLP."""
    d, inner = dims.d_model, dims.num_heads * dims.d_kv
    on_queries = 4 * d * inner + 2 * d * inner + 3 * d * dims.d_ff  # self, cross q/out, MLP
    return (
        flops.dense(on_queries, length)
        + flops.dense(2 * d * inner, memory_length)
        + flops.attention(length, length, inner)
        + flops.attention(length, memory_length, inner)
    )


@registry.MODELS.register("t5")
class T5Model(base.BaseModel):
    """T5.1.1 trained with teacher forcing on (encoder inputs, decoder targets).

    The vocabulary size is `model.vocab_size` if set (a converted checkpoint's, which
    may be padded past the dataset's vocabulary, never below it), else the dataset's
    `meta['vocab_size']`. Subclasses change the stacks by overriding `adapter()`.
    """

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        config = super().default_config()
        config.size = "small"  # a key of SIZES; the fields below override it
        placeholder = ml_collections.config_dict.placeholder
        config.vocab_size = placeholder(int)
        config.d_model = placeholder(int)
        config.d_ff = placeholder(int)
        config.num_heads = placeholder(int)
        config.d_kv = placeholder(int)
        config.num_layers = placeholder(int)  # both stacks
        config.num_encoder_layers = placeholder(int)
        config.num_decoder_layers = placeholder(int)
        config.dropout_rate = 0.0
        config.relative_attention_num_buckets = 32
        config.relative_attention_max_distance = 128
        # dtype: the computation's, float32 | bfloat16 (parameters, loss, norms and
        # softmax stay float32); remat: a `partitioning.REMAT_POLICIES` name per layer.
        pt.add_precision_fields(config)
        config.z_loss = 1e-4
        config.label_smoothing = 0.0
        return config

    DTYPES = pt.DTYPES
    DIM_FIELDS = (
        "vocab_size",
        "d_model",
        "d_ff",
        "num_heads",
        "d_kv",
        "num_layers",
        "num_encoder_layers",
        "num_decoder_layers",
        "relative_attention_num_buckets",
        "relative_attention_max_distance",
    )

    @classmethod
    def check_config(cls, config: ml_collections.ConfigDict) -> None:
        super().check_config(config)
        if config.size not in SIZES:
            raise errors.ConfigError(
                f"config.model.size: unknown size {config.size!r}; known: {', '.join(SIZES)}"
            )
        for key in cls.DIM_FIELDS:
            if config.get(key) is not None:
                fields.check_positive(f"config.model.{key}", config[key])
        pt.check_precision_fields(config)
        fields.check_rate("config.model.dropout_rate", config.dropout_rate)
        fields.check_rate("config.model.label_smoothing", config.label_smoothing)
        fields.check_non_negative("config.model.z_loss", config.z_loss)

    @property
    def vocab_size(self) -> int:
        if self.config.get("vocab_size") is not None:
            size = int(self.config.vocab_size)
            data = self.dataset_meta.get("vocab_size")
            if data is not None and int(data) > size:
                # Token ids past the embedding table would read NaN rows.
                raise errors.ConfigError(
                    f"config.model.vocab_size={size} is smaller than the dataset's vocabulary "
                    f"({data} ids); use the model's own vocabulary (config.dataset.vocab_path)"
                )
            return size
        if "vocab_size" not in self.dataset_meta:
            raise errors.ConfigError(
                "model.vocab_size is not set and the dataset gives no meta['vocab_size']"
            )
        return int(self.dataset_meta["vocab_size"])

    def dims(self) -> T5Dims:
        return dims_from_config(self.config, self.vocab_size)

    def adapter(self) -> StackAdapter:
        return StackAdapter()

    def build_module(self) -> nn.Module:
        return T5Module(self.dims(), self.adapter())

    def layer_flops(
        self, stack: str, index: int, length: int, cost: Callable[[int], float]
    ) -> float:
        """Forward FLOPs per example of layer `index` of `stack` ('encoder' | 'decoder')
        on a sequence of `length` positions, given `cost(n)`, the d-wide layer's FLOPs
        on n positions. Plain T5 runs every layer on every position; a model whose
        adapter applies its layers otherwise overrides this."""
        del stack, index
        return cost(length)

    def analytical_flops(self, params: Any, batch: base.Batch) -> float:
        """Both stacks (`layer_flops` of each layer) and the output projection over the
        targets (its kernel's shape gives its width); embedding lookups, relative
        position biases and norms are not counted (see `BaseModel.analytical_flops`)."""
        dims = self.dims()
        inputs = batch["encoder_input_tokens"].shape[1]
        targets = batch["decoder_input_tokens"].shape[1]
        total = 0.0
        for i in range(dims.num_encoder_layers):
            total += self.layer_flops("encoder", i, inputs, lambda n: encoder_layer_flops(dims, n))
        for i in range(dims.num_decoder_layers):
            total += self.layer_flops(
                "decoder", i, targets, lambda n: decoder_layer_flops(dims, n, inputs)
            )
        logits = flops.kernel_params(params["decoder"]["logits_dense"])
        return total + flops.dense(logits, targets)

    def module_inputs(self, batch: base.Batch) -> dict[str, Array]:
        names = ["encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens"]
        if "encoder_segment_ids" in batch or "decoder_segment_ids" in batch:
            names += ["encoder_segment_ids", "decoder_segment_ids"]
        return {name: batch[name] for name in names}

    def metrics(self, outputs: Array, batch: base.Batch) -> base.MetricPairs:
        return seq2seq_metrics(
            outputs,
            batch["decoder_target_tokens"],
            z_loss=float(self.config.z_loss),
            label_smoothing=float(self.config.label_smoothing),
            segment_ids=batch.get("decoder_segment_ids"),
        )
