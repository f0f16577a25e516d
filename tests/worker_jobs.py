"""Job bodies for worker tests, enqueued by dotted path like ftbot's own (the worker imports them)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path


def launch_and_wait(pid_file: str) -> None:
    """Launch a process of its own (as a trainer launching helpers would) and wait for a long time."""
    child = subprocess.Popen(["sleep", "600"])
    Path(pid_file).write_text(json.dumps({"horse": os.getpid(), "child": child.pid}))
    time.sleep(600)
