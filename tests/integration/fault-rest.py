#!/usr/bin/env python3
"""A misbehaving slurmrestd for the fault tests (stdlib only).

    fault-rest.py PORT MODE [UPSTREAM_PORT]

Listens on 127.0.0.1:PORT (the real slurmrestd of the site must be stopped
first, or moved to UPSTREAM_PORT) and, per MODE:

  hang            accepts every connection, reads the request, never answers
  garbage         answers every request with bytes that are not slurmrestd's:
                  in turn a binary blob that is not HTTP at all, and an
                  HTTP 200 whose "JSON" body is binary noise
  blackhole-submit UPSTREAM_PORT
                  a proxy to the real slurmrestd on UPSTREAM_PORT that
                  passes every request and answer through, except the answer
                  to a job submission: the job reaches Slurm, the reply never
                  reaches the client (a lost answer)
  refuse-cancel UPSTREAM_PORT
                  the same proxy, but a DELETE of a job never reaches Slurm:
                  it is answered as slurmrestd answers a cancel it may not
                  do (HTTP 500, Slurm error 2002, access denied)

Prints "ready" on stdout once it listens. Counts what it saw on stderr.
"""
import http.client
import os
import socketserver
import sys
import threading

PORT = int(sys.argv[1])
MODE = sys.argv[2]
UPSTREAM = int(sys.argv[3]) if len(sys.argv) > 3 else 0
COUNT = {"n": 0}
LOCK = threading.Lock()


def log(msg):
    sys.stderr.write("fault-rest[%s]: %s\n" % (MODE, msg))
    sys.stderr.flush()


def read_request(f):
    """(method, path, headers dict, body) of one HTTP/1.1 request or None."""
    line = f.readline(65536)
    if not line:
        return None
    parts = line.decode("latin-1").split()
    if len(parts) < 2:
        return None
    headers = {}
    order = []
    while True:
        h = f.readline(65536)
        if not h or h in (b"\r\n", b"\n"):
            break
        k, _, v = h.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
        order.append((k.strip(), v.strip()))
    n = int(headers.get("content-length", "0") or 0)
    body = f.read(n) if n else b""
    return parts[0], parts[1], order, body


def next_n():
    with LOCK:
        COUNT["n"] += 1
        return COUNT["n"]


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        if MODE == "hang":
            req = read_request(self.rfile)
            log("hanging on %s" % (req[:2] if req else "nothing",))
            # until the client gives up (it closes: recv returns b"")
            try:
                while self.connection.recv(4096):
                    pass
            except OSError:
                pass
            return
        while True:
            req = read_request(self.rfile)
            if req is None:
                return
            if MODE == "garbage":
                self.garbage(req)
                return
            if MODE == "refuse-cancel" and req[0] == "DELETE":
                self.refuse(req)
                continue
            if not self.proxy(req):
                return

    def garbage(self, req):
        n = next_n()
        noise = os.urandom(64) + b"\x00\xff<html>not slurmrestd</html>"
        log("garbage #%d to %s %s" % (n, req[0], req[1]))
        if n % 2:
            self.wfile.write(b"\x16\x03\x01\x00" + noise)
        else:
            self.wfile.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(noise)
                + noise
            )
        self.wfile.flush()

    def refuse(self, req):
        log("refused %s %s" % (req[0], req[1]))
        body = (b'{"meta":{},"errors":[{"error_number":2002,'
                b'"error":"Access/permission denied",'
                b'"description":"fault-rest: not allowed to cancel",'
                b'"source":"slurm_kill_job()"}]}')
        self.wfile.write(
            b"HTTP/1.1 500 INTERNAL ERROR\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.wfile.flush()

    def proxy(self, req):
        method, path, headers, body = req
        up = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=60)
        up.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for k, v in headers:
            if k.lower() not in ("connection", "keep-alive"):
                up.putheader(k, v)
        up.endheaders(body if body else None)
        resp = up.getresponse()
        data = resp.read()
        up.close()
        if MODE == "blackhole-submit" and method == "POST" and \
                path.rstrip("/").endswith("/job/submit"):
            log("lost the answer to %s %s (HTTP %d): %s"
                % (method, path, resp.status, data[:200]))
            try:
                while self.connection.recv(4096):
                    pass
            except OSError:
                pass
            return False
        out = ["HTTP/1.1 %d %s" % (resp.status, resp.reason)]
        for k, v in resp.getheaders():
            if k.lower() not in ("content-length", "connection",
                                 "transfer-encoding", "keep-alive"):
                out.append("%s: %s" % (k, v))
        out.append("Content-Length: %d" % len(data))
        self.wfile.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))
        self.wfile.write(data)
        self.wfile.flush()
        return True


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main():
    if MODE not in ("hang", "garbage", "blackhole-submit", "refuse-cancel"):
        sys.exit("unknown mode %r" % MODE)
    if MODE in ("blackhole-submit", "refuse-cancel") and not UPSTREAM:
        sys.exit("%s needs UPSTREAM_PORT" % MODE)
    srv = Server(("127.0.0.1", PORT), Handler)
    print("ready", flush=True)
    try:
        srv.serve_forever()
    finally:
        srv.server_close()


if __name__ == "__main__":
    main()
