#!/usr/bin/env bash
# Upstream calls per site per poll interval while tiergated tracks JOBS
# non-final jobs at one site and 1, then CLIENTS, clients poll GET
# /v1/jobs/{id}: goal (issue 5) exactly 1 per interval, whatever the number
# of clients.  Baseline in the same run: the same gateway with no client.
# Counted twice: on the gateway (/metrics
# tiergate_site_upstream_calls_total and tiergate_site_polls_total for the
# site) and on the site (slurmctld's REQUEST_JOB_INFO count in `sdiag`: each
# GET /jobs of slurmrestd is one; every other RPC type that moved is
# printed too).
#
#   bench/gateway-poll.sh [JOBS] [INTERVALS] [CLIENTS] [ROUNDS]
#                          (default 10000 jobs, 10 intervals, 1000 clients, 2 rounds)
#   BENCH_POLL_INTERVAL=2       the site's poll_interval (s) in tiergated.conf
#   BENCH_CLIENT_PAUSE=0        s each client waits between its GETs (0: closed loop)
#   BENCH_SUBMIT_BATCH=500      jobs submitted before waiting for the gateway to pass them on
#   BENCH_CLUSTER_DIR=/tmp/tiergate-bench-cluster BENCH_PORT_BASE=14817
#   BENCH_GATEWAY_PORT=8580 BENCH_SITE=alpha
#   BENCH_TIERGATED=build/gateway/tiergated          the daemon measured
#
# The bench restarts its own cluster from scratch (`up --fresh --sites SITE
# --with-gateway` under BENCH_CLUSTER_DIR, never the test cluster) with
# TIERGATE_MAX_JOB_COUNT = max(10000, JOBS + 2000) (Slurm's default
# MaxJobCount is 10000: 10 000 jobs would just fit in an empty slurmctld)
# and TIERGATE_POLL_INTERVAL.  It sets the site's partition DOWN (`scontrol
# update partitionname=debug state=down`): jobs are accepted and stay
# PENDING (reason PartitionDown), alive in slurmctld and non-final for the
# gateway.  It submits JOBS jobs through the gateway (8 clients, alice) in
# batches of BENCH_SUBMIT_BATCH, each once the gateway has passed the last
# one to the site (unpaced, the site collapses: see docs/performance.md),
# stops if the site's breaker opens, and waits until /metrics shows JOBS
# pending, then 12 poll intervals more (the set-up's tail: one full cycle
# of the poller, which asks for the full list every 10th poll).
#
# Then, per round, three phases (order reversed every other round): no
# client (the baseline), 1 client, CLIENTS clients.  The clients are one
# python asyncio process (bench/poll-client.py load C), each client a
# keep-alive connection asking for random ids of the JOBS jobs in a closed
# loop; spread over source addresses 127.0.0.2.. (200 per address: the
# gateway allows 256 connections per IP).  After they connect and one
# interval passes, the bench reads /metrics, sdiag and the CPU time of
# tiergated, slurmrestd and slurmctld, waits INTERVALS poll intervals, and
# reads them again.  Calls per interval = calls in the window / (window /
# poll_interval).  The poller sleeps poll_interval after each list returns,
# so its period is the interval plus the list's own time ("one poll every
# ... s"); a value under 1 with the three counts equal is that, not a lost
# poll.  The poller asks for the full list every 10th poll (the others
# with update_time=): a window of 10 intervals holds one.
#
# At the end the jobs are cancelled (`scancel -u alice -p debug`) and the
# partition set UP again; the cluster is left up (stop it with
# TIERGATE_CLUSTER_DIR=$BENCH_CLUSTER_DIR slurm-test-cluster/down).  Raw
# outputs stay in the printed directory.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${1:-10000}
INTERVALS=${2:-10}
CLIENTS=${3:-1000}
ROUNDS=${4:-2}
SITE=${BENCH_SITE:-alpha}
PI=${BENCH_POLL_INTERVAL:-2}
# our own cluster, never an inherited TIERGATE_CLUSTER_DIR (see gateway-get.sh)
export TIERGATE_CLUSTER_DIR=${BENCH_CLUSTER_DIR:-/tmp/tiergate-bench-cluster}
export PORT_BASE=${BENCH_PORT_BASE:-14817}
export TIERGATE_PORT=${BENCH_GATEWAY_PORT:-8580}
for t in curl python3 squeue sdiag scontrol scancel; do
	command -v "$t" >/dev/null || { echo "$t missing (make deps)" >&2; exit 1; }
done
BIN=${BENCH_TIERGATED:-build/gateway/tiergated}
[ -x "$BIN" ] || { echo "build first: make -j2 all" >&2; exit 1; }

OUT=$(mktemp -d /tmp/tiergate-bench-poll.XXXXXX)
cp "$BIN" "$OUT/tiergated"
export TIERGATED=$OUT/tiergated
MAXJ=$((JOBS + 2000 > 10000 ? JOBS + 2000 : 10000))
{
	echo "date: $(date -u +%FT%TZ)"
	echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo -) modified: $(git status --short -- gateway shared 2>/dev/null | awk '{print $2}' | xargs)"
	echo "tiergated: $BIN (sha256 $(sha256sum "$TIERGATED" | cut -c1-16))"
	echo "jobs $JOBS, $INTERVALS intervals of ${PI} s per phase, clients 0/1/$CLIENTS, $ROUNDS rounds; MaxJobCount $MAXJ; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT/info"

exports=$(TIERGATE_MAX_JOB_COUNT=$MAXJ TIERGATE_POLL_INTERVAL=$PI \
	slurm-test-cluster/up --fresh --sites "$SITE" --with-gateway 2>"$OUT/up.log") ||
	{ cat "$OUT/up.log" >&2; exit 1; }
eval "$exports"
U=${SITE^^}
CONF=SITE_${U}_SLURM_CONF
export SLURM_CONF=${!CONF}
GW_DIR=$TIERGATE_CLUSTER_DIR/gateway
LOG0=$(stat -c %s "$GW_DIR/tiergated.log")
echo "slurmctld: $(scontrol show config | grep -E '^(MaxJobCount|MinJobAge) ' | tr -s ' ' | xargs); poll_interval $(grep poll_interval "$GW_DIR/tiergated.conf")"
# shellcheck disable=SC2317 # called by the trap
finish() {
	scancel -u alice -p debug 2>/dev/null || true
	scontrol update partitionname=debug state=up || true
}
trap finish EXIT
scontrol update partitionname=debug state=down

export SITE
JOBS=$JOBS INTERVALS=$INTERVALS CLIENTS=$CLIENTS ROUNDS=$ROUNDS POLL_INTERVAL=$PI \
	BATCH=${BENCH_SUBMIT_BATCH:-500} OUT=$OUT GW_URL=$TIERGATE_URL TOKEN=$TIERGATE_TOKEN_ALICE PAUSE=${BENCH_CLIENT_PAUSE:-0} \
	GW_PID=$(cat "$GW_DIR/tiergated.pid") SITE_DIR=$TIERGATE_CLUSTER_DIR/$SITE \
	python3 bench/poll-client.py
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
tail -c +"$((LOG0 + 1))" "$GW_DIR/tiergated.log" | grep -v ' info: ' >"$OUT/gw-log-not-info" || true
echo "gateway log during the bench: $(wc -l <"$OUT/gw-log-not-info") lines other than info (in $OUT/gw-log-not-info)"
head -5 "$OUT/gw-log-not-info"
echo "raw: $OUT"
