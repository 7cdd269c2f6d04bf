"""A user's labelled text as a classification task folder (`classification`).

`import_task(input, name)` (the command line is `python -m launch.prepare_data
text_classification --input=PATH --name=NAME`) reads one of:
- a folder of class folders, `DIR/<label>/*.txt`, one example per file;
- a folder of split folders, `DIR/train/<label>/*.txt` and `DIR/eval/...` (or
  `validation/`, or `test/`, taken in that order of preference): the split as given;
- a `.tsv` or `.csv` file with a header row, or a `.jsonl` file of objects, with a text
  and a label column (`text_field`, `label_field`). A TSV has no quoting (a `"` is
  text, a field holds no tab or newline); a CSV quotes as spreadsheets and pandas do.
Files directly in the top folder or a split folder (a README) are not read. Texts are
whitespace-normalised (runs of spaces and newlines become one space); empty ones are
skipped and counted. Without split folders, a seeded stratified split holds out
`eval_fraction` of each class (at least one example each side).

Decoding: UTF-8 by default (a byte-order mark is dropped), `encoding` for another codec,
`decode_errors="replace"` to replace undecodable bytes with U+FFFD; the files (folder
input) or rows (file input) that needed replacing are counted in task.json and the
summary.

Bad input is a one-line `ConfigError` naming the file and what would help, raised before
anything is written: no such path, an unknown extension, an empty class folder, a class
too small to split, a missing column (the columns found are listed), bytes that do not
decode, a name that clashes with a registered task.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import io
import json
import os
from typing import Any, Sequence

import numpy as np

from framework.data.text import classification
from framework.errors import ConfigError

EVAL_FOLDERS = ("eval", "validation", "test")  # in order of preference
FILE_KINDS = {".tsv": "\t", ".csv": ",", ".jsonl": None}
DECODE_ERRORS = ("strict", "replace")
DEFAULT_EVAL_FRACTION = 0.1
Pair = classification.Pair


@dataclasses.dataclass
class Options:
    """How to read the input (the command's flags)."""

    text_field: str = "text"
    label_field: str = "label"
    eval_fraction: float = DEFAULT_EVAL_FRACTION
    seed: int = 0
    encoding: str = "utf-8"
    decode_errors: str = "strict"


@dataclasses.dataclass
class _Reading:
    """What reading found besides the examples."""

    replaced: int = 0  # files or rows with bytes replaced
    unit: str = "files"
    empty: int = 0  # empty texts skipped
    notes: list[str] = dataclasses.field(default_factory=list)


def _check_options(options: Options) -> None:
    try:
        codecs.lookup(options.encoding)
    except LookupError:
        raise ConfigError(
            f"--encoding={options.encoding} is no codec Python knows (e.g. utf-8, cp1252, latin-1)"
        ) from None
    if options.decode_errors not in DECODE_ERRORS:
        raise ConfigError(
            f"--decode_errors={options.decode_errors}: use one of {', '.join(DECODE_ERRORS)}"
        )
    if not 0.0 < options.eval_fraction < 1.0:
        raise ConfigError(f"--eval_fraction={options.eval_fraction} must lie between 0 and 1")


def _codec(options: Options) -> str:
    """The codec to decode with: UTF-8 drops a leading byte-order mark."""
    name = codecs.lookup(options.encoding).name
    return "utf-8-sig" if name == "utf-8" else options.encoding


def decode(data: bytes, path: str, options: Options) -> tuple[str, bool]:
    """(text, whether bytes were replaced); a one-line error on bytes that do not decode
    in strict mode, naming the file, the byte offset and the options that help."""
    codec = _codec(options)
    try:
        return data.decode(codec), False
    except UnicodeDecodeError as error:
        if options.decode_errors == "replace":
            return data.decode(codec, errors="replace"), True
        bad = data[error.start : error.end].hex(" ")
        raise ConfigError(
            f"{path}: byte {error.start} (0x{bad}) is not valid {options.encoding}; pass "
            "--encoding=ENC (e.g. cp1252, latin-1) if the file is in another encoding, or "
            "--decode_errors=replace to replace undecodable bytes"
        ) from None


def _normal(text: str) -> str:
    return " ".join(text.split())


# ---------------------------------------------------------------- folders


def _subfolders(path: str) -> list[str]:
    return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))


def _read_class_folders(root: str, options: Options, reading: _Reading) -> list[Pair]:
    """(text, label) of `root/<label>/*.txt`, labels and files in sorted order."""
    labels = _subfolders(root)
    if not labels:
        raise ConfigError(
            f"--input={root} holds no class folders; give DIR/<label>/*.txt (or split "
            "folders DIR/train/<label>/, DIR/eval/<label>/), or a .tsv / .csv / .jsonl file"
        )
    pairs = []
    for label in labels:
        folder = os.path.join(root, label)
        entries = sorted(
            (e for e in os.scandir(folder) if not e.name.startswith(".")), key=lambda e: e.name
        )
        for entry in entries:
            if not entry.is_file() or not entry.name.endswith(".txt"):
                kind = "a folder" if entry.is_dir() else "not a .txt file"
                raise ConfigError(
                    f"{entry.path}: {kind}; a class folder holds one example per .txt file "
                    "(move it out of the input)"
                )
        if not entries:
            raise ConfigError(
                f"{folder}: empty class folder; add .txt files (one example each) or remove it"
            )
        for entry in entries:
            with open(entry.path, "rb") as f:
                text, replaced = decode(f.read(), entry.path, options)
            reading.replaced += replaced
            text = _normal(text)
            if text:
                pairs.append((text, label))
            else:
                reading.empty += 1
    return pairs


def _split_folders(root: str) -> tuple[str, str] | None:
    """(train folder, eval folder) when `root` holds split folders, else None."""
    folders = _subfolders(root)
    evals = [name for name in EVAL_FOLDERS if name in folders]
    if "train" not in folders or not evals:
        return None
    return os.path.join(root, "train"), os.path.join(root, evals[0])


# ---------------------------------------------------------------- files


def _label(value: Any, path: str, where: str, field: str) -> str:
    label = "" if value is None else str(value).strip()
    if isinstance(value, (dict, list)) or not label:
        raise ConfigError(f"{path}:{where}: empty or non-scalar label in {field!r} (--label_field)")
    return label


def _fields(options: Options) -> tuple[tuple[str, str], ...]:
    return (("--text_field", options.text_field), ("--label_field", options.label_field))


def _read_table(path: str, text: str, options: Options, delimiter: str) -> list[tuple]:
    """(text, label, line) rows of a TSV / CSV with a header row."""
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))
    # TSV has no quoting (a `"` is text); CSV quotes as spreadsheets and pandas write it.
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    header = next(reader, None)
    if not header:
        raise ConfigError(f"{path}: empty file; it needs a header row naming its columns")
    header = [h.strip() for h in header]
    columns = {}
    for flag, field in _fields(options):
        if field not in header:
            raise ConfigError(
                f"{path}: no column {field!r} ({flag}); columns found: {', '.join(header)}"
            )
        columns[flag] = header.index(field)
    rows = []
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        line = str(reader.line_num)
        if len(row) != len(header):
            raise ConfigError(
                f"{path}:{line}: {len(row)} fields, the header has {len(header)} (a stray "
                f"{'tab' if delimiter == chr(9) else 'comma or quote'}?)"
            )
        label = _label(row[columns["--label_field"]], path, line, options.label_field)
        rows.append((row[columns["--text_field"]], label, line))
    return rows


def _read_jsonl(path: str, text: str, options: Options) -> list[tuple]:
    """(text, label, line) of a JSON-lines file."""
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):  # not at U+2028 and kin
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as error:
            raise ConfigError(f"{path}:{number}: not JSON ({error.args[0]})") from None
        if not isinstance(record, dict):
            raise ConfigError(f"{path}:{number}: not a JSON object")
        for flag, field in _fields(options):
            if field not in record:
                raise ConfigError(
                    f"{path}:{number}: no field {field!r} ({flag}); fields found: "
                    + ", ".join(record)
                )
        value = record[options.text_field]
        if not isinstance(value, str):
            raise ConfigError(f"{path}:{number}: {options.text_field!r} is not a string")
        label = _label(record[options.label_field], path, str(number), options.label_field)
        rows.append((value, label, str(number)))
    return rows


def _read_file(path: str, options: Options, reading: _Reading) -> list[Pair]:
    extension = os.path.splitext(path)[1].lower()
    if extension not in FILE_KINDS:
        raise ConfigError(
            f"--input={path}: unknown extension {extension!r}; give a .tsv, .csv or .jsonl "
            "file, or a folder of class folders (DIR/<label>/*.txt)"
        )
    with open(path, "rb") as f:
        text, replaced = decode(f.read(), path, options)
    if extension == ".jsonl":
        rows = _read_jsonl(path, text, options)
    else:
        rows = _read_table(path, text, options, FILE_KINDS[extension])
    reading.unit = "rows"
    pairs = []
    for value, label, _ in rows:
        reading.replaced += replaced and "\ufffd" in value
        value = _normal(value)
        if value:
            pairs.append((value, label))
        else:
            reading.empty += 1
    if not pairs:
        raise ConfigError(f"{path}: no examples (rows with a text and a label)")
    return pairs


# ---------------------------------------------------------------- the split


def stratified_split(
    pairs: Sequence[Pair], eval_fraction: float, seed: int, source: str = "the input"
) -> tuple[list[Pair], list[Pair]]:
    """(train, eval): a seeded `eval_fraction` of each class held out, at least one
    example of each class on each side."""
    labels = sorted({label for _, label in pairs})
    train, held_out = [], []
    for number, label in enumerate(labels):
        members = [p for p in pairs if p[1] == label]
        if len(members) < 2:
            raise ConfigError(
                f"{source}: class {label!r} has {len(members)} example; a held-out split needs "
                "at least 2 per class (add examples, or give split folders train/ and eval/)"
            )
        order = np.random.default_rng([seed, number]).permutation(len(members))
        n_eval = min(len(members) - 1, max(1, round(eval_fraction * len(members))))
        held_out += [members[i] for i in order[:n_eval]]
        train += [members[i] for i in order[n_eval:]]
    return train, held_out


def _check_labels(splits: dict[str, list[Pair]], source: str) -> None:
    train_labels = {label for _, label in splits["train"]}
    if len(train_labels) < 2:
        raise ConfigError(
            f"{source}: only the class(es) {sorted(train_labels)}; a classification task "
            "needs at least 2"
        )
    unseen = sorted({label for _, label in splits["eval"]} - train_labels)
    if unseen:
        raise ConfigError(
            f"{source}: eval classes {unseen} have no training examples; add them to train"
        )


# ---------------------------------------------------------------- the command


def read_input(path: str, options: Options) -> tuple[dict[str, list[Pair]], _Reading, str]:
    """(splits, what reading found, how the split was made) of the user's input."""
    _check_options(options)
    if not os.path.exists(path):
        raise ConfigError(
            f"--input={path}: no such file or folder; give a folder of class folders "
            "(DIR/<label>/*.txt) or a .tsv / .csv / .jsonl file"
        )
    reading = _Reading()
    split_folders = _split_folders(path) if os.path.isdir(path) else None
    if split_folders:
        train_dir, eval_dir = split_folders
        splits = {
            "train": _read_class_folders(train_dir, options, reading),
            "eval": _read_class_folders(eval_dir, options, reading),
        }
        how = f"as given: train = {train_dir}, eval = {eval_dir}"
    else:
        if os.path.isdir(path):
            pairs = _read_class_folders(path, options, reading)
        else:
            pairs = _read_file(path, options, reading)
        train, held_out = stratified_split(pairs, options.eval_fraction, options.seed, path)
        splits = {"train": train, "eval": held_out}
        how = (
            f"held out: a seeded stratified {options.eval_fraction:g} of each class "
            f"(seed {options.seed})"
        )
    _check_labels(splits, path)
    return splits, reading, how


def _check_name(name: str) -> None:
    from framework.data.text import tasks  # tasks imports this package's modules

    if not classification.NAME_PATTERN.fullmatch(name or ""):
        raise ConfigError(
            f"--name={name!r}: a task name is letters, digits, '_', '.' or '-' (no '/' or "
            "spaces), starting with a letter or digit"
        )
    if name in tasks.TASKS.names():
        raise ConfigError(
            f"--name={name} clashes with a registered task or mixture; choose another name"
        )


def import_task(
    path: str, name: str, out_dir: str = "", options: Options | None = None
) -> tuple[dict[str, Any], bool]:
    """Prepares the task folder (default `data/<name>`) from the user's input; returns
    (its task.json, created). A folder prepared before from the same input and options
    is reused; any other existing folder is an error."""
    options = options or Options()
    _check_name(name)
    out_dir = out_dir or classification.default_dir(name)
    settings = {
        "input": os.path.abspath(path),
        **dataclasses.asdict(options),
    }
    if os.path.exists(out_dir):
        if classification.is_prepared(out_dir):
            info = classification.read_info(out_dir)
            if info.get("name") == name and info.get("import") == settings:
                return info, False
        raise ConfigError(
            f"--out_dir={out_dir} already exists (from another input or options); remove it "
            "or pass another --out_dir"
        )
    splits, reading, how = read_input(path, options)
    info = classification.write_task(
        out_dir,
        name,
        splits,
        source=os.path.abspath(path),
        seed=options.seed,
        notes={
            "split": how,
            "decoding": {
                "encoding": options.encoding,
                "errors": options.decode_errors,
                f"{reading.unit}_replaced": reading.replaced,
            },
            "empty_texts_skipped": reading.empty,
            "import": settings,
        },
    )
    return info, True
