#!/usr/bin/env bash
# Start the local PostgreSQL cluster and create the role and database the tests use.
set -euo pipefail
ver=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
if ! pg_lsclusters -h | awk '{print $4}' | grep -q online; then
  $SUDO pg_ctlcluster "$ver" main start
fi
me=$(id -un)
su postgres -c "psql -tAc \"SELECT 1 FROM pg_roles WHERE rolname='$me'\"" | grep -q 1 \
  || su postgres -c "createuser -s $me"
psql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='calibopt_test'" | grep -q 1 \
  || createdb calibopt_test
