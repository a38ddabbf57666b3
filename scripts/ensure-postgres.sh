#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers on 127.0.0.1:5432 and that the role
# and database the tests use exist. Installs PostgreSQL from Debian's
# packages if it is missing, starts the cluster if it is stopped.
# Prints the URL the tests should use (export it as WARDEN_TEST_DATABASE_URL).
set -euo pipefail

HOST=127.0.0.1
PORT=5432
ROLE=warden
DB=warden_test

log() { echo "ensure-postgres: $*" >&2; }

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    log "PostgreSQL is not installed; installing it from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
fi

if ! pg_isready -q -h "$HOST" -p "$PORT"; then
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    log "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2 || true
    for _ in $(seq 1 60); do
        pg_isready -q -h "$HOST" -p "$PORT" && break
        sleep 0.5
    done
    pg_isready -q -h "$HOST" -p "$PORT" || { log "PostgreSQL did not start"; exit 1; }
fi

# Run SQL as the superuser: over TCP where trust auth allows it, else
# through the local socket as the postgres OS user (peer auth).
as_superuser() {
    if psql -X -q -h "$HOST" -p "$PORT" -U postgres -d postgres -c 'SELECT 1' >/dev/null 2>&1; then
        psql -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$PORT" -U postgres -d postgres "$@"
    else
        su postgres -c "psql -X -q -v ON_ERROR_STOP=1 -p $PORT -d postgres $(printf '%q ' "$@")"
    fi
}

as_superuser -c "DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE') THEN
    CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$ROLE';
  END IF;
END \$\$;" >&2
# The fail-closed audit test creates a least-privilege role for its server.
as_superuser -c "ALTER ROLE $ROLE CREATEROLE" >&2
if ! as_superuser -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
    as_superuser -c "CREATE DATABASE $DB OWNER $ROLE" >&2
fi

# Drop the per-test databases earlier runs left behind: their names are
# warden_t_<pid>_..., so only those of processes that are gone (a running
# suite's databases stay).
for stale in $(as_superuser -tAc "SELECT datname FROM pg_database WHERE datname LIKE 'warden\_t\_%'"); do
    pid=$(echo "$stale" | sed -n 's/^warden_t_\([0-9]*\)_.*/\1/p')
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        continue
    fi
    as_superuser -c "DROP DATABASE IF EXISTS $stale WITH (FORCE)" >&2
done

echo "postgres://$ROLE:$ROLE@$HOST:$PORT/$DB"
