#!/bin/sh
# Runs run_exported.mjs with node, or reports the test skipped (exit status 77) where node is missing.
command -v node >/dev/null 2>&1 || { echo "SKIP: node is not installed"; exit 77; }
exec node "$(dirname "$0")/run_exported.mjs" "$@"
