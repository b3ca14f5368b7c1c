"""The figures of a study (matplotlib, loaded when first drawn).

* :func:`plot_time_vs_error`: wall time against max relative target error, one panel per
  instance, one marker per (method, solver);
* :func:`plot_performance_profile`: the Dolan-More performance profile over instances;
* :func:`plot_sparsity`: non-zero weights against max relative error for sparse methods;
* :func:`plot_fit_by_group`: the per-target relative error of one result, by target group.

Each takes a study table (or a fit table) and returns the matplotlib ``Figure``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from .. import status as st
from ..errors import InvalidProblemError

__all__ = [
    "performance_ratios",
    "plot_fit_by_group",
    "plot_performance_profile",
    "plot_sparsity",
    "plot_time_vs_error",
]

ERROR_FLOOR = 1e-16
"""Relative errors below this are drawn at it (log axes)."""
_MARKERS = "os^Dv<>pPX*hH"


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise InvalidProblemError(
            "study figures need matplotlib: pip install 'calibopt[plots]'."
        ) from exc
    return plt


def _ran(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["status"].isin(st.RESULT_STATUSES)]


def _styles(table: pd.DataFrame) -> tuple[dict[str, Any], dict[str, str]]:
    plt = _pyplot()
    cmap = plt.get_cmap("tab10" if table["method"].nunique() <= 10 else "tab20")
    colours = {m: cmap(i % cmap.N) for i, m in enumerate(sorted(table["method"].unique()))}
    solvers = sorted(table["solver"].astype(str).unique())
    markers = {s: _MARKERS[i % len(_MARKERS)] for i, s in enumerate(solvers)}
    return colours, markers


def _grid(n: int, width: float = 4.2, height: float = 3.6) -> tuple[Any, list[Any]]:
    plt = _pyplot()
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _legend(fig: Any, colours: dict[str, Any], markers: dict[str, str]) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, marker="o", ls="", label=m) for m, c in colours.items()]
    handles += [Line2D([], [], color="0.3", marker=k, ls="", label=s) for s, k in markers.items()]
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, title="method / solver")


def _panels(ran: pd.DataFrame, x: str, x_label: str, empty: str) -> Any:
    """One log-log panel per instance of ``x`` against max relative target error; filled
    markers met every target and bound, hollow ones did not."""
    plt = _pyplot()
    if ran.empty:
        raise InvalidProblemError(empty)
    colours, markers = _styles(ran)
    instances = list(dict.fromkeys(ran["instance"]))
    fig, axes = _grid(len(instances))
    fig.set_layout_engine("constrained")
    for ax, inst in zip(axes, instances):
        sub = ran[ran["instance"] == inst]
        for _, r in sub.iterrows():
            c = colours[r["method"]]
            ax.scatter(
                r[x],
                max(float(r["max_rel_error"]), ERROR_FLOOR),
                marker=markers[str(r["solver"])],
                s=46,
                facecolors=c if r["status"] in st.SUCCESS_STATUSES else "none",
                edgecolors=c,
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{inst} ({int(sub['n_units'].iloc[0]):,} units)", fontsize=10)
        ax.set_xlabel(x_label)
        ax.set_ylabel("max relative target error")
        ax.grid(True, which="major", alpha=0.3)
    _legend(fig, colours, markers)
    plt.close(fig)
    return fig


def plot_time_vs_error(table: pd.DataFrame) -> Any:
    """Wall time (log) against max relative target error (log), one panel per instance.
    Filled markers met every target and bound; hollow ones did not."""
    empty = "no pair of this study returned weights: nothing to plot."
    return _panels(_ran(table), "wall_time", "wall time (s)", empty)


def performance_ratios(table: pd.DataFrame, metric: str = "wall_time") -> pd.DataFrame:
    """Dolan-More ratios ``r[p, s] = t[p, s] / min_s t[p, s]`` (instances x configurations,
    a configuration being ``method/solver``); a run that did not succeed (status other than
    ``optimal`` or ``within_tolerance``) is ``inf``."""
    t = table.assign(config=table["method"] + "/" + table["solver"].astype(str))
    t = t[t["status"] != st.NOT_APPLICABLE]
    value = t[metric].where(t["status"].isin(st.SUCCESS_STATUSES), np.inf).astype(float)
    grid = t.assign(value=value).pivot_table(
        index="instance", columns="config", values="value", aggfunc="min"
    )
    grid = grid.fillna(np.inf)
    best = grid.min(axis=1).replace(np.inf, np.nan)
    return grid.div(best, axis=0).fillna(np.inf)


def plot_performance_profile(table: pd.DataFrame, metric: str = "wall_time") -> Any:
    """The performance profile: for each configuration, the share of instances it solves
    (every target and bound met) within a factor tau of the best configuration's time."""
    plt = _pyplot()
    ratios = performance_ratios(table, metric)
    if ratios.empty:
        raise InvalidProblemError("no pair ran: no performance profile.")
    finite = ratios.to_numpy()[np.isfinite(ratios.to_numpy())]
    tau_max = max(2.0, float(finite.max()) * 1.5) if finite.size else 2.0
    fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
    n = len(ratios)
    for i, config in enumerate(ratios.columns):
        r = np.sort(ratios[config].to_numpy())
        r = r[np.isfinite(r)]
        xs = np.concatenate([[1.0], r, [tau_max]])
        ys = np.concatenate([[0.0], np.arange(1, r.size + 1) / n, [r.size / n]])
        ax.step(xs, ys, where="post", label=config, lw=1.6, ls=("-", "--", ":", "-.")[i // 10 % 4])
    ax.set_xscale("log", base=2)
    ax.set_xlim(1.0, tau_max)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(f"tau: within this factor of the best {metric.replace('_', ' ')}")
    ax.set_ylabel(f"share of instances solved (of {n})")
    ax.set_title("Performance profile (Dolan-More)", fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.legend(fontsize=7, loc="outside right upper")
    plt.close(fig)
    return fig


def plot_sparsity(table: pd.DataFrame, sparse_methods: list[str] | None = None) -> Any:
    """Non-zero weights (log) against max relative target error (log) for the sparse
    methods, one panel per instance."""
    if sparse_methods is None:
        from ..formulations import get_method

        sparse_methods = [m for m in table["method"].unique() if get_method(m).sparse]
    ran = _ran(table[table["method"].isin(sparse_methods)])
    empty = "no sparse method returned weights: nothing to plot."
    return _panels(ran, "nnz", "non-zero weights", empty)


def plot_fit_by_group(fit: pd.DataFrame, title: str = "", max_groups: int = 40) -> Any:
    """Each target's absolute relative error (log scale, errors below 1e-16 drawn at it) by
    target group, with the group's tolerance as a green bar; misses are red crosses.
    ``fit`` is :meth:`Study.fit` or ``CalibrationResult.diagnostics``."""
    plt = _pyplot()
    groups = list(dict.fromkeys(fit["group"].astype(str)))[:max_groups]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(groups) + 3), 4.8), layout="constrained")
    rng = np.random.default_rng(0)
    for i, g in enumerate(groups):
        sub = fit[fit["group"].astype(str) == g]
        y = np.maximum(np.abs(sub["rel_error"].to_numpy(dtype=float)), ERROR_FLOOR)
        x = i + rng.uniform(-0.25, 0.25, y.size)
        met = sub["within_tolerance"].to_numpy(dtype=bool)
        ax.scatter(x[met], y[met], s=10, color="tab:blue", alpha=0.7)
        ax.scatter(x[~met], y[~met], s=18, color="tab:red", marker="x")
        tol = float(sub["tolerance"].max())
        if tol > 0:
            ax.hlines(tol, i - 0.4, i + 0.4, color="tab:green", lw=2)
    ax.set_yscale("log")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=60, ha="right", fontsize=7)
    ax.set_xlabel("target group")
    ax.set_ylabel("|relative target error|")
    shown = "" if len(groups) == fit["group"].nunique() else f" (first {len(groups)} groups)"
    ax.set_title((title or "Per-target fit") + shown, fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    plt.close(fig)
    return fig
