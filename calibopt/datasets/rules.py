"""Variables whose value depends on where a household is placed, and their seeded randomness.

In local-area calibration every household is a donor to every geography. Some variables
(a benefit with state rules, a state income tax) change when a household is placed in another
state. :class:`GeographyRules` describes such variables: a callback computes them for the whole
dataset under the rules of one geography, and the matrix builder calls it once per distinct
rule set (once per state for ``level="state"``), caching the result.

Anything random inside such a callback (take-up draws) must be reproducible, so that a stacked
dataset written later agrees with the matrix: use :func:`seeded_uniform`, a counter-based hash
of (seed, household id, geography), never a stateful generator.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InvalidProblemError
from .dataset import Dataset

__all__ = ["GeographyRules", "seeded_uniform"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser (a bijection on uint64 with good avalanche)."""
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def seeded_uniform(seed: int, *keys: Any) -> np.ndarray:
    """Reproducible uniform draws in ``[0, 1)``, one per element of the broadcast keys.

    The draw for a given ``(seed, key1, key2, ...)`` never depends on the other elements, on
    their order or on array sizes, so a household placed in a geography gets the same draw in
    the matrix builder, in a subset, and in a stacked dataset.

    Parameters
    ----------
    seed
        Stream identifier (e.g. one per random variable).
    *keys
        Integer arrays or scalars (household ids, state FIPS, district GEOIDs), broadcast
        together.

    Examples
    --------
    >>> u = seeded_uniform(7, [101, 102, 103], 37)
    >>> bool(np.all((u >= 0) & (u < 1)))
    True
    >>> float(seeded_uniform(7, 102, 37)[0]) == float(u[1])
    True
    """
    arrays = [np.asarray(k) for k in keys]
    for a in arrays:
        if a.dtype.kind not in "iub":
            raise InvalidProblemError(f"seeded_uniform keys must be integers, got {a.dtype}.")
    shape = np.broadcast_shapes(*(a.shape for a in arrays)) if arrays else ()
    with np.errstate(over="ignore"):
        h = np.full(shape or (1,), _mix(np.array([seed], dtype=np.int64).view(np.uint64) + _GOLDEN))
        for a in arrays:
            k = np.broadcast_to(a.astype(np.int64).view(np.uint64), shape or (1,))
            h = _mix(h ^ (k + _GOLDEN))
    return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53


@dataclass(frozen=True)
class GeographyRules:
    """Geography-dependent variables and the callback that computes them.

    Parameters
    ----------
    compute
        ``compute(dataset, geography) -> {variable: array}``: the variables for every row of
        their entity as if every household lived in ``geography`` (a state FIPS code for
        ``level="state"``, a district GEOID for ``level="district"``).
    variables
        ``{variable: entity}`` for the variables ``compute`` returns.
    level
        ``"state"`` (the rules change per state: one call per state) or ``"district"``.
    """

    compute: Callable[[Dataset, int], Mapping[str, Any]]
    variables: Mapping[str, str]
    level: str = "state"
    name: str = field(default="geography rules", compare=False)

    def __post_init__(self) -> None:
        if self.level not in ("state", "district"):
            raise InvalidProblemError(
                f"GeographyRules.level must be 'state' or 'district', got {self.level!r}."
            )
        if not self.variables:
            raise InvalidProblemError("GeographyRules.variables must name at least one variable.")

    def key(self, district: int) -> int:
        """The rule-set key of a district: its state FIPS (``level="state"``) or itself."""
        return int(district) // 100 if self.level == "state" else int(district)

    def evaluate(self, dataset: Dataset, key: int) -> dict[str, np.ndarray]:
        """Call ``compute`` for one rule set and check what it returns."""
        out = self.compute(dataset, int(key))
        if not isinstance(out, Mapping):
            raise InvalidProblemError(
                f"{self.name}: compute(dataset, {key}) must return a mapping "
                f"{{variable: array}}, got {type(out).__name__}."
            )
        result = {}
        for var, entity in self.variables.items():
            if var not in out:
                raise InvalidProblemError(
                    f"{self.name}: compute(dataset, {key}) did not return {var!r} "
                    f"(it returned {sorted(out)})."
                )
            arr = np.asarray(out[var])
            n = dataset.n(entity)
            if arr.shape != (n,):
                raise InvalidProblemError(
                    f"{self.name}: {var!r} for {key} has shape {arr.shape}, expected ({n},) "
                    f"(one value per {entity})."
                )
            if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
                raise InvalidProblemError(f"{self.name}: {var!r} for {key} has non-finite values.")
            result[var] = arr
        return result
