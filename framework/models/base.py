"""Base model classes: a Flax module plus the loss and metrics the trainer uses.

The trainer never looks inside a model. It calls `model.apply(params, batch, ...)`
and `model.metrics(outputs, batch)`. Every metric is a per-example pair
`(numerator [B], denominator [B])`; the trainer multiplies both by the example mask
(padding examples have mask 0), sums them over the whole batch or eval split and
divides, so each real example counts once whatever the batching. The key `'loss'`
is what gets optimised. Denominators are counts that depend on the batch alone (real
examples, target tokens), never on the outputs' values: micro-batching divides each
micro-batch's numerators by the whole batch's denominators, computed without a forward
pass (`framework.train.steps.batch_denominators`).

Auxiliary channel. A module adds auxiliary losses and metrics with
`sow_aux_loss(self, name, per_example)` / `sow_aux_metric(self, name, per_example)`
(and `sow_aux_histogram` for values whose distribution is worth seeing, e.g. tape
length). Each value has shape [B]. The trainer adds the mask-weighted mean of every
auxiliary loss to the loss (already weighted by the model: sow `0.01 * ponder`),
logs it as `aux_loss/<name>`, and logs auxiliary metrics as their masked mean
(histograms also as variance and a TensorBoard histogram).
"""

from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from framework.config import fields

Array = jax.Array
Batch = Mapping[str, Array]
MetricPairs = dict[str, tuple[Array, Array]]

AUX_LOSS = "aux_loss"
AUX_METRICS = "aux_metrics"
AUX_HISTOGRAMS = "aux_histograms"
AUX_COLLECTIONS = (AUX_LOSS, AUX_METRICS, AUX_HISTOGRAMS)
TOP5_MIN_CLASSES = 100  # top-5 accuracy is reported for ImageNet-sized label sets


def sow_aux_loss(module: nn.Module, name: str, per_example: Array) -> None:
    """Adds a per-example auxiliary loss; sown twice under one name, the values add."""
    module.sow(
        AUX_LOSS, name, per_example, init_fn=lambda: 0.0, reduce_fn=lambda prev, new: prev + new
    )


def sow_aux_metric(module: nn.Module, name: str, per_example: Array) -> None:
    """Records a per-example auxiliary metric (the last value sown wins)."""
    module.sow(AUX_METRICS, name, per_example, init_fn=lambda: 0.0, reduce_fn=lambda prev, new: new)


def sow_aux_histogram(module: nn.Module, name: str, per_example: Array) -> None:
    """Records a per-example value logged as mean, variance and histogram."""
    module.sow(
        AUX_HISTOGRAMS, name, per_example, init_fn=lambda: 0.0, reduce_fn=lambda prev, new: new
    )


def collect_aux(state: Mapping[str, Any]) -> dict[str, dict[str, Array]]:
    """Flattens the sown collections to {collection: {path/name: [B] array}}."""
    out: dict[str, dict[str, Array]] = {c: {} for c in AUX_COLLECTIONS}
    for collection in AUX_COLLECTIONS:
        flat = jax.tree_util.tree_flatten_with_path(dict(state.get(collection, {})))[0]
        for path, value in flat:
            # The sown name is the last key; module paths are kept only to disambiguate.
            keys = [getattr(p, "key", str(p)) for p in path]
            name = keys[-1]
            if name in out[collection]:
                name = "/".join(keys)
            out[collection][name] = value
    return out


class BaseModel:
    """A Flax module with its loss and metrics, built from `config.model`.

    Subclasses set `module` in `build_module`, say which batch fields the module reads
    in `module_inputs`, and define `metrics`. `default_config()` lists every model
    field with its default; a config key not listed there is an error.
    `progress_metrics` names the training metrics the console progress line shows
    (every metric is written to metrics.jsonl and TensorBoard regardless).
    """

    progress_metrics: tuple[str, ...] = ("loss",)

    def __init__(self, config: ml_collections.ConfigDict, dataset_meta: Mapping[str, Any]):
        self.config = config
        self.dataset_meta = dict(dataset_meta)
        self.check_config(config)
        self.module = self.build_module()

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        return ml_collections.ConfigDict()

    @classmethod
    def check_config(cls, config: ml_collections.ConfigDict) -> None:
        """Raises ConfigError naming the `config.model.` key of a bad value.

        Called by `schema.resolve` (config time, before anything is built) and
        on construction. Subclasses check the fields they declare and call super(); they
        may return what the check resolved (sizes, settings) for their `build_module`.
        """

    def build_module(self) -> nn.Module:
        raise NotImplementedError

    def module_inputs(self, batch: Batch) -> dict[str, Array]:
        return {"inputs": batch["inputs"]}

    def metrics(self, outputs: Any, batch: Batch) -> MetricPairs:
        raise NotImplementedError

    def init_boxed(self, rng: Array, batch: Batch) -> Any:
        """The parameters as `model.init` makes them: each boxed with its logical axis
        names (`framework.models.partitioning`). Run it under `jax.eval_shape` to read
        the names without materialising anything."""
        params_rng, dropout_rng = jax.random.split(rng)
        variables = self.module.init(
            {"params": params_rng, "dropout": dropout_rng}, **self.module_inputs(batch), train=False
        )
        return variables["params"]

    def init(self, rng: Array, batch: Batch) -> Any:
        """Returns the parameters (plain arrays) for a batch of the dataset's shapes."""
        return nn.meta.unbox(self.init_boxed(rng, batch))

    def apply(
        self, params: Any, batch: Batch, *, train: bool, rng: Array | None = None
    ) -> tuple[Any, dict[str, dict[str, Array]]]:
        """Runs the module; returns (outputs, auxiliary values by collection)."""
        rngs = {}
        if rng is not None:
            rngs = dict(zip(self.rng_names(), jax.random.split(rng, len(self.rng_names()))))
        outputs, state = self.module.apply(
            {"params": params},
            **self.module_inputs(batch),
            train=train,
            rngs=rngs,
            mutable=list(AUX_COLLECTIONS),
        )
        return outputs, collect_aux(state)

    def rng_names(self) -> tuple[str, ...]:
        """Named RNG streams the module draws from in training."""
        return ("dropout",)

    def analytical_flops(self, params: Any, batch: Batch) -> float | None:
        """Forward-pass FLOPs of one example of `batch`, counted from the config and the
        parameter shapes; None when the model gives no count (the default).

        `params`: the unboxed parameter tree (arrays or ShapeDtypeStructs); `batch`: one
        batch (arrays or ShapeDtypeStructs, leading dimension the batch size). Every
        matmul counts 2 m n k (a kernel of n entries on t tokens: 2 n t; convolutions
        as the matmuls they are), attention 2 q kv w for the scores and as much for the
        weighted sum; norms, activations, softmax, biases, residual adds and embedding
        lookups are not counted (`framework.models.flops`). The count is of what the
        compiled program computes (masked, halted or padded positions and loops at their
        static length included), so that 3x it compares with XLA's training-step FLOPs.
        """
        del params, batch
        return None


class ClassificationModel(BaseModel):
    """Single-label classification: softmax (or sigmoid) cross-entropy and accuracy.

    Batch fields: `inputs`, `label` (int [B]) and optionally `labels` (soft targets
    [B, K] from the input pipeline's `onehot` / mixup, used for the loss instead of
    `label`). Model config fields `loss` (`softmax` | `sigmoid`) and `label_smoothing`
    choose the loss. Top-5 accuracy is added from `TOP5_MIN_CLASSES` classes on.
    """

    progress_metrics = ("loss", "accuracy")
    LOSSES = ("softmax", "sigmoid")

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        config = super().default_config()
        config.loss = "softmax"  # softmax | sigmoid
        config.label_smoothing = 0.0
        return config

    @classmethod
    def check_config(cls, config: ml_collections.ConfigDict) -> None:
        super().check_config(config)
        fields.check_one_of("config.model.loss", config.get("loss", "softmax"), cls.LOSSES)
        fields.check_rate("config.model.label_smoothing", config.get("label_smoothing", 0.0))

    @property
    def num_classes(self) -> int:
        return int(self.dataset_meta["num_classes"])

    def metrics(self, outputs: Array, batch: Batch) -> MetricPairs:
        logits = outputs.astype(jnp.float32)
        labels = batch["label"]
        if "labels" in batch:  # soft targets made by the input pipeline (onehot, mixup)
            targets = batch["labels"].astype(jnp.float32)
        else:
            targets = jax.nn.one_hot(labels, logits.shape[-1])
        smoothing = self.config.get("label_smoothing", 0.0)
        if smoothing:
            targets = optax.smooth_labels(targets, smoothing)
        loss_kind = self.config.get("loss", "softmax")
        if loss_kind == "softmax":
            loss = optax.softmax_cross_entropy(logits, targets)
        elif loss_kind == "sigmoid":
            loss = optax.sigmoid_binary_cross_entropy(logits, targets).sum(-1)
        else:  # check_config allows only LOSSES
            raise AssertionError(f"model.loss {loss_kind!r}")
        correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
        ones = jnp.ones_like(loss)
        pairs = {"loss": (loss, ones), "accuracy": (correct, ones)}
        if logits.shape[-1] >= TOP5_MIN_CLASSES:
            label_logit = jnp.take_along_axis(logits, labels[:, None], axis=-1)
            top5 = ((logits > label_logit).sum(-1) < 5).astype(jnp.float32)
            pairs["top5_accuracy"] = (top5, ones)
        return pairs
