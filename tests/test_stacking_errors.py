"""calibopt.stacking: bad input gives a clear error and writes nothing; writes are atomic."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

import calibopt.datasets.hdf5 as hdf5
import calibopt.stacking.files as stacking_files
from calibopt import CalibrationError, InvalidProblemError
from calibopt.datasets import synthetic_country
from calibopt.stacking import load, stack, stacked_dataset


@pytest.fixture(scope="module")
def weights(tiny):
    return tiny.true_weights * 0.5


def files(directory):
    return sorted(p.name for p in directory.iterdir())


# ------------------------------------------------------------------------------ weights
def test_weights_of_the_wrong_length(tmp_path, tiny, tiny_matrix, weights):
    with pytest.raises(InvalidProblemError, match=r"shape \(1439,\).*6 districts x 240 households"):
        stack(weights[:-1], tiny_matrix, tiny, tmp_path / "s.h5")
    assert files(tmp_path) == []


@pytest.mark.parametrize(
    ("value", "what"), [(-1.0, "negative"), (np.nan, "NaN"), (np.inf, "infinite")]
)
def test_bad_weight_values_name_the_column(tmp_path, tiny, tiny_matrix, weights, value, what):
    w = weights.copy()
    col = 3 * 240 + 17  # district 3701, household row 17
    w[col] = value
    hh_id = int(tiny.dataset.ids("household")[17])
    with pytest.raises(
        InvalidProblemError,
        match=rf"1 weight\(s\) are {what}.*column {col} \(district 3701, "
        rf"household {hh_id}\)",
    ):
        stack(w, tiny_matrix, tiny, tmp_path / "s.h5")
    assert files(tmp_path) == []


def test_all_zero_weights_in_the_subset(tmp_path, tiny, tiny_matrix, weights):
    w = weights.copy()
    w[:240] = 0.0  # district 201 (Alaska's only district)
    with pytest.raises(InvalidProblemError, match=r"every weight .* \[201\] is zero"):
        stack(w, tiny_matrix, tiny, tmp_path / "s.h5", subset=2)


# ------------------------------------------------------------------------------ subset
@pytest.mark.parametrize("subset", [3704, [3701, 4801], 48, "abc"])
def test_subset_not_calibrated(tmp_path, tiny, tiny_matrix, weights, subset):
    with pytest.raises(InvalidProblemError, match=r"subset"):
        stack(weights, tiny_matrix, tiny, tmp_path / "s.h5", subset=subset)
    assert files(tmp_path) == []


# ------------------------------------------------------------------------------ dataset
def test_dataset_lacking_an_entity_id_column(tmp_path, tiny, weights):
    tables = dict(tiny.dataset.entities)
    tables["tax_unit"] = tables["tax_unit"].drop(columns="tax_unit_id")
    with pytest.raises(InvalidProblemError, match=r"'tax_unit' table lacks its id column"):
        stack(weights, tiny.geographies, tables, tmp_path / "s.h5", rules=tiny.rules)
    tables = dict(tiny.dataset.entities)
    tables["person"] = tables["person"].drop(columns="person_id")
    with pytest.raises(InvalidProblemError, match=r"'person' table lacks its id column"):
        stack(weights, tiny.geographies, tables, tmp_path / "s.h5")


def test_policyengine_file_lacking_household_ids(tmp_path, tiny, weights):
    path = tmp_path / "pe.h5"
    tiny.dataset.to_hdf5(path, layout="policyengine")
    with h5py.File(path, "a") as f:
        del f["household_id"]
    with pytest.raises(InvalidProblemError, match=r"lacks 'household_id'"):
        stack(weights, tiny.geographies, path, tmp_path / "s.h5")


def test_matrix_of_another_dataset(tmp_path, tiny_matrix, weights):
    other = synthetic_country("tiny", seed=1)
    with pytest.raises(InvalidProblemError, match=r"built on other households"):
        stack(weights, tiny_matrix, other, tmp_path / "s.h5")


def test_rules_on_a_missing_entity(tmp_path, tiny, weights):
    from dataclasses import replace

    rules = replace(tiny.rules, variables={"snap": "spm_unit"})
    with pytest.raises(InvalidProblemError, match=r"entity 'spm_unit'"):
        stack(weights, tiny.geographies, tiny.dataset, tmp_path / "s.h5", rules=rules)


def test_unknown_variables_and_parameters(tmp_path, tiny, weights):
    args = (weights, tiny.geographies, tiny)
    with pytest.raises(InvalidProblemError, match=r"variables \['wealth'\]"):
        stacked_dataset(*args, variables=["wealth"])
    with pytest.raises(InvalidProblemError, match=r"id_dtype"):
        stacked_dataset(*args, id_dtype="int16")
    with pytest.raises(InvalidProblemError, match=r"stride must"):
        stacked_dataset(*args, stride=0)
    with pytest.raises(InvalidProblemError, match=r"derived_id_factor"):
        stacked_dataset(*args, derived_id_factor=0)
    with pytest.raises(InvalidProblemError, match=r"stride=100 is too small: district \d+ has"):
        stacked_dataset(*args, stride=100)
    with pytest.raises(InvalidProblemError, match=r"layout="):
        stack(*args, tmp_path / "s.h5", layout="parquet")
    with pytest.raises(InvalidProblemError, match=r"listed twice"):
        stacked_dataset(weights, [201, 201, 1502, 3701, 3702, 3703], tiny)
    with pytest.raises(InvalidProblemError, match=r"not district GEOIDs"):
        stacked_dataset(weights, [201, 1501, 1502, 3701, 3702, 99], tiny, level="district")
    assert files(tmp_path) == []


# ------------------------------------------------------------------------------ outputs
def test_output_directory_that_cannot_be_written(tmp_path, tiny, weights):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    with pytest.raises(InvalidProblemError, match=r"is a file, not a directory"):
        stack(weights, tiny.geographies, tiny, blocker / "sub" / "s.h5")
    if os.geteuid() != 0:  # root may write anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            with pytest.raises(InvalidProblemError, match=r"not writable"):
                stack(weights, tiny.geographies, tiny, ro / "s.h5")
        finally:
            ro.chmod(0o700)
    with pytest.raises(InvalidProblemError, match=r"is a directory"):
        stack(weights, tiny.geographies, tiny, tmp_path)


def test_missing_output_directories_are_created(tmp_path, tiny, weights):
    out = stack(weights, tiny.geographies, tiny, tmp_path / "a" / "b" / "s.h5", 201)
    assert out.path.is_file() and out.mapping_path.is_file()


@pytest.mark.parametrize("existing", ["s.h5", "s_household_mapping.csv"])
def test_existing_output_needs_overwrite(tmp_path, tiny, weights, existing):
    (tmp_path / existing).write_bytes(b"precious")
    with pytest.raises(InvalidProblemError, match=r"already exists; pass overwrite=True"):
        stack(weights, tiny.geographies, tiny, tmp_path / "s.h5")
    assert files(tmp_path) == [existing]
    assert (tmp_path / existing).read_bytes() == b"precious"
    out = stack(weights, tiny.geographies, tiny, tmp_path / "s.h5", overwrite=True)
    assert load(out.path).dataset.n_households == int(np.count_nonzero(weights))


def test_same_path_for_file_and_mapping(tmp_path, tiny, weights):
    with pytest.raises(InvalidProblemError, match=r"different files"):
        stack(weights, tiny.geographies, tiny, tmp_path / "s.h5", mapping_path=tmp_path / "s.h5")


# ------------------------------------------------------------------------------ atomicity
def _failing_after(n, exc):
    """A replacement for hdf5._column_array that raises on its n-th call."""
    original = hdf5._column_array
    calls = {"n": 0}

    def column_array(series, kind):
        calls["n"] += 1
        if calls["n"] == n:
            raise exc
        return original(series, kind)

    return column_array


@pytest.mark.parametrize("layout", ["calibopt", "policyengine"])
@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()])
def test_failure_mid_write_leaves_no_half_file(tmp_path, monkeypatch, tiny, weights, layout, exc):
    # an existing complete output (replaced with overwrite=True) must survive untouched
    first = stack(weights, tiny.geographies, tiny, tmp_path / "s.h5", 201, layout=layout)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    monkeypatch.setattr(hdf5, "_column_array", _failing_after(6, exc))
    expected = CalibrationError if isinstance(exc, OSError) else KeyboardInterrupt
    with pytest.raises(expected):
        stack(weights, tiny.geographies, tiny, first.path, layout=layout, overwrite=True)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before  # no temp files, nothing replaced
    monkeypatch.undo()
    # and a fresh target is simply not created
    monkeypatch.setattr(hdf5, "_column_array", _failing_after(3, exc))
    with pytest.raises(expected):
        stack(weights, tiny.geographies, tiny, tmp_path / "new.h5", layout=layout)
    assert sorted(after) == files(tmp_path)


def test_failure_writing_the_mapping_leaves_neither_file(tmp_path, monkeypatch, tiny, weights):
    def boom(*args, **kwargs):
        raise OSError("no space left on device")

    monkeypatch.setattr(stacking_files, "write_csv", boom)
    with pytest.raises(InvalidProblemError, match=r"nothing was written"):
        stack(weights, tiny.geographies, tiny, tmp_path / "s.h5")
    assert files(tmp_path) == []


# ------------------------------------------------------------------------------ reading
def test_load_refuses_other_files(tmp_path, tiny):
    with pytest.raises(InvalidProblemError, match=r"does not exist"):
        load(tmp_path / "nothing.h5")
    plain = tmp_path / "plain.h5"
    tiny.dataset.to_hdf5(plain)
    with pytest.raises(InvalidProblemError, match=r"not a stacked dataset"):
        load(plain)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(InvalidProblemError, match=r"not a readable HDF5 file"):
        load(junk)


def test_load_without_the_mapping(tmp_path, tiny, weights):
    out = stack(weights, tiny.geographies, tiny, tmp_path / "s.h5", 201)
    out.mapping_path.unlink()
    back = load(out.path)
    assert back.mapping is None and back.dataset.n_households == out.dataset.n_households
