#!/usr/bin/env bash
# tiergated end to end on both sites through the tiergate CLI: a job runs at
# its tier (the ticket reaches the plugin), reaches its final state with its
# exit code and usage; other users neither see nor cancel it; refusals are
# clear; Idempotency-Key makes a retry safe; cancel works while running.
. "$(dirname "$0")/lib.sh"
. "$TESTS_DIR/gateway-lib.sh"

gateway_start
script=$TEST_JOBS_DIR/job.sh
cat >"$script" <<'SH'
#!/bin/bash
echo "tier=$TIERGATE_TIER cpus=$(grep Cpus_allowed_list /proc/self/status | cut -f2) user=$(id -un)"
exit 3
SH

for s in "${SITES[@]}"; do
	site_env "$s"
	id=$(tg alice submit --site "$s" --tier premium --cpus-per-task 2 --name t0301 "$script") ||
		fail "$s: submit failed: $id"
	[[ $id =~ ^j-[0-9a-f]{12}$ ]] || fail "$s: submit printed '$id', not a job id"
	wait_gw_state alice "$id" 60 failed
	assert_eq 3 "$(job_field alice "$id" .slurm.exit_code)" "$s $id: exit code"
	assert_eq FAILED "$(job_field alice "$id" .slurm.state)" "$s $id: Slurm state"
	assert_eq site "$(job_field alice "$id" .ended_by)" "$s $id: ended by"
	# the job really ran at premium: the ticket from the gateway reached the plugin
	out=/tmp/tiergate-$id.out
	wait_file "$out" 5
	assert_contains "$(cat "$out")" "tier=premium cpus=0-1 user=alice" "$s $id: job output"
	# the output reached the gateway through the plugin's relay: follow shows it
	got=$(timeout 60 "$TIERGATE_CLI" --url "$TIERGATE_URL" --token-file <(printf '%s' "$TIERGATE_TOKEN_ALICE") follow "$id" 2>/dev/null || true)
	assert_contains "$got" "tier=premium cpus=0-1 user=alice" "$s $id: output through the gateway"

	# correlation: the API request id reaches the node's log with the job
	rid=$(job_field alice "$id" .request_id)
	grep -qs "gateway job $id, request $rid" "$SITE_DIR"/log/slurmd-*.log ||
		fail "$s $id: request $rid is not in the slurmd log"
	grep -qs "$rid" "$TIERGATED_LOG" || fail "$s $id: request $rid is not in the gateway log"

	# usage comes from the plugin's step_end event (premium rate 3.0)
	for _ in $(seq 1 50); do
		[ "$(job_field alice "$id" '.usage.cpu_seconds > 0')" = true ] && break
		sleep 0.2
	done
	jq -e '.usage.cpu_seconds > 0 and (.usage.charge - .usage.cpu_seconds * 3 | fabs) < 1e-6' \
		<<<"$(tg alice --json status "$id")" >/dev/null ||
		fail "$s $id: usage: $(tg alice --json status "$id" | jq -c .usage)"
	assert_view_fresh alice "$id"

	# another user: not found (ids are not confirmed), cannot cancel, not listed
	if out=$(tg bob status "$id" 2>&1); then fail "$s: bob sees alice's job: $out"; fi
	assert_contains "$out" "not_found" "$s: bob's status of alice's job"
	if out=$(tg bob cancel "$id" 2>&1); then fail "$s: bob cancelled alice's job: $out"; fi
	assert_not_contains "$(tg bob ls)" "$id" "$s: bob's job list"
	assert_contains "$(tg alice ls)" "$id" "$s: alice's job list"
	assert_contains "$(tg alice ls --state failed --site "$s")" "$id" "$s: alice's failed jobs at $s"
	assert_contains "$(tg admin ls)" "$id" "$s: the admin's job list"

	# bob may not buy premium; the answer says so and nothing is created
	if out=$(tg bob submit --site "$s" --tier premium "$script" 2>&1); then
		fail "$s: bob got premium: $out"
	fi
	assert_contains "$out" "forbidden: user bob is not entitled to tier 'premium'" "$s: bob's premium submit"

	# Idempotency-Key: same request, same job; another request, 422
	a=$(tg alice submit --site "$s" --tier basic --idempotency-key "k-$s-$$" "$script")
	b=$(tg alice submit --site "$s" --tier basic --idempotency-key "k-$s-$$" "$script")
	assert_eq "$a" "$b" "$s: job ids for one Idempotency-Key"
	if out=$(tg alice submit --site "$s" --tier premium --idempotency-key "k-$s-$$" "$script" 2>&1); then
		fail "$s: reused key with another body accepted: $out"
	fi
	assert_contains "$out" "idempotency_mismatch" "$s: reused key, other body"

	# cancel while running
	printf '#!/bin/bash\nsleep 120\n' >"$TEST_JOBS_DIR/long.sh"
	id=$(tg alice submit --site "$s" --tier basic "$TEST_JOBS_DIR/long.sh")
	wait_gw_state alice "$id" 60 running
	assert_view_fresh alice "$id"
	tg alice cancel "$id" >/dev/null || fail "$s: cancel of $id failed"
	assert_view_fresh alice "$id" # cancel_requested, at once
	wait_gw_state alice "$id" 60 cancelled
	assert_view_fresh alice "$id"
	assert_eq "user:alice" "$(job_field alice "$id" .ended_by)" "$s $id: ended by"
	wait_gw_state alice "$a" 60 failed
done

# /metrics tells what happened: requests by code, store commits, polls per site
m=$(curl -s "$TIERGATE_URL/metrics")
for want in 'tiergate_http_requests_total{code="202"}' 'tiergate_http_requests_total{code="404"}' \
	'tiergate_http_requests_total{code="422"}' tiergate_store_commits_total; do
	v=$(awk -v k="$want" '$1 == k { print $2 }' <<<"$m")
	[ -n "$v" ] && [ "$v" -gt 0 ] || fail "/metrics: $want is '${v:-absent}'"
done
for s in "${SITES[@]}"; do
	v=$(awk -v k="tiergate_site_polls_total{site=\"$s\"}" '$1 == k { print $2 }' <<<"$m")
	[ -n "$v" ] && [ "$v" -gt 0 ] || fail "/metrics: no polls of $s"
done
awk '$1 == "tiergate_store_commit_seconds{quantile=\"1\"}" { exit !($2 > 0) }' <<<"$m" ||
	fail "/metrics: no store commit latency"
