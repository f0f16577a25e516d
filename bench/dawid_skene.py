"""CPU time of the Dawid–Skene fit that reviewer weighting runs whenever a project's votes change.

Simulated projects: ``--items`` examples with four labels, each voted on by three of eight reviewers
whose accuracy is drawn between 0.5 and 0.95 (a wrong vote is a random label). Reports the best CPU
time of ``--repeats`` fits (one thread), the EM iterations it took, and how often the model's label
matches the simulated truth against majority vote's. Timing needs an idle machine.

    .venv/bin/python bench/dawid_skene.py --items 500 2000 5000
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

from runner.data import agreement, dawid_skene

LABELS = ["billing", "technical", "account", "shipping"]


def simulated(items: int, seed: int = 7) -> tuple[dict[int, dict[str, str]], dict[int, str]]:
    rng = random.Random(seed)
    accuracy = {f"R{j}": rng.uniform(0.5, 0.95) for j in range(8)}
    truth = {i: rng.choice(LABELS) for i in range(items)}
    units = {
        i: {
            r: truth[i] if rng.random() < accuracy[r] else rng.choice(LABELS)
            for r in rng.sample(sorted(accuracy), 3)
        }
        for i in range(items)
    }
    return units, truth


def measure(items: int, repeats: int) -> dict[str, Any]:
    units, truth = simulated(items)
    best, model = float("inf"), None
    for _ in range(repeats):
        began = time.process_time()
        model = dawid_skene.fit(units, LABELS)
        best = min(best, time.process_time() - began)
    assert model is not None
    weighted = sum(model.label(i) == truth[i] for i in units) / items
    majority = sum(agreement.consensus(v).label == truth[i] for i, v in units.items()) / items
    return {
        "items": items,
        "cpu_s": round(best, 3),
        "iterations": model.iterations,
        "weighted_right": round(weighted, 3),
        "majority_right": round(majority, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[500, 2000, 5000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for items in args.items:
        print(measure(items, args.repeats))


if __name__ == "__main__":
    main()
