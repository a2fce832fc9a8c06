#!/usr/bin/env bash
# Runs one libFuzzer target the way ctest -L fuzz does:
#   1. replays every file in REGRESSIONS (inputs that once crashed it): must not crash;
#   2. fuzzes for SECONDS on a fresh copy of SEEDS (the corpus from test/vectors), so runs
#      never grow the build tree's seed directory.
# usage: run_fuzz.sh FUZZER SEEDS REGRESSIONS WORKDIR SECONDS
# A crash leaves WORKDIR/crash-* (or leak-/timeout-); copy it into test/fuzz/regressions/<target>/.
set -uo pipefail
[ $# -eq 5 ] || { echo "usage: $0 FUZZER SEEDS REGRESSIONS WORKDIR SECONDS" >&2; exit 2; }
fuzzer=$1 seeds=$2 regress=$3 work=$4 secs=$5
name=$(basename "$fuzzer")

rm -rf "$work"
mkdir -p "$work/corpus"
[ -d "$seeds" ] && cp -R "$seeds/." "$work/corpus/" 2>/dev/null

opts=(-timeout=10 -rss_limit_mb=2048 -artifact_prefix="$work/")

shopt -s nullglob
reg=("$regress"/*)
if [ ${#reg[@]} -gt 0 ]; then
  echo "$name: replaying ${#reg[@]} regression input(s) from $regress"
  if ! "$fuzzer" "${opts[@]}" "${reg[@]}" >"$work/replay.log" 2>&1; then
    tail -n 40 "$work/replay.log"
    echo "$name: FAILED on a regression input"
    exit 1
  fi
fi

nseeds=$(find "$work/corpus" -type f | wc -l)
echo "$name: fuzzing ${secs}s from $nseeds seed(s)"
"$fuzzer" "${opts[@]}" -max_total_time="$secs" -print_final_stats=1 "$work/corpus" >"$work/fuzz.log" 2>&1
rc=$?
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/fuzz.log" | tail -n 1)
cov=$(grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "$work/fuzz.log" | tail -n 1 | sed -n 's/.*cov: \([0-9]*\).*ft: \([0-9]*\).*corp: \([0-9]*\).*/cov \1 ft \2 corpus \3/p')
if [ $rc -ne 0 ]; then
  grep -v '^#' "$work/fuzz.log" | tail -n 60
  for a in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*; do
    echo "$name: artifact $a ($(wc -c <"$a") bytes): $(od -An -tx1 -v "$a" | tr -d ' \n' | head -c 400)"
    echo "  keep it: cp $a $regress/"
  done
  echo "$name: FAILED (exit $rc) after ${execs:-?} executions"
  exit 1
fi
echo "$name: OK, ${execs:-?} executions in ${secs}s (${cov:-no stats})"
