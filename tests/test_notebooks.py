"""The notebooks run end to end at small sizes (the allocation notebook has its own test,
tests/test_allocation_notebook.py), their outputs are committed cleared, and they print
what they promise."""

from __future__ import annotations

from pathlib import Path

from notebook_runner import code_cells
from notebook_runner import execute as run_notebook


def execute(name: str, tmp_path: Path):
    saved, _, text, images = run_notebook(name, tmp_path, timeout=240)
    assert not any(c.get("outputs") for c in code_cells(saved)), (
        f"{name} must be committed with its outputs cleared"
    )
    return text, images


def test_local_area_walkthrough(tmp_path):
    text, _ = execute("local_area_walkthrough.ipynb", tmp_path)
    assert "MATRIX STRUCTURE" in text
    assert "non-zero only in the target's own state: True" in text
    assert "raking via newton: optimal" in text
    assert "targets read back from the file; max relative error" in text


def test_solver_study(tmp_path):
    text, images = execute("solver_study.ipynb", tmp_path)
    assert "optimal" in text and "reweighted-l1" in text
    assert "report.md" in text and "study.parquet" in text
    assert images >= 2


def test_sparsity_pareto(tmp_path):
    text, images = execute("sparsity_pareto.ipynb", tmp_path)
    assert "l0-mip" in text and "reweighted-l1" in text and "cross-category" in text
    assert images >= 1
