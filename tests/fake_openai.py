"""A small fake of an OpenAI-compatible inference server (vLLM / LoRAX serving adapters by name).

``POST /v1/chat/completions`` answers with what `answer(model, messages)` returns — a text and its
probability — in the shape vLLM gives (``choices[0].message.content`` and token ``logprobs``); an
unknown model gets vLLM's 404. Every request is kept for the test to read.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = Callable[[str, list[dict[str, str]]], tuple[str, float] | None]


class FakeInferenceServer:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                with server._lock:
                    server.requests.append(body)
                if self.path != "/v1/chat/completions":
                    self._send(404, {"error": {"message": "not found"}})
                    return
                found = server.answer(body["model"], body["messages"])
                if found is None:
                    self._send(404, {"error": {"message": f"The model `{body['model']}` does not exist."}})
                    return
                text, probability = found
                tokens = text.split() or [""]
                each = math.log(probability) / len(tokens)
                choice = {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                    "logprobs": {"content": [{"token": t, "logprob": each} for t in tokens]},
                }
                self._send(200, {"id": "cmpl-1", "object": "chat.completion", "choices": [choice]})

            def _send(self, status: int, document: dict[str, Any]) -> None:
                data = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}/v1"

    def __enter__(self) -> FakeInferenceServer:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def models_asked(self) -> list[str]:
        with self._lock:
            return [r["model"] for r in self.requests]
