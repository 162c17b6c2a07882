/*
 * test_auth.c: inbound authentication with real keys (made at run time,
 * testkeys.h) and REAL munged daemons started in the fixture: two realms
 * (A: the gateway's and site alpha's, B: site beta's), plus throwaway ones
 * that are stopped or frozen to check that a dead or hung munged gives a
 * clear error, never a hang.
 *
 * munge_decode is wrapped (test_auth.wrap): every call records its thread,
 * and the tests assert it never ran on the loop thread.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <munge.h>

#include "auth.h"
#include "config.h"
#include "fixture.h"
#include "jwt_verify.h"
#include "log.h"
#include "loop.h"
#include "task.h"
#include "testkeys.h"
#include "ticket.h"
#include "worker.h"

#define NOW ((time_t)1700000000)
#define HS_HDR "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
#define NOBODY_UID 65534

static const char secret[] = "0123456789abcdef0123456789abcdef-auth-test";
static const char other_secret[] = "ZYXWVUTSRQPONMLKJIHGFEDCBA987654-other";

/* ------------------------------------------------ munge_decode wrap */

static pthread_t loop_thread;
static atomic_int decode_calls, decode_on_loop;

munge_err_t __real_munge_decode(const char *cred, munge_ctx_t ctx, void **buf,
				int *len, uid_t *uid, gid_t *gid);
munge_err_t __wrap_munge_decode(const char *cred, munge_ctx_t ctx, void **buf,
				int *len, uid_t *uid, gid_t *gid);
munge_err_t __wrap_munge_decode(const char *cred, munge_ctx_t ctx, void **buf,
				int *len, uid_t *uid, gid_t *gid)
{
	atomic_fetch_add(&decode_calls, 1);
	if (pthread_equal(pthread_self(), loop_thread))
		atomic_fetch_add(&decode_on_loop, 1);
	return __real_munge_decode(cred, ctx, buf, len, uid, gid);
}

/* ------------------------------------------------------------ fixture */

static struct {
	char dir[64];
	char conf[128];
	char *ec_priv, *ec_pub, *rsa_priv, *rsa_pub;
	char mdir_a[128], mdir_b[128];
	bool have_munge;
	struct gw_config *cfg;
} F;

struct fx {
	struct loop *loop;
	struct worker_pool *pool;
	struct auth *auth;
};

static void mpath(char *out, size_t len, const char *mdir, const char *name)
{
	snprintf(out, len, "%s/%s", mdir, name);
}

/* A private munged with a fresh key in mdir (0755, so nobody may talk). */
static int munged_start(const char *mdir)
{
	char cmd[1024], sock[160];
	struct stat st;
	int i;

	if (mkdir(mdir, 0755) && errno != EEXIST)
		return -1;
	chmod(mdir, 0755);
	snprintf(cmd, sizeof(cmd),
		 "[ -f '%1$s/key' ] || mungekey -c -k '%1$s/key' && "
		 "munged --force --socket='%1$s/sock' --key-file='%1$s/key' "
		 "--pid-file='%1$s/pid' --log-file='%1$s/log' "
		 "--seed-file='%1$s/seed'",
		 mdir);
	if (system(cmd) != 0)
		return -1;
	mpath(sock, sizeof(sock), mdir, "sock");
	for (i = 0; i < 500; i++) {
		if (stat(sock, &st) == 0 && S_ISSOCK(st.st_mode))
			return 0;
		usleep(10000);
	}
	return -1;
}

static pid_t munged_pid(const char *mdir)
{
	char p[160];
	FILE *f;
	long pid = 0;

	mpath(p, sizeof(p), mdir, "pid");
	f = fopen(p, "r");
	if (!f)
		return 0;
	if (fscanf(f, "%ld", &pid) != 1)
		pid = 0;
	fclose(f);
	return (pid_t)pid;
}

/* Gone (or a zombie nobody reaps): /proc/PID/stat state 'Z' or absent. */
static bool proc_gone(pid_t pid)
{
	char p[64], buf[256], *rp;
	FILE *f;
	bool gone = true;

	snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
	f = fopen(p, "r");
	if (!f)
		return true;
	if (fgets(buf, sizeof(buf), f)) {
		rp = strrchr(buf, ')');
		gone = rp && rp[1] == ' ' && rp[2] == 'Z';
	}
	fclose(f);
	return gone;
}

static void munged_stop(const char *mdir)
{
	pid_t pid = munged_pid(mdir);
	int i;

	if (pid <= 0)
		return;
	kill(pid, SIGCONT);
	kill(pid, SIGTERM);
	for (i = 0; i < 500 && !proc_gone(pid); i++)
		usleep(10000);
	if (!proc_gone(pid))
		kill(pid, SIGKILL);
	for (i = 0; i < 500 && !proc_gone(pid); i++)
		usleep(10000);
}

static char *conf_text(const char *gateway_munge, const char *extra)
{
	char *t = NULL;

	if (asprintf(&t,
		     "[gateway]\n"
		     "user_key = user.key\n"
		     "ticket_key = ticket.key\n"
		     "tiers = tiers.conf\n"
		     "state_dir = state\n"
		     "%s%s%s"
		     "admins = alice\n"
		     "max_token_lifetime = 86400\n"
		     "%s"
		     "[site alpha]\n"
		     "url = http://127.0.0.1:6820\n"
		     "jwt_key = user.key\n"
		     "munge_socket = %s/sock\n"
		     "[site beta]\n"
		     "url = http://127.0.0.1:6821\n"
		     "auth = jwt-user\n"
		     "munge_socket = %s/sock\n"
		     "[site gamma]\n"
		     "url = http://127.0.0.1:6822\n"
		     "auth = jwt-user\n",
		     gateway_munge ? "munge_socket = " : "",
		     gateway_munge ? gateway_munge : "",
		     gateway_munge ? "\n" : "", extra ? extra : "", F.mdir_a,
		     F.mdir_b) < 0)
		abort();
	return t;
}

/* text with the first `from` replaced by `to`; frees text. */
static char *replace_once(char *text, const char *from, const char *to)
{
	const char *p = strstr(text, from);
	char *out = NULL;

	assert_non_null(p);
	if (asprintf(&out, "%.*s%s%s", (int)(p - text), text, to,
		     p + strlen(from)) < 0)
		abort();
	free(text);
	return out;
}

static struct gw_config *load_cfg(const char *text)
{
	struct gw_config *cfg = NULL;
	char err[1024];
	int rv = gw_config_load_string(F.conf, text, &cfg, err, sizeof(err));

	if (rv)
		print_message("config: %s\n", err);
	assert_int_equal(rv, 0);
	return cfg;
}

static int group_setup(void **state)
{
	static const char tiers[] = "default = basic\n[tier basic]\ncpus = 1\n"
				    "[tier premium]\ncpus = 2\n";
	char sock[160], *text;

	(void)state;
	strcpy(F.dir, "/tmp/tg-test-auth-XXXXXX");
	if (!mkdtemp(F.dir))
		return -1;
	chmod(F.dir, 0755);
	snprintf(F.conf, sizeof(F.conf), "%s/t.conf", F.dir);
	tk_keypair("EC", "P-256", 0, false, &F.ec_priv, &F.ec_pub);
	tk_keypair("RSA", NULL, 2048, false, &F.rsa_priv, &F.rsa_pub);
	free(tk_write_key(F.dir, "user.key", secret, strlen(secret)));
	free(tk_write_key(F.dir, "ticket.key", F.ec_priv, strlen(F.ec_priv)));
	free(tk_write_key(F.dir, "rsa.pub", F.rsa_pub, strlen(F.rsa_pub)));
	free(tk_write_key(F.dir, "rsa.key", F.rsa_priv, strlen(F.rsa_priv)));
	free(tk_write_file(F.dir, "tiers.conf", tiers, strlen(tiers)));
	snprintf(F.mdir_a, sizeof(F.mdir_a), "%s/munge-a", F.dir);
	snprintf(F.mdir_b, sizeof(F.mdir_b), "%s/munge-b", F.dir);
	F.have_munge = access("/usr/sbin/munged", X_OK) == 0 &&
		       munged_start(F.mdir_a) == 0 &&
		       munged_start(F.mdir_b) == 0;
	if (!F.have_munge)
		print_message("munged not available: MUNGE tests skipped\n");
	mpath(sock, sizeof(sock), F.mdir_a, "sock");
	text = conf_text(sock, NULL);
	{
		char *p = tk_write_file(F.dir, "t.conf", text, strlen(text));

		free(p);
	}
	F.cfg = load_cfg(text);
	free(text);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	munged_stop(F.mdir_a);
	munged_stop(F.mdir_b);
	gw_config_free(F.cfg);
	free(F.ec_priv);
	free(F.ec_pub);
	free(F.rsa_priv);
	free(F.rsa_pub);
	/* the decode calls of the whole run: never one on the loop thread */
	print_message("munge_decode calls: %d, on the loop thread: %d\n",
		      atomic_load(&decode_calls), atomic_load(&decode_on_loop));
	if (atomic_load(&decode_on_loop))
		return -1;
	return rm_rf(F.dir);
}

static struct fx *fx_new(struct gw_config *cfg, unsigned timeout_ms,
			 unsigned cache)
{
	struct fx *x = calloc(1, sizeof(*x));
	struct auth_opts o = {.cache_size = cache,
			      .munge_timeout_ms = timeout_ms};

	assert_non_null(x);
	x->loop = loop_new();
	assert_non_null(x->loop);
	loop_thread = pthread_self();
	x->pool = worker_pool_new(x->loop, 2, "auth");
	assert_non_null(x->pool);
	assert_int_equal(auth_new(x->loop, x->pool, cfg, &o, &x->auth), 0);
	return x;
}

static int setup(void **state)
{
	*state = fx_new(F.cfg, 5000, 0);
	return 0;
}

/* Run until the pool has answered every job it was given. */
static void run_until_workers_idle(struct fx *x)
{
	uint64_t start = loop_clock_ms();
	struct worker_pool_stats st;

	for (;;) {
		worker_pool_stats(x->pool, &st);
		if (st.submitted == st.done_ok + st.done_cancelled)
			break;
		assert_true(loop_run_once(x->loop, 50) >= 0);
		if (loop_clock_ms() - start > RUN_LIMIT_MS)
			fail_msg("workers did not finish");
	}
}

static int teardown(void **state)
{
	struct fx *x = *state;

	run_until_workers_idle(x);
	if (x->auth) {
		struct auth_stats as;

		auth_get_stats(x->auth, &as);
		assert_int_equal(as.munge_in_flight, 0);
		auth_free(x->auth);
	}
	worker_pool_free(x->pool);
	assert_loop_quiet(x->loop);
	loop_free(x->loop);
	free(x);
	assert_int_equal(atomic_load(&decode_on_loop), 0);
	return 0;
}

/* ------------------------------------------------------------ helpers */

/* The error never quotes the credential (nor a 12-char piece of it). */
static void assert_no_secret_in(const char *text, const char *tok)
{
	size_t n, i;
	char win[13];

	if (!tok || !*tok || !text)
		return;
	assert_null(strstr(text, tok));
	n = strlen(tok);
	for (i = 0; i + 12 <= n && i < 64 * 1024; i += 6) {
		memcpy(win, tok + i, 12);
		win[12] = '\0';
		if (strchr(win, '.') || strchr(win, ':'))
			continue;
		if (strstr(text, win))
			print_message("'%s' found in '%s'\n", win, text);
		assert_null(strstr(text, win));
	}
}

static char *claims_token(const char *payload)
{
	return tk_hs256_token(secret, strlen(secret), HS_HDR, payload);
}

/* A good token for `sub`, with `extra` JSON members (",\"admin\":true"). */
static char *user_token(const char *sub, const char *extra)
{
	char payload[1024];

	snprintf(
	    payload, sizeof(payload),
	    "{\"iss\":\"tiergate\",\"aud\":\"tiergate-api\",\"sub\":\"%s\","
	    "\"iat\":%lld,\"exp\":%lld%s}",
	    sub, (long long)NOW, (long long)NOW + 600, extra ? extra : "");
	return claims_token(payload);
}

static void bearer_ok(struct auth *a, const char *tok, time_t now,
		      const char *user, bool admin, bool cached)
{
	struct auth_identity id;
	char err[256] = "";
	int rv = auth_bearer(a, tok, now, &id, err, sizeof(err));

	if (rv)
		print_message("refused: %s\n", err);
	assert_int_equal(rv, 0);
	assert_int_equal(id.method, AUTH_METHOD_BEARER);
	assert_string_equal(id.user, user);
	assert_int_equal(id.admin, admin);
	assert_int_equal(id.cached, cached);
	assert_int_equal(id.uid, -1);
}

static void bearer_refused(struct auth *a, const char *tok, time_t now,
			   int want_rv, const char *want_msg)
{
	struct auth_identity id;
	char err[256] = "";
	const char *code = NULL;
	int rv = auth_bearer(a, tok, now, &id, err, sizeof(err)), status = 0;

	if (rv != want_rv || !strstr(err, want_msg))
		print_message("got %d '%s', wanted %d '%s'\n", rv, err, want_rv,
			      want_msg);
	assert_int_equal(rv, want_rv);
	assert_non_null(strstr(err, want_msg));
	assert_string_equal(id.user, "");
	assert_false(id.admin);
	auth_http_error(rv, &status, &code);
	assert_int_equal(status, 401);
	assert_string_equal(code, "unauthorized");
	if (strlen(tok) < 100000)
		assert_no_secret_in(err, tok);
}

/* ------------------------------------------------------------ bearer */

static void test_parse_header(void **state)
{
	const char *c = NULL;
	size_t n = 0;

	(void)state;
	assert_int_equal(auth_parse_header(NULL, &c, &n), AUTH_SCHEME_NONE);
	assert_int_equal(auth_parse_header("", &c, &n), AUTH_SCHEME_NONE);
	assert_int_equal(auth_parse_header("   ", &c, &n), AUTH_SCHEME_NONE);
	assert_int_equal(auth_parse_header("Bearer abc", &c, &n),
			 AUTH_SCHEME_BEARER);
	assert_int_equal(n, 3);
	assert_memory_equal(c, "abc", 3);
	assert_int_equal(auth_parse_header("bearer\t  x.y.z  ", &c, &n),
			 AUTH_SCHEME_BEARER);
	assert_int_equal(n, 5);
	assert_int_equal(auth_parse_header("MUNGE MUNGE:AbC=:", &c, &n),
			 AUTH_SCHEME_MUNGE);
	assert_int_equal(n, 11);
	assert_int_equal(auth_parse_header("munge MUNGE:x:", &c, &n),
			 AUTH_SCHEME_MUNGE);
	assert_int_equal(auth_parse_header("Basic dXNlcjpwdw==", &c, &n),
			 AUTH_SCHEME_OTHER);
	assert_null(c);
	assert_int_equal(auth_parse_header("Bearer", &c, &n),
			 AUTH_SCHEME_OTHER);
	assert_int_equal(auth_parse_header("Bearer   ", &c, &n),
			 AUTH_SCHEME_OTHER);
	assert_int_equal(auth_parse_header("Bearer a b", &c, &n),
			 AUTH_SCHEME_OTHER);
	assert_int_equal(auth_parse_header("Bearerx abc", &c, &n),
			 AUTH_SCHEME_OTHER);
}

static void test_http_error(void **state)
{
	static const int unauth[] = {-ENOENT, -EINVAL,	    -E2BIG,
				     -EACCES, -EKEYEXPIRED, -EKEYREJECTED,
				     -EPERM};
	const char *code;
	int status;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(unauth) / sizeof(*unauth); i++) {
		auth_http_error(unauth[i], &status, &code);
		assert_int_equal(status, 401);
		assert_string_equal(code, "unauthorized");
	}
	auth_http_error(-EHOSTDOWN, &status, &code);
	assert_int_equal(status, 503);
	auth_http_error(-ETIMEDOUT, &status, &code);
	assert_int_equal(status, 503);
	assert_string_equal(code, "site_unavailable");
	auth_http_error(-ENOMEM, &status, &code);
	assert_int_equal(status, 500);
	assert_string_equal(code, "internal");
}

static void test_bearer_good_and_cached(void **state)
{
	struct fx *x = *state;
	struct auth_identity id;
	struct auth_munge_req *req = (struct auth_munge_req *)&req;
	struct auth_stats st;
	char *tok = user_token("bob", NULL), hdr[1200], err[256];

	bearer_ok(x->auth, tok, NOW, "bob", false, false);
	bearer_ok(x->auth, tok, NOW + 5, "bob", false, true);
	/* through the one-call entry point, header and all */
	snprintf(hdr, sizeof(hdr), "Bearer %s  ", tok);
	assert_int_equal(auth_request(x->auth, hdr, "GET", "/v1/jobs", NOW,
				      NULL, NULL, NULL, &id, &req, err,
				      sizeof(err)),
			 0);
	assert_null(req);
	assert_string_equal(id.user, "bob");
	assert_true(id.cached);
	assert_int_equal(id.exp, NOW + 600);
	auth_get_stats(x->auth, &st);
	assert_int_equal(st.bearer_ok, 1);
	assert_int_equal(st.bearer_cached, 2);
	assert_int_equal(st.cache_entries, 1);
	assert_int_equal(st.cache_capacity, AUTH_DEFAULT_CACHE);

	/* no header, another scheme */
	assert_int_equal(auth_request(x->auth, NULL, "GET", "/v1/jobs", NOW,
				      NULL, NULL, NULL, &id, &req, err,
				      sizeof(err)),
			 -ENOENT);
	assert_non_null(strstr(err, "no credential"));
	assert_int_equal(auth_request(x->auth, "Basic dXNlcjpwdw==", "GET",
				      "/v1/jobs", NOW, NULL, NULL, NULL, &id,
				      &req, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "unsupported"));
	free(tok);
}

static void test_bearer_admin(void **state)
{
	struct fx *x = *state;
	char *t;

	t = user_token("bob", ",\"admin\":true");
	bearer_ok(x->auth, t, NOW, "bob", true, false);
	bearer_ok(x->auth, t, NOW, "bob", true, true);
	free(t);
	t = user_token("bob", ",\"admin\":false");
	bearer_ok(x->auth, t, NOW, "bob", false, false);
	free(t);
	/* listed in admins = */
	t = user_token("alice", NULL);
	bearer_ok(x->auth, t, NOW, "alice", true, false);
	free(t);
	/* strictly a JSON boolean */
	t = user_token("bob", ",\"admin\":\"true\"");
	bearer_refused(x->auth, t, NOW, -EINVAL, "claim 'admin' must be");
	free(t);
	t = user_token("bob", ",\"admin\":1");
	bearer_refused(x->auth, t, NOW, -EINVAL, "claim 'admin' must be");
	free(t);
	t = user_token("bob", ",\"admin\":null");
	bearer_refused(x->auth, t, NOW, -EINVAL, "claim 'admin' must be");
	free(t);
	t = user_token("bob", ",\"admin\":[true]");
	bearer_refused(x->auth, t, NOW, -EINVAL, "claim 'admin' must be");
	free(t);
}

/* Every bad-token case of DESIGN.md, through the gateway's own checks. */
static void test_bearer_refused(void **state)
{
	struct fx *x = *state;
	struct auth_stats st;
	char payload[512], *t, *big;
	size_t n;

	/* alg none, with and without a signature segment */
	snprintf(
	    payload, sizeof(payload),
	    "{\"iss\":\"tiergate\",\"aud\":\"tiergate-api\",\"sub\":\"bob\","
	    "\"iat\":%lld,\"exp\":%lld}",
	    (long long)NOW, (long long)NOW + 600);
	t = tk_raw_token("{\"alg\":\"none\"}", payload, "x");
	bearer_refused(x->auth, t, NOW, -EACCES, "none");
	free(t);
	t = tk_raw_token("{\"alg\":\"none\"}", payload, "");
	bearer_refused(x->auth, t, NOW, -EINVAL, "");
	free(t);
	/* another alg than the key's */
	t = tk_raw_token("{\"alg\":\"RS256\"}", payload, "c2ln");
	bearer_refused(x->auth, t, NOW, -EACCES, "alg");
	free(t);
	/* signed with another secret */
	t = tk_hs256_token(other_secret, strlen(other_secret), HS_HDR, payload);
	bearer_refused(x->auth, t, NOW, -EACCES, "");
	free(t);
	/* expired (beyond the 30 s leeway) */
	snprintf(
	    payload, sizeof(payload),
	    "{\"iss\":\"tiergate\",\"aud\":\"tiergate-api\",\"sub\":\"bob\","
	    "\"iat\":%lld,\"exp\":%lld}",
	    (long long)NOW - 700, (long long)NOW - 100);
	t = claims_token(payload);
	bearer_refused(x->auth, t, NOW, -EKEYEXPIRED, "expired");
	free(t);
	/* wrong audience, wrong issuer */
	snprintf(payload, sizeof(payload),
		 "{\"iss\":\"tiergate\",\"aud\":\"tiergate-ticket\",\"sub\":"
		 "\"bob\",\"iat\":%lld,\"exp\":%lld}",
		 (long long)NOW, (long long)NOW + 600);
	t = claims_token(payload);
	bearer_refused(x->auth, t, NOW, -EACCES, "audience");
	free(t);
	snprintf(payload, sizeof(payload),
		 "{\"iss\":\"evil\",\"aud\":\"tiergate-api\",\"sub\":\"bob\","
		 "\"iat\":%lld,\"exp\":%lld}",
		 (long long)NOW, (long long)NOW + 600);
	t = claims_token(payload);
	bearer_refused(x->auth, t, NOW, -EACCES, "issuer");
	free(t);
	/* iat required */
	snprintf(
	    payload, sizeof(payload),
	    "{\"iss\":\"tiergate\",\"aud\":\"tiergate-api\",\"sub\":\"bob\","
	    "\"exp\":%lld}",
	    (long long)NOW + 600);
	t = claims_token(payload);
	bearer_refused(x->auth, t, NOW, -EINVAL, "iat");
	free(t);
	/* lifetime over max_token_lifetime (86400 here) */
	snprintf(
	    payload, sizeof(payload),
	    "{\"iss\":\"tiergate\",\"aud\":\"tiergate-api\",\"sub\":\"bob\","
	    "\"iat\":%lld,\"exp\":%lld}",
	    (long long)NOW, (long long)NOW + 2 * 86400);
	t = claims_token(payload);
	bearer_refused(x->auth, t, NOW, -EACCES, "lifetime");
	free(t);
	/* the user claim: missing, mistyped, not a safe name */
	snprintf(payload, sizeof(payload),
		 "{\"iss\":\"tiergate\",\"aud\":\"tiergate-api\",\"iat\":%lld,"
		 "\"exp\":%lld}",
		 (long long)NOW, (long long)NOW + 600);
	t = claims_token(payload);
	bearer_refused(x->auth, t, NOW, -EINVAL, "sub");
	free(t);
	snprintf(payload, sizeof(payload),
		 "{\"iss\":\"tiergate\",\"aud\":\"tiergate-api\",\"sub\":7,"
		 "\"iat\":%lld,\"exp\":%lld}",
		 (long long)NOW, (long long)NOW + 600);
	t = claims_token(payload);
	bearer_refused(x->auth, t, NOW, -EINVAL, "sub");
	free(t);
	t = user_token("../etc", NULL);
	bearer_refused(x->auth, t, NOW, -EINVAL, "sub");
	free(t);
	/* exp as a string */
	snprintf(
	    payload, sizeof(payload),
	    "{\"iss\":\"tiergate\",\"aud\":\"tiergate-api\",\"sub\":\"bob\","
	    "\"iat\":%lld,\"exp\":\"%lld\"}",
	    (long long)NOW, (long long)NOW + 600);
	t = claims_token(payload);
	bearer_refused(x->auth, t, NOW, -EINVAL, "exp");
	free(t);
	/* tampered: a good signature over another payload */
	{
		char *good = user_token("bob", NULL), *evil, *dot1, *dot2;
		char *evil_p = tk_b64url("{\"sub\":\"root\"}", 14);

		dot1 = strchr(good, '.');
		dot2 = strchr(dot1 + 1, '.');
		if (asprintf(&evil, "%.*s.%s%s", (int)(dot1 - good), good,
			     evil_p, dot2) < 0)
			abort();
		bearer_refused(x->auth, evil, NOW, -EACCES, "");
		free(evil);
		free(evil_p);
		free(good);
	}
	/* garbage, empty */
	bearer_refused(x->auth, "not-a-token", NOW, -EINVAL, "");
	bearer_refused(x->auth, "", NOW, -EINVAL, "empty");
	/* 8 KiB + 1 and 12 MB: refused before anything is decoded */
	n = 12u << 20;
	big = malloc(n + 1);
	assert_non_null(big);
	memset(big, 'a', n);
	big[100] = '.';
	big[200] = '.';
	big[n] = '\0';
	bearer_refused(x->auth, big, NOW, -E2BIG, "longer than 8192");
	big[JWT_TOKEN_MAX + 1] = '\0';
	bearer_refused(x->auth, big, NOW, -E2BIG, "longer than 8192");
	free(big);

	auth_get_stats(x->auth, &st);
	assert_int_equal(st.bearer_ok, 0);
	assert_int_equal(st.cache_entries, 0);
	assert_int_equal(st.bearer_refused, 18);
}

/* alg confusion: an RS256 deployment and an HS256 token "signed" with the
 * bytes of the public key. */
static void test_bearer_alg_swap(void **state)
{
	struct gw_config *cfg;
	struct fx *x = *state;
	struct auth *a;
	char *text, payload[512], *t;
	json_t *claims;
	struct auth_identity id;
	char err[256];

	(void)x;
	text = conf_text(NULL, NULL);
	/* user_key = rsa.pub: verify-only */
	text = replace_once(text, "user_key = user.key", "user_key = rsa.pub");
	cfg = load_cfg(text);
	free(text);
	assert_string_equal(jwt_key_alg(cfg->user_key), "RS256");
	assert_int_equal(auth_new(x->loop, x->pool, cfg, NULL, &a), 0);

	snprintf(
	    payload, sizeof(payload),
	    "{\"iss\":\"tiergate\",\"aud\":\"tiergate-api\",\"sub\":\"bob\","
	    "\"iat\":%lld,\"exp\":%lld}",
	    (long long)NOW, (long long)NOW + 600);
	t = tk_hs256_token(F.rsa_pub, strlen(F.rsa_pub), HS_HDR, payload);
	bearer_refused(a, t, NOW, -EACCES, "alg");
	free(t);
	/* and a real RS256 token from the private half is fine */
	{
		struct jwt_key *priv = NULL;

		assert_int_equal(jwt_key_load_mem(F.rsa_priv,
						  strlen(F.rsa_priv), NULL,
						  &priv, err, sizeof(err)),
				 0);
		claims = json_loads(payload, 0, NULL);
		assert_int_equal(
		    jwt_sign_token(priv, claims, &t, err, sizeof(err)), 0);
		json_decref(claims);
		jwt_key_free(priv);
		assert_int_equal(auth_bearer(a, t, NOW, &id, err, sizeof(err)),
				 0);
		assert_string_equal(id.user, "bob");
		free(t);
	}
	/* a verify-only key cannot mint */
	assert_int_equal(
	    auth_mint_token(cfg, "bob", false, 60, NOW, &t, err, sizeof(err)),
	    -EINVAL);
	assert_null(t);
	assert_non_null(strstr(err, "public key"));
	auth_free(a);
	gw_config_free(cfg);
}

static void test_cache_bounded_and_expiring(void **state)
{
	struct fx *x = *state;
	struct auth_stats st;
	struct auth *a;
	char sub[32], *t;
	int i;

	assert_int_equal(auth_new(x->loop, x->pool, F.cfg,
				  &(struct auth_opts){.cache_size = 16}, &a),
			 0);
	for (i = 0; i < 200; i++) {
		snprintf(sub, sizeof(sub), "user%d", i);
		t = user_token(sub, NULL);
		bearer_ok(a, t, NOW, sub, false, false);
		free(t);
		auth_get_stats(a, &st);
		assert_true(st.cache_entries <= 16);
	}
	assert_int_equal(st.cache_capacity, 16);
	assert_int_equal(st.bearer_ok, 200);

	/* an entry lives exactly as long as the token would verify */
	t = user_token("carol", NULL); /* exp NOW + 600 */
	bearer_ok(a, t, NOW, "carol", false, false);
	bearer_ok(a, t, NOW + 600 + JWT_DEFAULT_LEEWAY - 1, "carol", false,
		  true);
	bearer_refused(a, t, NOW + 600 + JWT_DEFAULT_LEEWAY, -EKEYEXPIRED,
		       "expired");
	/* and is not resurrected */
	bearer_refused(a, t, NOW + 600 + JWT_DEFAULT_LEEWAY, -EKEYEXPIRED,
		       "expired");

	/* a reload forgets every verified token: new issuer, old token out */
	bearer_ok(a, t, NOW, "carol", false, false);
	{
		char *text = conf_text(NULL, "user_issuer = other\n");
		struct gw_config *cfg2;

		/* conf_text has no munge_socket for the gateway: user_key ok */
		cfg2 = load_cfg(text);
		free(text);
		auth_set_config(a, cfg2);
		gw_config_free(cfg2); /* a holds its own reference */
		auth_get_stats(a, &st);
		assert_int_equal(st.cache_entries, 0);
		bearer_refused(a, t, NOW, -EACCES, "issuer");
	}
	free(t);
	auth_free(a);
}

/* Tokens never reach a log line, with every debug line switched on. */
struct log_capture {
	char **lines;
	size_t n;
};

static void capture_sink(enum log_level lvl, const char *line, void *arg)
{
	struct log_capture *c = arg;

	(void)lvl;
	c->lines = realloc(c->lines, (c->n + 1) * sizeof(*c->lines));
	assert_non_null(c->lines);
	c->lines[c->n++] = strdup(line);
}

static void test_no_token_in_logs(void **state)
{
	struct fx *x = *state;
	struct log_capture cap = {0};
	struct auth_identity id;
	struct auth_munge_req *req;
	char *good = user_token("bob", ",\"admin\":true");
	char *bad_admin = user_token("bob", ",\"admin\":\"yes\"");
	char *other = tk_hs256_token(other_secret, strlen(other_secret), HS_HDR,
				     "{\"sub\":\"bob\"}");
	char hdr[1200], err[256];
	const char *toks[] = {good, bad_admin, other};
	size_t i, j;

	log_set_sink(capture_sink, &cap);
	assert_int_equal(log_set_debug("."), 0);
	for (i = 0; i < 3; i++) {
		auth_bearer(x->auth, toks[i], NOW, &id, err, sizeof(err));
		auth_bearer(x->auth, toks[i], NOW, &id, err, sizeof(err));
		assert_no_secret_in(err, toks[i]);
		snprintf(hdr, sizeof(hdr), "Bearer %s", toks[i] ? toks[i] : "");
		auth_request(x->auth, hdr, "GET", "/v1/jobs", NOW, NULL, NULL,
			     NULL, &id, &req, err, sizeof(err));
		assert_no_secret_in(err, toks[i]);
	}
	log_set_debug(NULL);
	log_set_sink(NULL, NULL);
	assert_true(cap.n > 0); /* the debug lines were there */
	for (j = 0; j < cap.n; j++) {
		for (i = 0; i < 3; i++)
			assert_no_secret_in(cap.lines[j], toks[i]);
		free(cap.lines[j]);
	}
	free(cap.lines);
	free(good);
	free(bad_admin);
	free(other);
}

/* ------------------------------------------------------------ mint */

static void test_mint(void **state)
{
	struct fx *x = *state;
	char *t = NULL, err[256], conf[160];
	char *argv_ok[] = {"mint-token", "--user", "dave", "--admin",
			   "--ttl",	 "1h",	   NULL};
	char *argv_eq[] = {"mint-token", "--user=dave", "--ttl=90", NULL};
	char *argv_nouser[] = {"mint-token", "--admin", NULL};
	char *argv_badttl[] = {"mint-token", "--user", "dave",
			       "--ttl",	     "soon",   NULL};
	char *argv_unknown[] = {"mint-token", "--user", "dave", "--root", NULL};
	char *argv_long[] = {"mint-token", "--user", "dave",
			     "--ttl",	   "30d",    NULL};
	int saved, devnull;

	assert_int_equal(auth_mint_token(F.cfg, "dave", true, 600, NOW, &t, err,
					 sizeof(err)),
			 0);
	bearer_ok(x->auth, t, NOW, "dave", true, false);
	free(t);
	assert_int_equal(auth_mint_token(F.cfg, "dave", false, 600, NOW, &t,
					 err, sizeof(err)),
			 0);
	bearer_ok(x->auth, t, NOW + 1, "dave", false, false);
	free(t);
	assert_int_equal(
	    auth_mint_token(F.cfg, "dave", false, 0, NOW, &t, err, sizeof(err)),
	    -ERANGE);
	assert_int_equal(auth_mint_token(F.cfg, "dave", false, 86401, NOW, &t,
					 err, sizeof(err)),
			 -ERANGE);
	assert_non_null(strstr(err, "max_token_lifetime"));
	assert_int_equal(auth_mint_token(F.cfg, "da ve", false, 60, NOW, &t,
					 err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(
	    auth_mint_token(F.cfg, NULL, false, 60, NOW, &t, err, sizeof(err)),
	    -EINVAL);

	/* the command; its token goes to stdout: silence it */
	snprintf(conf, sizeof(conf), "%s/t.conf", F.dir);
	fflush(stdout);
	saved = dup(1);
	devnull = open("/dev/null", O_WRONLY);
	dup2(devnull, 1);
	close(devnull);
	assert_int_equal(auth_mint_main(conf, 6, argv_ok), 0);
	assert_int_equal(auth_mint_main(conf, 3, argv_eq), 0);
	assert_int_equal(auth_mint_main(conf, 2, argv_nouser), 2);
	assert_int_equal(auth_mint_main(conf, 5, argv_badttl), 2);
	assert_int_equal(auth_mint_main(conf, 4, argv_unknown), 2);
	assert_int_equal(auth_mint_main(conf, 5, argv_long), 1);
	assert_int_equal(auth_mint_main("/nonexistent.conf", 3, argv_eq), 1);
	fflush(stdout);
	dup2(saved, 1);
	close(saved);
}

/* ------------------------------------------------------------ tickets */

static void test_ticket(void **state)
{
	struct fx *x = *state;
	struct ticket tk = {0}, out;
	struct auth_identity id;
	char err[256], *tok = NULL, *user_tok;
	const char *code;
	int status;

	snprintf(tk.user, sizeof(tk.user), "alice");
	snprintf(tk.tier, sizeof(tk.tier), "premium");
	snprintf(tk.job_id, sizeof(tk.job_id), "j-1a2b");
	snprintf(tk.site, sizeof(tk.site), "alpha");
	tk.iat = NOW;
	tk.exp = NOW + 3600;
	assert_int_equal(
	    ticket_sign(F.cfg->ticket_key, &tk, &tok, err, sizeof(err)), 0);

	assert_int_equal(auth_ticket(x->auth, tok, NOW, "j-1a2b", "alpha", &out,
				     &id, err, sizeof(err)),
			 0);
	assert_string_equal(out.job_id, "j-1a2b");
	assert_string_equal(out.tier, "premium");
	assert_int_equal(id.method, AUTH_METHOD_TICKET);
	assert_string_equal(id.user, "alice");
	assert_false(id.admin); /* alice is an admin, but not through this */
	assert_int_equal(id.exp, NOW + 3600);
	assert_int_equal(auth_ticket(x->auth, tok, NOW, NULL, NULL, NULL, &id,
				     err, sizeof(err)),
			 0);

	assert_int_equal(auth_ticket(x->auth, tok, NOW, "j-other", "alpha",
				     &out, &id, err, sizeof(err)),
			 -EACCES);
	assert_non_null(strstr(err, "ticket is for job j-1a2b"));
	assert_string_equal(out.job_id, "");
	assert_string_equal(id.user, "");
	assert_int_equal(auth_ticket(x->auth, tok, NOW, "j-1a2b", "beta", &out,
				     &id, err, sizeof(err)),
			 -EACCES);
	assert_non_null(strstr(err, "site alpha"));
	assert_int_equal(auth_ticket(x->auth, tok, NOW + 7200, "j-1a2b",
				     "alpha", &out, &id, err, sizeof(err)),
			 -EKEYEXPIRED);
	auth_http_error(-EKEYEXPIRED, &status, &code);
	assert_int_equal(status, 401);
	assert_no_secret_in(err, tok);
	free(tok);

	/* signed with another key */
	{
		char *priv, *pub;
		struct jwt_key *k = NULL;

		tk_keypair("EC", "P-256", 0, false, &priv, &pub);
		assert_int_equal(jwt_key_load_mem(priv, strlen(priv), NULL, &k,
						  err, sizeof(err)),
				 0);
		assert_int_equal(ticket_sign(k, &tk, &tok, err, sizeof(err)),
				 0);
		assert_int_equal(auth_ticket(x->auth, tok, NOW, "j-1a2b",
					     "alpha", &out, &id, err,
					     sizeof(err)),
				 -EACCES);
		free(tok);
		jwt_key_free(k);
		free(priv);
		free(pub);
	}
	/* a user token is no ticket */
	user_tok = user_token("alice", NULL);
	assert_true(auth_ticket(x->auth, user_tok, NOW, NULL, NULL, &out, &id,
				err, sizeof(err)) < 0);
	free(user_tok);
	assert_int_equal(auth_ticket(x->auth, "", NOW, NULL, NULL, &out, &id,
				     err, sizeof(err)),
			 -EINVAL);
}

/* ------------------------------------------------------------ MUNGE */

#define SKIP_WITHOUT_MUNGE()                                                   \
	do {                                                                   \
		if (!F.have_munge)                                             \
			skip();                                                \
	} while (0)

static char *encode_with(const char *mdir, const void *payload, int len)
{
	munge_ctx_t ctx = munge_ctx_create();
	char sock[160], *cred = NULL;
	munge_err_t e;

	assert_non_null(ctx);
	mpath(sock, sizeof(sock), mdir, "sock");
	assert_int_equal(munge_ctx_set(ctx, MUNGE_OPT_SOCKET, sock),
			 EMUNGE_SUCCESS);
	e = munge_encode(&cred, ctx, payload, len);
	if (e != EMUNGE_SUCCESS)
		print_message("munge_encode: %s\n", munge_ctx_strerror(ctx));
	assert_int_equal(e, EMUNGE_SUCCESS);
	munge_ctx_destroy(ctx);
	return cred;
}

static char *encode(const char *mdir, const char *payload)
{
	return encode_with(mdir, payload, (int)strlen(payload));
}

/* The user the test runs as ("root" here). */
static const char *me(void)
{
	struct passwd *pw = getpwuid(geteuid());

	assert_non_null(pw);
	return pw->pw_name;
}

/* Credentials of another uid need root to setuid() in a child. */
static bool can_setuid(void)
{
	return geteuid() == 0 && getpwuid(NOBODY_UID) != NULL;
}

/* A credential made by uid nobody (a child process drops privileges). */
static char *encode_as_nobody(const char *mdir, const char *payload)
{
	int fds[2], st;
	char buf[4096];
	ssize_t n, got = 0;
	pid_t pid;

	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char *c;

		close(fds[0]);
		if (setgid(NOBODY_UID) || setuid(NOBODY_UID))
			_exit(3);
		c = NULL;
		{
			munge_ctx_t ctx = munge_ctx_create();
			char sock[160];

			mpath(sock, sizeof(sock), mdir, "sock");
			munge_ctx_set(ctx, MUNGE_OPT_SOCKET, sock);
			if (munge_encode(&c, ctx, payload,
					 (int)strlen(payload)) !=
			    EMUNGE_SUCCESS)
				_exit(4);
		}
		if (write(fds[1], c, strlen(c)) != (ssize_t)strlen(c))
			_exit(5);
		_exit(0);
	}
	close(fds[1]);
	while ((n = read(fds[0], buf + got, sizeof(buf) - 1 - (size_t)got)) > 0)
		got += n;
	close(fds[0]);
	buf[got] = '\0';
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	return strdup(buf);
}

struct waiter {
	bool done;
	int calls;
};

static void waiter_cb(struct auth_munge_req *r, void *arg)
{
	struct waiter *w = arg;

	assert_true(pthread_equal(pthread_self(), loop_thread));
	assert_true(auth_munge_ready(r));
	w->calls++;
	w->done = true;
}

/* The HTTP guard's way: read and release inside the callback. */
struct inline_reader {
	bool done;
	int rv;
	struct auth_identity id;
	char err[256];
};

static void inline_cb(struct auth_munge_req *r, void *arg)
{
	struct inline_reader *ir = arg;

	ir->rv = auth_munge_result(r, &ir->id, ir->err, sizeof(ir->err));
	auth_munge_release(r); /* freed when the pool is done with it */
	ir->done = true;
}

/* Start, wait for the callback, read, release: the result. */
static int munge_user(struct fx *x, struct auth *a, const char *cred,
		      const char *method, const char *path,
		      struct auth_identity *id, char *err, size_t errlen)
{
	struct auth_munge_req *r = NULL;
	struct waiter w = {0};
	char hdr[4200];
	int rv;

	snprintf(hdr, sizeof(hdr), "MUNGE %s", cred);
	rv = auth_request(a, hdr, method, path, NOW, NULL, waiter_cb, &w, id,
			  &r, err, errlen);
	if (rv != AUTH_PENDING)
		return rv;
	assert_non_null(r);
	assert_false(w.done); /* never from inside the call */
	assert_int_equal(auth_munge_result(r, id, err, errlen), AUTH_PENDING);
	run_until(x->loop, &w.done);
	assert_int_equal(w.calls, 1);
	rv = auth_munge_result(r, id, err, errlen);
	auth_munge_release(r);
	return rv;
}

static int munge_node(struct fx *x, struct auth *a, const char *site,
		      const char *cred, const char *path, const char *body,
		      struct auth_identity *id, char *err, size_t errlen)
{
	struct auth_munge_req *r = NULL;
	struct waiter w = {0};
	int rv;

	rv = auth_node_munge_start(a, site, cred, path, body, strlen(body),
				   NULL, waiter_cb, &w, &r, err, errlen);
	if (rv)
		return rv;
	run_until(x->loop, &w.done);
	rv = auth_munge_result(r, id, err, errlen);
	auth_munge_release(r);
	return rv;
}

static void test_munge_user(void **state)
{
	struct fx *x = *state;
	struct auth_identity id;
	struct auth_stats st;
	char err[256], *c;
	int before = atomic_load(&decode_calls);

	SKIP_WITHOUT_MUNGE();
	c = encode(F.mdir_a, "GET /v1/jobs");
	assert_int_equal(
	    munge_user(x, x->auth, c, "GET", "/v1/jobs", &id, err, sizeof(err)),
	    0);
	assert_int_equal(id.method, AUTH_METHOD_MUNGE);
	assert_string_equal(id.user, me());
	assert_int_equal(id.uid, geteuid());
	assert_int_equal(id.gid, getegid());
	assert_false(id.admin); /* uid 0 is no admin unless listed */
	free(c);

	if (can_setuid()) {
		c = encode_as_nobody(F.mdir_a, "DELETE /v1/jobs/j-1");
		assert_int_equal(munge_user(x, x->auth, c, "DELETE",
					    "/v1/jobs/j-1", &id, err,
					    sizeof(err)),
				 0);
		assert_string_equal(id.user, getpwuid(NOBODY_UID)->pw_name);
		assert_int_equal(id.uid, NOBODY_UID);
		assert_false(id.admin);
		free(c);
	} else {
		print_message("not root: the other-uid case is skipped\n");
	}

	/* read and released from inside the callback */
	{
		struct inline_reader ir = {0};
		struct auth_munge_req *r = NULL;

		c = encode(F.mdir_a, "GET /v1/usage");
		assert_int_equal(auth_munge_start(x->auth, c, "GET",
						  "/v1/usage", NULL, inline_cb,
						  &ir, &r, err, sizeof(err)),
				 0);
		run_until(x->loop, &ir.done);
		assert_int_equal(ir.rv, 0);
		assert_string_equal(ir.id.user, me());
		loop_run_once(x->loop, 0);
		free(c);
	}

	auth_get_stats(x->auth, &st);
	assert_int_equal(st.munge_ok, can_setuid() ? 3 : 2);
	assert_true(atomic_load(&decode_calls) >= before + 1);
	assert_int_equal(atomic_load(&decode_on_loop), 0);
}

static void test_munge_root_admin_when_listed(void **state)
{
	struct fx *x = *state;
	struct gw_config *cfg;
	struct auth *a;
	struct auth_identity id;
	char err[256], sock[160], *text, *c;

	SKIP_WITHOUT_MUNGE();
	mpath(sock, sizeof(sock), F.mdir_a, "sock");
	text = conf_text(sock, NULL);
	{
		char line[128];

		snprintf(line, sizeof(line), "admins = %s", me());
		text = replace_once(text, "admins = alice", line);
	}
	cfg = load_cfg(text);
	free(text);
	assert_int_equal(auth_new(x->loop, x->pool, cfg, NULL, &a), 0);
	c = encode(F.mdir_a, "GET /debug/tasks");
	assert_int_equal(
	    munge_user(x, a, c, "GET", "/debug/tasks", &id, err, sizeof(err)),
	    0);
	assert_true(id.admin);
	free(c);
	auth_free(a);
	gw_config_free(cfg);
}

static void test_munge_replay_mismatch_realm(void **state)
{
	struct fx *x = *state;
	struct auth_identity id;
	struct auth_stats st;
	const char *code;
	char err[256], *c;
	int status;

	SKIP_WITHOUT_MUNGE();
	/* replay: the second use of one credential is refused */
	c = encode(F.mdir_a, "GET /v1/sites");
	assert_int_equal(munge_user(x, x->auth, c, "GET", "/v1/sites", &id, err,
				    sizeof(err)),
			 0);
	assert_int_equal(munge_user(x, x->auth, c, "GET", "/v1/sites", &id, err,
				    sizeof(err)),
			 -EKEYREJECTED);
	assert_string_equal(err, "credential replayed");
	assert_string_equal(id.user, "");
	auth_http_error(-EKEYREJECTED, &status, &code);
	assert_int_equal(status, 401);
	free(c);

	/* payload: another method, another path */
	c = encode(F.mdir_a, "GET /v1/jobs");
	assert_int_equal(munge_user(x, x->auth, c, "DELETE", "/v1/jobs", &id,
				    err, sizeof(err)),
			 -EACCES);
	assert_non_null(strstr(err, "payload does not match"));
	free(c);
	c = encode(F.mdir_a, "GET /v1/jobs");
	assert_int_equal(munge_user(x, x->auth, c, "GET", "/v1/jobs/j-9", &id,
				    err, sizeof(err)),
			 -EACCES);
	free(c);
	c = encode(F.mdir_a, "GET /v1/jobs\n");
	assert_int_equal(
	    munge_user(x, x->auth, c, "GET", "/v1/jobs", &id, err, sizeof(err)),
	    -EACCES);
	free(c);
	/* binary payload with a NUL inside */
	c = encode_with(F.mdir_a, "GET /v1/jobs\0x", 14);
	assert_int_equal(
	    munge_user(x, x->auth, c, "GET", "/v1/jobs", &id, err, sizeof(err)),
	    -EACCES);
	free(c);

	/* another realm: made by munged B, checked by munged A */
	c = encode(F.mdir_b, "GET /v1/jobs");
	assert_int_equal(
	    munge_user(x, x->auth, c, "GET", "/v1/jobs", &id, err, sizeof(err)),
	    -EACCES);
	assert_non_null(strstr(err, "invalid MUNGE credential"));
	auth_http_error(-EACCES, &status, &code);
	assert_int_equal(status, 401);
	assert_no_secret_in(err, c);
	free(c);

	auth_get_stats(x->auth, &st);
	assert_int_equal(st.munge_ok, 1);
	assert_int_equal(st.munge_refused, 6);
	assert_int_equal(atomic_load(&decode_on_loop), 0);
}

static void test_munge_bad_input(void **state)
{
	struct fx *x = *state;
	struct auth_munge_req *r = (struct auth_munge_req *)&r;
	struct auth_identity id;
	char err[256], big[AUTH_MUNGE_CRED_MAX + 16];
	int before = atomic_load(&decode_calls);

	/* refused before any worker is bothered */
	assert_int_equal(auth_munge_start(x->auth, "garbage", "GET", "/v1/jobs",
					  NULL, waiter_cb, NULL, &r, err,
					  sizeof(err)),
			 -EINVAL);
	assert_null(r);
	assert_int_equal(auth_munge_start(x->auth, "MUNGE:abc:", "get",
					  "/v1/jobs", NULL, waiter_cb, NULL, &r,
					  err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(auth_munge_start(x->auth, "MUNGE:abc:", "GET",
					  "v1/jobs", NULL, waiter_cb, NULL, &r,
					  err, sizeof(err)),
			 -EINVAL);
	memset(big, 'A', sizeof(big) - 1);
	memcpy(big, "MUNGE:", 6);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(auth_munge_start(x->auth, big, "GET", "/v1/jobs", NULL,
					  waiter_cb, NULL, &r, err,
					  sizeof(err)),
			 -E2BIG);
	{
		char hdr[sizeof(big) + 8];

		snprintf(hdr, sizeof(hdr), "MUNGE %s", big);
		assert_int_equal(auth_request(x->auth, hdr, "GET", "/v1/jobs",
					      NOW, NULL, NULL, NULL, &id, &r,
					      err, sizeof(err)),
				 -E2BIG);
	}
	assert_int_equal(atomic_load(&decode_calls), before);

	/* no munge_socket in [gateway]: MUNGE users are not accepted */
	{
		char *text = conf_text(NULL, NULL);
		struct gw_config *cfg = load_cfg(text);
		struct auth *a;

		free(text);
		assert_int_equal(auth_new(x->loop, x->pool, cfg, NULL, &a), 0);
		assert_int_equal(auth_munge_start(a, "MUNGE:abc:", "GET",
						  "/v1/jobs", NULL, waiter_cb,
						  NULL, &r, err, sizeof(err)),
				 -EACCES);
		assert_non_null(strstr(err, "no munge_socket"));
		auth_free(a);
		gw_config_free(cfg);
	}
	/* no workers: a clear refusal */
	{
		struct auth *a;

		assert_int_equal(auth_new(x->loop, NULL, F.cfg, NULL, &a), 0);
		assert_int_equal(auth_munge_start(a, "MUNGE:abc:", "GET",
						  "/v1/jobs", NULL, waiter_cb,
						  NULL, &r, err, sizeof(err)),
				 -EACCES);
		auth_free(a);
	}
}

/* The node-report path: the SITE's realm, payload with the body hash. */
static void test_node_munge(void **state)
{
	struct fx *x = *state;
	struct auth_identity id;
	struct auth_munge_req *r = (struct auth_munge_req *)&r;
	static const char body[] = "{\"id\":\"alpha/1001/batch/a1/step_end\"}";
	/* sha256 of body, computed by the test itself */
	char payload[256], hex[65], err[256], *c;
	unsigned char h[32];
	unsigned int hl = 32;
	int i;

	SKIP_WITHOUT_MUNGE();
	if (geteuid() != 0)
		skip(); /* node reports are made by root */
	assert_true(EVP_Digest(body, strlen(body), h, &hl, EVP_sha256(), NULL));
	for (i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", h[i]);
	snprintf(payload, sizeof(payload), "POST /v1/events\n%s", hex);

	c = encode(F.mdir_a, payload);
	assert_int_equal(munge_node(x, x->auth, "alpha", c, "/v1/events", body,
				    &id, err, sizeof(err)),
			 0);
	assert_int_equal(id.method, AUTH_METHOD_NODE_MUNGE);
	assert_int_equal(id.uid, 0);
	assert_string_equal(id.user, "root");
	assert_false(id.admin);
	/* replayed */
	assert_int_equal(munge_node(x, x->auth, "alpha", c, "/v1/events", body,
				    &id, err, sizeof(err)),
			 -EKEYREJECTED);
	free(c);

	/* the body is not the one the credential vouches for */
	c = encode(F.mdir_a, payload);
	assert_int_equal(munge_node(x, x->auth, "alpha", c, "/v1/events",
				    "{\"id\":\"forged\"}", &id, err,
				    sizeof(err)),
			 -EACCES);
	assert_non_null(strstr(err, "payload does not match"));
	free(c);

	/* realm A's credential is worth nothing for site beta (realm B) */
	c = encode(F.mdir_a, payload);
	assert_int_equal(munge_node(x, x->auth, "beta", c, "/v1/events", body,
				    &id, err, sizeof(err)),
			 -EACCES);
	free(c);
	/* ... and beta's own works */
	c = encode(F.mdir_b, payload);
	assert_int_equal(munge_node(x, x->auth, "beta", c, "/v1/events", body,
				    &id, err, sizeof(err)),
			 0);
	free(c);

	/* not root */
	if (can_setuid()) {
		c = encode_as_nobody(F.mdir_a, payload);
		assert_int_equal(munge_node(x, x->auth, "alpha", c,
					    "/v1/events", body, &id, err,
					    sizeof(err)),
				 -EACCES);
		assert_non_null(strstr(err, "must come from root"));
		free(c);
	}

	/* a site without munge_socket, an unknown site: refused at once */
	assert_int_equal(auth_node_munge_start(x->auth, "gamma",
					       "MUNGE:x:", "/v1/events", body,
					       strlen(body), NULL, waiter_cb,
					       NULL, &r, err, sizeof(err)),
			 -EACCES);
	assert_non_null(strstr(err, "site gamma has no munge_socket"));
	assert_null(r);
	assert_int_equal(auth_node_munge_start(x->auth, "delta",
					       "MUNGE:x:", "/v1/events", body,
					       strlen(body), NULL, waiter_cb,
					       NULL, &r, err, sizeof(err)),
			 -EACCES);

	/* an empty body (eof=1 output chunk) hashes "" */
	{
		static const char empty_sha[] =
		    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b78"
		    "52b855";
		const char *path = "/v1/output/alpha/1001/stdout";

		snprintf(payload, sizeof(payload), "POST %s\n%s", path,
			 empty_sha);
		c = encode(F.mdir_a, payload);
		assert_int_equal(munge_node(x, x->auth, "alpha", c, path, "",
					    &id, err, sizeof(err)),
				 0);
		free(c);
	}
	assert_int_equal(atomic_load(&decode_on_loop), 0);
}

/* The task path: the caller's task is woken with TASK_WAKE_WORKER. */
#define WT_STATES(X) X(WT_START) X(WT_WAITING)
enum wt_state { WT_STATES(TASK_STATE_ENUM) };
static const char *const wt_state_names[] = {WT_STATES(TASK_STATE_NAME)};

struct wtask {
	struct task task;
	struct auth *auth;
	char *cred;
	struct auth_munge_req *req;
	unsigned wakes;
	int rv;
	struct auth_identity id;
	bool done;
};

static enum task_step wt_step(struct task *t, unsigned wake)
{
	struct wtask *w = container_of(t, struct wtask, task);
	char err[256];
	int rv;

	w->wakes |= wake;
	switch ((enum wt_state)t->state) {
	case WT_START:
		rv = auth_munge_start(w->auth, w->cred, "GET", "/v1/jobs", t,
				      NULL, NULL, &w->req, err, sizeof(err));
		assert_int_equal(rv, 0);
		task_wait_on(t, "munge decode");
		task_set_state(t, WT_WAITING);
		return TASK_WAIT;
	case WT_WAITING:
		if (!auth_munge_ready(w->req))
			return TASK_WAIT;
		w->rv = auth_munge_result(w->req, &w->id, err, sizeof(err));
		auth_munge_release(w->req);
		w->req = NULL;
		w->done = true;
		return TASK_DONE;
	}
	return TASK_DONE;
}

static const struct task_ops wt_ops = {
    .kind = "authwait",
    .state_names = wt_state_names,
    .n_states = 2,
    .step = wt_step,
};

static void test_munge_wakes_task(void **state)
{
	struct fx *x = *state;
	struct wtask w = {0};

	SKIP_WITHOUT_MUNGE();
	w.auth = x->auth;
	w.cred = encode(F.mdir_a, "GET /v1/jobs");
	assert_int_equal(task_start(x->loop, &w.task, &wt_ops), 0);
	run_until(x->loop, &w.done);
	assert_int_equal(w.rv, 0);
	assert_string_equal(w.id.user, me());
	assert_true(w.wakes & TASK_WAKE_WORKER);
	loop_run_once(x->loop, 0); /* the task's memory: end of turn */
	free(w.cred);
}

/* A caller that goes away: no callback, the request freed after the
 * worker returns; auth_free with a decode in flight is safe too. */
static void test_munge_release_early(void **state)
{
	struct fx *x = *state;
	struct auth_munge_req *r;
	struct waiter w = {0};
	struct auth_stats st;
	struct auth *a;
	char err[256], *c1, *c2;

	SKIP_WITHOUT_MUNGE();
	c1 = encode(F.mdir_a, "GET /v1/jobs");
	assert_int_equal(auth_munge_start(x->auth, c1, "GET", "/v1/jobs", NULL,
					  waiter_cb, &w, &r, err, sizeof(err)),
			 0);
	auth_munge_release(r);
	run_until_workers_idle(x);
	loop_run_once(x->loop, 0);
	assert_int_equal(w.calls, 0);
	auth_get_stats(x->auth, &st);
	assert_int_equal(st.munge_in_flight, 0);

	assert_int_equal(auth_new(x->loop, x->pool, F.cfg, NULL, &a), 0);
	c2 = encode(F.mdir_a, "GET /v1/jobs");
	assert_int_equal(auth_munge_start(a, c2, "GET", "/v1/jobs", NULL,
					  waiter_cb, &w, &r, err, sizeof(err)),
			 0);
	auth_munge_release(r);
	auth_free(a); /* freed when the worker is done */
	run_until_workers_idle(x);
	loop_run_once(x->loop, 0);
	assert_int_equal(w.calls, 0);
	free(c1);
	free(c2);
}

/* munged gone: a clear error, quickly, mapped to 503; never a hang. */
static void test_munged_stopped(void **state)
{
	struct fx *x = *state;
	struct gw_config *cfg;
	struct auth *a;
	struct auth_identity id;
	char mdir[160], sock[200], err[256], *text, *c;
	const char *code;
	uint64_t t0;
	int rv, status;

	SKIP_WITHOUT_MUNGE();
	snprintf(mdir, sizeof(mdir), "%s/munge-stopped", F.dir);
	assert_int_equal(munged_start(mdir), 0);
	mpath(sock, sizeof(sock), mdir, "sock");
	text = conf_text(sock, NULL);
	cfg = load_cfg(text);
	free(text);
	assert_int_equal(auth_new(x->loop, x->pool, cfg,
				  &(struct auth_opts){.munge_timeout_ms = 8000},
				  &a),
			 0);
	c = encode(mdir, "GET /v1/jobs");
	munged_stop(mdir);

	t0 = loop_clock_ms();
	rv = munge_user(x, a, c, "GET", "/v1/jobs", &id, err, sizeof(err));
	assert_int_equal(rv, -EHOSTDOWN);
	assert_true(loop_clock_ms() - t0 < 8000);
	assert_non_null(strstr(err, "cannot reach munged at"));
	assert_non_null(strstr(err, sock));
	auth_http_error(rv, &status, &code);
	assert_int_equal(status, 503);
	free(c);

	/* killed hard: a stale socket, connections refused (libmunge
	 * retries for ~2 s, then gives up) */
	assert_int_equal(munged_start(mdir), 0);
	c = encode(mdir, "GET /v1/jobs");
	{
		pid_t pid = munged_pid(mdir);
		int i;

		assert_true(pid > 0);
		kill(pid, SIGKILL);
		for (i = 0; i < 500 && !proc_gone(pid); i++)
			usleep(10000);
		assert_true(proc_gone(pid));
		assert_int_equal(access(sock, F_OK), 0); /* left behind */
	}
	t0 = loop_clock_ms();
	rv = munge_user(x, a, c, "GET", "/v1/jobs", &id, err, sizeof(err));
	assert_int_equal(rv, -EHOSTDOWN);
	assert_true(loop_clock_ms() - t0 < 8000);
	assert_non_null(strstr(err, "cannot reach munged at"));
	free(c);
	auth_free(a);
	gw_config_free(cfg);
}

/* munged frozen (SIGSTOP): libmunge would block ~10 s; the caller gets
 * -ETIMEDOUT after munge_timeout_ms, the loop never blocks meanwhile. */
static void test_munged_hung(void **state)
{
	struct fx *x = *state;
	struct gw_config *cfg;
	struct auth *a;
	struct loop_stats ls;
	char mdir[160], sock[200], err[256], *text, *c;
	const char *code;
	uint64_t t0, dt;
	pid_t pid;
	int rv, status;

	SKIP_WITHOUT_MUNGE();
	snprintf(mdir, sizeof(mdir), "%s/munge-hung", F.dir);
	assert_int_equal(munged_start(mdir), 0);
	mpath(sock, sizeof(sock), mdir, "sock");
	text = conf_text(sock, NULL);
	cfg = load_cfg(text);
	free(text);
	assert_int_equal(auth_new(x->loop, x->pool, cfg,
				  &(struct auth_opts){.munge_timeout_ms = 300},
				  &a),
			 0);
	c = encode(mdir, "GET /v1/jobs");
	pid = munged_pid(mdir);
	assert_true(pid > 0);
	assert_int_equal(kill(pid, SIGSTOP), 0);

	loop_stats_reset(x->loop);
	t0 = loop_clock_ms();
	{
		/* released inside the timeout's callback, worker still busy */
		struct inline_reader ir = {0};
		struct auth_munge_req *r = NULL;

		assert_int_equal(auth_munge_start(a, c, "GET", "/v1/jobs", NULL,
						  inline_cb, &ir, &r, err,
						  sizeof(err)),
				 0);
		run_until(x->loop, &ir.done);
		rv = ir.rv;
		assert_string_equal(ir.id.user, "");
		snprintf(err, sizeof(err), "%s", ir.err);
	}
	dt = loop_clock_ms() - t0;
	assert_int_equal(rv, -ETIMEDOUT);
	assert_true(dt >= 300);
	assert_true(dt < 3000);
	assert_non_null(strstr(err, "did not answer within 300 ms"));
	auth_http_error(rv, &status, &code);
	assert_int_equal(status, 503);
	/* the loop kept turning: no callback took long */
	loop_stats(x->loop, &ls);
	assert_true(ls.callback_max_ever_us < 200000);

	/* thaw: the worker's decode finishes and the request is freed */
	kill(pid, SIGCONT);
	auth_free(a);
	run_until_workers_idle(x);
	loop_run_once(x->loop, 0);
	munged_stop(mdir);
	free(c);
	gw_config_free(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_header),
	    cmocka_unit_test(test_http_error),
	    cmocka_unit_test_setup_teardown(test_bearer_good_and_cached, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_bearer_admin, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bearer_refused, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_bearer_alg_swap, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_cache_bounded_and_expiring,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_no_token_in_logs, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_mint, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ticket, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_munge_user, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_munge_root_admin_when_listed,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_munge_replay_mismatch_realm,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_munge_bad_input, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_node_munge, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_munge_wakes_task, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_munge_release_early, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_munged_stopped, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_munged_hung, setup, teardown),
	};

	log_init("test_auth");
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
