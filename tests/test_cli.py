"""The ``calibopt`` command: calibrate from files, refuse to clobber, report errors plainly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import calibopt as co
from calibopt.cli import build_parser, main
from calibopt.datasets.survey import survey_sample


@pytest.fixture()
def survey_files(tmp_path):
    s = survey_sample(n_population=20_000, sample_size=600, seed=1)
    data = tmp_path / "units.csv"
    s.sample.rename_axis("rid").reset_index().to_csv(data, index=False)
    rows = [
        {"variable": var, "level": lev, "total": tot}
        for var, levels in s.margins.items()
        for lev, tot in levels.items()
    ]
    rows.append({"variable": "income", "level": None, "total": s.income_total})
    margins = tmp_path / "margins.csv"
    pd.DataFrame(rows).to_csv(margins, index=False)
    return s, data, margins


def test_calibrate_unit_data_and_margins(survey_files, tmp_path, capsys):
    s, data, margins = survey_files
    out = tmp_path / "w.csv"
    code = main(
        [
            "calibrate",
            "--data",
            str(data),
            "--margins",
            str(margins),
            "--weights",
            "pw",
            "--id",
            "rid",
            "--method",
            "raking",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    w = pd.read_csv(out)
    assert list(w.columns) == ["unit", "weight", "g"]
    # same weights as the library call
    mar = dict(s.margins)
    mar["income"] = s.income_total
    ref = co.calibrate(co.problem_from_margins(s.sample, mar, weights="pw"), method="raking")
    np.testing.assert_allclose(w["weight"], ref.weights, rtol=1e-12)
    np.testing.assert_array_equal(w["unit"], np.arange(len(s.sample)))
    assert "optimal" in capsys.readouterr().out
    # an existing output is not replaced without --overwrite
    before = out.read_bytes()
    linear = ["calibrate", "--data", str(data), "--margins", str(margins), "--weights", "pw"]
    linear += ["--method", "linear", "--out", str(out)]
    code = main(linear)
    assert code == 1 and out.read_bytes() == before
    assert "exists" in capsys.readouterr().err
    assert main([*linear, "--overwrite"]) == 0
    assert not np.allclose(pd.read_csv(out)["weight"], w["weight"])


def test_calibrate_matrix_and_totals(tmp_path):
    rng = np.random.default_rng(0)
    X = sp.random(6, 300, density=0.3, random_state=2, format="csr") + sp.vstack(
        [sp.csr_matrix(np.ones((1, 300))), sp.csr_matrix((5, 300))]
    )
    d = rng.uniform(1, 2, 300)
    b = X @ (d * rng.uniform(0.8, 1.25, 300))
    sp.save_npz(tmp_path / "X.npz", sp.csr_matrix(X))
    pd.DataFrame({"name": [f"t{j}" for j in range(6)], "value": b}).to_csv(
        tmp_path / "totals.csv", index=False
    )
    pd.DataFrame({"d": d}).to_csv(tmp_path / "d.csv", index=False)
    out = tmp_path / "w.parquet"
    code = main(
        [
            "calibrate",
            "--matrix",
            str(tmp_path / "X.npz"),
            "--totals",
            str(tmp_path / "totals.csv"),
            "--initial-weights",
            str(tmp_path / "d.csv"),
            "--method",
            "truncated",
            "--ratio-bounds",
            "0.5",
            "2",
            "--out",
            str(out),
            "--diagnostics",
            str(tmp_path / "diag.csv"),
        ]
    )
    assert code == 0
    w = pd.read_parquet(out)["weight"].to_numpy()
    np.testing.assert_allclose(X @ w, b, rtol=1e-10)
    assert np.all(w / d >= 0.5 - 1e-12) and np.all(w / d <= 2 + 1e-12)
    diag = pd.read_csv(tmp_path / "diag.csv")
    assert list(diag["name"]) == [f"t{j}" for j in range(6)]


def test_errors_are_reported_without_traceback(tmp_path, capsys, survey_files):
    _, data, margins = survey_files
    code = main(
        [
            "calibrate",
            "--data",
            str(tmp_path / "missing.csv"),
            "--margins",
            str(margins),
            "--out",
            str(tmp_path / "w.csv"),
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err
    code = main(
        [
            "calibrate",
            "--data",
            str(data),
            "--margins",
            str(margins),
            "--weights",
            "pw",
            "--method",
            "raking",
            "--ratio-bounds",
            "0.99",
            "1.01",
            "--out",
            str(tmp_path / "w.csv"),
        ]
    )
    assert code == 1
    assert "cannot be reached" in capsys.readouterr().err
    assert not (tmp_path / "w.csv").exists()


def test_demo_runs_end_to_end(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "raking" in out and "optimal" in out
    assert (tmp_path / "demo" / "targets.db").is_file()  # the local-area stage's database
    assert "Fit by target group" in out
    assert list((tmp_path / "demo" / "stacked").glob("*.h5"))  # the stacking stage's files
    assert "to the cent" in out and "dollars moved vs truth" in out
    # a second run into the same folder replaces its own files
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0


# ------------------------------------------------------------------ what a new user tripped on
REPO = Path(__file__).resolve().parents[1]


ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))


def run_calibopt(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """``python -m calibopt ARGS`` in a fresh interpreter, with this checkout first."""
    return subprocess.run(
        [sys.executable, "-m", "calibopt", *args], env=ENV, text=True, timeout=300, **kwargs
    )


@pytest.fixture()
def ipf_files(tmp_path):
    """Margins that disagree on the population total (70 by sex, 80 by region): no weights
    meet them all, so ipf stops without success."""
    data = tmp_path / "units.csv"
    pd.DataFrame({"sex": list("mmffm"), "region": list("nsnsn"), "pw": [10.0] * 5}).to_csv(
        data, index=False
    )
    margins = tmp_path / "margins.csv"
    pd.DataFrame(
        {
            "variable": ["sex", "sex", "region", "region"],
            "level": ["m", "f", "n", "s"],
            "total": [40.0, 30.0, 20.0, 60.0],
        }
    ).to_csv(margins, index=False)
    return ["--data", str(data), "--margins", str(margins), "--weights", "pw"]


def test_unsuccessful_ipf_writes_no_weights(tmp_path, capsys, ipf_files):
    out = tmp_path / "w.csv"
    diag = tmp_path / "diag.csv"
    args = ["calibrate", *ipf_files, "--method", "ipf", "--out", str(out)]
    assert main([*args, "--diagnostics", str(diag)]) == 3
    captured = capsys.readouterr()
    assert "stopped" in captured.out and "disagree on the population total" in captured.out
    assert "no weights written" in captured.err and "--write-unsuccessful" in captured.err
    assert not out.exists()
    # the fit per target is written either way: it shows what was missed
    np.testing.assert_allclose(pd.read_csv(diag)["rel_error"].abs().max(), 40 / 35 - 1)
    # asked for explicitly, the weights are written, and the status still says it failed
    assert main([*args, "--write-unsuccessful"]) == 3
    assert "not a success" in capsys.readouterr().out
    units = pd.read_csv(ipf_files[1])
    margins = pd.read_csv(ipf_files[3])
    direct = co.calibrate(co.problem_from_margins(units, margins, weights="pw"), method="ipf")
    assert direct.status == "stopped"
    np.testing.assert_array_equal(pd.read_csv(out)["weight"].to_numpy(), direct.weights)


def test_both_kinds_of_input_are_refused(tmp_path, capsys, ipf_files):
    X = tmp_path / "X.npz"
    sp.save_npz(X, sp.csr_matrix(np.ones((1, 5))))
    totals = tmp_path / "totals.csv"
    pd.DataFrame({"name": ["n"], "value": [5.0]}).to_csv(totals, index=False)
    out = tmp_path / "w.csv"
    code = main(
        ["calibrate", *ipf_files, "--matrix", str(X), "--totals", str(totals), "--out", str(out)]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "--data --margins --weights (unit data + margins) cannot be combined with" in err
    assert "--matrix --totals (matrix + totals)" in err
    assert not out.exists()


@pytest.mark.skipif(os.name != "posix", reason="POSIX pipes and signals")
def test_closed_pipe_is_not_a_traceback(tmp_path):
    db = tmp_path / "t.db"
    assert main(["targets", "synthetic", "--db", str(db)]) == 0
    # `calibopt targets overview | head -0`: the reader is gone before anything is written
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = run_calibopt("targets", "overview", "--db", str(db), stdout=write_end, stderr=-1)
    finally:
        os.close(write_end)
    assert done.stderr == "", done.stderr
    assert done.returncode == 141  # what the shell reports for a command stopped by SIGPIPE


SIGTERM_MID_WRITE = """
import os, signal, sys
import calibopt.stacking.files as stacking_files
from calibopt.cli import main

real = stacking_files.write_csv

def write_then_terminated(frame, path, *args, **kwargs):
    real(frame, path, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGTERM)  # as `kill PID` while the files are being written

stacking_files.write_csv = write_then_terminated
sys.exit(main(["stack", "--size", "tiny", "--subset", "3701", "--out", sys.argv[1]]))
"""


@pytest.mark.skipif(os.name != "posix", reason="POSIX pipes and signals")
def test_sigterm_removes_temporary_files(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", SIGTERM_MID_WRITE, str(tmp_path / "s.h5")],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 143, done.stderr
    assert done.stderr == "calibopt stack: terminated\n"
    assert list(tmp_path.iterdir()) == []  # neither the files nor their temporaries


def test_module_entry_point_and_package_layout():
    done = run_calibopt("--version", capture_output=True)
    assert done.returncode == 0 and done.stdout.startswith("calibopt ")
    commands = build_parser()._subparsers._group_actions[0].choices
    assert sorted(commands) == [
        "allocate",
        "build-matrix",
        "calibrate",
        "compare",
        "demo",
        "methods",
        "stack",
        "targets",
    ]


def test_demo_output_is_ignored_by_git():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    for path in ("calibopt-demo/targets.db", "sub/calibopt-demo/stacked/x.h5"):
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO).returncode == 0


def test_demo_compiles_kernels_before_timing_any_method(tmp_path):
    # an empty numba cache: the kernels compile in a background process while NumPy versions
    # run (calibopt.solvers._kernel_cache), so no stage waits for a compiler; any compiling
    # in this process is said once, before the first stage
    env = dict(ENV, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    done = subprocess.run(
        [sys.executable, "-m", "calibopt", "demo", "--out", str(tmp_path / "demo")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    said = [line for line in lines if line.startswith("compiling numba kernels (first run only):")]
    assert len(said) <= 1 and all(lines.index(line) == 0 for line in said)
    compile_seconds = float(said[0].split(":")[1].removesuffix(" s")) if said else 1.0
    newton = [line.split() for line in lines if " newton " in line and "optimal" in line]
    assert [row[0] for row in newton] == ["linear", "raking", "logit", "truncated"]
    # columns after the solver: status, iterations, seconds
    seconds = [float(row[row.index("newton") + 3]) for row in newton]
    assert max(seconds) < min(0.5, compile_seconds / 2), seconds
    local = next(line for line in lines if line.startswith("raking via newton: optimal in"))
    assert float(local.split(" iterations, ")[1].split(" s;")[0]) < 0.5, local


def test_calibrate_keeps_the_default_non_negative_bounds(tmp_path):
    """Without --bounds the command uses the library's default (w >= 0); 'none none' lifts it."""
    X = np.array([[1.0, 1.0, 1.0], [0.0, 1.0, 2.0]])
    sp.save_npz(tmp_path / "X.npz", sp.csr_matrix(X))
    pd.DataFrame({"name": ["n", "x"], "value": [3.0, 5.5]}).to_csv(
        tmp_path / "totals.csv", index=False
    )
    base = ["calibrate", "--matrix", str(tmp_path / "X.npz"), "--totals"]
    base += [str(tmp_path / "totals.csv"), "--method", "linear", "--out"]
    assert main([*base, str(tmp_path / "a.csv")]) == 0
    w = pd.read_csv(tmp_path / "a.csv")["weight"].to_numpy()
    ref = co.calibrate(co.CalibrationProblem(X, [3.0, 5.5]), method="linear").weights
    np.testing.assert_allclose(w, ref, atol=1e-12)
    assert w.min() >= 0 and w.min() == 0  # the unbounded optimum is negative: the bound binds
    assert main([*base, str(tmp_path / "b.csv"), "--bounds", "none", "none"]) == 0
    w = pd.read_csv(tmp_path / "b.csv")["weight"].to_numpy()
    free = co.calibrate(co.CalibrationProblem(X, [3.0, 5.5], bounds=None), method="linear")
    np.testing.assert_allclose(w, free.weights, atol=1e-12)
    assert w.min() < 0
