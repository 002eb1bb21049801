#!/usr/bin/env bash
# Runs Ember's whole test suite on a fresh machine, in one command:
#
#   bash scripts/test.sh
#
# It installs only what the acceptance tests drive and is missing -- Go (for
# `go tool pprof`, from Debian's golang-go), the pyroscope-io Python SDK and
# moto's S3 server (each into a virtualenv under the Cargo target directory),
# the Helm chart tests' Python packages and buildah -- then checks and builds the
# Grafana plugin (grafana-plugin/: npm ci, type check, lint, unit tests, build),
# builds the `ember` binary, runs the chart tests (tests/helm) and every test of
# the workspace. Any failure fails the script.
#
# Environment: CARGO_TARGET_DIR (default ./target), EMBER_PYTHON (a Python that
# can `import pyroscope`; found or made here otherwise), EMBER_MOTO_SERVER (a
# `moto_server` executable; made here otherwise), CI (set: a missing tool
# fails its test instead of skipping it), EMBER_TEST_TIMEOUT (default 2400 s).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
PY_REQUIREMENTS="$ROOT/tests/python/requirements.txt" # pins pyroscope-io
S3_REQUIREMENTS="$ROOT/tests/python/s3-requirements.txt" # pins moto[server]
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
TEST_TIMEOUT="${EMBER_TEST_TIMEOUT:-2400}"

log() { printf '==> [%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi
}

APT_UPDATED=0
apt_install() {
  if ! command -v apt-get >/dev/null; then
    log "apt-get is not available: install $* by hand"
    return 1
  fi
  if [ "$APT_UPDATED" = 0 ]; then
    log "apt-get update"
    as_root timeout 600 apt-get update -qq
    APT_UPDATED=1
  fi
  log "apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive timeout 900 \
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# pinned_venv DIR REQUIREMENTS: a virtualenv at DIR with REQUIREMENTS installed.
# The pins are recorded in it, so changing them reinstalls.
pinned_venv() {
  local venv=$1 requirements=$2 pin
  pin="$(grep -v '^#' "$requirements" | tr -d '[:space:]')"
  if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.ember-pin" 2>/dev/null)" = "$pin" ]; then
    return 0
  fi
  log "creating $venv with $(grep -v '^#' "$requirements" | tr '\n' ' ')"
  mkdir -p "$(dirname "$venv")"
  rm -rf "$venv"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    apt_install python3-venv
    python3 -m venv "$venv"
  fi
  timeout 600 "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  printf '%s' "$pin" >"$venv/.ember-pin"
}

# --- Go, for `go tool pprof` --------------------------------------------------
if ! command -v go >/dev/null; then
  for dir in /usr/lib/go/bin /usr/local/go/bin; do
    if [ -x "$dir/go" ]; then export PATH="$PATH:$dir"; break; fi
  done
fi
if ! command -v go >/dev/null; then
  apt_install golang-go
fi
log "go: $(go version)"

# --- pyroscope-io, for the Python SDK test --------------------------------------
PYTHON="${EMBER_PYTHON:-python3}"
if ! command -v "$PYTHON" >/dev/null; then
  apt_install python3 python3-venv
fi
if ! "$PYTHON" -c 'import pyroscope' 2>/dev/null; then
  VENV="$CARGO_TARGET_DIR/pyroscope-venv"
  if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import pyroscope' 2>/dev/null; then
    log "creating $VENV with $(grep -v '^#' "$PY_REQUIREMENTS" | tr '\n' ' ')"
    mkdir -p "$CARGO_TARGET_DIR"
    if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
      apt_install python3-venv
      "$PYTHON" -m venv "$VENV"
    fi
    timeout 600 "$VENV/bin/pip" install --quiet --disable-pip-version-check \
      -r "$PY_REQUIREMENTS"
  fi
  PYTHON="$VENV/bin/python"
fi
export EMBER_PYTHON="$PYTHON"
log "python with pyroscope-io: $EMBER_PYTHON"

# --- moto, the S3-compatible server for tests/tests/e2e/s3.rs ---------------------
# In its own virtualenv: moto[server] pulls in Flask and boto3, which the SDK
# test's Python has no use for.
if [ -z "${EMBER_MOTO_SERVER:-}" ]; then
  pinned_venv "$CARGO_TARGET_DIR/moto-venv" "$S3_REQUIREMENTS"
  export EMBER_MOTO_SERVER="$CARGO_TARGET_DIR/moto-venv/bin/moto_server"
fi
log "moto: $EMBER_MOTO_SERVER"

# --- BEGIN Prometheus (tests/tests/e2e/prometheus.rs) ----------------------------
# Debian's prometheus package: promtool checks and unit-tests the alerting rules
# (operations/alerts) and lints each target's /metrics; the server scrapes a test
# cluster so that every dashboard query is run against real data.
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  apt_install prometheus
fi
log "prometheus: $(prometheus --version 2>&1 | head -1)"
# --- END Prometheus -----------------------------------------------------------------

# --- BEGIN web UI browser test (tests/tests/e2e/ui.rs) -------------------------------
# Debian's Chromium and Node.js, and playwright-core pinned by
# tests/ui/package-lock.json; no browser is ever downloaded.
if [ ! -x /usr/bin/chromium ]; then
  apt_install chromium
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt_install nodejs npm
fi
if [ ! -d "$ROOT/tests/ui/node_modules/playwright-core" ]; then
  log "npm ci in tests/ui"
  (cd "$ROOT/tests/ui" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 timeout 600 npm ci --no-audit --no-fund)
fi
mkdir -p "$ROOT/target/ui-screenshots"
log "web UI test: $(/usr/bin/chromium --version 2>/dev/null), node $(node --version)"
# --- END web UI browser test -------------------------------------------------------

# --- BEGIN ingest formats: Node.js SDK and JDK, for tests/tests/e2e/ingest_*.rs ---
# The Node.js test drives @pyroscope/nodejs (pinned in tests/node/package-lock.json);
# the JFR test records tests/java/EmberBusy.java with the machine's JDK.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt_install nodejs npm
fi
if ! command -v javac >/dev/null; then
  apt_install default-jdk-headless
fi
log "node $(node --version), npm ci in tests/node"
(cd "$ROOT/tests/node" && timeout 600 npm ci --no-audit --no-fund --loglevel=error)
# --- END ingest formats -------------------------------------------------------

# --- BEGIN grafana plugin (grafana-plugin/, tests/tests/e2e/grafana_plugin.rs) ---------
# The plugin's packages from package-lock.json (npm registry only), then its type check,
# lint, unit tests and production build; any failure stops the run. The browser test
# (grafana_plugin.rs) uses Debian's Chromium, installed above for the web UI test.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt_install nodejs npm
fi
log "grafana plugin: npm ci, typecheck, lint, unit tests, build"
(
  cd "$ROOT/grafana-plugin"
  timeout 900 npm ci --no-audit --no-fund --loglevel=error
  timeout 600 npm run typecheck
  timeout 600 npm run lint
  timeout 900 npm run test:ci
  timeout 600 npm run build
  test -s dist/module.js
  node -e 'const p = require("./dist/plugin.json"); if (p.id !== "ember-datasource" || p.type !== "datasource" || /%/.test(p.info.version)) { console.error("dist/plugin.json is not a valid plugin.json:", p); process.exit(1); }'
)
mkdir -p "$ROOT/target/plugin-screenshots"
# --- END grafana plugin -------------------------------------------------------------

# --- build and test --------------------------------------------------------------
log "cargo build --bin ember"
cargo build --bin ember

# --- BEGIN Helm chart tests (tests/helm) -------------------------------------------
# helm/ember rendered and linted by Helm's own engine (helm-python-sdk embeds it;
# no helm binary), validated against Kubernetes' schemas, then the rendered pods
# run as processes in network namespaces (root and iproute2), and an image made
# from the binary with buildah (vfs storage, chroot isolation: no daemon).
# Pins in tests/helm/requirements.txt, installed into $CARGO_TARGET_DIR/helm-venv.
HELM_VENV="$CARGO_TARGET_DIR/helm-venv"
if ! command -v buildah >/dev/null; then
  apt_install buildah
fi
if ! command -v ip >/dev/null; then
  apt_install iproute2
fi
pinned_venv "$HELM_VENV" "$ROOT/tests/helm/requirements.txt"
log "Helm chart tests (tests/helm)"
# Namespaces and mounts need root; the variables are passed on through sudo.
(cd "$ROOT/tests/helm" && as_root env CI="${CI:-}" CARGO_TARGET_DIR="$CARGO_TARGET_DIR" \
  EMBER_BINARY="$CARGO_TARGET_DIR/debug/ember" EMBER_MOTO_SERVER="$EMBER_MOTO_SERVER" \
  timeout -k 30 900 "$HELM_VENV/bin/pytest" -q -rs)
# --- END Helm chart tests ------------------------------------------------------------

if cargo nextest --version >/dev/null 2>&1; then
  # Doc tests first, so that the run ends on nextest's summary line.
  log "cargo test --workspace --doc"
  timeout -k 30 600 cargo test --workspace --doc
  log "cargo nextest run --workspace (timeout ${TEST_TIMEOUT}s)"
  timeout -k 30 "$TEST_TIMEOUT" cargo nextest run --workspace --no-fail-fast
else
  log "cargo test --workspace (timeout ${TEST_TIMEOUT}s)"
  timeout -k 30 "$TEST_TIMEOUT" cargo test --workspace --no-fail-fast
fi
log "all tests passed"
