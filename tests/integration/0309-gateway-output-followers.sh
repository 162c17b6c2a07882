#!/usr/bin/env bash
# 1 000 concurrent followers of one job's output through tiergated get every
# byte in order; followers that drop their connection mid-stream and come
# back with Last-Event-ID, or with ?offset= inside the last event they got,
# miss and repeat nothing.
#
# The job prints numbered lines and every byte value (NUL included) for
# about 6 s, so the followers get it live, chunk by chunk, as the relay
# delivers it.  tests/integration/sse_swarm.py opens the connections (raw
# HTTP/1.1, alice's token) and checks each follower event by event (an
# event starts exactly where the follower's bytes end, its id is the offset
# after it) and at the end against the job's output file on the node (byte
# count and SHA-256), with the final state `completed`.
#
#   FOLLOWERS=1000 RECONNECTS=25 (each kind)
. "$(dirname "$0")/lib.sh"
. "$TESTS_DIR/gateway-lib.sh"

N=${FOLLOWERS:-1000}
R=${RECONNECTS:-25}
# one address for all of them: the per-IP cap (256 by default) must let
# them in (gateway-up puts these in the config)
export TIERGATE_MAX_CONNECTIONS=$((N + 200)) TIERGATE_MAX_CONNECTIONS_PER_IP=$((N + 100))
gateway_start
site=${SITES[0]}
site_env "$site"

script=$TEST_JOBS_DIR/chatty.sh
cat >"$script" <<'SH'
#!/bin/bash
# ~6 s of output: 300 numbered lines of growing length; every 60 lines all
# 256 byte values (NUL, CR, invalid UTF-8, ...)
all=
for b in $(seq 0 255); do all+=$(printf '\\x%02x' "$b"); done
for i in $(seq 1 300); do
	printf 'line %05d %s\n' "$i" "$(head -c $((i % 300)) /dev/zero | tr '\0' "$((i % 10))")"
	if [ $((i % 60)) = 0 ]; then printf "$all\n"; fi
	sleep 0.02
done
echo done
SH
chmod 755 "$script"

id=$(tg alice submit --site "$site" --tier basic --name t0309 "$script") ||
	fail "submit failed: $id"
[[ $id =~ ^j-[0-9a-f]{12}$ ]] || fail "submit printed '$id', not a job id"
note "job $id on $site; $N followers ($R reconnect with Last-Event-ID, $R with ?offset=)"

tokfile=$TEST_JOBS_DIR/alice.token
printf '%s' "$TIERGATE_TOKEN_ALICE" >"$tokfile"
out=/tmp/tiergate-$id.out
swarm=$TEST_JOBS_DIR/swarm.json
t0=$SECONDS
rc=0
python3 "$TESTS_DIR/sse_swarm.py" "$TIERGATE_URL" "$id" -n "$N" --token-file "$tokfile" \
	--reconnect-lei "$R" --reconnect-offset "$R" --after 3 \
	--ref "$out" --state completed --timeout 120 >"$swarm" || rc=$?
note "swarm: $(cat "$swarm") in $((SECONDS - t0)) s"
[ -s "$swarm" ] || fail "sse_swarm.py printed nothing (rc $rc)"
[ "$rc" = 0 ] || fail "followers failed (rc $rc): $(jq -c '{failed, errors}' "$swarm")"

# the swarm's verdict is only as good as the reference: the job did run
assert_eq completed "$(job_field alice "$id" .state)" "job $id state"
assert_eq 300 "$(grep -ac '^line ' "$out")" "numbered lines in $out"
assert_ge 5 "$(tr -dc '\000' <"$out" | wc -c)" "NUL bytes in $out"
assert_eq "$N" "$(jq .ok "$swarm")" "followers with every byte in order"
assert_eq "$R" "$(jq .reconnected_lei "$swarm")" "followers back with Last-Event-ID"
assert_eq "$R" "$(jq .reconnected_offset "$swarm")" "followers back with ?offset="
assert_eq "$(stat -c %s "$out")" "$(jq '.bytes_each | join(",")' -r "$swarm")" "bytes each follower got"
# live: the job's output reached them in many chunks, not one at the end
events=$(jq .output_events "$swarm")
assert_ge $((N * 5)) "$events" "output events over $N followers"

# nobody was dropped as too slow, and every follower task is gone
if grep -a "follower of $id" "$TIERGATED_LOG" | grep -q "too slow"; then
	fail "a follower was dropped as too slow: $(grep -a "follower of $id" "$TIERGATED_LOG" | head -3)"
fi
left=
for _ in $(seq 1 50); do
	left=$(curl -s -H "Authorization: Bearer $TIERGATE_TOKEN_ADMIN" "$TIERGATE_URL/debug/tasks" |
		jq '[.tasks[]? | select(.kind == "follower")] | length')
	[ "$left" = 0 ] && break
	sleep 0.1
done
assert_eq 0 "$left" "follower tasks left after the swarm"
curl -sf -o /dev/null "$TIERGATE_URL/healthz" || fail "tiergated does not answer /healthz after the swarm"

# a resume point must be a plain number: 400, not a stream that waits
for bad in '-1' '%207' '' 'x' '18446744073709551616'; do
	code=$(curl -s -o /dev/null -w '%{http_code}' -m 5 -H "Authorization: Bearer $TIERGATE_TOKEN_ALICE" \
		"$TIERGATE_URL/v1/jobs/$id/output?offset=$bad")
	assert_eq 400 "$code" "?offset=$bad"
done
code=$(curl -s -o /dev/null -w '%{http_code}' -m 5 -H "Authorization: Bearer $TIERGATE_TOKEN_ALICE" \
	-H 'Last-Event-ID: -5' "$TIERGATE_URL/v1/jobs/$id/output")
assert_eq 400 "$code" "Last-Event-ID: -5"
