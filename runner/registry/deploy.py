"""Telling the serving system which adapter serves: the deployment manifest and the deploy hook.

The manifest ``FTBOT_DATA_DIR/deploy/<project>.json`` names the adapter in production; it is written
only after the move is committed in the database (`runner.registry.versions`). While a move is under
way its manifest is staged beside it as ``.<project>.<move id>.json`` and handed to the hook.

The optional ``FTBOT_DEPLOY_HOOK`` is an ``http(s)://`` URL (given the manifest as a JSON POST) or a
shell command. A command gets a minimal environment: ``PATH``, the locale, the manifest
(``FTBOT_MANIFEST`` — its path — and ``FTBOT_MANIFEST_JSON``), its main fields, and only the
variables listed in ``FTBOT_DEPLOY_HOOK_ENV`` — never the bot's tokens or database URL. The hook's
output is redacted and kept in the server log; a person is told a short, redacted reason.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from runner.core.config import Settings
from runner.core.exceptions import DeployHookError
from runner.core.models import Project
from runner.core.redaction import redact, short_reason

log = logging.getLogger(__name__)

# What a hook command may see of the process environment besides the manifest and the variables
# the operator lists: enough to find programs and print text.
BASE_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR")
KEPT_OUTPUT_CHARS = 4000  # of a hook's output, in the server log


def manifest_path(settings: Settings, project: Project | str) -> Path:
    name = project if isinstance(project, str) else project.name
    return Path(settings.ftbot_data_dir) / "deploy" / f"{name}.json"


def staged_path(settings: Settings, project: Project | str, move_id: int) -> Path:
    """Where the manifest of move `move_id` waits until the move is committed."""
    manifest = manifest_path(settings, project)
    return manifest.with_name(f".{manifest.stem}.{move_id}.json")


def stray_files(settings: Settings, project: Project | str) -> dict[Path, int | None]:
    """Staged manifests of `project` on disk, with the move id each belongs to (None: unknown)."""
    manifest = manifest_path(settings, project)
    found: dict[Path, int | None] = {}
    if not manifest.parent.is_dir():
        return found
    for path in manifest.parent.glob(f".{manifest.stem}.*.json"):
        middle = path.name[len(manifest.stem) + 2 : -len(".json")]
        found[path] = int(middle) if middle.isdigit() else None
    return found


def stage(path: Path, document: dict[str, Any]) -> Path:
    """Write `document` to `path` durably (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(document, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(name, path)
    return path


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest at `path`, or None when there is none (or it is not a JSON object)."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def call_hook(settings: Settings, manifest: Path, document: dict[str, Any]) -> None:
    """Tell the serving system about `document` (the adapter that should serve): POST it to the URL
    hook, or run the command hook with the manifest in its environment. No hook: nothing to do.

    Raises:
        DeployHookError: the hook refused or failed (any error, including a malformed answer or a
            timeout); its message is short and redacted, fit for the channel.
    """
    hook = settings.ftbot_deploy_hook
    if not hook:
        return
    if hook.startswith(("http://", "https://")):
        _post(hook, document, settings.ftbot_deploy_hook_timeout)
    else:
        _run(hook, _environment(settings, manifest, document), settings.ftbot_deploy_hook_timeout)


def _post(url: str, document: dict[str, Any], timeout: float) -> None:
    request = urllib.request.Request(
        url,
        data=json.dumps(document).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = response.status
            answer = response.read(KEPT_OUTPUT_CHARS).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        _log_output("deploy hook answered an error", exc.read(KEPT_OUTPUT_CHARS).decode(errors="replace"))
        raise DeployHookError(f"The deploy hook answered HTTP {exc.code}.") from exc
    except Exception as exc:  # unreachable, timed out, or not HTTP at all (http.client's BadStatusLine)
        log.warning("deploy hook failed", extra={"error": redact(f"{type(exc).__name__}: {exc}")})
        raise DeployHookError(
            f"The deploy hook failed: {short_reason(f'{type(exc).__name__}: {exc}')}"
        ) from exc
    if not 200 <= status < 300:
        _log_output("deploy hook answered an error", answer)
        raise DeployHookError(f"The deploy hook answered HTTP {status}.")
    _log_output("deploy hook answered", answer, level=logging.INFO)


def _environment(settings: Settings, manifest: Path, document: dict[str, Any]) -> dict[str, str]:
    # Settings is the one reader of the process environment; the hook sees only what is listed here.
    inherited = Settings.inherited_environment(BASE_ENVIRONMENT)
    return {
        "PATH": os.defpath,
        **inherited,
        **settings.deploy_hook_environment(),
        "FTBOT_MANIFEST": str(manifest),
        "FTBOT_MANIFEST_JSON": json.dumps(document),
        "FTBOT_ACTION": str(document.get("action") or ""),
        "FTBOT_PROJECT": str(document.get("project") or ""),
        "FTBOT_VERSION": "" if document.get("version") is None else str(document["version"]),
        "FTBOT_ADAPTER_PATH": str(document.get("adapter_path") or ""),
        "FTBOT_BASE_MODEL": str(document.get("base_model") or ""),
    }


def _run(command: str, env: dict[str, str], timeout: float) -> None:
    # Its own process group, so a timeout ends everything the command started, not just the shell.
    process = subprocess.Popen(
        command,
        shell=True,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        _kill_group(process)
        output, _ = process.communicate()
        _log_output("deploy hook timed out", output or "")
        raise DeployHookError(f"The deploy hook timed out after {timeout:g} s.") from exc
    if process.returncode != 0:
        _log_output("deploy hook failed", output, exit_code=process.returncode)
        reason = short_reason(output)
        raise DeployHookError(
            f"The deploy hook exited {process.returncode}" + (f": {reason}" if reason else ".")
        )
    _log_output("deploy hook ran", output, level=logging.INFO)


def _kill_group(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _log_output(message: str, output: str, *, level: int = logging.WARNING, **fields: Any) -> None:
    log.log(level, message, extra={"hook_output": redact(output[-KEPT_OUTPUT_CHARS:]), **fields})
