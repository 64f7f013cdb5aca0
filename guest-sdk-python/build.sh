#!/usr/bin/env bash
# Builds a Cairn plugin component from a Python app directory:
#   guest-sdk-python/build.sh APP_DIR OUT.wasm [MODULE]
# APP_DIR holds MODULE.py (default: app), which defines `WitWorld = export(YourPlugin)`.
# Needs componentize-py 0.25.1 (`pip install componentize-py==0.25.1`).
# The SDK (this directory) and the WIT (../wit/v0.1.0, or $CAIRN_WIT) are
# found relative to this script. The SDK targets cairn:plugin@0.1.0, which the
# host still runs (it has no `migrate` export yet). Prints the path of the component on its last line.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 APP_DIR OUT.wasm [MODULE]" >&2
    exit 2
fi
sdk="$(cd "$(dirname "$0")" && pwd)"
app="$(cd "$1" && pwd)"
out="$2"
module="${3:-app}"
wit="${CAIRN_WIT:-$sdk/../wit/v0.1.0}"
if ! command -v componentize-py >/dev/null; then
    echo "componentize-py not found; install it with: pip install componentize-py==0.25.1" >&2
    exit 127
fi
version="$(componentize-py --version | awk '{print $2}')"
if [ "$version" != "0.25.1" ]; then
    echo "warning: componentize-py $version; the SDK is tested with 0.25.1" >&2
fi
mkdir -p "$(dirname "$out")"
componentize-py -d "$wit" -w plugin componentize "$module" -p "$app" -p "$sdk" -o "$out" >&2
echo "$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
