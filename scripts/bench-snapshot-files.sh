#!/usr/bin/env bash
# File integrity benchmark (issue 6): `siemparse --gather files` over a
# generated tree of N files (default 100,000; sizes 0.5-32 KiB, ~1.6 GB),
# three runs:
#   1. first run: every file is read and hashed (SHA-256);
#   2. second run, nothing changed: size+mtime+inode match the previous run,
#      so every hash is reused and no file is read;
#   3. after 1% of the files were rewritten: only those are hashed.
# Wall clock per run (process start, walk, hashing, reading the previous run
# and storing the new one included) as files/s, CPU time (user+sys), and the
# ratio run 1 / run 2.
# The page cache is warm (the tree was just written), which favours run 1;
# --cold drops it before run 1 (root only).
#
#   scripts/bench-snapshot-files.sh [--files N] [--db URL] [--cold] [--keep]
#
# Writes benchsuite/runs/snapshot-files-DATE.md. Not a timed test.
set -euo pipefail
cd "$(dirname "$0")/.."

FILES=100000 DB="" COLD=0 KEEP=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --files) FILES=$2; shift 2 ;;
        --db) DB=$2; shift 2 ;;
        --cold) COLD=1; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,16s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "bench-snapshot-files: unknown argument $1" >&2; exit 2 ;;
    esac
done

cargo build --release -q -p siemparse
BIN=$PWD/target/release/siemparse
W=$(mktemp -d "${TMPDIR:-/tmp}/siemsnapbench.XXXXXX")
cleanup() { [[ $KEEP = 1 ]] || rm -rf "$W"; }
trap cleanup EXIT
DB=${DB:-sqlite://$W/bench.db}

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
    local label=$1 t0 t1
    t0=$(date +%s.%N)
    SIEMPARSE_GATHER_STATS=1 /usr/bin/time -f '%U %S' -o "$W/$label.cpu" "$BIN" -c "$W/siemstress.toml" --db "$DB" -q \
        --gather files --root "$W/root" 2> "$W/$label.err"
    t1=$(date +%s.%N)
    python3 -c "print(f'{$t1 - $t0:.3f}')"
}

sync
if [[ $COLD = 1 ]]; then echo 3 > /proc/sys/vm/drop_caches; fi
T1=$(run first)
T2=$(run second)
python3 - "$W/root/data" "$FILES" <<'EOF'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(0, n, 100):  # 1% of the files get one more byte
    d = os.path.join(root, f"d{i // 1000:03d}", f"s{i // 100 % 10}")
    with open(os.path.join(d, f"f{i:06d}"), "ab") as f:
        f.write(b"x")
EOF
T3=$(run changed)

ENTRIES=$(grep -o '[0-9]* rows,' "$W/first.err" | head -1 | grep -o '[0-9]*')
report() {
    python3 - "$ENTRIES" "$T1" "$T2" "$T3" "$W" "$DB" "$FILES" <<'EOF'
import sys, re
entries, t1, t2, t3, w, db, files = sys.argv[1:]
entries, t1, t2, t3 = int(entries), float(t1), float(t2), float(t3)
def detail(label):
    text = open(f"{w}/{label}.err").read()
    m = re.search(r"(\d+) hashed, (\d+) hashes reused", text)
    t = re.search(r"gather \(with reading the previous run\) ([\d.]+) s, store ([\d.]+) s", text)
    u, k = open(f"{w}/{label}.cpu").read().split()[-2:]
    cpu = f"{float(u) + float(k):.2f}"
    return (m.group(1), m.group(2), t.group(1), t.group(2), cpu) if m and t else ("?",) * 5
kind = "MariaDB" if db.startswith("mysql") else "SQLite"
print(f"{files} files ({entries} entries with directories), {kind}\n")
print("| run | wall s | entries/s | hashed | reused | gather s | store s | cpu s |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for label, t in (("first", t1), ("second (unchanged)", t2), ("after 1% changed", t3)):
    h, r, g, s, c = detail({"first": "first", "second (unchanged)": "second", "after 1% changed": "changed"}[label])
    print(f"| {label} | {t:.2f} | {entries / t:,.0f} | {h} | {r} | {g} | {s} | {c} |")
c1 = float(detail("first")[4]); c2 = float(detail("second")[4])
print(f"\nsecond run vs first: {t1 / t2:.1f}x faster (wall clock), {c1 / c2:.1f}x less CPU time")
EOF
}
OUT=benchsuite/runs/snapshot-files-$(date +%F).md
{
    echo "# siemparse --gather files: $(date -u +%FT%TZ), $(nproc) cores, $(uname -r)"
    echo
    echo "scripts/bench-snapshot-files.sh --files $FILES$([[ $COLD = 1 ]] && echo ' --cold')"
    echo
    report
} | tee -a "$OUT"
echo "bench: appended to $OUT"
