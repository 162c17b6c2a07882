#!/usr/bin/env bash
# Gateway restart with 100 000 jobs in the store: open the SQLite store and
# stream every job into memory (store_open + store_load_all), after a clean
# close and after a kill -9 (WAL recovery), against a baseline measured in
# the same run: plain sqlite3 opening the same file and scanning the same
# columns.  The requirement is restart-to-serving <= 2 s.
#
#   bench/store-restart.sh [RUNS]       (default 3)
#   BUILD=build-bench                   (build directory)
#
# The work is done by tests/unit/test_store with TIERGATE_BENCH_100K=1
# (a real SQLite file in a mkdtemp directory under /tmp); this script
# builds it, runs it RUNS times and prints each run and the medians.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
BUILD=${BUILD:-build-bench}
BIN=$BUILD/tests/unit/test_store

make -s BUILD="$BUILD" "$BIN" >/dev/null
OUT=$(mktemp /tmp/tiergate-store-bench.XXXXXX)
trap 'rm -f "$OUT"' EXIT
for r in $(seq 1 "$RUNS"); do
	TIERGATE_BENCH_100K=1 "$BIN" 2>/dev/null | grep '^store-restart' | tee -a "$OUT"
done
python3 - "$OUT" <<'PY'
import re, statistics, sys
vals = {}
for line in open(sys.argv[1]):
    kind = line.split(":")[0]
    for k, v in re.findall(r"([\w+/]+)=([\d.]+)", line):
        vals.setdefault(f"{kind} {k}", []).append(float(v))
def med(k):
    return statistics.median(vals[k])
load = med("store-restart open+load_all")
crash = med("store-restart-after-crash open+load_all")
raw = med("store-restart-baseline open+scan")
n = len(vals["store-restart open+load_all"])
print(f"median of {n}: open+load_all {load:.1f} ms (clean close), "
      f"{crash:.1f} ms (after kill -9), raw sqlite3 scan {raw:.1f} ms")
print(f"ratio load_all/raw {load / raw:.2f}; budget 2000 ms: "
      f"{'OK' if max(load, crash) <= 2000 else 'OVER'}")
PY
