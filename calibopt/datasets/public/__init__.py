"""Real public data: R ``survey``'s api samples, Tax-Calculator's CPS tax units, state targets.

Loaders find the data where the user's installation put it (R ``survey``, ``taxcalc``,
``policyengine_us_data``), in a registry file (``.deb``, sdist, wheel) or in the user cache,
verify the SHA-256 of the pinned release, and cache them; nothing is downloaded unless asked
(``python -m calibopt.datasets.public fetch [api|taxcalc|targets]``). The data are never
bundled with calibopt. ``pip install 'calibopt[public-data]'`` installs the readers.

>>> from calibopt.datasets.public import load_api, load_taxcalc_cps, load_state_targets
>>> api = load_api()                               # doctest: +SKIP
>>> cps = load_taxcalc_cps(2023, states=[10, 50])  # doctest: +SKIP
>>> db = load_state_targets()                      # doctest: +SKIP
"""

from .api import ApiData, load_api
from .cps import adjusted_gross_income, is_filer, load_taxcalc_cps, read_taxcalc_cps
from .sources import SOURCES, PublicDataError, cache_dir, fetch, locate
from .state_targets import TARGET_SETS, load_state_targets, read_state_targets, target_conflicts

__all__ = [
    "SOURCES",
    "TARGET_SETS",
    "ApiData",
    "PublicDataError",
    "adjusted_gross_income",
    "cache_dir",
    "fetch",
    "is_filer",
    "load_api",
    "load_state_targets",
    "load_taxcalc_cps",
    "locate",
    "read_state_targets",
    "read_taxcalc_cps",
    "target_conflicts",
]
