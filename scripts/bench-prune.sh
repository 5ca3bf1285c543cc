#!/usr/bin/env bash
# Prune benchmark (issue 15): a generated event table of ROWS rows over DAYS
# days; `siemparse --prune` deletes the oldest PRUNE days while a
# `siemparse --follow` ingests RATE lines/s. Reports per backend:
#   - the prune's time, rows, batches and longest batch (its own report);
#   - the follower's longest commit (its own figure: the longest wait of the
#     writer for a commit, lock waits included), during the prune and in a
#     baseline run of the same length without a prune;
#   - the file / tablespace size before the prune, after it, and after the
#     next day's ingest (ROWS/DAYS rows; then once more: one more day pruned,
#     one more ingested) -- constant at steady state when freed pages are reused.
# MariaDB also: the same PRUNE days dropped as day partitions of a
# partitioned copy (PRIMARY KEY (id, ts), PARTITION BY RANGE (ts), one per
# day), and deleted by plain batched DELETE from an unpartitioned copy, each
# while one client inserts a row every 20 ms into that copy; its longest
# insert stall is reported.
#
#   scripts/bench-prune.sh [--rows N] [--days 90] [--prune 30] [--rate 1000]
#                          [--backend sqlite|mysql|both] [--bin DIR] [--out FILE]
#                          [--prepare | --reuse] [--data DIR] [--no-partitions]
#
# --rows: 10000000 by default (the issue's figure). --bin: where siemparse is
# (default: target/release, built here). Data in --data DIR (default
# bench-data/prune-ROWS, made anew each run); MariaDB database siemprune
# (dropped and made anew). --prepare only generates the rows and builds the
# index (slow at 10M: run it at nice 19, outside the benchmark lock) and
# keeps a copy of the SQLite file; --reuse then runs the timed part on them
# (SQLite: from that copy, so again and again, e.g. for two builds; MariaDB:
# the prepared database once, as the run changes it). --no-partitions skips
# MariaDB's partitioned and plain copies (two copies of every row).
# Env: SIEMSTRESS_BENCH_MYSQL_URL (default mysql://root@127.0.0.1:3306/test).
# Needs: sqlite3, mariadb (client), python3.
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=10000000 DAYS=90 PRUNE=30 RATE=1000 BACKENDS="sqlite mysql" BIN= OUT= MODE=all W= PARTITIONS=1
while [[ $# -gt 0 ]]; do
    case $1 in
        --rows) ROWS=$2; shift 2 ;;
        --days) DAYS=$2; shift 2 ;;
        --prune) PRUNE=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --backend) case $2 in both) BACKENDS="sqlite mysql" ;; sqlite|mysql) BACKENDS=$2 ;;
                   *) echo "bench-prune: --backend sqlite|mysql|both" >&2; exit 2 ;; esac; shift 2 ;;
        --bin) BIN=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --prepare) MODE=prepare; shift ;;
        --reuse) MODE=reuse; shift ;;
        --data) W=$2; shift 2 ;;
        --no-partitions) PARTITIONS=; shift ;;
        -h|--help) sed -n '2,35s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "bench-prune: unknown argument $1" >&2; exit 2 ;;
    esac
done
URL=${SIEMSTRESS_BENCH_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}
MYDB=siemprune
MY_URL="${URL%/*}/$MYDB"
W=${W:-bench-data/prune-$ROWS}
if [[ $MODE == all ]]; then rm -rf "$W"; fi
mkdir -p "$W" benchsuite/runs
if [[ -z $BIN ]]; then
    cargo build --release -q -p siemparse
    BIN=target/release
fi
SP=$BIN/siemparse
: > "$W/empty.toml"
KEEP=$((DAYS - PRUNE))
my() { mariadb -h 127.0.0.1 -u root -N -B "$@"; }
now_ms() { echo $(( ${EPOCHREALTIME/./} / 1000 )); }
ms_since() { echo $(( ($(now_ms) - $1) )); }
say() { echo "$*" | tee -a "$W/report.txt"; }

DAY=86400000
# Rows from DAYS days ago up to one day ago, oldest first (ids in ts order),
# relative to NOW: when they were generated (kept per backend for --reuse).
set_now() { # NOW
    NOW=$1
    START=$((NOW - DAYS * DAY))
    STEP=$(( (DAYS - 1) * DAY / ROWS ))
}
set_now "$(now_ms)"

# Generated rows: auth.log-like (about 100 bytes of raw line), row i at
# FROM + i * STEP ms, addresses and users cycling.
INSERT_COLS="ts, received, host, process, pid, facility, severity, user, source_host, source_port, dest_host, dest_port, protocol, message, raw, parsed, source, extra"
sqlite_gen() { # N FROM STEP [FIRST]: rows FIRST.. FIRST+N-1
    local ip="'10.' || (i % 200) || '.' || (i / 200 % 250) || '.' || (i % 7)"
    local msg="'Failed password for user' || (i % 1000) || ' from ' || $ip || ' port ' || (40000 + i % 20000) || ' ssh2'"
    sqlite3 -cmd '.timeout 60000' "$W/s.db" "INSERT INTO b ($INSERT_COLS)
        WITH RECURSIVE n(i) AS (SELECT ${4:-0} UNION ALL SELECT i + 1 FROM n WHERE i < ${4:-0} + $1 - 1)
        SELECT $2 + i * $3, $2 + i * $3 + 500, 'host' || (i % 50), 'sshd', 1000 + i % 30000,
        'auth', 'info', 'user' || (i % 1000), $ip, 40000 + i % 20000, NULL, 22, 'ssh2', $msg,
        'Dec  6 10:00:00 host' || (i % 50) || ' sshd[' || (1000 + i % 30000) || ']: ' || $msg, 1,
        '/var/log/auth.log', NULL FROM n"
}
mysql_gen() { # N FROM STEP [FIRST]
    local ip="concat('10.', i % 200, '.', i DIV 200 % 250, '.', i % 7)"
    local msg="concat('Failed password for user', i % 1000, ' from ', $ip, ' port ', 40000 + i % 20000, ' ssh2')"
    my "$MYDB" -e "INSERT INTO b ($INSERT_COLS)
        SELECT $2 + i * $3, $2 + i * $3 + 500, concat('host', i % 50), 'sshd', 1000 + i % 30000,
        'auth', 'info', concat('user', i % 1000), $ip, 40000 + i % 20000, NULL, 22, 'ssh2', $msg,
        concat('Dec  6 10:00:00 host', i % 50, ' sshd[', 1000 + i % 30000, ']: ', $msg), 1,
        '/var/log/auth.log', NULL FROM (SELECT seq AS i FROM seq_${4:-0}_to_$((${4:-0} + $1 - 1))) AS q"
}
# gen BACKEND N FROM STEP: in transactions of at most 1M rows (one of 10M
# rows outgrows MariaDB's default buffer pool many times over).
gen() {
    local first
    for ((first = 0; first < $2; first += 1000000)); do
        "${1}_gen" "$(($2 - first < 1000000 ? $2 - first : 1000000))" "$3" "$4" "$first"
    done
}

size_of() { # backend -> bytes of the database file / the tablespaces of b
    if [[ $1 == sqlite ]]; then
        sqlite3 -cmd '.timeout 60000' "$W/s.db" "PRAGMA wal_checkpoint(TRUNCATE)" > /dev/null
        echo "$(stat -c %s "$W/s.db") $(sqlite3 "$W/s.db" 'PRAGMA freelist_count') $(sqlite3 "$W/s.db" 'PRAGMA page_size')" |
            awk '{ printf "%d bytes (%.1f MiB), %.1f MiB of it free pages", $1, $1 / 1048576, $2 * $3 / 1048576 }'
    else
        my -e "SELECT SUM(FILE_SIZE), SUM(ALLOCATED_SIZE) FROM information_schema.INNODB_SYS_TABLESPACES
               WHERE NAME = '$MYDB/b' OR NAME = '$MYDB/b@0024grep'" |
            awk '{ printf "%d bytes (%.1f MiB) in b.ibd + b$grep.ibd, %.1f MiB allocated", $1, $1 / 1048576, $2 / 1048576 }'
    fi
}

# appender FILE STOPFILE: RATE lines/s, current time, until STOPFILE exists;
# prints how many lines it wrote.
appender() {
    python3 - "$1" "$2" "$RATE" <<'EOF'
import os, sys, time
path, stop, rate = sys.argv[1], sys.argv[2], int(sys.argv[3])
n = 0
with open(path, "a") as f:
    while not os.path.exists(stop):
        t = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
        for _ in range(max(1, rate // 10)):
            f.write(f"<38>1 {stamp} live sshd 9 - - Failed password for root from 192.0.2.{n % 250} port {n % 60000} ssh2 live-{n}\n")
            n += 1
        f.flush()
        time.sleep(max(0.0, 0.1 - (time.time() - t)))
print(n)
EOF
}

live_count() { # db -> rows the followers stored
    if [[ ${1%%:*} == sqlite ]]; then
        sqlite3 -cmd '.timeout 60000' "${1#sqlite://}" "SELECT COUNT(*) FROM b WHERE host = 'live'"
    else
        my "$MYDB" -e "SELECT COUNT(*) FROM b WHERE host = 'live'"
    fi
}

# follow_while DB SECONDS|CMD...: a follower on a fresh live log while CMD
# runs (or for SECONDS); prints "LINES LONGEST_COMMIT_MS".
follow_while() {
    local db=$1; shift
    local live=$W/live-$RANDOM.log stop=$W/stop-$RANDOM
    : > "$live"
    "$SP" -c "$W/empty.toml" --db "$db" -s b --follow "$live" 2> "$live.err" &
    local fpid=$! before
    before=$(live_count "$db")
    appender "$live" "$stop" > "$live.n" &
    local apid=$!
    sleep 1
    if [[ $1 =~ ^[0-9]+$ ]]; then sleep "$1"; else "$@"; fi
    sleep 1
    touch "$stop"
    wait "$apid"
    local n
    n=$(cat "$live.n")
    # Until the follower has stored every line (at most 5 minutes).
    for _ in $(seq 600); do
        [[ $(live_count "$db") -ge $((before + n)) ]] && break
        sleep 0.5
    done
    kill -TERM "$fpid"
    wait "$fpid" || true
    local longest
    longest=$(sed -n 's/.*the longest commit took \([0-9]*\) ms.*/\1/p' "$live.err" | tail -1)
    echo "$n ${longest:-?}"
}

timed_prune() { # db config -> report in $W/prune.out, wall ms in $W/prune.ms
    local t0
    t0=$(now_ms)
    "$SP" -c "$2" --db "$1" --prune -s b > "$W/prune.out"
    ms_since "$t0" > "$W/prune.ms"
}

# stall_while TABLE CMD...: one client inserts a row into TABLE every 20 ms
# while CMD runs; prints the longest gap between two inserts' ends minus 20 ms.
stall_while() {
    local table=$1; shift
    local stop=$W/stall-stop times=$W/stall-times
    rm -f "$stop"
    {
        while [[ ! -e $stop ]]; do
            echo "INSERT INTO $table ($INSERT_COLS) VALUES ($(now_ms), $(now_ms), 'w', 'x', 1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'm', 'r', 1, 's', NULL); SELECT ROUND(UNIX_TIMESTAMP(NOW(6)) * 1000);"
            sleep 0.02
        done
    } | my "$MYDB" > "$times" &
    local wpid=$!
    sleep 1
    "$@"
    sleep 1
    touch "$stop"
    wait "$wpid"
    awk 'NR > 1 && $1 - p > m { m = $1 - p } { p = $1 } END { printf "%d", m - 20 }' "$times"
}

# MariaDB: the oldest PRUNE days of copies of b, dropped as day partitions
# (bp) and deleted by plain batched DELETE (bd), each while a client inserts.
partition_experiment() {
    # Partitioning: a copy of b partitioned by day, and an unpartitioned copy.
    parts=""
    for d in $(seq "$DAYS" -1 0); do
        parts+="PARTITION d$d VALUES LESS THAN ($((NOW - d * DAY))), "
    done
    parts+="PARTITION pmax VALUES LESS THAN MAXVALUE"
    my "$MYDB" -e "DROP TABLE IF EXISTS bp, bd;
        CREATE TABLE bd LIKE b;
        CREATE TABLE bp LIKE b;
        ALTER TABLE bp DROP PRIMARY KEY, ADD PRIMARY KEY (id, ts);
        ALTER TABLE bp PARTITION BY RANGE (ts) ($parts)"
    t0=$(now_ms)
    my "$MYDB" -e "INSERT INTO bp SELECT * FROM b; INSERT INTO bd SELECT * FROM b"
    say ""
    say "copies bp (by day) and bd (plain) of b's $(my "$MYDB" -e 'SELECT COUNT(*) FROM b') rows made in $(ms_since "$t0") ms"
    # The oldest PRUNE day partitions that hold rows (the copies' data
    # starts where b's now does).
    oldest=$(my "$MYDB" -e "SELECT MIN(ts) FROM bp")
    drop=""
    for d in $(seq "$DAYS" -1 0); do
        hi=$((NOW - d * DAY))
        if [[ $hi -gt $oldest && $(echo "$drop" | tr -cd , | wc -c) -lt $PRUNE ]]; then drop+="d$d,"; fi
    done
    drop=${drop%,}
    cut_ms=$(my "$MYDB" -e "SELECT PARTITION_DESCRIPTION FROM information_schema.PARTITIONS
        WHERE TABLE_SCHEMA = '$MYDB' AND TABLE_NAME = 'bp' AND PARTITION_NAME = '${drop##*,}'")
    n=$(my "$MYDB" -e "SELECT COUNT(*) FROM bp WHERE ts < $cut_ms")
    before_p=$(my -e "SELECT SUM(FILE_SIZE) FROM information_schema.INNODB_SYS_TABLESPACES WHERE NAME LIKE '$MYDB/bp#%'")
    drop_parts() { local t; t=$(now_ms); my "$MYDB" -e "ALTER TABLE bp DROP PARTITION $drop"; ms_since "$t" > "$W/drop.ms"; }
    stall=$(stall_while bp drop_parts)
    after_p=$(my -e "SELECT SUM(FILE_SIZE) FROM information_schema.INNODB_SYS_TABLESPACES WHERE NAME LIKE '$MYDB/bp#%'")
    say "partitions: ALTER TABLE bp DROP PARTITION of $(echo "$drop" | tr ',' '\n' | wc -l) days ($n rows) took $(cat "$W/drop.ms") ms; an inserting client's longest stall $stall ms; files $((before_p / 1048576)) MiB -> $((after_p / 1048576)) MiB"
    batched_delete() {
        local t got
        t=$(now_ms)
        while :; do
            got=$(my "$MYDB" -e "DELETE FROM bd WHERE ts < $cut_ms ORDER BY ts LIMIT 5000; SELECT ROW_COUNT()")
            [[ $got -gt 0 ]] || break
        done
        ms_since "$t" > "$W/delete.ms"
    }
    stall=$(stall_while bd batched_delete)
    say "plain SQL: DELETE ... ORDER BY ts LIMIT 5000 until none left, same $n rows from bd, took $(cat "$W/delete.ms") ms; an inserting client's longest stall $stall ms"
    my "$MYDB" -e "DROP TABLE bp, bd"
}

if [[ $MODE == reuse ]]; then : > "$W/report.txt"; fi
{
    say "# bench-prune $(date -u +%FT%TZ): $ROWS rows over $DAYS days, prune $PRUNE days (keep ${KEEP}d) while following at $RATE lines/s$([[ $MODE == all ]] || echo " ($MODE)")"
    say "host: $(nproc) cores, load average at start: $(cut -d' ' -f1-3 /proc/loadavg); siemparse: $SP"
} >&2

for be in $BACKENDS; do
    if [[ $be == sqlite ]]; then
        DB="sqlite://$PWD/$W/s.db"
    else
        DB=$MY_URL
    fi
    say ""
    say "## $be ($(if [[ $be == mysql ]]; then my -e 'SELECT VERSION()'; else echo "siemparse's bundled SQLite; rows generated with the sqlite3 CLI $(sqlite3 --version | cut -d' ' -f1)"; fi))"
    if [[ $MODE == reuse ]]; then
        [[ -s $W/prepared-$be ]] || { echo "bench-prune: --reuse: nothing prepared for $be in $W (run --prepare)" >&2; exit 2; }
        read -r p_now p_rows p_days < "$W/prepared-$be"
        [[ $p_rows == "$ROWS" && $p_days == "$DAYS" ]] ||
            { echo "bench-prune: --reuse: $W holds $p_rows rows over $p_days days for $be, not $ROWS over $DAYS" >&2; exit 2; }
        set_now "$p_now"
        sed -n "s/^$be: //p" "$W/prepared.txt" | while read -r line; do say "$line"; done
        if [[ $be == sqlite ]]; then
            [[ -f $W/s.db.prepared ]] || { echo "bench-prune: --reuse: no $W/s.db.prepared" >&2; exit 2; }
            rm -f "$W/s.db-wal" "$W/s.db-shm"
            cp "$W/s.db.prepared" "$W/s.db"
        else
            [[ $(my -e "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '$MYDB' AND TABLE_NAME = 'b'") == 1 ]] ||
                { echo "bench-prune: --reuse: no prepared table $MYDB.b (a run uses it up: --prepare again)" >&2; exit 2; }
        fi
    else
        if [[ $be == mysql ]]; then
            my -e "DROP DATABASE IF EXISTS $MYDB; CREATE DATABASE $MYDB CHARACTER SET utf8mb4"
        else
            rm -f "$W"/s.db*
        fi
        rm -f "$W/prepared-$be"
        if [[ -f $W/prepared.txt ]]; then sed -i "/^$be: /d" "$W/prepared.txt"; fi
        # The table (and its --grep index) as siemparse makes it.
        echo "<38>1 $(date -u +%FT%TZ) h sshd 1 - - created" | "$SP" -c "$W/empty.toml" --db "$DB" -s b -q
        t0=$(now_ms)
        gen "$be" "$ROWS" "$START" "$STEP"
        gen="generated $ROWS rows in $(ms_since "$t0") ms"
        say "$gen"
        t0=$(now_ms)
        "$SP" -c "$W/empty.toml" --db "$DB" -s b --index -q
        idx="--grep index built in $(ms_since "$t0") ms"
        say "$idx"
        if [[ $be == mysql ]]; then my "$MYDB" -e 'ANALYZE TABLE b' > /dev/null; fi
        if [[ $MODE == prepare ]]; then
            if [[ $be == sqlite ]]; then
                size_of sqlite > /dev/null # checkpointed: the file holds everything
                cp "$W/s.db" "$W/s.db.prepared"
            fi
            load="(--prepare, done $(date -u +%TZ), load average $(cut -d' ' -f1 /proc/loadavg))"
            printf '%s: %s\n' "$be" "$gen" "$be" "$idx $load" "$be" "size: $(size_of "$be")" >> "$W/prepared.txt"
            echo "$NOW $ROWS $DAYS" > "$W/prepared-$be"
            continue
        fi
    fi
    say "size before the prune: $(size_of "$be")"

    if [[ $be == mysql && -n $PARTITIONS ]]; then partition_experiment; fi
    if [[ $be == mysql && -z $PARTITIONS ]]; then say "(partitioned and plain copies skipped: --no-partitions)"; fi
    read -r n base <<< "$(follow_while "$DB" 20)"
    say "baseline (no prune, 20 s): follower stored $n lines, longest commit $base ms"

    printf '[retention]\ndefault = "%dd"\n' "$KEEP" > "$W/keep.toml"
    read -r n longest <<< "$(follow_while "$DB" timed_prune "$DB" "$W/keep.toml")"
    say "prune: $(cat "$W/prune.ms") ms wall; report: $(grep '^table b' "$W/prune.out")"
    say "during the prune: follower stored $n lines, longest commit $longest ms"
    say "size after the prune: $(size_of "$be")"

    per_day=$((ROWS / DAYS))
    for k in 1 2; do
        if [[ $k == 2 ]]; then
            printf '[retention]\ndefault = "%dd"\n' "$((KEEP - 1))" > "$W/keep.toml"
            timed_prune "$DB" "$W/keep.toml"
            say "day $k: pruned one more day in $(cat "$W/prune.ms") ms: $(grep '^table b' "$W/prune.out")"
        fi
        t0=$(now_ms)
        from=$((NOW - DAY + (k - 1) * DAY / 4))
        gen "$be" "$per_day" "$from" 1
        "$SP" -c "$W/empty.toml" --db "$DB" -s b --index -q
        say "day $k: ingested and indexed the next day's $per_day rows in $(ms_since "$t0") ms; size: $(size_of "$be")"
    done

done
say ""
say "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
if [[ -n $OUT ]]; then cp "$W/report.txt" "$OUT"; fi
