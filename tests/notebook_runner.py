"""Execute a notebook of notebooks/ in a fresh kernel for the tests (one runner for all)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NEEDS = ("nbclient", "nbformat", "ipykernel", "matplotlib")


def execute(name: str, tmp_path: Path, *, timeout: int = 300):
    """Run ``notebooks/<name>`` in ``tmp_path``; returns ``(saved, executed, text, images)``:
    the committed notebook, the executed one, all text outputs joined, and the PNG count.
    Fails in CI (skips elsewhere) when the notebook tools are missing."""
    missing = [m for m in NEEDS if importlib.util.find_spec(m) is None]
    if missing:
        if IN_CI:
            pytest.fail(f"notebook tests need {missing} (pip install calibopt[dev])")
        pytest.skip(f"notebook tests need {missing}")
    import nbformat
    from nbclient import NotebookClient

    saved = nbformat.read(NOTEBOOKS / name, as_version=4)
    run = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(
        run, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    texts, images = [], 0
    for cell in run.cells:
        for out in cell.get("outputs", []):
            texts.append(out.get("text", ""))
            data = out.get("data", {})
            texts.append(data.get("text/plain", ""))
            images += "image/png" in data
    return saved, run, "\n".join(texts), images


def code_cells(nb) -> list:
    """The code cells of a notebook."""
    return [c for c in nb.cells if c.cell_type == "code"]
