#!/usr/bin/env bash
# srun latency with the tiergate plugin over without it, same site, same run.
#
#   bench/spank-srun.sh [ROUNDS] [RUNS_PER_ROUND]
#   BENCH_SITE=gamma TIERGATE_CLUSTER_DIR=... PORT_BASE=... (another cluster)
#
# Variants, interleaved round by round so drift hits all alike:
#   none       empty plugstack.conf (the baseline)
#   plugin     tiergate.so, the gateway (a stand-in receiver, nice 19) answering
#   down       tiergate.so, nothing listening on the gateway port
#   quiet      tiergate.so without gateway= (reports off: tiers and their
#              enforcement only; no spool, no relay, no receiver at work)
# Prints, per phase, the medians and the ratio over that phase's own
# baseline, and the median (and quartiles) of the per-round ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
RUNS=${2:-20}
command -v hyperfine >/dev/null || { echo "hyperfine missing (make deps)" >&2; exit 1; }

SITE=${BENCH_SITE:-alpha}
U=${SITE^^}
eval "$(slurm-test-cluster/up --sites "$SITE")"
conf=SITE_${U}_SLURM_CONF dir=SITE_${U}_DIR sock=SITE_${U}_MUNGE_SOCKET nodes=SITE_${U}_NODES
export SLURM_CONF=${!conf}
NODE=${!nodes%% *}
PS=${!dir}/etc/plugstack.conf
PLUGIN_LINE=$(cat "$PS")
[ -n "$PLUGIN_LINE" ] || { echo "plugstack.conf is empty: build the plugin first" >&2; exit 1; }
PORT=$(grep -o 'gateway=[^ ]*' "$PS" | sed 's/.*://')
OUT=$(mktemp -d /tmp/tiergate-bench.XXXXXX)
trap 'kill $RECV 2>/dev/null || true; printf "%s\n" "$PLUGIN_LINE" >"$PS"' EXIT
# at nice 19, as in spank-output.sh: a gateway on another machine would
# not take the CPU the next srun needs (the relay on the node does, at nice
# 10, and is measured)
nice -n 19 python3 tests/integration/receiver.py --port "$PORT" --dir "$OUT/recv" \
	--munge-socket "${!sock}" >"$OUT/recv.log" 2>&1 &
RECV=$!
sleep 0.5

run() { # run VARIANT ROUND
	case $1 in
	none) : >"$PS" ;;
	plugin) printf '%s\n' "$PLUGIN_LINE" >"$PS" ;;
	down) printf '%s\n' "$PLUGIN_LINE" | sed "s/gateway=[^ ]*/gateway=http:\/\/127.0.0.1:1/" >"$PS" ;;
	quiet) printf '%s\n' "$PLUGIN_LINE" | sed "s/ gateway=[^ ]*//" >"$PS" ;;
	esac
	hyperfine -N --warmup 2 --runs "$RUNS" --export-json "$OUT/$1-$2.json" \
		"srun -N1 -w $NODE true" >/dev/null
}
clean() { # relays still retrying for the last variant would load the box
	local pid # the node's relay, by its pid file (srun steps start no other)
	pid=$(cat "${!dir}/spool/tiergate/node-relay.pid" 2>/dev/null || true)
	[ -z "$pid" ] || kill "$pid" 2>/dev/null || true
	sleep 0.5
	rm -rf "${!dir}/spool/tiergate/"* 2>/dev/null || true
}
# two phases, each interleaving the baseline with one variant
for r in $(seq 1 "$ROUNDS"); do
	for v in none plugin; do run "$v" "$r"; done
done
clean
for r in $(seq 1 "$ROUNDS"); do
	for v in none down; do run "$v" "d$r"; done
done
clean
for r in $(seq 1 "$ROUNDS"); do
	for v in none quiet; do run "$v" "q$r"; done
done
python3 - "$OUT" "$ROUNDS" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def times(v, r):
    return json.load(open(f"{out}/{v}-{r}.json"))["results"][0]["times"]
# each phase against its own baseline rounds; a round's ratio pairs runs
# made seconds apart, so the median of those is what load drift hurts least
for v, pre in (("plugin", ""), ("down", "d"), ("quiet", "q")):
    base, var, ratios = [], [], []
    for r in range(1, rounds + 1):
        b, x = times("none", f"{pre}{r}"), times(v, f"{pre}{r}")
        base += b
        var += x
        ratios.append(statistics.median(x) / statistics.median(b))
    mb, mv = statistics.median(base) * 1000, statistics.median(var) * 1000
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    print(f"{v:6s}: none {mb:6.2f} ms, {v} {mv:6.2f} ms over {len(var)} runs: "
          f"ratio of medians {mv / mb:.3f}; per-round ratios median "
          f"{statistics.median(ratios):.3f} (quartiles {q[0]:.3f}..{q[2]:.3f})")
PY
