"""Synthetic support tickets and chat-format examples for tests, benchmarks and the demo.

Each ticket is routed to one of four queues by its *wording*: every queue has its own words
(``refund``, ``crash``, ``password``, ``parcel``, ...) that appear in one to three queue-specific
sentences, mixed with queue-neutral greetings, context and sign-offs that carry no signal. A small
model can therefore learn the routing from a few hundred examples, and a model that has not learned it
scores at chance. Lengths vary from a single sentence to long rambling tickets (about one in six has
five to twelve neutral sentences), so batching code sees a realistic spread of lengths.

Pure standard-library code, deterministic for a given seed (``random.Random(seed)``, never the global
generator).
"""

from __future__ import annotations

import random
from typing import Any

__all__ = ["QUEUES", "chat_example", "ticket_examples", "ticket_texts"]

QUEUES: tuple[str, ...] = ("billing", "technical", "account", "shipping")

# Queue-specific vocabulary: the only signal a router can use. No word is shared between queues.
_KEYWORDS: dict[str, dict[str, list[str]]] = {
    "billing": {
        "thing": ["invoice", "refund", "receipt", "payment", "subscription fee", "credit note", "bill"],
        "verb": ["charged", "billed", "overcharged", "invoiced", "debited"],
        "detail": [
            "twice",
            "the wrong amount",
            "after cancelling",
            "in the wrong currency",
            "without notice",
        ],
    },
    "technical": {
        "thing": ["app", "dashboard", "api", "sync", "export", "plugin", "integration"],
        "verb": ["crashes", "freezes", "times out", "throws an error", "stopped working", "keeps loading"],
        "detail": [
            "after the update",
            "on startup",
            "when uploading files",
            "since the upgrade",
            "on my laptop",
        ],
    },
    "account": {
        "thing": ["password", "login", "username", "profile", "two factor code", "account"],
        "verb": ["locked", "reset", "deactivated", "suspended", "unverified"],
        "detail": [
            "after too many attempts",
            "without warning",
            "by an admin",
            "since yesterday",
            "for no reason",
        ],
    },
    "shipping": {
        "thing": ["parcel", "package", "delivery", "shipment", "tracking number", "courier"],
        "verb": ["delayed", "lost", "damaged", "returned to sender", "stuck in customs"],
        "detail": ["in transit", "at the depot", "for two weeks", "at the warehouse", "on the way"],
    },
}

# Each pattern uses a queue's `thing`, `verb` and `detail` words; the glue words are shared by all queues.
_PATTERNS: tuple[str, ...] = (
    "my {thing} was {verb} {detail}.",
    "the {thing} is {verb} {detail}.",
    "why is my {thing} {verb} {detail}?",
    "it says {verb} {detail}, please check the {thing}.",
    "{thing} {verb} {detail}",
    "can you look at the {thing}? it got {verb} {detail}.",
    "i think the {thing} was {verb}.",
    "still {verb}. this is about the {thing}.",
)

_GREETINGS: tuple[str, ...] = (
    "hi team,",
    "hello,",
    "good morning,",
    "hey there,",
    "dear support,",
    "hi,",
    "",
)
_NEUTRAL: tuple[str, ...] = (
    "i have been a customer for {n} years.",
    "this is the {ordinal} time i am writing about this.",
    "my colleague told me to contact you.",
    "i tried to find the answer in the help pages first.",
    "we are a small team and rely on you every day.",
    "i am writing from my phone, sorry for typos.",
    "nothing else has changed on our side.",
    "i would appreciate a quick answer.",
    "let me know if you need more details from me.",
    "our manager is asking me for an update.",
    "i already asked in the chat but nobody replied.",
    "it happened on {day} around {n} pm.",
    "we have {n} people on the team.",
    "i am not sure who else to ask.",
)
_SIGNOFFS: tuple[str, ...] = (
    "thanks!",
    "thank you.",
    "cheers,",
    "regards,",
    "best wishes,",
    "please help.",
    "",
)
_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_ORDINALS = ("second", "third", "fourth", "fifth")


def _neutral_sentence(rng: random.Random) -> str:
    return rng.choice(_NEUTRAL).format(
        n=rng.randint(2, 11), ordinal=rng.choice(_ORDINALS), day=rng.choice(_DAYS)
    )


def _queue_sentence(rng: random.Random, queue: str) -> str:
    words = _KEYWORDS[queue]
    return rng.choice(_PATTERNS).format(
        thing=rng.choice(words["thing"]), verb=rng.choice(words["verb"]), detail=rng.choice(words["detail"])
    )


def _ticket(rng: random.Random, queue: str) -> str:
    # About one ticket in six rambles (5-12 neutral sentences), so lengths span roughly 8 to 150 words.
    n_neutral = rng.randint(5, 12) if rng.random() < 1 / 6 else rng.randint(0, 2)
    sentences = [_queue_sentence(rng, queue) for _ in range(rng.randint(1, 3))]
    sentences += [_neutral_sentence(rng) for _ in range(n_neutral)]
    rng.shuffle(sentences)
    parts = [rng.choice(_GREETINGS), *sentences, rng.choice(_SIGNOFFS)]
    return " ".join(part for part in parts if part)


def ticket_examples(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """Make ``n`` synthetic support tickets with the queue each belongs to.

    Queues take turns (``billing``, ``technical``, ``account``, ``shipping``, ...) before a seeded
    shuffle, so every queue gets ``n // 4`` or ``n // 4 + 1`` tickets.

    Args:
        n: How many tickets to make (0 or more).
        seed: Seed of the private random generator; the same ``(n, seed)`` gives the same list.

    Returns:
        ``(ticket_text, queue)`` pairs; ``queue`` is one of :data:`QUEUES`.

    Raises:
        ValueError: ``n`` is negative.
    """
    if n < 0:
        raise ValueError(f"n must be 0 or more, got {n}")
    rng = random.Random(seed)
    queues = [QUEUES[i % len(QUEUES)] for i in range(n)]
    rng.shuffle(queues)
    return [(_ticket(rng, queue), queue) for queue in queues]


def ticket_texts(n: int, seed: int = 0) -> list[str]:
    """The texts of :func:`ticket_examples` only (e.g. to train a tokenizer on).

    Args:
        n: How many tickets to make.
        seed: Seed, as for :func:`ticket_examples`.

    Returns:
        The ticket texts.
    """
    return [text for text, _ in ticket_examples(n, seed)]


def chat_example(system: str, user: str, assistant: str) -> dict[str, Any]:
    """One training example in the OpenAI / TRL chat format that dataset exports use.

    Args:
        system: The system prompt (instructions).
        user: The user turn (e.g. the ticket).
        assistant: The target answer the model should learn to give.

    Returns:
        ``{"messages": [{"role": "system", ...}, {"role": "user", ...}, {"role": "assistant", ...}]}``.
    """
    return {
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
            {"role": "assistant", "content": assistant},
        ]
    }
