"""How a problem splits into blocks: records by label, targets local to a block or spanning.

:func:`plan_blocks` classifies the targets; :func:`block_shares` divides each spanning target
into the blocks' shares of a continuous solution, adjusted to add up exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidProblemError
from ..problem import CalibrationProblem

__all__ = ["BlockPlan", "PerBlock", "block_shares", "per_block", "plan_blocks"]


@dataclass(frozen=True)
class PerBlock:
    """An option value that differs by block (see :func:`per_block`)."""

    values: dict[Any, Any]
    default: Any = None

    def get(self, label: Any) -> Any:
        """The value of block ``label`` (the default when not listed)."""
        return self.values.get(label, self.default)


def per_block(values: Any, default: Any = None) -> PerBlock:
    """A method option whose value depends on the block, for ``calibrate(..., blocks=)``.

    >>> co.calibrate(p, "l0-mip", blocks=district, objective="error+count", lam=0,
    ...              max_records=per_block({3701: 40, 3702: 25}, default=30))

    ``values`` maps block labels to values (a dict or a pandas Series); blocks not listed
    get ``default``.
    """
    if hasattr(values, "to_dict"):
        values = values.to_dict()
    if not isinstance(values, dict):
        raise InvalidProblemError("per_block() needs a mapping from block label to value.")
    return PerBlock(dict(values), default)


@dataclass
class BlockPlan:
    """How a problem splits into blocks.

    Attributes
    ----------
    labels : ndarray
        The distinct block labels, in order of first appearance.
    units : list of ndarray
        Record positions of each block.
    local : list of ndarray
        Targets whose non-zeros all lie in the block.
    spanning : ndarray
        Targets with non-zeros in more than one block.
    touching : list of ndarray
        For each block, the spanning targets with a non-zero in it.
    empty : ndarray
        Targets with no non-zero at all.
    """

    labels: np.ndarray
    units: list[np.ndarray]
    local: list[np.ndarray]
    spanning: np.ndarray
    touching: list[np.ndarray]
    empty: np.ndarray

    @property
    def n_blocks(self) -> int:
        """Number of blocks."""
        return len(self.units)


def plan_blocks(problem: CalibrationProblem, labels: Any) -> BlockPlan:
    """Split ``problem``'s records by ``labels`` (one label per record) and classify targets."""
    lab = labels.to_numpy() if isinstance(labels, pd.Series | pd.Index) else np.asarray(labels)
    if lab.ndim != 1 or lab.shape[0] != problem.n_units:
        raise InvalidProblemError(
            f"`blocks` must give one label per record: got shape {lab.shape}, expected "
            f"({problem.n_units},)."
        )
    codes, uniques = pd.factorize(pd.Series(lab), sort=False)
    if (codes < 0).any():
        first = int(np.flatnonzero(codes < 0)[0])
        raise InvalidProblemError(
            f"`blocks` has {int((codes < 0).sum())} missing label(s), first at record {first}; "
            f"every record needs a block."
        )
    K = uniques.size
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(K + 1))
    units = [order[bounds[k] : bounds[k + 1]] for k in range(K)]
    X = problem.X
    m = problem.n_targets
    entry_rows = np.repeat(np.arange(m), np.diff(X.indptr))
    entry_codes = codes[X.indices]
    cmin = np.full(m, K, dtype=np.int64)
    cmax = np.full(m, -1, dtype=np.int64)
    np.minimum.at(cmin, entry_rows, entry_codes)
    np.maximum.at(cmax, entry_rows, entry_codes)
    empty = np.flatnonzero(cmax < 0)
    is_local = (cmax >= 0) & (cmin == cmax)
    spanning = np.flatnonzero((cmax >= 0) & (cmin != cmax))
    local_rows = np.flatnonzero(is_local)
    lorder = np.argsort(cmin[local_rows], kind="stable")
    lr = local_rows[lorder]
    lb = np.searchsorted(cmin[lr], np.arange(K + 1))
    local = [lr[lb[k] : lb[k + 1]] for k in range(K)]
    # (spanning row, block) pairs
    sel = np.isin(entry_rows, spanning)
    pairs = np.unique(np.stack([entry_codes[sel], entry_rows[sel]]), axis=1)
    pb = np.searchsorted(pairs[0], np.arange(K + 1))
    touching = [pairs[1, pb[k] : pb[k + 1]] for k in range(K)]
    return BlockPlan(
        labels=np.asarray(uniques, dtype=object),
        units=units,
        local=local,
        spanning=spanning,
        touching=touching,
        empty=empty,
    )


def block_shares(
    problem: CalibrationProblem, plan: BlockPlan, weights: np.ndarray, *, exact: bool = False
) -> list[np.ndarray]:
    """Each block's share ``X_jB w_B`` of the spanning targets it touches.

    With ``exact=True`` the shares of each spanning target are then adjusted (in proportion to
    their magnitudes) to add up to the target exactly, removing the continuous solve's
    rounding-level error so that block errors within tolerance keep the total within it.
    """
    out = []
    for k in range(plan.n_blocks):
        rows = plan.touching[k]
        if rows.size == 0:
            out.append(np.zeros(0))
            continue
        U = plan.units[k]
        out.append(problem.X[rows][:, U] @ weights[U])
    if exact and plan.spanning.size:
        m = problem.n_targets
        total = np.zeros(m)
        mass = np.zeros(m)
        for k in range(plan.n_blocks):
            np.add.at(total, plan.touching[k], out[k])
            np.add.at(mass, plan.touching[k], np.abs(out[k]))
        gap = problem.targets - total
        with np.errstate(invalid="ignore", divide="ignore"):
            per_mass = np.where(mass > 0, gap / mass, 0.0)
        out = [s + per_mass[plan.touching[k]] * np.abs(s) for k, s in enumerate(out)]
    return out
