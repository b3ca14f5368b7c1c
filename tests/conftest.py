"""Shared test configuration."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CALIBOPT_SHARED", REPO.parent / "shared"))
R_ORACLE = SHARED / "fixtures" / "r_oracle"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
POSTGRES_URL = os.environ.get("CALIBOPT_TEST_POSTGRES_URL")


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


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    """A fresh, empty database: a SQLite file, or a private schema in PostgreSQL."""
    import sqlalchemy as sa

    if request.param == "sqlite":
        eng = sa.create_engine(f"sqlite:///{tmp_path / 'targets.db'}")
        yield eng
        eng.dispose()
        return
    if not POSTGRES_URL:
        if IN_CI:
            pytest.fail(
                "CALIBOPT_TEST_POSTGRES_URL is not set: the PostgreSQL tests must run in CI"
            )
        pytest.skip("CALIBOPT_TEST_POSTGRES_URL is not set")
    admin = sa.create_engine(POSTGRES_URL)
    schema = f"calibopt_test_{uuid.uuid4().hex[:12]}"
    with admin.begin() as conn:
        conn.execute(sa.schema.CreateSchema(schema))
    eng = sa.create_engine(POSTGRES_URL, connect_args={"options": f"-csearch_path={schema}"})
    try:
        yield eng
    finally:
        eng.dispose()
        with admin.begin() as conn:
            conn.execute(sa.schema.DropSchema(schema, cascade=True))
        admin.dispose()


def public_data(name: str):
    """The cache folder of a public data source (issue 15); the tests fail in CI when it is
    missing (scripts/test.sh fetches it first) and are skipped elsewhere, with the command."""
    from calibopt.datasets.public import PublicDataError, locate

    try:
        return locate(name)
    except PublicDataError as exc:
        if IN_CI:
            pytest.fail(f"public data {name!r} missing in CI: {exc}")
        pytest.skip(f"public data {name!r} missing: {exc}")


@pytest.fixture(scope="session")
def api_data():
    """R survey's api data (population and samples), loaded through calibopt's loader."""
    from calibopt.datasets.public import load_api

    public_data("api")
    return load_api()


@pytest.fixture(scope="session")
def cps_2023():
    """Tax-Calculator's CPS tax units for 2023 (all 280,005), and the published state targets."""
    from calibopt.datasets.public import load_state_targets, load_taxcalc_cps

    public_data("taxcalc")
    public_data("targets")
    return load_taxcalc_cps(2023), load_state_targets()
