"""Compile the numba kernels before any timed stage of ``calibopt demo``.

The first calibration in a process compiles the sparse kernels (seconds, the first time on a
machine; numba keeps them in its on-disk cache afterwards) and imports what the solvers need
lazily. Without a warm-up that time lands in the reported time of whichever method runs first;
the demo runs :func:`warm_up` before its first stage instead, and says once how long numba
compiled.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from numba.core import event

from ..calibrate import calibrate
from ..problem import CalibrationProblem

__all__ = ["WarmUp", "warm_up"]

REPORT_ABOVE = 0.2
"""Seconds of compilation below which nothing is printed."""

LARGE_UNITS = 150_000
"""Units of the second warm-up problem: 2 entries each, above the non-zero count from which
the kernels run in parallel threads (a compiled version of their own)."""


class WarmUp(NamedTuple):
    """What :func:`warm_up` took, in seconds: in all, and compiling (0 when numba found every
    kernel in its cache)."""

    seconds: float
    compile_seconds: float


def warm_up(*, parallel: bool = False, out: Callable[[str], None] = print) -> WarmUp:
    """Run tiny calibrations that compile every kernel the demo's Newton methods use.

    Parameters
    ----------
    parallel
        Also compile the multi-threaded kernels, which matrices of more than about 200,000
        non-zeros use (every synthetic country larger than ``"tiny"``); costs about 0.2 s
        more once compiled.
    out
        Where the line "compiling numba kernels (first run only): X.X s" goes, printed only
        when numba compiled for more than :data:`REPORT_ABOVE` seconds.

    Returns
    -------
    WarmUp
        The seconds taken in all and compiling.
    """
    t0 = time.perf_counter()
    with event.install_timer("numba:compile", lambda seconds: None) as compiling:
        small = CalibrationProblem(
            np.array([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 1.0, 0.0]]),
            [8.0, 4.5],
            initial_weights=np.full(4, 2.0),
        )
        calibrate(small, method="raking")
        calibrate(small.with_options(ratio_bounds=(0.5, 2.0)), method="logit")
        if parallel:
            n = LARGE_UNITS
            X = sp.csr_matrix(np.vstack([np.ones(n), np.arange(n) % 2.0]))
            large = CalibrationProblem(X, [2.0 * n, 0.55 * n], initial_weights=np.full(n, 1.5))
            calibrate(large, method="raking")
    compile_seconds = compiling.duration if compiling.done else 0.0
    if compile_seconds > REPORT_ABOVE:
        out(f"compiling numba kernels (first run only): {compile_seconds:.1f} s")
    return WarmUp(time.perf_counter() - t0, compile_seconds)
