#!/usr/bin/env bash
# Set up everything on a fresh machine and run the test suite (the README's test command).
# - a virtual environment in .venv with calibopt[dev,torch,postgres,dask,parquet];
#   torch pinned to the CPU build 2.13.0 through constraints.txt
# - a local PostgreSQL server (Debian packages) for the database tests
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -c constraints.txt -e ".[dev,torch,postgres,dask,parquet]"

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
export CI="${CI:-true}"
.venv/bin/ruff check calibopt tests benchmarks
PYTHONPATH=. .venv/bin/lint-imports --no-cache
.venv/bin/python -m pytest -q "$@"
