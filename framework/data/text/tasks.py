"""T5's text-to-text fine-tuning tasks and mixtures, registered by name.

A `Task` says where its data is, how one example becomes text (`preprocess`, in T5's
formats, see `task_formats`), how decoded text is read back (`postprocess`) and scored
against `gold(example)` with the task's metric functions (`framework.metrics.
text_metrics`, in percent), e.g.

  glue/sst2    "sst2 sentence: it 's a charming journey ."   -> "positive"
  glue/mnli    "mnli hypothesis: ... premise: ..."            -> "entailment"
  glue/stsb    "stsb sentence1: ... sentence2: ..."           -> "3.4" (nearest 0.2)
  super_glue/wsc  "wsc: Mitchell asked Tom if *he* could ..." -> "Tom" (the candidate)
  squad        "question: ... context: ..."                   -> the first gold answer
  trivia_qa    "trivia_qa question: ..."                      -> the answer's value

Training examples come from `train_examples(example)`: the preprocessed example,
except for ReCoRD (one example per gold entity, as in T5) and WSC (only the examples
whose candidate is the right referent, T5's `wsc_simple` training set).

Tasks and mixtures are registered by name in `TASKS`, a `framework.config.registry.
Registry` (a project registers its own the same way, named in its `REGISTERED` manifest
under "task"); `get_task` and `get_mixture` give a one-line ConfigError naming the
config key and the known names. `glue` and `super_glue` train on their tasks with
example-proportional rates (`mixing_rates`: each task's rate is min(number of training
examples, cap), T5's "examples-proportional mixing" with its limit K, default 2^19; the
cap sits above every GLUE/SuperGLUE training set, so they mix in proportion to their
sizes) and evaluate each task on its own. As in T5, `glue` trains no WNLI and evaluates
MNLI on both validation sets; T5's SuperGLUE mixture also trains on DPR, which
`super_glue` leaves out.

The `polarity` task reads the movie-review sentences prepared by
`python -m launch.prepare_data polarity` (`framework.data.text.polarity`).

Local classification tasks share one folder format (`framework.data.text.
classification`: train.jsonl / eval.jsonl of {"text", "label"}, and task.json) and one
factory, `classification_task` ("<name> <field>: <text>" -> the label string, accuracy
and macro-F1): `fine_food`, the Amazon fine-food reviews of
`python -m launch.prepare_data fine_food_reviews` (`framework.data.text.fine_food`),
and a user's own task: a name that is not registered is looked up as a prepared folder,
`data/<name>` or the dataset's `data_dir` (`local_classification`), made by
`python -m launch.prepare_data text_classification --input=... --name=NAME`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable, Mapping, Sequence

from framework.config import registry
from framework.data.text import classification, fine_food, polarity
from framework.data.text import task_formats as fmt
from framework.data.text.task_formats import Example, MetricFn
from framework.errors import ConfigError
from framework.metrics import text_metrics

DEFAULT_RATE_CAP = 2**19
TASK_KEY = "config.dataset.task"


@dataclasses.dataclass(frozen=True)
class Task:
    """One text-to-text task: where its data is, its text format and its metrics.

    `tfds_name` (`glue/sst2:2.0.0`) names the tfds data set with its version; a task
    on local files has none and reads them with `read_local(folder, split)` from
    `local_dir` (or the dataset's `data_dir`); `splits` lists a local task's splits.
    `labels`: a classification task's label strings (its targets), else empty.
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
    splits: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()

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


# ---------------------------------------------------------------- the registry

# Tasks and mixtures by name (a name is one or the other): one registry, so that looking
# up a known name never misses and imports every registering module.
TASKS: registry.Registry[Task | Mixture] = registry.Registry("task")


def register(entry: Task | Mixture) -> Task | Mixture:
    """Registers a task or mixture under its name (twice is an error)."""
    return TASKS.register(entry.name)(entry)


def _lookup(name: str) -> Task | Mixture | None:
    try:
        return TASKS.get(name)
    except ConfigError:  # unknown: listed by the caller, with the config key
        return None


def _names(kind: type) -> list[str]:
    return [name for name in TASKS.names() if isinstance(TASKS.get(name), kind)]


def known_names() -> list[str]:
    """Every task and mixture name (tasks first)."""
    return _names(Task) + _names(Mixture)


def _unknown(name: str, what: str, known: list[str], key: str, data_dir: str) -> ConfigError:
    message = f"{key}={name!r} is no known {what}; known: {', '.join(known)}"
    if _lookup(name) is None:  # not a mixture asked for as a task
        folder = data_dir or classification.default_dir(name)
        message += (
            f"; or a task of your own labelled text, prepared in {folder} with "
            f"`{classification.IMPORT_COMMAND.format(name=name)}`"
        )
    return ConfigError(message)


def get_task(name: str, key: str = TASK_KEY, data_dir: str = "") -> Task:
    """The registered task `name`, else a user's task prepared in `data_dir` (default
    `data/<name>`, see `local_classification`); a one-line ConfigError naming `key`
    otherwise."""
    task = _lookup(name)
    if isinstance(task, Task):
        return task
    local = local_classification(name, data_dir) if task is None else None
    if local is None:
        raise _unknown(name, "task", _names(Task), key, data_dir)
    return local


def get_mixture(name: str, key: str = TASK_KEY, data_dir: str = "") -> Mixture:
    """A mixture by name, or a task (a user's prepared one included, see `get_task`) as a
    mixture of itself; one-line ConfigError if neither."""
    entry = _lookup(name)
    if entry is None and local_classification(name, data_dir) is None:
        raise _unknown(name, "task or mixture", known_names(), key, data_dir)
    return entry if isinstance(entry, Mixture) else Mixture(name, (name,), (name,))


def local_data_dir(name: str) -> str:
    """Where a task's local files are by default: a registered local task's `local_dir`,
    `data/<name>` for a name that is not registered (a user's task); '' for tfds tasks."""
    entry = _lookup(name)
    if entry is None:
        return classification.default_dir(name)
    return entry.local_dir if isinstance(entry, Task) else ""


def is_classification(name: str) -> bool:
    """Whether `name` is a task with label targets: a registered one with `labels`, or a
    name that is not registered (a user's classification task)."""
    entry = _lookup(name)
    return entry is None or (isinstance(entry, Task) and bool(entry.labels))


def classification_task(
    name: str,
    labels: Sequence[str],
    *,
    field: str = "text",
    local_dir: str = "",
    prepare: str = "",
) -> Task:
    """A task on a classification folder (`classification`): "<name> <field>: <text>" ->
    the label string, accuracy and macro-F1; `prepare` is the command that makes the
    folder (`{out_dir}` stands for it), shown when it is missing."""
    labels = tuple(labels)
    return Task(
        name=name,
        preprocess=functools.partial(
            classification.text_format, prefix=name, field=field, labels=labels
        ),
        postprocess=fmt.labelled(labels),
        gold=fmt.label_gold,
        metric_fns=(text_metrics.accuracy, fmt.macro_f1_of(len(labels))),
        eval_split="eval",
        read_local=functools.partial(classification.read_split, prepare=prepare),
        local_dir=local_dir,
        splits=classification.SPLITS,
        labels=labels,
    )


@functools.lru_cache(maxsize=32)
def _user_task(name: str, labels: tuple[str, ...], folder: str) -> Task:
    prepare = classification.IMPORT_COMMAND.format(name=name) + " --out_dir={out_dir}"
    return classification_task(name, labels, local_dir=folder, prepare=prepare)


def local_classification(name: str, data_dir: str = "") -> Task | None:
    """A user's classification task `name` (not registered) prepared in `data_dir`, default
    `data/<name>`: built from its task.json; None when that folder holds no task.json."""
    folder = data_dir or classification.default_dir(name)
    if not classification.NAME_PATTERN.fullmatch(name) or not os.path.isfile(
        os.path.join(folder, classification.TASK_FILE)
    ):
        return None
    info = classification.read_info(folder)
    if info.get("name") != name:
        raise ConfigError(
            f"{os.path.join(folder, classification.TASK_FILE)} is task {info.get('name')!r}, "
            f"not {name!r}: set {TASK_KEY}={info.get('name')} or point "
            "config.dataset.data_dir at the folder of this one"
        )
    return _user_task(name, tuple(info["labels"]), folder)


def mixing_rates(num_examples: Mapping[str, int], cap: int = DEFAULT_RATE_CAP) -> dict[str, float]:
    """Example-proportional mixing: each task's rate is min(its training examples, cap)."""
    if cap <= 0:
        raise ValueError(f"the rate cap must be positive, got {cap}")
    return {name: float(min(n, cap)) for name, n in num_examples.items()}


# ---------------------------------------------------------------- T5's tasks

GLUE_VERSION = "2.0.0"
SUPER_GLUE_VERSION = "1.0.2"
_VERSIONS = {"glue": GLUE_VERSION, "super_glue": SUPER_GLUE_VERSION}
_ACC, _F1 = text_metrics.accuracy, text_metrics.f1
_NLI3 = ("entailment", "neutral", "contradiction")
_NLI2 = ("entailment", "not_entailment")
_BOOL = ("False", "True")


def _classification(
    benchmark: str,
    config: str,
    labels: Sequence[str],
    features: Sequence[str],
    metric_fns: tuple[MetricFn, ...] = (_ACC,),
    name: str = "",
    **kwargs: Any,
) -> Task:
    """The GLUE-style task `benchmark/config` (tfds `benchmark/config:version`):
    "<config> <feature>: <text> ..." -> the label's name."""
    preprocess = functools.partial(
        fmt.glue_text, benchmark=config, label_names=tuple(labels), features=tuple(features)
    )
    return register(
        Task(
            name=name or f"{benchmark}/{config}",
            preprocess=preprocess,
            postprocess=fmt.labelled(tuple(labels)),
            gold=fmt.label_gold,
            metric_fns=metric_fns,
            tfds_name=f"{benchmark}/{config}:{_VERSIONS[benchmark]}",
            labels=tuple(labels),
            **kwargs,
        )
    )


_classification("glue", "cola", ("unacceptable", "acceptable"), ("sentence",),
                (text_metrics.matthews_corrcoef,))  # fmt: skip
_classification("glue", "sst2", ("negative", "positive"), ("sentence",))
_classification("glue", "mrpc", ("not_equivalent", "equivalent"), ("sentence1", "sentence2"),
                (_F1, _ACC))  # fmt: skip
_classification("glue", "qqp", ("not_duplicate", "duplicate"), ("question1", "question2"),
                (_F1, _ACC))  # fmt: skip
_classification("glue", "qnli", _NLI2, ("question", "sentence"))
_classification("glue", "rte", _NLI2, ("sentence1", "sentence2"))
_classification("glue", "wnli", ("not_entailment", "entailment"), ("sentence1", "sentence2"))
for _name, _eval in (("mnli", "validation_matched"), ("mnli_mismatched", "validation_mismatched")):
    _classification("glue", "mnli", _NLI3, ("hypothesis", "premise"), name=f"glue/{_name}",
                    eval_split=_eval)  # fmt: skip
register(
    Task(
        "glue/stsb",
        fmt.stsb_text,
        fmt.stsb_postprocess,
        fmt.targets_float,
        (text_metrics.pearson_corrcoef, text_metrics.spearman_corrcoef),
        f"glue/stsb:{GLUE_VERSION}",
    )
)
_classification("super_glue", "boolq", _BOOL, ("passage", "question"))
_classification("super_glue", "cb", ("entailment", "contradiction", "neutral"),
                ("hypothesis", "premise"), (fmt.macro_f1_of(3), _ACC))  # fmt: skip
_classification("super_glue", "copa", ("choice1", "choice2"),
                ("choice1", "choice2", "premise", "question"))  # fmt: skip
_classification("super_glue", "rte", _NLI2, ("hypothesis", "premise"))
_classification("super_glue", "wic", _BOOL, ("sentence1", "sentence2", "word"))
_SG = f":{SUPER_GLUE_VERSION}"
register(
    Task(
        "super_glue/multirc",
        fmt.multirc_text,
        fmt.labelled(_BOOL),
        fmt.multirc_gold,
        (fmt.multirc_metrics,),
        "super_glue/multirc" + _SG,
    )
)
register(
    Task(
        "super_glue/record",
        fmt.record_text,
        fmt.answer_postprocess,
        fmt.answers_gold,
        (text_metrics.record,),
        "super_glue/record" + _SG,
        expand_train=fmt.record_train,
    )
)
register(
    Task(
        "super_glue/wsc",
        fmt.wsc_text,
        fmt.wsc_postprocess,
        fmt.label_gold,
        (_ACC,),
        "super_glue/wsc.fixed" + _SG,
        expand_train=fmt.wsc_train,
    )
)
for _name, _text, _metric, _tfds in (
    ("squad", fmt.squad_text, text_metrics.squad, "squad/v1.1:3.0.0"),
    (
        "trivia_qa",
        fmt.trivia_qa_text,
        text_metrics.trivia_qa,
        "trivia_qa/unfiltered.nocontext:1.1.0",
    ),
):
    register(Task(_name, _text, fmt.answer_postprocess, fmt.answers_gold, (_metric,), _tfds))
register(
    Task(
        "polarity",
        functools.partial(
            fmt.glue_text, benchmark="polarity", label_names=polarity.LABELS, features=("sentence",)
        ),
        fmt.labelled(polarity.LABELS),
        fmt.label_gold,
        (_ACC,),
        eval_split="eval",
        read_local=polarity.read_split,
        local_dir=polarity.DEFAULT_DIR,
        splits=polarity.SPLITS,
        labels=polarity.LABELS,
    )
)
register(
    classification_task(
        fine_food.NAME,
        fine_food.LABELS,
        field=fine_food.FIELD,
        local_dir=fine_food.DEFAULT_DIR,
        prepare=fine_food.PREPARE_COMMAND,
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
register(Mixture("glue", _GLUE_TRAIN, _GLUE_TRAIN + ("glue/mnli_mismatched",)))
register(Mixture("super_glue", _SUPER_GLUE, _SUPER_GLUE))
