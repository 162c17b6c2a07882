#!/usr/bin/env bash
# Cancel through the gateway at every point of a job's life: before the
# site has given it a job id (the site hung: the job never reaches Slurm;
# the site's answer lost: the job reached Slurm and is cancelled there once
# found by its tag), while pending, while running (twice, then again by an
# admin), after it completed, and racing its completion. Each time the final
# state and ended_by are the gateway's and Slurm's alike, and there is never
# more than one Slurm job per gateway job.
. "$(dirname "$0")/lib.sh"
. "$TESTS_DIR/gateway-lib.sh"
. "$TESTS_DIR/fault-lib.sh"

# a hung site is given up on after 4 s instead of 10
export TIERGATE_REQUEST_TIMEOUT=4
gateway_start
ALPHA_CONF=$(site_var alpha SLURM_CONF)
trap 'SLURM_CONF=$ALPHA_CONF scontrol update PartitionName=debug State=UP 2>/dev/null; fault_cleanup; gateway_stop' EXIT

printf '#!/bin/bash\nsleep 120\n' >"$TEST_JOBS_DIR/long.sh"
printf '#!/bin/bash\necho quick\n' >"$TEST_JOBS_DIR/quick.sh"

# assert_cancelled SITE ID WHO: cancelled in the gateway (ended by WHO) and,
# if it reached Slurm, cancelled there too, as one Slurm job.
assert_cancelled() {
	local site=$1 id=$2 who=$3 js n
	wait_gw_state alice "$id" 60 cancelled
	js=$(tg alice --json status "$id")
	assert_eq "$who" "$(jq -r .ended_by <<<"$js")" "$id: ended_by"
	assert_eq true "$(jq -r .cancel_requested <<<"$js")" "$id: cancel_requested"
	n=$(slurm_jobs_tagged "$site" "$id")
	if [ "$(jq -r .slurm.job_id <<<"$js")" = null ]; then
		assert_eq 0 "$n" "$id: Slurm jobs tagged (cancelled before it had an id)"
	else
		assert_eq 1 "$n" "$id: Slurm jobs tagged"
		assert_eq CANCELLED "$(slurm_state_tagged "$site" "$id")" "$id: state in Slurm"
		assert_eq CANCELLED "$(jq -r .slurm.state <<<"$js")" "$id: slurm.state in the gateway"
	fi
}

# ---- 1. before the job id is known: alpha hangs, the job never reaches Slurm
site_stop alpha slurmrestd
fault_rest_start alpha hang
id1=$(tg alice submit --site alpha --tier basic --name t0308-hung "$TEST_JOBS_DIR/long.sh")
wait_gw_state alice "$id1" 10 submitting
out=$(tg alice cancel "$id1") || fail "cancel of $id1 (submitting) failed: $out"
assert_contains "$out" "cancel requested"
js=$(tg alice --json status "$id1")
assert_eq true "$(jq -r .cancel_requested <<<"$js")" "$id1: cancel_requested at once"
assert_eq null "$(jq -r .slurm.job_id <<<"$js")" "$id1: no Slurm id yet"
# not final before the site has been asked: the gateway cannot know yet
assert_eq submitting "$(jq -r .state <<<"$js")" "$id1: state while the site hangs"
assert_eq null "$(jq -r .ended_by <<<"$js")" "$id1: ended_by before the end"
tg alice cancel "$id1" >/dev/null || fail "second cancel of $id1 failed"
# the submit times out: its outcome is unknown, the job is looked for by tag
wait_log "job $id1: submit to alpha: .*will look for it by tag" 15
fault_rest_stop
site_start alpha slurmrestd
assert_cancelled alpha "$id1" user:alice
note "1: cancelled before submit (site hung): $(job_field alice "$id1" '[.state, .ended_by] | @tsv')"

# ---- 2. before the job id is known: the site took the job, its answer was lost
site_stop alpha slurmrestd
real_port=$(free_port)
site_start alpha slurmrestd "$real_port"
fault_rest_start alpha blackhole-submit "$real_port"
id2=$(tg alice submit --site alpha --tier basic --name t0308-lost "$TEST_JOBS_DIR/long.sh")
deadline=$((SECONDS + 20))
until [ "$(slurm_jobs_tagged alpha "$id2")" = 1 ]; do
	[ "$SECONDS" -lt "$deadline" ] || fail "$id2 never reached alpha's slurmctld through the proxy"
	sleep 0.1
done
js=$(tg alice --json status "$id2")
assert_eq null "$(jq -r .slurm.job_id <<<"$js")" "$id2: Slurm id while the answer is lost"
tg alice cancel "$id2" >/dev/null || fail "cancel of $id2 failed"
# after the timeout the gateway finds the job by its tag, adopts it, cancels it
assert_cancelled alpha "$id2" user:alice
grep -q "lost the answer" "$TEST_JOBS_DIR/fault-rest.log" || fail "the proxy lost no answer"
fault_rest_stop
site_stop alpha slurmrestd
site_start alpha slurmrestd
note "2: adopted by tag and cancelled at the site: $(job_field alice "$id2" '[.slurm.job_id, .slurm.state, .ended_by] | @tsv')"

# ---- 3. while pending (alpha's partition is down: the job waits)
SLURM_CONF=$ALPHA_CONF scontrol update PartitionName=debug State=DOWN
id3=$(tg alice submit --site alpha --tier basic --name t0308-pending "$TEST_JOBS_DIR/long.sh")
wait_gw_state alice "$id3" 30 pending
tg alice cancel "$id3" >/dev/null || fail "cancel of $id3 (pending) failed"
assert_cancelled alpha "$id3" user:alice
SLURM_CONF=$ALPHA_CONF scontrol update PartitionName=debug State=UP
note "3: cancelled while pending"

# ---- 4. while running, twice; then by an admin and again by alice: nothing changes
id4=$(tg alice submit --site beta --tier basic --name t0308-running "$TEST_JOBS_DIR/long.sh")
wait_gw_state alice "$id4" 30 running
a=$(tg alice --json cancel "$id4") || fail "first cancel of $id4 failed: $a"
b=$(tg alice --json cancel "$id4") || fail "second cancel of $id4 failed: $b"
assert_eq true "$(jq -r .cancel_requested <<<"$b")" "$id4: second answer"
assert_cancelled beta "$id4" user:alice
before=$(tg alice --json status "$id4" | jq -c '{state, ended_by, slurm, updated_at}')
code=$(curl -s -o "$TEST_JOBS_DIR/del.json" -w '%{http_code}' -X DELETE \
	-H "Authorization: Bearer $TIERGATE_TOKEN_ADMIN" "$TIERGATE_URL/v1/jobs/$id4")
assert_eq 202 "$code" "admin DELETE of a cancelled job"
tg alice cancel "$id4" >/dev/null || fail "third cancel of $id4 failed"
after=$(tg alice --json status "$id4" | jq -c '{state, ended_by, slurm, updated_at}')
assert_eq "$before" "$after" "$id4 after more cancels"
assert_eq 1 "$(slurm_jobs_tagged beta "$id4")" "$id4: Slurm jobs tagged"
note "4: cancelled while running, cancels after the end change nothing"

# ---- 5. after it completed: nothing changes
id5=$(tg alice submit --site alpha --tier basic --name t0308-done "$TEST_JOBS_DIR/quick.sh")
wait_gw_state alice "$id5" 60 completed
before=$(tg alice --json status "$id5" | jq -c '{state, ended_by, slurm, updated_at, cancel_requested}')
tg alice cancel "$id5" >/dev/null || fail "cancel of the completed $id5 failed"
after=$(tg alice --json status "$id5" | jq -c '{state, ended_by, slurm, updated_at, cancel_requested}')
assert_eq "$before" "$after" "$id5 after a cancel"
assert_eq site "$(jq -r .ended_by <<<"$after")" "$id5: ended_by"
assert_eq COMPLETED "$(slurm_state_tagged alpha "$id5")" "$id5: state in Slurm"

# ---- 6. racing completion
# 6a. the job ended at the site, the gateway has not seen it yet (alpha's
# slurmrestd is away) when the cancel comes: completed, ended by the site
printf '#!/bin/bash\nwhile [ ! -e %s/go-0 ]; do sleep 0.02; done\necho ended\n' \
	"$TEST_JOBS_DIR" >"$TEST_JOBS_DIR/race-0.sh"
id6=$(tg alice submit --site alpha --tier basic --name t0308-race-0 "$TEST_JOBS_DIR/race-0.sh")
wait_gw_state alice "$id6" 60 running
site_stop alpha slurmrestd
touch "$TEST_JOBS_DIR/go-0"
deadline=$((SECONDS + 30))
until [ "$(slurm_state_tagged alpha "$id6")" = COMPLETED ]; do
	[ "$SECONDS" -lt "$deadline" ] || fail "$id6 did not complete at alpha"
	sleep 0.1
done
tg alice cancel "$id6" >/dev/null || fail "cancel of $id6 failed"
assert_eq running "$(job_field alice "$id6" .state)" "$id6: the gateway's state before it can ask"
site_start alpha slurmrestd
wait_gw_state alice "$id6" 60 completed cancelled
js=$(tg alice --json status "$id6")
assert_eq completed "$(jq -r .state <<<"$js")" "$id6: state ($js)"
assert_eq site "$(jq -r .ended_by <<<"$js")" "$id6: ended_by of a job that completed before its cancel"
assert_eq true "$(jq -r .cancel_requested <<<"$js")" "$id6: cancel_requested"
assert_eq COMPLETED "$(slurm_state_tagged alpha "$id6")" "$id6: state in Slurm"

# 6b. the job ends the moment it is cancelled
# Each job waits for its own file; the test creates it and cancels at once,
# in both orders. Either outcome is right; a mix of both, or a state that is
# neither, or one that Slurm does not share, is not.
ids=()
for i in 1 2 3 4 5 6; do
	printf '#!/bin/bash\nwhile [ ! -e %s/go-%s ]; do sleep 0.02; done\necho ended\n' \
		"$TEST_JOBS_DIR" "$i" >"$TEST_JOBS_DIR/race-$i.sh"
	ids+=("$(tg alice submit --site "${SITES[$((i % 2))]}" --tier basic --name "t0308-race-$i" "$TEST_JOBS_DIR/race-$i.sh")")
done
for i in 1 2 3 4 5 6; do
	id=${ids[$((i - 1))]}
	wait_gw_state alice "$id" 60 running
	if [ $((i % 2)) = 0 ]; then
		touch "$TEST_JOBS_DIR/go-$i"
		tg alice cancel "$id" >/dev/null || fail "cancel of $id failed"
	else
		tg alice cancel "$id" >/dev/null || fail "cancel of $id failed"
		touch "$TEST_JOBS_DIR/go-$i"
	fi
done
n_completed=0 n_cancelled=0
for i in 1 2 3 4 5 6; do
	id=${ids[$((i - 1))]}
	site=${SITES[$((i % 2))]}
	wait_gw_state alice "$id" 60 completed cancelled
	js=$(tg alice --json status "$id")
	st=$(jq -r .state <<<"$js")
	# Slurm's own final word, once it has one (COMPLETING first)
	deadline=$((SECONDS + 30))
	while :; do
		sst=$(slurm_state_tagged "$site" "$id")
		[[ $sst =~ ^(COMPLETED|CANCELLED|FAILED)$ ]] && break
		[ "$SECONDS" -lt "$deadline" ] || fail "$id: Slurm state '$sst' after 30 s"
		sleep 0.1
	done
	assert_eq 1 "$(slurm_jobs_tagged "$site" "$id")" "$id: Slurm jobs tagged"
	assert_eq "${st^^}" "$sst" "$id ($site, race $i): Slurm's state against the gateway's ($js)"
	assert_eq "$sst" "$(jq -r .slurm.state <<<"$js")" "$id: slurm.state"
	assert_eq true "$(jq -r .cancel_requested <<<"$js")" "$id: cancel_requested"
	if [ "$st" = completed ]; then
		assert_eq site "$(jq -r .ended_by <<<"$js")" "$id: ended_by of a job that completed although cancelled"
		assert_eq 0 "$(jq -r .slurm.exit_code <<<"$js")" "$id: exit code"
		n_completed=$((n_completed + 1))
	else
		assert_eq user:alice "$(jq -r .ended_by <<<"$js")" "$id: ended_by"
		n_cancelled=$((n_cancelled + 1))
	fi
done
note "6: racing completion: $n_completed completed, $n_cancelled cancelled"

# ---- 7. the site refuses the cancel (Slurm: access denied): the gateway
# stops asking, tracks the job to its end and saves it; its task ends
site_stop alpha slurmrestd
real_port=$(free_port)
site_start alpha slurmrestd "$real_port"
fault_rest_start alpha refuse-cancel "$real_port"
printf '#!/bin/bash\nsleep 4\necho ended\n' >"$TEST_JOBS_DIR/short.sh"
id7=$(tg alice submit --site alpha --tier basic --name t0308-refused "$TEST_JOBS_DIR/short.sh")
wait_gw_state alice "$id7" 30 running
tg alice cancel "$id7" >/dev/null || fail "cancel of $id7 failed"
wait_gw_state alice "$id7" 30 completed
js=$(tg alice --json status "$id7")
assert_eq site "$(jq -r .ended_by <<<"$js")" "$id7: ended_by"
assert_eq COMPLETED "$(slurm_state_tagged alpha "$id7")" "$id7: state in Slurm"
deadline=$((SECONDS + 10))
while :; do
	tasks=$(curl -s -H "Authorization: Bearer $TIERGATE_TOKEN_ADMIN" "$TIERGATE_URL/debug/tasks")
	[[ $tasks == *"$id7"* ]] || break
	[ "$SECONDS" -lt "$deadline" ] || fail "$id7's task lives on after its end: $(jq -c --arg id "$id7" '.tasks[] | select(.debug | contains($id))' <<<"$tasks")"
	sleep 0.2
done
[ "$(grep -c "refused" "$TEST_JOBS_DIR/fault-rest.log")" -le 2 ] ||
	fail "the gateway kept asking to cancel $id7: $(grep -c refused "$TEST_JOBS_DIR/fault-rest.log") DELETEs"
# and says why
wait_log "job $id7: alpha refused to cancel Slurm job [0-9]+: .*not allowed to cancel" 5
fault_rest_stop
site_stop alpha slurmrestd
site_start alpha slurmrestd
note "7: a refused cancel: asked once, the job completed and its task ended"
