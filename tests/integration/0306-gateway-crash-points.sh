#!/usr/bin/env bash
# Exactly-once submit: tiergated is killed (SIGKILL, injected with
# TIERGATE_CRASH_AT) at each point of a submit: after the job is committed
# but before the API answered, after SUBMITTING is journaled but before the
# site call, and after the site took the job but before its id was
# journaled.  After a restart, the client's retry with the same
# Idempotency-Key finds the same job, and every job exists exactly once at
# its site and reaches its final state.
. "$(dirname "$0")/lib.sh"
. "$TESTS_DIR/gateway-lib.sh"

ROUNDS=${CRASH_ROUNDS:-20} # the issue asks for 20 kills at each point; ~50 s
printf '#!/bin/bash\necho ok\n' >"$TEST_JOBS_DIR/job.sh"
declare -A site_of
for point in accepted submit_journaled site_submitted; do
	for r in $(seq 1 "$ROUNDS"); do
		s=${SITES[$((r % ${#SITES[@]}))]}
		key="crash-$point-$r-$$"
		TIERGATE_CRASH_AT=$point gateway_start
		first=$(tg alice submit --site "$s" --tier basic --idempotency-key "$key" \
			"$TEST_JOBS_DIR/job.sh" 2>&1) || true
		# the daemon dies at the point (on its own, by SIGKILL)
		for _ in $(seq 1 100); do
			case $(ps -o stat= -p "$GW_PID" 2>/dev/null) in "" | Z*) break ;; esac
			sleep 0.1
		done
		case $(ps -o stat= -p "$GW_PID" 2>/dev/null) in
		"" | Z*) ;;
		*) fail "$point: tiergated did not reach the crash point" ;;
		esac
		GW_PID=
		gateway_start
		id=$(tg alice submit --site "$s" --tier basic --idempotency-key "$key" "$TEST_JOBS_DIR/job.sh") ||
			fail "$point round $r: retry after the crash failed: $id"
		if [ "$point" = accepted ]; then
			assert_not_contains "$first" "j-" "$point: the first submit must not have been answered"
		else
			assert_eq "$first" "$id" "$point round $r: job id before and after the crash"
		fi
		note "$point round $r: $id on $s (first answer: ${first:0:60})"
		site_of[$id]=$s
		gateway_stop
	done
done
gateway_start
for id in "${!site_of[@]}"; do
	wait_gw_state alice "$id" 90 completed
	site_env "${site_of[$id]}"
	n=$(squeue -h -t all -o '%j' | grep -cx "$id" || true)
	assert_eq 1 "$n" "${site_of[$id]}: Slurm jobs carrying $id"
done
note "adopted by tag after a crash: $(grep -ac 'found by tag' "$TIERGATED_LOG" || true)"
