"""Tax-Calculator's CPS-based tax-unit file as a calibopt :class:`~calibopt.datasets.Dataset`.

``cps.csv.gz`` (Tax-Calculator, CC0) holds 280,005 tax units built from the Current
Population Survey: state ``fips``, filing status ``MARS``, ages of head and spouse, counts of
members by age band, incomes of the 2014 data year and the weight ``s006`` in hundredths;
``cps_weights.csv.gz`` has weights for later years (``WT2014`` ... ``WT2036``, hundredths)
and ``growfactors.csv`` the per-year growth of each kind of income.

:func:`load_taxcalc_cps` returns one household per tax unit (the unit placed in every state
by local-area calibration), a ``tax_unit`` table with the tax variables, and a ``person``
table (head, spouse, dependents). What is derived, and how:

* **Incomes for ``year``**: each income column times the product of Tax-Calculator's growth
  factors from 2015 to ``year`` (the mapping of columns to factors is Tax-Calculator's own).
* **Dependents' ages**: the file gives counts by band (under 6, 6-12, 13-17, 18-20, 21-64,
  65+); each dependent gets an age drawn uniformly within its band by
  :func:`~calibopt.datasets.seeded_uniform` keyed by its person id (reproducible, no state).
* **Adjusted gross income** (:func:`adjusted_gross_income`): the federal definition on the
  columns the file has (the CPS file has no capital gains other than distributions):
  wages, interest, dividends, business, farm, pensions, IRA distributions, alimony,
  unemployment, capital gain distributions and the taxable part of Social Security, less
  the above-the-line adjustments and half the self-employment tax.
* **Filers** (``is_filer``): a tax unit files when its gross income reaches the filing
  threshold of its status (the standard deduction, plus the additional amount for each
  spouse aged 65+; $5 for married filing separately), when it has self-employment income of
  $400 or more, or when it has wages (to recover withholding). Years 2018-2024 (the
  post-2017 rules); other years raise.

None of these variables depends on the state a unit lives in (federal law), so placing a
unit in another state changes only its ``state_fips``; a state income tax or a state benefit
would go through :class:`~calibopt.datasets.GeographyRules`.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from ..dataset import Dataset
from ..rules import seeded_uniform
from .sources import SOURCES, PublicDataError, locate

__all__ = ["CPS_YEARS", "adjusted_gross_income", "is_filer", "load_taxcalc_cps"]

CPS_DATA_YEAR = 2014
"""Tax-Calculator's data year of ``cps.csv.gz`` (incomes are 2014 dollars)."""

CPS_YEARS = range(2018, 2025)
"""Years with filing thresholds here (the weights file covers 2014-2036)."""

# column -> growth factor (Tax-Calculator's Records._extrapolate, for the columns of cps.csv.gz)
_GROWTH = {
    "AWAGE": ("e00200", "e00200p", "e00200s", "pencon_p", "pencon_s"),
    "AINTS": ("e00300", "e00400"),
    "ADIVS": ("e00600", "e00650"),
    "ATXPY": (
        "e00800",
        "e01400",
        "e01500",
        "e01700",
        "e03150",
        "e03210",
        "e03240",
        "e03300",
        "e18400",
        "e18500",
        "e19800",
        "e20100",
        "e20400",
        "e32800",
    ),
    "ACGNS": ("e01100",),
    "ASCHF": ("e02100", "e02100p", "e02100s"),
    "AUCOMP": ("e02300",),
    "ASOCSEC": ("e02400",),
    "ACPIM": ("e03270", "e17500"),
    "AIPD": ("e19200",),
    "ABENOTHER": ("other_ben",),
    "ABENMCARE": ("mcare_ben",),
    "ABENMCAID": ("mcaid_ben",),
    "ABENSSI": ("ssi_ben",),
    "ABENSNAP": ("snap_ben",),
    "ABENWIC": ("wic_ben",),
    "ABENHOUSING": ("housing_ben",),
    "ABENTANF": ("tanf_ben",),
    "ABENVET": ("vet_ben",),
}
_SCHEDULE_C = ("e00900p", "e00900s")  # ASCHCI when >= 0, ASCHCL when < 0

# (single, joint, head of household) standard deduction; additional per aged person
# (unmarried, married); Social Security wage base. IRS figures by tax year.
_RULES = {
    2018: ((12_000, 24_000, 18_000), (1_600, 1_300), 128_400),
    2019: ((12_200, 24_400, 18_350), (1_650, 1_300), 132_900),
    2020: ((12_400, 24_800, 18_650), (1_650, 1_300), 137_700),
    2021: ((12_550, 25_100, 18_800), (1_700, 1_350), 142_800),
    2022: ((12_950, 25_900, 19_400), (1_750, 1_400), 147_000),
    2023: ((13_850, 27_700, 20_800), (1_850, 1_500), 160_200),
    2024: ((14_600, 29_200, 21_900), (1_950, 1_550), 168_600),
}
_BANDS = ((0, 6), (6, 13), (13, 18), (18, 21), (21, 65), (65, 86))


def _uprate(frame: pd.DataFrame, growth: pd.DataFrame, year: int) -> pd.DataFrame:
    """Incomes of ``year``: each column times its cumulative growth factor since 2014."""
    factors = growth.set_index("YEAR").loc[CPS_DATA_YEAR + 1 : year].prod()
    out = frame.copy()
    for factor, columns in _GROWTH.items():
        for col in columns:
            out[col] = frame[col] * factors[factor]
    for col in _SCHEDULE_C:
        out[col] = np.where(
            frame[col] >= 0, frame[col] * factors["ASCHCI"], frame[col] * factors["ASCHCL"]
        )
    out["e00900"] = out["e00900p"] + out["e00900s"]
    return out


def _half_se_tax(frame: pd.DataFrame, wage_base: float) -> np.ndarray:
    total = np.zeros(len(frame))
    for who in ("p", "s"):
        sey = np.maximum(frame[f"e00900{who}"] + frame[f"e02100{who}"], 0.0) * 0.9235
        room = np.maximum(wage_base - frame[f"e00200{who}"], 0.0)
        tax = 0.124 * np.minimum(sey, room) + 0.029 * sey
        total += np.where(sey >= 400, tax, 0.0)
    return 0.5 * total


def adjusted_gross_income(frame: pd.DataFrame, year: int) -> pd.DataFrame:
    """Federal AGI and its parts from the columns of ``cps.csv.gz`` (already uprated).

    Returns a frame with ``gross_income`` (income before adjustments, Social Security
    excluded), ``taxable_social_security``, ``adjustments`` and ``adjusted_gross_income``.
    """
    wage_base = _RULES[year][2] if year in _RULES else 0.0
    f = frame
    gross = (
        f["e00200"]
        + f["e00300"]
        + f["e00600"]
        + f["e00800"]
        + f["e00900"]
        + f["e01100"]
        + f["e01400"]
        + f["e01700"]
        + f["e02100"]
        + f["e02300"]
    ).to_numpy(dtype=float)
    adjustments = (f["e03150"] + f["e03210"] + f["e03240"] + f["e03270"] + f["e03300"]).to_numpy(
        dtype=float
    ) + _half_se_tax(f, wage_base)
    joint = f["MARS"].to_numpy() == 2
    separate = f["MARS"].to_numpy() == 3
    base1 = np.where(joint, 32_000.0, np.where(separate, 0.0, 25_000.0))
    base2 = np.where(joint, 44_000.0, np.where(separate, 0.0, 34_000.0))
    ss = f["e02400"].to_numpy(dtype=float)
    provisional = gross - adjustments + f["e00400"].to_numpy(dtype=float) + 0.5 * ss
    taxable = np.where(
        provisional < base1,
        0.0,
        np.where(
            provisional < base2,
            0.5 * np.minimum(provisional - base1, ss),
            np.minimum(
                0.85 * (provisional - base2) + 0.5 * np.minimum(ss, base2 - base1), 0.85 * ss
            ),
        ),
    )
    taxable = np.maximum(taxable, 0.0)
    return pd.DataFrame(
        {
            "gross_income": gross,
            "taxable_social_security": taxable,
            "adjustments": adjustments,
            "adjusted_gross_income": gross - adjustments + taxable,
        }
    )


def is_filer(frame: pd.DataFrame, gross_income: np.ndarray, year: int) -> np.ndarray:
    """Whether each tax unit files a return in ``year`` (see the module docstring)."""
    if year not in _RULES:
        raise PublicDataError(
            f"filing thresholds are known for {CPS_YEARS.start}-{CPS_YEARS.stop - 1}, not {year}."
        )
    (single, joint, head), (aged_single, aged_married), _ = _RULES[year]
    mars = frame["MARS"].to_numpy()
    aged = (frame["age_head"].to_numpy() >= 65).astype(int) + (
        (mars == 2) & (frame["age_spouse"].to_numpy() >= 65)
    ).astype(int)
    threshold = np.select(
        [mars == 2, mars == 4, mars == 3],
        [joint + aged * aged_married, head + aged * aged_single, 5.0],
        single + aged * aged_single,
    )
    se = (frame["e00900p"] + frame["e02100p"]).to_numpy() >= 400
    se |= (frame["e00900s"] + frame["e02100s"]).to_numpy() >= 400
    wages = frame["e00200"].to_numpy() > 0
    return (gross_income + frame["taxable_social_security"].to_numpy() >= threshold) | se | wages


def _persons(units: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Head, spouse and dependents with ages (dependents' ages drawn within their band)."""
    recid = units["RECID"].to_numpy(dtype=np.int64)
    married = units["MARS"].to_numpy() == 2
    head_age = units["age_head"].to_numpy(dtype=np.int64)
    spouse_age = units["age_spouse"].to_numpy(dtype=np.int64)

    def in_band(lo: int, hi: int) -> np.ndarray:
        return ((head_age >= lo) & (head_age < hi)).astype(int) + (
            married & (spouse_age >= lo) & (spouse_age < hi)
        ).astype(int)

    u = units
    band_counts = [
        u["nu06"] - in_band(0, 6),
        u["nu13"] - u["nu06"] - in_band(6, 13),
        u["nu18"] - u["nu13"] - in_band(13, 18),
        u["n1820"] - in_band(18, 21),
        u["n21"] - u["elderly_dependents"] - in_band(21, 200),
        u["elderly_dependents"],
    ]
    counts = np.stack([np.maximum(np.asarray(c), 0) for c in band_counts], axis=1)
    n_dep = counts.sum(axis=1)
    dep_unit = np.repeat(np.arange(len(units)), n_dep)
    dep_band = (
        np.concatenate([np.repeat(np.arange(6), row) for row in counts])
        if len(units)
        else np.zeros(0, dtype=int)
    )
    first = np.repeat(np.cumsum(n_dep) - n_dep, n_dep)
    dep_rank = np.arange(dep_unit.size) - first
    dep_id = recid[dep_unit] * 100 + 3 + dep_rank
    lo = np.array([b[0] for b in _BANDS])[dep_band]
    hi = np.array([b[1] for b in _BANDS])[dep_band]
    dep_age = lo + np.floor(seeded_uniform(seed, dep_id) * (hi - lo)).astype(np.int64)
    spouse_rows = np.flatnonzero(married)
    person = pd.DataFrame(
        {
            "person_id": np.concatenate([recid * 100 + 1, recid[spouse_rows] * 100 + 2, dep_id]),
            "household_id": np.concatenate([recid, recid[spouse_rows], recid[dep_unit]]),
            "age": np.concatenate([head_age, spouse_age[spouse_rows], dep_age]),
            "role": np.concatenate(
                [
                    np.zeros(len(units), dtype=np.int8),
                    np.ones(spouse_rows.size, dtype=np.int8),
                    np.full(dep_id.size, 2, dtype=np.int8),
                ]
            ),
        }
    )
    person["tax_unit_id"] = person["household_id"]
    return person.sort_values("person_id", kind="stable").reset_index(drop=True)


def read_taxcalc_cps(path: str | os.PathLike | None = None) -> dict[str, pd.DataFrame]:
    """The raw files: ``{"cps": ..., "weights": ..., "growfactors": ...}`` (checked)."""
    folder = locate("taxcalc", path)
    cps = pd.read_csv(folder / "cps.csv.gz")
    weights = pd.read_csv(folder / "cps_weights.csv.gz")
    growth = pd.read_csv(folder / "growfactors.csv")
    if len(cps) != 280_005 or len(weights) != len(cps):
        raise PublicDataError(f"cps.csv.gz has {len(cps)} rows, expected 280,005.")
    return {"cps": cps, "weights": weights, "growfactors": growth}


def load_taxcalc_cps(
    year: int = 2023,
    *,
    path: str | os.PathLike | None = None,
    states: list[int] | None = None,
    seed: int = 15,
) -> Dataset:
    """Load Tax-Calculator's CPS tax units for ``year`` as a calibopt Dataset.

    Parameters
    ----------
    year
        Weights ``WT<year>`` and incomes grown to ``year`` (2018-2024).
    path
        Optional: the files' folder or the ``taxcalc-*.tar.gz`` sdist (default: the cache,
        an installed ``taxcalc``, an sdist in the current folder).
    states
        Keep only the tax units of these state FIPS codes (default: all 51).
    seed
        Stream of the dependents' age draws.

    Returns
    -------
    Dataset
        ``household`` (one per tax unit: ``household_id`` = ``RECID``, ``household_weight``
        = ``WT<year>`` / 100, ``state_fips``), ``tax_unit`` (``filing_status``, the income
        columns grown to ``year``, ``adjusted_gross_income``, ``is_filer`` (0/1), ...) and
        ``person`` (``age``, ``role`` 0 head / 1 spouse / 2 dependent). ``period`` = year.

    Raises
    ------
    PublicDataError
        The files are missing (the message says ``python -m calibopt.datasets.public fetch
        taxcalc``), another release, or ``year`` is outside 2018-2024.
    """
    if int(year) not in _RULES:
        raise PublicDataError(
            f"year must be in {CPS_YEARS.start}-{CPS_YEARS.stop - 1} (filing rules known), "
            f"got {year}."
        )
    year = int(year)
    raw = read_taxcalc_cps(path)
    units = _uprate(raw["cps"], raw["growfactors"], year)
    weight = raw["weights"][f"WT{year}"].to_numpy(dtype=float) / 100.0
    if states is not None:
        keep = units["fips"].isin([int(s) for s in states]).to_numpy()
        units, weight = units.loc[keep].reset_index(drop=True), weight[keep]
    agi = adjusted_gross_income(units, year)
    units = pd.concat([units, agi], axis=1)
    units["is_filer"] = is_filer(units, agi["gross_income"].to_numpy(), year).astype(np.int8)
    recid = units["RECID"].to_numpy(dtype=np.int64)
    household = pd.DataFrame(
        {
            "household_id": recid,
            "household_weight": weight,
            "state_fips": units["fips"].to_numpy(dtype=np.int64),
        }
    )
    drop = [
        "RECID",
        "fips",
        "s006",
        "FLPDYR",
        "h_seq",
        "a_lineno",
        "ffpos",
        "agi_bin",
        "age_head",
        "age_spouse",
    ]
    tax_unit = units.drop(columns=drop).rename(columns={"MARS": "filing_status"})
    tax_unit.insert(0, "household_id", recid)
    tax_unit.insert(0, "tax_unit_id", recid)
    person = _persons(units, seed)
    return Dataset(
        {"household": household, "person": person, "tax_unit": tax_unit},
        period=year,
        name=f"Tax-Calculator CPS tax units ({SOURCES['taxcalc'].release}), {year}",
    )
