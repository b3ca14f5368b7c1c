"""Iterative proportional fitting: exact one-dimensional rescaling of margins (engine).

One sweep visits the margins in order and, for each target ``j`` of the margin, rescales the
weights of the records in it so that its total is met exactly::

    w_i  <-  d_i clip(exp(eta_i + delta_j x_ji), L_i, U_i),   eta_i += delta_j x_ji

For 0/1 rows without binding bounds ``delta_j = log(b_j / estimate_j)`` -- the textbook IPF
factor ``b_j / estimate_j``; for amounts or bounds ``delta_j`` solves the one-dimensional
equation exactly (safeguarded Newton). Rows of one margin whose record sets are disjoint form a
*layer* and are updated together. This is cyclic coordinate ascent on the dual of (bounded)
raking, so at convergence IPF gives the raking solution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = ["IPF"]


@dataclass
class _Layer:
    """Rows of one margin whose record sets are disjoint (updated together)."""

    rows: np.ndarray  # global target positions
    entry_row: np.ndarray  # local row (0..len(rows)-1) of each entry
    units: np.ndarray
    x: np.ndarray  # entries divided by their row's largest entry
    scale: np.ndarray  # each row's largest entry
    binary: bool


def _layers(X: sp.csr_matrix, rows: np.ndarray, keep: np.ndarray) -> list[_Layer]:
    """Split a margin's rows into layers of rows with disjoint records (greedy, in order)."""
    out: list[_Layer] = []
    pending = list(rows)
    while pending:
        layer_rows, rest = [], []
        seen = np.zeros(X.shape[1], dtype=bool)
        for j in pending:
            cols = X.indices[X.indptr[j] : X.indptr[j + 1]]
            cols = cols[keep[cols]]
            if seen[cols].any():
                rest.append(j)
                continue
            seen[cols] = True
            layer_rows.append(j)
        r = np.asarray(layer_rows)
        sub = X[r]
        counts = np.diff(sub.indptr)
        er = np.repeat(np.arange(r.size), counts)
        units = sub.indices
        m = keep[units]
        # each row's entries scaled to at most 1 (delta is then per unit of the row's largest
        # entry, which keeps exp() in range for amounts in the millions)
        rowmax = np.zeros(r.size)
        np.maximum.at(rowmax, er[m], sub.data[m])
        x = sub.data[m] / rowmax[er[m]]
        out.append(_Layer(r, er[m], units[m], x, rowmax, bool(np.all(x == 1.0))))
        pending = rest
    return out


def _solve_layer(
    layer: _Layer,
    eta: np.ndarray,
    d: np.ndarray,
    glo: np.ndarray,
    ghi: np.ndarray,
    b: np.ndarray,
    unbounded: bool,
) -> None:
    """Update ``eta`` so that each row of the layer meets its target exactly (in place)."""
    k = layer.rows.size
    er, u, x = layer.entry_row, layer.units, layer.x
    bj = b[layer.rows] / layer.scale  # in units of the scaled entries
    eta_e = eta[u]
    de, le, he = d[u], glo[u], ghi[u]

    def total(delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with np.errstate(over="ignore", invalid="ignore"):
            z = eta_e + delta[er] * x
            g = np.exp(z)
            gc = np.clip(g, le, he)
        t = np.bincount(er, weights=x * de * gc, minlength=k)
        free = (g > le) & (g < he)
        dt = np.bincount(er, weights=np.where(free, x * x * de * g, 0.0), minlength=k)
        return t, dt

    est, _ = total(np.zeros(k))
    zero = bj == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = np.where((est > 0) & (bj > 0), np.log(bj / est), 0.0)
    if not (layer.binary and unbounded):
        _newton(total, delta, bj, zero)
    delta = np.where(zero, -np.inf, delta)
    with np.errstate(invalid="ignore"):
        eta[u] = eta_e + delta[er] * x


def _newton(total, delta: np.ndarray, bj: np.ndarray, zero: np.ndarray) -> None:
    """Safeguarded Newton on the monotone row totals ``total(delta) = bj`` (in place)."""
    k = delta.size
    with np.errstate(all="ignore"):
        lo = np.full(k, -np.inf)
        hi = np.full(k, np.inf)
        for _ in range(100):
            t, dt = total(delta)
            F = t - bj
            lo = np.where(F < 0, delta, lo)
            hi = np.where(F > 0, delta, hi)
            done = (np.abs(F) <= 1e-13 * np.abs(bj)) | (
                hi - lo <= 4e-16 * np.maximum(1, np.abs(delta))
            )
            if np.all(done | zero):
                break
            step = delta - F / dt
            bad = ~np.isfinite(step) | (step <= lo) | (step >= hi)
            mid = np.where(
                np.isfinite(lo) & np.isfinite(hi),
                0.5 * (lo + hi),
                np.where(
                    np.isfinite(lo),
                    lo + np.maximum(1.0, np.abs(lo)),
                    hi - np.maximum(1.0, np.abs(hi)),
                ),
            )
            # a row the bounds cannot bring to its target: stop at the bound it tends to
            delta[:] = np.clip(np.where(done | zero, delta, np.where(bad, mid, step)), -700, 700)


class IPF:
    """IPF over margins ``{name: target rows}`` of a non-negative CSR ``X``.

    Parameters
    ----------
    X
        Non-negative matrix (targets x units), CSR.
    targets
        Target totals (non-negative).
    d, glo, ghi
        Initial weights and bounds on ``g = w / d`` (``glo >= 0``).
    margins
        Target rows of each margin, visited in order.
    keep
        Units that carry weight (``d > 0``).
    """

    def __init__(self, X, targets, d, glo, ghi, margins: dict[str, np.ndarray], keep) -> None:
        self.b = targets
        self.d, self.glo, self.ghi, self.keep = d, glo, ghi, keep
        self.unbounded = bool(np.all(glo[keep] <= 0) and np.all(np.isposinf(ghi[keep])))
        self.plan = [_layers(X, rows, keep) for rows in margins.values()]
        self.eta = np.zeros(X.shape[1])

    def sweep(self) -> None:
        """One pass over every margin (each target of a layer met exactly after its update)."""
        for layers in self.plan:
            for layer in layers:
                _solve_layer(layer, self.eta, self.d, self.glo, self.ghi, self.b, self.unbounded)

    def weights(self) -> np.ndarray:
        """The current weights ``d clip(exp(eta), L, U)`` (0 for units not kept)."""
        with np.errstate(over="ignore"):
            g = np.clip(np.exp(self.eta), self.glo, self.ghi)
        return np.where(self.keep, self.d * g, 0.0)
