#!/usr/bin/env bash
# Runs the fuzz targets (issue 18): each for SECONDS (default 600), JOBS at
# a time (default 2), niced; new inputs go to corpus-run/NAME (not
# committed), crashes to artifacts/NAME. Prints per target the executions
# and whether it crashed; the libFuzzer logs are in fuzz/logs/NAME.log.
#
#   fuzz/run.sh [--seconds N] [--jobs N] [TARGET...]
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# Built with `-O -s none` (release, no sanitizer: the code under test is
# safe Rust, so a panic, a timeout or running out of memory is what is found;
# arithmetic wraps as in the shipped release binaries).
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_EACH=600 JOBS=2
while [[ $# -gt 0 ]]; do
    case $1 in
        --seconds) SECONDS_EACH=$2; shift 2 ;;
        --jobs) JOBS=$2; shift 2 ;;
        -h|--help) sed -n '2,12s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) break ;;
    esac
done
TARGETS=("$@")
[[ ${#TARGETS[@]} -gt 0 ]] || TARGETS=(syslog decode timerange snapshot_json rule_file)
FLAGS=(-O -s none)
cargo +nightly fuzz build "${FLAGS[@]}"
mkdir -p logs
one() {
    local t=$1
    mkdir -p "corpus-run/$t" "artifacts/$t"
    nice -n 15 cargo +nightly fuzz run "${FLAGS[@]}" "$t" "corpus-run/$t" "corpus/$t" -- \
        -max_total_time="$SECONDS_EACH" -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 > "logs/$t.log" 2>&1 && rc=0 || rc=$?
    local runs
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' | tail -1)
    echo "$t: ${runs:-?} executions in ${SECONDS_EACH} s, exit $rc, crashes: $(ls "artifacts/$t" | wc -l)"
}
running=0
for t in "${TARGETS[@]}"; do
    one "$t" &
    running=$((running + 1))
    if (( running >= JOBS )); then wait -n; running=$((running - 1)); fi
done
wait
