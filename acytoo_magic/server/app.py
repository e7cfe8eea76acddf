"""The local server: an aiohttp app over one backend, run in a thread (tests) or as a CLI.

``python -m acytoo_magic.server`` serves a local GGUF model (``--backend model``, the default:
SmolLM2, ``--model gemma3`` or a .gguf path) over both protocols; ``--backend scripted`` serves the
scripted test double instead (deterministic replies, fault directives, a request log).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from ..core.loops import LoopThread
from .scripted import DIRECTIVES_HELP, ScriptConfig, ScriptedBackend


class Backend(Protocol):
    """What answers: its routes (both protocols and ``GET /v1/models`` at least)."""

    def routes(self) -> list[web.RouteDef]: ...


@dataclass
class ServerConfig(ScriptConfig):
    """The scripted double's settings, or ``model``: a ``local_model.LocalModel`` to serve instead."""

    model: Any = None
    log: bool = False  # with a model: one line per generation on stderr

    @property
    def keeps_request_log(self) -> bool:
        """Only the scripted test backend records requests (for tests); a real model server does not."""
        return self.model is None


def backend_for(config: ServerConfig) -> Backend:
    if config.model is None:
        return ScriptedBackend(config)
    from .model import ModelBackend  # loads nothing: the model was loaded by the caller

    return ModelBackend(config.model, log=config.log)


def create_app(config: ServerConfig | None = None) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.add_routes(backend_for(config or ServerConfig()).routes())
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
        description="Acytoo/OpenAI-protocol server for a local GGUF model, or the scripted test double.",
        epilog=DIRECTIVES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (0 picks a free one; default 8765)")
    parser.add_argument(
        "--backend",
        choices=("model", "llama", "scripted"),
        default="model",
        help="model (default; 'llama' is the same): a local GGUF model; "
        "scripted: the test double with deterministic replies and fault directives",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="model: smollm2 (default, SmolLM2-135M-Instruct), gemma3 (Gemma 3 270M) or a .gguf path",
    )
    parser.add_argument(
        "--max-tokens", type=int, default=200, help="model: longest answer in tokens (default 200)"
    )
    parser.add_argument(
        "--ctx", type=int, default=4096, help="model: context window in tokens (default 4096)"
    )
    parser.add_argument("--chunk-size", type=int, default=16, help="scripted: bytes per chunk (default 16)")
    parser.add_argument(
        "--delay", type=float, default=0.02, help="scripted: seconds between chunks (default 0.02)"
    )
    parser.add_argument(
        "--fault", default="", help="scripted: fault applied to every request (see directives)"
    )
    args = parser.parse_args(argv)
    config = ServerConfig(chunk_size=args.chunk_size, delay=args.delay, fault=args.fault, log=True)
    if args.backend != "scripted":
        config.model = load_model(parser, args.model, args.ctx, args.max_tokens)

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


def load_model(parser: argparse.ArgumentParser, name: str | None, n_ctx: int, max_tokens: int) -> Any:
    """The same loader the in-process ``local`` provider uses; a first fetch draws a bar on stderr."""
    from ..providers import local_model, model_files

    def on_progress(done: int, total: int) -> None:
        end = "\n" if done >= total else ""
        print(
            f"\rfetching the model {model_files.progress_bar(done, total)}",
            end=end,
            file=sys.stderr,
            flush=True,
        )

    try:
        model = local_model.shared_model(name, n_ctx=n_ctx, on_progress=on_progress)
    except (OSError, ImportError, ValueError, RuntimeError) as exc:
        parser.exit(2, f"acytoo_magic.server: cannot load the model: {exc}\n")
    model.max_tokens = max_tokens
    template = "its chat template" if model.has_template else "a plain transcript (no template)"
    print(f"model: {model.name} ({model.path}), prompts built with {template}", flush=True)
    return model
