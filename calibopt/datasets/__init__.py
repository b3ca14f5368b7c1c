"""Unit data: the :class:`Dataset` container and the embedded synthetic country.

>>> from calibopt.datasets import synthetic_country
>>> country = synthetic_country("tiny", seed=0)
>>> country.dataset.n_households
240
"""

from .dataset import GEOGRAPHY_VARIABLES, Dataset
from .geography import US_STATES, Geography, make_geography
from .rules import GeographyRules, seeded_uniform
from .synthetic import SIZES, SyntheticCountry, synthetic_country, synthetic_rules

__all__ = [
    "GEOGRAPHY_VARIABLES",
    "SIZES",
    "US_STATES",
    "Dataset",
    "Geography",
    "GeographyRules",
    "SyntheticCountry",
    "make_geography",
    "seeded_uniform",
    "synthetic_country",
    "synthetic_rules",
]
