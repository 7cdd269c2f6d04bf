"""T5 text-to-text tasks: formats, post-processors, scoring, and the `text_task` dataset."""

from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np
import pytest

from framework.config import schema
from framework.data import pipeline
from framework.data.text import polarity, sources, task_dataset, tasks, vocabulary
from framework.data.text.vocabulary import Vocabulary
from framework.errors import ConfigError
from framework.models.t5 import decoding
from framework.models.t5 import model as t5_model
from framework.train import experiment as experiment_lib
from framework.train.evaluators import decoding as decoding_eval
from tests.framework.data.conftest import generated_lines
from tests.framework.models import test_decoding

T = {name: tasks.TASKS.get(name) for name in tasks.TASKS.names()}  # tasks and mixtures

# ---------------------------------------------------------------- formats, by hand


def test_glue_formats():
    sst2 = T["glue/sst2"].preprocess({"sentence": "a fine film .", "label": 1, "idx": 7})
    assert sst2 == {
        "inputs": "sst2 sentence: a fine film .",
        "targets": "positive",
        "label": 1,
        "idx": 7,
    }
    mnli = T["glue/mnli"].preprocess(
        {"premise": "A man sleeps.", "hypothesis": "A man rests.", "label": 0, "idx": 1}
    )
    assert mnli["inputs"] == "mnli hypothesis: A man rests. premise: A man sleeps."
    assert mnli["targets"] == "entailment"
    assert T["glue/mnli"].eval_split == "validation_matched"
    assert T["glue/mnli_mismatched"].eval_split == "validation_mismatched"
    assert T["glue/mnli_mismatched"].builder_name == "glue/mnli"
    cases = {
        "glue/cola": ({"sentence": "Him left."}, 0, "cola sentence: Him left.", "unacceptable"),
        "glue/mrpc": (
            {"sentence1": "A b.", "sentence2": "B a."},
            1,
            "mrpc sentence1: A b. sentence2: B a.",
            "equivalent",
        ),
        "glue/qqp": (
            {"question1": "Why?", "question2": "How?"},
            0,
            "qqp question1: Why? question2: How?",
            "not_duplicate",
        ),
        "glue/qnli": (
            {"question": "Who?", "sentence": "Bo."},
            1,
            "qnli question: Who? sentence: Bo.",
            "not_entailment",
        ),
        "glue/rte": (
            {"sentence1": "X.", "sentence2": "Y."},
            0,
            "rte sentence1: X. sentence2: Y.",
            "entailment",
        ),
        "glue/wnli": (
            {"sentence1": "X.", "sentence2": "Y."},
            1,
            "wnli sentence1: X. sentence2: Y.",
            "entailment",
        ),
    }
    for name, (fields, label, inputs, targets) in cases.items():
        out = T[name].preprocess({**fields, "label": label, "idx": 0})
        assert (out["inputs"], out["targets"]) == (inputs, targets), name
    # Test splits have no label: T5 writes <unk>.
    assert T["glue/sst2"].preprocess({"sentence": "x", "label": -1})["targets"] == "<unk>"


def test_stsb_rounds_to_a_fifth():
    stsb = T["glue/stsb"]
    example = {"sentence1": "A cat.", "sentence2": "A dog.", "label": np.float32(3.8), "idx": 2}
    out = stsb.preprocess(example)
    assert out["inputs"] == "stsb sentence1: A cat. sentence2: A dog."
    assert out["targets"] == "3.8"
    assert stsb.preprocess({**example, "label": 3.69})["targets"] == "3.6"
    assert stsb.preprocess({**example, "label": 0.0})["targets"] == "0.0"
    assert stsb.preprocess({**example, "label": 4.95})["targets"] == "5.0"


def test_super_glue_formats():
    boolq = T["super_glue/boolq"].preprocess(
        {"question": "is it?", "passage": "It is.", "label": 1, "idx": 0}
    )
    assert (boolq["inputs"], boolq["targets"]) == ("boolq passage: It is. question: is it?", "True")
    cb = T["super_glue/cb"].preprocess({"premise": "P.", "hypothesis": "H.", "label": 2, "idx": 0})
    assert (cb["inputs"], cb["targets"]) == ("cb hypothesis: H. premise: P.", "neutral")
    copa = T["super_glue/copa"].preprocess(
        {"premise": "It rained.", "choice1": "Wet.", "choice2": "Dry.", "question": "effect"}
        | {"label": 0, "idx": 0}
    )
    assert copa["inputs"] == "copa choice1: Wet. choice2: Dry. premise: It rained. question: effect"
    assert copa["targets"] == "choice1"
    rte = T["super_glue/rte"].preprocess({"premise": "P.", "hypothesis": "H.", "label": 1})
    assert (rte["inputs"], rte["targets"]) == ("rte hypothesis: H. premise: P.", "not_entailment")
    wic = T["super_glue/wic"].preprocess(
        {"sentence1": "A bank.", "sentence2": "The bank.", "word": "bank", "start1": 2}
        | {"label": 0, "idx": 0}
    )
    assert wic["inputs"] == "wic sentence1: A bank. sentence2: The bank. word: bank"
    assert wic["targets"] == "False"


def test_multirc_and_record_formats():
    multirc = T["super_glue/multirc"].preprocess(
        {
            "paragraph": "<b>Sent 1: </b>Bo ran.<br><b>Sent 2: </b>Al sat.<br>",
            "question": "Who ran?",
            "answer": "Bo",
            "idx": {"paragraph": 3, "question": 5, "answer": 0},
            "label": 1,
        }
    )
    assert multirc["inputs"] == (
        "multirc question: Who ran? answer: Bo paragraph: Sent 1: Bo ran. Sent 2: Al sat. "
    )
    assert (multirc["targets"], multirc["group"]) == ("True", (3, 5))
    record = T["super_glue/record"]
    example = {
        "passage": "Bo met Al.\n@highlight\nAl smiled\n@highlight\nBo left",
        "query": "@placeholder met Al.",
        "entities": ["Bo", "Al"],
        "answers": ["Bo", "Bo"],
        "idx": {"passage": 0, "query": 0},
    }
    out = record.preprocess(example)
    assert out["inputs"] == (
        "record query: @placeholder met Al. entities: Bo, Al passage: Bo met Al. Al smiled. Bo left"
    )
    assert (out["targets"], out["answers"]) == ("Bo", ["Bo", "Bo"])
    # Training: one example per gold entity, as T5 does.
    assert [e["targets"] for e in record.train_examples(example)] == ["Bo", "Bo"]


def test_wsc_simple_format():
    wsc = T["super_glue/wsc"]
    example = {
        "text": "Mitchell asked Tom if he could lend some money.",
        "span1_text": "Tom",
        "span2_text": "he",
        "span2_index": 4,
        "label": 1,
        "idx": 0,
    }
    out = wsc.preprocess(example)
    assert out["inputs"] == "wsc: Mitchell asked Tom if *he* could lend some money."
    assert (out["targets"], out["label"]) == ("Tom", 1)
    assert len(wsc.train_examples(example)) == 1
    assert wsc.train_examples({**example, "label": 0}) == []  # trains on right referents only
    # An index one word off, and punctuation glued to the pronoun (T5's special cases).
    odd = {**example, "text": 'John said: "Good for him," he laughed.', "span2_text": "him"}
    assert wsc.preprocess({**odd, "span2_index": 3})["inputs"] == (
        'wsc: John said: "Good for *him*," he laughed.'
    )


def test_qa_formats():
    squad = T["squad"].preprocess(
        {
            "id": "q1",
            "title": "T",
            "context": "Paris is in France.",
            "question": "Where's Paris?",
            "answers": {"text": ["France", "in France."], "answer_start": [12, 9]},
        }
    )
    assert squad["inputs"] == "question: Where ' s Paris ? context: Paris is in France ."
    assert (squad["targets"], squad["answers"]) == ("France", ["France", "in France ."])
    trivia = T["trivia_qa"].preprocess(
        {
            "question": "Who wrote Hamlet?",
            "question_id": "tq1",
            "answer": {"value": "Shakespeare", "aliases": ["Shakespeare", "The Bard"]},
        }
    )
    assert trivia["inputs"] == "trivia_qa question: Who wrote Hamlet?"
    assert (trivia["targets"], trivia["answers"]) == ("Shakespeare", ["Shakespeare", "The Bard"])
    pol = T["polarity"].preprocess({"sentence": "a dull film .", "label": 0, "idx": 0})
    assert (pol["inputs"], pol["targets"]) == ("polarity sentence: a dull film .", "negative")


# ---------------------------------------------------------------- post-processing and scoring


def test_postprocessors():
    sst2 = T["glue/sst2"]
    assert [sst2.postprocess(t, None) for t in ("positive", " negative\n", "meh")] == [1, 0, -1]
    assert T["glue/stsb"].postprocess("3.4", None) == 3.4
    assert T["glue/stsb"].postprocess("three", None) == -1.0
    assert T["squad"].postprocess("  the answer ", None) == "the answer"
    wsc, example = T["super_glue/wsc"], {"targets": "the fuzzy bunny"}
    assert wsc.postprocess("Bunny", example) == 1  # determiners and case do not matter
    assert wsc.postprocess("the fuzzy bunny rabbit", example) == 1
    assert wsc.postprocess("the cat", example) == 0
    assert wsc.postprocess("bunny's", example) == 0
    assert wsc.postprocess(" the ", example) == -1


def test_task_scores():
    sst2 = [{"label": 1}, {"label": 0}, {"label": 1}, {"label": 0}]
    scores = T["glue/sst2"].score(sst2, ["positive", "positive", "positive", "nonsense"])
    assert scores == {"accuracy": 50.0}
    mrpc = T["glue/mrpc"].score([{"label": 1}, {"label": 0}], ["equivalent", "equivalent"])
    assert mrpc == {"f1": pytest.approx(200 / 3), "accuracy": 50.0}
    multirc = [{"group": (0, 1), "label": 1}, {"group": (0, 1), "label": 0}]
    multirc += [{"group": (0, 2), "label": 1}]
    scores = T["super_glue/multirc"].score(multirc, ["True", "False", "False"])
    assert scores == {"exact_match": 50.0, "f1a": pytest.approx(200 / 3)}
    record = [{"answers": ["Bo", "Bo Li"]}, {"answers": ["Al"]}]
    assert T["super_glue/record"].score(record, ["bo li", "Ali"]) == {"em": 50.0, "f1": 50.0}
    wsc = [{"targets": "Tom", "label": 1}, {"targets": "Tom", "label": 0}]
    assert T["super_glue/wsc"].score(wsc, ["tom", "tom"]) == {"accuracy": 50.0}
    stsb = [{"targets": t} for t in ("1.0", "2.0", "3.0")]
    scores = T["glue/stsb"].score(stsb, ["1.2", "2.0", "3.4"])
    assert scores["spearman_corrcoef"] == pytest.approx(100.0)


def test_registry_and_mixtures():
    with pytest.raises(ConfigError) as error:
        tasks.get_mixture("glue/sst3")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("config.dataset.task='glue/sst3' is no known task or mixture")
    assert "glue/sst2" in message and "super_glue" in message and "polarity" in message
    with pytest.raises(ConfigError, match="is no known task; known: fine_food, glue/cola"):
        tasks.get_task("glue")
    glue = tasks.get_mixture("glue")
    assert "glue/wnli" not in glue.train_tasks and "glue/mnli_mismatched" in glue.eval_tasks
    assert tasks.get_mixture("squad") == tasks.Mixture("squad", ("squad",), ("squad",))
    assert len(tasks.get_mixture("super_glue").eval_tasks) == 8
    assert tasks.mixing_rates({"a": 10, "b": 2**20}) == {"a": 10.0, "b": float(2**19)}
    assert tasks.mixing_rates({"a": 10, "b": 30}, cap=20) == {"a": 10.0, "b": 20.0}


# ---------------------------------------------------------------- tfds mock data

# A few tasks with different features (text pairs, floats, nested ids, answer lists).
MOCK_TASKS = ["glue/mnli_mismatched", "glue/stsb", "super_glue/multirc", "super_glue/record"]
MOCK_TASKS += ["squad", "trivia_qa"]


def test_preprocessors_on_tfds_mock_data(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=4):
        for name in MOCK_TASKS:
            task = T[name]
            raw = sources.read_examples(task, task.eval_split, limit=3)
            assert len(raw) == 3, name
            for example in raw:
                out = task.preprocess(example)
                assert isinstance(out["inputs"], str) and isinstance(out["targets"], str)
                assert all(isinstance(e["targets"], str) for e in task.train_examples(example))
    with pytest.raises(ConfigError) as error:  # the real, unprepared data set
        sources.read_examples(T["glue/sst2"], "train", str(tmp_path))
    message = str(error.value)
    assert "\n" not in message
    assert "'glue/sst2:2.0.0', which is not prepared in" in message
    assert "download_and_prepare()" in message and "config.dataset.data_dir=DIR" in message


# ---------------------------------------------------------------- the dataset builder


@pytest.fixture(scope="module")
def polarity_dir(tmp_path_factory) -> str:
    """train.tsv (60 sentences), eval.tsv (10) in the polarity format, and a 200-piece
    SentencePiece model of their text and the task's words."""
    root = tmp_path_factory.mktemp("polarity")
    rng = np.random.default_rng(1)
    text = ["polarity sentence: negative positive"] * 20
    for split, n in (("train", 60), ("eval", 10)):
        lines = generated_lines(rng, n)
        polarity.write_tsv(str(root / f"{split}.tsv"), [(i % 2, s) for i, s in enumerate(lines)])
        text += lines
    vocabulary.train_vocabulary(
        str(root / "spm.model"), 200, sentences=text, hard_vocab_limit=False
    )
    return str(root)


def make(data_dir, seed=0, process=(0, 1), batch=4, eval_batch=4, **overrides):
    config = task_dataset.TextTask.default_config()
    config.update(
        task="polarity",
        data_dir=data_dir,
        vocab_path=os.path.join(data_dir, "spm.model"),
        inputs_length=16,
        targets_length=8,
    )
    config.update(overrides)
    return task_dataset.TextTask(config, pipeline.HostSplit(batch, eval_batch, *process), seed)


def test_train_batches(polarity_dir):
    ds = make(polarity_dir)
    vocab = Vocabulary(os.path.join(polarity_dir, "spm.model"))
    batches = [next(ds.train_batches(step)) for step in range(3)]
    for batch in batches:
        assert batch["encoder_input_tokens"].shape == (4, 16)
        assert batch["decoder_target_tokens"].shape == (4, 8)
        assert batch["decoder_input_tokens"].dtype == np.int32
        np.testing.assert_array_equal(batch["mask"], np.ones(4))
        for row in batch["decoder_target_tokens"]:
            ends = np.flatnonzero(row == vocab.eos_id)
            assert len(ends) == 1 and (row[ends[0] + 1 :] == 0).all()
            assert vocab.decode(row[: ends[0]]) in ("negative", "positive")
        # Long inputs are cut to 15 tokens and end with EOS.
        for row in batch["encoder_input_tokens"]:
            assert vocab.eos_id in row
        np.testing.assert_array_equal(
            batch["decoder_input_tokens"][:, 1:], batch["decoder_target_tokens"][:, :-1]
        )
    # A function of (seed, step): resuming and a fresh builder give the same batches.
    resumed = make(polarity_dir).train_batches(2)
    np.testing.assert_array_equal(
        next(resumed)["encoder_input_tokens"], batches[2]["encoder_input_tokens"]
    )
    other_seed = next(make(polarity_dir, seed=1).train_batches(0))
    assert not np.array_equal(
        other_seed["encoder_input_tokens"], batches[0]["encoder_input_tokens"]
    )
    # Epoch 0 (15 steps of 4) covers each of the 60 examples once.
    task_of, positions = zip(*(ds.step_slots(s) for s in range(15)))
    records = sorted(ds._record(0, p) for p in np.concatenate(positions))
    assert records == list(range(60))
    # Each process builds its own rows of the global batch.
    halves = [next(make(polarity_dir, process=(p, 2)).train_batches(1)) for p in (0, 1)]
    np.testing.assert_array_equal(
        np.concatenate([h["encoder_input_tokens"] for h in halves]),
        batches[1]["encoder_input_tokens"],
    )


def test_eval_batches_and_examples(polarity_dir):
    ds = make(polarity_dir, eval_batch=4)
    examples = ds.eval_examples()
    assert len(examples) == ds.meta["num_eval_examples"] == 10
    assert examples[0]["task"] == "polarity" and examples[0]["inputs"].startswith("polarity ")
    batches = list(ds.eval_batches())
    assert len(batches) == 3
    np.testing.assert_array_equal(batches[-1]["mask"], [1, 1, 0, 0])
    assert (batches[-1]["encoder_input_tokens"][2:] == 0).all()
    vocab = Vocabulary(os.path.join(polarity_dir, "spm.model"))
    for i, example in enumerate(examples):  # row i of the eval stream is example i
        row = batches[i // 4]["decoder_target_tokens"][i % 4]
        expected = vocab.encode(example["targets"])[:7] + [vocab.eos_id]
        np.testing.assert_array_equal(row[: len(expected)], expected)
        row = batches[i // 4]["encoder_input_tokens"][i % 4]
        assert row[:15].tolist() == vocab.encode(example["inputs"])[:15]
    perfect = ds.score([e["targets"] for e in examples])
    assert perfect == {"polarity/accuracy": 100.0}
    assert make(polarity_dir, num_eval_examples=3).meta["num_eval_examples"] == 3
    halves = [list(make(polarity_dir, process=(p, 2)).eval_batches()) for p in (0, 1)]
    assert [len(h) for h in halves] == [3, 3]
    np.testing.assert_array_equal(halves[1][-1]["mask"], [0, 0])


def test_eval_of_another_split(polarity_dir):
    ds = make(polarity_dir, eval_batch=8)
    train = ds.eval_examples("train")
    sentences = [x["sentence"] for x in polarity.read_split(polarity_dir, "train")]
    assert [e["inputs"] for e in train] == [f"polarity sentence: {s}" for s in sentences]
    batches = list(ds.eval_batches(split="train"))  # 60 examples in batches of 8
    assert [int(b["mask"].sum()) for b in batches] == [8] * 7 + [4]
    vocab = Vocabulary(os.path.join(polarity_dir, "spm.model"))
    for i, example in enumerate(train):  # row i of the split's eval stream is example i
        row = batches[i // 8]["encoder_input_tokens"][i % 8]
        assert row[:15].tolist() == vocab.encode(example["inputs"])[:15]
    assert ds.score([e["targets"] for e in train], split="train") == {"polarity/accuracy": 100.0}
    half = ds.score(["negative"] * 60, split="train")  # labels alternate 0, 1
    assert half == {"polarity/accuracy": 50.0}
    # The configured split is untouched: its examples, meta and no-argument batches.
    assert len(ds.eval_examples()) == ds.meta["num_eval_examples"] == 10
    assert len(list(ds.eval_batches())) == 2
    assert make(polarity_dir, num_eval_examples=7).num_eval_examples("train") == 7
    with pytest.raises(ConfigError) as error:
        ds.eval_batches(split="validation")
    assert str(error.value) == (
        "split 'validation': task 'polarity' has no such split; known: train, eval"
    )


def test_packed_training(polarity_dir):
    ds = make(polarity_dir, pack=True, inputs_length=96, targets_length=16)
    k = ds.meta["examples_per_row"]
    assert k >= 2
    batch = next(ds.train_batches(0))
    assert batch["encoder_segment_ids"].shape == (4, 96)
    assert batch["decoder_segment_ids"].max() >= 2
    assert (batch["decoder_input_tokens"][batch["decoder_positions"] == 0] == 0).all()
    again = make(polarity_dir, pack=True, inputs_length=96, targets_length=16)
    np.testing.assert_array_equal(
        next(again.train_batches(0))["encoder_input_tokens"], batch["encoder_input_tokens"]
    )


def test_mixture_is_a_function_of_seed_and_step(polarity_dir, monkeypatch):
    twin = dataclasses.replace(T["polarity"], name="polarity_twin")
    monkeypatch.setitem(tasks.TASKS._entries, "polarity_twin", twin)
    mixture = tasks.Mixture("two", ("polarity", "polarity_twin"), ("polarity", "polarity_twin"))
    monkeypatch.setitem(tasks.TASKS._entries, "two", mixture)
    monkeypatch.setattr(task_dataset, "_BLOCK", 3)  # steps cross block boundaries
    ds = make(polarity_dir, task="two", batch=8)
    assert ds.mixing_rates == {"polarity": 60.0, "polarity_twin": 60.0}
    slots = [ds.step_slots(s) for s in range(7)]
    task_of = np.concatenate([t for t, _ in slots])
    assert 0 < task_of.mean() < 1
    for t in (0, 1):  # each task's stream is taken in order, without gaps
        positions = np.concatenate([p[tk == t] for tk, p in slots])
        assert sorted(positions.tolist()) == list(range(len(positions)))
    late = make(polarity_dir, task="two", batch=8).step_slots(5)  # a fresh start
    np.testing.assert_array_equal(late[0], slots[5][0])
    np.testing.assert_array_equal(late[1], slots[5][1])
    assert len(ds.eval_examples()) == 20
    assert next(ds.train_batches(4))["encoder_input_tokens"].shape == (8, 16)


def test_config_errors(polarity_dir, tmp_path):
    config = task_dataset.TextTask.default_config()
    task_dataset.TextTask.check_config(config)
    config.task = "nope"
    with pytest.raises(ConfigError, match=r"^config.dataset.task='nope' is no known task"):
        task_dataset.TextTask.check_config(config)
    with pytest.raises(ConfigError, match="config.dataset.inputs_length"):
        make(polarity_dir, inputs_length=0)
    with pytest.raises(ConfigError, match="config.dataset.vocab_path"):
        make(polarity_dir, vocab_path="")
    with pytest.raises(ConfigError) as error:
        make(str(tmp_path), vocab_path=os.path.join(polarity_dir, "spm.model")).eval_examples()
    message = str(error.value)
    assert "\n" not in message and os.path.join(str(tmp_path), "eval.tsv") in message
    assert "python -m launch.prepare_data polarity --out_dir=" in message


def test_polarity_preparation(tmp_path):
    """The corpus format (fastText labels, Windows-1252) read from a wheel-like zip."""
    import zipfile

    lines = [f"__label__neg bad film {i} ." for i in range(10)]
    lines += [f"__label__pos good film {i} \x97 caf\xe9 ." for i in range(10)]
    wheel = tmp_path / "gensim-0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(polarity.MEMBER, "\n".join(lines).encode("latin-1") + b"\n")
    out = str(tmp_path / "out")
    files = polarity.prepare(out, seed=0, source=str(wheel))
    train = polarity.read_split(out, "train")
    held_out = polarity.read_split(out, "eval")
    assert (len(train), len(held_out)) == (18, 2)
    assert sorted(e["label"] for e in held_out) == [0, 1]
    assert any(e["sentence"].endswith("— café .") for e in train + held_out)
    before = {p: os.path.getmtime(p) for p in files.values()}
    assert polarity.prepare(out, seed=0, source="does-not-matter") == files  # reused
    assert {p: os.path.getmtime(p) for p in files.values()} == before


def test_decode_texts_shards_each_eval_batch_over_the_mesh(polarity_dir, monkeypatch):
    """Decode-at-eval feeds `decode_batch` the eval batch sharded over `data` (each device
    its rows; on several hosts the rows of all), and gets the same texts as one device."""
    ds = make(polarity_dir, eval_batch=4)
    config = test_decoding.tiny_config()
    config.vocab_size = ds.meta["vocab_size"]
    model = t5_model.T5Model(config, {})
    params = test_decoding.init_params(model)
    settings = schema.eval_entry("decoding", "config.evals.decode")
    shardings = []
    decode_batch = decoding.decode_batch

    def spy(model, params, batch, *args, **kwargs):
        shardings.append(batch["encoder_input_tokens"].sharding)
        return decode_batch(model, params, batch, *args, **kwargs)

    monkeypatch.setattr(decoding, "decode_batch", spy)
    both, one = (experiment_lib.make_mesh(jax.devices()[:n]) for n in (2, 1))
    texts = decoding_eval.decode_texts(model, params, ds, settings, both)
    assert len(texts) == 10
    assert texts == decoding_eval.decode_texts(model, params, ds, settings, one)
    assert shardings == [pipeline.data_sharding(both)] * 3 + [pipeline.data_sharding(one)] * 3
