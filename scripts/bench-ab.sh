#!/usr/bin/env bash
# A/B of two builds of the three tools on the same work, in one run: for a
# refactor, "speed unchanged" is measured here, not assumed.
#
#   scripts/bench-ab.sh OLD_BINDIR NEW_BINDIR [--lines N] [--runs R] [--callgrind N] [--rules DIR]
#
# BINDIR holds siemparse, siemquery and siemtrigger (e.g. a release target/
# of a worktree at the older commit). Over one generated auth.log
# (scripts/gen-authlog.py, N lines, default 200,000) each build, on SQLite:
#   ingest   siemparse -s auth -z UTC --year 2025 < log   (fresh database)
#   export   siemquery -s auth --range <all> --format ndjson > /dev/null
#   trigger  siemtrigger --once with the rule files DIR/*.toml (default config/rules:
#            give the older tree's pack when the pack's format changed)
# and the trigger again on MariaDB (SIEMSTRESS_BENCH_MYSQL_URL, default
# mysql://root@127.0.0.1:3306/test; a fresh database per build, dropped).
# Each figure is the lowest user+sys CPU of R runs (default 3), the two
# builds alternating run by run so that load changes hit both alike. With
# --callgrind N the first N lines also go through valgrind's callgrind once
# per build and step (instructions: independent of the machine's load).
# Results: benchsuite/runs/ab-DATE-TIME.md.
set -euo pipefail
cd "$(dirname "$0")/.."

[[ $# -ge 2 ]] || { sed -n '2,20s/^# \{0,1\}//p' "$0"; exit 2; }
OLD=$(realpath "$1") NEW=$(realpath "$2"); shift 2
LINES=200000 RUNS=3 CG=0 RULES=$(pwd)/config/rules
while [[ $# -gt 0 ]]; do
    case $1 in
        --lines) LINES=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --callgrind) CG=$2; shift 2 ;;
        --rules) RULES=$(realpath "$2"); shift 2 ;;
        *) echo "bench-ab: unknown argument $1" >&2; exit 2 ;;
    esac
done
for b in "$OLD" "$NEW"; do
    for t in siemparse siemquery siemtrigger; do
        [[ -x $b/$t ]] || { echo "bench-ab: $b/$t is missing" >&2; exit 2; }
    done
done
[[ -d $RULES ]] || { echo "bench-ab: no rules directory $RULES" >&2; exit 2; }
URL=${SIEMSTRESS_BENCH_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}
W=$(mktemp -d /tmp/bench-ab.XXXXXX)
trap 'rm -rf "$W"' EXIT
LOG=bench-data/auth-$LINES.log
mkdir -p bench-data benchsuite/runs
[[ -s $LOG ]] || python3 scripts/gen-authlog.py -n "$LINES" -o "$LOG"
printf '[rules]\npaths = ["%s/*.toml"]\n' "$RULES" >"$W/rules.toml"
: >"$W/empty.toml"

# cpu CMD...: user+sys seconds of one run (stdout discarded).
cpu() {
    /usr/bin/time -f '%U %S' -o "$W/time" "$@" >/dev/null 2>"$W/err" || {
        echo "bench-ab: failed: $*" >&2; cat "$W/err" >&2; exit 1; }
    awk '{printf "%.3f", $1 + $2}' "$W/time"
}
min() { printf '%s\n' "$@" | sort -g | head -1; }
mysql_db() { echo "${URL%/*}/siemab_$1"; }
mysql_reset() {
    mariadb -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS siemab_$1; CREATE DATABASE siemab_$1 CHARACTER SET utf8mb4"
}

declare -A R
for run in $(seq 1 "$RUNS"); do
    for v in old new; do
        B=$OLD; [[ $v == new ]] && B=$NEW
        rm -f "$W/$v.db"*
        R[ingest,$v]+=" $(cpu sh -c "'$B/siemparse' -c '$W/empty.toml' --db 'sqlite://$W/$v.db' -s auth -z UTC --year 2025 -q < '$LOG'")"
        R[export,$v]+=" $(cpu "$B/siemquery" -c "$W/empty.toml" --db "sqlite://$W/$v.db" -s auth --range 2024-01-01/2027-01-01 --limit 0 --format ndjson)"
        cp "$W/$v.db" "$W/$v-t.db"
        R[trigger,$v]+=" $(cpu "$B/siemtrigger" -c "$W/rules.toml" --db "sqlite://$W/$v-t.db" --once --settle 0s)"
        rm -f "$W/$v-t.db"*
        if [[ $run == 1 ]]; then
            mysql_reset "$v"
            "$B/siemparse" -c "$W/empty.toml" --db "$(mysql_db "$v")" -s auth -z UTC --year 2025 -q <"$LOG"
        fi
        # Fresh trigger state on MariaDB: forget the rules' progress and alerts.
        for t in trigger_progress trigger_windows alert_events action_runs alerts trigger_lease; do
            mariadb -h 127.0.0.1 -u root "siemab_$v" -e "DELETE FROM $t" 2>/dev/null || true
        done
        R[trigger-mariadb,$v]+=" $(cpu "$B/siemtrigger" -c "$W/rules.toml" --db "$(mysql_db "$v")" --once --settle 0s)"
    done
done

declare -A I
if [[ $CG -gt 0 ]]; then
    head -n "$CG" "$LOG" >"$W/cg.log"
    for v in old new; do
        B=$OLD; [[ $v == new ]] && B=$NEW
        rm -f "$W/cg-$v.db"*
        cg() {
            valgrind --tool=callgrind --callgrind-out-file="$W/cg.out" "$@" >/dev/null 2>"$W/cg.err" || {
                echo "bench-ab: callgrind failed: $*" >&2; tail "$W/cg.err" >&2; exit 1; }
            awk '/^(summary|totals):/ {print $2; exit}' "$W/cg.out"
        }
        I[ingest,$v]=$(cg "$B/siemparse" -c "$W/empty.toml" --db "sqlite://$W/cg-$v.db" -s auth -z UTC --year 2025 -q <"$W/cg.log")
        I[export,$v]=$(cg "$B/siemquery" -c "$W/empty.toml" --db "sqlite://$W/cg-$v.db" -s auth --range 2024-01-01/2027-01-01 --limit 0 --format ndjson)
        I[trigger,$v]=$(cg "$B/siemtrigger" -c "$W/rules.toml" --db "sqlite://$W/cg-$v.db" --once --settle 0s)
    done
fi

for v in old new; do mariadb -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS siemab_$v"; done
OUT=benchsuite/runs/ab-$(date +%F-%H%M).md
{
    echo "# A/B: $OLD vs $NEW"
    echo
    echo "$(date -u +%FT%TZ), $LINES lines ($LOG), best of $RUNS runs alternating, load $(cut -d' ' -f1-3 /proc/loadavg)."
    echo "Rules: $RULES. CPU = user+sys seconds."
    echo
    echo "| step | old CPU s | new CPU s | new/old |"
    echo "| --- | --- | --- | --- |"
    for s in ingest export trigger trigger-mariadb; do
        # shellcheck disable=SC2086 # one word per run
        o=$(min ${R[$s,old]}) n=$(min ${R[$s,new]})
        echo "| $s | $o | $n | $(awk -v o="$o" -v n="$n" 'BEGIN{printf "%.2f", n/o}') |"
    done
    if [[ $CG -gt 0 ]]; then
        echo
        echo "Instructions (callgrind, first $CG lines, SQLite):"
        echo
        echo "| step | old | new | new/old |"
        echo "| --- | --- | --- | --- |"
        for s in ingest export trigger; do
            o=${I[$s,old]} n=${I[$s,new]}
            echo "| $s | $o | $n | $(awk -v o="$o" -v n="$n" 'BEGIN{printf "%.3f", n/o}') |"
        done
    fi
} | tee "$OUT"
