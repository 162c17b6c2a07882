#!/usr/bin/env bash
# tiergated (the real daemon that gateway_start runs) against hostile HTTP
# clients. Every refusal is checked for its status, its JSON error code,
# the request id echoed in X-Request-ID and error.request_id, and (where the
# contract says so) the message naming the field or the extra header:
#   - credentials: none, garbage, another scheme, expired, alg none, another
#     key, a tampered payload -> 401 unauthorized + WWW-Authenticate; a token
#     minted the same way but valid -> 200 (so the refusals are about exp,
#     alg, key, not about how this test mints);
#   - limits: a body over 1 MiB (Content-Length and chunked) -> 413
#     payload_too_large; headers over 8 KiB (max_header) -> 431 headers_too_large;
#   - bodies: invalid JSON and 10 000-deep (and ~1 MiB-deep) nesting -> 400
#     invalid_json; unknown field, missing site, unknown tier, script
#     without #!, reserved env var -> 400 bad_request naming it; unknown site
#     -> 404; none of them creates a job;
#   - PUT /v1/jobs/{id} -> 405 method_not_allowed with Allow;
#   - slowloris: one socket trickling a header byte a second is answered 408
#     request_timeout and closed at connection_timeout (30 s default: the
#     whole request has a deadline, a byte a second does not extend it); it
#     runs in the background for the whole test. Meanwhile 50 such sockets
#     for 5 s must not slow other clients down;
#   - 1 000 idle connections held by the daemon: an authenticated request
#     still answers in < 1 s; the per-IP (256) and global (1024) connection
#     limits answer 429 too_many_requests; after the crowd leaves, normal
#     answers again;
#   - at the end /healthz is 200, tiergated is the same pid as at the start
#     and logged no "(bug)" line.
# Source addresses 127.0.0.2-9 spread the crowds over several "clients" so
# that the per-IP limit does not hide what is measured.
. "$(dirname "$0")/lib.sh"
. "$TESTS_DIR/gateway-lib.sh"

gateway_start
PID0=$GW_PID
LOG0=$(wc -l <"$TIERGATED_LOG")
HOSTPORT=${TIERGATE_URL#http://}
HOST=${HOSTPORT%:*}
PORT=${HOSTPORT##*:}
U=$TIERGATE_URL
T=$TIERGATE_TOKEN_ALICE
USER_KEY=$TIERGATE_CLUSTER_DIR/gateway/user-hs256.key
[ -r "$USER_KEY" ] || fail "user key $USER_KEY is missing"
# 1 000+ client sockets in this process tree
[ "$(ulimit -n)" -ge 4096 ] || ulimit -n 4096 || skip "cannot raise ulimit -n to 4096"
[ "$(awk '/Max open files/ {print $4}' "/proc/$PID0/limits")" -ge 1100 ] ||
	skip "tiergated's open-file limit is under 1100: cannot hold 1 000 connections"

alive() { # alive WHEN: tiergated is still the pid gateway_start started
	kill -0 "$PID0" 2>/dev/null || fail "tiergated (pid $PID0) died $1; log: $(tail -n 30 "$TIERGATED_LOG")"
	assert_eq "$PID0" "$(cat "$TIERGATE_CLUSTER_DIR/gateway/tiergated.pid")" "tiergated pid $1"
}

known_bug() { # a contract violation reported (see the test log), not failed on
	if [ "${TIERGATE_STRICT_KNOWN_BUGS:-0}" = 1 ]; then fail "known bug: $*"; fi
	note "KNOWN BUG (TIERGATE_STRICT_KNOWN_BUGS=1 makes this fail): $*"
}

# ------------------------------------------------------------------ helpers
HDRS=$TEST_JOBS_DIR/headers.txt
BODY=$TEST_JOBS_DIR/body.txt
NREQ=0
# hdr NAME: a header of the last answer (the final one after a 100 Continue)
hdr() { grep -i "^$1:" "$HDRS" | tail -n 1 | cut -d: -f2- | sed 's/^ *//' | tr -d '\r'; }

# expect_error WHAT STATUS CODE MESSAGE_PART CURL_ARGS...: one request with
# curl (an X-Request-ID added); asserts the status, a JSON body of the one
# error shape with CODE, the request id echoed in both places, and
# MESSAGE_PART (unless empty) in error.message.
expect_error() {
	local what=$1 status=$2 code=$3 part=$4 got rid jc
	shift 4
	rid="t0303.$((++NREQ))"
	: >"$HDRS"
	: >"$BODY"
	got=$(curl -s -m 30 -D "$HDRS" -o "$BODY" -w '%{http_code}' -H "X-Request-ID: $rid" "$@" 2>/dev/null) || true
	assert_eq "$status" "$got" "$what: HTTP status (body: $(head -c 300 "$BODY"))"
	assert_contains "$(hdr Content-Type)" application/json "$what: Content-Type"
	jq -e '.error | type == "object"' "$BODY" >/dev/null 2>&1 ||
		fail "$what: body is not a JSON error: $(head -c 300 "$BODY")"
	jc=$(jq -r '.error.code' "$BODY")
	assert_eq "$code" "$jc" "$what: error code"
	assert_eq "$rid" "$(hdr X-Request-ID)" "$what: X-Request-ID"
	assert_eq "$rid" "$(jq -r '.error.request_id' "$BODY")" "$what: error.request_id"
	[ -z "$part" ] || assert_contains "$(jq -r '.error.message' "$BODY")" "$part" "$what: error.message"
}

expect_status() { # expect_status WHAT STATUS CURL_ARGS...
	local what=$1 status=$2 got
	shift 2
	got=$(curl -s -m 30 -D "$HDRS" -o "$BODY" -w '%{http_code}' "$@" 2>/dev/null) || true
	assert_eq "$status" "$got" "$what: HTTP status (body: $(head -c 300 "$BODY"))"
}

jwt_hs256() { # jwt_hs256 KEYFILE HEADER_JSON CLAIMS_JSON
	local hexkey h c sig
	hexkey=$(od -An -v -tx1 "$1" | tr -d ' \n')
	h=$(printf '%s' "$2" | b64url)
	c=$(printf '%s' "$3" | b64url)
	sig=$(printf '%s.%s' "$h" "$c" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$hexkey" -binary | b64url)
	printf '%s.%s.%s\n' "$h" "$c" "$sig"
}
claims() { # claims SUB IAT EXP
	printf '{"sub":"%s","iss":"tiergate","aud":"tiergate-api","iat":%d,"exp":%d}' "$1" "$2" "$3"
}
HS256='{"alg":"HS256","typ":"JWT"}'

# ------------------------------------------------------------------ raw sockets
PY=$TEST_JOBS_DIR/abuse.py
cat >"$PY" <<'PY'
"""Raw-socket clients for 0303; each command prints one JSON line."""
import http.client
import json
import os
import socket
import sys
import threading
import time

CRLF = b"\r\n"


def out(o):
    print(json.dumps(o))
    sys.stdout.flush()


def parse_resp(raw):
    """(status, lower-case headers, body) of a raw answer (skips 100)."""
    head, _, body = raw.partition(CRLF + CRLF)
    lines = head.split(CRLF)
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return None, {}, raw
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(b":")
        hdrs[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
    if status == 100 and body:
        return parse_resp(body)
    return status, hdrs, body


def error_of(hdrs, body):
    """(code, request_id) of a JSON error body, else (None, None)."""
    if not hdrs.get("content-type", "").startswith("application/json"):
        return None, None
    try:
        e = json.loads(body.decode())["error"]
        return e["code"], e["request_id"]
    except (ValueError, KeyError, TypeError):
        return None, None


def answer(raw):
    st, h, b = parse_resp(raw)
    code, rid = error_of(h, b)
    return {"status": st, "code": code, "request_id": rid,
            "x_request_id": h.get("x-request-id"),
            "content_type": h.get("content-type"),
            "body": b[:300].decode("latin-1")}


def connect(host, port, src, timeout=5.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if src:
        s.bind((src, 0))
    s.connect((host, port))
    return s


def read_all(s, limit=1 << 20):
    buf = b""
    while len(buf) < limit:
        try:
            d = s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not d:
            break
        buf += d
    return buf


def authed_get(host, port, token):
    t0 = time.monotonic()
    c = http.client.HTTPConnection(host, port, timeout=10)
    c.request("GET", "/v1/jobs?limit=1",
              headers={"Authorization": "Bearer " + token})
    r = c.getresponse()
    r.read()
    c.close()
    return r.status, time.monotonic() - t0


def slow1(host, port, src, maxsecs):
    """One socket, a header byte a second, until the server closes it."""
    s = connect(host, port, src)
    t0 = time.monotonic()
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-ID: slow1\r\n"
              b"X-Slow: ")
    sent, raw = 0, b""
    s.settimeout(1.0)
    while time.monotonic() - t0 < float(maxsecs):
        try:
            d = s.recv(65536)
            if not d:
                break
            raw += d
            continue
        except socket.timeout:
            pass
        except ConnectionResetError:
            break
        try:
            s.send(b"a")
            sent += 1
        except (BrokenPipeError, ConnectionResetError):
            raw += read_all(s)
            break
    t = time.monotonic() - t0
    s.close()
    r = answer(raw)
    r.update({"closed_after": round(t, 2), "bytes_sent": sent})
    out(r)


def slowmany(host, port, src, n, secs, token):
    """n sockets trickling a header byte a second for secs, meanwhile
    authenticated GETs from another address, timed."""
    socks = [connect(host, port, src) for _ in range(int(n))]
    for s in socks:
        s.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        s.setblocking(False)
    stop = threading.Event()
    closed = set()

    def trickle():
        while not stop.is_set():
            for i, s in enumerate(socks):
                if i in closed:
                    continue
                try:
                    s.send(b"a")
                except BlockingIOError:
                    pass
                except OSError:
                    closed.add(i)
            stop.wait(1.0)

    th = threading.Thread(target=trickle)
    th.start()
    t0 = time.monotonic()
    lat, statuses = [], {}
    while time.monotonic() - t0 < float(secs):
        st, dt = authed_get(host, port, token)
        lat.append(dt)
        statuses[str(st)] = statuses.get(str(st), 0) + 1
        time.sleep(0.1)
    stop.set()
    th.join()
    for i, s in enumerate(socks):
        try:
            if s.recv(1) == b"":
                closed.add(i)
        except BlockingIOError:
            pass
        except OSError:
            closed.add(i)
        s.close()
    lat.sort()
    out({"requests": len(lat), "statuses": statuses,
         "max_ms": round(lat[-1] * 1000, 1),
         "p50_ms": round(lat[len(lat) // 2] * 1000, 1),
         "closed_by_server": len(closed)})


def held(pid, port, srcs):
    """Sockets from srcs that the daemon has accepted (are its fds)."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            ln = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if ln.startswith("socket:["):
            inodes.add(ln[8:-1])
    want = {socket.inet_aton(a)[::-1].hex().upper() for a in srcs}
    n = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            p = line.split()
            if (int(p[1].split(":")[1], 16) == port and
                    p[2].split(":")[0] in want and p[9] in inodes):
                n += 1
    return n


def idle(host, port, pid, n, srcs, token, per_ip, fill_src):
    pid, n, per_ip = int(pid), int(n), int(per_ip)
    srcs = srcs.split(",")
    res = {}
    t0 = time.monotonic()
    socks = [connect(host, port, srcs[i % len(srcs)]) for i in range(n)]
    res["connect_s"] = round(time.monotonic() - t0, 2)
    deadline = time.monotonic() + 10
    while held(pid, port, srcs) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    res["held"] = held(pid, port, srcs)
    st, dt = authed_get(host, port, token)
    res["authed_status"], res["authed_ms"] = st, round(dt * 1000, 1)
    # srcs[0] up to per_ip connections, then one more
    a0 = srcs[0]
    have = sum(1 for i in range(n) if srcs[i % len(srcs)] == a0)
    socks += [connect(host, port, a0) for _ in range(max(0, per_ip - have))]
    deadline = time.monotonic() + 10
    while held(pid, port, [a0]) < per_ip and time.monotonic() < deadline:
        time.sleep(0.05)
    s = connect(host, port, a0)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    res["per_ip"] = answer(read_all(s))
    s.close()
    # the global limit: more from another address until refused
    got, fill = None, []
    for i in range(300):
        s = connect(host, port, fill_src)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(2.0)
        try:
            d = s.recv(65536)
        except socket.timeout:
            d = b""
        st, _, _ = parse_resp(d)
        if st == 200:
            fill.append(s)  # served; the keep-alive connection still counts
            continue
        got = answer(d + read_all(s))
        got["after"] = i
        s.close()
        break
    res["global"] = got
    res["open_at_limit"] = len(socks) + len(fill)
    for s in socks + fill:
        s.close()
    deadline = time.monotonic() + 5
    while True:
        try:
            st, dt = authed_get(host, port, token)
        except OSError:
            st, dt = None, 0
        if st == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    res["after_status"], res["after_ms"] = st, round(dt * 1000, 1)
    out(res)


def capacity(host, port, srcs):
    """Connections (each answered 200) until the first 429: free slots."""
    srcs = srcs.split(",")
    socks = []
    n = None
    for i in range(2000):
        s = connect(host, port, srcs[i % len(srcs)])
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(2.0)
        try:
            d = s.recv(65536)
        except socket.timeout:
            d = b""
        socks.append(s)
        st, _, _ = parse_resp(d)
        if st != 200:
            n = i
            break
    for s in socks:
        s.close()
    print(n if n is not None else "no 429 within 2000")


def bighdr(host, port, size):
    s = connect(host, port, None, timeout=10)
    req = (b"GET /v1/jobs HTTP/1.1\r\nHost: x\r\nX-Request-ID: bighdr\r\n"
           b"X-Big: " + b"a" * int(size) + CRLF + CRLF)
    try:
        s.sendall(req)
    except (BrokenPipeError, ConnectionResetError):
        pass
    r = answer(read_all(s))
    s.close()
    out(r)


cmd, host, port, *rest = sys.argv[1:]
{"slow1": slow1, "slowmany": slowmany, "idle": idle,
 "capacity": capacity, "bighdr": bighdr}[cmd](host, int(port), *rest)
PY

# One slowloris socket for the whole test (it ends at connection_timeout).
SLOW1_OUT=$TEST_JOBS_DIR/slow1.json
python3 "$PY" slow1 "$HOST" "$PORT" 127.0.0.6 50 >"$SLOW1_OUT" 2>&1 &
SLOW1_PID=$!
trap 'kill "$SLOW1_PID" 2>/dev/null || true; gateway_stop' EXIT
SLOW1_T0=$SECONDS

# ------------------------------------------------------------------ credentials
jobs_before=$(curl -s -m 10 -H "Authorization: Bearer $TIERGATE_TOKEN_ADMIN" "$U/v1/jobs?limit=10000" | jq '.jobs | length')
[[ $jobs_before =~ ^[0-9]+$ ]] || fail "cannot list jobs as admin: $jobs_before"

expect_error "no credential" 401 unauthorized "no credential" "$U/v1/jobs"
assert_contains "$(hdr WWW-Authenticate)" Bearer "no credential: WWW-Authenticate"
expect_error "garbage bearer token" 401 unauthorized "" -H "Authorization: Bearer garbage.garbage.garbage" "$U/v1/jobs"
assert_contains "$(hdr WWW-Authenticate)" Bearer "garbage token: WWW-Authenticate"
expect_error "not a JWT at all" 401 unauthorized "" -H "Authorization: Bearer %%%" "$U/v1/jobs"
expect_error "Basic scheme" 401 unauthorized "" -H "Authorization: Basic YWxpY2U6c2VjcmV0" "$U/v1/jobs"

now=$(date +%s)
good=$(jwt_hs256 "$USER_KEY" "$HS256" "$(claims alice "$now" $((now + 300)))")
expect_status "control: a token minted here, valid" 200 -H "Authorization: Bearer $good" "$U/v1/jobs?limit=1"
expired=$(jwt_hs256 "$USER_KEY" "$HS256" "$(claims alice $((now - 7200)) $((now - 3600)))")
expect_error "expired token (1 h, past the 30 s leeway)" 401 unauthorized "expired" -H "Authorization: Bearer $expired" "$U/v1/jobs"
assert_contains "$(hdr WWW-Authenticate)" Bearer "expired token: WWW-Authenticate"
none=$(printf '%s' '{"alg":"none","typ":"JWT"}' | b64url).$(claims alice "$now" $((now + 300)) | b64url).
expect_error "alg none" 401 unauthorized "" -H "Authorization: Bearer $none" "$U/v1/jobs"
# alg none with the real signature appended: still refused
expect_error "alg none, signed" 401 unauthorized "" -H "Authorization: Bearer $none${good##*.}" "$U/v1/jobs"
head -c 32 /dev/urandom >"$TEST_JOBS_DIR/other.key"
other=$(jwt_hs256 "$TEST_JOBS_DIR/other.key" "$HS256" "$(claims alice "$now" $((now + 300)))")
expect_error "token signed with another key" 401 unauthorized "" -H "Authorization: Bearer $other" "$U/v1/jobs"
# alice's real signature on a payload that says root + admin
forged=${good%%.*}.$(printf '{"sub":"root","admin":true,"iss":"tiergate","aud":"tiergate-api","iat":%d,"exp":%d}' "$now" $((now + 300)) | b64url).${good##*.}
expect_error "tampered payload" 401 unauthorized "" -H "Authorization: Bearer $forged" "$U/debug/tasks"
wrong_aud=$(jwt_hs256 "$USER_KEY" "$HS256" "$(printf '{"sub":"alice","iss":"tiergate","aud":"slurm","iat":%d,"exp":%d}' "$now" $((now + 300)))")
expect_error "wrong audience" 401 unauthorized "" -H "Authorization: Bearer $wrong_aud" "$U/v1/jobs"
alive "after the credential checks"

# ------------------------------------------------------------------ limits
A=(-H "Authorization: Bearer $T")
J=(-H "Content-Type: application/json")
head -c $((1024 * 1024 + 1)) /dev/zero | tr '\0' ' ' >"$TEST_JOBS_DIR/big.json"
expect_error "body of 1 MiB + 1 (Content-Length)" 413 payload_too_large "" "${A[@]}" "${J[@]}" --data-binary @"$TEST_JOBS_DIR/big.json" "$U/v1/jobs"
expect_error "body of 1 MiB + 1 (chunked)" 413 payload_too_large "" "${A[@]}" "${J[@]}" -H "Transfer-Encoding: chunked" --data-binary @"$TEST_JOBS_DIR/big.json" "$U/v1/jobs"
expect_error "body of 1 MiB + 1 without a credential" 413 payload_too_large "" "${J[@]}" --data-binary @"$TEST_JOBS_DIR/big.json" "$U/v1/jobs"
expect_error "headers of 10 KiB" 431 headers_too_large "over the limit" "${A[@]}" -H "X-Big: $(head -c 10240 /dev/zero | tr '\0' a)" "$U/v1/jobs"
# 1 MiB of headers: far over what MHD's per-connection pool holds
big=$(python3 "$PY" bighdr "$HOST" "$PORT" 1048576)
assert_eq 431 "$(jq -r .status <<<"$big")" "headers of 1 MiB: HTTP status ($big)"
if [ "$(jq -r .code <<<"$big")" != headers_too_large ]; then
	if [[ $(jq -r .body <<<"$big") == "<html><head><title>Request too big"* ]]; then
		known_bug "headers over max_header + 4 KiB (MHD's pool) get libmicrohttpd's own 431 with an HTML body, no Content-Type, no X-Request-ID, no JSON error: $big"
	else
		fail "headers of 1 MiB: not the JSON error headers_too_large: $big"
	fi
else
	assert_eq bighdr "$(jq -r .x_request_id <<<"$big")" "headers of 1 MiB: X-Request-ID"
fi
alive "after the size limits"

# ------------------------------------------------------------------ bodies
post() { # post WHAT STATUS CODE MESSAGE_PART JSON
	expect_error "$1" "$2" "$3" "$4" "${A[@]}" "${J[@]}" --data-binary "$5" "$U/v1/jobs"
}
post "invalid JSON" 400 invalid_json "" '{"site": "alpha", "tier": '
post "not JSON at all" 400 invalid_json "" 'site=alpha&tier=basic'
post "10 000-deep arrays" 400 invalid_json "deeper than 32" "$(printf '%*s' 10000 '' | tr ' ' '[')$(printf '%*s' 10000 '' | tr ' ' ']')"
post "10 000-deep objects" 400 invalid_json "deeper than 32" "$(python3 -c 'print("{\"a\":" * 10000 + "1" + "}" * 10000)')"
# ~1 MiB of '[' (the whole body limit): no recursion to the bottom of it
printf '%*s' $((1024 * 1024 - 16)) '' | tr ' ' '[' >"$TEST_JOBS_DIR/deep.json"
expect_error "1 MiB-deep arrays" 400 invalid_json "deeper than 32" "${A[@]}" "${J[@]}" --data-binary @"$TEST_JOBS_DIR/deep.json" "$U/v1/jobs"
ok_script='"#!/bin/bash\ntrue"'
post "unknown field" 400 bad_request "'bogus'" '{"site":"alpha","tier":"basic","script":'"$ok_script"',"bogus":1}'
post "missing site" 400 bad_request "'site'" '{"tier":"basic","script":'"$ok_script"'}'
post "unknown tier" 400 bad_request "tier 'gold'" '{"site":"alpha","tier":"gold","script":'"$ok_script"'}'
post "script without #!" 400 bad_request "'script'" '{"site":"alpha","tier":"basic","script":"echo hi\n"}'
post "reserved env var SLURM_X" 400 bad_request "'SLURM_X'" '{"site":"alpha","tier":"basic","script":'"$ok_script"',"environment":{"SLURM_X":"1"}}'
post "unknown site" 404 not_found "'nowhere'" '{"site":"nowhere","tier":"basic","script":'"$ok_script"'}'
expect_error "text/plain body" 415 unsupported_media_type "" "${A[@]}" -H "Content-Type: text/plain" --data-binary '{}' "$U/v1/jobs"
expect_error "PUT /v1/jobs/{id}" 405 method_not_allowed "" "${A[@]}" -X PUT "${J[@]}" --data-binary '{}' "$U/v1/jobs/j-000000000000"
allow=$(hdr Allow)
assert_contains "$allow" GET "PUT /v1/jobs/{id}: Allow"
assert_contains "$allow" DELETE "PUT /v1/jobs/{id}: Allow"
jobs_after=$(curl -s -m 10 -H "Authorization: Bearer $TIERGATE_TOKEN_ADMIN" "$U/v1/jobs?limit=10000" | jq '.jobs | length')
assert_eq "$jobs_before" "$jobs_after" "jobs in the gateway after the refused requests"
alive "after the bad bodies"

# ------------------------------------------------------------------ 1 000 idle
out=$(python3 "$PY" idle "$HOST" "$PORT" "$PID0" 1000 127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5 "$T" 256 127.0.0.8) ||
	fail "idle: $out"
note "1 000 idle connections: $out"
assert_ge 1000 "$(jq -r .held <<<"$out")" "idle connections held by tiergated"
assert_eq 200 "$(jq -r .authed_status <<<"$out")" "authenticated request beside 1 000 idle connections"
assert_lt 1000 "$(jq -r '.authed_ms | floor' <<<"$out")" "its time (ms)"
assert_eq 429 "$(jq -r .per_ip.status <<<"$out")" "257th connection from one address"
assert_eq too_many_requests "$(jq -r .per_ip.code <<<"$out")" "257th connection from one address: error code"
assert_contains "$(jq -r .per_ip.body <<<"$out")" "from your address" "257th connection from one address"
assert_eq 429 "$(jq -r .global.status <<<"$out")" "connection over max_connections"
assert_eq too_many_requests "$(jq -r .global.code <<<"$out")" "connection over max_connections: error code"
assert_contains "$(jq -r .global.body <<<"$out")" "too many connections" "connection over max_connections"
assert_eq 200 "$(jq -r .after_status <<<"$out")" "authenticated request after the crowd left"
alive "after 1 000 idle connections"

# free connection slots now (max_connections minus the one slowloris
# socket and whatever else is live): the baseline for the burst below
cap0=$(python3 "$PY" capacity "$HOST" "$PORT" 127.0.0.10,127.0.0.11,127.0.0.12,127.0.0.13,127.0.0.14)
[[ $cap0 =~ ^[0-9]+$ ]] || fail "capacity: $cap0"
assert_ge 1000 "$cap0" "free connection slots after the 1 000 idle connections left"

# ------------------------------------------------------------------ slowloris
# 50 sockets trickling a header byte a second for 5 s; meanwhile another
# client's authenticated requests must stay fast.
out=$(python3 "$PY" slowmany "$HOST" "$PORT" 127.0.0.7 50 5 "$T") || fail "slowmany: $out"
note "50 slowloris sockets for 5 s, other client: $out"
assert_eq "$(jq -r .requests <<<"$out")" "$(jq -r '.statuses["200"] // 0' <<<"$out")" "authenticated requests answered 200 during the slowloris ($out)"
assert_ge 20 "$(jq -r .requests <<<"$out")" "authenticated requests during 5 s of slowloris"
assert_lt 1000 "$(jq -r '.max_ms | floor' <<<"$out")" "slowest authenticated request (ms) during the slowloris"
alive "after the slowloris burst"

# The 50 closed their partial requests: their slots must be free again.
# tiergated keeps a connection the client closed mid-request until
# connection_timeout (a gateway bug: see the report); measured, not failed.
sleep 2
cap1=$(python3 "$PY" capacity "$HOST" "$PORT" 127.0.0.10,127.0.0.11,127.0.0.12,127.0.0.13,127.0.0.14)
note "connection slots free 2 s after the 50 slowloris clients closed: $cap1 (before the burst: $cap0)"
[[ $cap1 =~ ^[0-9]+$ ]] || fail "capacity: $cap1"
if [ "$cap1" -lt "$cap0" ]; then
	known_bug "$((cap0 - cap1)) connection slots stay taken 2 s after 50 clients closed their incomplete requests ($cap1 free, $cap0 before); they are freed only at connection_timeout (a 408 is then logged for each)"
fi

# ------------------------------------------------------------------ slowloris, the end
wait "$SLOW1_PID" || fail "slow1 client failed: $(cat "$SLOW1_OUT")"
out=$(cat "$SLOW1_OUT")
note "one slowloris socket (started ${SLOW1_T0}s into the test): $out"
closed=$(jq -r '.closed_after | floor' <<<"$out")
assert_ge 25 "$(jq -r .bytes_sent <<<"$out")" "slowloris bytes sent (one a second)"
assert_ge 29 "$closed" "slowloris: seconds until the server closed it (connection_timeout 30)"
assert_lt 40 "$closed" "slowloris: seconds until the server closed it (connection_timeout 30)"
assert_eq 408 "$(jq -r .status <<<"$out")" "slowloris: HTTP status"
assert_eq request_timeout "$(jq -r .code <<<"$out")" "slowloris: error code"
rid=$(jq -r .request_id <<<"$out")
[[ $rid =~ ^r-[0-9a-f]{16}$ ]] || fail "slowloris: error.request_id '$rid' is not a generated id"
assert_eq "$rid" "$(jq -r .x_request_id <<<"$out")" "slowloris: X-Request-ID"

# ------------------------------------------------------------------ still the same daemon
expect_status "GET /healthz at the end" 200 "$U/healthz"
assert_eq ok "$(jq -r .status "$BODY")" "/healthz status"
alive "at the end"
bugs=$(tail -n +$((LOG0 + 1)) "$TIERGATED_LOG" | grep -E '\(bug\)|[Aa]ssert|AddressSanitizer' || true)
[ -z "$bugs" ] || fail "tiergated logged bugs: $bugs"
