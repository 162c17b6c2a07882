#!/usr/bin/env bash
# docs/openapi.yaml against the docs and against the real tiergated:
# tests/unit/check-openapi.sh statically (the document parses, every $ref
# resolves, every "METHOD /path" of docs/api.md and docs/protocol.md is an
# operation and back, the Error code enum is the code table of docs/api.md),
# then with --server against the gateway gateway_start runs (every
# operation is routed, X-Request-ID is echoed, every JSON error has the one
# shape with a code of the table, unknown route 404, wrong method 405 with
# Allow). The live probe needs no credential. The daemon's access log must
# show the probe's requests (so it talked to this tiergated, not to
# whatever else listens there) and the daemon must still be the same pid.
. "$(dirname "$0")/lib.sh"
. "$TESTS_DIR/gateway-lib.sh"

CHECK=$REPO/tests/unit/check-openapi.sh
[ -x "$CHECK" ] || fail "$CHECK is missing or not executable"

out=$("$CHECK" 2>&1) || fail "check-openapi.sh (static) failed: $out"
note "$out"
[[ $out =~ openapi.yaml:\ ([0-9]+)\ operations,\ ([0-9]+)\ error\ codes:\ ok ]] ||
	fail "check-openapi.sh (static): no 'ok' summary: $out"
n_ops=${BASH_REMATCH[1]}
n_codes=${BASH_REMATCH[2]}
assert_ge 12 "$n_ops" "operations in docs/openapi.yaml"
# the code table of docs/api.md, counted here independently
# shellcheck disable=SC2016 # literal on purpose
n_table=$(grep -cE '^\s*\|\s*[0-9]{3}\s*\|\s*`[a-z_]+`\s*\|' "$REPO/docs/api.md")
assert_eq "$n_table" "$n_codes" "error codes in openapi.yaml vs the table of docs/api.md"

gateway_start
PID0=$GW_PID
LOG0=$(wc -l <"$TIERGATED_LOG")
out=$("$CHECK" --server "$TIERGATE_URL" 2>&1) || fail "check-openapi.sh --server $TIERGATE_URL failed: $out"
while IFS= read -r line; do note "$line"; done <<<"$out"
assert_contains "$out" "$TIERGATE_URL: $n_ops operations routed, errors shaped: ok" "check-openapi.sh --server"

# the probe reached this daemon: one access-log line per operation probed
# (the checker sends X-Request-ID check-openapi.N)
for _ in $(seq 1 20); do
	seen=$(tail -n +$((LOG0 + 1)) "$TIERGATED_LOG" | grep -c ' id=check-openapi\.[0-9]* ' || true)
	[ "$seen" -ge "$n_ops" ] && break
	sleep 0.1
done
assert_eq "$n_ops" "$seen" "access-log lines of the probe's requests in $TIERGATED_LOG"
kill -0 "$PID0" 2>/dev/null || fail "tiergated (pid $PID0) died during the probe: $(tail -n 30 "$TIERGATED_LOG")"
assert_eq 200 "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$TIERGATE_URL/healthz")" "GET /healthz after the probe"
bugs=$(tail -n +$((LOG0 + 1)) "$TIERGATED_LOG" | grep -E '\(bug\)' || true)
[ -z "$bugs" ] || fail "tiergated logged bugs during the probe: $bugs"
