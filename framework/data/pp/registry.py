"""The preprocessing op registry and the parser of preprocessing specs.

An op factory is registered by name; a spec such as `"decode|flip_lr|onehot(1000)"` is
parsed once, in the main process, into a `Preprocess`: the ops built with their arguments
checked, so that a typo or a bad value is a one-line `ConfigError` naming the config key
before any data is read. Arguments are Python literals read with `ast.literal_eval`,
never evaluated as code.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from framework.errors import ConfigError

Example = dict[str, Any]
OpFn = Callable[[Example, np.random.Generator], Example]
Factory = Callable[..., OpFn]

_FACTORIES: dict[str, Factory] = {}
_BRACKETS = {"(": ")", "[": "]", "{": "}"}


def register(name: str) -> Callable[[Factory], Factory]:
    """Registers an op factory under `name`: `factory(*args, **kwargs) -> op`.

    The op is `op(example, rng) -> example`; it returns a new dict and leaves its input
    as it was. The factory checks its arguments (raising `ValueError` or `TypeError`), so
    a bad spec fails at parse time rather than in a data worker.
    """

    def decorator(factory: Factory) -> Factory:
        if name in _FACTORIES and _FACTORIES[name] is not factory:
            raise ValueError(f"preprocessing op {name!r} is registered twice")
        _FACTORIES[name] = factory
        return factory

    return decorator


# The modules whose import registers the built-in ops; imported on first use, so that
# they can import this module at their top without a cycle.
BUILTIN_OP_MODULES = (
    "framework.data.pp.ops",
    "framework.data.pp.geometry",
    "framework.data.pp.randaug",
)


def load_builtin_ops() -> None:
    for module in BUILTIN_OP_MODULES:
        importlib.import_module(module)


def known_ops() -> list[str]:
    """The registered op names, sorted."""
    load_builtin_ops()
    return sorted(_FACTORIES)


@dataclasses.dataclass(frozen=True)
class Op:
    """One parsed op: its name, literal arguments and the built function."""

    name: str
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    fn: OpFn = dataclasses.field(compare=False, repr=False)

    def __call__(self, example: Example, rng: np.random.Generator) -> Example:
        return self.fn(example, rng)

    def __str__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.name}({', '.join(parts)})" if parts else self.name


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """A parsed preprocessing pipeline: `preprocess(example, rng) -> example`.

    Every op receives the same generator and draws from it in order, so the result is a
    deterministic function of the generator's state. Pickling stores the spec and parses
    it again on loading (the ops are closures), so it travels to data worker processes;
    an op registered outside `framework.data.pp` must then be registered there too.
    """

    spec: str
    ops: tuple[Op, ...]
    key: str = "pp"

    def __call__(self, example: Example, rng: np.random.Generator) -> Example:
        for op in self.ops:
            example = op(example, rng)
        return example

    def __reduce__(self):
        return (parse, (self.spec, self.key))

    def __str__(self) -> str:
        return "|".join(str(op) for op in self.ops)


def parse(spec: str | Sequence[str], key: str = "dataset.pp_train") -> Preprocess:
    """Parses `spec` (a `|`-separated string, or a list of such strings) into ops.

    Any problem (empty spec, syntax, unknown op, arguments that do not fit the op's
    signature or fail its checks) raises a one-line `ConfigError` that names `key`.
    """
    load_builtin_ops()
    if isinstance(spec, str):
        pieces = [spec]
    elif isinstance(spec, (list, tuple)) and all(isinstance(s, str) for s in spec):
        pieces = list(spec)
    else:
        raise ConfigError(
            f"{key}: a preprocessing spec is a string or a list of strings, got {spec!r}"
        )
    texts = [text.strip() for piece in pieces for text in _split(piece, key)]
    if not texts or texts == [""]:
        raise ConfigError(f"{key}: empty preprocessing spec")
    if "" in texts:
        raise ConfigError(f"{key}: empty op in preprocessing spec {'|'.join(texts)!r}")
    ops = tuple(_parse_op(text, key) for text in texts)
    return Preprocess(spec="|".join(texts), ops=ops, key=key)


def _split(spec: str, key: str) -> list[str]:
    """Splits at the `|` that lie outside brackets and string literals."""
    pieces, start, closers, quote = [], 0, [], None
    for i, char in enumerate(spec):
        if quote:
            if char == quote and spec[i - 1] != "\\":
                quote = None
        elif char in "'\"":
            quote = char
        elif char in _BRACKETS:
            closers.append(_BRACKETS[char])
        elif closers and char == closers[-1]:
            closers.pop()
        elif char == "|" and not closers:
            pieces.append(spec[start:i])
            start = i + 1
    if quote or closers:
        raise ConfigError(f"{key}: unbalanced brackets or quotes in {spec.strip()!r}")
    pieces.append(spec[start:])
    return pieces


def _parse_op(text: str, key: str) -> Op:
    """Parses `name` or `name(literal, ..., kw=literal)` and builds the op."""
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError as e:
        raise ConfigError(f"{key}: cannot parse op {text!r}: {e.msg}") from None
    if isinstance(node, ast.Name):
        name, arg_nodes, kw_nodes = node.id, [], []
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        name, arg_nodes, kw_nodes = node.func.id, node.args, node.keywords
    else:
        raise ConfigError(f"{key}: an op is `name` or `name(args)`, got {text!r}")
    if name not in _FACTORIES:
        raise ConfigError(f"{key}: unknown op {name!r}; known: {', '.join(known_ops())}")
    factory = _FACTORIES[name]
    try:
        args = tuple(_literal(n) for n in arg_nodes)
        kwargs = {}
        for kw in kw_nodes:
            if kw.arg is None:
                raise ValueError("`**` arguments are not allowed")
            kwargs[kw.arg] = _literal(kw.value)
    except ValueError as e:
        raise ConfigError(f"{key}: {text}: {e}") from None
    signature = inspect.signature(factory)
    try:
        signature.bind(*args, **kwargs)
    except TypeError as e:
        raise ConfigError(
            f"{key}: {text}: {e}; {name} takes arguments {_describe(signature)}"
        ) from None
    try:
        fn = factory(*args, **kwargs)
    except (ValueError, TypeError) as e:
        message = " ".join(str(e).split())
        raise ConfigError(f"{key}: {text}: {message}") from None
    return Op(name=name, args=args, kwargs=kwargs, fn=fn)


def _literal(node: ast.AST) -> Any:
    """The value of a literal argument node; anything else is a ValueError."""
    if isinstance(node, ast.Starred):
        raise ValueError("`*` arguments are not allowed")
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise ValueError(
            f"argument {ast.unparse(node)!r} is not a Python literal "
            "(numbers, strings, tuples, lists, dicts, True/False/None)"
        ) from None


def _describe(signature: inspect.Signature) -> str:
    """`(size, area_min=0.05, ...)`: the parameters without annotations, floats shortened."""
    parts = []
    for param in signature.parameters.values():
        text = param.name
        if param.kind is param.VAR_POSITIONAL:
            text = "*" + text
        elif param.kind is param.VAR_KEYWORD:
            text = "**" + text
        if param.default is not param.empty:
            default = param.default
            text += f"={round(default, 4) if isinstance(default, float) else default!r}"
        parts.append(text)
    return f"({', '.join(parts)})"
