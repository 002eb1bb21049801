#!/usr/bin/env bash
# Runs Ember's whole test suite on a fresh machine, in one command:
#
#   bash scripts/test.sh
#
# It installs only what the acceptance tests drive and is missing -- Go (for
# `go tool pprof`, from Debian's golang-go), the pyroscope-io Python SDK and
# moto's S3 server (each into a virtualenv under the Cargo target directory) --
# then checks and builds the Grafana plugin (grafana-plugin/: npm ci, type check,
# lint, unit tests, build), builds the `ember` binary and runs every test of the
# workspace. Any failure fails the script.
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
  MOTO_VENV="$CARGO_TARGET_DIR/moto-venv"
  MOTO_PIN="$(grep -v '^#' "$S3_REQUIREMENTS" | tr -d '[:space:]')"
  # The pin is recorded in the virtualenv, so changing it reinstalls.
  if [ ! -x "$MOTO_VENV/bin/moto_server" ] || [ "$(cat "$MOTO_VENV/.ember-pin" 2>/dev/null)" != "$MOTO_PIN" ]; then
    log "creating $MOTO_VENV with $MOTO_PIN"
    mkdir -p "$CARGO_TARGET_DIR"
    rm -rf "$MOTO_VENV"
    if ! python3 -m venv "$MOTO_VENV" 2>/dev/null; then
      apt_install python3-venv
      python3 -m venv "$MOTO_VENV"
    fi
    timeout 600 "$MOTO_VENV/bin/pip" install --quiet --disable-pip-version-check \
      -r "$S3_REQUIREMENTS"
    printf '%s' "$MOTO_PIN" >"$MOTO_VENV/.ember-pin"
  fi
  export EMBER_MOTO_SERVER="$MOTO_VENV/bin/moto_server"
fi
log "moto: $EMBER_MOTO_SERVER"

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
