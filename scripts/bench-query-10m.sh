#!/usr/bin/env bash
# 10M-row query benchmark (issue 4): siemquery on SQLite and MariaDB next to
# grep/rg over the same raw log file, with the --grep search index on and off
# in the same run. Not a timed test: compare ratios within one run.
#
#   scripts/bench-query-10m.sh [--runs R] [--reindex]
#
# Data (bench-data/, gitignored; made once, reused by later runs):
#   bench-data/auth-10m.log  10 copies of scripts/gen-authlog.py's 1M lines, copy k
#                            moved to month Mar+k (10M lines over 30 days), 9 lines
#                            carrying the rare word "zzqrareword";
#   bench-data/q10m/s.db     siemparse into SQLite, then `siemparse --index`;
#   MariaDB database siemq10m (siemparse, then `siemparse --index`, timed), kept
#                            for reruns; --reindex drops its --grep index and builds it
#                            again (timed).
# Queries: best of R runs, wall clock, process start included. "--last 1h" is a
# 1 h --range (the data is from 2025, not now), which is the same SQL.
# Env: SIEMSTRESS_BENCH_MYSQL_URL (default mysql://root@127.0.0.1:3306/test).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=3 REINDEX=
while [[ $# -gt 0 ]]; do
    case $1 in
        --runs) RUNS=$2; shift 2 ;;
        --reindex) REINDEX=1; shift ;;
        -h|--help) sed -n '2,20s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "bench-query-10m: unknown argument $1" >&2; exit 2 ;;
    esac
done
URL=${SIEMSTRESS_BENCH_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}
MY_URL="${URL%/*}/siemq10m"
D=bench-data W=bench-data/q10m
mkdir -p "$W" benchsuite/runs
: > "$D/empty.toml"
LOG=$D/auth-10m.log
my() { mariadb -h 127.0.0.1 -u root -N -B "$@"; }

cargo build --release -q -p siemparse -p siemquery
SP=(target/release/siemparse -c "$D/empty.toml" -q -s auth -z UTC --year 2025)

if [[ ! -s $LOG ]]; then
    [[ -s $D/auth-1000000.log ]] || python3 scripts/gen-authlog.py -n 1000000 -o "$D/auth-1000000.log"
    echo "== generate $LOG" >&2
    for k in 0 1 2 3 4 5 6 7 8 9; do
        m=$(echo "Mar Apr May Jun Jul Aug Sep Oct Nov Dec" | cut -d' ' -f$((k + 1)))
        awk -v m="$m" -v k=$k '{ sub(/^Mar /, m " ");
            if ((NR + k * 7919) % 1000003 == 0) $0 = $0 " zzqrareword"; print }' "$D/auth-1000000.log"
    done > "$LOG"
fi
if [[ ! -s $W/s.db ]]; then
    echo "== load SQLite" >&2
    "${SP[@]}" --db "sqlite://$W/s.db" < "$LOG"
    "${SP[@]}" --db "sqlite://$W/s.db" --index
fi
if [[ $(my -e "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'siemq10m' AND table_name = 'auth'") == 0 ]]; then
    echo "== load MariaDB" >&2
    my -e "CREATE DATABASE IF NOT EXISTS siemq10m"
    "${SP[@]}" --db "$MY_URL" < "$LOG"
fi
if [[ -n $REINDEX ]]; then
    my siemq10m -e "TRUNCATE TABLE \`auth\$grep\`; DELETE FROM grep_index WHERE tbl = 'auth'"
fi
MARK_SQL="SELECT COALESCE((SELECT indexed_upto FROM grep_index WHERE tbl = 'auth'), 0) < (SELECT MAX(id) FROM auth)"
if [[ $(my siemq10m -e "$MARK_SQL") == 1 ]]; then
    echo "== index MariaDB" >&2
    IDX_FROM=$(my siemq10m -e "SELECT COALESCE((SELECT indexed_upto FROM grep_index WHERE tbl = 'auth'), 0)")
    t0=$EPOCHREALTIME
    "${SP[@]}" --db "$MY_URL" --index
    t1=$EPOCHREALTIME
    echo "$(echo "$t1 - $t0" | bc -l) $IDX_FROM $(date -u +%FT%TZ)" > "$W/mysql-index-time"
    my siemq10m -e "ANALYZE TABLE \`auth\$grep\`, auth" > /dev/null
fi

# best CMD...: best wall-clock ms of RUNS runs. Output goes to a file, not
# /dev/null: GNU grep stops at the first match when its output is /dev/null.
best() {
    local b=
    for _ in $(seq "$RUNS"); do
        local t0=$EPOCHREALTIME
        "$@" > "$W/out" || true
        local t1=$EPOCHREALTIME
        local t; t=$(echo "($t1 - $t0) * 1000" | bc -l)
        if [[ -z $b ]] || (( $(echo "$t < $b" | bc -l) )); then b=$t; fi
    done
    printf '%.1f' "$b"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0) printf "%.2f×", a / b; else printf "n/a" }'; }

HOUR=(--range 2025-08-04T12:00:00Z-2025-08-04T13:00:00Z)
ALL=(--range 2025-01-01-2026-01-01)
WORD=zzqrareword MID=45.155.205.233
declare -A R N
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
cat "$LOG" > /dev/null # page cache for grep/rg, as the databases have theirs
R[grep]=$(best grep -c -F -i "$WORD" "$LOG")
R[rg]=n/a; command -v rg > /dev/null && R[rg]=$(best rg -c -F -i "$WORD" "$LOG")
R[grepmid]=$(best grep -c -F -i "$MID" "$LOG")
command -v rg > /dev/null && R[rgmid]=$(best rg -c -F -i "$MID" "$LOG")
for be in sqlite mysql; do
    if [[ $be == sqlite ]]; then DB="sqlite://$W/s.db"; else DB=$MY_URL; fi
    SQ=(target/release/siemquery -c "$D/empty.toml" --db "$DB" -s auth --format ndjson)
    R[$be,start]=$(best "${SQ[@]}" --id 1)
    R[$be,hour]=$(best "${SQ[@]}" "${HOUR[@]}")
    R[$be,hourc]=$(best "${SQ[@]}" "${HOUR[@]}" --count)
    R[$be,shost]=$(best "${SQ[@]}" "${HOUR[@]}" --shost 203.0.113.7)
    R[$be,shostc]=$(best "${SQ[@]}" "${HOUR[@]}" --shost 203.0.113.7 --count)
    N[$be,hour]=$("${SQ[@]}" "${HOUR[@]}" --count)
    N[$be,shost]=$("${SQ[@]}" "${HOUR[@]}" --shost 203.0.113.7 --count)
    N[$be,word]=$("${SQ[@]}" "${ALL[@]}" --grep "$WORD" --count)
    N[$be,mid]=$("${SQ[@]}" "${ALL[@]}" --grep "$MID" --count)
    R[$be,word]=$(best "${SQ[@]}" "${ALL[@]}" --grep "$WORD")
    R[$be,mid]=$(best "${SQ[@]}" "${ALL[@]}" --grep "$MID" --count)
    R[$be,wordscan]=$(SIEMSTRESS_GREP_INDEX=never best "${SQ[@]}" "${ALL[@]}" --grep "$WORD")
    R[$be,midscan]=$(SIEMSTRESS_GREP_INDEX=never best "${SQ[@]}" "${ALL[@]}" --grep "$MID" --count)
    R[$be,hourgrep]=$(best "${SQ[@]}" "${HOUR[@]}" --grep "$WORD")
    N[$be,wordscan]=$(SIEMSTRESS_GREP_INDEX=never "${SQ[@]}" "${ALL[@]}" --grep "$WORD" --count)
    # Export rate: one of the ten copies (1M rows, 3 days) as NDJSON.
    t0=$EPOCHREALTIME
    n=$("${SQ[@]}" --range 2025-08-01-2025-09-01 | wc -l)
    t1=$EPOCHREALTIME
    R[$be,export]=$(echo "$n / ($t1 - $t0)" | bc)
    N[$be,export]=$n
done
# MariaDB: the narrowing step of --grep, measured as plain SQL (one run each, a full scan).
myt() { local t0=$EPOCHREALTIME; my siemq10m -e "$1" > /dev/null; local t1=$EPOCHREALTIME; printf '%.0f' "$(echo "($t1 - $t0) * 1000" | bc -l)"; }
RE='[zZ][zZ][qQ][rR][aA][rR][eE][wW][oO][rR][dD]'
R[my,lower]=$(myt "SELECT COUNT(*) FROM auth WHERE LOWER(raw) LIKE LOWER('%$WORD%') ESCAPE '!' AND raw REGEXP '$RE'")
R[my,general]=$(myt "SELECT COUNT(*) FROM auth WHERE raw COLLATE utf8mb4_general_ci LIKE '%$WORD%' ESCAPE '!' AND raw REGEXP '$RE'")
R[my,regexp]=$(myt "SELECT COUNT(*) FROM auth WHERE raw REGEXP '$RE'")
R[my,floor]=$(myt "SELECT COUNT(*) FROM auth WHERE LENGTH(raw) < 0")

S_DB=$(du -m "$W/s.db" | cut -f1)
S_FTS=$(sqlite3 "$W/s.db" "SELECT sum(pgsize) / 1048576 FROM dbstat WHERE name LIKE 'auth\$grep%'" 2>/dev/null || echo "?")
MY_VARS=$(my -e "SELECT CONCAT(@@version, ', buffer pool ', @@innodb_buffer_pool_size DIV 1048576, ' MB')")
my_mb() { my -e "SELECT ROUND((data_length + index_length) / 1048576) FROM information_schema.tables WHERE table_schema = 'siemq10m' AND table_name = '$1'"; }
M_DB=$(my_mb auth) M_IDX=$(my_mb 'auth$grep')
M_ROWS=$(my siemq10m -e "SELECT COUNT(*) FROM \`auth\$grep\`")
read -r M_TIME M_FROM M_WHEN < "$W/mysql-index-time" || true
OUT=benchsuite/runs/query-10m-$(date +%F).md
[[ -e $OUT ]] && OUT=benchsuite/runs/query-10m-$(date +%F-%H%M).md # keep earlier runs
{
    echo "# siemquery benchmark, 10M rows, $(date -u +%FT%TZ)"
    echo
    echo "\`scripts/bench-query-10m.sh --runs $RUNS\`: $(wc -l < "$LOG") lines ($(du -m "$LOG" | cut -f1) MB) of generated auth.log over 30 days;"
    echo "$(nproc) cores, load average $LOAD0 at start (shared machine: compare ratios)."
    echo "Commit $(git rev-parse --short HEAD). SQLite file $S_DB MB, of which the --grep index $S_FTS MB. MariaDB $MY_VARS;"
    echo "table auth $M_DB MB, its --grep bitmap \`auth\$grep\` $M_IDX MB ($M_ROWS rows; InnoDB estimates), built by"
    echo "\`siemparse --index\` from id ${M_FROM:-?} in $(printf '%.0f' "${M_TIME:-0}") s (${M_WHEN:-?})."
    echo "Times: best of $RUNS, wall clock, siemquery process start included"
    echo "(\`--id 1\`, i.e. start + connect + one row: SQLite ${R[sqlite,start]} ms, MariaDB ${R[mysql,start]} ms)."
    echo
    echo "| query | SQLite | MariaDB | target |"
    echo "| --- | --- | --- | --- |"
    echo "| \`--last 1h\` (1 h range, ${N[sqlite,hour]} rows, all columns as NDJSON) | ${R[sqlite,hour]} ms | ${R[mysql,hour]} ms | < 50 ms |"
    echo "| same, \`--count\` | ${R[sqlite,hourc]} ms | ${R[mysql,hourc]} ms | |"
    echo "| \`--last 1h --shost 203.0.113.7\` (${N[sqlite,shost]} rows) | ${R[sqlite,shost]} ms | ${R[mysql,shost]} ms | < 50 ms |"
    echo "| same, \`--count\` | ${R[sqlite,shostc]} ms | ${R[mysql,shostc]} ms | |"
    echo "| \`--grep $WORD\`, all 10M rows (${N[sqlite,word]} rows) | ${R[sqlite,word]} ms | ${R[mysql,word]} ms | faster than rg |"
    echo "| same, index off (\`SIEMSTRESS_GREP_INDEX=never\`, ${N[sqlite,wordscan]} / ${N[mysql,wordscan]} rows) | ${R[sqlite,wordscan]} ms | ${R[mysql,wordscan]} ms | |"
    echo "| \`--last 1h --grep $WORD\` | ${R[sqlite,hourgrep]} ms | ${R[mysql,hourgrep]} ms | |"
    echo "| \`--grep $MID --count\`, all rows (${N[sqlite,mid]} / ${N[mysql,mid]} rows) | ${R[sqlite,mid]} ms | ${R[mysql,mid]} ms | |"
    echo "| same, index off | ${R[sqlite,midscan]} ms | ${R[mysql,midscan]} ms | |"
    echo "| \`--format ndjson\` export (${N[sqlite,export]} rows, all columns) | ${R[sqlite,export]} rows/s | ${R[mysql,export]} rows/s | |"
    echo
    echo "Same file, same run: \`grep -c -F -i $WORD\` ${R[grep]} ms, \`rg -c -F -i $WORD\` ${R[rg]} ms;"
    echo "\`grep -c -F -i $MID\` ${R[grepmid]} ms, \`rg -c -F -i $MID\` ${R[rgmid]:-n/a} ms."
    echo
    echo "Ratios: SQLite \`--grep $WORD\` vs rg $(ratio "${R[sqlite,word]}" "${R[rg]}") of rg's time,"
    echo "vs grep $(ratio "${R[sqlite,word]}" "${R[grep]}"), vs its own scan $(ratio "${R[sqlite,word]}" "${R[sqlite,wordscan]}");"
    echo "MariaDB \`--grep $WORD\` vs rg $(ratio "${R[mysql,word]}" "${R[rg]}") of rg's time,"
    echo "vs grep $(ratio "${R[mysql,word]}" "${R[grep]}"), vs its own scan $(ratio "${R[mysql,word]}" "${R[mysql,wordscan]}")."
    echo
    echo "MariaDB narrowing step for --grep, plain SQL COUNT(*) over 10M rows, one run each:"
    echo "\`LOWER(raw) LIKE LOWER(?)\` + REGEXP ${R[my,lower]} ms; \`raw COLLATE utf8mb4_general_ci LIKE ?\` + REGEXP"
    echo "${R[my,general]} ms; REGEXP alone ${R[my,regexp]} ms; scan floor (\`LENGTH(raw) < 0\`) ${R[my,floor]} ms."
} > "$OUT"
cat "$OUT"
