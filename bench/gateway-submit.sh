#!/usr/bin/env bash
# Submits/s through tiergated (POST /v1/jobs, its durable 202) against
# submits straight to the same site's slurmrestd (POST
# /slurm/v0.0.38/job/submit with an HS256 JWT minted for alice with the
# site's key), same client, same concurrency, same run, rounds interleaved.
# Goal (issue 5): gateway / direct >= 0.95.
#
#   bench/gateway-submit.sh [ROUNDS] [N] [CONC]      (default 3 rounds, 200 jobs, 8 clients)
#   BENCH_CLUSTER_DIR=/tmp/tiergate-bench-cluster BENCH_PORT_BASE=14817
#   BENCH_GATEWAY_PORT=8580 BENCH_SITE=alpha
#   BENCH_TIERGATED=build/gateway/tiergated          the daemon measured
#   BENCH_DRAIN_TIMEOUT=180                          s to wait for the site's queue to empty
#   BENCH_SUBMIT_JOBS=pend|run                       (default pend, see below)
#   BENCH_FREEZE_GATEWAY=1                           SIGSTOP tiergated during direct runs
#   BENCH_POLL_INTERVAL=2                            the site's poll_interval (the
#                                                    product's default; the test
#                                                    cluster's is 1 s, for speed)
#   BENCH_SITE_CONNS=CONC                            the site's max_connections: as
#                                                    many as the direct client has
#   BENCH_PIN=0                                      1: the site's daemons (slurmctld,
#                                                    slurmrestd, munged, slurmd) on
#                                                    CPU 0, tiergated and the client
#                                                    on CPU 1, in both variants: a
#                                                    gateway that does not share the
#                                                    site's CPU, as when it runs on
#                                                    another machine
#
# The bench uses its own cluster (`up --sites SITE --with-gateway` under
# BENCH_CLUSTER_DIR, never the test cluster).  The client is
# bench/submit-client.py: CONC threads, each with one keep-alive
# connection, take jobs from a shared counter until N are submitted.  Jobs
# are `#!/bin/bash\ntrue` (1 task, 1 CPU, 1 min limit).  With
# BENCH_SUBMIT_JOBS=pend (the default) the site's partition is DOWN for the
# bench (`scontrol update partitionname=debug state=down`, set back UP at
# the end): jobs are accepted and stay PENDING (reason PartitionDown), and
# between variants `scancel -u alice -p debug` clears them.  Nothing runs,
# so the two variants are not disturbed by job launches on this 2-CPU box,
# and the bench does not wait for N jobs to run (this site runs ~5 jobs/s).
# BENCH_SUBMIT_JOBS=run lets them run (and waits for them between variants).
# Mind MaxJobCount (10 000 by default): finished jobs stay in slurmctld for
# MinJobAge (300 s): before each variant the bench waits (up to 400 s) until
# slurmctld has room for N more.
#
#   direct   POST $SITE_REST_URL/slurm/v0.0.38/job/submit: the answer
#            carries the Slurm job id, so "accepted" and "has a Slurm id"
#            are the same instant.  The body is what the gateway sends
#            (name, comment, cwd, partition, stdout, tasks, cpus, time
#            limit, PATH and the tier's SPANK variables) minus the ticket.
#            tiergated is stopped (SIGSTOP, SIGCONT after) meanwhile:
#            otherwise its poller lists the whole job table every interval
#            while the submits change it, and loads the baseline's site
#            (BENCH_FREEZE_GATEWAY=0 leaves it running).
#   gateway  POST $TIERGATE_URL/v1/jobs (alice's token): 202 once the job
#            is committed to the store.  The gateway then submits on its
#            own (site max_connections, default 4, in parallel).
#
# Two figures per variant and round:
#   (a) accepted/s: N / time from the first request to the last answer;
#   (b) end to end: N / time from the first request until all N have a
#       Slurm job id at the site.  For the gateway: tiergated's
#       tiergate_jobs_submitted_total (/metrics, read every 20 ms) reaching
#       its start + N, then checked with one GET /v1/jobs?limit=N (every
#       job of the round has slurm.job_id) and on the site with squeue
#       (N jobs named after the round's gateway ids).
# Ratios gateway/direct per round and of the medians.  Before each variant
# the bench waits until the site's queue is empty (the previous variant's
# jobs have run), so both start on an idle site.  Around each run it reads
# the CPU time of tiergated, slurmrestd, slurmctld and the client
# (/proc/PID/stat) and the box's CPU and steal (/proc/stat).
#
# The cluster is left up (stop it with
# TIERGATE_CLUSTER_DIR=$BENCH_CLUSTER_DIR slurm-test-cluster/down).  Raw
# outputs stay in the printed directory.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
N=${2:-200}
CONC=${3:-8}
SITE=${BENCH_SITE:-alpha}
# our own cluster, never an inherited TIERGATE_CLUSTER_DIR (see gateway-get.sh)
export TIERGATE_CLUSTER_DIR=${BENCH_CLUSTER_DIR:-/tmp/tiergate-bench-cluster}
export PORT_BASE=${BENCH_PORT_BASE:-14817}
export TIERGATE_PORT=${BENCH_GATEWAY_PORT:-8580}
for t in curl python3 squeue; do
	command -v "$t" >/dev/null || { echo "$t missing (make deps)" >&2; exit 1; }
done
BIN=${BENCH_TIERGATED:-build/gateway/tiergated}
[ -x "$BIN" ] || { echo "build first: make -j2 all" >&2; exit 1; }

OUT=$(mktemp -d /tmp/tiergate-bench-submit.XXXXXX)
chmod 1777 "$OUT" # the direct jobs (alice) write their stdout here
cp "$BIN" "$OUT/tiergated"
export TIERGATED=$OUT/tiergated
{
	echo "date: $(date -u +%FT%TZ)"
	echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo -) modified: $(git status --short -- gateway shared 2>/dev/null | awk '{print $2}' | xargs)"
	echo "tiergated: $BIN (sha256 $(sha256sum "$TIERGATED" | cut -c1-16))"
	echo "rounds $ROUNDS, N $N, concurrency $CONC; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT/info"

# the gateway as deployed (poll interval), with as many connections to the
# site as the direct client opens
export TIERGATE_POLL_INTERVAL=${BENCH_POLL_INTERVAL:-2}
export TIERGATE_SITE_MAX_CONNECTIONS=${BENCH_SITE_CONNS:-$CONC}
echo "gateway: poll_interval $TIERGATE_POLL_INTERVAL s, site max_connections $TIERGATE_SITE_MAX_CONNECTIONS" | tee -a "$OUT/info"
exports=$(slurm-test-cluster/up --sites "$SITE" --with-gateway 2>"$OUT/up.log") ||
	{ cat "$OUT/up.log" >&2; exit 1; }
eval "$exports"
U=${SITE^^}
REST_URL=SITE_${U}_REST_URL JWT_KEY=SITE_${U}_JWT_KEY CONF=SITE_${U}_SLURM_CONF
GW_DIR=$TIERGATE_CLUSTER_DIR/gateway
LOG0=$(stat -c %s "$GW_DIR/tiergated.log")

MODE=${BENCH_SUBMIT_JOBS:-pend}
case $MODE in pend | run) ;; *) echo "BENCH_SUBMIT_JOBS: pend or run" >&2; exit 2 ;; esac
export SLURM_CONF=${!CONF}
if [ "$MODE" = pend ]; then
	trap 'scontrol update partitionname=debug state=up || true' EXIT
	scontrol update partitionname=debug state=down
fi

PIN=()
if [ "${BENCH_PIN:-0}" = 1 ]; then
	command -v taskset >/dev/null || { echo "taskset missing" >&2; exit 1; }
	[ "$(nproc)" -ge 2 ] || { echo "BENCH_PIN needs 2 CPUs" >&2; exit 1; }
	for f in "$TIERGATE_CLUSTER_DIR/$SITE"/run/*.pid.own "$TIERGATE_CLUSTER_DIR/$SITE"/run/munged.pid; do
		[ -f "$f" ] && taskset -a -cp 0 "$(head -1 "$f")" >/dev/null
	done
	taskset -a -cp 1 "$(cat "$GW_DIR/tiergated.pid")" >/dev/null
	PIN=(taskset -c 1)
	echo "pinned: site daemons on CPU 0, tiergated and the client on CPU 1" | tee -a "$OUT/info"
fi

export SITE
FREEZE=${BENCH_FREEZE_GATEWAY:-1} MODE=$MODE N=$N CONC=$CONC ROUNDS=$ROUNDS OUT=$OUT GW_URL=$TIERGATE_URL TOKEN=$TIERGATE_TOKEN_ALICE \
	REST_URL=${!REST_URL} JWT_KEY=${!JWT_KEY} SLURM_CONF=${!CONF} GW_PID=$(cat "$GW_DIR/tiergated.pid") \
	SITE_DIR=$TIERGATE_CLUSTER_DIR/$SITE DRAIN_TIMEOUT=${BENCH_DRAIN_TIMEOUT:-180} \
	"${PIN[@]}" python3 bench/submit-client.py
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
tail -c +"$((LOG0 + 1))" "$GW_DIR/tiergated.log" | grep -v ' info: ' >"$OUT/gw-log-not-info" || true
echo "gateway log during the bench: $(wc -l <"$OUT/gw-log-not-info") lines other than info (in $OUT/gw-log-not-info)"
head -5 "$OUT/gw-log-not-info"
# the gateway's jobs write /tmp/tiergate-<id>.out: ours only
if [ -s "$OUT/gateway-ids" ]; then
	sed 's|.*|/tmp/tiergate-&.out|' "$OUT/gateway-ids" | xargs rm -f
fi
echo "raw: $OUT"
