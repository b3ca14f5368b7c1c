"""``device="cuda"`` for hard-concrete, tested wherever a GPU is present.

The tests skip only when the machine has no NVIDIA GPU (``nvidia-smi -L`` lists none). In CI
(``CI=true``) on a machine that has one, a torch that cannot use it (a CPU-only build, a driver
mismatch) fails the run instead of skipping silently.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest
import scipy.sparse as sp

torch = pytest.importorskip("torch")

import calibopt as co  # noqa: E402

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _gpu_listed() -> bool:
    """Whether ``nvidia-smi -L`` lists a GPU on this machine."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return False
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


@pytest.fixture(scope="module")
def cuda():
    listed = _gpu_listed()
    usable = torch.cuda.is_available()
    if listed and not usable and IN_CI:
        pytest.fail(
            "nvidia-smi lists a GPU but torch.cuda.is_available() is False "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda}): install a CUDA "
            "build of torch so that the CUDA tests run."
        )
    if not usable:
        pytest.skip("no usable NVIDIA GPU on this machine")
    return torch.device("cuda")


def _problem(seed=0, m=12, n=3000):
    rng = np.random.default_rng(seed)
    X = sp.random(m, n, density=0.3, random_state=seed, format="csr")
    X.data = rng.lognormal(0.0, 0.5, X.nnz)
    d = rng.uniform(1.0, 3.0, n)
    b = X @ (d * rng.uniform(0.5, 1.5, n))
    return co.CalibrationProblem(X, b, initial_weights=d, tolerance=0.001)


FAST = dict(progress=False, epochs=300, lambda_l0=1e-4, seed=0)


def test_gpu_detection_is_consistent():
    # runs everywhere: without a GPU both say so; with one, torch must see it (or we say why)
    if _gpu_listed() and not torch.cuda.is_available():
        if IN_CI:
            pytest.fail("nvidia-smi lists a GPU but torch cannot use it (see the cuda fixture)")
        pytest.skip("GPU listed but this torch cannot use it (not CI)")
    from calibopt.solvers.hard_concrete.backend import resolve_device

    # device="auto" takes the GPU exactly when torch can use one
    assert resolve_device(torch, "auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cuda_fit_meets_targets_like_cpu(cuda, dtype):
    p = _problem()
    on_gpu = co.calibrate(p, method="hard-concrete", device="cuda", dtype=dtype, **FAST)
    on_cpu = co.calibrate(p, method="hard-concrete", device="cpu", dtype=dtype, **FAST)
    assert on_gpu.info["hard_concrete"]["device"].startswith("cuda")
    # after the exact polish both meet every band; the supports come from the same model
    assert on_gpu.success and on_cpu.success
    assert on_gpu.max_rel_error <= 0.001 + 1e-8
    assert abs(on_gpu.nnz - on_cpu.nnz) <= 0.1 * on_cpu.nnz + 5


def test_cuda_same_seed_same_weights(cuda):
    p = _problem(seed=1)
    a = co.calibrate(p, method="hard-concrete", device="cuda", dtype="float64", **FAST)
    b = co.calibrate(p, method="hard-concrete", device="cuda", dtype="float64", **FAST)
    np.testing.assert_array_equal(a.weights != 0, b.weights != 0)
    np.testing.assert_allclose(a.weights, b.weights, rtol=1e-9)
