#!/usr/bin/env bash
# With the gateway down, jobs finish in normal time, and the on-node spool
# delivers every event and every byte once the gateway is back, in order
# and counted once.
. "$(dirname "$0")/lib.sh"
. "$TESTS_DIR/plugin-lib.sh"

RECV=$TEST_JOBS_DIR/recv
# nothing listens on the gateway port now
if curl -s -m 1 -o /dev/null "$GATEWAY_URL/"; then fail "something answers on $GATEWAY_URL"; fi

declare -A ids
for s in "${SITES[@]}"; do
	site_env "$s"
	t0=$(date +%s%N)
	ids[$s]=$(sbatch_as alice --cpu-tier=premium -o "$TEST_JOBS_DIR/$s-%j.out" \
		--wrap 'echo start; sleep 0.3; echo done; exit 4')
	wait_job "$s" "${ids[$s]}" FAILED 30 >/dev/null
	ms=$((($(date +%s%N) - t0) / 1000000))
	note "$s: job ${ids[$s]} ended ${ms} ms after sbatch with the gateway down"
	assert_lt 5000 "$ms" "$s: ms from sbatch to the end of a 0.3 s job"
	# srun with the gateway down is not slowed either
	t0=$(date +%s%N)
	run_as bob srun true || fail "$s: srun true failed with the gateway down"
	ms=$((($(date +%s%N) - t0) / 1000000))
	assert_lt 2000 "$ms" "$s: ms of srun true with the gateway down"
done

start_receiver "$RECV"
for s in "${SITES[@]}"; do
	id=${ids[$s]}
	wait_for 30 test -e "$RECV/out/$s-$id-stdout.eof" ||
		fail "$s job $id: output not delivered after the gateway came back"
	assert_eq "$(printf 'start\ndone')" "$(cat "$RECV/out/$s-$id-stdout")" "$s job $id: output"
	wait_events "$RECV" "$s" "$id" 3 10 || true
	assert_eq "step_start task_exit step_end" "$(events_of "$RECV" "$s" "$id")" "$s job $id: events"
	assert_eq 4 "$(jq -r --arg s "$s" --argjson j "$id" 'select(.site == $s and .job_id == $j and .kind == "task_exit") | .exit_code' "$RECV/events.jsonl")" \
		"$s job $id: exit code"
done
# each event stored once even if a reply was lost
n=$(jq -r .id "$RECV/events.jsonl" | sort | uniq -d | wc -l)
assert_eq 0 "$n" "events stored twice"
