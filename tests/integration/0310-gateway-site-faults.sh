#!/usr/bin/env bash
# Faults of site alpha while the gateway runs: slurmrestd stopped, hung
# (accepts, never answers), answering garbage; slurmctld restarted while
# jobs run and the gateway polls; munged stopped. For each: GET /v1/sites
# shows alpha down with its last error; once its breaker is open a submit to
# alpha fails at once with 503 site_unavailable (Retry-After), while jobs
# accepted before keep their place and finish after recovery; beta submits
# and completes jobs throughout; afterwards every job accepted for alpha is
# final, exactly once at the site (one Slurm job per gateway tag), with the
# state Slurm has, and its output arrived through the gateway.
. "$(dirname "$0")/lib.sh"
. "$TESTS_DIR/gateway-lib.sh"
. "$TESTS_DIR/fault-lib.sh"

# a hung site is given up on after 3 s instead of 10
export TIERGATE_REQUEST_TIMEOUT=3
gateway_start

# shellcheck disable=SC2016 # $SLURM_JOB_ID is the job's
printf '#!/bin/bash\necho "out of $SLURM_JOB_ID"\n' >"$TEST_JOBS_DIR/quick.sh"
# shellcheck disable=SC2016
printf '#!/bin/bash\nsleep 6\necho "out of $SLURM_JOB_ID"\n' >"$TEST_JOBS_DIR/slow.sh"

ALPHA_JOBS=() # every job the gateway accepted for alpha
a1='' a2='' a3='' a4='' a5='' a6='' a7='' # set by submit_alpha

# submit_alpha VAR SCRIPT NAME: a job for alpha that must be accepted; its
# id in VAR and in ALPHA_JOBS.
submit_alpha() {
	local -n id_=$1
	id_=$(tg alice submit --site alpha --tier basic --name "$3" "$2") ||
		fail "submit to alpha ($3) was refused: $id_"
	ALPHA_JOBS+=("$id_")
}

# beta_works WHAT: beta takes a job and completes it while alpha is sick.
beta_works() {
	local id t0=$SECONDS
	id=$(tg alice submit --site beta --tier basic --name "t0310-beta" "$TEST_JOBS_DIR/quick.sh") ||
		fail "$1: submit to beta failed: $id"
	wait_gw_state alice "$id" 30 completed
	note "$1: a beta job completed in $((SECONDS - t0)) s"
}

# alpha_refused WHAT ERROR_PATTERN: the breaker is open; a submit to alpha is
# refused at once with a stable code and the site's last error.
alpha_refused() {
	local what=$1 pat=$2 js ms code
	wait_site alpha 30 '.breaker == "open"'
	js=$(site_json alpha)
	assert_eq down "$(jq -r .state <<<"$js")" "$what: alpha's state"
	[[ $(jq -r .last_error <<<"$js") =~ $pat ]] ||
		fail "$what: alpha's last_error does not match '$pat': $js"
	assert_eq up "$(site_json beta | jq -r .state)" "$what: beta's state"
	ms=$(date +%s%N)
	code=$(curl -s -D "$TEST_JOBS_DIR/h" -o "$TEST_JOBS_DIR/b" -w '%{http_code}' -X POST \
		-H "Authorization: Bearer $TIERGATE_TOKEN_ALICE" -H 'Content-Type: application/json' \
		--data '{"site":"alpha","tier":"basic","script":"#!/bin/bash\ntrue\n"}' "$TIERGATE_URL/v1/jobs")
	ms=$((($(date +%s%N) - ms) / 1000000))
	assert_eq 503 "$code" "$what: POST to alpha with its breaker open ($(cat "$TEST_JOBS_DIR/b"))"
	assert_eq site_unavailable "$(jq -r .error.code "$TEST_JOBS_DIR/b")" "$what: error code"
	assert_contains "$(jq -r .error.message "$TEST_JOBS_DIR/b")" "alpha" "$what: error message"
	grep -qi '^Retry-After:' "$TEST_JOBS_DIR/h" || fail "$what: no Retry-After: $(cat "$TEST_JOBS_DIR/h")"
	assert_lt 1000 "$ms" "$what: ms to refuse"
	note "$what: alpha down, refused in $ms ms: $(jq -r .last_error <<<"$js")"
}

# alpha_recovers WHAT: the breaker closes again once alpha answers.
alpha_recovers() {
	local t0=$SECONDS
	wait_site alpha 30 '.breaker == "closed" and .state == "up"'
	note "$1: alpha up again $((SECONDS - t0)) s after the repair"
}

# ---- 1. slurmrestd stopped
submit_alpha a1 "$TEST_JOBS_DIR/slow.sh" t0310-stopped-running
wait_gw_state alice "$a1" 30 running
site_stop alpha slurmrestd
alpha_refused "stopped" "connect"
beta_works "stopped"
site_start alpha slurmrestd
alpha_recovers "stopped"

# ---- 2. slurmrestd hung: accepts connections, never answers
submit_alpha a2 "$TEST_JOBS_DIR/slow.sh" t0310-hung-running
wait_gw_state alice "$a2" 30 running
site_stop alpha slurmrestd
fault_rest_start alpha hang
# accepted while the breaker is still closed: waits for the site
submit_alpha a3 "$TEST_JOBS_DIR/quick.sh" t0310-hung-accepted
beta_works "hung"
alpha_refused "hung" "[Tt]imed? ?out"
assert_eq null "$(job_field alice "$a3" .slurm.job_id)" "$a3: Slurm id while alpha hangs"
fault_rest_stop
site_start alpha slurmrestd
alpha_recovers "hung"
# the job that waited for alpha goes at once, not after a backoff that grew
# while alpha hung
t0=$SECONDS
until [ "$(job_field alice "$a3" .slurm.job_id)" != null ]; do
	[ $((SECONDS - t0)) -le 5 ] || fail "$a3 has no Slurm id 5 s after alpha's recovery: $(tg alice --json status "$a3")"
	sleep 0.2
done
note "hung: the waiting job reached alpha $((SECONDS - t0)) s after its recovery"

# ---- 3. slurmrestd answers garbage
site_stop alpha slurmrestd
fault_rest_start alpha garbage
alpha_refused "garbage" "slurmrestd"
beta_works "garbage"
fault_rest_stop
site_start alpha slurmrestd
alpha_recovers "garbage"

# ---- 4. slurmctld restarted while jobs run and the gateway polls
submit_alpha a4 "$TEST_JOBS_DIR/slow.sh" t0310-ctld-running
submit_alpha a5 "$TEST_JOBS_DIR/slow.sh" t0310-ctld-running
wait_gw_state alice "$a4" 30 running
wait_gw_state alice "$a5" 30 running
site_stop alpha slurmctld
# accepted while the breaker is still closed: waits for the controller
submit_alpha a6 "$TEST_JOBS_DIR/quick.sh" t0310-ctld-accepted
# slurmrestd answers, its controller does not
alpha_refused "slurmctld stopped" "."
beta_works "slurmctld stopped"
site_start alpha slurmctld
alpha_recovers "slurmctld restarted"

# ---- 5. munged stopped: slurmrestd (JWT) still answers, the nodes cannot talk
submit_alpha a7 "$TEST_JOBS_DIR/slow.sh" t0310-munge-running
wait_gw_state alice "$a7" 30 running
site_stop alpha munged
beta_works "munged stopped"
# slurmrestd still answers (JWT): all the gateway can see of alpha is well
wait_site alpha 5 '.state == "up"' 
# the job ends while its node cannot tell slurmctld nor sign its events
sleep_until=$((SECONDS + 8))
while [ "$SECONDS" -lt "$sleep_until" ]; do
	st=$(job_field alice "$a7" .state)
	[ "$st" = running ] || [ "$st" = completing ] || fail "$a7 is '$st' while munged is away"
	sleep 0.5
done
site_start alpha munged

# ---- after recovery: nothing lost, nothing twice
for id in "${ALPHA_JOBS[@]}"; do
	wait_gw_state alice "$id" 90 completed
	js=$(tg alice --json status "$id")
	assert_eq 1 "$(slurm_jobs_tagged alpha "$id")" "$id: Slurm jobs tagged"
	assert_eq COMPLETED "$(slurm_state_tagged alpha "$id")" "$id: state in Slurm"
	assert_eq "$(jq -r .slurm.job_id <<<"$js")" \
		"$(SLURM_CONF=$(site_var alpha SLURM_CONF) squeue -h -t all -o '%j %i' | awk -v t="$id" '$1 == t {print $2}')" \
		"$id: Slurm id"
	assert_eq site "$(jq -r .ended_by <<<"$js")" "$id: ended_by"
	# a job adopted after it ran too: the node's reports waited (503
	# job_not_ready) until the gateway knew its Slurm id, then came (the
	# relay's backoff is at most 5 s)
	grep -q "job $id: adopted Slurm job" "$TIERGATED_LOG" && note "$id: adopted by its tag"
	deadline=$((SECONDS + 30))
	while :; do
		out=$(TIERGATE_TOKEN=$TIERGATE_TOKEN_ALICE timeout 60 "$TIERGATE_CLI" follow "$id") ||
			fail "$id: follow failed: $out"
		[ -n "$out" ] || [ "$SECONDS" -ge "$deadline" ] && break
		sleep 1
	done
	# (slurmstepd adds its complaints to the output of a job that ended
	# while munged was away)
	assert_eq "out of $(jq -r .slurm.job_id <<<"$js")" "$(head -n 1 <<<"$out")" "$id: output through the gateway"
done
note "${#ALPHA_JOBS[@]} alpha jobs: each completed, once at the site, with its output"
