#!/usr/bin/env bash
# Every extra, and the combinations users type, must resolve with plain pip: a fresh venv, no
# pip configuration, no constraints, from this checkout, once with the pip a fresh venv brings and
# once with the newest pip. `make test` cannot see this (uv + constraints.txt). An upstream lag
# (one OpenTelemetry instrumentation a release behind the others, all pinning
# opentelemetry-semantic-conventions exactly) shows here as a failure or a resolution that takes
# longer than RESOLVE_LIMIT seconds. `pip install --dry-run` resolves without installing.
#
#   bash .ci/check_install.sh [python]      (default: python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${1:-python3}
RESOLVE_LIMIT=${RESOLVE_LIMIT:-600}
# [all] and the combinations users type; the extras not capped in pyproject.toml together (a
# lag among them shows there). Each resolution downloads metadata: keep the list short.
SPECS=("[all]" "[flask,requests]" "[flask,httpx]" "[fastapi,celery,requests,httpx]" "[examples]" "[fastapi,ui,clickhouse]")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Plain pip: no config files (PIP_CONFIG_FILE=/dev/null), no PIP_* variables of this machine.
plain() { env $(env | sed -n 's/^\(PIP_[A-Z_]*\)=.*/-u \1/p') PIP_CONFIG_FILE=/dev/null \
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$@"; }

"$PYTHON" -m venv "$work/build"
plain "$work/build/bin/pip" wheel --quiet --no-deps --wheel-dir "$work/dist" . >/dev/null
wheel=$(ls "$work"/dist/dashfrog_sdk-*.whl)

failed=0
for pip_kind in fresh newest; do
  venv="$work/venv-$pip_kind"
  "$PYTHON" -m venv "$venv"
  if [ "$pip_kind" = newest ]; then
    plain "$venv/bin/pip" install --quiet --upgrade pip
  fi
  pip_version=$("$venv/bin/pip" --version | cut -d' ' -f2)
  # One after the other: side by side they share the network and each takes longer.
  for spec in "${SPECS[@]}"; do
    start=$(date +%s)
    if plain timeout "$RESOLVE_LIMIT" "$venv/bin/pip" install --dry-run --quiet \
        "dashfrog-sdk$spec @ file://$wheel" >"$work/log" 2>&1; then
      echo "check_install: pip $pip_version: dashfrog-sdk$spec resolves ($(( $(date +%s) - start )) s)"
    else
      failed=1
      echo "check_install: pip $pip_version: dashfrog-sdk$spec does NOT resolve within" \
        "${RESOLVE_LIMIT} s:"
      tail -n 5 "$work/log"
    fi
  done
done
exit "$failed"
