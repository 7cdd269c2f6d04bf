"""T5's text formats for its fine-tuning tasks: preprocessors, post-processors, golds.

A preprocessor turns one data set example (decoded to Python values) into
`{"inputs": str, "targets": str, ...}` in T5's format plus what scoring needs
(`label`, all gold `answers`, MultiRC's question `group`); a post-processor turns the
model's decoded text back into a label id (-1 for anything else), a float (STS-B) or an
answer; a gold function gives what a metric compares it with. `tasks` puts them
together into registered `Task`s.
"""

from __future__ import annotations

import functools
import re
import string
from typing import Any, Callable, Hashable, Mapping, Sequence

from framework.errors import DataError
from framework.metrics import text_metrics

Example = Mapping[str, Any]
MetricFn = Callable[[Sequence[Any], Sequence[Any]], dict[str, float]]
UNKNOWN_LABEL = "<unk>"  # T5's target for an example without a label (test splits)

# ---------------------------------------------------------------- text helpers

_PUNCTUATION = re.compile("([" + re.escape(string.punctuation) + "])")


def pad_punctuation(text: str) -> str:
    """Spaces around ASCII punctuation, single spaces (T5's SQuAD text)."""
    return " ".join(_PUNCTUATION.sub(r" \1 ", text).split())


def _label_text(label: int, label_names: Sequence[str]) -> str:
    return UNKNOWN_LABEL if label < 0 else label_names[label]


def class_id(text: str, label_names: Sequence[str]) -> int:
    """Index of a decoded label in `label_names`, -1 for anything else (always wrong)."""
    text = text.strip()
    return label_names.index(text) if text in label_names else -1


def to_float(text: str, default: float = -1.0) -> float:
    """A decoded number (STS-B), `default` when the text is none."""
    try:
        return float(text.strip())
    except ValueError:
        return default


# ---------------------------------------------------------------- preprocessors


def glue_text(
    example: Example, benchmark: str, label_names: Sequence[str], features: Sequence[str]
) -> dict[str, Any]:
    """T5's GLUE format: "<benchmark> <feature>: <text> ..." -> the label's name."""
    parts = [benchmark]
    for key in features:
        parts += [f"{key}:", str(example[key])]
    label = int(example["label"])
    return {
        "inputs": " ".join(parts),
        "targets": _label_text(label, label_names),
        "label": label,
        "idx": example.get("idx"),
    }


def stsb_text(example: Example) -> dict[str, Any]:
    """STS-B: the similarity rounded to the nearest 0.2, as text with one decimal."""
    inputs = f"stsb sentence1: {example['sentence1']} sentence2: {example['sentence2']}"
    score = float(example["label"])
    return {
        "inputs": inputs,
        "targets": f"{round(score * 5) / 5:.1f}",
        "label": score,
        "idx": example.get("idx"),
    }


_MULTIRC_MARKUP = (re.compile(r"<br>"), re.compile(r"</?b>"))


def multirc_text(example: Example) -> dict[str, Any]:
    """MultiRC: one answer-option per example, HTML markup removed; grouped by question."""
    out = glue_text(example, "multirc", ("False", "True"), ("question", "answer", "paragraph"))
    out["inputs"] = _MULTIRC_MARKUP[1].sub("", _MULTIRC_MARKUP[0].sub(" ", out["inputs"]))
    idx = example["idx"]
    out["group"] = (int(idx["paragraph"]), int(idx["question"]))
    return out


def _record_passage(passage: str) -> str:
    passage = re.sub(r"(\.|\?|\!|\"|\')\n@highlight\n", r"\1 ", passage)
    return re.sub(r"\n@highlight\n", ". ", passage)


def record_text(example: Example) -> dict[str, Any]:
    """ReCoRD: "record query: ... entities: a, b passage: ..." -> the first gold entity."""
    answers = [str(a) for a in example["answers"]]
    inputs = (
        f"record query: {example['query']} entities: {', '.join(example['entities'])} "
        f"passage: {_record_passage(example['passage'])}"
    )
    return {
        "inputs": inputs,
        "targets": answers[0] if answers else UNKNOWN_LABEL,
        "answers": answers,
        "idx": example.get("idx"),
    }


def record_train(example: Example) -> list[dict[str, Any]]:
    """ReCoRD training: the query once per gold entity (T5's `record` preprocessor)."""
    out = record_text(example)
    return [{**out, "targets": answer} for answer in out["answers"]]


def _mark_pronoun(text: str, pronoun: str, index: int) -> str:
    """`text` with the occurrence of `pronoun` nearest to word `index` as *pronoun*.

    Nearest rather than exact because a few WSC examples' indices are off by a word or
    count `him,"` as the word (T5 special-cases them).
    """
    best = None
    for match in re.finditer(r"(?<!\w)" + re.escape(pronoun) + r"(?!\w)", text, re.IGNORECASE):
        word = len(text[: match.start()].split())
        if best is None or abs(word - index) < abs(best[0] - index):
            best = (word, match)
    if best is None:
        raise DataError(f"WSC pronoun {pronoun!r} is not in {text!r}")
    match = best[1]
    return f"{text[: match.start()]}*{match.group(0)}*{text[match.end() :]}"


def wsc_text(example: Example) -> dict[str, Any]:
    """T5's simple WSC: "wsc: ... *pronoun* ..." -> the candidate referent's text."""
    inputs = _mark_pronoun(
        str(example["text"]), str(example["span2_text"]), int(example["span2_index"])
    )
    return {
        "inputs": f"wsc: {inputs}",
        "targets": str(example["span1_text"]),
        "label": int(example.get("label", 0)),
        "idx": example.get("idx"),
    }


def wsc_train(example: Example) -> list[dict[str, Any]]:
    """WSC training: only examples whose candidate is the pronoun's referent."""
    return [wsc_text(example)] if int(example.get("label", 0)) == 1 else []


def squad_text(example: Example) -> dict[str, Any]:
    """SQuAD v1.1: "question: ... context: ..." (punctuation padded) -> the first answer."""
    answers = [pad_punctuation(a) for a in example["answers"]["text"]]
    inputs = (
        f"question: {pad_punctuation(example['question'])} "
        f"context: {pad_punctuation(example['context'])}"
    )
    return {
        "inputs": inputs,
        "targets": answers[0] if answers else "",
        "answers": answers,
        "id": example.get("id"),
    }


def trivia_qa_text(example: Example) -> dict[str, Any]:
    """Closed-book TriviaQA: "trivia_qa question: ..." -> the answer's value; all aliases
    (and the value) are gold."""
    answer = example["answer"]
    value = str(answer["value"])
    golds = list(dict.fromkeys([*map(str, answer.get("aliases", [])), value]))
    return {
        "inputs": f"trivia_qa question: {example['question']}",
        "targets": value,
        "answers": golds,
        "id": example.get("question_id"),
    }


# ---------------------------------------------------------------- post-processors and golds


def labelled(label_names: Sequence[str]) -> Callable[[str, Example | None], int]:
    def postprocess(text: str, example: Example | None = None) -> int:
        return class_id(text, label_names)

    return postprocess


def stsb_postprocess(text: str, example: Example | None = None) -> float:
    return to_float(text)


def answer_postprocess(text: str, example: Example | None = None) -> str:
    return text.strip()


_DETERMINERS = frozenset(
    "a an few her his each every many much my our some that the their these this those "
    "which whose your".split()
)


def _wsc_clean(text: str) -> str:
    return " ".join(w for w in text.strip().lower().split(" ") if w not in _DETERMINERS)


def wsc_postprocess(text: str, example: Example | None = None) -> int:
    """1 if the decoded text names the example's candidate (ignoring case and
    determiners; either's words contain the other's), else 0; -1 for empty text."""
    prediction = _wsc_clean(text)
    if not prediction:
        return -1
    if example is None:
        raise ValueError("the WSC post-processor needs the example (its candidate)")
    referent = _wsc_clean(str(example["targets"]))
    if ("'" in prediction) != ("'" in referent):  # "Bob" is not "Bob's hat"
        return 0
    said, meant = set(prediction.split(" ")), set(referent.split(" "))
    return int(said <= meant or meant <= said)


def label_gold(example: Example) -> int:
    return int(example["label"])


def targets_float(example: Example) -> float:
    """T5 scores STS-B against the rounded target it trained on."""
    return to_float(str(example["targets"]))


def answers_gold(example: Example) -> list[str]:
    return list(example["answers"])


def multirc_gold(example: Example) -> tuple[Hashable, int]:
    return tuple(example["group"]), int(example["label"])


# ---------------------------------------------------------------- metric adapters


def macro_f1_of(num_classes: int) -> MetricFn:
    return functools.partial(text_metrics.macro_f1, num_classes=num_classes)


def multirc_metrics(golds: Sequence[tuple[Hashable, int]], predictions: Sequence[int]):
    groups = [g for g, _ in golds]
    return text_metrics.multirc([label for _, label in golds], predictions, groups)
