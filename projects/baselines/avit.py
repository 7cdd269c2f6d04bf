"""A-ViT (Yin et al., CVPR 2022, "A-ViT: Adaptive Tokens for Efficient Vision Transformer").

A ViT (the framework's stem, class token and head) whose encoder is a stack of distinct
pre-LN blocks with per-token halting, as in the authors' release (NVlabs/A-ViT):

- After block l (1-based), token k's halting score is h_k^l = sigmoid(gamma * t_k^l[0] -
  beta), from the first feature of its new state t_k^l (`halting_gamma` 10,
  `halting_beta` 30 for Tiny, 75 for Small: the release's gate_scale / gate_center).
  The last block forces h = 1.
- The cumulative score c_k^l = sum_{l' <= l} h_k^{l'} (accumulated while the token runs)
  halts the token at the first block N_k where c_k^{N_k} >= 1 - eps (`act_epsilon` 0.01).
  Its remainder is r_k = 1 - c_k^{N_k - 1} and its ponder cost rho_k = N_k + r_k.
- A halted token is out of the computation: later blocks mask it as an attention key
  (the key mask of block l is "still running before block l"), and its state is frozen,
  x <- where(running, block(x), x). The class token halts like any other token, as in the
  release; no guard is needed against a query with no key, since a running query always
  has itself among the keys, and the rows of halted queries (whose outputs are discarded)
  at worst see every key masked, which the attention's finite mask value turns into
  uniform weights rather than NaNs.
- The encoder's output is the release's "mean-field" sum over blocks of each token's
  states weighted like ACT: w^l = h^l before the halting block, r at it, 0 after (the
  weights sum to 1 per token); then the final LayerNorm, class-token pooling and head.

Auxiliary losses, per example: `ponder` = `ponder_weight` (5e-4) * mean_k rho_k, and
`distr_prior` = `distr_prior_weight` (1e-3) * KL(prior || H), where H_l, the halting
distribution over blocks, is the mean over the example's tokens of the halting mass w^l
(normalised to sum 1), clipped to [0.01, 0.99] before the log as in the release, and the
prior is a Gaussian over the 0-based block indices 0..L-1 centred at `prior_mean` with
std `prior_std` (1), normalised to sum 1. `prior_mean` None means round(2/3 * L), i.e. 8
for 12 blocks: the release's target_depth=8 over arange(12). The KL's direction is the
release's (torch's KLDivLoss(log H, prior)). Departures from the release, on purpose:
H is per example and from the halting mass (the release averages the raw scores h of all
tokens, halted or not, over the batch), the prior is normalised to sum 1 (the release
scales it so that its first 8 entries sum to 0.98), and the KL is not divided by the
number of blocks (the release's "batchmean" over a 1-D tensor divides by 12).
Metrics: `ponder_cost` (mean rho), `avit_depth` (mean N, also as a histogram),
`avit_token_fraction` (mean N / L, the fraction of token-blocks computed).

Precision: the blocks compute in `config.model.dtype`; the halting scores (the first
feature cast to float32 before the gate and its sigmoid), the cumulative scores, the
remainders, the halting weights, the mean-field sum and the auxiliary losses are
float32, so which tokens halt where does not depend on the compute dtype beyond the
blocks' own rounding. `config.model.remat` rematerialises each block.

Compute: as in most JAX reimplementations, halting is dense computation with masks, so
the FLOPs and time on accelerators are those of the full ViT (plus the halting
bookkeeping); nothing is gathered away. `analytical_flops` counts that full ViT; the
FLOPs the adaptive depth would save are not accounted here.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from framework.config import fields, registry
from framework.errors import ConfigError
from framework.models import base, classifier, flops, layers, vit
from framework.models import partitioning as pt

Array = jax.Array

PRIOR_CLIP = (0.01, 0.99)  # the release clamps the halting distribution before the log


@dataclasses.dataclass(frozen=True)
class AViTSettings:
    """A-ViT's fields of `config.model`, named as their config keys."""

    halting_gamma: float = 10.0  # h = sigmoid(gamma * t[..., 0] - beta): the scale
    halting_beta: float = 30.0  # ... and the centre (release: 30 for Tiny, 75 for Small)
    act_epsilon: float = 0.01  # a token halts once its cumulative score reaches 1 - eps
    ponder_weight: float = 5e-4  # the ponder loss is ponder_weight * mean over tokens of rho
    distr_prior_weight: float = 1e-3  # weight of KL(prior || halting distribution); 0: off
    prior_mean: float | None = None  # 0-based block index; None: round(2/3 * depth)
    prior_std: float = 1.0  # std of the Gaussian prior over block indices

    def __post_init__(self) -> None:
        fields.check_positive("model.halting_gamma", self.halting_gamma)
        if not 0 < self.act_epsilon < 1:
            raise ConfigError(f"model.act_epsilon must lie in (0, 1), got {self.act_epsilon}")
        for key in ("ponder_weight", "distr_prior_weight"):
            if getattr(self, key) < 0:
                raise ConfigError(f"model.{key} must be >= 0, got {getattr(self, key)}")
        fields.check_positive("model.prior_std", self.prior_std)

    @property
    def threshold(self) -> float:
        """The cumulative halting score at which a token halts."""
        return 1.0 - self.act_epsilon

    def resolved(self, num_layers: int) -> AViTSettings:
        """A copy with `prior_mean` set (None: round(2/3 * num_layers)) and checked to
        lie among the block indices 0..num_layers-1."""
        mean = self.prior_mean
        if mean is None:
            mean = float(round(2 * num_layers / 3))
        if not 0 <= mean <= num_layers - 1:
            raise ConfigError(
                f"model.prior_mean must lie in [0, {num_layers - 1}] (0-based block index), "
                f"got {mean}"
            )
        return dataclasses.replace(self, prior_mean=float(mean))


@flax.struct.dataclass
class AViTOutput:
    """Per-block values have shape [L, B, T] (blocks, examples, tokens); all float32 but
    `output` (the blocks' dtype) and `running` (bool)."""

    output: Array  # [B, T, D] the mean-field output sum_l w^l * t^l
    halting: Array  # [L, B, T] h^l from each block's output (1 at the last block)
    cumulative: Array  # [L, B, T] c^l, accumulated while the token runs, frozen after
    weights: Array  # [L, B, T] w^l: h^l before halting, r at it, 0 after
    running: Array  # [L, B, T] bool: whether block l computed the token (its key mask)
    updates: Array  # [B, T] N, the blocks a token went through
    remainder: Array  # [B, T] r = 1 - c^{N-1}
    ponder: Array  # [B, T] rho = N + r


def masked_block_update(block: nn.Module, x: Array, running: Array, *, train: bool) -> Array:
    """One A-ViT block: running tokens attend to the running tokens only (the others are
    masked as keys) and are updated; halted tokens keep their state. x [B, T, D],
    running [B, T] bool."""
    y = block(x, running, train=train)
    return pt.constrain_tokens(jnp.where(running[..., None], y, x))


class AdaptiveTokens(nn.Module):
    """Runs `blocks` (called as `block(x, key_valid, train=...)`) with per-token halting;
    returns an `AViTOutput`. `settings` need not be resolved (the prior is not used here).

    With the `intermediates` collection mutable, the state after every block and its
    halting scores are sown there as `states` and `halting` (tuples with one [B, T, D],
    resp. [B, T], per block), and the blocks each token went through as `updates` (a
    1-tuple of [B, T]), e.g. to check the halting of a whole model.

    `x` is in the blocks' compute dtype; the halting bookkeeping is float32.
    """

    blocks: Sequence[nn.Module]
    settings: AViTSettings

    @nn.compact
    def __call__(self, x: Array, *, train: bool) -> AViTOutput:
        s = self.settings
        depth = len(self.blocks)
        shape = x.shape[:2]
        running = jnp.ones(shape, bool)
        cumulative = jnp.zeros(shape, jnp.float32)
        remainder = jnp.zeros(shape, jnp.float32)
        updates = jnp.zeros(shape, jnp.float32)
        output = jnp.zeros(x.shape, jnp.float32)
        per_block: dict[str, list[Array]] = {k: [] for k in ("h", "c", "w", "running")}
        for i, block in enumerate(self.blocks):
            x = masked_block_update(block, x, running, train=train)
            self.sow("intermediates", "states", x)
            if i == depth - 1:
                h = jnp.ones(shape, jnp.float32)
                halts_now = running
            else:
                t = x[..., 0].astype(jnp.float32)
                h = nn.sigmoid(s.halting_gamma * t - s.halting_beta)
                halts_now = running & (cumulative + h >= s.threshold)
            still = running & ~halts_now
            w = jnp.where(still, h, jnp.where(halts_now, 1.0 - cumulative, 0.0))
            remainder = jnp.where(halts_now, 1.0 - cumulative, remainder)
            updates = updates + running.astype(jnp.float32)
            output = output + w[..., None] * x.astype(jnp.float32)
            per_block["running"].append(running)
            cumulative = jnp.where(running, cumulative + h, cumulative)
            running = still
            self.sow("intermediates", "halting", h)
            per_block["h"].append(h)
            per_block["c"].append(cumulative)
            per_block["w"].append(w)
        self.sow("intermediates", "updates", updates)
        return AViTOutput(
            output=pt.constrain_tokens(output.astype(x.dtype)),
            halting=jnp.stack(per_block["h"]),
            cumulative=jnp.stack(per_block["c"]),
            weights=jnp.stack(per_block["w"]),
            running=jnp.stack(per_block["running"]),
            updates=updates,
            remainder=remainder,
            ponder=updates + remainder,
        )


def gaussian_prior(depth: int, mean: float, std: float) -> np.ndarray:
    """[depth] float64: a Gaussian over block indices 0..depth-1, normalised to sum 1."""
    logits = -0.5 * ((np.arange(depth, dtype=np.float64) - mean) / std) ** 2
    p = np.exp(logits - logits.max())
    return p / p.sum()


def halting_distribution(weights: Array) -> Array:
    """[L, B, T] halting mass -> [B, L]: per example, the mean over tokens, normalised."""
    q = weights.mean(-1).T
    return q / jnp.maximum(q.sum(-1, keepdims=True), 1e-9)


def distribution_prior_kl(weights: Array, prior: np.ndarray) -> Array:
    """[B] KL(prior || H) with H = `halting_distribution(weights)` clipped to PRIOR_CLIP."""
    q = jnp.clip(halting_distribution(weights), *PRIOR_CLIP)
    prior = np.asarray(prior, np.float64)
    neg_entropy = float(np.sum(prior[prior > 0] * np.log(prior[prior > 0])))
    return neg_entropy - jnp.log(q) @ jnp.asarray(prior, q.dtype)


class AViTEncoder(layers.BlockFields, kw_only=True):
    """`num_layers` distinct blocks with per-token halting, then LayerNorm;
    [B, T, D] -> [B, T, D]. `settings` resolved. Sows the auxiliary losses and metrics.
    The blocks compute in `dtype` and are rematerialised by `remat`."""

    num_layers: int
    settings: AViTSettings
    remat: str = "none"  # a `partitioning.REMAT_POLICIES` name, for each block

    @nn.compact
    def __call__(self, x: Array, *, train: bool) -> Array:
        s = self.settings
        if s.prior_mean is None:
            raise ValueError("AViTEncoder needs resolved settings (prior_mean None)")
        block_cls = pt.remat(layers.EncoderBlock, self.remat)
        blocks = tuple(
            block_cls(**layers.block_kwargs(self), name=f"block_{i}")
            for i in range(self.num_layers)
        )
        x = pt.constrain_tokens(x.astype(self.dtype))
        result = AdaptiveTokens(blocks=blocks, settings=s, name="act")(x, train=train)
        ponder = result.ponder.mean(-1)
        depth = result.updates.mean(-1)
        base.sow_aux_loss(self, "ponder", s.ponder_weight * ponder)
        if s.distr_prior_weight:
            prior = gaussian_prior(self.num_layers, s.prior_mean, s.prior_std)
            kl = distribution_prior_kl(result.weights, prior)
            base.sow_aux_loss(self, "distr_prior", s.distr_prior_weight * kl)
            base.sow_aux_metric(self, "avit_prior_kl", kl)
        base.sow_aux_metric(self, "ponder_cost", ponder)
        base.sow_aux_histogram(self, "avit_depth", depth)
        base.sow_aux_metric(self, "avit_token_fraction", depth / self.num_layers)
        return pt.layer_norm(dtype=self.dtype, name="ln_final")(result.output)


@registry.MODELS.register("avit")
class AViT(vit.SettingsViTClassifier):
    """A-ViT image classifier; batch `inputs` [B, H, W, C] float, `label` [B] int."""

    progress_metrics = ("loss", "accuracy", "avit_depth")
    settings_class = AViTSettings

    def encoder(self, size: vit.ViTSize, settings: AViTSettings) -> classifier.EncoderFactory:
        factory = classifier.encoder_factory(
            AViTEncoder, size.num_heads, size.mlp_dim, config=self.config
        )
        return functools.partial(factory, num_layers=size.num_layers, settings=settings)

    def encoder_flops(
        self, encoder_params: Any, size: vit.ViTSize, settings: AViTSettings, tokens: int
    ) -> float:
        """Every block on every token: halting masks tokens, it removes no computation
        (the halting scores read one feature, elementwise)."""
        return flops.self_attention_encoder(encoder_params, tokens)
