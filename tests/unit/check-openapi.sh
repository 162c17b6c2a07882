#!/usr/bin/env bash
# Check docs/openapi.yaml with the Python standard library only.
#
#   tests/unit/check-openapi.sh                  static checks
#   tests/unit/check-openapi.sh --server URL     static checks, then probe a
#                                                live tiergated at URL
#
# Static: the document parses (the plain YAML subset it is written in: block
# mappings and sequences, one-line scalars and flow collections), is OpenAPI
# 3.0 with operations that have responses and unique operationIds, every
# $ref resolves, every {param} of a path is declared; every "METHOD /path"
# of docs/api.md and docs/protocol.md is an operation and every operation
# is in them; the Error schema's code enum is exactly the code table of
# docs/api.md.
#
# Live (no credentials needed): every operation is routed (not 405, not a
# "no route" 404), every answer has X-Request-ID (echoed when sent), every
# JSON error has the shape {"error": {"code", "message", "request_id"}}
# with a code of the table; an unknown path is 404 not_found; a wrong
# method is 405 method_not_allowed with Allow.  Used by test_http_server
# and meant for an integration test against a real tiergated.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
exec python3 - "$root" "$@" <<'PY'
import http.client
import json
import re
import sys
import urllib.parse

root = sys.argv[1]
args = sys.argv[2:]
server = None
while args:
    a = args.pop(0)
    if a == "--server" and args:
        server = args.pop(0)
    else:
        sys.exit("usage: check-openapi.sh [--server URL]")

errors = []


def err(msg):
    errors.append(msg)
    print("check-openapi: " + msg, file=sys.stderr)


# ------------------------------------------------------------ YAML subset
class YamlError(Exception):
    pass


def strip_comment(s):
    out, q, i = [], None, 0
    while i < len(s):
        c = s[i]
        if q:
            out.append(c)
            if c == "\\" and q == '"' and i + 1 < len(s):
                out.append(s[i + 1])
                i += 1
            elif c == q:
                if q == "'" and i + 1 < len(s) and s[i + 1] == "'":
                    out.append("'")
                    i += 1
                else:
                    q = None
        elif c in "'\"" and (not out or out[-1] in " :[{,-"):
            q = c
            out.append(c)
        elif c == "#" and (not out or out[-1] == " "):
            break
        else:
            out.append(c)
        i += 1
    if q:
        raise YamlError("unterminated quote")
    return "".join(out).rstrip()


class Flow:
    """One-line scalars and flow collections."""

    def __init__(self, s, lineno):
        self.s, self.i, self.lineno = s, 0, lineno

    def fail(self, what):
        raise YamlError("line %d: %s in %r" % (self.lineno, what, self.s))

    def ws(self):
        while self.i < len(self.s) and self.s[self.i] == " ":
            self.i += 1

    def value(self, stops=""):
        self.ws()
        if self.i >= len(self.s):
            return None
        c = self.s[self.i]
        if c == "[":
            self.i += 1
            out = []
            self.ws()
            if self.s[self.i:self.i + 1] == "]":
                self.i += 1
                return out
            while True:
                out.append(self.value(",]"))
                self.ws()
                if self.s[self.i:self.i + 1] == ",":
                    self.i += 1
                elif self.s[self.i:self.i + 1] == "]":
                    self.i += 1
                    return out
                else:
                    self.fail("bad flow sequence")
        if c == "{":
            self.i += 1
            out = {}
            self.ws()
            if self.s[self.i:self.i + 1] == "}":
                self.i += 1
                return out
            while True:
                k = self.value(":,}")
                self.ws()
                if self.s[self.i:self.i + 1] != ":":
                    self.fail("flow mapping key without ':'")
                self.i += 1
                out[str(k)] = self.value(",}")
                self.ws()
                if self.s[self.i:self.i + 1] == ",":
                    self.i += 1
                elif self.s[self.i:self.i + 1] == "}":
                    self.i += 1
                    return out
                else:
                    self.fail("bad flow mapping")
        if c == "'":
            j, out = self.i + 1, []
            while True:
                if j >= len(self.s):
                    self.fail("unterminated '")
                if self.s[j] == "'":
                    if self.s[j + 1:j + 2] == "'":
                        out.append("'")
                        j += 2
                        continue
                    break
                out.append(self.s[j])
                j += 1
            self.i = j + 1
            return "".join(out)
        if c == '"':
            j = self.i + 1
            while j < len(self.s) and self.s[j] != '"':
                j += 2 if self.s[j] == "\\" else 1
            if j >= len(self.s):
                self.fail('unterminated "')
            text = self.s[self.i:j + 1]
            self.i = j + 1
            return json.loads(text)
        j = self.i
        stop = set(stops) if stops else set()
        while j < len(self.s) and self.s[j] not in stop:
            if self.s[j] == ":" and (j + 1 == len(self.s) or self.s[j + 1] == " ") and ":" in stop:
                break
            j += 1
        tok = self.s[self.i:j].strip()
        self.i = j
        return scalar(tok)


def parse_dq(s, lineno):
    if not (len(s) >= 2 and s[0] == '"' and s[-1] == '"'):
        raise YamlError("line %d: bad double-quoted string %r" % (lineno, s))
    return json.loads(s)


def scalar(tok):
    if tok in ("null", "~", ""):
        return None
    if tok == "true":
        return True
    if tok == "false":
        return False
    if re.fullmatch(r"-?[0-9]+", tok):
        return int(tok)
    if re.fullmatch(r"-?[0-9]+\.[0-9]+", tok):
        return float(tok)
    return tok


def flow_value(text, lineno):
    text = text.strip()
    if not text:
        return None
    if text[0] == '"':
        return parse_dq(text, lineno)
    if text[0] in "'[{":
        f = Flow(text, lineno)
        v = f.value()
        f.ws()
        if f.i != len(text):
            raise YamlError("line %d: trailing text %r" % (lineno, text[f.i:]))
        return v
    if text[0] in "&*!|>%@`":
        raise YamlError("line %d: YAML feature outside the subset: %r"
                        % (lineno, text))
    return scalar(text)


def split_key(content, lineno):
    """'key: value' -> (key, value text) or None when not a mapping entry."""
    if content[0] in "'\"":
        q = content[0]
        j = content.index(q, 1)
        while q == "'" and content[j + 1:j + 2] == "'":
            j = content.index(q, j + 2)
        key = flow_value(content[:j + 1], lineno)
        rest = content[j + 1:]
        if not rest.startswith(":"):
            return None
        return str(key), rest[1:]
    m = re.match(r"([^\s'\"\[\]{},#][^:]*?):( |$)", content)
    if not m:
        return None
    return m.group(1), content[m.end():]


def load_yaml(text):
    lines = []
    for n, raw in enumerate(text.split("\n"), 1):
        if "\t" in raw[:len(raw) - len(raw.lstrip())]:
            raise YamlError("line %d: tab in indentation" % n)
        s = strip_comment(raw)
        if s.strip():
            lines.append((len(s) - len(s.lstrip(" ")), s.strip(), n))
    pos = [0]

    def block(indent):
        ind, content, n = lines[pos[0]]
        if content.startswith("- ") or content == "-":
            return seq(ind)
        return mapping(ind)

    def mapping(indent, first=None):
        out = {}
        while pos[0] < len(lines):
            ind, content, n = lines[pos[0]]
            if first is not None:
                ind, content, n = first
                first = None
            elif ind < indent:
                break
            elif ind > indent:
                raise YamlError("line %d: unexpected indentation" % n)
            if content.startswith("- "):
                if ind == indent:
                    break
                raise YamlError("line %d: sequence inside mapping" % n)
            kv = split_key(content, n)
            if not kv:
                raise YamlError("line %d: expected 'key: value': %r"
                                % (n, content))
            key, rest = kv
            if key in out:
                raise YamlError("line %d: duplicate key %r" % (n, key))
            pos[0] += 1
            if rest.strip():
                out[key] = flow_value(rest, n)
            elif pos[0] < len(lines) and (
                    lines[pos[0]][0] > ind or
                    (lines[pos[0]][0] == ind and
                     lines[pos[0]][1].startswith("- "))):
                out[key] = block(lines[pos[0]][0])
            else:
                out[key] = None
        return out

    def seq(indent):
        out = []
        while pos[0] < len(lines):
            ind, content, n = lines[pos[0]]
            if ind < indent or not (content.startswith("- ") or
                                    content == "-"):
                if ind > indent:
                    raise YamlError("line %d: unexpected indentation" % n)
                break
            if ind > indent:
                raise YamlError("line %d: unexpected indentation" % n)
            item = content[1:].strip()
            if not item:
                pos[0] += 1
                out.append(block(lines[pos[0]][0]))
            elif split_key(item, n) and item[0] not in "[{":
                # "- key: value" opens a mapping at indent + 2
                out.append(mapping(ind + 2, (ind + 2, item, n)))
            else:
                pos[0] += 1
                out.append(flow_value(item, n))
        return out

    if not lines:
        raise YamlError("empty document")
    doc = block(lines[0][0])
    if pos[0] != len(lines):
        raise YamlError("line %d: not parsed" % lines[pos[0]][2])
    return doc


# ---------------------------------------------------------------- static
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def norm(path):
    return re.sub(r"\{[^}]*\}", "{}", path)


with open(root + "/docs/openapi.yaml", encoding="utf-8") as fp:
    try:
        doc = load_yaml(fp.read())
    except YamlError as e:
        print("check-openapi: docs/openapi.yaml: %s" % e, file=sys.stderr)
        sys.exit(1)

if not str(doc.get("openapi", "")).startswith("3.0"):
    err("openapi is not 3.0.x")
for k in ("title", "version"):
    if not (doc.get("info") or {}).get(k):
        err("info.%s missing" % k)


def resolve(ref):
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return None
    node = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def walk(node, where):
    if isinstance(node, dict):
        if "$ref" in node and resolve(node["$ref"]) is None:
            err("%s: $ref %s does not resolve" % (where, node["$ref"]))
        for k, v in node.items():
            walk(v, where + "/" + str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            walk(v, "%s[%d]" % (where, i))


walk(doc, "#")


def deref(node):
    while isinstance(node, dict) and "$ref" in node:
        node = resolve(node["$ref"]) or {}
    return node


ops = {}  # (METHOD, normalized path) -> (path, op)
op_ids = set()
for path, item in (doc.get("paths") or {}).items():
    if not path.startswith("/"):
        err("path %r does not start with /" % path)
    common = [deref(p) for p in (item.get("parameters") or [])]
    for method, op in item.items():
        if method == "parameters":
            continue
        if method not in METHODS:
            err("%s: unknown key %r" % (path, method))
            continue
        oid = op.get("operationId")
        if not oid or oid in op_ids:
            err("%s %s: operationId missing or not unique" % (method, path))
        op_ids.add(oid)
        if not op.get("responses"):
            err("%s %s: no responses" % (method, path))
        for code, resp in (op.get("responses") or {}).items():
            if not re.fullmatch(r"[1-5][0-9][0-9]|default", str(code)):
                err("%s %s: response key %r" % (method, path, code))
            if not deref(resp).get("description"):
                err("%s %s %s: response without description"
                    % (method, path, code))
        params = common + [deref(p) for p in (op.get("parameters") or [])]
        declared = {p.get("name") for p in params if p.get("in") == "path"}
        for p in params:
            if p.get("in") == "path" and p.get("required") is not True:
                err("%s %s: path parameter %s not required"
                    % (method, path, p.get("name")))
        for name in re.findall(r"\{([^}]*)\}", path):
            if name not in declared:
                err("%s %s: path parameter {%s} not declared"
                    % (method, path, name))
        ops[(method.upper(), norm(path))] = (path, op)

documented = set()
for md in ("docs/api.md", "docs/protocol.md"):
    with open(root + "/" + md, encoding="utf-8") as fp:
        for m in re.finditer(r"`(GET|POST|PUT|DELETE|PATCH|HEAD) (/[^`?\s]*)",
                             fp.read()):
            documented.add((m.group(1), norm(m.group(2))))
for key in sorted(documented):
    if key not in ops:
        err("%s %s of the docs is not in openapi.yaml" % key)
for key in sorted(ops):
    if key not in documented:
        err("%s %s of openapi.yaml is not in docs/api.md or protocol.md"
            % key)

table = {}
with open(root + "/docs/api.md", encoding="utf-8") as fp:
    for line in fp:
        m = re.match(r"\s*\|\s*(\d{3})\s*\|\s*`([a-z_]+)`\s*\|", line)
        if m:
            table[m.group(2)] = int(m.group(1))
enum = (((deref((doc.get("components") or {}).get("schemas", {})
               .get("Error")) or {}).get("properties", {}).get("error", {})
         .get("properties", {}).get("code", {})).get("enum")) or []
if not table:
    err("no error code table found in docs/api.md")
if sorted(enum) != sorted(table):
    err("Error.code enum %s != docs/api.md codes %s"
        % (sorted(enum), sorted(table)))

if not errors:
    print("check-openapi: docs/openapi.yaml: %d operations, %d error codes: "
          "ok" % (len(ops), len(enum)))

# ------------------------------------------------------------------ live
def probe(url, method, path, body=None, ctype=None, rid=None):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=10)
    headers = {}
    if ctype:
        headers["Content-Type"] = ctype
    if rid:
        headers["X-Request-ID"] = rid
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    ct = resp.getheader("Content-Type") or ""
    data = b"" if ct.startswith("text/event-stream") else resp.read()
    hdrs = {k.lower(): v for k, v in resp.getheaders()}
    conn.close()
    return resp.status, hdrs, data


def check_error_shape(what, status, hdrs, data):
    if not (hdrs.get("content-type") or "").startswith("application/json"):
        return None
    try:
        j = json.loads(data.decode("utf-8"))
    except ValueError:
        err("%s: %d body is not JSON" % (what, status))
        return None
    e = j.get("error") if isinstance(j, dict) else None
    if not isinstance(e, dict) or set(j) != {"error"} or \
            set(e) != {"code", "message", "request_id"}:
        err("%s: %d error body has not the shape: %s" % (what, status, j))
        return None
    if table.get(e["code"]) != status:
        err("%s: (%d, %s) is not a row of the table"
            % (what, status, e["code"]))
    if e["request_id"] != hdrs.get("x-request-id"):
        err("%s: request_id %s != X-Request-ID %s"
            % (what, e["request_id"], hdrs.get("x-request-id")))
    return e


if server and not errors:
    n = 0
    for (method, _), (path, op) in sorted(ops.items()):
        concrete = path.replace("{job_id}", "1001")
        concrete = concrete.replace("{stream}", "stdout")
        concrete = re.sub(r"\{[^}]*\}", "x-1", concrete)
        if method == "POST" and "/v1/output/" in path:
            concrete += "?offset=0"
        body, ctype = None, None
        if method in ("POST", "PUT", "PATCH"):
            body, ctype = b"{}", "application/json"
        rid = "check-openapi.%d" % n
        what = "%s %s" % (method, concrete)
        try:
            status, hdrs, data = probe(server, method, concrete, body, ctype,
                                       rid)
        except OSError as e:
            err("%s: %s" % (what, e))
            continue
        n += 1
        if hdrs.get("x-request-id") != rid:
            err("%s: X-Request-ID not echoed (%s)"
                % (what, hdrs.get("x-request-id")))
        e = check_error_shape(what, status, hdrs, data) if status >= 400 \
            else None
        if status == 405 or (status == 404 and e and
                             e["message"].startswith("no route")):
            err("%s: not routed (%d)" % (what, status))
    status, hdrs, data = probe(server, "GET", "/check-openapi/no/such/route")
    e = check_error_shape("unknown route", status, hdrs, data)
    if status != 404 or not e or e["code"] != "not_found":
        err("unknown route: %d, expected 404 not_found" % status)
    status, hdrs, data = probe(server, "PATCH", "/healthz")
    e = check_error_shape("PATCH /healthz", status, hdrs, data)
    if status != 405 or not e or e["code"] != "method_not_allowed" or \
            "GET" not in (hdrs.get("allow") or ""):
        err("PATCH /healthz: %d allow=%s, expected 405 with Allow"
            % (status, hdrs.get("allow")))
    if not errors:
        print("check-openapi: %s: %d operations routed, errors shaped: ok"
              % (server, n))

sys.exit(1 if errors else 0)
PY
