"""Predictions from an OpenAI-compatible server that serves the adapters (vLLM with LoRA, LoRAX).

``FTBOT_INFERENCE_URL`` is the server's API base (``http://vllm:8000/v1``); each adapter is served
under the name ``<project>-v<N>`` (vLLM: ``--lora-modules ticket-router-v3=/adapters/v3``). One
chat completion per request, greedy, with token log-probabilities for the answer's confidence; the
requests of a batch are sent together, and the server batches them. No torch here.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

TIMEOUT_S = 120.0


class InferenceServerError(RuntimeError):
    """The inference server refused a request or could not be reached."""


@dataclass(frozen=True)
class Completion:
    text: str
    probability: float | None
    latency_s: float


def _post(url: str, document: dict[str, Any], api_key: str | None) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(url, data=json.dumps(document).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as error:
        body = error.read().decode(errors="replace")[:300]
        raise InferenceServerError(f"the inference server answered {error.code}: {body}") from error
    except (urllib.error.URLError, OSError) as error:
        raise InferenceServerError(f"the inference server could not be reached: {error}") from error


def _probability(choice: Mapping[str, Any]) -> float | None:
    content = (choice.get("logprobs") or {}).get("content") or []
    values = [t.get("logprob") for t in content if isinstance(t, Mapping)]
    numbers = [float(v) for v in values if isinstance(v, int | float)]
    if not numbers or len(numbers) != len(values):
        return None
    return float(math.exp(sum(numbers)))


def complete(
    base_url: str,
    model: str,
    conversations: Sequence[Sequence[Mapping[str, str]]],
    *,
    max_new_tokens: int,
    api_key: str | None = None,
    parallel: int = 16,
) -> list[Completion]:
    """Greedy chat completions of `conversations` by the served `model`, in their order.

    Raises:
        InferenceServerError: a request failed (the whole batch fails with it).
    """
    url = base_url.rstrip("/") + "/chat/completions"

    def one(messages: Sequence[Mapping[str, str]]) -> Completion:
        began = time.perf_counter()
        answer = _post(
            url,
            {
                "model": model,
                "messages": [dict(m) for m in messages],
                "max_tokens": max_new_tokens,
                "temperature": 0,
                "logprobs": True,
            },
            api_key,
        )
        try:
            choice = answer["choices"][0]
            text = str(choice["message"]["content"] or "")
        except (KeyError, IndexError, TypeError) as error:
            raise InferenceServerError(f"the inference server's answer has no message: {error}") from error
        return Completion(text.strip(), _probability(choice), time.perf_counter() - began)

    if not conversations:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(conversations)))) as pool:
        return list(pool.map(one, conversations))
