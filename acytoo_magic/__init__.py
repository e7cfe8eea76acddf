"""acytoo-magic: ask an LLM from a Jupyter cell; the answer streams in place as Markdown.

``Assistant`` is the core (settings, history, providers, context) and works from plain Python.
``%load_ext acytoo_magic`` registers ``%%acytoo`` and ``%acytoo``; ``ChatWidget`` is a chat. Both are
thin front ends over the notebook's one ``Assistant``.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from .core.assistant import Assistant, forget_shared_assistant, shared_assistant
from .core.errors import (
    AcytooError,
    AcytooInterrupted,
    AnswerError,
    ContextError,
    HistoryError,
    ModelNotFound,
    ProviderError,
    ProviderNotFound,
)
from .core.history.store import HistoryStore, Message
from .core.history.thread import Conversation
from .core.loops import Runner
from .core.request import Reply, Request
from .core.stream import answer
from .providers import AsyncGeneratorProvider, resolve

__version__ = "0.1.0"
__all__ = [
    "AcytooError",
    "AcytooInterrupted",
    "AnswerError",
    "Assistant",
    "AsyncGeneratorProvider",
    "ChatWidget",
    "ContextError",
    "Conversation",
    "HistoryError",
    "HistoryStore",
    "Message",
    "ModelNotFound",
    "ProviderError",
    "ProviderNotFound",
    "Reply",
    "Request",
    "Runner",
    "answer",
    "load_ipython_extension",
    "resolve",
    "shared_assistant",
    "unload_ipython_extension",
]

_magics: Any = None


def __getattr__(name: str) -> Any:
    if name == "ChatWidget":  # imported on first use: ipywidgets is not needed by the magic itself
        from .widget.chat import ChatWidget

        return ChatWidget
    raise AttributeError(name)


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics (``%load_ext acytoo_magic``); loading twice keeps one instance."""
    global _magics
    from .magic.magics import AcytooMagics

    if _magics is not None and _magics.shell is ipython:
        return
    _magics = AcytooMagics(shell=ipython, chat=_chat_widget)
    ipython.register_magics(_magics)
    # The boundary's detectors load in half a second: now, beside the user's first cells, not in them.
    threading.Thread(target=_warm_boundary, name="acytoo-warm", daemon=True).start()
    # Decides per cell: only a top-level cell under ipykernel's asyncio runner is made awaited.
    ipython.input_transformers_post.append(_magics.transform_lines)


def _chat_widget(thread: str, assistant: Assistant) -> Any:
    """``%acytoo chat``'s widget; the loader joins the two front ends, neither imports the other."""
    from .widget.chat import ChatWidget

    return ChatWidget(thread, assistant=assistant)


def _warm_boundary() -> None:
    from .core.outbound import warm

    with contextlib.suppress(Exception):  # it loads again on first use, and says why if it fails
        warm()


def unload_ipython_extension(ipython: Any) -> None:
    """Close the shared HTTP session and the history database."""
    global _magics
    if _magics is not None:
        with contextlib.suppress(ValueError):
            ipython.input_transformers_post.remove(_magics.transform_lines)
        for kind in ("line", "cell"):  # %%acytoo is gone until it is loaded again
            ipython.magics_manager.magics[kind].pop("acytoo", None)
        ipython.magics_manager.registry.pop(type(_magics).__name__, None)
        _magics = None
    forget_shared_assistant(ipython)
