#!/usr/bin/env bash
# Set up everything on a fresh machine and run the test suite (the README's test command).
# - a virtual environment in .venv with calibopt[dev,torch,postgres,dask,parquet,public-data,mip];
#   torch pinned to the CPU build 2.13.0 through constraints.txt
# - a local PostgreSQL server (Debian packages) for the database tests
# - the public data of the real-data tests (R survey's api data, Tax-Calculator's CPS file, the
#   published state targets), fetched from the package registries into the user cache once
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -c constraints.txt -e ".[dev,torch,postgres,dask,parquet,public-data,mip]"

# PostgreSQL: install, start, and create a database the tests connect to over the local socket.
if [ -z "${CALIBOPT_TEST_POSTGRES_URL:-}" ]; then
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
  fi
  bash scripts/postgres.sh
  export CALIBOPT_TEST_POSTGRES_URL="postgresql+psycopg://$(id -un)@/calibopt_test?host=/var/run/postgresql"
fi
# Public data: checked in the cache, else fetched (apt-get download r-cran-survey, pip download
# of the taxcalc sdist and the policyengine-us-data wheel); a failure stops the run here.
if ! .venv/bin/python -m calibopt.datasets.public check >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    LOCK=""; command -v flock >/dev/null 2>&1 && LOCK="flock /tmp/apt.lock"
    $SUDO $LOCK apt-get update -qq >/dev/null || true
  fi
  .venv/bin/python -m calibopt.datasets.public fetch
fi
export CI="${CI:-true}"
.venv/bin/ruff check calibopt tests benchmarks notebooks
.venv/bin/ruff format --check calibopt tests benchmarks notebooks
PYTHONPATH=. .venv/bin/lint-imports --no-cache
.venv/bin/python -m pytest -q -rs "$@"
