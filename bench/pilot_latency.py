"""Pilot latency: message → suggestion p50/p95, and predictions/s batched against one at a time.

What runs is the predict worker's own job body (`runner.jobs.predict.answer_queued`) with its warm
backend (`LocalBackend`: the base model and the adapter loaded once, before anything is timed), on a
tiny random Llama (``demo.tinymodel``) with a random LoRA adapter (its answers run to the
classification limit of 16 new tokens: the worst case for batching), SQLite, and the Slack emulator
of the tests (``tests/slack_emulator.py``) receiving the suggestions.

* **Throughput**: ``--messages`` pilot messages are recorded at once (as the bot records them), then
  answered with ``FTBOT_PREDICT_BATCH`` = ``--batch`` and with 1; predictions per second of wall
  time, modes alternating over ``--repeats``.
* **Latency under arrivals**: messages arrive at a fixed rate (a thread records one every 1/rate
  seconds, posting it to the emulator first), while the worker loop answers whatever is queued;
  latency is the time from the prediction's record to its suggestion posted in the thread
  (``Prediction.posted_at - created_at``). Two loads, relative to the one-at-a-time throughput just
  measured: light (0.5×) and heavy (2×). Not included: Slack → bot (the event's ack and its
  listener) and Redis → worker (RQ's dequeue), a few milliseconds each.

``--base-model smollm2-135m`` measures the real base model instead (pulled first with
``ftbot models pull smollm2-135m``; float32 on the CPU, ``quantize=false``), with the adapter given by
``--adapter`` (a trained version's artifact folder, e.g. the demo's v1) or a random one of rank 16 on
every linear layer, and the shipped realistic support tickets as messages.

    .venv/bin/python bench/pilot_latency.py                    # ~1-2 min on 2 idle cores
    .venv/bin/python bench/pilot_latency.py --messages 96 --json pilot.json
    .venv/bin/python bench/pilot_latency.py --base-model smollm2-135m --messages 32 --batch 8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

CHANNEL = "CPILOT"
INSTRUCTIONS = "route the support ticket to one queue: billing, technical, account or shipping."


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def build(folder: Path, base_model: str | None, adapter: Path | None) -> tuple[Path, Path]:
    """The base model (the tiny random one, or a pulled one) and a LoRA adapter for it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from demo import synthetic
    from demo.tinymodel import make_tiny_model
    from runner.core import basemodels
    from runner.core.config import load_settings

    if base_model is None:
        base = make_tiny_model(folder / "model", synthetic.ticket_texts(2000) + [INSTRUCTIONS])
        lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    else:
        base = Path(basemodels.resolve(base_model, load_settings().ftbot_models_dir))
        lora = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", init_lora_weights=False)
    if adapter is not None:
        return base, adapter
    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(str(base))
    random_adapter = folder / "adapter"
    get_peft_model(model, lora).save_pretrained(str(random_adapter))
    return base, random_adapter


def messages(real: bool, n: int) -> list[str]:
    """Message texts: the shipped realistic tickets for a real model, synthetic ones for the tiny."""
    if not real:
        from demo import synthetic

        return synthetic.ticket_texts(n)
    from importlib.resources import files

    lines = (files("demo") / "data" / "support_tickets.jsonl").read_text().splitlines()
    return [json.loads(line)["input"] for line in lines]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=64, help="messages per measurement")
    parser.add_argument("--batch", type=int, default=16, help="FTBOT_PREDICT_BATCH for the batched mode")
    parser.add_argument("--repeats", type=int, default=2, help="throughput passes per mode")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    parser.add_argument(
        "--base-model", help="a pulled base model (e.g. smollm2-135m) instead of the tiny one"
    )
    parser.add_argument("--adapter", type=Path, help="a trained adapter folder for --base-model")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from sqlmodel import col, select

    from runner.core.config import Settings
    from runner.core.db import make_engine, session_scope, upgrade
    from runner.core.models import ModelVersion, Prediction, Snapshot
    from runner.core.policy import Person
    from runner.data import projects
    from runner.jobs.predict import LocalBackend, answer_queued
    from runner.registry import pilot, versions
    from tests.conftest import manifest_bot_scopes
    from tests.slack_emulator import SlackEmulator

    print("command:", " ".join([sys.executable, *sys.argv]))
    print(
        f"machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()}, torch {torch.__version__}, load {os.getloadavg()[0]:.2f}"
    )
    with (
        tempfile.TemporaryDirectory() as tmp,
        SlackEmulator(bot_token="xoxb-bench", scopes=manifest_bot_scopes()) as emu,
    ):
        folder = Path(tmp)
        base, adapter = build(folder, args.base_model, args.adapter)
        print(f"model: {base}, adapter {adapter}")
        emu.add_channel(CHANNEL, "support")
        settings = Settings(
            slack_bot_token="xoxb-bench",
            slack_api_url=emu.base_url,
            ftbot_data_dir=folder / "data",
            database_url=f"sqlite:///{folder / 'ftbot.db'}",
        )
        engine = make_engine(settings.sqlalchemy_url)
        upgrade(engine)
        with session_scope(engine) as session:
            project = projects.create_project(
                session,
                projects.ProjectSpec(
                    name="ticket-router",
                    task_type="classification",
                    label_lines="billing\ntechnical\naccount\nshipping",
                    reviewers=["UREVIEW"],
                    instructions=INSTRUCTIONS,
                ),
                owner_id="UOWNER",
                channel_id=CHANNEL,
            )
            session.add(Snapshot(id="b" * 64, project_id=project.id))
            session.flush()
            session.add(
                ModelVersion(
                    project_id=project.id or 0,
                    number=1,
                    snapshot_id="b" * 64,
                    base_model=str(base),
                    artifact_path=str(adapter),
                    config={"quantize": False},
                )
            )
        versions.request_move(
            engine, settings, Person.cli("bench"), "promote", project_name="ticket-router", number=1
        )
        with session_scope(engine) as session:
            pilot.set_pilot(
                session,
                projects.get_project(session, "ticket-router"),
                enabled=True,
                channel_id=CHANNEL,
                by="bench",
            )
        backend = LocalBackend(max_adapters=4)
        tickets = messages(args.base_model is not None, max(args.messages, 64) * 4)
        counter = iter(range(10**9))

        def arrive(text: str) -> int:
            message = emu.post_user_message(CHANNEL, text, "UCUSTOMER")
            with session_scope(engine) as session:
                (prediction_id,) = pilot.ask_for_message(session, CHANNEL, message["ts"], "UCUSTOMER", text)
            return prediction_id

        def drain(batch: int) -> None:
            settings.ftbot_predict_batch = batch
            answer_queued(settings, engine, backend)

        # warm-up: load the base and the adapter, fill caches (untimed)
        for _ in range(args.batch):
            arrive(tickets[next(counter) % len(tickets)])
        drain(args.batch)

        throughput: dict[str, list[float]] = {"batched": [], "one at a time": []}
        for repeat in range(args.repeats):
            modes = [("batched", args.batch), ("one at a time", 1)]
            for name, batch in modes if repeat % 2 == 0 else list(reversed(modes)):
                for _ in range(args.messages):
                    arrive(tickets[next(counter) % len(tickets)])
                began = time.perf_counter()
                drain(batch)
                throughput[name].append(args.messages / (time.perf_counter() - began))
        serial = statistics.median(throughput["one at a time"])

        latency: dict[str, dict[str, Any]] = {}
        for load, factor in (("light", 0.5), ("heavy", 2.0)):
            rate = factor * serial
            for name, batch in (("batched", args.batch), ("one at a time", 1)):
                ids: list[int] = []

                def arrivals(rate: float = rate, ids: list[int] = ids) -> None:
                    start = time.perf_counter()
                    for i in range(args.messages):
                        delay = start + i / rate - time.perf_counter()
                        if delay > 0:
                            time.sleep(delay)
                        ids.append(arrive(tickets[next(counter) % len(tickets)]))

                thread = threading.Thread(target=arrivals)
                thread.start()
                while thread.is_alive() or len(ids) < args.messages:
                    drain(batch)
                thread.join()
                drain(batch)
                with session_scope(engine) as session:
                    rows = session.exec(select(Prediction).where(col(Prediction.id).in_(ids))).all()
                    seconds = [(p.posted_at - p.created_at).total_seconds() for p in rows if p.posted_at]
                    sizes = [p.batch_size or 0 for p in rows]
                assert len(seconds) == args.messages, f"{len(seconds)} of {args.messages} suggestions posted"
                latency[f"{load} ({rate:.1f}/s), {name}"] = {
                    "p50_ms": 1000 * quantile(seconds, 0.5),
                    "p95_ms": 1000 * quantile(seconds, 0.95),
                    "mean_batch": statistics.fmean(sizes),
                }
        print(f"\nmodel loads: bases {backend.warm.counts.bases}, adapters {backend.warm.counts.adapters}")
        print(f"\npredictions/s ({args.messages} queued at once, median of {args.repeats}):")
        for name, values in throughput.items():
            passes = ", ".join(f"{v:.1f}" for v in values)
            print(f"  {name:<14} {statistics.median(values):8.1f}   (passes: {passes})")
        print(f"  batched / one at a time: {statistics.median(throughput['batched']) / serial:.2f}x")
        print("\nmessage → suggestion latency under arrivals (ms):")
        for name, figures in latency.items():
            print(
                f"  {name:<34} p50 {figures['p50_ms']:8.1f}   p95 {figures['p95_ms']:8.1f}   "
                f"mean batch {figures['mean_batch']:.1f}"
            )
        if args.json:
            args.json.write_text(json.dumps({"throughput": throughput, "latency": latency}, indent=2))
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
