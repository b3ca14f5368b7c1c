"""``calibopt stack`` and the stacking demo stage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from calibopt.cli import main
from calibopt.demo.stacking import stacking_demo
from calibopt.stacking import load, verify


@pytest.fixture(scope="module")
def weights(tiny):
    rng = np.random.default_rng(5)
    t = tiny.true_weights
    return np.where(rng.random(t.size) < 0.5, t * rng.uniform(0.5, 1.5, t.size), 0.0) + np.where(
        (t == 0) & (rng.random(t.size) < 0.05), 3.0, 0.0
    )


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny, tiny_matrix, weights):
    d = tmp_path_factory.mktemp("inputs")
    tiny.dataset.to_hdf5(d / "country.h5")
    tiny_matrix.save(d / "matrix.h5")
    np.save(d / "w.npy", weights)
    pd.DataFrame({"unit": np.arange(weights.size)[::-1], "weight": weights[::-1], "g": 1.0}).to_csv(
        d / "w.csv", index=False
    )
    return d


@pytest.mark.parametrize("wfile", ["w.npy", "w.csv"])
def test_stack_from_files_and_verify(tmp_path, inputs, tiny_matrix, weights, wfile, capsys):
    out = tmp_path / "nc.h5"
    rc = main(
        [
            "stack",
            "--data", str(inputs / "country.h5"),
            "--matrix", str(inputs / "matrix.h5"),
            "--rules", "synthetic",
            "--weights", str(inputs / wfile),
            "--subset", "37",
            "--out", str(out),
            "--verify",
        ]
    )  # fmt: skip
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "verified 127 targets against X @ w" in text
    back = load(out)
    assert back.geographies.tolist() == [3701, 3702, 3703]
    check = verify(back, tiny_matrix, weights)
    assert float(check["rel_error"].abs().max()) < 1e-12
    assert (out.parent / "nc_household_mapping.csv").is_file()


def test_stack_policyengine_with_geographies_list(tmp_path, inputs, tiny, capsys):
    out = tmp_path / "pe.h5"
    geos = ",".join(str(g) for g in tiny.geographies)
    rc = main(
        [
            "stack",
            "--data", str(inputs / "country.h5"),
            "--geographies", geos,
            "--rules", "synthetic",
            "--weights", str(inputs / "w.npy"),
            "--layout", "policyengine",
            "--variables", "age,snap",
            "--stride", "25000",
            "--mapping", str(tmp_path / "map.csv"),
            "--out", str(out),
        ]
    )  # fmt: skip
    assert rc == 0, capsys.readouterr()
    back = load(out)
    assert back.layout == "policyengine" and back.ids.stride == 25_000
    assert back.mapping_path == tmp_path / "map.csv"
    assert "employment_income" not in back.dataset.person.columns


def test_stack_synthetic_size(tmp_path, capsys):
    rc = main(
        ["stack", "--size", "tiny", "--subset", "3701", "--out", str(tmp_path / "s.h5"), "--verify"]
    )
    text = capsys.readouterr().out
    assert rc == 0 and "max relative error 0" in text


def test_stack_errors_are_one_line(tmp_path, inputs, capsys):
    (tmp_path / "s.h5").write_text("keep me")
    base = ["stack", "--data", str(inputs / "country.h5"), "--matrix", str(inputs / "matrix.h5")]
    w, t = ["--weights", str(inputs / "w.npy")], ["--out", str(tmp_path / "t.h5")]
    cases = [
        ([*base, *w, "--out", str(tmp_path / "s.h5")], "exists"),
        ([*base, *t], "--weights is required"),
        ([*base, *w, "--subset", "4801", *t], "subset"),
        (["stack", *t], "give --data"),
        ([*base, "--weights", str(inputs / "missing.npy"), *t], "does not exist"),
    ]
    for argv, message in cases:
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith("calibopt stack: error:") and message in err, err
    assert (tmp_path / "s.h5").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]


def test_weights_csv_must_number_columns(tmp_path, capsys):
    pd.DataFrame({"column": [0, 0, 2], "weight": [1.0, 2.0, 3.0]}).to_csv(tmp_path / "w.csv")
    out = str(tmp_path / "s.h5")
    assert (
        main(["stack", "--size", "tiny", "--weights", str(tmp_path / "w.csv"), "--out", out]) == 1
    )
    assert "must number the matrix columns 0..2" in capsys.readouterr().err


def test_demo_stage(tmp_path, tiny, tiny_matrix, weights):
    lines: list[str] = []
    table = stacking_demo(tiny, tiny_matrix, weights, tmp_path, out=lines.append)
    assert list(table["layout"]) == ["calibopt", "policyengine"] * 2
    assert (table["max_rel_error"] < 1e-12).all()
    assert table.loc[table["subset"] == "all", "households"].iloc[0] == np.count_nonzero(weights)
    text = "\n".join(lines)
    assert "Original household" in text and "state 37" in text
    assert len(list(tmp_path.glob("*.h5"))) == 4 and len(list(tmp_path.glob("*.csv"))) == 4
