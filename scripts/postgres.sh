#!/usr/bin/env bash
# Makes sure a PostgreSQL server is running on this machine with a database for Ratchet's tests,
# installing it from Debian's packages when it is missing (as root), and prints its URL.
# Used by `make test` and `.ci/run`; safe to run again (it only does what is not done yet).
set -euo pipefail

DB=${RATCHET_PG_DB:-ratchet_test}
USER_NAME=${RATCHET_PG_USER:-ratchet}
PASSWORD=${RATCHET_PG_PASSWORD:-ratchet}
PORT=${RATCHET_PG_PORT:-5432}

log() { echo "[postgres] $*" >&2; }

if ! command -v pg_lsclusters >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing PostgreSQL from Debian's packages"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) >&2
  else
    log "PostgreSQL is not installed and cannot be installed here (need root and apt-get)"
    exit 1
  fi
fi

cluster=$(pg_lsclusters --no-header | awk 'NR==1 {print $1" "$2}')
if [ -z "$cluster" ]; then
  version=$(ls /usr/lib/postgresql | sort -V | tail -n1)
  log "creating cluster $version main"
  pg_createcluster "$version" main --port "$PORT" >&2
  cluster="$version main"
fi
read -r version name <<<"$cluster"
if ! pg_lsclusters --no-header | awk -v v="$version" -v n="$name" '$1==v && $2==n {print $4}' | grep -q online; then
  log "starting cluster $version $name"
  pg_ctlcluster "$version" "$name" start >&2
fi
PORT=$(pg_lsclusters --no-header | awk -v v="$version" -v n="$name" '$1==v && $2==n {print $3}')

as_postgres() { if [ "$(id -u)" = 0 ]; then su postgres -c "$1"; else sh -c "$1"; fi; }
for _ in $(seq 1 30); do as_postgres "psql -p $PORT -Atqc 'select 1'" >/dev/null 2>&1 && break; sleep 0.5; done
if [ "$(as_postgres "psql -p $PORT -Atqc \"select 1 from pg_roles where rolname='$USER_NAME'\"")" != 1 ]; then
  as_postgres "psql -p $PORT -qc \"create role $USER_NAME login createdb password '$PASSWORD'\"" >&2
fi
if [ "$(as_postgres "psql -p $PORT -Atqc \"select 1 from pg_database where datname='$DB'\"")" != 1 ]; then
  as_postgres "createdb -p $PORT -O $USER_NAME $DB" >&2
fi
echo "postgres://$USER_NAME:$PASSWORD@127.0.0.1:$PORT/$DB"
