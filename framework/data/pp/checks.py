"""What every preprocessing op checks: its arguments and the example it is given.

Factories check their arguments at parse time (`size_hw`, `check_number`, raising
`ValueError`); ops name the record in their errors (`record_id`) and find the decoded
image with `image_of`. An op returns a new dict (`with_changes`), never its input.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from framework.data.pp.registry import Example


def record_id(example: Example) -> str:
    """The example's `id` (file or record name) for error messages."""
    return str(example.get("id", "<unknown record>"))


def size_hw(size: int | Sequence[int], name: str = "size") -> tuple[int, int]:
    """`size` as (height, width): an int for a square, or a pair; positive ints only."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (size, size)
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size)
        or min(size) <= 0
    ):
        raise ValueError(f"{name} must be a positive int or (height, width), got {size!r}")
    return int(size[0]), int(size[1])


def check_number(name: str, value: Any) -> float:
    """`value` as a float; a ValueError naming `name` unless it is a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return float(value)


def image_of(example: Example, op: str) -> np.ndarray:
    """The example's decoded image [H, W, C], or a ValueError naming the record."""
    image = example.get("image")
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.dtype == object:
        shape = getattr(image, "shape", type(image).__name__)
        raise ValueError(
            f"{op}: expected a decoded image [H, W, C] in {record_id(example)}, got {shape} "
            "(put `decode` first)"
        )
    return image


def with_changes(example: Example, **changes: Any) -> Example:
    """A new example: `example` with `changes` set."""
    return {**example, **changes}
