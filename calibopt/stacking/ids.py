"""Entity ids of a stacked dataset: one fixed id range per calibrated geography.

Every entity (household, person, tax unit, ...) is re-numbered separately by one rule::

    new id = (position + 1) * stride + k

* ``position`` is the geography's index in the **calibrated** list (the column blocks of the
  matrix), not in the file, so a district's ids are the same whether it is written alone, with
  its state, or with the whole country: files written from the same weights never share an id
  and can be concatenated;
* ``k = 0, 1, ...`` counts the entity's records of that geography in file order;
* ``stride`` is the same for every entity and geography. ``"auto"`` picks the smallest of
  1, 2, 5 x 10^n that is at least the largest per-geography record count of any entity over
  **all** calibrated geographies, and falls back to that count itself when the round number
  would overflow (below) for the whole calibrated list; both choices look at every calibrated
  geography, so the stride does not depend on the subset written. A fixed stride such as
  25,000 reproduces the older per-district convention.

So geography ``i`` owns ids ``[(i + 1) * stride, (i + 2) * stride)``, ids are never 0, and
``id // stride - 1`` is the geography's position.

Overflow: consumers derive ids from ids (PolicyEngine-style tools compute ``person_id * 100``
for random seeds), so before anything is written the largest id times ``derived_id_factor``
(default 100) must fit in ``id_dtype`` (default int32, what those tools use); otherwise
:class:`~calibopt.InvalidProblemError` says by how much and what to change. Ids are written
with ``id_dtype``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidProblemError

__all__ = ["ID_DTYPES", "IdScheme", "choose_scheme", "counter_within_runs"]

ID_DTYPES = ("int32", "int64")


@dataclass(frozen=True, eq=False)
class IdScheme:
    """The id ranges of a stacked dataset (see the module docstring).

    Attributes
    ----------
    stride : int
        Ids per geography range.
    dtype : str
        ``"int32"`` or ``"int64"``: the dtype ids are written with.
    derived_id_factor : int
        Ids times this factor must fit in ``dtype``.
    geographies : ndarray
        The calibrated geographies (int64 GEOIDs or FIPS codes) in column-block order.
    level : str
        ``"district"`` or ``"state"``.
    """

    stride: int
    dtype: str
    derived_id_factor: int
    geographies: np.ndarray
    level: str = "district"

    @property
    def limit(self) -> int:
        """The largest id allowed: ``iinfo(dtype).max // derived_id_factor``."""
        return int(np.iinfo(self.dtype).max) // self.derived_id_factor

    def first_ids(self, positions: Any) -> np.ndarray:
        """First id of each geography position's range (int64)."""
        return (np.asarray(positions, dtype=np.int64) + 1) * self.stride

    def id_range(self, geography: int) -> tuple[int, int]:
        """``(first, end)``: the half-open id range of a calibrated geography."""
        pos = np.flatnonzero(self.geographies == int(geography))
        if not pos.size:
            raise InvalidProblemError(
                f"geography {geography} is not among the calibrated {self.level}s."
            )
        first = int(self.first_ids(pos[0]))
        return first, first + self.stride

    def geography_of(self, ids: Any) -> np.ndarray:
        """The geography each id belongs to (inverse of the range rule)."""
        pos = np.asarray(ids, dtype=np.int64) // self.stride - 1
        bad = (pos < 0) | (pos >= self.geographies.size)
        if bad.any():
            raise InvalidProblemError(
                f"id(s) {np.asarray(ids)[bad][:5].tolist()} are outside every geography range "
                f"(stride {self.stride}, {self.geographies.size} geographies)."
            )
        return self.geographies[pos]

    def assign(self, positions: np.ndarray) -> np.ndarray:
        """New ids for records whose geography positions are ``positions`` (non-decreasing)."""
        pos = np.asarray(positions, dtype=np.int64)
        return (self.first_ids(pos) + counter_within_runs(pos)).astype(self.dtype)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (stored in the stacked file's attributes)."""
        return {
            "rule": "id = (position + 1) * stride + k",
            "stride": self.stride,
            "dtype": self.dtype,
            "derived_id_factor": self.derived_id_factor,
            "level": self.level,
            "geographies": self.geographies.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IdScheme:
        """Inverse of :meth:`to_dict`."""
        return cls(
            stride=int(data["stride"]),
            dtype=str(data["dtype"]),
            derived_id_factor=int(data["derived_id_factor"]),
            geographies=np.asarray(data["geographies"], dtype=np.int64),
            level=str(data["level"]),
        )

    def __repr__(self) -> str:
        return (
            f"IdScheme(id = (position + 1) * {self.stride:,} + k, {self.dtype}, "
            f"x{self.derived_id_factor} headroom, {self.geographies.size} {self.level}s)"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IdScheme):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]


def counter_within_runs(keys: np.ndarray) -> np.ndarray:
    """``0, 1, 2, ...`` restarting wherever ``keys`` changes (keys sorted in runs)."""
    n = keys.size
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    lengths = np.diff(np.r_[starts, n])
    return np.arange(n, dtype=np.int64) - np.repeat(starts, lengths)


def _round_up(n: int) -> int:
    """The smallest of 1, 2, 5 x 10^k that is >= n (n >= 1)."""
    scale = 1
    while True:
        for m in (1, 2, 5):
            if m * scale >= n:
                return m * scale
        scale *= 10


def choose_scheme(
    counts: np.ndarray,
    geographies: np.ndarray,
    written: np.ndarray,
    *,
    level: str,
    stride: int | str = "auto",
    id_dtype: str = "int32",
    derived_id_factor: int = 100,
    entities: list[str] | None = None,
) -> IdScheme:
    """Pick and check the id scheme.

    Parameters
    ----------
    counts
        ``(n_geographies, n_entities)`` records per calibrated geography and entity.
    geographies
        Calibrated geographies in position order.
    written
        Positions of the geographies that go into the file (their ids are checked).
    stride, id_dtype, derived_id_factor
        See the module docstring.
    entities
        Entity names (columns of ``counts``) for messages.

    Raises
    ------
    InvalidProblemError
        Bad parameters, a stride smaller than a geography's record count (ids would collide),
        or ids (times ``derived_id_factor``) that overflow ``id_dtype``.
    """
    if str(id_dtype) not in ID_DTYPES:
        raise InvalidProblemError(f"id_dtype must be one of {ID_DTYPES}, got {id_dtype!r}.")
    id_dtype = str(id_dtype)
    if (
        isinstance(derived_id_factor, bool)
        or not isinstance(derived_id_factor, int | np.integer)
        or derived_id_factor < 1
    ):
        raise InvalidProblemError(
            f"derived_id_factor must be a positive integer (1 = no headroom), got "
            f"{derived_id_factor!r}."
        )
    entities = entities or [f"entity {j}" for j in range(counts.shape[1])]
    largest = int(counts.max()) if counts.size else 0
    need = max(largest, 1)
    geographies = np.asarray(geographies, dtype=np.int64)

    def scheme(s: int) -> IdScheme:
        return IdScheme(int(s), id_dtype, int(derived_id_factor), geographies, level)

    if isinstance(stride, str):
        if stride != "auto":
            raise InvalidProblemError(f"stride must be 'auto' or an integer, got {stride!r}.")
        # decided on every calibrated geography, so the stride does not depend on the subset
        everywhere = np.arange(geographies.size)
        chosen = scheme(_round_up(need))
        if _max_id(chosen, counts, everywhere) > chosen.limit:
            chosen = scheme(need)
    else:
        if isinstance(stride, bool) or not isinstance(stride, int | np.integer) or stride < 1:
            raise InvalidProblemError(f"stride must be a positive integer, got {stride!r}.")
        chosen = scheme(int(stride))
        if largest > chosen.stride:
            g, e = np.unravel_index(int(np.argmax(counts)), counts.shape)
            raise InvalidProblemError(
                f"stride={chosen.stride:,} is too small: {level} {int(geographies[g])} has "
                f"{largest:,} {entities[e]} records with non-zero weight, so its ids would run "
                f"into the next {level}'s range; use stride >= {largest:,} or 'auto'."
            )
    top = _max_id(chosen, counts, written)
    if top > chosen.limit:
        raise InvalidProblemError(
            f"id overflow: the largest new id would be {top:,} (stride {chosen.stride:,}, "
            f"{written.size} {level}s up to position {int(written.max())}), and "
            f"{top:,} x {chosen.derived_id_factor} (derived ids such as person_id x "
            f"{chosen.derived_id_factor}) exceeds the {id_dtype} maximum "
            f"{np.iinfo(id_dtype).max:,}. Use id_dtype='int64' if every consumer of the file "
            f"computes in 64 bits, lower derived_id_factor if no consumer derives ids, or a "
            f"smaller stride (the largest {level} needs {need:,})."
        )
    return chosen


def _max_id(scheme: IdScheme, counts: np.ndarray, written: np.ndarray) -> int:
    """The largest id the scheme gives in the written geographies (0 if none)."""
    if written.size == 0:
        return 0
    per_geo = counts[written].max(axis=1) if counts.shape[1] else np.zeros(written.size)
    has = per_geo > 0
    if not has.any():
        return 0
    last = scheme.first_ids(written[has]) + per_geo[has].astype(np.int64) - 1
    return int(last.max())
