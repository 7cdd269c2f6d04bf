"""Amazon fine-food reviews (R's `modeldata`, Debian `r-cran-modeldata`) as a task.

The Debian package `r-cran-modeldata` (MIT) ships R's `modeldata` data sets in a
lazy-load database, `usr/lib/R/site-library/modeldata/data/Rdata.rdb` / `.rdx`, among
them `small_fine_foods`: the data frames `training_data` (4,000 reviews, 2,600 `great`
/ 1,400 `other`) and `testing_data` (1,000: 658 / 342), columns `product`, `review`,
`score`. `prepare(out_dir)` fetches the package with `apt-get download` (no root, not
installed), reads both frames without R (`framework.data.r_lazyload`) and writes the
classification folder (`classification`): train = `training_data`, eval =
`testing_data`, text = the review with its HTML markup dropped (links, spans) or turned
into spaces (`<br />`), entities (`&quot;`) decoded and whitespace collapsed, label = the score. A
prepared folder is reused, so calling it again does nothing. The `fine_food` task
(`framework.data.text.tasks`) reads it: `"fine_food review: ..."` -> `great` / `other`,
scored by accuracy and macro-F1.
"""

from __future__ import annotations

import html
import os
import re
import tempfile
from typing import Any

from framework.data import debian, r_lazyload
from framework.data.text import classification
from framework.errors import ConfigError, DataError

NAME = "fine_food"
LABELS = ("great", "other")
FIELD = "review"
DEFAULT_DIR = classification.default_dir(NAME)
PACKAGE = "r-cran-modeldata"
PACKAGE_DIR = "usr/lib/R/site-library/modeldata/data"  # inside the package
SYSTEM_DIR = "/" + PACKAGE_DIR  # where an installed package has it
DATABASE = "Rdata"  # Rdata.rdb + Rdata.rdx
FILES = (f"{DATABASE}.rdb", f"{DATABASE}.rdx")
FRAMES = {"train": "training_data", "eval": "testing_data"}
PREPARE_COMMAND = "python -m launch.prepare_data fine_food_reviews --out_dir={out_dir}"
_INLINE_TAG = re.compile(r"</?(a|b|i|em|strong|span|font|u)\b[^<>]*>", re.IGNORECASE)
_TAG = re.compile(r"</?[A-Za-z][^<>]*>")


def clean_review(text: str) -> str:
    """A review as plain text: inline HTML tags (links, bold, spans) are dropped and the
    others (`<br />`, `<p>`) become spaces, entities are decoded, whitespace runs become
    one space."""
    text = _TAG.sub(" ", _INLINE_TAG.sub("", text))
    return " ".join(html.unescape(text).split())


def _database_dir(source: str, workdir: str) -> tuple[str, str]:
    """(the folder holding Rdata.rdb/.rdx, where it came from): from `source` (a .deb,
    that folder, or an unpacked package root), the installed package, or the fetched one."""
    advice = (
        f"pass --input= a {PACKAGE} .deb, or a folder holding {' and '.join(FILES)} "
        f"(apt-get download {PACKAGE})"
    )
    db_dir = os.path.join(workdir, "db")
    if source:
        if os.path.isfile(source) and source.endswith(".deb"):
            origin = f"{os.path.abspath(source)} ({PACKAGE} {debian.version(source)})"
            return debian.extract(source, PACKAGE_DIR, FILES, db_dir, advice), origin
        for folder in (source, os.path.join(source, PACKAGE_DIR)):
            if os.path.isdir(folder) and not debian.missing_files(folder, FILES):
                return folder, os.path.abspath(folder)
        raise ConfigError(f"--input={source} is no .deb nor a folder holding {FILES[0]}; {advice}")
    if not debian.missing_files(SYSTEM_DIR, FILES):
        return SYSTEM_DIR, f"installed Debian package {PACKAGE} ({SYSTEM_DIR})"
    deb = debian.download(PACKAGE, workdir, advice)
    origin = f"Debian package {PACKAGE} {debian.version(deb)}"
    return debian.extract(deb, PACKAGE_DIR, FILES, db_dir, advice, PACKAGE), origin


def read_frames(folder: str) -> dict[str, list[tuple[str, str]]]:
    """Split -> (cleaned review, score) pairs of the two data frames in `folder`."""
    db = r_lazyload.LazyLoadDB(os.path.join(folder, DATABASE))
    splits = {}
    for split, frame_name in FRAMES.items():
        frame = db.read(frame_name)
        columns = list(getattr(frame, "columns", []))
        if "review" not in columns or "score" not in columns:
            raise DataError(f"{db.rdb} {frame_name}: no review / score columns ({columns})")
        pairs = [(clean_review(str(r)), str(s)) for r, s in zip(frame["review"], frame["score"])]
        unknown = sorted({s for _, s in pairs} - set(LABELS))
        if unknown:
            raise DataError(f"{db.rdb} {frame_name}: scores {unknown} are not {LABELS}")
        splits[split] = [p for p in pairs if p[0]]
    return splits


def prepare(out_dir: str = DEFAULT_DIR, source: str = "") -> tuple[dict[str, Any], bool]:
    """Makes (or reuses) the task folder `out_dir`; returns (its task.json, created).
    `source`: a `r-cran-modeldata` .deb or a folder with Rdata.rdb/.rdx instead of
    fetching the package."""
    if classification.is_prepared(out_dir):
        return classification.read_info(out_dir), False
    with tempfile.TemporaryDirectory() as tmp:
        folder, origin = _database_dir(source, tmp)
        splits = read_frames(folder)
    info = classification.write_task(
        out_dir,
        NAME,
        splits,
        source=f"{origin}, {PACKAGE_DIR}/{DATABASE}.rdb: data frames "
        f"{FRAMES['train']} (train) and {FRAMES['eval']} (eval), columns review and score",
        notes={
            "license": "MIT (R package modeldata, Max Kuhn and RStudio)",
            "text": "review; HTML tags dropped (links, spans) or made spaces (<br />, <p>), "
            "entities decoded, whitespace collapsed",
            "split": f"as shipped: train = {FRAMES['train']}, eval = {FRAMES['eval']}",
        },
    )
    return info, True
