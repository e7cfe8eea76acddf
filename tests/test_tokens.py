"""Token counts under each answer: reported when the backend counts, estimated (≈) otherwise, priced."""

from __future__ import annotations

import re

import pytest

from acytoo_magic.server import count_tokens, prompt_tokens

pytestmark = pytest.mark.notebook


NOTEBOOK = "tok.ipynb"


def status_of(execution) -> str:
    return execution.final_display["text/plain"].rsplit("\n— ", 1)[1]


def test_counts_are_reported_estimated_priced_and_totalled_per_thread(k, server):
    k.execute("%config Assistant.prices = {'scripted': [1_000_000.0, 2_000_000.0]}")  # 1 a token in, 2 out
    out = k.execute(f"%%acytoo -p openai --url {server.url}/v1 -m scripted -c counted\n[[echo]]one two three")
    assert out.status == "ok", out.error
    sent = server.requests[-1]["json"]
    assert sent["stream_options"] == {"include_usage": True}
    prompt, completion = prompt_tokens(sent["messages"]), count_tokens("one two three")
    status = status_of(out)
    assert f" · {prompt:,} tokens in, {completion} out · " in status  # what the server counted, no ≈
    assert f" · {prompt + 2 * completion:.4f} cost" in status
    guessed = k.execute("%%acytoo -c guessed\n[[echo]]abcdefgh")  # the Acytoo protocol reports no usage
    assert re.search(r" · ≈[\d,]+ tokens in, ≈2 out$", status_of(guessed))
    threads = k.execute("%acytoo threads").stdout
    assert f"counted: 2 messages · {prompt:,} tokens in, {completion} out" in threads
    assert re.search(r"guessed: 2 messages · ≈[\d,]+ tokens in, ≈2 out", threads)
