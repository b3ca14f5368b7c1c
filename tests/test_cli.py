"""The ``calibopt`` command: calibrate from files, refuse to clobber, report errors plainly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import calibopt as co
from calibopt.cli import main
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
