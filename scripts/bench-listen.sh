#!/usr/bin/env bash
# Network intake benchmark (issue 16): `siemparse --listen tcp://` against
# `siemparse < file` (stdin) on the same lines, into SQLite and MariaDB, in
# the same run. Target: TCP at least 0.9x stdin's lines/s.
# Not a timed test: compare ratios, not absolute numbers.
#
#   scripts/bench-listen.sh [--lines N] [--runs R]
#
# One sender connection writes the whole log (LF framing: `cat > /dev/tcp`;
# octet counting: the same lines pre-framed as `LEN SP MSG`). For both
# inputs the time runs from the first byte sent until the last row is
# committed: MAX(id) is polled every 20 ms in both (the table is fresh, ids
# have no gaps), so both pay the same for being watched; start-up and table
# creation are not timed.
# Env: SIEMSTRESS_BENCH_MYSQL_URL (default mysql://root@127.0.0.1:3306/test);
# works in a database `siembench` on that server and drops it.
set -euo pipefail
cd "$(dirname "$0")/.."

LINES=1000000 RUNS=3
while [[ $# -gt 0 ]]; do
    case $1 in
        --lines) LINES=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        -h|--help) sed -n '2,16s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "bench-listen: unknown argument $1" >&2; exit 2 ;;
    esac
done

URL=${SIEMSTRESS_BENCH_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}
re='^(mysql|mariadb)://(([^:@/]*)(:([^@/]*))?@)?([^:/?]+)(:([0-9]+))?'
[[ $URL =~ $re ]] || { echo "bench-listen: cannot parse $URL" >&2; exit 2; }
MY_USER=${BASH_REMATCH[3]:-root} MY_PASS=${BASH_REMATCH[5]} MY_HOST=${BASH_REMATCH[6]} MY_PORT=${BASH_REMATCH[8]:-3306}
MY_URL="mysql://$MY_USER${MY_PASS:+:$MY_PASS}@$MY_HOST:$MY_PORT/siembench"
export MYSQL_PWD=$MY_PASS
my() { mariadb -h "$MY_HOST" -P "$MY_PORT" -u "$MY_USER" -N -B "$@"; }

D=bench-data W=bench-data/listen
BIN=target/release/siemparse
mkdir -p "$W" benchsuite/runs
: > "$D/empty.toml"
SP=("$BIN" -c "$D/empty.toml" -z UTC --year 2025 -s auth)

echo "== build" >&2
cargo build --release -q -p siemparse
LOG=$D/auth-$LINES.log
if [[ ! -s $LOG || scripts/gen-authlog.py -nt $LOG ]]; then
    echo "== generate $LINES lines" >&2
    python3 scripts/gen-authlog.py -n "$LINES" -o "$LOG"
fi
OCTET=$W/auth-$LINES.octet
[[ -s $OCTET && $OCTET -nt $LOG ]] || perl -ne 'chomp; print length($_), " ", $_' "$LOG" > "$OCTET"

fresh() { # fresh BACKEND: an empty event table; sets DB
    if [[ $1 == sqlite ]]; then
        DB=sqlite://$W/bench.db; rm -f "$W"/bench.db*
    else
        DB=$MY_URL; my -e 'DROP DATABASE IF EXISTS siembench; CREATE DATABASE siembench'
    fi
    "${SP[@]}" -q --db "$DB" < /dev/null
}
max_id() {
    if [[ $DB == sqlite* ]]; then sqlite3 "$W/bench.db" 'PRAGMA busy_timeout=5000; SELECT coalesce(max(id), 0) FROM auth' | tail -1
    else my siembench -e 'SELECT coalesce(max(id), 0) FROM auth'; fi
}

# until_stored T0: waits for the last row; sets RATE.
until_stored() {
    while (( $(max_id) < LINES )); do sleep 0.02; done
    RATE=$(awk -v n="$LINES" -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%d", n / (b - a) }')
}

run_stdin() {
    local t0 pid
    t0=$EPOCHREALTIME
    "${SP[@]}" -q --db "$DB" < "$LOG" & pid=$!
    until_stored "$t0"
    wait "$pid"
}

run_tcp() { # run_tcp FILE
    local pid port t0
    rm -f "$W/err"
    "${SP[@]}" --db "$DB" --listen tcp://127.0.0.1:0 2> "$W/err" & pid=$!
    for _ in $(seq 500); do
        port=$(sed -n 's/^siemparse: listening on tcp:\/\/127.0.0.1:\([0-9]*\)$/\1/p' "$W/err" 2> /dev/null)
        [[ -n $port ]] && break; sleep 0.01
    done
    [[ -n $port ]] || { cat "$W/err" >&2; exit 1; }
    t0=$EPOCHREALTIME
    cat "$1" > "/dev/tcp/127.0.0.1/$port"
    until_stored "$t0"
    kill -TERM "$pid"; wait "$pid"
}

declare -A all
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
cat "$LOG" "$OCTET" > /dev/null
for run in $(seq "$RUNS"); do
    for backend in sqlite mysql; do
        echo "== run $run of $RUNS, $backend" >&2
        fresh "$backend"; run_stdin; all[$backend-stdin]+=" $RATE"
        [[ $(max_id) == "$LINES" ]] || { echo "bench-listen: stdin stored $(max_id) rows" >&2; exit 1; }
        fresh "$backend"; run_tcp "$LOG"; all[$backend-lf]+=" $RATE"
        fresh "$backend"; run_tcp "$OCTET"; all[$backend-octet]+=" $RATE"
        echo "   stdin ${all[$backend-stdin]##* }, tcp LF ${all[$backend-lf]##* }, tcp octet ${all[$backend-octet]##* } lines/s" >&2
    done
done
my -e 'DROP DATABASE IF EXISTS siembench'

# summary KEY REF: "best lines/s | median of the per-run ratios | each run"
summary() {
    awk -v a="${all[$1]}" -v b="${all[$2]}" 'BEGIN {
        n = split(a, x, " "); split(b, y, " ")
        for (i = 1; i <= n; i++) { r[i] = x[i] / y[i]; if (x[i] > best) best = x[i]
            s = s (i > 1 ? ", " : "") sprintf("%d (%.2f×)", x[i], r[i]) }
        for (i = 2; i <= n; i++) for (j = i; j > 1 && r[j - 1] > r[j]; j--) { t = r[j]; r[j] = r[j - 1]; r[j - 1] = t }
        m = n % 2 ? r[(n + 1) / 2] : (r[n / 2] + r[n / 2 + 1]) / 2
        printf "| %d | %.2f× | %s |", best, m, s }'
}
DATE=$(date +%Y-%m-%d)
OUT=benchsuite/runs/listen-$DATE$([[ $LINES == 1000000 ]] || echo "-$LINES").md
{
    echo "# Network intake benchmark, $DATE"
    echo
    echo "$LINES generated auth.log lines (\`scripts/gen-authlog.py\`), $RUNS runs; one TCP connection"
    echo "sends the whole file. Machine: $(nproc) cores, load average $LOAD0 at start (shared)."
    echo "Commit $(git rev-parse --short HEAD). Ratio: TCP lines/s over stdin's in the same round (median)."
    echo
    echo "| backend, input | lines/s (best) | vs stdin (median) | each run |"
    echo "| --- | --- | --- | --- |"
    for b in sqlite mysql; do
        name=$([[ $b == sqlite ]] && echo SQLite || echo MariaDB)
        echo "| $name, stdin $(summary "$b-stdin" "$b-stdin")"
        echo "| $name, tcp:// LF framing $(summary "$b-lf" "$b-stdin")"
        echo "| $name, tcp:// octet counting $(summary "$b-octet" "$b-stdin")"
    done
} | tee "$OUT"
echo "== written to $OUT" >&2
