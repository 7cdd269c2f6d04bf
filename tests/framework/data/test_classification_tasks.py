"""Local classification tasks: R's lazy-load reader, fine_food, the text_classification
importer and a user's `task=NAME`."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import zlib

import numpy as np
import pandas as pd
import pytest
from rdata.conversion import convert_python_to_r_data
from rdata.unparser import unparse_data

from configs.altup import finetune
from framework.data import pipeline, r_lazyload
from framework.data.text import classification, fine_food, task_dataset, tasks
from framework.data.text import classification_import as ci
from framework.errors import ConfigError, DataError

# ---------------------------------------------------------------- R's lazy-load database


def serialized(value) -> bytes:
    """`value` in R's XDR serialization (as in an uncompressed .rds)."""
    return unparse_data(convert_python_to_r_data(value), file_format="xdr", file_type="rds")


def frame(reviews, scores) -> pd.DataFrame:
    """A data frame as R's modeldata has it: character reviews, a factor score."""
    return pd.DataFrame(
        {"review": pd.Series(reviews, dtype=object), "score": pd.Categorical(scores)}
    )


def compress(raw: bytes, tag: bytes) -> bytes:
    """One .rdb entry as R writes it: big-endian length, tag, payload (`b""`: zlib, untagged)."""
    body = {
        b"Z": lambda: lzma.compress(
            raw, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": 6}]
        ),
        b"2": lambda: bz2.compress(raw),
        b"1": lambda: zlib.compress(raw),
        b"": lambda: zlib.compress(raw),
        b"0": lambda: raw,
    }[tag]()
    return len(raw).to_bytes(4, "big") + tag + body


def write_database(prefix: str, objects: dict, compressed: int, tags: dict) -> None:
    """`prefix.rdb` with each object compressed with its tag, and its gzip'd `prefix.rdx`."""
    entries, variables, offset = [], {}, 0
    for name, value in objects.items():
        entry = compress(serialized(value), tags[name])
        variables[name] = np.array([offset, len(entry)], np.int32)
        entries.append(entry)
        offset += len(entry)
    with open(f"{prefix}.rdb", "wb") as f:
        f.write(b"".join(entries))
    index = {"variables": variables, "references": {}, "compressed": np.array([compressed])}
    with open(f"{prefix}.rdx", "wb") as f:
        f.write(gzip.compress(serialized(index)))


def test_r_lazyload_reads_every_compression(tmp_path):
    objects = {
        "xz": frame(["Nice <br />snack", "meh"], ["great", "other"]),
        "bzip2": frame(["b"], ["other"]),
        "zlib": np.array([1.5, 2.5]),
        "stored": frame(["s1", "s2", "s3"], ["great", "great", "other"]),
    }
    tags = {"xz": b"Z", "bzip2": b"2", "zlib": b"1", "stored": b"0"}
    write_database(str(tmp_path / "Rdata"), objects, 3, tags)
    db = r_lazyload.LazyLoadDB(str(tmp_path / "Rdata"))
    assert db.names() == list(objects) and db.compressed == 3
    xz = db.read("xz")
    assert list(xz["review"]) == ["Nice <br />snack", "meh"]
    assert list(xz["score"]) == ["great", "other"] and list(xz["score"].cat.categories) == [
        "great",
        "other",
    ]
    assert list(db.read("bzip2")["review"]) == ["b"]
    np.testing.assert_array_equal(db.read("zlib"), [1.5, 2.5])
    assert list(db.read("stored")["score"]) == ["great", "great", "other"]
    with pytest.raises(DataError, match="no object 'nope'; it holds xz, bzip2"):
        db.read("nope")
    # compressed=1: zlib without a tag (R's oldest format); compressed=2 has no xz
    write_database(str(tmp_path / "old"), {"a": frame(["x"], ["great"])}, 1, {"a": b""})
    assert list(r_lazyload.LazyLoadDB(str(tmp_path / "old")).read("a")["review"]) == ["x"]
    raw = serialized(np.array([3.0]))
    assert r_lazyload.decompress(compress(raw, b"2"), 2) == raw
    with pytest.raises(DataError, match=r"compression tag b'Z' is not one of R's for compressed=2"):
        r_lazyload.decompress(compress(raw, b"Z"), 2)
    bad_length = (len(raw) + 1).to_bytes(4, "big") + compress(raw, b"0")[4:]
    with pytest.raises(DataError, match="the header says"):
        r_lazyload.decompress(bad_length, 3)


# ---------------------------------------------------------------- fine_food


def test_fine_food_format_metrics_and_preparation(tmp_path):
    task = tasks.get_task("fine_food")
    assert task.local_dir == "data/fine_food" and task.labels == ("great", "other")
    example = task.preprocess({"text": "Tasty.", "label": "other", "idx": 3})
    assert example == {
        "inputs": "fine_food review: Tasty.",
        "targets": "other",
        "label": 1,
        "idx": 3,
    }
    golds = [
        task.preprocess({"text": "t", "label": x}) for x in "great great other other great".split()
    ]
    # class great: tp 1, fp 1, fn 2 -> F1 0.4; other: tp 1, fp 1, fn 1 -> 0.5; "yuck" is wrong
    scores = task.score(golds, ["great", "other", "other", "great", "yuck"])
    assert scores == pytest.approx({"accuracy": 40.0, "macro_f1": 45.0})
    assert fine_food.clean_review('Good!<br /><br />Buy <a href="x">it</a>, &quot;now&quot;') == (
        'Good! Buy it, "now"'
    )

    source = tmp_path / "modeldata"
    source.mkdir()
    train = frame(
        ["A <br />fine  tea", "Stale.", "Best ever", "Bad"], ["great", "other", "great", "other"]
    )
    write_database(
        str(source / "Rdata"),
        {"training_data": train, "testing_data": frame(["Ok"], ["great"])},
        3,
        {"training_data": b"Z", "testing_data": b"Z"},
    )
    out = str(tmp_path / "fine_food")
    info, created = fine_food.prepare(out, source=str(source))
    assert created and info["labels"] == ["great", "other"]
    assert info["counts"]["train"] == {"examples": 4, "labels": {"great": 2, "other": 2}}
    train_examples = classification.read_split(out, "train")
    assert sorted(e["text"] for e in train_examples) == ["A fine tea", "Bad", "Best ever", "Stale."]
    assert [e["idx"] for e in train_examples] == [0, 1, 2, 3]
    assert classification.read_split(out, "eval") == [{"text": "Ok", "label": "great", "idx": 0}]
    assert fine_food.prepare(out, source="/nonexistent") == (info, False)  # reused
    with pytest.raises(ConfigError, match="fine_food_reviews --out_dir=.*absent"):
        classification.read_split(str(tmp_path / "absent"), "train", fine_food.PREPARE_COMMAND)


# ---------------------------------------------------------------- the importer


def write_files(root, files: dict[str, bytes | str]) -> str:
    os.makedirs(root, exist_ok=True)
    for name, content in files.items():
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content.encode() if isinstance(content, str) else content)
    return str(root)


def class_files(n_pos=10, n_neg=5, prefix="") -> dict[str, str]:
    files = {f"{prefix}pos/{i:02d}.txt": f"good  thing\n{i}" for i in range(n_pos)}
    files.update({f"{prefix}neg/{i:02d}.txt": f"bad thing {i}" for i in range(n_neg)})
    return files


def splits_of(out: str) -> dict[str, list[tuple[str, str]]]:
    return {
        s: [(e["text"], e["label"]) for e in classification.read_split(out, s)]
        for s in classification.SPLITS
    }


def test_import_class_folders_split_is_stratified_disjoint_and_seeded(tmp_path):
    source = write_files(tmp_path / "in", {**class_files(), "README": "not read"})
    out = str(tmp_path / "out")
    options = ci.Options(eval_fraction=0.2, seed=3)
    info, created = ci.import_task(source, "reviews", out, options)
    assert created and info["labels"] == ["neg", "pos"]
    assert info["counts"]["eval"] == {"examples": 3, "labels": {"neg": 1, "pos": 2}}
    assert info["counts"]["train"] == {"examples": 12, "labels": {"neg": 4, "pos": 8}}
    got = splits_of(out)
    assert ("good thing 0", "pos") in got["train"] + got["eval"]  # whitespace normalised
    assert not set(got["train"]) & set(got["eval"]) and len(set(got["train"] + got["eval"])) == 15
    assert ci.import_task(source, "reviews", out, options) == (info, False)  # same: reused
    with pytest.raises(ConfigError, match="already exists"):
        ci.import_task(source, "reviews", out, ci.Options(eval_fraction=0.2, seed=4))
    again = str(tmp_path / "again")
    ci.import_task(source, "reviews", again, options)
    assert splits_of(again) == got  # deterministic with the seed
    other = str(tmp_path / "other")
    ci.import_task(source, "reviews", other, ci.Options(eval_fraction=0.2, seed=4))
    assert set(splits_of(other)["eval"]) != set(got["eval"])


def test_import_split_folders_and_files(tmp_path):
    split_dir = write_files(
        tmp_path / "split",
        {**class_files(3, 2, "train/"), **class_files(1, 1, "validation/"), "test/neg/x.txt": "t"},
    )
    info, _ = ci.import_task(split_dir, "split_task", str(tmp_path / "o1"))
    assert info["counts"]["train"]["examples"] == 5 and info["counts"]["eval"]["examples"] == 2
    assert info["split"].endswith("eval = " + os.path.join(split_dir, "validation"))

    rows = [("t1", "a"), ('say "hi"', "b"), ("t3", "a"), ("t4", "b"), ("t5", "a"), ("t6", "b")]
    tsv = "label\tsentence\n" + "".join(f"{label}\t{text}\n" for text, label in rows)
    csv = 'review,label\n"t1, with comma",a\n' + "".join(f"{t},{label}\n" for t, label in rows[2:])
    jsonl = "".join(json.dumps({"body": t, "y": label}) + "\n" for t, label in rows)
    cases = {
        "in.tsv": (tsv, ci.Options(text_field="sentence", eval_fraction=0.34), 6),
        "in.csv": (csv, ci.Options(text_field="review", eval_fraction=0.34), 5),
        "in.jsonl": (jsonl, ci.Options(text_field="body", label_field="y", eval_fraction=0.34), 6),
    }
    for name, (content, options, total) in cases.items():
        path = write_files(tmp_path, {name: content})
        path = os.path.join(path, name)
        info, _ = ci.import_task(path, "f_" + name[3:], str(tmp_path / "out" / name), options)
        got = splits_of(str(tmp_path / "out" / name))
        assert info["labels"] == ["a", "b"], name
        assert len(got["train"]) + len(got["eval"]) == total, name
        assert {label for _, label in got["eval"]} == {"a", "b"}, name
    assert ('say "hi"', "b") in sum(splits_of(str(tmp_path / "out" / "in.tsv")).values(), [])
    assert ("t1, with comma", "a") in sum(splits_of(str(tmp_path / "out" / "in.csv")).values(), [])


@pytest.mark.parametrize(
    "files, input_name, name, options, message",
    [
        ({}, "missing", "t", {}, r"--input=\S*missing: no such file or folder"),
        ({"x.xml": "<a/>"}, "x.xml", "t", {}, r"x.xml: unknown extension '.xml'; give a .tsv"),
        ({**class_files(prefix="d/"), "d/no/.keep": ""}, "d", "t", {}, r"d/no: empty class folder"),
        (class_files(3, 1), "", "t", {}, r"class 'neg' has 1 example; a held-out split needs"),
        ({"a.csv": "text,y\nx,1\n"}, "a.csv", "t", {}, r"no column 'label' \(--label_field\); "
         r"columns found: text, y"),
        ({"a.jsonl": '{"text": "x"}\n'}, "a.jsonl", "t", {}, r"a.jsonl:1: no field 'label' "
         r"\(--label_field\); fields found: text"),
        ({"pos/a.txt": b"caf\xe9", "neg/b.txt": "x"}, "", "t", {},
         r"pos/a.txt: byte 3 \(0xe9\) is not valid utf-8; pass --encoding=ENC .* "
         r"--decode_errors=replace"),
        (class_files(), "", "fine_food", {}, r"--name=fine_food clashes with a registered task"),
        (class_files(), "", "a/b", {}, r"--name='a/b': a task name is"),
        (class_files(), "", "t", {"eval_fraction": 1.0}, r"--eval_fraction=1.0 must lie"),
        (class_files(), "", "t", {"encoding": "klingon"}, r"--encoding=klingon is no codec"),
        ({"pos/a.txt": "x", "pos/b.txt": "y"}, "", "t", {}, r"only the class\(es\) \['pos'\]"),
    ],
)  # fmt: skip
def test_import_errors_are_one_line_and_write_nothing(
    tmp_path, files, input_name, name, options, message
):
    source = write_files(tmp_path / "in", files)
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=message) as error:
        ci.import_task(os.path.join(source, input_name), name, str(out), ci.Options(**options))
    assert "\n" not in str(error.value)
    assert sorted(os.listdir(tmp_path)) == ["in"]  # no output folder, no staging folder


def test_import_encodings(tmp_path):
    files = {"pos/a.txt": "café".encode("cp1252"), "pos/b.txt": "\ufeffnaïve", "neg/c.txt": "x",
             "neg/d.txt": "y"}  # fmt: skip
    source = write_files(tmp_path / "in", files)
    with pytest.raises(ConfigError, match="a.txt: byte 3"):
        ci.import_task(source, "enc", str(tmp_path / "strict"))
    # cp1252 is wrong for the UTF-8 file but decodes it (as mojibake); latin-1 likewise
    info, _ = ci.import_task(
        source, "enc", str(tmp_path / "cp"), ci.Options(encoding="cp1252", eval_fraction=0.5)
    )
    texts = {t for s in splits_of(str(tmp_path / "cp")).values() for t, _ in s}
    assert "café" in texts and info["decoding"]["files_replaced"] == 0
    info, _ = ci.import_task(
        source, "enc", str(tmp_path / "rep"), ci.Options(decode_errors="replace", eval_fraction=0.5)
    )
    texts = {t for s in splits_of(str(tmp_path / "rep")).values() for t, _ in s}
    assert {"caf\ufffd", "naïve"} <= texts  # the BOM is dropped
    assert info["decoding"] == {"encoding": "utf-8", "errors": "replace", "files_replaced": 1}
    rows = b"text\tlabel\ncaf\xe9\ta\nok\ta\nfine\tb\nx\xff\xfey\tb\n"
    path = write_files(tmp_path, {"rows.tsv": rows})
    info, _ = ci.import_task(
        os.path.join(path, "rows.tsv"), "rows", str(tmp_path / "rows"),
        ci.Options(decode_errors="replace", eval_fraction=0.5),
    )  # fmt: skip
    assert info["decoding"]["rows_replaced"] == 2
    assert "rows replaced: 2" in classification.summary(info, "x", True)


# ---------------------------------------------------------------- task=NAME


def test_user_task_resolves_by_name(tmp_path, monkeypatch, corpus):
    monkeypatch.chdir(tmp_path)
    source = write_files(tmp_path / "in", class_files(6, 4))
    ci.import_task(source, "mine", options=ci.Options(eval_fraction=0.5))  # data/mine
    assert os.path.isfile("data/mine/task.json")
    task = tasks.get_task("mine")
    assert task.labels == ("neg", "pos") and task.local_dir == "data/mine"
    assert tasks.get_mixture("mine") == tasks.Mixture("mine", ("mine",), ("mine",))
    config = finetune.get_config("task=mine,size=tiny")
    assert config.dataset.task == "mine" and config.dataset.data_dir == "data/mine"
    assert finetune.get_config("task=fine_food").dataset.data_dir == "data/fine_food"
    assert finetune.get_config("task=fine_food").dataset.targets_length == 64
    assert finetune.get_config("task=squad").dataset.targets_length == 128

    dataset = config.dataset
    dataset.vocab_path = corpus["model"]
    task_dataset.TextTask.check_config(dataset)
    ds = task_dataset.TextTask(dataset, pipeline.HostSplit(4, 4, 0, 1), seed=0)
    examples = ds.eval_examples()
    assert len(examples) == 5 and examples[0]["inputs"].startswith("mine text: ")
    texts = [e["targets"] for e in examples]
    assert ds.score(texts) == {"mine/accuracy": 100.0, "mine/macro_f1": 100.0}
    assert len(next(ds.train_batches(0))["encoder_input_tokens"]) == 4

    moved = str(tmp_path / "elsewhere")
    os.rename("data/mine", moved)
    dataset.data_dir = moved  # config.dataset.data_dir names the folder
    assert tasks.get_task("mine", data_dir=moved).local_dir == moved
    dataset.data_dir, dataset.task = "", "mine"
    with pytest.raises(ConfigError) as error:
        task_dataset.TextTask.check_config(dataset)
    message = str(error.value)
    assert message.startswith("config.dataset.task='mine' is no known task or mixture; known:")
    assert "prepare_data text_classification --input=PATH --name=mine" in message
    assert "\n" not in message
    with pytest.raises(ConfigError, match=r"task.json is task 'mine', not 'yours'"):
        tasks.get_task("yours", data_dir=moved)
