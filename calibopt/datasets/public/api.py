"""R ``survey``'s Academic Performance Index data: California schools, population and samples.

``apipop`` is the whole population (6,194 schools of 2000); ``apisrs`` a simple random
sample (200), ``apistrat`` a sample stratified by school type (200), ``apiclus1`` a one-stage
cluster sample of school districts (183 schools in 15 districts), ``apiclus2`` a two-stage
sample (126 schools). Each sample carries its design weight ``pw`` and finite population
correction(s) ``fpc`` (``fpc1``, ``fpc2``). These are the data of R's ``survey`` examples
and of most calibration textbooks, so results can be compared with R line by line.

The file is R's ``api.rda``, read without R by the ``rdata`` package (``pip install
calibopt[public-data]``); GPL data, loaded from the user's R installation, the Debian package
``r-cran-survey`` or the cache, never bundled.

>>> api = load_api()                                        # doctest: +SKIP
>>> api.apistrat.shape, round(api.apistrat["pw"].sum())    # doctest: +SKIP
((200, 39), 6194)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .sources import SOURCES, PublicDataError, locate

__all__ = ["ApiData", "load_api"]

_FRAMES = ("apipop", "apisrs", "apistrat", "apiclus1", "apiclus2")
_ROWS = {"apipop": 6194, "apisrs": 200, "apistrat": 200, "apiclus1": 183, "apiclus2": 126}


@dataclass(frozen=True)
class ApiData:
    """The five data frames of R's ``data(api)``, with R's column names (``api.stu``,
    ``sch.wide``, ...), R factors as pandas categoricals and R's integers as nullable ints.

    Attributes
    ----------
    apipop, apisrs, apistrat, apiclus1, apiclus2 : DataFrame
    source : str
        The release and the cache folder the file was read from.
    """

    apipop: pd.DataFrame
    apisrs: pd.DataFrame
    apistrat: pd.DataFrame
    apiclus1: pd.DataFrame
    apiclus2: pd.DataFrame
    source: str

    def frames(self) -> dict[str, pd.DataFrame]:
        """``{name: DataFrame}`` of the five tables."""
        return {name: getattr(self, name) for name in _FRAMES}


def _read_rda(path: os.PathLike) -> dict[str, pd.DataFrame]:
    try:
        import rdata
    except ImportError:
        raise PublicDataError(
            "reading api.rda needs the 'rdata' package: pip install 'calibopt[public-data]' "
            "(or pip install rdata)."
        ) from None
    return rdata.read_rda(path)


def load_api(path: str | os.PathLike | None = None) -> ApiData:
    """Load R ``survey``'s ``api`` data (population and the four samples).

    Parameters
    ----------
    path
        Optional: ``api.rda``'s folder, or the ``r-cran-survey_*.deb`` file. By default the
        cache, then an installed R ``survey`` package, then a ``.deb`` in the current folder.

    Returns
    -------
    ApiData

    Raises
    ------
    PublicDataError
        The data are not found (the message says ``python -m calibopt.datasets.public fetch
        api``, i.e. ``apt-get download r-cran-survey``) or are another release.
    """
    folder = locate("api", path)
    frames = _read_rda(folder / "api.rda")
    out = {}
    for name in _FRAMES:
        frame = frames[name].reset_index(drop=True)
        if len(frame) != _ROWS[name]:
            raise PublicDataError(f"api.rda: {name} has {len(frame)} rows, expected {_ROWS[name]}.")
        out[name] = frame
    total = float(np.sum(out["apistrat"]["pw"]))
    if abs(total - 6194) > 0.5:
        raise PublicDataError(f"api.rda: apistrat weights sum to {total}, expected 6194.")
    return ApiData(**out, source=f"{SOURCES['api'].release}, {folder}")
