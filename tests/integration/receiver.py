#!/usr/bin/env python3
"""A small stand-in for tiergated's plugin-facing endpoints (docs/protocol.md),
used by the plugin's integration tests: records events and output chunks.

  receiver.py --port 8480 --dir DIR [--munge-socket SOCK]... [--delay-ms N]

POST /v1/events                       -> DIR/events.jsonl (one line per new id),
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


def unmunge(cred, sockets):
    for sock in sockets:
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
                ev = json.loads(body)
            except ValueError:
                return self.reply(400, {"error": "bad json"})
            with lock:
                if ev["id"] in seen_ids:
                    with open(os.path.join(ARGS.dir, "duplicates"), "a") as f:
                        f.write(ev["id"] + "\n")
                    return self.reply(200, {"duplicate": True})
                seen_ids.add(ev["id"])
                with open(os.path.join(ARGS.dir, "events.jsonl"), "a") as f:
                    f.write(json.dumps(ev, sort_keys=True) + "\n")
            return self.reply(201, {"duplicate": False})
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
