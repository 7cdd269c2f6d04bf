"""The one grammar of a config file's argument (`--config=file.py:ARG`).

ARG is a comma-separated list of tokens, in any order (big_vision's `parse_arg` shape):
- `name=value`: the value is converted to the type of `name`'s default (bool, int,
  float or str); a name with `choices` only takes one of them;
- `name` alone: sets a boolean `name` to True, or, when `name` is one of the choices
  of exactly one field, sets that field (`small` for `size=small`, `S/16` for
  `variant=S/16`).

    spec = args.parse_arg(arg, choices={"size": SIZES}, size="small", k=2, bf16=False)
    spec.size, spec.k, spec.bf16

Anything else is a ValueError that lists every known token, which the config loader
reports as one line naming the config file and the line of the call.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import ml_collections

_TRUE = ("true", "yes", "1")
_FALSE = ("false", "no", "0")


def _convert(name: str, value: str, default: Any) -> Any:
    """`value` as the type of `default` (ValueError naming `name` when it cannot be)."""
    if isinstance(default, bool):
        if value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        raise ValueError(f"{name}={value!r} is not a boolean (true or false)")
    if isinstance(default, int):
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"{name}={value!r} is not an integer") from None
    if isinstance(default, float):
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{name}={value!r} is not a number") from None
    return value


def _known(choices: Mapping[str, Sequence[str]], defaults: Mapping[str, Any]) -> str:
    shown = []
    for name, default in defaults.items():
        if name in choices:
            shown.append(f"{name}={'|'.join(choices[name])}")
        elif isinstance(default, bool):
            shown.append(name)
        else:
            shown.append(f"{name}=<{type(default).__name__}>")
    return ", ".join(shown)


def parse_arg(
    arg: str | None, *, choices: Mapping[str, Sequence[str]] | None = None, **defaults: Any
) -> ml_collections.ConfigDict:
    """`arg` parsed against the fields `defaults` names; missing fields keep defaults."""
    choices = dict(choices or {})
    unknown = sorted(set(choices) - set(defaults))
    if unknown:
        raise TypeError(f"choices for fields without a default: {unknown}")
    spec = dict(defaults)
    for token in filter(None, (t.strip() for t in (arg or "").split(","))):
        name, has_value, value = token.partition("=")
        if has_value:
            if name not in defaults:
                raise ValueError(
                    f"unknown config arg {token!r}; known: {_known(choices, defaults)}"
                )
            if name in choices and value not in choices[name]:
                raise ValueError(
                    f"config arg {token!r}: {name} must be one of {'|'.join(choices[name])}"
                )
            spec[name] = _convert(name, value, defaults[name])
            continue
        if isinstance(defaults.get(token), bool):
            spec[token] = True
            continue
        owners = [field for field, allowed in choices.items() if token in allowed]
        if len(owners) != 1:
            what = "ambiguous" if owners else "unknown"
            raise ValueError(f"{what} config arg {token!r}; known: {_known(choices, defaults)}")
        spec[owners[0]] = token
    return ml_collections.ConfigDict(spec)
