#!/usr/bin/env bash
# Ingest benchmark (issue 3): siemparse into SQLite and MariaDB, against the
# bulk loaders of each backend measured in the same run on the same rows:
#   sqlite3 .import of a pre-parsed CSV, MariaDB LOAD DATA LOCAL INFILE.
# Not a timed test: compare ratios, not absolute numbers.
#
#   scripts/bench-ingest.sh [--lines N] [--runs R] [--batch N] [--bin PATH]
#                           [--ab PATH] [--sqlite-only]
#
# --bin measures that siemparse build instead of building this checkout's.
# --ab PATH also runs another siemparse build (an older commit, built with
# its own CARGO_TARGET_DIR) into SQLite in every round, right next to the
# first: an A/B of the two binaries in one run, rows checked alike.
# --sqlite-only leaves MariaDB out (quicker A/B runs on a loaded machine).
# Env: SIEMSTRESS_BENCH_MYSQL_URL (default mysql://root@127.0.0.1:3306/test);
# the script works in a fresh database `siembench` on that server and drops it.
# Data goes to bench-data/ (gitignored), the report to benchsuite/runs/.
set -euo pipefail
cd "$(dirname "$0")/.."

LINES=1000000 RUNS=2 BATCH=() BIN="" AB="" MYSQL=1
while [[ $# -gt 0 ]]; do
    case $1 in
        --lines) LINES=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --batch) BATCH=(--batch "$2"); shift 2 ;;
        --bin) BIN=$(realpath "$2"); shift 2 ;;
        --ab) AB=$(realpath "$2"); shift 2 ;;
        --sqlite-only) MYSQL=0; shift ;;
        -h|--help) sed -n '2,17s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "bench-ingest: unknown argument $1" >&2; exit 2 ;;
    esac
done
SMALL=$((LINES / 10)) # for the flat-memory check (100k at the default 1M)

# MariaDB connection from the URL; the benchmark database replaces its path.
URL=${SIEMSTRESS_BENCH_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}
re='^(mysql|mariadb)://(([^:@/]*)(:([^@/]*))?@)?([^:/?]+)(:([0-9]+))?'
[[ $URL =~ $re ]] || { echo "bench-ingest: cannot parse $URL" >&2; exit 2; }
MY_USER=${BASH_REMATCH[3]:-root} MY_PASS=${BASH_REMATCH[5]} MY_HOST=${BASH_REMATCH[6]} MY_PORT=${BASH_REMATCH[8]:-3306}
MY_URL="mysql://$MY_USER${MY_PASS:+:$MY_PASS}@$MY_HOST:$MY_PORT/siembench"
export MYSQL_PWD=$MY_PASS
MY=(mariadb --local-infile=1 -h "$MY_HOST" -P "$MY_PORT" -u "$MY_USER" -N -B)
my() { "${MY[@]}" "$@"; }

D=bench-data W=bench-data/work
mkdir -p "$W" benchsuite/runs
: > "$D/empty.toml" # keep any user or system config out of the measurement
if [[ -z $BIN ]]; then
    echo "== build" >&2
    cargo build --release -q -p siemparse
    BIN=$PWD/target/release/siemparse
fi
for b in "$BIN" ${AB:+"$AB"}; do
    [[ -x $b ]] || { echo "bench-ingest: $b is not an executable" >&2; exit 2; }
done
SP=("$BIN" -c "$D/empty.toml" -q -z UTC --year 2025 "${BATCH[@]}")
SP_AB=(${AB:+"$AB"} -c "$D/empty.toml" -q -z UTC --year 2025 "${BATCH[@]}")

for n in "$LINES" "$SMALL"; do
    if [[ ! -s $D/auth-$n.log || scripts/gen-authlog.py -nt $D/auth-$n.log ]]; then
        echo "== generate $n lines" >&2
        python3 scripts/gen-authlog.py -n "$n" -o "$D/auth-$n.log" --csv "$D/auth-$n.csv"
    fi
done
LOG=$D/auth-$LINES.log CSV=$D/auth-$LINES.csv

# CPU ticks (1/100 s) the MariaDB server has used, if it runs on this machine.
MY_PID=$(pidof -s mariadbd || pidof -s mysqld || true)
server_ticks() { if [[ -n $MY_PID ]]; then awk '{ print $14 + $15 }' "/proc/$MY_PID/stat"; else echo 0; fi; }

# measure LINES CMD...: runs CMD (stdin as redirected by the caller); sets
# RATE (lines/s, wall clock), RSS (peak resident set of CMD, MB) and CPU
# (user+sys µs per line of CMD, plus the MariaDB server's when $SERVER is 1).
measure() {
    local n=$1; shift
    local s0 t0 t1 s1
    s0=$(server_ticks) t0=$EPOCHREALTIME
    /usr/bin/time -f '%M %U %S' -o "$W/time" "$@"
    t1=$EPOCHREALTIME s1=$(server_ticks)
    read -r RATE RSS CPU < <(awk -v n="$n" -v a="$t0" -v b="$t1" -v srv=$(( SERVER * (s1 - s0) )) \
        'END { printf "%d %.1f %.1f\n", n / (b - a), $1 / 1024, ($2 + $3 + srv / 100) * 1e6 / n }' "$W/time")
}
SERVER=0
warm() { cat "$@" > /dev/null; } # page cache, so no one pays for the disk
fresh_mysql() { my -e 'DROP DATABASE IF EXISTS siembench; CREATE DATABASE siembench'; }
# An empty event table exactly as siemparse creates it: same DDL and indexes.
sqlite_table() { rm -f "$1" "$1"-wal "$1"-shm; "${SP[@]}" -s "$2" --db "sqlite://$1" < /dev/null; }
mysql_table() { "${SP[@]}" -s "$1" --db "$MY_URL" < /dev/null; }

NULLABLE=(host process pid facility severity user source_host source_port dest_host dest_port protocol extra)
LOAD_COLS="@id, ts, received, @host, @process, @pid, @facility, @severity, @user, @source_host, @source_port,
  @dest_host, @dest_port, @protocol, message, raw, parsed, source, @extra"
LOAD_SET=$(for c in "${NULLABLE[@]}"; do printf "%s = NULLIF(@%s, '')," "$c" "$c"; done)
LOAD_SET=${LOAD_SET%,}

declare -A rate rss cpu all
record() { # record KEY: keep the best rate, the least CPU and the largest RSS of the runs
    all[$1]+="${all[$1]:+ }$RATE"
    (( RATE > ${rate[$1]:-0} )) && rate[$1]=$RATE
    awk -v a="$RSS" -v b="${rss[$1]:-0}" 'BEGIN { exit !(a > b) }' && rss[$1]=$RSS
    awk -v a="$CPU" -v b="${cpu[$1]:-1e9}" 'BEGIN { exit !(a < b) }' && cpu[$1]=$CPU
    echo "   $1: $RATE lines/s, $CPU µs CPU/line, $RSS MB" >&2
}

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
for run in $(seq "$RUNS"); do
    echo "== run $run of $RUNS ($LINES lines)" >&2
    warm "$LOG" "$CSV"

    sqlite_table "$W/sp.db" auth
    measure "$LINES" "${SP[@]}" -s auth --db "sqlite://$W/sp.db" < "$LOG"; record sp_sqlite

    sqlite_table "$W/ref.db" auth
    measure "$LINES" sqlite3 -cmd 'PRAGMA synchronous=NORMAL' "$W/ref.db" ".import --csv $CSV auth"
    record ref_sqlite

    if [[ -n $AB ]]; then
        sqlite_table "$W/ab.db" auth
        measure "$LINES" "${SP_AB[@]}" -s auth --db "sqlite://$W/ab.db" < "$LOG"; record sp_ab
    fi

    if (( MYSQL )); then
        fresh_mysql; mysql_table auth
        SERVER=1
        measure "$LINES" "${SP[@]}" -s auth --db "$MY_URL" < "$LOG"; record sp_mysql

        mysql_table ref
        measure "$LINES" "${MY[@]}" siembench -e "LOAD DATA LOCAL INFILE '$PWD/$CSV' INTO TABLE ref
      CHARACTER SET utf8mb4 FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY ''
      LINES TERMINATED BY '\n' ($LOAD_COLS) SET $LOAD_SET"
        record ref_mysql
        SERVER=0
    fi

    warm "$D/auth-$SMALL.log"
    sqlite_table "$W/small.db" auth
    measure "$SMALL" "${SP[@]}" -s auth --db "sqlite://$W/small.db" < "$D/auth-$SMALL.log"; record sp_small
done

echo "== check: row counts and siemparse's rows against the pre-parsed CSV" >&2
# NULL vs '' aside (sqlite3 .import cannot write NULL), the rows must match.
DIFF="SELECT count(*) FROM auth a JOIN ref r ON r.id = a.id WHERE a.ts <> r.ts
  OR coalesce(a.host,'') <> coalesce(r.host,'') OR coalesce(a.process,'') <> coalesce(r.process,'')
  OR coalesce(a.pid,'') <> coalesce(r.pid,'') OR coalesce(a.user,'') <> coalesce(r.user,'')
  OR coalesce(a.source_host,'') <> coalesce(r.source_host,'') OR coalesce(a.source_port,'') <> coalesce(r.source_port,'')
  OR coalesce(a.dest_host,'') <> coalesce(r.dest_host,'') OR coalesce(a.dest_port,'') <> coalesce(r.dest_port,'')
  OR coalesce(a.protocol,'') <> coalesce(r.protocol,'') OR a.message <> r.message OR a.raw <> r.raw
  OR EXTRA_DIFFERS"
# extra: the same JSON object, whatever the order of its keys.
keys() { echo "(SELECT group_concat(k) FROM (SELECT key || '=' || value AS k FROM json_each(coalesce(nullif($1, ''), '{}')) ORDER BY 1))"; }
DIFF_SQLITE=${DIFF/JOIN ref r/JOIN x.auth r}
DIFF_SQLITE=${DIFF_SQLITE/EXTRA_DIFFERS/$(keys a.extra) IS NOT $(keys r.extra)}
json_equals="JSON_EQUALS(coalesce(a.extra, '{}'), coalesce(nullif(r.extra, ''), '{}'))"
DIFF_MYSQL=${DIFF/EXTRA_DIFFERS/NOT $json_equals}
# check_sqlite DB: "COUNTS|DIFFERING" of siemparse's rows in DB against the reference's.
check_sqlite() {
    echo "$(sqlite3 "$1" "ATTACH '$W/ref.db' AS x;
      SELECT (SELECT count(*) FROM main.auth) || ' ' || (SELECT count(*) FROM x.auth);")|$(
      sqlite3 "$1" "ATTACH '$W/ref.db' AS x; $DIFF_SQLITE;")"
}
c=$(check_sqlite "$W/sp.db") counts_sqlite=${c%|*} diff_sqlite=${c#*|}
counts=("$counts_sqlite")
if [[ -n $AB ]]; then
    c=$(check_sqlite "$W/ab.db") counts_ab=${c%|*} diff_ab=${c#*|}
    counts+=("$counts_ab")
fi
if (( MYSQL )); then
    counts_mysql=$(my siembench -e 'SELECT CONCAT((SELECT count(*) FROM auth), " ", (SELECT count(*) FROM ref))')
    diff_mysql=$(my siembench -e "$DIFF_MYSQL")
    MY_VARS=$(my -e "SELECT CONCAT(@@version, ', buffer pool ', @@innodb_buffer_pool_size DIV 1048576,
      ' MB, innodb_flush_log_at_trx_commit=', @@innodb_flush_log_at_trx_commit)")
    my -e 'DROP DATABASE siembench'
    counts+=("$counts_mysql")
fi
for c in "${counts[@]}"; do
    [[ $c == "$LINES $LINES" ]] || { echo "bench-ingest: row counts $c, expected $LINES each" >&2; exit 1; }
done

# ratios RUNS REF-RUNS: "median-ratio|r1 (x1), r2 (x2), ..." of runs against
# the reference measured just before or after them in the same round.
ratios() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        n = split(a, x, " "); split(b, y, " ")
        for (i = 1; i <= n; i++) { r[i] = x[i] / y[i]; s = s (i > 1 ? ", " : "") sprintf("%d (%.2f×)", x[i], r[i]) }
        for (i = 2; i <= n; i++) for (j = i; j > 1 && r[j - 1] > r[j]; j--) { t = r[j]; r[j] = r[j - 1]; r[j - 1] = t }
        m = n % 2 ? r[(n + 1) / 2] : (r[n / 2] + r[n / 2 + 1]) / 2
        printf "%.2f×|%s", m, s }'
}
cpu_ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%s (%.2f×)", a, a / b }'; }
target() { awk -v a="$1" -v t="$2" 'BEGIN { printf "≥ %dk: %s", t / 1000, a >= t ? "met" : "**missed**" }'; }
row() { printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$@" | sed ':a; s/\b\([0-9]\+\)\([0-9]\{3\}\)\b/\1,\2/; ta'; }
line() { # line KEY METHOD REFERENCE-KEY [TARGET]
    local r; r=$(ratios "${all[$1]}" "${all[$3]}")
    row "$2" "${rate[$1]}" "${r%%|*}" "$(cpu_ratio "${cpu[$1]}" "${cpu[$3]}")" \
        "$([[ $1 == ref_mysql ]] && echo "(server)" || echo "${rss[$1]} MB")" \
        "${4:+$(target "${rate[$1]}" "$4")}" "$([[ $1 == "$3" ]] && echo "${all[$1]// /, }" || echo "${r#*|}")"
}
DATE=$(date +%Y-%m-%d)
OUT=benchsuite/runs/ingest-$DATE$([[ $LINES == 1000000 ]] || echo "-$LINES")$([[ -z $AB ]] || echo "-ab").md
BYTES=$(stat -c %s "$LOG")
DIRTY=$(git status --porcelain -- Cargo.lock common siemparse migrations | wc -l)
{
    echo "# Ingest benchmark, $DATE"
    echo
    echo "$LINES generated auth.log lines ($((BYTES / LINES)) bytes/line, \`scripts/gen-authlog.py\`), best of $RUNS runs."
    echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), load average"
    echo "$LOAD0 at start: shared with other engineers' builds, so absolute numbers are"
    echo "noisy; the ratios against the reference of the same run are the result."
    echo "Commit $(git rev-parse --short HEAD)$( (( DIRTY == 0 )) || echo " + $DIRTY uncommitted files in common/, siemparse/, migrations/"),"
    [[ $BIN == "$PWD/target/release/siemparse" ]] || echo "siemparse binary $BIN (\`--bin\`),"
    [[ -z $AB ]] || echo "A/B: \`siemparse A\` is $AB (\`--ab\`), run in every round right after the reference,"
    echo "siemparse with ${BATCH[*]:-the default --batch}, \`-z UTC --year 2025\`. SQLite: WAL, synchronous=NORMAL, same DDL and"
    echo "indexes for both (created by siemparse); sqlite3 $(sqlite3 --version | cut -d' ' -f1)."
    (( MYSQL )) && echo "MariaDB $MY_VARS." || echo "MariaDB not measured (\`--sqlite-only\`)."
    echo
    row method "lines/s (best run)" "ratio vs reference (median)" "CPU µs/line (ratio)" "peak RSS" target "each run: lines/s (ratio)"
    row --- --- --- --- --- --- ---
    line ref_sqlite "sqlite3 \`.import\` CSV (reference)" ref_sqlite
    line sp_sqlite "siemparse → SQLite" ref_sqlite 300000
    [[ -z $AB ]] || line sp_ab "siemparse A → SQLite" ref_sqlite 300000
    if (( MYSQL )); then
        line ref_mysql "MariaDB \`LOAD DATA LOCAL INFILE\` CSV (reference)" ref_mysql
        line sp_mysql "siemparse → MariaDB" ref_mysql 150000
    fi
    echo
    echo "Ratio: lines/s of a run divided by that of the reference right next to it in the same round"
    echo "(the median over the runs). CPU µs/line: least user+sys of the loading process, plus the"
    echo "MariaDB server's for the MariaDB rows$([[ -n $MY_PID ]] || echo " (not measured: the server is not on this machine)");"
    echo "it depends far less than lines/s on what else runs on the machine."
    echo "Peak RSS of siemparse → SQLite: ${rss[sp_small]} MB at $SMALL lines, ${rss[sp_sqlite]} MB at $LINES lines."
    echo
    echo "Check: row counts $counts_sqlite (SQLite)${AB:+, $counts_ab (siemparse A)}$( ((MYSQL)) && echo ", $counts_mysql (MariaDB)"); rows where siemparse's"
    echo "parse differs from the pre-parsed CSV: $diff_sqlite (SQLite)${AB:+, $diff_ab (siemparse A)}$( ((MYSQL)) && echo ", $diff_mysql (MariaDB)")."
    echo "The references load pre-parsed rows (parsing not timed); siemparse parses every line."
} | tee "$OUT"
echo "== written to $OUT" >&2
