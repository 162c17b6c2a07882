#!/usr/bin/env bash
# On every site, over slurmrestd with an HS256 JWT minted for alice with the
# site's own key: submit a batch job, follow it to COMPLETED with GET
# /job/{id}, check it ran as alice and wrote what it should. A token signed
# with another site's key is refused (slurmrestd says 500, not 401) and
# creates no job.
. "$(dirname "$0")/lib.sh"

[ ${#SITES[@]} -ge 2 ] || fail "needs two sites to forge a token with the wrong key"
API=/slurm/v0.0.38

submit_body() { # submit_body SITE JOBNAME: a v0.0.38 submit request
	jq -n --arg site "$1" --arg name "$2" --arg cwd "$TEST_JOBS_DIR" \
		--arg out "$TEST_JOBS_DIR/rest-$1-%j.out" '{
		job: {
			name: $name, partition: "debug", current_working_directory: $cwd,
			environment: {PATH: "/usr/bin:/bin", GREETING: ("hello-" + $site)},
			standard_output: $out, tasks: 1, cpus_per_task: 1, time_limit: 5
		},
		script: "#!/bin/bash\necho \"user=$(id -un) cluster=$SLURM_CLUSTER_NAME greeting=$GREETING\"\n"
	}'
}

for i in "${!SITES[@]}"; do
	s=${SITES[$i]}
	other=${SITES[$(((i + 1) % ${#SITES[@]}))]}
	site_env "$s"
	tok=$(mint_jwt "$JWT_KEY" alice 300)

	# --- environment is mandatory in v0.0.38: without it, 400 and no job
	rest POST "$REST_URL$API/job/submit" alice "$tok" \
		'{"job":{"name":"t0003-noenv","current_working_directory":"/tmp"},"script":"#!/bin/sh\ntrue\n"}'
	assert_eq 400 "$REST_CODE" "$s: submit without environment (body: $REST_BODY)"

	# --- a real submission
	rest POST "$REST_URL$API/job/submit" alice "$tok" "$(submit_body "$s" t0003)"
	assert_eq 200 "$REST_CODE" "$s: POST /job/submit (body: $REST_BODY)"
	assert_eq 0 "$(jq '.errors | length' <<<"$REST_BODY")" "$s: errors in the submit answer ($REST_BODY)"
	id=$(jq -r '.job_id' <<<"$REST_BODY")
	[[ $id =~ ^[0-9]+$ ]] || fail "$s: submit answer has no job_id: $REST_BODY"
	note "$s: REST job $id"
	wait_rest_job "$REST_URL" alice "$tok" "$id" COMPLETED 30
	assert_eq alice "$(jq -r '.jobs[0].user_name' <<<"$REST_BODY")" "$s: user_name of job $id"
	assert_eq "$s" "$(jq -r '.jobs[0].cluster' <<<"$REST_BODY")" "$s: cluster of job $id"
	assert_eq 0 "$(jq -r '.jobs[0].exit_code' <<<"$REST_BODY")" "$s: exit_code (raw wait status) of job $id"
	out=$TEST_JOBS_DIR/rest-$s-$id.out
	wait_file "$out" 5
	assert_eq "user=alice cluster=$s greeting=hello-$s" "$(cat "$out")" "$s: output of job $id"
	assert_eq alice "$(stat -c %U "$out")" "$s: owner of $out"

	# --- a token signed with the other site's key: refused, nothing created
	forged=$(mint_jwt "$(site_var "$other" JWT_KEY)" alice 300)
	name=t0003-forged-$$
	before=$(job_ids "$s")
	rest POST "$REST_URL$API/job/submit" alice "$forged" "$(submit_body "$s" "$name")"
	assert_eq 500 "$REST_CODE" "$s: submit with a token signed by $other's key (body: $REST_BODY)"
	assert_eq null "$(jq -r '.job_id // null' <<<"$REST_BODY" 2>/dev/null || echo null)" \
		"$s: job_id in the refusal"
	assert_eq "$before" "$(job_ids "$s")" "$s: job ids before/after the forged submit"
	assert_eq "" "$(squeue -h -t all -n "$name" -o '%i')" "$s: jobs named $name"
	rest GET "$REST_URL$API/ping" alice "$forged"
	assert_eq 500 "$REST_CODE" "$s: GET /ping with $other's token"
	# ... while the site's own token still works
	rest GET "$REST_URL$API/ping" alice "$tok"
	assert_eq 200 "$REST_CODE" "$s: GET /ping with $s's own token"
done
