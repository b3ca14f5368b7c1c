"""The notebooks run end to end at small sizes (the allocation notebook has its own test,
tests/test_allocation_notebook.py), their outputs are committed cleared, and they print
what they promise."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NEEDS = ("nbclient", "nbformat", "ipykernel", "matplotlib")


def execute(name: str, tmp_path: Path):
    missing = [m for m in NEEDS if importlib.util.find_spec(m) is None]
    if missing:
        if IN_CI:
            pytest.fail(f"notebook tests need {missing} (pip install calibopt[dev])")
        pytest.skip(f"notebook tests need {missing}")
    import nbformat
    from nbclient import NotebookClient

    saved = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert not any(c.get("outputs") for c in saved.cells if c.cell_type == "code"), (
        f"{name} must be committed with its outputs cleared"
    )
    NotebookClient(
        saved, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    texts, images = [], 0
    for cell in saved.cells:
        for out in cell.get("outputs", []):
            texts.append(out.get("text", ""))
            data = out.get("data", {})
            texts.append(data.get("text/plain", ""))
            images += "image/png" in data
    return "\n".join(texts), images


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
