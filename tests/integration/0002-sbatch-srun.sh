#!/usr/bin/env bash
# On every site, as alice: an sbatch job runs on one of the site's nodes, as
# alice, and sees the site's cluster name; srun -N2 runs one task on each of
# the site's two nodes.
. "$(dirname "$0")/lib.sh"

host=$(hostname)
for s in "${SITES[@]}"; do
	site_env "$s"
	read -r -a nodes <<<"$NODES"
	[ ${#nodes[@]} -ge 2 ] || fail "$s: needs two nodes, has: $NODES"

	# --- sbatch: the job writes what it sees into a file of the jobs dir
	out=$TEST_JOBS_DIR/sbatch-$s.txt
	# shellcheck disable=SC2016  # $(...) and $SLURM_* are expanded by the job
	script='echo "$(hostname) $SLURM_CLUSTER_NAME $SLURMD_NODENAME $(id -un)" > '$(printf '%q' "$out")
	id=$(run_as alice sbatch --parsable -J t0002 -o "$TEST_JOBS_DIR/sbatch-$s-%j.log" \
		--wrap "$script" 2>&1) || fail "$s: sbatch failed: $id"
	id=${id%%;*}
	[[ $id =~ ^[0-9]+$ ]] || fail "$s: sbatch printed '$id', not a job id"
	wait_job "$s" "$id" COMPLETED 30 >/dev/null
	wait_file "$out" 5
	read -r j_host j_cluster j_node j_user <"$out"
	note "$s: job $id wrote: $(cat "$out")"
	assert_eq "$host" "$j_host" "$s: hostname seen by the job"
	assert_eq "$s" "$j_cluster" "$s: SLURM_CLUSTER_NAME seen by the job"
	assert_contains " $NODES " " $j_node " "$s: the site's nodes ($NODES)"
	assert_eq alice "$j_user" "$s: user the job ran as"
	assert_eq alice "$(stat -c %U "$out")" "$s: owner of the job's file"
	[ ! -s "$TEST_JOBS_DIR/sbatch-$s-$id.log" ] ||
		fail "$s: job $id wrote to its stdout/stderr: $(cat "$TEST_JOBS_DIR/sbatch-$s-$id.log")"

	# --- srun over both nodes: one task per node
	# shellcheck disable=SC2016
	got=$(run_as alice timeout 60 srun -J t0002-srun -N2 -n2 --ntasks-per-node=1 \
		bash -c 'echo "$SLURMD_NODENAME $SLURM_CLUSTER_NAME $(id -un) $SLURM_PROCID"' 2>&1) ||
		fail "$s: srun -N2 failed: $got"
	note "$s: srun -N2 printed: $(tr '\n' ';' <<<"$got")"
	assert_eq 2 "$(grep -c . <<<"$got")" "$s: number of srun output lines"
	assert_eq "$(printf '%s\n' "${nodes[@]:0:2}" | sort)" "$(awk '{print $1}' <<<"$got" | sort)" \
		"$s: nodes the two srun tasks ran on"
	assert_eq "$s $s" "$(awk '{print $2}' <<<"$got" | xargs)" "$s: cluster seen by the srun tasks"
	assert_eq "alice alice" "$(awk '{print $3}' <<<"$got" | xargs)" "$s: user of the srun tasks"
	assert_eq "0 1" "$(awk '{print $4}' <<<"$got" | sort -n | xargs)" "$s: srun task ranks"
done
