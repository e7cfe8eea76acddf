"""Per backend, as a notebook user meets it: time to first token (cold, warm), tokens/s, kernel memory.

Each backend gets a fresh ipykernel; the kernel asks two questions through ``Assistant.ask`` (the
first is cold: the model loads, or the server's first request; the second warm) and reports its own
resident memory. Backends: the bundled SmolLM2 and Gemma 3 270M in the kernel (``local``), the same
SmolLM2 behind ``python -m acytoo_magic.server`` (Acytoo protocol), and llama.cpp's own
OpenAI-compatible server (``llama-server``, as xllamacpp embeds it) in a process of its own
(``openai`` provider). Plus the grown-thread figure: a second turn after ~3,000 tokens of history,
with the whole history read again (what every turn cost before the prompt cache) and from the cache.

Writes benchmarks/backends.json and benchmarks/backends.md; ``make bench`` runs it. Figures on a
shared machine vary with its load; compare rows of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jupyter_client.manager import start_new_kernel

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ("Name three uses of a Python dictionary.", "Name three uses of a Python list.")
MAX_TOKENS = 64
HISTORY = str(Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-backends-{os.getpid()}.sqlite3")

ASK = """
import json, time
from pathlib import Path
from acytoo_magic import Assistant
from acytoo_magic.providers.local import Local
Local.max_tokens = {max_tokens}
assistant = Assistant(provider={provider!r}, url={url!r}, model={model!r}, api_key={key!r})
rows = []
for question in {questions!r}:
    reply = await assistant.ask(question, history=False)
    reply.raise_for_status()
    prompt, completion, estimated = reply.tokens()
    rows.append({{"ttft": reply.first_chunk - reply.started, "elapsed": reply.elapsed,
                 "tokens": completion, "estimated": estimated,
                 "tokens_per_s": (completion - 1) / max(reply.finished - reply.first_chunk, 1e-9)}})
status = Path("/proc/self/status").read_text().splitlines()
rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
print(json.dumps({{"answers": rows, "kernel_rss_mb": rss / 1024}}))
"""

GROWN = """
import json
from acytoo_magic.providers import local_model
from acytoo_magic.providers.local import Local
question = "How do I read a CSV file with pandas and parse the dates? "
answer = "Use pd.read_csv(path, parse_dates=['date']) and check df.dtypes. "
turn = [{"role": "user", "content": question * 6}, {"role": "assistant", "content": answer * 6}]
history = turn * 15
async def second_turn(extra):
    messages = [*history, *extra, {"role": "user", "content": "And how do I set the index?"}]
    async for _ in Local.create_async_generator("smollm2", messages, max_tokens=4, temperature=0.0):
        pass
    g = local_model.loaded().generations[-1]
    ttft = g.first_token - g.started
    return {"prompt_tokens": g.prompt_tokens, "cached_tokens": g.cached_tokens, "ttft": ttft}
uncached = await second_turn([])
cached = await second_turn([{"role": "user", "content": "And how do I set the index?"},
                            {"role": "assistant", "content": "df.set_index('date')"}])
print(json.dumps({"uncached": uncached, "cached": cached}))
"""


def run_cell(code: str, env: dict[str, str], timeout: float = 900, progress: str = "") -> dict[str, Any]:
    """Run ``code`` in a fresh kernel with ``env``; the JSON its last stdout line printed. Lines it
    prints starting with ``progress`` (when given) are shown as they come."""
    km, kc = start_new_kernel(kernel_name="python3", env={**os.environ, **env})
    out: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            out.append(text := msg["content"].get("text", ""))
            if progress:
                for line in text.splitlines():
                    if line.startswith(progress):
                        print("  ", line, flush=True)

    try:
        reply = kc.execute_interactive(code, timeout=timeout, output_hook=hook)
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"kernel: {reply['content'].get('evalue')}")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return json.loads("".join(out).strip().splitlines()[-1])


@contextmanager
def process(command: list[str], ready: str) -> Iterator[str]:
    """A server process; yields the line (after ``ready``) that names its address."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if ready in line:
                yield line.split()[-1]
                break
        else:
            raise RuntimeError(f"{command[2:4]} did not start")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


LLAMA_SERVER = """
import secrets, sys, threading, xllamacpp
from acytoo_magic.providers import local_model
params = xllamacpp.CommonParams()
params.model.path = str(local_model.smollm2_path())
params.n_ctx, params.n_parallel, params.verbosity = 4096, 1, -1
params.cpuparams.n_threads = params.cpuparams_batch.n_threads = local_model.default_threads()
params.api_keys = [sys.argv[1]]
server = xllamacpp.Server(params)
print("llama-server listening on", server.listening_address + "/v1", flush=True)
threading.Event().wait()
"""


def measure(name: str, provider: str, model: str, url: str = "", key: str = "") -> dict[str, Any]:
    code = ASK.format(
        provider=provider, url=url, model=model, key=key, questions=QUESTIONS, max_tokens=MAX_TOKENS
    )
    result = run_cell(code, {"JPY_SESSION_NAME": "bench-backends.ipynb", "ACYTOO_HISTORY_DB": HISTORY})
    cold, warm = result["answers"]
    row = {
        "backend": name,
        "ttft_cold_s": cold["ttft"],
        "ttft_warm_s": warm["ttft"],
        "tokens_per_s": warm["tokens_per_s"],
        "tokens_counted": not warm["estimated"],
        "kernel_rss_mb": result["kernel_rss_mb"],
    }
    print(f"  {name}: {row}", flush=True)
    return row


def table(rows: list[dict[str, Any]], grown: dict[str, Any]) -> str:
    lines = [
        "| backend | first token, cold | first token, warm | tokens/s | kernel memory (RSS) |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        about = "" if row["tokens_counted"] else "≈"
        lines.append(
            f"| {row['backend']} | {row['ttft_cold_s']:.2f} s | {row['ttft_warm_s']:.2f} s "
            f"| {about}{row['tokens_per_s']:.1f} | {row['kernel_rss_mb']:.0f} MB |"
        )
    uncached, cached = grown["uncached"], grown["cached"]
    lines += [
        "",
        f"A second turn after {uncached['prompt_tokens']:,} tokens of history (SmolLM2, in the kernel): "
        f"first token after {uncached['ttft']:.2f} s reading it all (every turn, before the prompt cache), "
        f"{cached['ttft']:.2f} s from the prompt cache ({cached['cached_tokens']:,} tokens reused, "
        f"{uncached['ttft'] / max(cached['ttft'], 1e-9):.0f}× sooner).",
        "",
        "≈: the Acytoo protocol carries no token counts; estimated at 4 characters a token. "
        "Kernel memory: the kernel's RSS after both answers (an in-kernel model's weights and "
        "KV cache are in it; a server's are in the server's process).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "backends.json"))
    args = parser.parse_args()
    print("backends (fresh kernel each; cold = first answer, warm = second):", flush=True)
    rows = [
        measure("bundled SmolLM2 (local, in the kernel)", "local", "smollm2"),
        measure("Gemma 3 270M (local, in the kernel)", "local", "gemma3"),
    ]
    server = [sys.executable, "-m", "acytoo_magic.server", "--port", "0", "--max-tokens", str(MAX_TOKENS)]
    with process(server, "listening on") as url:
        rows.append(measure("SmolLM2 behind acytoo_magic.server (acytoo)", "acytoo", "smollm2", url))
    key = secrets.token_urlsafe(16)
    with process([sys.executable, "-c", LLAMA_SERVER, key], "listening on") as url:
        rows.append(
            measure("llama.cpp's llama-server, OpenAI-compatible (openai)", "openai", "smollm2", url, key)
        )
    grown = run_cell(textwrap.dedent(GROWN), {})
    print(f"  grown thread: {grown}", flush=True)
    Path(args.output).write_text(json.dumps({"backends": rows, "grown_thread": grown}, indent=2) + "\n")
    markdown = table(rows, grown)
    Path(args.output).with_suffix(".md").write_text(markdown)
    print("\n" + markdown)


if __name__ == "__main__":
    main()
