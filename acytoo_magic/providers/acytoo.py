"""The Acytoo protocol: POST ``{url}/api/completions`` with a JSON body, reply streamed as raw UTF-8 text.

Faithful to gpt4free's original ``Acytoo`` provider (same path, headers and body keys), with its bugs
fixed: the URL and model are configurable, a character split across chunks decodes correctly, the
session can be shared, and failures are typed one-line errors instead of ``raise_for_status``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from .base import (
    AsyncGeneratorProvider,
    HTTPStream,
    Messages,
    ProviderConnectionError,
    Utf8Stream,
    transport_options,
)

DEFAULT_URL = "https://chat.acytoo.com"
DEFAULT_MODEL = "gpt-3.5-turbo"
# With nothing configured the first question goes to DEFAULT_URL; when that cannot be reached, the
# error's one line also says what to set up instead (once per process: after that, just the line).
FIRST_CONTACT = (
    "nothing is configured yet: set a server (%config Assistant.url = 'http://...' or ACYTOO_URL), "
    "use the bundled model (-p local), or OpenAI (-p openai with OPENAI_API_KEY)"
)


def create_header() -> dict[str, str]:
    return {"accept": "*/*", "content-type": "application/json"}


def create_payload(messages: Messages, model: str, temperature: float = 0.5) -> dict[str, Any]:
    """The exact body the Acytoo server expects; ``key`` and ``password`` stay empty as in the original."""
    return {
        "key": "",
        "model": model or DEFAULT_MODEL,
        "messages": [dict(m) for m in messages],
        "temperature": float(temperature),
        "password": "",
    }


class Acytoo(AsyncGeneratorProvider):
    url = DEFAULT_URL
    url_env = "ACYTOO_URL"
    supports_gpt_35_turbo = True
    default_model = DEFAULT_MODEL

    @classmethod
    async def create_async_generator(  # type: ignore[override]
        cls,
        model: str,
        messages: Messages,
        proxy: str | None = None,
        *,
        url: str | None = None,
        temperature: float | None = 0.5,
        **kwargs: Any,
    ) -> AsyncIterator[str]:
        """Stream the answer as text. Also takes ``session``, ``timeout``, ``retries``,
        ``max_response_bytes`` and ``on_retry`` (see ``HTTPStream``); other keywords are ignored."""
        stream = HTTPStream(
            "Acytoo",
            f"{cls.base_url(url)}/api/completions",
            json=create_payload(messages, model, 0.5 if temperature is None else temperature),
            headers=create_header(),
            proxy=proxy,
            **transport_options(kwargs),
        )
        text = Utf8Stream()
        try:
            async for chunk in stream.chunks():
                if piece := text.decode(chunk):
                    yield piece
        except ProviderConnectionError as exc:
            if stream.opened or cls.base_url(url) != DEFAULT_URL or not _first_contact():
                raise
            raise ProviderConnectionError(
                f"{exc.message}; {FIRST_CONTACT}", provider=exc.provider, url=exc.url
            ) from None
        if tail := text.flush():
            yield tail


_hinted = False


def _first_contact() -> bool:
    """True the first time in this process: the hint is said once, not under every failure."""
    global _hinted
    first, _hinted = not _hinted, True
    return first
