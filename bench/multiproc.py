"""One vs two training processes (torchrun, gloo on CPU), and a paused-and-resumed run vs an
uninterrupted one: real tokens/s, peak memory per process, final loss, loss differences.

Both process counts run through ``runner.ml.distributed.launch`` (torchrun) with the same global
batch: one process with ``grad_accum_steps=2``, two processes with one micro-batch each, each process
on one torch thread. The resumed run pauses at ``--pause-at`` through the same control file the job
uses, then a second launch goes on from the checkpoint.

    .venv/bin/python bench/multiproc.py [--layers 4] [--hidden 256] [--examples 400] [--epochs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from demo.synthetic import chat_example, ticket_examples, ticket_texts  # noqa: E402
from demo.tinymodel import make_tiny_model  # noqa: E402
from runner.core.trainconfig import Progress, TrainConfig, TrainingPaused  # noqa: E402
from runner.ml.distributed import launch  # noqa: E402

SYSTEM = "route the ticket to one queue: billing, technical, account or shipping."


def run(config: TrainConfig, data: Any, folder: Path, **hooks: Any) -> Any:
    began = time.perf_counter()
    result = launch(config, *data, folder / "out", workdir=folder / "work", **hooks)
    result.wall_time_s = time.perf_counter() - began  # launch included: torchrun, imports, loading
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--examples", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-tokens", type=int, default=2048)
    parser.add_argument("--pause-at", type=int, default=6)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    root = Path(tempfile.mkdtemp(prefix="ftbot-multiproc-"))
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
        "lora_dropout": 0.0,  # each process draws its own masks: off, so 1 and 2 processes compare
        "max_len": 512,
        "batch_tokens": args.batch_tokens,
        "early_stopping_patience": 0,
        "checkpoint_every": 0,
    }
    print("command:", " ".join([sys.executable, *sys.argv]))
    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()}, python {platform.python_version()}"
    )
    results: dict[str, Any] = {}
    for procs, accum in ((1, 2), (2, 1)):
        config = TrainConfig(**base, procs=procs, grad_accum_steps=accum)
        result = run(config, data, root / f"p{procs}")
        results[f"{procs}proc"] = result
        print(
            f"{procs} process(es): {result.steps} steps, {result.train_tokens} real tokens, "
            f"{result.tokens_per_s:.0f} real tokens/s (training loop), "
            f"wall {result.wall_time_s:.1f} s with launch, "
            f"peak RSS per process {[round(p / 2**20) for p in result.peak_memory_per_process]} MiB, "
            f"final train loss {result.final_train_loss:.6f}, best eval loss {result.best_eval_loss:.6f}"
        )
    one, two = results["1proc"], results["2proc"]
    loss_gap = max(abs(a[1] - b[1]) for a, b in zip(one.loss_curve, two.loss_curve, strict=True))
    print(f"1 vs 2 processes: largest step-loss difference {loss_gap:.3g}")

    # Paused at --pause-at and resumed (2 processes, a checkpoint on pause), vs uninterrupted.
    config = TrainConfig(**base, procs=2, grad_accum_steps=1)
    folder = root / "resume"
    pause_at = args.pause_at

    def pause_when(progress: Progress) -> None:
        if progress.step == pause_at:
            (folder / "work" / "control").write_text("pause")

    try:
        run(config, data, folder, checkpoint_dir=folder / "ckpt", progress=pause_when)
        raise SystemExit("the run ended before it paused: lower --pause-at")
    except TrainingPaused as paused:
        print(f"paused at step {paused.step}")
    resumed = run(config, data, folder, checkpoint_dir=folder / "ckpt")
    gap = max(abs(a[1] - b[1]) for a, b in zip(resumed.loss_curve, two.loss_curve, strict=True))
    print(
        f"resumed vs uninterrupted (2 processes): final loss {resumed.final_train_loss:.6f} vs "
        f"{two.final_train_loss:.6f}, largest step-loss difference {gap:.3g}, "
        f"eval losses equal: {resumed.eval_losses == two.eval_losses}"
    )
    if args.json:
        args.json.write_text(
            json.dumps({k: v.to_dict() for k, v in {**results, "resumed": resumed}.items()}, indent=2)
        )


if __name__ == "__main__":
    main()
