# shellcheck shell=bash
# Helpers for the fault tests (sourced after lib.sh and gateway-lib.sh): stop
# and start one daemon of a running site (with the commands `up` uses, from
# slurm-test-cluster/lib.sh), and put a misbehaving slurmrestd
# (fault-rest.py) on a site's REST port. Whatever a test stopped is started
# again when it exits, pass or fail, so the next test finds the site whole.

# shellcheck source=slurm-test-cluster/lib.sh
. "$REPO/slurm-test-cluster/lib.sh"

FAULT_PID=
declare -A FAULT_STOPPED=() # "SITE NAME" -> 1 while stopped by us

# site_daemon_pid SITE NAME: pid of slurmrestd|slurmctld|munged, or nothing.
site_daemon_pid() {
	local pid
	tg_site_load "$1" || fail "no site $1"
	case $2 in
	munged) pid=$(tg_read_pid "$S_RUN/munged.pid") ;;
	slurmctld | slurmrestd) pid=$(tg_read_pid "$S_RUN/$2.pid.own") ;;
	*) fail "site_daemon_pid: unknown daemon $2" ;;
	esac
	tg_alive "$pid" "$2" && printf '%s' "$pid"
	return 0
}

# site_stop SITE NAME [SIGNAL]: stop the daemon (TERM, or SIGNAL) and wait
# until it is gone.
site_stop() {
	local site=$1 name=$2 sig=${3:-TERM} pid
	pid=$(site_daemon_pid "$site" "$name")
	[ -n "$pid" ] || fail "$site: $name is not running"
	FAULT_STOPPED["$site $name"]=1
	kill -"$sig" "$pid"
	for _ in $(seq 1 100); do
		tg_alive "$pid" || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	sleep 0.2
	! tg_alive "$pid" || fail "$site: $name ($pid) did not stop"
}

# site_start SITE NAME [PORT]: start the daemon and wait until it answers
# (slurmrestd: 401 without a token; slurmctld: sinfo lists every node;
# munged: a credential round trip).
site_start() {
	local site=$1 name=$2 port=${3:-} deadline
	tg_site_load "$site" || fail "no site $site"
	case $name in
	munged) tg_start_munged || fail "$site: munged did not start: $(tail -5 "$S_LOG/munged.log")" ;;
	slurmctld) tg_start_slurmctld ;;
	slurmrestd) tg_start_slurmrestd "$port" ;;
	*) fail "site_start: unknown daemon $name" ;;
	esac
	deadline=$((SECONDS + 30))
	while :; do
		case $name in
		munged) munge -S "$S_MUNGE_SOCKET" -n 2>/dev/null | unmunge -S "$S_MUNGE_SOCKET" >/dev/null 2>&1 && break ;;
		slurmctld) [ "$(tg_node_states | wc -l)" -ge "${#S_NODES_ARR[@]}" ] && break ;;
		slurmrestd) [ "$(tg_rest_code "${port:-$S_REST_PORT}")" = 401 ] && break ;;
		esac
		[ "$SECONDS" -lt "$deadline" ] || fail "$site: $name does not answer 30 s after its start"
		sleep 0.1
	done
	# a slurmrestd on another port still has to go back to its own
	[ -n "$port" ] || unset "FAULT_STOPPED[$site $name]"
}

# free_port: a TCP port nothing listens on now.
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# fault_rest_start SITE MODE [UPSTREAM_PORT]: fault-rest.py on the site's
# REST port (stop the real slurmrestd first). Sets FAULT_PID.
fault_rest_start() {
	local site=$1 mode=$2 up=${3:-} port
	tg_site_load "$site" || fail "no site $site"
	port=$S_REST_PORT
	[ -z "$FAULT_PID" ] || fail "a fault-rest.py runs already ($FAULT_PID)"
	python3 "$TESTS_DIR/fault-rest.py" "$port" "$mode" ${up:+"$up"} \
		>"$TEST_JOBS_DIR/fault-rest.out" 2>>"$TEST_JOBS_DIR/fault-rest.log" &
	FAULT_PID=$!
	for _ in $(seq 1 100); do
		grep -qx ready "$TEST_JOBS_DIR/fault-rest.out" 2>/dev/null && return 0
		kill -0 "$FAULT_PID" 2>/dev/null || break
		sleep 0.05
	done
	fail "fault-rest.py $mode did not start on :$port: $(cat "$TEST_JOBS_DIR/fault-rest.log")"
}

fault_rest_stop() {
	[ -n "$FAULT_PID" ] || return 0
	kill "$FAULT_PID" 2>/dev/null || true
	wait "$FAULT_PID" 2>/dev/null || true
	FAULT_PID=
}

# On exit: the fault server goes, every daemon we stopped comes back.
fault_cleanup() {
	local k pid
	fault_rest_stop
	for k in "${!FAULT_STOPPED[@]}"; do
		# a slurmrestd moved to another port goes back to its own
		if [ "${k#* }" = slurmrestd ]; then
			pid=$(site_daemon_pid "${k% *}" slurmrestd)
			[ -z "$pid" ] || kill "$pid" 2>/dev/null || true
			sleep 0.2
		fi
		(site_start "${k% *}" "${k#* }") || true
	done
}
trap 'fault_cleanup; gateway_stop' EXIT

# site_json SITE: the site's entry of GET /v1/sites.
site_json() {
	tg admin --json sites | jq -c --arg s "$1" '.sites[] | select(.name == $s)'
}

# wait_site SITE TIMEOUT JQ_CONDITION: until the condition holds on the
# site's entry of GET /v1/sites.
wait_site() {
	local site=$1 timeout=$2 cond=$3 deadline
	deadline=$((SECONDS + timeout))
	while :; do
		[ "$(site_json "$site" | jq -r "$cond")" = true ] && return 0
		[ "$SECONDS" -lt "$deadline" ] ||
			fail "site $site: '$cond' not true after ${timeout}s: $(site_json "$site")"
		sleep 0.2
	done
}

# slurm_jobs_tagged SITE TAG: how many Slurm jobs of SITE carry the gateway
# tag (the job's name).
slurm_jobs_tagged() {
	SLURM_CONF=$(site_var "$1" SLURM_CONF) squeue -h -t all -o '%j' | grep -cxF "$2" || true
}

# slurm_state_tagged SITE TAG: the Slurm state of the job named TAG.
slurm_state_tagged() {
	SLURM_CONF=$(site_var "$1" SLURM_CONF) squeue -h -t all -o '%j %T' | awk -v t="$2" '$1 == t {print $2}'
}

# wait_log REGEX TIMEOUT: until tiergated's log has a line matching REGEX.
wait_log() {
	local deadline=$((SECONDS + $2))
	until grep -qE "$1" "$TIERGATED_LOG"; do
		[ "$SECONDS" -lt "$deadline" ] || fail "no line matching '$1' in $TIERGATED_LOG after $2 s"
		sleep 0.1
	done
}
