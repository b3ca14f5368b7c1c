"""The variance-under-sparsity notebook runs end to end (small version) and keeps its promises."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "variance_under_sparsity.ipynb"
NEEDS = ("nbclient", "nbformat", "ipykernel", "matplotlib")


def test_notebook_executes(tmp_path: Path, monkeypatch) -> None:
    missing = [m for m in NEEDS if importlib.util.find_spec(m) is None]
    if missing:
        if IN_CI:
            pytest.fail(f"notebook test needs {missing} (pip install calibopt[dev])")
        pytest.skip(f"notebook test needs {missing}")
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("CALIBOPT_NOTEBOOK_SMALL", "1")  # the kernel inherits it: small sizes
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    text = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    # the dense bootstrap agrees with the linearised SE up to the noise of 6 replicates
    ratios = re.search(r"bootstrap SE / linearised SE: income ([\d.]+), employed ([\d.]+)", text)
    assert ratios and all(0.4 < float(r) < 2.5 for r in ratios.groups())
    worse = re.search(r"larger SE than the dense calibration: (\d+) of (\d+)", text)
    assert worse and int(worse.group(1)) >= int(worse.group(2)) // 2
    assert "median over districts of SE / dense SE: " in text
    # the saved copy was executed (outputs committed) at the full size
    saved = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in saved.cells if c.cell_type == "code"]
    assert [c.get("execution_count") for c in code] == list(range(1, len(code) + 1))
    assert "40 bootstrap replicates per method" in "".join(
        o.get("text", "")
        for c in saved.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
    )
