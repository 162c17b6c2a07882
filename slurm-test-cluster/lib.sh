# shellcheck shell=bash disable=SC2034
# (SC2034: the variables set here are used by the scripts that source this file)
# Shared functions of slurm-test-cluster/{up,down,status}. Sourced, never run.
#
# Layout under $TG_ROOT (default /tmp/tiergate-cluster):
#   .tiergate-cluster        marker: this directory was made by `up` (guards --purge)
#   .lock                    flock: up/down/status never overlap
#   sites                    names of the sites `up` brought up since the last `down`
#   gateway/ticket-es256.key EC P-256 private key (PKCS#8 PEM, 0600)
#   gateway/ticket-es256.pub its public key (PEM, 0644), read by the plugin on the nodes
#   jobs/                    scratch for job output, mode 1777
#   <site>/site.env          the site's identity and ports (sourced by the scripts)
#   <site>/etc/              slurm.conf plugstack.conf jwt_hs256.key tiergate-tiers.conf
#   <site>/munge/            munge.socket (dir 0755); key/ (0700) munge.key munged.seed
#   <site>/state/            StateSaveLocation, a tmpfs when mounting works
#   <site>/spool/<node>/     SlurmdSpoolDir per node; spool/tiergate/ for the plugin
#   <site>/run/              pid files: *.pid.own are written by `up` from $!
#   <site>/log/              every daemon's log

TG_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
TG_REPO=$(cd "$TG_HERE/.." && pwd -P)
TG_ROOT=${TIERGATE_CLUSTER_DIR:-/tmp/tiergate-cluster}
TG_PROG=$(basename "$0")
TG_T0=$(date +%s%N)

# Greek letters get fixed slots so a site keeps its ports whatever else runs;
# any other name takes the first free slot from 24 on (see tg_assign_identity).
TG_GREEK=(alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu
	nu xi omicron pi rho sigma tau upsilon phi chi psi omega)
TG_MAX_SLOT=58 # 6817 + 1000*58 + nodes + 2 stays below 65536

tg_log() { # tg_log MSG...: timestamped line on stderr
	local ms=$((($(date +%s%N) - TG_T0) / 1000000))
	printf '[%s %5d ms] %s\n' "$TG_PROG" "$ms" "$*" >&2
}
tg_warn() { printf '%s: warning: %s\n' "$TG_PROG" "$*" >&2; }
tg_die() {
	printf '%s: error: %s\n' "$TG_PROG" "$*" >&2
	exit 1
}

# Quote a value for sh/bash: 'it'\''s' style, safe for eval.
tg_shq() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

tg_upper() { printf '%s' "${1^^}"; }

tg_valid_site_name() { [[ $1 =~ ^[a-z][a-z0-9]{0,15}$ ]]; }

# Absolute path of the root; it must not be / or relative.
tg_check_root() {
	case "$TG_ROOT" in
	/*) ;;
	*) tg_die "TIERGATE_CLUSTER_DIR must be an absolute path (got '$TG_ROOT')" ;;
	esac
	TG_ROOT=${TG_ROOT%/}
	[ -n "$TG_ROOT" ] || tg_die "TIERGATE_CLUSTER_DIR must not be /"
}

# Serialise up/down/status on one root. Holds fd 9 until the script exits.
tg_lock() {
	mkdir -p "$TG_ROOT"
	exec 9>>"$TG_ROOT/.lock"
	flock -w 120 9 || tg_die "another up/down holds $TG_ROOT/.lock for over 120 s"
}

# True if PID is a live (non-zombie) process whose command is NAME.  Exited
# daemons linger as zombies here (PID 1 does not reap), so kill -0 is not enough;
# the name check guards against a recycled pid.
tg_alive() { # tg_alive PID [NAME]
	local pid=$1 name=${2:-} st comm
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	st=$(ps -o stat= -p "$pid" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "${st:0:1}" != Z ] || return 1
	if [ -n "$name" ]; then
		comm=$(ps -o comm= -p "$pid" 2>/dev/null) || return 1
		[ "$comm" = "$name" ] || return 1
	fi
	return 0
}

tg_read_pid() { # tg_read_pid FILE: prints the pid in FILE or nothing
	local p=
	[ -f "$1" ] && read -r p <"$1" 2>/dev/null || true
	[[ $p =~ ^[0-9]+$ ]] && printf '%s' "$p"
	return 0
}

# Set the S_* path variables of site NAME (no I/O).
tg_site_paths() {
	S_NAME=$1
	S_DIR=$TG_ROOT/$1
	S_ETC=$S_DIR/etc
	S_RUN=$S_DIR/run
	S_LOG=$S_DIR/log
	S_STATE=$S_DIR/state
	S_SPOOL=$S_DIR/spool
	S_MUNGE_DIR=$S_DIR/munge
	S_MUNGE_KEY=$S_DIR/munge/key/munge.key
	S_MUNGE_SOCKET=$S_DIR/munge/munge.socket
	S_CONF=$S_ETC/slurm.conf
	S_PLUGSTACK=$S_ETC/plugstack.conf
	S_JWT_KEY=$S_ETC/jwt_hs256.key
	S_TIERS=$S_ETC/tiergate-tiers.conf
	S_TG_SPOOL=$S_SPOOL/tiergate
	S_ENV=$S_DIR/site.env
}

# Load site.env of NAME into S_* (paths too). Fails if the site was never set up.
tg_site_load() {
	tg_site_paths "$1"
	[ -f "$S_ENV" ] || return 1
	# shellcheck disable=SC1090
	. "$S_ENV"
	read -r -a S_NODES_ARR <<<"$S_NODES"
	read -r -a S_SLURMD_PORTS_ARR <<<"$S_SLURMD_PORTS"
}

# tg_site_field NAME FIELD: S_<FIELD> from NAME's site.env (nothing if none).
tg_site_field() {
	(
		tg_site_load "$1" 2>/dev/null || exit 0
		v=S_$2
		printf '%s' "${!v:-}"
	)
}

# Sites that exist under the root (have a site.env), sorted by slot.
tg_all_sites() {
	local f n slot
	for f in "$TG_ROOT"/*/site.env; do
		[ -f "$f" ] || continue
		n=$(basename "$(dirname "$f")")
		tg_valid_site_name "$n" || continue
		slot=$(sed -n 's/^S_SLOT=//p' "$f" | tr -d "'")
		printf '%s %s\n' "${slot:-999}" "$n"
	done | sort -n | awk '{print $2}'
}

# Sites brought up by `up` since the last `down` (the active set).
tg_active_sites() {
	[ -f "$TG_ROOT/sites" ] && tr -s ' \n' '\n' <"$TG_ROOT/sites" | grep -v '^$' || true
}

# The daemons of a loaded site, one "NAME PIDFILE LABEL" per line, start order.
tg_site_daemons() {
	local n f
	printf 'munged %s munged\n' "$S_RUN/munged.pid"
	printf 'slurmctld %s slurmctld\n' "$S_RUN/slurmctld.pid.own"
	for n in "${S_NODES_ARR[@]}"; do
		printf 'slurmd %s slurmd:%s\n' "$S_RUN/slurmd-$n.pid.own" "$n"
	done
	printf 'slurmrestd %s slurmrestd\n' "$S_RUN/slurmrestd.pid.own"
	# rest-local-up: one per user, for gateway sites with auth = munge
	for f in "$S_RUN"/slurmrestd-local-*.pid.own; do
		[ -e "$f" ] && printf 'slurmrestd %s slurmrestd:local\n' "$f"
	done
	return 0
}

# HTTP code of GET /openapi without credentials: 401 means slurmrestd answers.
tg_rest_code() { # tg_rest_code PORT
	curl -s -m 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/openapi" 2>/dev/null || true
}

# Does something accept TCP connections on 127.0.0.1:PORT?
tg_port_open() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# "NODE STATE" lines for the loaded site, or nothing if slurmctld does not
# answer. sinfo retries a refused connection for 9 s: probe the port first.
tg_node_states() {
	tg_port_open "$S_CTLD_PORT" || return 0
	SLURM_CONF=$S_CONF timeout 10 sinfo -h -N -o '%N %T' 2>/dev/null | sort -u || true
}

# A node is ready when idle, mixed or allocated, with no flag suffix (*, ~, #, ...).
tg_state_ready() { [[ $1 =~ ^(idle|mixed|allocated)$ ]]; }
# Drained, draining, down, failing, or not responding: wants attention.
tg_state_bad() { [[ $1 =~ drain|down|fail|\*$ ]]; }

# Why the loaded site is not healthy (empty output = healthy).
tg_site_problems() {
	local name file label pid states n st code
	while read -r name file label; do
		pid=$(tg_read_pid "$file")
		if [ -z "$pid" ]; then
			echo "$label: no pid file ($file)"
		elif ! tg_alive "$pid" "$name"; then
			echo "$label: pid $pid not running"
		fi
	done < <(tg_site_daemons)
	pid=$(tg_read_pid "$S_RUN/slurmctld.pid.own")
	if ! tg_alive "$pid" slurmctld; then
		echo "sinfo/REST not checked: slurmctld is not running"
		return 0
	fi
	states=$(tg_node_states)
	if [ -z "$states" ]; then
		echo "sinfo: slurmctld on port $S_CTLD_PORT does not answer"
	else
		for n in "${S_NODES_ARR[@]}"; do
			st=$(awk -v n="$n" '$1 == n {print $2}' <<<"$states")
			tg_state_ready "$st" || echo "node $n: ${st:-missing}"
		done
	fi
	code=$(tg_rest_code "$S_REST_PORT")
	[ "$code" = 401 ] || echo "slurmrestd: GET http://127.0.0.1:$S_REST_PORT/openapi gave '${code:-no answer}', want 401"
}

# Stop a set of pids: TERM, wait up to $2 s, then KILL. Args: SECONDS PID...
# Returns 1 if a process survived KILL (should not happen).
tg_stop_pids() {
	local secs=$1 p i any
	shift
	[ $# -gt 0 ] || return 0
	for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
	for ((i = 0; i < secs * 10; i++)); do
		any=0
		for p in "$@"; do tg_alive "$p" && any=1 && break; done
		[ $any = 0 ] && return 0
		sleep 0.1
	done
	for p in "$@"; do
		if tg_alive "$p"; then
			tg_warn "pid $p ($(ps -o comm= -p "$p" 2>/dev/null)) ignored TERM for ${secs}s: KILL"
			kill -KILL "$p" 2>/dev/null || true
		fi
	done
	sleep 0.2
	any=0
	for p in "$@"; do tg_alive "$p" && any=1; done
	[ $any = 0 ]
}

# Live pids of processes whose environment carries our marker for the loaded
# site: the slurmstepd processes our slurmd forked (they inherit slurmd's env).
tg_marked_pids() {
	local f pid
	# -z: NUL-separated entries; -x: the whole entry; -l: just the file names
	grep -lzxF "TIERGATE_CLUSTER_SITE=$S_DIR" /proc/[0-9]*/environ 2>/dev/null |
		while read -r f; do
			pid=${f#/proc/}
			pid=${pid%/environ}
			[ "$pid" != "$$" ] && tg_alive "$pid" && printf '%s\n' "$pid"
		done || true # grep finds nothing: status 1 (with pipefail and set -e: exit)
	return 0
}

# Live pids of the plugin's helpers for the loaded site: processes with an
# argument naming the site's tiergate spool dir (tiergate-relay --job-dir
# SPOOL/JOB, or the node's relay: tiergate-relay --node SPOOL).
# The plugin starts them from slurmstepd with a scrubbed environment, so they
# carry no marker, and they can outlive their job (e.g. while the gateway is
# unreachable).
tg_spool_pids() {
	local f pid
	# the pattern comes from a file: on grep's own command line it would match grep
	grep -lzF -f <(printf '%s\n' "$S_TG_SPOOL") /proc/[0-9]*/cmdline 2>/dev/null |
		while read -r f; do
			pid=${f#/proc/}
			pid=${pid%/cmdline}
			[ "$pid" != "$$" ] && [ "$pid" != "$BASHPID" ] && tg_alive "$pid" && printf '%s\n' "$pid"
		done || true
	return 0
}

# Stopping a site, in phases that `down` runs across all sites at once (so a
# process that ignores TERM costs 5 s once, not once per site):
#   1 tg_cancel_jobs  2 tg_daemon_pids  3 tg_leftover_pids  4 tg_munged_pid
tg_cancel_jobs() { # cancel the loaded site's jobs while slurmctld still runs
	local pid jobs
	pid=$(tg_read_pid "$S_RUN/slurmctld.pid.own")
	if [ -n "$pid" ] && tg_alive "$pid" slurmctld; then
		jobs=$(SLURM_CONF=$S_CONF timeout 5 squeue -h -o '%i' 2>/dev/null || true)
		if [ -n "$jobs" ]; then
			# shellcheck disable=SC2086
			SLURM_CONF=$S_CONF timeout 5 scancel $jobs 2>/dev/null || true
		fi
	fi
	return 0
}

tg_daemon_pids() { # live slurmrestd, slurmd, slurmctld of the loaded site
	local name file label pid
	while read -r name file label; do
		[ "$name" = munged ] && continue
		pid=$(tg_read_pid "$file")
		[ -n "$pid" ] && tg_alive "$pid" "$name" && printf '%s\n' "$pid"
	done < <(tg_site_daemons)
	return 0
}

tg_munged_pid() {
	local mpid
	mpid=$(tg_read_pid "$S_RUN/munged.pid")
	[ -n "$mpid" ] && tg_alive "$mpid" munged && printf '%s\n' "$mpid"
	return 0
}

# After the daemons: job steps (slurmstepd) that outlived their slurmd, and
# the plugin's helpers. munged carries the marker too but goes last.
tg_leftover_pids() {
	local mpid
	mpid=$(tg_read_pid "$S_RUN/munged.pid")
	{
		tg_marked_pids
		tg_spool_pids
	} | grep -vxF "${mpid:-none}" | sort -u || true
}

tg_describe_pids() { # "comm(pid) ..." for the log
	[ $# -gt 0 ] || return 0
	ps -o pid=,comm= -p "$(
		IFS=,
		echo "$*"
	)" | awk '{printf "%s(%s) ", $2, $1}'
}

# Stop every process of the loaded site (jobs first, munged last). Leaves state.
tg_stop_site() {
	local pids=()
	tg_cancel_jobs
	mapfile -t pids < <(tg_daemon_pids)
	tg_stop_pids 5 "${pids[@]}" || tg_warn "$S_NAME: some daemons survived KILL: ${pids[*]}"
	mapfile -t pids < <(tg_leftover_pids)
	if [ ${#pids[@]} -gt 0 ]; then
		tg_log "$S_NAME: stopping leftover job processes: $(tg_describe_pids "${pids[@]}")"
		tg_stop_pids 5 "${pids[@]}" || tg_warn "$S_NAME: leftover processes survived KILL"
	fi
	mapfile -t pids < <(tg_munged_pid)
	tg_stop_pids 5 "${pids[@]}" || tg_warn "$S_NAME: munged ${pids[*]} survived KILL"
	rm -f "$S_RUN"/*.pid.own "$S_RUN/munged.pid"
}

tg_unmount_state() {
	if mountpoint -q "$S_STATE" 2>/dev/null; then
		umount "$S_STATE" 2>/dev/null || umount -l "$S_STATE" ||
			tg_warn "$S_NAME: cannot unmount $S_STATE"
	fi
}

# ---------------------------------------------------------------- starting daemons
# Used by `up` for a whole site, and by the fault tests to restart one daemon
# of a running site (tests/integration/fault-lib.sh). The site is loaded.

# Replace the current (sub)shell by a daemon with a clean, reproducible
# environment: run it with & (then $! is the daemon's own pid) or in ( ).
# The marker lets `down` find the slurmstepd processes it forks. fd 9 is the
# lock of up/down: a daemon must not hold it.
daemon_exec() {
	exec 9>&-
	# not the caller's cwd: a test's dir may be wiped under a running daemon
	cd /
	exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
		SLURM_CONF="$S_CONF" TIERGATE_CLUSTER_SITE="$S_DIR" "$@"
}

# munged: own key, socket and realm; --force because it runs as root with
# its files under /tmp. It daemonizes itself and writes its pid file.
tg_start_munged() {
	rm -f "$S_RUN/munged.pid"
	(daemon_exec munged --force --socket="$S_MUNGE_SOCKET" --key-file="$S_MUNGE_KEY" \
		--pid-file="$S_RUN/munged.pid" --log-file="$S_LOG/munged.log" \
		--seed-file="$S_MUNGE_DIR/key/munged.seed") >"$S_LOG/munged.stdout" 2>&1 </dev/null
}

# -D keeps the daemon in the foreground, so $! is the daemon's own pid.
tg_start_slurmctld() {
	daemon_exec setsid slurmctld -D >>"$S_LOG/slurmctld.stdout" 2>&1 </dev/null &
	echo $! >"$S_RUN/slurmctld.pid.own"
}

# tg_start_slurmrestd [PORT]: on the site's REST port unless PORT is given.
# slurmrestd refuses root: -u/-g drop privileges after binding ($! stays the
# daemon). SLURM_JWT=daemon: forward each caller's JWT to slurmctld.
tg_start_slurmrestd() {
	daemon_exec SLURM_JWT=daemon setsid slurmrestd -u slurmrest -g slurmrest -a rest_auth/jwt \
		-s openapi/v0.0.38 "${S_REST_BIND:-127.0.0.1}:${1:-$S_REST_PORT}" >>"$S_LOG/slurmrestd.log" 2>&1 </dev/null &
	echo $! >"$S_RUN/slurmrestd.pid.own"
}
