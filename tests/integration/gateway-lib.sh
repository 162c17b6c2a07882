# shellcheck shell=bash
# Helpers for the gateway's tests (sourced after lib.sh): start tiergated
# for the test cluster's sites (slurm-test-cluster/gateway-up), call it
# through the real CLI, stop it at the end of the test.

TIERGATE_CLI=$REPO/build/gateway/tiergate
[ -x "$TIERGATE_CLI" ] || fail "$TIERGATE_CLI is missing: run make first"

gateway_start() {
	local out
	out=$("$REPO/slurm-test-cluster/gateway-up" 2>"$TEST_JOBS_DIR/gateway-up.log") ||
		fail "gateway-up failed: $(cat "$TEST_JOBS_DIR/gateway-up.log")"
	eval "$out"
	export TIERGATE_URL
	GW_PID=$(cat "$TIERGATE_CLUSTER_DIR/gateway/tiergated.pid")
}
gateway_stop() {
	[ -n "${GW_PID:-}" ] || return 0
	kill "$GW_PID" 2>/dev/null || true
	# exited daemons linger as zombies here: ask ps, not kill -0
	for _ in $(seq 1 50); do
		case $(ps -o stat= -p "$GW_PID" 2>/dev/null) in "" | Z*) break ;; esac
		sleep 0.1
	done
	GW_PID=
}
trap gateway_stop EXIT

# tg USER ARGS...: the CLI as USER (with USER's token).
tg() {
	local user=$1 tok
	shift
	tok=TIERGATE_TOKEN_${user^^}
	TIERGATE_TOKEN=${!tok} "$TIERGATE_CLI" "$@"
}

# job_field USER JOB JQ: a field of the job as USER sees it.
job_field() {
	tg "$1" --json status "$2" | jq -r "$3"
}

# wait_gw_state USER JOB TIMEOUT STATE...: until the gateway shows a state.
wait_gw_state() {
	local user=$1 job=$2 timeout=$3 st deadline
	shift 3
	deadline=$((SECONDS + timeout))
	while :; do
		st=$(job_field "$user" "$job" .state 2>/dev/null || true)
		for want in "$@"; do
			[ "$st" = "$want" ] && return 0
		done
		[ "$SECONDS" -lt "$deadline" ] ||
			fail "gateway job $job is '$st' after ${timeout}s, wanted $*: $(tg "$user" --json status "$job" 2>&1)"
		sleep 0.2
	done
}

# assert_view_fresh USER JOB: GET /v1/jobs/JOB (served from the job's
# serialized copy, job_json_text) shows what a fresh view shows (the job's
# entry in GET /v1/jobs, built anew each time): the copy never goes stale.
# The job may change between the two requests (an event arrives): a stale
# copy differs every time, a change in between only once or twice.
assert_view_fresh() {
	local user=$1 job=$2 tok one listed
	tok=TIERGATE_TOKEN_${user^^}
	for _ in 1 2 3 4 5; do
		one=$(curl -sf -H "Authorization: Bearer ${!tok}" "$TIERGATE_URL/v1/jobs/$job" | jq -S .) ||
			fail "GET /v1/jobs/$job failed"
		listed=$(curl -sf -H "Authorization: Bearer ${!tok}" "$TIERGATE_URL/v1/jobs?limit=1000" |
			jq -S --arg id "$job" '.jobs[] | select(.id == $id)') ||
			fail "GET /v1/jobs failed"
		[ "$one" = "$listed" ] && return 0
		sleep 0.3
	done
	fail "job $job: GET shows $(jq -c . <<<"$one"), the list $(jq -c . <<<"$listed")"
}
