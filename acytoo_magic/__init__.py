"""acytoo-magic: ask an LLM from a Jupyter cell; the answer streams in place as Markdown.

``%load_ext acytoo_magic`` registers ``%%acytoo`` and ``%acytoo``. The core (providers, conversation,
runner, render) does not import IPython; the magics are a thin front end over it.
"""

from __future__ import annotations

import contextlib
from typing import Any

from .conversation import Conversation, HistoryStore, Message
from .providers import AsyncGeneratorProvider, ProviderError, resolve
from .runner import Reply, Request, Runner, answer

__version__ = "0.1.0"
__all__ = [
    "AsyncGeneratorProvider",
    "ChatWidget",
    "Conversation",
    "HistoryStore",
    "Message",
    "ProviderError",
    "Reply",
    "Request",
    "Runner",
    "answer",
    "load_ipython_extension",
    "resolve",
    "unload_ipython_extension",
]

_magics: Any = None


def __getattr__(name: str) -> Any:
    if name == "ChatWidget":  # imported on first use: ipywidgets is not needed by the magic itself
        from .widget import ChatWidget

        return ChatWidget
    raise AttributeError(name)


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics (``%load_ext acytoo_magic``); loading twice keeps one instance."""
    global _magics
    from .magics import AcytooMagics

    if _magics is not None and _magics.shell is ipython:
        return
    _magics = AcytooMagics(shell=ipython)
    ipython.register_magics(_magics)
    ipython.events.register("post_run_cell", _magics.errors.post_run_cell)
    # Decides per cell: only a top-level cell under ipykernel's asyncio runner is made awaited.
    ipython.input_transformers_post.append(_magics.transform_lines)


def unload_ipython_extension(ipython: Any) -> None:
    """Close the shared HTTP session and the history database."""
    global _magics
    if _magics is not None:
        with contextlib.suppress(ValueError):
            ipython.events.unregister("post_run_cell", _magics.errors.post_run_cell)
        with contextlib.suppress(ValueError):
            ipython.input_transformers_post.remove(_magics.transform_lines)
        _magics.close()
        _magics = None
