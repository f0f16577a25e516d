"""Reaction throughput end to end: signed reaction events → votes in PostgreSQL, and the ack under load.

What it measures, against a real ``ftbot serve`` subprocess (gunicorn ``gthread``; ``--workers`` and
``--threads`` passed through) on PostgreSQL (a fresh private schema in the local database ``test``,
migrated by ``ftbot serve`` itself and dropped at the end), its ``SLACK_API_URL`` pointing at a
`tests.slack_emulator.SlackEmulator` running in this process:

* **reactions/s end to end**: from the first reaction sent to the moment the database holds the
  exact expected set of votes (every added vote present, every removed one gone);
* **the ack under that load**: median, p90, p99 and max of the HTTP exchange of each reaction;
* **the live-tally throttle at work**: ``chat.update`` calls on the project's root message during
  the load, against reactions sent, and that the tally finally shows the final state.

How: the project is created through the real Slack flow (signed ``/finetune new``, the modal the
bot opened submitted with reviewers), ``--examples`` examples are posted as thread replies
(message events), some votes are seeded (as many as will be removed) and left to land, all
untimed. Then ``--senders`` concurrent senders fire ``--reactions`` signed reaction events as fast
as they can (each sender waits only for its previous ack): adds of votes not yet cast (reviewers
pick labels at random, several per example) and, for ``--remove-share`` of them, removals of
seeded votes, shuffled together. Every event is independent of the others' order, so the final
state is known exactly. The senders are threads of one separate process (spawned: none of this
process's threads), each on its own keep-alive connection unless ``--new-connections``; only the
HTTP exchange is timed. Payloads are those of `tests.slack_client.SlackPeople` (same envelope,
same signature), signed at send time.

When is a reaction processed: a thread here polls the database (``count(*)`` of votes every
``--poll`` seconds, the full vote set whenever the count matches); the end time is the first poll
that sees the exact final set, an upper bound within one poll interval. The latest
``vote.created_at`` of the load's adds (set by ftbot just before its commit) is reported too, and
so is where the CPU went meanwhile (the server, PostgreSQL, the senders, this process and every
other process of the machine, from ``/proc``), since a busy machine lowers the figure.

Usage::

    .venv/bin/python bench/reaction_throughput.py [--reactions 5000] [--senders 8] [--examples 500]
        [--workers 1] [--threads 8] [--json out.json]

Exit status 0 after a complete, correct run; 1 when a request failed, the final votes or the final
tally are wrong, or the server failed. See bench/README.md for the latest figures.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import multiprocessing
import os
import random
import shlex
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "bench"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from ack_latency import Server, machine_facts, percentile  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

from runner.core.config import Settings  # noqa: E402
from tests.slack_client import Reply, SlackPeople, sign  # noqa: E402
from tests.slack_emulator import SlackEmulator  # noqa: E402

SIGNING_SECRET = "bench-signing-secret"
BOT_TOKEN = "xoxb-bench"
PG_BASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
CHANNEL = "CBENCH"
OWNER = "UOWNER"
AUTHOR = "UAUTHOR"
PROJECT = "bench-reactions"
LABELS = {"billing": "one", "technical": "two", "account": "three", "shipping": "four"}
# Variables of this environment that would change what the server does; the benchmark sets its own.
DROPPED_ENV = {
    "DATABASE_URL",
    "SLACK_CLIENT_ID",
    "SLACK_CLIENT_SECRET",
    "SLACK_APP_TOKEN",
    "FTBOT_TALLY_INTERVAL",
    "FTBOT_DIRECTORY_TTL",
    "FTBOT_ADMINS",
}
SUBJECTS = [
    "invoice",
    "order",
    "parcel",
    "dashboard",
    "password",
    "refund",
    "subscription",
    "export",
    "login",
    "tracking number",
    "report",
    "card payment",
    "profile",
    "delivery",
    "sync",
    "mobile app",
]
PROBLEMS = [
    "was charged twice",
    "has not arrived after {d} days",
    "shows error {e} since this morning",
    "cannot be changed from the settings page",
    "stopped working after the update to {v}",
    "came damaged and the box was open",
    "asks me to verify my email again and again",
    "is missing the last {d} entries",
    "times out when I open it on my phone",
    "was billed {d} dollars more than the quote",
]


# --- the senders' process ------------------------------------------------------------------------


Result = tuple[int, float, float, str]  # HTTP status (0: no answer), wall time sent, seconds, error


def _send_all(url: str, secret: str, jobs: list[tuple[str, str]], fresh: bool) -> list[Result]:
    """One sender: post each (body, content type) in turn, signed just before it is sent."""
    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path
    out: list[Result] = []
    client: http.client.HTTPConnection | None = None
    for body, content_type in jobs:
        headers = {"Content-Type": content_type, **sign(secret, body)}
        data = body.encode()
        connection = client or http.client.HTTPConnection(host, port, timeout=60)
        client = None
        wall = time.time()
        start = time.perf_counter()
        try:
            connection.request("POST", path, body=data, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            elapsed = time.perf_counter() - start
            error = "" if response.status == 200 else answer[:200].decode("utf-8", "replace")
            out.append((response.status, wall, elapsed, error))
        except OSError as exc:  # counted as a failed request; the next one reconnects
            out.append((0, wall, math.nan, f"{type(exc).__name__}: {exc}"))
            connection.close()
            continue
        if fresh or response.will_close:
            connection.close()
        else:
            client = connection
    if client is not None:
        client.close()
    return out


def _senders(conn: Connection) -> None:
    """Child process: for each batch it is sent, run one thread per sender list; return every result."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops us
    while True:
        job = conn.recv()
        if job is None:
            return
        conn.send(_run_batch(*job))


def _run_batch(url: str, secret: str, lists: list[list[tuple[str, str]]], fresh: bool) -> list[list[Result]]:
    """One thread per list, all starting together; each list's results in order."""
    results: list[list[Result]] = [[] for _ in lists]
    barrier = threading.Barrier(len(lists))

    def run(i: int) -> None:
        barrier.wait()
        results[i] = _send_all(url, secret, lists[i], fresh)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(lists))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


class Senders:
    """`_senders` in its own process (spawned, so it inherits no thread of this one)."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_senders, args=(child,), daemon=True, name="reaction-senders")
        self.process.start()
        child.close()
        self.busy = False

    def run(self, url: str, lists: list[list[tuple[str, str]]], *, fresh: bool) -> list[list[Result]]:
        self.busy = True
        self.conn.send((url, SIGNING_SECRET, lists, fresh))
        results: list[list[Result]] = self.conn.recv()
        self.busy = False
        return results

    def close(self) -> None:
        if self.busy:  # interrupted in the middle of a batch: no need to let it finish
            self.process.terminate()
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(None)
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)


class CapturingPeople(SlackPeople):
    """`SlackPeople` whose requests are kept (unsigned; the senders sign them) instead of sent.

    Emulator side effects happen as in tests (`reply` stores the user's message in the emulator).
    """

    def __init__(self, url: str, emulator: Any) -> None:
        super().__init__(url, SIGNING_SECRET, emulator)
        self.captured: list[tuple[str, str]] = []

    def post(self, body: str, content_type: str, **_options: Any) -> Reply:
        self.captured.append((body, content_type))
        return Reply(200, "", {})

    def take(self) -> list[tuple[str, str]]:
        taken, self.captured = self.captured, []
        return taken


class TimedEmulator(SlackEmulator):
    """The emulator, noting the wall-clock time of each API call it answers."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.call_times: list[float] = []  # parallel to self.calls

    def handle_api(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._lock:
            before = len(self.calls)
            answer = super().handle_api(*args, **kwargs)
            now = time.time()
            self.call_times.extend(now for _ in range(len(self.calls) - before))
            return answer

    def timed_calls(self, method: str, ts: str | None = None) -> list[float]:
        with self._lock:
            return [
                t
                for t, c in zip(self.call_times, self.calls, strict=False)
                if c.method == method and (ts is None or c.args.get("ts") == ts)
            ]


# --- the database ------------------------------------------------------------------------------


def pg_url(schema: str) -> str:
    """DATABASE_URL for `schema`: libpq's ``options`` (``-c search_path=…``) in the URL's query."""
    return f"{PG_BASE_URL}?options=-csearch_path%3D{schema}"


def sa_url(url: str) -> str:
    return "postgresql+psycopg://" + url.split("://", 1)[1]


@dataclass
class Poll:
    """What a poll saw: wall time, number of votes."""

    t: float
    votes: int


class Poller(threading.Thread):
    """Polls the vote table until the expected set is there; notes when that first was."""

    def __init__(self, engine: Engine, expected: set[tuple[int, str, str]], interval: float) -> None:
        super().__init__(daemon=True, name="vote-poller")
        self.engine = engine
        self.expected = expected
        self.interval = interval
        self.timeline: list[Poll] = []
        self.done_at: float | None = None
        self.full_checks = 0
        self.stop_event = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        try:
            with self.engine.connect() as conn:
                while not self.stop_event.is_set():
                    started = time.time()
                    count = conn.execute(text("SELECT count(*) FROM vote")).scalar_one()
                    conn.commit()
                    self.timeline.append(Poll(started, int(count)))
                    if count == len(self.expected):
                        self.full_checks += 1
                        read_at = time.time()  # the query's snapshot is taken after this instant
                        rows = conn.execute(text("SELECT example_id, reviewer_id, value FROM vote")).all()
                        conn.commit()
                        if {(int(e), str(r), str(v)) for e, r, v in rows} == self.expected:
                            self.done_at = read_at
                            return
                    self.stop_event.wait(max(0.0, self.interval - (time.time() - started)))
        except Exception as exc:  # reported; the main thread gives up waiting
            self.error = f"{type(exc).__name__}: {exc}"

    def applied_at(self, t: float) -> int:
        """Votes counted by the last poll at or before `t`."""
        seen = [p.votes for p in self.timeline if p.t <= t]
        return seen[-1] if seen else 0


def wait_db(engine: Engine, query: str, expected: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            value = conn.execute(text(query)).scalar_one()
        if value == expected:
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}: {value} of {expected}")


# --- where the CPU went ----------------------------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stats() -> dict[int, tuple[int, str, float]]:
    """pid → (parent pid, command name, CPU seconds user + system) for every process we can read."""
    found: dict[int, tuple[int, str, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name, rest = raw[raw.index("(") + 1 : raw.rindex(")")], raw[raw.rindex(")") + 2 :].split()
        found[int(entry)] = (int(rest[1]), name, (int(rest[11]) + int(rest[12])) / TICK)
    return found


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])
    return (total - idle) / TICK, total / TICK


def cpu_snapshot(server_pid: int, senders_pid: int) -> dict[str, float]:
    """CPU seconds so far of: the server (gunicorn master and workers), PostgreSQL's processes, the
    senders' process, this process (emulator, poller), and the machine (busy, total)."""
    procs = _proc_stats()
    server = {server_pid} | {pid for pid, (ppid, _, _) in procs.items() if ppid == server_pid}
    busy, total = _machine_busy()
    return {
        "ftbot": sum(procs[p][2] for p in server if p in procs),
        "postgres": sum(cpu for _, name, cpu in procs.values() if name.startswith("postgres")),
        "senders": procs.get(senders_pid, (0, "", 0.0))[2],
        "benchmark": procs.get(os.getpid(), (0, "", 0.0))[2],
        "machine_busy": busy,
        "machine_total": total,
    }


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in before}


# --- the workload --------------------------------------------------------------------------------


def example_text(rng: random.Random, n: int) -> str:
    problem = rng.choice(PROBLEMS).format(d=rng.randint(2, 40), e=rng.randint(400, 599), v=f"4.{n % 30}")
    return f"ticket {10000 + n}: my {rng.choice(SUBJECTS)} {problem}"


@dataclass
class Plan:
    """The reactions to send: seeds (sent and landed before the load), then the load itself."""

    seeds: list[tuple[str, str, str]]  # (message ts, reviewer, emoji)
    load: list[tuple[str, str, str, bool]]  # (message ts, reviewer, emoji, added)
    final: set[tuple[str, str, str]] = field(default_factory=set)


def plan_reactions(
    rng: random.Random, examples: list[str], reviewers: list[str], reactions: int, remove_share: float
) -> Plan:
    """Distinct (example, reviewer, label) votes: each reviewer's first label on every example comes
    first, then second labels, and so on; `removes` of them are seeded and removed during the load."""
    layers: list[list[tuple[str, str, str]]] = [[] for _ in LABELS]
    for ts in examples:
        for reviewer in reviewers:
            for layer, emoji in enumerate(rng.sample(list(LABELS.values()), len(LABELS))):
                layers[layer].append((ts, reviewer, emoji))
    votes: list[tuple[str, str, str]] = []
    for votes_of_layer in layers:
        rng.shuffle(votes_of_layer)
        votes.extend(votes_of_layer)
    removes = round(reactions * remove_share)
    chosen = votes[:reactions]  # seeds + adds = removes + (reactions - removes)
    rng.shuffle(chosen)
    seeds, adds = chosen[:removes], chosen[removes:]
    load = [(*v, True) for v in adds] + [(*v, False) for v in seeds]
    rng.shuffle(load)
    return Plan(seeds=seeds, load=load, final=set(adds))


def deal(items: list[Any], hands: int) -> list[list[Any]]:
    return [items[i::hands] for i in range(hands)]


# --- statistics and report ---------------------------------------------------------------------


def summary(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "median_ms": statistics.median(ms),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms),
        "mean_ms": statistics.fmean(ms),
    }


def report(r: dict[str, Any]) -> str:
    m, cfg, e2e, ack, tally = r["machine"], r["config"], r["end_to_end"], r["ack"], r["tally"]
    cpu = r["cpu_seconds"]
    others = cpu["machine_busy"] - sum(cpu[k] for k in ("ftbot", "postgres", "senders", "benchmark"))
    lines = [
        f"reaction throughput benchmark, {r['date']}",
        f"command: {r['command']}",
        f"machine: nproc={m['nproc']} (cpu_count={m['cpu_count']}) {m['cpu_model']}; {m['python']}; "
        f"{m['platform']}; load avg at start {m['loadavg_at_start']}",
        f"software: slack_bolt {m['slack_bolt']}, gunicorn {m['gunicorn']}, SQLAlchemy {m['sqlalchemy']}, "
        f"psycopg {m['psycopg']}, PostgreSQL {m['postgresql']}",
        f"server: ftbot serve, gunicorn gthread, workers={cfg['workers']}, threads={cfg['threads']}, "
        f"event workers={cfg.get('event_workers', 0)}; "
        f"PostgreSQL schema {r['schema']} (dropped at the end); Slack Web API = in-process emulator; "
        f"tally interval {cfg['tally_interval']:g} s",
        f"workload: {cfg['examples']} examples, {cfg['reviewers']} reviewers, {len(LABELS)} labels; "
        f"{e2e['sent']} reactions ({r['load']['added']} added, {r['load']['removed']} removed of "
        f"{r['load']['seeded']} seeded) from {cfg['senders']} concurrent senders "
        f"({'a new connection per request' if cfg['new_connections'] else 'keep-alive connections'})",
        "",
        f"end to end: {e2e['reactions_per_s']:.1f} reactions/s ({e2e['sent']} in {e2e['seconds']:.2f} s, "
        f"first send → exact final vote set seen in the database; poll every {cfg['poll'] * 1000:.0f} ms)",
        f"  every ack in after {e2e['acks_seconds']:.2f} s ({e2e['ack_rate']:.1f} requests/s); "
        "vote rows then "
        f"{e2e['votes_at_last_ack']} (before the load {e2e['votes_before']}, final {e2e['expected_votes']}); "
        f"the backlog took {e2e['drain_seconds']:.2f} s more",
        f"  last added vote's created_at: {e2e['last_add_after_s']:.2f} s after the first send",
        f"  CPU from the first send until the last vote was seen (core-seconds over {e2e['seconds']:.1f} s): "
        f"ftbot {cpu['ftbot']:.1f} ({1000 * cpu['ftbot'] / e2e['sent']:.1f} ms per reaction), PostgreSQL "
        f"{cpu['postgres']:.1f}, senders {cpu['senders']:.1f}, benchmark (emulator, poller) "
        f"{cpu['benchmark']:.1f}, other processes {others:.1f}; machine busy {cpu['machine_busy']:.1f} "
        f"of {cpu['machine_total']:.1f} ({100 * cpu['machine_busy'] / max(cpu['machine_total'], 1e-9):.0f}%)",
        "",
        f"{'ack':<8}{'n':>6}{'median':>10}{'p90':>10}{'p99':>10}{'max':>10}{'mean':>10}   (ms)",
        f"{'':<8}{ack['n']:>6}{ack['median_ms']:>10.2f}{ack['p90_ms']:>10.2f}{ack['p99_ms']:>10.2f}"
        f"{ack['max_ms']:>10.2f}{ack['mean_ms']:>10.2f}",
        *(
            [
                f"{'floor':<8}{floor['n']:>6}{floor['median_ms']:>10.2f}{floor['p90_ms']:>10.2f}"
                f"{floor['p99_ms']:>10.2f}{floor['max_ms']:>10.2f}{floor['mean_ms']:>10.2f}",
                f"ack p99 / floor p99 = {r['ack_p99_ratio']:.2f} (goal ≤ 2)",
            ]
            if (floor := r["floor_ack"])
            else []
        ),
        f"errors (non-200 or no answer): {r['errors']['count']}",
        "",
        f"tally: {tally['root_updates_during_load']} chat.update calls on the root message during the load "
        f"for {e2e['sent']} reactions (+{tally['root_updates_after']} after the last vote landed); "
        f":warning: marks added/removed {tally['warning_adds']}/{tally['warning_removes']}; "
        f"final tally shows the final state: {'yes' if tally['final_tally_ok'] else 'NO'}",
        f"checks: {'passed' if not r['failures'] else 'FAILED'}; warnings/errors in ftbot's log "
        f"{len(r['server_log_problems'])}",
    ]
    for problem in (r["failures"] + r["errors"]["first"] + r["server_log_problems"])[:12]:
        lines.append(f"  {problem}")
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Reaction events processed per second, end to end, on PostgreSQL."
    )
    parser.add_argument("--reactions", type=int, default=5000, help="reaction events in the load")
    parser.add_argument("--senders", type=int, default=8, help="concurrent senders")
    parser.add_argument("--examples", type=int, default=500, help="examples posted in the project thread")
    parser.add_argument("--reviewers", type=int, default=5, help="reviewers of the project")
    parser.add_argument("--remove-share", type=float, default=0.1, help="share of reaction_removed events")
    parser.add_argument("--workers", type=int, default=1, help="gunicorn workers (ftbot serve's default)")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker (ftbot serve's default)")
    parser.add_argument(
        "--event-workers",
        type=int,
        default=0,
        help="ftbot serve --event-workers: processes that work on the events the web process acks",
    )
    parser.add_argument("--new-connections", action="store_true", help="a new connection per request")
    parser.add_argument(
        "--no-floor", action="store_true", help="skip the same load against a bare Bolt app afterwards"
    )
    parser.add_argument("--poll", type=float, default=0.02, help="seconds between database polls")
    parser.add_argument("--seed", type=int, default=1, help="seed for the workload")
    parser.add_argument("--json", type=Path, help="also write the results (and every ack sample) here")
    args = parser.parse_args(argv)
    for name in ("reactions", "senders", "examples", "reviewers", "workers", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 <= args.remove_share < 1:
        parser.error("--remove-share must be in [0, 1)")
    if args.reactions > args.examples * args.reviewers * len(LABELS):
        parser.error(
            f"--reactions {args.reactions} needs more distinct votes than --examples x --reviewers x "
            f"{len(LABELS)} labels = {args.examples * args.reviewers * len(LABELS)}"
        )
    if not 0 < args.poll <= 1:
        parser.error("--poll must be in (0, 1]")
    return args


def _terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop the server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ftbot_argv() -> list[str]:
    script = Path(sys.executable).parent / "ftbot"
    return [str(script)] if script.exists() else [sys.executable, "-m", "bot.cli"]


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def main(argv: list[str] | None = None) -> int:  # noqa: C901 — one linear script
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    command = shlex.join(sys.orig_argv if argv is None else [sys.executable, __file__, *argv])
    facts = machine_facts()
    started_at = datetime.now().astimezone()
    rng = random.Random(args.seed)
    failures: list[str] = []

    with contextlib.ExitStack() as stack:
        # The schema first, so that it is dropped last (after the server has stopped).
        schema = f"ftbot_bench_{uuid.uuid4().hex[:10]}"
        admin = create_engine(sa_url(PG_BASE_URL), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            facts["postgresql"] = conn.execute(text("SHOW server_version")).scalar_one()
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))

        def drop_schema() -> None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            admin.dispose()

        stack.callback(drop_schema)
        facts["psycopg"] = _version("psycopg")
        db = create_engine(sa_url(pg_url(schema)), pool_size=2)
        stack.callback(db.dispose)

        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ftbot-bench-")))
        emulator = TimedEmulator(bot_token=BOT_TOKEN)
        stack.enter_context(emulator)
        emulator.add_channel(CHANNEL, "bench-data")
        reviewers = [f"UREV{i:03d}" for i in range(args.reviewers)]
        for user in [OWNER, AUTHOR, *reviewers]:
            emulator.add_user(user, user.lower())

        env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
        env.update(
            DATABASE_URL=pg_url(schema),
            SLACK_API_URL=emulator.base_url,
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_BOT_TOKEN=BOT_TOKEN,
            FTBOT_DATA_DIR=str(tmp / "ftbot-data"),
            PYTHONUNBUFFERED="1",
        )
        port = _free_port()
        server = Server(
            "ftbot",
            [
                *_ftbot_argv(),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(args.workers),
                "--threads",
                str(args.threads),
                "--event-workers",
                str(args.event_workers),
            ],
            env,
            tmp / "ftbot.log",
            port,
            "/healthz",
        )
        stack.callback(server.stop)
        server.start()
        # Started after the server, so stopped before it (an interrupted load stops sending first).
        senders = Senders()
        stack.callback(senders.close)
        url = server.url + "/slack/events"
        slack = SlackPeople(url, SIGNING_SECRET, emulator)
        people = CapturingPeople(url, emulator)
        try:
            server.wait_ready()

            # -- the project, through the real flow: /finetune new, then the modal submitted
            print("setting up: project, examples, seeded votes ...", file=sys.stderr)
            assert slack.slash("new", user=OWNER, channel=CHANNEL).status == 200
            view = emulator.wait_for(lambda: emulator.calls_to("views.open"), what="views.open")[-1].args[
                "view"
            ]
            form = {
                "name": PROJECT,
                "task_type": "classification",
                "labels": "\n".join(LABELS),
                "reviewers": reviewers,
                "min_per_label": "5",
                "agreement_threshold": "0.6",
                "instructions": "Route the support ticket to one queue.",
            }
            reply = slack.submit(view, form, user=OWNER)
            if reply.status != 200 or reply.body:
                raise RuntimeError(f"the project modal was refused: HTTP {reply.status} {reply.body[:300]}")
            root = emulator.wait_for(
                lambda: next(
                    (
                        m
                        for m in emulator.messages(CHANNEL)
                        if str(m.get("text", "")).startswith(f"Dataset {PROJECT}")
                    ),
                    None,
                ),
                what="the project's root message",
            )
            wait_db(
                db, "SELECT count(*) FROM project WHERE root_ts IS NOT NULL", 1, 30, "the root's ts stored"
            )

            # -- examples: thread replies (message events), sent concurrently, untimed
            examples = [
                people.reply(CHANNEL, root["ts"], example_text(rng, n), AUTHOR)["ts"]
                for n in range(args.examples)
            ]
            setup_results = senders.run(url, deal(people.take(), args.senders), fresh=args.new_connections)
            bad = [r for rs in setup_results for r in rs if r[0] != 200]
            if bad:
                raise RuntimeError(f"{len(bad)} example messages failed, e.g. {bad[0]}")
            wait_db(db, "SELECT count(*) FROM example", args.examples, 120, "the examples in the database")
            with db.connect() as conn:
                ids = {ts: int(i) for ts, i in conn.execute(text("SELECT message_ts, id FROM example")).all()}

            # -- seeded votes (the ones the load removes), untimed
            plan = plan_reactions(rng, examples, reviewers, args.reactions, args.remove_share)
            for ts, reviewer, emoji in plan.seeds:
                people.react(CHANNEL, ts, emoji, reviewer)
            if plan.seeds:
                seed_results = senders.run(url, deal(people.take(), args.senders), fresh=args.new_connections)
                bad = [r for rs in seed_results for r in rs if r[0] != 200]
                if bad:
                    raise RuntimeError(f"{len(bad)} seed reactions failed, e.g. {bad[0]}")
                wait_db(db, "SELECT count(*) FROM vote", len(plan.seeds), 120, "the seeded votes")
            # let the tally's trailing refresh of the setup pass: nothing on the root for one interval + 1 s
            interval = float(Settings.model_fields["ftbot_tally_interval"].default)  # env var not passed on
            quiet_deadline = time.monotonic() + 4 * interval + 30
            while time.monotonic() < quiet_deadline:
                updates = emulator.timed_calls("chat.update", root["ts"])
                if not updates or time.time() - updates[-1] > interval + 1:
                    break
                time.sleep(0.2)

            # -- the load
            for ts, reviewer, emoji, added in plan.load:
                people.react(CHANNEL, ts, emoji, reviewer, added=added)
            lists = deal(people.take(), args.senders)
            expected = {(ids[ts], reviewer, LABELS_BY_EMOJI[emoji]) for ts, reviewer, emoji in plan.final}
            poller = Poller(db, expected, args.poll)
            with db.connect() as conn:
                first_load_id = int(conn.execute(text("SELECT coalesce(max(id), 0) FROM vote")).scalar_one())
            print(
                f"load: {len(plan.load)} reactions from {args.senders} senders; waiting for every vote ...",
                file=sys.stderr,
            )
            cpu_before = cpu_snapshot(server.process.pid if server.process else 0, senders.process.pid or 0)
            poller.start()
            results = senders.run(url, lists, fresh=args.new_connections)
            flat = [r for rs in results for r in rs]
            first_send = min(r[1] for r in flat)
            last_ack = max(r[1] + (r[2] if not math.isnan(r[2]) else 0) for r in flat)
            # wait until the poller sees the exact set; give up after 60 s without progress
            last_progress, last_count = time.monotonic(), -1
            while poller.is_alive():
                poller.join(timeout=0.5)
                count = poller.timeline[-1].votes if poller.timeline else -1
                if count != last_count:
                    last_progress, last_count = time.monotonic(), count
                elif time.monotonic() - last_progress > 60:
                    poller.stop_event.set()
                    poller.join()
                    break
            if poller.error:
                raise RuntimeError(f"polling the database failed: {poller.error}")
            done_at = poller.done_at
            cpu = cpu_used(
                cpu_before,
                cpu_snapshot(server.process.pid if server.process else 0, senders.process.pid or 0),
            )
            if done_at is None:
                failures.append(
                    f"the database never held the expected votes: {last_count} rows for {len(expected)} "
                    f"expected, no progress for 60 s"
                )
            with db.connect() as conn:
                last_add = conn.execute(
                    text("SELECT max(created_at) FROM vote WHERE id > :first"), {"first": first_load_id}
                ).scalar_one()
            last_add_t = last_add.timestamp() if last_add is not None else math.nan

            # -- the throttle: let the trailing refresh land, then check the tally shows the final state
            end = done_at if done_at is not None else time.time()
            final_ok = False
            if done_at is not None:
                from runner.core.db import session_scope
                from runner.data import gates, projects
                from runner.slack import payloads

                with session_scope(db) as session:
                    stats = gates.project_stats(session, projects.get_project(session, PROJECT))
                    want = payloads.project_root(stats)

                def shown() -> list[dict[str, Any]]:
                    """The root's blocks as Slack shows them, less the block ids Slack adds."""
                    current = next(m for m in emulator.messages(CHANNEL) if m["ts"] == root["ts"])
                    return [
                        {k: v for k, v in b.items() if k != "block_id"} for b in current.get("blocks", [])
                    ]

                with contextlib.suppress(AssertionError):
                    emulator.wait_for(
                        lambda: shown() == want["blocks"], timeout=2 * interval + 10, what="the final tally"
                    )
                final_ok = shown() == want["blocks"]
                if not final_ok:
                    failures.append(
                        "the root message does not show the final tally: it shows "
                        f"{json.dumps(shown())[:1500]} where the database gives "
                        f"{json.dumps(want['blocks'])[:1500]}"
                    )
            time.sleep(0.5)

            # -- the floor: the same reactions, signed afresh, against a bare Bolt app with the same
            # gunicorn settings (bench/bare_app.py), right after ftbot's load on the same machine
            floor_acks: list[float] = []
            if not args.no_floor:
                print("floor: the same load against a bare Bolt app ...", file=sys.stderr)
                floor_port = _free_port()
                floor = Server(
                    "floor",
                    [
                        sys.executable,
                        str(Path(__file__).with_name("bare_app.py")),
                        "--port",
                        str(floor_port),
                        "--workers",
                        str(args.workers),
                        "--threads",
                        str(args.threads),
                    ],
                    env,
                    tmp / "floor.log",
                    floor_port,
                    "/slack/events",
                )
                stack.callback(floor.stop)
                floor.start()
                floor.wait_ready()
                floor_results = senders.run(floor.url + "/slack/events", lists, fresh=args.new_connections)
                floor_flat = [r for rs in floor_results for r in rs]
                floor_acks = [r[2] for r in floor_flat if not math.isnan(r[2])]
                floor_errors = [r for r in floor_flat if r[0] != 200]
                if floor_errors:
                    failures.append(f"{len(floor_errors)} reactions to the floor got no HTTP 200")
                floor.stop()
        except (RuntimeError, AssertionError) as exc:
            print(f"reaction_throughput: {exc}\nftbot's log ends:\n{server.log_tail()}", file=sys.stderr)
            return 1

        updates = emulator.timed_calls("chat.update", root["ts"])
        acks = [r[2] for r in flat if not math.isnan(r[2])]
        errors = [r for r in flat if r[0] != 200]
        if errors:
            failures.append(f"{len(errors)} of {len(flat)} reactions got no HTTP 200")
        problems = server.log_problems()
        seconds = end - first_send
        n_added = sum(1 for item in plan.load if item[3])
        warning_calls = {
            method: sum(1 for t in emulator.timed_calls(method) if t >= first_send)
            for method in ("reactions.add", "reactions.remove")
        }
        results_doc: dict[str, Any] = {
            "date": started_at.isoformat(timespec="seconds"),
            "command": command,
            "machine": facts,
            "schema": schema,
            "config": {
                "reactions": args.reactions,
                "senders": args.senders,
                "examples": args.examples,
                "reviewers": args.reviewers,
                "remove_share": args.remove_share,
                "workers": args.workers,
                "threads": args.threads,
                "event_workers": args.event_workers,
                "new_connections": args.new_connections,
                "poll": args.poll,
                "seed": args.seed,
                "tally_interval": interval,
            },
            "load": {"added": n_added, "removed": len(plan.load) - n_added, "seeded": len(plan.seeds)},
            "end_to_end": {
                "sent": len(flat),
                "seconds": seconds,
                "reactions_per_s": len(flat) / seconds if seconds > 0 else math.nan,
                "complete": done_at is not None,
                "acks_seconds": last_ack - first_send,
                "ack_rate": len(flat) / (last_ack - first_send),
                "expected_votes": len(expected),
                "votes_before": len(plan.seeds),
                "votes_at_last_ack": poller.applied_at(last_ack),
                "drain_seconds": end - last_ack,
                "last_add_after_s": last_add_t - first_send,
                "full_checks": poller.full_checks,
            },
            "cpu_seconds": cpu,
            "ack": summary(acks),
            "floor_ack": summary(floor_acks) if floor_acks else None,
            "ack_p99_ratio": (
                percentile(acks, 99) / percentile(floor_acks, 99) if floor_acks and acks else math.nan
            ),
            "errors": {
                "count": len(errors),
                "first": [f"HTTP {s}: {e}" for s, _, _, e in errors[:5]],
            },
            "tally": {
                "root_updates_during_load": sum(1 for t in updates if first_send <= t <= end),
                "root_updates_after": sum(1 for t in updates if t > end),
                "warning_adds": warning_calls["reactions.add"],
                "warning_removes": warning_calls["reactions.remove"],
                "final_tally_ok": final_ok,
                "root_update_times_s": [t - first_send for t in updates if t >= first_send],
                "warning_call_times_s": sorted(
                    t - first_send
                    for method in ("reactions.add", "reactions.remove")
                    for t in emulator.timed_calls(method)
                    if t >= first_send
                ),
            },
            "failures": failures,
            "server_log_problems": problems,
            "timeline": [(p.t - first_send, p.votes) for p in poller.timeline],
            "ack_samples_ms": [a * 1000 for a in acks],
            # the acks slower than p99: when they were sent (s after the first send) and how long they
            # took (ms), to tell a stall that hit every sender at once from queueing spread over the run
            "slowest_acks": sorted(
                (r[1] - first_send, r[2] * 1000)
                for r in flat
                if not math.isnan(r[2]) and acks and r[2] > percentile(acks, 99)
            ),
        }
        print(report(results_doc))
        if args.json:
            args.json.write_text(json.dumps(results_doc, indent=2))
            print(f"results written to {args.json}")
        return 1 if failures else 0


LABELS_BY_EMOJI = {emoji: label for label, emoji in LABELS.items()}


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the server was stopped and the schema dropped on the way out
        print("reaction_throughput: interrupted", file=sys.stderr)
        sys.exit(130)
