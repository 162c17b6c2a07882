#!/usr/bin/env python3
"""A small stand-in for tiergated's plugin-facing endpoints (docs/protocol.md),
used by the plugin's integration tests: records events and output chunks.

  receiver.py --port 8480 --dir DIR [--munge-socket SOCK]... [--delay-ms N]

POST /v1/events (one event, or a batch) -> DIR/events.jsonl (a line per new id),
                                         DIR/duplicates counts repeats
POST /v1/output/SITE/JOB/STREAM?offset=N[&eof=1]
                                      -> DIR/out/SITE-JOB-STREAM (+ .eof)
With --munge-socket, requests must carry "Authorization: MUNGE <cred>" whose
payload is "POST <path without query>\\n<sha256 of body>", decoded by unmunge on one of the
sockets (the site realms); others get 401.
"""
import argparse, hashlib, json, os, subprocess, sys, threading, time
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
from urllib.parse import urlsplit, parse_qs

lock = threading.Lock()
seen_ids = set()


try:  # libmunge in-process, as the gateway decodes (no unmunge fork per event)
    import ctypes
    _munge = ctypes.CDLL("libmunge.so.2")
    _munge.munge_ctx_create.restype = ctypes.c_void_p
    _munge.munge_ctx_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p]
    _munge.munge_ctx_destroy.argtypes = [ctypes.c_void_p]
    _munge.munge_decode.argtypes = [
        ctypes.c_char_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p),
        ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_uint),
        ctypes.POINTER(ctypes.c_uint)]
    _libc = ctypes.CDLL(None)
    _libc.free.argtypes = [ctypes.c_void_p]
except OSError:
    _munge = None
MUNGE_OPT_SOCKET = 8


def _unmunge_lib(cred, sock):
    ctx = _munge.munge_ctx_create()
    try:
        _munge.munge_ctx_set(ctx, MUNGE_OPT_SOCKET, sock.encode())
        buf, n = ctypes.c_void_p(), ctypes.c_int()
        uid, gid = ctypes.c_uint(), ctypes.c_uint()
        rc = _munge.munge_decode(cred.encode(), ctx, ctypes.byref(buf),
                                 ctypes.byref(n), ctypes.byref(uid),
                                 ctypes.byref(gid))
        payload = ctypes.string_at(buf, n.value).decode(errors="replace") \
            if buf.value else ""
        if buf.value:
            _libc.free(buf)
        return (payload, "UID: (%d)" % uid.value) if rc == 0 else (None, None)
    finally:
        _munge.munge_ctx_destroy(ctx)


def unmunge(cred, sockets):
    for sock in sockets:
        if _munge:
            payload, uid = _unmunge_lib(cred, sock)
            if payload is not None:
                return payload, uid
            continue
        p = subprocess.run(["unmunge", "-S", sock], input=cred.encode(),
                           capture_output=True)
        if p.returncode == 0:
            out = p.stdout.decode(errors="replace")
            head, _, payload = out.partition("\n\n")
            uid = [l for l in head.splitlines() if l.startswith("UID:")]
            return payload, uid[0] if uid else ""
    return None, None


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes

    def log_message(self, fmt, *a):
        sys.stderr.write("receiver: " + (fmt % a) + "\n")

    def reply(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def store_event(self, ev):
        """True when the event was stored before (counted once)."""
        with lock:
            if ev["id"] in seen_ids:
                with open(os.path.join(ARGS.dir, "duplicates"), "a") as f:
                    f.write(ev["id"] + "\n")
                return True
            seen_ids.add(ev["id"])
            with open(os.path.join(ARGS.dir, "events.jsonl"), "a") as f:
                f.write(json.dumps(ev, sort_keys=True) + "\n")
            return False

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n) if n else b""
        if ARGS.delay_ms:
            time.sleep(ARGS.delay_ms / 1000)
        if ARGS.munge_socket:
            auth = self.headers.get("Authorization", "")
            if not auth.startswith("MUNGE "):
                return self.reply(401, {"error": "no munge credential"})
            payload, uid = unmunge(auth[6:], ARGS.munge_socket)
            want = "POST %s\n%s" % (self.path.split("?")[0],
                                      hashlib.sha256(body).hexdigest())
            if payload != want:
                return self.reply(401, {"error": "credential does not match"})
        u = urlsplit(self.path)
        q = parse_qs(u.query)
        if u.path == "/v1/events":
            try:
                body = json.loads(body)
            except ValueError:
                return self.reply(400, {"error": "bad json"})
            if not isinstance(body, list):  # one event
                dup = self.store_event(body)
                return self.reply(200 if dup else 201, {"duplicate": dup})
            results = []  # a batch, as the gateway answers it
            for ev in body:
                dup = self.store_event(ev)
                results.append({"id": ev["id"], "status": 200 if dup else 201,
                                "duplicate": dup})
            return self.reply(200, {"results": results})
        parts = u.path.split("/")
        if len(parts) == 6 and parts[1:3] == ["v1", "output"]:
            site, job, stream = parts[3], parts[4], parts[5]
            off = int(q.get("offset", ["0"])[0])
            path = os.path.join(ARGS.dir, "out", "%s-%s-%s" % (site, job, stream))
            with lock:
                have = os.path.getsize(path) if os.path.exists(path) else 0
                if off > have:
                    return self.reply(409, {"next_offset": have})
                new = body[have - off:]
                with open(path, "ab") as f:
                    f.write(new)
                if q.get("eof") == ["1"]:
                    open(path + ".eof", "w").close()
                return self.reply(200, {"next_offset": have + len(new)})
        return self.reply(404, {"error": "no such endpoint"})


ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, default=8480)
ap.add_argument("--dir", required=True)
ap.add_argument("--munge-socket", action="append", default=[])
ap.add_argument("--delay-ms", type=int, default=0)
ARGS = ap.parse_args()
os.makedirs(os.path.join(ARGS.dir, "out"), exist_ok=True)
if os.path.exists(os.path.join(ARGS.dir, "events.jsonl")):
    for line in open(os.path.join(ARGS.dir, "events.jsonl")):
        seen_ids.add(json.loads(line)["id"])
srv = ThreadingHTTPServer(("127.0.0.1", ARGS.port), H)
srv.daemon_threads = True
print("ready", flush=True)
srv.serve_forever()
