"""A small fake of the Kubernetes API for TrainJobs (``trainer.kubeflow.org/v1alpha1``), with a
stand-in for the Kubeflow Trainer controller.

``POST``, ``GET`` (one, or a list by ``labelSelector``), ``PATCH`` (merge patch of ``spec.suspend``)
and ``DELETE`` under ``/apis/trainer.kubeflow.org/v1alpha1/namespaces/<ns>/trainjobs``, each
refused (401) without the expected bearer token, with the API server's codes (404, 409). Every
request is kept for the test to read.

When a TrainJob is created, the stand-in controller does what the torch runtime's pods would: one
process per node running the TrainJob's ``trainer.command`` with its ``env`` (``configMapKeyRef``
values from ``config_maps``) and the torch plugin's ``PET_NNODES``, ``PET_NPROC_PER_NODE``,
``PET_NODE_RANK``, ``PET_MASTER_ADDR`` and ``PET_MASTER_PORT``. The TrainJob gets ``Complete`` when
every node exits 0 and ``Failed`` (the other nodes get SIGTERM, as JobSet's failure policy does)
when one does not. Deleting or suspending it sends SIGTERM to its nodes, as the kubelet does.
``fail_node(name, rank)`` kills one node outright (a lost machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

PREFIX = "/apis/trainer.kubeflow.org/v1alpha1/namespaces/"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeKubernetes:
    def __init__(
        self,
        *,
        token: str,
        config_maps: dict[str, dict[str, str]],
        env: dict[str, str],
        cwd: Path,
        bin_dir: Path,
        log_dir: Path,
    ) -> None:
        self.token = token
        self.config_maps, self.env, self.cwd, self.bin_dir, self.log_dir = (
            config_maps,
            env,
            cwd,
            bin_dir,
            log_dir,
        )
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.nodes: dict[str, list[subprocess.Popen[bytes]]] = {}
        self._lock = threading.RLock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def _body(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length)) if length else None

            def _send(self, status: int, document: Any) -> None:
                data = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self, method: str) -> None:
                body = self._body()
                with fake._lock:
                    fake.requests.append((method, self.path))
                if self.headers.get("Authorization") != f"Bearer {fake.token}":
                    self._send(401, {"kind": "Status", "code": 401, "reason": "Unauthorized"})
                    return
                url = urlsplit(self.path)
                if not url.path.startswith(PREFIX):
                    self._send(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
                    return
                parts = url.path[len(PREFIX) :].split("/")
                if len(parts) < 2 or parts[1] != "trainjobs":
                    self._send(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
                    return
                namespace, name = parts[0], (parts[2] if len(parts) > 2 else None)
                status, document = fake.handle(method, namespace, name, body, parse_qs(url.query))
                self._send(status, document)

            def do_GET(self) -> None:  # noqa: N802
                self._route("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._route("POST")

            def do_PATCH(self) -> None:  # noqa: N802
                self._route("PATCH")

            def do_DELETE(self) -> None:  # noqa: N802
                self._route("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeKubernetes:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for name in list(self.nodes):
            self._terminate(name)
        self.server.shutdown()
        self.server.server_close()

    # --- the API ----------------------------------------------------------------------------

    def handle(
        self, method: str, namespace: str, name: str | None, body: Any, query: dict[str, list[str]]
    ) -> tuple[int, Any]:
        with self._lock:
            if method == "POST" and name is None:
                name = body["metadata"]["name"]
                if (namespace, name) in self.objects:
                    return 409, {"kind": "Status", "code": 409, "reason": "AlreadyExists"}
                created = json.loads(json.dumps(body))
                created["metadata"].update(namespace=namespace, uid=f"uid-{name}", creationTimestamp=_now())
                created["status"] = {"conditions": []}
                self.objects[(namespace, name)] = created
                self._start(created)
                return 201, created
            if method == "GET" and name is None:
                wanted = dict(
                    pair.split("=", 1) for pair in (query.get("labelSelector") or [""])[0].split(",") if pair
                )
                items = [
                    o
                    for (ns, _n), o in self.objects.items()
                    if ns == namespace
                    and all(o["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())
                ]
                return 200, {"kind": "TrainJobList", "items": items}
            found = self.objects.get((namespace, name or ""))
            if found is None:
                return 404, {"kind": "Status", "code": 404, "reason": "NotFound"}
            if method == "GET":
                return 200, found
            if method == "DELETE":
                del self.objects[(namespace, found["metadata"]["name"])]
                self._terminate(found["metadata"]["name"])
                return 200, {"kind": "Status", "status": "Success"}
            if method == "PATCH":
                suspend = bool(body["spec"]["suspend"])
                found["spec"]["suspend"] = suspend
                if suspend:
                    self._terminate(found["metadata"]["name"])
                    self._condition(found, "Suspended", "Suspended", "TrainJob is suspended")
                return 200, found
        return 405, {"kind": "Status", "code": 405}

    # --- the stand-in controller -------------------------------------------------------------

    def _condition(self, trainjob: dict[str, Any], kind: str, reason: str, message: str) -> None:
        trainjob["status"]["conditions"].append(
            {
                "type": kind,
                "status": "True",
                "reason": reason,
                "message": message,
                "lastTransitionTime": _now(),
            }
        )

    def _start(self, trainjob: dict[str, Any]) -> None:
        trainer = trainjob["spec"]["trainer"]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env = {**self.env, "PATH": f"{self.bin_dir}{os.pathsep}{self.env.get('PATH', '')}"}
        for item in trainer.get("env", []):
            if "value" in item:
                env[item["name"]] = item["value"]
            else:
                ref = item["valueFrom"]["configMapKeyRef"]
                env[item["name"]] = self.config_maps[ref["name"]][ref["key"]]
        name = trainjob["metadata"]["name"]
        self.nodes[name] = []
        for rank in range(int(trainer["numNodes"])):
            node_env = {
                **env,
                "PET_NNODES": str(trainer["numNodes"]),
                "PET_NPROC_PER_NODE": str(trainer["numProcPerNode"]),
                "PET_NODE_RANK": str(rank),
                "PET_MASTER_ADDR": "127.0.0.1",
                "PET_MASTER_PORT": str(port),
            }
            with (self.log_dir / f"{name}-node-{rank}.log").open("wb") as log:
                self.nodes[name].append(
                    subprocess.Popen(
                        trainer["command"],
                        env=node_env,
                        cwd=self.cwd,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        threading.Thread(target=self._watch, args=(trainjob,), daemon=True).start()

    def _watch(self, trainjob: dict[str, Any]) -> None:
        name = trainjob["metadata"]["name"]
        pods = self.nodes[name]
        while True:
            codes = [p.poll() for p in pods]
            if any(code not in (None, 0) for code in codes):
                for pod in pods:
                    if pod.poll() is None:
                        os.killpg(pod.pid, signal.SIGTERM)
                for pod in pods:
                    pod.wait()
                with self._lock:
                    if not trainjob["spec"].get("suspend") and any(
                        o is trainjob for o in self.objects.values()
                    ):
                        self._condition(trainjob, "Failed", "JobFailed", f"a node exited with status {codes}")
                return
            if all(code == 0 for code in codes):
                with self._lock:
                    self._condition(trainjob, "Complete", "JobsCompleted", "TrainJob completed successfully")
                return
            time.sleep(0.1)

    def _terminate(self, name: str) -> None:
        for pod in self.nodes.get(name, []):
            if pod.poll() is None:
                os.killpg(pod.pid, signal.SIGTERM)

    def fail_node(self, name: str, rank: int) -> None:
        """The node's machine is gone: its processes die at once."""
        kill_tree(self.nodes[name][rank].pid)

    def pids(self, name: str) -> list[int]:
        return [p.pid for p in self.nodes.get(name, [])]


def kill_tree(root: int) -> None:
    """A machine lost: ``root`` and every process under it (whatever their process group) die at
    once, each stopped first so that none reacts (parent-death signal, SIGTERM handler) before."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    doomed, todo = [], [root]
    while todo:
        pid = todo.pop()
        doomed.append(pid)
        todo += children.get(pid, [])
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
