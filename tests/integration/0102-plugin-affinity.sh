#!/usr/bin/env bash
# Inside the job, every task is confined to the tier: a job sees exactly the
# tier's CPU count in /proc/self/status on a node with more cores allocated,
# srun steps inside a batch job keep the tier, and a job whose option was
# lost (--export=NONE) runs at the default tier, on purpose.
. "$(dirname "$0")/lib.sh"
. "$TESTS_DIR/plugin-lib.sh"

# shellcheck disable=SC2016  # expanded by the job
probe='echo "batch $TIERGATE_TIER $(grep Cpus_allowed_list /proc/self/status | cut -f2) $(nice)"
srun -n1 /bin/bash -c "echo step \$TIERGATE_TIER \$(grep Cpus_allowed_list /proc/self/status | cut -f2)"'

check() { # check SITE USER WANT_TIER WANT_CPUS SBATCH_ARGS...
	local s=$1 user=$2 tier=$3 ncpu=$4 id out
	shift 4
	out=$TEST_JOBS_DIR/$s-$user-$tier-$RANDOM.out
	id=$(sbatch_as "$user" -o "$out" "$@" --wrap "$probe")
	wait_job "$s" "$id" COMPLETED 60 >/dev/null
	wait_file "$out" 5
	note "$s: job $id ($user $*): $(tr '\n' ';' <"$out")"
	read -r _ b_tier b_cpus _ < <(grep '^batch ' "$out")
	read -r _ s_tier s_cpus < <(grep '^step ' "$out")
	assert_eq "$tier" "$b_tier" "$s job $id: tier in the batch step"
	assert_eq "$ncpu" "$(cpus_in "$b_cpus")" "$s job $id: CPUs of the batch step ($b_cpus)"
	assert_eq "$tier" "$s_tier" "$s job $id: tier in the srun step"
	assert_eq "$ncpu" "$(cpus_in "$s_cpus")" "$s job $id: CPUs of the srun step ($s_cpus)"
	# the allocation was larger: confinement, not allocation, made the count
	alloc=$(scontrol show job "$id" | sed -n 's/.*NumCPUs=\([0-9]*\).*/\1/p')
	LAST_ALLOC=$alloc
}

for s in "${SITES[@]}"; do
	site_env "$s"
	check "$s" alice premium 2 --cpu-tier=premium -c 2
	check "$s" alice basic 1 --cpu-tier=basic --exclusive
	assert_ge 2 "$LAST_ALLOC" "$s: CPUs allocated to the --exclusive basic job"
	check "$s" bob basic 1 --exclusive
	assert_ge 2 "$LAST_ALLOC" "$s: CPUs allocated to bob's job"
	# --export=NONE drops the option from the batch step: the default tier,
	# not premium.  (srun steps inside still read SLURM_SPANK_* from the job
	# and are judged by entitlement like any request.)
	out=$TEST_JOBS_DIR/$s-export-none.out
	id=$(sbatch_as alice -o "$out" --cpu-tier=premium -c 2 --export=NONE \
		--wrap 'echo "$TIERGATE_TIER $(grep Cpus_allowed_list /proc/self/status | cut -f2)"')
	wait_job "$s" "$id" COMPLETED 60 >/dev/null
	wait_file "$out" 5
	read -r tier cpus <"$out"
	assert_eq basic "$tier" "$s job $id (--export=NONE): tier"
	assert_eq 1 "$(cpus_in "$cpus")" "$s job $id (--export=NONE): CPUs ($cpus)"
	# nice comes from the tier table (basic: 5)
	out=$TEST_JOBS_DIR/$s-nice.out
	id=$(sbatch_as bob -o "$out" --wrap 'nice')
	wait_job "$s" "$id" COMPLETED 30 >/dev/null
	wait_file "$out" 5
	assert_eq 5 "$(cat "$out")" "$s: niceness of a basic job"
done
