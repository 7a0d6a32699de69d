#!/usr/bin/env bash
# Creates the virtualenv with a real Label Studio server that the Label Studio connector's test
# starts (packages/loop/src/labelstudio), and a migrated, empty Label Studio database beside it
# (seed/): migrating from nothing takes minutes on two busy cores, so the test copies the seed
# and starts in well under a minute. The venv is separate from .venv because Label Studio pins
# Django and many other packages that must not mix with the worker's. Safe to run again: a stamp
# names the installed version, and uv's cache makes a re-install fast.
set -euo pipefail

LABEL_STUDIO_VERSION=1.23.2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${RATCHET_LABEL_STUDIO_VENV:-$ROOT/.cache/labelstudio-venv}
UV=$ROOT/.venv/bin/uv
STAMP=$VENV/.ratchet-label-studio-$LABEL_STUDIO_VERSION
SEED=$VENV/seed

log() { echo "[labelstudio-venv] $*" >&2; }

if [ -f "$STAMP" ] && [ -x "$VENV/bin/label-studio" ] && [ -f "$SEED/label_studio.sqlite3" ]; then exit 0; fi
if [ ! -x "$UV" ]; then
  log "$UV is missing: run make install first"
  exit 1
fi
test -x "$VENV/bin/python" || "$UV" venv --quiet --python python3 "$VENV"
"$UV" pip install --quiet --python "$VENV/bin/python" "label-studio==$LABEL_STUDIO_VERSION"

# `label-studio version` applies the migrations and exits. The environment keeps it inside the
# seed folder and off the network (no version check against the package index, no analytics).
log "migrating an empty Label Studio database into $SEED (a few minutes the first time)"
rm -rf "$SEED" "$SEED.tmp"
mkdir -p "$SEED.tmp"
if ! LABEL_STUDIO_BASE_DATA_DIR="$SEED.tmp" LATEST_VERSION_CHECK=false COLLECT_ANALYTICS=false \
  "$VENV/bin/label-studio" version --data-dir "$SEED.tmp" >"$VENV/seed-migrate.log" 2>&1; then
  tail -n 40 "$VENV/seed-migrate.log" >&2
  log "migrating the seed database failed (log: $VENV/seed-migrate.log)"
  exit 1
fi
mv "$SEED.tmp" "$SEED"

rm -f "$VENV"/.ratchet-label-studio-*
touch "$STAMP"
log "label-studio $LABEL_STUDIO_VERSION in $VENV"
