#!/usr/bin/env bash
# kill -9 of tiergated after POST /v1/jobs returned, and a restart: the job is
# still tracked to its end, exists exactly once at the site, and a job
# cancelled while the gateway was away... is cancelled once it is back.
. "$(dirname "$0")/lib.sh"
. "$TESTS_DIR/gateway-lib.sh"

gateway_start
printf '#!/bin/bash\nsleep 3\necho done\n' >"$TEST_JOBS_DIR/job.sh"
ids=()
for i in 1 2 3 4 5; do
	ids+=("$(tg alice submit --site "${SITES[$((i % ${#SITES[@]}))]}" --tier basic --name "t0302-$i" "$TEST_JOBS_DIR/job.sh")")
done
kill -9 "$GW_PID"
GW_PID=
sleep 1
gateway_start
for id in "${ids[@]}"; do
	wait_gw_state alice "$id" 90 completed
done
# exactly once at the site: one Slurm job per gateway id (the tag)
for s in "${SITES[@]}"; do
	site_env "$s"
	for id in "${ids[@]}"; do
		n=$(squeue -h -t all -o '%j' | grep -cx "$id" || true)
		site=$(job_field alice "$id" .site)
		if [ "$site" = "$s" ]; then
			assert_eq 1 "$n" "$s: Slurm jobs named $id"
		fi
	done
done

# SIGTERM with a job still running and a client following its output: the
# follower's stream ends at once (it resumes with Last-Event-ID later), the
# gateway drains without waiting out drain_timeout, its pollers end, the
# job is parked for the next start, and nothing is reported leaked
printf '#!/bin/bash\necho started\nsleep 8\n' >"$TEST_JOBS_DIR/short.sh"
id=$(tg alice submit --site "${SITES[0]}" --tier basic --name t0302-term "$TEST_JOBS_DIR/short.sh")
wait_gw_state alice "$id" 60 running
curl -sN -m 30 -H "Authorization: Bearer $TIERGATE_TOKEN_ALICE" \
	"$TIERGATE_URL/v1/jobs/$id/output" >"$TEST_JOBS_DIR/follow.out" 2>&1 &
follower=$!
for _ in $(seq 1 50); do
	grep -q started "$TEST_JOBS_DIR/follow.out" && break
	sleep 0.1
done
log0=$(stat -c %s "$TIERGATED_LOG")
t0=$SECONDS
gateway_stop
wait "$follower" || true # curl ends with the stream
assert_lt 3 $((SECONDS - t0)) "seconds from SIGTERM to exit with a follower"
tail -c +"$((log0 + 1))" "$TIERGATED_LOG" >"$TEST_JOBS_DIR/term.log"
grep -q 'drained; exiting' "$TEST_JOBS_DIR/term.log" ||
	fail "no clean drain at SIGTERM: $(grep -v ' http ' "$TEST_JOBS_DIR/term.log")"
grep -q 'unfinished job(s) parked' "$TEST_JOBS_DIR/term.log" ||
	fail "no 'parked' line at SIGTERM: $(cat "$TEST_JOBS_DIR/term.log")"
if grep -E 'leaked|still referenced|drain timeout' "$TEST_JOBS_DIR/term.log"; then
	fail "the gateway reported leaks or a drain timeout at SIGTERM"
fi
