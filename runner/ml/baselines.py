"""The baselines a fine-tuned candidate must beat: prompted (zero-shot and k-shot) and classical.

"Should we fine-tune?" is answered against the cheapest systems that could do the job instead:

* **Prompted base model.** The base with the project's instructions, zero-shot, and the same with
  k solved examples from the *train* split placed before the question as earlier chat turns
  (:func:`few_shot_examples`, :func:`with_examples`). For classification the base is scored by
  choosing among the labels (``runner.ml.inference.choose_labels``), so its score measures what the
  model knows rather than whether it answers in the expected format.
* **Classical classifier** (classification only): TF-IDF features and a logistic regression trained
  on the same train split (:func:`tfidf_baseline`). When it does as well as the candidate, a team may
  not need a fine-tuned LLM at all.

No torch here: scikit-learn and plain Python, so the selection logic is tested on its own.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "FEW_SHOT_EXAMPLES",
    "FEW_SHOT_PER_LABEL",
    "Solved",
    "TfidfResult",
    "few_shot_examples",
    "tfidf_baseline",
    "with_examples",
]

FEW_SHOT_PER_LABEL = 2
"""Train examples per label in a classification k-shot prompt (5 labels: 10 solved examples)."""
FEW_SHOT_EXAMPLES = 3
"""Train examples in an extraction or generation k-shot prompt (their answers are long)."""


@dataclass(frozen=True)
class Solved:
    """One train example as a k-shot prompt shows it: the user's text and the expected answer."""

    text: str
    answer: str


def few_shot_examples(
    train: Sequence[Solved], *, per_label: int | None = None, total: int | None = None, seed: int = 0
) -> list[Solved]:
    """Pick the solved examples of a k-shot prompt from the train split, deterministically.

    Classification (``per_label``): up to ``per_label`` examples of each answer (label), so every
    label is shown; the picks are then shuffled so that no label always comes last (a model tends to
    repeat the most recent answer). Other tasks (``total``): ``total`` examples drawn at random.
    Only ``train`` is ever read: pass the train split, never the held-out one.

    Args:
        train: The train split's examples.
        per_label: Examples per distinct ``answer`` (classification).
        total: Examples in all (extraction, generation); ignored when ``per_label`` is given.
        seed: Seed of the draw: the same seed and train split give the same examples in the same order.

    Returns:
        The chosen examples, in prompt order (fewer when the split is smaller than asked).

    Raises:
        ValueError: neither ``per_label`` nor ``total`` is given, or one is below 1.
    """
    if per_label is None and total is None:
        raise ValueError("give per_label (classification) or total (other tasks)")
    wanted = per_label if per_label is not None else total
    if wanted is None or wanted < 1:
        raise ValueError(f"the number of examples must be at least 1, got {wanted}")
    rng = random.Random(seed)
    # Sorting first makes the draw independent of the order the database returned the rows in.
    pool = sorted(set(train), key=lambda s: (s.answer, s.text))
    if per_label is None:
        return rng.sample(pool, min(wanted, len(pool)))
    picked: list[Solved] = []
    for label in sorted({s.answer for s in pool}):
        of_label = [s for s in pool if s.answer == label]
        picked.extend(rng.sample(of_label, min(per_label, len(of_label))))
    rng.shuffle(picked)
    return picked


def with_examples(
    conversation: Sequence[Mapping[str, str]], examples: Sequence[Solved]
) -> list[dict[str, str]]:
    """``conversation`` with ``examples`` as earlier user/assistant turns, after the system message.

    Args:
        conversation: The prompt: an optional system message (the instructions), then the user's text.
        examples: From :func:`few_shot_examples`.

    Returns:
        system?, (user, assistant) per example, then the conversation's remaining messages.
    """
    head = [dict(m) for m in conversation if m["role"] == "system"]
    rest = [dict(m) for m in conversation if m["role"] != "system"]
    shots: list[dict[str, str]] = []
    for example in examples:
        shots += [{"role": "user", "content": example.text}, {"role": "assistant", "content": example.answer}]
    return head + shots + rest


@dataclass(frozen=True)
class TfidfResult:
    """The classical baseline's answers to the held-out texts."""

    predicted: list[str]
    """One label per held-out text, in order."""
    fit_s: float
    """Wall time of fitting on the train split."""
    predict_s: float
    """Wall time of predicting every held-out text at once."""


def tfidf_baseline(train: Sequence[Solved], texts: Sequence[str], *, seed: int = 0) -> TfidfResult | None:
    """Train TF-IDF + logistic regression on the train split and label ``texts`` with it.

    Word unigrams and bigrams with sublinear term frequency, a logistic regression with scikit-learn's
    defaults (L2, C=1): the usual strong-and-cheap text classifier, not tuned on the held-out split.

    Args:
        train: Train-split examples; ``answer`` is the label.
        texts: The held-out inputs to label.
        seed: The solver's random state (results are deterministic for a seed).

    Returns:
        The predictions and timings, or None when the train split holds fewer than two labels (a
        classifier then has nothing to learn).
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    if len({s.answer for s in train}) < 2:
        return None
    model = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
        LogisticRegression(max_iter=1000, random_state=seed),
    )
    began = time.perf_counter()
    model.fit([s.text for s in train], [s.answer for s in train])
    fitted = time.perf_counter()
    predicted = [str(p) for p in model.predict(list(texts))] if texts else []
    return TfidfResult(predicted=predicted, fit_s=fitted - began, predict_s=time.perf_counter() - fitted)
