#!/usr/bin/env bash
# SIGHUP: a broken config keeps the old one; a config that changes what
# needs a restart is refused whole, naming the keys; a good one takes
# effect at once (admins) without dropping the daemon or its jobs.
. "$(dirname "$0")/lib.sh"
. "$TESTS_DIR/gateway-lib.sh"

gateway_start
conf=$TIERGATED_CONF
orig=$TEST_JOBS_DIR/tiergated.conf.orig
cp "$conf" "$orig"
script=$TEST_JOBS_DIR/job.sh
printf '#!/bin/bash\necho reload\n' >"$script"

# hup_and_wait PATTERN: send SIGHUP, wait for a log line matching PATTERN
hup_and_wait() {
	local from
	from=$(wc -l <"$TIERGATED_LOG")
	kill -HUP "$GW_PID"
	for _ in $(seq 1 100); do
		tail -n +"$((from + 1))" "$TIERGATED_LOG" | grep -q -- "$1" && return 0
		sleep 0.05
	done
	fail "no log line '$1' after SIGHUP: $(tail -n +"$((from + 1))" "$TIERGATED_LOG" | tail -5)"
}

id=$(tg alice submit --site alpha --tier basic "$script") || fail "submit: $id"
out=$(tg bob status "$id" 2>&1) && fail "bob sees alice's job before the reload: $out"

# 1. broken: an unknown key. The old config stays, the daemon serves.
sed 's/^\[gateway\]$/[gateway]\nno_such_key = 1/' "$orig" >"$conf"
hup_and_wait "refused, the old one stays"
grep -q "no_such_key" "$TIERGATED_LOG" || fail "the refusal does not name the key"
tg alice status "$id" >/dev/null || fail "the gateway stopped serving after a broken config"

# 2. needs a restart: listen, a site's url and its user map (jobs keep the
#    account they were mapped to), with a reloadable change too: nothing of
#    it is applied
sed -e "s/^listen = .*/listen = 127.0.0.1:1/" \
	-e "0,/^url = .*/s//url = http:\/\/127.0.0.1:2/" \
	-e "0,/^user_map = same$/s//user_map = alice=alice/" \
	-e "s/^admins = root$/admins = root, bob/" "$orig" >"$conf"
hup_and_wait "needs a restart"
grep "needs a restart" "$TIERGATED_LOG" | tail -1 | grep -q "listen, \[site alpha\] url, \[site alpha\] user_map" ||
	fail "the refusal does not name listen, alpha's url and user_map: $(grep 'needs a restart' "$TIERGATED_LOG" | tail -1)"
out=$(tg bob status "$id" 2>&1) && fail "a refused reload was applied (bob is admin): $out"
tg bob submit --site alpha --tier basic "$script" >/dev/null || fail "a refused reload changed alpha's user map"

# 3. good: bob becomes an admin, at once
sed -e "s/^admins = root$/admins = root, bob/" "$orig" >"$conf"
hup_and_wait "config reloaded"
assert_eq "$id" "$(tg bob --json status "$id" | jq -r .id)" "bob, now an admin, sees alice's job"
wait_gw_state alice "$id" 60 completed

# 4. and back: the original file again
cp "$orig" "$conf"
hup_and_wait "config reloaded"
out=$(tg bob status "$id" 2>&1) && fail "bob still admin after the reload back: $out"
exit 0
