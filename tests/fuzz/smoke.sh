#!/bin/sh
# Runs one libFuzzer target for a short while from its committed seed corpus, as `tools/run test`
# does: new inputs go to a scratch directory (the corpus in git is never modified), and a crash
# fails the test and is kept under build-fuzz/fuzz-crashes/<target>/.
#   smoke.sh FUZZER CORPUS_DIR SECONDS [MORE LIBFUZZER OPTIONS...]
set -eu
fuzzer=$1 corpus=$2 seconds=$3
shift 3
crashes=$(cd "$(dirname "$fuzzer")/../.." && pwd)/fuzz-crashes/$(basename "$fuzzer")
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$crashes"
status=0
"$fuzzer" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
  -artifact_prefix="$crashes/" "$@" "$scratch" "$corpus" >"$scratch/log" 2>&1 || status=$?
# The full log of a failure, the summary of a success.
if [ "$status" -ne 0 ]; then cat "$scratch/log"; else grep -E '^(#|stat::|Done|INFO: seed)' "$scratch/log" | tail -n 12; fi
exit "$status"
