"""Write the example notebooks from this one source, so their cells stay reviewable as code."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent.parent / "notebooks"

QUICKSTART = [
    new_markdown_cell(
        "# acytoo-magic quick start\n\n"
        "Ask from a cell; the answer streams into the output below it, rendered as Markdown.\n\n"
        "With nothing configured, the bundled model (SmolLM2-135M-Instruct, run inside this kernel) "
        "answers when its runtime is installed (`pip install -e '.[local]'` in the clone), and nothing "
        "leaves the machine; without it, the first question says how to choose a backend and sends "
        "nothing. `make demo` runs this notebook that way. To use a server instead, choose it once: "
        "`%acytoo use openai --url http://localhost:11434/v1` (Ollama, or any OpenAI-compatible "
        "server) or `%acytoo use acytoo --url http://HOST:PORT`; the choice is kept for every kernel.\n\n"
        "SmolLM2 has 135M parameters: it shows the tool working, and its answers are often wrong."
    ),
    new_code_cell("%load_ext acytoo_magic"),
    new_markdown_cell("Which backend answers, and why; the other settings in force (secrets are masked):"),
    new_code_cell("%acytoo config"),
    new_markdown_cell(
        "A small table. In a prompt, `{df}` stands for a summary of it: a frame of up to 20 rows "
        "goes whole, a larger one as its columns, null counts, head, tail and statistics."
    ),
    new_code_cell(
        "import pandas as pd\n\n"
        "df = pd.DataFrame({\n"
        "    'region': ['North', 'South', 'South', 'West', 'North', 'West', 'South', 'East'],\n"
        "    'sales': [1200.0, 3400.0, 2900.0, None, 1800.0, 2500.0, 3100.0, 900.0],\n"
        "    'units': [12, 30, 27, 15, 16, 22, 29, 8],\n"
        "})"
    ),
    new_markdown_cell("A first question. The answer streams in place:"),
    new_code_cell("%%acytoo\nWhich region has the highest total sales in {df}?"),
    new_markdown_cell("A follow-up: the history of this notebook's thread is sent with it."),
    new_code_cell("%%acytoo\nHow do I compute the total sales per region with pandas?"),
    new_markdown_cell(
        "`-f code` puts the first code block of the answer into a new cell below (JupyterLab and "
        "Notebook add it; `make demo` adds it to the executed copy). An answer that was cut short "
        "(at the token limit, broken off, or stopped for repeating itself) puts no cell, and says why. "
        "`-o` keeps the text."
    ),
    new_code_cell("%%acytoo -f code -o answer\nWrite code to count the rows per region of df."),
    new_code_cell("print(len(answer), 'characters kept in `answer`')"),
    new_markdown_cell("Named threads keep separate conversations in one notebook:"),
    new_code_cell("%%acytoo -c plotting\nWhich plot shows a distribution best?"),
    new_code_cell("%acytoo threads"),
    new_markdown_cell("The history lists what you typed (`{df}`, not its summary):"),
    new_code_cell("%acytoo history"),
    new_code_cell("%acytoo export -c default quickstart_thread.md"),
]

DATA_ANALYSIS = [
    new_markdown_cell(
        "# Data analysis with acytoo-magic\n\n"
        "Prompts can refer to the notebook: `{name}` expands a variable (a DataFrame of up to 20 rows "
        "goes whole; a larger one becomes its shape, dtypes, null counts, the values of its "
        "low-cardinality columns, head, tail and describe(), never a dump), `{In[n]}`/`{Out[n]}` a "
        "cell's input or output, `{Err}` the last error. `{{` writes a literal brace."
    ),
    new_code_cell("%load_ext acytoo_magic"),
    new_markdown_cell("A small sales data set, built here (no download):"),
    new_code_cell(
        "import numpy as np\n"
        "import pandas as pd\n\n"
        "rng = np.random.default_rng(7)\n"
        "sales = pd.DataFrame({\n"
        "    'month': pd.period_range('2025-01', periods=24, freq='M').repeat(3).astype(str),\n"
        "    'region': ['north', 'south', 'west'] * 24,\n"
        "    'revenue': rng.gamma(4.0, 2500.0, 72).round(2),\n"
        "    'units': rng.integers(20, 200, 72),\n"
        "})\n"
        "sales.loc[[5, 17, 40], 'revenue'] = np.nan\n"
        "sales.head()"
    ),
    new_markdown_cell("Ask about it: the prompt carries a compact summary of `sales`."),
    new_code_cell("%%acytoo\nSummarise this data set and say what to check first: {sales}"),
    new_markdown_cell("Ask for a plot; `-f code` puts the code of the answer into a new cell."),
    new_code_cell("%%acytoo -f code --context sales\nWrite code to plot monthly revenue per region."),
    new_markdown_cell("A typo raises an error..."),
    new_code_cell(
        "sales.groupby('region')['revenu'].sum()",
        metadata={"tags": ["raises-exception"]},
    ),
    new_markdown_cell(
        "...and `%acytoo explain` sends that cell's code, its traceback and summaries of the data it "
        "uses (here `sales`), asking for the cause and a fix; not the thread's earlier exchanges "
        "(`--thread` sends them too)."
    ),
    new_code_cell("%acytoo explain"),
]

CHAT_WIDGET = [
    new_markdown_cell(
        "# Chat widget\n\n"
        "The same streaming answers as `%%acytoo`, in a chat. Enter sends, Shift+Enter adds a line, "
        "Stop keeps the partial answer. The widget's thread is this notebook's `demo` thread: "
        "`%%acytoo -c demo` sees what was said here, and the other way round."
    ),
    new_code_cell("%load_ext acytoo_magic"),
    new_code_cell("from acytoo_magic import ChatWidget\n\nchat = ChatWidget('demo')\nchat"),
    new_markdown_cell("The kernel stays free while an answer streams: this cell runs at once."),
    new_code_cell("6 * 7"),
    new_markdown_cell("The magic on the same thread:"),
    new_code_cell("%%acytoo -c demo\nWhat did we talk about in the chat?"),
]


def write(name: str, cells: list) -> None:
    notebook = new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, HERE / name)


def main() -> None:
    HERE.mkdir(exist_ok=True)
    write("quickstart.ipynb", QUICKSTART)
    write("data_analysis.ipynb", DATA_ANALYSIS)
    write("chat_widget.ipynb", CHAT_WIDGET)


if __name__ == "__main__":
    main()
