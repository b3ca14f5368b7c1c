"""Replicate-weight designs: variance of any weighted statistic, re-calibration, export.

A :class:`ReplicateDesign` holds the full-sample weights and one weight vector per replicate,
with R's variance rule (``svrVar``): ``V = scale sum_r rscales_r (theta_r - c)(theta_r - c)'``,
``c`` the mean of the replicate estimates (or the full-sample estimate with ``mse=True``).
Replicates made from a design are kept compressed (multipliers per PSU) until they are
re-calibrated; :meth:`ReplicateDesign.calibrate` re-runs the calibration on every replicate
(``calibopt.calibrate`` with the same method and options), so the variance includes the
calibration step.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidProblemError
from ..files import atomic_outputs
from ..validate import float_vector
from .design import DesignError
from .estimate import Estimate

__all__ = ["ReplicateDesign", "replicate_covariance"]


def replicate_covariance(
    thetas: np.ndarray, scale: float, rscales: np.ndarray, centre: np.ndarray | None
) -> np.ndarray:
    """R's ``svrVar``: ``scale * sum_r rscales_r (theta_r - c)(theta_r - c)'``.

    ``centre`` None uses the mean of the replicates with ``rscales > 0`` (R's default);
    replicates with a non-finite estimate are dropped, as R's ``na.action`` does.
    """
    thetas = np.asarray(thetas, dtype=np.float64)
    if thetas.ndim == 1:
        thetas = thetas[:, None]
    ok = np.all(np.isfinite(thetas), axis=1)
    thetas, rscales = thetas[ok], np.asarray(rscales, dtype=np.float64)[ok]
    if thetas.shape[0] == 0:
        raise InvalidProblemError("every replicate gave a non-finite estimate.")
    c = thetas[rscales > 0].mean(axis=0) if centre is None else np.asarray(centre)
    dev = (thetas - c) * np.sqrt(rscales)[:, None]
    return scale * (dev.T @ dev)


class ReplicateDesign:
    """Full-sample weights and replicate weights with their variance rule.

    Build one with :func:`calibopt.variance.replicate_weights` (from a :class:`Design`), with
    :meth:`Calibration.replicates` (re-calibrated), or from weights you have with
    :meth:`from_frame` (e.g. a survey's published replicate weights).

    Parameters
    ----------
    weights
        Full-sample weights (length ``n``).
    replicate_weights
        Replicate weights, shape ``(n, R)``; or give ``factors`` and ``index``.
    factors, index
        Multipliers of ``weights`` per PSU (``(n_psu, R)``) and each row's PSU (compressed).
    scale, rscales
        The variance rule (see the module docstring); ``rscales`` default 1.
    type
        A label (``"JKn"``, ``"bootstrap"``, ...).
    mse
        Centre at the full-sample estimate (True) or the replicates' mean (False, R default).
    data
        The units' variables (for ``total("y", reps)``).
    """

    def __init__(
        self,
        weights: Any,
        replicate_weights: Any = None,
        *,
        factors: Any = None,
        index: Any = None,
        scale: float,
        rscales: Any = None,
        type: str = "replicates",
        mse: bool = False,
        data: pd.DataFrame | None = None,
        design: Any = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.weights = float_vector(weights, "weights")
        self.n = self.weights.shape[0]
        if (replicate_weights is None) == (factors is None):
            raise InvalidProblemError("give either `replicate_weights` or `factors` + `index`.")
        if replicate_weights is not None:
            W = np.asarray(replicate_weights, dtype=np.float64)
            if W.ndim != 2 or W.shape[0] != self.n:
                raise DesignError(
                    f"`replicate_weights` must have shape (n, R) = ({self.n}, R); got {W.shape}."
                )
            self._W: np.ndarray | None = W
            self.factors = self.index = None
            n_rep = W.shape[1]
        else:
            self._W = None
            self.factors = np.asarray(factors, dtype=np.float64)
            self.index = np.asarray(index, dtype=np.int64)
            if self.index.shape != (self.n,):
                raise DesignError("`index` must give each row's PSU.")
            n_rep = self.factors.shape[1]
        if n_rep < 2:
            raise DesignError(f"a replicate design needs at least 2 replicates, got {n_rep}.")
        self.n_replicates = n_rep
        self.scale = float(scale)
        self.rscales = (
            np.ones(n_rep) if rscales is None else float_vector(rscales, "rscales", n_rep)
        )
        self.type = str(type)
        self.mse = bool(mse)
        if data is not None and len(data) != self.n:
            raise DesignError(f"`data` has {len(data)} rows but there are {self.n} weights.")
        self.data = data
        self.design = design
        self.info = dict(info or {})

    # ------------------------------------------------------------------ weights
    @property
    def replicate_weights(self) -> np.ndarray:
        """Replicate weights ``(n, R)`` (materialised from the multipliers on first use)."""
        if self._W is None:
            self._W = self.weights[:, None] * self.factors[self.index]
        return self._W

    def frame(
        self, prefix: str = "replicate_", weight: str = "weight", ids: Any = None
    ) -> pd.DataFrame:
        """The weights as users load them: identifying columns of the data (``ids``, e.g.
        ``"cds"`` or ``["hh_id", "person"]``), the main weight, then one column per replicate."""
        W = self.replicate_weights
        cols: dict[str, Any] = {}
        if ids is not None:
            names = [ids] if isinstance(ids, str) else list(ids)
            missing = [c for c in names if self.data is None or c not in self.data.columns]
            if missing:
                raise InvalidProblemError(
                    f"`ids`: {missing} not in the design's data"
                    + ("" if self.data is None else f" (columns: {list(self.data.columns)[:20]})")
                    + "."
                )
            cols.update({c: self.data[c].to_numpy() for c in names})
        cols[weight] = self.weights
        cols.update({f"{prefix}{r + 1}": W[:, r] for r in range(self.n_replicates)})
        index = None if self.data is None else self.data.index
        return pd.DataFrame(cols, index=index)

    def metadata(self) -> dict[str, Any]:
        """The variance rule (what a file of replicate weights needs beside it)."""
        return {
            "type": self.type,
            "scale": self.scale,
            "rscales": self.rscales.tolist(),
            "mse": self.mse,
            "n_replicates": self.n_replicates,
        }

    def write(
        self,
        path: str | os.PathLike,
        prefix: str = "replicate_",
        weight: str = "weight",
        *,
        ids: Any = None,
        overwrite: bool = False,
    ) -> tuple[Path, Path]:
        """Write the weights (CSV, or Parquet for a ``.parquet`` path; ``ids``: identifying
        columns of the data first, see :meth:`frame`) and, beside them, ``<path>.json`` with
        the variance rule; both atomically (an existing file is an error unless
        ``overwrite``). Returns both paths."""
        path = Path(path)
        meta_path = path.with_name(path.name + ".json")
        frame = self.frame(prefix, weight, ids)
        meta = {**self.metadata(), "weight": weight, "prefix": prefix}
        with atomic_outputs([path, meta_path], overwrite=overwrite) as (tmp, tmp_meta):
            if path.suffix == ".parquet":
                frame.to_parquet(tmp)
            else:
                frame.to_csv(tmp, index=self.data is not None and ids is None)
            Path(tmp_meta).write_text(json.dumps(meta, indent=2))
        return path, meta_path

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        weight: str,
        replicates: str | list[str],
        *,
        scale: float,
        rscales: Any = None,
        type: str = "replicates",
        mse: bool = False,
        data: pd.DataFrame | None = None,
    ) -> ReplicateDesign:
        """Replicate weights from columns: ``replicates`` is a list of names or a prefix
        (every column starting with it, in order). E.g. the ACS's 80 successive-difference
        replicates: ``from_frame(df, "PWGTP", "PWGTP", scale=4/80, mse=True)`` (the prefix
        also matches the main weight, which is left out)."""
        if isinstance(replicates, str):
            cols = [c for c in frame.columns if str(c).startswith(replicates) and c != weight]
        else:
            cols = list(replicates)
        missing = [c for c in [weight, *cols] if c not in frame.columns]
        if missing:
            raise DesignError(f"columns {missing[:5]} are not in the frame.")
        if len(cols) < 2:
            raise DesignError(f"found {len(cols)} replicate column(s); at least 2 are needed.")
        return cls(
            frame[weight].to_numpy(),
            frame[cols].to_numpy(),
            scale=scale,
            rscales=rscales,
            type=type,
            mse=mse,
            data=data,
        )

    @classmethod
    def read(cls, path: str | os.PathLike, data: pd.DataFrame | None = None) -> ReplicateDesign:
        """Read what :meth:`write` wrote."""
        path = Path(path)
        meta = json.loads(path.with_name(path.name + ".json").read_text())
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        return cls.from_frame(
            frame,
            meta["weight"],
            meta["prefix"],
            scale=meta["scale"],
            rscales=meta["rscales"],
            type=meta["type"],
            mse=meta["mse"],
            data=data,
        )

    # ------------------------------------------------------------------ variance
    def replicate_estimates(
        self, statistic: str, Y: np.ndarray, den: np.ndarray | None
    ) -> np.ndarray:
        """Estimates of a total, mean or ratio per replicate: ``(R, k)``."""
        from .estimators import evaluate

        if self._W is None and statistic == "total":  # compressed: sums per PSU first
            n_psu = self.factors.shape[0]
            sums = np.zeros((n_psu, Y.shape[1]))
            np.add.at(sums, self.index, self.weights[:, None] * Y)
            return self.factors.T @ sums
        return evaluate(statistic, Y, den, self.replicate_weights)

    def estimate_statistic(
        self,
        statistic: str,
        Y: np.ndarray,
        den: np.ndarray | None,
        names: list[str],
        domains: list[Any] | None,
        label: str | None = None,
    ) -> Estimate:
        """Estimate and replicate covariance of a total, mean or ratio of ``Y``."""
        from .estimators import evaluate

        est = evaluate(statistic, Y, den, self.weights[:, None])[0]
        thetas = self.replicate_estimates(statistic, Y, den)
        cov = replicate_covariance(thetas, self.scale, self.rscales, est if self.mse else None)
        return Estimate(
            label or statistic,
            names,
            domains,
            est,
            cov,
            f"{self.type} replicates ({self.n_replicates})",
            {"replicates": thetas},
        )

    def variance(self, statistic: Callable[[np.ndarray], Any]) -> np.ndarray:
        """Covariance matrix of any weighted statistic ``statistic(weights)``."""
        return self.estimate(statistic).covariance

    def estimate(
        self, statistic: Callable[[np.ndarray], Any], names: list[str] | None = None
    ) -> Estimate:
        """Estimate of ``statistic(weights)`` (scalar or vector) with its replicate variance,
        e.g. a weighted median: ``reps.estimate(lambda w: weighted_median(y, w))``."""
        if not callable(statistic):
            raise InvalidProblemError("`statistic` must be a function of the weights.")
        est = np.atleast_1d(np.asarray(statistic(self.weights), dtype=np.float64))
        W = self.replicate_weights
        thetas = np.stack(
            [
                np.atleast_1d(np.asarray(statistic(W[:, r]), dtype=np.float64))
                for r in range(self.n_replicates)
            ]
        )
        cov = replicate_covariance(thetas, self.scale, self.rscales, est if self.mse else None)
        names = names or [f"statistic{j}" if est.size > 1 else "statistic" for j in range(est.size)]
        return Estimate(
            "statistic",
            list(names),
            None,
            est,
            cov,
            f"{self.type} replicates ({self.n_replicates})",
            {"replicates": thetas},
        )

    # ------------------------------------------------------------------ re-calibration
    def calibrate(
        self,
        problem: Any,
        method: Any = "raking",
        solver: str | None = None,
        *,
        executor: Any = None,
        progress: bool | None = None,
        chunk_size: int | None = None,
        **options: Any,
    ) -> ReplicateDesign:
        """Calibrate the full sample and every replicate with the same method and options.

        Each replicate's problem is ``problem`` restricted to the units with a positive
        replicate weight, with those weights as its initial weights (the targets unchanged):
        what R's ``calibrate`` does to a ``svyrep.design``, for every method of calibopt
        (sparse methods re-select their records in every replicate).

        Parameters
        ----------
        problem
            The calibration problem; its units are the rows, its initial weights the
            full-sample weights of this design.
        method, solver, **options
            As for :func:`calibopt.calibrate`.
        executor
            Where replicates run: None (in process), an int or ``"process"`` (process pool),
            a ``dask.distributed.Client``, ... (see :mod:`calibopt.decomposition.executors`).
        progress
            Show a progress bar (None: when stderr is a terminal).
        chunk_size
            Replicates per task (default: 1 in process, else about four tasks per worker).

        Returns
        -------
        ReplicateDesign
            Calibrated full-sample and replicate weights; ``info["calibration"]`` holds the
            full-sample result, ``info["replicate_status"]`` each replicate's status.
        """
        from .recalibrate import recalibrate

        return recalibrate(
            self,
            problem,
            method,
            solver,
            executor=executor,
            progress=progress,
            chunk_size=chunk_size,
            options=options,
        )

    def __repr__(self) -> str:
        cal = " calibrated" if "calibration" in self.info else ""
        return (
            f"ReplicateDesign({self.n} units,{cal} {self.type}, {self.n_replicates} replicates, "
            f"scale={self.scale:.6g}, mse={self.mse})"
        )
