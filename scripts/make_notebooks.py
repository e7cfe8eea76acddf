"""Write the example notebooks from this one source, so their cells stay reviewable as code."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent.parent / "notebooks"

QUICKSTART = [
    new_markdown_cell(
        "# acytoo-magic quick start\n\n"
        "Ask from a cell; the answer streams into the output below it, rendered as Markdown.\n"
        "`make demo` runs this notebook against the local protocol server "
        "(`python -m acytoo_magic.server`); set `ACYTOO_URL` (or `%config AcytooMagics.url`) "
        "to point it at any Acytoo-protocol server, or `-p openai` for an OpenAI-compatible one."
    ),
    new_code_cell("%load_ext acytoo_magic"),
    new_markdown_cell("The settings in force (secrets are masked):"),
    new_code_cell("%acytoo config"),
    new_markdown_cell("A first question. The answer streams in place:"),
    new_code_cell("%%acytoo\nWhat does a pandas groupby return when a group key is NaN?"),
    new_markdown_cell("A follow-up: the history of this notebook's thread is sent with it."),
    new_code_cell("%%acytoo\nAnd how do I keep those rows?"),
    new_markdown_cell(
        "`-f code` puts the first code block of the answer into a new cell; `-o` keeps the text."
    ),
    new_code_cell("%%acytoo -f code -o answer\nWrite code to count rows per group."),
    new_code_cell("print(len(answer), 'characters kept in `answer`')"),
    new_markdown_cell("Named threads keep separate conversations in one notebook:"),
    new_code_cell("%%acytoo -c plotting\nWhich plot shows a distribution best?"),
    new_code_cell("%acytoo threads"),
    new_code_cell("%acytoo history -c plotting"),
    new_code_cell("%acytoo export -c default quickstart_thread.md"),
]


def main() -> None:
    HERE.mkdir(exist_ok=True)
    notebook = new_notebook(cells=QUICKSTART)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, HERE / "quickstart.ipynb")


if __name__ == "__main__":
    main()
