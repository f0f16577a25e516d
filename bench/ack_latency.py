"""Ack latency of button presses: a real `ftbot serve` side by side with a bare-Bolt floor.

What it measures: the time from sending a signed ``block_actions`` request to reading the whole
HTTP response (the ack), for interview answer buttons, against two gunicorn (``gthread``) servers
started here with the same workers and threads:

* **ftbot**: ``ftbot serve`` (SQLite in a temporary ``FTBOT_DATA_DIR``; ``SLACK_API_URL`` pointing
  at a `tests.slack_emulator.SlackEmulator` running in this process). Readiness interviews are
  started with signed ``/finetune start`` slash commands and the buttons the bot actually posted are
  pressed (action_id, block_id and value echoed, as `tests.slack_client.SlackSide.press` does), so
  after each ack the bot does its real work: the compare-and-set in the database and the
  ``chat.update`` of the question message. Several interviews run in round-robin, so that the bot's
  work after one press overlaps the next press, as in real life; a press waits (untimed) only when
  its interview's next question has not been posted yet.
* **floor**: `bench/bare_app.py`, a bare Bolt app whose only listener acks, pressed with the same
  payloads (the question messages ftbot posted, replayed).

Presses are sequential per target (latency, not throughput) and the targets alternate in blocks
(``--block`` presses each, in turns), after ``--warmup`` uncounted presses each, so machine noise
hits both alike. The timed part is only the HTTP exchange (connect, send, read the response), done
in a separate process that runs nothing else, so neither the emulator's threads nor the payload
building and signing here can delay the clock.

Usage::

    .venv/bin/python bench/ack_latency.py [--presses 1000] [--workers 1] [--threads 8] [--json out.json]

The goal is p99(ftbot) within 2x p99(floor). Exit status: 0 after a complete run (goal met or not),
1 when a server failed or a press was refused. See bench/README.md for the latest figures.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import multiprocessing
import os
import platform
import random
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from runner.interview import readiness  # noqa: E402
from tests.slack_client import Reply, SlackSide, buttons  # noqa: E402
from tests.slack_emulator import SlackEmulator  # noqa: E402

SIGNING_SECRET = "bench-signing-secret"
BOT_TOKEN = "xoxb-bench"
GOAL_RATIO = 2.0
# Answers that never let the interview stop early: all 11 questions are asked (see runner/readiness).
KEEP_GOING = {readiness.SITUATION: ("No", "Not sure"), readiness.CHECKLIST: ("No", "Not sure")}
KIND = {q.id: q.kind for q in readiness.QUESTIONS}
TOTAL = len(readiness.QUESTIONS)


# --- the timing process ---------------------------------------------------------------------


def _presser(conn: Connection) -> None:
    """Child process: perform each HTTP request it is sent and return (status, body, seconds)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops us
    while True:
        job = conn.recv()
        if job is None:
            return
        host, port, path, body, headers = job
        client = http.client.HTTPConnection(host, port, timeout=30)
        try:
            start = time.perf_counter()
            client.request("POST", path, body=body, headers=headers)
            response = client.getresponse()
            data = response.read()
            elapsed = time.perf_counter() - start
            conn.send((response.status, data.decode("utf-8", "replace"), elapsed))
        except OSError as exc:
            conn.send((0, f"{type(exc).__name__}: {exc}", math.nan))
        finally:
            client.close()


class Presser:
    """Runs `_presser` in its own process (spawned: it inherits no threads from this one)."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_presser, args=(child,), daemon=True, name="ack-presser")
        self.process.start()
        child.close()

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str, float]:
        parts = urlsplit(url)
        self.conn.send((parts.hostname, parts.port, parts.path, body, headers))
        result: tuple[int, str, float] = self.conn.recv()
        return result

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(None)
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)


class TimedSlackSide(SlackSide):
    """`SlackSide` (same payloads, same signatures) whose requests go through the `Presser`."""

    def __init__(self, url: str, signing_secret: str, emulator: Any, presser: Presser) -> None:
        super().__init__(url, signing_secret, emulator)
        self.presser = presser
        self.last_seconds = math.nan

    def send(self, body: bytes, headers: dict[str, str]) -> Reply:
        status, text, seconds = self.presser.post(self.url, body, headers)
        self.last_seconds = seconds
        return Reply(status, text, {})


# --- servers ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    port: int
    ready_path: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.log_path.open("wb")
        # Its own session: gunicorn's master and workers form one process group we can signal.
        self.process = subprocess.Popen(
            self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def wait_ready(self, timeout: float = 90.0) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + self.ready_path, timeout=2) as response:
                    if response.status == 200:
                        return
            except urllib.error.HTTPError as error:
                if error.code < 500 and self.ready_path != "/healthz":
                    return  # the bare app answers 404 to GET: a worker is up
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM to the server's process group (gunicorn finishes in-flight requests), then SIGKILL."""
        if self.process is None or self.process.poll() is not None:
            return
        pgid = self.process.pid  # start_new_session: the group id is the master's pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):  # slow to stop, or a second Ctrl-C
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            self.process.wait(timeout=10)
        # Workers that outlived the master (they should not) go with the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def log_problems(self) -> list[str]:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if " WARNING " in line or " ERROR " in line]


def _ftbot_argv() -> list[str]:
    script = Path(sys.executable).parent / "ftbot"
    return [str(script)] if script.exists() else [sys.executable, "-m", "bot.cli"]


def _server_env(emulator_url: str, data_dir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET", "SLACK_APP_TOKEN"}
    }
    env.update(
        SLACK_API_URL=emulator_url,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_BOT_TOKEN=BOT_TOKEN,
        FTBOT_DATA_DIR=str(data_dir),
        PYTHONUNBUFFERED="1",
    )
    return env


# --- the interviews being pressed ---------------------------------------------------------------


def _step(message: dict[str, Any]) -> str:
    """The actions block id (``interview:<id>:<step>``): it changes with every accepted press."""
    return next(b["block_id"] for b in message.get("blocks", []) if b.get("type") == "actions")


@dataclass
class Slot:
    """One of the interviews in round-robin; each interview gets a channel of its own."""

    index: int
    user: str
    channel: str = ""
    answered: int = 0
    pressed_step: str | None = None  # the step last pressed; the next question has another


@dataclass
class Pressed:
    """A question message pressed at ftbot, kept for the floor to press again."""

    message: dict[str, Any]
    label: str
    channel: str
    user: str


@dataclass
class Run:
    emulator: SlackEmulator
    ftbot: TimedSlackSide
    floor: TimedSlackSide
    slots: list[Slot]
    rng: random.Random
    replay: deque[Pressed] = field(default_factory=lambda: deque(maxlen=200))
    channels: int = 0
    interviews_started: int = 0
    interviews_finished: int = 0
    presses_sent: int = 0
    waits: int = 0
    wait_seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    # -- ftbot

    def new_interview(self, slot: Slot) -> None:
        """A fresh channel and a signed `/finetune start …` in it (not timed)."""
        self.channels += 1
        slot.channel = f"CB{self.channels:07d}"
        slot.answered = 0
        slot.pressed_step = None
        self.emulator.add_channel(slot.channel, f"bench-{self.channels}")
        reply = self.ftbot.slash(
            f"start benchmark interview {self.channels}", user=slot.user, channel=slot.channel
        )
        if reply.status != 200:
            self.failures.append(f"/finetune start: HTTP {reply.status} {reply.body[:200]}")
        self.interviews_started += 1

    def _question(self, slot: Slot) -> dict[str, Any] | None:
        for message in self.emulator.messages(slot.channel):
            if "Yes" in buttons(message) and _step(message) != slot.pressed_step:
                return message
        return None

    def question(self, slot: Slot, *, before_press: bool = True) -> dict[str, Any]:
        """The slot's next question as the bot posted it; waits (untimed) only if not there yet."""
        message = self._question(slot)
        if message is None:
            started = time.perf_counter()
            message = self.emulator.wait_for(
                lambda: self._question(slot), timeout=30, what=f"the next question in {slot.channel}"
            )
            if before_press:
                self.waits += 1
                self.wait_seconds += time.perf_counter() - started
        return message

    def press_ftbot(self) -> float:
        slot = self.slots[self.presses_sent % len(self.slots)]
        message = self.question(slot)
        qid = json.loads(buttons(message)["Yes"][1]["value"])["q"]
        label = self.rng.choice(KEEP_GOING[KIND[qid]])
        reply = self.ftbot.press(message, label, user=slot.user, channel=slot.channel)
        self.presses_sent += 1
        if reply.status != 200:
            self.failures.append(f"ftbot press: HTTP {reply.status} {reply.body[:200]}")
        self.replay.append(Pressed(message, label, slot.channel, slot.user))
        slot.pressed_step = _step(message)
        slot.answered += 1
        if slot.answered == TOTAL:  # that press finished it: the bot posts the result; start another
            self.interviews_finished += 1
            self.new_interview(slot)
        return self.ftbot.last_seconds

    def settle(self) -> None:
        """Wait (untimed) until the bot has shown the effect of every press sent so far."""
        for slot in self.slots:
            self.question(slot, before_press=False)

    # -- floor

    def press_floor(self, n: int) -> float:
        pressed = self.replay[n % len(self.replay)]
        reply = self.floor.press(pressed.message, pressed.label, user=pressed.user, channel=pressed.channel)
        if reply.status != 200:
            self.failures.append(f"floor press: HTTP {reply.status} {reply.body[:200]}")
        return self.floor.last_seconds


# --- statistics and report ----------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    k = (len(ordered) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "median_ms": statistics.median(ms),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms),
        "mean_ms": statistics.fmean(ms),
    }


def machine_facts() -> dict[str, Any]:
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "?"

    return {
        "nproc": nproc,
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "slack_bolt": version("slack_bolt"),
        "gunicorn": version("gunicorn"),
        "sqlalchemy": version("sqlalchemy"),
    }


def report(results: dict[str, Any]) -> str:
    m, cfg, s = results["machine"], results["config"], results["stats"]
    lines = [
        f"ack latency benchmark, {results['date']}",
        f"command: {results['command']}",
        f"machine: nproc={m['nproc']} (cpu_count={m['cpu_count']}) {m['cpu_model']}; {m['python']}; "
        f"{m['platform']}; load avg at start {m['loadavg_at_start']}",
        f"software: slack_bolt {m['slack_bolt']}, gunicorn {m['gunicorn']}, SQLAlchemy {m['sqlalchemy']}",
        f"servers: gunicorn gthread, workers={cfg['workers']}, threads={cfg['threads']}; "
        "ftbot on SQLite (temp dir); Slack Web API = in-process emulator",
        f"presses: {cfg['presses']} counted per target (+{cfg['warmup']} warm-up each), alternating "
        f"blocks of {cfg['block']}; ftbot: {results['ftbot_run']['interviews_started']} interviews "
        f"started ({results['ftbot_run']['interviews_finished']} finished), {cfg['interviews']} in "
        f"round-robin; a press had to wait for its interview's previous update "
        f"{results['ftbot_run']['waits']} times ({results['ftbot_run']['wait_seconds']:.2f} s, untimed)",
        "",
        f"{'target':<8}{'n':>6}{'median':>10}{'p90':>10}{'p99':>10}{'max':>10}{'mean':>10}   (ms)",
    ]
    for name in ("ftbot", "floor"):
        t = s[name]
        lines.append(
            f"{name:<8}{t['n']:>6}{t['median_ms']:>10.2f}{t['p90_ms']:>10.2f}{t['p99_ms']:>10.2f}"
            f"{t['max_ms']:>10.2f}{t['mean_ms']:>10.2f}"
        )
    lines += [
        "",
        f"p99 ratio ftbot/floor: {results['p99_ratio']:.2f}",
        f"goal (p99 within {GOAL_RATIO:g}x the floor): {'met' if results['goal_met'] else 'NOT MET'}",
    ]
    checks, ran = results["checks"], results["ftbot_run"]
    lines.append(
        f"checks: failed requests {len(checks['failures'])}; refusals posted by ftbot "
        f"{checks['ftbot_refusals']}; chat.update calls {checks['chat_update_calls']} "
        f"(ftbot presses {ran['presses_sent']}); recommendations {checks['recommendations']} "
        f"(interviews finished {ran['interviews_finished']}); warnings/errors in ftbot's log "
        f"{len(checks['ftbot_log_problems'])}"
    )
    for problem in (checks["failures"] + checks["ftbot_log_problems"])[:10]:
        lines.append(f"  {problem}")
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Ack latency of button presses: ftbot vs a bare Bolt floor.")
    parser.add_argument("--presses", type=int, default=1000, help="counted presses per target")
    parser.add_argument("--workers", type=int, default=1, help="gunicorn workers (ftbot serve's default)")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker (ftbot serve's default)")
    parser.add_argument("--warmup", type=int, default=50, help="uncounted presses per target first")
    parser.add_argument("--block", type=int, default=50, help="presses per target per turn")
    parser.add_argument("--interviews", type=int, default=8, help="ftbot interviews in round-robin")
    parser.add_argument("--seed", type=int, default=1, help="seed for the answers chosen")
    parser.add_argument("--json", type=Path, help="also write the results (and every sample) here")
    args = parser.parse_args(argv)
    for name in ("presses", "workers", "threads", "block", "interviews"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must be at least 0")
    return args


def _terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop the servers


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    command = shlex.join(sys.orig_argv if argv is None else [sys.executable, __file__, *argv])
    facts = machine_facts()
    started_at = datetime.now().astimezone()

    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ftbot-bench-")))
        presser = Presser()
        stack.callback(presser.close)
        emulator = stack.enter_context(SlackEmulator(bot_token=BOT_TOKEN))
        users = [f"UBENCH{i:02d}" for i in range(args.interviews)]
        for user in users:
            emulator.add_user(user, user.lower())

        env = _server_env(emulator.base_url, tmp / "ftbot-data")
        size = ["--workers", str(args.workers), "--threads", str(args.threads)]
        ftbot_port, floor_port = _free_port(), _free_port()
        servers = [
            Server(
                "ftbot",
                [*_ftbot_argv(), "serve", "--host", "127.0.0.1", "--port", str(ftbot_port), *size],
                env,
                tmp / "ftbot.log",
                ftbot_port,
                "/healthz",
            ),
            Server(
                "floor",
                [sys.executable, str(ROOT / "bench" / "bare_app.py"), "--port", str(floor_port), *size],
                env,
                tmp / "floor.log",
                floor_port,
                "/slack/events",
            ),
        ]
        for server in servers:
            stack.callback(server.stop)
            server.start()
        try:
            for server in servers:
                server.wait_ready()
        except RuntimeError as exc:
            print(f"ack_latency: {exc}", file=sys.stderr)
            return 1
        ftbot, floor = servers

        run = Run(
            emulator=emulator,
            ftbot=TimedSlackSide(ftbot.url + "/slack/events", SIGNING_SECRET, emulator, presser),
            floor=TimedSlackSide(floor.url + "/slack/events", SIGNING_SECRET, emulator, presser),
            slots=[Slot(i, user) for i, user in enumerate(users)],
            rng=random.Random(args.seed),
        )
        for slot in run.slots:
            run.new_interview(slot)

        samples: dict[str, list[float]] = {"ftbot": [], "floor": []}
        try:
            floor_n = 0
            print(f"warming up ({args.warmup} presses each) ...", file=sys.stderr)
            for _ in range(args.warmup):
                run.press_ftbot()
            run.settle()
            for _ in range(args.warmup):
                run.press_floor(floor_n)
                floor_n += 1
            print(f"measuring ({args.presses} presses each, blocks of {args.block}) ...", file=sys.stderr)
            while len(samples["ftbot"]) < args.presses or len(samples["floor"]) < args.presses:
                for _ in range(min(args.block, args.presses - len(samples["ftbot"]))):
                    samples["ftbot"].append(run.press_ftbot())
                # Let ftbot's after-ack work land (untimed): the floor's block is not charged for it.
                run.settle()
                for _ in range(min(args.block, args.presses - len(samples["floor"]))):
                    samples["floor"].append(run.press_floor(floor_n))
                    floor_n += 1
            run.settle()
            time.sleep(0.5)  # let the last after-ack calls land before counting them
        except AssertionError as exc:  # the bot never showed a press's effect
            print(f"ack_latency: {exc}\nftbot's log ends:\n{ftbot.log_tail()}", file=sys.stderr)
            return 1

        checks = {
            "failures": run.failures,
            "ftbot_refusals": len(emulator.ephemerals()),
            "chat_update_calls": len(emulator.calls_to("chat.update")),
            "recommendations": sum(
                str(m.get("text", "")).startswith("Recommendation: ")
                for n in range(1, run.channels + 1)
                for m in emulator.messages(f"CB{n:07d}")
            ),
            "ftbot_log_problems": ftbot.log_problems(),
        }
        if checks["ftbot_refusals"]:
            run.failures.append(f"ftbot refused {checks['ftbot_refusals']} presses (ephemeral notices)")
        if checks["chat_update_calls"] != run.presses_sent:
            run.failures.append(
                f"{checks['chat_update_calls']} chat.update calls for {run.presses_sent} ftbot presses"
            )
        if checks["recommendations"] != run.interviews_finished:
            run.failures.append(
                f"{checks['recommendations']} recommendations for "
                f"{run.interviews_finished} finished interviews"
            )
        nan = [name for name, values in samples.items() if any(math.isnan(v) for v in values)]
        if nan:
            run.failures.append(f"requests that failed to complete: {nan}")
        stats = {name: summary([v for v in values if not math.isnan(v)]) for name, values in samples.items()}
        ratio = stats["ftbot"]["p99_ms"] / stats["floor"]["p99_ms"]
        results: dict[str, Any] = {
            "date": started_at.isoformat(timespec="seconds"),
            "command": command,
            "machine": facts,
            "config": {
                "presses": args.presses,
                "warmup": args.warmup,
                "block": args.block,
                "workers": args.workers,
                "threads": args.threads,
                "interviews": args.interviews,
                "seed": args.seed,
            },
            "stats": stats,
            "p99_ratio": ratio,
            "goal": f"p99(ftbot) <= {GOAL_RATIO:g} x p99(floor)",
            "goal_met": ratio <= GOAL_RATIO,
            "ftbot_run": {
                "interviews_started": run.interviews_started,
                "interviews_finished": run.interviews_finished,
                "presses_sent": run.presses_sent,
                "waits": run.waits,
                "wait_seconds": run.wait_seconds,
            },
            "checks": checks,
            "samples_ms": {name: [v * 1000 for v in values] for name, values in samples.items()},
        }
        print(report(results))
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
            print(f"results written to {args.json}")
        return 1 if run.failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the servers were stopped on the way out
        print("ack_latency: interrupted", file=sys.stderr)
        sys.exit(130)
