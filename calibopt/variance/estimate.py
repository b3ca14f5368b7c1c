"""The estimate object every variance function returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

__all__ = ["Estimate"]


@dataclass(eq=False)
class Estimate:
    """Estimates with their (co)variance: one entry per variable (and domain).

    Attributes
    ----------
    statistic : str
        ``"total"``, ``"mean"``, ``"ratio"`` or ``"statistic"`` (a user's function).
    names : list of str
        The variables (``"y/x"`` for ratios).
    domains : list or None
        The domain of each entry (``by=``), else None.
    estimate : ndarray
        Point estimates.
    covariance : ndarray
        Their covariance matrix (diagonal: variances).
    method : str
        How the variance was estimated (``"linearisation"``, ``"JKn replicates (30)"``, ...).
    info : dict
        Extras (replicate estimates, residual method, ...).
    """

    statistic: str
    names: list[str]
    domains: list[Any] | None
    estimate: np.ndarray
    covariance: np.ndarray
    method: str
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def variance(self) -> np.ndarray:
        """Variances (the covariance's diagonal)."""
        return np.clip(np.diag(self.covariance), 0.0, None)

    @property
    def se(self) -> np.ndarray:
        """Standard errors."""
        return np.sqrt(self.variance)

    @property
    def cv(self) -> np.ndarray:
        """Coefficients of variation ``se / |estimate|`` (inf where the estimate is 0)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.se / np.abs(self.estimate)

    def ci(self, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Normal confidence intervals ``estimate -/+ z se`` (R's ``confint`` default)."""
        z = norm.ppf(0.5 + level / 2.0)
        return self.estimate - z * self.se, self.estimate + z * self.se

    def frame(self, level: float = 0.95) -> pd.DataFrame:
        """One row per entry: variable, domain, estimate, se, cv, ci_low, ci_high."""
        low, high = self.ci(level)
        out = {"variable": self.names}
        if self.domains is not None:
            out["domain"] = self.domains
        out.update(estimate=self.estimate, se=self.se, cv=self.cv, ci_low=low, ci_high=high)
        return pd.DataFrame(out)

    def __len__(self) -> int:
        return int(self.estimate.shape[0])

    def __getitem__(self, key: Any) -> tuple[float, float]:
        """``(estimate, se)`` of one entry by position, name or ``(name, domain)``."""
        if isinstance(key, int | np.integer):
            i = int(key)
        else:
            keys = list(self.names) if self.domains is None else list(zip(self.names, self.domains))
            if key not in keys:
                raise KeyError(f"{key!r} is not an entry; entries: {keys[:10]}")
            i = keys.index(key)
        return float(self.estimate[i]), float(self.se[i])

    def __repr__(self) -> str:
        with pd.option_context("display.width", 120, "display.float_format", "{:.6g}".format):
            table = self.frame().to_string(index=False)
        return f"Estimate({self.statistic}, {self.method})\n{table}"
