#!/usr/bin/env bash
# Creates the virtualenv with a real MLflow tracking server that the MLflow logging test starts
# (packages/loop/src/tracking). Separate from .venv because MLflow pins its own stack (Flask,
# SQLAlchemy, alembic, pandas...) that must not mix with the worker's. Safe to run again: a stamp
# names the installed version, and uv's cache makes a re-install fast.
set -euo pipefail

MLFLOW_VERSION=3.17.2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${RATCHET_MLFLOW_VENV:-$ROOT/.cache/mlflow-venv}
UV=$ROOT/.venv/bin/uv
STAMP=$VENV/.ratchet-mlflow-$MLFLOW_VERSION

log() { echo "[mlflow-venv] $*" >&2; }

if [ -f "$STAMP" ] && [ -x "$VENV/bin/mlflow" ]; then exit 0; fi
if [ ! -x "$UV" ]; then
  log "$UV is missing: run make install first"
  exit 1
fi
test -x "$VENV/bin/python" || "$UV" venv --quiet --python python3 "$VENV"
"$UV" pip install --quiet --python "$VENV/bin/python" "mlflow==$MLFLOW_VERSION"

rm -f "$VENV"/.ratchet-mlflow-*
touch "$STAMP"
log "mlflow $MLFLOW_VERSION in $VENV"
