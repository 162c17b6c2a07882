#!/usr/bin/env bash
# POST /v1/events with a batch (docs/protocol.md, "Batches"), as a node's
# relay sends them, straight at the gateway: each event gets its own
# result, in order; a repeat counts once; an event the gateway will never
# take is refused alone while the others are stored; a ticket covers its
# own job's events only; a batch too big or empty is refused whole.
. "$(dirname "$0")/lib.sh"
. "$TESTS_DIR/gateway-lib.sh"

s=${SITES[0]}
site_env "$s"
gateway_start

# post_events BODY [AUTH]: "STATUS BODY" of POST /v1/events, with the
# site's MUNGE credential for exactly this body unless AUTH is given
post_events() {
	local body=$1 auth=${2:-} hex out
	if [ -z "$auth" ]; then
		hex=$(printf '%s' "$body" | sha256sum | cut -d' ' -f1)
		auth="MUNGE $(printf 'POST /v1/events\n%s' "$hex" | munge -S "$MUNGE_SOCKET")" ||
			fail "munge failed"
	fi
	out=$(curl -s -o "$TEST_JOBS_DIR/events.out" -w '%{http_code}' -X POST \
		-H "Authorization: $auth" -H 'Content-Type: application/json' \
		--data-binary "$body" "$TIERGATE_URL/v1/events") || fail "curl failed"
	printf '%s %s' "$out" "$(cat "$TEST_JOBS_DIR/events.out")"
}
# ev ID JOB [KIND] [SITE]: one event as the plugin writes it
ev() {
	jq -nc --arg id "$1" --argjson job "$2" --arg kind "${3:-probe}" --arg site "${4:-$s}" \
		'{id: $id, kind: $kind, site: $site, job_id: $job, step: "0", node: "n", time_ms: 1}'
}
metric() { curl -sf "$TIERGATE_URL/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }

# Slurm ids no gateway job has: the events are kept under the Slurm id
base=$((900000 + RANDOM))
e1=$(ev "t/$base/1" "$base") e2=$(ev "t/$base/2" "$base") e3=$(ev "t/$base/3" $((base + 1)))
before=$(metric tiergate_events_total)
read -r code body <<<"$(post_events "[$e1,$e2,$e3]")"
assert_eq 200 "$code" "a batch's status ($body)"
assert_eq "201 201 201" "$(jq -r '[.results[].status] | join(" ")' <<<"$body")" "results"
assert_eq "t/$base/1 t/$base/2 t/$base/3" "$(jq -r '[.results[].id] | join(" ")' <<<"$body")" "results' order"
# (other tests' relays may still deliver: at least ours)
assert_ge $((before + 3)) "$(metric tiergate_events_total)" "events counted"

# the same batch again (a lost reply): each counts once
dup_before=$(metric tiergate_events_duplicate_total)
read -r code body <<<"$(post_events "[$e1,$e2,$e3]")"
assert_eq "200 true true true" "$code $(jq -r '[.results[].duplicate] | join(" ")' <<<"$body")" "a repeat"
assert_ge $((dup_before + 3)) "$(metric tiergate_events_duplicate_total)" "duplicates counted"

# a bad event in the middle is refused alone; the ones around it are stored
bad=$(jq -c 'del(.kind)' <<<"$(ev "t/$base/5" "$base")")
other=$(ev "t/$base/6" "$base" probe not-this-site)
read -r code body <<<"$(post_events "[$(ev "t/$base/4" "$base"),$bad,$other,$(ev "t/$base/7" "$base")]")"
assert_eq 200 "$code" "a batch with bad events ($body)"
assert_eq "201 400 400 201" "$(jq -r '[.results[].status] | join(" ")' <<<"$body")" "results"
assert_contains "$(jq -r '.results[1].error.message' <<<"$body")" "needs id, kind, site and job_id"
assert_contains "$(jq -r '.results[2].error.message' <<<"$body")" "one site"

# refused whole: empty, too many, not events, a credential for another body (the MUNGE payload vouches for this body only)
read -r code body <<<"$(post_events "[]")"
assert_eq 400 "$code" "an empty batch ($body)"
many=$(for i in $(seq 1 257); do ev "t/$base/m$i" "$base"; done | jq -sc .)
read -r code body <<<"$(post_events "$many")"
assert_eq 400 "$code" "257 events ($body)"
assert_contains "$body" "1 to 256 events"
read -r code body <<<"$(post_events "[1,2]")"
assert_eq 400 "$code" "a batch of numbers ($body)"
hex=$(printf '%s' "[$e1]" | sha256sum | cut -d' ' -f1)
cred=$(printf 'POST /v1/events\n%s' "$hex" | munge -S "$MUNGE_SOCKET")
read -r code body <<<"$(post_events "[$e2]" "MUNGE $cred")"
assert_eq 401 "$code" "a credential made for another body ($body)"

# a ticket: its own job's events are taken, another job's are not
script=$TEST_JOBS_DIR/ticket.sh
printf '#!/bin/bash\nprintf "%%s" "$TIERGATE_TICKET" >%s/ticket\n' "$TEST_JOBS_DIR" >"$script"
rm -f "$TEST_JOBS_DIR/ticket"
job=$(tg alice --json submit --site "$s" --tier basic --time 2 "$script" | jq -r .id)
wait_gw_state alice "$job" 120 completed
slurm_id=$(job_field alice "$job" .slurm.job_id)
[ -s "$TEST_JOBS_DIR/ticket" ] || fail "the job saw no ticket"
read -r code body <<<"$(post_events "[$(ev "t/$base/t0" "$slurm_id")]" "Bearer x.y.z")"
assert_eq 401 "$code" "a batch with a bad ticket ($body)"
read -r code body <<<"$(post_events "[$(ev "t/$base/t1" "$slurm_id"),$(ev "t/$base/t2" "$base")]" \
	"Bearer $(cat "$TEST_JOBS_DIR/ticket")")"
assert_eq 200 "$code" "a batch with a ticket ($body)"
assert_eq "201 400" "$(jq -r '[.results[].status] | join(" ")' <<<"$body")" "results"
assert_contains "$(jq -r '.results[1].error.message' <<<"$body")" "its own job only"
assert_eq completed "$(job_field alice "$job" .state)" "the job after the probe events"
