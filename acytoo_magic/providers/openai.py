"""OpenAI-compatible streaming chat completions (OpenAI, Ollama, vLLM, llama.cpp server).

POST ``{base_url}/chat/completions`` with ``stream: true``; the reply is Server-Sent Events, one
``data: {json}`` line per delta, ending with ``data: [DONE]``.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

from .base import (
    AsyncGeneratorProvider,
    HTTPStream,
    Messages,
    ProviderProtocolError,
    transport_options,
)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
API_KEY_ENV = ("ACYTOO_API_KEY", "OPENAI_API_KEY")


def api_key_from_env() -> str:
    return next((os.environ[name] for name in API_KEY_ENV if os.environ.get(name)), "")


class OpenAICompatible(AsyncGeneratorProvider):
    url = DEFAULT_BASE_URL
    url_env = "OPENAI_BASE_URL"
    supports_gpt_35_turbo = True

    @classmethod
    async def create_async_generator(  # type: ignore[override]
        cls,
        model: str,
        messages: Messages,
        proxy: str | None = None,
        *,
        url: str | None = None,
        api_key: str | None = None,
        temperature: float | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[str]:
        """Stream the answer's deltas. Also takes ``session``, ``timeout``, ``retries``,
        ``max_response_bytes`` and ``on_retry`` (see ``HTTPStream``); other keywords are ignored."""
        key = api_key or api_key_from_env()
        headers = {"accept": "text/event-stream", "content-type": "application/json"}
        if key:
            headers["authorization"] = f"Bearer {key}"
        body: dict[str, Any] = {"model": model, "messages": [dict(m) for m in messages], "stream": True}
        if temperature is not None:
            body["temperature"] = float(temperature)
        stream = HTTPStream(
            "OpenAI-compatible",
            f"{cls.base_url(url)}/chat/completions",
            json=body,
            headers=headers,
            proxy=proxy,
            secrets=(key,),
            **transport_options(kwargs),
        )
        async for raw in stream.chunks(lines=True):
            event = parse_sse_line(raw, stream)
            if event is DONE:
                return
            if event:
                yield event


DONE = object()


def parse_sse_line(raw: bytes, stream: HTTPStream) -> Any:
    """Return the delta text of one SSE line, ``DONE`` at the end marker, or "" for anything else."""
    line = raw.decode("utf-8", "replace").strip()
    if not line.startswith("data:"):
        return ""  # blank separators, comments (":"), "event:", "id:", "retry:"
    data = line[5:].strip()
    if data == "[DONE]":
        return DONE
    try:
        event = json.loads(data)
    except json.JSONDecodeError:
        raise stream.error(ProviderProtocolError, f"bad JSON in SSE line: {data[:60]!r}") from None
    if not isinstance(event, dict):
        raise stream.error(ProviderProtocolError, "SSE event is not a JSON object")
    if "error" in event:
        error = event["error"]
        message = error.get("message", error) if isinstance(error, dict) else error
        raise stream.error(ProviderProtocolError, f"server error in stream: {message}")
    try:
        choices = event.get("choices") or []
        content = choices[0].get("delta", {}).get("content") if choices else None
    except (AttributeError, TypeError):
        raise stream.error(ProviderProtocolError, "SSE event without choices[0].delta") from None
    return content if isinstance(content, str) else ""
