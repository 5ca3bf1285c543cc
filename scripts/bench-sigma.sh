#!/usr/bin/env bash
# Sigma benchmark (issue 13): lines/s and peak RSS of `siemtrigger --once`
# over N generated auth.log lines (scripts/gen-authlog.py) with
#   pack      the shipped pack: config/rules/*.toml (the example Sigma rules of
#             config/sigma/rules/ are left out, so that runs compare)
#   pack+55   the pack and 50 generated Sigma detections and 5 correlations
#   pack+220  the pack and 200 generated Sigma detections and 20 correlations
#             (scripts/gen-sigma-rules.py: rules in the style of the public
#             Linux rules over the fields of the shipped mapping)
# in the same run, on SQLite (and MariaDB with --mysql). The cost of the
# added rules is the ratio of CPU time against the pack alone: the scan is
# shared, so it should grow much more slowly than the number of rules.
# With --base-bin DIR, the same runs with the binaries in DIR (e.g. a build
# of the commit before the prefilter), for an A/B in the same run.
#
#   scripts/bench-sigma.sh [--lines N] [--runs R] [--bin DIR] [--base-bin DIR] [--mysql] [--out FILE]
#
# Each run starts from fresh trigger state on a copy of the ingested
# database; the best wall clock of R runs is reported, with its CPU time
# (user+sys) and peak RSS. The host is shared: compare the ratios.
# Env: SIEMSTRESS_BENCH_MYSQL_URL (default mysql://root@127.0.0.1:3306/test);
# MariaDB works in a fresh database `sigma_bench` and drops it.
# Results: benchsuite/runs/sigma-DATE.md (appended), or FILE with --out.
set -euo pipefail
cd "$(dirname "$0")/.."

LINES=1000000 RUNS=1 BIN=target/release BASE_BIN= MYSQL= OUT=benchsuite/runs/sigma-$(date +%F).md
while [[ $# -gt 0 ]]; do
    case $1 in
        --lines) LINES=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --bin) BIN=$2; shift 2 ;;
        --base-bin) BASE_BIN=$2; shift 2 ;;
        --mysql) MYSQL=1; shift ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,22s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "bench-sigma: unknown argument $1" >&2; exit 2 ;;
    esac
done
for t in "$BIN"/siemparse "$BIN"/siemtrigger "$BIN"/siemquery ${BASE_BIN:+"$BASE_BIN"/siemtrigger}; do
    [[ -x $t ]] || { echo "bench-sigma: no $t (cargo build --release)" >&2; exit 2; }
done

URL=${SIEMSTRESS_BENCH_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}
MY_URL="${URL%/*}/sigma_bench"
D=bench-data W=bench-data/sigma
mkdir -p "$W" benchsuite/runs
LOG=$D/auth-$LINES.log
if [[ ! -s $LOG ]]; then
    echo "== generate $LINES lines" >&2
    python3 scripts/gen-authlog.py -n "$LINES" -o "$LOG"
fi
rm -rf "$W/gen55" "$W/gen220"
python3 scripts/gen-sigma-rules.py --detections 50 --correlations 5 -o "$W/gen55"
python3 scripts/gen-sigma-rules.py --detections 200 --correlations 20 -o "$W/gen220"

SECTIONS='[section.auth]
table = "auth"
timezone = "UTC"
'
config() { # NAME EXTRA-GLOB...
    local name=$1; shift
    local paths="\"$PWD/config/rules/*.toml\""
    for g in "$@"; do paths+=", \"$PWD/$g\""; done
    printf '%s\n[rules]\npaths = [%s]\n' "$SECTIONS" "$paths" > "$W/$name.toml"
}
config pack
config pack55 "$W/gen55/*.yml"
config pack220 "$W/gen220/*.yml"
printf '%s' "$SECTIONS" > "$W/ingest.toml"
declare -A NR
for c in pack pack55 pack220; do
    NR[$c]=$("$BIN/siemtrigger" -c "$W/$c.toml" --check 2> /dev/null | grep -c . || true)
done

# run CMD...: sets WALL, CPU (s) and RSS (KiB) of one run.
run() {
    local f t0 t1 u s; f=$(mktemp)
    t0=$EPOCHREALTIME
    /usr/bin/time -f '%U %S %M' -o "$f" "$@" > /dev/null
    t1=$EPOCHREALTIME
    read -r u s RSS < <(tail -n 1 "$f"); rm -f "$f"
    WALL=$(printf '%.3f' "$(echo "$t1 - $t0" | bc -l)")
    CPU=$(printf '%.2f' "$(echo "$u + $s" | bc -l)")
}
rate() { echo "$LINES / $1" | bc; }
ratio() { printf '%.2f' "$(echo "$1 / $2" | bc -l)"; }

{
    echo "# Sigma benchmark, $(date -u +%FT%TZ), $LINES lines, $(nproc) cores, load at start $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    echo "\`siemtrigger --once -q\` from fresh state over the whole table (best of $RUNS by wall clock; CPU = user+sys of that run; RSS = peak)."
    echo "Rules (\`--check\` lines): pack ${NR[pack]}, pack+55 ${NR[pack55]}, pack+220 ${NR[pack220]}. Binaries: \`$BIN\`${BASE_BIN:+, base \`$BASE_BIN\`}."
    echo
    echo "| backend | binaries | rules | wall s | lines/s | CPU s | lines/CPU-s | CPU / pack | peak RSS MiB | alerts |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
} >> "$OUT"

backends=(sqlite)
[[ -n $MYSQL ]] && backends+=(mysql)
for be in "${backends[@]}"; do
    if [[ $be == sqlite ]]; then
        rm -f "$W"/t.db* "$W"/base.db*
        DB="sqlite://$W/t.db" ingest_db="sqlite://$W/base.db"
        prep() { cp "$W/base.db" "$W/t.db"; rm -f "$W"/t.db-wal "$W"/t.db-shm; }
        EXTRA=()
    else
        mariadb -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS sigma_bench; CREATE DATABASE sigma_bench"
        DB=$MY_URL ingest_db=$MY_URL
        prep() {
            mariadb -h 127.0.0.1 -u root sigma_bench -e "DELETE FROM alert_events; DELETE FROM action_runs; \
                DELETE FROM alerts; DELETE FROM trigger_windows; DELETE FROM trigger_progress; DELETE FROM trigger_lease"
        }
        EXTRA=(--settle 0s)
    fi
    echo "== ingest $be" >&2
    "$BIN/siemparse" -c "$W/ingest.toml" --db "$ingest_db" -q -s auth --year 2025 < "$LOG"
    for bin in "$BIN" ${BASE_BIN:+"$BASE_BIN"}; do
        label=new
        [[ $bin == "$BASE_BIN" ]] && label=base
        for c in pack pack55 pack220; do
            echo "== $be $label $c" >&2
            BW=
            for _ in $(seq "$RUNS"); do
                prep
                run "$bin/siemtrigger" -c "$W/$c.toml" --db "$DB" --once -q "${EXTRA[@]}"
                if [[ -z $BW ]] || (( $(echo "$WALL < $BW" | bc -l) )); then BW=$WALL BC=$CPU BR=$RSS; fi
            done
            alerts=$("$BIN/siemquery" -c "$W/$c.toml" --db "$DB" --alerts --last 1000w --format ndjson | wc -l)
            [[ $c == pack ]] && PACK_CPU=$BC
            echo "| $be | $label | $c (${NR[$c]}) | $BW | $(rate "$BW") | $BC | $(rate "$BC") | $(ratio "$BC" "$PACK_CPU")x | $((BR / 1024)) | $alerts |" >> "$OUT"
        done
    done
    if [[ $be == mysql ]]; then mariadb -h 127.0.0.1 -u root -e "DROP DATABASE sigma_bench"; fi
done
{
    echo
    echo "Load at end $(cut -d' ' -f1-3 /proc/loadavg)."
    echo
} >> "$OUT"
cat "$OUT"
