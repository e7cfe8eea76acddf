"""The two wire formats the local server speaks: OpenAI's chat completions and Acytoo's text stream.

Pure shapes (JSON bodies, SSE events, error objects) shared by every backend, so a scripted reply
and a model's reply reach a client byte-for-byte alike.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_error",
}
TEXT = "text/plain; charset=utf-8"  # the Acytoo protocol's stream
SSE = "text/event-stream"
DONE = b"data: [DONE]\n\n"


def openai_error(
    status: int, message: str, *, param: str | None = None, code: str | None = None, headers: Any = None
) -> web.Response:
    """An error as OpenAI's API sends it: ``{"error": {"message", "type", "param", "code"}}``."""
    kind = OPENAI_ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return web.Response(
        status=status, text=json.dumps(body), content_type="application/json", headers=headers or {}
    )


def bad_request(message: str, *, openai: bool, param: str | None = None) -> web.HTTPBadRequest:
    """A 400 to raise: OpenAI's error shape on /v1, the Acytoo protocol's ``{"error": ...}`` else."""
    text = openai_error(400, message, param=param).text if openai else json.dumps({"error": message})
    return web.HTTPBadRequest(text=text, content_type="application/json")


async def read_json(request: web.Request, openai: bool = False) -> Any:
    """The request's JSON body; else a 400 (OpenAI's error shape on /v1)."""
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        message = "the request body is not valid JSON" if openai else "body is not JSON"
        raise bad_request(message, openai=openai) from None


def require_messages(payload: Any, openai: bool = False) -> dict[str, Any]:
    """``payload`` if it is an object with a ``messages`` list; else a 400."""
    if not isinstance(payload, dict) or not isinstance(payload.get("messages"), list):
        message = "'messages' is required: a list of messages" if openai else "messages missing"
        raise bad_request(message, openai=openai, param="messages" if openai else None)
    return payload


class OpenAIReply:
    """One chat completion in OpenAI's shapes: streamed chunks (SSE) or one JSON object."""

    def __init__(self, model: str, include_usage: bool = False) -> None:
        self.id = f"chatcmpl-{secrets.token_hex(12)}"
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage
        self.sent_role = False

    def _event(self, choices: list[Any], **extra: Any) -> bytes:
        event = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            **({"usage": None} if self.include_usage else {}),
            **extra,
        }
        return b"data: " + json.dumps(event, ensure_ascii=False).encode() + b"\n\n"

    def chunk(self, content: str) -> bytes:
        delta = {"content": content} if self.sent_role else {"role": "assistant", "content": content}
        self.sent_role = True
        return self._event([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])

    def tool_delta(self, call: dict[str, Any]) -> bytes:
        """One streamed piece of a tool call (``delta.tool_calls``), put together by its ``index``."""
        delta: dict[str, Any] = {"tool_calls": [call]}
        if not self.sent_role:
            delta = {"role": "assistant", "content": None, **delta}
        self.sent_role = True
        return self._event([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])

    def finish(self, reason: str) -> bytes:
        return self._event([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": reason}])

    def usage_chunk(self, prompt: int, completion: int) -> bytes:
        """The last chunk when ``stream_options.include_usage`` is set: no choices, the usage."""
        return self._event([], usage=usage(prompt, completion))

    def completion(self, text: str, reason: str, prompt: int, completion: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": reason,
                }
            ],
            "usage": usage(prompt, completion),
        }


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def max_tokens_of(payload: Mapping[str, Any]) -> int | None:
    """``max_completion_tokens`` (newer clients) or ``max_tokens``; None when absent or not positive."""
    value = payload.get("max_completion_tokens") or payload.get("max_tokens")
    return int(value) if isinstance(value, (int, float)) and value > 0 else None


def include_usage(payload: Mapping[str, Any]) -> bool:
    options = payload.get("stream_options")
    return bool(payload.get("stream")) and isinstance(options, dict) and bool(options.get("include_usage"))


def models_list(name: str) -> dict[str, Any]:
    """``GET /v1/models``'s body for a server of one model."""
    entry = {"id": name, "object": "model", "created": 0, "owned_by": "acytoo-magic"}
    return {"object": "list", "data": [entry]}
