"""A multi-node run as a Kubeflow Trainer ``TrainJob`` (``FTBOT_MULTINODE=k8s``).

The run's job renders ``templates/k8s/trainjob.json.j2`` (`render`), creates the TrainJob through the
Kubernetes API with the worker's service account (`KubernetesApi`: plain HTTPS, the token and CA
bundle Kubernetes mounts in every pod), then watches it: rank 0 — in whichever pod — streams its
progress through Redis as on one machine, and the TrainJob's ``Complete`` or ``Failed`` condition
says when it ended. Pause and stop reach rank 0 through Redis; Cancel deletes the TrainJob (its pods
get SIGTERM: every rank stops at the next step boundary). An earlier try's TrainJob still there when
a run resumes is deleted first. A completed TrainJob is deleted once its outcome is read; a failed
one is kept for its pods' logs.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner.core.config import Settings
from runner.core.exceptions import FtbotError
from runner.core.trainconfig import Progress, TrainConfig

GROUP, VERSION, PLURAL = "trainer.kubeflow.org", "v1alpha1", "trainjobs"
DELETE_WAIT_S = 120.0


class KubernetesError(FtbotError):
    """The Kubernetes API refused a request or could not be reached."""


def render(
    settings: Settings,
    *,
    name: str,
    run_id: int,
    attempt: int,
    config: TrainConfig,
    spec: Path,
    deadline_s: int,
) -> dict[str, Any]:
    """The TrainJob for one try of a run: ``config.nodes`` pods of ``config.procs`` processes each,
    every one running torchrun on ``spec`` (the run's settings in the shared data volume)."""
    from runner.slack.render import environment

    resources: dict[str, Any] = {
        "requests": {"cpu": str(max(2, 2 * config.procs)), "memory": f"{max(16, 8 * config.procs)}Gi"}
    }
    if settings.ftbot_k8s_gpu_resource:
        resources["limits"] = {settings.ftbot_k8s_gpu_resource: config.procs}
    text = (
        environment()
        .get_template("k8s/trainjob.json.j2")
        .render(
            name=name,
            namespace=settings.ftbot_k8s_namespace,
            run_id=run_id,
            attempt=attempt,
            runtime=settings.ftbot_k8s_runtime,
            image=settings.ftbot_k8s_image,
            nodes=config.nodes,
            procs=config.procs,
            command=["torchrun", "--max-restarts=0", "-m", "runner.ml.distributed", str(spec)],
            data_dir=str(settings.ftbot_data_dir),
            pvc=settings.ftbot_k8s_pvc,
            resources=resources,
            deadline_s=deadline_s,
        )
    )
    manifest: dict[str, Any] = json.loads(text)
    return manifest


def conditions(trainjob: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The TrainJob's status conditions that hold (``status: "True"``), by type."""
    found = (trainjob.get("status") or {}).get("conditions") or []
    return {c["type"]: c for c in found if c.get("status") == "True"}


class KubernetesApi:
    """The few TrainJob calls the launcher makes, over HTTPS with a bearer token."""

    def __init__(self, base_url: str, namespace: str, token: str | None, ca_file: str | None) -> None:
        self.base = f"{base_url.rstrip('/')}/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
        self.token = token
        self.context = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()

    @classmethod
    def from_settings(cls, settings: Settings) -> KubernetesApi:
        token_file = Path(settings.ftbot_k8s_token_file)
        token = token_file.read_text().strip() if token_file.is_file() else None
        ca_file = settings.ftbot_k8s_ca_file if Path(settings.ftbot_k8s_ca_file or "-").is_file() else None
        return cls(settings.ftbot_k8s_api_url, settings.ftbot_k8s_namespace, token, ca_file)

    def _call(
        self, method: str, path: str = "", body: Any = None, content_type: str = "application/json"
    ) -> Any:
        request = urllib.request.Request(
            self.base + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={
                "Accept": "application/json",
                "Content-Type": content_type,
                **({"Authorization": f"Bearer {self.token}"} if self.token else {}),
            },
        )
        try:
            with urllib.request.urlopen(
                request, timeout=30, context=self.context if self.base.startswith("https") else None
            ) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            detail = exc.read().decode(errors="replace")[:500]
            raise KubernetesError(f"Kubernetes API {method} {PLURAL}{path}: {exc.code} {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise KubernetesError(f"Kubernetes API at {self.base} unreachable: {exc}") from exc

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = self._call("POST", "", manifest)
        return created

    def get(self, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self._call("GET", f"/{name}")
        return found

    def list(self, label_selector: str) -> list[dict[str, Any]]:
        from urllib.parse import quote

        found = self._call("GET", f"?labelSelector={quote(label_selector)}") or {}
        return list(found.get("items") or [])

    def delete(self, name: str) -> bool:
        """Delete the TrainJob and, in the background, its pods; False when there was none."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        return self._call("DELETE", f"/{name}", body) is not None


def launch(
    settings: Settings,
    link: Any,
    beat: Callable[[], None],
    *,
    run_id: int,
    attempt: int,
    config: TrainConfig,
    spec: Path,
    progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    should_pause: Callable[[], bool] | None = None,
    on_checkpoint: Callable[[int, float | None], None] | None = None,
) -> Any:
    """Create the run's TrainJob and watch it to its end (see the module docstring).

    Raises:
        TrainingPaused, TrainingCancelled: as for one machine.
        DistributedTrainingFailed: the TrainJob failed (its condition's message says why).
        KubernetesError: the API refused or could not be reached.
    """
    from runner.jobs.multinode import trainjob_name
    from runner.ml import distributed

    api = KubernetesApi.from_settings(settings)
    name = trainjob_name(run_id, attempt)
    for earlier in api.list(f"ftbot.dev/run={run_id}"):  # a previous try's: it must not write on
        api.delete(earlier["metadata"]["name"])
    deadline = time.monotonic() + DELETE_WAIT_S
    while api.list(f"ftbot.dev/run={run_id}"):
        if time.monotonic() > deadline:
            raise KubernetesError(f"an earlier TrainJob of run {run_id} is still being deleted")
        beat()
        time.sleep(1.0)
    api.create(
        render(
            settings,
            name=name,
            run_id=run_id,
            attempt=attempt,
            config=config,
            spec=spec,
            deadline_s=settings.ftbot_job_timeout,
        )
    )
    state: dict[str, Any] = {"last": 0.0, "ended": None}

    def ended() -> bool:
        now = time.monotonic()
        if now - state["last"] >= settings.ftbot_k8s_poll_interval:
            state["last"] = now
            found = api.get(name)
            if found is None:
                state["ended"] = {"type": "Failed", "message": "the TrainJob was deleted"}
            else:
                held = conditions(found)
                state["ended"] = held.get("Complete") or held.get("Failed")
        return state["ended"] is not None

    outcome = distributed.watch(
        ended,
        link,
        progress=progress,
        should_stop=should_stop,
        should_pause=should_pause,
        on_checkpoint=on_checkpoint,
        tick=beat,
    )
    finished = state["ended"]
    failure = (
        f"TrainJob {name} failed ({config.nodes} nodes × {config.procs} processes): "
        f"{finished.get('reason', '')} {finished.get('message', '')}".strip()
    )
    if finished.get("type") != "Complete":
        # A failed node's peers got SIGTERM and may have stopped cleanly: the run still failed.
        raise distributed.DistributedTrainingFailed(failure)
    api.delete(name)
    return distributed.conclude(outcome, exited_cleanly=True, failure=lambda: failure)
