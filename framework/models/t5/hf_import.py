"""Hugging Face T5.1.1 checkpoints as this project's T5 parameters, read without torch.

`load(directory)` reads a Hugging Face checkpoint directory (`config.json` and
`model.safetensors`, or shards listed in `model.safetensors.index.json`) with the
`safetensors` package's NumPy API and returns the `T5Dims` it describes and the
parameters of `stack.T5Module` for them; `save(params, workdir)` writes them as the
checkpoint `config.init_from` loads (step 0 of `WORKDIR/checkpoints`, the trainer's own
Orbax checkpointer, holding `{"params": ...}` only); `model_fields(dims, sizes)` gives
the `config.model` fields that build that model: a `size` and what differs from it.

The numerics need no change of weights: this T5 is T5.1.1 as Hugging Face's
`T5ForConditionalGeneration` computes it. Neither scales attention logits by
1/sqrt(d_kv) (it is part of the trained queries); both add one relative-position table
per stack, learnt in its first layer, to every layer's self-attention (bidirectional
buckets in the encoder, causal in the decoder, with the same bucketing); the untied
output projection is applied to the final norm's output unscaled (only tied embeddings
are multiplied by d_model**-0.5, and those are refused); RMSNorm has epsilon 1e-6, and
the gated feed-forward uses GELU's tanh approximation (`gelu_new`). So each weight is
copied, transposed from `torch.nn.Linear`'s [out, in] to a kernel's [in, out] and split
into heads where the layer has them:

    shared.weight [V, d]                              token_embedding/embedding
    lm_head.weight [V, d]                             decoder/logits_dense/kernel [d, V]
    {stack}.block.0.layer.0.SelfAttention
        .relative_attention_bias.weight [buckets, H]  {stack}/relpos_bias/rel_embedding
    {stack}.block.i.layer.0.SelfAttention.{q,k,v}     {stack}/layers_i/{self_}attention/
        .weight [H*d_kv, d]                               {query,key,value}/kernel [d, H, d_kv]
    ....o.weight [d, H*d_kv]                          .../out/kernel [H, d_kv, d]
    decoder.block.i.layer.1.EncDecAttention.*         decoder/layers_i/encoder_decoder_attention
    {stack}.block.i.layer.{n}.DenseReluDense          {stack}/layers_i/mlp/{wi_0,wi_1,wo}/kernel
        .{wi_0,wi_1,wo}.weight
    {stack}.block.i.layer.{n}.layer_norm.weight       the pre-norm of that sub-layer
    {stack}.final_layer_norm.weight                   {stack}/final_norm/scale

Whatever does not map (tied embeddings, i.e. the original T5; another activation; a
norm epsilon other than 1e-6; a relative-position table in a later layer, as umT5 has;
a missing, misshapen or unknown tensor; a torch-only checkpoint) is a one-line
ConfigError naming the field or tensor.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import numpy as np
from etils import epath

from framework.errors import ConfigError
from framework.models.t5.layers import SIZES, T5Dims
from framework.models.t5.model import T5Model

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
VOCAB_FILE = "spiece.model"  # the SentencePiece model Hugging Face's T5 repositories ship
OTHER_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5")
MODEL_TYPES = ("t5", "mt5")  # T5.1.1 and mT5 share the architecture
# Gated feed-forwards whose activation is GELU's tanh approximation, as here.
GATED_GELU = ("gated-gelu", "gated-gelu_new", "gated-gelu_pytorch_tanh")
LAYER_NORM_EPSILON = 1e-6  # `layers.RMSNorm`'s
# T5Config's defaults, for fields a config.json leaves out (transformers applies them).
HF_DEFAULTS = {
    "vocab_size": 32128,
    "d_model": 512,
    "d_kv": 64,
    "d_ff": 2048,
    "num_layers": 6,
    "num_heads": 8,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "layer_norm_epsilon": 1e-6,
    "feed_forward_proj": "relu",
    "tie_word_embeddings": True,
}
# The input embedding: `shared`, which both stacks' `embed_tokens` alias.
EMBEDDING_NAMES = ("shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight")


@dataclasses.dataclass(frozen=True)
class Converted:
    """A Hugging Face T5 checkpoint as this project's model and parameters."""

    source: str  # the checkpoint directory
    hf_config: dict[str, Any]  # its config.json
    dims: T5Dims
    params: dict[str, Any]  # `T5Module`'s parameter tree of float32 NumPy arrays
    vocab_file: str | None  # its SentencePiece model, if it ships one

    @property
    def num_params(self) -> int:
        return sum(int(np.prod(a.shape)) for a in _leaves(self.params))


def _leaves(tree: Any) -> list[np.ndarray]:
    if isinstance(tree, dict):
        return [leaf for value in tree.values() for leaf in _leaves(value)]
    return [tree]


def read_config(directory: str) -> dict[str, Any]:
    """The checkpoint's config.json (one-line ConfigError if it is missing or unreadable)."""
    path = os.path.join(directory, CONFIG_FILE)
    if not os.path.isdir(directory):
        raise ConfigError(f"--input={directory}: no such directory (a Hugging Face checkpoint)")
    if not os.path.exists(path):
        raise ConfigError(f"{path}: missing; a Hugging Face checkpoint has config.json")
    try:
        with open(path) as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: unreadable as JSON ({e})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: holds a JSON {type(config).__name__}, not a config")
    return config


def dims_from_hf(config: dict[str, Any], where: str = CONFIG_FILE) -> T5Dims:
    """The T5Dims of a Hugging Face T5Config (as a dict); a ConfigError naming the field of
    anything this T5 cannot be."""

    def field(name: str) -> Any:
        return config.get(name, HF_DEFAULTS.get(name))

    model_type = config.get("model_type", "t5")
    if model_type not in MODEL_TYPES:
        raise ConfigError(
            f"{where}: model_type {model_type!r}; the converter reads T5.1.1 checkpoints "
            f"(model_type {' or '.join(MODEL_TYPES)})"
        )
    if field("tie_word_embeddings"):
        raise ConfigError(
            f"{where}: tie_word_embeddings is true (the original T5, not T5.1.1); this T5 "
            "has an untied output projection"
        )
    if field("feed_forward_proj") not in GATED_GELU:
        raise ConfigError(
            f"{where}: feed_forward_proj {field('feed_forward_proj')!r}; this T5 has "
            "T5.1.1's gated-GELU feed-forward ('gated-gelu')"
        )
    if field("layer_norm_epsilon") != LAYER_NORM_EPSILON:
        raise ConfigError(
            f"{where}: layer_norm_epsilon {field('layer_norm_epsilon')!r}; this T5's "
            f"RMSNorm uses {LAYER_NORM_EPSILON}"
        )
    names = (
        "vocab_size",
        "d_model",
        "d_ff",
        "num_heads",
        "d_kv",
        "num_layers",
        "relative_attention_num_buckets",
        "relative_attention_max_distance",
    )
    values = {name: field(name) for name in names}
    decoder_layers = config.get("num_decoder_layers")  # None: as many as the encoder
    values["num_decoder_layers"] = decoder_layers or values["num_layers"]
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{where}: {name} {value!r} is not a positive integer")
    return T5Dims(
        vocab_size=values["vocab_size"],
        d_model=values["d_model"],
        d_ff=values["d_ff"],
        num_heads=values["num_heads"],
        d_kv=values["d_kv"],
        num_encoder_layers=values["num_layers"],
        num_decoder_layers=values["num_decoder_layers"],
        num_buckets=values["relative_attention_num_buckets"],
        max_distance=values["relative_attention_max_distance"],
    )


class _Tensors:
    """The checkpoint's tensors by name, read on demand from its safetensors file(s)."""

    def __init__(self, directory: str):
        from safetensors import safe_open

        single = os.path.join(directory, WEIGHTS_FILE)
        index = os.path.join(directory, WEIGHTS_INDEX)
        if os.path.exists(single):
            files = [single]
        elif os.path.exists(index):
            try:
                with open(index) as f:
                    weight_map = json.load(f)["weight_map"]
                files = sorted({os.path.join(directory, name) for name in weight_map.values()})
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
                raise ConfigError(f"{index}: unreadable ({type(e).__name__}: {e})") from None
        else:
            other = [n for n in OTHER_WEIGHTS if os.path.exists(os.path.join(directory, n))]
            has = f"has {other[0]} but " if other else ""
            raise ConfigError(
                f"--input={directory} {has}no {WEIGHTS_FILE}: download the repository's "
                "safetensors revision, or convert it once with transformers "
                "(see docs/checkpoints.md)"
            )
        self.where = os.path.basename(single) if len(files) == 1 else os.path.basename(index)
        self._handles: dict[str, Any] = {}
        self._files: dict[str, str] = {}
        for path in files:
            if not os.path.exists(path):
                raise ConfigError(f"{index}: names {os.path.basename(path)}, which is missing")
            try:
                handle = safe_open(path, framework="numpy")
            except Exception as e:  # safetensors' own error types
                raise ConfigError(f"{path}: not a safetensors file ({e})") from None
            self._handles[path] = handle
            for name in handle.keys():
                self._files[name] = path
        self.unused = set(self._files)

    def __contains__(self, name: str) -> bool:
        return name in self._files

    def get(self, name: str, shape: tuple[int, ...], why: str) -> np.ndarray:
        """Tensor `name` as float32, which must have `shape` (`why`: the config that says so)."""
        if name not in self._files:
            raise ConfigError(f"{self.where}: no tensor {name} ({why} needs it)")
        self.unused.discard(name)
        path = self._files[name]
        handle = self._handles[path]
        if handle.get_slice(name).get_dtype() == "BF16":  # NumPy has no bfloat16
            from safetensors import safe_open

            with safe_open(path, framework="flax") as flax_handle:
                array = np.asarray(flax_handle.get_tensor(name), np.float32)
        else:
            array = np.asarray(handle.get_tensor(name), np.float32)
        if array.shape != tuple(shape):
            raise ConfigError(
                f"{self.where}: tensor {name} has shape {array.shape}; {why} implies {tuple(shape)}"
            )
        return array


def _convert(tensors: _Tensors, d: T5Dims) -> dict[str, Any]:
    """T5Module's parameter tree from the checkpoint's tensors (see the module docstring)."""
    inner = d.num_heads * d.d_kv
    why = f"{CONFIG_FILE}'s d_model {d.d_model}, num_heads {d.num_heads}, d_kv {d.d_kv}"

    def attention(prefix: str) -> dict[str, Any]:
        def heads(name: str) -> np.ndarray:
            weight = tensors.get(f"{prefix}.{name}.weight", (inner, d.d_model), why)
            return weight.T.reshape(d.d_model, d.num_heads, d.d_kv)

        out = tensors.get(f"{prefix}.o.weight", (d.d_model, inner), why)
        return {
            "query": {"kernel": heads("q")},
            "key": {"kernel": heads("k")},
            "value": {"kernel": heads("v")},
            "out": {"kernel": out.T.reshape(d.num_heads, d.d_kv, d.d_model)},
        }

    def mlp(prefix: str) -> dict[str, Any]:
        mlp_why = f"{CONFIG_FILE}'s d_model {d.d_model}, d_ff {d.d_ff}"
        return {
            name: {"kernel": tensors.get(f"{prefix}.{name}.weight", shape, mlp_why).T}
            for name, shape in (
                ("wi_0", (d.d_ff, d.d_model)),
                ("wi_1", (d.d_ff, d.d_model)),
                ("wo", (d.d_model, d.d_ff)),
            )
        }

    def norm(name: str) -> dict[str, np.ndarray]:
        return {"scale": tensors.get(name, (d.d_model,), f"{CONFIG_FILE}'s d_model {d.d_model}")}

    def relative_bias(stack: str) -> dict[str, np.ndarray]:
        name = f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
        shape = (d.num_buckets, d.num_heads)
        why_bias = f"{CONFIG_FILE}'s relative_attention_num_buckets {d.num_buckets}"
        return {"rel_embedding": tensors.get(name, shape, why_bias).T}

    def stack(name: str, num_layers: int) -> dict[str, Any]:
        tree: dict[str, Any] = {
            "relpos_bias": relative_bias(name),
            "final_norm": norm(f"{name}.final_layer_norm.weight"),
        }
        for i in range(num_layers):
            block = f"{name}.block.{i}.layer"
            if i > 0 and f"{block}.0.SelfAttention.relative_attention_bias.weight" in tensors:
                raise ConfigError(
                    f"{tensors.where}: tensor {block}.0.SelfAttention.relative_attention_bias"
                    ".weight: a relative-position table in a later layer (as umT5 has); this "
                    "T5 shares its first layer's table across the stack"
                )
            if name == "encoder":
                layer = {
                    "pre_attention_norm": norm(f"{block}.0.layer_norm.weight"),
                    "attention": attention(f"{block}.0.SelfAttention"),
                    "pre_mlp_norm": norm(f"{block}.1.layer_norm.weight"),
                    "mlp": mlp(f"{block}.1.DenseReluDense"),
                }
            else:
                layer = {
                    "pre_self_attention_norm": norm(f"{block}.0.layer_norm.weight"),
                    "self_attention": attention(f"{block}.0.SelfAttention"),
                    "pre_cross_attention_norm": norm(f"{block}.1.layer_norm.weight"),
                    "encoder_decoder_attention": attention(f"{block}.1.EncDecAttention"),
                    "pre_mlp_norm": norm(f"{block}.2.layer_norm.weight"),
                    "mlp": mlp(f"{block}.2.DenseReluDense"),
                }
            tree[f"layers_{i}"] = layer
        return tree

    vocab_why = f"{CONFIG_FILE}'s vocab_size {d.vocab_size}, d_model {d.d_model}"
    present = [name for name in EMBEDDING_NAMES if name in tensors]
    if not present:
        raise ConfigError(f"{tensors.where}: no tensor shared.weight (the input embedding)")
    embedding = tensors.get(present[0], (d.vocab_size, d.d_model), vocab_why)
    for name in present[1:]:
        if not np.array_equal(tensors.get(name, embedding.shape, vocab_why), embedding):
            raise ConfigError(
                f"{tensors.where}: tensor {name} differs from {present[0]}; this T5 has one "
                "input embedding for both stacks"
            )
    params = {
        "token_embedding": {"embedding": embedding},
        "encoder": stack("encoder", d.num_encoder_layers),
        "decoder": stack("decoder", d.num_decoder_layers),
    }
    params["decoder"]["logits_dense"] = {
        "kernel": tensors.get("lm_head.weight", (d.vocab_size, d.d_model), vocab_why).T
    }
    if tensors.unused:
        first = sorted(tensors.unused)[0]
        raise ConfigError(
            f"{tensors.where}: tensor {first} has no place in this T5 ({len(tensors.unused)} "
            "unused; more layers than config.json's num_layers / num_decoder_layers, or "
            "another architecture)"
        )
    return _contiguous(params)


def _contiguous(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {key: _contiguous(value) for key, value in tree.items()}
    return np.ascontiguousarray(tree, np.float32)


def load(directory: str) -> Converted:
    """The Hugging Face T5.1.1 checkpoint in `directory` as this project's T5 (see the
    module docstring); a one-line ConfigError for anything that does not map."""
    config = read_config(directory)
    dims = dims_from_hf(config, os.path.join(directory, CONFIG_FILE))
    params = _convert(_Tensors(directory), dims)
    vocab = os.path.join(directory, VOCAB_FILE)
    return Converted(directory, config, dims, params, vocab if os.path.exists(vocab) else None)


def model_fields(dims: T5Dims, sizes: dict[str, tuple[int, ...]] | None = None) -> dict[str, Any]:
    """The `config.model` fields of a T5 with `dims`: `size`, a key of `sizes` (default:
    every T5 size), then each field that differs from that size's row, and `vocab_size`.

    A model of one of the sizes takes its name; another takes the smallest size at least
    as wide (or the widest) with its own shape as explicit fields.
    """
    sizes = dict(SIZES if sizes is None else sizes)
    shape = (dims.d_model, dims.d_ff, dims.num_heads, dims.d_kv)
    layers = (dims.num_encoder_layers, dims.num_decoder_layers)
    exact = [name for name, row in sizes.items() if (row[:4], (row[4], row[4])) == (shape, layers)]
    if exact:
        size = exact[0]
    else:
        wide_enough = [name for name, row in sizes.items() if row[0] >= dims.d_model]
        size = (
            min(wide_enough, key=lambda n: sizes[n][0])
            if wide_enough
            else max(sizes, key=lambda n: sizes[n][0])
        )
    d_model, d_ff, num_heads, d_kv, num_layers = sizes[size]
    fields: dict[str, Any] = {"size": size, "vocab_size": dims.vocab_size}
    for name, value, default in (
        ("d_model", dims.d_model, d_model),
        ("d_ff", dims.d_ff, d_ff),
        ("num_heads", dims.num_heads, num_heads),
        ("d_kv", dims.d_kv, d_kv),
    ):
        if value != default:
            fields[name] = value
    if layers[0] == layers[1]:
        if layers[0] != num_layers:
            fields["num_layers"] = layers[0]
    else:
        fields["num_encoder_layers"], fields["num_decoder_layers"] = layers
    defaults = T5Model.default_config()
    for name, value in (
        ("relative_attention_num_buckets", dims.num_buckets),
        ("relative_attention_max_distance", dims.max_distance),
    ):
        if value != defaults[name]:
            fields[name] = value
    return fields


def save(params: dict[str, Any], workdir: str) -> str:
    """Writes `params` as step 0 of `workdir`'s checkpoints, as `config.init_from` reads
    them (the trainer's Orbax checkpointer, `{"params": params}` only); returns its path.

    A workdir that already holds a checkpoint is a ConfigError: it belongs to another run.
    """
    from framework.train import checkpoints

    directory = epath.Path(checkpoints.checkpoint_directory(workdir))
    if directory.exists() and any(p.name.isdigit() for p in directory.iterdir()):
        raise ConfigError(
            f"--workdir={workdir} already holds a checkpoint ({directory}); use a new --workdir"
        )
    checkpointer = checkpoints.Checkpointer(workdir, keep=1, asynchronous=False)
    try:
        checkpointer.save(0, {"params": params}, force=True)
    finally:
        checkpointer.close()
    return str(directory / "0")
