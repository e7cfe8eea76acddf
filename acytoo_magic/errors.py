"""One error family: everything the extension raises on purpose derives from ``AcytooError``.

Callers catch the base, or a kind (``ProviderError`` and its subclasses, ``HistoryError``,
``ContextError``, ``ProviderNotFound``, ``AcytooInterrupted``). Each message is one line that says
what failed and where, with credentials masked; front ends show that line, never a traceback.
"""

from __future__ import annotations


class AcytooError(Exception):
    """Base of every error of this package; IPython shows its one line instead of a traceback."""

    def _render_traceback_(self) -> list[str]:
        # The message may quote a server: no control characters, no scheme JupyterLab would autolink.
        from .untrusted import unlinkable

        return [f"\x1b[0;31m{type(self).__name__}\x1b[0m: {unlinkable(str(self))}"]


class AcytooInterrupted(AcytooError):
    """The answer was interrupted (kernel interrupt, Stop); the partial text is kept, marked."""


class HistoryError(AcytooError, RuntimeError):
    """The history database cannot be used; the message names the file and what to do."""


class HistoryLocked(HistoryError):
    """Another process holds the history file's lock; it passes, so the next use tries again."""


class ContextError(AcytooError, ValueError):
    """A reference in the prompt cannot be expanded; nothing was sent."""


class ProviderNotFound(AcytooError, ValueError):
    """The provider name does not name anything usable; the message says what was tried."""
