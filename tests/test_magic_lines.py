"""Line magics in a real kernel: ``{var}`` in every subcommand, the cell numbers history shows, and
what the very first question says when nothing is configured."""

from __future__ import annotations

from pathlib import Path

import pytest
from kernels import Execution

pytestmark = pytest.mark.notebook
NOTEBOOK = "lines.ipynb"


def shown(out: Execution) -> str:
    """Everything the cell showed as text: printed lines and any display's plain text."""
    texts = [c["data"].get("text/plain", "") for c in out.of_type("display_data", "update_display_data")]
    return out.stdout + "".join(texts)


def test_history_numbers_each_exchange_with_the_cell_number_the_user_saw(k):
    numbers = []
    for prompt in ("[[echo]]first", "[[echo]]second"):
        out = k.execute(f"%%acytoo\n{prompt}", cell_id=f"cell-{prompt}")
        assert out.status == "ok"
        numbers.append(out.of_type("execute_input")[0]["execution_count"])  # the cell's In [n]
    assert [m["meta"]["execution_count"] for m in k.history()] == [n for n in numbers for _ in "ua"]
    listing = shown(k.execute("%acytoo history"))
    assert f"In [{numbers[0]}]" in listing and f"In [{numbers[1]}]" in listing
    assert f"In [{numbers[1] + 1}]" not in listing


def test_every_line_subcommand_expands_variables_as_ipython_does(k, tmp_path: Path):
    k.execute("%%acytoo -c notes\n[[echo]]worth keeping")
    target, nested = tmp_path / "notes.md", tmp_path / "nested.json"
    out = k.execute(f"target = {str(target)!r}\nthread = 'notes'\n%acytoo export -c {{thread}} {{target}}")
    assert out.status == "ok", out.error
    assert "worth keeping" in target.read_text()
    # Not awaited (inside %%capture): IPython's own line-magic call expands it as well.
    out = k.execute(f"%%capture\nnested = {str(nested)!r}\n%acytoo export -c $thread {{nested}}")
    assert out.status == "ok", out.error
    assert "worth keeping" in nested.read_text()
    assert not list(tmp_path.glob("{*"))


