"""CPU time of the pure functions that run on every snapshot and every interview answer.

* ``near_duplicate_groups`` on 5,000 mixed support-ticket-like texts (a fifth of them one-letter
  edits of an earlier text) and on one cluster of 3,000 long texts sharing a 100-word body, the
  input where pairwise work would be quadratic. Goal: under 2 s of CPU each.
* ``readiness.is_decided`` on its slowest inputs found by exhaustive search (about 770 completions
  each). Goal: under 50 ms each.

The workloads are those of ``tests/unit/test_textnorm.py`` and ``tests/unit/test_readiness.py``,
which check what these functions return; this script measures how long they take (best of
``--repeats``, CPU time of this process, one thread).

    .venv/bin/python bench/pure_logic.py
"""

from __future__ import annotations

import argparse
import random
import string
import sys
import time
from collections.abc import Callable
from typing import Any

from runner.data.textnorm import near_duplicate_groups
from runner.interview.readiness import Answer, is_decided


def mixed_texts(n: int = 5000, seed: int = 1234) -> list[str]:
    rng = random.Random(seed)
    vocab = [
        "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 9))) for _ in range(3000)
    ]
    texts: list[str] = []
    for _ in range(n):
        if texts and rng.random() < 0.2:
            chars = list(rng.choice(texts))
            chars[rng.randrange(len(chars))] = rng.choice(string.ascii_lowercase)
            texts.append("".join(chars))
        else:
            words = rng.choice([rng.randint(3, 25), rng.randint(25, 60), rng.randint(60, 150)])
            texts.append(" ".join(rng.choice(vocab) for _ in range(words)).capitalize() + "?")
    return texts


def one_cluster(n: int = 3000, seed: int = 99) -> list[str]:
    rng = random.Random(seed)
    vocab = [
        "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 9))) for _ in range(2000)
    ]
    body = " ".join(rng.choice(vocab) for _ in range(100))
    return [f"{body} {' '.join(rng.choice(vocab) for _ in range(4))}" for _ in range(n)]


def best_cpu_seconds(function: Callable[[], Any], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        function()
        best = min(best, time.process_time() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    args = parser.parse_args(argv)
    y = Answer.YES
    mixed, cluster = mixed_texts(), one_cluster()
    cases: list[tuple[str, Callable[[], Any], float]] = [
        ("near_duplicate_groups, 5,000 mixed texts", lambda: near_duplicate_groups(mixed), 2.0),
        (
            "near_duplicate_groups, one 3,000-text cluster",
            lambda: near_duplicate_groups(cluster),
            2.0,
        ),
    ]
    for name, answers in (
        ("{}", {}),
        ("facts_change", {"facts_change": y}),
        ("multi_step", {"multi_step": y}),
        ("facts_change + multi_step", {"facts_change": y, "multi_step": y}),
    ):
        cases.append((f"is_decided({name})", lambda a=answers: is_decided(a), 0.05))
    missed = 0
    print(f"{'workload':<50}{'CPU s':>10}{'goal s':>10}")
    for name, function, goal in cases:
        seconds = best_cpu_seconds(function, args.repeats)
        missed += seconds >= goal
        print(f"{name:<50}{seconds:>10.4f}{goal:>10.2f}{'' if seconds < goal else '  missed'}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
