# Sourced by the spank benches: bring up the bench's site and read what they
# need.  BENCH_SITE (default alpha); TIERGATE_CLUSTER_DIR, PORT_BASE for
# another cluster.  Sets SLURM_CONF (exported), NODE (the site's first
# node), SITE_DIR, SITE_MUNGE_SOCKET, PS (its plugstack.conf) and
# PLUGIN_LINE (that file's line, restored by the bench at exit).
SITE=${BENCH_SITE:-alpha}
U=${SITE^^}
eval "$(slurm-test-cluster/up --sites "$SITE")"
conf=SITE_${U}_SLURM_CONF dir=SITE_${U}_DIR sock=SITE_${U}_MUNGE_SOCKET nodes=SITE_${U}_NODES
export SLURM_CONF=${!conf}
NODE=${!nodes%% *}
SITE_DIR=${!dir}
SITE_MUNGE_SOCKET=${!sock}
PS=$SITE_DIR/etc/plugstack.conf
PLUGIN_LINE=$(cat "$PS")
[ -n "$PLUGIN_LINE" ] || { echo "plugstack.conf is empty: build the plugin first" >&2; exit 1; }
