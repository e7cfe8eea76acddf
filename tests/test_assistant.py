"""``Assistant`` from plain Python: no kernel, no IPython, the same history as the magic."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from acytoo_magic import AcytooError, Assistant, ProviderError
from acytoo_magic.core.errors import ContextError, HistoryError, ProviderNotFound


def run_script(code: str, env: dict[str, str]) -> dict:
    """Run ``code`` in a fresh interpreter (nothing imported yet) and return what it printed as JSON."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "Unclosed" not in done.stderr, done.stderr  # sessions and connections closed
    return json.loads(done.stdout.splitlines()[-1])


def test_a_script_asks_streams_and_keeps_history_without_ipython(server, history_db, monkeypatch):
    import os

    env = {**os.environ, "ACYTOO_URL": server.url, "ACYTOO_HISTORY_DB": str(history_db)}
    seen = run_script(
        """
        import asyncio, gc, json, sys, warnings
        from acytoo_magic import Assistant

        assistant = Assistant(max_history_chars=4000)
        first = assistant.ask_sync("[[echo chunk=2]]hello from a script", thread="script")

        async def chunks():
            got = [c async for c in assistant.stream("[[chunk=4 delay=0.002]] and again", thread="script")]
            await assistant.aclose()
            return got

        warnings.simplefilter("always", ResourceWarning)  # an unclosed session would say so on stderr
        pieces = asyncio.run(chunks())
        gc.collect()
        front_ends = ("IPython", "ipywidgets", "ipykernel")
        print(json.dumps({
            "first": first.answer, "status": first.outcome, "pieces": len(pieces), "joined": "".join(pieces),
            "history": [m.content for m in assistant.conversation("script").messages()],
            "loaded": sorted(m for m in sys.modules if m.split(".")[0] in front_ends),
        }))
        assistant.close()
        """,
        env,
    )
    assert seen["first"] == "hello from a script" and seen["status"] == "complete"
    assert seen["pieces"] > 1
    assert 'Before that you said: "hello from a script"' in seen["joined"]
    assert seen["history"][:2] == ["[[echo chunk=2]]hello from a script", "hello from a script"]
    assert len(seen["history"]) == 4
    assert seen["loaded"] == []  # the core needs no IPython, no widgets
    sent = server.requests[-1]["json"]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]


async def test_ask_reports_failures_in_the_reply_and_stream_raises_them(server, history_db):
    assistant = Assistant(url=server.url, history_path=str(history_db))
    reply = await assistant.ask("[[fault=500]] no")
    assert reply.outcome == "failed" and isinstance(reply.error, ProviderError)
    with pytest.raises(AcytooError, match="HTTP 500"):
        reply.raise_for_status()
    with pytest.raises(ProviderError, match="HTTP 500"):
        async for _chunk in assistant.stream("[[fault=500]] no"):
            pass
    assert assistant.conversation().messages() == []  # a failure records nothing
    await assistant.aclose()  # this loop's session (pytest-asyncio's loop is not the runner's)
    assistant.close()


def test_every_error_kind_is_an_acytoo_error(history_db):
    assistant = Assistant(history_path=str(history_db))
    with pytest.raises(ProviderNotFound):
        assistant.request("x", provider="no-such-provider")
    with pytest.raises(ContextError):
        assistant.expand("{undefined_name}")
    for kind in (ProviderError, ProviderNotFound, ContextError, HistoryError):
        assert issubclass(kind, AcytooError), kind


class TakesKeyOnly:
    """A foreign provider that posts to a host of its own and takes a key."""

    url = "https://third-party.example"

    @classmethod
    async def create_async_generator(cls, model, messages, proxy=None, api_key=None):
        yield "x"


class TakesKeyAndBase:
    url = "https://third-party.example"

    @classmethod
    async def create_async_generator(cls, model, messages, proxy=None, api_key=None, base_url=None):
        yield "x"


def test_a_foreign_provider_gets_a_key_only_for_the_host_it_is_sent_to(history_db):
    from acytoo_magic.providers import call_keywords

    assistant = Assistant(url="http://my-server:8000/v1", api_key="sk-mine", history_path=str(history_db))
    own_host = assistant.request("q", provider=TakesKeyOnly)
    assert "api_key" not in call_keywords(own_host.provider, own_host.options)  # it would post elsewhere
    ours = assistant.request("q", provider=TakesKeyAndBase)
    passed = call_keywords(ours.provider, ours.options)
    assert (passed["base_url"], passed["api_key"]) == ("http://my-server:8000/v1", "sk-mine")
    assert "sk-mine" not in repr(ours)  # a request shown in a traceback or a debugger hides the key
    elsewhere = assistant.request("q", provider=TakesKeyAndBase, url="http://other-host:9/v1")
    assert "api_key" not in call_keywords(elsewhere.provider, elsewhere.options)


def test_a_long_key_echoed_in_an_error_body_never_shows_in_part():
    from acytoo_magic.core.errors import ProviderHTTPError

    key = "sk-proj-" + "a" * 160
    body = '{"error": {"message": "Incorrect API key provided: ' + key + '. \x1b]52;c;Zm9v\x07 See docs"}}'
    error = ProviderHTTPError(401, body, provider="openai", url="http://h", secrets=[key])
    assert "aaaa" not in str(error) and "\x1b" not in str(error)
    assert "Incorrect API key provided: ***" in str(error)
