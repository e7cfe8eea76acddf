"""The scripted test double: deterministic replies that show what the client sent, and fault modes.

Tests and benchmarks serve it with ``LocalServer(ServerConfig(...))``; ``python -m
acytoo_magic.server --backend scripted`` serves it by hand. It is not a model: it answers from the
conversation it receives (it quotes the last user message and counts the messages), so what a
client sent is visible in the answer, and directives written as ``[[key=value ...]]`` in the last
user message change one reply (see ``DIRECTIVES_HELP``). It keeps a request log at ``/_requests``
with credential headers only as fingerprints.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

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
cuts the reply after N words. The model backend (--backend model) reports the model's own token counts.

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
  POST /_script                  a JSON list of scripted turns (tool calls and/or text) that the next
                                 streamed /v1/chat/completions requests take in order; scripted
                                 backend only (agent-mode tests, see ScriptedTurns)
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
class ScriptConfig:
    """The scripted backend's pacing and faults, and what it saw (the request log, failure counts)."""

    chunk_size: int = 16
    delay: float = 0.0
    fault: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    script: list[dict[str, Any]] = field(default_factory=list)  # scripted turns: see ScriptedTurns


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


def plan_reply(messages: Sequence[Mapping[str, Any]], config: ScriptConfig) -> ReplyPlan:
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


class ScriptedTurns:
    """Scripted model turns with tool calls, for agent-mode tests: ``ScriptConfig.script`` is a queue.

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


class ScriptedBackend:
    """The request handlers of the test double: scripted replies, injected faults, a request log."""

    def __init__(self, config: ScriptConfig) -> None:
        self.config = config

    def routes(self) -> list[web.RouteDef]:
        """The two protocols, the model list, the request log (``GET``/``DELETE /_requests``) and the
        scripted turns (``POST /_script``)."""
        return [
            web.post("/api/completions", self.acytoo),
            web.post("/v1/chat/completions", self.openai),
            web.get("/v1/models", self.models),
            web.get("/_requests", self.list_requests),
            web.delete("/_requests", self.clear_requests),
            web.post("/_script", self.set_script),
        ]

    def _log(self, request: web.Request, payload: Any) -> None:
        self.config.requests.append(
            {
                "path": request.path,
                "method": request.method,
                "headers": recorded_headers(request.headers),
                "json": payload,
                "peer": list(request.transport.get_extra_info("peername") or ()) if request.transport else [],
            }
        )

    async def _read(self, request: web.Request, openai: bool = False) -> dict[str, Any]:
        """The request's JSON, logged (even when it is not a valid request), with its ``messages``."""
        payload = await read_json(request, openai)
        self._log(request, payload)
        return require_messages(payload, openai)

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

    async def acytoo(self, request: web.Request) -> web.StreamResponse:
        payload = await self._read(request)
        plan = plan_reply(payload["messages"], self.config)
        if (response := self._status_fault(plan, payload["messages"], request)) is not None:
            return response
        pieces = list(split(plan.body, plan.chunk))
        if plan.fault == "bad_utf8":
            pieces.insert(len(pieces) // 2, b"\xff\xfe")
        return await self._stream(request, plan, pieces, TEXT)

    async def openai(self, request: web.Request) -> web.StreamResponse:
        payload = await self._read(request, openai=True)
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
        pieces.append(DONE)
        return await self._stream(request, plan, pieces, SSE)

    async def scripted_turn(self, request: web.Request, payload: dict[str, Any]) -> web.StreamResponse:
        """The next ``config.script`` turn (tool calls and/or text) as OpenAI's streamed SSE."""
        turn = self.config.script.pop(0)
        reply = OpenAIReply(str(payload.get("model", "")), include_usage(payload))
        text, calls = ScriptedTurns.resolve(turn, payload["messages"])
        pieces = ScriptedTurns.events(reply, text, calls, max(1, self.config.chunk_size))
        if reply.include_usage:
            pieces.append(reply.usage_chunk(prompt_tokens(payload["messages"]), count_tokens(text)))
        pieces.append(DONE)
        return await self._stream(request, ReplyPlan(delay=self.config.delay), pieces, SSE)

    async def set_script(self, request: web.Request) -> web.Response:
        """``POST /_script``: a JSON list of turns replaces the script (for a server run from the CLI)."""
        turns = await read_json(request, openai=True)
        if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
            return openai_error(400, "the script is a JSON list of objects")
        self.config.script[:] = turns
        return web.json_response({"turns": len(turns)})

    async def models(self, request: web.Request) -> web.Response:
        """``GET /v1/models``: one name, "scripted"."""
        self._log(request, None)
        return web.json_response(models_list("scripted"))

    async def list_requests(self, request: web.Request) -> web.Response:
        return web.json_response(self.config.requests)

    async def clear_requests(self, request: web.Request) -> web.Response:
        self.config.requests.clear()
        self.config.failures.clear()
        return web.json_response([])
