#!/usr/bin/env bash
# srun latency with the tiergate plugin over without it, same site, same run.
#
#   bench/spank-srun.sh [ROUNDS] [RUNS_PER_ROUND]   ROUNDS x RUNS pairs per phase
#   BENCH_SITE=gamma TIERGATE_CLUSTER_DIR=... PORT_BASE=... (another cluster)
#   BENCH_VARIANTS="quiet plugin down"   the phases to run, in this order
#
# Variants, each in its own phase against the baseline:
#   none       empty plugstack.conf (the baseline)
#   plugin     tiergate.so, the gateway (a stand-in receiver, nice 19) answering
#   down       tiergate.so, nothing listening on the gateway port
#   quiet      tiergate.so without gateway= (reports off: tiers and their
#              enforcement only; no spool, no relay, no receiver at work)
# A pair is one srun of the baseline and one of the variant, in a random
# order, back to back (blocks of runs per variant saw drift of several
# per cent between blocks).  Prints, per phase, the medians, their ratio
# and its 95% bootstrap interval.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
RUNS=${2:-20}

. bench/spank-site.sh
PORT=$(grep -o 'gateway=[^ ]*' "$PS" | sed 's/.*://')
OUT=$(mktemp -d /tmp/tiergate-bench.XXXXXX)
trap 'kill $RECV 2>/dev/null || true; printf "%s\n" "$PLUGIN_LINE" >"$PS"' EXIT
# at nice 19, as in spank-output.sh: a gateway on another machine would
# not take the CPU the next srun needs (the relay on the node does, at nice
# 10, and is measured)
nice -n 19 python3 tests/integration/receiver.py --port "$PORT" --dir "$OUT/recv" \
	--munge-socket "$SITE_MUNGE_SOCKET" >"$OUT/recv.log" 2>&1 &
RECV=$!
sleep 0.5

stop_relay() { # a relay still retrying for the last variant would load the box
	local pid # the node's relay, by its pid file (srun steps start no other)
	pid=$(cat "$SITE_DIR/spool/tiergate/node-relay.pid" 2>/dev/null || true)
	[ -z "$pid" ] || kill "$pid" 2>/dev/null || true
	sleep 0.5
}
wipe_spool() {
	rm -rf "$SITE_DIR/spool/tiergate/"* "$SITE_DIR/spool/tiergate/".spare-* 2>/dev/null || true
}
# Three phases, each pairing the baseline with one variant: every pair is
# one srun of each, in a random order, back to back, so that drift (the
# machine's other work, the file system's state) hits both alike.  The
# relay is stopped between phases; the spool is emptied only before the
# first phase and after the last: on ext4 without a journal, inodes freed
# in the last minutes make every new one dearer, and a mass removal by the
# bench itself right before a phase would load that phase (quiet, which
# writes no spool, goes first; down, which leaves its events, last).
stop_relay # a relay left from before may be an older build
wipe_spool
trap 'kill $RECV 2>/dev/null || true; printf "%s\n" "$PLUGIN_LINE" >"$PS"; stop_relay; wipe_spool' EXIT
for v in ${BENCH_VARIANTS:-quiet plugin down}; do
	python3 - "$v" "$((ROUNDS * RUNS))" "$NODE" "$PS" "$PLUGIN_LINE" "$OUT" <<'PY'
import json, random, subprocess, sys, time
variant, pairs, node, ps, line, out = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
conf = {"none": "",
        "plugin": line,
        "down": line.replace(line.split("gateway=")[1].split()[0], "http://127.0.0.1:1"),
        "quiet": " ".join(w for w in line.split() if not w.startswith("gateway="))}
def run(v):
    with open(ps, "w") as f:
        f.write(conf[v] + "\n" if conf[v] else "")
    t = time.perf_counter()
    subprocess.run(["srun", "-N1", "-w", node, "true"], check=True)
    return time.perf_counter() - t
for v in ("none", variant):  # warm-up
    run(v)
times = {"none": [], variant: []}
for _ in range(pairs):
    order = ["none", variant]
    random.shuffle(order)
    for v in order:
        times[v].append(run(v))
json.dump(times, open(f"{out}/{variant}.json", "w"))
PY
	stop_relay
done
python3 - "$OUT" ${BENCH_VARIANTS:-quiet plugin down} <<'PY'
import json, random, statistics, sys
out = sys.argv[1]
random.seed(1)
for v in sys.argv[2:]:
    t = json.load(open(f"{out}/{v}.json"))
    b, x = t["none"], t[v]
    mb, mv = statistics.median(b), statistics.median(x)
    # 95% interval of the ratio of medians: bootstrap over the pairs
    n, boot = len(b), []
    for _ in range(2000):
        idx = [random.randrange(n) for _ in range(n)]
        boot.append(statistics.median(x[i] for i in idx) /
                    statistics.median(b[i] for i in idx))
    boot.sort()
    print(f"{v:6s}: none {mb * 1000:6.2f} ms, {v} {mv * 1000:6.2f} ms over {n} pairs: "
          f"ratio of medians {mv / mb:.3f} (95% {boot[50]:.3f}..{boot[1949]:.3f})")
PY
