"""``import calibopt`` stays light: only numpy and scipy.sparse load with it (the heavy parts
load when first used)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("pandas", "cvxpy", "highspy", "numba", "torch", "sqlalchemy", "h5py", "matplotlib")


def test_import_loads_no_heavy_dependency():
    code = f"import sys, calibopt; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imported at `import calibopt`: {out.stdout.strip()}"


def test_lazy_names_resolve():
    code = (
        "import calibopt as co; "
        "assert callable(co.problem_from_margins) and callable(co.compare); "
        "assert 'raking' in co.methods() and co.Distance and co.check_weights; "
        "print(sorted(set(co.__all__) - set(dir(co))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
