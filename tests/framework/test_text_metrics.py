"""The text-task metrics against values computed by hand."""

from __future__ import annotations

import pytest

from framework.metrics import text_metrics as tm

approx = pytest.approx


def test_classification_metrics():
    assert tm.accuracy([0, 1, 1, 0], [0, 1, 0, 0]) == {"accuracy": 75.0}
    # TP 2, FP 1, FN 1: precision = recall = 2/3.
    assert tm.f1([1, 1, 0, 0, 1], [1, 0, 1, 0, 1])["f1"] == approx(200 / 3)
    # An invalid prediction (-1) counts as the wrong class: [1, -1, 0] -> [1, 0, 0].
    assert tm.f1([1, 1, 0], [1, -1, 0])["f1"] == approx(200 / 3)
    assert tm.f1([1, 0], [-1, -1])["f1"] == 0.0
    # Per-class F1: 2TP / (2TP + FP + FN) = 2/4, 4/5, 2/3.
    score = tm.macro_f1([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0], num_classes=3)
    assert score["macro_f1"] == approx(100 * (0.5 + 0.8 + 2 / 3) / 3)
    assert tm.macro_f1([0, 1, 2], [0, 1, -1], 3)["macro_f1"] == approx(200 / 3)
    # TP 1, TN 2, FP 0, FN 1: (1*2 - 0) / sqrt(1 * 2 * 2 * 3).
    mcc = tm.matthews_corrcoef([1, 1, 0, 0], [1, 0, 0, 0])["matthews_corrcoef"]
    assert mcc == approx(100 * 2 / 12**0.5)
    with pytest.raises(ValueError, match="2 targets but 1 predictions"):
        tm.accuracy([0, 1], [0])


def test_correlations():
    # Deviations (-1, 0, 1) and (-7/3, -1/3, 8/3): r = 5 / sqrt(2 * 38/3).
    assert tm.pearson_corrcoef([1, 2, 3], [2, 4, 7])["pearson_corrcoef"] == approx(
        100 * 5 / (2 * 38 / 3) ** 0.5
    )
    # Rank differences (0, 1, 1, 0): rho = 1 - 6 * 2 / (4 * 15).
    spearman = tm.spearman_corrcoef([1, 2, 3, 4], [10, 30, 20, 40])["spearman_corrcoef"]
    assert spearman == approx(80.0)
    assert tm.pearson_corrcoef([1, 2, 3], [2, 2, 2]) == {"pearson_corrcoef": 0.0}


def test_answer_normalisation():
    assert tm.normalize_squad("The  Cat's hat!") == "cats hat"
    assert tm.normalize_squad("an Apple, a day") == "apple day"
    assert tm.normalize_trivia_qa("Rock_and-Roll (The Band)") == "rock and roll band"
    assert tm.token_f1("paris", "paris france") == approx(2 / 3)
    assert tm.token_f1("a b", "c") == 0.0


def test_qa_metrics():
    # Question 1: "dog" matches the second answer; question 2: F1 of 1 of 2 tokens.
    scores = tm.squad([["The cat", "a dog"], ["Paris"]], ["dog", "paris france"])
    assert scores["em"] == approx(50.0)
    assert scores["f1"] == approx(100 * (1 + 2 / 3) / 2)
    # TriviaQA turns punctuation into spaces, SQuAD deletes it.
    assert tm.trivia_qa([["Rock_and-roll"]], ["rock and roll"]) == {"em": 100.0, "f1": 100.0}
    assert tm.squad([["Rock_and-roll"]], ["rock and roll"]) == {"em": 0.0, "f1": 0.0}
    record = tm.record([["Obama", "Barack Obama"], ["Paris"]], ["barack obama", "London"])
    assert record == {"em": 50.0, "f1": 50.0}
    with pytest.raises(TypeError):
        tm.squad(["Paris"], ["paris"])


def test_multirc():
    # Question a all right, b and c not; over options TP 2, FP 1, FN 1.
    scores = tm.multirc([1, 0, 1, 1, 0], [1, 0, 1, 0, 1], ["a", "a", "b", "b", "c"])
    assert scores["exact_match"] == approx(100 / 3)
    assert scores["f1a"] == approx(200 / 3)


GLUE_SCORES = {
    "glue/cola": {"matthews_corrcoef": 50.0},
    "glue/sst2": {"accuracy": 90.0},
    "glue/mrpc": {"f1": 80.0, "accuracy": 70.0},
    "glue/stsb": {"pearson_corrcoef": 80.0, "spearman_corrcoef": 90.0},
    "glue/qqp": {"f1": 60.0, "accuracy": 80.0},
    "glue/mnli": {"accuracy": 80.0},
    "glue/mnli_mismatched": {"accuracy": 70.0},
    "glue/qnli": {"accuracy": 90.0},
    "glue/rte": {"accuracy": 60.0},
}


def test_glue_average():
    # Task scores 50, 90, 75, 85, 70, 75 (MNLI m/mm), 90, 60.
    assert tm.glue_average(GLUE_SCORES) == {"glue_average": approx(595 / 8)}
    with_wnli = {**GLUE_SCORES, "glue/wnli": {"accuracy": 55.0}}
    score = tm.glue_average(with_wnli, include_wnli=True)["glue_average"]
    assert score == approx(650 / 9)
    partial = {k: v for k, v in GLUE_SCORES.items() if k != "glue/rte"}
    with pytest.raises(ValueError, match="no scores for glue/rte"):
        tm.glue_average(partial)


def test_super_glue_average():
    scores = {
        "super_glue/boolq": {"accuracy": 80.0},
        "super_glue/cb": {"macro_f1": 70.0, "accuracy": 90.0},
        "super_glue/copa": {"accuracy": 60.0},
        "super_glue/multirc": {"f1a": 70.0, "exact_match": 30.0},
        "super_glue/record": {"em": 80.0, "f1": 90.0},
        "super_glue/rte": {"accuracy": 70.0},
        "super_glue/wic": {"accuracy": 65.0},
        "super_glue/wsc": {"accuracy": 60.0},
    }
    # Task scores 80, 80, 60, 50, 85, 70, 65, 60.
    assert tm.super_glue_average(scores) == {"super_glue_average": approx(550 / 8)}
