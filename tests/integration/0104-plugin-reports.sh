#!/usr/bin/env bash
# The job's life and output reach the gateway (here the stand-in receiver,
# which checks the MUNGE credential of each site's realm): events in order
# with the right exit codes and CPU time, output streamed while the job runs
# and complete at the end, byte for byte, for a 10 MB line and binary bytes.
. "$(dirname "$0")/lib.sh"
. "$TESTS_DIR/plugin-lib.sh"

RECV=$TEST_JOBS_DIR/recv
start_receiver "$RECV"

for s in "${SITES[@]}"; do
	site_env "$s"
	# --- a job that writes over 3 s and exits 3
	id=$(sbatch_as alice --cpu-tier=premium -c 2 -o "$TEST_JOBS_DIR/$s-%j.out" \
		-e "$TEST_JOBS_DIR/$s-%j.err" \
		--wrap 'for i in 1 2 3 4 5 6; do echo "line $i"; sleep 0.5; done; echo oops >&2; exit 3')
	out=$RECV/out/$s-$id-stdout
	# output is seen while the job still runs
	wait_for 20 grep -q "line 2" "$out" 2>/dev/null || fail "$s job $id: no output streamed"
	state=$(job_state "$s" "$id")
	assert_eq RUNNING "$state" "$s job $id: state when its first lines arrived"
	wait_job "$s" "$id" FAILED 60 >/dev/null
	wait_for 20 test -e "$out.eof" || fail "$s job $id: stdout never completed"
	wait_for 20 test -e "$RECV/out/$s-$id-stderr.eof" || fail "$s job $id: stderr never completed"
	cmp "$TEST_JOBS_DIR/$s-$id.out" "$out" || fail "$s job $id: stdout differs from the job's file"
	cmp "$TEST_JOBS_DIR/$s-$id.err" "$RECV/out/$s-$id-stderr" || fail "$s job $id: stderr differs"
	wait_events "$RECV" "$s" "$id" 3 10 || true
	assert_eq "step_start task_exit step_end" "$(events_of "$RECV" "$s" "$id")" "$s job $id: events"
	ev() { jq -c --arg s "$s" --argjson j "$id" --arg k "$1" \
		'select(.site == $s and .job_id == $j and .kind == $k)' "$RECV/events.jsonl"; }
	assert_eq 3 "$(ev task_exit | jq .exit_code)" "$s job $id: exit code"
	assert_eq premium "$(ev step_start | jq -r .tier)" "$s job $id: tier"
	assert_eq 2 "$(cpus_in "$(ev step_start | jq -r .cores)")" "$s job $id: cores"
	assert_contains " $NODES " " $(ev step_start | jq -r .node) " "$s job $id: node"
	jq -e '.cpu_seconds >= 0' <<<"$(ev step_end)" >/dev/null || fail "$s job $id: no cpu_seconds"

	# --- a busy job: CPU seconds are counted; srun steps report too
	# (the step measures its own CPU time: on a loaded machine a 1 s busy
	# loop gets less than 1 s of CPU)
	busy=$TEST_JOBS_DIR/$s-busy.sh
	cat >"$busy" <<'SH'
#!/bin/bash
TIMEFORMAT='%3U %3S'
{ time timeout 1 sh -c 'while :; do :; done'; } 2>&1 | awk '{ print "used", $1 + $2 }'
SH
	chmod 755 "$busy"
	id=$(sbatch_as bob -o "$TEST_JOBS_DIR/$s-busy.out" --wrap "srun -n1 $busy; true")
	wait_job "$s" "$id" COMPLETED 60 >/dev/null
	wait_events "$RECV" "$s" "$id" 6 15 ||
		fail "$s job $id: events: $(events_of "$RECV" "$s" "$id")"
	cpu=$(jq -r --arg s "$s" --argjson j "$id" \
		'select(.site == $s and .job_id == $j and .kind == "step_end" and .step == "0") | .cpu_seconds' "$RECV/events.jsonl")
	used=$(awk '$1 == "used" { print $2 }' "$TEST_JOBS_DIR/$s-busy.out")
	awk -v c="$cpu" -v u="$used" 'BEGIN { exit !(u > 0.05 && c >= u - 0.05 && c <= u + 0.2) }' ||
		fail "$s job $id: srun step reported ${cpu}s CPU, the step measured ${used:-nothing}s"

	# --- a 10 MB line and binary bytes, through one 1 MiB buffer
	src=$TEST_JOBS_DIR/$s-big.src
	{ head -c 10000000 /dev/zero | tr '\0' 'x'; echo; head -c 300000 /dev/urandom; } >"$src"
	chmod 644 "$src"
	id=$(sbatch_as alice -o "$TEST_JOBS_DIR/$s-%j.out" --wrap "cat $src")
	wait_job "$s" "$id" COMPLETED 60 >/dev/null
	wait_for 30 test -e "$RECV/out/$s-$id-stdout.eof" || fail "$s job $id: big output never completed"
	cmp "$src" "$RECV/out/$s-$id-stdout" || fail "$s job $id: big output differs"
done
[ ! -s "$RECV/duplicates" ] || note "duplicates (counted once): $(wc -l <"$RECV/duplicates")"
