"""The tools agent mode offers a model: three that only look things up, and one that runs code.

The read-only tools take a name or a cell number and look it up in the notebook's namespace, its
``In``/``Out`` and the error log; none of them evaluates anything the model wrote, so they need no
approval. ``run_code`` runs Python in the user's namespace and is called only by the agent loop,
after the user approved that exact code (see ``agent``). Every result is bounded text.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import io
import linecache
import re
import types
from collections.abc import Collection, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from .context import NotebookContext, clip, format_error, summarize

RUN_PYTHON = "run_python"
MAX_VARIABLES = 200
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Names IPython puts in every namespace: not the user's variables.
_IPYTHON_NAMES = frozenset({"In", "Out", "exit", "quit", "get_ipython", "open"})


def _function(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    parameters = {"type": "object", "properties": properties, "required": required}
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": parameters},
    }


TOOL_SPECS: list[dict[str, Any]] = [
    _function("list_variables", "List the notebook's variables: name, type, shape or length.", {}, []),
    _function(
        "describe_variable",
        "Summarise one variable by name (a DataFrame: shape, dtypes, nulls, head, describe()).",
        {"name": {"type": "string", "description": "the variable's name, as listed"}},
        ["name"],
    ),
    _function(
        "read_cell",
        "Read a notebook cell by execution count: its input, its output and its error, if any.",
        {"number": {"type": "integer", "description": "the execution count, as in In [n]"}},
        ["number"],
    ),
    _function(
        RUN_PYTHON,
        "Run Python code in the user's notebook namespace. The user sees the code and must approve it "
        "first; they may skip it or stop. Returns stdout, the last expression's value and any traceback.",
        {"code": {"type": "string", "description": "the Python code to run"}},
        ["code"],
    ),
]
READ_ONLY = frozenset(spec["function"]["name"] for spec in TOOL_SPECS) - {RUN_PYTHON}


class ToolError(Exception):
    """A tool call the model got wrong (unknown tool, bad argument): its message goes back to the model."""


def _shape(value: Any) -> str:
    """Shape or length of the common containers; other objects are not probed (a property could run code)."""
    module = type(value).__module__.split(".")[0]
    if module in ("pandas", "numpy") and isinstance(getattr(value, "shape", None), tuple):
        return " × ".join(f"{n:,}" for n in value.shape)
    if isinstance(value, (str, bytes, list, tuple, dict, set, frozenset)):
        return f"length {len(value):,}"
    return ""


def _imported(value: Any) -> bool:
    """A class or function defined outside the notebook (``from x import Y``)."""
    routine = inspect.isclass(value) or inspect.isroutine(value)
    return routine and getattr(value, "__module__", "__main__") != "__main__"


class NotebookTools:
    """The read-only tools over one notebook's context; ``hidden``: names the shell put there itself."""

    def __init__(self, context: NotebookContext, hidden: Collection[str] = ()) -> None:
        self.context = context
        self.hidden = set(hidden) | _IPYTHON_NAMES

    def variables(self) -> dict[str, Any]:
        """The user's variables: private (``_x``), module and IPython's own names left out."""
        return {
            name: value
            for name, value in self.context.namespace.items()
            if not name.startswith("_")
            and name not in self.hidden
            and not isinstance(value, types.ModuleType)
        }

    def list_variables(self) -> str:
        # what the user imported (a class, a function from a package) is not their data
        found = {name: value for name, value in self.variables().items() if not _imported(value)}
        if not found:
            return "no variables yet"
        lines = []
        for name, value in list(found.items())[:MAX_VARIABLES]:
            kind = type(value)
            shape = _shape(value)
            lines.append(f"{name}: {kind.__module__}.{kind.__qualname__}" + (f", {shape}" if shape else ""))
        if len(found) > MAX_VARIABLES:
            lines.append(f"… and {len(found) - MAX_VARIABLES:,} more")
        return clip("\n".join(lines), self.context.budget)

    def describe_variable(self, name: Any) -> str:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ToolError(f"describe_variable takes a variable's name, not {str(name)[:80]!r}")
        found = self.variables()
        if name not in found:
            raise ToolError(f"no variable {name!r}; list_variables shows the names")
        return summarize(found[name], self.context.budget)

    def read_cell(self, number: Any) -> str:
        if isinstance(number, bool) or not isinstance(number, int):
            raise ToolError(f"read_cell takes an execution count (an integer), not {str(number)[:40]!r}")
        source = self.context.source(number)
        if source is None:
            raise ToolError(f"cell {number} has not run in this kernel")
        parts = [f"In [{number}]:\n{source}"]
        outputs = self.context.namespace.get("Out")
        if isinstance(outputs, Mapping) and number in outputs:
            parts.append(f"Out [{number}]:\n{summarize(outputs[number], self.context.budget)}")
        error = self.context.errors.get(number)
        if error is not None:
            parts.append(f"Error:\n{error.text}")
        return clip("\n\n".join(parts), self.context.budget)

    def call(self, name: str, arguments: Mapping[str, Any]) -> str:
        """Run the read-only tool ``name`` (``ToolError`` for anything else, including run_python)."""
        if name == "list_variables":
            return self.list_variables()
        if name == "describe_variable":
            return self.describe_variable(arguments.get("name"))
        if name == "read_cell":
            return self.read_cell(arguments.get("number"))
        raise ToolError(f"no tool {name!r}; the tools are {', '.join(sorted(READ_ONLY | {RUN_PYTHON}))}")


@dataclass
class CodeRun:
    """What running approved code gave: what the model is sent, and what it printed or displayed."""

    stdout: str = ""
    stderr: str = ""
    value: str | None = None  # repr of the last expression's value (None: there was none)
    error: str = ""  # the traceback as text
    rich: list[dict[str, Any]] = field(default_factory=list)  # display() bundles, shown, not sent
    interrupted: bool = False

    @property
    def failed(self) -> bool:
        return bool(self.error)

    def for_model(self, budget: int) -> str:
        """The result as bounded text: stdout, stderr, value, traceback, a note for rich outputs."""
        parts = []
        if self.stdout:
            parts.append(f"stdout:\n{clip(self.stdout, budget // 2)}")
        if self.stderr:
            parts.append(f"stderr:\n{clip(self.stderr, budget // 4)}")
        if self.value is not None:
            parts.append(f"value:\n{clip(self.value, budget // 2)}")
        if self.error:
            parts.append(f"error:\n{self.error}")
        if self.rich:
            kinds = sorted({kind for bundle in self.rich for kind in bundle if kind != "text/plain"})
            parts.append(
                f"note: {len(self.rich)} rich output(s) ({', '.join(kinds) or 'text'}) shown to the user, "
                "not sent"
            )
        if self.interrupted:
            parts.append("interrupted by the user")
        return clip("\n\n".join(parts) or "ran; no output", budget)


_runs = 0


def run_code(
    code: str, namespace: MutableMapping[str, Any], shell: Any = None, budget: int = 2_000
) -> CodeRun:
    """Run ``code`` in ``namespace`` as a cell would: the last expression's value is kept.

    Call it only with code the user approved. Output is captured (stdout, stderr, and, with an
    IPython ``shell``, ``display()`` calls); a kernel interrupt ends it, marked ``interrupted``.
    """
    global _runs
    _runs += 1
    filename = f"<agent-run-{_runs}>"
    linecache.cache[filename] = (len(code), None, code.splitlines(keepends=True), filename)  # tracebacks
    result = CodeRun()
    out, err = io.StringIO(), io.StringIO()
    with contextlib.ExitStack() as stack:
        stack.enter_context(contextlib.redirect_stdout(out))
        stack.enter_context(contextlib.redirect_stderr(err))
        if shell is not None and getattr(shell, "display_pub", None) is not None:
            stack.enter_context(_capture_displays(shell, result.rich))
        try:
            tree = ast.parse(code, filename)
            last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
            exec(compile(tree, filename, "exec"), namespace)  # approved by the user
            if last is not None:
                value = eval(compile(ast.Expression(last.value), filename, "eval"), namespace)
                if value is not None:
                    result.value = _repr(value, budget)
        except KeyboardInterrupt:
            result.interrupted = True
        except BaseException as exc:  # SystemExit too: the user's code, reported
            result.error = format_error(exc, budget)
    result.stdout, result.stderr = out.getvalue(), err.getvalue()
    return result


def _repr(value: Any, budget: int) -> str:
    try:
        return clip(repr(value), budget)
    except Exception as exc:  # a broken __repr__ is the user's, not a failure of the run
        return f"<{type(value).__name__} (repr failed: {type(exc).__name__})>"


@contextlib.contextmanager
def _capture_displays(shell: Any, into: list[dict[str, Any]]) -> Any:
    """Collect ``display()`` bundles while the code runs (the front end shows them after)."""
    from IPython.core.displaypub import CapturingDisplayPublisher

    saved = shell.display_pub
    capture = CapturingDisplayPublisher()
    shell.display_pub = capture
    try:
        yield
    finally:
        shell.display_pub = saved
        into.extend(output.data for output in capture.outputs)
