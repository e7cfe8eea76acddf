"""The example notebooks, executed through nbclient in a real kernel against the local server."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.notebook
NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def execute(name: str, tmp_path: Path) -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    return notebook


def outputs_text(cell) -> str:
    parts = []
    for output in cell.outputs:
        parts.append(output.get("text", ""))
        parts.append(output.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def test_quickstart_runs_and_streams_answers(server, history_db, monkeypatch, tmp_path):
    monkeypatch.setenv("ACYTOO_URL", server.url)
    monkeypatch.setenv("ACYTOO_HISTORY_DB", str(history_db))
    monkeypatch.setenv("JPY_SESSION_NAME", "quickstart.ipynb")
    notebook = execute("quickstart.ipynb", tmp_path)
    cells = {
        cell.source.splitlines()[0] if cell.source else "": cell
        for cell in notebook.cells
        if cell.cell_type == "code"
    }
    follow_up = next(c for c in notebook.cells if c.source.startswith("%%acytoo\nHow do I compute"))
    assert 'Before that you said: "Which region has the highest total sales in pandas.DataFrame: 8 rows' in (
        outputs_text(follow_up)
    )
    # the history lists the question as typed, {df} and all
    assert "Which region has the highest total sales in {df}?" in outputs_text(cells["%acytoo history"])
    assert "characters kept in `answer`" in outputs_text(
        cells["print(len(answer), 'characters kept in `answer`')"]
    )
    assert "plotting: 2 messages" in outputs_text(cells["%acytoo threads"])
    assert (tmp_path / "quickstart_thread.md").read_text().count("## user") == 3


def test_data_analysis_notebook_summarises_plots_and_explains(server, history_db, monkeypatch, tmp_path):
    monkeypatch.setenv("ACYTOO_URL", server.url)
    monkeypatch.setenv("ACYTOO_HISTORY_DB", str(history_db))
    monkeypatch.setenv("JPY_SESSION_NAME", "data_analysis.ipynb")
    execute("data_analysis.ipynb", tmp_path)
    prompts = [r["json"]["messages"][-1]["content"] for r in server.requests]
    assert "pandas.DataFrame: 72 rows × 4 columns" in prompts[0] and "revenue: float64, 3 null" in prompts[0]
    assert "### sales\npandas.DataFrame" in prompts[1]
    assert (
        "sales.groupby('region')['revenu'].sum()" in prompts[2]
        and "KeyError: 'Column not found: revenu'" in prompts[2]
    )
