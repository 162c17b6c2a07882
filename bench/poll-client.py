#!/usr/bin/env python3
"""The driver of bench/gateway-poll.sh (see its header).

  poll-client.py            the driver (parameters from the environment)
  poll-client.py load C     C keep-alive clients polling GET /v1/jobs/{id}
                            over ids read from $OUT/ids, until SIGTERM; then
                            one JSON line of counts on stdout
"""
import asyncio
import http.client
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

E = os.environ
GW = urllib.parse.urlsplit(E["GW_URL"])
PER_IP = 200  # the gateway allows max_connections_per_ip = 256 by default


# ------------------------------------------------------------------ the load
async def one_client(k, ids, auth, stats, stop):
    # 127.0.0.0/8 is all loopback: spread the clients over source addresses
    src = f"127.0.0.{2 + k // PER_IP}"
    try:
        r, w = await asyncio.open_connection(GW.hostname, GW.port, local_addr=(src, 0))
    except OSError as e:
        stats["connect_errors"] += 1
        stats["last_error"] = repr(e)
        return
    stats["connected"] += 1
    rnd = random.Random(k)
    try:
        while not stop.is_set():
            jid = ids[rnd.randrange(len(ids))]
            w.write(f"GET /v1/jobs/{jid} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {auth}\r\n\r\n".encode())
            head = await r.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            if m:
                await r.readexactly(int(m[1]))
            stats["requests"] += 1
            if status != 200:
                stats["non200"] += 1
            if stats.get("pause"):
                await asyncio.sleep(stats["pause"])
    except (OSError, asyncio.IncompleteReadError) as e:
        stats["read_errors"] += 1
        stats["last_error"] = repr(e)
    finally:
        w.close()


async def load(c):
    ids = open(f"{E['OUT']}/ids").read().split()
    stats = {"clients": c, "connected": 0, "requests": 0, "non200": 0, "connect_errors": 0,
             "read_errors": 0, "pause": float(E.get("PAUSE", "0"))}
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    tasks = [asyncio.create_task(one_client(k, ids, E["TOKEN"], stats, stop)) for k in range(c)]
    while stats["connected"] + stats["connect_errors"] < c:
        await asyncio.sleep(0.05)
    print("ready", flush=True)
    t0 = time.monotonic()
    n0 = stats["requests"]
    await stop.wait()
    stats["rps"] = (stats["requests"] - n0) / (time.monotonic() - t0)
    await asyncio.wait(tasks, timeout=10)
    print(json.dumps(stats), flush=True)


if len(sys.argv) > 2 and sys.argv[1] == "load":
    asyncio.run(load(int(sys.argv[2])))
    sys.exit(0)

# ------------------------------------------------------------------ the driver
SITE, JOBS, INTERVALS = E["SITE"], int(E["JOBS"]), int(E["INTERVALS"])
CLIENTS, ROUNDS, PI = int(E["CLIENTS"]), int(E["ROUNDS"]), float(E["POLL_INTERVAL"])
OUT = E["OUT"]
HZ = os.sysconf("SC_CLK_TCK")
SENV = {**E, "SLURM_CONF": E["SLURM_CONF"]}


def conn():
    return http.client.HTTPConnection(GW.hostname, GW.port, timeout=60)


def metrics():
    c = conn()
    c.request("GET", "/metrics")
    txt = c.getresponse().read().decode()
    c.close()
    m = {}
    for line in txt.splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            m[k] = float(v)
    return m


def sdiag():
    """slurmctld's RPC counts by message type (the site's own view)."""
    txt = subprocess.run(["sdiag"], capture_output=True, text=True, env=SENV, check=True).stdout
    sect = txt.split("Remote Procedure Call statistics by message type")[1].split("Remote Procedure Call statistics by user")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^\s+(\w+)\s+\(\s*\d+\)\s+count:(\d+)", sect, re.M)}


def ticks(pid):
    s = open(f"/proc/{pid}/stat").read()
    f = s[s.rindex(")") + 2:].split()
    return int(f[11]) + int(f[12])


def pidfile(p):
    return int(open(p).read().split()[0])


PIDS = {"tiergated": int(E["GW_PID"]),
        "slurmrestd": pidfile(f"{E['SITE_DIR']}/run/slurmrestd.pid.own"),
        "slurmctld": pidfile(f"{E['SITE_DIR']}/run/slurmctld.pid.own")}
CALLS = f'tiergate_site_upstream_calls_total{{site="{SITE}"}}'
POLLS = f'tiergate_site_polls_total{{site="{SITE}"}}'
LIVE = ("accepted", "submitting", "pending", "running", "completing")


def breaker_closed(m):
    return m.get(f'tiergate_site_breaker{{site="{SITE}",state="closed"}}') == 1


def submit_jobs():
    """JOBS jobs through the gateway (8 keep-alive clients) in batches of
    BATCH: the next batch only once the gateway has submitted the last one
    to the site.  Unpaced, 10 000 submits queue behind the poller's growing
    lists on the site's 4 connections, time out (the queue wait counts),
    and every timed-out job looks for its tag with a full GET /jobs: the
    site melts (see docs/performance.md).  Their partition is DOWN."""
    body = json.dumps({"site": SITE, "tier": "basic", "script": "#!/bin/bash\ntrue\n",
                       "name": "bench-poll",
                       "resources": {"ntasks": 1, "cpus_per_task": 1, "time_limit_min": 1}})
    hdr = {"Content-Type": "application/json", "Authorization": f"Bearer {E['TOKEN']}"}
    lock, nxt, ids, errors = threading.Lock(), [0], [], []
    batch = int(E.get("BATCH", "500"))
    sub0 = metrics().get("tiergate_jobs_submitted_total", 0)

    def worker(upto):
        c = conn()
        while True:
            with lock:
                if nxt[0] >= upto or len(errors) > 10:
                    break
                nxt[0] += 1
            c.request("POST", "/v1/jobs", body, hdr)
            r = c.getresponse()
            data = r.read()
            with lock:
                (ids if r.status == 202 else errors).append(
                    json.loads(data)["id"] if r.status == 202 else f"HTTP {r.status} {data[:200]!r}")
        c.close()

    t = time.time()
    while nxt[0] < JOBS:
        upto = min(JOBS, nxt[0] + batch)
        th = [threading.Thread(target=worker, args=(upto,)) for _ in range(8)]
        for x in th:
            x.start()
        for x in th:
            x.join()
        if errors:
            sys.exit(f"submit: {errors[:3]}")
        while True:
            m = metrics()
            if not breaker_closed(m):
                sys.exit(f"the gateway's breaker for {SITE} opened while submitting; stopped (see its log)")
            if m.get("tiergate_jobs_submitted_total", 0) >= sub0 + upto:
                break
            if time.time() - t > 900:
                sys.exit("the gateway did not submit the jobs within 900 s")
            time.sleep(0.2)
    open(f"{OUT}/ids", "w").write("".join(i + "\n" for i in ids))
    print(f"submitted {len(ids)} jobs through the gateway in {time.time() - t:.1f} s "
          f"(batches of {batch})", flush=True)
    while True:
        m = metrics()
        live = {s: int(m.get(f'tiergate_jobs{{state="{s}"}}', 0)) for s in LIVE}
        if live["pending"] >= JOBS:
            break
        if not breaker_closed(m) or time.time() - t > 900:
            sys.exit(f"the gateway does not show {JOBS} pending jobs: {live}")
        time.sleep(1)
    n = subprocess.run(["squeue", "-h", "-t", "PENDING", "-o", "%i"], capture_output=True, text=True,
                       env=SENV, check=True).stdout.split()
    print(f"gateway: {live['pending']} pending jobs at {SITE} after {time.time() - t:.1f} s; "
          f"squeue: {len(n)} PENDING", flush=True)


def phase(c, rnd):
    proc = None
    if c:
        proc = subprocess.Popen([sys.executable, __file__, "load", str(c)], stdout=subprocess.PIPE, text=True,
                                env=E)
        if proc.stdout.readline().strip() != "ready":
            sys.exit("the load generator did not start")
    time.sleep(PI)  # connections settle; start on a fresh interval
    m0, d0, c0, t0 = metrics(), sdiag(), {k: ticks(p) for k, p in PIDS.items()}, time.time()
    time.sleep(INTERVALS * PI)
    m1, d1, c1, t1 = metrics(), sdiag(), {k: ticks(p) for k, p in PIDS.items()}, time.time()
    load = {}
    if proc:
        proc.send_signal(signal.SIGTERM)
        load = json.loads(proc.communicate(timeout=60)[0].strip().splitlines()[-1])
    w = t1 - t0
    n_int = w / PI
    rpc = {k: d1.get(k, 0) - d0.get(k, 0) for k in d1}
    rpc = {k: v for k, v in rpc.items() if v and k != "REQUEST_STATS_INFO"}  # sdiag's own
    res = {"clients": c, "round": rnd, "window_s": w, "intervals": n_int,
           "calls": m1[CALLS] - m0[CALLS], "polls": m1[POLLS] - m0[POLLS],
           "job_info": rpc.get("REQUEST_JOB_INFO", 0), "rpcs": rpc,
           "get_rps": load.get("rps", 0.0), "get_requests": load.get("requests", 0),
           "get_errors": load.get("non200", 0) + load.get("read_errors", 0) + load.get("connect_errors", 0),
           "lag_p99_ms": 1e3 * m1.get('tiergate_loop_lag_seconds{quantile="0.99"}', 0),
           "lag_max_ms": 1e3 * m1.get('tiergate_loop_lag_seconds{quantile="1"}', 0),
           "load1": float(open("/proc/loadavg").read().split()[0])}
    for k in PIDS:
        res[f"cpu_{k}"] = 100.0 * (c1[k] - c0[k]) / HZ / w
    res["calls_per_interval"] = res["calls"] / n_int
    res["job_info_per_interval"] = res["job_info"] / n_int
    res["period_s"] = w / res["polls"] if res["polls"] else float("nan")
    print(f"round {rnd} clients {c:4d}: {w:.1f} s = {n_int:.1f} poll intervals of {PI:g} s; "
          f"gateway upstream calls {res['calls']:.0f} ({res['calls_per_interval']:.2f}/interval), polls {res['polls']:.0f} "
          f"(one every {res['period_s']:.2f} s); slurmctld REQUEST_JOB_INFO {res['job_info']} "
          f"({res['job_info_per_interval']:.2f}/interval), all RPCs {rpc}; "
          f"GET /v1/jobs/{{id}} {res['get_rps']:.0f}/s, {res['get_errors']} errors; "
          f"CPU% tiergated {res['cpu_tiergated']:.0f} slurmrestd {res['cpu_slurmrestd']:.0f} "
          f"slurmctld {res['cpu_slurmctld']:.0f}; loop lag p99 {res['lag_p99_ms']:.1f} max {res['lag_max_ms']:.1f} ms; "
          f"load1 {res['load1']:.2f}", flush=True)
    return res


submit_jobs()
# the set-up's tail (lists of the jobs that just changed, a full list) is
# not the steady state: let one full cycle of the poller pass (a full list
# every 10th poll)
time.sleep(12 * PI)
rows = []
levels = [0, 1, CLIENTS]
for r in range(1, ROUNDS + 1):
    for c in (levels if r % 2 else levels[::-1]):
        rows.append(phase(c, r))
json.dump(rows, open(f"{OUT}/results.json", "w"), indent=1)


def med(c, k):
    return statistics.median(x[k] for x in rows if x["clients"] == c)


for c in levels:
    print(f"clients {c:4d} (median of {ROUNDS}): upstream calls per site per poll interval: gateway "
          f"{med(c, 'calls_per_interval'):.2f}, slurmctld REQUEST_JOB_INFO {med(c, 'job_info_per_interval'):.2f}; "
          f"one poll every {med(c, 'period_s'):.2f} s (interval {PI:g} s); GET {med(c, 'get_rps'):.0f}/s; "
          f"CPU% tiergated {med(c, 'cpu_tiergated'):.0f} slurmrestd {med(c, 'cpu_slurmrestd'):.0f} "
          f"slurmctld {med(c, 'cpu_slurmctld'):.0f}")
base = med(0, "calls_per_interval")
for c in levels[1:]:
    v = med(c, "calls_per_interval")
    same = all(x["calls"] == x["polls"] == x["job_info"] for x in rows if x["clients"] == c)
    ok = same and v <= 1.05 and abs(v - base) <= 0.1 * base
    print(f"clients {c}: {v:.2f} upstream calls per poll interval (idle: {base:.2f}, ratio {v / base:.3f}); "
          f"every call is the poll's one list (calls = polls = REQUEST_JOB_INFO in each window): {same}; "
          f"goal 1 per interval, whatever the clients: {'met' if ok else 'NOT met'}")
