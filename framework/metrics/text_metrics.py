"""Metrics of T5's text-to-text tasks, in percent (0-100) as T5 reports them.

Every metric takes gold `targets` and `predictions` that are already post-processed
(label ids, floats or answer strings, see `framework.data.text.tasks`) and returns a
dict of named scores:

- classification: `accuracy`, binary `f1` (positive class 1), `macro_f1` (CB's
  unweighted mean of the per-class F1), `matthews_corrcoef` (CoLA). A prediction that
  is no label (-1, text the model should not have made) always counts as wrong.
- regression: `pearson_corrcoef`, `spearman_corrcoef` (STS-B).
- question answering: `squad` and `record` (SQuAD v1.1's answer normalisation) and
  `trivia_qa` (TriviaQA's): exact match `em` and token `f1`, each the maximum over the
  gold answers of a question, averaged over questions.
- `multirc`: `exact_match` (a question counts when all of its answer-options are
  right) and `f1a` (binary F1 over all answer-options).
- `glue_average` / `super_glue_average`: the benchmark scores from per-task scores.

scikit-learn and scipy are imported when first used, so importing this module is cheap.
"""

from __future__ import annotations

import collections
import re
import string
from typing import Any, Callable, Hashable, Mapping, Sequence

import numpy as np

Scores = dict[str, float]

# ---------------------------------------------------------------- classification


def _labels(targets: Sequence[Any], predictions: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    if len(targets) != len(predictions):
        raise ValueError(f"{len(targets)} targets but {len(predictions)} predictions")
    if not len(targets):
        raise ValueError("no examples to score")
    return np.asarray(targets), np.asarray(predictions)


def accuracy(targets: Sequence[Any], predictions: Sequence[Any]) -> Scores:
    """Percent of predictions equal to their target."""
    t, p = _labels(targets, predictions)
    return {"accuracy": 100.0 * float(np.mean(t == p))}


def f1(targets: Sequence[int], predictions: Sequence[int]) -> Scores:
    """Binary F1 of class 1 (MRPC, QQP); a prediction that is neither 0 nor 1 is wrong."""
    from sklearn import metrics

    t, p = _labels(targets, predictions)
    p = np.where(np.isin(p, (0, 1)), p, 1 - t)  # invalid: the wrong class
    return {"f1": 100.0 * float(metrics.f1_score(t, p, pos_label=1, zero_division=0.0))}


def macro_f1(targets: Sequence[int], predictions: Sequence[int], num_classes: int) -> Scores:
    """Unweighted mean of the per-class F1 over classes 0..num_classes-1 (CB)."""
    from sklearn import metrics

    t, p = _labels(targets, predictions)
    score = metrics.f1_score(
        t, p, labels=list(range(num_classes)), average="macro", zero_division=0.0
    )
    return {"macro_f1": 100.0 * float(score)}


def matthews_corrcoef(targets: Sequence[int], predictions: Sequence[int]) -> Scores:
    """Matthews correlation coefficient (CoLA), times 100."""
    from sklearn import metrics

    t, p = _labels(targets, predictions)
    return {"matthews_corrcoef": 100.0 * float(metrics.matthews_corrcoef(t, p))}


# ---------------------------------------------------------------- regression


def _correlation(name: str, fn: Callable, targets, predictions) -> Scores:
    t, p = _labels(targets, predictions)
    t, p = t.astype(np.float64), p.astype(np.float64)
    if np.ptp(t) == 0 or np.ptp(p) == 0:  # undefined: scipy warns and returns nan
        return {name: 0.0}
    return {name: 100.0 * float(fn(t, p)[0])}


def pearson_corrcoef(targets: Sequence[float], predictions: Sequence[float]) -> Scores:
    """Pearson correlation (STS-B), times 100; 0 when either side is constant."""
    from scipy import stats

    return _correlation("pearson_corrcoef", stats.pearsonr, targets, predictions)


def spearman_corrcoef(targets: Sequence[float], predictions: Sequence[float]) -> Scores:
    """Spearman rank correlation (STS-B), times 100; 0 when either side is constant."""
    from scipy import stats

    return _correlation("spearman_corrcoef", stats.spearmanr, targets, predictions)


# ---------------------------------------------------------------- question answering

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_SQUAD_PUNCTUATION = frozenset(string.punctuation)
_TRIVIA_QA_PUNCTUATION = frozenset(string.punctuation + "‘’´`_")


def normalize_squad(text: str) -> str:
    """SQuAD v1.1's normalisation: lower case, no punctuation, no a/an/the, single spaces."""
    text = "".join(c for c in text.lower() if c not in _SQUAD_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def normalize_trivia_qa(text: str) -> str:
    """TriviaQA's normalisation: as SQuAD's, but punctuation (and `_`) becomes a space."""
    text = "".join(" " if c in _TRIVIA_QA_PUNCTUATION else c for c in text.lower())
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(target: str, prediction: str) -> float:
    """F1 of the (normalised) tokens two answers share; 0 when they share none."""
    target_tokens, prediction_tokens = target.split(), prediction.split()
    same = sum(
        (collections.Counter(target_tokens) & collections.Counter(prediction_tokens)).values()
    )
    if not same:
        return 0.0
    precision, recall = same / len(prediction_tokens), same / len(target_tokens)
    return 2 * precision * recall / (precision + recall)


def _qa(
    targets: Sequence[Sequence[str]], predictions: Sequence[str], normalize: Callable[[str], str]
) -> Scores:
    if len(targets) != len(predictions):
        raise ValueError(f"{len(targets)} targets but {len(predictions)} predictions")
    if not len(targets):
        raise ValueError("no examples to score")
    em, f1_sum = 0.0, 0.0
    for answers, prediction in zip(targets, predictions):
        if isinstance(answers, str):
            raise TypeError("QA targets are lists of gold answers, got a string")
        if not answers:
            raise ValueError("a question without gold answers cannot be scored")
        golds = [normalize(a) for a in answers]
        guess = normalize(prediction)
        em += max(float(g == guess) for g in golds)
        f1_sum += max(token_f1(g, guess) for g in golds)
    return {"em": 100.0 * em / len(targets), "f1": 100.0 * f1_sum / len(targets)}


def squad(targets: Sequence[Sequence[str]], predictions: Sequence[str]) -> Scores:
    """SQuAD v1.1 exact match and token F1, each the max over a question's gold answers."""
    return _qa(targets, predictions, normalize_squad)


def trivia_qa(targets: Sequence[Sequence[str]], predictions: Sequence[str]) -> Scores:
    """TriviaQA exact match and token F1 (its normalisation), max over the answer aliases."""
    return _qa(targets, predictions, normalize_trivia_qa)


def record(targets: Sequence[Sequence[str]], predictions: Sequence[str]) -> Scores:
    """ReCoRD exact match and token F1, max over a query's gold entities (SQuAD's rules).

    One target per query: ReCoRD's training copies a query once per gold entity, its
    evaluation scores each query once.
    """
    return _qa(targets, predictions, normalize_squad)


# ---------------------------------------------------------------- MultiRC


def multirc(
    targets: Sequence[int], predictions: Sequence[int], groups: Sequence[Hashable]
) -> Scores:
    """MultiRC: `exact_match` over questions, `f1a` over all answer-options.

    `targets` and `predictions` are the 0/1 labels of the answer-options and `groups`
    names each option's question; a question is exactly matched when all of its options
    are predicted right.
    """
    t, p = _labels(targets, predictions)
    if len(groups) != len(t):
        raise ValueError(f"{len(groups)} groups for {len(t)} answer-options")
    right: dict[Hashable, bool] = {}
    for group, ok in zip(groups, (t == p).tolist()):
        right[group] = right.get(group, True) and ok
    exact = 100.0 * sum(right.values()) / len(right)
    return {"exact_match": exact, "f1a": f1(t, p)["f1"]}


# ---------------------------------------------------------------- benchmark averages

# Task name -> the tasks (registered names) whose metrics make up its score. As in
# T5's reports, MNLI's score is the mean of matched and mismatched accuracy, and GLUE's
# average leaves WNLI out (T5 trains no WNLI; the GLUE leaderboard counts it).
GLUE_TASKS: dict[str, tuple[str, ...]] = {
    "cola": ("glue/cola",),
    "sst2": ("glue/sst2",),
    "mrpc": ("glue/mrpc",),
    "stsb": ("glue/stsb",),
    "qqp": ("glue/qqp",),
    "mnli": ("glue/mnli", "glue/mnli_mismatched"),
    "qnli": ("glue/qnli",),
    "rte": ("glue/rte",),
}
WNLI = {"wnli": ("glue/wnli",)}
SUPER_GLUE_TASKS: dict[str, tuple[str, ...]] = {
    name: (f"super_glue/{name}",)
    for name in ("boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc")
}


def benchmark_average(
    scores: Mapping[str, Mapping[str, float]], groups: Mapping[str, Sequence[str]]
) -> float:
    """Mean over `groups` of each group's score, the mean of all its tasks' metrics."""
    missing = sorted({t for tasks in groups.values() for t in tasks} - set(scores))
    if missing:
        raise ValueError(f"no scores for {', '.join(missing)}")
    group_scores = []
    for tasks in groups.values():
        values = [float(v) for t in tasks for v in scores[t].values()]
        if not values:
            raise ValueError(f"no metrics for {', '.join(tasks)}")
        group_scores.append(float(np.mean(values)))
    return float(np.mean(group_scores))


def glue_average(scores: Mapping[str, Mapping[str, float]], include_wnli: bool = False) -> Scores:
    """GLUE score: mean over tasks of each task's mean metric (MRPC/QQP: accuracy and F1,
    STS-B: Pearson and Spearman, MNLI: matched and mismatched accuracy).

    `scores` maps task names (`glue/cola`, ...) to their metric dicts. T5 leaves WNLI
    out; `include_wnli` adds it, as the GLUE leaderboard does.
    """
    groups = {**GLUE_TASKS, **(WNLI if include_wnli else {})}
    return {"glue_average": benchmark_average(scores, groups)}


def super_glue_average(scores: Mapping[str, Mapping[str, float]]) -> Scores:
    """SuperGLUE score: mean over its eight tasks of each task's mean metric (CB: accuracy
    and macro-F1, MultiRC: F1a and EM, ReCoRD: EM and F1)."""
    return {"super_glue_average": benchmark_average(scores, SUPER_GLUE_TASKS)}
