#!/usr/bin/env bash
# Builds dist/{{name}}.wasm (a Cairn plugin component) from src/plugin.js; the last line printed is its path.
set -euo pipefail
cd "$(dirname "$0")"
# First run: install the pinned build tool (componentize-qjs) and link the vendored SDK.
if [ ! -d node_modules/componentize-qjs ] || [ ! -e node_modules/@cairn/sdk ]; then
  npm install --no-audit --no-fund >&2
fi
exec node node_modules/@cairn/sdk/bin/cairn-js-build.mjs src/plugin.js -o dist/{{name}}.wasm
