# shellcheck shell=bash
# Helpers for the plugin's tests (sourced after lib.sh).

MINT_TICKET=$REPO/build/tests/tools/mint-ticket
[ -x "$MINT_TICKET" ] || fail "$MINT_TICKET is missing: run make first"

# The gateway URL the plugin reports to, from the first site's plugstack.conf.
plugin_arg() { # plugin_arg SITE KEY
	local conf
	conf=$(site_var "$1" DIR)/etc/plugstack.conf
	grep -o "$2=[^ ]*" "$conf" | head -n 1 | cut -d= -f2-
}
GATEWAY_URL=$(plugin_arg "${SITES[0]}" gateway)
[ -n "$GATEWAY_URL" ] || fail "no gateway= in plugstack.conf: is build/spank/tiergate.so built?"
RECV_PORT=${GATEWAY_URL##*:}

# start_receiver DIR: the stand-in gateway on the plugin's URL, checking
# MUNGE credentials of every site's realm.
start_receiver() {
	local args=() s
	for s in "${SITES[@]}"; do args+=(--munge-socket "$(site_var "$s" MUNGE_SOCKET)"); done
	mkdir -p "$1"
	python3 "$TESTS_DIR/receiver.py" --port "$RECV_PORT" --dir "$1" "${args[@]}" \
		>>"$1/receiver.log" 2>&1 &
	RECV_PID=$!
	local i
	for i in $(seq 1 100); do
		grep -q ready "$1/receiver.log" 2>/dev/null && return 0
		sleep 0.05
	done
	fail "receiver did not start: $(cat "$1/receiver.log")"
}
stop_receiver() {
	[ -n "${RECV_PID:-}" ] || return 0
	kill "$RECV_PID" 2>/dev/null || true
	wait "$RECV_PID" 2>/dev/null || true
	RECV_PID=
}
trap stop_receiver EXIT

# events_of DIR SITE JOB: the kinds of the job's events, in arrival order.
events_of() {
	[ -f "$1/events.jsonl" ] || return 0
	jq -r --arg s "$2" --argjson j "$3" \
		'select(.site == $s and .job_id == $j) | .kind' "$1/events.jsonl" | xargs
}

# wait_events DIR SITE JOB N TIMEOUT_S: until the job has N events.
wait_events() {
	local deadline=$((SECONDS + $5))
	until [ "$(events_of "$1" "$2" "$3" | wc -w)" -ge "$4" ]; do
		[ "$SECONDS" -lt "$deadline" ] || return 1
		sleep 0.1
	done
}

# wait_for TIMEOUT_S CMD...: until CMD succeeds.
wait_for() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@"; do
		[ "$SECONDS" -lt "$deadline" ] || return 1
		sleep 0.1
	done
}

# sbatch_as USER ARGS...: submit, print the job id (fails the test on error).
sbatch_as() {
	local user=$1 out
	shift
	out=$(run_as "$user" sbatch --parsable "$@" 2>&1) || fail "sbatch as $user failed: $out"
	printf '%s\n' "${out%%;*}"
}

# cpus_in LIST: number of CPUs in a kernel CPU list ("0-1,3" -> 3).
cpus_in() {
	local n=0 part lo hi
	IFS=, read -r -a parts <<<"$1"
	for part in "${parts[@]}"; do
		lo=${part%-*}
		hi=${part#*-}
		n=$((n + hi - lo + 1))
	done
	echo "$n"
}
