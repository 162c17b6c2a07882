/* test_tier.c: the tier table, its error messages, and entitlements. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tier.h"

/* The example of the design brief, plus the "gold" tier it refers to. */
static const char example[] =
    "default = basic\n"
    "[tier basic]\n"
    "cpus = 1\n"
    "nice = 5\n"
    "rate = 1.0\n"
    "[tier premium]\n"
    "cpus = 2\n"
    "mem = 1G          # optional, RLIMIT_AS-style bytes, conf_get_size\n"
    "nice = 0          # -20..19\n"
    "cpu_time = 3600   # optional, seconds, RLIMIT_CPU\n"
    "rate = 3.0        # charge per CPU-second, >= 0\n"
    "[entitle]\n"
    "user.alice = premium\n"
    "group.tiergate-premium = premium\n"
    "account.physics = premium, gold\n"
    "[tier gold]\n"
    "cpus = 8\n"
    "rate = 10\n";

static struct tier_table *parse_ok(const char *text)
{
	struct tier_table *tab = NULL;
	char err[256] = "";
	int rv =
	    tier_table_parse_string("t.conf", text, &tab, err, sizeof(err));

	if (rv)
		print_message("parse: %s\n", err);
	assert_int_equal(rv, 0);
	assert_non_null(tab);
	return tab;
}

static void test_parse_example(void **state)
{
	struct tier_table *tab = parse_ok(example);
	const struct tier *b, *p, *g;
	char buf[160];

	(void)state;
	assert_int_equal(tab->n_tiers, 3);
	b = tier_find(tab, "basic");
	p = tier_find(tab, "premium");
	g = tier_find(tab, "gold");
	assert_non_null(b);
	assert_non_null(p);
	assert_non_null(g);
	assert_ptr_equal(tier_default(tab), b);
	assert_null(tier_find(tab, "Basic"));
	assert_null(tier_find(tab, NULL));

	assert_string_equal(b->name, "basic");
	assert_int_equal(b->cpus, 1);
	assert_int_equal(b->nice, 5);
	assert_true(b->rate == 1.0);
	assert_int_equal(b->mem_bytes, 0);
	assert_int_equal(b->cpu_time_s, 0);

	assert_int_equal(p->cpus, 2);
	assert_int_equal(p->mem_bytes, 1ULL << 30);
	assert_int_equal(p->nice, 0);
	assert_int_equal(p->cpu_time_s, 3600);
	assert_true(p->rate == 3.0);

	assert_int_equal(g->cpus, 8);
	assert_true(g->rate == 10.0);

	assert_int_equal(tier_names(tab, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "basic, premium, gold");
	assert_string_equal(tier_debug_str(p, buf, sizeof(buf)),
			    "tier premium cpus=2 mem=1073741824 nice=0 "
			    "cpu_time=3600 rate=3");
	assert_string_equal(tier_debug_str(NULL, buf, sizeof(buf)),
			    "tier (none)");
	assert_int_equal(tab->n_rules, 3);
	tier_table_free(tab);
	tier_table_free(NULL);
}

static void test_defaults_of_optional_keys(void **state)
{
	struct tier_table *tab = parse_ok("default = x\n[tier x]\ncpus = 4\n");
	const struct tier *t = tier_default(tab);

	(void)state;
	assert_string_equal(t->name, "x");
	assert_int_equal(t->cpus, 4);
	assert_int_equal(t->nice, 0);
	assert_true(t->rate == 1.0);
	assert_int_equal(t->mem_bytes, 0);
	assert_int_equal(t->cpu_time_s, 0);
	tier_table_free(tab);
}

static void test_entitlement(void **state)
{
	struct tier_table *tab = parse_ok(example), *other;
	const struct tier *b = tier_find(tab, "basic");
	const struct tier *p = tier_find(tab, "premium");
	const struct tier *g = tier_find(tab, "gold");
	const char *const prem_groups[] = {"users", "tiergate-premium"};
	const char *const plain_groups[] = {"users", "tiergate"};
	const char *const null_group[] = {NULL};

	(void)state;
	/* by user */
	assert_true(tier_entitled(tab, p, "alice", NULL, 0, NULL));
	assert_false(tier_entitled(tab, g, "alice", NULL, 0, NULL));
	/* by group */
	assert_true(tier_entitled(tab, p, "bob", prem_groups, 2, NULL));
	assert_false(tier_entitled(tab, p, "bob", prem_groups, 1, NULL));
	assert_false(tier_entitled(tab, g, "bob", prem_groups, 2, NULL));
	/* by account */
	assert_true(tier_entitled(tab, p, "dave", NULL, 0, "physics"));
	assert_true(tier_entitled(tab, g, "dave", NULL, 0, "physics"));
	assert_false(tier_entitled(tab, g, "dave", NULL, 0, "chemistry"));
	/* names are exact: no prefix or case games */
	assert_false(tier_entitled(tab, p, "Alice", NULL, 0, NULL));
	assert_false(tier_entitled(tab, p, "alice2", NULL, 0, NULL));
	assert_false(tier_entitled(tab, p, "physics", NULL, 0, NULL));
	assert_false(tier_entitled(tab, p, NULL, NULL, 0, "alice"));
	/* carol has no rules: basic only */
	assert_true(tier_entitled(tab, b, "carol", plain_groups, 2, "bio"));
	assert_false(tier_entitled(tab, p, "carol", plain_groups, 2, "bio"));
	assert_false(tier_entitled(tab, g, "carol", plain_groups, 2, "bio"));
	/* the default is open to anyone, even unknown callers */
	assert_true(tier_entitled(tab, b, NULL, NULL, 0, NULL));
	assert_false(tier_entitled(tab, p, NULL, null_group, 1, NULL));
	/* a tier of another table, or none, is never entitled */
	other = parse_ok(example);
	assert_false(tier_entitled(tab, tier_find(other, "premium"), "alice",
				   NULL, 0, NULL));
	assert_false(tier_entitled(tab, NULL, "alice", NULL, 0, NULL));
	tier_table_free(other);
	tier_table_free(tab);
}

struct bad_case {
	const char *text;
	int rv;
	const char *msg;
};

static const struct bad_case bad_cases[] = {
    /* the brief's example verbatim: "gold" is not a tier there */
    {"default = basic\n[tier basic]\ncpus = 1\n[tier premium]\ncpus = 2\n"
     "[entitle]\naccount.physics = premium, gold\n",
     -EINVAL,
     "t.conf:7: key 'account.physics': unknown tier 'gold' (tiers: basic, "
     "premium)"},
    /* unknown keys, with file:line */
    {"default = basic\n[tier basic]\ncpus = 1\ncpu = 2\n", -EINVAL,
     "t.conf:4: key 'cpu': unknown key in [tier basic]"},
    {"default = basic\nextra = 1\n[tier basic]\ncpus = 1\n", -EINVAL,
     "t.conf:2: key 'extra': unknown key"},
    /* default */
    {"[tier basic]\ncpus = 1\n", -EINVAL,
     "t.conf: missing top-level key 'default'"},
    {"default = gold\n[tier basic]\ncpus = 1\n", -EINVAL,
     "t.conf:1: key 'default': unknown tier 'gold' (tiers: basic)"},
    {"default =\n[tier basic]\ncpus = 1\n", -EINVAL,
     "t.conf:1: key 'default': unknown tier ''"},
    {"default = basic\n", -EINVAL, "t.conf: no [tier NAME] section"},
    /* cpus and other values */
    {"default = basic\n[tier basic]\nnice = 1\n", -EINVAL,
     "t.conf:2: [tier basic]: missing required key 'cpus'"},
    {"default = basic\n[tier basic]\ncpus = 0\n", -ERANGE,
     "t.conf:3: key 'cpus': 0 is outside 1..4096"},
    {"default = basic\n[tier basic]\ncpus = 4097\n", -ERANGE,
     "t.conf:3: key 'cpus': 4097 is outside 1..4096"},
    {"default = basic\n[tier basic]\ncpus = two\n", -EINVAL,
     "t.conf:3: key 'cpus': 'two' is not an integer"},
    {"default = basic\n[tier basic]\ncpus = 1\nnice = 20\n", -ERANGE,
     "t.conf:4: key 'nice': 20 is outside -20..19"},
    {"default = basic\n[tier basic]\ncpus = 1\nrate = -0.5\n", -ERANGE,
     "t.conf:4: key 'rate': -0.5 is outside 0.."},
    {"default = basic\n[tier basic]\ncpus = 1\nrate = nan\n", -EINVAL,
     "t.conf:4: key 'rate': 'nan' is not a number"},
    {"default = basic\n[tier basic]\ncpus = 1\nmem = lots\n", -EINVAL,
     "t.conf:4: key 'mem': 'lots' is not a size"},
    {"default = basic\n[tier basic]\ncpus = 1\ncpu_time = -1\n", -ERANGE,
     "t.conf:4: key 'cpu_time': -1 is outside 0.."},
    /* tier names and sections */
    {"default = basic\n[tier basic]\ncpus = 1\n[tier basic]\ncpus = 2\n",
     -EINVAL, "t.conf:4: section [tier basic] repeats line 2"},
    {"default = Basic\n[tier Basic]\ncpus = 1\n", -EINVAL,
     "t.conf:2: tier name 'Basic' is not 1..31 of [a-z0-9_-]"},
    {"default = b\n[tier b.c]\ncpus = 1\n", -EINVAL,
     "t.conf:2: tier name 'b.c' is not"},
    {"default = b\n[tier aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]\ncpus = 1\n",
     -EINVAL, "t.conf:2: tier name 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' is not"},
    {"default = b\n[tier]\ncpus = 1\n", -EINVAL,
     "t.conf:2: [tier] needs a name"},
    {"default = b\n[tier b]\ncpus = 1\n[limits]\n", -EINVAL,
     "t.conf:4: unknown section [limits]"},
    {"default = b\n[tier b]\ncpus = 1\n[entitle x]\n", -EINVAL,
     "t.conf:4: unknown section [entitle x]"},
    /* entitlements */
    {"default = b\n[tier b]\ncpus = 1\n[entitle]\nuser.alice = platinum\n",
     -EINVAL, "t.conf:5: key 'user.alice': unknown tier 'platinum' (tiers: b)"},
    {"default = b\n[tier b]\ncpus = 1\n[entitle]\nuid.1000 = b\n", -EINVAL,
     "t.conf:5: key 'uid.1000': expected user.NAME, group.NAME or "
     "account.NAME"},
    {"default = b\n[tier b]\ncpus = 1\n[entitle]\nalice = b\n", -EINVAL,
     "t.conf:5: key 'alice': expected user.NAME"},
    {"default = b\n[tier b]\ncpus = 1\n[entitle]\ngroup. = b\n", -EINVAL,
     "t.conf:5: key 'group.': empty group name"},
    {"default = b\n[tier b]\ncpus = 1\n[entitle]\nuser.alice = b,,b\n", -EINVAL,
     "t.conf:5: key 'user.alice': empty tier name in 'b,,b'"},
    {"default = b\n[tier b]\ncpus = 1\n[entitle]\nuser.alice =\n", -EINVAL,
     "t.conf:5: key 'user.alice': empty tier name"},
    /* conf's own syntax errors come through */
    {"default = b\n[tier b\ncpus = 1\n", -EINVAL,
     "t.conf:2: malformed section header"},
};

static void test_errors(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		struct tier_table *tab = (struct tier_table *)&tab;
		char err[256] = "";
		int rv = tier_table_parse_string("t.conf", bad_cases[i].text,
						 &tab, err, sizeof(err));

		if (rv != bad_cases[i].rv || !strstr(err, bad_cases[i].msg))
			print_message(
			    "case %zu: rv %d err '%s', wanted %d '%s'\n", i, rv,
			    err, bad_cases[i].rv, bad_cases[i].msg);
		assert_int_equal(rv, bad_cases[i].rv);
		assert_null(tab);
		assert_non_null(strstr(err, bad_cases[i].msg));
	}
}

static void test_too_many_tiers(void **state)
{
	size_t cap = 70 * 40, used = 0;
	char *text = malloc(cap), err[256];
	struct tier_table *tab;
	int i;

	(void)state;
	assert_non_null(text);
	used += snprintf(text + used, cap - used, "default = t0\n");
	for (i = 0; i < TIER_MAX; i++)
		used += snprintf(text + used, cap - used,
				 "[tier t%d]\ncpus = 1\n", i);
	tab = parse_ok(text);
	assert_int_equal(tab->n_tiers, TIER_MAX);
	tier_table_free(tab);
	snprintf(text + used, cap - used, "[tier t%d]\ncpus = 1\n", TIER_MAX);
	assert_int_equal(
	    tier_table_parse_string("t.conf", text, &tab, err, sizeof(err)),
	    -EINVAL);
	assert_non_null(strstr(err, ":130: more than 64 tiers"));
	free(text);
}

static void test_high_tier_index_entitlement(void **state)
{
	/* the 64th tier uses the top bit of the rule mask */
	size_t cap = 70 * 40, used = 0;
	char *text = malloc(cap);
	struct tier_table *tab;
	int i;

	(void)state;
	assert_non_null(text);
	used += snprintf(text + used, cap - used, "default = t0\n");
	for (i = 0; i < TIER_MAX; i++)
		used += snprintf(text + used, cap - used,
				 "[tier t%d]\ncpus = 1\n", i);
	snprintf(text + used, cap - used, "[entitle]\nuser.zed = t63, t1\n");
	tab = parse_ok(text);
	assert_true(
	    tier_entitled(tab, tier_find(tab, "t63"), "zed", NULL, 0, NULL));
	assert_true(
	    tier_entitled(tab, tier_find(tab, "t1"), "zed", NULL, 0, NULL));
	assert_false(
	    tier_entitled(tab, tier_find(tab, "t62"), "zed", NULL, 0, NULL));
	tier_table_free(tab);
	free(text);
}

static void test_load_file(void **state)
{
	char dir[] = "/tmp/tg-test-tier-XXXXXX", path[128], err[256];
	struct tier_table *tab = NULL;
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/tiers.conf", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(example, f);
	fclose(f);
	assert_int_equal(tier_table_load(path, &tab, err, sizeof(err)), 0);
	assert_string_equal(tier_default(tab)->name, "basic");
	tier_table_free(tab);

	f = fopen(path, "w");
	assert_non_null(f);
	fputs("default = basic\n[tier basic]\ncpus = 1\nspeed = 9\n", f);
	fclose(f);
	assert_int_equal(tier_table_load(path, &tab, err, sizeof(err)),
			 -EINVAL);
	assert_null(tab);
	assert_non_null(strstr(err, "/tiers.conf:4: key 'speed': unknown key"));
	assert_int_equal(unlink(path), 0);
	assert_int_equal(tier_table_load(path, &tab, err, sizeof(err)),
			 -ENOENT);
	assert_non_null(strstr(err, "tiers.conf"));
	assert_int_equal(rmdir(dir), 0);
}

static void test_names_and_validation(void **state)
{
	struct tier_table *tab = parse_ok(example);
	char small[10];

	(void)state;
	assert_int_equal(tier_names(tab, small, sizeof(small)), -ENOSPC);
	assert_string_equal(small, "basic");
	assert_int_equal(tier_names(tab, small, 0), -ENOSPC);
	tier_table_free(tab);

	assert_true(tier_name_valid("basic"));
	assert_true(tier_name_valid("gpu-2_x"));
	assert_true(
	    tier_name_valid("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")); /* 31 */
	assert_false(tier_name_valid("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
	assert_false(tier_name_valid(""));
	assert_false(tier_name_valid(NULL));
	assert_false(tier_name_valid("Premium"));
	assert_false(tier_name_valid("a b"));
	assert_false(tier_name_valid("../x"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_example),
	    cmocka_unit_test(test_defaults_of_optional_keys),
	    cmocka_unit_test(test_entitlement),
	    cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_too_many_tiers),
	    cmocka_unit_test(test_high_tier_index_entitlement),
	    cmocka_unit_test(test_load_file),
	    cmocka_unit_test(test_names_and_validation),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
