/*
 * test_spank_core.c: the plugin's Slurm-free parts: plugstack arguments,
 * the tier decision (tickets and local policy), CPU sets, the command
 * line scan, events and the spool.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "args.h"
#include "cmdline.h"
#include "cpuset.h"
#include "decide.h"
#include "event.h"
#include "hostlist.h"
#include "jwt_verify.h"
#include "spool.h"
#include "ticket_check.h"
#include "ticket.h"
#include "tier.h"

/* ---- plugstack arguments ------------------------------------------ */

static void test_args_full(void **state)
{
	char *argv[] = {"tiers=/etc/t.conf",
			"ticket_key=/etc/k.pub",
			"gateway=http://gw:8480",
			"spool=/var/spool/x",
			"site=alpha",
			"relay=/usr/libexec/r",
			"report_auth=ticket",
			"output=no",
			"debug=ctx_.*"};
	struct plugin_args a;
	char err[256];

	(void)state;
	assert_int_equal(args_parse(9, argv, &a, err, sizeof(err)), 0);
	assert_string_equal(a.tiers, "/etc/t.conf");
	assert_string_equal(a.gateway, "http://gw:8480");
	assert_string_equal(a.site, "alpha");
	assert_string_equal(a.relay, "/usr/libexec/r");
	assert_int_equal(a.report_auth, REPORT_AUTH_TICKET);
	assert_false(a.output);
	assert_string_equal(a.debug, "ctx_.*");
}

static void test_args_defaults(void **state)
{
	char *argv[] = {"tiers=/etc/t.conf", "munge_socket=/run/m.sock"};
	struct plugin_args a;
	char err[256];

	(void)state;
	assert_int_equal(args_parse(2, argv, &a, err, sizeof(err)), 0);
	assert_string_equal(a.spool, ARGS_DEFAULT_SPOOL);
	assert_true(a.output);
	/* auto picks munge when a socket is given */
	assert_int_equal(a.report_auth, REPORT_AUTH_MUNGE);
}

static void expect_args_error(int argc, char **argv, const char *msg)
{
	struct plugin_args a;
	char err[256] = "";

	assert_int_equal(args_parse(argc, argv, &a, err, sizeof(err)), -EINVAL);
	if (!strstr(err, msg))
		fail_msg("'%s' lacks '%s'", err, msg);
}

static void test_args_errors_name_the_key(void **state)
{
	char *unknown[] = {"tiers=/t", "ticket_kye=/k"};
	char *repeat[] = {"tiers=/t", "tiers=/u"};
	char *relative[] = {"tiers=etc/t.conf"};
	char *noeq[] = {"tiers=/t", "verbose"};
	char *output[] = {"tiers=/t", "output=maybe"};
	char *auth[] = {"tiers=/t", "report_auth=kerberos"};
	char *none[] = {"site=a"};

	(void)state;
	expect_args_error(2, unknown, "unknown plugin argument 'ticket_kye'");
	expect_args_error(2, repeat, "'tiers' repeats");
	expect_args_error(1, relative,
			  "'tiers': 'etc/t.conf' is not an absolute");
	expect_args_error(2, noeq, "'verbose': expected key=value");
	expect_args_error(2, output, "'output': bad value 'maybe'");
	expect_args_error(2, auth, "'report_auth': bad value 'kerberos'");
	expect_args_error(1, none, "'tiers' is required");
}

/* ---- tier decision -------------------------------------------------- */

static const char tiers_text[] =
    "default = basic\n"
    "[tier basic]\ncpus = 1\nnice = 5\nrate = 1.0\n"
    "[tier premium]\ncpus = 2\nnice = 0\ncpu_time = 3600\nrate = 3.0\n"
    "[tier gold]\ncpus = 4\nrate = 9\n"
    "[entitle]\nuser.alice = premium\ngroup.physics = premium\n"
    "account.astro = gold\n";

static const char secret[] = "0123456789abcdef0123456789abcdef-test-only";

struct dstate {
	struct tier_table *tab;
	struct jwt_key *key;
	struct jwt_key *other_key;
};

static int decide_setup(void **state)
{
	static const char other[] = "another-key-of-at-least-32-bytes!!";
	struct dstate *s = calloc(1, sizeof(*s));
	char err[256];

	assert_int_equal(tier_table_parse_string("tiers.conf", tiers_text,
						 &s->tab, err, sizeof(err)),
			 0);
	assert_int_equal(jwt_key_load_mem(secret, strlen(secret), "HS256",
					  &s->key, err, sizeof(err)),
			 0);
	assert_int_equal(jwt_key_load_mem(other, strlen(other), "HS256",
					  &s->other_key, err, sizeof(err)),
			 0);
	*state = s;
	return 0;
}

static int decide_teardown(void **state)
{
	struct dstate *s = *state;

	tier_table_free(s->tab);
	jwt_key_free(s->key);
	jwt_key_free(s->other_key);
	free(s);
	return 0;
}

static char *mint(const struct jwt_key *k, const char *user, const char *tier,
		  time_t iat, time_t exp)
{
	struct ticket t = {.iat = iat, .exp = exp};
	char err[256], *tok = NULL;

	snprintf(t.user, sizeof(t.user), "%s", user);
	snprintf(t.tier, sizeof(t.tier), "%s", tier);
	snprintf(t.job_id, sizeof(t.job_id), "gw-42");
	assert_int_equal(ticket_sign(k, &t, &tok, err, sizeof(err)), 0);
	return tok;
}

static int decide(struct dstate *s, const char *user, const char *req,
		  const char *ticket, const char *account,
		  struct tier_decision *d)
{
	const char *groups[] = {user, "users"};
	struct ticket_check tc;
	struct tier_request r = {
	    .requested = req,
	    .ticket = &tc,
	    .user = user,
	    .groups = groups,
	    .n_groups = 2,
	    .account = account,
	    .now = time(NULL),
	};

	ticket_check_verify(s->key, ticket, r.now, &tc);
	return tier_decide(s->tab, &r, d);
}

static void test_decide_local_policy(void **state)
{
	struct dstate *s = *state;
	struct tier_decision d;

	/* nothing asked: the default, on purpose */
	assert_int_equal(decide(s, "bob", NULL, NULL, NULL, &d), 0);
	assert_string_equal(d.tier->name, "basic");
	assert_int_equal(d.source, TIER_FROM_DEFAULT);
	assert_int_equal(decide(s, "bob", "", NULL, NULL, &d), 0);
	assert_string_equal(d.tier->name, "basic");
	/* the default tier is always allowed */
	assert_int_equal(decide(s, "bob", "basic", NULL, NULL, &d), 0);
	/* entitled by user name */
	assert_int_equal(decide(s, "alice", "premium", NULL, NULL, &d), 0);
	assert_string_equal(d.tier->name, "premium");
	assert_int_equal(d.source, TIER_FROM_LOCAL);
	/* by account */
	assert_int_equal(decide(s, "bob", "gold", NULL, "astro", &d), 0);
	assert_string_equal(d.tier->name, "gold");
	/* not entitled */
	assert_int_equal(decide(s, "bob", "premium", NULL, NULL, &d), -EPERM);
	assert_null(d.tier);
	assert_string_equal(d.why,
			    "user bob is not entitled to CPU tier 'premium'");
	/* unknown tier names the tiers */
	assert_int_equal(decide(s, "alice", "platinum", NULL, NULL, &d),
			 -ENOENT);
	assert_string_equal(d.why, "unknown CPU tier 'platinum' (tiers: basic, "
				   "premium, gold)");
}

struct lazy_groups {
	int calls;
	const char *const *groups;
	size_t n;
};

static void lazy_groups_cb(void *arg, const char *const **groups, size_t *n)
{
	struct lazy_groups *lg = arg;

	lg->calls++;
	*groups = lg->groups;
	*n = lg->n;
}

/* Groups cost an NSS lookup: asked for only when a group rule could grant
 * the requested tier, and then they count like given ones. */
static void test_decide_loads_groups_lazily(void **state)
{
	struct dstate *s = *state;
	const char *const physics[] = {"users", "physics"};
	struct lazy_groups lg = {.groups = physics, .n = 2};
	struct ticket_check tc = {0};
	struct tier_decision d;
	struct tier_request r = {
	    .ticket = &tc,
	    .user = "bob",
	    .load_groups = lazy_groups_cb,
	    .load_groups_arg = &lg,
	    .now = time(NULL),
	};

	/* no tier asked for, the default, a tier no group rule names: none */
	assert_int_equal(tier_decide(s->tab, &r, &d), 0);
	r.requested = "basic";
	assert_int_equal(tier_decide(s->tab, &r, &d), 0);
	r.requested = "gold";
	r.account = "astro";
	assert_int_equal(tier_decide(s->tab, &r, &d), 0);
	r.account = NULL;
	assert_int_equal(tier_decide(s->tab, &r, &d), -EPERM);
	assert_int_equal(lg.calls, 0);
	/* granted by user name: no lookup either */
	r.user = "alice";
	r.requested = "premium";
	assert_int_equal(tier_decide(s->tab, &r, &d), 0);
	assert_int_equal(lg.calls, 0);
	/* granted by a group: looked up once */
	r.user = "bob";
	assert_int_equal(tier_decide(s->tab, &r, &d), 0);
	assert_string_equal(d.tier->name, "premium");
	assert_int_equal(d.source, TIER_FROM_LOCAL);
	assert_int_equal(lg.calls, 1);
	/* not in the group: refused, with the usual reason */
	lg.n = 1;
	assert_int_equal(tier_decide(s->tab, &r, &d), -EPERM);
	assert_string_equal(d.why,
			    "user bob is not entitled to CPU tier 'premium'");
	assert_int_equal(lg.calls, 2);
	assert_true(tier_has_group_rule(s->tab, tier_find(s->tab, "premium")));
	assert_false(tier_has_group_rule(s->tab, tier_find(s->tab, "gold")));
	assert_false(tier_has_group_rule(s->tab, NULL));
}

static void test_decide_tickets(void **state)
{
	struct dstate *s = *state;
	struct tier_decision d;
	time_t now = time(NULL);
	char *good = mint(s->key, "bob", "gold", now, now + 600);
	char *expired = mint(s->key, "bob", "gold", now - 900, now - 300);
	char *forged = mint(s->other_key, "bob", "gold", now, now + 600);
	char *alices = mint(s->key, "alice", "gold", now, now + 600);
	char *huge = malloc(JWT_TOKEN_MAX + 100);

	/* a valid ticket grants its tier to its own user */
	assert_int_equal(decide(s, "bob", "gold", good, NULL, &d), 0);
	assert_string_equal(d.tier->name, "gold");
	assert_int_equal(d.source, TIER_FROM_TICKET);
	assert_string_equal(d.ticket.job_id, "gw-42");
	/* and is the tier when none is asked for (REST --export=NONE) */
	assert_int_equal(decide(s, "bob", NULL, good, NULL, &d), 0);
	assert_string_equal(d.tier->name, "gold");
	/* but not another tier than its own */
	assert_int_equal(decide(s, "bob", "premium", good, NULL, &d), -EPERM);
	assert_non_null(strstr(d.why, "ticket is for tier 'gold'"));

	/* bad tickets grant nothing beyond local entitlement */
	assert_int_equal(decide(s, "bob", "gold", expired, NULL, &d), -EPERM);
	assert_non_null(strstr(d.why, "ticket refused"));
	assert_int_equal(decide(s, "bob", "gold", forged, NULL, &d), -EPERM);
	assert_int_equal(decide(s, "bob", "gold", alices, NULL, &d), -EPERM);
	assert_non_null(strstr(d.why, "another user"));
	/* the verdict crosses from the relay to the plugin as one line */
	{
		struct ticket_check a, b;
		char line[512];

		ticket_check_verify(s->key, good, now, &a);
		assert_int_equal(ticket_check_format(&a, line, sizeof(line)),
				 0);
		assert_int_equal(ticket_check_parse(line, &b), 0);
		assert_true(b.valid);
		assert_string_equal(b.t.user, "bob");
		assert_string_equal(b.t.tier, "gold");
		assert_string_equal(b.t.job_id, "gw-42");
		assert_int_equal(b.t.exp, a.t.exp);
		ticket_check_verify(s->key, expired, now, &a);
		ticket_check_format(&a, line, sizeof(line));
		assert_int_equal(ticket_check_parse(line, &b), 0);
		assert_false(b.valid);
		assert_true(b.present);
		assert_string_equal(b.error, a.error);
	}
	assert_int_equal(decide(s, "bob", "gold",
				"eyJhbGciOiJub25lIn0.eyJzdWIiOiJib2IifQ.", NULL,
				&d),
			 -EPERM);
	memset(huge, 'A', JWT_TOKEN_MAX + 99);
	huge[JWT_TOKEN_MAX + 99] = '\0';
	assert_int_equal(decide(s, "bob", "gold", huge, NULL, &d), -EPERM);
	/* ...while local entitlement still holds */
	assert_int_equal(decide(s, "alice", "premium", forged, NULL, &d), 0);
	assert_int_equal(d.source, TIER_FROM_LOCAL);
	assert_int_equal(decide(s, "bob", NULL, expired, NULL, &d), 0);
	assert_string_equal(d.tier->name, "basic");
	assert_int_equal(d.source, TIER_FROM_DEFAULT);

	free(good);
	free(expired);
	free(forged);
	free(alices);
	free(huge);
}

/* ---- CPU sets --------------------------------------------------------- */

static void test_cpuset(void **state)
{
	cpu_set_t a, cur, out;
	char buf[64];

	(void)state;
	assert_int_equal(cpuset_parse("0-3,8,10-11", &a), 0);
	assert_int_equal(CPU_COUNT(&a), 7);
	assert_int_equal(cpuset_format(&a, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "0-3,8,10-11");
	assert_int_equal(cpuset_parse("", &a), -EINVAL);
	assert_int_equal(cpuset_parse("3-1", &a), -EINVAL);
	assert_int_equal(cpuset_parse("1,x", &a), -EINVAL);
	assert_int_equal(cpuset_parse("99999", &a), -EINVAL);

	/* the first N allocated CPUs the task may run on */
	cpuset_parse("2-5", &a);
	cpuset_parse("0-7", &cur);
	assert_int_equal(cpuset_confine(&a, &cur, 2, &out), 2);
	cpuset_format(&out, buf, sizeof(buf));
	assert_string_equal(buf, "2-3");
	/* never more than allocated */
	assert_int_equal(cpuset_confine(&a, &cur, 16, &out), 4);
	/* numbering that does not meet the machine's: fall back to current */
	cpuset_parse("8-9", &a);
	cpuset_parse("0-1", &cur);
	assert_int_equal(cpuset_confine(&a, &cur, 1, &out), 1);
	cpuset_format(&out, buf, sizeof(buf));
	assert_string_equal(buf, "0");
}

/* ---- host lists -------------------------------------------------------- */

static void test_hostlist(void **state)
{
	const char *list = "a1,b[01-03,7],c,d[9-10]x";
	const char *want[] = {"a1", "b01", "b02", "b03",
			      "b7", "c",   "d9x", "d10x"};
	char out[32];
	unsigned i;

	(void)state;
	for (i = 0; i < 8; i++) {
		assert_int_equal(hostlist_nth(list, i, out, sizeof(out)), 0);
		assert_string_equal(out, want[i]);
	}
	assert_int_equal(hostlist_nth(list, 8, out, sizeof(out)), -ENOENT);
	assert_int_equal(hostlist_nth("g1", 0, out, sizeof(out)), 0);
	assert_string_equal(out, "g1");
	assert_int_equal(hostlist_nth("b[3-1]", 0, out, sizeof(out)), -EINVAL);
	assert_int_equal(hostlist_nth("b[1-2", 0, out, sizeof(out)), -EINVAL);
}

/* ---- command line ------------------------------------------------------ */

static void test_cmdline(void **state)
{
	char *argv1[] = {"sbatch", "-N1",    "-c", "2", "--cpu-tier",
			 "basic",  "job.sh", "-c", "9"};
	char *argv2[] = {"srun", "--cpus-per-task=3", "-A", "astro", "true"};
	char *argv3[] = {"sbatch", "-c4", "--account=x", "--wrap",
			 "srun -c 8 x"};
	char *env[] = {"SBATCH_CPUS_PER_TASK=5", "SBATCH_ACCOUNT=envacct",
		       NULL};
	struct cmd_request r;

	(void)state;
	cmdline_scan(9, argv1, NULL, &r);
	assert_int_equal(r.cpus_per_task, 2); /* the script's -c 9 is its own */
	cmdline_scan(5, argv2, NULL, &r);
	assert_int_equal(r.cpus_per_task, 3);
	assert_string_equal(r.account, "astro");
	cmdline_scan(5, argv3, env, &r);
	assert_int_equal(r.cpus_per_task, 4); /* command line beats env */
	assert_string_equal(r.account, "x");
	cmdline_scan(1, argv3, env, &r);
	assert_int_equal(r.cpus_per_task, 5);
	assert_string_equal(r.account, "envacct");
}

/* ---- events and spool --------------------------------------------------- */

static void test_event_json(void **state)
{
	struct tg_event ev = {
	    .kind = "task_exit",
	    .site = "alpha",
	    .job_id = 1001,
	    .step_id = EVENT_STEP_BATCH,
	    .node = "a1",
	    .user = "alice",
	    .tier = "premium",
	    .task = 0,
	    .wait_status = 3 << 8,
	    .time_ms = 1,
	    .step_start_ms = 1795628285813,
	};
	json_t *o;
	char *s;

	(void)state;
	s = event_to_json(&ev);
	o = json_loads(s, 0, NULL);
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "id")),
			    "alpha/1001/batch/a1/task_exit/0@1795628285813");
	assert_int_equal(json_integer_value(json_object_get(o, "exit_code")),
			 3);
	assert_null(json_object_get(o, "signal"));
	json_decref(o);
	free(s);

	ev.wait_status = 9; /* killed by SIGKILL */
	ev.step_id = 2;
	s = event_to_json(&ev);
	o = json_loads(s, 0, NULL);
	assert_int_equal(json_integer_value(json_object_get(o, "signal")), 9);
	assert_string_equal(json_string_value(json_object_get(o, "id")),
			    "alpha/1001/2/a1/task_exit/0@1795628285813");
	json_decref(o);
	free(s);
}

/* The hand-written JSON is what jansson wrote, byte for byte. */
static char *jansson_event(const struct tg_event *ev)
{
	char step[16], id[256];
	json_t *o = json_object();
	char *text;

	event_step_name(ev->step_id, step, sizeof(step));
	if (ev->task >= 0)
		snprintf(id, sizeof(id), "%s/%u/%s/%s/%s/%d@%lld", ev->site,
			 ev->job_id, step, ev->node, ev->kind, ev->task,
			 (long long)ev->step_start_ms);
	else
		snprintf(id, sizeof(id), "%s/%u/%s/%s/%s@%lld", ev->site,
			 ev->job_id, step, ev->node, ev->kind,
			 (long long)ev->step_start_ms);
#define S(k, v)                                                                \
	if (v)                                                                 \
	json_object_set_new(o, k, json_string(v))
	json_object_set_new(o, "id", json_string(id));
	S("kind", ev->kind);
	S("site", ev->site);
	json_object_set_new(o, "job_id", json_integer(ev->job_id));
	json_object_set_new(o, "step", json_string(step));
	S("node", ev->node);
	S("user", ev->user);
	S("tier", ev->tier);
	S("tier_source", ev->tier_source);
	S("cores", ev->cores);
	S("gw_job", ev->gw_job);
	S("request_id", ev->request_id);
	S("message", ev->message);
#undef S
	json_object_set_new(o, "time_ms", json_integer(ev->time_ms));
	if (ev->task >= 0) {
		json_object_set_new(o, "task", json_integer(ev->task));
		json_object_set_new(o, "wait_status",
				    json_integer(ev->wait_status));
		if (WIFEXITED(ev->wait_status))
			json_object_set_new(
			    o, "exit_code",
			    json_integer(WEXITSTATUS(ev->wait_status)));
		if (WIFSIGNALED(ev->wait_status))
			json_object_set_new(
			    o, "signal",
			    json_integer(WTERMSIG(ev->wait_status)));
	}
	if (!strcmp(ev->kind, "step_end"))
		json_object_set_new(o, "cpu_seconds",
				    json_real(ev->cpu_seconds));
	text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	return text;
}

static void test_event_json_as_jansson(void **state)
{
	static const char *const strs[] = {
	    "plain",
	    "",
	    "q\"uo\\te/slash",
	    "ctl\x01\x1f\b\f\n\r\t\x7f",
	    "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
	    "bad\xc3",
	    "bad\xc0\xaf",
	    "bad\xed\xa0\x80",
	    "bad\xf4\x90\x80\x80",
	    "bad\xff",
	    "bad\xe0\x80\x80",
	};
	static const double cpus[] = {0,    1,	      0.25,
				      0.1,  1e-7,     12345.678,
				      1e20, 3.5e-300, 123456789012345678.0,
				      NAN,  INFINITY};
	static const char *const kinds[] = {"step_start", "task_exit",
					    "step_end", "tier_refused"};
	size_t i, k, c;

	(void)state;
	for (i = 0; i < sizeof(strs) / sizeof(*strs); i++)
		for (k = 0; k < 4; k++)
			for (c = 0; c < sizeof(cpus) / sizeof(*cpus); c++) {
				struct tg_event ev = {
				    .kind = kinds[k],
				    .site = "alpha",
				    .job_id = 4000000000u,
				    .step_id = c & 1 ? 3 : EVENT_STEP_BATCH,
				    .node = c == 2 ? strs[i] : "a1",
				    .user = strs[i],
				    .tier = "basic",
				    .tier_source = c & 2 ? NULL : "local",
				    .cores = "0-1",
				    .gw_job = strs[i],
				    .request_id = c & 1 ? NULL : strs[i],
				    .message = strs[i],
				    .task = k == 1 ? (int)c : -1,
				    .wait_status = c & 1 ? 9 : 3 << 8,
				    .cpu_seconds = cpus[c],
				    .time_ms = 1795628288839,
				    .step_start_ms = -5,
				};
				char *mine = event_to_json(&ev);
				char *want = jansson_event(&ev);

				assert_non_null(mine);
				assert_non_null(want);
				assert_string_equal(mine, want);
				free(mine);
				free(want);
			}
}

struct collect {
	char names[8][64];
	char bodies[8][64];
	int n;
	int stop_at;
};

/* The queued events in order, as a relay reads them (spool_events_list,
 * spool_event_read), into c until c->stop_at: then -EAGAIN. */
static int collect_events(struct spool_job *sj, struct collect *c)
{
	char **names, buf[256];
	size_t n, i;
	int rv = spool_events_list(sj, &names, &n);

	for (i = 0; i < n && !rv; i++) {
		if (spool_event_read(sj, names[i], buf, sizeof(buf)) < 0)
			continue; /* delivered meanwhile */
		if (c->n == c->stop_at) {
			rv = -EAGAIN;
			break;
		}
		snprintf(c->names[c->n], sizeof(c->names[0]), "%.63s",
			 names[i]);
		snprintf(c->bodies[c->n], sizeof(c->bodies[0]), "%.63s", buf);
		c->n++;
	}
	spool_names_free(names, n);
	return rv;
}

static int name_cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The counter lives in the lock file; an older spool's "seq" file is
 * continued, and a number already taken is never written over. */
static void test_spool_counter(void **state)
{
	char root[] = "/tmp/tg-spool-XXXXXX", body[64];
	struct spool_job sj;
	int fd;

	(void)state;
	assert_non_null(mkdtemp(root));
	assert_int_equal(spool_job_open(root, "alpha", 8, &sj), 0);
	assert_false(spool_has_file(&sj, "dead")); /* made when needed */
	assert_int_equal(spool_write_file(&sj, "seq", "5\n"), 0);
	assert_int_equal(spool_event_append(&sj, "{\"n\":6}"), 0);
	assert_true(spool_has_file(&sj, "events/0000000006.json"));
	/* the counter was lost (say, a crash) while 7 and 8 exist */
	fd = openat(sj.dir_fd, "events/0000000007.json",
		    O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	fd = openat(sj.dir_fd, "events/0000000008.json",
		    O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "{\"n\":8}", 7), 7);
	close(fd);
	assert_int_equal(spool_event_append(&sj, "{\"n\":9}"), 0);
	assert_int_equal(
	    spool_read_file(&sj, "events/0000000008.json", body, sizeof(body)),
	    7);
	assert_string_equal(body, "{\"n\":8}");
	assert_int_equal(
	    spool_read_file(&sj, "events/0000000009.json", body, sizeof(body)),
	    7);
	assert_string_equal(body, "{\"n\":9}");
	assert_int_equal(spool_event_append(&sj, "{\"n\":10}"), 0);
	assert_true(spool_has_file(&sj, "events/0000000010.json"));
	/* several under one lock, in order */
	{
		const char *const two[] = {"{\"n\":11}", "{\"n\":12}"};

		assert_int_equal(spool_event_append_n(&sj, two, 2), 0);
		assert_int_equal(spool_read_file(&sj, "events/0000000012.json",
						 body, sizeof(body)),
				 8);
		assert_string_equal(body, "{\"n\":12}");
		assert_int_equal(spool_read_file(&sj, "events/0000000011.json",
						 body, sizeof(body)),
				 8);
		assert_string_equal(body, "{\"n\":11}");
	}
	assert_int_equal(spool_remove_job(&sj), 0);
	spool_job_close(&sj);
	rmdir(root);
}

static void test_spool_order_and_resume(void **state)
{
	char root[] = "/tmp/tg-spool-XXXXXX";
	struct spool_job sj;
	struct collect c = {.stop_at = 99};
	struct stat st;
	int i;

	(void)state;
	assert_non_null(mkdtemp(root));
	assert_int_equal(spool_job_open(root, "alpha", 7, &sj), 0);
	assert_int_equal(stat(sj.dir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_false(spool_events_pending(&sj));
	for (i = 0; i < 12; i++) {
		char ev[32];

		snprintf(ev, sizeof(ev), "{\"n\":%d}", i);
		assert_int_equal(spool_event_append(&sj, ev), 0);
	}
	assert_true(spool_events_pending(&sj));

	/* a consumer stops at the first failure; order is kept */
	c.stop_at = 3;
	assert_int_equal(collect_events(&sj, &c), -EAGAIN);
	assert_int_equal(c.n, 3);
	assert_string_equal(c.bodies[0], "{\"n\":0}");
	assert_string_equal(c.bodies[2], "{\"n\":2}");
	for (i = 0; i < 3; i++)
		assert_int_equal(spool_event_done(&sj, c.names[i]), 0);
	assert_int_equal(spool_event_dead(&sj, "0000000004.json"), 0);

	/* reopened (a new relay): the rest, in order, numbered past 9 */
	spool_job_close(&sj);
	assert_int_equal(spool_job_open(root, "alpha", 7, &sj), 0);
	memset(&c, 0, sizeof(c));
	c.stop_at = 99;
	assert_int_equal(collect_events(&sj, &c), 0);
	assert_int_equal(c.n, 8);
	assert_string_equal(c.bodies[0], "{\"n\":4}");
	assert_string_equal(c.bodies[7], "{\"n\":11}");
	assert_true(spool_has_file(&sj, "dead/0000000004.json"));

	/* one relay per job dir */
	{
		struct spool_job other;
		int a, b;

		assert_int_equal(spool_lock(&sj, SPOOL_LOCK_RELAY, false, &a),
				 0);
		assert_int_equal(spool_job_open(root, "alpha", 7, &other), 0);
		assert_int_equal(
		    spool_lock(&other, SPOOL_LOCK_RELAY, false, &b),
		    -EWOULDBLOCK);
		spool_job_close(&other);
		spool_unlock(a);
	}
	assert_int_equal(spool_remove_job(&sj), 0);
	assert_int_equal(stat(sj.dir, &st), -1);
	spool_job_close(&sj);
	rmdir(root);
}

/* "root/name" exists */
static bool exists_in(const char *root, const char *name)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", root, name);
	return access(path, F_OK) == 0;
}

/* Names in the dir root/name, sorted, space separated. */
static void list_dir(const char *root, const char *name, char *out, size_t len)
{
	char path[256], *names[16] = {NULL};
	struct dirent *de;
	size_t n = 0, o = 0;
	DIR *d;

	snprintf(path, sizeof(path), "%s/%s", root, name);
	out[0] = '\0';
	d = opendir(path);
	assert_non_null(d);
	while ((de = readdir(d)) && n < 16)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			names[n++] = strdup(de->d_name);
	closedir(d);
	qsort(names, n, sizeof(*names), name_cmp_str);
	for (size_t i = 0; i < n; i++) {
		o += snprintf(out + o, len - o, "%s%s", i ? " " : "", names[i]);
		free(names[i]);
	}
}

/*
 * A delivered job dir is kept as a spare (emptied: no meta, no stray
 * files) and the next job takes it by rename; a step or relay still
 * holding the old dir open sees -ESTALE and touches nothing of the new
 * job's; dirs with dead events, or beyond the spare slots, are removed.
 */
static void test_spool_spares(void **state)
{
	char root[] = "/tmp/tg-spool-XXXXXX", names[256];
	struct spool_job a, late, b;
	struct collect c = {.stop_at = -1};
	int i, no_lock = -1, relay_lock = -1;

	(void)state;
	assert_non_null(mkdtemp(root));
	assert_int_equal(spool_job_open(root, "alpha", 7, &a), 0);
	assert_int_equal(spool_job_open(root, "alpha", 7, &late), 0);
	assert_int_equal(spool_event_append(&a, "{\"n\":1}"), 0);
	assert_int_equal(spool_write_file(&a, "meta", "job_id=7\n"), 0);
	assert_int_equal(spool_write_file(&a, "end", ""), 0);
	assert_int_equal(spool_remove_job_if_idle(&a, &no_lock), -EBUSY);
	assert_int_equal(collect_events(&a, &c), 0);
	assert_int_equal(spool_event_done(&a, c.names[0]), 0);
	/* the relay's lock is let go before the dir can be taken */
	assert_int_equal(spool_lock(&a, SPOOL_LOCK_RELAY, false, &relay_lock),
			 0);
	assert_int_equal(spool_remove_job_if_idle(&a, &relay_lock), 0);
	assert_int_equal(relay_lock, -1);
	assert_false(exists_in(root, "alpha-7"));
	list_dir(root, ".spare-0", names, sizeof(names));
	assert_string_equal(names, ".relay.lock .seq.lock events");
	/* the event's inode became the relay's lock file; meta's and
	 * end's are kept for the next files */
	list_dir(root, ".spare-0/events", names, sizeof(names));
	assert_string_equal(names, ".free-0 .free-1");

	/* a late step of job 7 writes no meta into it (it may be the next
	 * job's by then); the next job takes it */
	assert_int_equal(
	    spool_write_file_locked(&a, "meta", "job_id=7\n", true), -ESTALE);
	assert_int_equal(spool_job_open(root, "alpha", 8, &b), 0);
	assert_false(exists_in(root, ".spare-0"));
	assert_false(spool_has_file(&b, "meta"));
	assert_int_equal(spool_lock(&b, SPOOL_LOCK_RELAY, false, &relay_lock),
			 0);
	spool_unlock(relay_lock);
	{
		struct stat free_st, ev_st;

		assert_int_equal(
		    fstatat(b.dir_fd, "events/.free-0", &free_st, 0), 0);
		assert_int_equal(spool_event_append(&b, "{\"n\":2}"), 0);
		/* the event took a free file, whose old contents are gone */
		assert_int_equal(
		    fstatat(b.dir_fd, "events/0000000002.json", &ev_st, 0), 0);
		assert_int_equal(ev_st.st_ino, free_st.st_ino);
		assert_int_equal(spool_read_file(&b, "events/0000000002.json",
						 names, sizeof(names)),
				 7);
		assert_string_equal(names, "{\"n\":2}");
		list_dir(root, "alpha-8/events", names, sizeof(names));
		assert_string_equal(names, ".free-1 0000000002.json");
	}
	/* a file replaced: its old inode is kept too; "if missing" keeps
	 * what is there */
	assert_int_equal(
	    spool_write_file_locked(&b, "meta", "job_id=8\n", true), 0);
	assert_int_equal(spool_write_file(&b, "meta", "job_id=8 again\n"), 0);
	assert_int_equal(
	    spool_write_file_locked(&b, "meta", "job_id=other\n", true), 0);
	assert_int_equal(spool_read_file(&b, "meta", names, sizeof(names)), 15);
	list_dir(root, "alpha-8/events", names, sizeof(names));
	assert_string_equal(names, ".free-0 0000000002.json");
	/* a free file with longer contents is cut to the new ones (it is
	 * overwritten, not truncated at open: see write_new_file) */
	assert_int_equal(spool_write_file(&b, "note", "a long first text\n"),
			 0);
	assert_int_equal(spool_write_file(&b, "note", "2nd\n"), 0);
	assert_int_equal(spool_write_file(&b, "note", "3\n"), 0);
	assert_int_equal(spool_read_file(&b, "note", names, sizeof(names)), 2);
	assert_string_equal(names, "3\n");

	/* job 7's late step and late relay: stale, job 8's event stays */
	assert_int_equal(spool_event_append(&late, "{\"n\":3}"), -ESTALE);
	assert_int_equal(spool_remove_job_if_idle(&a, &no_lock), -ESTALE);
	assert_true(spool_events_pending(&b));
	spool_job_close(&late);
	assert_int_equal(spool_job_open(root, "alpha", 7, &late), 0);
	assert_int_equal(spool_event_append(&late, "{\"n\":3}"), 0);
	assert_true(exists_in(root, "alpha-7/events"));
	spool_job_close(&late);
	spool_job_close(&a);

	/* dead events: removed with the dir, never handed on */
	c.n = 0;
	assert_int_equal(collect_events(&b, &c), 0);
	assert_int_equal(spool_event_dead(&b, c.names[0]), 0);
	assert_int_equal(spool_remove_job_if_idle(&b, &no_lock), 0);
	assert_false(exists_in(root, "alpha-8"));
	assert_false(exists_in(root, ".spare-0"));
	spool_job_close(&b);

	/* 8 spares at most: the ninth idle dir is removed */
	for (i = 0; i < 9; i++) {
		assert_int_equal(spool_job_open(root, "beta", 100 + i, &b), 0);
		spool_job_close(&b);
	}
	for (i = 0; i < 9; i++) {
		char dir[256];

		snprintf(dir, sizeof(dir), "%s/beta-%d", root, 100 + i);
		assert_int_equal(spool_job_open_dir(dir, &b), 0);
		assert_int_equal(spool_remove_job_if_idle(&b, &no_lock), 0);
		spool_job_close(&b);
	}
	list_dir(root, "", names, sizeof(names));
	assert_string_equal(names, ".spare-0 .spare-1 .spare-2 .spare-3 "
				   ".spare-4 .spare-5 .spare-6 .spare-7 "
				   "alpha-7");
	/* a dir that is gone is not made again by the relay's open */
	assert_int_equal(spool_job_open_dir(root, &b), 0);
	spool_job_close(&b);
	{
		char dir[256];

		snprintf(dir, sizeof(dir), "%s/beta-100", root);
		assert_int_equal(spool_job_open_dir(dir, &b), -ENOENT);
		assert_true(exists_in(root, ".spare-0"));
	}
	/* the node relay tops them up, free files and all */
	assert_int_equal(spool_make_spares(root, 8), 0);
	{
		char cmd[300];

		snprintf(cmd, sizeof(cmd), "rm -rf %s/.spare-3", root);
		assert_int_equal(system(cmd), 0);
	}
	assert_int_equal(spool_make_spares(root, 8), 1);
	list_dir(root, ".spare-3", names, sizeof(names));
	assert_string_equal(names, ".seq.lock events");
	list_dir(root, ".spare-3/events", names, sizeof(names));
	assert_string_equal(names, ".free-0 .free-1 .free-2 .free-3");
	{
		char cmd[300];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
		assert_int_equal(system(cmd), 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_args_full),
	    cmocka_unit_test(test_args_defaults),
	    cmocka_unit_test(test_args_errors_name_the_key),
	    cmocka_unit_test_setup_teardown(test_decide_local_policy,
					    decide_setup, decide_teardown),
	    cmocka_unit_test_setup_teardown(test_decide_loads_groups_lazily,
					    decide_setup, decide_teardown),
	    cmocka_unit_test_setup_teardown(test_decide_tickets, decide_setup,
					    decide_teardown),
	    cmocka_unit_test(test_cpuset),
	    cmocka_unit_test(test_hostlist),
	    cmocka_unit_test(test_cmdline),
	    cmocka_unit_test(test_event_json),
	    cmocka_unit_test(test_event_json_as_jansson),
	    cmocka_unit_test(test_spool_order_and_resume),
	    cmocka_unit_test(test_spool_counter),
	    cmocka_unit_test(test_spool_spares),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
