"""The allocation-sensitivity notebook runs end to end and keeps its promises."""

from __future__ import annotations

from pathlib import Path

from notebook_runner import code_cells, execute


def test_notebook_executes(tmp_path: Path) -> None:
    saved, _, text, _ = execute("allocation_sensitivity.ipynb", tmp_path)
    assert "every allocation sums to it to the cent" in text
    assert "recursion converged=False after 10 rounds" in text
    assert "Closest to the truth" in text
    # the saved copy was executed (outputs committed)
    assert all(c.get("outputs") for c in code_cells(saved))
