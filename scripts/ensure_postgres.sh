#!/usr/bin/env bash
# The shared-cache tests (tests/engine/test_pg_cache*.py) start a real PostgreSQL server from Debian's `postgresql`
# package (tests/postgres_server.py: initdb into a temp dir, pg_ctl on a free loopback port, as the package's
# `postgres` user). Install it when it is missing and we may (root, apt-get present); otherwise say so and let the
# tests skip (under CI=true they fail instead).
set -euo pipefail
if compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null || command -v pg_ctl >/dev/null; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "ensure_postgres: PostgreSQL missing and cannot apt-get install it (not root or no apt-get);" \
         "the shared-cache tests will be skipped" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends postgresql >/dev/null
