#!/usr/bin/env bash
# Rule state under attacker-chosen keys (issue 18): does siemtrigger's memory
# stay bounded and its time linear when every line brings a new key?
#
#   scripts/bench-rule-state.sh [--events N] [--keys K] [--distinct N] [--base REF] [--no-base] [--prebuilt]
#                               [--base-bin FILE] [--mysql] [--part1-only]
#
# 1. Bounded state: N events (default 1,000,000) under K fake source
#    addresses (default 100,000), all within one hour, through
#    `siemtrigger --once` (SQLite, release build, fresh state) at N/4, N/2
#    and N events. Three rules key on the address: a threshold that never
#    fires (each key holds a window of its events), a `distinct` threshold
#    over three ports (a window of repeated values) and an `absence` (an open
#    window per key). Reported per size: wall clock, user+sys CPU, max RSS
#    (`/usr/bin/time -v`), windows stored, state dropped over the cap (the
#    default max_keys, 50,000).
# 2. `distinct` before/after: the same `distinct` threshold alone over
#    D/4, D/2 and D events (default D = 100,000) under 10 keys, three ports
#    (so it never fires: every event stays in its 1-day window), with this
#    tree's siemtrigger and with the one of REF (default: the commit before
#    the value map, found by its message), built into the same target dir.
#    The old one rebuilt a set of the window's values per event: quadratic.
#
# Both builds also run part 1 unless --no-base; --prebuilt takes this
# tree's target/release binaries as they are (CARGO_TARGET_DIR if set),
# --base-bin FILE a built base siemtrigger instead of building REF.
# --mysql runs part 1 on MariaDB (SIEMSTRESS_BENCH_MYSQL_URL, default
# mysql://root@127.0.0.1:3306/test; databases siemrulestate_N, dropped at
# the end) instead of SQLite, and adds the server's CPU (user+sys of the
# local mariadbd, from /proc) to the figures: the window writes are most
# of the work there. --part1-only skips part 2. Results:
# benchsuite/runs/rule-state-DATE.md (appended). The host is shared: compare
# ratios within one run.
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS=1000000 KEYS=100000 DISTINCT=100000 BASE= WITH_BASE=1 PREBUILT=0 BASE_BIN= MYSQL=0 PART2=1
while [[ $# -gt 0 ]]; do
    case $1 in
        --base-bin) BASE_BIN=$(realpath "$2"); shift 2 ;;
        --mysql) MYSQL=1; shift ;;
        --part1-only) PART2=0; shift ;;
        --events) EVENTS=$2; shift 2 ;;
        --keys) KEYS=$2; shift 2 ;;
        --distinct) DISTINCT=$2; shift 2 ;;
        --base) BASE=$2; shift 2 ;;
        --no-base) WITH_BASE=0; shift ;;
        --prebuilt) PREBUILT=1; shift ;;
        -h|--help) sed -n '2,33s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "bench-rule-state: unknown argument $1" >&2; exit 2 ;;
    esac
done
if [[ -n $BASE_BIN ]]; then
    [[ -x $BASE_BIN ]] || { echo "bench-rule-state: --base-bin $BASE_BIN is not an executable" >&2; exit 2; }
    BASE_ID=${BASE:-$(basename "$(dirname "$BASE_BIN")")}
else
    if [[ -z $BASE ]]; then
        c=$(git log --format=%H -1 --grep='rule state bounded (issue 18)')
        [[ -n $c ]] || { echo "bench-rule-state: give --base REF" >&2; exit 2; }
        BASE=$c^
    fi
    BASE_ID=$(git rev-parse --short "$BASE")
fi
W=bench-data/rulestate
mkdir -p "$W" benchsuite/runs
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
URL=${SIEMSTRESS_BENCH_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}
MYSQLD=
if [[ $MYSQL == 1 ]]; then
    MYSQLD=$(pgrep -x mariadbd || pgrep -x mysqld || true)
    [[ -n $MYSQLD ]] || { echo "bench-rule-state: --mysql needs a local mariadbd (its CPU is measured)" >&2; exit 2; }
fi

# The same packages in both builds: the same features, so the
# dependencies are built once (the base tree's crates are built apart, by path).
PKGS=(-p siemparse -p siemtrigger -p siemquery)
NEW=$W/siemtrigger-new
OLD=$W/siemtrigger-$BASE_ID
PARSE=$W/siemparse
if [[ $PREBUILT == 0 ]]; then
    echo "== build this tree (release)" >&2
    cargo build --release -q --locked "${PKGS[@]}"
fi
cp "$TARGET/release/siemtrigger" "$NEW"
cp "$TARGET/release/siemparse" "$PARSE"
[[ -z $BASE_BIN ]] || cp "$BASE_BIN" "$OLD"
# The base build, when first needed (after part 1 of this tree).
build_base() {
    [[ -x $OLD ]] && return
    echo "== build $BASE_ID (release)" >&2
    rm -rf "$W/base-tree"
    git worktree add -q --detach "$W/base-tree" "$BASE"
    (cd "$W/base-tree" && CARGO_TARGET_DIR=$TARGET cargo build --release -q --locked "${PKGS[@]}")
    cp "$TARGET/release/siemtrigger" "$OLD"
    # The target dir's binaries are this tree's again.
    cp "$NEW" "$TARGET/release/siemtrigger"
    cp "$PARSE" "$TARGET/release/siemparse"
    git worktree remove --force "$W/base-tree"
}

# gen KIND N: lines on stdout.
gen() {
    python3 - "$1" "$2" "$KEYS" <<'PY'
import sys
kind, n, keys = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = sys.stdout
if kind == "keys":
    # n events under `keys` addresses, round robin, within one hour.
    for i in range(n):
        k = i % keys
        s = i * 3600 // n
        ip = "10.%d.%d.%d" % (k >> 16 & 255, k >> 8 & 255, k & 255)
        out.write("Mar  3 %02d:%02d:%02d fw kernel: [UFW BLOCK] IN=eth0 OUT= SRC=%s DST=192.0.2.1 PROTO=TCP SPT=4242 DPT=%d\n"
                  % (s // 3600, s // 60 % 60, s % 60, ip, 22 + i // keys % 3))
else:
    # n events under 10 addresses, ports 22-24, within one hour.
    for i in range(n):
        s = i * 3600 // n
        out.write("Mar  3 %02d:%02d:%02d fw kernel: [UFW BLOCK] IN=eth0 OUT= SRC=10.9.9.%d DST=192.0.2.1 PROTO=TCP SPT=4242 DPT=%d\n"
                  % (s // 3600, s // 60 % 60, s % 60, i % 10, 22 + i % 3))
PY
}
: >"$W/empty.toml"
RULE_COUNT='[[rule]]
name = "count"
type = "threshold"
table = "fw"
match = { process = "kernel", grep = "UFW BLOCK" }
key = "{source_host}"
window = "1d"
threshold = 1000000
'
RULE_DISTINCT='[[rule]]
name = "ports"
type = "threshold"
table = "fw"
match = { process = "kernel", grep = "UFW BLOCK" }
key = "{source_host}"
distinct = "dest_port"
window = "1d"
threshold = 5
'
RULE_ABSENCE='[[rule]]
name = "quiet"
type = "absence"
table = "fw"
first = { process = "kernel", grep = "UFW BLOCK" }
second = { process = "kernel", grep = "never logged" }
key = "{source_host}"
window = "1d"
'
printf '%s\n%s\n%s\n' "$RULE_COUNT" "$RULE_DISTINCT" "$RULE_ABSENCE" >"$W/keys.toml"
printf '%s\n' "$RULE_DISTINCT" >"$W/distinct.toml"

# mysql_name NAME: the MariaDB database of data set NAME.
mysql_name() { echo "siemrulestate_${1//-/_}"; }
# ingest NAME KIND N: a database of N generated lines (kept between runs;
# on MariaDB until the end of this run).
ingest() {
    local db=$W/$1.db
    if [[ $MYSQL == 1 ]]; then
        local m
        m=$(mysql_name "$1")
        if ! mariadb -h 127.0.0.1 -u root -e "SELECT 1 FROM $m.fw LIMIT 1" >/dev/null 2>&1; then
            echo "== ingest $1 (MariaDB)" >&2
            mariadb -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS $m; CREATE DATABASE $m CHARACTER SET utf8mb4"
            gen "$2" "$3" | $PARSE -c "$W/empty.toml" --db "${URL%/*}/$m" -q -s fw -z UTC --year 2025
        fi
        return
    fi
    if [[ ! -s $db ]]; then
        echo "== ingest $1" >&2
        gen "$2" "$3" | $PARSE -c "$W/empty.toml" --db "sqlite://$db" -q -s fw -z UTC --year 2025
    fi
}
# server_cpu: user+sys seconds of the local mariadbd so far.
server_cpu() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$MYSQLD/stat"; }
# trig BIN CFG NAME: runs BIN --once on a fresh copy of NAME's database (on
# MariaDB: NAME's database with the trigger state cleared); sets WALL CPU
# SCPU (server CPU, MariaDB) RSS WIN ERR.
trig() {
    local bin=$1 cfg=$2 db=$W/$3.db t=$W/t.db url sql s0
    if [[ $MYSQL == 1 ]]; then
        local m
        m=$(mysql_name "$3")
        mariadb -h 127.0.0.1 -u root "$m" -e "DELETE FROM trigger_windows; DELETE FROM trigger_progress; \
            DELETE FROM alert_events; DELETE FROM action_runs; DELETE FROM alerts; DELETE FROM trigger_lease"
        url=${URL%/*}/$m
        sql() { mariadb -h 127.0.0.1 -u root -N "$m" -e "$1"; }
        s0=$(server_cpu)
    else
        rm -f "$t" "$t"-wal "$t"-shm
        cp "$db" "$t"
        url=sqlite://$t
        sql() { sqlite3 "$t" "$1"; }
    fi
    local t0=$EPOCHREALTIME
    /usr/bin/time -v -o "$W/time" "$bin" -c "$cfg" --db "$url" --once --settle 0s 2>"$W/err" >/dev/null
    local t1=$EPOCHREALTIME
    WALL=$(printf '%.2f' "$(echo "$t1 - $t0" | bc -l)")
    CPU=$(awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} END {printf "%.2f", u + s}' "$W/time")
    SCPU=-
    [[ $MYSQL == 0 ]] || SCPU=$(printf '%.2f' "$(echo "$(server_cpu) - $s0" | bc)")
    RSS=$(awk -F': ' '/Maximum resident/ {printf "%d", $2 / 1024}' "$W/time")
    WIN=$(sql "SELECT group_concat(rule || ' ' || n, ', ') FROM (SELECT rule, COUNT(*) n FROM trigger_windows GROUP BY rule ORDER BY rule) w")
    [[ $MYSQL == 0 ]] || WIN=$(sql "SELECT group_concat(CONCAT(rule, ' ', n) SEPARATOR ', ') FROM (SELECT rule, COUNT(*) n FROM trigger_windows GROUP BY rule ORDER BY rule) w")
    ERR=$(grep -o 'dropped [0-9]* windows\( and [0-9]* events of full windows\)\?' "$W/err" | sed 's/ of full windows//' | paste -sd';' - || true)
}

OUT=benchsuite/runs/rule-state-$(date +%F).md
{
    echo "# Rule state benchmark, $(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    echo "this tree: $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (modified)'); base: $BASE_ID. $([[ $MYSQL == 1 ]] && echo "MariaDB (part 1; server CPU: the local mariadbd's user+sys during the run)" || echo SQLite), release builds, \`siemtrigger --once\` from fresh state; CPU = user+sys of siemtrigger; max RSS from \`/usr/bin/time -v\`."
    echo
    echo "## 1. $EVENTS events under $KEYS keys (3 rules: threshold, distinct threshold, absence; all keys within one hour)"
    echo
    echo "| build | events | wall s | CPU s | CPU µs/event | server CPU s | max RSS MiB | windows stored | dropped over the cap |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
} >>"$OUT"
part1() {
    local b=$1 n
    for n in $((EVENTS / 4)) $((EVENTS / 2)) "$EVENTS"; do
        ingest "keys-$n-$KEYS" keys "$n"
        echo "== part 1: ${b%%:*} $n events" >&2
        trig "${b#*:}" "$W/keys.toml" "keys-$n-$KEYS"
        echo "| ${b%%:*} | $n | $WALL | $CPU | $(echo "$CPU * 1000000 / $n" | bc) | $SCPU | $RSS | $WIN | ${ERR:--} |" >>"$OUT"
    done
}
part1 "new:$NEW"
build_base
[[ $WITH_BASE == 0 ]] || part1 "$BASE_ID:$OLD"
if [[ $MYSQL == 1 ]]; then
    for n in $((EVENTS / 4)) $((EVENTS / 2)) "$EVENTS"; do
        mariadb -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS $(mysql_name "keys-$n-$KEYS")"
    done
fi
[[ $PART2 == 1 ]] || { echo >>"$OUT"; cat "$OUT"; exit 0; }
MYSQL=0
{
    echo
    echo "## 2. distinct threshold, 10 keys, 3 ports, nothing fires (every event stays in its window)"
    echo
    echo "| build | events | wall s | CPU s | CPU µs/event | max RSS MiB |"
    echo "| --- | --- | --- | --- | --- | --- |"
} >>"$OUT"
for n in $((DISTINCT / 4)) $((DISTINCT / 2)) "$DISTINCT"; do
    ingest "distinct-$n" distinct "$n"
    for b in "new:$NEW" "$BASE_ID:$OLD"; do
        echo "== part 2: ${b%%:*} $n events" >&2
        trig "${b#*:}" "$W/distinct.toml" "distinct-$n"
        echo "| ${b%%:*} | $n | $WALL | $CPU | $(echo "$CPU * 1000000 / $n" | bc) | $RSS |" >>"$OUT"
    done
done
echo >>"$OUT"
rm -f "$W"/t.db*
cat "$OUT"
