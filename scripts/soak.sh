#!/usr/bin/env bash
# Soak test (issue 18): `siemparse --follow` at a steady line rate with
# `siemtrigger --interval 10s` on MariaDB, for a long time; reports the RSS
# of both over time and the alert latency (line written -> alert stored).
#
#   scripts/soak.sh [--duration 30m] [--rate 5000] [--interval 10s] [--sample 10]
#
# A writer appends RATE lines/s to a log file (sshd failures and successes
# from a rotating set of addresses, sudo and session lines: the shipped rule
# pack fires on them) and, once a second, a marker line `soak-mark seq=N
# written=EPOCH_MS`. The rules are the built-in pack plus a `single` rule on
# the markers; a marker's latency is its alert's `created` minus `written`
# (both this machine's clock). RSS (VmRSS) of siemparse and siemtrigger is
# sampled every SAMPLE seconds. Release builds; a fresh database `siemsoak`
# on the server of SIEMSTRESS_BENCH_MYSQL_URL (default
# mysql://root@127.0.0.1:3306/test), dropped at the end.
# Results: benchsuite/runs/soak-DATE-TIME.md.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=30m RATE=5000 INTERVAL=10s SAMPLE=10
while [[ $# -gt 0 ]]; do
    case $1 in
        --duration) DURATION=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --interval) INTERVAL=$2; shift 2 ;;
        --sample) SAMPLE=$2; shift 2 ;;
        -h|--help) sed -n '2,17s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "soak: unknown argument $1" >&2; exit 2 ;;
    esac
done
secs() {
    case $1 in
        *h) echo $(( ${1%h} * 3600 )) ;;
        *m) echo $(( ${1%m} * 60 )) ;;
        *s) echo "${1%s}" ;;
        *) echo "$1" ;;
    esac
}
DUR_S=$(secs "$DURATION")
URL=${SIEMSTRESS_BENCH_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}
DB="${URL%/*}/siemsoak"
W=$(mktemp -d /tmp/soak.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    mariadb -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS siemsoak" || true
    rm -rf "$W"
}
trap cleanup EXIT

# SOAK_BIN: a directory with the binaries to use instead of a release build.
BIN=${SOAK_BIN:-target/release}
[[ -n ${SOAK_BIN:-} ]] || cargo build --release -q --locked -p siemparse -p siemtrigger
mariadb -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS siemsoak; CREATE DATABASE siemsoak CHARACTER SET utf8mb4"
cat >"$W/soak.toml" <<EOF
[database]
url = "$DB"

[section.auth]
table = "auth"
timezone = "UTC"

[rules]
builtin = true

[[rule]]
name = "soak-mark"
type = "single"
table = "auth"
severity = "info"
match = { process = "soak", regex = 'soak-mark seq=(?P<seq>\d+) written=(?P<written>\d+)' }
key = "{seq}"
message = "{written}"
EOF
LOG=$W/auth.log
: >"$LOG"

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
# The writer: RATE lines/s in 20 slices a second, a marker each second.
python3 - "$LOG" "$RATE" "$DUR_S" >"$W/writer.out" <<'PY' &
import sys, time, datetime
path, rate, dur = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
f = open(path, "a", buffering=1 << 20)
start = time.time()
n = seq = 0
slice_n = max(1, rate // 20)
while True:
    now = time.time()
    if now - start >= dur:
        break
    stamp = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime("%b %e %H:%M:%S")
    buf = []
    for _ in range(slice_n):
        i = n % 100000
        ip = "10.%d.%d.%d" % (i >> 16 & 255, i >> 8 & 255, i & 255)
        k = n % 50
        if k < 40:
            buf.append("%s web01 sshd[%d]: Failed password for invalid user u%d from %s port 4242 ssh2\n" % (stamp, 1000 + n % 30000, n % 977, ip))
        elif k < 45:
            buf.append("%s web01 sshd[%d]: Accepted password for alice from %s port 4242 ssh2\n" % (stamp, 1000 + n % 30000, ip))
        elif k < 48:
            buf.append("%s web01 sshd[%d]: pam_unix(sshd:session): session opened for user alice(uid=1000) by (uid=0)\n" % (stamp, 1000 + n % 30000))
        else:
            buf.append("%s web01 CRON[%d]: pam_unix(cron:session): session closed for user root\n" % (stamp, 1000 + n % 30000))
        n += 1
    if now - start >= seq:
        buf.append("%s web01 soak[1]: soak-mark seq=%d written=%d\n" % (stamp, seq, int(time.time() * 1000)))
        seq += 1
        n += 1
    f.write("".join(buf))
    f.flush()
    target = start + n / rate
    d = target - time.time()
    if d > 0:
        time.sleep(d)
print(n, seq)
PY
PIDS+=($!)
WRITER=$!
"$BIN"/siemparse -c "$W/soak.toml" -q -s auth --follow "$LOG" 2>"$W/parse.err" &
PIDS+=($!)
PARSE=$!
"$BIN"/siemtrigger -c "$W/soak.toml" --interval "$INTERVAL" 2>"$W/trigger.err" &
PIDS+=($!)
TRIG=$!

rss() { awk '/VmRSS/ {printf "%d", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo -; }
echo "t_s parse_rss_mib trigger_rss_mib rows" >"$W/rss.txt"
t0=$(date +%s)
while kill -0 "$WRITER" 2>/dev/null; do
    sleep "$SAMPLE"
    rows=$(mariadb -h 127.0.0.1 -u root -N siemsoak -e "SELECT COALESCE(MAX(id), 0) FROM auth" 2>/dev/null || echo 0)
    echo "$(( $(date +%s) - t0 )) $(rss "$PARSE") $(rss "$TRIG") $rows" >>"$W/rss.txt"
done
wait "$WRITER" || true
read -r LINES MARKS <"$W/writer.out"
# Let the last lines be stored and evaluated: until every marker has its
# alert, or 12 intervals (then the missing ones are reported as such).
limit=$(( $(date +%s) + 12 * $(secs "$INTERVAL") ))
while (( $(date +%s) < limit )); do
    got=$(mariadb -h 127.0.0.1 -u root -N siemsoak -e "SELECT COUNT(*) FROM alerts WHERE rule = 'soak-mark'" 2>/dev/null || echo 0)
    (( got >= MARKS )) && break
    sleep 2
done
echo "$(( $(date +%s) - t0 )) $(rss "$PARSE") $(rss "$TRIG") end" >>"$W/rss.txt"
STORED=$(mariadb -h 127.0.0.1 -u root -N siemsoak -e "SELECT COUNT(*) FROM auth")
ALERTS=$(mariadb -h 127.0.0.1 -u root -N siemsoak -e "SELECT COUNT(*) FROM alerts")
mariadb -h 127.0.0.1 -u root -N siemsoak -e \
    "SELECT created - CAST(message AS SIGNED) FROM alerts WHERE rule = 'soak-mark' ORDER BY 1" >"$W/lat.txt"
# Latency over the run (kept up: flat; fell behind: growing), by marker
# (one a second) in 10 slices: seconds.
mariadb -h 127.0.0.1 -u root -N siemsoak -e \
    "SELECT CAST(\`key\` AS SIGNED) AS seq, created - CAST(message AS SIGNED) FROM alerts WHERE rule = 'soak-mark' ORDER BY 1" \
    | awk -v n="$MARKS" 'BEGIN {s = int((n + 9) / 10); if (s < 1) s = 1}
        {b = int($1 / s); c[b]++; t[b] += $2; if ($2 > m[b]) m[b] = $2}
        END {print "markers_s count mean_s max_s"; for (i = 0; i * s < n; i++) if (c[i])
            printf "%d-%d %d %.2f %.2f\n", i * s, (i + 1) * s - 1, c[i], t[i] / c[i] / 1000, m[i] / 1000}' >"$W/latt.txt"
MARKED=$(wc -l <"$W/lat.txt")
pct() { awk -v p="$1" '{a[NR] = $1} END {if (NR == 0) {print "-"; exit} i = int(p * NR + 0.999999); if (i < 1) i = 1; if (i > NR) i = NR; printf "%.2f", a[i] / 1000}' "$W/lat.txt"; }

OUT=benchsuite/runs/soak-$(date -u +%F-%H%M).md
{
    echo "# Soak, $(date -u +%FT%TZ): $DURATION at $RATE lines/s, siemtrigger --interval $INTERVAL, MariaDB, $(nproc) cores, load at the start $LOAD0, at the end $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    echo "tree $(git rev-parse --short HEAD); binaries: $BIN; rules: the built-in pack + a single rule on one marker line a second."
    echo
    echo "- lines written: $LINES ($MARKS markers); rows stored: $STORED; alerts: $ALERTS"
    echo "- alert latency (marker line written -> its alert stored), $MARKED of $MARKS markers: p50 $(pct 0.5) s, p99 $(pct 0.99) s, max $(pct 1) s"
    echo "- siemparse stderr: $(tail -n 3 "$W/parse.err" | tr '\n' ' ')"
    echo "- siemtrigger stderr: $(grep -c . "$W/trigger.err") lines, the last: $(tail -n 1 "$W/trigger.err" | cut -c1-400)"
    echo
    echo "RSS over time (MiB; rows = highest id stored):"
    echo
    echo '```'
    step=$(( $(wc -l <"$W/rss.txt") / 30 + 1 ))
    awk -v s="$step" 'NR == 1 || NR % s == 0 || /end/' "$W/rss.txt" | column -t
    echo '```'
    echo
    echo "Alert latency over the run (markers by the second they were written):"
    echo
    echo '```'
    column -t "$W/latt.txt"
    echo '```'
    echo
} >"$OUT"
cat "$OUT"
