"""Approved code on its own thread: what it prints is its own, and the streams it borrows stay streams."""

from __future__ import annotations

import io
import sys

from acytoo_magic.core.coderun import run_approved
from acytoo_magic.core.context import bounded_repr


async def test_the_borrowed_stdout_is_a_stream_and_forwards_once_the_run_is_over() -> None:
    namespace: dict[str, object] = {}
    seen: dict[str, object] = {}
    code = (
        "import sys\n"
        "seen['encoding'] = sys.stdout.encoding\n"
        "seen['fileno'] = hasattr(sys.stdout, 'fileno')\n"
        "seen['proxy'] = sys.stdout\n"
        "print('mine')"
    )
    namespace["seen"] = seen
    before = sys.stdout
    run = await run_approved(code, namespace)
    assert run.stdout == "mine\n" and not run.error
    assert seen["encoding"] == getattr(before, "encoding", None) and seen["fileno"]
    assert sys.stdout is before  # put back
    # A capture that saved the proxy while the code ran and puts it back later gets a stream that
    # writes through to what it replaced, whatever thread writes.
    proxy = seen["proxy"]
    target = io.StringIO()
    proxy.theirs = target  # type: ignore[attr-defined]
    proxy.write("after the run")  # type: ignore[attr-defined]
    assert target.getvalue() == "after the run"


def test_large_bytes_are_cut_before_their_repr_is_made() -> None:
    shown = bounded_repr(b"\x00" * 50_000_000, 300)
    assert shown.endswith("(50,000,000 bytes)") and len(shown) < 400 and "ran past" not in shown
