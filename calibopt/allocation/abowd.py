"""The simple allocator of Abowd & Schmutte (2019, "An economic analysis of privacy protection
and statistical accuracy as social choices", American Economic Review 109(1);
arXiv:1808.06303): grant = expenditure factor x formula children, one grant type
``("total",)``, optionally scaled to an appropriation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from . import inputs
from .allocators import Allocation, BaseAllocator, check_prefixes
from .provisions import solve_provisions

__all__ = ["AbowdAllocator"]


class AbowdAllocator(BaseAllocator):
    """Grant = expenditure factor x formula children (Abowd & Schmutte 2019).

    Parameters
    ----------
    congress_cap, sppe_bounds, us_average_sppe
        Expenditure factor (40% of SPPE bounded by [32%, 48%] of the U.S. average).
    cents
        Round normalised amounts to cents (default).
    """

    grant_types: tuple[str, ...] = ("total",)

    def allocate(
        self,
        estimates: pd.DataFrame,
        prefixes: Sequence[str] = ("est",),
        appropriation: float | None = None,
    ) -> Allocation:
        """Allocate; with ``appropriation``, scale each estimate kind's grants to it exactly."""
        prefixes = check_prefixes(prefixes)
        original = inputs.validate_estimates(estimates, prefixes)
        df = original.sort_index()
        adj = self._adjusted(df, self.sppe_bounds).to_numpy()
        cols: dict[str, np.ndarray] = {}
        diag = []
        for p in prefixes:
            e = df[inputs.eligible_column(p)].to_numpy(dtype=float)
            auth = adj * e
            cols[f"{p}_auth_total"] = auth
            cols[f"{p}_eligible_total"] = e > 0
            if appropriation is None:
                cols[f"{p}_grant_total"] = auth
            else:
                res = solve_provisions(auth, appropriation, cents=self.cents)
                cols[f"{p}_grant_total"] = res.allocations
            diag.append(
                {"prefix": p, "grant": "total", "allocated": cols[f"{p}_grant_total"].sum()}
            )
        table = pd.DataFrame(cols, index=df.index).reindex(original.index)
        states = table.filter(like="_grant_").groupby(level=0).sum()
        return Allocation(
            table=table,
            appropriations={} if appropriation is None else {"total": float(appropriation)},
            prefixes=prefixes,
            grant_types=self.grant_types,
            states=states,
            diagnostics=pd.DataFrame(diag),
        )
