"""Variables of a synthesis model: their kind, and their encoding as numbers and back.

Every model of :mod:`calibopt.synthesis` works on a float matrix. A :class:`Variable` says
how one DataFrame column becomes a float column and back, exactly:

* ``"categorical"``: codes ``0..k-1`` over the sorted categories (bool, strings, pandas
  categoricals, or integers declared categorical such as state codes); decoded to the
  original dtype (a pandas Categorical keeps its categories and their order);
* ``"count"``: integers (ages, numbers of persons), decoded as the original integer dtype;
* ``"continuous"``: floats; ``integral`` when every training value is a whole number (whole
  dollars), then generated values are rounded; ``zero_mass`` is the share of exact zeros.

A :class:`Variable` is plain JSON data, so a fitted model saves without pickle.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidProblemError

__all__ = ["KINDS", "Variable", "decode", "describe", "encode"]

KINDS = ("categorical", "count", "continuous")


@dataclass(frozen=True)
class Variable:
    """How one column is modelled and encoded.

    Attributes
    ----------
    name : str
    kind : str
        ``"categorical"``, ``"count"`` or ``"continuous"``.
    dtype : str
        The column's dtype, restored on decoding (``"category"`` for a pandas Categorical).
    categories : list or None
        The categories of a categorical variable, in code order.
    integral : bool
        A continuous variable whose training values are all whole numbers.
    zero_mass : float
        Share of exact zeros in the training data (numbers only).
    """

    name: str
    kind: str
    dtype: str
    categories: list[Any] | None = None
    integral: bool = False
    zero_mass: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The variable as JSON-able data."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Variable:
        """The inverse of :meth:`to_json`."""
        return cls(**data)


def _plain(value: Any) -> Any:
    """A NumPy scalar as a Python scalar (JSON-able)."""
    return value.item() if isinstance(value, np.generic) else value


def describe(
    frame: pd.DataFrame, columns: Iterable[str], categorical: Iterable[str] = ()
) -> list[Variable]:
    """Infer the :class:`Variable` of each column.

    Non-numeric columns (bool, strings, categoricals) and those named in ``categorical`` are
    categorical; other integer columns are counts; float columns are continuous.

    Raises
    ------
    InvalidProblemError
        A missing column, missing values, infinite numbers, or an empty frame.
    """
    forced = set(categorical)
    out = []
    if len(frame) == 0:
        raise InvalidProblemError("cannot describe variables of an empty table.")
    for name in columns:
        if name not in frame.columns:
            raise InvalidProblemError(
                f"column {name!r} is missing (columns: {list(frame.columns)[:20]})."
            )
        col = frame[name]
        if col.isna().any():
            raise InvalidProblemError(
                f"column {name!r} has {int(col.isna().sum())} missing value(s); fill or drop "
                f"them before fitting."
            )
        dtype = col.dtype
        is_cat = isinstance(dtype, pd.CategoricalDtype)
        numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
        if is_cat or not numeric or name in forced:
            cats = list(col.cat.categories) if is_cat else sorted(pd.unique(col.to_numpy()))
            out.append(
                Variable(
                    name,
                    "categorical",
                    "category" if is_cat else str(dtype),
                    [_plain(c) for c in cats],
                )
            )
            continue
        values = col.to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(values)):
            raise InvalidProblemError(f"column {name!r} has infinite values.")
        kind = "count" if dtype.kind in "iu" else "continuous"
        out.append(
            Variable(
                name,
                kind,
                str(dtype),
                integral=bool(np.all(values == np.round(values))),
                zero_mass=float(np.mean(values == 0)),
            )
        )
    return out


def encode(frame: pd.DataFrame, variables: Sequence[Variable]) -> np.ndarray:
    """The columns as a float64 matrix (categories as their codes).

    Raises
    ------
    InvalidProblemError
        A missing column or a category the model has not seen.
    """
    out = np.empty((len(frame), len(variables)), dtype=np.float64)
    for j, var in enumerate(variables):
        if var.name not in frame.columns:
            raise InvalidProblemError(
                f"column {var.name!r} is missing (columns: {list(frame.columns)[:20]})."
            )
        col = frame[var.name]
        if var.kind == "categorical":
            codes = pd.Index(var.categories).get_indexer(col.to_numpy())
            if (codes < 0).any():
                bad = pd.unique(col.to_numpy()[codes < 0])[:5].tolist()
                raise InvalidProblemError(
                    f"column {var.name!r} has categories the model has not seen: {bad} "
                    f"(known: {var.categories[:10]})."
                )
            out[:, j] = codes
        else:
            try:
                out[:, j] = col.to_numpy(dtype=np.float64)
            except (TypeError, ValueError):
                raise InvalidProblemError(
                    f"column {var.name!r} must be numeric, got dtype {col.dtype}."
                ) from None
    return out


def decode(matrix: np.ndarray, variables: Sequence[Variable]) -> pd.DataFrame:
    """The inverse of :func:`encode`: a DataFrame with the original dtypes."""
    data = {}
    for j, var in enumerate(variables):
        col = matrix[:, j]
        if var.kind == "categorical":
            codes = np.clip(np.rint(col), 0, len(var.categories) - 1).astype(np.int64)
            if var.dtype == "category":
                data[var.name] = pd.Categorical.from_codes(codes, categories=var.categories)
            else:
                data[var.name] = np.asarray(var.categories, dtype=object)[codes].astype(
                    var.dtype if var.dtype != "object" else object
                )
        elif var.kind == "count" or var.integral:
            data[var.name] = np.rint(col).astype(var.dtype)
        else:
            data[var.name] = col.astype(var.dtype)
    return pd.DataFrame(data)
