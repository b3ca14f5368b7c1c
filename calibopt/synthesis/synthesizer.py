""":class:`Synthesizer`: a conditional model of target variables given condition variables.

Two models, chosen by measurement (``benchmarks/bench_synthesis.py``, README):

* ``"cart"`` (default): sequential trees with donor sampling, as R's synthpop
  (:mod:`calibopt.synthesis.cart`); it keeps non-monotone dependence (no earnings below working
  age, pensions from 62) and the masses at zero;
* ``"copula"``: a Gaussian copula over empirical marginals with explicit zero masses
  (:mod:`calibopt.synthesis.copula`); faster to fit, NumPy only, but it only knows monotone
  dependence.

>>> import pandas as pd
>>> from calibopt.synthesis import Synthesizer
>>> df = pd.DataFrame({"age": [20, 30, 40, 50, 60, 70] * 5,
...                    "earnings": [0.0, 3e4, 5e4, 6e4, 2e4, 0.0] * 5})
>>> s = Synthesizer(["earnings"], ["age"], min_leaf=5).fit(df)
>>> out = s.generate(pd.DataFrame({"age": [20, 70]}), seed=1)
>>> out["earnings"].tolist()
[0.0, 0.0]
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidProblemError
from ..validate import choice, float_vector, integer
from .cart import CartModel
from .copula import CopulaModel
from .model_file import read_model_file, write_model_file
from .variables import Variable, decode, describe, encode

__all__ = ["MODELS", "Synthesizer", "as_generator"]

MODELS = {"cart": CartModel, "copula": CopulaModel}
"""The models a :class:`Synthesizer` can use."""

_FORMAT = "calibopt.synthesis.Synthesizer/1"


def as_generator(seed: Any) -> np.random.Generator:
    """A NumPy generator from a non-negative integer seed (or a Generator, used as is)."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(integer("seed", seed, low=0))


def _names(value: Iterable[str] | str, what: str) -> list[str]:
    names = [value] if isinstance(value, str) else list(value)
    if any(not isinstance(n, str) for n in names):
        raise InvalidProblemError(f"`{what}` must be column names (strings), got {names!r}.")
    if len(set(names)) != len(names):
        raise InvalidProblemError(f"`{what}` repeats a column: {names}.")
    return names


class Synthesizer:
    """Conditional synthesis of ``targets`` given ``conditions``.

    Parameters
    ----------
    targets
        Columns to generate (in this order: later targets depend on earlier ones).
    conditions
        Columns given at generation time (none: unconditional generation).
    model
        ``"cart"`` or ``"copula"`` (see the module docstring).
    categorical
        Numeric columns to treat as categories (codes such as state FIPS).
    **options
        Model options: ``min_leaf`` and ``smooth`` for ``"cart"``, ``ridge`` for ``"copula"``.
    """

    def __init__(
        self,
        targets: Iterable[str] | str,
        conditions: Iterable[str] | str = (),
        *,
        model: str = "cart",
        categorical: Iterable[str] = (),
        **options: Any,
    ) -> None:
        self.targets = _names(targets, "targets")
        self.conditions = _names(conditions, "conditions")
        if not self.targets:
            raise InvalidProblemError("`targets` must name at least one column to generate.")
        both = set(self.targets) & set(self.conditions)
        if both:
            raise InvalidProblemError(f"{sorted(both)} are both targets and conditions.")
        self.model_name = choice("model", model, tuple(MODELS))
        self.categorical = _names(categorical, "categorical")
        try:
            self.model = MODELS[model](**options)
        except TypeError as exc:
            raise InvalidProblemError(f"bad option for model={model!r}: {exc}.") from None
        self.condition_vars: list[Variable] = []
        self.target_vars: list[Variable] = []
        self.fitted = False

    def fit(self, data: pd.DataFrame, weights: Any = None) -> Synthesizer:
        """Fit the model on a DataFrame holding the targets and the conditions.

        Parameters
        ----------
        data
            One row per training record.
        weights
            Optional non-negative record weights (design weights).

        Raises
        ------
        InvalidProblemError
            Not a DataFrame, no rows, a missing column, missing or infinite values, bad
            weights.
        """
        if not isinstance(data, pd.DataFrame):
            raise InvalidProblemError(f"`data` must be a DataFrame, got {type(data).__name__}.")
        if len(data) == 0:
            raise InvalidProblemError("`data` is empty: there is nothing to fit.")
        w = None
        if weights is not None:
            w = float_vector(weights, "weights", len(data))
            if not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
                raise InvalidProblemError(
                    "`weights` must be finite, non-negative and not all zero."
                )
        self.condition_vars = describe(data, self.conditions, self.categorical)
        self.target_vars = describe(data, self.targets, self.categorical)
        C = encode(data, self.condition_vars)
        T = encode(data, self.target_vars)
        self.model.fit(C, T, self.condition_vars, self.target_vars, w)
        self.fitted = True
        return self

    def generate(
        self, conditions: pd.DataFrame | None = None, *, n: int | None = None, seed: Any = 0
    ) -> pd.DataFrame:
        """Generate the targets, one row per row of ``conditions`` (or ``n`` rows).

        The same seed gives the same output, in any process.

        Returns
        -------
        DataFrame
            The target columns with their training dtypes (index ``0..n-1``).
        """
        if not self.fitted:
            raise InvalidProblemError("the synthesizer is not fitted: call fit(data) first.")
        rng = as_generator(seed)
        if self.conditions:
            if not isinstance(conditions, pd.DataFrame):
                raise InvalidProblemError(
                    f"`conditions` must be a DataFrame with columns {self.conditions}."
                )
            C = encode(conditions, self.condition_vars)
        else:
            if n is None:
                n = 0 if conditions is None else len(conditions)
            C = np.zeros((integer("n", n, low=0), 0))
        if C.shape[0] == 0:
            return decode(np.zeros((0, len(self.target_vars))), self.target_vars)
        return decode(self.model.sample(C, self.target_vars, rng), self.target_vars)

    # ------------------------------------------------------------------ files
    def _meta(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "model": self.model_name,
            "options": self.model.params(),
            "targets": self.targets,
            "conditions": self.conditions,
            "categorical": self.categorical,
            "condition_vars": [v.to_json() for v in self.condition_vars],
            "target_vars": [v.to_json() for v in self.target_vars],
        }

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> None:
        """Write the fitted model to one ``.npz`` file (arrays and JSON; no pickle), atomically."""
        if not self.fitted:
            raise InvalidProblemError("the synthesizer is not fitted: nothing to save.")
        write_model_file(path, self._meta(), self.model.arrays, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Synthesizer:
        """Read a file written by :meth:`save`."""
        return cls.from_state(*read_model_file(path, "Synthesizer", _FORMAT))

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Synthesizer:
        """Rebuild a fitted synthesizer from :meth:`state` output."""
        out = cls(
            meta["targets"],
            meta["conditions"],
            model=meta["model"],
            categorical=meta["categorical"],
            **meta["options"],
        )
        out.condition_vars = [Variable.from_json(v) for v in meta["condition_vars"]]
        out.target_vars = [Variable.from_json(v) for v in meta["target_vars"]]
        out.model.arrays = dict(arrays)
        out.fitted = True
        return out

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The fitted model as JSON-able metadata and arrays (what :meth:`save` writes)."""
        return self._meta(), dict(self.model.arrays)

    def __repr__(self) -> str:
        fitted = "fitted" if self.fitted else "not fitted"
        return (
            f"Synthesizer(model={self.model_name!r}, targets={self.targets}, "
            f"conditions={self.conditions}, {fitted})"
        )
