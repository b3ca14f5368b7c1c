"""The stacked HDF5 file and its mapping CSV are one pair: never loaded mismatched, never
left half-written, no temporary files left by a killed run once the next run has finished."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import calibopt.files as files_module
from calibopt import InvalidProblemError
from calibopt.files import atomic_output, atomic_outputs, remove_stale_temporaries
from calibopt.stacking import load, stack

REPO = Path(__file__).resolve().parents[1]


def temporaries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def assert_consistent(path: Path) -> float:
    """Load ``path`` and check the mapping belongs to the file; return the total weight."""
    back = load(path)
    data_total = float(back.dataset.household["household_weight"].sum())
    assert back.mapping is not None
    np.testing.assert_allclose(back.mapping["household_weight"].sum(), data_total, rtol=1e-12)
    np.testing.assert_allclose(back.info["weight_total"], data_total, rtol=1e-12)
    np.testing.assert_array_equal(
        back.mapping["new_household_id"].to_numpy(), back.dataset.ids("household")
    )
    return data_total


@pytest.fixture(scope="module")
def weights(tiny):
    return tiny.true_weights


# ------------------------------------------------------------------------ mismatched pairs
def test_new_file_beside_an_old_mapping_is_refused(tmp_path, tiny, weights):
    old = stack(weights, tiny.geographies, tiny, tmp_path / "a" / "s.h5")
    new = stack(2 * weights, tiny.geographies, tiny, tmp_path / "b" / "s.h5")
    total = assert_consistent(old.path)
    assert assert_consistent(new.path) == pytest.approx(2 * total, rel=1e-12)
    # the old file next to the new CSV
    (tmp_path / "c").mkdir()
    shutil.copy(old.path, tmp_path / "c" / "s.h5")
    shutil.copy(new.mapping_path, tmp_path / "c")
    with pytest.raises(InvalidProblemError, match=r"SHA-256 digest differs"):
        load(tmp_path / "c" / "s.h5")
    # a new HDF5 file next to the old CSV (what a kill between the renames used to leave)
    shutil.copy(new.path, old.path)
    with pytest.raises(InvalidProblemError, match=r"not the one written with.*different runs"):
        load(old.path)
    # an explicit mapping_path is checked too
    with pytest.raises(InvalidProblemError, match=r"not the one written with"):
        load(new.path, mapping_path=old.mapping_path)
    assert load(new.path, mapping_path=new.mapping_path).mapping is not None


def test_edited_mapping_is_refused(tmp_path, tiny, weights):
    out = stack(weights, tiny.geographies, tiny, tmp_path / "s.h5", 201)
    text = out.mapping_path.read_text()
    out.mapping_path.write_text(text.replace("\n", "\r\n"))  # same table, other bytes
    with pytest.raises(InvalidProblemError, match=r"was edited"):
        load(out.path)


def test_stopped_between_the_two_renames(tmp_path, monkeypatch, tiny, weights):
    path = tmp_path / "s.h5"
    stack(weights, tiny.geographies, tiny, path)
    real_replace = os.replace
    calls = []

    def replace_then_stop(src, dst):
        calls.append(Path(dst).name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(files_module.os, "replace", replace_then_stop)
    with pytest.raises(KeyboardInterrupt):
        stack(3 * weights, tiny.geographies, tiny, path, overwrite=True)
    monkeypatch.undo()
    # the CSV went first: a new mapping beside the old file, which load refuses
    assert calls == ["s_household_mapping.csv", "s.h5"]
    assert temporaries(tmp_path) == []
    with pytest.raises(InvalidProblemError, match=r"not the one written with"):
        load(path)
    # the next run repairs the pair
    stack(3 * weights, tiny.geographies, tiny, path, overwrite=True)
    assert assert_consistent(path) == pytest.approx(3 * float(weights.sum()), rel=1e-12)


# ----------------------------------------------------------------------- temporary files
@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt(), SystemExit(1)])
def test_temporaries_removed_on_every_exit_python_sees(tmp_path, exc):
    with pytest.raises(type(exc)), atomic_outputs([tmp_path / "a", tmp_path / "b"]) as tmps:
        for t in tmps:
            t.write_bytes(b"partial")
        raise exc
    assert list(tmp_path.iterdir()) == []


def test_outputs_get_the_usual_permissions(tmp_path):
    with atomic_output(tmp_path / "f.csv") as tmp:
        tmp.write_text("x\n1\n")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "f.csv").stat().st_mode & 0o777 == 0o666 & ~mask


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.skipif(os.name != "posix", reason="stale temporaries are found by pid on POSIX")
def test_stale_temporaries_of_dead_writers_are_removed(tmp_path, tiny, weights):
    gone = dead_pid()
    stale = [
        tmp_path / f".s.h5.{gone}.abcd1234.tmp",
        tmp_path / f".s_household_mapping.csv.{gone}.x_9k2m0q.tmp",
        tmp_path / f"..s.h5.{gone}.abcd1234.tmp.{gone}.efgh5678.tmp",  # written through two layers
    ]
    alive = tmp_path / f".s.h5.{os.getppid()}.abcd1234.tmp"  # a writer that still runs
    other = tmp_path / f".t.h5.{gone}.abcd1234.tmp"  # another target's
    for p in [*stale, alive, other]:
        p.write_bytes(b"half")
    stack(weights, tiny.geographies, tiny, tmp_path / "s.h5")
    assert temporaries(tmp_path) == sorted([alive.name, other.name])
    assert remove_stale_temporaries(tmp_path / "t.h5") == [other]
    assert_consistent(tmp_path / "s.h5")


CHILD = textwrap.dedent(
    """
    import sys
    from calibopt.datasets import synthetic_country
    from calibopt.stacking import stack

    country = synthetic_country("tiny", seed=0)
    print("ready", flush=True)
    i = 0
    while True:  # rewrite the pair until killed, alternating the weights
        i += 1
        stack(country.true_weights * (1 + i % 2), country.geographies, country, sys.argv[1],
              overwrite=True)
    """
)


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL and pids are POSIX")
def test_random_kills_never_leave_a_mismatched_pair_or_temporaries(tmp_path, tiny, weights):
    rng = np.random.default_rng(11)
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    path = tmp_path / "s.h5"
    total = float(weights.sum())
    outcomes = {"consistent": 0, "refused": 0, "absent": 0, "temporaries left": 0}
    for _ in range(6):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, env=env, text=True
        )
        try:
            assert child.stdout.readline().strip() == "ready", "the writer did not start"
            time.sleep(rng.uniform(0.0, 0.4))  # kill at a random moment of some write
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
            child.stdout.close()
        outcomes["temporaries left"] += bool(temporaries(tmp_path))
        if not path.exists():
            outcomes["absent"] += 1
        else:
            try:
                written = assert_consistent(path)
            except InvalidProblemError:
                outcomes["refused"] += 1
            else:
                outcomes["consistent"] += 1
                assert written == pytest.approx(total, rel=1e-12) or written == pytest.approx(
                    2 * total, rel=1e-12
                )
        # the next run succeeds, and leaves a consistent pair and no temporary file
        stack(weights, tiny.geographies, tiny, path, overwrite=True)
        assert assert_consistent(path) == pytest.approx(total, rel=1e-12)
        assert temporaries(tmp_path) == [], outcomes
    assert outcomes["consistent"] + outcomes["refused"] + outcomes["absent"] == 6
