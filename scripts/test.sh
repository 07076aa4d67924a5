#!/usr/bin/env bash
# Installs everything the test suite needs and runs it: lint, types, then every test.
# Usage: bash scripts/test.sh [pytest args]   (e.g. -m "not slow" for a quick local loop)
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests start themselves: redis-server and haproxy (fleet tests),
# prometheus and promtool (alert unit tests, the dashboards' and the fleet's end-to-end tests),
# chromium (the browser client, the fleet page and the chat example, driven headless).
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v haproxy >/dev/null || need+=(haproxy)
command -v promtool >/dev/null || need+=(prometheus)
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  else
    echo "missing Debian packages: ${need[*]} (run as root or install them)" >&2
  fi
fi
# kubectl renders deploy/kubernetes with its built-in kustomize (tests/deploy); it is not in
# Debian's archive: this machine kind ships it, elsewhere install it from Kubernetes' packages.
command -v kubectl >/dev/null || echo "kubectl not found: tests/deploy will fail (it renders" \
  "deploy/kubernetes with kubectl kustomize)" >&2

# TypeScript (and React's types) for the client's type check, from tests/client_js/package-lock.json;
# then the framework packages (clients/react, clients/vue, clients/angular), each from its own lock:
# tests/client_js/frameworks/ type-checks them and builds their example pages (Vite; Analog's
# Angular plugin) once per session, offline, before driving the pages in headless Chromium;
# and the prometheus-operator CRD schemas tests/deploy holds the ServiceMonitor and
# PrometheusRule to (tests/deploy/crd).
if command -v npm >/dev/null; then
  npm ci --prefix tests/client_js --no-audit --no-fund --loglevel=error
  for pkg in tests/deploy/crd clients/react clients/vue clients/angular; do
    npm ci --prefix "$pkg" --no-audit --no-fund --loglevel=error
  done
else
  echo "npm not found: the TypeScript checks of the browser client and of clients/ are skipped," \
    "and so are the framework example pages" >&2
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
.venv/bin/ruff check wsops tests bench examples scripts
.venv/bin/mypy --strict wsops tests
.venv/bin/pytest "$@"

# Mutation check of the core modules changed by the last commit (or whose tests changed), bounded
# in time; the full run is `.venv/bin/python scripts/mutation.py` (TESTING.md).
if [ $# -eq 0 ]; then
  .venv/bin/python scripts/mutation.py --changed HEAD~1 --min-score 95 --max-seconds 900
fi
