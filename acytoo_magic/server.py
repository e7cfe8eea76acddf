"""A local server speaking both protocols: a scripted backend with fault modes, or a real local model.

Tests, benchmarks and the offline demo use it as a real HTTP server on 127.0.0.1. The scripted
backend answers from the conversation it receives (it quotes the last user message and counts
the messages), so what the client sent is visible in the answer. Directives written as
``[[key=value ...]]`` in the last user message change one reply; see ``--help``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import ipaddress
import json
import re
import secrets
import socket
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

from .loops import LoopThread

DIRECTIVES_HELP = """\
directives, written in the last user message as [[key=value key=value ...]]:
  echo               reply with the rest of the message verbatim (after the directive)
  size=N             reply with exactly N bytes of filler text
  chunk=N            bytes per chunk (default: --chunk-size)
  delay=S            seconds between chunks (default: --delay)
  stall=S            wait S seconds before the response starts (stall before the first byte)
  stall_mid=S        wait S seconds after the first half of the reply (stall mid-stream)
  fault=MODE         400|401|403|404|429|500|503  answer with that HTTP status
                     drop       send half the reply, then drop the connection
                     bad_utf8   put invalid UTF-8 bytes in the middle of the reply
                     bad_sse    (OpenAI endpoint) send a malformed SSE line mid-stream
                     huge       reply with 64 MiB of filler
  times=N            with fault=STATUS: fail N times for this message, then answer (default: always)
  retry_after=S      with fault=429/503: send Retry-After: S

token counts (usage, max_tokens) of the scripted backend are whitespace-separated words: the
prompt's are the words of every message's content, the answer's those of the reply; max_tokens=N
cuts the reply after N words. The llama backend reports the model's own token counts.

endpoints:
  POST /api/completions          Acytoo protocol, raw UTF-8 text stream (errors: plain status + text)
  POST /v1/chat/completions      OpenAI-compatible: Server-Sent Events when "stream": true, else one
                                 chat.completion object with "usage"; "stream_options":
                                 {"include_usage": true} adds a last chunk with the usage;
                                 finish_reason "stop", or "length" when max_tokens was reached.
                                 Errors (fault statuses, bad JSON, no messages) in OpenAI's shape:
                                 {"error": {"message", "type", "param", "code"}}
  GET  /v1/models                the model served ("scripted", or the loaded model's name)
  GET  /_requests                JSON list of the requests received (DELETE clears it); scripted
                                 backend only. Credential headers (Authorization, Proxy-Authorization,
                                 Cookie, API-key headers) are kept only as "sha256:<12 hex digits>".
"""

_DIRECTIVE = re.compile(r"\[\[([^\[\]]*)\]\]")
_FILLER = b"All work and no play makes a notebook a dull book. "
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "api-key", "x-api-key"})


@dataclass(frozen=True)
class ReplyPlan:
    """How one reply is sent: text, chunking, pacing, and the fault to inject."""

    body: bytes = b""
    chunk: int = 16
    delay: float = 0.0
    stall: float = 0.0
    stall_mid: float = 0.0
    fault: str = ""
    times: int = -1
    retry_after: str = ""


@dataclass
class ServerConfig:
    chunk_size: int = 16
    delay: float = 0.0
    fault: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    model: Any = None  # a local_model.LocalModel: real answers instead of the scripted ones
    log: bool = False  # print one line per generation (tokens, time to first token, tokens/s)
    script: list[dict[str, Any]] = field(default_factory=list)  # scripted turns: see ScriptedTurns

    @property
    def keeps_request_log(self) -> bool:
        """Only the scripted test backend records requests (for tests); a real model server does not."""
        return self.model is None


def fingerprint(value: str) -> str:
    """What the request log keeps of a credential: enough to tell keys apart, not to recover one."""
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()[:12]


def recorded_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The request's headers as logged: credential headers replaced by their ``fingerprint``."""
    return {
        name: fingerprint(value) if name.lower() in CREDENTIAL_HEADERS else value
        for name, value in headers.items()
    }


def parse_directives(text: str) -> tuple[dict[str, str], str]:
    """Split ``[[k=v ...]]`` directives from the text; returns (directives, text without them)."""
    found: dict[str, str] = {}
    for group in _DIRECTIVE.findall(text):
        for item in group.split():
            key, _, value = item.partition("=")
            found[key.strip().lower()] = value.strip()
    return found, _DIRECTIVE.sub("", text).strip()


def filler(size: int) -> bytes:
    reps = size // len(_FILLER) + 1
    return (_FILLER * reps)[:size]


def scripted_reply(messages: Sequence[Mapping[str, Any]]) -> str:
    """A deterministic answer that shows what the client sent: last message quoted, messages counted."""
    users = [str(m.get("content", "")) for m in messages if m.get("role") == "user"]
    systems = [str(m.get("content", "")) for m in messages if m.get("role") == "system"]
    last = parse_directives(users[-1])[1] if users else ""
    lines = [f'You said: "{last}"', ""]
    lines.append(f"This conversation has {len(messages)} messages ({len(users)} from you).")
    if len(users) > 1:
        lines.append(f'Before that you said: "{parse_directives(users[-2])[1]}"')
    if systems:
        lines.append(f'System prompt: "{systems[0][:80]}"')
    if re.search(r"\b(code|plot|function|snippet)\b", last, re.IGNORECASE):
        lines += ["", "```python", "# scripted example from the local server", f"print({last[:40]!r})", "```"]
    return "\n".join(lines) + "\n"


def plan_reply(messages: Sequence[Mapping[str, Any]], config: ServerConfig) -> ReplyPlan:
    users = [str(m.get("content", "")) for m in messages if m.get("role") == "user"]
    directives, rest = parse_directives(users[-1] if users else "")
    plan = ReplyPlan(chunk=config.chunk_size, delay=config.delay, fault=config.fault)
    if "size" in directives:
        body = filler(int(directives["size"]))
    elif "echo" in directives:
        body = rest.encode()
    else:
        body = scripted_reply(messages).encode()
    fault = directives.get("fault", plan.fault)
    if fault == "huge":
        body = filler(64 * 1024 * 1024)
    return replace(
        plan,
        body=body,
        chunk=max(1, int(directives.get("chunk", plan.chunk))),
        delay=float(directives.get("delay", plan.delay)),
        stall=float(directives.get("stall", 0)),
        stall_mid=float(directives.get("stall_mid", 0)),
        fault=fault,
        times=int(directives.get("times", -1)),
        retry_after=directives.get("retry_after", ""),
    )


def split(body: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


_WORD = re.compile(r"\S+")
OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_error",
}


def count_tokens(text: str) -> int:
    """The scripted backend's token count: whitespace-separated words (documented in --help)."""
    return sum(1 for _ in _WORD.finditer(text))


def first_tokens(text: str, limit: int) -> tuple[str, bool]:
    """``text`` cut after ``limit`` words (as counted by ``count_tokens``); True when it was cut."""
    for index, match in enumerate(_WORD.finditer(text)):
        if index == limit:
            return text[: match.start()], True
    return text, False


def prompt_tokens(messages: Sequence[Any]) -> int:
    return sum(count_tokens(str(m.get("content", ""))) for m in messages if isinstance(m, Mapping))


def openai_error(
    status: int, message: str, *, param: str | None = None, code: str | None = None, headers: Any = None
) -> web.Response:
    """An error as OpenAI's API sends it: ``{"error": {"message", "type", "param", "code"}}``."""
    kind = OPENAI_ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return web.Response(
        status=status, text=json.dumps(body), content_type="application/json", headers=headers or {}
    )


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


class ScriptedTurns:
    """Scripted model turns with tool calls, for agent-mode tests: ``ServerConfig.script`` is a queue.

    Each streamed request to ``/v1/chat/completions`` takes the next turn (the scripted replies
    resume when the queue is empty). A turn is a dict:

    - ``{"text": "..."}``: an answer (with ``calls`` too: text, then the calls);
    - ``{"calls": [{"name": "describe_variable", "arguments": {"name": "df"}}, ...]}``: tool calls;
    - ``{"obey": true}``: a gullible model: it proposes ``run_python`` with the code the newest
      ``tool`` message tells it to run (the first ``run `...` `` in it), as a prompt injection
      would have a real model do.
    """

    _ORDER = re.compile(r"\brun\s+`([^`]+)`", re.IGNORECASE)

    @classmethod
    def resolve(cls, turn: Mapping[str, Any], messages: Sequence[Any]) -> tuple[str, list[dict[str, Any]]]:
        """(text, calls) of ``turn``: each call ``{"name", "arguments": JSON text}``."""
        calls = [
            {"name": str(c["name"]), "arguments": json.dumps(c.get("arguments", {}))}
            for c in turn.get("calls", [])
        ]
        if turn.get("obey"):
            tools = [str(m.get("content", "")) for m in messages if m.get("role") == "tool"]
            found = cls._ORDER.search(tools[-1]) if tools else None
            if found:
                calls.append({"name": "run_python", "arguments": json.dumps({"code": found.group(1)})})
        return str(turn.get("text", "")), calls

    @staticmethod
    def events(reply: OpenAIReply, text: str, calls: list[dict[str, Any]], step: int) -> list[bytes]:
        """SSE events as OpenAI streams them: text deltas, then per call a first delta with its id and
        name and the arguments in pieces (by ``index``), then ``finish_reason`` "tool_calls"."""
        pieces = [reply.chunk(text[i : i + step]) for i in range(0, len(text), step)]
        for index, call in enumerate(calls):
            head = {"index": index, "id": f"call_{secrets.token_hex(6)}", "type": "function",
                    "function": {"name": call["name"], "arguments": ""}}
            pieces.append(reply.tool_delta(head))
            arguments = call["arguments"]
            for i in range(0, len(arguments), step):
                piece = {"index": index, "function": {"arguments": arguments[i : i + step]}}
                pieces.append(reply.tool_delta(piece))
        pieces.append(reply.finish("tool_calls" if calls else "stop"))
        return pieces


class Backend:
    """The request handlers: scripted replies and faults, or the local model when one is loaded."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config

    def _log(self, request: web.Request, payload: Any) -> None:
        if self.config.keeps_request_log:
            self.config.requests.append(
                {
                    "path": request.path,
                    "method": request.method,
                    "headers": recorded_headers(request.headers),
                    "json": payload,
                    "peer": list(request.transport.get_extra_info("peername") or ())
                    if request.transport
                    else [],
                }
            )

    async def _read(self, request: web.Request, openai: bool = False) -> dict[str, Any]:
        """The request's JSON with a ``messages`` list; else a 400 (OpenAI's error shape on /v1)."""
        try:
            payload = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            if openai:
                raise web.HTTPBadRequest(
                    text=openai_error(400, "the request body is not valid JSON").text,
                    content_type="application/json",
                ) from None
            raise web.HTTPBadRequest(
                text='{"error": "body is not JSON"}', content_type="application/json"
            ) from None
        self._log(request, payload)
        if not isinstance(payload, dict) or not isinstance(payload.get("messages"), list):
            if openai:
                error = openai_error(400, "'messages' is required: a list of messages", param="messages")
                raise web.HTTPBadRequest(text=error.text, content_type="application/json")
            raise web.HTTPBadRequest(text='{"error": "messages missing"}', content_type="application/json")
        return payload

    def _status_fault(
        self, plan: ReplyPlan, messages: list[Any], request: web.Request, openai: bool = False
    ) -> web.Response | None:
        if not plan.fault.isdigit():
            return None
        counter = json.dumps(messages[-1:], sort_keys=True)  # failures are counted per message
        failed = self.config.failures.get(counter, 0)
        if 0 <= plan.times <= failed:
            return None
        self.config.failures[counter] = failed + 1
        headers = {"Retry-After": plan.retry_after} if plan.retry_after else {}
        message = f"scripted fault {plan.fault}"
        if plan.fault == "401":  # as some servers do: the rejected key is echoed back
            key = request.headers.get("Authorization", "").removeprefix("Bearer ")
            message += f"; incorrect API key provided: {key}"
        if openai:
            return openai_error(int(plan.fault), message, headers=headers)
        body = json.dumps({"error": {"message": message, "code": int(plan.fault)}})
        return web.Response(
            status=int(plan.fault), text=body, content_type="application/json", headers=headers
        )

    async def _stream(
        self, request: web.Request, plan: ReplyPlan, pieces: Iterable[bytes], content_type: str
    ) -> web.StreamResponse:
        try:
            return await self._send(request, plan, list(pieces), content_type)
        except ConnectionResetError:  # the client went away (timeout, cancel): nothing to report
            raise asyncio.CancelledError from None

    async def _send(
        self, request: web.Request, plan: ReplyPlan, pieces: list[bytes], content_type: str
    ) -> web.StreamResponse:
        if plan.stall:
            await asyncio.sleep(plan.stall)
        response = web.StreamResponse(headers={"content-type": content_type, "cache-control": "no-cache"})
        await response.prepare(request)
        half = len(pieces) // 2
        for index, piece in enumerate(pieces):
            if index == half and plan.fault == "drop":
                assert request.transport is not None
                request.transport.abort()
                return response
            if index == half and plan.stall_mid:
                await asyncio.sleep(plan.stall_mid)
            await response.write(piece)
            if plan.delay:
                await asyncio.sleep(plan.delay)
        await response.write_eof()
        return response

    async def _generate(
        self, request: web.Request, payload: dict[str, Any], openai: bool
    ) -> web.StreamResponse:
        """The local model's answer: streamed token by token (Acytoo text or OpenAI SSE), or whole.

        Usage and ``finish_reason`` are the model's own (llama.cpp's token counts).
        """
        from .local_model import Generation

        model = self.config.model
        name = str(payload.get("model") or model.name)
        sse = openai and bool(payload.get("stream"))
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
                content_type = "text/event-stream" if sse else "text/plain; charset=utf-8"
                response = web.StreamResponse(
                    headers={"content-type": content_type, "cache-control": "no-cache"}
                )
                await response.prepare(request)
            await response.write(data)

        stream = model.stream(
            payload["messages"],
            0.7 if temperature is None else float(temperature),
            max_tokens_of(payload),
        )
        try:
            async with contextlib.aclosing(stream):
                async for item in stream:
                    if isinstance(item, Generation):
                        record = item
                    elif not (openai and not sse):
                        await write(reply.chunk(item) if sse else item.encode())
                    else:
                        text.append(item)
                    if gone():  # the client went away: the model stops before its next token
                        break
        except ConnectionResetError:
            raise asyncio.CancelledError from None
        except ValueError as exc:  # llama.cpp: the prompt does not fit the context window
            message = " ".join(str(exc).split())
            if response is None:
                if openai:
                    return openai_error(400, message, param="messages", code="context_length_exceeded")
                return web.Response(status=400, text=message)
            await write(b'data: {"error": {"message": %s}}\n\n' % json.dumps(message).encode())
        finally:
            if model.generations and self.config.log:
                print(f"generation: {model.generations[-1].summary()}", file=sys.stderr, flush=True)
        if record is None:  # stopped early: the client is gone
            return response or web.Response(status=499)
        reason = record.finish_reason or "stop"
        if openai and not sse:
            return web.json_response(
                reply.completion("".join(text), reason, record.prompt_tokens, record.completion_tokens)
            )
        if sse:
            await write(reply.finish(reason))
            if reply.include_usage:
                await write(reply.usage_chunk(record.prompt_tokens, record.completion_tokens))
            await write(b"data: [DONE]\n\n")
        elif response is None:
            await write(b"")
        assert response is not None
        await response.write_eof()
        return response

    async def acytoo(self, request: web.Request) -> web.StreamResponse:
        payload = await self._read(request)
        if self.config.model is not None:
            return await self._generate(request, payload, openai=False)
        plan = plan_reply(payload["messages"], self.config)
        if (response := self._status_fault(plan, payload["messages"], request)) is not None:
            return response
        pieces = list(split(plan.body, plan.chunk))
        if plan.fault == "bad_utf8":
            pieces.insert(len(pieces) // 2, b"\xff\xfe")
        return await self._stream(request, plan, pieces, "text/plain; charset=utf-8")

    async def openai(self, request: web.Request) -> web.StreamResponse:
        payload = await self._read(request, openai=True)
        if self.config.model is not None:
            return await self._generate(request, payload, openai=True)
        messages = payload["messages"]
        if self.config.script and payload.get("stream"):
            return await self.scripted_turn(request, payload)
        plan = plan_reply(messages, self.config)
        if (response := self._status_fault(plan, messages, request, openai=True)) is not None:
            return response
        reply = OpenAIReply(str(payload.get("model", "")), include_usage(payload))
        text = plan.body.decode("utf-8", "replace")
        reason = "stop"
        if (limit := max_tokens_of(payload)) is not None:
            text, cut = first_tokens(text, limit)
            reason = "length" if cut else "stop"
        if not payload.get("stream"):
            body = reply.completion(text, reason, prompt_tokens(messages), count_tokens(text))
            return web.json_response(body)
        step = max(1, plan.chunk)
        pieces = [reply.chunk(text[i : i + step]) for i in range(0, len(text), step)]
        if plan.fault == "bad_sse":
            pieces.insert(len(pieces) // 2, b"data: {not json\n\n")
        if plan.fault == "bad_utf8":
            pieces.insert(len(pieces) // 2, b"data: \xff\xfe\n\n")
        pieces.append(reply.finish(reason))
        if reply.include_usage:
            pieces.append(reply.usage_chunk(prompt_tokens(messages), count_tokens(text)))
        pieces.append(b"data: [DONE]\n\n")
        return await self._stream(request, plan, pieces, "text/event-stream")

    async def scripted_turn(self, request: web.Request, payload: dict[str, Any]) -> web.StreamResponse:
        """The next ``config.script`` turn (tool calls and/or text) as OpenAI's streamed SSE."""
        turn = self.config.script.pop(0)
        reply = OpenAIReply(str(payload.get("model", "")), include_usage(payload))
        text, calls = ScriptedTurns.resolve(turn, payload["messages"])
        pieces = ScriptedTurns.events(reply, text, calls, max(1, self.config.chunk_size))
        if reply.include_usage:
            pieces.append(reply.usage_chunk(prompt_tokens(payload["messages"]), count_tokens(text)))
        pieces.append(b"data: [DONE]\n\n")
        return await self._stream(request, ReplyPlan(delay=self.config.delay), pieces, "text/event-stream")

    async def set_script(self, request: web.Request) -> web.Response:
        """``POST /_script``: a JSON list of turns replaces the script (for a server run from the CLI)."""
        turns = await request.json()
        if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
            return openai_error(400, "the script is a JSON list of objects")
        self.config.script[:] = turns
        return web.json_response({"turns": len(turns)})

    async def models(self, request: web.Request) -> web.Response:
        """``GET /v1/models``: the scripted backend's one name, or the loaded model's."""
        self._log(request, None)
        name = self.config.model.name if self.config.model is not None else "scripted"
        entry = {"id": name, "object": "model", "created": 0, "owned_by": "acytoo-magic"}
        return web.json_response({"object": "list", "data": [entry]})

    async def list_requests(self, request: web.Request) -> web.Response:
        return web.json_response(self.config.requests)

    async def clear_requests(self, request: web.Request) -> web.Response:
        self.config.requests.clear()
        self.config.failures.clear()
        return web.json_response([])


def create_app(config: ServerConfig | None = None) -> web.Application:
    backend = Backend(config or ServerConfig())
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.add_routes(
        [
            web.post("/api/completions", backend.acytoo),
            web.post("/v1/chat/completions", backend.openai),
            web.get("/v1/models", backend.models),
        ]
    )
    if backend.config.keeps_request_log:  # with a real model, /_requests is a 404
        app.add_routes(
            [
                web.get("/_requests", backend.list_requests),
                web.delete("/_requests", backend.clear_requests),
                web.post("/_script", backend.set_script),
            ]
        )
    return app


def exposed_addresses(sockets: Sequence[socket.socket]) -> list[str]:
    """The bound addresses that are not loopback (0.0.0.0 and :: listen on every interface)."""
    exposed = []
    for sock in sockets:
        address = str(sock.getsockname()[0])
        try:
            loopback = ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
        except ValueError:  # not an IP address (a Unix socket path): not reachable from the network
            loopback = True
        if not loopback:
            exposed.append(address)
    return exposed


async def start_site(runner: web.AppRunner, host: str, port: int) -> int:
    """Listen on ``host:port``; say so (one line on stderr) when that is reachable beyond this machine."""
    site = web.TCPSite(runner, host, port)
    await site.start()
    sockets = list(site._server.sockets) if site._server is not None else []  # type: ignore[union-attr]
    if exposed := exposed_addresses(sockets):
        print(
            f"acytoo_magic.server: warning: listening on {', '.join(exposed)}, not only loopback: "
            "anyone who can reach it can use it; use --host 127.0.0.1 unless you mean that",
            file=sys.stderr,
            flush=True,
        )
    return int(sockets[0].getsockname()[1])


class LocalServer:
    """Run the server in a background thread on 127.0.0.1 and a free port (``with LocalServer() as s``)."""

    def __init__(self, config: ServerConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config or ServerConfig()
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self._worker: LoopThread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.config.requests

    async def _start(self) -> None:
        self._runner = web.AppRunner(create_app(self.config), access_log=None)
        await self._runner.setup()
        self.port = await start_site(self._runner, self.host, self.port)

    def start(self) -> LocalServer:
        self._worker = LoopThread("acytoo-server")
        self._worker.run(self._start(), timeout=10)
        return self

    def stop(self) -> None:
        if self._worker is None:
            return
        if self._runner is not None:
            self._worker.run(self._runner.cleanup(), timeout=10)
        self._worker.stop()
        self._worker = None

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m acytoo_magic.server",
        description="Local Acytoo/OpenAI-protocol server with a scripted backend and fault modes.",
        epilog=DIRECTIVES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (0 picks a free one; default 8765)")
    parser.add_argument("--chunk-size", type=int, default=16, help="bytes per streamed chunk (default 16)")
    parser.add_argument("--delay", type=float, default=0.02, help="seconds between chunks (default 0.02)")
    parser.add_argument("--fault", default="", help="fault applied to every request (see directives)")
    parser.add_argument(
        "--backend",
        choices=("scripted", "llama"),
        default="scripted",
        help="scripted (default): deterministic replies and fault directives; llama: a real GGUF model",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="llama: smollm2 (default, SmolLM2-135M-Instruct), gemma3 (Gemma 3 270M) or a .gguf path",
    )
    parser.add_argument(
        "--max-tokens", type=int, default=200, help="llama: longest answer in tokens (default 200)"
    )
    parser.add_argument(
        "--ctx", type=int, default=4096, help="llama: context window in tokens (default 4096)"
    )
    args = parser.parse_args(argv)
    config = ServerConfig(chunk_size=args.chunk_size, delay=args.delay, fault=args.fault, log=True)
    if args.backend == "llama":
        from .local_model import shared_model

        try:  # the same loader the in-process 'local' provider uses
            config.model = shared_model(args.model, n_ctx=args.ctx)
            config.model.max_tokens = args.max_tokens
        except (FileNotFoundError, ImportError, ValueError) as exc:
            parser.exit(2, f"acytoo_magic.server: cannot load the model: {exc}\n")
        template = "its chat template" if config.model.has_template else "a plain transcript (no template)"
        print(f"model: {config.model.name} ({config.model.path}), prompts built with {template}", flush=True)

    async def serve() -> None:
        runner = web.AppRunner(create_app(config), access_log=None)
        await runner.setup()
        port = await start_site(runner, args.host, args.port)
        print(f"acytoo_magic.server listening on http://{args.host}:{port}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
