"""The tools agent mode offers a model: three that only look things up, and one that runs code.

The read-only tools take a name or a cell number and look it up in the notebook's namespace, its
``In``/``Out`` and the error log; none of them evaluates anything the model wrote, so they need no
approval. Running code is ``coderun``'s, called only by the agent loop after the user approved
that exact code (see ``agent``). Every result is bounded text, and no user object's ``__repr__``
runs unbounded (``context.bounded_repr``); secrets are masked on the way out (``outbound``).
"""

from __future__ import annotations

import inspect
import re
import types
from collections.abc import Collection, Mapping
from typing import Any

from .context import NotebookContext, bounded_repr, clip, is_environment
from .outbound import looks_secret

RUN_PYTHON = "run_python"
MAX_VARIABLES = 200
QUOTED = 80  # characters of what the model sent that an error quotes back
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


def quoted(value: Any, limit: int = QUOTED) -> str:
    """What the model sent, quoted in an error: its first ``limit`` characters and its length."""
    if not isinstance(value, str):  # JSON the model sent (a 10 MB list): shown short, never whole
        return bounded_repr(value, limit + 20, limit)
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}… ({len(value):,} characters)"


def secret_by_name(name: str, value: Any) -> str:
    """What a tool says instead of a value whose name says it is secret ("" for any other)."""
    if is_environment(value):
        return "the process environment: not shown"
    if looks_secret(name) and not isinstance(value, (types.ModuleType, type)) and not callable(value):
        return "a secret by its name: its value is not shown"
    return ""


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
            shape = secret_by_name(name, value) or _shape(value)
            lines.append(f"{name}: {kind.__module__}.{kind.__qualname__}" + (f", {shape}" if shape else ""))
        if len(found) > MAX_VARIABLES:
            lines.append(f"… and {len(found) - MAX_VARIABLES:,} more")
        return clip("\n".join(lines), self.context.summary_chars)

    def describe_variable(self, name: Any) -> str:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ToolError(f"describe_variable takes a variable's name, not {quoted(name)}")
        found = self.variables()
        if name not in found:
            raise ToolError(f"no variable {quoted(name)}; list_variables shows the names")
        value = found[name]
        if is_environment(value):
            raise ToolError(f"{name} holds the process environment, which is not shown")
        withheld = secret_by_name(name, value)
        if withheld:
            return f"{name}: {type(value).__module__}.{type(value).__qualname__}; {withheld}"
        return self.context.summary(value)

    def read_cell(self, number: Any) -> str:
        if isinstance(number, bool) or not isinstance(number, int):
            raise ToolError(f"read_cell takes an execution count (an integer), not {quoted(number)}")
        source = self.context.source(number)
        if source is None:
            raise ToolError(f"cell {number} has not run in this kernel")
        mask = self.context.mask  # the whole text, before it is cut: no part of a secret is sent
        parts = [f"In [{number}]:\n{mask(source)}"]
        outputs = self.context.namespace.get("Out")
        if isinstance(outputs, Mapping) and number in outputs:
            parts.append(f"Out [{number}]:\n{self.context.summary(outputs[number])}")
        error = self.context.errors.get(number)
        if error is not None:
            parts.append(f"Error:\n{mask(error.text)}")
        return clip("\n\n".join(parts), self.context.summary_chars)

    def call(self, name: str, arguments: Mapping[str, Any]) -> str:
        """Run the read-only tool ``name`` (``ToolError`` for anything else, including run_python)."""
        if name == "list_variables":
            return self.list_variables()
        if name == "describe_variable":
            return self.describe_variable(arguments.get("name"))
        if name == "read_cell":
            return self.read_cell(arguments.get("number"))
        tools = ", ".join(sorted(READ_ONLY | {RUN_PYTHON}))
        raise ToolError(f"no tool {quoted(name)}; the tools are {tools}")
