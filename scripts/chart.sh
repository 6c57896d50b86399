#!/usr/bin/env bash
# Validates the Helm chart charts/streamjob-operator without a helm binary or a
# cluster (scripts/chart.py says what it checks): Helm's own Go SDK lints and
# renders it through the PyPI package helm-python-sdk, and kubernetes-validate
# checks every rendered object and the CRD against Kubernetes' schemas
# (--strict). Both live in a venv at ~/.cache/streamjob-tools/chart-venv,
# installed from scripts/chart-requirements.txt (all pinned) the first time and
# again only when that file changes; after that the script works offline.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="$HOME/.cache/streamjob-tools/chart-venv"
requirements=scripts/chart-requirements.txt
stamp="$venv/.streamjob-requirements"

if [ ! -x "$venv/bin/python" ] || ! cmp -s "$requirements" "$stamp"; then
  echo "[chart] installing $(grep -E '^(helm-python-sdk|kubernetes-validate)==' "$requirements" | tr '\n' ' ')into $venv"
  python=python3
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "[chart] FAILED: helm-python-sdk needs Python >= 3.10 (python3 is $("$python" --version 2>&1))" >&2
    exit 1
  fi
  if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
    # Debian's python3 ships venv and ensurepip separately.
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
  fi
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$requirements"
  cp "$requirements" "$stamp"
fi

exec "$venv/bin/python" scripts/chart.py
