"""The bundled model, run inside this process: ``%config Assistant.provider = "local"``.

No server to start and no URL: llama.cpp generates on a worker thread of the kernel's process and
hands each token to the event loop, so the kernel stays responsive. A kernel interrupt or the
widget's Stop cancels the consuming task; the worker stops before its next token. Needs the
``local`` extra (llama-cpp-python, SmolLM2-135M-Instruct; Gemma 3 270M stays selectable).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from .. import local_model
from .base import AsyncGeneratorProvider, Messages, ProviderError, Usage, one_line

# "" (no model setting) and g4f's "auto" mean "no model chosen": the bundled default.
NO_MODEL_CHOSEN = frozenset({"", "auto", "default"})


class Local(AsyncGeneratorProvider):
    """The bundled GGUF model through llama.cpp, in this process. ``model``: smollm2, gemma3 or a path."""

    url = ""
    supports_gpt_35_turbo = False
    default_model = local_model.DEFAULT_MODEL
    models = tuple(local_model.BUNDLED)
    max_tokens = local_model.DEFAULT_MAX_TOKENS  # longest answer, in tokens
    n_ctx = local_model.DEFAULT_CTX  # context window: the prompt (with history) and the answer

    @classmethod
    def base_url(cls, url: str | None = None) -> str:
        return ""  # nothing is contacted: a configured URL is for other providers

    @classmethod
    def model_for(cls, model: str | None) -> str:
        name = (model or "").strip()
        return cls.default_model if name.lower() in NO_MODEL_CHOSEN else name

    @classmethod
    async def load(cls, model: str | None = None) -> local_model.LocalModel:
        """The process's model for ``model`` (loaded off the loop the first time); a one-line error."""
        try:
            return await asyncio.to_thread(local_model.shared_model, cls.model_for(model), n_ctx=cls.n_ctx)
        except local_model.ModelNotFound as exc:
            raise ProviderError(str(exc), provider="local") from None
        except (FileNotFoundError, ImportError) as exc:
            raise ProviderError(
                f"cannot load the model ({_reason(exc)}): {local_model.INSTALL_HINT}", provider="local"
            ) from None
        except ValueError as exc:  # llama.cpp: not a usable GGUF file
            raise ProviderError(f"cannot load the model: {_reason(exc)}", provider="local") from None

    @classmethod
    async def create_async_generator(  # type: ignore[override]
        cls,
        model: str,
        messages: Messages,
        proxy: str | None = None,
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[str | Usage]:
        """Stream the answer's text, then ``Usage(prompt_tokens, completion_tokens)``.

        ``proxy``, ``url``, ``session`` and the other transport keywords mean nothing here and
        are ignored, as g4f providers ignore what they do not use.
        """
        llm = await cls.load(model)
        stream = llm.stream(
            messages, 0.7 if temperature is None else float(temperature), max_tokens or cls.max_tokens
        )
        try:
            async for item in stream:
                if isinstance(item, local_model.Generation):
                    yield Usage(item.prompt_tokens, item.completion_tokens)
                else:
                    yield item
        except ValueError as exc:  # llama.cpp: the prompt does not fit the context window
            raise ProviderError(_reason(exc), provider="local") from None
        finally:
            await stream.aclose()  # stops the worker now, not when the generator is collected


def _reason(exc: BaseException) -> str:
    return one_line(str(exc)) or type(exc).__name__
