"""What the bundled small models do with agent tasks: native tool calls, and a text protocol.

Agent mode (docs/agent.md) refuses providers without native tool calls. This measures whether the
bundled models could do better, on 20 notebook tasks ("what columns does df have", "the mean of
x", ...) over a fixed namespace, greedy (temperature 0, fixed seed), each through llama.cpp's
OpenAI-compatible server as the xllamacpp wheel embeds it:

- ``native``: ``tools`` in the request, the model's own chat template (llama.cpp's ``--jinja``);
- ``native-hermes``: the same, with a Hermes-style chat template (``<tool_call>`` blocks, the
  format Qwen 2.5 and Hermes models use) put in place of the model's own, so llama.cpp renders the
  tools into the prompt and parses calls out of the reply;
- ``text``: no ``tools``; the system prompt documents a protocol: a fenced block opened with
  ```` ```python run ```` is a request to run that code (after approval, as ``run_python``);
- ``text-example``: the same, with one worked exchange (question, run block, output, answer)
  before the task.

Per task: up to two model calls (a call, then the answer after its result). Approval is automatic
here (the benchmark is the user); code runs on a fresh copy of the namespace. Counted: a
well-formed call or block in the first reply, the right tool, code (or a read-only tool) that ran
without an error, and the task answered (the final text holds the expected fact, after a call
that ran; holding it with no call that ran is counted apart, as a guess). Also counted: a plain
```` ```python ```` block in the first reply (what a lenient protocol would take as a request to
run), and such a block that rebinds the user's ``df``, ``prices`` or ``config``.

Writes benchmarks/agent_small_models.json (merged by model and way, so models can be run apart)
and prints a Markdown table (pasted into docs/agent.md). ``make bench`` runs it with ``--models
smollm2,gemma3``; Gemma 3 270M is a base model with no chat template, so ``native`` does not
apply to it and the text protocol goes to it as the plain transcript the local provider sends.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import copy
import json
import re
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from acytoo_magic.core.coderun import run_approved  # noqa: E402
from acytoo_magic.core.context import NotebookContext  # noqa: E402
from acytoo_magic.core.tools import RUN_PYTHON, TOOL_SPECS, NotebookTools, ToolError  # noqa: E402
from acytoo_magic.providers import local_model  # noqa: E402

OUT = Path(__file__).with_suffix(".json")
SEED = 1234
MAX_TOKENS = 128

# A chat template in the Hermes / Qwen 2.5 style: tools in <tools>, calls in <tool_call> JSON.
HERMES_TEMPLATE = """\
{%- if tools %}<|im_start|>system
{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}

{% endif %}# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>{% for tool in tools %}
{{ tool | tojson }}{% endfor %}
</tools>

For each function call, return a json object with function name and arguments within \
<tool_call></tool_call> XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
{% elif messages[0]['role'] == 'system' %}<|im_start|>system
{{ messages[0]['content'] }}<|im_end|>
{% endif %}{%- for message in messages %}{%- if message.role == 'user' or (message.role == 'assistant' \
and not message.tool_calls) %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% elif message.role == 'assistant' %}<|im_start|>assistant
{% if message.content %}{{ message.content }}
{% endif %}{%- for tool_call in message.tool_calls %}<tool_call>
{"name": "{{ tool_call.function.name }}", "arguments": {{ tool_call.function.arguments | tojson }}}
</tool_call>{% endfor %}<|im_end|>
{% elif message.role == 'tool' %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% endif %}{%- endfor %}{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""

NATIVE_SYSTEM = (
    "You are a data assistant inside a Jupyter notebook. You cannot see the user's data: use the "
    "tools to list and describe variables and to run Python code, then answer briefly."
)
TEXT_SYSTEM = (
    "You are a data assistant inside a Jupyter notebook. You cannot see the user's data, but you "
    "can run Python in the user's namespace. To run code, reply with one fenced block that starts "
    "with ```python run and ends with ```; the user approves it and its output comes back in the "
    "next message. Variables: df (a pandas DataFrame), prices (a list), config (a dict). When you "
    "know the answer, reply briefly in plain text without a run block."
)
# One worked exchange before the task (``text-example``): a small model copies a shown format
# more readily than it follows a described one.
EXAMPLE = [
    {"role": "user", "content": "How many keys does config have?"},
    {"role": "assistant", "content": "```python run\nlen(config)\n```"},
    {
        "role": "user",
        "content": "Output of your code:\nvalue:\n2\n\nNow answer: How many keys does config have?",
    },
    {"role": "assistant", "content": "config has 2 keys."},
]
RUN_BLOCK = re.compile(r"```python run[ \t]*\n(.*?)```", re.S)
CODE_BLOCK = re.compile(r"```(?:python|py)[^\n]*\n(.*?)(?:```|$)", re.S)
USER_NAMES = frozenset({"df", "prices", "config"})


def namespace() -> dict[str, Any]:
    """The notebook the tasks are about."""
    df = pd.DataFrame(
        {
            "city": ["Oslo", "Lima", "Pune", "Oslo", "Lima", "Kyiv"],
            "x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            "sales": [10.0, None, 30.0, 40.0, None, 60.0],
            "year": [2020, 2021, 2022, 2020, 2021, 2022],
        }
    )
    return {"df": df, "prices": [3, 9, 4, 7], "config": {"region": "north", "limit": 25}}


@dataclass(frozen=True)
class Task:
    prompt: str
    expect: tuple[str, ...]  # each must appear in the final answer (case-insensitive)
    tools: frozenset[str] = frozenset({RUN_PYTHON, "describe_variable"})  # calls that fit


LOOK = frozenset({RUN_PYTHON, "list_variables", "describe_variable"})
TASKS = [
    Task("What columns does df have?", ("city", "sales", "year")),
    Task("Compute the mean of the column x in df.", ("3.5",)),
    Task("How many rows does df have?", ("6",)),
    Task("How many missing values are in df's sales column?", ("2",)),
    Task("What is the sum of the sales column of df?", ("140",)),
    Task("Which variables are defined in my notebook?", ("df", "prices", "config"), LOOK),
    Task("What is the largest value in the list prices?", ("9",)),
    Task("What is the value of the key 'region' in config?", ("north",)),
    Task(
        "Which cities appear in df? List the unique values of the city column.",
        ("oslo", "lima", "pune", "kyiv"),
    ),
    Task("What is the data type of df's year column?", ("int",)),
    Task("What is the median of df['x']?", ("3.5",)),
    Task("How many times does Oslo appear in df's city column?", ("2",)),
    Task("What is the maximum of the sales column in df?", ("60",)),
    Task("How long is the list prices?", ("4",)),
    Task(
        "Fill the missing values in df['sales'] with 0 and tell me the new sum.",
        ("140",),
        frozenset({RUN_PYTHON}),
    ),
    Task("What is the mean of sales for the year 2020 in df?", ("25",), frozenset({RUN_PYTHON})),
    Task("Sort the list prices and show it.", ("3, 4, 7, 9",), frozenset({RUN_PYTHON})),
    Task("What is the minimum of the column x of df?", ("1",)),
    Task("Count the rows of df per city.", ("oslo", "2"), frozenset({RUN_PYTHON})),
    Task("What is the value of config['limit'] times 2?", ("50",), frozenset({RUN_PYTHON})),
]


@dataclass
class Outcome:
    task: int
    well_formed: bool = False  # the first reply holds a parseable call / run block
    right_tool: bool = False
    ran: bool = False  # the call ran without an error
    answered: bool = False  # the expected fact is in the answer, after a call that ran
    guessed: bool = False  # the expected fact is in the answer, with no call that ran (a guess)
    code_block: bool = False  # the first reply holds a plain ```python block (no protocol mark)
    clobbers: bool = False  # ... and running it would rebind the user's df, prices or config
    calls: list[str] = field(default_factory=list)
    first_reply: str = ""
    answer: str = ""
    seconds: float = 0.0


class Server:
    """llama.cpp's OpenAI-compatible server for one GGUF (xllamacpp), optionally with a template."""

    def __init__(self, path: Path, template: str | None) -> None:
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_ctx = 4096
        params.n_parallel = 1
        params.cpuparams.n_threads = params.cpuparams_batch.n_threads = local_model.default_threads()
        params.verbosity = -1
        params.warmup = False
        params.api_keys = [key := "bench"]
        if template is not None:
            params.chat_template = template
        self.key = key
        self.server = xllamacpp.Server(params)
        self.address = str(self.server.listening_address)

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            self.address + path,
            json.dumps(body).encode(),
            {"Content-Type": "application/json", "Authorization": f"Bearer {self.key}"},
        )
        with urllib.request.urlopen(request, timeout=900) as response:
            return json.load(response)

    def chat(self, messages: list[dict[str, Any]], tools: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "messages": messages,
            "temperature": 0,
            "seed": SEED,
            "max_tokens": MAX_TOKENS,
            "cache_prompt": True,
        }
        if tools:
            body["tools"] = TOOL_SPECS
        return self.post("/v1/chat/completions", body)["choices"][0]["message"]

    def complete(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """A model without a chat template: the plain transcript the local provider sends it."""
        body = {
            "prompt": local_model.plain_prompt(messages),
            "stop": ["\nuser:"],
            "temperature": 0,
            "seed": SEED,
            "n_predict": MAX_TOKENS,
            "cache_prompt": True,
        }
        return {"role": "assistant", "content": self.post("/completion", body)["content"]}


def call_tool(name: str, arguments: dict[str, Any], ns: dict[str, Any]) -> tuple[str, bool]:
    """Run one call as agent mode would (approval given): its result text and whether it ran."""
    if name == RUN_PYTHON:
        code = arguments.get("code")
        if not isinstance(code, str) or not code.strip():
            return "error: run_python takes the code as a non-empty string", False
        run = asyncio.run(run_approved(code, ns))
        return run.for_model(2_000), not run.failed
    try:
        return NotebookTools(NotebookContext(ns)).call(name, arguments), True
    except ToolError as exc:
        return f"error: {exc}", False


def native_task(server: Server, task: Task, index: int) -> Outcome:
    outcome = Outcome(index)
    ns = copy.deepcopy(namespace())
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": NATIVE_SYSTEM},
        {"role": "user", "content": task.prompt},
    ]
    reply = server.chat(messages, tools=True)
    outcome.first_reply = reply.get("content") or ""
    calls = reply.get("tool_calls") or []
    if not calls:
        outcome.answer = outcome.first_reply
    else:
        results = []
        for call in calls:
            name = call["function"]["name"]
            outcome.calls.append(f"{name}({call['function'].get('arguments', '')})")
            try:
                arguments = json.loads(call["function"].get("arguments") or "{}")
                assert isinstance(arguments, dict)
            except (ValueError, AssertionError):
                results.append((call, "error: the arguments are not a JSON object", False))
                continue
            outcome.well_formed = True
            outcome.right_tool |= name in task.tools
            text, ran = call_tool(name, arguments, ns)
            outcome.ran |= ran
            results.append((call, text, ran))
        messages.append({"role": "assistant", "content": reply.get("content") or "", "tool_calls": calls})
        messages += [{"role": "tool", "tool_call_id": c.get("id", ""), "content": t} for c, t, _ in results]
        outcome.answer = server.chat(messages, tools=True).get("content") or ""
    return judge(task, outcome)


def text_task(server: Server, task: Task, index: int, chat: bool, example: bool = False) -> Outcome:
    outcome = Outcome(index)
    ns = copy.deepcopy(namespace())
    ask: Callable[[list[dict[str, Any]]], dict[str, Any]] = (
        (lambda m: server.chat(m, tools=False)) if chat else server.complete
    )
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": TEXT_SYSTEM},
        *(EXAMPLE if example else []),
        {"role": "user", "content": task.prompt},
    ]
    first = ask(messages).get("content") or ""
    outcome.first_reply = first
    block = RUN_BLOCK.search(first)
    if block is None:
        outcome.answer = first
    else:
        code = block.group(1)
        outcome.well_formed = True
        outcome.right_tool = RUN_PYTHON in task.tools
        outcome.calls.append(f"run_python({code!r})")
        text, outcome.ran = call_tool(RUN_PYTHON, {"code": code}, ns)
        messages += [
            {"role": "assistant", "content": first},
            {"role": "user", "content": f"Output of your code:\n{text}\n\nNow answer: {task.prompt}"},
        ]
        outcome.answer = ask(messages).get("content") or ""
    return judge(task, outcome)


def judge(task: Task, outcome: Outcome) -> Outcome:
    """Answered (after a call that ran) or guessed; what a lenient protocol would have run."""
    low = outcome.answer.lower()
    right = all(fact.lower() in low for fact in task.expect)
    outcome.answered = right and outcome.ran
    outcome.guessed = right and not outcome.ran
    blocks = CODE_BLOCK.findall(outcome.first_reply)
    outcome.code_block = bool(blocks)
    outcome.clobbers = any(USER_NAMES & assigned(block) for block in blocks)
    return outcome


def assigned(code: str) -> set[str]:
    """Names a block binds at top level (a syntax error binds nothing)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


CONDITIONS = ("native", "native-hermes", "text", "text-example")
KEYS = ("well_formed", "right_tool", "ran", "answered", "guessed", "code_block", "clobbers")


def run(
    models: list[str], tasks: list[Task], out: Path = OUT, conditions: tuple[str, ...] = CONDITIONS
) -> list[dict[str, Any]]:
    from acytoo_magic.providers import model_files

    rows = []
    for model in models:
        path = local_model.BUNDLED[model]()
        has_template = model_files.has_chat_template(path)
        for condition in conditions:
            if condition == "native" and not has_template:
                continue  # a base model: nothing of its own to render tools with
            server = Server(path, HERMES_TEMPLATE if condition == "native-hermes" else None)
            outcomes = []
            for index, task in enumerate(tasks):
                started = time.monotonic()
                if condition.startswith("text"):
                    outcome = text_task(server, task, index, has_template, condition == "text-example")
                else:
                    outcome = native_task(server, task, index)
                outcome.seconds = time.monotonic() - started
                outcomes.append(outcome)
                print(
                    f"{model} {condition} {index}: {outcome.calls or '-'} answered={outcome.answered}",
                    file=sys.stderr,
                )
            del server
            rows.append(
                {
                    "model": model,
                    "condition": condition,
                    "tasks": len(tasks),
                    "outcomes": [asdict(o) for o in outcomes],
                }
            )
            save(rows, out)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | how | well-formed call | right tool | ran without error | answered | right by guessing "
        "| plain code block | ...rebinding the user's data |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        n = row["tasks"]
        counts = [sum(o[key] for o in row["outcomes"]) for key in KEYS]
        lines.append(
            f"| {row['model']} | {row['condition']} | " + " | ".join(f"{c}/{n}" for c in counts) + " |"
        )
    return "\n".join(lines)


def save(rows: list[dict[str, Any]], out: Path = OUT) -> None:
    """Merge ``rows`` into the JSON by (model, condition): a run of one model keeps the other's."""
    old = json.loads(out.read_text()).get("rows", []) if out.exists() else []
    mine = {(r["model"], r["condition"]) for r in rows}
    kept = [r for r in old if (r["model"], r["condition"]) not in mine] + rows
    models = list(local_model.BUNDLED)
    kept.sort(key=lambda r: (models.index(r["model"]), CONDITIONS.index(r["condition"])))
    report = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "seed": SEED,
        "temperature": 0,
        "max_tokens": MAX_TOKENS,
        "tasks": [asdict(t) | {"tools": sorted(t.tools)} for t in TASKS],
        "rows": kept,
        "table": table(kept),
    }
    out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="smollm2", help="comma-separated: smollm2, gemma3")
    parser.add_argument("--tasks", type=int, default=len(TASKS), help="the first N tasks only")
    parser.add_argument("--out", type=Path, default=OUT, help="the JSON to write (merged by model and how)")
    parser.add_argument(
        "--how", default=",".join(CONDITIONS), help="comma-separated: " + ", ".join(CONDITIONS)
    )
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    conditions = tuple(c.strip() for c in args.how.split(",") if c.strip())
    if unknown := set(conditions) - set(CONDITIONS):
        parser.error(f"unknown --how: {', '.join(sorted(unknown))}")
    rows = run(models, TASKS[: args.tasks], args.out, conditions)
    print(table(rows))


if __name__ == "__main__":
    main()
