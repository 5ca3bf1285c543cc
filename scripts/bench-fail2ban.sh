#!/usr/bin/env bash
# Extraction benchmark (issue 10): siemparse storing a generated auth.log
# into SQLite, next to fail2ban-regex only matching the same file with
# Debian's sshd filter (/etc/fail2ban/filter.d/sshd.conf), in one run.
# Not a timed test: compare the ratio, not absolute numbers.
#
#   scripts/bench-fail2ban.sh [--lines N] [--runs R] [--bin PATH]
#
# --bin measures that siemparse build instead of building this checkout's.
# Needs Debian's fail2ban package (apt-get install fail2ban). Data goes to
# bench-data/ (gitignored), the report to benchsuite/runs/.
set -euo pipefail
cd "$(dirname "$0")/.."

LINES=200000 RUNS=3 BIN=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --lines) LINES=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --bin) BIN=$(realpath "$2"); shift 2 ;;
        -h|--help) sed -n '2,11s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "bench-fail2ban: unknown argument $1" >&2; exit 2 ;;
    esac
done
FILTER=/etc/fail2ban/filter.d/sshd.conf
command -v fail2ban-regex >/dev/null && [[ -f $FILTER ]] ||
    { echo "bench-fail2ban: needs fail2ban-regex and $FILTER (apt-get install fail2ban)" >&2; exit 2; }

D=bench-data W=bench-data/work
mkdir -p "$W" benchsuite/runs
: > "$D/empty.toml"
if [[ -z $BIN ]]; then
    echo "== build" >&2
    cargo build --release -q -p siemparse
    BIN=$PWD/target/release/siemparse
fi
[[ -x $BIN ]] || { echo "bench-fail2ban: $BIN is not an executable" >&2; exit 2; }
LOG=$D/auth-$LINES.log
if [[ ! -s $LOG || scripts/gen-authlog.py -nt $LOG ]]; then
    echo "== generate $LINES lines" >&2
    python3 scripts/gen-authlog.py -n "$LINES" -o "$LOG" --csv "$D/auth-$LINES.csv"
fi
cat "$LOG" > /dev/null # page cache

# secs CMD...: wall-clock seconds of CMD (output to $W/out).
secs() {
    local t0=$EPOCHREALTIME
    "$@" > "$W/out" 2>&1
    awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f\n", b - a }'
}
sp_all=() f2b_all=()
for run in $(seq "$RUNS"); do
    echo "== run $run of $RUNS" >&2
    rm -f "$W/f2b.db" "$W/f2b.db"-wal "$W/f2b.db"-shm
    s=$(secs "$BIN" -c "$D/empty.toml" -q -z UTC --year 2025 -s auth --db "sqlite://$W/f2b.db" < "$LOG")
    sp_all+=("$s"); echo "   siemparse: $s s" >&2
    f=$(secs fail2ban-regex --raw "$LOG" "$FILTER")
    f2b_all+=("$f"); echo "   fail2ban-regex: $f s" >&2
done
# fail2ban's own count of lines its failregex matched, and the addresses it found.
f2b_matched=$(grep -m1 '^Lines:' "$W/out" | sed 's/^Lines: //')
sp_addr=$(sqlite3 "$W/f2b.db" "SELECT count(*) FROM auth WHERE process = 'sshd' AND source_host IS NOT NULL")
sp_rows=$(sqlite3 "$W/f2b.db" "SELECT count(*) FROM auth")
[[ $sp_rows == "$LINES" ]] || { echo "bench-fail2ban: stored $sp_rows rows, expected $LINES" >&2; exit 1; }

best() { printf '%s\n' "$@" | sort -g | head -1; }
sp=$(best "${sp_all[@]}") f2b=$(best "${f2b_all[@]}")
DATE=$(date +%Y-%m-%d)
OUT=benchsuite/runs/fail2ban-$DATE.md
{
    echo "# Extraction benchmark against fail2ban-regex, $DATE"
    echo
    echo "$LINES generated auth.log lines (\`scripts/gen-authlog.py\`), best of $RUNS runs, one round each."
    echo "Machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end; commit $(git rev-parse --short HEAD)$([[ $BIN == "$PWD/target/release/siemparse" ]] || echo ", siemparse binary $BIN")."
    echo "fail2ban $(fail2ban-regex --version 2>/dev/null | head -1 | awk '{print $NF}') with Debian's \`$FILTER\` (mode normal), \`--raw\` (no DNS)."
    echo
    echo "| tool | what it does | seconds (best) | lines/s | each run (s) |"
    echo "| --- | --- | --- | --- | --- |"
    awk -v n="$LINES" -v s="$sp" -v all="${sp_all[*]}" 'BEGIN { printf "| siemparse → SQLite | parses, decodes and stores every line | %s | %d | %s |\n", s, n / s, all }'
    awk -v n="$LINES" -v s="$f2b" -v all="${f2b_all[*]}" 'BEGIN { printf "| fail2ban-regex | matches the sshd filter, stores nothing | %s | %d | %s |\n", s, n / s, all }'
    echo
    awk -v a="$sp" -v b="$f2b" 'BEGIN { printf "siemparse stores the file %.1f× as fast as fail2ban-regex matches it.\n", b / a }'
    echo
    echo "fail2ban-regex: \`Lines: $f2b_matched\`. siemparse: $sp_addr sshd rows with a source address (of $sp_rows stored)."
} | tee "$OUT"
echo "== written to $OUT" >&2
