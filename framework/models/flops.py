"""Analytical forward FLOPs: the pieces models count themselves with (`analytical_flops`).

Conventions (what `BaseModel.analytical_flops` returns is built from these): a matmul
of [m, k] by [k, n] is 2 m n k FLOPs, so a dense kernel of `n` parameters applied to
`t` tokens is 2 n t (a convolution is the matmul it is: kernel size times output
positions); attention of `q` queries over `kv` keys at total head width `w` is
2 q kv w for the scores plus 2 q kv w for the weighted sum. Embedding lookups,
norms, activations, softmax, biases and residual adds are elementwise or gathers and
are not counted. Counts are per example and for what the compiled program computes
(masked or halted positions included, loops at their full static length).

Parameter trees are nested mappings of arrays or `jax.ShapeDtypeStruct`s (unboxed);
only their shapes are read.
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Mapping

KERNEL = "kernel"  # the leaf name of every dense / convolution weight in flax
ATTENTION_KEYS = ("query", "key", "value")  # the projections of a flax attention module


def dense(n_params: float, tokens: float) -> float:
    """A matmul with a kernel of `n_params` entries applied to `tokens` positions."""
    return 2.0 * n_params * tokens


def attention(q_len: float, kv_len: float, width: float) -> float:
    """Scores (q x kv dot products of `width`) plus the weighted sum of values."""
    return 4.0 * q_len * kv_len * width


def size(leaf: Any) -> int:
    """Number of entries of an array or ShapeDtypeStruct."""
    return math.prod(leaf.shape)


def subtree(params: Mapping[str, Any], *path: str) -> Any:
    """`params[path[0]][path[1]]...`."""
    node: Any = params
    for key in path:
        node = node[key]
    return node


def kernels(tree: Any, exclude: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, leaf) of every `kernel` leaf under `tree`, skipping children named in
    `exclude` (at any depth)."""

    def walk(node: Any, path: tuple[str, ...]):
        if isinstance(node, Mapping):
            for key, child in node.items():
                if key in exclude:
                    continue
                yield from walk(child, path + (str(key),))
        elif path and path[-1] == KERNEL:
            yield path, node

    yield from walk(tree, ())


def kernel_params(tree: Any, exclude: tuple[str, ...] = ()) -> int:
    """Total entries of the `kernel` leaves under `tree` (children in `exclude` skipped)."""
    return sum(size(leaf) for _, leaf in kernels(tree, exclude))


def attention_modules(tree: Any) -> list[Mapping[str, Any]]:
    """Every attention module under `tree`: a mapping with query, key and value kernels."""
    found = []

    def walk(node: Any):
        if not isinstance(node, Mapping):
            return
        if all(isinstance(node.get(k), Mapping) and KERNEL in node[k] for k in ATTENTION_KEYS):
            found.append(node)
            return
        for child in node.values():
            walk(child)

    walk(tree)
    return found


def attention_width(module: Mapping[str, Any]) -> int:
    """Total head width (heads x head dim) of an attention module: the query kernel's
    output entries per input feature."""
    shape = module["query"][KERNEL].shape
    return math.prod(shape[1:])


def self_attention_encoder(tree: Any, tokens: float) -> float:
    """Every kernel under `tree` applied to `tokens` positions, plus self-attention over
    them for every attention module found: a Transformer encoder whose every layer
    sees every position."""
    total = dense(kernel_params(tree), tokens)
    for module in attention_modules(tree):
        total += attention(tokens, tokens, attention_width(module))
    return total
