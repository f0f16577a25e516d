"""Telling the serving system which adapter serves: the deployment manifest and the deploy hook.

The manifest ``FTBOT_DATA_DIR/deploy/<project>.json`` names the adapter in production; the optional
``FTBOT_DEPLOY_HOOK`` is a shell command (given ``FTBOT_MANIFEST``) or an ``http(s)://`` URL (given the
manifest as a JSON POST).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from runner.core.config import Settings
from runner.core.exceptions import DeployHookError
from runner.core.models import Project

HOOK_TIMEOUT_S = 60


def manifest_path(settings: Settings, project: Project) -> Path:
    return Path(settings.ftbot_data_dir) / "deploy" / f"{project.name}.json"


def stage(manifest: Path, document: dict[str, Any]) -> Path:
    manifest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=manifest.parent, prefix=f".{manifest.stem}.", suffix=".json")
    with os.fdopen(fd, "w") as handle:
        json.dump(document, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    return Path(name)


def call_hook(hook: str | None, manifest: Path, document: dict[str, Any]) -> None:
    """Tell the serving system about the new adapter: POST the manifest to a URL, or run a command
    with ``FTBOT_MANIFEST`` (and the main fields) in its environment.

    Raises:
        DeployHookError: non-2xx answer, unreachable URL, non-zero exit, or timeout.
    """
    if not hook:
        return
    if hook.startswith(("http://", "https://")):
        request = urllib.request.Request(
            hook,
            data=json.dumps(document).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=HOOK_TIMEOUT_S) as response:
                if not 200 <= response.status < 300:
                    raise DeployHookError(f"deploy hook answered HTTP {response.status}")
        except OSError as exc:  # URLError, HTTPError and timeouts are OSErrors
            raise DeployHookError(f"deploy hook failed: {exc}") from exc
        return
    env = {
        **os.environ,
        "FTBOT_MANIFEST": str(manifest),
        "FTBOT_PROJECT": str(document["project"]),
        "FTBOT_VERSION": str(document["version"]),
        "FTBOT_ADAPTER_PATH": str(document["adapter_path"]),
        "FTBOT_BASE_MODEL": str(document["base_model"]),
    }
    try:
        done = subprocess.run(
            hook, shell=True, env=env, capture_output=True, text=True, timeout=HOOK_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as exc:
        raise DeployHookError(f"deploy hook timed out after {HOOK_TIMEOUT_S} s") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()[-300:]
        raise DeployHookError(f"deploy hook exited {done.returncode}: {detail}")
