#!/usr/bin/env bash
# The output path: a job writes 100 MB to stdout; how fast does it reach the
# gateway (the stand-in receiver), and how much longer does the job take with
# the relay streaming it than with output streaming off (output=no)?
#
#   bench/spank-output.sh [ROUNDS] [MB]
#   BENCH_SITE=gamma TIERGATE_CLUSTER_DIR=... PORT_BASE=... (another cluster)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
MB=${2:-100}
SITE=${BENCH_SITE:-alpha}
U=${SITE^^}
eval "$(slurm-test-cluster/up --sites "$SITE")"
conf=SITE_${U}_SLURM_CONF dir=SITE_${U}_DIR
export SLURM_CONF=${!conf}
PS=${!dir}/etc/plugstack.conf
LINE=$(cat "$PS")
[ -n "$LINE" ] || { echo "plugstack.conf is empty: build the plugin first" >&2; exit 1; }
PORT=$(grep -o 'gateway=[^ ]*' "$PS" | sed 's/.*://')
OUT=$(mktemp -d /tmp/tiergate-bench-out.XXXXXX)
chmod 1777 "$OUT"
trap 'kill $RECV 2>/dev/null || true; printf "%s\n" "$LINE" >"$PS"' EXIT
# no credential check here: the stand-in's unmunge subprocess per chunk
# would be what is measured
# the receiver stands in for a gateway on another machine: keep its CPU out
# of the job's way as far as one box allows
nice -n 19 python3 tests/integration/receiver.py --port "$PORT" --dir "$OUT/recv" \
	>"$OUT/recv.log" 2>&1 &
RECV=$!
sleep 0.5

# The job times its own writing (the part the relay could slow down).
# shellcheck disable=SC2016
SCRIPT='t0=$(date +%s%N); head -c '"$((MB * 1000000))"' /dev/zero | tr "\0" x; t1=$(date +%s%N); echo "$(( (t1 - t0) / 1000 ))" >&2'

run() { # run VARIANT ROUND -> "VARIANT ROUND write_us first_byte_to_eof_us"
	local id t0 t1 f
	case $1 in
	off) printf '%s output=no\n' "$LINE" >"$PS" ;;
	on) printf '%s\n' "$LINE" >"$PS" ;;
	esac
	id=$(runuser -u alice -- env SLURM_CONF="$SLURM_CONF" sbatch --parsable \
		-o "$OUT/$1-$2.out" -e "$OUT/$1-$2.err" --wrap "$SCRIPT")
	f=$OUT/recv/out/$SITE-$id-stdout
	t0=0 t1=0
	if [ "$1" = on ]; then
		while [ ! -s "$f" ]; do sleep 0.005; done
		t0=$(date +%s%N)
		while [ "$(stat -c %s "$f")" -lt "$((MB * 1000000))" ]; do sleep 0.005; done
		t1=$(date +%s%N)
		while [ ! -e "$f.eof" ]; do sleep 0.01; done
		cmp -s "$f" "$OUT/$1-$2.out" || { echo "bytes differ for job $id" >&2; exit 1; }
	fi
	while squeue -h -j "$id" 2>/dev/null | grep -q .; do sleep 0.05; done
	echo "$1 $2 $(cat "$OUT/$1-$2.err") $(((t1 - t0) / 1000))"
}
for r in $(seq 1 "$ROUNDS"); do
	run off "$r"
	run on "$r"
done | tee "$OUT/results"
python3 - "$OUT/results" "$MB" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
mb = int(sys.argv[2])
w = {v: statistics.median(int(r[2]) for r in rows if r[0] == v) for v in ("off", "on")}
rate = statistics.median(mb / (int(r[3]) / 1e6) for r in rows if r[0] == "on")
print(f"job's own write time, median: off {w['off']/1e3:.0f} ms, on {w['on']/1e3:.0f} ms, ratio {w['on']/w['off']:.3f}")
print(f"first byte -> last byte at the receiver: median {rate:.0f} MB/s")
PY
