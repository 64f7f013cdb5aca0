#!/usr/bin/env bash
# Runs every test: installs what the tests drive (idempotent, pinned), then the
# whole workspace's tests. This is the README's test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

# The status page's system test drives headless Chromium through chromedriver
# (tests/system/dashboard.rs); it fails without them. Debian's packages, ~45 s.
if ! command -v chromedriver >/dev/null; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver
fi
# The pinned JavaScript plugin tools (componentize-qjs, from package-lock.json):
# tests/system/polyglot_js.rs builds plugins/js/kv with them and fails without.
npm ci --prefix plugins/js/kv --no-audit --no-fund
# Pinned tools for the Python plugin tests (tests/system/polyglot_python.rs builds
# plugins/python/kv with componentize-py and runs the SDK's pytest suites);
# the test fails, never skips, without them.
python3 -m pip install --quiet componentize-py==0.25.1 pytest==9.2.0

rustup target add wasm32-wasip2
cargo test --workspace
