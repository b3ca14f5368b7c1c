"""Replicate weights of a design: jackknife (JK1, JKn), Rao-Wu bootstrap, BRR and Fay.

Each generator returns multipliers of the design weight per first-stage PSU (one column per
replicate) with the scale and per-replicate scales of the variance, exactly as R ``survey``'s
``as.svrepdesign`` builds them:

* ``JK1`` (unstratified): drop one PSU, multiply the others by ``n / (n - 1)``;
  ``scale = (1 - f)(n - 1) / n``;
* ``JKn`` (stratified): the same within each stratum, one replicate per PSU;
  ``rscales_h = (1 - f_h)(n_h - 1) / n_h``; lonely PSUs as ``lonely_psu`` says (R's rules);
* ``bootstrap``: Rao & Wu (1988) rescaling bootstrap: in each stratum draw ``n_h - 1`` PSUs with
  replacement, multiplier ``1 - l + l n_h / (n_h - 1) m_hi`` (``m_hi`` = times drawn,
  ``l = sqrt(1 - f_h)`` with ``fpc=True`` (Rao, Wu & Yue 1992), else 1: R's
  ``type="subbootstrap"``); ``scale = 1 / (R - 1)``;
* ``BRR`` / ``Fay``: two PSUs per stratum; a Hadamard matrix picks the half-sample of each
  replicate; multipliers ``2 - rho`` and ``rho`` (``rho = 0``: BRR);
  ``scale = 1 / (R (1 - rho)^2)``.

Replicates resample first-stage PSUs (whole clusters), so later stages' variance is carried
by the PSU totals; an fpc beyond the first stage is not used (R drops it too, with a warning).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..validate import choice, integer, number
from .design import _CERTAIN, Design, DesignError, first_of_group

__all__ = ["REPLICATE_TYPES", "hadamard", "replicate_factors", "replicate_weights"]

REPLICATE_TYPES = ("auto", "JK1", "JKn", "bootstrap", "BRR", "Fay")


def _psu_view(design: Design) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per PSU (first stage, in order of appearance): stratum code, n_h, 1 - n_h/N_h; and the
    row -> PSU index."""
    index = design.clusters[0]
    first = first_of_group(index)
    strata = design.strata[0][first]
    n_h = design.sampsize[0][first]
    f = design.fraction(0)[first]
    return strata, n_h, f, index


def _strata_order(strata: np.ndarray) -> list[int]:
    """Stratum codes in order of first appearance (R's ``unique(strata)``)."""
    _, pos = np.unique(strata, return_index=True)
    return [int(strata[p]) for p in np.sort(pos)]


def jk1(design: Design, fpc: bool = True) -> dict[str, Any]:
    """Delete-one-PSU jackknife of an unstratified design (R's ``jk1weights``)."""
    if design.has_strata:
        raise DesignError("JK1 is for unstratified designs; use type='JKn' (R refuses too).")
    _, n_h, f, _ = _psu_view(design)
    n = n_h.shape[0]
    corr = float(f[0]) if fpc else 1.0
    if corr < _CERTAIN:
        raise DesignError("every PSU of the population is sampled: there is no variance.")
    factors = np.full((n, n), n / (n - 1.0))
    np.fill_diagonal(factors, 0.0)
    return {"factors": factors, "scale": corr * (n - 1.0) / n, "rscales": np.ones(n)}


def jkn(design: Design, fpc: bool = True) -> dict[str, Any]:
    """Stratified delete-one-PSU jackknife (R's ``jknweights``)."""
    strata, n_h, f, _ = _psu_view(design)
    n = n_h.shape[0]
    order = _strata_order(strata)
    cols: list[np.ndarray] = []
    rscales: list[float] = []
    option = design.lonely_psu
    for h in order:
        members = np.flatnonzero(strata == h)
        m = members.size
        corr = float(f[members[0]]) if fpc else 1.0
        if m == 1 and corr != 0:
            if option == "fail":
                raise DesignError(
                    f"stratum {h} has only one PSU; choose lonely_psu= (see Design) for JKn."
                )
            if option == "adjust":
                col = np.full(n, len(order) / (len(order) - 1.0))
                col[members] = 0.0
                cols.append(col)
                rscales.append((len(order) - 1.0) / len(order))
            continue
        if corr < _CERTAIN:
            continue  # a certainty stratum: R drops its replicates (survey.drop.replicates)
        for j in members:
            col = np.ones(n)
            col[members] = m / (m - 1.0)
            col[j] = 0.0
            cols.append(col)
            rscales.append(corr * (m - 1.0) / m)
    if not cols:
        raise DesignError("every stratum is sampled exhaustively: there is no variance.")
    scale = 1.0
    if len(cols) < n and option == "average":
        scale = n / len(cols)
    return {"factors": np.stack(cols, axis=1), "scale": scale, "rscales": np.asarray(rscales)}


def bootstrap(
    design: Design, replicates: int = 100, seed: Any = None, fpc: bool = False
) -> dict[str, Any]:
    """Rao-Wu rescaling bootstrap (``n_h - 1`` draws per stratum); see the module docstring."""
    replicates = integer("replicates", replicates, low=2)
    rng = np.random.default_rng(seed)
    strata, n_h, f, _ = _psu_view(design)
    n = n_h.shape[0]
    factors = np.ones((n, replicates))
    for h in _strata_order(strata):
        members = np.flatnonzero(strata == h)
        m = members.size
        lam = np.sqrt(max(float(f[members[0]]), 0.0)) if fpc else 1.0
        if m == 1:
            if design.lonely_psu == "fail" and lam > 0:
                raise DesignError(
                    f"stratum {h} has only one PSU: the bootstrap cannot resample it; choose "
                    f"lonely_psu= 'remove' or 'certainty' (its PSU keeps multiplier 1)."
                )
            continue
        draws = rng.multinomial(m - 1, np.full(m, 1.0 / m), size=replicates).T
        factors[members] = 1.0 - lam + lam * m / (m - 1.0) * draws
    return {
        "factors": factors,
        "scale": 1.0 / (replicates - 1.0),
        "rscales": np.ones(replicates),
    }


def hadamard(order: int) -> np.ndarray:
    """A Sylvester Hadamard matrix (entries 0/1) of the smallest power-of-two order >= order."""
    from scipy.linalg import hadamard as sylvester

    size = 1
    while size < order:
        size *= 2
    return (sylvester(max(size, 2)) > 0).astype(np.int8)


def brr(design: Design, fay_rho: float = 0.0, hadamard_matrix: Any = None) -> dict[str, Any]:
    """Balanced repeated replication with Fay's factor (R's ``brrweights``)."""
    rho = number("fay_rho", fay_rho, low=0.0, high=1.0, strict=False)
    if rho >= 1:
        raise DesignError("`fay_rho` must be < 1.")
    strata, n_h, _, _ = _psu_view(design)
    if np.any(n_h != 2):
        raise DesignError(
            "BRR needs exactly two PSUs in every stratum; "
            f"{int(np.sum(n_h != 2))} PSU(s) lie in strata of another size: use JKn or the "
            f"bootstrap, or pair the PSUs into pseudo-strata."
        )
    labels = design._strata_labels
    order = _strata_order(strata)
    if labels is not None:  # R sorts the strata by name (as strings)
        first_row = {int(design.strata[0][i]): i for i in range(design.n - 1, -1, -1)}
        order = sorted(order, key=lambda h: str(labels[first_row[h]]))
    n_strata = len(order)
    if hadamard_matrix is None:
        H = hadamard(n_strata + 1)
    else:
        H = np.asarray(hadamard_matrix)
        values = np.unique(H)
        if H.ndim != 2 or H.shape[0] < n_strata + 1 or values.size != 2:
            raise DesignError(
                f"`hadamard` must be a two-valued matrix with at least {n_strata + 1} rows."
            )
        H = (H == values[1]).astype(np.int8)
    n_rep = H.shape[1]
    factors = np.empty((n_h.shape[0], n_rep))
    for k, h in enumerate(order):
        a, b = np.flatnonzero(strata == h)  # in order of appearance, as R orders them
        pick = H[1 + k]  # row 0 of a normalised Hadamard matrix is constant: skipped, as R
        factors[a] = np.where(pick == 0, rho, 2.0 - rho)
        factors[b] = np.where(pick == 0, 2.0 - rho, rho)
    return {
        "factors": factors,
        "scale": 1.0 / (n_rep * (1.0 - rho) ** 2),
        "rscales": np.ones(n_rep),
    }


def replicate_factors(design: Design, type: str = "auto", **options: Any) -> dict[str, Any]:
    """Multipliers per PSU (``factors``, PSUs x replicates), ``scale``, ``rscales``, ``type``."""
    choice("type", type, REPLICATE_TYPES)
    if type == "auto":
        type = "JKn" if design.has_strata else "JK1"
    if type == "JK1":
        out = jk1(design, **options)
    elif type == "JKn":
        out = jkn(design, **options)
    elif type == "bootstrap":
        out = bootstrap(design, **options)
    else:
        if type == "Fay" and "fay_rho" not in options:
            raise DesignError("type='Fay' needs `fay_rho` (e.g. 0.5).")
        out = brr(design, **options)
    out["type"] = type
    out["index"] = design.clusters[0]
    return out


def replicate_weights(
    design: Design, type: str = "auto", *, mse: bool = False, **options: Any
) -> Any:
    """Replicate weights of ``design`` (R's ``as.svrepdesign``).

    Parameters
    ----------
    design
        The design.
    type
        ``"auto"`` (JK1 unstratified, JKn stratified, as R), ``"JK1"``, ``"JKn"``,
        ``"bootstrap"`` (Rao-Wu), ``"BRR"`` or ``"Fay"``.
    mse
        Centre the replicate estimates at the full-sample estimate (True) or at their mean
        (False, R's default ``survey.replicates.mse``).
    **options
        ``fpc`` (JK1, JKn: use the first-stage fpc, default True; bootstrap: Rao-Wu-Yue
        rescaling, default False), ``replicates`` and ``seed`` (bootstrap), ``fay_rho`` and
        ``hadamard_matrix`` (BRR, Fay).

    Returns
    -------
    ReplicateDesign
    """
    from .replicate_design import ReplicateDesign

    spec = replicate_factors(design, type, **options)
    if spec["factors"].shape[1] < 2:
        raise DesignError(
            f"{spec['type']} gives {spec['factors'].shape[1]} replicate(s); a replicate "
            f"variance needs at least 2."
        )
    return ReplicateDesign(
        design.weights,
        factors=spec["factors"],
        index=spec["index"],
        scale=spec["scale"],
        rscales=spec["rscales"],
        type=spec["type"],
        mse=mse,
        data=design.data,
        design=design,
    )
