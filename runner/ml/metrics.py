"""Evaluation metrics for comparing a fine-tuned candidate against the base model and production.

Pure standard-library functions; no Slack, database, network or torch access.

* Classification: :func:`classification_report` (accuracy, per-label precision/recall/F1,
  macro-F1, confusion matrix, schema compliance) and :func:`regressions` between two reports.
* Extraction (JSON objects with named fields): :func:`extraction_report`.
* Generation: :func:`chrf` / :func:`corpus_chrf` (sacreBLEU-compatible chrF) and
  :func:`format_compliance`.
* Common: :func:`empty_or_refused`, :func:`percentile`, :func:`latency_summary`, :func:`token_cost`.
* Uncertainty: :func:`bootstrap_ci`, :func:`paired_bootstrap` and :func:`macro_f1_bootstrap_ci`.

Conventions:

* Fractions and F-scores are in [0, 1]; chrF is on sacreBLEU's 0-100 scale.
* A precision, recall or F1 whose denominator is zero is ``0.0`` (scikit-learn's
  ``zero_division=0``). F1 is computed as ``2 * tp / (predicted + actual)``, which equals the
  harmonic mean of precision and recall whenever both are defined.
* Empty inputs and sequences of different lengths raise ``ValueError``: an evaluation over zero
  examples is a bug upstream, not a score.
* The bootstrap functions take *per-example scores*: the quantity whose mean is the metric, e.g.
  ``1.0``/``0.0`` correctness per example for accuracy, or a sentence-level chrF per example.
  Resampling uses ``random.Random(seed)``, so results are deterministic for a given seed (and
  Python version).
"""

from __future__ import annotations

import json
import math
import random
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
    "macro_f1_bootstrap_ci",
    "paired_bootstrap",
    "percentile",
    "regressions",
    "token_cost",
]

INVALID_LABEL = "(invalid)"
"""Confusion-matrix column for predictions outside the label set (including ``None``)."""

_FLOAT_TOLERANCE = 1e-12


# --------------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------------


def _check_non_empty(name: str, values: Sequence[Any]) -> None:
    """Raise ``ValueError`` when ``values`` is empty."""
    if len(values) == 0:
        raise ValueError(f"{name} is empty")


def _check_same_length(name_a: str, a: Sequence[Any], name_b: str, b: Sequence[Any]) -> None:
    """Raise ``ValueError`` when the two sequences differ in length."""
    if len(a) != len(b):
        raise ValueError(f"{name_a} has {len(a)} items but {name_b} has {len(b)}")


def _mean(values: Sequence[float]) -> float:
    """Arithmetic mean with an exactly rounded sum (``values`` must be non-empty)."""
    return math.fsum(values) / len(values)


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
    """Precision, recall and F1 of one label (or one extraction field).

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
    allowed = set(label_tuple)
    for g in gold:
        if g not in allowed:
            raise ValueError(f"gold label {g!r} is not in labels")
    return label_tuple


def _macro_f1_from_counts(
    labels: Sequence[str], tp: Mapping[str, int], predicted: Mapping[str, int], support: Mapping[str, int]
) -> tuple[float, tuple[str, ...]]:
    """Macro-F1 over labels with support or predictions; returns (score, included labels)."""
    included = tuple(label for label in labels if support.get(label, 0) or predicted.get(label, 0))
    if not included:
        return 0.0, included
    scores = [_f1(tp.get(label, 0), predicted.get(label, 0), support.get(label, 0)) for label in included]
    return _mean(scores), included


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
    columns = (*label_tuple, INVALID_LABEL)
    confusion = {g: dict.fromkeys(columns, 0) for g in label_tuple}
    for g, p in zip(gold, pred, strict=True):
        confusion[g][p if p is not None and p in allowed else INVALID_LABEL] += 1

    n = len(gold)
    tp = {label: confusion[label][label] for label in label_tuple}
    support = {label: sum(confusion[label].values()) for label in label_tuple}
    predicted = {label: sum(row[label] for row in confusion.values()) for label in label_tuple}
    per_label = {
        label: LabelScores(
            precision=_ratio(tp[label], predicted[label]),
            recall=_ratio(tp[label], support[label]),
            f1=_f1(tp[label], predicted[label], support[label]),
            support=support[label],
        )
        for label in label_tuple
    }
    macro, included = _macro_f1_from_counts(label_tuple, tp, predicted, support)
    invalid = sum(row[INVALID_LABEL] for row in confusion.values())
    return ClassificationReport(
        n_examples=n,
        labels=label_tuple,
        accuracy=sum(tp.values()) / n,
        macro_f1=macro,
        macro_labels=included,
        per_label=per_label,
        confusion=confusion,
        schema_compliance=(n - invalid) / n,
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


def _chrf_statistics(hypothesis: str, reference: str, n: int) -> list[tuple[int, int, int]]:
    """Per order 1..n: (hypothesis n-grams, reference n-grams, matched n-grams), whitespace removed."""
    hyp = "".join(hypothesis.split())
    ref = "".join(reference.split())
    stats = []
    for order in range(1, n + 1):
        hyp_grams = Counter(hyp[i : i + order] for i in range(len(hyp) - order + 1))
        ref_grams = Counter(ref[i : i + order] for i in range(len(ref) - order + 1))
        matched = sum((hyp_grams & ref_grams).values())
        stats.append((sum(hyp_grams.values()), sum(ref_grams.values()), matched))
    return stats


def _chrf_from_statistics(stats: Sequence[tuple[int, int, int]], beta: float) -> float:
    """sacreBLEU's chrF (default, no epsilon smoothing) from (hyp, ref, match) counts per order.

    Precision and recall are averaged over the *effective* orders (those where both hypothesis and
    reference have n-grams), then combined into an F-beta score on a 0-100 scale.
    """
    precisions = [m / h for h, r, m in stats if h > 0 and r > 0]
    recalls = [m / r for h, r, m in stats if h > 0 and r > 0]
    if not precisions:
        return 0.0
    precision = sum(precisions) / len(precisions)
    recall = sum(recalls) / len(recalls)
    if precision + recall == 0:
        return 0.0
    factor = beta**2
    return 100 * (1 + factor) * precision * recall / (factor * precision + recall)


def _check_chrf_params(n: int, beta: float) -> None:
    """Validate chrF parameters."""
    if n < 1:
        raise ValueError("n must be at least 1")
    if beta <= 0:
        raise ValueError("beta must be positive")


def chrf(hypothesis: str, reference: str, n: int = 6, beta: float = 2.0) -> float:
    """Sentence-level chrF (character n-gram F-score), as sacreBLEU's ``CHRF().sentence_score``.

    Whitespace is removed from both strings; for each order 1..``n`` character n-gram precision and
    recall are computed with clipped counts; they are averaged over the orders where both strings
    have n-grams (sacreBLEU's effective order), and combined as
    ``(1 + beta^2) * P * R / (beta^2 * P + R)``. Case-sensitive, no word n-grams (not chrF++).

    Args:
        hypothesis: Model output.
        reference: Reference text.
        n: Maximum character n-gram order.
        beta: Recall weight (2 weights recall twice as much as precision).

    Returns:
        chrF in [0, 100]; ``0.0`` when either string has no non-whitespace character.
    """
    _check_chrf_params(n, beta)
    return _chrf_from_statistics(_chrf_statistics(hypothesis, reference, n), beta)


def corpus_chrf(hypotheses: Sequence[str], references: Sequence[str], n: int = 6, beta: float = 2.0) -> float:
    """Corpus-level chrF, as sacreBLEU's ``CHRF().corpus_score`` with one reference per hypothesis.

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
    _check_chrf_params(n, beta)
    _check_same_length("hypotheses", hypotheses, "references", references)
    _check_non_empty("hypotheses", hypotheses)
    totals = [[0, 0, 0] for _ in range(n)]
    for hypothesis, reference in zip(hypotheses, references, strict=True):
        for total, counts in zip(totals, _chrf_statistics(hypothesis, reference, n), strict=True):
            for k in range(3):
                total[k] += counts[k]
    return _chrf_from_statistics([(h, r, m) for h, r, m in totals], beta)


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


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile with linear interpolation (numpy's default ``method="linear"``).

    With the values sorted as ``x[0] <= ... <= x[n-1]`` and ``h = (n - 1) * q / 100``, the result is
    ``x[floor(h)] + (h - floor(h)) * (x[floor(h) + 1] - x[floor(h)])``.

    Args:
        values: The sample (any order).
        q: Percentile in [0, 100].

    Returns:
        The interpolated percentile.

    Raises:
        ValueError: ``values`` is empty or ``q`` is outside [0, 100].
    """
    _check_non_empty("values", values)
    if not 0 <= q <= 100:
        raise ValueError("q must be in [0, 100]")
    return _sorted_percentile(sorted(values), q)


def _sorted_percentile(ordered: Sequence[float], q: float) -> float:
    """:func:`percentile` on already sorted, non-empty values."""
    h = (len(ordered) - 1) * q / 100
    lo = math.floor(h)
    if lo + 1 >= len(ordered):
        return float(ordered[-1])
    frac = h - lo
    return float(ordered[lo] + frac * (ordered[lo + 1] - ordered[lo]))


def latency_summary(latencies_s: Sequence[float]) -> dict[str, float]:
    """Median, 95th percentile and mean of per-request latencies.

    Args:
        latencies_s: Latency per request, in seconds.

    Returns:
        ``{"p50": ..., "p95": ..., "mean": ...}`` in seconds (linear-interpolation percentiles).

    Raises:
        ValueError: ``latencies_s`` is empty.
    """
    _check_non_empty("latencies_s", latencies_s)
    ordered = sorted(latencies_s)
    return {
        "p50": _sorted_percentile(ordered, 50),
        "p95": _sorted_percentile(ordered, 95),
        "mean": _mean(ordered),
    }


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


def _check_bootstrap_params(confidence: float, resamples: int) -> None:
    """Validate bootstrap parameters."""
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    if resamples < 1:
        raise ValueError("resamples must be at least 1")


def _bootstrap_statistics(
    n: int, statistic: Callable[[list[int]], float], resamples: int, seed: int
) -> list[float]:
    """``statistic`` of ``resamples`` index lists drawn with replacement from ``range(n)``, sorted."""
    rng = random.Random(seed)
    population = range(n)
    return sorted(statistic(rng.choices(population, k=n)) for _ in range(resamples))


def _interval(ordered: Sequence[float], confidence: float) -> tuple[float, float]:
    """Central percentile interval of sorted bootstrap statistics."""
    alpha = 1 - confidence
    return _sorted_percentile(ordered, 100 * alpha / 2), _sorted_percentile(ordered, 100 * (1 - alpha / 2))


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
        seed: Seed for ``random.Random``; equal seeds give equal intervals.

    Returns:
        ``(low, high)``.

    Raises:
        ValueError: Empty scores or invalid parameters.
    """
    _check_non_empty("per_example_scores", per_example_scores)
    _check_bootstrap_params(confidence, resamples)
    scores = [float(s) for s in per_example_scores]
    means = _bootstrap_statistics(len(scores), lambda idx: _mean([scores[i] for i in idx]), resamples, seed)
    return _interval(means, confidence)


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
        seed: Seed for ``random.Random``.

    Returns:
        A :class:`PairedComparison`.

    Raises:
        ValueError: Empty or mismatched inputs, or invalid parameters.
    """
    _check_same_length("scores_a", scores_a, "scores_b", scores_b)
    _check_non_empty("scores_a", scores_a)
    _check_bootstrap_params(confidence, resamples)
    diffs = [float(b) - float(a) for a, b in zip(scores_a, scores_b, strict=True)]
    means = _bootstrap_statistics(len(diffs), lambda idx: _mean([diffs[i] for i in idx]), resamples, seed)
    low, high = _interval(means, confidence)
    return PairedComparison(
        mean_diff=_mean(diffs),
        ci_low=low,
        ci_high=high,
        p_value=sum(1 for m in means if m <= 0) / resamples,
        better=low > 0,
    )


def macro_f1_bootstrap_ci(
    gold: Sequence[str],
    pred: Sequence[str | None],
    labels: Sequence[str],
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of macro-F1.

    Macro-F1 is not a mean of per-example scores, so each resample draws examples with replacement
    and recomputes macro-F1 exactly as :func:`classification_report` does (labels absent from both
    the resampled gold and predictions are excluded from that resample's average).

    Args:
        gold: Gold label per example.
        pred: Predicted label per example (``None`` or out-of-set labels count as invalid).
        labels: The closed label set.
        confidence: Coverage of the interval, in (0, 1).
        resamples: Number of bootstrap resamples.
        seed: Seed for ``random.Random``.

    Returns:
        ``(low, high)``.

    Raises:
        ValueError: Invalid inputs (as :func:`classification_report`) or parameters.
    """
    label_tuple = _validated_labels(gold, pred, labels)
    _check_bootstrap_params(confidence, resamples)
    allowed = set(label_tuple)
    gold_list = list(gold)
    pred_list = [p if p is not None and p in allowed else None for p in pred]

    def statistic(indices: list[int]) -> float:
        support = Counter(gold_list[i] for i in indices)
        predicted = Counter(pred_list[i] for i in indices)
        tp = Counter(gold_list[i] for i in indices if gold_list[i] == pred_list[i])
        counts = {label: predicted[label] for label in label_tuple}
        return _macro_f1_from_counts(label_tuple, tp, counts, support)[0]

    return _interval(_bootstrap_statistics(len(gold_list), statistic, resamples, seed), confidence)
