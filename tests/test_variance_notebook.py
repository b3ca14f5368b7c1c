"""The variance-under-sparsity notebook runs end to end (small version) and keeps its promises."""

from __future__ import annotations

import re
from pathlib import Path

from notebook_runner import code_cells, execute


def test_notebook_executes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CALIBOPT_NOTEBOOK_SMALL", "1")  # the kernel inherits it: small sizes
    saved, _, text, _ = execute("variance_under_sparsity.ipynb", tmp_path)
    # the dense bootstrap agrees with the linearised SE up to the noise of 6 replicates
    ratios = re.search(r"bootstrap SE / linearised SE: income ([\d.]+), employed ([\d.]+)", text)
    assert ratios and all(0.4 < float(r) < 2.5 for r in ratios.groups())
    worse = re.search(r"larger SE than the dense calibration: (\d+) of (\d+)", text)
    assert worse and int(worse.group(1)) >= int(worse.group(2)) // 2
    assert "median over districts of SE / dense SE: " in text
    # the saved copy was executed (outputs committed) at the full size
    code = code_cells(saved)
    assert [c.get("execution_count") for c in code] == list(range(1, len(code) + 1))
    assert "40 bootstrap replicates per method" in "".join(
        o.get("text", "") for c in code for o in c.get("outputs", [])
    )
