"""Notebook context in prompts: ``{name}``, ``{In[n]}``, ``{Out[n]}``, ``{Err}``/``{Err[n]}``, as summaries.

A DataFrame of up to 20 rows is shown whole; a larger one becomes its shape, dtypes, null counts,
the values of low-cardinality columns, head, tail and describe(), not ten million rows;
anything else becomes a repr cut to a limit. pandas and numpy are used only when already imported
by the user (a variable of their type cannot exist otherwise), so neither is a dependency.
"""

from __future__ import annotations

import os
import re
import reprlib
import sys
import time
import traceback
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ContextError
from .outbound import looks_secret

SUMMARY_CHARS = 2_000
MAX_TRACEBACK_CHARS = 50_000  # kept per failed cell; a prompt takes the end of it, within its limit
SAMPLE_ROWS = 100_000
WHOLE_ROWS = 20  # a frame or series this short is shown whole
LOW_CARDINALITY = 20  # a column with at most this many distinct values lists them, with counts
_REFERENCE = re.compile(
    r"\{\{|\}\}|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)(?:\[(?P<index>-?\d+)\])?\}"
)


def is_environment(value: Any) -> bool:
    """Whether ``value`` is the process environment (``os.environ``, or a copy of it)."""
    if value is os.environ or isinstance(value, type(os.environ)):
        return True
    if not isinstance(value, dict) or not 8 <= len(value) <= 10_000:
        return False
    return sum(isinstance(k, str) and k in os.environ for k in value) >= 0.8 * len(value)


@dataclass(frozen=True)
class CellError:
    """A failed cell's error as text: the exception itself would keep every frame's locals alive."""

    count: int | None
    text: str


class ErrorLog:
    """The newest failed cells' tracebacks as text, by execution count (``{Err[n]}``, ``explain``).

    Filled by a ``post_run_cell`` hook. Only formatted text is kept, and only ``keep`` entries:
    a failed cell's locals (a large DataFrame, say) are freed as they would be without us.
    """

    def __init__(self, ignored: tuple[type[BaseException], ...] = (), keep: int = 20) -> None:
        self.ignored = ignored
        self.keep = keep
        self.errors: dict[int, str] = {}

    def post_run_cell(self, result: Any) -> None:
        error = getattr(result, "error_in_exec", None)
        count = getattr(result, "execution_count", None)
        if error is not None and count is not None and not isinstance(error, self.ignored):
            self.errors[count] = format_error(error, MAX_TRACEBACK_CHARS)
            while len(self.errors) > self.keep:
                del self.errors[min(self.errors)]

    def get(self, count: int | None = None) -> CellError | None:
        """Cell ``count``'s error, or the newest one (falling back to IPython's ``sys.last_value``)."""
        if count is not None:
            text = self.errors.get(count)
            return CellError(count, text) if text is not None else None
        if self.errors:
            newest = max(self.errors)
            return CellError(newest, self.errors[newest])
        last = getattr(sys, "last_value", None)
        return CellError(None, format_error(last, MAX_TRACEBACK_CHARS)) if last is not None else None


def clip(text: str, limit: int, keep_end: bool = False) -> str:
    """Cut ``text`` to ``limit`` characters, saying how much was left out; ``keep_end`` keeps the
    end instead of the start (a traceback's cause is at its end)."""
    if len(text) <= limit:
        return text
    keep = max(0, limit - 40)
    if keep_end:
        return f"… [{len(text) - keep:,} earlier characters not shown]\n{text[-keep:]}"
    return f"{text[:keep]}\n… [{len(text) - keep:,} more characters not shown]"


def _is_ipython_frame(filename: str) -> bool:
    return f"{os.sep}IPython{os.sep}" in filename


def format_error(error: BaseException, limit: int = SUMMARY_CHARS) -> str:
    """The traceback as plain text; when too long, its end (where the cause is) is what is kept.

    IPython's own frames (running the cell, dispatching a magic such as ``%%time``) are left out:
    they are not the user's code and only cost the model's attention.
    """
    report = traceback.TracebackException.from_exception(error)
    user_frames = [frame for frame in report.stack if not _is_ipython_frame(frame.filename)]
    report.stack = traceback.StackSummary.from_list(user_frames)
    return clip("".join(report.format()).rstrip(), limit, keep_end=True)


def _module_of(obj: Any) -> str:
    return type(obj).__module__.split(".")[0]


def _same(text: str) -> str:
    return text


ENVIRONMENT = "<the process environment: not shown>"


def summarize(obj: Any, limit: int = SUMMARY_CHARS, mask: Callable[[str], str] = _same) -> str:
    """A compact description, within ``limit`` characters, of a value for a prompt.

    ``mask`` (the outbound boundary's) is applied to the whole text before it is cut, and to each
    string before ``repr`` escapes or shortens it: a secret is never cut in part.
    """
    if is_environment(obj):
        return ENVIRONMENT
    module = _module_of(obj)
    if module == "pandas":
        pd = sys.modules["pandas"]
        if isinstance(obj, pd.DataFrame):
            return clip(mask(_summarize_frame(obj, limit, mask)), limit)
        if isinstance(obj, pd.Series):
            return clip(mask(_summarize_series(obj, mask)), limit)
    if module == "numpy" and hasattr(obj, "shape") and hasattr(obj, "dtype"):
        return clip(mask(_summarize_array(obj)), limit)
    if isinstance(obj, str):
        return clip(mask(obj), limit)
    if isinstance(obj, (dict, list, tuple, set, frozenset)):
        shown = bounded_repr(obj, limit, 80, mask)
        return clip(f"{type(obj).__name__} of length {len(obj)}: {shown}", limit)
    return bounded_repr(obj, limit, mask=mask)


REPR_SECONDS = 1.0  # the Python time a user's __repr__ may take for a prompt or a tool result


class _Short(reprlib.Repr):
    """``reprlib`` that masks before it shortens, shows other objects' own ``repr`` (cut), says a
    failing ``__repr__`` fails (``reprlib`` hides it behind ``<X instance at 0x…>``), cuts bytes
    before their repr is made, and never shows the process environment."""

    def __init__(self, mask: Callable[[str], str]) -> None:
        super().__init__()
        self.mask = mask

    def _cut(self, text: str) -> str:
        return text if len(text) <= self.maxother else text[: self.maxother - 3] + "..."

    def repr_str(self, x: str, level: int) -> str:
        return super().repr_str(self.mask(str(x)), level)

    def repr_bytes(self, x: bytes, level: int) -> str:
        head = bytes(x[: max(1, self.maxother // 4)])  # a byte's repr takes up to 4 characters
        if len(head) == len(x):
            return self._cut(self.mask(repr(head)))
        size = f"… ({len(x):,} bytes)"
        return self.mask(repr(head))[: max(8, self.maxother - len(size))] + size

    repr_bytearray = repr_memoryview = repr_bytes  # type: ignore[assignment]

    def repr_dict(self, x: dict[Any, Any], level: int) -> str:
        return ENVIRONMENT if is_environment(x) else super().repr_dict(x, level)

    def repr__Environ(self, x: Any, level: int) -> str:
        return ENVIRONMENT

    def repr_instance(self, x: Any, level: int) -> str:
        if is_environment(x):
            return ENVIRONMENT
        if isinstance(x, str):  # a str subclass: as a str, masked before it is cut
            return self.repr_str(x, level)
        return self._cut(self.mask(repr(x)))


class _Overtime(BaseException):
    """Raised inside a ``__repr__`` that ran too long; a BaseException, so ``except Exception`` in
    the user's code does not swallow it."""


def bounded_repr(
    obj: Any, limit: int = SUMMARY_CHARS, item: int | None = None, mask: Callable[[str], str] = _same
) -> str:
    """``repr(obj)``, cut to ``limit`` characters and stopped after ``REPR_SECONDS`` of Python code.

    A ``__repr__`` is the user's code: one that loops or builds a gigabyte string must not hang the
    kernel's loop or flood a prompt. Containers show their first ten items (each ``item`` characters
    at most); strings and bytes are cut before their repr is made; every string is masked first.
    """
    short = _Short(mask)
    short.maxlist = short.maxdict = short.maxset = short.maxtuple = short.maxfrozenset = 10
    short.maxdeque = short.maxarray = 10
    short.maxstring = short.maxother = item or limit
    deadline = time.monotonic() + REPR_SECONDS

    def trace(frame: Any, event: str, arg: Any) -> Any:
        if time.monotonic() > deadline:
            raise _Overtime
        return trace

    previous = sys.gettrace()
    sys.settrace(trace)
    try:
        text = short.repr(obj)
    except _Overtime:
        text = f"<{type(obj).__name__} (its repr ran past {REPR_SECONDS:g} s: not shown)>"
    except Exception as exc:  # a broken __repr__ must not break the prompt
        text = f"<{type(obj).__name__} (repr failed: {type(exc).__name__})>"
    finally:
        sys.settrace(previous)
    return clip(mask(text), limit)


def _sample(data: Any) -> tuple[Any, str]:
    """Every k-th row of a long frame or series: deterministic, and O(sample) unlike ``.sample()``."""
    rows = len(data)
    if rows <= SAMPLE_ROWS:
        return data, ""
    step = -(-rows // SAMPLE_ROWS)
    return data.iloc[::step], f" (on {len(range(0, rows, step)):,} evenly spaced rows)"


def masked_rows(frame: Any, mask: Callable[[str], str]) -> Any:
    """The few rows a summary shows, with each string masked whole before pandas cuts it to its
    column width, and a secret-named column's values not shown at all."""
    if mask is _same:
        return frame
    shown = frame.copy()
    for column in shown.columns:
        if looks_secret(str(column)):
            shown[column] = f"[secret: column {column}]"
        elif shown[column].dtype == object:
            shown[column] = shown[column].map(lambda v: mask(v) if isinstance(v, str) else v)
    return shown


def _distinct(column: Any) -> str:
    """", 3 distinct: South 3, North 2, West 2" for a column of few values; "" otherwise (or unhashable)."""
    try:
        counts = column.value_counts(dropna=True)
    except TypeError:  # lists or dicts in an object column
        return ""
    if len(counts) > LOW_CARDINALITY or len(counts) == len(column.dropna()) > 1:
        return ""  # many values, or every value distinct: their counts say nothing more
    shown = ", ".join(f"{value!s} {count:,}" for value, count in counts.head(8).items())
    more = ", …" if len(counts) > 8 else ""
    return f", {len(counts)} distinct: {shown}{more}"


def _columns(df: Any, sample: Any) -> list[str]:
    """A line a column: dtype and nulls (of every row), and the values with their counts where
    there are few (in ``sample``: every k-th row of a long frame)."""
    nulls = df.isna().sum()
    shown = list(df.columns[:40])
    lines = ["columns (dtype, nulls, distinct values where few):"]
    for name in shown:
        kind = df[name].dtype.kind
        few = _distinct(sample[name]) if kind not in "fc" and not looks_secret(str(name)) else ""
        lines.append(f"  {name!s}: {df[name].dtype}, {int(nulls[name]):,} null{few}")
    if len(df.columns) > len(shown):
        lines.append(f"  … and {len(df.columns) - len(shown)} more columns")
    return lines


def _summarize_frame(df: Any, limit: int, mask: Callable[[str], str] = _same) -> str:
    """A small frame whole, with its dtypes and null counts (a model can then answer "which region
    sells most" from it); a larger one by its columns (nulls, and the values of low-cardinality
    ones), head, tail and describe(), dropping detail until it fits ``limit``. The rows shown are
    masked before pandas cuts them (``masked_rows``)."""
    rows, cols = df.shape
    title = f"pandas.DataFrame: {rows:,} rows × {cols} columns"
    table = {"max_cols": 12, "max_colwidth": 30}
    if rows <= WHOLE_ROWS:  # the rows say the rest; a short prompt is read sooner by a small model
        shown = list(df.columns[:40])
        nulls = df.isna().sum()
        dtypes = ", ".join(f"{name!s} {df[name].dtype}" for name in shown)
        missing = ", ".join(f"{name!s} {int(nulls[name]):,}" for name in shown if nulls[name]) or "none"
        more = f" (and {cols - len(shown)} more columns)" if cols > len(shown) else ""
        rows_shown = masked_rows(df, mask).to_string(**table)
        whole = "\n".join([title, f"dtypes: {dtypes}{more}", f"nulls: {missing}", rows_shown])
        if len(whole) <= limit:
            return whole
    sample, note = _sample(df)
    columns = _columns(df, sample)
    if note:
        columns[0] = columns[0].replace("distinct values where few", f"distinct values where few{note}")
    numeric = sample.select_dtypes("number")
    describe = (
        [f"describe(){note}:", numeric.describe().round(4).to_string(max_cols=12)]
        if numeric.shape[1]
        else []
    )
    text = ""
    for ends, extra in ((5, describe), (5, []), (3, []), (2, [])):
        parts = [title, *columns]
        if rows > 2 * ends:
            parts += [f"head({ends}):", masked_rows(df.head(ends), mask).to_string(**table)]
            parts += [f"tail({ends}):", masked_rows(df.tail(ends), mask).to_string(**table)]
        else:
            parts += [f"all {rows} rows:", masked_rows(df, mask).to_string(**table)]
        text = "\n".join([*parts, *extra])
        if len(text) <= limit:
            break
    return text


def _summarize_series(series: Any, mask: Callable[[str], str] = _same) -> str:
    rows = len(series)
    nulls = int(series.isna().sum())
    sample, note = _sample(series)
    secret = looks_secret(str(series.name))
    few = _distinct(sample) if series.dtype.kind not in "fc" and not secret else ""
    lines = [f"pandas.Series {series.name!r}: {rows:,} values, dtype {series.dtype}, {nulls:,} null{few}"]
    def shown(part: Any) -> str:  # masked before pandas cuts it
        return str(masked_rows(part.to_frame(), mask).iloc[:, 0].to_string())

    if rows <= WHOLE_ROWS:
        lines += [f"all {rows} values:", shown(series)]
    else:
        lines += ["head(5):", shown(series.head(5)), "tail(5):", shown(series.tail(5))]
        if series.dtype.kind in "iufb":
            lines += [f"describe(){note}:", sample.describe().round(4).to_string()]
    return "\n".join(lines)


def _summarize_array(array: Any) -> str:
    np = sys.modules["numpy"]
    lines = [f"numpy.ndarray: shape {array.shape}, dtype {array.dtype}, {array.size:,} elements"]
    if array.size and array.dtype.kind in "iuf":
        with np.errstate(all="ignore"):
            values = array.astype("float64", copy=False)
            nans = int(np.isnan(values).sum()) if array.dtype.kind == "f" else 0
            lines.append(
                f"min {np.nanmin(values):.6g}, max {np.nanmax(values):.6g}, mean {np.nanmean(values):.6g}, "
                f"std {np.nanstd(values):.6g}, NaN {nans:,}"
            )
    with np.printoptions(threshold=20, edgeitems=3, precision=4):
        lines.append(repr(array))
    return "\n".join(lines)


@dataclass
class NotebookContext:
    """What a prompt may refer to: the user namespace (with ``In``/``Out``) and the error log."""

    namespace: Mapping[str, Any]
    errors: ErrorLog = field(default_factory=ErrorLog)
    summary_chars: int = SUMMARY_CHARS  # what one summary, source or tool result may take
    # What the user typed, by cell (IPython's ``input_hist_raw``); ``In`` holds the transformed
    # code (``get_ipython().run_line_magic(...)``), which is not what anyone wrote.
    raw_inputs: Sequence[str] | None = None
    # The outbound boundary's mask, applied to whole texts and values before they are cut.
    mask: Callable[[str], str] = _same

    def source(self, count: int) -> str | None:
        """Cell ``count``'s input as typed, magics included."""
        for inputs in (self.raw_inputs, self.namespace.get("In")):
            if isinstance(inputs, Sequence) and 0 < count < len(inputs):
                return str(inputs[count])
        return None

    def lookup(self, name: str, index: str | None) -> str:
        if name == "Err":
            return self.error_text(None if index is None else int(index))
        if name in ("In", "Out") and index is not None:
            return self._history(name, int(index))
        head, *attributes = name.split(".")
        if head not in self.namespace:
            raise ContextError(
                f"{{{name}}}: no variable {head!r} in the notebook (write {{{{ for a literal brace)"
            )
        private = [part for part in (head, *attributes) if part.startswith("_")]
        if private:  # a dunder chain reaches any module's globals: os.environ, keys, the shell
            raise ContextError(
                f"{{{name}}}: {private[0]!r} is private; a prompt takes variables and their public "
                "attributes only"
            )
        value = self.namespace[head]
        for attribute in attributes:
            if isinstance(value, types.ModuleType):  # {os.environ}, {json.sys.modules}
                raise ContextError(
                    f"{{{name}}}: {head!r} is a module; a prompt takes your variables, not a module's"
                )
            try:
                value = getattr(value, attribute)
            except AttributeError:
                raise ContextError(f"{{{name}}}: {head!r} has no attribute {attribute!r}") from None
        if is_environment(value):
            raise ContextError(
                f"{{{name}}}: holds the process environment (os.environ), which is not sent; name the "
                "one value you mean instead"
            )
        if index is not None:
            try:
                value = value[int(index)]
            except Exception as exc:
                raise ContextError(f"{{{name}[{index}]}}: {type(exc).__name__}") from None
        return self.summary(value)

    def summary(self, value: Any) -> str:
        """``summarize`` within this context's limit, masked before anything is cut."""
        return summarize(value, self.summary_chars, self.mask)

    def _history(self, name: str, index: int) -> str:
        if name == "In":
            source = self.source(index)
            if source is None:
                raise ContextError(f"{{In[{index}]}}: cell {index} has no input")
            return clip(self.mask(source), self.summary_chars)
        try:
            value = self.namespace.get("Out")[index]  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            raise ContextError(f"{{Out[{index}]}}: cell {index} has no output") from None
        return self.summary(value)

    def error(self, count: int | None = None) -> CellError:
        found = self.errors.get(count)
        if found is None:
            where = "so far" if count is None else f"in cell {count}"
            raise ContextError(f"no error {where} to refer to")
        return found

    def error_text(self, count: int | None = None) -> str:
        return clip(self.mask(self.error(count).text), self.summary_chars, keep_end=True)

    def expand(self, text: str) -> str:
        """Replace every reference; ``{{``/``}}`` are literal braces, other braces are left alone."""

        def replace(match: re.Match[str]) -> str:
            token = match.group(0)
            if token in ("{{", "}}"):
                return token[0]
            return self.lookup(match["name"], match["index"])

        return _REFERENCE.sub(replace, text)

    def labels(self, text: str) -> list[str]:
        """A short label per reference in ``text`` ("df, 6 × 4", "Err"): what a chat shows of the
        attached context instead of its expanded summaries. Looks nothing up beyond a name's shape."""
        found: list[str] = []
        for match in _REFERENCE.finditer(text):
            if not match["name"]:
                continue  # {{ or }}
            label = match.group(0)[1:-1]
            value = self.namespace.get(match["name"]) if match["index"] is None else None
            shape = getattr(value, "shape", None) if value is not None else None
            if isinstance(shape, tuple) and len(shape) == 2:
                label += f", {shape[0]:,} × {shape[1]:,}"
            elif isinstance(shape, tuple) and len(shape) == 1:
                label += f", {shape[0]:,} values"
            if label not in found:
                found.append(label)
        return found

    def attach(self, names: list[str]) -> str:
        """Summaries of the named variables, as a section appended to the prompt (``--context``)."""
        sections = [f"### {name}\n{self.lookup(name, None)}" for name in names]
        return "\n\nContext from the notebook:\n\n" + "\n\n".join(sections) if sections else ""

    def explain_prompt(self, count: int | None = None) -> str:
        """A prompt asking for the cause and a fix of an error: the error, its cell's code, and
        summaries of the data that code uses (a ``KeyError: 'revenue'`` is answered by the frame's
        columns), each within the limit."""
        error = self.error(count)
        code = self.source(error.count) if error.count is not None else None
        parts = ["This code in my notebook raised an error. Explain the cause briefly and show a fix."]
        if code:
            shown = clip(self.mask(code), self.summary_chars)
            parts.append(f"Code (cell {error.count}):\n```python\n{shown}\n```")
        parts.append(f"Error:\n```\n{self.error_text(error.count)}\n```")
        names = data_used(code or "", self.namespace)
        for name in names[:MAX_EXPLAIN_VARIABLES]:
            share = max(400, self.summary_chars // min(len(names), MAX_EXPLAIN_VARIABLES))
            parts.append(f"`{name}` is:\n```\n{summarize(self.namespace[name], share, self.mask)}\n```")
        return "\n\n".join(parts)


MAX_EXPLAIN_VARIABLES = 3


def data_used(code: str, namespace: Mapping[str, Any]) -> list[str]:
    """The notebook's data a cell's code names, in order: DataFrames, Series and arrays only.

    Strings, dicts and other objects stay out: they are where keys and passwords live, and an
    error about data is explained by the data's shape. The code is read as IPython reads a cell
    (magics transformed first); code that does not parse names nothing.
    """
    import ast

    from IPython.core.inputtransformer2 import TransformerManager

    try:
        tree = ast.parse(TransformerManager().transform_cell(code))
    except (SyntaxError, ValueError):
        return []
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in found and node.id in namespace:
            value = namespace[node.id]
            if _module_of(value) in ("pandas", "numpy") and hasattr(value, "shape"):
                found.append(node.id)
    return found
