"""Unit and property tests for the evaluation metrics (runner/ml/metrics.py).

Expected values are worked out by hand in comments next to each assertion.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.ml.metrics import (
    INVALID_LABEL,
    ClassificationReport,
    LabelScores,
    PairedComparison,
    bootstrap_ci,
    chrf,
    classification_report,
    corpus_chrf,
    empty_or_refused,
    extraction_report,
    format_compliance,
    is_empty_or_refused,
    latency_summary,
    paired_bootstrap,
    regressions,
    token_cost,
)

# --------------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------------

LABELS = ["pos", "neg", "neu"]
#        1      2      3      4      5      6      7      8
GOLD = ["pos", "pos", "pos", "neg", "neg", "neu", "neu", "neu"]
PRED: list[str | None] = ["pos", "pos", "neg", "neg", "maybe", "neu", "pos", None]
# Example by example: 1 ok, 2 ok, 3 pos->neg, 4 ok, 5 neg->invalid, 6 ok, 7 neu->pos, 8 neu->invalid.


@pytest.fixture
def report() -> ClassificationReport:
    return classification_report(GOLD, PRED, LABELS)


def test_accuracy_and_schema_compliance(report: ClassificationReport) -> None:
    # Correct: examples 1, 2, 4, 6 -> 4 / 8.
    assert report.accuracy == pytest.approx(0.5)
    # Out of the label set: "maybe" (5) and None (8) -> 6 / 8 valid.
    assert report.schema_compliance == pytest.approx(0.75)
    assert report.n_examples == 8
    assert report.labels == ("pos", "neg", "neu")


def test_per_label_scores(report: ClassificationReport) -> None:
    # pos: tp = 2 (1, 2); predicted pos = 1, 2, 7 -> 3; support 3.  P = 2/3, R = 2/3, F1 = 2/3.
    # neg: tp = 1 (4); predicted neg = 3, 4 -> 2; support 2.        P = 1/2, R = 1/2, F1 = 1/2.
    # neu: tp = 1 (6); predicted neu = 6 -> 1; support 3.           P = 1,   R = 1/3,
    #      F1 = 2 * 1 * (1/3) / (1 + 1/3) = (2/3) / (4/3) = 1/2.
    expected = {
        "pos": (2 / 3, 2 / 3, 2 / 3, 3),
        "neg": (1 / 2, 1 / 2, 1 / 2, 2),
        "neu": (1.0, 1 / 3, 1 / 2, 3),
    }
    assert set(report.per_label) == set(expected)
    for label, (p, r, f1, support) in expected.items():
        scores = report.per_label[label]
        assert isinstance(scores, LabelScores)
        assert scores.precision == pytest.approx(p), label
        assert scores.recall == pytest.approx(r), label
        assert scores.f1 == pytest.approx(f1), label
        assert scores.support == support, label


def test_macro_f1(report: ClassificationReport) -> None:
    # (2/3 + 1/2 + 1/2) / 3 = (5/3) / 3 = 5/9.
    assert report.macro_f1 == pytest.approx(5 / 9)
    assert report.macro_labels == ("pos", "neg", "neu")


def test_confusion_matrix(report: ClassificationReport) -> None:
    assert report.confusion == {
        # gold pos: 1, 2 -> pos; 3 -> neg.
        "pos": {"pos": 2, "neg": 1, "neu": 0, INVALID_LABEL: 0},
        # gold neg: 4 -> neg; 5 -> "maybe" (invalid).
        "neg": {"pos": 0, "neg": 1, "neu": 0, INVALID_LABEL: 1},
        # gold neu: 6 -> neu; 7 -> pos; 8 -> None (invalid).
        "neu": {"pos": 1, "neg": 0, "neu": 1, INVALID_LABEL: 1},
    }


def test_label_without_support_or_predictions_is_excluded_from_macro_f1() -> None:
    # "other" is never gold and never predicted: F1 is 0/0, so it must not drag the average down.
    with_unused = classification_report(GOLD, PRED, [*LABELS, "other"])
    assert with_unused.macro_f1 == pytest.approx(5 / 9)
    assert with_unused.macro_labels == ("pos", "neg", "neu")
    assert with_unused.per_label["other"] == LabelScores(precision=0.0, recall=0.0, f1=0.0, support=0)


def test_label_predicted_but_never_gold_counts_as_zero_in_macro_f1() -> None:
    # gold  a a b ; pred a x x (x is a label with no support).
    # a: tp 1, predicted 1, support 2 -> P 1, R 1/2, F1 = 2*1/(1+2) = 2/3.
    # b: tp 0, predicted 0, support 1 -> F1 0.   x: tp 0, predicted 2, support 0 -> F1 0.
    # macro = (2/3 + 0 + 0) / 3 = 2/9.
    rep = classification_report(["a", "a", "b"], ["a", "x", "x"], ["a", "b", "x"])
    assert rep.macro_labels == ("a", "b", "x")
    assert rep.macro_f1 == pytest.approx(2 / 9)
    assert rep.per_label["x"].precision == 0.0
    assert rep.accuracy == pytest.approx(1 / 3)
    assert rep.schema_compliance == 1.0


def test_perfect_predictions() -> None:
    rep = classification_report(GOLD, list(GOLD), LABELS)
    assert rep.accuracy == 1.0
    assert rep.macro_f1 == 1.0
    assert rep.schema_compliance == 1.0
    assert all(rep.confusion[g][INVALID_LABEL] == 0 for g in LABELS)


@pytest.mark.parametrize(
    ("gold", "pred", "labels"),
    [
        (["a"], ["a", "b"], ["a", "b"]),  # length mismatch
        ([], [], ["a"]),  # empty
        (["a"], ["a"], []),  # no labels
        (["a"], ["a"], ["a", "a"]),  # duplicate labels
        (["c"], ["a"], ["a", "b"]),  # gold outside the label set
        (["a"], ["a"], ["a", INVALID_LABEL]),  # reserved label
    ],
)
def test_classification_report_rejects_bad_input(gold: list[str], pred: list[str], labels: list[str]) -> None:
    with pytest.raises(ValueError):
        classification_report(gold, pred, labels)


# --------------------------------------------------------------------------------------------------
# Regressions
# --------------------------------------------------------------------------------------------------

# Same gold as above; the candidate predicts:
AFTER_PRED = ["pos", "neg", "neg", "neg", "neg", "neu", "neu", "pos"]
# pos: tp 1 (1); predicted pos = 1, 8 -> 2; support 3 -> F1 = 2*1/(2+3) = 2/5.
# neg: tp 2 (4, 5); predicted neg = 2, 3, 4, 5 -> 4; support 2 -> F1 = 2*2/(4+2) = 2/3.
# neu: tp 2 (6, 7); predicted neu = 6, 7 -> 2; support 3 -> F1 = 2*2/(2+3) = 4/5.


def test_after_report_hand_values() -> None:
    after = classification_report(GOLD, AFTER_PRED, LABELS)
    assert after.per_label["pos"].f1 == pytest.approx(2 / 5)
    assert after.per_label["neg"].f1 == pytest.approx(2 / 3)
    assert after.per_label["neu"].f1 == pytest.approx(4 / 5)


def test_regressions_lists_labels_that_dropped(report: ClassificationReport) -> None:
    after = classification_report(GOLD, AFTER_PRED, LABELS)
    # pos: 2/3 -> 2/5 (drop 4/15 ~ 0.267); neg 1/2 -> 2/3 and neu 1/2 -> 4/5 improved.
    found = regressions(report, after)
    assert [label for label, _, _ in found] == ["pos"]
    label, before_f1, after_f1 = found[0]
    assert before_f1 == pytest.approx(2 / 3)
    assert after_f1 == pytest.approx(2 / 5)
    # The threshold is inclusive: a drop of exactly 4/15 is reported, a larger threshold hides it.
    assert [r[0] for r in regressions(report, after, min_drop=4 / 15)] == ["pos"]
    assert regressions(report, after, min_drop=0.3) == []


def test_regressions_sorted_by_largest_drop(report: ClassificationReport) -> None:
    after = classification_report(GOLD, AFTER_PRED, LABELS)
    # Reversed direction: neu 4/5 -> 1/2 (drop 0.3), neg 2/3 -> 1/2 (drop 1/6), pos improves.
    found = regressions(after, report)
    assert [label for label, _, _ in found] == ["neu", "neg"]
    assert found[0][1:] == pytest.approx((0.8, 0.5))
    assert found[1][1:] == pytest.approx((2 / 3, 0.5))
    # min_drop 0.2 keeps only neu (0.3 >= 0.2 > 1/6).
    assert [r[0] for r in regressions(after, report, min_drop=0.2)] == ["neu"]


def test_no_regressions_against_itself(report: ClassificationReport) -> None:
    assert regressions(report, report) == []
    assert regressions(report, report, min_drop=0.0) == []


def test_regressions_ignore_labels_absent_from_an_evaluation() -> None:
    # "b" has support before but neither support nor predictions after: not a regression.
    before = classification_report(["a", "b"], ["a", "b"], ["a", "b"])
    after = classification_report(["a", "a"], ["a", "a"], ["a", "b"])
    assert regressions(before, after) == []


# --------------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------------

FIELDS = ["name", "city", "age"]
EXTRACT_GOLD: list[dict[str, Any]] = [
    {"name": "Ada Lovelace", "city": "London", "age": 36},
    {"name": "Alan Turing", "city": "Wilmslow", "age": None},
    {"name": "Grace Hopper", "city": "New York", "age": 85},
    {"name": "Linus", "city": "Helsinki", "age": 54},
    {"name": "Marie Curie", "city": "Paris", "age": 66},
]
EXTRACT_PRED = [
    # 1: valid; name equal after strip/casefold/whitespace collapse; all three correct.
    '{"name": "  ada   LOVELACE ", "city": "London", "age": 36, "extra": 1}',
    # 2: valid; name correct, city wrong, age absent (gold age is null).
    '{"name": "Alan Turing", "city": "Manchester"}',
    # 3: text around the JSON -> invalid, nothing predicted.
    'Sure! {"name": "Grace Hopper", "city": "New York", "age": 85}',
    # 4: valid; name correct, city null (not predicted), age "54" is a string -> wrong.
    '{"name": "Linus", "city": null, "age": "54"}',
    # 5: valid JSON but not an object -> invalid.
    '["Marie Curie", "Paris", 66]',
]


def test_extraction_report_hand_values() -> None:
    rep = extraction_report(EXTRACT_GOLD, EXTRACT_PRED, FIELDS)
    # Valid JSON objects: 1, 2, 4 -> 3 / 5.
    assert rep.json_validity == pytest.approx(3 / 5)
    # Gold non-null fields: 3 + 2 + 3 + 3 + 3 = 14.
    # Predicted non-null fields: 3 (ex 1) + 2 (ex 2) + 0 + 2 (ex 4: name, age) + 0 = 7.
    # Correct: 3 (ex 1) + 1 (ex 2 name) + 1 (ex 4 name) = 5.
    # P = 5/7, R = 5/14, F1 = 2*5 / (7 + 14) = 10/21.
    assert rep.precision == pytest.approx(5 / 7)
    assert rep.recall == pytest.approx(5 / 14)
    assert rep.f1 == pytest.approx(10 / 21)
    # name: gold 5, predicted 3 (1, 2, 4), correct 3 -> F1 = 6 / 8 = 3/4.
    # city: gold 5, predicted 2 (1, 2), correct 1 -> F1 = 2 / 7.
    # age:  gold 4 (ex 2 is null), predicted 2 (1, 4), correct 1 -> F1 = 2 / 6 = 1/3.
    assert rep.per_field_f1 == pytest.approx({"name": 3 / 4, "city": 2 / 7, "age": 1 / 3})
    # Exact match: only example 1 -> 1 / 5.
    assert rep.exact_match == pytest.approx(1 / 5)
    assert rep.n_examples == 5


def test_extraction_missing_equals_null_for_exact_match() -> None:
    # Gold b is null and the prediction omits b; a matches after case folding -> exact match.
    # Gold fields: 1 (a); predicted: 1 (a); correct 1 -> P = R = F1 = 1.
    rep = extraction_report([{"a": "x  y", "b": None}], ['{"a": " X Y"}'], ["a", "b"])
    assert rep.exact_match == 1.0
    assert (rep.precision, rep.recall, rep.f1) == (1.0, 1.0, 1.0)
    # A predicted value where gold is null is a false positive and breaks the exact match.
    rep = extraction_report([{"a": "x", "b": None}], ['{"a": "x", "b": "y"}'], ["a", "b"])
    assert rep.exact_match == 0.0
    assert rep.precision == pytest.approx(1 / 2)  # 1 correct of 2 predicted
    assert rep.recall == 1.0


def test_extraction_value_types() -> None:
    gold = [{"n": 1, "flag": True, "tags": ["A b", "c"]}]
    # 1 == 1.0 numerically; true is not 1; list elements are normalised strings.
    rep = extraction_report(gold, ['{"n": 1.0, "flag": 1, "tags": ["a  B", " C"]}'], ["n", "flag", "tags"])
    assert rep.per_field_f1 == {"n": 1.0, "flag": 0.0, "tags": 1.0}


def test_extraction_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        extraction_report([{"a": 1}], [], ["a"])
    with pytest.raises(ValueError):
        extraction_report([], [], ["a"])
    with pytest.raises(ValueError):
        extraction_report([{"a": 1}], ["{}"], [])


# --------------------------------------------------------------------------------------------------
# chrF and format compliance
# --------------------------------------------------------------------------------------------------


def test_chrf_hand_worked_equal_precision_and_recall() -> None:
    # "the cat" -> "thecat", "the hat" -> "thehat" (whitespace removed).
    # 1-grams: hyp {t2 h1 e1 c1 a1} (6), ref {t2 h2 e1 a1} (6), clipped matches t2 h1 e1 a1 = 5.
    # 2-grams: hyp th he ec ca at (5), ref th he eh ha at (5), matches th he at = 3.
    # 3-grams: hyp the hec eca cat (4), ref the heh eha hat (4), matches the = 1.
    # 4-, 5-, 6-grams: 3, 2, 1 on each side, no matches.
    # P = R = (5/6 + 3/5 + 1/4 + 0 + 0 + 0) / 6 = (50/60 + 36/60 + 15/60) / 6 = 101/360.
    # With P == R the F-beta score is P: chrF = 100 * 101/360.
    assert chrf("the cat", "the hat") == pytest.approx(100 * 101 / 360)


def test_chrf_hand_worked_effective_order_and_beta() -> None:
    # "ab" vs "abc": 1-grams hyp 2, ref 3, match 2; 2-grams hyp 1, ref 2, match 1.
    # Orders 3..6: the hypothesis has no n-grams, so they are not effective (sacreBLEU).
    # P = (2/2 + 1/1) / 2 = 1;  R = (2/3 + 1/2) / 2 = 7/12.
    # F2 = (1 + 4) * P * R / (4 * P + R) = 5 * 7/12 / (4 + 7/12) = (35/12) / (55/12) = 7/11.
    assert chrf("ab", "abc") == pytest.approx(100 * 7 / 11)
    # Swapped: P = 7/12, R = 1 -> F2 = 5 * 7/12 / (4 * 7/12 + 1) = (35/12) / (40/12) = 7/8.
    assert chrf("abc", "ab") == pytest.approx(87.5)
    # beta = 1 (plain F1) on the first pair: 2 * 1 * 7/12 / (1 + 7/12) = (14/12) / (19/12) = 14/19.
    assert chrf("ab", "abc", beta=1.0) == pytest.approx(100 * 14 / 19)
    # n = 1: P = 1, R = 2/3 -> F2 = 5 * 2/3 / (4 + 2/3) = (10/3) / (14/3) = 5/7.
    assert chrf("ab", "abc", n=1) == pytest.approx(100 * 5 / 7)


def test_chrf_identical_disjoint_and_empty() -> None:
    assert chrf("The quick brown fox.", "The quick brown fox.") == pytest.approx(100.0)
    # Whitespace is ignored entirely.
    assert chrf("a b  c", "abc") == pytest.approx(100.0)
    assert chrf("abc", "xyz") == 0.0
    assert chrf("", "abc") == 0.0
    assert chrf("abc", "   ") == 0.0
    # Case-sensitive, like sacreBLEU's default.
    assert chrf("ABC", "abc") == 0.0


def test_chrf_known_sacrebleu_value() -> None:
    # Published example from the HuggingFace chrF metric card (sacreBLEU backend): 61.576379378113785.
    hyp = "The relationship between Obama and Netanyahu is not exactly friendly."
    ref = "The ties between Obama and Netanyahu are not particularly friendly."
    assert chrf(hyp, ref) == pytest.approx(61.576379378113785, abs=1e-9)


def test_corpus_chrf_sums_statistics() -> None:
    # Pairs ("ab", "abc") and ("the cat", "the hat"); per-order counts (hyp, ref, match) summed:
    #   1: (2+6, 3+6, 2+5) = (8, 9, 7)     2: (1+5, 2+5, 1+3) = (6, 7, 4)
    #   3: (0+4, 1+4, 0+1) = (4, 5, 1)     4: (3, 3, 0)   5: (2, 2, 0)   6: (1, 1, 0)
    # All six orders are effective now.
    # P = (7/8 + 4/6 + 1/4) / 6 = (21/24 + 16/24 + 6/24) / 6 = 43/144.
    # R = (7/9 + 4/7 + 1/5) / 6 = (245/315 + 180/315 + 63/315) / 6 = 488/1890 = 244/945.
    p, r = 43 / 144, 244 / 945
    expected = 100 * 5 * p * r / (4 * p + r)  # ~ 26.54
    got = corpus_chrf(["ab", "the cat"], ["abc", "the hat"])
    assert got == pytest.approx(expected)
    # Not the mean of sentence scores: (63.64 + 28.06) / 2 ~ 45.85.
    assert got != pytest.approx((chrf("ab", "abc") + chrf("the cat", "the hat")) / 2, abs=1.0)
    # A one-pair corpus equals the sentence score.
    assert corpus_chrf(["ab"], ["abc"]) == pytest.approx(chrf("ab", "abc"))


def test_chrf_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        corpus_chrf(["a"], [])
    with pytest.raises(ValueError):
        corpus_chrf([], [])
    with pytest.raises(ValueError):
        chrf("a", "a", n=0)
    with pytest.raises(ValueError):
        chrf("a", "a", beta=0)


def test_format_compliance() -> None:
    texts = ["OK: done", "OK: a much longer answer", "nope", ""]
    assert format_compliance(texts) == 1.0
    # Lengths 8, 24, 4, 0: three are <= 10 characters.
    assert format_compliance(texts, max_chars=10) == pytest.approx(3 / 4)
    # The limit is inclusive: "OK: done" has exactly 8 characters.
    assert format_compliance(texts, max_chars=8) == pytest.approx(3 / 4)
    assert format_compliance(texts, max_chars=7) == pytest.approx(2 / 4)
    # Starts with "OK:": the first two.
    assert format_compliance(texts, must_match=r"^OK:") == pytest.approx(2 / 4)
    # Both constraints: only "OK: done".
    assert format_compliance(texts, max_chars=10, must_match=r"^OK:") == pytest.approx(1 / 4)
    with pytest.raises(ValueError):
        format_compliance([])


# --------------------------------------------------------------------------------------------------
# Common
# --------------------------------------------------------------------------------------------------


def test_empty_or_refused() -> None:
    texts = [
        "",  # empty
        "   \n",  # whitespace only
        "I can't help with that.",  # refusal
        "As an AI language model, I do not have opinions.",  # refusal
        "I\u2019m sorry, but I cannot assist with this request.",  # refusal, typographic apostrophe
        "Paris is the capital of France.",
        "Here is the summary you asked for.",
    ]
    # 5 of 7 are empty or refusals.
    assert empty_or_refused(texts) == pytest.approx(5 / 7)
    # A refusal-like phrase deep inside a long useful answer does not count.
    long_answer = "Step one: restart the service. " * 10 + "If I can't help with that, ask on-call."
    assert not is_empty_or_refused(long_answer)
    assert not is_empty_or_refused("I can help with that: here are the steps.")
    with pytest.raises(ValueError):
        empty_or_refused([])


def test_latency_summary() -> None:
    # sorted 1 2 3 4 10: p50 h = 2 -> 3; p95 h = 3.8 -> 4 + 0.8 * 6 = 8.8; mean = 20 / 5 = 4.
    summary = latency_summary([10.0, 1.0, 3.0, 2.0, 4.0])
    assert summary == pytest.approx({"p50": 3.0, "p95": 8.8, "mean": 4.0})
    with pytest.raises(ValueError):
        latency_summary([])


def test_token_cost() -> None:
    # prompt (100 + 200 + 300) / 3 = 200; output (10 + 20 + 60) / 3 = 30; total 230.
    cost = token_cost([100, 200, 300], [10, 20, 60])
    assert cost == pytest.approx(
        {"mean_prompt_tokens": 200.0, "mean_output_tokens": 30.0, "mean_total_tokens": 230.0}
    )
    with pytest.raises(ValueError):
        token_cost([1], [1, 2])


# --------------------------------------------------------------------------------------------------
# Bootstrap
# --------------------------------------------------------------------------------------------------


def test_bootstrap_ci_contains_mean_and_is_deterministic() -> None:
    scores = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0]  # mean 7/10
    low, high = bootstrap_ci(scores)
    assert 0.0 <= low < 0.7 < high <= 1.0
    assert bootstrap_ci(scores) == (low, high)
    assert bootstrap_ci(scores, seed=0) == bootstrap_ci(list(scores), seed=0)
    # Continuous scores so that different seeds visibly land on different resampled means.
    sentence_scores = [0.12, 0.53, 0.91, 0.33, 0.78, 0.05, 0.64, 0.47, 0.29, 0.86]  # mean 0.498
    seed0 = bootstrap_ci(sentence_scores, seed=0)
    assert seed0 == bootstrap_ci(sentence_scores, seed=0)
    assert seed0 != bootstrap_ci(sentence_scores, seed=1)
    assert seed0[0] < 0.498 < seed0[1]
    # A wider confidence level gives a wider (or equal) interval from the same resamples.
    low99, high99 = bootstrap_ci(scores, confidence=0.99)
    assert low99 <= low and high <= high99


def test_bootstrap_ci_narrows_with_more_data() -> None:
    small = [1.0, 0.0] * 10  # n = 20, mean 0.5
    large = [1.0, 0.0] * 200  # n = 400, mean 0.5
    small_low, small_high = bootstrap_ci(small)
    large_low, large_high = bootstrap_ci(large)
    assert small_low < 0.5 < small_high
    assert large_low < 0.5 < large_high
    # Standard error shrinks like 1/sqrt(n): 0.5/sqrt(20) ~ 0.112 vs 0.5/sqrt(400) = 0.025, so the
    # 95% widths are about 0.44 and 0.10.
    assert large_high - large_low < (small_high - small_low) / 2
    assert 0.3 < small_high - small_low < 0.6
    assert 0.06 < large_high - large_low < 0.14


def test_bootstrap_ci_degenerate_samples() -> None:
    assert bootstrap_ci([0.25] * 30) == pytest.approx((0.25, 0.25))
    assert bootstrap_ci([3.0]) == (3.0, 3.0)
    with pytest.raises(ValueError):
        bootstrap_ci([])
    with pytest.raises(ValueError):
        bootstrap_ci([1.0], confidence=1.0)
    with pytest.raises(ValueError):
        bootstrap_ci([1.0], resamples=0)


def test_paired_bootstrap_b_dominates() -> None:
    a = [1.0, 0.0] * 20  # accuracy 0.5
    b = [1.0, 1.0] * 20  # accuracy 1.0: right everywhere a is, and on a's 20 mistakes
    result = paired_bootstrap(a, b)
    assert isinstance(result, PairedComparison)
    assert result.mean_diff == pytest.approx(0.5)  # mean(b - a) = 20 / 40
    assert result.better
    assert 0 < result.ci_low <= 0.5 <= result.ci_high
    assert result.p_value == 0.0
    assert paired_bootstrap(a, b) == result  # deterministic
    # Swapped roles: the candidate is now the weaker system.
    reverse = paired_bootstrap(b, a)
    assert reverse.mean_diff == pytest.approx(-0.5)
    assert not reverse.better
    assert reverse.p_value == 1.0


def test_paired_bootstrap_equal_systems() -> None:
    scores = [1.0, 0.0, 1.0, 1.0, 0.0]
    result = paired_bootstrap(scores, list(scores))
    # Every per-example difference is 0, so every resampled mean is 0 (<= 0).
    assert result == PairedComparison(mean_diff=0.0, ci_low=0.0, ci_high=0.0, p_value=1.0, better=False)


def test_paired_bootstrap_weak_evidence_is_not_better() -> None:
    # b wins on one example of four: diffs 0 0 0 1, mean 1/4. A resample misses that example with
    # probability (3/4)^4 ~ 0.32, so p ~ 0.32 and the lower bound is 0.
    a = [1.0, 0.0, 1.0, 0.0]
    b = [1.0, 0.0, 1.0, 1.0]
    result = paired_bootstrap(a, b, resamples=4000)
    assert result.mean_diff == pytest.approx(0.25)
    assert result.ci_low == 0.0
    assert not result.better
    assert result.p_value == pytest.approx((3 / 4) ** 4, abs=0.03)


def test_paired_bootstrap_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        paired_bootstrap([1.0], [1.0, 0.0])
    with pytest.raises(ValueError):
        paired_bootstrap([], [])


# --------------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------------

_LABEL_SET = ["a", "b", "c"]
_pairs = st.lists(
    st.tuples(st.sampled_from(_LABEL_SET), st.one_of(st.none(), st.sampled_from([*_LABEL_SET, "z"]))),
    min_size=1,
    max_size=40,
)


@given(_pairs)
def test_classification_scores_in_range_and_accuracy_is_mean_correctness(
    pairs: list[tuple[str, str | None]],
) -> None:
    gold = [g for g, _ in pairs]
    pred = [p for _, p in pairs]
    rep = classification_report(gold, pred, _LABEL_SET)
    correctness = [1.0 if g == p else 0.0 for g, p in pairs]
    assert rep.accuracy == pytest.approx(sum(correctness) / len(correctness))
    for value in (rep.accuracy, rep.macro_f1, rep.schema_compliance):
        assert 0.0 <= value <= 1.0
    for scores in rep.per_label.values():
        assert 0.0 <= scores.precision <= 1.0
        assert 0.0 <= scores.recall <= 1.0
        assert 0.0 <= scores.f1 <= 1.0
    assert rep.macro_f1 == pytest.approx(
        sum(rep.per_label[label].f1 for label in rep.macro_labels) / len(rep.macro_labels)
    )
    assert sum(sum(row.values()) for row in rep.confusion.values()) == len(pairs)
    # The bootstrap of 1/0 correctness brackets the accuracy.
    low, high = bootstrap_ci(correctness, resamples=200)
    assert low <= rep.accuracy + 1e-12 and rep.accuracy - 1e-12 <= high


_text = st.text(alphabet="ab c\n", max_size=15)


@given(_text, _text)
def test_chrf_in_range(hypothesis_text: str, reference: str) -> None:
    score = chrf(hypothesis_text, reference)
    assert 0.0 <= score <= 100.0 + 1e-9
    if hypothesis_text.split():
        assert chrf(hypothesis_text, hypothesis_text) == pytest.approx(100.0)


@settings(max_examples=50)
@given(st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=30), st.integers(0, 1000))
def test_bootstrap_ci_ordered_and_within_data_range(scores: list[float], seed: int) -> None:
    low, high = bootstrap_ci(scores, resamples=100, seed=seed)
    assert min(scores) - 1e-12 <= low <= high <= max(scores) + 1e-12
    assert not math.isnan(low)


_field_value = st.one_of(st.none(), st.sampled_from(["x", "X ", "y", "z"]), st.integers(0, 2))


@given(
    st.lists(
        st.tuples(
            st.fixed_dictionaries({"f": _field_value, "g": _field_value}),
            st.sampled_from(
                ['{"f": "x"}', '{"f": "y", "g": 1}', '{"g": null}', "not json", "[1]", '{"f": 0}']
            ),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_extraction_scores_in_range(rows: list[tuple[dict[str, Any], str]]) -> None:
    rep = extraction_report([g for g, _ in rows], [t for _, t in rows], ["f", "g"])
    for value in (
        rep.json_validity,
        rep.precision,
        rep.recall,
        rep.f1,
        rep.exact_match,
        *rep.per_field_f1.values(),
    ):
        assert 0.0 <= value <= 1.0
    assert rep.exact_match <= rep.json_validity
