"""`ftbot serve` (gunicorn, HTTP) as a subprocess, its log in a file: for tests of what the real
server answers and what it writes to its log."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DROPPED = (
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_APP_TOKEN",
    "SLACK_CLIENT_ID",
    "SLACK_CLIENT_SECRET",
    "SLACK_API_URL",
    "DATABASE_URL",
)


@dataclass
class Served:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(env: dict[str, str], log_path: Path, *, threads: int = 4) -> Iterator[Served]:
    """Start ``ftbot serve`` with `env` (on top of this environment, Slack variables removed) and
    wait until it answers ``/healthz``; stop it (SIGTERM) afterwards."""
    port = free_port()
    base = {k: v for k, v in os.environ.items() if k not in DROPPED}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
            + ["--threads", str(threads)],
            env={**base, "FTBOT_LOG_FORMAT": "json", **env},
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    served = Served(f"http://127.0.0.1:{port}", process, log_path)
    try:
        deadline = time.monotonic() + 120  # a hang guard: a loaded machine starts gunicorn slowly
        while True:
            if process.poll() is not None:
                raise AssertionError(f"ftbot serve exited {process.returncode}:\n{served.log()[-3000:]}")
            try:
                urllib.request.urlopen(served.url + "/healthz", timeout=5).read()
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise AssertionError(f"ftbot serve never answered:\n{served.log()[-3000:]}") from None
                time.sleep(0.2)
        yield served
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
