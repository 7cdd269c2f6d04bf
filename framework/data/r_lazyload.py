"""R's lazy-load databases (`X.rdb` + `X.rdx`) read without R, with PyPI `rdata`.

R packages keep their data sets in a lazy-load database: `X.rdx` is a gzip'd serialized
R list `(variables = list(name = c(offset, length), ...), references, compressed)` and
`X.rdb` holds each object at its offset, `length` bytes, compressed on its own:
a 4-byte big-endian length of the serialized object, then
- `compressed = 1` (zlib): the zlib stream;
- `compressed = 2` or `3`: a one-byte tag and the payload: `Z` raw LZMA2 (3 only),
  `2` bzip2, `1` zlib, `0` stored as it is (R stores an object whose compression
  would not shrink it).
The serialized object (R's XDR serialization, as in an `.rds` file) is parsed and
converted to Python by `rdata`: a data frame (tibbles included) becomes a pandas
DataFrame, a factor a pandas Categorical, a named list a dict.

Objects that refer to environments stored in the database (the `references`, e.g. a
package's functions) are not resolved; data frames and vectors need none.
"""

from __future__ import annotations

import bz2
import functools
import lzma
import os
import zlib
from typing import Any

from framework.errors import DataError

# R's xz preset (9, extreme) uses a 64 MiB dictionary; a raw LZMA2 decoder needs at least
# the encoder's dictionary size, and more is harmless.
_LZMA2_FILTERS = [{"id": lzma.FILTER_LZMA2, "dict_size": 64 << 20}]
TAGS = {
    b"Z": "raw LZMA2",
    b"2": "bzip2",
    b"1": "zlib",
    b"0": "stored",
}


def _parse(raw: bytes, what: str) -> Any:
    """An R-serialized object (XDR, as in .rds) as Python values."""
    import rdata  # imported here: pandas and xarray are slow to load

    constructors = dict(rdata.conversion.DEFAULT_CLASS_MAP)
    for subclass in ("tbl_df", "tbl"):  # tibbles are data frames with two more classes
        constructors[subclass] = constructors["data.frame"]
    try:
        parsed = rdata.parser.parse_data(raw, extension=".rds")
        return rdata.conversion.convert(parsed, constructors)
    except Exception as error:  # rdata raises several types for malformed input
        raise DataError(f"{what}: not a readable R object ({type(error).__name__}: {error})")


def decompress(entry: bytes, compressed: int, what: str = "entry") -> bytes:
    """The serialized object of one .rdb entry, compressed as `compressed` (1, 2 or 3)
    says; `what` names the entry in errors."""
    if len(entry) < 5:
        raise DataError(f"{what}: {len(entry)} bytes, too short for an .rdb entry")
    length = int.from_bytes(entry[:4], "big")
    tag, body = entry[4:5], entry[5:]
    known = compressed in (2, 3) and tag in TAGS and (tag != b"Z" or compressed == 3)
    if compressed != 1 and not known:
        raise DataError(
            f"{what}: compression tag {tag!r} is not one of R's for compressed={compressed} "
            f"({', '.join(f'{t.decode()} {n}' for t, n in TAGS.items())})"
        )
    try:
        if compressed == 1:  # zlib without a tag
            raw = zlib.decompress(entry[4:])
        elif tag == b"Z":
            raw = lzma.decompress(body, format=lzma.FORMAT_RAW, filters=_LZMA2_FILTERS)
        elif tag == b"2":
            raw = bz2.decompress(body)
        else:
            raw = zlib.decompress(body) if tag == b"1" else bytes(body)
    except (lzma.LZMAError, OSError, zlib.error, ValueError) as error:
        raise DataError(f"{what}: does not decompress ({error})") from None
    if len(raw) != length:
        raise DataError(f"{what}: {len(raw)} bytes decompressed, the header says {length}")
    return raw


class LazyLoadDB:
    """The objects of one lazy-load database, by name; `prefix` is the path without
    `.rdb` / `.rdx` (e.g. `.../modeldata/data/Rdata`)."""

    def __init__(self, prefix: str):
        self.rdb, self.rdx = f"{prefix}.rdb", f"{prefix}.rdx"
        for path in (self.rdb, self.rdx):
            if not os.path.isfile(path):
                raise DataError(f"{path}: no such file (an R lazy-load database is X.rdb + X.rdx)")

    @functools.cached_property
    def index(self) -> dict[str, Any]:
        """The .rdx: `variables` (name -> (offset, length)), `references`, `compressed`."""
        with open(self.rdx, "rb") as f:
            index = _parse(f.read(), self.rdx)
        if not isinstance(index, dict) or "variables" not in index:
            raise DataError(f"{self.rdx}: not a lazy-load index (no `variables` list)")
        return {str(k): v for k, v in index.items()}

    @property
    def compressed(self) -> int:
        value = self.index.get("compressed", 1)
        return int(value[0]) if hasattr(value, "__len__") else int(value)

    def names(self) -> list[str]:
        """The objects' names, in the index's order."""
        return [str(name) for name in self.index["variables"]]

    def raw(self, name: str) -> bytes:
        """The serialized object `name` (R's XDR serialization), decompressed."""
        variables = {str(k): v for k, v in self.index["variables"].items()}
        if name not in variables:
            raise DataError(f"{self.rdb}: no object {name!r}; it holds {', '.join(variables)}")
        offset, length = (int(x) for x in variables[name])
        with open(self.rdb, "rb") as f:
            f.seek(offset)
            entry = f.read(length)
        if len(entry) != length:
            raise DataError(f"{self.rdb}: object {name!r} runs past the end of the file")
        return decompress(entry, self.compressed, f"{self.rdb} object {name!r}")

    def read(self, name: str) -> Any:
        """The object `name` as Python values (a data frame as a pandas DataFrame)."""
        return _parse(self.raw(name), f"{self.rdb} object {name!r}")
