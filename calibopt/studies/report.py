"""A study's report: its figures (PNG and SVG) and a Markdown summary with the table."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import __version__
from .. import status as st
from ..errors import InvalidProblemError
from ..files import atomic_output
from .plots import plot_fit_by_group, plot_performance_profile, plot_sparsity, plot_time_vs_error

__all__ = ["markdown_table", "write_report"]

_SHOWN = [
    ("instance", "instance"),
    ("method", "method"),
    ("solver", "solver"),
    ("status", "status"),
    ("wall_time", "wall s"),
    ("solve_time", "solve s"),
    ("max_rel_error", "max rel err"),
    ("misses", "misses"),
    ("nnz", "non-zeros"),
    ("iterations", "iters"),
    ("peak_memory_mb", "peak MB"),
    ("message", "message"),
]


def _cell(value: Any) -> str:
    if value is None or (np.ndim(value) == 0 and not isinstance(value, str) and pd.isna(value)):
        return ""
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        value = float(value)
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:.3g}"
    text = str(value).replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 90 else text[:87] + "..."


def markdown_table(frame: pd.DataFrame, headers: list[str] | None = None) -> str:
    """A GitHub-flavoured Markdown table of ``frame`` (numbers to 3 significant digits)."""
    heads = headers or [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines)


def _save(fig: Any, directory: Path, stem: str, formats: tuple[str, ...]) -> list[str]:
    names = []
    for fmt in formats:
        path = directory / f"{stem}.{fmt}"
        with atomic_output(path, overwrite=True) as tmp:
            fig.savefig(tmp, format=fmt, dpi=130 if fmt == "png" else None)
        names.append(path.name)
    return names


def _best(table: pd.DataFrame, instance: str) -> pd.Series | None:
    """The fastest successful pair of an instance, else the most accurate one that ran."""
    sub = table[table["instance"] == instance]
    ok = sub[sub["status"].isin(st.SUCCESS_STATUSES)]
    if len(ok):
        return ok.sort_values("wall_time").iloc[0]
    ran = sub[sub["status"].isin(st.RESULT_STATUSES)]
    return ran.sort_values("max_rel_error").iloc[0] if len(ran) else None


def write_report(study: Any, directory: Path, *, formats: tuple[str, ...] = ("png", "svg")) -> Path:
    """Write the figures and ``report.md`` of ``study`` into ``directory``; see
    :meth:`calibopt.studies.Study.report`."""
    if not formats or any(f not in ("png", "svg", "pdf") for f in formats):
        raise InvalidProblemError(f"`formats` must name png, svg or pdf; got {formats!r}.")
    directory.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(study)
    figures: list[tuple[str, str]] = []
    ran = table[table["status"].isin(st.RESULT_STATUSES)]
    if len(ran):
        fig = plot_time_vs_error(table)
        figures.append(
            ("Time against accuracy", _save(fig, directory, "time_vs_error", formats)[0])
        )
        fig = plot_performance_profile(table)
        figures.append(("Performance profile", _save(fig, directory, "profile", formats)[0]))
        try:
            fig = plot_sparsity(table)
        except InvalidProblemError:
            fig = None
        if fig is not None:
            figures.append(("Sparsity against fit", _save(fig, directory, "sparsity", formats)[0]))
    winners = []
    for inst in dict.fromkeys(table["instance"]):
        best = _best(table, inst)
        if best is None:
            continue
        winners.append(best)
        try:
            fit = study.fit(inst, best["method"], best["solver"])
        except InvalidProblemError:
            continue
        fig = plot_fit_by_group(fit, f"{inst}: {best['method']} / {best['solver']}")
        figures.append((f"Fit by group: {inst}", _save(fig, directory, f"fit_{inst}", formats)[0]))
    text = _markdown(table, winners, figures)
    with atomic_output(directory / "report.md", overwrite=True) as tmp:
        Path(tmp).write_text(text)
    return directory / "report.md"


def _markdown(table: pd.DataFrame, winners: list[pd.Series], figures: list) -> str:
    inst = table.drop_duplicates("instance")[["instance", "n_targets", "n_units", "digest"]]
    counts = table["status"].value_counts().rename_axis("status").reset_index(name="pairs")
    limits = table[["time_limit", "memory_limit_mb"]].dropna(how="all").head(1)
    shown = table.reindex(columns=[c for c, _ in _SHOWN])
    parts = [
        "# calibopt study",
        "",
        f"calibopt {__version__}, Python {platform.python_version()}, {platform.system()} "
        f"{platform.machine()}, {os.cpu_count()} CPUs. Each run in its own worker process"
        + (
            f" with a time limit of {limits['time_limit'].iloc[0]:g} s"
            if len(limits) and pd.notna(limits["time_limit"].iloc[0])
            else ""
        )
        + (
            f" and a memory limit of {limits['memory_limit_mb'].iloc[0]:,.0f} MiB"
            if len(limits) and pd.notna(limits["memory_limit_mb"].iloc[0])
            else ""
        )
        + ". Errors are checked from the weights; wall times are medians of the repeats.",
        "",
        "## Instances",
        "",
        markdown_table(inst, ["instance", "targets", "units", "digest"]),
        "",
        "## Outcomes",
        "",
        markdown_table(counts),
        "",
    ]
    if winners:
        cols = ["instance", "method", "solver", "status", "wall_time", "max_rel_error", "nnz"]
        heads = ["instance", "method", "solver", "status", "wall s", "max rel err", "non-zeros"]
        best = pd.DataFrame(winners)[cols]
        parts += [
            "## Fastest pair meeting every target and bound (else the most accurate that "
            "returned weights), per instance",
            "",
            markdown_table(best, heads),
            "",
        ]
    parts += ["## All pairs", "", markdown_table(shown, [h for _, h in _SHOWN]), ""]
    if figures:
        parts += ["## Figures", ""]
        for title, name in figures:
            parts += [f"### {title}", "", f"![{title}]({name})", ""]
    return "\n".join(parts)
