"""The ``openai`` engine: any OpenAI-compatible server (vLLM, SGLang, TGI, `transformers serve`) through its
``POST /v1/chat/completions``, one request per completion (``n=1``, the completion's ``seed``), several at once.

The server renders the chat template; ``chat_template_kwargs`` are sent as the request field vLLM, SGLang and
`transformers serve` read. ``top_k`` is sent only when set (OpenAI's own API has none). The bearer token is read
from ``OPENAI_API_KEY`` and is never recorded or printed; the endpoint is recorded without credentials or query.
Plain ``urllib`` (no client package): transient failures (429, 5xx, a dropped connection) are retried three
times with backoff.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prefkit.errors import ModelError, OptionError
from prefkit.generate.base import Output, Request
from prefkit.generate.sampling import SamplingParams, split_reasoning

TOKEN_ENV = "OPENAI_API_KEY"
#: requests in flight at once
DEFAULT_CONCURRENCY = 8
RETRIES = 3


def public_endpoint(url: str) -> str:
    """The endpoint without user, password, query or fragment (what is recorded)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def chat_url(endpoint: str) -> str:
    """``…/v1/chat/completions`` from a server root, a ``/v1`` base URL, or the full path."""
    base = endpoint.rstrip("/")
    if base.endswith("/chat/completions"):
        return base
    return base + ("/chat/completions" if base.endswith("/v1") else "/v1/chat/completions")


class OpenAIEngine:
    name = "openai"

    def __init__(
        self, model: str, endpoint: str | None, template_kwargs: dict, concurrency: int | None = None
    ) -> None:
        if not endpoint:
            raise OptionError(
                "--engine openai needs --endpoint URL", "e.g. --endpoint http://localhost:8000/v1"
            )
        if urllib.parse.urlsplit(endpoint).scheme not in ("http", "https"):
            raise OptionError(
                f"--endpoint must be an http(s) URL, got {public_endpoint(endpoint)!r}",
                "e.g. http://localhost:8000/v1",
            )
        self.model = model
        self.url = chat_url(endpoint)
        self.template_kwargs = template_kwargs
        self.batch_size = concurrency or DEFAULT_CONCURRENCY
        self.info: dict[str, Any] = {
            "engine": self.name,
            "engine_version": None,
            "model": model,
            "endpoint": public_endpoint(self.url),
            "source": "server",
            "revision": None,
        }

    def generate(
        self, requests: list[Request], params: SamplingParams, on_progress: Any = None
    ) -> list[Output]:
        outputs: list[Output] = []
        with ThreadPoolExecutor(self.batch_size) as pool:
            for start in range(0, len(requests), self.batch_size):
                chunk = requests[start : start + self.batch_size]
                done = list(pool.map(lambda r: self._one(r, params), chunk))
                outputs += done
                if on_progress is not None:
                    on_progress(len(chunk), sum(o.completion_tokens for o in done))
        return outputs

    def _body(self, request: Request, params: SamplingParams) -> dict:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": request.prompt,
            "n": 1,
            "seed": request.seed,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_new_tokens,
        }
        if params.top_k:
            body["top_k"] = params.top_k
        if params.stop:
            body["stop"] = list(params.stop)
        kwargs = {**self.template_kwargs, **request.template_kwargs}
        if kwargs:
            body["chat_template_kwargs"] = kwargs
        return body

    def _one(self, request: Request, params: SamplingParams) -> Output:
        reply = self._post(self._body(request, params))
        choice = (reply.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        text = message.get("content") or ""
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        if reasoning is None:
            text, reasoning = split_reasoning(text)
        usage = reply.get("usage") or {}
        finish = "length" if choice.get("finish_reason") == "length" else "stop"
        if self.info["engine_version"] is None:
            self.info["engine_version"] = reply.get("system_fingerprint") or reply.get("model")
        return Output(
            text,
            reasoning,
            finish,
            int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or 0),
        )

    def _post(self, body: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        token = os.environ.get(TOKEN_ENV)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode()
        where = public_endpoint(self.url)
        for attempt in range(RETRIES + 1):
            try:
                req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=600) as resp:
                    return json.loads(resp.read().decode())
            except urllib.error.HTTPError as err:
                detail = err.read().decode(errors="replace")[:300]
                if err.code in (429, 500, 502, 503, 504) and attempt < RETRIES:
                    time.sleep(2**attempt)
                    continue
                raise ModelError(
                    f"{where} answered HTTP {err.code}: {detail}",
                    f"check the server, --model (the served model's name) and {TOKEN_ENV}",
                ) from None
            except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
                if attempt < RETRIES:
                    time.sleep(2**attempt)
                    continue
                raise ModelError(
                    f"cannot reach {where}: {getattr(err, 'reason', err)}",
                    "start the server, or check --endpoint",
                ) from None
            except ValueError:
                raise ModelError(
                    f"{where} did not answer JSON", "check --endpoint: an OpenAI-compatible server"
                ) from None
        raise AssertionError("unreachable")
