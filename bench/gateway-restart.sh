#!/usr/bin/env bash
# tiergated restart with 100 000 jobs in its store: time from starting the
# daemon to its first successful GET /healthz and to its first successful
# authenticated GET /v1/jobs?limit=1 (goal <= 2 s), and its RSS once
# serving, against baselines measured in the same run on the same file:
# `sqlite3 DB 'select count(*) from jobs'` and a full scan
# `sqlite3 DB 'select * from jobs' >/dev/null`; and the same daemon on an
# empty store (its fixed start-up cost and base RSS).
#
#   bench/gateway-restart.sh [ROUNDS] [JOBS]          (default 3, 100000)
#   BENCH_CLUSTER_DIR=/tmp/tiergate-bench-cluster BENCH_PORT_BASE=14817
#   BENCH_GATEWAY_PORT=8580 BENCH_RESTART_PORT=<gateway port + 1> BENCH_SITE=alpha
#   BENCH_TIERGATED=build/gateway/tiergated          the daemon measured
#
# The bench brings up its own cluster with the gateway (`up --sites SITE
# --with-gateway` under BENCH_CLUSTER_DIR) for the config and the tokens,
# and leaves that gateway and its store alone: the measured daemon is a
# copy of build/gateway/tiergated with the cluster gateway's config, except
# `state_dir` (a temp dir) and `listen` (BENCH_RESTART_PORT).  It creates
# the schema by starting that daemon once on an empty state dir, stops it,
# and fills a copy with JOBS finished jobs in one sqlite3 transaction (rows
# shaped like the gateway's own: completed 90 %, failed 6 %, cancelled 3 %,
# timeout 1 %; users alice/bob/carol; a request body of ~300 B each; one
# job every 25 s over 30 days).  Unfinished jobs are not generated: each
# would start a job task that talks to the site.
#
# Each round, in alternating order: the two sqlite3 baselines, a restart on
# the 100k store, a restart on the empty store.  A restart: SIGTERM
# (drained) the previous one, start the daemon, poll /healthz and then
# /v1/jobs?limit=1 (alice's token) every 1 ms; then read `ps -o rss=`, time
# two list requests (alice limit=100; admin state=running, which matches
# nothing and walks every job), SIGTERM and time the exit.  Page cache warm
# (the file was just written or read).  Raw outputs stay in the printed
# directory; the 100k database is deleted unless BENCH_KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
NJOBS=${2:-100000}
SITE=${BENCH_SITE:-alpha}
# our own cluster, never an inherited TIERGATE_CLUSTER_DIR (see gateway-get.sh)
export TIERGATE_CLUSTER_DIR=${BENCH_CLUSTER_DIR:-/tmp/tiergate-bench-cluster}
export PORT_BASE=${BENCH_PORT_BASE:-14817}
export TIERGATE_PORT=${BENCH_GATEWAY_PORT:-8580}
BPORT=${BENCH_RESTART_PORT:-$((TIERGATE_PORT + 1))}
for t in sqlite3 curl python3; do
	command -v "$t" >/dev/null || { echo "$t missing (make deps)" >&2; exit 1; }
done
BIN=${BENCH_TIERGATED:-build/gateway/tiergated}
[ -x "$BIN" ] || { echo "build first: make -j2 all" >&2; exit 1; }
if ss -Hltn "sport = :$BPORT" | grep -q .; then
	echo "port $BPORT is in use (BENCH_RESTART_PORT)" >&2
	exit 1
fi

OUT=$(mktemp -d /tmp/tiergate-bench-restart.XXXXXX)
# the binary measured: a copy, so a rebuild mid-run does not mix two builds
cp "$BIN" "$OUT/tiergated"
TIERGATED=$OUT/tiergated
cleanup() {
	# a daemon of ours still running (the python driver stops its own)
	if [ -s "$OUT/schema.pid" ] && kill -0 "$(cat "$OUT/schema.pid")" 2>/dev/null; then
		kill "$(cat "$OUT/schema.pid")" 2>/dev/null || true
	fi
	[ "${BENCH_KEEP:-0}" = 1 ] || rm -f "$OUT"/state-100k/tiergated.db*
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

for v in empty 100k; do
	mkdir -p "$OUT/state-$v"
	sed -e "s#^state_dir = .*#state_dir = $OUT/state-$v#" \
		-e "s#^listen = .*#listen = 127.0.0.1:$BPORT#" "$TIERGATED_CONF" >"$OUT/tiergated-$v.conf"
	if ! grep -q "^state_dir = $OUT/state-$v\$" "$OUT/tiergated-$v.conf" ||
		! grep -q "^listen = 127.0.0.1:$BPORT\$" "$OUT/tiergated-$v.conf"; then
		echo "could not rewrite $TIERGATED_CONF" >&2
		exit 1
	fi
done

# the schema, made by the daemon itself (its migrations)
"$TIERGATED" -c "$OUT/tiergated-empty.conf" >>"$OUT/tiergated-schema.log" 2>&1 </dev/null &
echo $! >"$OUT/schema.pid"
for _ in $(seq 1 200); do
	curl -sf -o /dev/null "http://127.0.0.1:$BPORT/healthz" && break
	sleep 0.02
done
kill "$(cat "$OUT/schema.pid")"
wait "$(cat "$OUT/schema.pid")" || { echo "tiergated (schema run) failed:" >&2; cat "$OUT/tiergated-schema.log" >&2; exit 1; }
rm -f "$OUT/schema.pid"
cp "$OUT/state-empty/tiergated.db" "$OUT/state-100k/tiergated.db"

DB=$OUT/state-100k/tiergated.db
NOW=$(date +%s)
t0=$(date +%s%N)
sqlite3 "$DB" <<SQL
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $NJOBS),
r AS (
  SELECT i,
    printf('j-%012x', (i * 2654435761) % 281474976710656) AS id,
    CASE WHEN i % 10 < 6 THEN 'alice' WHEN i % 10 < 9 THEN 'bob' ELSE 'carol' END AS user,
    CASE WHEN i % 10 < 6 AND i % 3 = 0 THEN 'premium' ELSE 'basic' END AS tier,
    CASE WHEN i % 100 < 90 THEN 'completed' WHEN i % 100 < 96 THEN 'failed'
         WHEN i % 100 < 99 THEN 'cancelled' ELSE 'timeout' END AS state,
    $NOW - 30 * 86400 + i * (30 * 86400 / $NJOBS) AS created,
    (i % 600) + 0.25 AS cpu
  FROM n),
b AS (
  SELECT r.*, json_object('name', 'sim-' || i,
      'script', '#!/bin/bash' || char(10) || '#SBATCH --output=out-%j.txt' || char(10) ||
        'module load python/3.11' || char(10) || 'srun python3 analyse.py --input data/part-' ||
        (i % 5000) || '.csv --out results/' || i || '.json' || char(10),
      'site', 'alpha', 'tier', tier,
      'resources', json_object('ntasks', 1, 'cpus_per_task', 1 + i % 4, 'time_limit_min', 30),
      'environment', json_object('RUN', 'sim-' || i)) AS body
  FROM r)
INSERT INTO jobs (id, site, slurm_job_id, user, tier, name, state, slurm_state, reason,
  exit_code, signal, request_body, idem_key, body_hash, cancel_requested, ended_by,
  error_code, error_message, request_id, created_at, updated_at, cpu_seconds, charge,
  submit_attempts, tag, intent, intent_at)
SELECT id, 'alpha', 10000000 + i, user, tier, 'sim-' || i, state, upper(state),
  CASE state WHEN 'timeout' THEN 'TimeLimit' ELSE 'None' END,
  CASE state WHEN 'completed' THEN 0 WHEN 'failed' THEN 1 ELSE NULL END,
  CASE state WHEN 'cancelled' THEN 15 WHEN 'timeout' THEN 9 ELSE NULL END,
  body, CASE WHEN i % 4 = 0 THEN 'idem-' || i ELSE NULL END, lower(hex(sha3(body, 256))),
  state = 'cancelled', CASE state WHEN 'cancelled' THEN 'user:' || user ELSE 'site' END,
  NULL, NULL, printf('r-%016x', random()),
  created, created + 60 + i % 3600, cpu, cpu * CASE tier WHEN 'premium' THEN 3.0 ELSE 1.0 END,
  1, id, NULL, created
FROM b;
COMMIT;
SQL
t1=$(date +%s%N)
n=$(sqlite3 "$DB" 'select count(*) from jobs')
[ "$n" = "$NJOBS" ] || { echo "expected $NJOBS rows, found $n" >&2; exit 1; }
echo "store: $n jobs, $(du -k "$DB" | cut -f1) KiB, generated in $(((t1 - t0) / 1000000)) ms" |
	tee -a "$OUT/info"
sqlite3 "$DB" "select state, count(*) from jobs group by state" | xargs | sed 's/^/states: /'

DAEMON=$TIERGATED PORT=$BPORT OUT=$OUT ROUNDS=$ROUNDS DB=$DB NJOBS=$NJOBS \
	TOKEN=$TIERGATE_TOKEN_ALICE ADMIN=$TIERGATE_TOKEN_ADMIN python3 - <<'PY'
import http.client, json, os, re, signal, statistics, subprocess, sys, time

E = os.environ
out, port, rounds, db = E["OUT"], int(E["PORT"]), int(E["ROUNDS"]), E["DB"]
hdr = {"Authorization": "Bearer " + E["TOKEN"]}
adm = {"Authorization": "Bearer " + E["ADMIN"]}


def get(path, h=None, timeout=5):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers=h or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def timed(cmd):
    t0 = time.perf_counter()
    subprocess.run(cmd, shell=True, check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - t0) * 1000


def restart(variant):
    log = f"{out}/tiergated-{variant}.log"
    size0 = os.path.getsize(log) if os.path.exists(log) else 0
    lf = open(log, "ab")
    t0 = time.perf_counter()
    p = subprocess.Popen([E["DAEMON"], "-c", f"{out}/tiergated-{variant}.conf"],
                         stdin=subprocess.DEVNULL, stdout=lf, stderr=lf, start_new_session=True)
    res = {"variant": variant}
    try:
        for what, path, h in (("healthz", "/healthz", None), ("jobs", "/v1/jobs?limit=1", hdr)):
            while True:
                if p.poll() is not None:
                    sys.exit(f"tiergated exited {p.returncode} while starting; see {log}")
                if time.perf_counter() - t0 > 60:
                    sys.exit(f"tiergated not serving {path} after 60 s; see {log}")
                try:
                    st, body = get(path, h)
                except OSError:
                    time.sleep(0.001)
                    continue
                if st == 200:
                    break
                time.sleep(0.001)
            res[what] = (time.perf_counter() - t0) * 1000
            if what == "jobs":
                n = len(json.loads(body)["jobs"])
                if n != (1 if variant == "100k" else 0):
                    sys.exit(f"GET /v1/jobs?limit=1 gave {n} jobs")
        res["rss_mb"] = int(subprocess.run(["ps", "-o", "rss=", "-p", str(p.pid)], capture_output=True,
                                           text=True, check=True).stdout) / 1024
        for name, path, h in (("list_alice_100", "/v1/jobs?limit=100", hdr),
                              ("list_scan_all", "/v1/jobs?state=running&limit=1", adm)):
            ts = []
            for _ in range(5):
                t = time.perf_counter()
                st, _b = get(path, h)
                ts.append((time.perf_counter() - t) * 1000)
                if st != 200:
                    sys.exit(f"{path}: HTTP {st}")
            res[name] = statistics.median(ts)
        res["rss_after_lists_mb"] = int(subprocess.run(["ps", "-o", "rss=", "-p", str(p.pid)], capture_output=True,
                                                       text=True, check=True).stdout) / 1024
        st, m = get("/metrics")
        g = re.search(rb'tiergate_loop_step_seconds\{quantile="1"\} ([\d.]+)', m)
        res["step_max"] = float(g[1]) * 1000 if g else float("nan")
    finally:
        t = time.perf_counter()
        p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = p.wait()
            res["stop_killed"] = True
        res["stop"] = (time.perf_counter() - t) * 1000
        res["rc"] = rc
        lf.close()
    txt = open(log, "rb").read()[size0:].decode(errors="replace")
    g = re.search(r"(\d+) jobs loaded from \S+ in (\d+) ms", txt)
    res["load_logged"] = int(g[2]) if g else float("nan")
    res["loaded"] = int(g[1]) if g else -1
    res["not_info"] = [l for l in txt.splitlines() if " info: " not in l]
    return res


rows = []
for r in range(1, rounds + 1):
    steps = ["count", "scan", "100k", "empty"]
    if r % 2 == 0:
        steps.reverse()
    for s in steps:
        if s == "count":
            rows.append({"variant": s, "ms": timed(f"sqlite3 '{db}' 'select count(*) from jobs'")})
        elif s == "scan":
            rows.append({"variant": s, "ms": timed(f"sqlite3 '{db}' 'select * from jobs' >/dev/null")})
        else:
            rows.append(restart(s))
        x = rows[-1]
        if "ms" in x:
            print(f"round {r} sqlite3 {s:5s} {x['ms']:8.1f} ms", flush=True)
        else:
            print(f"round {r} restart {s:5s} healthz {x['healthz']:7.1f} ms  jobs?limit=1 {x['jobs']:7.1f} ms  "
                  f"(logged load {x['load_logged']} ms, {x['loaded']} jobs)  RSS {x['rss_mb']:.1f} MiB "
                  f"({x['rss_after_lists_mb']:.1f} after lists)  list alice limit=100 {x['list_alice_100']:.1f} ms, "
                  f"scan-all list {x['list_scan_all']:.1f} ms, step max {x['step_max']:.1f} ms  "
                  f"stop {x['stop']:.0f} ms rc {x['rc']}  log lines not info: {len(x['not_info'])}", flush=True)
            for l in x["not_info"][:5]:
                print("   ", l)
json.dump(rows, open(f"{out}/results.json", "w"), indent=1)


def med(v, k):
    return statistics.median(x[k] for x in rows if x["variant"] == v)


print(f"median of {rounds}, {E['NJOBS']} jobs: start -> /healthz {med('100k', 'healthz'):.0f} ms, "
      f"-> GET /v1/jobs?limit=1 {med('100k', 'jobs'):.0f} ms (goal <= 2000: "
      f"{'OK' if med('100k', 'jobs') <= 2000 else 'OVER'}); jobs_load as logged {med('100k', 'load_logged'):.0f} ms")
print(f"empty store: -> /healthz {med('empty', 'healthz'):.0f} ms, -> /v1/jobs {med('empty', 'jobs'):.0f} ms; "
      f"RSS empty {med('empty', 'rss_mb'):.1f} MiB, {E['NJOBS']} jobs {med('100k', 'rss_mb'):.1f} MiB "
      f"({(med('100k', 'rss_mb') - med('empty', 'rss_mb')) * 1048576 / int(E['NJOBS']):.0f} B per job)")
print(f"baselines: sqlite3 count(*) {med('count', 'ms'):.0f} ms, sqlite3 select * {med('scan', 'ms'):.0f} ms; "
      f"ratio restart-to-serving / full scan {med('100k', 'jobs') / med('scan', 'ms'):.2f}")
print(f"with {E['NJOBS']} jobs: GET /v1/jobs?limit=100 (alice) {med('100k', 'list_alice_100'):.1f} ms, "
      f"GET /v1/jobs?state=running&limit=1 (admin, walks all) {med('100k', 'list_scan_all'):.1f} ms; "
      f"SIGTERM -> exit {med('100k', 'stop'):.0f} ms")
PY
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "raw: $OUT"
