""":func:`quality_report`: how close synthetic data are to real data, and how far from copies.

Per table (household, tax unit, person) and variable: the Kolmogorov-Smirnov statistic for
numbers (``scipy.stats.ks_2samp``), the total variation distance for categories (half the L1
distance of the category shares), the share of zeros in each; the largest and mean absolute
difference of pairwise Pearson correlations on the person-level frame with household and
tax-unit numbers joined on (so cross-level dependence counts); the share of rule violations;
and privacy checks against the training data: the share of synthetic person records
identical to a training record, and the distance to the closest training record (DCR, on
numbers mapped to training ranks in [0, 1] and categories as 0/1 indicators, with
``scipy.spatial.cKDTree``). With held-out real data, the same privacy numbers for the
held-out records are the baseline: synthetic records should not sit closer to training
records than new real records do.

The KS and TV definitions are those of SDMetrics (``KSComplement`` = 1 - KS,
``TVComplement`` = 1 - TV); SDMetrics itself is not a dependency because it requires
pandas < 3, and its privacy metrics loop in Python per record.
``tests/test_synthesis_reweight.py`` checks our numbers against values SDMetrics computed on
the same data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..datasets.dataset import Dataset
from ..datasets.links import id_column
from ..errors import InvalidProblemError
from .enforce import check_hierarchy
from .tables import flatten

__all__ = ["THRESHOLDS", "QualityReport", "quality_report", "total_variation"]

THRESHOLDS = {
    "max_ks": 0.08,
    "max_tv": 0.08,
    "max_zero_share_diff": 0.05,
    "mean_corr_diff": 0.05,
    "violation_share": 0.0,
    "dcr_ratio": 0.5,
}
"""Quality a synthesis must reach on held-out data (``summary()`` keys; ``dcr_ratio``: the
median DCR of synthetic records over that of held-out records, at least this)."""


def total_variation(a: Any, b: Any) -> float:
    """Half the L1 distance between the category shares of two samples."""
    pa = pd.Series(np.asarray(a, dtype=object)).value_counts(normalize=True)
    pb = pd.Series(np.asarray(b, dtype=object)).value_counts(normalize=True)
    return float(0.5 * pa.sub(pb, fill_value=0.0).abs().sum())


def _is_number(s: pd.Series) -> bool:
    return (
        pd.api.types.is_numeric_dtype(s.dtype)
        and not pd.api.types.is_bool_dtype(s.dtype)
        and not isinstance(s.dtype, pd.CategoricalDtype)
    )


def _skip(dataset: Dataset) -> set[str]:
    return {id_column(e) for e in dataset.entities} | {"household_weight"}


def _marginals(real: Dataset, synth: Dataset, categorical: set[str]) -> pd.DataFrame:
    from scipy.stats import ks_2samp

    rows = []
    skip = _skip(real)
    for entity in real.entities:
        if entity not in synth.entities:
            continue
        a, b = real.table(entity), synth.table(entity)
        for var in a.columns:
            if var in skip or var not in b.columns:
                continue
            if _is_number(a[var]) and var not in categorical:
                x, y = a[var].to_numpy(dtype=float), b[var].to_numpy(dtype=float)
                stat, kind = float(ks_2samp(x, y).statistic), "number"
                zeros = (float(np.mean(x == 0)), float(np.mean(y == 0)))
            else:
                stat, kind = total_variation(a[var], b[var]), "category"
                zeros = (np.nan, np.nan)
            rows.append((entity, var, kind, stat, *zeros))
    return pd.DataFrame(
        rows,
        columns=[
            "entity",
            "variable",
            "kind",
            "distance",
            "zero_share_real",
            "zero_share_synthetic",
        ],
    )


def _numeric_frame(dataset: Dataset, categorical: set[str]) -> pd.DataFrame:
    flat = flatten(dataset, "all")
    skip = _skip(dataset)
    cols = [
        c for c in flat.columns if c not in skip and c not in categorical and _is_number(flat[c])
    ]
    return flat[cols].astype(float)


def _correlations(real: Dataset, synth: Dataset, categorical: set[str]) -> pd.DataFrame:
    a, b = _numeric_frame(real, categorical), _numeric_frame(synth, categorical)
    cols = [c for c in a.columns if c in b.columns and a[c].std() > 0 and b[c].std() > 0]
    ca, cb = a[cols].corr().to_numpy(), b[cols].corr().to_numpy()
    i, j = np.triu_indices(len(cols), 1)
    return pd.DataFrame(
        {
            "pair": [f"{cols[p]} ~ {cols[q]}" for p, q in zip(i, j)],
            "real": ca[i, j],
            "synthetic": cb[i, j],
            "difference": np.abs(ca[i, j] - cb[i, j]),
        }
    )


def _features(train: pd.DataFrame, other: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Numbers as training ranks in [0, 1]; categories as indicators."""
    fa, fb = [], []
    for col in train.columns:
        if _is_number(train[col]):
            ref = np.sort(train[col].to_numpy(dtype=float))
            for frame, out in ((train, fa), (other, fb)):
                out.append(np.searchsorted(ref, frame[col].to_numpy(dtype=float)) / ref.size)
        else:
            for cat in pd.unique(train[col].to_numpy()):
                fa.append((train[col].to_numpy() == cat).astype(float))
                fb.append((other[col].to_numpy() == cat).astype(float))
    return np.column_stack(fa), np.column_stack(fb)


def _privacy(
    train: Dataset, others: Mapping[str, Dataset], max_rows: int, seed: int
) -> pd.DataFrame:
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    skip = _skip(train)
    base = flatten(train, "all")
    cols = [c for c in base.columns if c not in skip]
    base = base[cols]
    if len(base) > max_rows:
        base = base.iloc[np.sort(rng.choice(len(base), max_rows, replace=False))]
    keys = set(pd.util.hash_pandas_object(base.astype(str), index=False).tolist())
    rows = []
    for label, data in others.items():
        frame = flatten(data, "all")[cols]
        if len(frame) > max_rows:
            frame = frame.iloc[np.sort(rng.choice(len(frame), max_rows, replace=False))]
        hashed = pd.util.hash_pandas_object(frame.astype(str), index=False).to_numpy()
        identical = float(np.mean([h in keys for h in hashed.tolist()]))
        fa, fb = _features(base, frame)
        dcr = cKDTree(fa).query(fb, k=1)[0]
        rows.append((label, identical, float(np.median(dcr)), float(np.mean(dcr == 0))))
    return pd.DataFrame(rows, columns=["data", "identical_share", "dcr_median", "dcr_zero_share"])


@dataclass
class QualityReport:
    """Tables of :func:`quality_report`; :meth:`summary` gives the headline numbers."""

    marginals: pd.DataFrame
    correlations: pd.DataFrame
    rules: pd.DataFrame
    privacy: pd.DataFrame

    def summary(self) -> dict[str, float]:
        m = self.marginals
        num, cat = m[m["kind"] == "number"], m[m["kind"] == "category"]
        out = {
            "max_ks": float(num["distance"].max()) if len(num) else 0.0,
            "mean_ks": float(num["distance"].mean()) if len(num) else 0.0,
            "max_tv": float(cat["distance"].max()) if len(cat) else 0.0,
            "max_zero_share_diff": float(
                (num["zero_share_real"] - num["zero_share_synthetic"]).abs().max()
            )
            if len(num)
            else 0.0,
            "max_corr_diff": float(self.correlations["difference"].max()),
            "mean_corr_diff": float(self.correlations["difference"].mean()),
            "violation_share": float(self.rules["share"].max()) if len(self.rules) else 0.0,
        }
        p = self.privacy.set_index("data")
        if "synthetic" in p.index:
            out["identical_share"] = float(p.loc["synthetic", "identical_share"])
            out["dcr_median"] = float(p.loc["synthetic", "dcr_median"])
        if "held-out" in p.index and "synthetic" in p.index:
            out["identical_share_holdout"] = float(p.loc["held-out", "identical_share"])
            out["dcr_median_holdout"] = float(p.loc["held-out", "dcr_median"])
            out["dcr_ratio"] = out["dcr_median"] / max(out["dcr_median_holdout"], 1e-12)
        return out

    def failures(self, thresholds: Mapping[str, float] = THRESHOLDS) -> dict[str, tuple]:
        """``{metric: (value, threshold)}`` for each threshold not met (empty: all met)."""
        s = self.summary()
        bad = {}
        for key, limit in thresholds.items():
            if key not in s:
                continue
            ok = s[key] >= limit if key == "dcr_ratio" else s[key] <= limit
            if not ok:
                bad[key] = (s[key], limit)
        return bad


def quality_report(
    real: Dataset,
    synthetic: Dataset,
    *,
    train: Dataset | None = None,
    rules: Iterable[Any] = (),
    categorical: Iterable[str] = ("state_fips", "congressional_district_geoid"),
    max_rows: int = 20_000,
    seed: int = 0,
) -> QualityReport:
    """Compare synthetic data with real (held-out) data.

    Parameters
    ----------
    real
        Real data the synthesizer did not see (a held-out part), or the training data.
    synthetic
        The synthetic data.
    train
        The training data, for the privacy checks (held-out records are the baseline).
    rules
        Hierarchy rules whose violations are counted in the synthetic data.
    categorical
        Numeric variables compared as categories.
    max_rows, seed
        Privacy checks use at most ``max_rows`` records of each dataset (a seeded sample).
    """
    for label, ds in (("real", real), ("synthetic", synthetic)):
        if not isinstance(ds, Dataset):
            raise InvalidProblemError(f"`{label}` must be a Dataset, got {type(ds).__name__}.")
    cats = set(categorical)
    rule_list = list(rules)
    checked = (
        check_hierarchy(synthetic.person, rules=rule_list)
        if rule_list
        else pd.DataFrame({"rule": [], "violations": []})
    )
    checked["share"] = checked["violations"] / max(synthetic.n_persons, 1)
    privacy = (
        _privacy(train, {"synthetic": synthetic, "held-out": real}, max_rows, seed)
        if train is not None
        else pd.DataFrame(columns=["data", "identical_share", "dcr_median", "dcr_zero_share"])
    )
    return QualityReport(
        _marginals(real, synthetic, cats), _correlations(real, synthetic, cats), checked, privacy
    )
