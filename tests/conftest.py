"""Shared test configuration."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CALIBOPT_SHARED", REPO.parent / "shared"))
R_ORACLE = SHARED / "fixtures" / "r_oracle"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def r_oracle_dir() -> Path:
    if not R_ORACLE.is_dir():
        if IN_CI:
            pytest.fail(f"R reference fixtures missing at {R_ORACLE}")
        pytest.skip(f"R reference fixtures missing at {R_ORACLE}")
    return R_ORACLE


@pytest.fixture(scope="session")
def tiny():
    """The tiny embedded synthetic country (seed 0); tests must not modify it."""
    from calibopt.datasets import synthetic_country

    return synthetic_country("tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_matrix(tiny):
    """The tiny country's calibration matrix from its own targets database."""
    from calibopt.matrix import MatrixBuilder

    return MatrixBuilder(
        tiny.targets_database(), tiny.dataset, tiny.geographies, rules=tiny.rules
    ).build()
