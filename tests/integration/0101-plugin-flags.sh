#!/usr/bin/env bash
# --cpu-tier is listed by sbatch/srun/salloc --help with the tier names, and
# every refusal in allocator/local context fails the command with one clear
# message and submits nothing.
. "$(dirname "$0")/lib.sh"
. "$TESTS_DIR/plugin-lib.sh"

for s in "${SITES[@]}"; do
	site_env "$s"
	for cmd in sbatch srun salloc; do
		help=$($cmd --help 2>&1)
		assert_contains "$help" "--cpu-tier=NAME" "$s: $cmd --help"
		assert_contains "$help" "basic, premium (default basic)" "$s: $cmd --help"
	done

	before=$(job_ids "$s" | wc -l)
	refuse() { # refuse EXPECTED_MESSAGE USER CMD...
		local want=$1 user=$2 out rc=0
		shift 2
		out=$(run_as "$user" timeout 30 "$@" 2>&1) || rc=$?
		[ "$rc" != 0 ] || fail "$s: '$*' as $user succeeded; it must be refused: $out"
		assert_contains "$out" "$want" "$s: '$*' as $user"
		note "$s: $* as $user -> rc $rc: $(grep tiergate <<<"$out" | head -n 1)"
	}
	refuse "unknown CPU tier 'gold' (tiers: basic, premium)" alice sbatch --cpu-tier=gold --wrap true
	refuse "unknown CPU tier 'gold'" alice srun --cpu-tier=gold true
	refuse "unknown CPU tier 'gold'" alice salloc --cpu-tier=gold true
	refuse "user bob is not entitled to CPU tier 'premium'" bob sbatch --cpu-tier=premium --wrap true
	refuse "user bob is not entitled to CPU tier 'premium'" bob srun --cpu-tier=premium true
	refuse "user carol is not entitled to CPU tier 'premium'" carol salloc --cpu-tier=premium true
	refuse "CPU tier 'basic' allows 1 CPU per task; 2 requested" alice sbatch --cpu-tier=basic -c 2 --wrap true
	refuse "CPU tier 'basic' allows 1 CPU per task; 2 requested" bob srun --cpu-tier=basic --cpus-per-task=2 true
	refuse "CPU tier 'premium' allows 2 CPUs per task; 3 requested" alice sbatch --cpu-tier=premium -c3 --wrap true
	# the environment form (SLURM_SPANK__...) is judged like the flag
	refuse "user bob is not entitled to CPU tier 'premium'" bob \
		env SLURM_SPANK__SLURM_SPANK_OPTION_tiergate_cpu_tier=premium sbatch --wrap true
	after=$(job_ids "$s" | wc -l)
	assert_eq "$before" "$after" "$s: number of jobs (refusals must submit nothing)"

	# and what is allowed goes through
	id=$(sbatch_as alice --cpu-tier=premium -c 2 -o /dev/null --wrap true)
	wait_job "$s" "$id" COMPLETED 30 >/dev/null
	out=$(run_as bob srun --cpu-tier=basic true 2>&1) || fail "$s: bob at basic refused: $out"
done
