"""Evaluation metrics for comparing a fine-tuned candidate against the base model and production.

Built on scikit-learn (classification scores), sacreBLEU (chrF) and numpy (percentiles and the
bootstrap); they run on the worker, where the ``[train]`` extra installs them. No Slack, database,
network or torch access.

* Classification: :func:`classification_report` (accuracy, per-label precision/recall/F1,
  macro-F1, confusion matrix, schema compliance) and :func:`regressions` between two reports.
* Extraction (JSON objects with named fields): :func:`extraction_report`.
* Generation: :func:`chrf` / :func:`corpus_chrf` (sacreBLEU's chrF) and :func:`format_compliance`.
* Common: :func:`empty_or_refused`, :func:`latency_summary`, :func:`token_cost`.
* Uncertainty: :func:`bootstrap_ci` and :func:`paired_bootstrap`.

Conventions:

* Fractions and F-scores are in [0, 1]; chrF is on sacreBLEU's 0-100 scale. Every figure is a plain
  Python ``float`` / ``int`` / ``bool`` (reports are stored as JSON).
* A precision, recall or F1 whose denominator is zero is ``0.0`` (scikit-learn's ``zero_division=0``).
* Empty inputs and sequences of different lengths raise ``ValueError``: an evaluation over zero
  examples is a bug upstream, not a score.
* The bootstrap functions take *per-example scores*: the quantity whose mean is the metric, e.g.
  ``1.0``/``0.0`` correctness per example for accuracy, or a sentence-level chrF per example.
  Resampling uses ``numpy.random.default_rng(seed)``, so intervals are deterministic for a seed.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from sacrebleu.metrics import CHRF
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

__all__ = [
    "INVALID_LABEL",
    "REFUSAL_PATTERNS",
    "ClassificationReport",
    "ExtractionReport",
    "LabelScores",
    "PairedComparison",
    "bootstrap_ci",
    "chrf",
    "classification_report",
    "corpus_chrf",
    "empty_or_refused",
    "extraction_report",
    "format_compliance",
    "is_empty_or_refused",
    "latency_summary",
    "paired_bootstrap",
    "regressions",
    "token_cost",
]

INVALID_LABEL = "(invalid)"
"""Confusion-matrix column for predictions outside the label set (including ``None``)."""

_FLOAT_TOLERANCE = 1e-12


def _check_non_empty(name: str, values: Sequence[Any]) -> None:
    """Raise ``ValueError`` when ``values`` is empty."""
    if len(values) == 0:
        raise ValueError(f"{name} is empty")


def _check_same_length(name_a: str, a: Sequence[Any], name_b: str, b: Sequence[Any]) -> None:
    """Raise ``ValueError`` when the two sequences differ in length."""
    if len(a) != len(b):
        raise ValueError(f"{name_a} has {len(a)} items but {name_b} has {len(b)}")


def _ratio(numerator: int, denominator: int) -> float:
    """``numerator / denominator``, or ``0.0`` when the denominator is zero."""
    return numerator / denominator if denominator else 0.0


def _f1(tp: int, predicted: int, actual: int) -> float:
    """F1 from counts: ``2 * tp / (predicted + actual)``, ``0.0`` when both counts are zero."""
    return _ratio(2 * tp, predicted + actual)


# --------------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelScores:
    """Precision, recall and F1 of one label.

    Attributes:
        precision: Correct predictions of the label / all predictions of the label.
        recall: Correct predictions of the label / gold occurrences of the label.
        f1: Harmonic mean of precision and recall.
        support: Number of gold occurrences of the label.
    """

    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class ClassificationReport:
    """Scores of single-label classification predictions against gold labels.

    Attributes:
        n_examples: Number of examples scored.
        labels: The closed label set, in the order given.
        accuracy: Fraction of examples whose prediction equals the gold label.
        macro_f1: Unweighted mean of per-label F1 over ``macro_labels``.
        macro_labels: Labels included in the macro average: every label that has gold support or
            was predicted at least once. A label that is neither in the gold data nor predicted has
            an undefined F1 (0 / 0) and is left out instead of counting as 0.
        per_label: Label -> :class:`LabelScores`, for every label in ``labels``.
        confusion: Gold label -> predicted label -> count. Every label is a row; the columns are
            every label plus :data:`INVALID_LABEL` (predictions outside the label set or ``None``).
            Zero cells are present.
        schema_compliance: Fraction of predictions that are in the label set.
    """

    n_examples: int
    labels: tuple[str, ...]
    accuracy: float
    macro_f1: float
    macro_labels: tuple[str, ...]
    per_label: dict[str, LabelScores]
    confusion: dict[str, dict[str, int]]
    schema_compliance: float


def _validated_labels(
    gold: Sequence[str], pred: Sequence[str | None], labels: Sequence[str]
) -> tuple[str, ...]:
    """Check classification inputs and return the label set as a tuple."""
    _check_same_length("gold", gold, "pred", pred)
    _check_non_empty("gold", gold)
    _check_non_empty("labels", labels)
    label_tuple = tuple(labels)
    if len(set(label_tuple)) != len(label_tuple):
        raise ValueError("labels contains duplicates")
    if INVALID_LABEL in label_tuple:
        raise ValueError(f"{INVALID_LABEL!r} is reserved and cannot be a label")
    unknown = set(gold) - set(label_tuple)
    if unknown:
        raise ValueError(f"gold label {sorted(unknown)[0]!r} is not in labels")
    return label_tuple


def classification_report(
    gold: Sequence[str], pred: Sequence[str | None], labels: Sequence[str]
) -> ClassificationReport:
    """Score single-label predictions against gold labels over a closed label set.

    Predictions are compared verbatim (no case folding or trimming): parse and normalise model
    output before calling. A prediction outside ``labels`` (or ``None``, e.g. unparseable output)
    is wrong, lowers schema compliance and the gold label's recall, and lands in the
    :data:`INVALID_LABEL` column of the confusion matrix; it does not affect any label's precision.

    Macro-F1 averages per-label F1 over the labels that occur in the gold data or in the
    predictions; a label with no support and no predictions is excluded (its F1 is 0 / 0). A label
    that is predicted but never gold is included with F1 ``0.0``.

    Args:
        gold: Gold label per example; each must be in ``labels``.
        pred: Predicted label per example, ``None`` when the output could not be parsed.
        labels: The closed label set (no duplicates, not containing :data:`INVALID_LABEL`).

    Returns:
        A :class:`ClassificationReport`.

    Raises:
        ValueError: Empty or mismatched inputs, duplicate labels, or a gold label outside ``labels``.
    """
    label_tuple = _validated_labels(gold, pred, labels)
    allowed = set(label_tuple)
    predicted = [p if p is not None and p in allowed else INVALID_LABEL for p in pred]
    columns = [*label_tuple, INVALID_LABEL]
    # Rows are gold labels; the INVALID_LABEL row is empty (a gold label is always in the set).
    matrix = confusion_matrix(gold, predicted, labels=columns)[: len(label_tuple)]
    precision, recall, f1, support = precision_recall_fscore_support(
        gold, predicted, labels=list(label_tuple), zero_division=0
    )
    per_label = {
        label: LabelScores(float(precision[i]), float(recall[i]), float(f1[i]), int(support[i]))
        for i, label in enumerate(label_tuple)
    }
    predicted_count = matrix.sum(axis=0)
    included = tuple(label for i, label in enumerate(label_tuple) if support[i] or predicted_count[i])
    macro = f1_score(gold, predicted, labels=list(included), average="macro", zero_division=0)
    return ClassificationReport(
        n_examples=len(gold),
        labels=label_tuple,
        accuracy=float(accuracy_score(gold, predicted)),
        macro_f1=float(macro),
        macro_labels=included,
        per_label=per_label,
        confusion={
            g: {column: int(count) for column, count in zip(columns, row, strict=True)}
            for g, row in zip(label_tuple, matrix, strict=True)
        },
        schema_compliance=1.0 - int(matrix[:, -1].sum()) / len(gold),
    )


def regressions(
    before: ClassificationReport, after: ClassificationReport, *, min_drop: float = 0.05
) -> list[tuple[str, float, float]]:
    """Labels whose F1 dropped by at least ``min_drop`` from ``before`` to ``after``.

    Only labels present in both reports and included in both macro averages (i.e. with support or
    predictions on each side) are compared, so a label absent from an evaluation set is not
    reported as a regression.

    Args:
        before: Report of the reference model (e.g. production or the base model).
        after: Report of the candidate.
        min_drop: Smallest F1 decrease to report (inclusive, absolute, in F1 units).

    Returns:
        ``(label, before_f1, after_f1)`` tuples, largest drop first (ties in ``before`` label order).
    """
    after_labels = set(after.macro_labels)
    found: list[tuple[float, int, str, float, float]] = []
    for index, label in enumerate(before.macro_labels):
        if label not in after_labels:
            continue
        before_f1 = before.per_label[label].f1
        after_f1 = after.per_label[label].f1
        drop = before_f1 - after_f1
        if drop > 0 and drop >= min_drop - _FLOAT_TOLERANCE:
            found.append((-drop, index, label, before_f1, after_f1))
    found.sort()
    return [(label, before_f1, after_f1) for _, _, label, before_f1, after_f1 in found]


# --------------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExtractionReport:
    """Scores of JSON-object extraction outputs against gold field values.

    Attributes:
        n_examples: Number of examples scored.
        json_validity: Fraction of outputs that parse as a JSON *object* (arrays, strings, numbers
            and text around the JSON all count as invalid).
        precision: Micro-averaged over all fields: correct fields / predicted fields.
        recall: Micro-averaged over all fields: correct fields / gold fields.
        f1: Micro-averaged F1.
        per_field_f1: Field -> F1 of that field alone.
        exact_match: Fraction of examples where every field equals the gold value (a missing or
            ``null`` field equals a ``null`` or missing gold value); invalid JSON never matches.
    """

    n_examples: int
    json_validity: float
    precision: float
    recall: float
    f1: float
    per_field_f1: dict[str, float]
    exact_match: float


def _normalise_text(text: str) -> str:
    """Strip, case-fold and collapse runs of whitespace to one space."""
    return " ".join(text.casefold().split())


def _values_equal(a: Any, b: Any) -> bool:
    """Compare JSON values, normalising strings (recursively inside lists and objects).

    Booleans only equal booleans (``true != 1``); numbers compare numerically (``1 == 1.0``);
    a string never equals a number (``"42" != 42``).
    """
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, str) and isinstance(b, str):
        return _normalise_text(a) == _normalise_text(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_values_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_values_equal(a[k], b[k]) for k in a)
    if isinstance(a, str | list | Mapping) or isinstance(b, str | list | Mapping):
        return False
    return bool(a == b)


def _parse_object(text: str) -> dict[str, Any] | None:
    """Parse ``text`` as a JSON object; ``None`` when it is not valid JSON or not an object."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def extraction_report(
    gold: Sequence[Mapping[str, Any]], pred_texts: Sequence[str], fields: Sequence[str]
) -> ExtractionReport:
    """Score model outputs that should be JSON objects with named fields.

    For every example and field: the field is *gold* when the gold value is present and not
    ``None``; it is *predicted* when the output is a valid JSON object holding the field with a
    non-null value; it is *correct* when both hold and the values are equal after normalising
    strings (strip, case-fold, collapse whitespace; see :func:`_values_equal`). Precision, recall
    and F1 are micro-averaged over all (example, field) pairs. Keys outside ``fields`` are ignored.

    Args:
        gold: Gold field values per example.
        pred_texts: Raw model output per example (parsed strictly with :func:`json.loads`).
        fields: The fields to score.

    Returns:
        An :class:`ExtractionReport`.

    Raises:
        ValueError: Empty or mismatched inputs, or no fields.
    """
    _check_same_length("gold", gold, "pred_texts", pred_texts)
    _check_non_empty("gold", gold)
    _check_non_empty("fields", fields)
    tp: Counter[str] = Counter()
    predicted: Counter[str] = Counter()
    actual: Counter[str] = Counter()
    valid = exact = 0
    for gold_obj, text in zip(gold, pred_texts, strict=True):
        parsed = _parse_object(text)
        if parsed is not None:
            valid += 1
        all_equal = parsed is not None
        for name in fields:
            gold_value = gold_obj.get(name)
            pred_value = parsed.get(name) if parsed is not None else None
            if gold_value is not None:
                actual[name] += 1
            if pred_value is not None:
                predicted[name] += 1
            if gold_value is None or pred_value is None:
                all_equal = all_equal and gold_value is None and pred_value is None
                continue
            if _values_equal(gold_value, pred_value):
                tp[name] += 1
            else:
                all_equal = False
        exact += all_equal
    n = len(gold)
    total_tp, total_pred, total_actual = sum(tp.values()), sum(predicted.values()), sum(actual.values())
    return ExtractionReport(
        n_examples=n,
        json_validity=valid / n,
        precision=_ratio(total_tp, total_pred),
        recall=_ratio(total_tp, total_actual),
        f1=_f1(total_tp, total_pred, total_actual),
        per_field_f1={name: _f1(tp[name], predicted[name], actual[name]) for name in fields},
        exact_match=exact / n,
    )


# --------------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _chrf_metric(n: int, beta: float) -> CHRF:
    """sacreBLEU's chrF: character n-grams only (not chrF++), case-sensitive, whitespace ignored."""
    if n < 1:
        raise ValueError("n must be at least 1")
    if beta <= 0:
        raise ValueError("beta must be positive")
    return CHRF(char_order=n, word_order=0, beta=beta)  # type: ignore[arg-type]  # annotated int; any real works


def chrf(hypothesis: str, reference: str, n: int = 6, beta: float = 2.0) -> float:
    """Sentence-level chrF (character n-gram F-score): sacreBLEU's ``CHRF().sentence_score``.

    Whitespace is removed from both strings; character n-gram precision and recall of orders
    1..``n`` are averaged over the orders where both strings have n-grams and combined as
    ``(1 + beta^2) * P * R / (beta^2 * P + R)``.

    Args:
        hypothesis: Model output.
        reference: Reference text.
        n: Maximum character n-gram order.
        beta: Recall weight (2 weights recall twice as much as precision).

    Returns:
        chrF in [0, 100]; ``0.0`` when either string has no non-whitespace character.

    Raises:
        ValueError: Invalid parameters.
    """
    return float(_chrf_metric(n, beta).sentence_score(hypothesis, [reference]).score)


def corpus_chrf(hypotheses: Sequence[str], references: Sequence[str], n: int = 6, beta: float = 2.0) -> float:
    """Corpus-level chrF: sacreBLEU's ``CHRF().corpus_score`` with one reference per hypothesis.

    The n-gram counts of all pairs are summed per order first and the score is computed once from
    the totals; this is *not* the mean of sentence-level scores.

    Args:
        hypotheses: Model outputs.
        references: One reference per hypothesis.
        n: Maximum character n-gram order.
        beta: Recall weight.

    Returns:
        chrF in [0, 100].

    Raises:
        ValueError: Empty or mismatched inputs, or invalid parameters.
    """
    metric = _chrf_metric(n, beta)
    _check_same_length("hypotheses", hypotheses, "references", references)
    _check_non_empty("hypotheses", hypotheses)
    return float(metric.corpus_score(list(hypotheses), [list(references)]).score)


def format_compliance(
    texts: Sequence[str], *, max_chars: int | None = None, must_match: str | None = None
) -> float:
    """Fraction of texts that satisfy every given format constraint.

    Args:
        texts: Model outputs.
        max_chars: Maximum length in characters (inclusive); ``None`` for no limit.
        must_match: Regular expression searched in the text with :func:`re.search`; anchor it
            (``\\A...\\Z``) to constrain the whole text. ``None`` for no pattern.

    Returns:
        A fraction in [0, 1] (``1.0`` when no constraint is given).

    Raises:
        ValueError: ``texts`` is empty or ``max_chars`` is negative.
    """
    _check_non_empty("texts", texts)
    if max_chars is not None and max_chars < 0:
        raise ValueError("max_chars must not be negative")
    pattern = re.compile(must_match) if must_match is not None else None
    ok = sum(
        1
        for text in texts
        if (max_chars is None or len(text) <= max_chars) and (pattern is None or pattern.search(text))
    )
    return ok / len(texts)


# --------------------------------------------------------------------------------------------------
# Common
# --------------------------------------------------------------------------------------------------

REFUSAL_PATTERNS: tuple[str, ...] = (
    r"\bas an ai\b",
    r"\bi(?:'m| am) (?:an ai|a language model)\b",
    r"\bi (?:can't|cannot|can not|won't|will not) (?:help|assist|comply|do that|provide|answer)\b",
    r"\bi(?:'m| am) (?:unable|not able) to (?:help|assist|comply|provide|answer)\b",
    r"\bi(?:'m| am) sorry,? but i (?:can't|cannot|can not|won't|will not|am unable|'m unable)\b",
    r"\bi must (?:decline|refuse)\b",
)
"""Case-insensitive refusal phrases, searched in the first :data:`_REFUSAL_WINDOW` characters."""

_REFUSAL_WINDOW = 200
_REFUSAL_RE = re.compile("|".join(f"(?:{p})" for p in REFUSAL_PATTERNS), re.IGNORECASE)


def is_empty_or_refused(text: str) -> bool:
    """Whether one output is empty/whitespace or opens with a refusal.

    A refusal is a match of any :data:`REFUSAL_PATTERNS` entry (case-insensitive, typographic
    apostrophes treated as ``'``) within the first 200 characters of the stripped text, so a
    refusal phrase deep inside a long useful answer does not count.

    Args:
        text: Model output.

    Returns:
        ``True`` for empty or refused outputs.
    """
    stripped = text.strip()
    if not stripped:
        return True
    head = stripped[:_REFUSAL_WINDOW].replace("\u2019", "'").replace("\u2018", "'")
    return _REFUSAL_RE.search(head) is not None


def empty_or_refused(texts: Sequence[str]) -> float:
    """Fraction of outputs that are empty/whitespace or refusals (see :func:`is_empty_or_refused`).

    Args:
        texts: Model outputs.

    Returns:
        A fraction in [0, 1].

    Raises:
        ValueError: ``texts`` is empty.
    """
    _check_non_empty("texts", texts)
    return sum(1 for text in texts if is_empty_or_refused(text)) / len(texts)


def latency_summary(latencies_s: Sequence[float]) -> dict[str, float]:
    """Median, 95th percentile and mean of per-request latencies.

    Args:
        latencies_s: Latency per request, in seconds.

    Returns:
        ``{"p50": ..., "p95": ..., "mean": ...}`` in seconds (numpy's linear-interpolation percentiles).

    Raises:
        ValueError: ``latencies_s`` is empty.
    """
    _check_non_empty("latencies_s", latencies_s)
    values = np.asarray(latencies_s, dtype=float)
    p50, p95 = np.percentile(values, [50, 95])
    return {"p50": float(p50), "p95": float(p95), "mean": math.fsum(values.tolist()) / len(values)}


def token_cost(prompt_tokens: Sequence[int], output_tokens: Sequence[int]) -> dict[str, float]:
    """Mean token counts per example.

    Args:
        prompt_tokens: Prompt (input) tokens per example.
        output_tokens: Generated tokens per example.

    Returns:
        ``{"mean_prompt_tokens": ..., "mean_output_tokens": ..., "mean_total_tokens": ...}``.

    Raises:
        ValueError: Empty or mismatched inputs.
    """
    _check_same_length("prompt_tokens", prompt_tokens, "output_tokens", output_tokens)
    _check_non_empty("prompt_tokens", prompt_tokens)
    n = len(prompt_tokens)
    prompt_total = sum(prompt_tokens)
    output_total = sum(output_tokens)
    return {
        "mean_prompt_tokens": prompt_total / n,
        "mean_output_tokens": output_total / n,
        "mean_total_tokens": (prompt_total + output_total) / n,
    }


# --------------------------------------------------------------------------------------------------
# Uncertainty
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairedComparison:
    """Paired bootstrap comparison of system B against system A on the same examples.

    Attributes:
        mean_diff: Observed ``mean(b - a)`` over examples (positive: B scores higher).
        ci_low: Lower percentile-bootstrap bound of the mean difference.
        ci_high: Upper percentile-bootstrap bound of the mean difference.
        p_value: Fraction of resamples whose mean difference is ``<= 0``: a one-sided bootstrap
            p-value for "B is better than A".
        better: ``ci_low > 0``: B is better at the chosen confidence.
    """

    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    better: bool


def _resampled_means(
    values: Sequence[float], confidence: float, resamples: int, seed: int
) -> tuple[np.ndarray, float, float]:
    """Means of ``resamples`` draws with replacement of ``len(values)`` values, and their central
    ``confidence`` percentile interval."""
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    if resamples < 1:
        raise ValueError("resamples must be at least 1")
    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    # Index rows drawn in chunks of about a million, so memory stays near 8 MB for a large evaluation.
    step = max(1, 1_000_000 // len(data))
    for start in range(0, resamples, step):
        stop = min(start + step, resamples)
        means[start:stop] = data[rng.integers(0, len(data), size=(stop - start, len(data)))].mean(axis=1)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return means, float(low), float(high)


def bootstrap_ci(
    per_example_scores: Sequence[float], *, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean of per-example scores.

    Per-example scores are the values whose mean is the metric, e.g. ``1.0``/``0.0`` correctness
    per example for accuracy. Each resample draws ``n`` examples with replacement; the interval is
    the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` percentiles of the resampled means.

    Args:
        per_example_scores: One score per example.
        confidence: Coverage of the interval, in (0, 1).
        resamples: Number of bootstrap resamples.
        seed: Seed of the resampling; equal seeds give equal intervals.

    Returns:
        ``(low, high)``.

    Raises:
        ValueError: Empty scores or invalid parameters.
    """
    _check_non_empty("per_example_scores", per_example_scores)
    _, low, high = _resampled_means(per_example_scores, confidence, resamples, seed)
    return low, high


def paired_bootstrap(
    scores_a: Sequence[float],
    scores_b: Sequence[float],
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> PairedComparison:
    """Paired bootstrap test of whether system B beats system A on the same examples.

    ``scores_a[i]`` and ``scores_b[i]`` must score the same example (e.g. 1/0 correctness of the
    production model and of the candidate). Each resample draws the same example indices for both
    systems and records ``mean(b - a)``.

    Args:
        scores_a: Per-example scores of the reference system A.
        scores_b: Per-example scores of the candidate system B.
        confidence: Coverage of the interval, in (0, 1).
        resamples: Number of bootstrap resamples.
        seed: Seed of the resampling.

    Returns:
        A :class:`PairedComparison`.

    Raises:
        ValueError: Empty or mismatched inputs, or invalid parameters.
    """
    _check_same_length("scores_a", scores_a, "scores_b", scores_b)
    _check_non_empty("scores_a", scores_a)
    diffs = [float(b) - float(a) for a, b in zip(scores_a, scores_b, strict=True)]
    means, low, high = _resampled_means(diffs, confidence, resamples, seed)
    return PairedComparison(
        mean_diff=math.fsum(diffs) / len(diffs),
        ci_low=low,
        ci_high=high,
        p_value=float(np.count_nonzero(means <= 0)) / resamples,
        better=low > 0,
    )
