"""What rebuilding a thread from the saved notebook costs (docs/notebook-record.md).

A 5 MB notebook with 300 recorded answers (each cell's output: the answer as HTML and text, and its
record in the output's metadata), read by ``DocumentRecord`` as a question does: the first read
(parse, walk the cells, check each record's hash), and a read of the unchanged file (one ``stat``).
Baseline from the same run: parsing the file alone (orjson, as the reader does), the least any
reader pays; the ratio is the figure to compare across machines. Also what a question costs with
the document behind its thread: the rebuild, the trim, the messages.

``make bench`` runs it as a section of ``run.py``; ``python benchmarks/record.py`` alone.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from acytoo_magic.core.history.document import DocumentRecord, Documents, _loads, record
from acytoo_magic.core.history.store import HistoryStore
from acytoo_magic.core.history.thread import Conversation

EXCHANGES = 300
ANSWER_CHARS = 5_500  # with its HTML and text and the record's copy: about 5 MB for 300


def notebook(count: int, answer_chars: int) -> dict[str, Any]:
    """A saved notebook of ``count`` asked cells, each output carrying its chained record."""
    cells, parent = [], None
    for i in range(count):
        answer = (f"Answer {i}: " + "the model's words about the data " * answer_chars)[:answer_chars]
        meta = record(
            exchange=f"{i:032x}", thread="default", prompt=f"Question {i}?", answer=answer,
            outcome="complete", parent=parent, source=f"%%acytoo\nQuestion {i}?", key=f"id:c{i}#0",
            provider="openai", host="api.example.com", model="m", time="2026-12-07T04:00:00.000Z",
            tokens={"in": 100, "out": 1000, "estimated": False},
        )
        parent = (meta["acytoo_magic"]["exchange"], meta["acytoo_magic"]["hash"])
        output = {"output_type": "display_data", "metadata": meta,
                  "data": {"text/plain": answer, "text/html": f"<p>{answer}</p>"}}
        cells.append({"cell_type": "code", "id": f"c{i}", "metadata": {}, "execution_count": i,
                      "source": f"%%acytoo\nQuestion {i}?", "outputs": [output]})
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def median(repeats: int, run: Callable[[], Any]) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def measure(smoke: bool = False) -> dict[str, float]:
    """Seconds (medians): the parse alone, the first read, an unchanged read, a question's messages."""
    count = 30 if smoke else EXCHANGES
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.ipynb"
        path.write_text(json.dumps(notebook(count, ANSWER_CHARS)))
        size = path.stat().st_size
        parse = median(9, lambda: _loads(path.read_bytes()))
        first = median(9, lambda: DocumentRecord(str(path)).records())
        reader = DocumentRecord(str(path))
        assert len(reader.records() or []) == count
        unchanged = median(2001, reader.records)
        documents = Documents()
        conversation = Conversation(HistoryStore(Path(tmp) / "h.sqlite3"), str(path), "default",
                                    documents, "kernel-id")
        sent = len(conversation.to_send("And now?", "system", 12_000))
        question = median(51, lambda: conversation.to_send("And now?", "system", 12_000))
        assert documents.for_key(str(path)).reads == 1 and sent > 1  # read once, whatever is asked
    return {"bytes": size, "parse": parse, "first": first, "unchanged": unchanged, "question": question}


def rows(table: Any, smoke: bool) -> None:
    """``run.py``'s section: the figures against the targets of issue 32."""
    found = measure(smoke)
    section, size = "notebook record", f"{found['bytes'] / 1e6:.1f} MB"
    first, unchanged = found["first"] * 1000, found["unchanged"] * 1000
    table.add(section, f"first read, {size} notebook", first, "ms", "<= 50", first <= 50)
    table.add(section, "first read / parsing the file alone", found["first"] / found["parse"], "x")
    table.add(section, "unchanged document (one stat)", unchanged, "ms", "<= 1", unchanged <= 1)
    table.add(section, "a question's messages, document unchanged", found["question"] * 1000, "ms")


if __name__ == "__main__":
    figures = measure()
    print(json.dumps({k: (v if k == "bytes" else round(v * 1000, 4)) for k, v in figures.items()}, indent=1))
