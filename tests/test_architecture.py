"""The import contract (pyproject.toml, [tool.importlinter]) holds, and would catch a
back-import: a copy of the package with one upward import fails it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(
    not LINT.exists() and not os.environ.get("CI"), reason="import-linter not installed"
)


def lint(root: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(root))
    return subprocess.run(
        [str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def copy_package(tmp_path: Path) -> Path:
    shutil.copytree(
        REPO / "calibopt", tmp_path / "calibopt", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_import_contract_holds():
    out = lint(REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


@pytest.mark.parametrize(
    "module, line",
    [
        ("problem.py", "from .formulations import registry  # a back-import"),
        ("solvers/newton.py", "from ..calibrate import calibrate  # an engine calling the face"),
        ("matrix/tracer.py", "from ..solvers import kernels  # a data module that solves"),
    ],
)
def test_a_back_import_breaks_the_contract(tmp_path, module, line):
    root = copy_package(tmp_path)
    path = root / "calibopt" / module
    path.write_text(path.read_text() + f"\n{line}\n")
    out = lint(root)
    assert out.returncode != 0
    assert "BROKEN" in out.stdout
