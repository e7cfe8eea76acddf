"""OpenAI-compatible streaming chat completions (OpenAI, Ollama, vLLM, llama.cpp server).

POST ``{base_url}/chat/completions`` with ``stream: true``; the reply is Server-Sent Events, one
``data: {json}`` line per delta, ending with ``data: [DONE]``. The request asks for token counts
(``stream_options: {include_usage: true}``); the server sends them in a last event whose
``choices`` is empty, and they are yielded as a ``Usage`` after the text. A server that rejects the
option is asked again without it, and not asked with it again in this process.

Tools: given ``tools`` (OpenAI's function schemas), the request carries them; the streamed
``delta.tool_calls`` pieces are put together by their ``index`` (the id and name come first, the
arguments in pieces) and yielded as one ``ToolCalls`` after the text. The next request sends them
back as an assistant message's ``tool_calls`` followed by ``tool`` messages, as OpenAI, Ollama,
vLLM and llama.cpp's server accept.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from ..core.errors import ProviderError, ProviderHTTPError, ProviderProtocolError
from .base import (
    AsyncGeneratorProvider,
    FinishReason,
    HTTPStream,
    Messages,
    ToolCallParts,
    ToolCalls,
    Usage,
    transport_options,
)
from .credentials import OPENAI_DEFAULT_URL, env_keys, key_for

DEFAULT_BASE_URL = OPENAI_DEFAULT_URL
USAGE_OPTION = {"include_usage": True}
# Base URLs whose server refused ``stream_options`` in this process: asked without it from then on.
_no_stream_options: set[str] = set()


def api_key_from_env(url: str, provider_default: str = DEFAULT_BASE_URL) -> str:
    """The environment's key for ``url``, if one is bound to its host (see ``credentials``)."""
    return key_for(url, env_keys(os.environ.get("ACYTOO_URL"), provider_default))


class OpenAICompatible(AsyncGeneratorProvider):
    url = DEFAULT_BASE_URL
    url_env = "OPENAI_BASE_URL"
    supports_gpt_35_turbo = True
    takes_api_key = True
    supports_tools = True  # native tool calls: agent mode works with this provider
    default_model = "gpt-4o-mini"  # when no model is set; Ollama, vLLM and others need -m

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
        tools: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[str | Usage | ToolCalls]:
        """Stream the answer's deltas, then its ``Usage`` if the server reports one. Also takes
        ``session``, ``timeout``, ``retries``, ``max_response_bytes`` and ``on_retry`` (see
        ``HTTPStream``); other keywords are ignored.

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
        if tools:
            body["tools"] = tools
        ask_usage = base not in _no_stream_options
        while True:
            stream = HTTPStream(
                "OpenAI-compatible",
                f"{base}/chat/completions",
                json={**body, "stream_options": USAGE_OPTION} if ask_usage else body,
                headers=headers,
                proxy=proxy,
                secrets=(key,),
                **transport_options(kwargs),
            )
            if key and "@" in urlsplit(base).netloc:  # aiohttp would send the URL's user:password instead
                raise stream.error(
                    ProviderError, "the URL has user:password@ and an API key is set: both are Authorization"
                )
            try:
                async for item in read_events(stream):
                    yield item
                return
            except ProviderHTTPError as exc:
                if not ask_usage or not refuses_stream_options(exc):
                    raise
                if "stream_options" in exc.body:  # it says so: no need to see the retry succeed
                    _no_stream_options.add(base)
            finally:
                if not ask_usage and stream.opened:  # answered without the option: it was the option
                    _no_stream_options.add(base)
            ask_usage = False


def refuses_stream_options(error: ProviderHTTPError) -> bool:
    """A 400 or 422 refusal (before any byte of a reply) may be the ``stream_options`` field: some
    servers validate strictly and name it, others just refuse. Either way it is worth one retry."""
    return error.status in (400, 422)


async def read_events(stream: HTTPStream) -> AsyncIterator[str | Usage | ToolCalls | FinishReason]:
    """The text of each delta, then the tool calls asked for, the last ``Usage``, if any, and a
    ``FinishReason`` when the server stopped at its token limit (``length``: the answer is cut)."""
    usage = None
    cut = False
    calls = ToolCallParts()
    async with contextlib.aclosing(stream.chunks(lines=True)) as lines:
        async for raw in lines:
            event = parse_sse_line(raw, stream)
            if event is DONE:
                break
            if event is None:
                continue
            if text := delta_text(event, stream):
                yield text
            add_tool_call_deltas(calls, event, stream)
            usage = usage_of(event) or usage
            cut = cut or finish_reason(event) == "length"
    if (asked := calls.result()) is not None:
        yield asked
    if usage is not None:
        yield usage
    if cut:
        yield FinishReason("length")


def finish_reason(event: dict[str, Any]) -> str:
    """``choices[0].finish_reason`` of an event, or ""."""
    choices = event.get("choices")
    first = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    reason = first.get("finish_reason")
    return reason if isinstance(reason, str) else ""


def add_tool_call_deltas(calls: ToolCallParts, event: dict[str, Any], stream: HTTPStream) -> None:
    """Merge one event's ``delta.tool_calls`` into ``calls``."""
    choices = event.get("choices") or []
    first = choices[0] if choices and isinstance(choices[0], dict) else {}
    deltas = (first.get("delta") or {}).get("tool_calls")
    if not deltas:
        return
    if not isinstance(deltas, list):
        raise stream.error(ProviderProtocolError, "delta.tool_calls is not a list")
    for delta in deltas:
        try:
            calls.add(delta)
        except ValueError as exc:
            raise stream.error(ProviderProtocolError, str(exc)) from None


DONE = object()


def parse_sse_line(raw: bytes, stream: HTTPStream) -> Any:
    """The JSON object of one SSE ``data:`` line, ``DONE`` at the end marker, or None for other lines."""
    line = raw.decode("utf-8", "replace").strip()
    if not line.startswith("data:"):
        return None  # blank separators, comments (":"), "event:", "id:", "retry:"
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
    return event


def delta_text(event: dict[str, Any], stream: HTTPStream) -> str:
    """``choices[0].delta.content``, or "" (the usage event has no choices; a role-only delta no text)."""
    try:
        choices = event.get("choices") or []
        content = choices[0].get("delta", {}).get("content") if choices else None
    except (AttributeError, TypeError):
        raise stream.error(ProviderProtocolError, "SSE event without choices[0].delta") from None
    return content if isinstance(content, str) else ""


def usage_of(event: dict[str, Any]) -> Usage | None:
    """The event's ``usage`` counts (OpenAI sends them in a last event with empty ``choices``)."""
    usage = event.get("usage")
    if not isinstance(usage, dict):
        return None

    def count(name: str) -> int | None:
        value = usage.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None

    prompt, completion = count("prompt_tokens"), count("completion_tokens")
    if prompt is None and completion is None:
        return None
    return Usage(prompt, completion)
