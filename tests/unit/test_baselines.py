"""The baselines a candidate is compared with: k-shot example choice, label choice by likelihood, TF-IDF."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from demo.synthetic import ticket_examples
from runner.ml.baselines import Solved, few_shot_examples, tfidf_baseline, with_examples
from runner.ml.inference import choose_labels, load_for_inference
from tests.training_support import INSTRUCTIONS

TRAIN = [Solved(text, label) for text, label in ticket_examples(60, seed=1)]


def test_few_shot_examples_take_per_label_from_train_and_are_deterministic() -> None:
    picked = few_shot_examples(TRAIN, per_label=2, seed=5)
    assert set(picked) <= set(TRAIN)
    labels = sorted({s.answer for s in TRAIN})
    assert sorted(s.answer for s in picked) == sorted(labels * 2)
    assert few_shot_examples(list(reversed(TRAIN)), per_label=2, seed=5) == picked  # row order is irrelevant
    assert few_shot_examples(TRAIN, per_label=2, seed=6) != picked
    assert len(few_shot_examples(TRAIN[:1], per_label=3)) == 1  # fewer when the split is smaller


def test_few_shot_examples_in_all_for_other_tasks() -> None:
    picked = few_shot_examples(TRAIN, total=3, seed=0)
    assert len(picked) == 3 and set(picked) <= set(TRAIN)
    assert few_shot_examples(TRAIN, total=3, seed=0) == picked
    with pytest.raises(ValueError):
        few_shot_examples(TRAIN)
    with pytest.raises(ValueError):
        few_shot_examples(TRAIN, total=0)


def test_examples_go_between_the_instructions_and_the_question() -> None:
    shots = [Solved("my card was charged twice", "billing"), Solved("the app crashes", "technical")]
    prompt = with_examples(
        [{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": "where is my parcel"}],
        shots,
    )
    assert [m["role"] for m in prompt] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert prompt[2]["content"] == "billing" and prompt[-1]["content"] == "where is my parcel"


def test_tfidf_baseline_learns_keyword_routing() -> None:
    train = [Solved(text, label) for text, label in ticket_examples(200, seed=2)]
    held = ticket_examples(40, seed=3)
    result = tfidf_baseline(train, [text for text, _ in held])
    assert result is not None
    accuracy = sum(p == label for p, (_, label) in zip(result.predicted, held, strict=True)) / len(held)
    assert accuracy >= 0.9
    again = tfidf_baseline(train, [text for text, _ in held])
    assert again is not None and again.predicted == result.predicted
    assert tfidf_baseline([Solved("a", "billing"), Solved("b", "billing")], ["c"]) is None


def test_label_choice_scores_are_the_summed_log_likelihood_of_each_answer(tiny_model: Path) -> None:
    torch.manual_seed(0)
    model, tokenizer = load_for_inference(str(tiny_model), None, quantize=False)
    # Labels of different token lengths, so the batched pass pads its rows.
    labels = ["billing", "technical support", "account", "shipping"]
    conversations = [
        [{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": text}]
        for text, _ in ticket_examples(3, seed=4)
    ]
    choices = choose_labels(model, tokenizer, conversations, labels)

    for conversation, choice in zip(conversations, choices, strict=True):
        prompt = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        expected = {}
        for label in labels:
            # By hand: one unpadded sequence, the answer is the label's words then <|end|>.
            prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            answer = tokenizer(label + "<|end|>", add_special_tokens=False)["input_ids"]
            ids = torch.tensor([prompt_ids + answer])
            with torch.no_grad():
                log_probs = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
            expected[label] = sum(
                float(log_probs[len(prompt_ids) + k - 1, token]) for k, token in enumerate(answer)
            )
        assert choice.scores == pytest.approx(expected, abs=1e-4)
        assert choice.text == max(expected, key=lambda label: expected[label])
        assert choice.output_tokens == len(
            tokenizer(choice.text + "<|end|>", add_special_tokens=False)["input_ids"]
        )
        assert choice.prompt_tokens == len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert len(tokenizer("technical support<|end|>", add_special_tokens=False)["input_ids"]) == 3
