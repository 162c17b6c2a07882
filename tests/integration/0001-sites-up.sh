#!/usr/bin/env bash
# Every site is up: all its nodes idle, slurmrestd answering (401 without a
# token, ping UP with one), its own ClusterName, and job ids that start at
# the site's FirstJobId (alpha >= 1000, beta >= 500000) so ids never clash.
. "$(dirname "$0")/lib.sh"

[ ${#SITES[@]} -ge 2 ] || fail "expected at least two sites, got: $TIERGATE_SITES"
declare -A cluster_of=()
for s in "${SITES[@]}"; do
	site_env "$s"

	states=$(sinfo -h -N -o '%N %T' | sort -u)
	want=$(for n in $NODES; do echo "$n idle"; done | sort)
	assert_eq "$want" "$states" "$s: node states (sinfo -N)"

	name=$(scontrol show config | awk -F' *= *' '$1 == "ClusterName" {print $2}')
	assert_eq "$s" "$name" "$s: ClusterName"
	for other in "${!cluster_of[@]}"; do
		assert_ne "${cluster_of[$other]}" "$name" "$s: ClusterName (must differ from $other's)"
	done
	cluster_of[$s]=$name

	code=$(curl -s -m 10 -o /dev/null -w '%{http_code}' "$REST_URL/openapi")
	assert_eq 401 "$code" "$s: GET $REST_URL/openapi without a token"
	tok=$(mint_jwt "$JWT_KEY" alice 300)
	rest GET "$REST_URL/slurm/v0.0.38/ping" alice "$tok"
	assert_eq 200 "$REST_CODE" "$s: GET /ping as alice (body: $REST_BODY)"
	assert_eq UP "$(jq -r '.pings[0].ping' <<<"$REST_BODY")" "$s: ping state"

	id=$(run_as alice sbatch --parsable -J t0001 -o /dev/null --wrap true)
	id=${id%%;*}
	note "$s: first job id $id"
	case "$s" in
	alpha)
		assert_ge 1000 "$id" "alpha: job id"
		assert_lt 500000 "$id" "alpha: job id"
		;;
	beta) assert_ge 500000 "$id" "beta: job id" ;;
	*)
		first=$(scontrol show config | awk -F' *= *' '$1 == "FirstJobId" {print $2}')
		assert_ge "$first" "$id" "$s: job id"
		;;
	esac
	wait_job "$s" "$id" COMPLETED 30 >/dev/null
done
