"""OpenAI-compatible streaming chat completions (OpenAI, Ollama, vLLM, llama.cpp server).

POST ``{base_url}/chat/completions`` with ``stream: true``; the reply is Server-Sent Events, one
``data: {json}`` line per delta, ending with ``data: [DONE]``.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from .base import (
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_RETRIES,
    AsyncGeneratorProvider,
    HTTPStream,
    Messages,
    ProviderProtocolError,
)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
API_KEY_ENV = ("ACYTOO_API_KEY", "OPENAI_API_KEY")


def api_key_from_env() -> str:
    return next((os.environ[name] for name in API_KEY_ENV if os.environ.get(name)), "")


class OpenAICompatible(AsyncGeneratorProvider):
    url = DEFAULT_BASE_URL
    working = True
    supports_message_history = True
    supports_gpt_35_turbo = True

    @classmethod
    def base_url(cls, url: str | None = None) -> str:
        return (url or os.environ.get("OPENAI_BASE_URL") or cls.url).rstrip("/")

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
        session: aiohttp.ClientSession | None = None,
        timeout: float | aiohttp.ClientTimeout | None = None,
        retries: int = DEFAULT_RETRIES,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        on_retry: Any = None,
        **kwargs: Any,
    ) -> AsyncIterator[str]:
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
            session=session,
            timeout=timeout,
            retries=retries,
            max_response_bytes=max_response_bytes,
            secrets=(key,),
            on_retry=on_retry,
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
