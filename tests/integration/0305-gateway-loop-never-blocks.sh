#!/usr/bin/env bash
# The loop thread of tiergated never blocks on the disk or on munged: under
# load (20 jobs submitted with the CLI on both sites; while they run the
# plugin posts MUNGE-signed events and output chunks that the gateway
# verifies and stores), strace -f on the real daemon records every
# fsync/fdatasync/sync_file_range/syncfs/sync/msync and every connect(),
# one file per thread (-ff). Then:
#   - the main thread (tid == pid: the loop) made none of the sync calls
#     and no connect() to a munge socket (a MUNGE decode starts with one);
#   - it was traced all along: it accept4()ed the CLI's connections;
#   - other threads DID sync (the store's thread committed the jobs, output
#     reached the disk) and DID connect to the sites' munge sockets (the
#     events were verified), so the test fails if the work vanished instead
#     of moving off the loop;
#   - every job completed, the gateway counted the events and output, and
#     tiergated is the same pid and answers /healthz.
. "$(dirname "$0")/lib.sh"
. "$TESTS_DIR/gateway-lib.sh"

command -v strace >/dev/null || skip "strace is not installed"

gateway_start
PID0=$GW_PID
[ "$(cat "/proc/$PID0/comm")" = tiergated ] || fail "pid $PID0 is not tiergated: $(cat "/proc/$PID0/comm" 2>&1)"
MUNGE_SOCKETS=()
for s in "${SITES[@]}"; do MUNGE_SOCKETS+=("$(site_var "$s" MUNGE_SOCKET)"); done

metric() { # metric NAME: its value from /metrics (0 when absent)
	curl -s -m 5 "$TIERGATE_URL/metrics" | awk -v n="$1" '$1 == n {v = $2} END {print v + 0}'
}
events0=$(metric tiergate_events_total)
output0=$(metric tiergate_output_bytes_total)

# ------------------------------------------------------------------ attach
TRACE=$TEST_JOBS_DIR/trace
mkdir -p "$TRACE"
strace -ff -tt -qq -e signal=none \
	-e trace=fsync,fdatasync,sync_file_range,syncfs,sync,msync,connect,accept4,accept \
	-o "$TRACE/t" -p "$PID0" 2>"$TEST_JOBS_DIR/strace.err" &
STRACE_PID=$!
trap 'kill -INT "$STRACE_PID" 2>/dev/null || true; gateway_stop' EXIT
# every thread of the daemon is traced before the load starts
deadline=$((SECONDS + 10))
while :; do
	untraced=0
	for t in /proc/"$PID0"/task/*; do
		[ "$(awk '/^TracerPid:/ {print $2}' "$t/status" 2>/dev/null)" = "$STRACE_PID" ] || untraced=$((untraced + 1))
	done
	[ "$untraced" = 0 ] && break
	kill -0 "$STRACE_PID" 2>/dev/null || fail "strace exited: $(cat "$TEST_JOBS_DIR/strace.err")"
	[ "$SECONDS" -lt "$deadline" ] || fail "$untraced threads of tiergated not traced after 10 s"
	sleep 0.1
done
declare -A TNAME=()
for t in /proc/"$PID0"/task/*; do TNAME[${t##*/}]=$(cat "$t/comm"); done
note "threads traced: $(for k in "${!TNAME[@]}"; do printf '%s=%s ' "$k" "${TNAME[$k]}"; done)"

# ------------------------------------------------------------------ load
script=$TEST_JOBS_DIR/job.sh
# shellcheck disable=SC2016 # literal on purpose
printf '#!/bin/bash\necho "t0305 job $SLURM_JOB_ID on $(hostname)"\nsleep 1\necho done\n' >"$script"
ids=()
for i in $(seq 1 20); do
	s=${SITES[$((i % ${#SITES[@]}))]}
	id=$(tg alice submit --site "$s" --tier basic --name "t0305-$i" "$script") || fail "submit $i to $s: $id"
	ids+=("$id")
done
for id in "${ids[@]}"; do
	wait_gw_state alice "$id" 60 completed
done
# the plugin's last events and output land just after the final state:
# until the event count has not moved for a second (at most 30 s)
last=-1
for _ in $(seq 1 30); do
	n=$(metric tiergate_events_total)
	[ "$n" = "$last" ] && [ "$((n - events0))" -ge 20 ] && break
	last=$n
	sleep 1
done
kill -INT "$STRACE_PID"
wait "$STRACE_PID" || true
trap gateway_stop EXIT
events=$(($(metric tiergate_events_total) - events0))
output=$(($(metric tiergate_output_bytes_total) - output0))
note "during the load: $events events, $output output bytes reached the gateway"
assert_ge 20 "$events" "events the plugin delivered for 20 jobs"
assert_ge 1 "$output" "output bytes the plugin delivered"

# ------------------------------------------------------------------ verdict
MAIN=$TRACE/t.$PID0
[ -f "$MAIN" ] || fail "no trace of the main thread ($MAIN); strace: $(cat "$TEST_JOBS_DIR/strace.err"); files: $(ls "$TRACE")"
SYNC_RE='^[0-9:.]+ (fsync|fdatasync|sync_file_range|syncfs|sync|msync)\('
munge_re() { # lines: connect() to one of the sites' munge sockets
	local alt
	# shellcheck disable=SC2016 # literal on purpose
	alt=$(printf '%s|' "${MUNGE_SOCKETS[@]}" | sed 's/[.[*^$()+?{\\]/\\&/g')
	printf '^[0-9:.]+ connect\\(.*sun_path="(%s)"' "${alt%|}"
}
MUNGE_RE=$(munge_re)

# the main thread was traced: it accepted the CLI's connections
accepts=$(grep -cE '^[0-9:.]+ accept4?\(' "$MAIN" || true)
assert_ge 20 "$accepts" "accept4() calls traced on the main thread (tid $PID0)"
# ... and never synced nor talked to munged
main_sync=$(grep -E "$SYNC_RE" "$MAIN" || true)
[ -z "$main_sync" ] || fail "the loop thread (tid $PID0) called fsync/fdatasync: $(head -n 5 <<<"$main_sync")"
main_munge=$(grep -E "$MUNGE_RE" "$MAIN" || true)
[ -z "$main_munge" ] || fail "the loop thread (tid $PID0) connected to munged: $(head -n 5 <<<"$main_munge")"
main_unix=$(grep -E '^[0-9:.]+ connect\(.*AF_UNIX' "$MAIN" || true)
[ -z "$main_unix" ] || fail "the loop thread (tid $PID0) connected to a unix socket: $(head -n 5 <<<"$main_unix")"

# the work happened, elsewhere
other_sync=0 other_munge=0 store_sync=0 summary=
for f in "$TRACE"/t.*; do
	tid=${f##*.}
	[ "$tid" = "$PID0" ] && continue
	ns=$(grep -cE "$SYNC_RE" "$f" || true)
	nm=$(grep -cE "$MUNGE_RE" "$f" || true)
	name=${TNAME[$tid]:-$(cat "/proc/$PID0/task/$tid/comm" 2>/dev/null || echo '?')}
	summary+="$tid($name): sync=$ns munge=$nm; "
	other_sync=$((other_sync + ns))
	other_munge=$((other_munge + nm))
	[ "$name" = tg-store ] && store_sync=$((store_sync + ns))
done
note "main thread $PID0: accepts=$accepts sync=0 munge=0; others: $summary"
assert_ge 1 "$store_sync" "fsync/fdatasync on the store thread (tg-store): the jobs were committed"
assert_ge 1 "$other_sync" "fsync/fdatasync on threads other than the loop"
assert_ge 1 "$other_munge" "connect() to a munge socket on threads other than the loop: events were verified"

# ------------------------------------------------------------------ still the same daemon
kill -0 "$PID0" 2>/dev/null || fail "tiergated (pid $PID0) died: $(tail -n 30 "$TIERGATED_LOG")"
assert_eq "$PID0" "$(cat "$TIERGATE_CLUSTER_DIR/gateway/tiergated.pid")" "tiergated pid"
assert_eq 200 "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$TIERGATE_URL/healthz")" "GET /healthz at the end"
