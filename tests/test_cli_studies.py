"""``calibopt compare`` and ``calibopt methods`` as a new user tries them, and ``--json`` on
every sub-command that prints a result."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import calibopt as co
from calibopt.cli import build_parser, main
from calibopt.studies import make_instance, save_problem

ROOT = Path(__file__).resolve().parents[1]


def run(command: str, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(shlex.split(command))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_names_every_command_and_each_help_works(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    top = capsys.readouterr().out
    for command in ("compare", "methods", "calibrate", "demo", "stack", "targets"):
        assert command in top
    for command in ("compare", "methods"):
        with pytest.raises(SystemExit) as exc:
            main([command, "--help"])
        assert exc.value.code == 0
        text = capsys.readouterr().out
        assert "--json" in text and "Example" in text


def test_every_printing_command_has_json():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    missing = []
    for name, p in sub.choices.items():
        parsers = [p]
        inner = [
            a for a in p._actions if getattr(a, "choices", None) and a.dest.endswith("command")
        ]
        if inner:
            parsers = list(inner[0].choices.values())
        for q in parsers:
            if "--json" not in q._option_string_actions:
                missing.append(f"{name} {q.prog}")
    assert not missing, missing


def test_methods_lists_aliases_and_installed_solvers(capsys):
    code, out, _ = run("methods", capsys)
    assert code == 0
    assert "chi2" in out and "entropy" in out
    code, out, _ = run("methods --json", capsys)
    rows = {r["method"]: r for r in json.loads(out)}
    assert set(rows) == set(co.methods())
    assert rows["linear"]["installed_solvers"][0] == "newton"
    assert "chi2" in rows["linear"]["aliases"]
    torch_here = importlib.util.find_spec("torch") is not None
    assert ("torch" in rows["hard-concrete"]["installed_solvers"]) == torch_here
    assert rows["l0-mip"]["sparse"] and not rows["raking"]["sparse"]


def test_compare_on_instances_and_saved_problems(tmp_path, capsys):
    saved = save_problem(make_instance("bounded-qp", "tiny").problem, tmp_path / "qp.npz")
    code, out, err = run(
        f"compare survey-margins:tiny {saved} --methods linear,raking --solvers default,CLARABEL "
        f"--out {tmp_path / 's'} --report {tmp_path / 'r'} --json --no-progress",
        capsys,
    )
    assert code == 0, err
    doc = json.loads(out)  # stdout holds the JSON only
    table = pd.DataFrame(doc["rows"])
    assert set(table["instance"]) == {"survey-margins-tiny", "qp"}
    assert (table["status"] == "optimal").all()
    assert (table["max_rel_error"] < 1e-8).all()
    assert (tmp_path / "r" / "report.md").is_file() and doc["report"].endswith("report.md")
    assert "optimal" in err  # the table went to stderr
    code, out, _ = run("compare --list-instances", capsys)
    assert code == 0 and "sparse-recovery" in out and "conflicting" in out


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("compare", "give problems"),
        ("compare survey-margins:tiny --methods nope", "unknown method 'nope'"),
        ("compare nope:tiny", "unknown instance kind 'nope'"),
        ("compare survey-margins:huge", "size 'huge'"),
        ("compare survey-margins:tiny --memory-limit lots", "memory_limit"),
        ("compare survey-margins:tiny --option l0-mip", "METHOD.NAME=VALUE"),
        ("compare missing.npz", "does not exist"),
        ("compare survey-margins:tiny --workers 0", "executor"),
    ],
)
def test_compare_bad_arguments_are_one_line(command, message, capsys):
    code, _, err = run(command, capsys)
    assert code == 1
    assert message in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("calibopt compare: error:")


def test_json_of_the_data_commands(tmp_path, capsys):
    db, h5, m, npz, totals, d = (
        tmp_path / n for n in ("t.db", "c.h5", "m.h5", "X.npz", "b.csv", "d.csv")
    )
    code, out, _ = run(f"targets synthetic --db {db} --size tiny --dataset {h5} --json", capsys)
    assert code == 0 and json.loads(out)["targets"] > 0
    code, out, _ = run(f"targets overview --db {db} --json", capsys)
    overview = json.loads(out)
    assert code == 0 and sum(r["n_targets"] for r in overview["targets"]) > 0
    code, out, _ = run(
        f"build-matrix --db {db} --data {h5} --rules synthetic --out {m} --npz {npz} "
        f"--totals {totals} --initial-weights {d} --json",
        capsys,
    )
    built = json.loads(out)
    assert code == 0 and built["columns"] == 1440 and built["nnz"] > 0
    code, out, _ = run(
        f"calibrate --matrix {npz} --totals {totals} --initial-weights {d} --method raking "
        f"--out {tmp_path / 'w.csv'} --json",
        capsys,
    )
    res = json.loads(out)
    assert code == 0 and res["status"] == "optimal" and res["max_rel_error"] < 1e-9
    assert len(res["diagnostics"]) == built["targets"]
    code, out, _ = run(
        f"stack --data {h5} --matrix {m} --rules synthetic --weights {tmp_path / 'w.csv'} "
        f"--out {tmp_path / 's.h5'} --verify --json",
        capsys,
    )
    stacked = json.loads(out)
    assert code == 0 and stacked["verified"]["max_rel_error"] < 1e-9


def test_json_of_allocate(tmp_path, capsys):
    from calibopt.allocation import synthetic_leas

    leas = synthetic_leas(n_states=3, leas_per_state=(3, 6), seed=1)
    src = tmp_path / "leas.csv"
    leas.reset_index().to_csv(src, index=False)
    code, out, err = run(
        f"allocate {src} -o {tmp_path / 'a.csv'} --prefix est --grants basic "
        f"--scale-state-minimums --json",
        capsys,
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["output"].endswith("a.csv") and len(doc["diagnostics"]) > 0
    assert np.isfinite(pd.read_csv(tmp_path / "a.csv")["est_grant_basic"]).all()


def _descendants(pid: int) -> set[int]:
    """Live (non-zombie) descendants of ``pid``, from /proc."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parent[int(entry.name)] = int(fields[1])
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        found.update(kids)
        todo += kids
    return found


def _alive(pids: set[int]) -> set[int]:
    out = set()
    for p in pids:
        try:
            state = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.add(p)
    return out


@pytest.mark.parametrize(
    "sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"]
)
def test_ctrl_c_stops_a_study_at_once_and_keeps_its_rows(tmp_path, sig, code):
    out = tmp_path / "study"
    command = (
        "compare survey-margins:tiny sparse-recovery:medium --methods linear,l0-mip "
        f"--time-limit 200 --out {out} --no-progress"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "calibopt", *command.split()],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    deadline = time.monotonic() + 60
    while not (out / "study.csv").is_file() and time.monotonic() < deadline:
        time.sleep(0.1)  # the survey rows are done: l0-mip on the medium blocks runs now
    time.sleep(0.5)
    children = _descendants(proc.pid)  # the pebble workers (and the forkserver)
    assert children
    t0 = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - t0 < 10  # the running worker was stopped, not waited for
    assert proc.returncode == code, err
    deadline = time.monotonic() + 10
    while _alive(children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(children)  # no worker left running its task
    kept = pd.read_csv(out / "study.csv")
    if sig == signal.SIGINT:
        assert f"interrupted: {len(kept)} pair(s) finished (the same command resumes it)" in err
    assert "sparse-recovery-medium" not in set(kept["instance"])
    first = kept.iloc[0]
    assert (first["instance"], first["method"], first["status"]) == (
        "survey-margins-tiny",
        "linear",
        "optimal",
    )
