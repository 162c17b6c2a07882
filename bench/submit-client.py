#!/usr/bin/env python3
"""The driver of bench/gateway-submit.sh (see its header): N submits with
CONC keep-alive clients, straight to slurmrestd ("direct") and through
tiergated ("gateway"), rounds interleaved; prints per-round figures, medians
and ratios.  Parameters come from the environment the script sets."""
import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

E = os.environ
SITE, N, CONC, ROUNDS = E["SITE"], int(E["N"]), int(E["CONC"]), int(E["ROUNDS"])
OUT = E["OUT"]
HZ = os.sysconf("SC_CLK_TCK")
SCRIPT = "#!/bin/bash\ntrue\n"


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def mint_jwt(keyfile, user, life):
    """HS256 as Slurm's auth/jwt wants it (slurm-facts section 8)."""
    now = int(time.time())
    h = b64u(b'{"alg":"HS256","typ":"JWT"}')
    c = b64u(json.dumps({"exp": now + life, "iat": now, "sun": user}, separators=(",", ":")).encode())
    sig = hmac.new(open(keyfile, "rb").read(), f"{h}.{c}".encode(), hashlib.sha256).digest()
    return f"{h}.{c}.{b64u(sig)}"


REST = urllib.parse.urlsplit(E["REST_URL"])
GW = urllib.parse.urlsplit(E["GW_URL"])
SLURM_TOKEN = mint_jwt(E["JWT_KEY"], "alice", 7200)


def direct_req(i, tag):
    name = f"bench-direct-{tag}-{i}"
    body = {
        "job": {
            "name": name, "comment": f"tiergate:{name}", "current_working_directory": "/tmp",
            "partition": "debug", "standard_output": f"{OUT}/direct-%j.out",
            "tasks": 1, "cpus_per_task": 1, "time_limit": 1,
            "environment": {"PATH": "/usr/bin:/bin",
                            "_SLURM_SPANK_OPTION_tiergate_cpu_tier": "basic",
                            "SLURM_SPANK__SLURM_SPANK_OPTION_tiergate_cpu_tier": "basic",
                            "TIERGATE_REQUEST_ID": f"r-bench-{tag}-{i}"},
        },
        "script": SCRIPT,
    }
    hdr = {"Content-Type": "application/json", "X-SLURM-USER-NAME": "alice",
           "X-SLURM-USER-TOKEN": SLURM_TOKEN}
    return "/slurm/v0.0.38/job/submit", json.dumps(body), hdr


def gateway_req(i, tag):
    body = {"site": SITE, "tier": "basic", "script": SCRIPT, "name": f"bench-gw-{tag}-{i}",
            "resources": {"ntasks": 1, "cpus_per_task": 1, "time_limit_min": 1}}
    hdr = {"Content-Type": "application/json", "Authorization": f"Bearer {E['TOKEN']}"}
    return "/v1/jobs", json.dumps(body), hdr


def conn(u):
    return http.client.HTTPConnection(u.hostname, u.port, timeout=60)


def submit_all(variant, tag):
    """N submits by CONC threads; returns (t_first, t_last, latencies, answers)."""
    u, mk = (REST, direct_req) if variant == "direct" else (GW, gateway_req)
    reqs = [mk(i, tag) for i in range(N)]
    lock = threading.Lock()
    nxt = [0]
    lat, answers, errors = [], [None] * N, []

    def worker():
        c = conn(u)
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= N:
                break
            path, body, hdr = reqs[i]
            t = time.perf_counter()
            try:
                c.request("POST", path, body, hdr)
                r = c.getresponse()
                data = r.read()
            except (OSError, http.client.HTTPException) as e:
                c.close()
                c = conn(u)
                errors.append(f"{i}: {e!r}")
                continue
            dt = time.perf_counter() - t
            with lock:
                lat.append(dt)
            if r.status not in (200, 202):
                errors.append(f"{i}: HTTP {r.status} {data[:200]!r}")
                continue
            answers[i] = json.loads(data)
        c.close()

    th = [threading.Thread(target=worker) for _ in range(CONC)]
    t0 = time.perf_counter()
    for t in th:
        t.start()
    for t in th:
        t.join()
    t1 = time.perf_counter()
    if errors:
        sys.exit(f"{variant}: {len(errors)} failed submits, e.g. {errors[:3]}")
    return t0, t1, lat, answers


def metric(name, label=""):
    c = conn(GW)
    c.request("GET", "/metrics")
    txt = c.getresponse().read().decode()
    c.close()
    m = re.search(rf"^{re.escape(name + label)} (\S+)$", txt, re.M)
    return float(m[1]) if m else float("nan")


def ticks(pid):
    s = open(f"/proc/{pid}/stat").read()
    f = s[s.rindex(")") + 2:].split()
    return int(f[11]) + int(f[12])


def box():
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return f[0] + f[1] + f[2] + f[5] + f[6], f[7]


def pidfile(p):
    return int(open(p).read().split()[0])


PIDS = {"tiergated": int(E["GW_PID"]),
        "slurmrestd": pidfile(f"{E['SITE_DIR']}/run/slurmrestd.pid.own"),
        "slurmctld": pidfile(f"{E['SITE_DIR']}/run/slurmctld.pid.own")}


def squeue(*args):
    return subprocess.run(["squeue", "-h", *args], capture_output=True, text=True,
                          env={**E, "SLURM_CONF": E["SLURM_CONF"]}, check=True).stdout


def live_gateway_jobs():
    c = conn(GW)
    c.request("GET", "/metrics")
    txt = c.getresponse().read().decode()
    c.close()
    return sum(int(m[1]) for m in re.finditer(
        r'^tiergate_jobs\{state="(?:accepted|submitting|pending|running|completing)"\} (\d+)$', txt, re.M))


def drain():
    """Wait until the site runs and queues nothing and the gateway tracks no
    live job: the previous variant's jobs ran (MODE=run) or were cancelled
    (MODE=pend, their partition is down)."""
    t = time.time()
    if E["MODE"] == "pend":
        subprocess.run(["scancel", "-u", "alice", "-p", "debug"], check=True,
                       env={**E, "SLURM_CONF": E["SLURM_CONF"]})
    while time.time() - t < int(E["DRAIN_TIMEOUT"]):
        if not squeue("-t", "PENDING,RUNNING,CONFIGURING,COMPLETING", "-o", "%i").strip() \
                and live_gateway_jobs() == 0:
            return time.time() - t
        time.sleep(0.5)
    sys.exit("the site's queue did not empty within BENCH_DRAIN_TIMEOUT")


MAX_JOBS = int(re.search(r"^MaxJobCount\s*=\s*(\d+)", subprocess.run(
    ["scontrol", "show", "config"], capture_output=True, text=True, check=True,
    env={**E, "SLURM_CONF": E["SLURM_CONF"]}).stdout, re.M)[1])


def run(variant, rnd):
    tag = f"{os.getpid()}-{rnd}"
    drained = drain()
    t, noted = time.time(), False
    while (held := len(squeue("-t", "all", "-o", "%i").split())) + N > MAX_JOBS:
        # finished jobs stay in slurmctld for MinJobAge (300 s), e.g. an
        # earlier run's: wait for the purge rather than fail the submits
        if time.time() - t > 400:
            sys.exit(f"slurmctld holds {held} jobs and MaxJobCount is {MAX_JOBS}: no room for {N} more")
        if not noted:
            noted = True
            print(f"slurmctld holds {held} jobs (MaxJobCount {MAX_JOBS}): waiting for it to purge "
                  "finished ones (MinJobAge)", flush=True)
        time.sleep(1)
    drained += time.time() - t
    time.sleep(1)
    sub0 = metric("tiergate_jobs_submitted_total")
    up0 = metric("tiergate_site_upstream_calls_total", f'{{site="{SITE}"}}')
    cpu0 = {k: ticks(p) for k, p in PIDS.items()}
    (b0, st0), r0 = box(), os.times()
    # the direct baseline is slurmrestd alone: the gateway frozen, so its
    # poller's lists (the whole job table while it changes) do not load
    # the site during it
    frozen = variant == "direct" and E.get("FREEZE", "1") == "1"
    if frozen:
        os.kill(PIDS["tiergated"], signal.SIGSTOP)
    try:
        t0, t_ack, lat, answers = submit_all(variant, tag)
    finally:
        if frozen:
            os.kill(PIDS["tiergated"], signal.SIGCONT)
    if variant == "gateway":
        while metric("tiergate_jobs_submitted_total") < sub0 + N:
            if time.perf_counter() - t_ack > 300:
                sys.exit("gateway: not all jobs reached the site within 300 s")
            time.sleep(0.02)
        t_e2e = time.perf_counter()
    else:
        t_e2e = t_ack
    cpu1 = {k: ticks(p) for k, p in PIDS.items()}
    (b1, st1), r1 = box(), os.times()
    wall = t_e2e - t0
    res = {"variant": variant, "round": rnd, "ack_s": t_ack - t0, "e2e_s": wall,
           "ack_rate": N / (t_ack - t0), "e2e_rate": N / wall,
           "p50_ms": 1e3 * statistics.median(lat), "p99_ms": 1e3 * sorted(lat)[int(0.99 * (len(lat) - 1))],
           "drain_s": drained, "load1": float(open("/proc/loadavg").read().split()[0])}
    for k in PIDS:
        res[f"cpu_{k}"] = 100.0 * (cpu1[k] - cpu0[k]) / HZ / wall
    res["cpu_client"] = 100.0 * ((r1.user - r0.user) + (r1.system - r0.system)) / wall
    res["cpu_box"] = 100.0 * (b1 - b0) / HZ / wall
    res["steal"] = 100.0 * (st1 - st0) / HZ / wall
    res["upstream_calls"] = metric("tiergate_site_upstream_calls_total", f'{{site="{SITE}"}}') - up0
    if variant == "gateway":
        ids = [a["id"] for a in answers]
        with open(f"{OUT}/gateway-ids", "a") as f:
            f.write("".join(i + "\n" for i in ids))
        c = conn(GW)
        c.request("GET", f"/v1/jobs?limit={N}", headers={"Authorization": f"Bearer {E['TOKEN']}"})
        listed = {j["id"]: j for j in json.loads(c.getresponse().read())["jobs"]}
        c.close()
        missing = [i for i in ids if not (listed.get(i, {}).get("slurm") or {}).get("job_id")]
        if missing:
            sys.exit(f"gateway: {len(missing)} jobs without a Slurm id after the counter said all: {missing[:3]}")
        names = set(squeue("-t", "all", "-o", "%j").split())
        at_site = sum(1 for i in ids if i in names)
        if at_site != N:
            sys.exit(f"gateway: squeue shows {at_site} of the round's {N} jobs")
    else:
        if any(not isinstance(a.get("job_id"), int) for a in answers):
            sys.exit("direct: an answer without job_id")
    json.dump(res, open(f"{OUT}/{variant}-{rnd}.json", "w"))
    print(f"round {rnd} {variant:7s} accepted {res['ack_rate']:7.1f}/s ({res['ack_s']:.2f} s)  "
          f"all with a Slurm id {res['e2e_rate']:7.1f}/s ({res['e2e_s']:.2f} s)  "
          f"latency p50 {res['p50_ms']:.1f} p99 {res['p99_ms']:.1f} ms  "
          f"CPU% tiergated {res['cpu_tiergated']:.0f} slurmrestd {res['cpu_slurmrestd']:.0f} "
          f"slurmctld {res['cpu_slurmctld']:.0f} client {res['cpu_client']:.0f} box {res['cpu_box']:.0f} "
          f"steal {res['steal']:.0f}  upstream calls {res['upstream_calls']:.0f}  "
          f"(queue drained in {res['drain_s']:.0f} s, load1 {res['load1']:.2f})", flush=True)
    return res


rows = []
print(f"jobs: {'pending in a DOWN partition, cancelled after each variant' if E['MODE'] == 'pend' else 'run'}")
for r in range(1, ROUNDS + 1):
    order = ("direct", "gateway") if r % 2 else ("gateway", "direct")
    for v in order:
        rows.append(run(v, r))
json.dump(rows, open(f"{OUT}/results.json", "w"), indent=1)
drain()


def med(v, k):
    return statistics.median(x[k] for x in rows if x["variant"] == v)


def pairs(k):
    d = {x["round"]: x[k] for x in rows if x["variant"] == "direct"}
    return [x[k] / d[x["round"]] for x in rows if x["variant"] == "gateway"]


for k, what in (("ack_rate", "accepted/s (durable 202 vs slurmrestd's answer)"),
                ("e2e_rate", "end to end (all N with a Slurm id)")):
    ratio = med("gateway", k) / med("direct", k)
    print(f"{what}: median of {ROUNDS}: direct {med('direct', k):.1f}/s, gateway {med('gateway', k):.1f}/s; "
          f"ratio gateway/direct {ratio:.3f} (per round: {', '.join(f'{p:.3f}' for p in pairs(k))}); "
          f"goal >= 0.95: {'met' if ratio >= 0.95 else 'NOT met'}")
print(f"latency per request, medians: direct p50 {med('direct', 'p50_ms'):.1f} p99 {med('direct', 'p99_ms'):.1f} ms; "
      f"gateway p50 {med('gateway', 'p50_ms'):.1f} p99 {med('gateway', 'p99_ms'):.1f} ms")
print("CPU% over the end-to-end window, medians: " + "; ".join(
    f"{v}: tiergated {med(v, 'cpu_tiergated'):.0f} slurmrestd {med(v, 'cpu_slurmrestd'):.0f} "
    f"slurmctld {med(v, 'cpu_slurmctld'):.0f} client {med(v, 'cpu_client'):.0f} box {med(v, 'cpu_box'):.0f}"
    for v in ("direct", "gateway")))
print(f"load1 over the runs: {min(x['load1'] for x in rows):.2f}-{max(x['load1'] for x in rows):.2f}; "
      f"steal max {max(x['steal'] for x in rows):.0f} %")
