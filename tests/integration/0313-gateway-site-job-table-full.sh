#!/usr/bin/env bash
# A site whose job table is full (MaxJobCount): slurmctld answers a submit
# with EAGAIN, "Resource temporarily unavailable", as sbatch's "Slurm
# temporarily unable to accept job, sleeping and retrying".  The gateway
# keeps such jobs waiting and submits them once there is room: none is
# rejected, none is submitted twice.
. "$(dirname "$0")/lib.sh"
. "$TESTS_DIR/gateway-lib.sh"

s=${SITES[0]}
site_env "$s"
G=$TIERGATE_CLUSTER_DIR/gateway
W=$(mktemp -d /tmp/tiergate-0313.XXXXXX)
cleanup() {
	gateway_stop
	# the site as the other tests know it: default MaxJobCount, no jobs
	"$REPO/slurm-test-cluster/up" --sites "$s" --fresh >/dev/null 2>"$W/up.log" ||
		echo "0313: up --fresh of $s failed: $(cat "$W/up.log")" >&2
	rm -rf "$W"
}
trap cleanup EXIT
printf '#!/bin/bash\ntrue\n' >"$W/job.sh"

up_site() { # up_site MAX_JOB_COUNT ARGS...
	local max=$1
	shift
	TIERGATE_MAX_JOB_COUNT=$max "$REPO/slurm-test-cluster/up" --sites "$s" "$@" \
		>/dev/null 2>"$W/up.log" || fail "up $* of $s failed: $(cat "$W/up.log")"
	mkdir -p "$TEST_JOBS_DIR" && chmod 1777 "$TEST_JOBS_DIR" # wiped by --fresh
}
site_jobs_named() { # how many jobs the site has with this name
	squeue -h -t all -o '%j' | grep -cx "$1" || true
}

up_site 3 --fresh
conf=$(scontrol show config)
[[ $conf =~ MaxJobCount\ *=\ 3$'\n' ]] || fail "MaxJobCount is not 3"
# nothing runs: jobs stay PENDING and hold their place in the table
scontrol update partitionname=debug state=down || fail "cannot set the partition down"
gateway_start
log0=$(stat -c %s "$G/tiergated.log")

ids=()
for i in 1 2 3 4 5; do
	ids+=("$(tg alice submit --site "$s" --tier basic --name "full-$i" "$W/job.sh")") ||
		fail "submit $i was not accepted"
done
# slurmctld takes jobs while it holds fewer than MaxJobCount (here two fit,
# the table also counts what it holds already); the others wait for room
with_id() {
	n=0
	for id in "${ids[@]}"; do
		[ "$(job_field alice "$id" .slurm.job_id)" = null ] || n=$((n + 1))
	done
}
deadline=$((SECONDS + 60))
while with_id && [ "$n" -lt 2 ]; do
	[ "$SECONDS" -lt "$deadline" ] || fail "only $n of 5 jobs reached the site in 60 s"
	sleep 0.2
done
sleep 3 # several tries, all refused with EAGAIN
with_id
assert_lt 4 "$n" "jobs with a Slurm id while the table is full"
waiting=0
cancelled=
for id in "${ids[@]}"; do
	[ "$(job_field alice "$id" .slurm.job_id)" = null ] || continue
	waiting=$((waiting + 1))
	[ -n "$cancelled" ] || cancelled=$id
	st=$(job_field alice "$id" .state)
	case $st in accepted | submitting) ;; *) fail "job $id waiting for room is '$st'" ;; esac
	assert_eq null "$(job_field alice "$id" .error)" "error of waiting job $id"
	# the user sees why, in the site's words
	assert_eq site_busy "$(job_field alice "$id" .waiting.code)" "waiting.code of $id"
	assert_contains "$(job_field alice "$id" .waiting.message)" "temporarily unavailable" "waiting.message of $id"
	assert_contains "$(tg alice status "$id")" "waiting:    site_busy" "tiergate status $id"
	assert_view_fresh alice "$id"
done
assert_eq $((5 - n)) "$waiting" "jobs waiting for room"
tail -c +"$((log0 + 1))" "$G/tiergated.log" | grep -q 'waits: Resource temporarily unavailable' ||
	fail "the gateway log does not say why the jobs wait"
note "$waiting jobs wait while $s's job table is full"

# a cancel of a waiting job is settled at once, not after its backoff
sleep 14 # the waiting jobs now sleep 16 s between tries (0.5 s doubling)
t0=$SECONDS
tg alice cancel "$cancelled" >/dev/null || fail "cancel of $cancelled refused"
wait_gw_state alice "$cancelled" 3 cancelled
note "waiting job cancelled in $((SECONDS - t0)) s"

# room: slurmctld restarted with a larger table (its jobs kept)
up_site 100 --restart
scontrol update partitionname=debug state=down || fail "cannot set the partition down"
deadline=$((SECONDS + 90))
for id in "${ids[@]}"; do
	[ "$id" != "$cancelled" ] || continue
	while [ "$(job_field alice "$id" .slurm.job_id)" = null ]; do
		[ "$SECONDS" -lt "$deadline" ] || fail "job $id has no Slurm id 90 s after the table grew"
		sleep 0.5
	done
done
# every job exactly once at the site (the cancelled one never), none rejected
for id in "${ids[@]}"; do
	if [ "$id" = "$cancelled" ]; then
		assert_eq 0 "$(site_jobs_named "$id")" "jobs named $id (cancelled while waiting) at $s"
		assert_eq cancelled "$(job_field alice "$id" .state)" "state of $id"
		continue
	fi
	assert_eq 1 "$(site_jobs_named "$id")" "jobs named $id at $s"
	assert_eq null "$(job_field alice "$id" .waiting)" "waiting of $id once at the site"
	assert_view_fresh alice "$id"
	st=$(job_field alice "$id" .state)
	case $st in rejected | failed | unknown) fail "job $id ended '$st'" ;; esac
done
note "the other jobs at $s once each after the table grew"
