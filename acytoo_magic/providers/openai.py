"""OpenAI-compatible streaming chat completions (OpenAI, Ollama, vLLM, llama.cpp server).

POST ``{base_url}/chat/completions`` with ``stream: true``; the reply is Server-Sent Events, one
``data: {json}`` line per delta, ending with ``data: [DONE]``.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from .base import (
    AsyncGeneratorProvider,
    HTTPStream,
    Messages,
    ProviderError,
    ProviderProtocolError,
    transport_options,
)
from .credentials import OPENAI_DEFAULT_URL, env_keys, key_for

DEFAULT_BASE_URL = OPENAI_DEFAULT_URL


def api_key_from_env(url: str, provider_default: str = DEFAULT_BASE_URL) -> str:
    """The environment's key for ``url``, if one is bound to its host (see ``credentials``)."""
    return key_for(url, env_keys(os.environ.get("ACYTOO_URL"), provider_default))


class OpenAICompatible(AsyncGeneratorProvider):
    url = DEFAULT_BASE_URL
    url_env = "OPENAI_BASE_URL"
    supports_gpt_35_turbo = True
    takes_api_key = True

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
        ``max_response_bytes`` and ``on_retry`` (see ``HTTPStream``); other keywords are ignored.

        ``api_key``: sent as given ("" sends none); ``None`` takes the environment's key only if
        it is bound to this URL's host (``OPENAI_API_KEY``: ``OPENAI_BASE_URL`` or api.openai.com).
        """
        base = cls.base_url(url)
        key = api_key_from_env(base, cls.base_url()) if api_key is None else api_key
        headers = {"accept": "text/event-stream", "content-type": "application/json"}
        if key:
            headers["authorization"] = f"Bearer {key}"
        body: dict[str, Any] = {"model": model, "messages": [dict(m) for m in messages], "stream": True}
        if temperature is not None:
            body["temperature"] = float(temperature)
        stream = HTTPStream(
            "OpenAI-compatible",
            f"{base}/chat/completions",
            json=body,
            headers=headers,
            proxy=proxy,
            secrets=(key,),
            **transport_options(kwargs),
        )
        if key and "@" in urlsplit(base).netloc:  # aiohttp would send the URL's user:password instead
            raise stream.error(
                ProviderError, "the URL has user:password@ and an API key is set: both are Authorization"
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
