#!/usr/bin/env python3
"""sse_swarm.py: many followers of one job's output, over raw sockets.

    sse_swarm.py URL JOB -n N [--token-file F] [--stream stdout]
                 [--reconnect-lei K] [--reconnect-offset K] [--after A]
                 [--ref FILE] [--state STATE] [--timeout S]
                 [--ready-file F] [--connect-parallel P]

Opens N connections to GET URL/v1/jobs/JOB/output (HTTP/1.1, the bearer
token from --token-file or $TIERGATE_TOKEN), de-chunks the body and parses
the Server-Sent Events.  Every follower checks, event by event, that an
output event starts exactly at the bytes it has accepted so far (no gap, no
repeat) and that its `id:` is the offset after it; it keeps a running
SHA-256 of the bytes.

K followers of the N (--reconnect-lei) drop their connection after A..A+4
output events (--after) and reconnect with `Last-Event-ID: <last id>`;
another K (--reconnect-offset) drop it at the same point, rewind to a byte
in the middle of the last event they got (forgetting its tail) and
reconnect with `?offset=<that byte>`: the first event after must start
exactly there.

A follower ends at `event: end`.  At the end, with --ref FILE (the job's
output file on the node), every follower's byte count and SHA-256 must be
the file's, and with --state the end event's state must be that.

--ready-file F: write F once every follower has its response head (200),
for benchmarks that hold N connections; SIGTERM ends the run then (exit 0,
summary printed).

Prints one JSON summary on stdout; exit 0 when every follower passed, 1
otherwise (the first failures are listed), 2 on usage errors.  Standard
library only.
"""
import argparse
import asyncio
import base64
import hashlib
import json
import os
import signal
import sys
import time
import urllib.parse

MAX_ERRORS_SHOWN = 10


class ProtocolError(Exception):
    pass


class Stream:
    """One HTTP/1.1 response: status, headers, chunked body -> SSE events."""

    def __init__(self):
        self.buf = bytearray()
        self.head_done = False
        self.status = None
        self.chunked = False
        self.chunk_left = -1
        self.body_done = False
        self.sse = bytearray()
        self.scan = 0

    def feed(self, data):
        """Bytes from the socket; returns the complete SSE events (dicts)."""
        self.buf += data
        if not self.head_done:
            i = self.buf.find(b"\r\n\r\n")
            if i < 0:
                if len(self.buf) > 65536:
                    raise ProtocolError("response head over 64 KiB")
                return []
            head = bytes(self.buf[:i]).decode("latin-1").split("\r\n")
            del self.buf[: i + 4]
            parts = head[0].split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
                raise ProtocolError("bad status line %r" % head[0])
            self.status = int(parts[1])
            hdrs = {}
            for line in head[1:]:
                k, _, v = line.partition(":")
                hdrs[k.strip().lower()] = v.strip()
            self.headers = hdrs
            self.chunked = "chunked" in hdrs.get("transfer-encoding", "").lower()
            self.head_done = True
        if self.chunked:
            self._dechunk()
        else:
            self.sse += self.buf
            del self.buf[:]
        return self._events()

    def _dechunk(self):
        # chunk_left: -1 a size line is next, > 0 data bytes left, -2 the
        # CRLF after a chunk's data is next
        while not self.body_done:
            if self.chunk_left == -1:
                i = self.buf.find(b"\r\n")
                if i < 0:
                    return
                line = bytes(self.buf[:i]).split(b";")[0].strip()
                try:
                    size = int(line, 16)
                except ValueError:
                    raise ProtocolError("bad chunk size line %r" % line[:40])
                del self.buf[: i + 2]
                if size == 0:
                    self.body_done = True  # trailers ignored
                    return
                self.chunk_left = size
            elif self.chunk_left == -2:
                if len(self.buf) < 2:
                    return
                if self.buf[:2] != b"\r\n":
                    raise ProtocolError("chunk not followed by CRLF")
                del self.buf[:2]
                self.chunk_left = -1
            else:
                n = min(self.chunk_left, len(self.buf))
                if not n:
                    return
                self.sse += self.buf[:n]
                del self.buf[:n]
                self.chunk_left -= n
                if not self.chunk_left:
                    self.chunk_left = -2

    def _events(self):
        out = []
        while True:
            i = self.sse.find(b"\n\n", self.scan)
            if i < 0:
                self.scan = max(0, len(self.sse) - 1)
                return out
            block = bytes(self.sse[:i]).decode("utf-8")
            del self.sse[: i + 2]
            self.scan = 0
            ev = {"event": "message", "data": [], "comment": False}
            for line in block.split("\n"):
                if line.startswith(":"):
                    ev["comment"] = True
                    continue
                k, _, v = line.partition(":")
                if v.startswith(" "):
                    v = v[1:]
                if k == "data":
                    ev["data"].append(v)
                elif k in ("id", "event"):
                    ev[k] = v
            ev["data"] = "\n".join(ev["data"])
            out.append(ev)


class Follower:
    def __init__(self, i, mode, after):
        self.i = i
        self.mode = mode  # plain, lei, offset
        self.after = after
        self.offset = 0
        self.h = hashlib.sha256()
        self.prev_h = None
        self.last = b""
        self.last_off = 0
        self.last_id = None
        self.outputs = 0
        self.heartbeats = 0
        self.connects = 0
        self.resumed_at = None
        self.end = None
        self.error = None
        self.t_first = None
        self.t_last = None
        self.ready = False

    def fail(self, msg):
        if not self.error:
            self.error = "follower %d (%s): %s" % (self.i, self.mode, msg)
        raise ProtocolError(self.error)


class Swarm:
    def __init__(self, a):
        self.a = a
        u = urllib.parse.urlsplit(a.url)
        self.host = u.hostname
        self.port = u.port or 80
        self.token = a.token
        self.n_ready = 0
        self.ready_event = asyncio.Event()
        self.stop = asyncio.Event()
        self.sem = asyncio.Semaphore(a.connect_parallel)

    def request(self, f, query, lei):
        path = "/v1/jobs/%s/output?stream=%s" % (self.a.job, self.a.stream)
        if query is not None:
            path += "&offset=%d" % query
        lines = [
            "GET %s HTTP/1.1" % path,
            "Host: %s:%d" % (self.host, self.port),
            "Authorization: Bearer %s" % self.token,
            "Accept: text/event-stream",
            "X-Request-ID: swarm-%d-%d" % (f.i, f.connects),
        ]
        if lei is not None:
            lines.append("Last-Event-ID: %s" % lei)
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def on_output(self, f, ev):
        try:
            d = json.loads(ev["data"])
            raw = base64.b64decode(d["data_b64"], validate=True)
        except (ValueError, KeyError, TypeError) as e:
            f.fail("bad output event %r: %s" % (ev["data"][:80], e))
        if d.get("stream") != self.a.stream:
            f.fail("event of stream %r" % d.get("stream"))
        off = d.get("offset")
        if off != f.offset:
            what = "gap" if off > f.offset else "repeat"
            f.fail("%s: event at offset %s, %d bytes accepted" % (what, off, f.offset))
        if ev.get("id") != str(off + len(raw)):
            f.fail("id %r for bytes [%d, %d)" % (ev.get("id"), off, off + len(raw)))
        if not raw:
            f.fail("empty output event at %d" % off)
        keep = f.mode != "plain" and f.connects == 1
        if keep:
            f.prev_h = f.h.copy()
            f.last = raw
            f.last_off = off
        f.h.update(raw)
        f.offset += len(raw)
        f.last_id = ev["id"]
        f.outputs += 1
        now = time.monotonic()
        if f.t_first is None:
            f.t_first = now
        f.t_last = now

    async def session(self, f, query, lei):
        """One connection; returns 'end', 'reconnect' or raises."""
        f.connects += 1
        st = Stream()
        async with self.sem:
            reader, writer = await asyncio.open_connection(self.host, self.port)
            try:
                writer.write(self.request(f, query, lei))
                await writer.drain()
                events = []
                while not st.head_done:
                    data = await reader.read(65536)
                    if not data:
                        f.fail("connection closed before the response head")
                    events = st.feed(data)
            except BaseException:
                writer.close()
                raise
        try:
            if st.status != 200:
                f.fail("HTTP %s: %s" % (st.status, bytes(st.sse[:200])))
            if not st.headers.get("content-type", "").startswith("text/event-stream"):
                f.fail("content-type %r" % st.headers.get("content-type"))
            if not f.ready:
                f.ready = True
                self.n_ready += 1
                if self.n_ready == self.a.n:
                    self.ready_event.set()
            first = query is not None or lei is not None
            while True:
                for ev in events:
                    if ev["comment"]:
                        f.heartbeats += 1
                        continue
                    if ev["event"] == "output":
                        if first:
                            f.resumed_at = json.loads(ev["data"]).get("offset")
                            first = False
                        self.on_output(f, ev)
                        if (f.mode != "plain" and f.connects == 1 and
                                f.outputs >= f.after):
                            return "reconnect"
                    elif ev["event"] == "end":
                        try:
                            f.end = json.loads(ev["data"]).get("state")
                        except ValueError:
                            f.fail("bad end event %r" % ev["data"])
                        return "end"
                    else:
                        f.fail("unexpected event %r" % ev["event"])
                if st.body_done:
                    f.fail("stream ended without an end event at %d" % f.offset)
                data = await reader.read(262144)
                if not data:
                    f.fail("connection closed without an end event at %d" % f.offset)
                events = st.feed(data)
        finally:
            writer.close()

    async def follow(self, f):
        try:
            how = await self.session(f, None, None)
            if how == "reconnect":
                if f.mode == "lei":
                    how = await self.session(f, None, f.last_id)
                else:
                    # forget the tail of the last event, resume inside it
                    cut = f.last_off + len(f.last) // 2
                    f.h = f.prev_h.copy()
                    f.h.update(f.last[: cut - f.last_off])
                    f.offset = cut
                    f.expect_resume = cut
                    how = await self.session(f, cut, None)
                    if f.resumed_at is not None and f.resumed_at != cut:
                        f.fail("resumed at %s, asked %d" % (f.resumed_at, cut))
                f.last = b""
                f.prev_h = None
            if how != "end":
                f.fail("second reconnect asked")
        except ProtocolError:
            pass
        except (OSError, asyncio.IncompleteReadError) as e:
            if not f.error:
                f.error = "follower %d (%s): %s" % (f.i, f.mode, e)
        except asyncio.CancelledError:
            if not f.error:
                f.error = "follower %d (%s): still running at the end (offset %d)" % (
                    f.i, f.mode, f.offset)
            raise

    async def run(self):
        a = self.a
        fs = []
        for i in range(a.n):
            if i < a.reconnect_lei:
                mode = "lei"
            elif i < a.reconnect_lei + a.reconnect_offset:
                mode = "offset"
            else:
                mode = "plain"
            fs.append(Follower(i, mode, a.after + i % 5))
        t0 = time.monotonic()
        tasks = [asyncio.ensure_future(self.follow(f)) for f in fs]
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop.set)
        t_ready = None
        if a.ready_file:
            w = asyncio.ensure_future(self.ready_event.wait())
            s = asyncio.ensure_future(self.stop.wait())
            await asyncio.wait([w, s], timeout=a.timeout,
                               return_when=asyncio.FIRST_COMPLETED)
            if self.ready_event.is_set():
                t_ready = time.monotonic() - t0
                with open(a.ready_file + ".tmp", "w") as fh:
                    fh.write("%d\n" % self.n_ready)
                os.rename(a.ready_file + ".tmp", a.ready_file)
            w.cancel()
            s.cancel()
        stopper = asyncio.ensure_future(self.stop.wait())
        left = max(0.1, a.timeout - (time.monotonic() - t0))
        done, pending = await asyncio.wait(
            tasks + [stopper], timeout=left, return_when=asyncio.FIRST_COMPLETED)
        while not stopper.done() and any(not t.done() for t in tasks):
            left = a.timeout - (time.monotonic() - t0)
            if left <= 0:
                break
            await asyncio.wait(tasks + [stopper], timeout=left,
                               return_when=asyncio.FIRST_COMPLETED)
        stopped = stopper.done()
        stopper.cancel()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        elapsed = time.monotonic() - t0
        return self.report(fs, elapsed, t_ready, stopped)

    def report(self, fs, elapsed, t_ready, stopped):
        a = self.a
        ref_len = ref_sha = None
        if a.ref:
            with open(a.ref, "rb") as fh:
                ref = fh.read()
            ref_len = len(ref)
            ref_sha = hashlib.sha256(ref).hexdigest()
        errors = []
        for f in fs:
            if stopped and a.ready_file:
                if f.error and "still running" not in f.error:
                    errors.append(f.error)
                continue
            if f.error:
                errors.append(f.error)
                continue
            if a.state and f.end != a.state:
                errors.append("follower %d (%s): end state %r, wanted %r" % (
                    f.i, f.mode, f.end, a.state))
            elif ref_len is not None and (
                    f.offset != ref_len or f.h.hexdigest() != ref_sha):
                errors.append("follower %d (%s): %d bytes sha %s, the file has %d bytes sha %s" % (
                    f.i, f.mode, f.offset, f.h.hexdigest()[:12], ref_len, ref_sha[:12]))
            elif f.mode != "plain" and f.connects != 2:
                errors.append("follower %d (%s): %d connections, wanted 2" % (
                    f.i, f.mode, f.connects))
        rates = [f.offset / (f.t_last - f.t_first) for f in fs
                 if f.t_first is not None and f.t_last > f.t_first]
        out = {
            "followers": len(fs),
            "ready": self.n_ready,
            "ok": len(fs) - len(errors),
            "failed": len(errors),
            "errors": errors[:MAX_ERRORS_SHOWN],
            "reconnected_lei": sum(1 for f in fs if f.mode == "lei" and f.connects == 2),
            "reconnected_offset": sum(1 for f in fs if f.mode == "offset" and f.connects == 2),
            "ended": sum(1 for f in fs if f.end),
            "end_states": sorted({f.end for f in fs if f.end}),
            "bytes_each": sorted({f.offset for f in fs})[:5],
            "ref_bytes": ref_len,
            "output_events": sum(f.outputs for f in fs),
            "heartbeats": sum(f.heartbeats for f in fs),
            "elapsed_s": round(elapsed, 3),
            "ready_s": round(t_ready, 3) if t_ready is not None else None,
            "stopped": stopped,
        }
        if len(fs) == 1 and fs[0].t_first is not None:
            f = fs[0]
            out["first_to_last_s"] = round(f.t_last - f.t_first, 4)
        if rates:
            out["rate_min_Bps"] = round(min(rates))
            out["rate_median_Bps"] = round(sorted(rates)[len(rates) // 2])
        return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("url")
    p.add_argument("job")
    p.add_argument("-n", type=int, default=1)
    p.add_argument("--token-file")
    p.add_argument("--stream", default="stdout")
    p.add_argument("--reconnect-lei", type=int, default=0)
    p.add_argument("--reconnect-offset", type=int, default=0)
    p.add_argument("--after", type=int, default=3)
    p.add_argument("--ref")
    p.add_argument("--state")
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--ready-file")
    p.add_argument("--connect-parallel", type=int, default=200)
    a = p.parse_args()
    if a.token_file:
        with open(a.token_file) as fh:
            a.token = fh.read().strip()
    else:
        a.token = os.environ.get("TIERGATE_TOKEN", "")
    if not a.token or a.n < 1 or a.reconnect_lei + a.reconnect_offset > a.n:
        p.print_usage(sys.stderr)
        return 2
    out = asyncio.run(Swarm(a).run())
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0 if out["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
