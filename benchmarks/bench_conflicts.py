"""Conflicting and hierarchical targets on the synthetic country with noise (issue 16).

Parts (``--part``, default all), each on ``synthetic_country(size, seed=0, noise=0.02)``
(``--size full``: 436 districts x 12,000 households = 5,232,000 columns):

* ``conflicts`` -- ``co.diagnose``: time to the first minimal conflicting set and to all of
  them (disjoint), LP solves, sets by kind; side by side, the existing single LP certificate
  (``solvers.feasibility.lp_certificate``: proves infeasibility, names a non-minimal set) on
  ``--certificate-size`` (default: the 872,000-column country; on the full one it takes more
  than 12 minutes and 13 GB) against diagnose's first set there, and, on ``--iis-size``
  (default small), HiGHS's own IIS routine on the whole feasibility LP.
* ``reconcile`` -- ``reconcile(targets, target_hierarchy(matrix))``: time, families, residual,
  changes, distance to the true totals before and after, conflicts left.
* ``misfit`` -- ``least-misfit`` on the reconciled targets: the least largest relative miss.
* ``consistency`` -- cross-area consistency to the design weights: the least largest target
  miss (``least-misfit``, consistency rows hard) and the worst inconsistency factor, without
  the rows, with a band of 10% and exact. Slow beyond ``tiny``: on ``small`` the row without
  consistency took 165 s (stage 2's distance method falls back twice), so
  ``--consistency-size tiny`` is the practical setting.
* ``sparsity`` -- records per area, one global L0 price vs a price per area
  (``decomposition.adaptive.adaptive_sparsity``, ``hard-concrete`` without polish) at the
  same worst-area tolerance, on ``--sparsity-size`` (default small: CPU-only machine).

Usage::

    flock /tmp/calibopt-heavy.lock python benchmarks/bench_conflicts.py --size full \
        [--part conflicts|reconcile|misfit|consistency|sparsity|all] [--time-limit 900]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _memory import settle, vm  # noqa: E402


def build(size: str, noise: float = 0.02):
    """The country, its matrix and its problem."""
    from calibopt.datasets import synthetic_country
    from calibopt.matrix import MatrixBuilder

    t0 = time.perf_counter()
    c = synthetic_country(size, seed=0, noise=noise)
    m = MatrixBuilder(c.targets_database(), c.dataset, c.geographies, rules=c.rules).build()
    return c, m, m.to_problem(), time.perf_counter() - t0


def part_conflicts(size: str, time_limit: float, iis_size: str, cert_size: str) -> dict:
    import calibopt as co
    from calibopt.solvers.feasibility import lp_certificate

    t_cert = short = float("nan")
    if cert_size:
        _, _, c, _ = build(cert_size)
        lo, hi = c.target_bands()
        wlo, whi = c.weight_bounds()
        t0 = time.perf_counter()
        short = lp_certificate(c.X, lo, hi, wlo, whi, c.target_names, raise_if_infeasible=False)
        t_cert = time.perf_counter() - t0
        print(f"[conflicts] single LP certificate on {cert_size}: {t_cert:.1f} s", flush=True)
        t0 = time.perf_counter()
        first = co.diagnose(c, max_sets=1, time_limit=time_limit, progress=False)
        t_first_small = time.perf_counter() - t0
        del c
    _, _, p, t_build = build(size)
    print(f"[conflicts] {p} built in {t_build:.1f} s", flush=True)
    report = co.diagnose(p, time_limit=time_limit, progress=False)
    sets = report.conflicts
    kinds = {
        "pure (no bounds)": sum(not c.needs_bounds for c in sets),
        "with bounds": sum(c.needs_bounds for c in sets),
    }
    sizes = [len(c.targets) for c in sets]
    out = {
        "size": size,
        "targets": p.n_targets,
        "columns": p.n_units,
        "certificate": {
            "size": cert_size,
            "lp_certificate_seconds": t_cert,
            "shortfall": short,
            "diagnose_first_set_seconds": t_first_small if cert_size else None,
            "first_set_misfit": first.misfit if cert_size else None,
        },
        "first_set_seconds": report.first_seconds,
        "all_sets_seconds": report.seconds,
        "sets": len(sets),
        "complete": report.complete,
        "stop_reason": report.stop_reason,
        "lp_solves": report.lp_solves,
        "verified": sum(c.irreducible is True for c in sets),
        "kinds": kinds,
        "targets_in_sets": int(sum(sizes)),
        "largest_set": max(sizes, default=0),
        "misfit": report.misfit,
        "first_sets": [c.describe(4) for c in sets[:3]],
    }
    print(report.summary(limit=5), flush=True)
    if iis_size:
        _, _, q, _ = build(iis_size)
        t0 = time.perf_counter()
        co.diagnose(q, max_sets=1, time_limit=time_limit, progress=False)
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        highs = co.diagnose(
            q, max_sets=1, time_limit=min(time_limit, 600), engine="highs", progress=False
        )
        t_highs = time.perf_counter() - t0
        out["first_set_vs_highs_iis"] = {
            "size": iis_size,
            "ours_seconds": t_ours,
            "highs_iis_seconds": t_highs,
            "ratio": t_highs / t_ours,
            "highs_found": len(highs.conflicts),
            "highs_stop": highs.stop_reason,
        }
    return out


def part_reconcile(size: str, time_limit: float) -> dict:
    import calibopt as co
    from calibopt.conflicts import reconcile, target_hierarchy

    c, m, p, _ = build(size)
    t0 = time.perf_counter()
    rules = target_hierarchy(m)
    t_rules = time.perf_counter() - t0
    rec = reconcile(m.targets, rules)
    # the matrix rows' true values, matched through their (canonical) constraints
    key = dict(zip(zip(c.targets["variable"], c.targets["constraints"]), c.targets["true_value"]))
    t = np.array(
        [key[k] for k in zip(m.targets["variable"], m.targets["constraints"])], dtype=float
    )
    b = m.targets["value"].to_numpy(float)
    x = rec.values.to_numpy()
    p_rel = 1.0 / b**2
    dist = lambda v: float(np.sqrt(np.sum(p_rel * v**2)))  # noqa: E731
    after = co.diagnose(rec.apply(p), time_limit=time_limit, progress=False)
    return {
        "families": len(rules),
        "hierarchy_seconds": t_rules,
        "reconcile_seconds": rec.seconds,
        "method": rec.method,
        "residual": rec.residual,
        "changed": int((rec.changes["change"] != 0).sum()),
        "median_abs_rel_change": float(rec.changes["rel_change"].abs().median()),
        "max_abs_rel_change": float(rec.changes["rel_change"].abs().max()),
        "distance_to_truth_before": dist(b - t),
        "distance_to_truth_after": dist(x - t),
        "max_rel_error_vs_truth_before": float(np.max(np.abs(b - t) / np.abs(t))),
        "max_rel_error_vs_truth_after": float(np.max(np.abs(x - t) / np.abs(t))),
        "sets_after": len(after.conflicts),
        "sets_after_complete": after.complete,
        "misfit_after": after.misfit,
    }


def _reconciled(size: str):
    from calibopt.conflicts import reconcile, target_hierarchy

    c, m, _, _ = build(size)
    rec = reconcile(m.targets, target_hierarchy(m))
    return c, m, rec


def part_misfit(size: str) -> dict:
    import calibopt as co

    _, m, rec = _reconciled(size)
    p = rec.apply(m.to_problem())
    r = co.calibrate(p, method="least-misfit", time_limit=900)
    return {
        "misfit": r.info["misfit"],
        "lexicographic_passes": len(r.info["passes"]),
        "second_level": r.info["passes"][1][0] if len(r.info["passes"]) > 1 else None,
        "missed": len(r.info["misses"]),
        "seconds": r.wall_time,
        "lp_seconds": r.info["lp_seconds"],
        "sifting_rounds": r.info["sifting_rounds"],
        "working_set": r.info["working_set"],
        "stage2": r.info["stage2"],
        "status": r.status,
    }


def part_consistency(size: str) -> dict:
    import calibopt as co

    _, m, rec = _reconciled(size)
    rows = []
    for label, kw in (
        ("none", {}),
        ("band 10%", {"consistency": True, "consistency_tolerance": 0.10}),
        ("exact", {"consistency": True}),
    ):
        settle()
        p = rec.apply(m.to_problem(**kw))
        t0 = time.perf_counter()
        r = co.calibrate(
            p, method="least-misfit", hard=["consistency"] if kw else None, time_limit=900
        )
        n_targets = m.X.shape[0]
        fit = np.abs(r.fit.rel_errors[:n_targets])
        inc = m.inconsistency(r.weights)
        rows.append(
            {
                "consistency": label,
                "least_max_target_miss": r.info["misfit"],
                "max_target_rel_error": float(fit.max()),
                "worst_inconsistency_factor": inc["worst"],
                "max_factor": inc["max_factor"],
                "min_factor": inc["min_factor"],
                "households_dropped": inc["dropped"],
                "seconds": time.perf_counter() - t0,
                "stage2": r.info["stage2"],
                "peak_rss_mib": vm("VmHWM"),
            }
        )
        print(f"[consistency] {rows[-1]}", flush=True)
    return {"rows": rows}


def home_sample(country, areas) -> np.ndarray:
    """Households whose home district is each area (its own survey sample)."""
    home = country.dataset.household["congressional_district_geoid"].to_numpy().astype(int)
    counts = dict(zip(*np.unique(home, return_counts=True)))
    return np.array([counts.get(int(a), 0) for a in areas])


def _corr(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")


def part_sparsity(size: str, tolerance: float, epochs: int, rounds: int, lam: float) -> dict:
    from calibopt.decomposition.adaptive import adaptive_sparsity

    c, m, _, _ = build(size, noise=0.0)
    p = m.to_problem()
    labels = np.repeat(m.columns.geographies, m.columns.n_households)
    sample = home_sample(c, m.columns.geographies)
    opts = {"epochs": epochs, "seed": 0, "lr": 0.2}
    out = {}
    for per_area in (False, True):
        a = adaptive_sparsity(
            p,
            labels,
            tolerance=tolerance,
            lambda_l0=lam,
            rounds=rounds,
            per_area=per_area,
            options=opts,
        )
        areas = a.areas
        key = "adaptive" if per_area else "global"
        out[key] = {
            "met": a.met,
            "records": a.records,
            "worst_area_error": a.worst_area_error,
            "records_per_area_min_median_max": [
                int(areas["records"].min()),
                float(areas["records"].median()),
                int(areas["records"].max()),
            ],
            "corr_records_vs_home_sample": _corr(areas["records"], sample),
            "corr_records_vs_local_targets": _corr(areas["records"], areas["local_targets"]),
            "seconds": a.seconds,
            "history": a.history.to_dict("records"),
        }
        print(f"[sparsity] {key}: {out[key]}", flush=True)
    return out


def part_sparsity_l0(size: str, lam: float, time_limit: float, workers: int | None) -> dict:
    """Exact L0 per district on the districts' own targets: one global price on the error
    (``error+count``) against the fewest records meeting the same worst-area error."""
    import calibopt as co
    from calibopt.decomposition.plan import plan_blocks

    c, m, p, _ = build(size)
    local = np.flatnonzero(m.targets["geo_level"].to_numpy() == "district")
    q = p.subproblem(targets=local)
    labels = np.repeat(m.columns.geographies, m.columns.n_households)
    plan = plan_blocks(q, labels)
    opts = {"time_limit": time_limit, "threads": 1}

    def per_area(res):
        rel = np.abs(res.fit.rel_errors)
        err = np.array([rel[loc].max() if loc.size else 0.0 for loc in plan.local])
        nz = res.weights != 0
        rec = np.array([int(nz[U].sum()) for U in plan.units])
        return err, rec

    t0 = time.perf_counter()
    glob = co.calibrate(
        q, "l0-mip", blocks=labels, executor=workers, objective="error+count", lam=lam, **opts
    )
    t_glob = time.perf_counter() - t0
    e_g, r_g = per_area(glob)
    worst = float(e_g.max())
    t0 = time.perf_counter()
    adapt = co.calibrate(
        q.with_options(tolerance=worst * (1 + 1e-9)),
        "l0-mip",
        blocks=labels,
        executor=workers,
        **opts,
    )
    t_adapt = time.perf_counter() - t0
    e_a, r_a = per_area(adapt)
    n_targets = np.array([loc.size for loc in plan.local])
    return {
        "areas": plan.n_blocks,
        "global_lam": lam,
        "worst_area_error_global": worst,
        "worst_area_error_adaptive": float(e_a.max()),
        "records_global": int(r_g.sum()),
        "records_adaptive": int(r_a.sum()),
        "records_per_area_global_min_median_max": [
            int(r_g.min()),
            float(np.median(r_g)),
            int(r_g.max()),
        ],
        "records_per_area_adaptive_min_median_max": [
            int(r_a.min()),
            float(np.median(r_a)),
            int(r_a.max()),
        ],
        "areas_fewer_records_adaptive": int(np.sum(r_a < r_g)),
        "areas_more_records_adaptive": int(np.sum(r_a > r_g)),
        "targets_per_area_min_max": [int(n_targets.min()), int(n_targets.max())],
        "corr_adaptive_records_vs_global_error": _corr(r_a, e_g),
        "corr_records_vs_home_sample_global": _corr(r_g, home_sample(c, plan.labels)),
        "corr_records_vs_home_sample_adaptive": _corr(r_a, home_sample(c, plan.labels)),
        "blocks_proven_global": int(glob.info["blocks"]["proven_optimal"].sum()),
        "blocks_proven_adaptive": int(adapt.info["blocks"]["proven_optimal"].sum()),
        "seconds_global": t_glob,
        "seconds_adaptive": t_adapt,
    }


def _ratio(a, b) -> str:
    try:
        return f"{float(a) / float(b):.3g}"
    except (TypeError, ValueError, ZeroDivisionError):
        return "-"


def summary_rows(results: dict) -> list[tuple[str, Any, Any, str]]:
    """``(quantity, ours, reference, ours / reference)`` for the parts that ran."""
    rows: list[tuple[str, Any, Any, str]] = []
    c = results.get("conflicts")
    if c:
        cert = c["certificate"]
        if cert.get("size"):
            a, b = cert["diagnose_first_set_seconds"], cert["lp_certificate_seconds"]
            rows.append((f"s to 1st minimal set vs LP certificate ({cert['size']})", a, b, ""))
        h = c.get("first_set_vs_highs_iis")
        if h:
            a, b = h["ours_seconds"], h["highs_iis_seconds"]
            rows.append((f"s to 1st minimal set vs HiGHS IIS ({h['size']})", a, b, ""))
        rows.append(
            (
                f"s to 1st / all sets ({c['size']}, {c['sets']} sets)",
                c["first_set_seconds"],
                c["all_sets_seconds"],
                "",
            )
        )
    r = results.get("reconcile")
    if r:
        rows.append(
            (
                "reconcile: distance to truth after / before",
                r["distance_to_truth_after"],
                r["distance_to_truth_before"],
                "",
            )
        )
    k = results.get("consistency")
    if k:
        base = k["rows"][0]
        for row in k["rows"][1:]:
            rows.append(
                (
                    f"worst inconsistency factor, {row['consistency']} / none",
                    row["worst_inconsistency_factor"],
                    base["worst_inconsistency_factor"],
                    "",
                )
            )
            rows.append(
                (
                    f"least max target miss, {row['consistency']} / none",
                    row["least_max_target_miss"],
                    base["least_max_target_miss"],
                    "",
                )
            )
    s = results.get("sparsity")
    if s:
        rows.append(
            (
                "hard-concrete records, adaptive / global",
                s["adaptive"]["records"],
                s["global"]["records"],
                "",
            )
        )
    l0 = results.get("sparsity-l0")
    if l0:
        rows.append(
            (
                "l0-mip records at equal worst-area error, adaptive / global",
                l0["records_adaptive"],
                l0["records_global"],
                "",
            )
        )
    return [(q, a, b, _ratio(a, b)) for q, a, b, _ in rows]


def print_summary(results: dict) -> None:
    """The side-by-side table of the run."""
    rows = summary_rows(results)
    if not rows:
        return
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    w = max(len(q) for q, *_ in rows)
    print(f"\n{'quantity':<{w}}  {'ours':>12}  {'reference':>12}  {'ratio':>8}")
    for q, a, b, ratio in rows:
        print(f"{q:<{w}}  {fmt(a):>12}  {fmt(b):>12}  {ratio:>8}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="full")
    ap.add_argument("--part", default="all")
    ap.add_argument("--time-limit", type=float, default=900.0)
    ap.add_argument("--iis-size", default="small")
    ap.add_argument("--certificate-size", default="default")
    ap.add_argument("--consistency-size", default=None, help="size of the misfit/consistency parts")
    ap.add_argument("--sparsity-size", default="small")
    ap.add_argument("--sparsity-tolerance", type=float, default=0.05)
    ap.add_argument("--sparsity-epochs", type=int, default=1500)
    ap.add_argument("--sparsity-rounds", type=int, default=6)
    ap.add_argument("--sparsity-lambda", type=float, default=1e-4)
    ap.add_argument("--l0-size", default="default")
    ap.add_argument("--l0-lambda", type=float, default=0.02)
    ap.add_argument("--l0-time-limit", type=float, default=3.0)
    ap.add_argument("--workers", type=int, default=0, help="process pool for blocks (0: none)")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args()
    parts = (
        ["conflicts", "reconcile", "misfit", "consistency", "sparsity", "sparsity-l0"]
        if args.part == "all"
        else args.part.split(",")
    )
    results: dict = {"size": args.size}
    for part in parts:
        t0 = time.perf_counter()
        if part == "conflicts":
            res = part_conflicts(args.size, args.time_limit, args.iis_size, args.certificate_size)
        elif part == "reconcile":
            res = part_reconcile(args.size, args.time_limit)
        elif part == "misfit":
            res = part_misfit(args.consistency_size or args.size)
        elif part == "consistency":
            res = part_consistency(args.consistency_size or args.size)
        elif part == "sparsity":
            res = part_sparsity(
                args.sparsity_size,
                args.sparsity_tolerance,
                args.sparsity_epochs,
                args.sparsity_rounds,
                args.sparsity_lambda,
            )
        elif part == "sparsity-l0":
            res = part_sparsity_l0(
                args.l0_size, args.l0_lambda, args.l0_time_limit, args.workers or None
            )
        else:
            raise SystemExit(f"unknown part {part!r}")
        res["part_seconds"] = time.perf_counter() - t0
        res["peak_rss_mib"] = vm("VmHWM")
        results[part] = res
        print(json.dumps({part: res}, indent=1, default=str), flush=True)
    print_summary(results)
    if args.out:
        from calibopt.files import atomic_output

        with atomic_output(args.out, overwrite=True) as tmp:
            Path(tmp).write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
