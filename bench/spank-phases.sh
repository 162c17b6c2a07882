#!/usr/bin/env bash
# Where an `srun` spends the plugin's time: the phases of each srun from the
# kernel's sched tracepoints (fork, exec, exit; perf record -a; root), for
# three plugstack.conf lines in random order per round:
#
#   none    empty plugstack.conf (the baseline)
#   empty   a SPANK plugin that does nothing (bench/empty-spank.c): what any
#           plugin costs Slurm to load and call
#   plugin  tiergate.so as configured, without gateway= (tiers and their
#           enforcement; reports are measured by bench/spank-srun.sh)
#
#   bench/spank-phases.sh [RUNS]        RUNS sruns per line (default 200)
#   BENCH_SITE=gamma TIERGATE_CLUSTER_DIR=... PORT_BASE=... (another cluster)
#
# Each srun runs a copy of true named after its line, so its task is found
# by the exec's file name.  Phases, medians in ms: srun's exec to
# slurmstepd's exec (srun's start, the allocation, the launch), slurmstepd's
# exec to the task's fork (the step's set-up: the plugin's init and
# init_post_opt), the task's fork to its exec (task_init_privileged and
# task_init, in the task), the task's run, and its exit to srun's exit.
# Unlike bench/spank-hooks.sh, which times inside the hooks, this sees only
# what delays the srun: a hook's wait that overlaps with slurmstepd's own
# work does not count.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-200}
command -v perf >/dev/null || { echo "perf missing (apt-get install linux-perf)" >&2; exit 1; }

. bench/spank-site.sh
OUT=$(mktemp -d /tmp/tiergate-phases.XXXXXX)
chmod 755 "$OUT" # slurmstepd execs the copies of true as the job's user
PERF=
# on any exit: perf stopped, the site's plugstack.conf as it was
trap '[ -z "$PERF" ] || kill -INT "$PERF" 2>/dev/null || true; printf "%s\n" "$PLUGIN_LINE" >"$PS"' EXIT
cc -shared -fPIC -O2 -o "$OUT/empty-spank.so" bench/empty-spank.c
for v in none empty plugin; do cp "$(type -P true)" "$OUT/true-$v"; done
QUIET=$(tr ' ' '\n' <<<"$PLUGIN_LINE" | grep -v '^gateway=' | xargs)

perf record -q -e sched:sched_process_fork -e sched:sched_process_exec \
	-e sched:sched_process_exit -a -o "$OUT/perf.data" 2>"$OUT/perf.log" &
PERF=$!
sleep 1
kill -0 "$PERF" 2>/dev/null || { cat "$OUT/perf.log" >&2; echo "perf record failed" >&2; exit 1; }
python3 - "$PS" "$NODE" "$RUNS" "$OUT" "required $OUT/empty-spank.so" "$QUIET" <<'PY'
import random, subprocess, sys
ps, node, runs, out, empty, plugin = sys.argv[1], sys.argv[2], int(sys.argv[3]), *sys.argv[4:]
lines = {"none": "", "empty": empty, "plugin": plugin}
for _ in range(runs):
    order = list(lines)
    random.shuffle(order)
    for v in order:
        with open(ps, "w") as f:
            f.write(lines[v] + "\n" if lines[v] else "")
        subprocess.run(["srun", "-N1", "-w", node, f"{out}/true-{v}"], check=True)
PY
kill -INT "$PERF"
wait "$PERF" || true
PERF=
perf script -i "$OUT/perf.data" >"$OUT/sched.txt" 2>/dev/null
python3 - "$OUT/sched.txt" <<'PY'
import re, statistics, sys
events = []
for line in open(sys.argv[1]):
    m = re.search(r'\s([\d.]+):\s+sched:(\w+):\s*(.*)', line)
    if m:
        events.append((float(m.group(1)), m.group(2), m.group(3)))
events.sort()
forks, runs, cur = {}, [], None
for ts, ev, rest in events:
    if ev == "sched_process_fork":
        forks[re.search(r"child_pid=(\d+)", rest).group(1)] = ts
    elif ev == "sched_process_exec":
        m = re.search(r"filename=(\S+) pid=(\d+)", rest)
        name, pid = m.group(1), m.group(2)
        if name.endswith("/srun"):
            cur = {"srun": ts, "srun_pid": pid}
            runs.append(cur)
        elif name.endswith("/slurmstepd") and cur and "stepd" not in cur:
            cur["stepd"] = ts
        elif "/true-" in name and cur:
            cur.update(v=name.rsplit("-", 1)[1], task_pid=pid,
                       task_fork=forks.get(pid), task_exec=ts)
    elif ev == "sched_process_exit" and cur:
        pid = re.search(r"pid=(\d+)", rest).group(1)
        if pid == cur.get("task_pid"):
            cur.setdefault("task_exit", ts)
        elif pid == cur.get("srun_pid"):
            cur.setdefault("srun_exit", ts)
need = ("v", "stepd", "task_fork", "task_exec", "task_exit", "srun_exit")
by = {}
for r in runs:
    if all(r.get(k) for k in need):
        by.setdefault(r["v"], []).append(r)
phases = [("srun exec -> slurmstepd exec", "srun", "stepd"),
          ("slurmstepd exec -> task fork", "stepd", "task_fork"),
          ("task fork -> task exec", "task_fork", "task_exec"),
          ("task exec -> task exit", "task_exec", "task_exit"),
          ("task exit -> srun exit", "task_exit", "srun_exit"),
          ("srun, exec to exit", "srun", "srun_exit")]
names = [v for v in ("none", "empty", "plugin") if v in by]
print("median ms per phase (" + ", ".join(f"{v} {len(by[v])} sruns" for v in names) + ")")
print(f"{'':30s}" + "".join(f"{v:>9s}" for v in names) + "   plugin - none")
for title, a, b in phases:
    med = {v: statistics.median((r[b] - r[a]) * 1000 for r in by[v]) for v in names}
    diff = f"{med['plugin'] - med['none']:+8.3f}" if "plugin" in med and "none" in med else ""
    print(f"{title:30s}" + "".join(f"{med[v]:9.3f}" for v in names) + "   " + diff)
PY
echo "raw: $OUT; uptime: $(uptime)"
