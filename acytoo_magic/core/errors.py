"""One error family: everything the extension raises on purpose derives from ``AcytooError``.

    AcytooError
    ├── AcytooInterrupted          an interrupt or Stop ended the answer (partial text kept)
    ├── AnswerError                drawing it or an on_chunk callback ended it
    ├── HistoryError (RuntimeError)
    │   ├── HistoryLocked          another process holds the history file's lock
    │   └── StoreClosed
    ├── ContextError (ValueError)  a {name} or In/Out reference that cannot be expanded
    ├── ProviderNotFound, ModelNotFound, ModelError, ToolsUnsupported (ValueError)
    ├── UnsupportedCPU (RuntimeError), FetchError (OSError)
    ├── BudgetExceeded             a request would pass a daily spending budget
    └── ProviderError              what a provider failed at, naming it and the URL
        ├── ProviderHTTPError      a non-2xx status (with a hint for the common ones)
        ├── ProviderConnectionError, ProviderTimeout
        ├── ProviderProtocolError  a reply that does not follow the protocol
        └── ResponseTooLarge

Each message is one line that says what failed and where, with credentials masked; front ends show
that line, never a traceback. ``redact`` and ``one_line`` are how a message is made so.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .outbound import printable, redact, unlinkable

__all__ = [
    "AcytooError",
    "AcytooInterrupted",
    "AnswerError",
    "BudgetExceeded",
    "ContextError",
    "FetchError",
    "HistoryError",
    "HistoryLocked",
    "ModelError",
    "ModelNotFound",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderHTTPError",
    "ProviderNotFound",
    "ProviderProtocolError",
    "ProviderTimeout",
    "ResponseTooLarge",
    "StoreClosed",
    "ToolsUnsupported",
    "UnsupportedCPU",
    "one_line",
    "redact",
]


def one_line(text: str, limit: int = 200) -> str:
    """Collapse whitespace so a server's body fits in a one-line message."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class AcytooError(Exception):
    """Base of every error of this package; IPython shows its one line instead of a traceback."""

    def _render_traceback_(self) -> list[str]:
        # The message may quote a server: no control characters, no scheme JupyterLab would autolink.
        return [f"\x1b[0;31m{type(self).__name__}\x1b[0m: {unlinkable(str(self))}"]


class AcytooInterrupted(AcytooError):
    """The answer was interrupted (kernel interrupt, Stop); the partial text is kept, marked."""


class AnswerError(AcytooError):
    """Something outside the provider ended an answer (drawing it, an ``on_chunk`` callback):
    what was shown is kept, marked partial."""

    @classmethod
    def from_exception(cls, where: str, exc: BaseException) -> AnswerError:
        """``"{where} failed: {type}: {message}"`` on one line, credentials masked."""
        detail = one_line(redact(str(exc)), 300)
        return cls(f"{where} failed: {type(exc).__name__}" + (f": {detail}" if detail else ""))


class HistoryError(AcytooError, RuntimeError):
    """The history database cannot be used; the message names the file and what to do."""


class HistoryLocked(HistoryError):
    """Another process holds the history file's lock; it passes, so the next use tries again."""


class StoreClosed(HistoryError):
    """The store was closed (the history file changed, or the extension was unloaded)."""


class ContextError(AcytooError, ValueError):
    """A reference in the prompt cannot be expanded; nothing was sent."""


class ProviderNotFound(AcytooError, ValueError):
    """The provider name does not name anything usable; the message says what was tried."""


class ModelNotFound(AcytooError, ValueError):
    """The model name names no bundled model and no .gguf file; the message lists the choices."""


class UnsupportedCPU(AcytooError, RuntimeError):
    """This CPU lacks an instruction set the bundled llama.cpp runtime is built for."""


class ModelError(AcytooError, ValueError):
    """llama.cpp refused a request (the prompt does not fit the context window, say): its message."""


class FetchError(AcytooError, OSError):
    """A model file could not be fetched; the message says from where and what to do instead."""


class BudgetExceeded(AcytooError):
    """A request would pass a daily spending budget (``budget``); nothing was sent."""


class ToolsUnsupported(AcytooError, ValueError):
    """Agent mode was asked of a provider that cannot call tools; nothing was sent."""


class ProviderError(AcytooError):
    """Base of every failure a provider reports; ``str()`` is one line naming provider and URL."""

    def __init__(
        self, message: str, *, provider: str = "provider", url: str = "", secrets: Iterable[str] = ()
    ) -> None:
        self.provider = provider
        self.url = redact(url)
        # Mask first, then cut: a secret that crossed the cut would no longer match and leak in part.
        # Control characters go too: this line reaches terminals and saved notebooks.
        self.message = one_line(printable(redact(message, secrets)), 400)
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f" at {self.url}" if self.url else ""
        return f"{self.provider}{where}: {self.message}"


class ProviderHTTPError(ProviderError):
    """The server answered with an error status; ``status`` and the start of the ``body`` are kept."""

    def __init__(self, status: int, body: str = "", **kwargs: Any) -> None:
        self.status = status
        self.body = redact(body, kwargs.get("secrets", ()))[:200]
        reason = HTTP_STATUS_HINTS.get(status, "")
        detail = f": {one_line(self.body)}" if self.body.strip() else ""
        super().__init__(f"HTTP {status}{reason}{detail}", **kwargs)


HTTP_STATUS_HINTS = {
    400: " (bad request)",
    401: " (unauthorized: check the API key)",
    403: " (forbidden)",
    404: " (not found: check the URL)",
    407: " (proxy authentication required: put user:password@ in the proxy URL)",
    429: " (rate limited)",
    500: " (server error)",
    502: " (bad gateway)",
    503: " (service unavailable)",
}


class ProviderConnectionError(ProviderError):
    """The connection could not be opened, or it dropped while the reply was streaming."""


class ProviderTimeout(ProviderError):
    """No byte arrived within the timeout, before the reply or in the middle of it."""


class ProviderProtocolError(ProviderError):
    """The server's reply did not follow the protocol (bad SSE line, bad JSON)."""


class ResponseTooLarge(ProviderError):
    """The reply grew past ``max_response_bytes``; what arrived before the cap was yielded."""
