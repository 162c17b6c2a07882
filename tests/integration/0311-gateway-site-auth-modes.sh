#!/usr/bin/env bash
# The two other site authentication modes, end to end: alpha as `jwt-user`
# (each user registers the token `scontrol token` gave them) and beta as
# `munge` (one rest_auth/local slurmrestd per user on a unix socket). In
# each a job runs as its user at its tier, its output is seen while it
# runs, and it ends with the right state and usage. jwt-user refusals are
# clear and create nothing; a registered token survives kill -9; it never
# reaches a log or an answer. (The next test's gateway_start writes the
# default jwt-key config again: these variables die with this process.)
. "$(dirname "$0")/lib.sh"
. "$TESTS_DIR/gateway-lib.sh"

export TIERGATE_SITE_AUTH_ALPHA=jwt-user TIERGATE_SITE_AUTH_BETA=munge
gateway_start
sites=$(tg alice --json sites)
assert_eq "jwt-user munge" "$(jq -r '[.sites[].auth] | join(" ")' <<<"$sites")" "auth modes"
assert_eq null "$(jq -r '.sites[0].credential_expires_at' <<<"$sites")" "alice's token before registering"

script=$TEST_JOBS_DIR/job.sh
cat >"$script" <<'SH'
#!/bin/bash
echo "first user=$(id -un) cpus=$(grep Cpus_allowed_list /proc/self/status | cut -f2)"
sleep 4
echo last
SH

# site_token USER LIFESPAN: what `scontrol token` prints at alpha
site_token() {
	SLURM_CONF=$SITE_ALPHA_SLURM_CONF scontrol token username="$1" lifespan="$2"
}
cred_put() { # cred_put USER: the token on stdin; the CLI's output
	tg "$1" credential alpha - 2>&1
}

# --- jwt-user (alpha): refusals first; none of them creates a job
before=$(tg admin --json ls --site alpha --limit 1000 | jq '.jobs | length')
out=$(tg alice submit --site alpha --tier premium --time 5 "$script" 2>&1) && fail "submit without a token: $out"
assert_contains "$out" "credential_missing" "submit without a registered token"
out=$(site_token bob 3600 | cred_put alice) && fail "bob's token taken for alice: $out"
assert_contains "$out" "credential_wrong_user" "another user's token"
out=$(printf 'not.a.token' | cred_put alice) && fail "garbage taken: $out"
assert_contains "$out" "credential_invalid" "garbage token"
out=$(site_token alice 30 | cred_put alice) && fail "a 30 s token taken: $out"
assert_contains "$out" "credential_expired" "token expiring within a minute"
out=$(tg alice credential beta - <<<"x" 2>&1) && fail "token for a munge site: $out"
assert_contains "$out" "credential_not_used" "token for a munge site"
# a token too short for queue estimate (60 s) + time limit (5 min)
site_token alice 200 | cred_put alice >/dev/null || fail "a 200 s token was refused"
out=$(tg alice submit --site alpha --tier premium --time 5 "$script" 2>&1) && fail "short token accepted: $out"
assert_contains "$out" "credential_expires_too_soon" "token shorter than the job"
assert_contains "$out" "scontrol token lifespan=" "the refusal says what to do"
assert_eq "$before" "$(tg admin --json ls --site alpha --limit 1000 | jq '.jobs | length')" "jobs created by refusals"

# register a good one; the answer says until when, never the token itself
tok=$(site_token alice 7200)
got=$(printf '%s\n' "$tok" | tg alice --json credential alpha -) || fail "register: $got"
assert_eq alice "$(jq -r .site_user <<<"$got")" "registered token's site user"
assert_not_contains "$got" "${tok#SLURM_JWT=}" "PUT answer"
assert_not_contains "$(tg alice --json credential alpha)" "${tok#SLURM_JWT=}" "GET answer"

# survives kill -9 of the gateway (stored before the 200)
kill -9 "$GW_PID"
GW_PID=
gateway_start
assert_eq alice "$(tg alice --json credential alpha | jq -r .site_user)" "token after kill -9"
# bob has none: his own request is refused, alice's stays hers
out=$(tg bob credential alpha 2>&1) && fail "bob sees a token: $out"
assert_contains "$out" "not_found" "bob's credential"

# --- a job per mode: runs as its user at its tier, output while running, usage
for s in alpha beta; do
	id=$(tg alice submit --site "$s" --tier premium --cpus-per-task 2 --time 5 --name "t0311-$s" "$script") ||
		fail "$s: submit: $id"
	follow_out=$TEST_JOBS_DIR/follow-$s.out
	timeout 60 "$TIERGATE_CLI" --url "$TIERGATE_URL" --token-file <(printf '%s' "$TIERGATE_TOKEN_ALICE") \
		follow "$id" >"$follow_out" 2>&1 &
	fpid=$!
	# the first line arrives while the job still runs
	deadline=$((SECONDS + 60))
	until grep -q "^first" "$follow_out"; do
		[ "$SECONDS" -lt "$deadline" ] || fail "$s $id: no output within 60 s: $(cat "$follow_out")"
		sleep 0.1
	done
	# (the gateway may not have seen it start yet: not final is the point)
	st=$(job_field alice "$id" .state)
	case $st in pending | running | completing) ;; *) fail "$s $id: output seen only in state '$st'" ;; esac
	wait "$fpid" || fail "$s $id: follow ended badly: $(cat "$follow_out")"
	assert_contains "$(cat "$follow_out")" "first user=alice cpus=0-1" "$s $id: runs as alice at premium"
	assert_contains "$(cat "$follow_out")" "last" "$s $id: whole output"
	wait_gw_state alice "$id" 30 completed
	assert_eq COMPLETED "$(job_field alice "$id" .slurm.state)" "$s $id: Slurm state"
	for _ in $(seq 1 50); do
		[ "$(job_field alice "$id" '.usage.cpu_seconds > 0')" = true ] && break
		sleep 0.2
	done
	jq -e '.usage.cpu_seconds > 0 and (.usage.charge - .usage.cpu_seconds * 3 | fabs) < 1e-6' \
		<<<"$(tg alice --json status "$id")" >/dev/null ||
		fail "$s $id: usage: $(tg alice --json status "$id" | jq -c .usage)"
done

# munge: bob's job goes through bob's own slurmrestd and runs as bob
id=$(tg bob submit --site beta --tier basic "$script") || fail "beta: bob's submit: $id"
wait_gw_state bob "$id" 60 completed
assert_eq bob "$(SLURM_CONF=$SITE_BETA_SLURM_CONF scontrol show job "$(job_field bob "$id" .slurm.job_id)" |
	sed -n 's/.*UserId=\([a-z]*\)(.*/\1/p')" "beta: owner of bob's Slurm job"

# the registered token never reached the gateway's log
grep -qF "${tok#SLURM_JWT=}" "$TIERGATED_LOG" && fail "alice's site token is in $TIERGATED_LOG"
# DELETE: gone, and alpha refuses her next submit again
tg alice credential alpha --delete >/dev/null || fail "delete failed"
out=$(tg alice submit --site alpha --tier basic "$script" 2>&1) && fail "submit after delete: $out"
assert_contains "$out" "credential_missing" "submit after delete"
exit 0
