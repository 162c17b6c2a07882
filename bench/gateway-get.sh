#!/usr/bin/env bash
# GET /v1/jobs/{id} through tiergated against nginx (one worker) serving the
# same JSON body, same machine, same run, rounds interleaved.
#
#   bench/gateway-get.sh [ROUNDS] [SECONDS]          (default 3 rounds x 10 s)
#   BENCH_CONNS=256 BENCH_THREADS=2                  wrk -c / -t
#   BENCH_CONNS_LOW=32                               a second level, 0 = none
#   BENCH_CLUSTER_DIR=/tmp/tiergate-bench-cluster BENCH_PORT_BASE=14817
#   BENCH_GATEWAY_PORT=8580 BENCH_NGINX_PORT=18580 BENCH_SITE=alpha
#   BENCH_TIERGATED=build/gateway/tiergated          the daemon measured
#
# The bench uses its own cluster (never the default one the integration
# tests use): `up --sites SITE --with-gateway` under BENCH_CLUSTER_DIR.  It
# submits one job with the CLI, waits for it to finish, fetches its JSON
# once and gives that file to nginx (application/json, keep-alive, access
# log off, like shared/slurm-facts/baselines.md section 5).  Each round runs
# `wrk -tT -cC -dS --latency -H "Authorization: Bearer <alice>"` against both
# servers (order alternating per round; nginx ignores the header, so both
# get the same request bytes).  Around each gateway run it reads /metrics
# (loop lag and step quantiles, loop turns) and the CPU time (utime+stime,
# /proc/PID/stat) of tiergated, the nginx worker and wrk.
#
# At -c256 a closed-loop client's latency is set by the throughput (Little:
# mean = 256 / req/s, 8.8 ms at 29k req/s), so each round also runs at
# BENCH_CONNS_LOW connections, where the tail shows stalls, not queueing.
#
# Prints per-round figures, the medians, the ratio gateway/nginx (goal
# >= 0.5), the gateway's p99 (goal <= 5 ms) and its loop lag (goal p99 <= 5
# ms, max <= 50 ms).  The cluster is left up (stop it with
# TIERGATE_CLUSTER_DIR=$BENCH_CLUSTER_DIR slurm-test-cluster/down); nginx
# is stopped.  Raw outputs stay in the printed directory.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
DUR=${2:-10}
CONNS=${BENCH_CONNS:-256}
CONNS_LOW=${BENCH_CONNS_LOW:-32} # a second, unsaturated level (0: none)
THREADS=${BENCH_THREADS:-2}
SITE=${BENCH_SITE:-alpha}
# our own cluster: an inherited TIERGATE_CLUSTER_DIR (from eval of `up`'s
# exports) is ignored on purpose, so a bench never restarts the test cluster's
# gateway
export TIERGATE_CLUSTER_DIR=${BENCH_CLUSTER_DIR:-/tmp/tiergate-bench-cluster}
export PORT_BASE=${BENCH_PORT_BASE:-14817}
export TIERGATE_PORT=${BENCH_GATEWAY_PORT:-8580}
NGINX_PORT=${BENCH_NGINX_PORT:-$((TIERGATE_PORT + 10000))}
for t in wrk nginx curl python3; do
	command -v "$t" >/dev/null || { echo "$t missing (make deps)" >&2; exit 1; }
done
BIN=${BENCH_TIERGATED:-build/gateway/tiergated}
if [ ! -x "$BIN" ] || [ ! -x build/gateway/tiergate ]; then
	echo "build first: make -j2 all" >&2
	exit 1
fi
if ss -Hltn "sport = :$NGINX_PORT" | grep -q .; then
	echo "port $NGINX_PORT is in use (BENCH_NGINX_PORT)" >&2
	exit 1
fi

OUT=$(mktemp -d /tmp/tiergate-bench-get.XXXXXX)
chmod 755 "$OUT" # nginx's worker (nobody) reads www/
# the binary measured: a copy, so a rebuild by someone else mid-run does not
# mix two builds (gateway-up honours TIERGATED)
cp "$BIN" "$OUT/tiergated"
export TIERGATED=$OUT/tiergated
NGINX_PID=
cleanup() {
	if [ -n "$NGINX_PID" ] && kill -QUIT "$NGINX_PID" 2>/dev/null; then
		for _ in $(seq 1 50); do # our child: a zombie until waited for
			case $(ps -o stat= -p "$NGINX_PID" 2>/dev/null) in "" | Z*) break ;; esac
			sleep 0.1
		done
		kill -KILL "$NGINX_PID" 2>/dev/null || true
		wait "$NGINX_PID" 2>/dev/null || true
	fi
}
trap cleanup EXIT

{
	echo "date: $(date -u +%FT%TZ)"
	echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo -) modified: $(git status --short -- gateway shared 2>/dev/null | awk '{print $2}' | xargs)"
	echo "tiergated: $BIN (sha256 $(sha256sum "$TIERGATED" | cut -c1-16))"
	echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT/info"

exports=$(slurm-test-cluster/up --sites "$SITE" --with-gateway 2>"$OUT/up.log") ||
	{ cat "$OUT/up.log" >&2; exit 1; }
eval "$exports"
GW_DIR=$TIERGATE_CLUSTER_DIR/gateway
GW_PID=$(cat "$GW_DIR/tiergated.pid")
LOG0=$(stat -c %s "$GW_DIR/tiergated.log")
TOKEN=$TIERGATE_TOKEN_ALICE

# one job, finished, so its JSON no longer changes
printf '#!/bin/bash\necho bench\n' >"$OUT/job.sh"
ID=$(TIERGATE_URL=$TIERGATE_URL TIERGATE_TOKEN=$TOKEN build/gateway/tiergate \
	submit --site "$SITE" --tier basic --name bench-get "$OUT/job.sh")
state=
for _ in $(seq 1 600); do
	state=$(curl -s -H "Authorization: Bearer $TOKEN" "$TIERGATE_URL/v1/jobs/$ID" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
	case $state in completed | failed | cancelled | timeout | rejected | unknown) break ;; esac
	sleep 0.1
done
echo "job $ID: $state"

# nginx, one worker, the same body
mkdir -p "$OUT/nginx/www" "$OUT/nginx/tmp"
curl -sf -H "Authorization: Bearer $TOKEN" -o "$OUT/nginx/www/job.json" "$TIERGATE_URL/v1/jobs/$ID"
chmod -R a+rX "$OUT/nginx"
cat >"$OUT/nginx/nginx.conf" <<CONF
worker_processes 1;
pid $OUT/nginx/nginx.pid;
error_log $OUT/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    client_body_temp_path $OUT/nginx/tmp/body;
    proxy_temp_path $OUT/nginx/tmp/proxy;
    fastcgi_temp_path $OUT/nginx/tmp/fastcgi;
    uwsgi_temp_path $OUT/nginx/tmp/uwsgi;
    scgi_temp_path $OUT/nginx/tmp/scgi;
    types { application/json json; }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $OUT/nginx/www;
        location / { }
    }
}
CONF
nginx -c "$OUT/nginx/nginx.conf" -g 'daemon off;' >"$OUT/nginx/stdout.log" 2>&1 </dev/null &
NGINX_PID=$!
for _ in $(seq 1 100); do
	curl -sf -o "$OUT/nginx.body" "http://127.0.0.1:$NGINX_PORT/job.json" && break
	sleep 0.05
done
cmp -s "$OUT/nginx.body" "$OUT/nginx/www/job.json" || { echo "nginx does not serve the body" >&2; exit 1; }
NGINX_WORKER=$(pgrep -P "$NGINX_PID" | head -1)
curl -s -D "$OUT/gw.headers" -o /dev/null -H "Authorization: Bearer $TOKEN" "$TIERGATE_URL/v1/jobs/$ID"
curl -s -D "$OUT/nginx.headers" -o /dev/null "http://127.0.0.1:$NGINX_PORT/job.json"
echo "body $(stat -c %s "$OUT/nginx/www/job.json") B; response headers: gateway $(stat -c %s "$OUT/gw.headers") B, nginx $(stat -c %s "$OUT/nginx.headers") B"

GW_URL="$TIERGATE_URL/v1/jobs/$ID" NGINX_URL="http://127.0.0.1:$NGINX_PORT/job.json" \
	METRICS_URL="$TIERGATE_URL/metrics" TOKEN="$TOKEN" ROUNDS="$ROUNDS" DUR="$DUR" \
	CONNS="$CONNS" CONNS_LOW="$CONNS_LOW" THREADS="$THREADS" GW_PID="$GW_PID" NGINX_WORKER="$NGINX_WORKER" \
	GW_LOG="$GW_DIR/tiergated.log" OUT="$OUT" python3 - <<'PY'
import json, os, re, statistics, subprocess, sys, time, urllib.request

E = os.environ
rounds, dur, conns, threads = int(E["ROUNDS"]), int(E["DUR"]), int(E["CONNS"]), int(E["THREADS"])
low = int(E["CONNS_LOW"])
out = E["OUT"]
gw_pid, ng_pid = int(E["GW_PID"]), int(E["NGINX_WORKER"])
HZ = os.sysconf("SC_CLK_TCK")
UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def ticks(pid):
    s = open(f"/proc/{pid}/stat").read()
    f = s[s.rindex(")") + 2:].split()
    if f[0] == "Z":
        sys.exit(f"pid {pid} is a zombie: the server died")
    return int(f[11]) + int(f[12])


def box():
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return f[0] + f[1] + f[2] + f[5] + f[6], f[7]


def metrics():
    for _ in range(50):  # the previous run's sockets may still count
        try:
            txt = urllib.request.urlopen(E["METRICS_URL"], timeout=5).read().decode()
            break
        except Exception:
            time.sleep(0.1)
    else:
        return {}
    m = {}
    for line in txt.splitlines():
        g = re.match(r'^tiergate_loop_(lag|step)_seconds\{quantile="([\d.]+)"\} ([\d.e+-]+)', line)
        if g:
            m[f"{g[1]}_{g[2]}"] = float(g[3]) * 1000
        g = re.match(r"^tiergate_loop_turns_total (\d+)", line)
        if g:
            m["turns"] = int(g[1])
    return m


def wrk(name, url, r, c):
    pid = gw_pid if name == "gateway" else ng_pid
    cmd = ["wrk", f"-t{threads}", f"-c{c}", f"-d{dur}s", "--latency",
           "-H", f"Authorization: Bearer {E['TOKEN']}", url]
    m0 = metrics() if name == "gateway" else {}
    log0 = os.path.getsize(E["GW_LOG"])
    c0, (b0, st0) = ticks(pid), box()
    r0 = os.times()
    t0 = time.time()
    txt = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    wall = time.time() - t0
    r1 = os.times()
    c1, (b1, st1) = ticks(pid), box()
    m1 = metrics() if name == "gateway" else {}
    open(f"{out}/wrk-{name}-c{c}-{r}.txt", "w").write(txt)
    res = {"name": name, "round": r, "c": c}
    res["rps"] = float(re.search(r"Requests/sec:\s+([\d.]+)", txt)[1])
    res["requests"] = int(re.search(r"(\d+) requests in", txt)[1])
    for p in ("50", "90", "99"):
        g = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s|m)\s*$", txt, re.M)
        res[f"p{p}"] = float(g[1]) * UNIT[g[2]]
    g = re.search(r"Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s|m)", txt)
    res["max"] = float(g[1]) * UNIT[g[2]]
    g = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", txt)
    res["sock_err"] = sum(map(int, g.groups())) if g else 0
    g = re.search(r"Non-2xx or 3xx responses: (\d+)", txt)
    res["non2xx"] = int(g[1]) if g else 0
    res["cpu_srv"] = 100.0 * (c1 - c0) / HZ / wall
    res["cpu_wrk"] = 100.0 * ((r1.children_user - r0.children_user) + (r1.children_system - r0.children_system)) / wall
    res["cpu_box"] = 100.0 * (b1 - b0) / HZ / wall
    res["steal"] = 100.0 * (st1 - st0) / HZ / wall
    res["us_per_req"] = 1e6 * (c1 - c0) / HZ / max(res["requests"], 1)
    if name == "gateway":
        res.update({k: v for k, v in m1.items() if k != "turns"})
        turns = m1.get("turns", 0) - m0.get("turns", 0)
        res["turns"] = turns
        res["turn_ms"] = 1000.0 * wall / turns if turns else float("nan")
        res["req_per_turn"] = res["requests"] / turns if turns else float("nan")
        res["log_B_per_req"] = (os.path.getsize(E["GW_LOG"]) - log0) / max(res["requests"], 1)
    res["load1"] = float(open("/proc/loadavg").read().split()[0])
    return res


rows = []
levels = [conns] + ([low] if low else [])
for r in range(1, rounds + 1):
    order = ("nginx", "gateway") if r % 2 else ("gateway", "nginx")
    for c in levels:
      for name in order:
        time.sleep(2)  # let the previous run's connections close
        url = E["NGINX_URL"] if name == "nginx" else E["GW_URL"]
        res = wrk(name, url, r, c)
        rows.append(res)
        extra = ""
        if name == "gateway":
            extra = (f" | lag p50 {res.get('lag_0.5', 0):.3f} p99 {res.get('lag_0.99', 0):.2f} max {res.get('lag_1', 0):.2f} ms"
                     f"; step p99 {res.get('step_0.99', 0):.2f} max {res.get('step_1', 0):.2f} ms"
                     f"; {res['turns']} turns, {res['turn_ms']:.2f} ms/turn, {res['req_per_turn']:.0f} req/turn"
                     f"; log {res['log_B_per_req']:.0f} B/req")
        print(f"round {r} c={c:<3d} {name:7s} {res['rps']:9.0f} req/s  p50 {res['p50']:6.2f}  p90 {res['p90']:6.2f}  "
              f"p99 {res['p99']:6.2f}  max {res['max']:7.2f} ms  err {res['sock_err']}/{res['non2xx']}  "
              f"CPU% srv {res['cpu_srv']:.0f} wrk {res['cpu_wrk']:.0f} box {res['cpu_box']:.0f} steal {res['steal']:.0f}"
              f"  {res['us_per_req']:.1f} us CPU/req  load1 {res['load1']:.2f}{extra}", flush=True)
json.dump(rows, open(f"{out}/results.json", "w"), indent=1)


def med(name, k, c=conns):
    v = [x[k] for x in rows if x["name"] == name and x["c"] == c and k in x]
    return statistics.median(v) if v else float("nan")


g, n = "gateway", "nginx"
for c in levels:
    pair = [a["rps"] / b["rps"] for a in rows if a["name"] == g and a["c"] == c
            for b in rows if b["name"] == n and b["c"] == c and b["round"] == a["round"]]
    print(f"c={c} median of {rounds}: nginx {med(n, 'rps', c):.0f} req/s p50 {med(n, 'p50', c):.2f} p99 {med(n, 'p99', c):.2f} ms; "
          f"gateway {med(g, 'rps', c):.0f} req/s p50 {med(g, 'p50', c):.2f} p99 {med(g, 'p99', c):.2f} ms; "
          f"ratio gateway/nginx {med(g, 'rps', c) / med(n, 'rps', c):.3f} (per round: {', '.join(f'{p:.3f}' for p in pair)}); "
          f"CPU/req gateway {med(g, 'us_per_req', c):.1f} us, nginx {med(n, 'us_per_req', c):.1f} us; "
          f"gateway mean turn {med(g, 'turn_ms', c):.2f} ms, {med(g, 'req_per_turn', c):.0f} req/turn")
c = conns
print(f"c={c}: ratio gateway/nginx req/s {med(g, 'rps') / med(n, 'rps'):.3f} (goal >= 0.5); gateway p99 {med(g, 'p99'):.2f} ms (goal <= 5)")
print(f"c={c}: loop lag p99 {med(g, 'lag_0.99'):.2f} ms (goal <= 5), max {max(x.get('lag_1', 0) for x in rows if x['c'] == c):.2f} ms (goal <= 50); "
      f"step p99 {med(g, 'step_0.99'):.2f} ms, max {max(x.get('step_1', 0) for x in rows if x['c'] == c):.2f} ms "
      "(/metrics after each c=%d run: its 60-120 s window)" % c)
bad = sum(x["sock_err"] + x["non2xx"] for x in rows)
print(f"socket errors + non-2xx over all runs: {bad}")
PY
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
ps -o stat= -p "$GW_PID" | grep -qv Z || { echo "tiergated (pid $GW_PID) is gone" >&2; exit 1; }
tail -c +"$((LOG0 + 1))" "$GW_DIR/tiergated.log" | grep -v ' info: ' >"$OUT/gw-log-not-info" || true
echo "gateway log during the bench: $(wc -l <"$OUT/gw-log-not-info") lines other than info (in $OUT/gw-log-not-info; log $GW_DIR/tiergated.log)"
head -5 "$OUT/gw-log-not-info"
echo "raw: $OUT"
