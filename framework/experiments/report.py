"""One report layer for tables and sweeps: names, markdown, csv, json and png files.

A table (`tables.py`) and a sweep (`sweep_report.py`) each turn their runs' records into a
`Report`: a title, lines above the grid, the grid (header and rows of values, with the
text each cell shows), notes, a json payload and optionally a picture. `write` puts it in
a directory as `<name>.md`, `<name>.csv`, the json file and `<name>.png`, through
`etils.epath` (the directory may be `gs://...`). `slug` is the one way a name becomes a
directory or file name, for table rows, sweep points and launcher logs.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import re
from typing import Any

from etils import epath

MAX_SLUG = 120


def slug(
    text: str,
    keep: str = "._-",
    *,
    lower: bool = False,
    default: str = "run",
    max_length: int = 0,
    identity: str | None = None,
) -> str:
    """`text` as a path component: runs of characters that are not letters, digits or in
    `keep` become `_` (none at either end), lower case with `lower`, `default` if nothing
    is left. Longer than `max_length` (when given): cut, with a hash of `identity`
    (default `text`) appended so that different texts keep different names.
    """
    name = re.sub(rf"[^A-Za-z0-9{re.escape(keep)}]+", "_", text.lower() if lower else text)
    name = name.strip("_") or default
    if max_length and len(name) > max_length:
        digest = hashlib.sha1((text if identity is None else identity).encode()).hexdigest()[:10]
        name = f"{name[: max_length - 11]}-{digest}"
    return name


def cell(value: Any) -> str:
    """A value as a markdown cell: `–` for none, 4 significant digits for floats."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


@dataclasses.dataclass
class Report:
    """What a table or sweep shows; `shown[i][j]` is the text of `values[i][j]`."""

    name: str  # file stem: <name>.md, <name>.csv, <name>.png
    title: str
    header: list[str]
    values: list[list[Any]]  # raw values, for the csv
    shown: list[list[str]] | None = None  # the markdown cells (default: `cell(value)`)
    preamble: list[str] = dataclasses.field(default_factory=list)  # lines above the grid
    notes: str = ""  # markdown under the grid
    payload: dict[str, Any] = dataclasses.field(default_factory=dict)  # the json file
    json_name: str = ""  # default: <name>.json
    png: bytes | None = None

    def markdown(self) -> str:
        shown = self.shown or [[cell(v) for v in row] for row in self.values]
        lines = [f"# {self.title}", ""]
        if self.preamble:
            lines += [*self.preamble, ""]
        lines += ["| " + " | ".join(self.header) + " |", "|---" * len(self.header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in shown]
        if self.notes:
            lines += ["", self.notes.strip()]
        return "\n".join(lines) + "\n"

    def csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(self.header)
        writer.writerows([["" if v is None else v for v in row] for row in self.values])
        return buffer.getvalue()


def write(report: Report, directory: str) -> dict[str, str]:
    """Writes the report's files into `directory`; returns {file name: path}."""
    root = epath.Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    files: dict[str, str | bytes] = {
        f"{report.name}.md": report.markdown(),
        f"{report.name}.csv": report.csv(),
        report.json_name or f"{report.name}.json": json.dumps(report.payload, indent=2) + "\n",
    }
    if report.png is not None:
        files[f"{report.name}.png"] = report.png
    for name, content in files.items():
        path = root / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    return {name: str(root / name) for name in files}
