# shellcheck shell=bash disable=SC2034
# (SC2034: the variables set here are for the tests that source this file)
# Helpers for the integration tests. Each test starts with
#
#   #!/usr/bin/env bash
#   . "$(dirname "$0")/lib.sh"
#
# and runs against the sites described by the environment that
# slurm-test-cluster/up prints (tests/integration/run evals it; to run one test
# by hand: exports=$(slurm-test-cluster/up) && eval "$exports" && bash tests/integration/0002-*.sh).
# Exit 0 = pass, 77 = skipped, anything else = fail.
set -euo pipefail

TESTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(cd "$TESTS_DIR/../.." && pwd -P)
TEST_NAME=${TEST_NAME:-$(basename "$0" .sh)}

# ------------------------------------------------------------------ failing
# fail MSG...: print MSG with the test's file:line and exit 1.
fail() {
	local i src=${BASH_SOURCE[1]:-?} line=${BASH_LINENO[0]:-?}
	# report the first frame outside this file (the test, not an assert_*)
	for ((i = 1; i < ${#BASH_SOURCE[@]}; i++)); do
		if [ "${BASH_SOURCE[$i]}" != "${BASH_SOURCE[0]}" ]; then
			src=${BASH_SOURCE[$i]}
			line=${BASH_LINENO[$((i - 1))]}
			break
		fi
	done
	printf 'FAIL %s:%s: %s\n' "$(basename "$src")" "$line" "$*" >&2
	exit 1
}

skip() { # skip REASON: the test does not apply here (counted as skipped)
	printf 'SKIP: %s\n' "$*" >&2
	exit 77
}

note() { printf '# %s\n' "$*" >&2; }

assert_eq() { # assert_eq EXPECTED ACTUAL [WHAT]
	[ "$1" = "$2" ] || fail "${3:-value}: expected '$1', got '$2'"
}

assert_ne() { # assert_ne UNEXPECTED ACTUAL [WHAT]
	[ "$1" != "$2" ] || fail "${3:-value}: must not be '$1'"
}

assert_contains() { # assert_contains HAYSTACK NEEDLE [WHAT]
	[[ $1 == *"$2"* ]] || fail "${3:-output} does not contain '$2'; it is: $1"
}

assert_not_contains() { # assert_not_contains HAYSTACK NEEDLE [WHAT]
	[[ $1 != *"$2"* ]] || fail "${3:-output} contains '$2'; it is: $1"
}

assert_ge() { # assert_ge MIN ACTUAL [WHAT]  (integers)
	[[ $2 =~ ^-?[0-9]+$ ]] || fail "${3:-value}: '$2' is not an integer"
	[ "$2" -ge "$1" ] || fail "${3:-value}: expected >= $1, got $2"
}

assert_lt() { # assert_lt LIMIT ACTUAL [WHAT]  (integers)
	[[ $2 =~ ^-?[0-9]+$ ]] || fail "${3:-value}: '$2' is not an integer"
	[ "$2" -lt "$1" ] || fail "${3:-value}: expected < $1, got $2"
}

# ------------------------------------------------------------------ sites
[ -n "${TIERGATE_SITES:-}" ] ||
	fail "TIERGATE_SITES is not set: run via tests/integration/run, or eval the output of slurm-test-cluster/up first"
read -r -a SITES <<<"$TIERGATE_SITES"

# site_var SITE FIELD: value of SITE_<SITE>_<FIELD> from up's exports.
site_var() {
	local v="SITE_${1^^}_$2"
	[ -n "${!v:-}" ] || fail "$v is not set (is '$1' one of the sites: $TIERGATE_SITES?)"
	printf '%s' "${!v}"
}

# site_env SITE: export SLURM_CONF for SITE and set SITE_NAME SITE_DIR REST_URL
# JWT_KEY MUNGE_SOCKET NODES (a string) for the test's convenience.
site_env() {
	SITE_NAME=$1
	SLURM_CONF=$(site_var "$1" SLURM_CONF)
	export SLURM_CONF
	SITE_DIR=$(site_var "$1" DIR)
	REST_URL=$(site_var "$1" REST_URL)
	JWT_KEY=$(site_var "$1" JWT_KEY)
	MUNGE_SOCKET=$(site_var "$1" MUNGE_SOCKET)
	NODES=$(site_var "$1" NODES)
}

# run_as USER CMD...: run CMD as USER with this shell's SLURM_CONF.
run_as() {
	local user=$1
	shift
	[ -n "${SLURM_CONF:-}" ] || fail "run_as: SLURM_CONF is not set (call site_env SITE first)"
	runuser -u "$user" -- env SLURM_CONF="$SLURM_CONF" "$@"
}

# A scratch directory every user may write (jobs run as alice, bob, ...).
# The runner makes one per test and runs the test inside it.
if [ -z "${TEST_JOBS_DIR:-}" ]; then
	TEST_JOBS_DIR=$(mktemp -d "${TIERGATE_JOBS_DIR:?TIERGATE_JOBS_DIR not set}/$TEST_NAME.XXXXXX")
	chmod 1777 "$TEST_JOBS_DIR"
fi

# ------------------------------------------------------------------ jobs
# job_state SITE JOBID: the job's state (COMPLETED, RUNNING, ...) or nothing.
job_state() {
	SLURM_CONF=$(site_var "$1" SLURM_CONF) scontrol show job -o "$2" 2>/dev/null |
		sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' | head -n 1
}

# wait_job SITE JOBID STATE... TIMEOUT_S: wait until the job is in one of the
# STATEs and print that state. Fails at once if the job ends in another state,
# and after TIMEOUT_S seconds.
wait_job() {
	[ $# -ge 4 ] || fail "usage: wait_job SITE JOBID STATE... TIMEOUT_S"
	local site=$1 id=$2 conf st want deadline
	shift 2
	local args=("$@")
	local timeout=${args[-1]}
	unset 'args[-1]'
	[[ $timeout =~ ^[0-9]+$ ]] || fail "wait_job: last argument must be a timeout in seconds (got '$timeout')"
	conf=$(site_var "$site" SLURM_CONF)
	deadline=$((SECONDS + timeout))
	while :; do
		st=$(job_state "$site" "$id")
		[ -n "$st" ] || st=$(SLURM_CONF=$conf squeue -h -t all -j "$id" -o '%T' 2>/dev/null | head -n 1)
		for want in "${args[@]}"; do
			if [ "$st" = "$want" ]; then
				printf '%s\n' "$st"
				return 0
			fi
		done
		case "$st" in
		COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | PREEMPTED | BOOT_FAIL | DEADLINE)
			fail "job $id on $site ended $st, wanted ${args[*]}:" \
				"$(SLURM_CONF=$conf scontrol show job "$id" 2>&1)"
			;;
		esac
		[ "$SECONDS" -lt "$deadline" ] ||
			fail "job $id on $site is still '${st:-unknown}' after ${timeout}s, wanted ${args[*]}"
		sleep 0.1
	done
}

# job_ids SITE: every job id the site's slurmctld remembers (any state), sorted.
job_ids() {
	SLURM_CONF=$(site_var "$1" SLURM_CONF) squeue -h -t all -o '%i' | sort -n
}

# ------------------------------------------------------------------ JWT and REST
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }

# mint_jwt KEYFILE USER LIFETIME_S: an HS256 token as Slurm's auth/jwt wants it
# (header {"alg":"HS256","typ":"JWT"}, claims sun/exp/iat, key = raw file bytes).
# A negative LIFETIME_S gives an expired token.
mint_jwt() {
	[ $# -eq 3 ] || fail "usage: mint_jwt KEYFILE USER LIFETIME_S"
	local key=$1 user=$2 life=$3 now hdr claims hexkey sig
	[ -r "$key" ] || fail "mint_jwt: cannot read key file $key"
	[[ $life =~ ^-?[0-9]+$ ]] || fail "mint_jwt: lifetime must be an integer (got '$life')"
	user=${user//\\/\\\\}
	user=${user//\"/\\\"}
	now=$(date +%s)
	hdr=$(printf '%s' '{"alg":"HS256","typ":"JWT"}' | b64url)
	claims=$(printf '{"exp":%d,"iat":%d,"sun":"%s"}' "$((now + life))" "$now" "$user" | b64url)
	hexkey=$(od -An -v -tx1 "$key" | tr -d ' \n')
	[ -n "$hexkey" ] || fail "mint_jwt: key file $key is empty"
	sig=$(printf '%s.%s' "$hdr" "$claims" |
		openssl dgst -sha256 -mac HMAC -macopt "hexkey:$hexkey" -binary | b64url)
	printf '%s.%s.%s\n' "$hdr" "$claims" "$sig"
}

# rest METHOD URL USER TOKEN [JSON_BODY]: call slurmrestd. Sets REST_CODE (HTTP
# status, 000 if no answer) and REST_BODY. Never fails by itself.
rest() {
	local method=$1 url=$2 user=$3 token=$4 body=${5-} out
	local args=(-s -m 30 -w '\n%{http_code}' -X "$method"
		-H "X-SLURM-USER-NAME: $user" -H "X-SLURM-USER-TOKEN: $token")
	[ -z "$body" ] || args+=(-H 'Content-Type: application/json' --data-binary "$body")
	out=$(curl "${args[@]}" "$url" 2>/dev/null) || true
	REST_CODE=${out##*$'\n'}
	REST_BODY=${out%$'\n'*}
	[ -n "$REST_CODE" ] || REST_CODE=000
}

# wait_rest_job URL USER TOKEN JOBID STATE TIMEOUT_S: poll GET URL/job/JOBID
# until job_state is STATE; REST_BODY then holds the last answer.
wait_rest_job() {
	local url=$1 user=$2 token=$3 id=$4 want=$5 timeout=$6 st deadline
	deadline=$((SECONDS + timeout))
	while :; do
		rest GET "$url/slurm/v0.0.38/job/$id" "$user" "$token"
		[ "$REST_CODE" = 200 ] || fail "GET /job/$id gave HTTP $REST_CODE: $REST_BODY"
		st=$(jq -r '.jobs[0].job_state // empty' <<<"$REST_BODY")
		[ "$st" = "$want" ] && return 0
		case "$st" in
		COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | PREEMPTED | BOOT_FAIL | DEADLINE)
			fail "job $id ended $st over REST, wanted $want: $(jq -c '.jobs[0] | {job_state, state_reason, exit_code, user_name}' <<<"$REST_BODY")"
			;;
		esac
		[ "$SECONDS" -lt "$deadline" ] || fail "job $id is still '${st:-unknown}' over REST after ${timeout}s, wanted $want"
		sleep 0.1
	done
}

# wait_file FILE TIMEOUT_S: job output can land a moment after COMPLETED is seen.
wait_file() {
	local deadline=$((SECONDS + $2))
	while [ ! -s "$1" ]; do
		[ "$SECONDS" -lt "$deadline" ] || fail "file $1 did not appear within $2 s"
		sleep 0.05
	done
}
