#!/usr/bin/env bash
# siemtrigger benchmark (issue 5): lines/s of `siemtrigger --once` with the
# shipped rule pack (config/rules, >= 8 rules) over a generated auth.log
# (scripts/gen-authlog.py: N lines over three days of 2025), on SQLite and on
# MariaDB, next to baselines measured in the same run on the same machine:
# `grep -c -F -i 'failed password'` over the log file, `siemquery --count` of
# the whole table, and `siemquery --count --grep 'failed password'` (a scan of
# every row's raw line, the search index off). Then the peak RSS with
# 100,000 open pair windows (distinct-key `first` events, no `second`), on
# SQLite: while opening them, and when a later run loads them back.
#
#   scripts/bench-trigger.sh [--lines N] [--pairs N] [--runs R]
#
# Wall clock is best of R runs (process start included; each run from fresh
# trigger state on a copy of the ingested database); CPU is user+sys of that
# run. The host is shared: compare the ratios, not the absolute figures.
# MariaDB runs use `--settle 0s` (the default 1 s settle is a sleep, not work).
# Env: SIEMSTRESS_BENCH_MYSQL_URL (default mysql://root@127.0.0.1:3306/test);
# works in a fresh database `siemtbench` on that server and drops it.
# Results: benchsuite/runs/trigger-DATE.md (appended).
set -euo pipefail
cd "$(dirname "$0")/.."

LINES=1000000 PAIRS=100000 RUNS=3
while [[ $# -gt 0 ]]; do
    case $1 in
        --lines) LINES=$2; shift 2 ;;
        --pairs) PAIRS=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        -h|--help) sed -n '2,20s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "bench-trigger: unknown argument $1" >&2; exit 2 ;;
    esac
done

URL=${SIEMSTRESS_BENCH_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}
MY_URL="${URL%/*}/siemtbench"
D=bench-data W=bench-data/twork
mkdir -p "$W" benchsuite/runs
LOG=$D/auth-$LINES.log
if [[ ! -s $LOG ]]; then
    echo "== generate $LINES lines" >&2
    python3 scripts/gen-authlog.py -n "$LINES" -o "$LOG"
fi
cargo build --release -q -p siemparse -p siemquery -p siemtrigger
CFG=$W/pack.toml
: > "$W/empty.toml"
printf '[rules]\npaths = ["%s/config/rules/*.toml"]\n' "$PWD" > "$CFG"
NRULES=$(target/release/siemtrigger -c "$CFG" --check 2> /dev/null | wc -l)

# run CMD...: sets WALL, CPU (s) and RSS (KiB) of one run.
run() {
    local f t0 t1 u s; f=$(mktemp)
    t0=$EPOCHREALTIME
    # Not /dev/null: GNU grep stops at the first match when it writes there.
    /usr/bin/time -f '%U %S %M' -o "$f" "$@" > "$W/out.txt"
    t1=$EPOCHREALTIME
    read -r u s RSS < <(tail -n 1 "$f"); rm -f "$f"
    WALL=$(printf '%.3f' "$(echo "$t1 - $t0" | bc -l)")
    CPU=$(printf '%.2f' "$(echo "$u + $s" | bc -l)")
}
# best WALL of RUNS runs of CMD..., after PREP (a fresh copy of the state); sets BW, BC, BR.
best() {
    local prep=$1; shift
    BW=
    for _ in $(seq "$RUNS"); do
        $prep
        run "$@"
        if [[ -z $BW ]] || (( $(echo "$WALL < $BW" | bc -l) )); then BW=$WALL BC=$CPU BR=$RSS; fi
    done
}
rate() { echo "$LINES / $1" | bc; }
ratio() { printf '%.2f' "$(echo "$1 / $2" | bc -l)"; }

OUT=benchsuite/runs/trigger-$(date +%F).md
{
    echo "# siemtrigger benchmark, $(date -u +%FT%TZ), $LINES lines, $NRULES rules, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    echo "\`siemtrigger --once\` from fresh state over the whole table (best of $RUNS, wall clock; CPU = user+sys of that run)."
    echo
} >> "$OUT"

best true grep -c -F -i "failed password" "$LOG"
GREP_W=$BW

declare -A R
for be in sqlite mysql; do
    if [[ $be == sqlite ]]; then
        rm -f "$W"/t.db* "$W"/base.db*
        DB="sqlite://$W/t.db"
        ingest_db="sqlite://$W/base.db"
        prep() { cp "$W/base.db" "$W/t.db"; rm -f "$W"/t.db-wal "$W"/t.db-shm; }
        EXTRA=()
    else
        mariadb -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS siemtbench; CREATE DATABASE siemtbench"
        DB=$MY_URL ingest_db=$MY_URL
        prep() {
            mariadb -h 127.0.0.1 -u root siemtbench -e "DELETE FROM alert_events; DELETE FROM action_runs; \
                DELETE FROM alerts; DELETE FROM trigger_windows; DELETE FROM trigger_progress; DELETE FROM trigger_lease"
        }
        EXTRA=(--settle 0s)
    fi
    echo "== ingest $be" >&2
    target/release/siemparse -c "$W/empty.toml" --db "$ingest_db" -q -s auth -z UTC --year 2025 < "$LOG"
    if [[ $be == sqlite ]]; then prep; fi
    echo "== siemquery --count $be" >&2
    best true target/release/siemquery -c "$CFG" --db "$DB" -s auth --range 2025-01-01-2026-01-01 --count
    R[$be,count]=$BW
    SIEMSTRESS_GREP_INDEX=never best true target/release/siemquery -c "$CFG" --db "$DB" -s auth \
        --range 2025-01-01-2026-01-01 --count --grep 'failed password'
    R[$be,gcount]=$BW
    echo "== siemtrigger $be" >&2
    best prep target/release/siemtrigger -c "$CFG" --db "$DB" --once -q "${EXTRA[@]}"
    R[$be,wall]=$BW R[$be,cpu]=$BC R[$be,rss]=$BR
    R[$be,alerts]=$(target/release/siemquery -c "$CFG" --db "$DB" --alerts --last 1000w --format ndjson | wc -l)
    if [[ $be == mysql ]]; then mariadb -h 127.0.0.1 -u root -e "DROP DATABASE siemtbench"; fi
done
{
    echo "| | SQLite | MariaDB |"
    echo "| --- | --- | --- |"
    echo "| siemtrigger --once, wall | ${R[sqlite,wall]} s = **$(rate "${R[sqlite,wall]}") lines/s** | ${R[mysql,wall]} s = **$(rate "${R[mysql,wall]}") lines/s** |"
    echo "| siemtrigger --once, CPU | ${R[sqlite,cpu]} s = $(rate "${R[sqlite,cpu]}") lines/CPU-s | ${R[mysql,cpu]} s = $(rate "${R[mysql,cpu]}") lines/CPU-s (client only) |"
    echo "| siemtrigger peak RSS | $((R[sqlite,rss] / 1024)) MiB | $((R[mysql,rss] / 1024)) MiB |"
    echo "| alerts raised | ${R[sqlite,alerts]} | ${R[mysql,alerts]} |"
    echo "| baseline: siemquery --count, whole table | ${R[sqlite,count]} s ($(rate "${R[sqlite,count]}") rows/s) | ${R[mysql,count]} s ($(rate "${R[mysql,count]}") rows/s) |"
    echo "| siemtrigger / --count (wall) | $(ratio "${R[sqlite,wall]}" "${R[sqlite,count]}")x | $(ratio "${R[mysql,wall]}" "${R[mysql,count]}")x |"
    echo "| baseline: siemquery --count --grep 'failed password', whole table (a scan of raw) | ${R[sqlite,gcount]} s ($(rate "${R[sqlite,gcount]}") rows/s) | ${R[mysql,gcount]} s ($(rate "${R[mysql,gcount]}") rows/s) |"
    echo "| siemtrigger / --count --grep (wall) | $(ratio "${R[sqlite,wall]}" "${R[sqlite,gcount]}")x | $(ratio "${R[mysql,wall]}" "${R[mysql,gcount]}")x |"
    echo "| siemtrigger / \`grep -c -F -i 'failed password'\` of the log ($GREP_W s) | $(ratio "${R[sqlite,wall]}" "$GREP_W")x | $(ratio "${R[mysql,wall]}" "$GREP_W")x |"
    echo
} >> "$OUT"

# Peak RSS with PAIRS open pair windows: distinct source addresses that fail
# once within the pair rule's 30 min window and never log in.
echo "== $PAIRS open pair windows" >&2
PLOG=$W/pairs-$PAIRS.log
python3 - "$PAIRS" > "$PLOG" <<'PY'
import sys
n = int(sys.argv[1])
for i in range(n):
    s = i * 1000 // n  # all within 1000 s
    ip = "10.%d.%d.%d" % (i >> 16 & 255, i >> 8 & 255, i & 255)
    print("Mar  3 00:%02d:%02d web01 sshd[%d]: Failed password for invalid user u%d from %s port 4242 ssh2"
          % (s // 60, s % 60, 1000 + i % 60000, i, ip))
PY
rm -f "$W"/p.db*
target/release/siemparse -c "$W/empty.toml" --db "sqlite://$W/p.db" -q -s auth -z UTC --year 2025 < "$PLOG"
P=(target/release/siemtrigger -c "$CFG" --db "sqlite://$W/p.db" -q --rule ssh-success-after-failures)
run "${P[@]}" --once
OPEN_W=$WALL OPEN_RSS=$RSS
NWIN=$(sqlite3 "$W/p.db" "SELECT COUNT(*) FROM trigger_windows")
echo "Mar  3 00:20:00 web01 sshd[1]: Connection closed by 192.0.2.1 port 1 [preauth]" \
    | target/release/siemparse -c "$W/empty.toml" --db "sqlite://$W/p.db" -q -s auth -z UTC --year 2025
run "${P[@]}" --once
LOAD_W=$WALL LOAD_RSS=$RSS
{
    echo "Open pair windows (rule ssh-success-after-failures, SQLite): $NWIN windows stored;"
    echo "peak RSS $((OPEN_RSS / 1024)) MiB while opening them ($OPEN_W s), $((LOAD_RSS / 1024)) MiB in the next run that loads them all back ($LOAD_W s)."
    echo
} >> "$OUT"
cat "$OUT"
