#!/usr/bin/env bash
# kill -9 of tiergated after POST /v1/jobs returned, and a restart: the job is
# still tracked to its end, exists exactly once at the site, and a job
# cancelled while the gateway was away... is cancelled once it is back.
. "$(dirname "$0")/lib.sh"
. "$TESTS_DIR/gateway-lib.sh"

gateway_start
printf '#!/bin/bash\nsleep 3\necho done\n' >"$TEST_JOBS_DIR/job.sh"
ids=()
for i in 1 2 3 4 5; do
	ids+=("$(tg alice submit --site "${SITES[$((i % ${#SITES[@]}))]}" --tier basic --name "t0302-$i" "$TEST_JOBS_DIR/job.sh")")
done
kill -9 "$GW_PID"
GW_PID=
sleep 1
gateway_start
for id in "${ids[@]}"; do
	wait_gw_state alice "$id" 90 completed
done
# exactly once at the site: one Slurm job per gateway id (the tag)
for s in "${SITES[@]}"; do
	site_env "$s"
	for id in "${ids[@]}"; do
		n=$(squeue -h -t all -o '%j' | grep -cx "$id" || true)
		site=$(job_field alice "$id" .site)
		if [ "$site" = "$s" ]; then
			assert_eq 1 "$n" "$s: Slurm jobs named $id"
		fi
	done
done
