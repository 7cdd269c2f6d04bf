"""The one local format of labelled-text classification tasks (fine_food, users' tasks).

A prepared task is a folder:
- `train.jsonl`, `eval.jsonl`: one JSON object per line, `{"text": str, "label": str}`,
  UTF-8, each split in a seeded shuffled order;
- `task.json`: `name`, `labels` (the sorted label strings), `source`, `counts` per split
  and label, `seed`, how the split was made and the decoding notes of the import.
The folder is written whole or not at all (a staging folder renamed into place).

As a text-to-text task (`tasks.classification_task`), an example becomes
`"<name> <field>: <text>"` (`field` is `text` for users' tasks, `review` for
`fine_food`) with the label string itself as the target; decoded text is read back as a
label id (`task_formats.labelled`, -1 for anything else) and scored with accuracy and
macro-F1. `python -m launch.prepare_data text_classification --input=... --name=NAME`
(`classification_import`) makes such a folder from a user's files, at `data/NAME` by
default, and `task=NAME` then finds it there (or in `config.dataset.data_dir`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from typing import Any, Sequence

import numpy as np

from framework.errors import ConfigError, DataError

SPLITS = ("train", "eval")
TASK_FILE = "task.json"
DATA_ROOT = "data"
FORMAT = 'train.jsonl / eval.jsonl: one {"text": str, "label": str} object per line, UTF-8'
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
IMPORT_COMMAND = "python -m launch.prepare_data text_classification --input=PATH --name={name}"

Pair = tuple[str, str]  # (text, label)


def default_dir(name: str) -> str:
    """Where a task named `name` is prepared and looked for by default: `data/<name>`."""
    return os.path.join(DATA_ROOT, name)


def split_path(folder: str, split: str) -> str:
    return os.path.join(folder, f"{split}.jsonl")


def is_prepared(folder: str) -> bool:
    """Whether `folder` holds task.json and both splits."""
    files = [os.path.join(folder, TASK_FILE)] + [split_path(folder, s) for s in SPLITS]
    return all(os.path.isfile(f) for f in files)


def counts(pairs: Sequence[Pair]) -> dict[str, Any]:
    """`{"examples": n, "labels": {label: n}}` of a split, labels sorted."""
    per_label: dict[str, int] = {}
    for _, label in pairs:
        per_label[label] = per_label.get(label, 0) + 1
    return {"examples": len(pairs), "labels": dict(sorted(per_label.items()))}


def write_task(
    out_dir: str,
    name: str,
    splits: dict[str, Sequence[Pair]],
    *,
    source: str,
    seed: int = 0,
    notes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Writes the task folder `out_dir` (which must not exist) from `splits` ("train",
    "eval" -> (text, label) pairs), each split in a seeded shuffled order, whole or not at
    all; returns the task.json contents. `notes` are added to task.json."""
    if set(splits) != set(SPLITS):
        raise ValueError(f"splits must be {SPLITS}, got {sorted(splits)}")
    labels = sorted({label for pairs in splits.values() for _, label in pairs})
    info = {
        "name": name,
        "labels": labels,
        "source": source,
        "format": FORMAT,
        "seed": seed,
        "counts": {split: counts(splits[split]) for split in SPLITS},
        **(notes or {}),
    }
    staging = f"{out_dir.rstrip(os.sep)}.incomplete.{os.getpid()}"
    if os.path.exists(staging):
        shutil.rmtree(staging)
    os.makedirs(staging)
    try:
        for number, split in enumerate(SPLITS):
            pairs = splits[split]
            order = np.random.default_rng([seed, number]).permutation(len(pairs))
            with open(split_path(staging, split), "w", encoding="utf-8") as f:
                for i in order:
                    text, label = pairs[i]
                    f.write(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n")
        with open(os.path.join(staging, TASK_FILE), "w", encoding="utf-8") as f:
            json.dump(info, f, indent=2, ensure_ascii=False)
            f.write("\n")
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return info


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def read_info(folder: str) -> dict[str, Any]:
    """The task.json of a prepared folder (ConfigError if it is missing or malformed)."""
    path = os.path.join(folder, TASK_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist: {folder} is no prepared task") from None
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path}: not readable JSON ({error}); prepare the task again") from None
    labels = info.get("labels") if isinstance(info, dict) else None
    if not isinstance(labels, list) or len(labels) < 2 or not all(map(_is_str, labels)):
        raise ConfigError(f"{path}: `labels` must list at least 2 label strings")
    return info


def read_split(folder: str, split: str, prepare: str = "") -> list[dict[str, Any]]:
    """The examples of `folder/<split>.jsonl`: `{"text", "label", "idx"}` in file order.
    `prepare` is the command that makes the folder (`{out_dir}` stands for `folder`), for
    the error when it is missing."""
    path = split_path(folder, split)
    if not os.path.exists(path):
        how = (prepare or IMPORT_COMMAND.format(name="NAME") + " --out_dir={out_dir}").format(
            out_dir=folder
        )
        raise ConfigError(
            f"{path} does not exist; prepare it with `{how}` (config.dataset.data_dir names "
            "the folder)"
        )
    examples = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            try:
                record = json.loads(line)
                text, label = record["text"], record["label"]
            except (ValueError, TypeError, KeyError):
                raise DataError(f'{path}:{number} is not a {{"text", "label"}} JSON object')
            if not isinstance(text, str) or not isinstance(label, str):
                raise DataError(f"{path}:{number}: text and label must be strings")
            examples.append({"text": text, "label": label, "idx": len(examples)})
    return examples


def text_format(
    example: dict[str, Any], prefix: str, field: str, labels: Sequence[str]
) -> dict[str, Any]:
    """`"<prefix> <field>: <text>"` -> the label string; `label` is its id in `labels`."""
    label = example["label"]
    if label not in labels:
        raise DataError(
            f"{prefix} example {example.get('idx')}: label {label!r} is none of the task's "
            f"labels ({', '.join(labels)})"
        )
    return {
        "inputs": f"{prefix} {field}: {example['text']}",
        "targets": label,
        "label": list(labels).index(label),
        "idx": example.get("idx"),
    }


def summary(info: dict[str, Any], out_dir: str, created: bool) -> str:
    """What the command prints: where, counts per split and label, decoding notes."""
    lines = [f"{info['name']}: {'prepared' if created else 'already prepared, reused'} {out_dir}"]
    for split in SPLITS:
        c = info["counts"][split]
        total = max(c["examples"], 1)
        per_label = ", ".join(
            f"{label} {n} ({100 * n / total:.1f}%)" for label, n in c["labels"].items()
        )
        lines.append(f"  {split}: {c['examples']} examples ({per_label})")
    decoding = info.get("decoding")
    if decoding:
        replaced = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in decoding.items())
        lines.append(f"  decoding: {replaced}")
    if info.get("empty_texts_skipped"):
        lines.append(f"  empty texts skipped: {info['empty_texts_skipped']}")
    if "split" in info:
        lines.append(f"  split: {info['split']}")
    return "\n".join(lines)
