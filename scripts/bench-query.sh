#!/usr/bin/env bash
# Query benchmark (issue 4): siemquery latency on SQLite and MariaDB over the
# generated auth.log (scripts/gen-authlog.py: N lines over three days of 2025),
# next to grep/rg over the same raw file. Not a timed test.
#
#   scripts/bench-query.sh [--lines N] [--runs R]
#
# Queries (best of R runs, wall clock, process start included):
#   1h window (--range, as the data is not "now"), 1h window + --shost,
#   --grep of a word in no line (a full scan), --count of the whole table,
#   --format ndjson export of everything (rows/s).
# Env: SIEMSTRESS_BENCH_MYSQL_URL (default mysql://root@127.0.0.1:3306/test);
# works in a fresh database `siemqbench` on that server and drops it.
set -euo pipefail
cd "$(dirname "$0")/.."

LINES=1000000 RUNS=3
while [[ $# -gt 0 ]]; do
    case $1 in
        --lines) LINES=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        -h|--help) sed -n '2,13s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "bench-query: unknown argument $1" >&2; exit 2 ;;
    esac
done

URL=${SIEMSTRESS_BENCH_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}
MY_URL="${URL%/*}/siemqbench"
D=bench-data W=bench-data/qwork
mkdir -p "$W" benchsuite/runs
: > "$D/empty.toml"
LOG=$D/auth-$LINES.log
if [[ ! -s $LOG ]]; then
    echo "== generate $LINES lines" >&2
    python3 scripts/gen-authlog.py -n "$LINES" -o "$LOG"
fi
cargo build --release -q -p siemparse -p siemquery

# best SECONDS of RUNS runs of CMD...
best() {
    local b=
    for _ in $(seq "$RUNS"); do
        local t0=$EPOCHREALTIME
        "$@" > "$W/out" || true # not /dev/null: GNU grep would stop at the first match
        local t1=$EPOCHREALTIME
        local t; t=$(echo "$t1 - $t0" | bc -l)
        if [[ -z $b ]] || (( $(echo "$t < $b" | bc -l) )); then b=$t; fi
    done
    printf '%.1f ms' "$(echo "$b * 1000" | bc -l)"
}

RANGE=(--range 2025-03-04T12:00:00Z-2025-03-04T13:00:00Z)
WORD=zzqrareword
OUT=benchsuite/runs/query-$(date +%F).md
{
    echo "# siemquery benchmark, $(date -u +%FT%TZ), $LINES lines, $(nproc) cores"
    echo
    echo "| query | SQLite | MariaDB |"
    echo "| --- | --- | --- |"
} > "$OUT"

declare -A R
for be in sqlite mysql; do
    if [[ $be == sqlite ]]; then
        DB="sqlite://$W/q.db"; rm -f "$W"/q.db*
    else
        mariadb -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS siemqbench; CREATE DATABASE siemqbench"
        DB=$MY_URL
    fi
    echo "== ingest $be" >&2
    target/release/siemparse -c "$D/empty.toml" --db "$DB" -q -s auth -z UTC --year 2025 < "$LOG"
    SQ=(target/release/siemquery -c "$D/empty.toml" --db "$DB" -s auth --format ndjson)
    R[$be,window]=$(best "${SQ[@]}" "${RANGE[@]}")
    R[$be,shost]=$(best "${SQ[@]}" "${RANGE[@]}" --shost 203.0.113.7)
    R[$be,grep]=$(best "${SQ[@]}" --range 2025-01-01-2026-01-01 --grep "$WORD")
    R[$be,count]=$(best "${SQ[@]}" --range 2025-01-01-2026-01-01 --count)
    t0=$EPOCHREALTIME
    n=$("${SQ[@]}" --range 2025-01-01-2026-01-01 | wc -l)
    t1=$EPOCHREALTIME
    R[$be,export]="$(echo "$n / ($t1 - $t0)" | bc) rows/s"
    R[$be,nwin]=$("${SQ[@]}" "${RANGE[@]}" --count)
    if [[ $be == mysql ]]; then mariadb -h 127.0.0.1 -u root -e "DROP DATABASE siemqbench"; fi
done
GREP=$(best grep -c -F -i "$WORD" "$LOG" || true)
RG=n/a; if command -v rg > /dev/null; then RG=$(best rg -c -F -i "$WORD" "$LOG" || true); fi
{
    echo "| 1 h window (${R[sqlite,nwin]} rows) | ${R[sqlite,window]} | ${R[mysql,window]} |"
    echo "| 1 h window + --shost | ${R[sqlite,shost]} | ${R[mysql,shost]} |"
    echo "| --grep $WORD, all rows | ${R[sqlite,grep]} | ${R[mysql,grep]} |"
    echo "| --count, all rows | ${R[sqlite,count]} | ${R[mysql,count]} |"
    echo "| --format ndjson export | ${R[sqlite,export]} | ${R[mysql,export]} |"
    echo
    echo "Same file: \`grep -c -F -i\` $GREP, \`rg -c -F -i\` $RG."
} >> "$OUT"
cat "$OUT"
