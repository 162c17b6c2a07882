#!/usr/bin/env bash
# Each site is its own MUNGE realm: a credential made on one site's munged
# decodes there (with the caller's uid) and is refused by any other site's
# munged; a Slurm client that uses a site's slurm.conf but another site's
# munge socket is refused by slurmctld, and submits nothing.
. "$(dirname "$0")/lib.sh"

[ ${#SITES[@]} -ge 2 ] || fail "needs two sites"

for i in "${!SITES[@]}"; do
	a=${SITES[$i]}
	b=${SITES[$(((i + 1) % ${#SITES[@]}))]}
	sock_a=$(site_var "$a" MUNGE_SOCKET)
	sock_b=$(site_var "$b" MUNGE_SOCKET)
	[ -S "$sock_a" ] || fail "$a: munge socket $sock_a is missing"
	site_env "$a"

	# --- decodes in its own realm, with alice's identity
	cred=$(run_as alice munge -S "$sock_a" -n) || fail "$a: munge as alice on $sock_a failed"
	out=$(unmunge -S "$sock_a" <<<"$cred" 2>&1) || fail "$a: unmunge on its own socket failed: $out"
	assert_contains "$out" "STATUS:          Success (0)" "$a: unmunge of $a's credential"
	assert_contains "$out" "UID:             alice ($(id -u alice))" "$a: uid in $a's credential"

	# --- refused by the other realm
	cred=$(munge -S "$sock_a" -n)
	rc=0
	out=$(unmunge -S "$sock_b" <<<"$cred" 2>&1) || rc=$?
	assert_ne 0 "$rc" "$b: exit status of unmunge of $a's credential"
	assert_contains "$out" "Invalid credential" "$b: unmunge of $a's credential"
	assert_not_contains "$out" "Success" "$b: unmunge of $a's credential"

	# --- a client of site a that signs with b's munged
	good=$TEST_JOBS_DIR/$a-own-munge.conf
	bad=$TEST_JOBS_DIR/$a-with-$b-munge.conf
	cp "$SLURM_CONF" "$good"
	sed "s|^AuthInfo=.*|AuthInfo=socket=$sock_b|" "$SLURM_CONF" >"$bad"
	chmod 0644 "$good" "$bad"
	assert_contains "$(cat "$bad")" "AuthInfo=socket=$sock_b" "$bad"
	# control: the unmodified copy works, so only the socket makes the difference
	SLURM_CONF=$good timeout 30 sinfo -h >/dev/null || fail "$a: sinfo with a plain copy of slurm.conf failed"

	ctld_log=$SITE_DIR/log/slurmctld.log
	auth_errors=$(grep -c 'authentication error' "$ctld_log" || true)
	rc=0
	out=$(SLURM_CONF=$bad timeout 30 sinfo -h 2>&1) || rc=$?
	assert_ne 0 "$rc" "$a: exit status of sinfo signed by $b's munged (output: $out)"
	note "$a: sinfo with $b's munge: $out"

	before=$(job_ids "$a")
	rc=0
	out=$(runuser -u alice -- env SLURM_CONF="$bad" timeout 30 sbatch -J t0004-foreign -o /dev/null --wrap true 2>&1) || rc=$?
	assert_ne 0 "$rc" "$a: exit status of sbatch signed by $b's munged (output: $out)"
	assert_eq "$before" "$(job_ids "$a")" "$a: job ids before/after the foreign-realm sbatch"
	# slurmctld saw (and logged) both refusals
	assert_ge $((auth_errors + 2)) "$(grep -c 'authentication error' "$ctld_log" || true)" \
		"$a: authentication errors in $ctld_log"
done
