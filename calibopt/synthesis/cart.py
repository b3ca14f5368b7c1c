"""Sequential CART synthesis (the method of R's synthpop), on encoded float matrices.

Target ``j`` is modelled by a classification or regression tree on the conditions and the
targets ``0..j-1``; a synthetic value is a *donor*: a training value drawn at random (by
weight) from the leaf the synthetic record falls in. Continuous positive values are
smoothed on the log scale (a Gaussian kernel with a rule-of-thumb bandwidth), so no income
is copied exactly; exact zeros stay zeros, so a variable's zero mass is kept.

The trees are grown by scikit-learn (``calibopt[synthesis]``); a fitted model keeps only
plain arrays (children, split feature and threshold, the donors sorted by leaf), so leaves
are found by a vectorised NumPy walk down the tree, saving needs no pickle, and generating
needs no scikit-learn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InvalidProblemError
from .variables import Variable

__all__ = ["CartModel", "tree_arrays", "walk"]


def _bandwidth(values: np.ndarray) -> float:
    """Silverman's rule of thumb for the log of the positive values (0 when too few)."""
    pos = values[values > 0]
    if pos.size < 5:
        return 0.0
    logs = np.log(pos)
    q75, q25 = np.percentile(logs, [75, 25])
    spread = min(float(np.std(logs)), float(q75 - q25) / 1.34) or float(np.std(logs))
    return 0.9 * spread * pos.size ** (-0.2)


def tree_arrays(tree: Any, j: int) -> dict[str, np.ndarray]:
    """The structure of a fitted scikit-learn tree as plain arrays (suffix ``j``)."""
    t = tree.tree_
    return {
        f"left{j}": t.children_left.astype(np.int64),
        f"right{j}": t.children_right.astype(np.int64),
        f"feature{j}": np.maximum(t.feature, 0).astype(np.int64),
        f"threshold{j}": t.threshold.astype(np.float64),
    }


def walk(arrays: dict[str, np.ndarray], j: int, X: np.ndarray) -> np.ndarray:
    """The leaf (node id) of each row of ``X`` in tree ``j``: a vectorised walk, equal to
    scikit-learn's ``tree.apply`` (features rounded to float32 as it does)."""
    left, right = arrays[f"left{j}"], arrays[f"right{j}"]
    feature, threshold = arrays[f"feature{j}"], arrays[f"threshold{j}"]
    X = np.asarray(X, dtype=np.float32)  # scikit-learn compares float32 features
    node = np.zeros(X.shape[0], dtype=np.int64)
    active = np.flatnonzero(left[node] >= 0)
    while active.size:
        n = node[active]
        go_left = X[active, feature[n]] <= threshold[n]
        node[active] = np.where(go_left, left[n], right[n])
        active = active[left[node[active]] >= 0]
    return node


class CartModel:
    """Sequential trees with donor sampling.

    Parameters
    ----------
    min_leaf
        Minimum training rows in a leaf (the privacy/fidelity dial: larger leaves mix more
        donors).
    smooth
        Smooth continuous positive values on the log scale.
    """

    name = "cart"

    def __init__(self, min_leaf: int = 10, smooth: bool = True) -> None:
        self.min_leaf = int(min_leaf)
        self.smooth = bool(smooth)
        self.arrays: dict[str, np.ndarray] = {}

    def params(self) -> dict[str, Any]:
        """Constructor arguments (for saving)."""
        return {"min_leaf": self.min_leaf, "smooth": self.smooth}

    def fit(
        self,
        C: np.ndarray,
        T: np.ndarray,
        conditions: Sequence[Variable],
        targets: Sequence[Variable],
        weights: np.ndarray | None,
    ) -> CartModel:
        """Grow one tree per target (each on the conditions and the earlier targets)."""
        try:
            from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
        except ImportError:  # pragma: no cover - exercised only without the extra
            raise InvalidProblemError(
                "model='cart' needs scikit-learn to fit: pip install 'calibopt[synthesis]' "
                "(or use model='copula')."
            ) from None
        arrays: dict[str, np.ndarray] = {}
        n = T.shape[0]
        w = np.ones(n) if weights is None else weights
        for j, var in enumerate(targets):
            X = np.column_stack([C, T[:, :j]]) if C.shape[1] + j else np.zeros((n, 1))
            y = T[:, j]
            cls = DecisionTreeClassifier if var.kind == "categorical" else DecisionTreeRegressor
            tree = cls(min_samples_leaf=self.min_leaf, random_state=0)
            tree.fit(X, y, sample_weight=weights)
            arrays |= tree_arrays(tree, j)
            leaf = walk(arrays, j, X)
            order = np.lexsort((y, leaf))
            leaf_sorted = leaf[order]
            n_nodes = arrays[f"left{j}"].size
            start = np.searchsorted(leaf_sorted, np.arange(n_nodes))
            count = np.searchsorted(leaf_sorted, np.arange(n_nodes), side="right") - start
            # per-leaf cumulative weight shares, offset by the leaf's rank: one searchsorted
            # over the whole array finds a donor of every synthetic row
            rank = np.cumsum(count > 0) - 1
            ws = w[order]
            cs = np.cumsum(ws)
            tot = np.bincount(leaf_sorted, weights=ws, minlength=n_nodes)
            share = (cs - np.concatenate([[0.0], cs])[start[leaf_sorted]]) / tot[leaf_sorted]
            share[(start + count - 1)[count > 0]] = 1.0  # exactly 1 at each leaf's last donor
            arrays[f"key{j}"] = rank[leaf_sorted] + share
            arrays[f"rank{j}"] = rank.astype(np.int64)
            arrays[f"donors{j}"] = y[order]
            arrays[f"bandwidth{j}"] = np.array(
                _bandwidth(y) if var.kind == "continuous" and self.smooth else 0.0
            )
        self.arrays = arrays
        return self

    def sample(
        self, C: np.ndarray, targets: Sequence[Variable], rng: np.random.Generator
    ) -> np.ndarray:
        """Draw targets for each row of conditions ``C``."""
        n = C.shape[0]
        T = np.empty((n, len(targets)))
        for j, var in enumerate(targets):
            X = np.column_stack([C, T[:, :j]]) if C.shape[1] + j else np.zeros((n, 1))
            leaf = walk(self.arrays, j, X)
            key = self.arrays[f"key{j}"]
            pick = np.searchsorted(key, self.arrays[f"rank{j}"][leaf] + rng.random(n), "right")
            values = self.arrays[f"donors{j}"][np.minimum(pick, key.size - 1)]
            h = float(self.arrays[f"bandwidth{j}"])
            if h > 0:
                noise = rng.standard_normal(n)
                values = np.where(values > 0, values * np.exp(h * noise), values)
            if var.kind != "continuous" or var.integral:
                values = np.rint(values)
            T[:, j] = values
        return T
