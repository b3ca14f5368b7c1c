"""The table of benchmarks/bench_national.py: rows from the cases' results, what each peer's
logs say about how far it got, and the times to 1% and to 1e-9 (see that script's docstring)."""

from __future__ import annotations

import re

from _hard_concrete import first_hit


def hc_fields(evals: list[dict]) -> dict:
    """Times to 1% (max and mean error) and the last training evaluation."""
    hit, mean = first_hit(evals, "max_rel_error", 0.01), first_hit(evals, "mean_rel_error", 0.01)
    return {
        "to_1pct": None if hit is None else hit["elapsed"],
        "to_1pct_epoch": None if hit is None else hit["epoch"],
        "mean_1pct": None if mean is None else [mean["epoch"], mean["elapsed"]],
        "last_eval": evals[-1] if evals else None,
    }


def progress(stdout: str, stderr: str) -> str:
    """How far cvxpy's compilation and Clarabel's iterations got (from their verbose logs)."""
    notes = []
    num = r"([0-9.]+(?:e[+-]?\d+)?)"
    comp = re.findall(rf"Finished problem compilation \(took {num} seconds\)", stderr)
    solve = re.findall(rf"Solver \(including time spent in interface\) took {num} seconds", stderr)
    if "Compiling problem" in stderr:
        notes.append(
            f"cvxpy compiled in {float(comp[-1]):.1f} s" if comp else "inside cvxpy's compilation"
        )
    its = re.findall(r"^\s*(\d+)\s+[+-]\d", stdout, flags=re.M)
    gap = re.findall(r"^\s*\d+\s+[+-]\S+\s+\S+\s+(\S+)", stdout, flags=re.M)
    ended = re.findall(r"Terminated with status = (\w+)", stdout)
    if solve:
        notes.append(f"Clarabel {float(solve[-1]):.1f} s")
    if ended and ended[-1] != "Solved":
        notes.append(f"Clarabel ended {ended[-1]} at iteration {its[-1]} (gap {gap[-1]})")
    elif its and not ended:
        notes.append(f"Clarabel at iteration {its[-1]} (gap {gap[-1]})")
    elif comp and not its:
        notes.append("Clarabel before its first iteration")
    return "; ".join(notes)


def fmt(x, spec: str) -> str:
    return "" if x is None else format(x, spec)


def reached(r: dict, level: float) -> str:
    """Seconds until the error reached ``level`` (see the module docstring)."""
    hc = r.get("to_1pct") if level >= 0.01 else None  # hard-concrete's training reached it
    if hc is not None:
        return f"{hc:.1f}"
    v, s = r.get("violation"), r.get("seconds")
    if v is not None and s is not None and v <= level:
        return f"{s:.1f}" + (" (polish)" if "to_1pct" in r else "")
    return "not reached"


def notes(r: dict) -> str:
    """What a row needs beside the columns (hard-concrete's progress, Clarabel's stage)."""
    out = [r["notes"]] if r.get("notes") else []
    if r.get("mean_1pct"):
        out.append(f"mean <= 1% at epoch {r['mean_1pct'][0]} ({r['mean_1pct'][1]:.1f} s)")
    elif "mean_1pct" in r:
        out.append("mean never <= 1%")
    if r.get("to_1pct_epoch"):
        out.append(f"max <= 1% at epoch {r['to_1pct_epoch']}")
    if "before" in r:
        b, a, st = r["before"], r["after"], r["settings"]
        out.append(
            f"lambda_l0 {st['lambda_l0']:g}, lr {st['lr']:g}, repair {st['repair']}; training "
            f"{r['training_s']:.1f} s ({r['s_per_epoch']:.4f} s/epoch): max / mean error "
            f"{b['max_rel_error']:.1e} / {b['mean_rel_error']:.1e}, {b['nnz']:,} non-zeros; "
            f"polish ({r['polish_status']}, supports {r.get('polish_supports')}) "
            f"{r['polish_s']:.1f} s -> {a['max_rel_error']:.1e} / {a['mean_rel_error']:.1e}"
        )
    elif r.get("last_eval"):
        e = r["last_eval"]
        out.append(
            f"last evaluation: epoch {e['epoch']}, max / mean error {e['max_rel_error']:.1e} / "
            f"{e['mean_rel_error']:.1e}, {e['live']:,} non-zeros"
        )
    if str(r.get("message", "")).startswith("cvxpy/"):
        out.append(r["message"])
    return "; ".join(out)


def table(rows: list[dict], baseline: bool) -> None:
    again = any(r.get("again_s") is not None for r in rows)
    head = (
        "| size | case | n | targets | s | iterations | status | max band violation | "
        "non-zeros | peak GiB | to 1% s | to 1e-9 s | notes |"
    )
    head += " again s |" if again else ""
    if baseline:
        head += " baseline s | baseline status | speed-up |"
        head += " baseline again s | speed-up again |" if again else ""
    print(head)
    print("|" + " --- |" * (head.count("|") - 1))
    for r in rows:
        line = (
            f"| {r['size']} | {r['case']} | {r.get('n', '')} | {r.get('targets', '')} | "
            f"{fmt(r.get('seconds'), '.2f')} | {fmt(r.get('iterations'), '')} | {r['status']} | "
            f"{fmt(r.get('violation'), '.1e')} | {fmt(r.get('nonzeros'), ',')} | "
            f"{fmt(r.get('peak_gib'), '.2f')} | {reached(r, 0.01)} | {reached(r, 1e-9)} | "
            f"{notes(r)} |"
        )
        line += f" {fmt(r.get('again_s'), '.2f')} |" if again else ""
        if baseline:
            line += (
                f" {fmt(r.get('baseline_s'), '.2f')} | {r.get('baseline_status')} | "
                f"{fmt(_ratio(r.get('baseline_s'), r.get('seconds')), '.2f')} |"
            )
            if again:
                ratio = _ratio(r.get("baseline_again_s"), r.get("again_s"))
                line += f" {fmt(r.get('baseline_again_s'), '.2f')} | {fmt(ratio, '.2f')} |"
        print(line)


def _ratio(before, now):
    return before / now if before and now else None
