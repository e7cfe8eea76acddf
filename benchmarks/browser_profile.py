"""Where the page's time goes while an answer streams: a CPU profile of JupyterLab per drawing mode.

``python benchmarks/browser_profile.py [MODE ...] [--out DIR]`` runs the chosen modes of
``browser.py``'s notebook (all by default) in one real JupyterLab + Chromium, with V8's sampling
profiler (CDP ``Profiler``, 200 us) on while each measured cell runs, and prints per mode: the
kernel messages the page received (count, bytes), the main thread's script / layout / style time
(``Performance.getMetrics``), the sampled time inclusive of JupyterLab's steps for an output
(``STEPS``: the update in place, the renderer, MathJax, the prompt overlay's forced layout, the
table of contents) and the top functions by self time. Each profile is saved as a ``.cpuprofile`` (open it
in Chromium's DevTools, Performance tab) for a closer look. docs/streaming.md has the findings.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

from browser import (
    ARTIFACTS,
    DRAWN,
    MODES,
    QUESTION,
    LongAnswer,
    bench_page,
    cell_js,
    idle_after,
    knobs,
    long_markdown,
    renderer_cpu,
    run_cell,
    run_prep,
)

# A step is counted for a sample when a frame of that name is anywhere on the sample's stack. Only
# method names are matched: Lab's bundles are minified, so free functions (``renderHTML``,
# ``getHTMLHeadings``) have one-letter names; ``top_self_ms`` gives their file and position.
# Sampled time includes the layout and style work a frame forces (``clientHeight``...), which
# ``ScriptDuration`` does not count.
STEPS = {
    "OutputArea._setOutput (an update in place)": ("_setOutput",),
    "renderModel (the HTML renderer)": ("renderModel",),
    "MathJax typeset": ("typeset", "typesetPromise"),
    "cell.onOutputChanged -> updatePromptOverlayIcon (forced layout)": ("updatePromptOverlayIcon",),
    "table of contents: cell.getHeadings (sanitize + parse every HTML output)": ("getHeadings",),
    "sanitize (any caller)": ("sanitize",),
}
# Variants of the default's draw spacing (not in the benchmark): name, prep cell, measured cell, check.
EXPERIMENTS = [
    (
        f"%%acytoo, draws {gap} s apart",
        knobs(page_interval=gap),
        f"%%acytoo --no-history\n{QUESTION}",
        DRAWN,
    )
    for gap in (0.08, 0.25)
]
SKIP = {"(idle)", "(program)", "(garbage collector)", "(root)"}


def attribute(profile: dict[str, Any]) -> dict[str, Any]:
    """Sampled milliseconds: total (not idle), per step inclusive, and the top self-time functions."""
    nodes = {node["id"]: node for node in profile["nodes"]}
    parent = {child: node["id"] for node in profile["nodes"] for child in node.get("children", ())}
    stacks: dict[int, list[str]] = {}

    def stack(node_id: int) -> list[str]:
        if node_id not in stacks:
            up = parent.get(node_id)
            above = stack(up) if up is not None else []
            stacks[node_id] = [*above, nodes[node_id]["callFrame"]["functionName"]]
        return stacks[node_id]

    total, gc, steps, own = 0.0, 0.0, Counter(), Counter()
    deltas = [*profile["timeDeltas"][1:], 0]  # a sample lasts until the next one
    for sample, delta in zip(profile["samples"], deltas, strict=True):
        frame = nodes[sample]["callFrame"]
        name = frame["functionName"]
        if name == "(garbage collector)":
            gc += delta
        if name in SKIP:
            continue
        total += delta
        names = set(stack(sample))
        for step, functions in STEPS.items():
            if names.intersection(functions):
                steps[step] += delta
        url = frame["url"].rsplit("/", 1)[-1][:40]
        own[f"{name or '(anonymous)'} {url}:{frame['lineNumber']}"] += delta
    ms = 1 / 1000
    return {
        "sampled_ms": total * ms,
        "gc_ms": gc * ms,
        "steps_ms": {step: steps[step] * ms for step in STEPS},
        "top_self_ms": [(name, value * ms) for name, value in own.most_common(25)],
    }


def metrics(cdp: Any) -> dict[str, float]:
    return {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modes", nargs="*", help="mode names from browser.MODES (default: all)")
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=100, help="characters per chunk")
    parser.add_argument("--delay", type=float, default=0.005, help="seconds between chunks")
    parser.add_argument("--out", type=Path, default=ARTIFACTS / "profiles")
    parser.add_argument("--repeat", type=int, default=1, help="run the chosen modes this many times, in turn")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model = LongAnswer(long_markdown(args.size), chunk=args.chunk, delay=args.delay)
    received: list[int] = []
    report: dict[str, Any] = {}

    def listen(page: Any) -> None:
        page.on("websocket", lambda ws: ws.on("framereceived", lambda data: received.append(len(data))))

    with bench_page(model, MODES + EXPERIMENTS, listen) as (page, cdp, plan):
        cdp.send("Profiler.enable")
        cdp.send("Profiler.setSamplingInterval", {"interval": 200})
        chosen = [p for p in plan if not args.modes or p[0] in args.modes]
        for round_, (name, prep, index, drawn) in enumerate(chosen * args.repeat):
            name = f"{name} #{round_ // len(chosen) + 1}" if args.repeat > 1 else name
            run_prep(page, prep)
            received.clear()
            browser_cdp = page.context.browser.new_browser_cdp_session()
            cpu = renderer_cpu(browser_cdp)
            before = metrics(cdp)
            cdp.send("Profiler.start")
            run_cell(page, index)
            page.wait_for_function(cell_js(index, drawn), timeout=600_000, polling=200)
            profile = cdp.send("Profiler.stop")["profile"]
            after = metrics(cdp)
            cpu = renderer_cpu(browser_cdp) - cpu
            messages, size = len(received), sum(received)
            page.wait_for_function(idle_after(page, index), timeout=600_000, polling=200)
            slug = "".join(c if c.isalnum() else "-" for c in name).strip("-")
            (args.out / f"{slug}.cpuprofile").write_text(json.dumps(profile))
            seen = {
                key: (after[key] - before[key]) * 1000
                for key in ("ScriptDuration", "LayoutDuration", "RecalcStyleDuration", "TaskDuration")
            }
            seen["main-thread CPU"] = cpu * 1000
            report[name] = {"ws_messages": messages, "ws_kbytes": size / 1000, "metrics_ms": seen}
            report[name].update(attribute(profile))
            print(json.dumps({name: report[name]}, indent=1), flush=True)
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    print("->", args.out / "report.json")


if __name__ == "__main__":
    main()
