"""benchopt runs calibopt's instances and methods (a smoke run of benchmarks/benchopt)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def benchopt_command() -> list[str]:
    exe = Path(sys.executable).with_name("benchopt")
    if exe.is_file():
        return [str(exe)]
    found = shutil.which("benchopt")
    if found is None:
        if IN_CI:
            pytest.fail("the benchopt smoke test needs benchopt: pip install 'calibopt[dev]'")
        pytest.skip("benchopt is not installed (pip install 'calibopt[benchopt]')")
    return [found]


def test_benchopt_smoke_run(tmp_path):
    out = tmp_path / "result.parquet"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(
        [
            *benchopt_command(),
            "run",
            str(ROOT / "benchmarks" / "benchopt"),
            "-d",
            "calibopt-instance[kind=survey-margins,size=tiny]",
            "-s",
            "calibopt[method=[linear,raking]]",
            "-s",
            "calibopt[method=linear,solver=CLARABEL]",
            "-s",
            "calibopt[method=raking,solver=OSQP]",
            "--no-plot",
            "--no-display",
            "--no-html",
            "--no-cache",
            "-r",
            "1",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "raking takes newton" in done.stdout  # the pair raking does not take is skipped
    res = pd.read_parquet(out).set_index(["p_solver_method", "p_solver_solver"])
    assert len(res) == 3
    assert (res["objective_value"] < 1e-9).all()  # max relative target error
    assert (res["objective_misses"] == 0).all()
    # the chi-square distance at the linear optimum: Newton and Clarabel agree
    newton = res.loc[("linear", "default"), "objective_distance"]
    clarabel = res.loc[("linear", "CLARABEL"), "objective_distance"]
    assert abs(newton - clarabel) <= 1e-6 * newton
    # raking's optimum is a different point, farther in chi-square distance
    assert res.loc[("raking", "default"), "objective_distance"] > newton
