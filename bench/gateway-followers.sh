#!/usr/bin/env bash
# Followers of a job's output through tiergated: memory per follower and
# throughput per stream.
#
#   bench/gateway-followers.sh [ROUNDS] [FOLLOWERS] [MB]   (default 2 5000 100)
#   BENCH_CLUSTER_DIR=/tmp/tiergate-bench-cluster BENCH_PORT_BASE=14817
#   BENCH_GATEWAY_PORT=8580 BENCH_SITE=alpha
#   BENCH_TIERGATED=build/gateway/tiergated          the daemon measured
#
# Memory (goal <= 16 KiB per follower): one job prints a line every 0.5 s.
# A warm-up swarm of 50 followers comes and goes, then RSS of tiergated
# (VmRSS) is read, FOLLOWERS followers connect (tests/integration/
# sse_swarm.py, one address), get a few live lines, and RSS is read again:
# (with - before) / FOLLOWERS.  Also the daemon's CPU time while they sit
# there for 5 s (what waiting followers cost), and RSS after they left.
# The first round's figure is the one that counts (a fresh heap); later
# rounds reuse what the first one freed and show much less.
#
# Throughput (goal >= 50 MB/s per stream): a job writes MB MiB of text lines
# to stdout.  One follower connected before the job writes takes it live
# (first to last byte at the follower); /metrics' output byte counter,
# sampled every 50 ms, gives the plugin->gateway ingest rate in the same
# run (the baseline: a live follower cannot beat it).  After the job ended,
# one follower replays the whole stream from the store (the gateway's own
# rate), checked byte for byte against the job's file, and curl replays it
# as raw SSE (a C client: python's parsing out of the way).
#
# The bench uses its own cluster (never the test cluster): `up --fresh --sites SITE
# --with-gateway` under BENCH_CLUSTER_DIR, with max_connections raised for
# the swarm.  Prints per-round figures and medians; raw outputs stay in the
# printed directory.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
NF=${2:-5000}
MB=${3:-100}
SITE=${BENCH_SITE:-alpha}
export TIERGATE_CLUSTER_DIR=${BENCH_CLUSTER_DIR:-/tmp/tiergate-bench-cluster}
export PORT_BASE=${BENCH_PORT_BASE:-14817}
export TIERGATE_PORT=${BENCH_GATEWAY_PORT:-8580}
export TIERGATE_MAX_CONNECTIONS=$((NF + 500)) TIERGATE_MAX_CONNECTIONS_PER_IP=$((NF + 200))
for t in curl python3 jq; do
	command -v "$t" >/dev/null || { echo "$t missing (make deps)" >&2; exit 1; }
done
BIN=${BENCH_TIERGATED:-build/gateway/tiergated}
if [ ! -x "$BIN" ] || [ ! -x build/gateway/tiergate ]; then
	echo "build first: make -j2 all" >&2
	exit 1
fi
[ "$(ulimit -n)" -gt $((NF + 200)) ] || ulimit -n $((NF + 1000))
SWARM=tests/integration/sse_swarm.py

OUT=$(mktemp -d /tmp/tiergate-bench-followers.XXXXXX)
chmod 1777 "$OUT" # jobs run as alice and write their scripts' output here
cp "$BIN" "$OUT/tiergated"
export TIERGATED=$OUT/tiergated
SWARM_PID=
cleanup() {
	[ -z "$SWARM_PID" ] || kill "$SWARM_PID" 2>/dev/null || true
}
trap cleanup EXIT
{
	echo "date: $(date -u +%FT%TZ)"
	echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo -) modified: $(git status --short -- gateway shared 2>/dev/null | awk '{print $2}' | xargs)"
	echo "tiergated: $BIN (sha256 $(sha256sum "$TIERGATED" | cut -c1-16))"
	echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "followers: $NF, output: $MB MiB, rounds: $ROUNDS"
} | tee "$OUT/info"

exports=$(slurm-test-cluster/up --fresh --sites "$SITE" --with-gateway 2>"$OUT/up.log") ||
	{ cat "$OUT/up.log" >&2; exit 1; }
eval "$exports"
GW_PID=$(cat "$TIERGATE_CLUSTER_DIR/gateway/tiergated.pid")
TOKEN=$TIERGATE_TOKEN_ALICE
printf '%s' "$TOKEN" >"$OUT/token"
chmod 600 "$OUT/token"

tg() { TIERGATE_URL=$TIERGATE_URL TIERGATE_TOKEN=$TOKEN build/gateway/tiergate "$@"; }
state_of() { tg --json status "$1" | jq -r .state; }
wait_state() { # JOB STATE...: until the gateway shows one (120 s)
	local id=$1 st
	shift
	for _ in $(seq 1 1200); do
		st=$(state_of "$id")
		for w in "$@"; do [ "$st" = "$w" ] && return 0; done
		sleep 0.1
	done
	echo "job $id is $st, wanted $*" >&2
	return 1
}
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$GW_PID/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$GW_PID/stat"; }
median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

# ---------------------------------------------------------------- memory
cat >"$OUT/ticker.sh" <<'SH'
#!/bin/bash
for i in $(seq 1 1200); do echo "tick $i $(date +%s.%N)"; sleep 0.5; done
SH
chmod 755 "$OUT/ticker.sh"
ID=$(tg submit --site "$SITE" --tier basic --name bench-followers "$OUT/ticker.sh")
wait_state "$ID" running
for _ in $(seq 1 100); do # its first line reached the gateway
	timeout 5 curl -sN -H "Authorization: Bearer $TOKEN" "$TIERGATE_URL/v1/jobs/$ID/output" 2>/dev/null |
		grep -q '^event: output' && break
done
echo "memory: job $ID (a line every 0.5 s)"
python3 "$SWARM" "$TIERGATE_URL" "$ID" -n 50 --token-file "$OUT/token" \
	--ready-file "$OUT/warm.ready" --timeout 30 >"$OUT/warm.json" &
SWARM_PID=$!
for _ in $(seq 1 300); do [ -e "$OUT/warm.ready" ] && break; sleep 0.1; done
sleep 1
kill "$SWARM_PID" && wait "$SWARM_PID" || true
SWARM_PID=
sleep 1
for r in $(seq 1 "$ROUNDS"); do
	rm -f "$OUT/m$r.ready"
	before=$(rss_kb)
	t0=$(date +%s.%N)
	python3 "$SWARM" "$TIERGATE_URL" "$ID" -n "$NF" --token-file "$OUT/token" \
		--ready-file "$OUT/m$r.ready" --timeout 300 >"$OUT/m$r.json" &
	SWARM_PID=$!
	for _ in $(seq 1 3000); do [ -e "$OUT/m$r.ready" ] && break; sleep 0.1; done
	[ -e "$OUT/m$r.ready" ] || { echo "round $r: the swarm never got $NF streams" >&2; exit 1; }
	t_ready=$(echo "$(date +%s.%N) - $t0" | bc)
	sleep 3 # a few live lines for each
	c0=$(cpu_ticks)
	sleep 5
	c1=$(cpu_ticks)
	with=$(rss_kb)
	hz=$(getconf CLK_TCK)
	kill "$SWARM_PID"
	wait "$SWARM_PID" || true
	SWARM_PID=
	for _ in $(seq 1 100); do # the followers are gone
		n=$(curl -s -H "Authorization: Bearer $TIERGATE_TOKEN_ADMIN" "$TIERGATE_URL/debug/tasks" |
			jq '[.tasks[] | select(.kind == "follower")] | length')
		[ "$n" = 0 ] && break
		sleep 0.1
	done
	after=$(rss_kb)
	per=$(((with - before) * 1024 / NF))
	cpu=$(echo "scale=1; ($c1 - $c0) * 100 / $hz / 5" | bc)
	events=$(jq .output_events "$OUT/m$r.json")
	printf 'memory round %d: RSS before %d KiB, with %d followers %d KiB, after %d KiB: %d B per follower; all connected in %.1f s; CPU %s%% of one core while they wait; %s output events\n' \
		"$r" "$before" "$NF" "$with" "$after" "$per" "$t_ready" "$cpu" "$events" | tee -a "$OUT/memory"
	# the first round grows a fresh heap; later ones reuse what it freed
	if [ "$r" = 1 ]; then echo "$per" >"$OUT/per_follower_first"; else echo "$per" >>"$OUT/per_follower_later"; fi
	echo "$cpu" >>"$OUT/cpu_wait"
	sleep 1
done
tg cancel "$ID" >/dev/null || true

# ------------------------------------------------------------ throughput
cat >"$OUT/writer.sh" <<SH
#!/bin/bash
sleep 3 # the follower connects first
yes 'tiergate output throughput: a line of text, 0123456789 abcdefghijklmnopqrstuvwxyz' | head -c ${MB}M
SH
chmod 755 "$OUT/writer.sh"
# tiergate_output_bytes_total every 50 ms: "seconds bytes" lines
cat >"$OUT/sample.py" <<'PY'
import sys, time, urllib.request
url = sys.argv[1] + "/metrics"
while True:
    try:
        body = urllib.request.urlopen(url, timeout=2).read().decode()
    except Exception:
        time.sleep(0.05)
        continue
    for line in body.splitlines():
        if line.startswith("tiergate_output_bytes_total "):
            print("%.3f %s" % (time.time(), line.split()[1]), flush=True)
    time.sleep(0.05)
PY
for r in $(seq 1 "$ROUNDS"); do
	ID=$(tg submit --site "$SITE" --tier basic --name bench-output "$OUT/writer.sh")
	python3 "$OUT/sample.py" "$TIERGATE_URL" >"$OUT/t$r.ingest" &
	SAMPLER=$!
	python3 "$SWARM" "$TIERGATE_URL" "$ID" -n 1 --token-file "$OUT/token" \
		--state completed --timeout 600 >"$OUT/t$r.live.json"
	kill "$SAMPLER"
	wait "$SAMPLER" 2>/dev/null || true
	f=/tmp/tiergate-$ID.out
	size=$(stat -c %s "$f")
	python3 "$SWARM" "$TIERGATE_URL" "$ID" -n 1 --token-file "$OUT/token" \
		--ref "$f" --state completed --timeout 600 >"$OUT/t$r.replay.json" ||
		{ echo "replay of $ID failed: $(cat "$OUT/t$r.replay.json")" >&2; exit 1; }
	read -r sse_bytes t_first t_total < <(curl -sN -o /dev/null -H "Authorization: Bearer $TOKEN" \
		-w '%{size_download} %{time_starttransfer} %{time_total}\n' "$TIERGATE_URL/v1/jobs/$ID/output")
	# ingest: from the sample before the counter first moved to the first at its final value
	ingest=$(awk -v size="$size" 'NR == 1 {b0 = $2} {
			if (!t0 && $2 > b0) t0 = prev_t
			if (t0 && !t1 && $2 - b0 >= size) t1 = $1
			prev_t = $1
		} END {if (t0 && t1 > t0) printf "%.1f", size / (t1 - t0) / 1e6; else print "?"}' "$OUT/t$r.ingest")
	live=$(jq --argjson s "$size" '$s / .first_to_last_s / 1e6 * 100 | round / 100' "$OUT/t$r.live.json")
	replay=$(jq --argjson s "$size" '$s / .first_to_last_s / 1e6 * 100 | round / 100' "$OUT/t$r.replay.json")
	curl_rate=$(echo "scale=1; $sse_bytes * 3 / 4 / ($t_total - $t_first) / 1000000" | bc)
	printf 'throughput round %d: %d bytes; ingest (plugin -> gateway) %s MB/s; live follower %s MB/s; replay: python follower %s MB/s (verified), curl %s MB/s (payload of %d SSE bytes)\n' \
		"$r" "$size" "$ingest" "$live" "$replay" "$curl_rate" "$sse_bytes" | tee -a "$OUT/throughput"
	echo "$ingest" >>"$OUT/ingest"
	echo "$live" >>"$OUT/live"
	echo "$replay" >>"$OUT/replay"
	echo "$curl_rate" >>"$OUT/curl"
done

echo
echo "=== medians over $ROUNDS rounds (raw: $OUT)"
echo "memory per follower at $NF followers: $(cat "$OUT/per_follower_first") B in the first round (goal <= 16384), $( [ -s "$OUT/per_follower_later" ] && median <"$OUT/per_follower_later" || echo -) B in later rounds (memory reused); CPU while they wait: $(median <"$OUT/cpu_wait") % of one core"
echo "throughput per stream: ingest $(median <"$OUT/ingest") MB/s; live follower $(median <"$OUT/live") MB/s; replay $(median <"$OUT/replay") MB/s (python), $(median <"$OUT/curl") MB/s (curl) (goal >= 50)"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
