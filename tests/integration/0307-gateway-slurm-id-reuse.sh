#!/usr/bin/env bash
# A site that starts its job ids again (state lost) while the gateway keeps
# its own: bob's new job gets an old Slurm id of alice's job, and each still
# sees only its own output through the gateway.
. "$(dirname "$0")/lib.sh"
. "$TESTS_DIR/gateway-lib.sh"

s=${SITES[0]}
G=$TIERGATE_CLUSTER_DIR/gateway
# not under the jobs dir: up --fresh wipes that
W=$(mktemp -d /tmp/tiergate-0307.XXXXXX)
trap 'gateway_stop; rm -rf "$W"' EXIT
printf '#!/bin/bash\necho "alice secret"\n' >"$W/a.sh"
printf '#!/bin/bash\necho "bob output"\n' >"$W/b.sh"

fresh_site() { # the site (and, by up, the gateway's state) from scratch
	"$REPO/slurm-test-cluster/up" --sites "$s" --fresh >/dev/null 2>"$W/up.log" ||
		fail "up --fresh of $s failed: $(cat "$W/up.log")"
	mkdir -p "$TEST_JOBS_DIR" && chmod 1777 "$TEST_JOBS_DIR" # wiped with the jobs dir
}
fresh_site # so that both jobs below get the site's first id
gateway_start
a=$(tg alice submit --site "$s" --tier basic "$W/a.sh")
wait_gw_state alice "$a" 60 completed
a_slurm=$(job_field alice "$a" .slurm.job_id)
got=$(timeout 30 "$TIERGATE_CLI" --token-file <(printf %s "$TIERGATE_TOKEN_ALICE") follow "$a" 2>/dev/null || true)
assert_contains "$got" "alice secret" "alice's output"

# the site forgets everything; the gateway keeps its state
gateway_stop
cp -a "$G/state" "$W/gw-state"
fresh_site
rm -rf "$G/state"
mv "$W/gw-state" "$G/state"
gateway_start

b=$(tg bob submit --site "$s" --tier basic "$W/b.sh")
wait_gw_state bob "$b" 60 completed
assert_eq "$a_slurm" "$(job_field bob "$b" .slurm.job_id)" "the reused Slurm id"
got=$(timeout 30 "$TIERGATE_CLI" --token-file <(printf %s "$TIERGATE_TOKEN_BOB") follow "$b" 2>/dev/null || true)
assert_contains "$got" "bob output" "bob's output through the gateway"
assert_not_contains "$got" "alice" "bob's output through the gateway"
got=$(timeout 30 "$TIERGATE_CLI" --token-file <(printf %s "$TIERGATE_TOKEN_ALICE") follow "$a" 2>/dev/null || true)
assert_contains "$got" "alice secret" "alice's output after the reuse"
assert_not_contains "$got" "bob" "alice's output after the reuse"
