"""The local protocol server, in four parts behind one backend protocol (``app.Backend``).

- ``wire``: the OpenAI and Acytoo wire formats (bodies, SSE events, errors), shared by backends;
- ``model``: a local GGUF model's answers (``local_model``), the CLI's default backend;
- ``scripted``: the test double (deterministic replies, fault directives, a request log) that
  tests and benchmarks serve with ``LocalServer(ServerConfig(...))``;
- ``app``: the aiohttp app, ``LocalServer`` (a thread, for tests) and the CLI
  (``python -m acytoo_magic.server``).
"""

from __future__ import annotations

from .app import Backend, LocalServer, ServerConfig, create_app, main
from .scripted import (
    ReplyPlan,
    count_tokens,
    filler,
    fingerprint,
    parse_directives,
    plan_reply,
    prompt_tokens,
    scripted_reply,
)

__all__ = [
    "Backend",
    "LocalServer",
    "ReplyPlan",
    "ServerConfig",
    "count_tokens",
    "create_app",
    "filler",
    "fingerprint",
    "main",
    "parse_directives",
    "plan_reply",
    "prompt_tokens",
    "scripted_reply",
]
