/*
 * test_config.c: tiergated.conf.  Every error names file, line and key;
 * key files and the tier table are really loaded (keys made at run time,
 * testkeys.h); a failed load leaves a loaded config untouched.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "fixture.h"
#include "jwt_verify.h"
#include "testkeys.h"
#include "tier.h"

static const char secret[] = "0123456789abcdef0123456789abcdef-user-test";
static const char site_secret[] = "abcdefghijklmnopqrstuvwxyz012345-site-test";
static const char tiers[] = "default = basic\n"
			    "[tier basic]\ncpus = 1\n"
			    "[tier premium]\ncpus = 2\nrate = 3.0\n";

static struct {
	char dir[64];
	char conf[128]; /* dir/t.conf: the name relative paths hang off */
	char *ec_priv, *ec_pub;
} F;

static int group_setup(void **state)
{
	(void)state;
	strcpy(F.dir, "/tmp/tg-test-config-XXXXXX");
	if (!mkdtemp(F.dir))
		return -1;
	snprintf(F.conf, sizeof(F.conf), "%s/t.conf", F.dir);
	tk_keypair("EC", "P-256", 0, false, &F.ec_priv, &F.ec_pub);
	/* keys 0600, as they should be (a warning otherwise) */
	free(tk_write_key(F.dir, "user.key", secret, strlen(secret)));
	free(tk_write_key(F.dir, "short.key", "0123456789", 10));
	free(tk_write_key(F.dir, "empty.key", "", 0));
	free(tk_write_key(F.dir, "site.key", site_secret, strlen(site_secret)));
	free(tk_write_key(F.dir, "ticket.key", F.ec_priv, strlen(F.ec_priv)));
	free(tk_write_key(F.dir, "ticket.pub", F.ec_pub, strlen(F.ec_pub)));
	free(tk_write_file(F.dir, "tiers.conf", tiers, strlen(tiers)));
	free(tk_write_file(F.dir, "badtiers.conf",
			   "default = gold\n"
			   "[tier basic]\ncpus = 1\n",
			   36));
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	free(F.ec_priv);
	free(F.ec_pub);
	return rm_rf(F.dir);
}

/* The [gateway] lines every test needs, relative to F.dir. */
#define GW_BASE                                                                \
	"[gateway]\n"                                                          \
	"user_key = user.key\n"                                                \
	"ticket_key = ticket.key\n"                                            \
	"tiers = tiers.conf\n"                                                 \
	"state_dir = state\n"
#define SITE_BASE                                                              \
	"[site alpha]\n"                                                       \
	"url = http://127.0.0.1:6820\n"                                        \
	"jwt_key = site.key\n"

static struct gw_config *load_ok(const char *text)
{
	struct gw_config *cfg = NULL;
	char err[1024] = "";
	int rv = gw_config_load_string(F.conf, text, &cfg, err, sizeof(err));

	if (rv)
		print_message("load failed: %s\n", err);
	assert_int_equal(rv, 0);
	assert_non_null(cfg);
	return cfg;
}

/* The end of load_bad's needles (a typed NULL for the variadic list). */
#define END ((const char *)NULL)

/* Refused with an error holding each of the END-terminated needles. */
static void load_bad(const char *text, int want_rv, ...)
{
	struct gw_config *cfg = (struct gw_config *)&cfg;
	char err[1024] = "";
	const char *needle;
	va_list ap;
	int rv = gw_config_load_string(F.conf, text, &cfg, err, sizeof(err));

	va_start(ap, want_rv);
	while ((needle = va_arg(ap, const char *))) {
		if (!strstr(err, needle))
			print_message("error '%s' lacks '%s'\n", err, needle);
		assert_non_null(strstr(err, needle));
	}
	va_end(ap);
	if (rv != want_rv)
		print_message("rv %d (%s), wanted %d\n", rv, err, want_rv);
	assert_int_equal(rv, want_rv);
	assert_null(cfg);
}

static void test_full(void **state)
{
	struct gw_config *cfg;
	const struct gw_site_config *a, *b;
	char path[256];

	(void)state;
	cfg = load_ok(GW_BASE "listen = 0.0.0.0:9000\n"
			      "user_issuer = my-issuer\n"
			      "munge_socket = /run/munge/munge.socket.2\n"
			      "admins = root, alice\n"
			      "workers = 8\n"
			      "max_connections = 100\n"
			      "max_connections_per_ip = 10\n"
			      "connection_timeout = 5\n"
			      "max_body = 2M\n"
			      "max_header = 8K\n"
			      "requests_per_turn = 16\n"
			      "drain_timeout = 3\n"
			      "stall_threshold = 7\n"
			      "max_token_lifetime = 3600\n"
			      "ticket_ttl = 7200\n"
			      "[site alpha]\n"
			      "url = http://127.0.0.1:6820   # comment\n"
			      "auth = jwt-key\n"
			      "jwt_key = site.key\n"
			      "munge_socket = /run/munge/alpha.socket\n"
			      "user_map = alice=asmith, bob = bjones\n"
			      "partition = debug\n"
			      "poll_interval = 3\n"
			      "request_timeout = 20\n"
			      "max_connections = 2\n"
			      "jwt_lifetime = 600\n"
			      "[site beta]\n"
			      "kind = slurmrestd-v0039\n"
			      "url = unix:/run/slurmrestd/beta/%u.sock\n"
			      "auth = munge\n"
			      "poll_user = nobody\n"
			      "munge_socket = /run/munge/beta.socket\n");
	assert_string_equal(cfg->listen_host, "0.0.0.0");
	assert_int_equal(cfg->listen_port, 9000);
	snprintf(path, sizeof(path), "%s/state", F.dir);
	assert_string_equal(cfg->state_dir, path);
	snprintf(path, sizeof(path), "%s/user.key", F.dir);
	assert_string_equal(cfg->user_key_path, path);
	assert_string_equal(jwt_key_alg(cfg->user_key), "HS256");
	assert_string_equal(jwt_key_alg(cfg->ticket_key), "ES256");
	assert_true(jwt_key_can_sign(cfg->ticket_key));
	assert_string_equal(cfg->user_issuer, "my-issuer");
	assert_string_equal(cfg->munge_socket, "/run/munge/munge.socket.2");
	assert_int_equal(cfg->n_admins, 2);
	assert_true(gw_config_is_admin(cfg, "alice"));
	assert_true(gw_config_is_admin(cfg, "root"));
	assert_false(gw_config_is_admin(cfg, "bob"));
	assert_false(gw_config_is_admin(cfg, NULL));
	assert_int_equal(cfg->workers, 8);
	assert_int_equal(cfg->max_connections, 100);
	assert_int_equal(cfg->max_connections_per_ip, 10);
	assert_int_equal(cfg->connection_timeout_s, 5);
	assert_int_equal(cfg->max_body, 2 << 20);
	assert_int_equal(cfg->max_header, 8 << 10);
	assert_int_equal(cfg->requests_per_turn, 16);
	assert_int_equal(cfg->drain_timeout_s, 3);
	assert_int_equal(cfg->stall_threshold_s, 7);
	assert_int_equal(cfg->max_token_lifetime_s, 3600);
	assert_int_equal(cfg->ticket_ttl_s, 7200);
	assert_int_equal(cfg->tiers->n_tiers, 2);
	assert_non_null(tier_find(cfg->tiers, "premium"));

	assert_int_equal(cfg->n_sites, 2);
	a = gw_config_site(cfg, "alpha");
	b = gw_config_site(cfg, "beta");
	assert_ptr_equal(a, &cfg->sites[0]);
	assert_ptr_equal(b, &cfg->sites[1]);
	assert_null(gw_config_site(cfg, "gamma"));
	assert_null(gw_config_site(cfg, NULL));
	assert_string_equal(a->url, "http://127.0.0.1:6820");
	assert_int_equal(a->url_kind, GW_URL_HTTP);
	assert_int_equal(a->auth, GW_SITE_AUTH_JWT_KEY);
	assert_string_equal(gw_site_auth_name(a->auth), "jwt-key");
	assert_true(jwt_key_can_sign(a->jwt_key));
	assert_string_equal(a->munge_socket, "/run/munge/alpha.socket");
	assert_false(a->user_map_same);
	assert_int_equal(a->n_user_map, 2);
	assert_string_equal(a->partition, "debug");
	assert_int_equal(a->poll_interval_s, 3);
	assert_int_equal(a->request_timeout_s, 20);
	assert_int_equal(a->max_connections, 2);
	assert_int_equal(a->jwt_lifetime_s, 600);
	assert_string_equal(a->kind, "slurmrestd");
	assert_string_equal(b->kind, "slurmrestd-v0039");
	assert_int_equal(a->line, 21);
	assert_int_equal(b->url_kind, GW_URL_UNIX);
	assert_string_equal(b->unix_path, "/run/slurmrestd/beta/%u.sock");
	assert_int_equal(b->auth, GW_SITE_AUTH_MUNGE);
	assert_string_equal(b->poll_user, "nobody");
	assert_null(a->poll_user);
	assert_null(b->jwt_key);
	assert_true(b->user_map_same);
	assert_null(b->partition);
	gw_config_free(cfg);
}

static void test_defaults(void **state)
{
	struct gw_config *cfg;
	const struct gw_site_config *s;

	(void)state;
	cfg = load_ok(GW_BASE SITE_BASE);
	assert_string_equal(cfg->listen, GW_CONF_DEFAULT_LISTEN);
	assert_string_equal(cfg->listen_host, "127.0.0.1");
	assert_int_equal(cfg->listen_port, 8480);
	assert_string_equal(cfg->user_issuer, "tiergate");
	assert_null(cfg->munge_socket);
	assert_int_equal(cfg->n_admins, 0);
	assert_int_equal(cfg->workers, 4);
	assert_int_equal(cfg->max_connections, 1024);
	assert_int_equal(cfg->max_connections_per_ip, 256);
	assert_int_equal(cfg->connection_timeout_s, 30);
	assert_int_equal(cfg->max_body, 1 << 20);
	assert_int_equal(cfg->max_header, 8 << 10);
	assert_int_equal(cfg->requests_per_turn, 32);
	assert_int_equal(cfg->drain_timeout_s, 10);
	assert_int_equal(cfg->stall_threshold_s, 30);
	assert_int_equal(cfg->max_token_lifetime_s, 7 * 86400);
	s = gw_config_site(cfg, "alpha");
	assert_int_equal(s->auth, GW_SITE_AUTH_JWT_KEY);
	assert_true(s->user_map_same);
	assert_null(s->munge_socket);
	assert_int_equal(s->poll_interval_s, 2);
	assert_int_equal(s->request_timeout_s, 10);
	assert_int_equal(s->max_connections, 4);
	assert_int_equal(s->jwt_lifetime_s, 300);
	assert_string_equal(s->kind, "slurmrestd");
	gw_config_free(cfg);

	/* the default key paths are absolute and under /etc/tiergate */
	load_bad("[gateway]\ntiers = tiers.conf\n" SITE_BASE, -ENOENT,
		 "key 'user_key'", "/etc/tiergate/user.key", END);
}

static void test_unknown_keys_and_sections(void **state)
{
	(void)state;
	load_bad(GW_BASE "wrokers = 4\n" SITE_BASE, -EINVAL,
		 "t.conf:6:", "key 'wrokers'", "unknown key in [gateway]", END);
	load_bad(GW_BASE SITE_BASE "parition = debug\n", -EINVAL,
		 "t.conf:9:", "key 'parition'", "[site alpha]", END);
	load_bad("listen = 1.2.3.4:80\n" GW_BASE SITE_BASE, -EINVAL,
		 "t.conf:1:", "key 'listen'", "unknown key", END);
	load_bad(GW_BASE SITE_BASE "[sites beta]\nurl = http://x\n", -EINVAL,
		 "t.conf:9:", "unknown section [sites beta]", END);
	load_bad(GW_BASE SITE_BASE "[site]\n", -EINVAL,
		 "t.conf:9:", "[site] needs a name", END);
	load_bad("[gateway main]\n" SITE_BASE, -EINVAL,
		 "t.conf:1:", "takes no name", END);
	load_bad(GW_BASE, -EINVAL, "no [site NAME] section", END);
	/* syntax errors come from shared/conf with file and line */
	load_bad(GW_BASE SITE_BASE "url = again\n", -EINVAL,
		 "t.conf:9:", "key 'url' repeats line 7", END);
}

static void test_gateway_values(void **state)
{
	struct gw_config *cfg;

	(void)state;
	load_bad(GW_BASE "listen = 8480\n" SITE_BASE, -EINVAL,
		 "t.conf:6:", "key 'listen'", "HOST:PORT", END);
	load_bad(GW_BASE "listen = host:0\n" SITE_BASE, -EINVAL, "key 'listen'",
		 END);
	load_bad(GW_BASE "listen = host:65536\n" SITE_BASE, -EINVAL,
		 "key 'listen'", END);
	load_bad(GW_BASE "listen = ::1:80\n" SITE_BASE, -EINVAL, "key 'listen'",
		 END);
	cfg = load_ok(GW_BASE "listen = [::1]:8081\n" SITE_BASE);
	assert_string_equal(cfg->listen_host, "::1");
	assert_int_equal(cfg->listen_port, 8081);
	gw_config_free(cfg);
	cfg = load_ok(GW_BASE "listen = *:80\n" SITE_BASE);
	assert_string_equal(cfg->listen_host, "0.0.0.0");
	gw_config_free(cfg);

	load_bad(GW_BASE "workers = 0\n" SITE_BASE, -ERANGE,
		 "t.conf:6:", "key 'workers'", "outside 1..64", END);
	load_bad(GW_BASE "workers = four\n" SITE_BASE, -EINVAL, "key 'workers'",
		 "not an integer", END);
	load_bad(GW_BASE "max_body = lots\n" SITE_BASE, -EINVAL,
		 "key 'max_body'", "not a size", END);
	load_bad(GW_BASE "max_body = 2G\n" SITE_BASE, -ERANGE, "key 'max_body'",
		 "outside", END);
	load_bad(
	    GW_BASE
	    "max_connections = 10\nmax_connections_per_ip = 11\n" SITE_BASE,
	    -EINVAL, "t.conf:7:", "key 'max_connections_per_ip'",
	    "more than max_connections", END);
	load_bad(GW_BASE "admins = root, -x\n" SITE_BASE, -EINVAL,
		 "key 'admins'", "'-x' is not a valid user name", END);
	load_bad(GW_BASE "user_issuer = \"\"\n" SITE_BASE, -EINVAL,
		 "key 'user_issuer'", "empty", END);
	load_bad(GW_BASE "munge_socket = run/munge.sock\n" SITE_BASE, -EINVAL,
		 "key 'munge_socket'", "absolute", END);
	load_bad(GW_BASE "max_token_lifetime = 10\n" SITE_BASE, -ERANGE,
		 "key 'max_token_lifetime'", END);

	/* user_key may be switched off only when MUNGE authenticates users */
	load_bad("[gateway]\nuser_key =\nticket_key = ticket.key\n"
		 "tiers = tiers.conf\n" SITE_BASE,
		 -EINVAL, "t.conf:2:", "key 'user_key'",
		 "no way to authenticate users", END);
	cfg = load_ok(
	    "[gateway]\nuser_key =\nticket_key = ticket.key\n"
	    "tiers = tiers.conf\nmunge_socket = /run/m.sock\n" SITE_BASE);
	assert_null(cfg->user_key);
	assert_null(cfg->user_key_path);
	gw_config_free(cfg);
}

static void test_keys(void **state)
{
	struct gw_config *cfg;

	(void)state;
	/* a short or empty HS256 secret refuses to start */
	load_bad("[gateway]\nuser_key = short.key\nticket_key = ticket.key\n"
		 "tiers = tiers.conf\n" SITE_BASE,
		 -EINVAL, "t.conf:2:", "key 'user_key'", "short.key", "32",
		 END);
	load_bad("[gateway]\nuser_key = empty.key\nticket_key = ticket.key\n"
		 "tiers = tiers.conf\n" SITE_BASE,
		 -EINVAL, "t.conf:2:", "key 'user_key'", "empty", END);
	load_bad("[gateway]\nuser_key = missing.key\nticket_key = ticket.key\n"
		 "tiers = tiers.conf\n" SITE_BASE,
		 -ENOENT, "t.conf:2:", "key 'user_key'", "missing.key",
		 "cannot open", END);
	/* a public key verifies user tokens (mint-token then cannot sign) */
	cfg =
	    load_ok("[gateway]\nuser_key = ticket.pub\n"
		    "ticket_key = ticket.key\ntiers = tiers.conf\n" SITE_BASE);
	assert_string_equal(jwt_key_alg(cfg->user_key), "ES256");
	assert_false(jwt_key_can_sign(cfg->user_key));
	gw_config_free(cfg);
	/* ... but tickets must be signed: the ticket key must be private */
	load_bad("[gateway]\nuser_key = user.key\nticket_key = ticket.pub\n"
		 "tiers = tiers.conf\n" SITE_BASE,
		 -EINVAL, "t.conf:3:", "key 'ticket_key'", "public key only",
		 END);
	/* the site's Slurm key signs tokens for slurmrestd */
	load_bad(GW_BASE
		 "[site alpha]\nurl = http://h:1\njwt_key = ticket.pub\n",
		 -EINVAL, "t.conf:8:", "key 'jwt_key'", "public key only", END);
	load_bad(GW_BASE
		 "[site alpha]\nurl = http://h:1\njwt_key = short.key\n",
		 -EINVAL, "t.conf:8:", "key 'jwt_key'", END);
	/* the tier table's own error, under the 'tiers' key */
	load_bad("[gateway]\nuser_key = user.key\nticket_key = ticket.key\n"
		 "tiers = badtiers.conf\n" SITE_BASE,
		 -EINVAL, "t.conf:4:", "key 'tiers'",
		 "badtiers.conf:1:", "default", END);
	load_bad("[gateway]\nuser_key = user.key\nticket_key = ticket.key\n"
		 "tiers = nope.conf\n" SITE_BASE,
		 -ENOENT, "t.conf:4:", "key 'tiers'", "nope.conf", END);
}

static void test_sites(void **state)
{
	struct gw_config *cfg;

	(void)state;
	load_bad(GW_BASE "[site alpha]\njwt_key = site.key\n", -EINVAL,
		 "t.conf:6:", "key 'url'", "missing in [site alpha]", END);
	load_bad(GW_BASE "[site alpha]\nurl = ftp://h\njwt_key = site.key\n",
		 -EINVAL, "t.conf:7:", "key 'url'", "ftp://h", END);
	load_bad(GW_BASE "[site alpha]\nurl = http://\njwt_key = site.key\n",
		 -EINVAL, "key 'url'", END);
	load_bad(GW_BASE "[site alpha]\nurl = unix:rel\njwt_key = site.key\n",
		 -EINVAL, "key 'url'", END);
	load_bad(GW_BASE
		 "[site alpha]\nurl = http://u:p@h\njwt_key = site.key\n",
		 -EINVAL, "key 'url'", END);
	cfg = load_ok(GW_BASE "[site alpha]\nurl = https://h.example/rest\n"
			      "jwt_key = site.key\n");
	assert_int_equal(cfg->sites[0].url_kind, GW_URL_HTTPS);
	gw_config_free(cfg);

	load_bad(GW_BASE "[site alpha]\nurl = http://h:1\nauth = jwt\n",
		 -EINVAL, "t.conf:8:", "key 'auth'",
		 "not jwt-key, jwt-user or munge", END);
	load_bad(GW_BASE "[site alpha]\nurl = http://h:1\nauth = jwt-key\n",
		 -EINVAL, "t.conf:6:", "key 'jwt_key'", "missing", END);
	load_bad(GW_BASE "[site alpha]\nurl = http://h:1\nauth = jwt-user\n"
			 "jwt_key = site.key\n",
		 -EINVAL, "t.conf:9:", "key 'jwt_key'", "only used with", END);
	load_bad(GW_BASE "[site alpha]\nurl = http://h:1\nauth = munge\n",
		 -EINVAL, "t.conf:6:", "key 'munge_socket'", "missing", END);
	/* munge: one rest_auth/local slurmrestd per user, %u in the path */
	load_bad(GW_BASE "[site alpha]\nurl = unix:/run/rs.sock\n"
			 "auth = munge\nmunge_socket = /run/m.sock\n",
		 -EINVAL, "key 'url'", "%u", END);
	load_bad(GW_BASE "[site alpha]\nurl = unix:/run/%u.sock\n"
			 "jwt_key = site.key\n",
		 -EINVAL, "key 'url'", "auth = munge only", END);
	load_bad(GW_BASE "[site alpha]\nurl = http://h:1\n"
			 "jwt_key = site.key\npoll_user = bob\n",
		 -EINVAL, "key 'poll_user'", "only used with", END);
	cfg = load_ok(GW_BASE "[site alpha]\nurl = unix:/run/rs/%u.sock\n"
			      "auth = munge\nmunge_socket = /run/m.sock\n");
	assert_string_equal(cfg->sites[0].poll_user, "slurm");
	gw_config_free(cfg);
	cfg = load_ok(GW_BASE "[site alpha]\nurl = http://h:1\n"
			      "auth = jwt-user\n");
	assert_int_equal(cfg->sites[0].auth, GW_SITE_AUTH_JWT_USER);
	assert_int_equal(cfg->sites[0].queue_estimate_s,
			 GW_CONF_DEFAULT_QUEUE_ESTIMATE);
	assert_int_equal(cfg->sites[0].default_time_limit_min,
			 GW_CONF_DEFAULT_TIME_LIMIT);
	gw_config_free(cfg);
	cfg = load_ok(GW_BASE "[site alpha]\nurl = http://h:1\n"
			      "auth = jwt-user\nqueue_estimate = 0\n"
			      "default_time_limit = 30\n");
	assert_int_equal(cfg->sites[0].queue_estimate_s, 0);
	assert_int_equal(cfg->sites[0].default_time_limit_min, 30);
	gw_config_free(cfg);
	load_bad(GW_BASE "[site alpha]\nurl = http://h:1\n"
			 "jwt_key = site.key\nqueue_estimate = 5\n",
		 -EINVAL, "key 'queue_estimate'", "jwt-user", END);

	load_bad(GW_BASE
		 "[site .alpha]\nurl = http://h:1\njwt_key = site.key\n",
		 -EINVAL, "t.conf:6:", "site name", END);
	load_bad(GW_BASE "[site a2345678901234567890123456789012]\n"
			 "url = http://h:1\njwt_key = site.key\n",
		 -EINVAL, "t.conf:6:", "site name", END);
	load_bad(GW_BASE SITE_BASE "poll_interval = 0\n", -ERANGE,
		 "t.conf:9:", "key 'poll_interval'", END);
	load_bad(GW_BASE SITE_BASE "request_timeout = 601\n", -ERANGE,
		 "key 'request_timeout'", END);
	load_bad(GW_BASE SITE_BASE "max_connections = 0\n", -ERANGE,
		 "t.conf:9:", "key 'max_connections'", END);
	load_bad(GW_BASE SITE_BASE "partition = a,b\n", -EINVAL,
		 "key 'partition'", END);
	load_bad(GW_BASE SITE_BASE "kind = Slurm/REST\n", -EINVAL,
		 "t.conf:9:", "key 'kind'", END);
	load_bad(GW_BASE SITE_BASE "jwt_lifetime = 5\n", -ERANGE,
		 "key 'jwt_lifetime'", END);
	load_bad(GW_BASE "[site alpha]\nurl = http://h:1\nauth = jwt-user\n"
			 "jwt_lifetime = 60\n",
		 -EINVAL, "t.conf:9:", "key 'jwt_lifetime'", "only used with",
		 END);
	load_bad(GW_BASE SITE_BASE SITE_BASE, -EINVAL,
		 "t.conf:9:", "repeats line 6", END);
}

static void test_user_map(void **state)
{
	struct gw_config *cfg;
	const struct gw_site_config *a, *b;
	char out[64];

	(void)state;
	load_bad(GW_BASE SITE_BASE "user_map = alice\n", -EINVAL,
		 "t.conf:9:", "key 'user_map'", "'alice' is not USER=SITE_USER",
		 END);
	load_bad(GW_BASE SITE_BASE "user_map = alice=\n", -EINVAL,
		 "key 'user_map'", END);
	load_bad(GW_BASE SITE_BASE "user_map = alice=a, alice=b\n", -EINVAL,
		 "key 'user_map'", "mapped twice", END);
	load_bad(GW_BASE SITE_BASE "user_map = al ice=a\n", -EINVAL,
		 "key 'user_map'", END);
	load_bad(GW_BASE SITE_BASE "user_map = \",\"\n", -EINVAL,
		 "key 'user_map'", END);

	cfg = load_ok(GW_BASE SITE_BASE "user_map = alice=asmith,bob=bjones\n"
					"[site beta]\nurl = http://h:2\n"
					"auth = jwt-user\nuser_map = same\n");
	a = gw_config_site(cfg, "alpha");
	b = gw_config_site(cfg, "beta");
	assert_int_equal(gw_config_map_user(a, "alice", out, sizeof(out)), 0);
	assert_string_equal(out, "asmith");
	assert_int_equal(gw_config_map_user(a, "bob", out, sizeof(out)), 0);
	assert_string_equal(out, "bjones");
	/* not mapped: the gateway refuses (slurmrestd would not) */
	assert_int_equal(gw_config_map_user(a, "carol", out, sizeof(out)),
			 -ENOENT);
	assert_int_equal(gw_config_map_user(a, "asmith", out, sizeof(out)),
			 -ENOENT);
	assert_int_equal(gw_config_map_user(a, "alice", out, 6), -ENOSPC);
	assert_int_equal(gw_config_map_user(a, "alice", out, 7), 0);
	assert_int_equal(gw_config_map_user(a, "bad name", out, sizeof(out)),
			 -EINVAL);
	assert_int_equal(gw_config_map_user(a, NULL, out, sizeof(out)),
			 -EINVAL);
	assert_int_equal(gw_config_map_user(b, "carol", out, sizeof(out)), 0);
	assert_string_equal(out, "carol");
	gw_config_free(cfg);
}

static void test_reload_keeps_old(void **state)
{
	struct gw_config *cfg, *next = (struct gw_config *)&next;
	char err[1024] = "", buf[1024];
	int rv;

	(void)state;
	cfg = load_ok(GW_BASE SITE_BASE);
	/* a broken new file: the error, no new config, the old one intact */
	rv = gw_config_load_string(F.conf, GW_BASE SITE_BASE "bogus = 1\n",
				   &next, err, sizeof(err));
	assert_int_equal(rv, -EINVAL);
	assert_null(next);
	assert_non_null(strstr(err, "key 'bogus'"));
	assert_string_equal(cfg->sites[0].name, "alpha");
	assert_true(jwt_key_can_sign(cfg->sites[0].jwt_key));

	/* the swap main.c does on success; holders keep the old alive */
	gw_config_ref(cfg);
	next = load_ok(GW_BASE SITE_BASE "[site beta]\nurl = http://b:1\n"
					 "auth = jwt-user\n");
	gw_config_unref(cfg);				  /* main's reference */
	assert_string_equal(cfg->sites[0].name, "alpha"); /* still held */
	gw_config_debug_str(cfg, buf, sizeof(buf));
	assert_non_null(strstr(buf, "refs=1"));
	gw_config_unref(cfg); /* the holder's */
	assert_int_equal(next->n_sites, 2);
	gw_config_free(next);
}

static void test_debug_str(void **state)
{
	struct gw_config *cfg;
	char buf[1024];

	(void)state;
	cfg = load_ok(GW_BASE
		      "munge_socket = /run/m.sock\nadmins = root\n" SITE_BASE
		      "user_map = alice=asmith\n"
		      "[site beta]\nurl = unix:/run/b.sock\nauth = jwt-user\n");
	gw_config_debug_str(cfg, buf, sizeof(buf));
	assert_non_null(strstr(buf, "sites=alpha,beta"));
	assert_non_null(strstr(buf, "tiers=basic, premium"));
	assert_non_null(strstr(buf, "user_key=HS256"));
	assert_non_null(strstr(buf, "ticket_key=ES256"));
	assert_non_null(strstr(buf, "munge=on"));
	assert_null(strstr(buf, secret));
	assert_null(strstr(buf, "0123456789abcdef"));
	gw_site_debug_str(&cfg->sites[0], buf, sizeof(buf));
	assert_non_null(strstr(buf, "site alpha"));
	assert_non_null(strstr(buf, "auth=jwt-key"));
	assert_non_null(strstr(buf, "user_map=1-users"));
	assert_null(strstr(buf, site_secret));
	gw_site_debug_str(&cfg->sites[1], buf, sizeof(buf));
	assert_non_null(strstr(buf, "url=unix:/run/b.sock"));
	/* truncation stays terminated */
	gw_config_debug_str(cfg, buf, 10);
	assert_int_equal(strlen(buf), 9);
	gw_config_free(cfg);
	assert_string_equal(gw_site_auth_name((enum gw_site_auth)99), "?");
}

static void test_files_and_check_main(void **state)
{
	struct gw_config *cfg = NULL;
	char err[1024] = "", *path;
	int rv;

	(void)state;
	path = tk_write_file(F.dir, "good.conf", GW_BASE SITE_BASE,
			     strlen(GW_BASE SITE_BASE));
	rv = gw_config_load(path, &cfg, err, sizeof(err));
	if (rv)
		print_message("%s\n", err);
	assert_int_equal(rv, 0);
	assert_string_equal(cfg->path, path);
	gw_config_free(cfg);
	assert_int_equal(gw_config_check_main(path), 0);
	free(path);

	path = tk_write_file(F.dir, "bad.conf", GW_BASE "x = 1\n" SITE_BASE,
			     strlen(GW_BASE "x = 1\n" SITE_BASE));
	assert_int_equal(gw_config_check_main(path), 1);
	rv = gw_config_load(path, &cfg, err, sizeof(err));
	assert_int_equal(rv, -EINVAL);
	assert_non_null(strstr(err, "bad.conf:6: key 'x'"));
	free(path);

	rv = gw_config_load("/nonexistent/t.conf", &cfg, err, sizeof(err));
	assert_int_equal(rv, -ENOENT);
	assert_null(cfg);
	assert_non_null(strstr(err, "/nonexistent/t.conf"));
	rv = gw_config_load("", &cfg, err, sizeof(err));
	assert_int_equal(rv, -EINVAL);
	assert_int_equal(gw_config_check_main("/nonexistent/t.conf"), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_full),
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_unknown_keys_and_sections),
	    cmocka_unit_test(test_gateway_values),
	    cmocka_unit_test(test_keys),
	    cmocka_unit_test(test_sites),
	    cmocka_unit_test(test_user_map),
	    cmocka_unit_test(test_reload_keeps_old),
	    cmocka_unit_test(test_debug_str),
	    cmocka_unit_test(test_files_and_check_main),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
