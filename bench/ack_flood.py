"""Acks while Slack rate-limits every call: a flood of slash commands and button presses at a real
`ftbot serve` whose Web API answers HTTP 429 with ``Retry-After`` to every call, against the same
flood while it answers normally.

What it measures: the time from sending a signed request to reading its HTTP response (the ack),
for ``--requests`` requests (default 200) sent by ``--senders`` concurrent senders, in two phases
against the same server:

* **unloaded**: the emulator answers every Web API call at once; the bot does its real work after
  each ack (database, rendering, ``chat.postEphemeral``, ``chat.postMessage``, ``chat.update``).
* **rate-limited**: the emulator answers every Web API call ``429`` with ``Retry-After:
  --retry-after`` (default 5 s, as ``chat.postEphemeral`` did in the field): each piece of work
  after an ack sleeps out the retries its budget allows (``FTBOT_SLACK_RETRY_BUDGET``, default
  15 s) before giving up, and the work pool fills up.

The requests, in turn: ``/finetune help`` (answered in the ack), ``/finetune history``,
``/finetune status <project>``, ``/finetune start …`` (a new interview: two ``chat.postMessage``),
and a press of an interview answer button (a question the bot posted during the set-up; pressed
again and again, so the bot answers most presses "already answered" with an ephemeral). Every
request is built by `tests.slack_client` (as tests build them) and signed just before it is sent.

How it is measured (parts reused from `ack_latency.py` and `reaction_throughput.py`):

* The senders are threads of one separate, spawned process that runs nothing else; only the HTTP
  exchange is timed. Each sender waits for its previous ack before sending its next request.
* Set-up (untimed): the server (gunicorn ``gthread``, ``--workers`` / ``--threads``, SQLite in a
  temporary ``FTBOT_DATA_DIR``) and the emulator (in this process); a project created with
  ``ftbot project create``; ``--interviews`` interviews started, whose first questions are pressed.
  ``--warmup`` requests first, uncounted. Between the phases the bot's work is left to finish.
* **Goal**: every request of the rate-limited flood acked (HTTP 200; Bolt answers 404 to Slack when
  a listener does not ack within 3 s) within 3 s, and its p99 within 2× the unloaded p99.
* Also reported: the Web API calls answered 429, the requests ftbot answered "try again" because
  its work pool was full (``ftbot_work_refused_total`` from ``GET /metrics``), and warnings or
  errors in the server's log.

Usage::

    .venv/bin/python bench/ack_flood.py [--requests 200] [--senders 8] [--retry-after 5] [--json out.json]

Exit status: 0 after a complete run (goal met or not), 1 when the server failed or requests were lost.
See bench/README.md for the latest figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "bench"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from ack_latency import Server, machine_facts, percentile  # noqa: E402
from reaction_throughput import (  # noqa: E402
    BOT_TOKEN,
    DROPPED_ENV,
    SIGNING_SECRET,
    CapturingPeople,
    Result,
    Senders,
    _free_port,
    _ftbot_argv,
    deal,
)

from tests.slack_client import buttons  # noqa: E402
from tests.slack_emulator import SlackEmulator  # noqa: E402

GOAL_SECONDS = 3.0
GOAL_RATIO = 2.0
PROJECT = "flood-router"
OWNER = "UOWNER"
KINDS = ("help", "history", "status", "start", "press")


def summary(results: list[Result]) -> dict[str, Any]:
    ms = [r[2] * 1000 for r in results if not math.isnan(r[2])]
    return {
        "n": len(results),
        "acked": sum(1 for r in results if r[0] == 200),
        "within_3s": sum(1 for r in results if r[0] == 200 and r[2] <= GOAL_SECONDS),
        "statuses": {str(s): sum(1 for r in results if r[0] == s) for s in sorted({r[0] for r in results})},
        "median_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms) if ms else math.nan,
    }


class Flood:
    """Builds the requests of a phase (with `CapturingPeople`) and has the senders send them."""

    def __init__(
        self,
        people: CapturingPeople,
        senders: Senders,
        url: str,
        questions: list[tuple[dict[str, Any], str]],
    ) -> None:
        self.people, self.senders, self.url, self.questions = people, senders, url, questions
        self.sent = 0

    def requests(self, n: int) -> list[tuple[str, str]]:
        for i in range(n):
            kind = KINDS[(self.sent + i) % len(KINDS)]
            user = f"UFLOOD{(self.sent + i) % 16:02d}"
            if kind == "press":
                question, channel = self.questions[(self.sent + i) % len(self.questions)]
                self.people.press(question, "No", user=question["ftbot_user"], channel=channel)
            elif kind == "status":
                self.people.slash(f"status {PROJECT}", user=user)
            elif kind == "start":
                self.people.slash(f"start flood interview {self.sent + i}", user=user)
            else:
                self.people.slash(kind, user=user)
        self.sent += n
        return self.people.take()

    def run(self, n: int, senders: int) -> list[Result]:
        lists = deal(self.requests(n), senders)
        return [r for results in self.senders.run(self.url, lists, fresh=False) for r in results]


def wait_quiet(emulator: SlackEmulator, quiet: float = 1.5, timeout: float = 120.0) -> None:
    """Until the bot has made no Web API call for `quiet` seconds (its work after the acks is done)."""
    deadline = time.monotonic() + timeout
    seen, since = len(emulator.calls), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = len(emulator.calls)
        if now != seen:
            seen, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return


def refused_by_pool(server: Server) -> float:
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        float(m.group(1)) for m in re.finditer(r"^ftbot_work_refused_total\{[^}]*\} (\S+)$", text, re.M)
    )


def report(r: dict[str, Any]) -> str:
    m, cfg = r["machine"], r["config"]
    lines = [
        f"ack flood benchmark, {r['date']}",
        f"command: {r['command']}",
        f"machine: nproc={m['nproc']} (cpu_count={m['cpu_count']}) {m['cpu_model']}; {m['python']}; "
        f"load avg at start {m['loadavg_at_start']}",
        f"software: slack_bolt {m['slack_bolt']}, gunicorn {m['gunicorn']}",
        f"server: ftbot serve, gunicorn gthread, workers={cfg['workers']}, threads={cfg['threads']}; "
        f"SQLite; Web API = in-process emulator",
        f"flood: {cfg['requests']} requests per phase from {cfg['senders']} concurrent senders "
        f"(help, history, status, start, button press in turn); rate-limited phase: every Web API call "
        f"answered 429, Retry-After: {cfg['retry_after']} s",
        "",
        f"{'phase':<14}{'n':>5}{'acked':>7}{'≤3 s':>7}{'median':>10}{'p90':>10}{'p99':>10}{'max':>10}   (ms)",
    ]
    for name in ("unloaded", "rate_limited"):
        s = r["phases"][name]
        lines.append(
            f"{name:<14}{s['n']:>5}{s['acked']:>7}{s['within_3s']:>7}{s['median_ms']:>10.1f}"
            f"{s['p90_ms']:>10.1f}{s['p99_ms']:>10.1f}{s['max_ms']:>10.1f}"
        )
    lines += [
        "",
        f"p99 ratio rate-limited/unloaded: {r['p99_ratio']:.2f}",
        f"goal (all acked within {GOAL_SECONDS:g} s, p99 within {GOAL_RATIO:g}x unloaded): "
        f"{'met' if r['goal_met'] else 'NOT MET'}",
        f"during the flood: {r['flood']['answered_429']} Web API calls answered 429; "
        f"{r['flood']['refused_by_pool']:.0f} requests answered 'try again' (work pool full)",
        f"problems: {len(r['failures'])}; warnings/errors in the server's log: {len(r['log_problems'])}",
    ]
    lines += [f"  {p}" for p in (r["failures"] + r["log_problems"])[:10]]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Ack latency of a flood while Slack rate-limits every call.")
    parser.add_argument("--requests", type=int, default=200, help="requests per phase")
    parser.add_argument("--senders", type=int, default=8, help="concurrent senders")
    parser.add_argument("--retry-after", type=int, default=5, help="Retry-After of the 429 answers (seconds)")
    parser.add_argument("--warmup", type=int, default=40, help="uncounted requests first")
    parser.add_argument("--interviews", type=int, default=8, help="interviews whose questions are pressed")
    parser.add_argument("--workers", type=int, default=1, help="gunicorn workers (ftbot serve's default)")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker (ftbot serve's default)")
    parser.add_argument("--json", type=Path, help="also write the results (and every sample) here")
    args = parser.parse_args(argv)
    for name in ("requests", "senders", "interviews", "workers", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


def _terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop the server


def main(argv: list[str] | None = None) -> int:  # noqa: C901 — one linear script
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    command = shlex.join(sys.orig_argv if argv is None else [sys.executable, __file__, *argv])
    facts = machine_facts()
    started_at = datetime.now().astimezone()
    failures: list[str] = []

    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ftbot-flood-")))
        emulator = stack.enter_context(SlackEmulator(bot_token=BOT_TOKEN))
        emulator.add_channel("CGENERAL", "general")
        for user in [OWNER, *(f"UFLOOD{i:02d}" for i in range(16))]:
            emulator.add_user(user, user.lower())
        env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
        env.update(
            SLACK_API_URL=emulator.base_url,
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_BOT_TOKEN=BOT_TOKEN,
            FTBOT_DATA_DIR=str(tmp / "ftbot-data"),
            PYTHONUNBUFFERED="1",
        )
        created = subprocess.run(
            [*_ftbot_argv(), "project", "create", PROJECT, "--task", "classification",
             "--labels", "billing,technical", "--reviewers", "UFLOOD00,UFLOOD01", "--owner", OWNER,
             "--channel", "CGENERAL"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if created.returncode != 0:
            print(f"ack_flood: ftbot project create failed:\n{created.stderr}", file=sys.stderr)
            return 1
        port = _free_port()
        server = Server(
            "ftbot",
            [*_ftbot_argv(), "serve", "--host", "127.0.0.1", "--port", str(port),
             "--workers", str(args.workers), "--threads", str(args.threads)],
            env, tmp / "ftbot.log", port, "/healthz",
        )  # fmt: skip
        stack.callback(server.stop)
        server.start()
        senders = Senders()  # started after the server, so stopped before it
        stack.callback(senders.close)
        url = server.url + "/slack/events"
        people = CapturingPeople(url, emulator)
        try:
            server.wait_ready()
            print(f"setting up: {args.interviews} interviews ...", file=sys.stderr)
            questions: list[tuple[dict[str, Any], str]] = []
            for i in range(args.interviews):
                channel, user = f"CQ{i:07d}", f"UFLOOD{i % 16:02d}"
                emulator.add_channel(channel, f"flood-{i}")
                people.slash(f"start flood setup {i}", user=user, channel=channel)
                senders.run(url, [people.take()], fresh=True)
                question = emulator.wait_for(
                    lambda channel=channel: next(
                        (m for m in emulator.messages(channel) if "No" in buttons(m)), None
                    ),
                    timeout=60,
                    what=f"the first question in {channel}",
                )
                questions.append(({**question, "ftbot_user": user}, channel))
            flood = Flood(people, senders, url, questions)
            print(f"warming up ({args.warmup} requests) ...", file=sys.stderr)
            flood.run(args.warmup, args.senders)
            wait_quiet(emulator)

            print(f"unloaded: {args.requests} requests ...", file=sys.stderr)
            unloaded = flood.run(args.requests, args.senders)
            wait_quiet(emulator)

            print(f"rate-limited: {args.requests} requests, every call 429 ...", file=sys.stderr)
            refused_before = refused_by_pool(server)
            calls_before = len(emulator.calls)
            emulator.rate_limit_all(args.retry_after)
            try:
                limited = flood.run(args.requests, args.senders)
            finally:
                answered_429 = len(emulator.calls) - calls_before
                emulator.rate_limit_all(None)
            refused = refused_by_pool(server) - refused_before
            print("letting the bot's work finish ...", file=sys.stderr)
            wait_quiet(emulator, quiet=3.0, timeout=180.0)
            with urllib.request.urlopen(server.url + "/healthz", timeout=10) as health:
                if health.status != 200:
                    failures.append(f"healthz {health.status} after the flood")
        except (AssertionError, RuntimeError) as exc:
            print(f"ack_flood: {exc}\nthe server's log ends:\n{server.log_tail()}", file=sys.stderr)
            return 1

        phases = {"unloaded": summary(unloaded), "rate_limited": summary(limited)}
        for name, results in (("unloaded", unloaded), ("rate_limited", limited)):
            failures += [f"{name}: HTTP {s} {e}" for s, _w, _t, e in results if s != 200][:5]
        ratio = phases["rate_limited"]["p99_ms"] / phases["unloaded"]["p99_ms"]
        flooded = phases["rate_limited"]
        results: dict[str, Any] = {
            "date": started_at.isoformat(timespec="seconds"),
            "command": command,
            "machine": facts,
            "config": {
                "requests": args.requests,
                "senders": args.senders,
                "retry_after": args.retry_after,
                "warmup": args.warmup,
                "interviews": args.interviews,
                "workers": args.workers,
                "threads": args.threads,
            },
            "phases": phases,
            "p99_ratio": ratio,
            "goal_met": flooded["within_3s"] == flooded["n"] and ratio <= GOAL_RATIO,
            "flood": {"answered_429": answered_429, "refused_by_pool": refused},
            "failures": failures,
            "log_problems": [p for p in server.log_problems() if "will be unused" not in p],
            "samples_ms": {
                "unloaded": [r[2] * 1000 for r in unloaded],
                "rate_limited": [r[2] * 1000 for r in limited],
            },
        }
        print(report(results))
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
            print(f"results written to {args.json}")
        lost = sum(p["n"] - p["acked"] for p in phases.values())
        return 1 if lost else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the server was stopped on the way out
        print("ack_flood: interrupted", file=sys.stderr)
        sys.exit(130)
