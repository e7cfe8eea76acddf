"""The model backend: a local GGUF model's answers over both protocols (``--backend model``).

The same loader and streaming as the in-process ``local`` provider (``local_model``); usage and
``finish_reason`` are llama.cpp's own. A client that leaves stops the generation at its next token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from typing import Any

from aiohttp import web

from ..providers.local_model import Generation, LocalModel, ModelError
from .wire import (
    DONE,
    SSE,
    TEXT,
    OpenAIReply,
    include_usage,
    max_tokens_of,
    models_list,
    openai_error,
    read_json,
    require_messages,
)

# llama.cpp drops ``tools`` for a chat template without them (SmolLM2's), and the bundled models
# made no well-formed call even when tools were rendered into the prompt (docs/agent.md).
NO_TOOLS = (
    "{name} does not support tools here (this server passes none to its model; the bundled models "
    "made no well-formed tool call when measured: docs/agent.md); for agent mode serve a "
    "tool-calling model with Ollama, vLLM or llama.cpp's server"
)


class ModelBackend:
    """The request handlers for a loaded model; no request log (``/_requests`` is a 404)."""

    def __init__(self, model: LocalModel, log: bool = False) -> None:
        self.model = model
        self.log = log  # one line per generation on stderr (tokens, time to first token, tokens/s)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/api/completions", self.acytoo),
            web.post("/v1/chat/completions", self.openai),
            web.get("/v1/models", self.models),
        ]

    async def acytoo(self, request: web.Request) -> web.StreamResponse:
        payload = require_messages(await read_json(request))
        return await self._generate(request, payload, openai=False)

    async def openai(self, request: web.Request) -> web.StreamResponse:
        payload = require_messages(await read_json(request, openai=True), openai=True)
        if payload.get("tools"):  # a 400, as Ollama answers for a model without tools; never dropped silently
            message = NO_TOOLS.format(name=self.model.name)
            return openai_error(400, message, param="tools", code="tools_unsupported")
        return await self._generate(request, payload, openai=True)

    async def models(self, request: web.Request) -> web.Response:
        """``GET /v1/models``: the loaded model's name."""
        return web.json_response(models_list(self.model.name))

    async def _generate(
        self, request: web.Request, payload: dict[str, Any], openai: bool
    ) -> web.StreamResponse:
        """The model's answer: streamed token by token (Acytoo text or OpenAI SSE), or whole."""
        model = self.model
        name = str(payload.get("model") or model.name)
        sse = openai and bool(payload.get("stream"))
        whole = openai and not sse
        reply = OpenAIReply(name, include_usage(payload))
        temperature = payload.get("temperature")
        response: web.StreamResponse | None = None
        text: list[str] = []
        record: Generation | None = None

        def gone() -> bool:
            return request.transport is None or request.transport.is_closing()

        async def write(data: bytes) -> None:
            nonlocal response
            if response is None:
                response = web.StreamResponse(
                    headers={"content-type": SSE if sse else TEXT, "cache-control": "no-cache"}
                )
                await response.prepare(request)
            await response.write(data)

        stream = model.stream(  # no temperature given: the bundled models' measured sampling
            payload["messages"], None if temperature is None else float(temperature), max_tokens_of(payload)
        )
        try:
            async with contextlib.aclosing(stream):
                async for item in stream:
                    if isinstance(item, Generation):
                        record = item
                    elif isinstance(item, str):
                        if whole:
                            text.append(item)
                        else:
                            await write(reply.chunk(item) if sse else item.encode())
                    if gone():  # the client went away: the model stops at its next chunk
                        break
        except ConnectionResetError:
            raise asyncio.CancelledError from None
        except ModelError as exc:  # llama.cpp: the prompt does not fit the context window
            message = str(exc)
            if response is None:
                if openai:
                    return openai_error(400, message, param="messages", code="context_length_exceeded")
                return web.Response(status=400, text=message)
            await write(b'data: {"error": {"message": %s}}\n\n' % json.dumps(message).encode())
        finally:
            if model.generations and self.log:
                print(f"generation: {model.generations[-1].summary()}", file=sys.stderr, flush=True)
        if record is None:  # stopped early: the client is gone
            return response or web.Response(status=499)
        # Stopped for repeating itself: a stop in both protocols' vocabulary (the server's log says why).
        reason = "stop" if record.finish_reason in (None, "repetition") else record.finish_reason
        if whole:
            return web.json_response(
                reply.completion("".join(text), reason, record.prompt_tokens, record.completion_tokens)
            )
        if sse:
            await write(reply.finish(reason))
            if reply.include_usage:
                await write(reply.usage_chunk(record.prompt_tokens, record.completion_tokens))
            await write(DONE)
        elif response is None:
            await write(b"")
        assert response is not None
        await response.write_eof()
        return response
