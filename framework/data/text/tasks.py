"""T5's text-to-text fine-tuning tasks: preprocessors, post-processors, metrics, mixtures.

A `Task` turns one example of a data set (a tfds example decoded to Python values by
`decode_example`, or a row of a prepared local file) into text: `preprocess(example)`
gives `{"inputs": str, "targets": str, ...}` in T5's formats, e.g.

  glue/sst2    "sst2 sentence: it 's a charming journey ."   -> "positive"
  glue/mnli    "mnli hypothesis: ... premise: ..."            -> "entailment"
  glue/stsb    "stsb sentence1: ... sentence2: ..."           -> "3.4" (nearest 0.2)
  super_glue/wsc  "wsc: Mitchell asked Tom if *he* could ..." -> "Tom" (the candidate)
  squad        "question: ... context: ..."                   -> the first gold answer
  trivia_qa    "trivia_qa question: ..."                      -> the answer's value

plus what scoring needs (`label`, all gold `answers`, MultiRC's question `group`).
The model's decoded output goes through `postprocess(text, example)` (label text ->
label id, -1 for anything else; STS-B -> float; answers stay text), and
`score(examples, texts)` compares it with `gold(example)` using the task's metric
functions (`framework.metrics.text_metrics`, in percent).

Training examples come from `train_examples(example)`: the preprocessed example,
except for ReCoRD (one example per gold entity, as in T5) and WSC (only the examples
whose candidate is the right referent, T5's `wsc_simple` training set).

Tasks are registered by name in `TASKS` (`get_task` gives a one-line ConfigError
listing them for an unknown name); `MIXTURES` holds `glue` and `super_glue`, which
train on their tasks with example-proportional rates (`mixing_rates`: each task's
rate is min(number of training examples, cap), T5's "examples-proportional mixing"
with its limit K, default 2^19; the cap sits above every GLUE/SuperGLUE training set,
so they mix in proportion to their sizes) and evaluate each task on its own. As in
T5, `glue` trains no WNLI and evaluates MNLI on both validation sets; T5's SuperGLUE
mixture also trains on DPR, which `super_glue` leaves out.

The `polarity` task reads the movie-review sentences prepared by
`python -m launch.prepare_data polarity` (`framework.data.text.polarity`).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import string
from typing import Any, Callable, Hashable, Mapping, Sequence

import numpy as np

from framework.data.text import polarity
from framework.errors import ConfigError, DataError
from framework.metrics import text_metrics

Example = Mapping[str, Any]
MetricFn = Callable[[Sequence[Any], Sequence[Any]], dict[str, float]]
UNKNOWN_LABEL = "<unk>"  # T5's target for an example without a label (test splits)
DEFAULT_RATE_CAP = 2**19


@dataclasses.dataclass(frozen=True)
class Task:
    """One text-to-text task: where its data is, its text format and its metrics.

    `tfds_name` (`glue/sst2:2.0.0`) names the tfds data set with its version; a task
    on local files has none and reads them with `read_local(folder, split)` from
    `local_dir` (or the dataset's `data_dir`).
    """

    name: str
    preprocess: Callable[[Example], dict[str, Any]]
    postprocess: Callable[[str, Example | None], Any]
    gold: Callable[[Example], Any]
    metric_fns: tuple[MetricFn, ...]
    tfds_name: str = ""
    train_split: str = "train"
    eval_split: str = "validation"
    expand_train: Callable[[Example], list[dict[str, Any]]] | None = None
    read_local: Callable[[str, str], list[dict[str, Any]]] | None = None
    local_dir: str = ""

    @property
    def builder_name(self) -> str:
        """The version-free tfds name (`glue/sst2`); '' for a local-file task."""
        return self.tfds_name.split(":")[0]

    def train_examples(self, example: Example) -> list[dict[str, Any]]:
        """The training examples one data set example gives (usually one)."""
        if self.expand_train is not None:
            return self.expand_train(example)
        return [self.preprocess(example)]

    def score(self, examples: Sequence[Example], texts: Sequence[str]) -> dict[str, float]:
        """Metrics of decoded `texts` against the preprocessed eval `examples`, in order."""
        if len(examples) != len(texts):
            raise ValueError(f"{len(texts)} predictions for {len(examples)} examples")
        predictions = [self.postprocess(t, e) for t, e in zip(texts, examples)]
        golds = [self.gold(e) for e in examples]
        scores: dict[str, float] = {}
        for fn in self.metric_fns:
            scores.update(fn(golds, predictions))
        return scores


@dataclasses.dataclass(frozen=True)
class Mixture:
    """Tasks trained together (example-proportional rates) and the tasks evaluated."""

    name: str
    train_tasks: tuple[str, ...]
    eval_tasks: tuple[str, ...]


# ---------------------------------------------------------------- decoding and text helpers


def decode_example(value: Any) -> Any:
    """A tfds numpy example as Python values: bytes -> str, arrays -> lists, scalars."""
    if isinstance(value, Mapping):
        return {k: decode_example(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        return [decode_example(v) for v in value.tolist()] if value.ndim else value.item()
    if isinstance(value, (list, tuple)):
        return [decode_example(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


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


def _labelled(label_names: Sequence[str]) -> Callable[[str, Example | None], int]:
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


def _label_gold(example: Example) -> int:
    return int(example["label"])


def _targets_float(example: Example) -> float:
    """T5 scores STS-B against the rounded target it trained on."""
    return to_float(str(example["targets"]))


def _answers_gold(example: Example) -> list[str]:
    return list(example["answers"])


def _multirc_gold(example: Example) -> tuple[Hashable, int]:
    return tuple(example["group"]), int(example["label"])


# ---------------------------------------------------------------- metric adapters


def _macro_f1(num_classes: int) -> MetricFn:
    return functools.partial(text_metrics.macro_f1, num_classes=num_classes)


def _multirc_metrics(golds: Sequence[tuple[Hashable, int]], predictions: Sequence[int]):
    groups = [g for g, _ in golds]
    return text_metrics.multirc([label for _, label in golds], predictions, groups)


# ---------------------------------------------------------------- the registry

TASKS: dict[str, Task] = {}
MIXTURES: dict[str, Mixture] = {}


def register(task: Task) -> Task:
    if task.name in TASKS or task.name in MIXTURES:
        raise ValueError(f"task {task.name!r} is registered twice")
    TASKS[task.name] = task
    return task


def _classification(
    name: str,
    tfds_name: str,
    benchmark: str,
    label_names: Sequence[str],
    features: Sequence[str],
    metric_fns: tuple[MetricFn, ...] = (text_metrics.accuracy,),
    **kwargs: Any,
) -> Task:
    preprocess = functools.partial(
        glue_text, benchmark=benchmark, label_names=tuple(label_names), features=tuple(features)
    )
    return register(
        Task(
            name=name,
            preprocess=preprocess,
            postprocess=_labelled(tuple(label_names)),
            gold=_label_gold,
            metric_fns=metric_fns,
            tfds_name=tfds_name,
            **kwargs,
        )
    )


GLUE_VERSION = "2.0.0"
SUPER_GLUE_VERSION = "1.0.2"
_ACC, _F1 = text_metrics.accuracy, text_metrics.f1
_NLI3 = ("entailment", "neutral", "contradiction")
_NLI2 = ("entailment", "not_entailment")
_BOOL = ("False", "True")


def _glue(
    config: str,
    labels: Sequence[str],
    features: Sequence[str],
    metrics: tuple[MetricFn, ...] = (_ACC,),
    **kw: Any,
) -> Task:
    return _classification(
        f"glue/{config}", f"glue/{config}:{GLUE_VERSION}", config, labels, features, metrics, **kw
    )


_glue("cola", ("unacceptable", "acceptable"), ("sentence",), (text_metrics.matthews_corrcoef,))
_glue("sst2", ("negative", "positive"), ("sentence",))
_glue("mrpc", ("not_equivalent", "equivalent"), ("sentence1", "sentence2"), (_F1, _ACC))
_glue("qqp", ("not_duplicate", "duplicate"), ("question1", "question2"), (_F1, _ACC))
_glue("qnli", _NLI2, ("question", "sentence"))
_glue("rte", _NLI2, ("sentence1", "sentence2"))
_glue("wnli", ("not_entailment", "entailment"), ("sentence1", "sentence2"))
_MNLI = dict(benchmark="mnli", label_names=_NLI3, features=("hypothesis", "premise"))
_classification("glue/mnli", f"glue/mnli:{GLUE_VERSION}", eval_split="validation_matched", **_MNLI)
_classification(
    "glue/mnli_mismatched",
    f"glue/mnli:{GLUE_VERSION}",
    eval_split="validation_mismatched",
    **_MNLI,
)
register(
    Task(
        name="glue/stsb",
        preprocess=stsb_text,
        postprocess=stsb_postprocess,
        gold=_targets_float,
        metric_fns=(text_metrics.pearson_corrcoef, text_metrics.spearman_corrcoef),
        tfds_name=f"glue/stsb:{GLUE_VERSION}",
    )
)


def _super_glue(
    config: str,
    labels: Sequence[str],
    features: Sequence[str],
    metrics: tuple[MetricFn, ...] = (_ACC,),
    **kw: Any,
) -> Task:
    return _classification(
        f"super_glue/{config}",
        f"super_glue/{config}:{SUPER_GLUE_VERSION}",
        config,
        labels,
        features,
        metrics,
        **kw,
    )


_super_glue("boolq", _BOOL, ("passage", "question"))
_super_glue(
    "cb",
    ("entailment", "contradiction", "neutral"),
    ("hypothesis", "premise"),
    (_macro_f1(3), _ACC),
)
_super_glue("copa", ("choice1", "choice2"), ("choice1", "choice2", "premise", "question"))
_super_glue("rte", _NLI2, ("hypothesis", "premise"))
_super_glue("wic", _BOOL, ("sentence1", "sentence2", "word"))
register(
    Task(
        name="super_glue/multirc",
        preprocess=multirc_text,
        postprocess=_labelled(_BOOL),
        gold=_multirc_gold,
        metric_fns=(_multirc_metrics,),
        tfds_name=f"super_glue/multirc:{SUPER_GLUE_VERSION}",
    )
)
register(
    Task(
        name="super_glue/record",
        preprocess=record_text,
        postprocess=answer_postprocess,
        gold=_answers_gold,
        metric_fns=(text_metrics.record,),
        tfds_name=f"super_glue/record:{SUPER_GLUE_VERSION}",
        expand_train=record_train,
    )
)
register(
    Task(
        name="super_glue/wsc",
        preprocess=wsc_text,
        postprocess=wsc_postprocess,
        gold=_label_gold,
        metric_fns=(_ACC,),
        tfds_name=f"super_glue/wsc.fixed:{SUPER_GLUE_VERSION}",
        expand_train=wsc_train,
    )
)
register(
    Task(
        name="squad",
        preprocess=squad_text,
        postprocess=answer_postprocess,
        gold=_answers_gold,
        metric_fns=(text_metrics.squad,),
        tfds_name="squad/v1.1:3.0.0",
    )
)
register(
    Task(
        name="trivia_qa",
        preprocess=trivia_qa_text,
        postprocess=answer_postprocess,
        gold=_answers_gold,
        metric_fns=(text_metrics.trivia_qa,),
        tfds_name="trivia_qa/unfiltered.nocontext:1.1.0",
    )
)
register(
    Task(
        name="polarity",
        preprocess=functools.partial(
            glue_text, benchmark="polarity", label_names=polarity.LABELS, features=("sentence",)
        ),
        postprocess=_labelled(polarity.LABELS),
        gold=_label_gold,
        metric_fns=(_ACC,),
        train_split="train",
        eval_split="eval",
        read_local=polarity.read_split,
        local_dir=polarity.DEFAULT_DIR,
    )
)

# T5's GLUE mixture trains no WNLI (it trains WSC/DPR instead) and evaluates MNLI on
# both validation sets; its SuperGLUE mixture also trains on DPR, which is left out.
_GLUE_TRAIN = tuple(
    f"glue/{t}" for t in ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte")
)
_SUPER_GLUE = tuple(
    f"super_glue/{t}" for t in ("boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc")
)
MIXTURES["glue"] = Mixture("glue", _GLUE_TRAIN, _GLUE_TRAIN + ("glue/mnli_mismatched",))
MIXTURES["super_glue"] = Mixture("super_glue", _SUPER_GLUE, _SUPER_GLUE)


def known_names() -> list[str]:
    """Every task and mixture name."""
    return sorted(TASKS) + sorted(MIXTURES)


def get_task(name: str, key: str = "config.dataset.task") -> Task:
    """The registered task `name`; a one-line ConfigError naming `key` otherwise."""
    if name not in TASKS:
        raise ConfigError(f"{key}={name!r} is no known task; known: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def get_mixture(name: str, key: str = "config.dataset.task") -> Mixture:
    """A mixture by name, or a task as a mixture of itself; one-line ConfigError if neither."""
    if name in MIXTURES:
        return MIXTURES[name]
    if name in TASKS:
        return Mixture(name, (name,), (name,))
    raise ConfigError(
        f"{key}={name!r} is no known task or mixture; known: {', '.join(known_names())}"
    )


def mixing_rates(num_examples: Mapping[str, int], cap: int = DEFAULT_RATE_CAP) -> dict[str, float]:
    """Example-proportional mixing: each task's rate is min(its training examples, cap)."""
    if cap <= 0:
        raise ValueError(f"the rate cap must be positive, got {cap}")
    return {name: float(min(n, cap)) for name, n in num_examples.items()}
