#!/usr/bin/env bash
# Jobs submitted over slurmrestd carry the tier in their environment, which
# anyone can set: only a gateway-signed ticket for the job's own user raises
# the tier.  A valid ticket runs at its tier; a forged, expired, alg-none,
# other-user or oversized one gets the user's local entitlement, which here
# means the job fails with a clear message on its stderr.  The runner checks
# after the test that no node was drained.
. "$(dirname "$0")/lib.sh"
. "$TESTS_DIR/plugin-lib.sh"

other_key=$TEST_JOBS_DIR/other-es256.key
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$other_key" 2>/dev/null

rest_job() { # rest_job SITE USER TIER TICKET -> prints the job id
	local s=$1 user=$2 tier=$3 ticket=$4 token body
	token=$(mint_jwt "$(site_var "$s" JWT_KEY)" "$user" 600)
	# shellcheck disable=SC2016
	body=$(jq -n --arg t "$ticket" --arg tier "$tier" --arg out "$TEST_JOBS_DIR/rest-$s-%j" '{
		job: {name: "t0103", current_working_directory: "/tmp", cpus_per_task: 2,
		      standard_output: ($out + ".out"), standard_error: ($out + ".err"),
		      environment: ({PATH: "/bin:/usr/bin",
			"_SLURM_SPANK_OPTION_tiergate_cpu_tier": $tier,
			"SLURM_SPANK__SLURM_SPANK_OPTION_tiergate_cpu_tier": $tier}
			+ (if $t == "" then {} else {TIERGATE_TICKET: $t} end))},
		script: "#!/bin/bash\necho \"$TIERGATE_TIER $(grep Cpus_allowed_list /proc/self/status | cut -f2)\"\n"}')
	rest POST "$(site_var "$s" REST_URL)/slurm/v0.0.38/job/submit" "$user" "$token" "$body"
	[ "$REST_CODE" = 200 ] || fail "$s: REST submit gave $REST_CODE: $REST_BODY"
	jq -r .job_id <<<"$REST_BODY"
}

expect_runs() { # expect_runs SITE ID TIER NCPU
	wait_job "$1" "$2" COMPLETED 60 >/dev/null
	wait_file "$TEST_JOBS_DIR/rest-$1-$2.out" 5
	read -r tier cpus <"$TEST_JOBS_DIR/rest-$1-$2.out"
	assert_eq "$3" "$tier" "$1 job $2: tier"
	assert_eq "$4" "$(cpus_in "$cpus")" "$1 job $2: CPUs ($cpus)"
}

expect_refused() { # expect_refused SITE ID MESSAGE
	wait_job "$1" "$2" FAILED 60 >/dev/null
	wait_file "$TEST_JOBS_DIR/rest-$1-$2.err" 5
	err=$(cat "$TEST_JOBS_DIR/rest-$1-$2.err")
	assert_contains "$err" "$3" "$1 job $2: stderr"
	[ ! -s "$TEST_JOBS_DIR/rest-$1-$2.out" ] || fail "$1 job $2 ran its script: $(cat "$TEST_JOBS_DIR/rest-$1-$2.out")"
	exit_code=$(scontrol show job "$2" | sed -n 's/.* ExitCode=\([0-9:]*\).*/\1/p')
	assert_ne "0:0" "$exit_code" "$1 job $2: exit code"
}

b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }

for s in "${SITES[@]}"; do
	site_env "$s"
	mint() { "$MINT_TICKET" --key "$TIERGATE_TICKET_KEY" --site "$s" "$@"; }

	good=$(mint --user bob --tier premium --job "gw-$s-1")
	id=$(rest_job "$s" bob premium "$good")
	expect_runs "$s" "$id" premium 2
	# a valid ticket and no option at all: the ticket's tier
	id=$(rest_job "$s" bob "" "$good")
	expect_runs "$s" "$id" premium 2
	# no ticket, option set by hand: bob's entitlement (basic) does not allow it
	id=$(rest_job "$s" bob premium "")
	expect_refused "$s" "$id" "user bob is not entitled to CPU tier 'premium'"

	forged=$("$MINT_TICKET" --key "$other_key" --user bob --tier premium)
	expired=$(mint --user bob --tier premium --ttl 60 --age 3600)
	alices=$(mint --user alice --tier premium)
	payload=$(cut -d. -f2 <<<"$good")
	alg_none="$(printf '{"alg":"none","typ":"JWT"}' | b64url).$payload."
	huge=$(head -c 12000 /dev/zero | tr '\0' 'A')
	huge="${good%%.*}.$huge.$(cut -d. -f3 <<<"$good")"
	for bad in forged expired alices alg_none huge; do
		id=$(rest_job "$s" bob premium "${!bad}")
		expect_refused "$s" "$id" "user bob is not entitled to CPU tier 'premium' (ticket refused"
		note "$s: $bad ticket -> job $id FAILED: $(grep tiergate "$TEST_JOBS_DIR/rest-$s-$id.err" | head -n 1)"
	done

	# a bad ticket never takes away what the user may do anyway
	id=$(rest_job "$s" alice premium "$forged")
	expect_runs "$s" "$id" premium 2
	id=$(rest_job "$s" bob basic "$expired")
	expect_runs "$s" "$id" basic 1
done
