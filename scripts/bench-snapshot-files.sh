#!/usr/bin/env bash
# File integrity benchmark (issue 6): `siemparse --gather files` over a
# generated tree of N files (default 100,000; sizes 0.5-32 KiB, ~1.6 GB),
# R repetitions (default 3) of, each on a fresh database:
#   1. first run: every file is read and hashed (SHA-256);
#   2. second run, nothing changed: size+mtime+inode match the previous run,
#      so every hash is reused, no file is read and no row is written
#      (rows are stored once per value);
# then, after 1% of the files got one more byte, a run that hashes only those.
# Wall clock per run (process start, walk, hashing, reading the previous run
# and storing the new one included) as entries/s, phase times, CPU time
# (user+sys), and the ratio first / second (best of R, and per repetition).
# The page cache is warm (the tree was just written), which favours the
# first run; --cold drops it before each first run (root only), as for a
# daily cron run that reads the files from disk.
#
#   scripts/bench-snapshot-files.sh [--files N] [--repeat R] [--db URL] [--cold] [--keep] [--bin PATH]
#
# --bin runs another siemparse build (an A/B against an older commit:
# build it in a worktree and run the script once with each binary).
#
# Writes benchsuite/runs/snapshot-files-DATE.md. Not a timed test.
set -euo pipefail
cd "$(dirname "$0")/.."

FILES=100000 DB="" COLD=0 KEEP=0 REPEAT=3 BIN=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --files) FILES=$2; shift 2 ;;
        --db) DB=$2; shift 2 ;;
        --cold) COLD=1; shift ;;
        --keep) KEEP=1; shift ;;
        --repeat) REPEAT=$2; shift 2 ;;
        --bin) BIN=$(realpath "$2"); shift 2 ;;
        -h|--help) sed -n '2,20s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "bench-snapshot-files: unknown argument $1" >&2; exit 2 ;;
    esac
done

if [[ -z $BIN ]]; then
    cargo build --release -q -p siemparse
    BIN=$PWD/target/release/siemparse
fi
W=$(mktemp -d "${TMPDIR:-/tmp}/siemsnapbench.XXXXXX")
cleanup() { [[ $KEEP = 1 ]] || rm -rf "$W"; }
trap cleanup EXIT

echo "bench: generating $FILES files under $W/root/data"
python3 - "$W/root/data" "$FILES" <<'EOF'
import os, sys, random
root, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(6)
block = bytes(rnd.getrandbits(8) for _ in range(1 << 16))
total = 0
for i in range(n):
    d = os.path.join(root, f"d{i // 1000:03d}", f"s{i // 100 % 10}")
    if i % 100 == 0:
        os.makedirs(d, exist_ok=True)
    size = 512 * (rnd.randrange(64) + 1)
    off = rnd.randrange(len(block) - size)
    with open(os.path.join(d, f"f{i:06d}"), "wb") as f:
        f.write(b"%d\n" % i + block[off:off + size])
    total += size
print(f"bench: {total / 1e9:.2f} GB written")
EOF
cat > "$W/siemstress.toml" <<EOF
[gather.files]
paths = ["/data"]
EOF

run() {
    local label=$1 db=$2 t0 t1
    t0=$(date +%s.%N)
    SIEMPARSE_GATHER_STATS=1 /usr/bin/time -f '%U %S' -o "$W/$label.cpu" "$BIN" -c "$W/siemstress.toml" --db "$db" -q \
        --gather files --root "$W/root" 2> "$W/$label.err"
    t1=$(date +%s.%N)
    python3 -c "print(f'{$t1 - $t0:.3f}')"
}
db_for() { if [[ -n $DB ]]; then echo "$DB"; else echo "sqlite://$W/bench-$1.db"; fi; }
fresh() { # an empty database for repetition $1 (MariaDB: its snapshot tables emptied)
    if [[ -n $DB ]]; then
        mariadb -h 127.0.0.1 -u root -e "DELETE FROM snapshot_runs" "${DB##*/}" 2> /dev/null || true
    else
        rm -f "$W/bench-$1.db"*
    fi
}

# Each repetition: a fresh database, a first run (everything hashed), a
# second run (nothing changed). Same tree, same machine state, interleaved,
# so that load from other processes hits both alike.
sync
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
LABELS=()
for rep in $(seq "$REPEAT"); do
    fresh "$rep"
    if [[ $COLD = 1 ]]; then sync; echo 3 > /proc/sys/vm/drop_caches; fi
    echo "$(run "first-$rep" "$(db_for "$rep")")" > "$W/first-$rep.wall"
    echo "$(run "second-$rep" "$(db_for "$rep")")" > "$W/second-$rep.wall"
    LABELS+=("first-$rep" "second-$rep")
done
python3 - "$W/root/data" "$FILES" <<'EOF2'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(0, n, 100):  # 1% of the files get one more byte
    d = os.path.join(root, f"d{i // 1000:03d}", f"s{i // 100 % 10}")
    with open(os.path.join(d, f"f{i:06d}"), "ab") as f:
        f.write(b"x")
EOF2
run changed "$(db_for "$REPEAT")" > "$W/changed.wall"
LABELS+=(changed)

report() {
    python3 - "$W" "$DB" "$FILES" "$REPEAT" "$LOAD0" "${LABELS[@]}" <<'EOF2'
import sys, re
w, db, files, repeat, load0, *labels = sys.argv[1:]
def detail(label):
    text = open(f"{w}/{label}.err").read()
    wall = float(open(f"{w}/{label}.wall").read())
    n = re.search(r"(\d+) rows, (\d+) hashed, (\d+) hashes reused", text)
    walk = re.search(r"walk ([\d.]+) s, then waiting for the previous run ([\d.]+) s, rows ([\d.]+) s", text)
    t = re.search(r"store ([\d.]+) s", text)
    u, k = open(f"{w}/{label}.cpu").read().split()[-2:]
    return dict(wall=wall, rows=int(n.group(1)), hashed=n.group(2), reused=n.group(3),
                walk=walk.group(1), wait=walk.group(2), build=walk.group(3), store=t.group(1),
                cpu=float(u) + float(k))
d = {l: detail(l) for l in labels}
entries = d[labels[0]]["rows"]
kind = "MariaDB" if db.startswith("mysql") else "SQLite"
print(f"{files} files ({entries} entries with directories), {kind}; load average at start {load0}\n")
print("| run | wall s | entries/s | hashed | reused | walk s | wait for previous s | rows s | store s | cpu s |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for l in labels:
    x = d[l]
    print(f"| {l} | {x['wall']:.2f} | {entries / x['wall']:,.0f} | {x['hashed']} | {x['reused']} | {x['walk']} | {x['wait']} | {x['build']} | {x['store']} | {x['cpu']:.2f} |")
firsts = [d[f"first-{r}"] for r in range(1, int(repeat) + 1)]
seconds = [d[f"second-{r}"] for r in range(1, int(repeat) + 1)]
best = lambda xs, k: min(x[k] for x in xs)
ratios = [f["wall"] / s["wall"] for f, s in zip(firsts, seconds)]
print(f"\nsecond run vs first, wall clock: best {best(firsts, 'wall'):.2f} s / best {best(seconds, 'wall'):.2f} s = "
      f"{best(firsts, 'wall') / best(seconds, 'wall'):.1f}x; per repetition {', '.join(f'{r:.1f}x' for r in ratios)}")
print(f"CPU time (user+sys): best {best(firsts, 'cpu'):.2f} s / best {best(seconds, 'cpu'):.2f} s = "
      f"{best(firsts, 'cpu') / best(seconds, 'cpu'):.1f}x")
EOF2
}
OUT=benchsuite/runs/snapshot-files-$(date +%F).md
{
    echo "# siemparse --gather files: $(date -u +%FT%TZ), $(nproc) cores, $(uname -r), commit $(git rev-parse --short HEAD)"
    echo
    echo "scripts/bench-snapshot-files.sh --files $FILES --repeat $REPEAT$([[ $COLD = 1 ]] && echo ' --cold') (binary $BIN)"
    echo
    report
} | tee -a "$OUT"
echo "bench: appended to $OUT"
