#!/usr/bin/env bash
# Wall time spent inside each tiergate.so hook, in srun and in slurmstepd,
# for `srun true`: uprobes on entry and return of every slurm_spank_* hook
# (perf probe; root). Unlike bench/spank-srun.sh, which times whole sruns
# and on a shared 2-core box sees +-20% between rounds, this sees only the
# plugin's own time, so two builds can be compared in one run.
#
#   bench/spank-hooks.sh [ROUNDS] [RUNS_PER_ROUND]
#   BENCH_BASE_PLUGIN=/path/to/other/tiergate.so   also time that build,
#                                                  interleaved round by round
#   BENCH_SITE=gamma TIERGATE_CLUSTER_DIR=... PORT_BASE=... (another cluster)
#
# Not timed: dlopen of the plugin (before init; ~0.05 ms, see
# docs/performance.md) and what the relay does after the step.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
RUNS=${2:-15}
command -v perf >/dev/null || { echo "perf missing (apt-get install linux-perf)" >&2; exit 1; }

. bench/spank-site.sh
NEW=$(awk '{print $2}' <<<"$PLUGIN_LINE")
OUT=$(mktemp -d /tmp/tiergate-hooks.XXXXXX)
HOOKS="init init_post_opt task_init_privileged task_init task_exit exit"
GROUPS_ADDED=()

add_probes() { # add_probes SO GROUP
	local h
	for h in $HOOKS; do
		perf probe -x "$1" --add "$2:$2_${h}=slurm_spank_${h}" >>"$OUT/probe.log" 2>&1 ||
			{ cat "$OUT/probe.log" >&2; exit 1; }
		perf probe -x "$1" --add "$2:$2_${h}_ret=slurm_spank_${h}%return" >>"$OUT/probe.log" 2>&1 ||
			{ cat "$OUT/probe.log" >&2; exit 1; }
	done
	GROUPS_ADDED+=("$2")
}
cleanup() {
	local g
	for g in "${GROUPS_ADDED[@]}"; do perf probe -q -d "$g:*" 2>/dev/null || true; done
	printf '%s\n' "$PLUGIN_LINE" >"$PS"
}
trap cleanup EXIT
perf probe -q -d 'tg_new:*' 2>/dev/null || true
perf probe -q -d 'tg_base:*' 2>/dev/null || true
add_probes "$NEW" tg_new
VARIANTS=(new)
if [ -n "${BENCH_BASE_PLUGIN:-}" ]; then
	add_probes "$BENCH_BASE_PLUGIN" tg_base
	VARIANTS=(base new)
fi

perf record -q -e 'tg_new:*' ${BENCH_BASE_PLUGIN:+-e 'tg_base:*'} -a -o "$OUT/perf.data" \
	2>"$OUT/perf.log" &
PERF=$!
sleep 1
for _ in $(seq 1 "$ROUNDS"); do
	for v in "${VARIANTS[@]}"; do
		if [ "$v" = base ]; then
			awk -v so="$BENCH_BASE_PLUGIN" '{$2 = so; print}' <<<"$PLUGIN_LINE" >"$PS"
		else
			printf '%s\n' "$PLUGIN_LINE" >"$PS"
		fi
		for _ in $(seq 1 "$RUNS"); do srun -N1 -w "$NODE" true >/dev/null 2>&1; done
	done
done
kill -INT "$PERF"
wait "$PERF" || true
perf script -i "$OUT/perf.data" >"$OUT/perf.txt" 2>/dev/null
python3 - "$OUT/perf.txt" "$HOOKS" <<'PY'
import collections, re, statistics, sys
hooks = sys.argv[2].split()
start, dur = {}, collections.defaultdict(list)
for line in open(sys.argv[1]):
    m = re.search(r'^\s*(\S+)\s+(\d+)\s+\[\d+\]\s+([\d.]+):\s+(tg_\w+):(\w+):', line)
    if not m:
        continue
    comm, pid, ts, grp, ev = m.group(1), m.group(2), float(m.group(3)), m.group(4), m.group(5)
    ev = re.sub(r"__return$", "", ev)[len(grp) + 1:]  # tg_new_init_ret
    ret = ev.endswith("_ret")
    hook = ev[:-4] if ret else ev
    if not ret:
        start[(pid, grp, hook)] = ts
    elif (pid, grp, hook) in start:
        dur[(grp[3:], comm, hook)].append((ts - start.pop((pid, grp, hook))) * 1000)
variants = sorted({k[0] for k in dur})
print("median ms per hook call (calls); critical path of srun true: srun's hooks,"
      " slurmstepd init..task_exit")
for comm in ("srun", "slurmstepd"):
    for hook in hooks:
        row = [f"{comm:10s} {hook:21s}"]
        for v in variants:
            d = dur.get((v, comm, hook))
            row.append(f"{v} {statistics.median(d):6.3f} ({len(d)})" if d else f"{v}      -")
        if len(row) > 1 and any(dur.get((v, comm, hook)) for v in variants):
            print("  ".join(row))
for v in variants:
    tot = sum(statistics.median(d) for (vv, c, h), d in dur.items()
              if vv == v and not (c == "slurmstepd" and h == "exit"))
    ex = dur.get((v, "slurmstepd", "exit"))
    print(f"{v}: sum of medians on the critical path {tot:.3f} ms"
          + (f"; slurmstepd exit (after srun has its status) {statistics.median(ex):.3f} ms" if ex else ""))
PY
echo "uptime: $(uptime)"
