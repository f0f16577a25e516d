"""One process vs two "nodes" on this machine (torchrun's c10d rendezvous, gloo on CPU): wall time,
real tokens/s, peak memory per process, final loss, and the largest step-loss difference.

Both train the tiny model with the same global batch: one process (``torchrun --standalone``) with
``grad_accum_steps=2``; two torchrun launchers with ``--nnodes 2 --nproc-per-node 1`` meeting at a
c10d rendezvous on 127.0.0.1 (what ``FTBOT_MULTINODE=torchrun`` starts on two machines), one micro-
batch each. Each process has one torch thread. Wall time includes the launch (torchrun, imports,
rendezvous, model loading).

    .venv/bin/python bench/multinode.py [--layers 4] [--hidden 256] [--examples 400] [--epochs 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from demo.synthetic import chat_example, ticket_examples, ticket_texts  # noqa: E402
from demo.tinymodel import make_tiny_model  # noqa: E402
from runner.core.trainconfig import TrainConfig  # noqa: E402
from runner.ml import distributed  # noqa: E402

SYSTEM = "route the ticket to one queue: billing, technical, account or shipping."


def two_nodes(config: TrainConfig, data: Any, folder: Path) -> Any:
    """Two torchrun launchers, one per "node", as two machines' node jobs would start them."""
    workdir = folder / "work"
    spec = distributed.write_inputs(config, *data, folder / "out", workdir=workdir, checkpoint_dir=None)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    link = distributed.FileLink(workdir)  # both "nodes" share this machine's disk
    groups = [
        distributed.start(
            distributed.torchrun_command(
                1,
                spec,
                distributed.Rendezvous(
                    nodes=2,
                    endpoint=f"127.0.0.1:{port}",
                    run_id="bench",
                    is_host=head,
                    local_addr="127.0.0.1",
                ),
            ),
            workdir / f"torchrun-{name}.log",
        )
        for name, head in (("a", True), ("b", False))
    ]
    outcome = distributed.watch(lambda: all(g.poll() is not None for g in groups), link)
    return distributed.conclude(
        outcome,
        exited_cleanly=all(g.returncode == 0 for g in groups),
        failure=lambda: distributed.log_tail(workdir / "torchrun-a.log"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--examples", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-tokens", type=int, default=2048)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    root = Path(tempfile.mkdtemp(prefix="ftbot-multinode-"))
    model = make_tiny_model(
        root / "model",
        ticket_texts(2000, seed=99) + [SYSTEM],
        hidden_size=args.hidden,
        num_layers=args.layers,
    )
    data = (
        [chat_example(SYSTEM, t, q) for t, q in ticket_examples(args.examples, seed=1)],
        [chat_example(SYSTEM, t, q) for t, q in ticket_examples(40, seed=2)],
    )
    base = {
        "base_model": str(model),
        "epochs": args.epochs,
        "lr": 3e-3,
        "lora_r": 16,
        "lora_dropout": 0.0,  # each process draws its own masks: off, so the runs compare
        "max_len": 512,
        "batch_tokens": args.batch_tokens,
        "early_stopping_patience": 0,
        "checkpoint_every": 0,
    }
    print("command:", " ".join([sys.executable, *sys.argv]))
    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()}, python {platform.python_version()}"
    )
    results = {}
    for label in ("1 process", "2 nodes x 1 process"):
        began = time.perf_counter()
        if label == "1 process":
            config = TrainConfig(**base, grad_accum_steps=2)
            result = distributed.launch(config, *data, root / "one" / "out", workdir=root / "one" / "work")
        else:
            result = two_nodes(TrainConfig(**base, nodes=2), data, root / "two")
        wall = time.perf_counter() - began
        results[label] = result
        print(
            f"{label}: {result.steps} steps, {result.train_tokens} real tokens, "
            f"{result.tokens_per_s:.0f} real tokens/s (training loop), wall {wall:.1f} s with launch, "
            f"peak RSS per process {[round(p / 2**20) for p in result.peak_memory_per_process]} MiB, "
            f"final train loss {result.final_train_loss:.6f}"
        )
    one, two = results.values()
    gap = max(abs(a[1] - b[1]) for a, b in zip(one.loss_curve, two.loss_curve, strict=True))
    print(f"largest step-loss difference: {gap:.3g}")


if __name__ == "__main__":
    main()
