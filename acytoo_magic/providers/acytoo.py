"""The Acytoo protocol: POST ``{url}/api/completions`` with a JSON body, reply streamed as raw UTF-8 text.

Faithful to gpt4free's original ``Acytoo`` provider (same path, headers and body keys), with its bugs
fixed: the URL and model are configurable, a character split across chunks decodes correctly, the
session can be shared, and failures are typed one-line errors instead of ``raise_for_status``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ..core.errors import ProviderError
from .base import AsyncGeneratorProvider, HTTPStream, Messages, Utf8Stream, transport_options

DEFAULT_MODEL = "gpt-3.5-turbo"


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
    """An Acytoo-protocol server at the URL given (``url=``, else ``ACYTOO_URL``): there is no
    default host, so nothing is sent anywhere nobody named."""

    url = ""
    url_env = "ACYTOO_URL"
    needs_url = True
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
        if not (base := cls.base_url(url)):
            raise ProviderError(
                "no server URL set, so nothing was sent; %acytoo use acytoo --url http://HOST:PORT "
                "(or url=, ACYTOO_URL)",
                provider="Acytoo",
            )
        stream = HTTPStream(
            "Acytoo",
            f"{base}/api/completions",
            json=create_payload(messages, model, 0.5 if temperature is None else temperature),
            headers=create_header(),
            proxy=proxy,
            **transport_options(kwargs),
        )
        text = Utf8Stream()
        async for chunk in stream.chunks():
            if piece := text.decode(chunk):
                yield piece
        if tail := text.flush():
            yield tail
