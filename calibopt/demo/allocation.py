"""Demo stage: follow local-area calibrated weights through to Title I dollars.

Takes the local-area demo's synthetic country and calibrated weights (one per household x
district column), estimates formula children (aged 5-17 in a household below a poverty line)
and all 5-17 children per district, allocates Title I with the official procedure, and
reports how many dollars the design prior and the calibrated weights move against the
allocation the true weights would give.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from ..allocation import (
    SonnenbergAllocator,
    compare_allocations,
    household_children,
    lea_estimates,
    synthetic_lea_inputs,
    synthetic_state_minimum_rules,
)

__all__ = ["allocation_demo"]


def allocation_demo(local: Any, seed: int = 0, out: Callable[[str], None] = print) -> pd.DataFrame:
    """Allocate Title I from the true, prior and calibrated weights; print the dollars moved.

    Parameters
    ----------
    local
        A :class:`calibopt.demo.local_area.LocalAreaDemo` (country, matrix, problem, result).
    seed
        Seed of the synthetic LEA inputs (expenditure, last year's amounts).

    Returns
    -------
    DataFrame
        One row per weighting: dollars moved against the truth, share of the money, LEAs
        losing more than 5%.
    """
    country, columns = local.country, local.matrix.columns
    kids, poor = household_children(country.dataset)
    cols = columns.locate(np.arange(columns.n_columns))
    hh = cols["household_index"].to_numpy()
    units = pd.DataFrame(
        {
            "state": cols["state_fips"].to_numpy(),
            "district": cols["geography"].to_numpy(),
            "children": kids[hh],
            "formula_children": poor[hh],
        }
    )
    weights = {
        "true": country.true_weights,
        "prior": local.problem.initial_weights,
        "calibrated": local.result.weights,
    }
    frames = [
        lea_estimates(units, w, children="children", formula_children="formula_children", prefix=k)
        for k, w in weights.items()
    ]
    leas = synthetic_lea_inputs(frames[0], seed=seed)
    frame = pd.concat([leas, *frames[1:]], axis=1)
    allocator = SonnenbergAllocator(state_minimum_rules=synthetic_state_minimum_rules(leas))
    allocation = allocator.allocate(frame, prefixes=tuple(weights))
    rows = []
    for k in ("prior", "calibrated"):
        s = compare_allocations(allocation.grants("true"), allocation.grants(k), threshold=0.05)
        s = s.summary()
        rows.append(
            {
                "weights": k,
                "dollars moved vs truth": s["dollars_moved"],
                "share of the money": s["share_moved"],
                "LEAs losing > 5%": s["leas_losing"],
            }
        )
    table = pd.DataFrame(rows).set_index("weights")
    total = float(sum(allocation.appropriations.values()))
    out(
        f"Title I: ${total:,.0f} over {len(frame)} LEAs (districts); every allocation sums to "
        f"the appropriation to the cent."
    )
    with pd.option_context("display.width", 120):
        out(
            table.to_string(
                formatters={
                    "dollars moved vs truth": "${:,.0f}".format,
                    "share of the money": "{:.2%}".format,
                }
            )
        )
    return table
