/*
 * store.c: SQLite in WAL mode owned by one store thread (see store.h).
 *
 * Lists (all singly linked through req->p_.next):
 *   pending  under lock: submitted, not yet taken by the store thread
 *   done     under lock: transaction ended, completion owed
 *   ready    loop thread: spliced off `done`, being delivered (a bounded
 *            number per loop turn)
 *
 * The store thread takes everything pending (up to max_batch, never
 * across a LOAD) as one batch: one BEGIN IMMEDIATE .. COMMIT for the whole
 * batch, so requests that arrived during the previous COMMIT's fsync share
 * the next one.  A storage error rolls the batch back and re-runs it one
 * request per transaction (see store.h).
 *
 * Every SQLite call is made on the store thread; sq_check() counts any
 * that is not (store_stats.off_thread_sqlite) and feeds the debug hook.
 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/magic.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define STORE_DEFAULT_BATCH 1024
#define STORE_BUSY_TIMEOUT_MS 5000
#define STORE_DELIVER_BUDGET 256
#define STORE_LAT_RING 1024
#define STORE_UPD_CACHE 24
#define STORE_LIST_DEFAULT 100
#define STORE_LIST_MAX 10000
#define LOAD_CHUNK 1024
#define LOAD_MAX_CHUNKS 4

/* ------------------------------------------------------------ tables */

#define STORE_OPS(X)                                                           \
	X(NONE, 0)                                                             \
	X(INSERT, 1)                                                           \
	X(UPDATE, 1)                                                           \
	X(GET, 0)                                                              \
	X(LIST, 0)                                                             \
	X(UNFINISHED, 0)                                                       \
	X(EVENT, 1)                                                            \
	X(USAGE, 0)                                                            \
	X(CRED_PUT, 1)                                                         \
	X(CRED_LIST, 0)                                                        \
	X(LOAD, 0)

enum store_op {
#define STORE_OP_ENUM_(name, w) OP_##name,
	STORE_OPS(STORE_OP_ENUM_)
#undef STORE_OP_ENUM_
};

static const char *const op_names[] = {
#define STORE_OP_NAME_(name, w) #name,
    STORE_OPS(STORE_OP_NAME_)
#undef STORE_OP_NAME_
};

static const bool op_writes[] = {
#define STORE_OP_W_(name, w) w,
    STORE_OPS(STORE_OP_W_)
#undef STORE_OP_W_
};

enum req_state { REQ_IDLE, REQ_QUEUED, REQ_DONE };

static const char *const state_names[] = {
#define STORE_STATE_NAME_(e, name, final) #name,
    STORE_JOB_STATES(STORE_STATE_NAME_)
#undef STORE_STATE_NAME_
};

static const bool state_final[] = {
#define STORE_STATE_FINAL_(e, name, final) final,
    STORE_JOB_STATES(STORE_STATE_FINAL_)
#undef STORE_STATE_FINAL_
};

enum ftype { FT_TEXT, FT_INT, FT_REAL, FT_BOOL, FT_STATE };

struct field {
	const char *col;
	enum ftype type;
	size_t off;
};

static const struct field fields[STORE_FI_COUNT_] = {
#define STORE_FIELD_DESC_(F, m, t)                                             \
	[STORE_FI_##F] = {#m, FT_##t, offsetof(struct store_job, m)},
    STORE_JOB_FIELDS(STORE_FIELD_DESC_)
#undef STORE_FIELD_DESC_
};

/* the X-macro's types must match the struct's members */
#define FT_IS_TEXT(m)                                                          \
	_Generic(((struct store_job *)0)->m, char * : 1, default : 0)
#define FT_IS_INT(m)                                                           \
	_Generic(((struct store_job *)0)->m, int64_t : 1, default : 0)
#define FT_IS_REAL(m)                                                          \
	_Generic(((struct store_job *)0)->m, double : 1, default : 0)
#define FT_IS_BOOL(m)                                                          \
	_Generic(((struct store_job *)0)->m, bool : 1, default : 0)
#define FT_IS_STATE(m)                                                         \
	_Generic(((struct store_job *)0)->m, enum store_job_state : 1,         \
		 default : 0)
#define STORE_FIELD_CHECK_(F, m, t)                                            \
	_Static_assert(FT_IS_##t(m), "struct store_job." #m " is not " #t);
STORE_JOB_FIELDS(STORE_FIELD_CHECK_)
#undef STORE_FIELD_CHECK_

/*
 * Schema migrations: migrations[i] takes user_version i to i + 1.  Never
 * edit one that has shipped; append.
 */
static const char *const migrations[STORE_SCHEMA_VERSION] = {
    /* 0 -> 1 */
    "CREATE TABLE jobs ("
    " id TEXT PRIMARY KEY NOT NULL,"
    " site TEXT NOT NULL,"
    " slurm_job_id INTEGER,"
    " user TEXT NOT NULL,"
    " tier TEXT,"
    " name TEXT,"
    " state TEXT NOT NULL,"
    " slurm_state TEXT,"
    " reason TEXT,"
    " exit_code INTEGER,"
    " signal INTEGER,"
    " request_body TEXT,"
    " idem_key TEXT,"
    " body_hash TEXT,"
    " cancel_requested INTEGER NOT NULL DEFAULT 0,"
    " ended_by TEXT,"
    " error_code TEXT,"
    " error_message TEXT,"
    " request_id TEXT,"
    " created_at INTEGER NOT NULL,"
    " updated_at INTEGER NOT NULL,"
    " cpu_seconds REAL NOT NULL DEFAULT 0,"
    " charge REAL NOT NULL DEFAULT 0,"
    " submit_attempts INTEGER NOT NULL DEFAULT 0,"
    " tag TEXT,"
    " intent TEXT,"
    " intent_at INTEGER"
    ");"
    "CREATE UNIQUE INDEX jobs_idem ON jobs(user, idem_key)"
    " WHERE idem_key IS NOT NULL;"
    "CREATE INDEX jobs_state ON jobs(state);"
    "CREATE INDEX jobs_user_created ON jobs(user, created_at);"
    "CREATE INDEX jobs_site_slurm ON jobs(site, slurm_job_id)"
    " WHERE slurm_job_id IS NOT NULL;"
    "CREATE TABLE events ("
    " id TEXT PRIMARY KEY NOT NULL,"
    " site TEXT,"
    " slurm_job_id INTEGER,"
    " gw_job TEXT,"
    " kind TEXT,"
    " body TEXT,"
    " received_at INTEGER NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE INDEX events_job ON events(site, slurm_job_id);",
    /* 1 -> 2: jwt-user sites, a token per (site, user) */
    "CREATE TABLE site_credentials ("
    " site TEXT NOT NULL,"
    " user TEXT NOT NULL,"
    " token TEXT NOT NULL,"
    " expires_at INTEGER NOT NULL,"
    " registered_at INTEGER NOT NULL,"
    " PRIMARY KEY (site, user)"
    ") WITHOUT ROWID;",
};

enum stmt_id {
	S_BEGIN,
	S_BEGIN_IMM,
	S_COMMIT,
	S_ROLLBACK,
	S_INS_JOB,
	S_GET_JOB,
	S_GET_IDEM,
	S_INS_EVENT,
	S_LIST,
	S_UNFIN,
	S_USAGE,
	S_ADD_USAGE,
	S_CRED_PUT,
	S_CRED_DEL,
	S_CRED_LIST,
	S_LOAD,
	S_LOAD_NOBODY,
	S_LOAD_BODY_UNFIN,
	S_COUNT_
};

/* ------------------------------------------------------------ objects */

struct upd_stmt {
	uint64_t key; /* fields | bit 63: with expect_state */
	sqlite3_stmt *s;
};

struct load_chunk {
	struct load_chunk *next;
	size_t n;
	struct store_job *v[LOAD_CHUNK];
};

struct load_ctx {
	unsigned flags;
	/* under st->lock */
	struct load_chunk *head, *tail;
	unsigned n_chunks;
	bool finished, abort;
	int rv;
};

struct store {
	struct loop *loop;
	char *path;
	int lock_fd;
	struct store_opts opts;
	pthread_t thread;
	bool thread_started;

	pthread_mutex_t lock;
	pthread_cond_t cond;	  /* the store thread waits for work */
	pthread_cond_t cond_back; /* open result, load chunks */
	/* under lock */
	struct store_req *pend_head, *pend_tail;
	unsigned n_pend;
	struct store_req *done_head, *done_tail;
	bool stopping, thread_idle;
	bool open_done;
	int open_rv;
	char open_err[512];
	uint64_t requests, commits, rows_committed, max_batch, read_txns,
	    failed_txns, commit_us_max, queue_wait_us_max, last_error_at;
	int last_error;
	uint32_t lat[STORE_LAT_RING];
	unsigned lat_n, lat_i;
	pthread_t self; /* the store thread, set by itself */
	atomic_uint_fast64_t off_thread;

	/* loop thread only */
	struct loop_async *async;
	struct store_req *ready_head, *ready_tail;
	atomic_uint in_flight; /* written by the loop thread only */
	bool holding;
	bool closed;

	/* store thread only */
	sqlite3 *db;
	sqlite3_stmt *stmts[S_COUNT_];
	struct upd_stmt upd[STORE_UPD_CACHE];
	unsigned n_upd, upd_next;
	int schema;
};

/* ------------------------------------------------------- small helpers */

const char *store_job_state_name(enum store_job_state s)
{
	if ((unsigned)s >= STORE_JOB_STATE_COUNT_)
		return "?";
	return state_names[s];
}

int store_job_state_parse(const char *name)
{
	int i;

	if (!name)
		return -1;
	for (i = 0; i < STORE_JOB_STATE_COUNT_; i++)
		if (!strcmp(name, state_names[i]))
			return i;
	return -1;
}

bool store_job_state_final(enum store_job_state s)
{
	return (unsigned)s < STORE_JOB_STATE_COUNT_ && state_final[s];
}

const char *store_job_field_name(enum store_job_field f)
{
	if ((unsigned)f >= STORE_FI_COUNT_)
		return "?";
	return fields[f].col;
}

static char **fstr(struct store_job *j, int i)
{
	return (char **)(void *)((char *)j + fields[i].off);
}

static const char *cfstr(const struct store_job *j, int i)
{
	return *(char *const *)(const void *)((const char *)j + fields[i].off);
}

static int64_t *fint(struct store_job *j, int i)
{
	return (int64_t *)(void *)((char *)j + fields[i].off);
}

static int64_t cfint(const struct store_job *j, int i)
{
	return *(const int64_t *)(const void *)((const char *)j +
						fields[i].off);
}

static double *freal(struct store_job *j, int i)
{
	return (double *)(void *)((char *)j + fields[i].off);
}

static double cfreal(const struct store_job *j, int i)
{
	return *(const double *)(const void *)((const char *)j + fields[i].off);
}

void store_job_init(struct store_job *j)
{
	memset(j, 0, sizeof(*j));
	j->slurm_job_id = STORE_NULL;
	j->exit_code = STORE_NULL;
	j->signal = STORE_NULL;
	j->intent_at = STORE_NULL;
	j->state = STORE_JOB_ACCEPTED;
}

void store_job_clear(struct store_job *j)
{
	int i;

	if (!j)
		return;
	for (i = 0; i < STORE_FI_COUNT_; i++)
		if (fields[i].type == FT_TEXT)
			free(*fstr(j, i));
	store_job_init(j);
}

void store_job_free(struct store_job *j)
{
	if (!j)
		return;
	store_job_clear(j);
	free(j);
}

/* Copy the fields in mask (ID always) of src into a new job. */
static struct store_job *job_dup_fields(const struct store_job *src,
					uint64_t mask)
{
	struct store_job *j = malloc(sizeof(*j));
	int i;

	if (!j)
		return NULL;
	store_job_init(j);
	mask |= STORE_F(ID);
	for (i = 0; i < STORE_FI_COUNT_; i++) {
		if (!(mask & (UINT64_C(1) << i)))
			continue;
		switch (fields[i].type) {
		case FT_TEXT:
			if (cfstr(src, i)) {
				*fstr(j, i) = strdup(cfstr(src, i));
				if (!*fstr(j, i)) {
					store_job_free(j);
					return NULL;
				}
			}
			break;
		case FT_INT:
			*fint(j, i) = cfint(src, i);
			break;
		case FT_REAL:
			*freal(j, i) = cfreal(src, i);
			break;
		case FT_BOOL:
			j->cancel_requested = src->cancel_requested;
			break;
		case FT_STATE:
			j->state = src->state;
			break;
		}
	}
	j->seq = src->seq;
	return j;
}

struct store_job *store_job_dup(const struct store_job *j)
{
	return job_dup_fields(j, STORE_F_ALL);
}

static bool streq_null(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return !strcmp(a, b);
}

uint64_t store_job_diff(const struct store_job *a, const struct store_job *b)
{
	uint64_t d = 0;
	bool same = true;
	int i;

	for (i = 0; i < STORE_FI_COUNT_; i++) {
		switch (fields[i].type) {
		case FT_TEXT:
			same = streq_null(cfstr(a, i), cfstr(b, i));
			break;
		case FT_INT:
			same = cfint(a, i) == cfint(b, i);
			break;
		case FT_REAL:
			same = cfreal(a, i) == cfreal(b, i);
			break;
		case FT_BOOL:
			same = a->cancel_requested == b->cancel_requested;
			break;
		case FT_STATE:
			same = a->state == b->state;
			break;
		}
		if (!same)
			d |= UINT64_C(1) << i;
	}
	return d;
}

static void event_free(struct store_event *e)
{
	if (!e)
		return;
	free(e->id);
	free(e->site);
	free(e->gw_job);
	free(e->kind);
	free(e->body);
	free(e);
}

static int dup_str(char **dst, const char *src)
{
	*dst = NULL;
	if (!src)
		return 0;
	*dst = strdup(src);
	return *dst ? 0 : -ENOMEM;
}

static struct store_event *event_dup(const struct store_event *src)
{
	struct store_event *e = calloc(1, sizeof(*e));

	if (!e)
		return NULL;
	e->slurm_job_id = src->slurm_job_id;
	e->received_at = src->received_at ? src->received_at : time(NULL);
	if (dup_str(&e->id, src->id) || dup_str(&e->site, src->site) ||
	    dup_str(&e->gw_job, src->gw_job) || dup_str(&e->kind, src->kind) ||
	    dup_str(&e->body, src->body)) {
		event_free(e);
		return NULL;
	}
	return e;
}

bool store_error_unavailable(int rv)
{
	return rv == -ENOSPC || rv == -EIO || rv == -EROFS || rv == -EBUSY;
}

const char *store_strerror(int rv)
{
	switch (rv) {
	case 0:
		return "ok";
	case -EINVAL:
		return "invalid argument";
	case -ENOMEM:
		return "out of memory";
	case -ESHUTDOWN:
		return "store closing";
	case -EBUSY:
		return "busy (database locked, or request in flight)";
	case -ENOENT:
		return "no such job";
	case -EEXIST:
		return "idempotency mismatch";
	case -ENOTUNIQ:
		return "job id exists";
	case -ESTALE:
		return "state changed";
	case -ENOSPC:
		return "disk full";
	case -EIO:
		return "I/O error";
	case -EROFS:
		return "read-only storage";
	case -EREMOTE:
		return "network filesystem";
	case -EPROTO:
		return "database error";
	case -E2BIG:
		return "value too big";
	default:
		return "error";
	}
}

/* --------------------------------------------------- network filesystems */

#ifndef GFS2_MAGIC
#define GFS2_MAGIC 0x01161970
#endif
#define LUSTRE_MAGIC_ 0x0BD00BD0
#define GPFS_MAGIC_ 0x47504653
#define ORANGEFS_MAGIC_ 0x20030528
#define BEEGFS_MAGIC_ 0x19830326

const char *store_network_fs_name(unsigned long f_type)
{
	switch (f_type) {
	case NFS_SUPER_MAGIC:
		return "nfs";
	case SMB_SUPER_MAGIC:
		return "smb";
	case CIFS_SUPER_MAGIC:
		return "cifs";
	case SMB2_SUPER_MAGIC:
		return "smb2";
	case FUSE_SUPER_MAGIC:
		return "fuse";
	case V9FS_MAGIC:
		return "9p";
	case AFS_SUPER_MAGIC:
	case AFS_FS_MAGIC:
		return "afs";
	case CODA_SUPER_MAGIC:
		return "coda";
	case NCP_SUPER_MAGIC:
		return "ncp";
	case CEPH_SUPER_MAGIC:
		return "ceph";
	case GFS2_MAGIC:
		return "gfs2";
	case OCFS2_SUPER_MAGIC:
		return "ocfs2";
	case LUSTRE_MAGIC_:
		return "lustre";
	case GPFS_MAGIC_:
		return "gpfs";
	case ORANGEFS_MAGIC_:
		return "orangefs";
	case BEEGFS_MAGIC_:
		return "beegfs";
	default:
		return NULL;
	}
}

int store_check_local_fs(const char *path, char *err, size_t errlen)
{
	char dir[4096];
	const char *slash, *name;
	struct statfs sfs;
	size_t n;

	if (!path || !*path) {
		if (err)
			snprintf(err, errlen, "empty path");
		return -EINVAL;
	}
	slash = strrchr(path, '/');
	if (!slash) {
		snprintf(dir, sizeof(dir), ".");
	} else {
		n = (size_t)(slash - path);
		if (n == 0)
			n = 1; /* "/x" */
		if (n >= sizeof(dir)) {
			if (err)
				snprintf(err, errlen, "path too long: %s",
					 path);
			return -ENAMETOOLONG;
		}
		memcpy(dir, path, n);
		dir[n] = '\0';
	}
	if (statfs(dir, &sfs) < 0) {
		int e = errno;

		if (err)
			snprintf(err, errlen, "statfs %s: %s", dir,
				 strerror(e));
		return -e;
	}
	name = store_network_fs_name((unsigned long)sfs.f_type);
	if (name) {
		if (err)
			snprintf(err, errlen,
				 "%s is on a network filesystem (%s, f_type "
				 "0x%lx): SQLite's locks and WAL need a local "
				 "disk; put state_dir on one",
				 path, name, (unsigned long)sfs.f_type);
		return -EREMOTE;
	}
	return 0;
}

/* ------------------------------------------------------- SQLite wrapper */

static uint64_t now_us(void)
{
	return loop_clock_us();
}

static void sq_check(struct store *st, const char *what)
{
	if (!pthread_equal(pthread_self(), st->self))
		atomic_fetch_add(&st->off_thread, 1);
	if (st->opts.trace)
		st->opts.trace(st->opts.trace_arg, what);
}

static int trace_cb(unsigned type, void *ctx, void *p, void *x)
{
	struct store *st = ctx;

	if (type == SQLITE_TRACE_STMT)
		sq_check(st, x ? (const char *)x : "?");
	return 0;
}

static int sq_errno(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_ROW:
	case SQLITE_DONE:
		return 0;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_IOERR:
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
	case SQLITE_CANTOPEN:
		return -EIO;
	case SQLITE_READONLY:
		return -EROFS;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
	case SQLITE_PROTOCOL:
		return -EBUSY;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_TOOBIG:
		return -E2BIG;
	case SQLITE_CONSTRAINT:
		return -EINVAL;
	default:
		return -EPROTO;
	}
}

/* Log a failed SQLite call with its statement and message; map it. */
#define sq_fail(st, rc, stmt, what)                                            \
	sq_fail_((st), (rc), (stmt), (what), __LINE__)
static int sq_fail_(struct store *st, int rc, sqlite3_stmt *stmt,
		    const char *what, int line)
{
	int rv = sq_errno(rc);
	const char *sql = stmt ? sqlite3_sql(stmt) : NULL;

	log_err("store %s: %s failed (line %d): sqlite %d %s: %s%s%.200s",
		st->path, what, line, rc, sqlite3_errstr(rc),
		st->db ? sqlite3_errmsg(st->db) : "-",
		sql ? "; statement: " : "", sql ? sql : "");
	if (store_error_unavailable(rv) || rv == -ENOMEM || rv == -EPROTO) {
		pthread_mutex_lock(&st->lock);
		st->last_error = rv;
		st->last_error_at = loop_clock_ms();
		pthread_mutex_unlock(&st->lock);
	}
	return rv;
}

static int sq_prepare(struct store *st, const char *sql, sqlite3_stmt **out)
{
	int rc;

	sq_check(st, "prepare");
	rc = sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, out,
				NULL);
	if (rc != SQLITE_OK) {
		log_err("store %s: prepare failed: sqlite %d %s: %s; "
			"statement: %.300s",
			st->path, rc, sqlite3_errstr(rc),
			sqlite3_errmsg(st->db), sql);
		*out = NULL;
		return sq_errno(rc) ? sq_errno(rc) : -EPROTO;
	}
	return 0;
}

static void sq_reset(sqlite3_stmt *s)
{
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
}

static int bind_text(sqlite3_stmt *s, int idx, const char *v)
{
	if (!v)
		return sqlite3_bind_null(s, idx);
	return sqlite3_bind_text(s, idx, v, -1, SQLITE_STATIC);
}

static int bind_int(sqlite3_stmt *s, int idx, int64_t v)
{
	if (v == STORE_NULL)
		return sqlite3_bind_null(s, idx);
	return sqlite3_bind_int64(s, idx, v);
}

static int bind_field(sqlite3_stmt *s, int idx, const struct store_job *j,
		      int i)
{
	switch (fields[i].type) {
	case FT_TEXT:
		return bind_text(s, idx, cfstr(j, i));
	case FT_INT:
		return bind_int(s, idx, cfint(j, i));
	case FT_REAL:
		return sqlite3_bind_double(s, idx, cfreal(j, i));
	case FT_BOOL:
		return sqlite3_bind_int(s, idx, j->cancel_requested ? 1 : 0);
	case FT_STATE:
		return bind_text(s, idx, store_job_state_name(j->state));
	}
	return SQLITE_MISUSE;
}

/*
 * A row of a SELECT of the job columns (then rowid) into a new job.
 * 0, -ENOMEM, or -EPROTO for a state this code does not know.
 */
static int read_row(struct store *st, sqlite3_stmt *s, struct store_job **out)
{
	struct store_job *j = malloc(sizeof(*j));
	const unsigned char *txt;
	int i, n, state;

	*out = NULL;
	if (!j)
		return -ENOMEM;
	store_job_init(j);
	for (i = 0; i < STORE_FI_COUNT_; i++) {
		int ct = sqlite3_column_type(s, i);

		switch (fields[i].type) {
		case FT_TEXT:
			if (ct == SQLITE_NULL)
				break;
			txt = sqlite3_column_text(s, i);
			n = sqlite3_column_bytes(s, i);
			if (!txt)
				goto out_nomem;
			*fstr(j, i) = malloc((size_t)n + 1);
			if (!*fstr(j, i))
				goto out_nomem;
			memcpy(*fstr(j, i), txt, (size_t)n);
			(*fstr(j, i))[n] = '\0';
			break;
		case FT_INT:
			*fint(j, i) = ct == SQLITE_NULL
					  ? STORE_NULL
					  : sqlite3_column_int64(s, i);
			break;
		case FT_REAL:
			*freal(j, i) = sqlite3_column_double(s, i);
			break;
		case FT_BOOL:
			j->cancel_requested = sqlite3_column_int(s, i) != 0;
			break;
		case FT_STATE:
			state = store_job_state_parse(
			    (const char *)sqlite3_column_text(s, i));
			if (state < 0) {
				log_err(
				    "store %s: job %s has an unknown state "
				    "'%.40s'",
				    st->path,
				    (const char *)sqlite3_column_text(s, 0),
				    (const char *)sqlite3_column_text(s, i));
				store_job_free(j);
				return -EPROTO;
			}
			j->state = (enum store_job_state)state;
			break;
		}
	}
	j->seq = sqlite3_column_int64(s, STORE_FI_COUNT_);
	*out = j;
	return 0;

out_nomem:
	store_job_free(j);
	return -ENOMEM;
}

/* ------------------------------------------------------ open / close */

static int exec_sql(struct store *st, const char *sql, char *err, size_t errlen)
{
	char *msg = NULL;
	int rc;

	sq_check(st, "exec");
	rc = sqlite3_exec(st->db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "%s: %.60s: sqlite %d %s: %s", st->path,
			 sql, rc, sqlite3_errstr(rc), msg ? msg : "-");
		sqlite3_free(msg);
		return sq_errno(rc) ? sq_errno(rc) : -EPROTO;
	}
	return 0;
}

static int pragma_int(struct store *st, const char *sql, int *out, char *err,
		      size_t errlen)
{
	sqlite3_stmt *s;
	int rc, rv;

	rv = sq_prepare(st, sql, &s);
	if (rv) {
		snprintf(err, errlen, "%s: %s: %s", st->path, sql,
			 sqlite3_errmsg(st->db));
		return rv;
	}
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*out = sqlite3_column_int(s, 0);
		rv = 0;
	} else {
		snprintf(err, errlen, "%s: %s: sqlite %d %s: %s", st->path, sql,
			 rc, sqlite3_errstr(rc), sqlite3_errmsg(st->db));
		rv = sq_errno(rc) ? sq_errno(rc) : -EPROTO;
	}
	sqlite3_finalize(s);
	return rv;
}

static int migrate(struct store *st, char *err, size_t errlen)
{
	char sql[64];
	int v, rv, i;

	rv = pragma_int(st, "PRAGMA user_version", &v, err, errlen);
	if (rv)
		return rv;
	if (v > STORE_SCHEMA_VERSION) {
		snprintf(err, errlen,
			 "%s: database schema version %d is newer than this "
			 "tiergated's (%d): refusing to touch it",
			 st->path, v, STORE_SCHEMA_VERSION);
		return -EPROTO;
	}
	for (i = v; i < STORE_SCHEMA_VERSION; i++) {
		rv = exec_sql(st, "BEGIN IMMEDIATE", err, errlen);
		if (rv)
			return rv;
		rv = exec_sql(st, migrations[i], err, errlen);
		if (!rv) {
			snprintf(sql, sizeof(sql), "PRAGMA user_version = %d",
				 i + 1);
			rv = exec_sql(st, sql, err, errlen);
		}
		if (!rv)
			rv = exec_sql(st, "COMMIT", err, errlen);
		if (rv) {
			char ignore[64];

			if (!sqlite3_get_autocommit(st->db))
				exec_sql(st, "ROLLBACK", ignore,
					 sizeof(ignore));
			return rv;
		}
		log_info("store %s: schema migrated %d -> %d", st->path, i,
			 i + 1);
	}
	st->schema = STORE_SCHEMA_VERSION;
	return 0;
}

/* "id, site, ..., intent_at, rowid" with `body` for request_body */
static int cols_sql(char *buf, size_t len, const char *body)
{
	size_t off = 0;
	int i, n;

	for (i = 0; i < STORE_FI_COUNT_; i++) {
		const char *c = fields[i].col;

		if (i == STORE_FI_REQUEST_BODY)
			c = body;
		n = snprintf(buf + off, len - off, "%s, ", c);
		if (n < 0 || (size_t)n >= len - off)
			return -ENAMETOOLONG;
		off += (size_t)n;
	}
	n = snprintf(buf + off, len - off, "rowid");
	return n < 0 || (size_t)n >= len - off ? -ENAMETOOLONG : 0;
}

static int prepare_all(struct store *st, char *err, size_t errlen)
{
	char cols[1024], cols_nb[1024], cols_bu[1536], sql[4096], vals[512],
	    states[256], body_unfin[512];
	size_t off = 0, soff = 0;
	int i, rv, n;

	for (i = 0; i < STORE_FI_COUNT_; i++) {
		n = snprintf(vals + off, sizeof(vals) - off, "%s?%d",
			     i ? ", " : "", i + 1);
		off += (size_t)n;
	}
	states[0] = '\0';
	for (i = 0; i < STORE_JOB_STATE_COUNT_; i++) {
		if (state_final[i])
			continue;
		n = snprintf(states + soff, sizeof(states) - soff, "%s'%s'",
			     soff ? ", " : "", state_names[i]);
		soff += (size_t)n;
	}
	snprintf(body_unfin, sizeof(body_unfin),
		 "CASE WHEN state IN (%s) THEN request_body END", states);
	if (cols_sql(cols, sizeof(cols), "request_body") ||
	    cols_sql(cols_nb, sizeof(cols_nb), "NULL") ||
	    cols_sql(cols_bu, sizeof(cols_bu), body_unfin))
		return -ENAMETOOLONG;

	for (i = 0; i < S_COUNT_; i++) {
		const char *t = NULL;

		switch ((enum stmt_id)i) {
		case S_INS_JOB:
			/* the column list without ", rowid" */
			snprintf(sql, sizeof(sql),
				 "INSERT INTO jobs (%.*s) VALUES (%s)",
				 (int)(strlen(cols) - strlen(", rowid")), cols,
				 vals);
			t = sql;
			break;
		case S_GET_JOB:
			snprintf(sql, sizeof(sql),
				 "SELECT %s FROM jobs WHERE id = ?1", cols);
			t = sql;
			break;
		case S_GET_IDEM:
			snprintf(sql, sizeof(sql),
				 "SELECT %s FROM jobs WHERE user = ?1 AND "
				 "idem_key = ?2",
				 cols);
			t = sql;
			break;
		case S_LIST:
			snprintf(sql, sizeof(sql),
				 "SELECT %s FROM jobs WHERE (?1 IS NULL OR "
				 "user = ?1) AND (?2 IS NULL OR site = ?2) AND "
				 "(?3 IS NULL OR state = ?3) ORDER BY rowid "
				 "DESC LIMIT ?4",
				 cols_nb);
			t = sql;
			break;
		case S_UNFIN:
			snprintf(sql, sizeof(sql),
				 "SELECT %s FROM jobs WHERE state IN (%s) "
				 "ORDER BY rowid",
				 cols, states);
			t = sql;
			break;
		case S_LOAD:
			snprintf(sql, sizeof(sql),
				 "SELECT %s FROM jobs ORDER BY rowid", cols);
			t = sql;
			break;
		case S_LOAD_NOBODY:
			snprintf(sql, sizeof(sql),
				 "SELECT %s FROM jobs ORDER BY rowid", cols_nb);
			t = sql;
			break;
		case S_LOAD_BODY_UNFIN:
			snprintf(sql, sizeof(sql),
				 "SELECT %s FROM jobs ORDER BY rowid", cols_bu);
			t = sql;
			break;
		case S_BEGIN:
			t = "BEGIN";
			break;
		case S_BEGIN_IMM:
			t = "BEGIN IMMEDIATE";
			break;
		case S_COMMIT:
			t = "COMMIT";
			break;
		case S_ROLLBACK:
			t = "ROLLBACK";
			break;
		case S_INS_EVENT:
			t = "INSERT OR IGNORE INTO events (id, site, "
			    "slurm_job_id, gw_job, kind, body, received_at) "
			    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
			break;
		case S_USAGE:
			t = "SELECT user, tier, total(cpu_seconds), "
			    "total(charge), count(*) FROM jobs WHERE (?1 IS "
			    "NULL OR user = ?1) AND created_at >= ?2 GROUP BY "
			    "user, tier ORDER BY user, tier";
			break;
		case S_ADD_USAGE:
			t = "UPDATE jobs SET cpu_seconds = cpu_seconds + ?2, "
			    "charge = charge + ?3 WHERE id = ?1";
			break;
		case S_CRED_PUT:
			t = "INSERT INTO site_credentials (site, user, token, "
			    "expires_at, registered_at) VALUES (?1, ?2, ?3, "
			    "?4, ?5) ON CONFLICT (site, user) DO UPDATE SET "
			    "token = excluded.token, expires_at = "
			    "excluded.expires_at, registered_at = "
			    "excluded.registered_at";
			break;
		case S_CRED_DEL:
			t = "DELETE FROM site_credentials WHERE site = ?1 AND "
			    "user = ?2";
			break;
		case S_CRED_LIST:
			t = "SELECT site, user, token, expires_at, "
			    "registered_at FROM site_credentials ORDER BY "
			    "site, "
			    "user";
			break;
		case S_COUNT_:
			t = "";
			break;
		}
		rv = sq_prepare(st, t, &st->stmts[i]);
		if (rv) {
			snprintf(err, errlen, "%s: cannot prepare: %s",
				 st->path, sqlite3_errmsg(st->db));
			return rv;
		}
	}
	return 0;
}

static void db_close(struct store *st)
{
	unsigned i;
	int rc;

	if (!st->db)
		return;
	sq_check(st, "close");
	for (i = 0; i < S_COUNT_; i++)
		sqlite3_finalize(st->stmts[i]);
	for (i = 0; i < st->n_upd; i++)
		sqlite3_finalize(st->upd[i].s);
	rc = sqlite3_close(st->db);
	if (rc != SQLITE_OK)
		log_err("store %s: close: sqlite %d %s", st->path, rc,
			sqlite3_errstr(rc));
	st->db = NULL;
}

static int db_open(struct store *st, char *err, size_t errlen)
{
	int rc, rv;
	sqlite3_stmt *s;
	const char *mode;

	sq_check(st, "open");
	rc = sqlite3_open_v2(st->path, &st->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				 SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE,
			     NULL);
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "cannot open %s: sqlite %d %s: %s",
			 st->path, rc, sqlite3_errstr(rc),
			 st->db ? sqlite3_errmsg(st->db) : "-");
		rv = sq_errno(rc) ? sq_errno(rc) : -EIO;
		goto out_close;
	}
	sqlite3_extended_result_codes(st->db, 1);
	sqlite3_busy_timeout(st->db, STORE_BUSY_TIMEOUT_MS);
	sqlite3_trace_v2(st->db, SQLITE_TRACE_STMT, trace_cb, st);

	rv = sq_prepare(st, "PRAGMA journal_mode = WAL", &s);
	if (rv) {
		snprintf(err, errlen, "%s: not a database? %s", st->path,
			 sqlite3_errmsg(st->db));
		goto out_close;
	}
	rc = sqlite3_step(s);
	mode =
	    rc == SQLITE_ROW ? (const char *)sqlite3_column_text(s, 0) : NULL;
	if (!mode || strcmp(mode, "wal")) {
		snprintf(err, errlen,
			 "%s: cannot switch to WAL mode (got %s): sqlite %d "
			 "%s: %s",
			 st->path, mode ? mode : "nothing", rc,
			 sqlite3_errstr(rc), sqlite3_errmsg(st->db));
		rv = rc == SQLITE_ROW ? -EPROTO
				      : (sq_errno(rc) ? sq_errno(rc) : -EIO);
		sqlite3_finalize(s);
		goto out_close;
	}
	sqlite3_finalize(s);
	/*
	 * FULL: in WAL mode NORMAL skips the fsync at COMMIT; a job the API
	 * said it accepted must survive a power loss.
	 */
	rv = exec_sql(st,
		      "PRAGMA synchronous = FULL;"
		      "PRAGMA foreign_keys = OFF;"
		      "PRAGMA temp_store = MEMORY;"
		      "PRAGMA cache_size = -32768;"
		      "PRAGMA journal_size_limit = 67108864;",
		      err, errlen);
	if (rv)
		goto out_close;
	rv = migrate(st, err, errlen);
	if (rv)
		goto out_close;
	rv = prepare_all(st, err, errlen);
	if (rv)
		goto out_close;
	return 0;

out_close:
	db_close(st);
	return rv;
}

/* ------------------------------------------------------ the operations */

static int jobs_push(struct store_req *r, struct store_job *j, size_t *cap)
{
	if (r->n_jobs == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;
		struct store_job **v = realloc(r->jobs, ncap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		r->jobs = v;
		*cap = ncap;
	}
	r->jobs[r->n_jobs++] = j;
	return 0;
}

static int read_rows(struct store *st, sqlite3_stmt *s, struct store_req *r,
		     const char *what)
{
	struct store_job *j;
	size_t cap = 0;
	int rc, rv = 0;

	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		rv = read_row(st, s, &j);
		if (!rv && (rv = jobs_push(r, j, &cap)))
			store_job_free(j);
		if (rv)
			break;
	}
	if (!rv && rc != SQLITE_DONE)
		rv = sq_fail(st, rc, s, what);
	sq_reset(s);
	return rv;
}

/* The row of job `id` into *out, or -ENOENT. */
static int get_job(struct store *st, const char *id, struct store_job **out)
{
	sqlite3_stmt *s = st->stmts[S_GET_JOB];
	int rc, rv;

	*out = NULL;
	bind_text(s, 1, id);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		rv = read_row(st, s, out);
	else if (rc == SQLITE_DONE)
		rv = -ENOENT;
	else
		rv = sq_fail(st, rc, s, "get job");
	sq_reset(s);
	return rv;
}

static bool same_request(const struct store_job *old, const struct store_job *j)
{
	if (old->body_hash && j->body_hash)
		return !strcmp(old->body_hash, j->body_hash);
	return streq_null(old->request_body, j->request_body);
}

static int op_insert(struct store *st, struct store_req *r)
{
	const struct store_job *j = r->p_.job;
	struct store_job *old = NULL;
	sqlite3_stmt *s;
	int rc, rv, i;

	if (j->idem_key) {
		s = st->stmts[S_GET_IDEM];
		bind_text(s, 1, j->user);
		bind_text(s, 2, j->idem_key);
		rc = sqlite3_step(s);
		if (rc == SQLITE_ROW)
			rv = read_row(st, s, &old);
		else if (rc == SQLITE_DONE)
			rv = 0;
		else
			rv = sq_fail(st, rc, s, "idempotency lookup");
		sq_reset(s);
		if (rv)
			return rv;
		if (old) {
			r->job = old;
			if (same_request(old, j)) {
				r->existed = true;
				return 0;
			}
			return -EEXIST;
		}
	}
	s = st->stmts[S_INS_JOB];
	for (i = 0; i < STORE_FI_COUNT_; i++)
		bind_field(s, i + 1, j, i);
	rc = sqlite3_step(s);
	if (rc == SQLITE_DONE) {
		sq_reset(s);
		r->seq = sqlite3_last_insert_rowid(st->db);
		return 0;
	}
	if ((rc & 0xff) != SQLITE_CONSTRAINT) {
		rv = sq_fail(st, rc, s, "insert job");
		sq_reset(s);
		return rv;
	}
	/* a constraint changes nothing: say which one */
	log_warn("store %s: insert job %s: %s", st->path, j->id,
		 sqlite3_errmsg(st->db));
	sq_reset(s);
	if (rc == SQLITE_CONSTRAINT_NOTNULL)
		return -EINVAL;
	rv = get_job(st, j->id, &old);
	if (rv == 0) {
		store_job_free(old);
		return -ENOTUNIQ;
	}
	return rv == -ENOENT ? -EEXIST : rv;
}

/* An UPDATE for (fields, with expect) from the small statement cache. */
static int upd_stmt(struct store *st, uint64_t fields_, bool expect,
		    sqlite3_stmt **out)
{
	uint64_t key = fields_ | (expect ? UINT64_C(1) << 63 : 0);
	char sql[2048];
	size_t off;
	unsigned i;
	int n, idx = 1, rv;
	struct upd_stmt *u;

	for (i = 0; i < st->n_upd; i++) {
		if (st->upd[i].key == key) {
			*out = st->upd[i].s;
			return 0;
		}
	}
	off = (size_t)snprintf(sql, sizeof(sql), "UPDATE jobs SET ");
	for (i = 0; i < STORE_FI_COUNT_; i++) {
		if (!(fields_ & (UINT64_C(1) << i)))
			continue;
		n = snprintf(sql + off, sizeof(sql) - off, "%s%s = ?%d",
			     idx > 1 ? ", " : "", fields[i].col, idx);
		off += (size_t)n;
		idx++;
	}
	n = snprintf(sql + off, sizeof(sql) - off, " WHERE id = ?%d", idx);
	off += (size_t)n;
	if (expect)
		snprintf(sql + off, sizeof(sql) - off, " AND state = ?%d",
			 idx + 1);
	if (st->n_upd < STORE_UPD_CACHE) {
		u = &st->upd[st->n_upd++];
	} else {
		u = &st->upd[st->upd_next];
		st->upd_next = (st->upd_next + 1) % STORE_UPD_CACHE;
		sqlite3_finalize(u->s);
		u->s = NULL;
	}
	rv = sq_prepare(st, sql, &u->s);
	if (rv) {
		/* drop the slot */
		*u = st->upd[--st->n_upd];
		if (st->upd_next >= st->n_upd)
			st->upd_next = 0;
		return rv;
	}
	u->key = key;
	*out = u->s;
	return 0;
}

static int run_update(struct store *st, const struct store_job *j,
		      uint64_t fields_, int expect, struct store_job **current)
{
	sqlite3_stmt *s;
	int rc, rv, i, idx = 1;

	*current = NULL;
	rv = upd_stmt(st, fields_, expect >= 0, &s);
	if (rv)
		return rv;
	for (i = 0; i < STORE_FI_COUNT_; i++)
		if (fields_ & (UINT64_C(1) << i))
			bind_field(s, idx++, j, i);
	bind_text(s, idx, j->id);
	if (expect >= 0)
		bind_text(s, idx + 1,
			  store_job_state_name((enum store_job_state)expect));
	rc = sqlite3_step(s);
	if (rc != SQLITE_DONE) {
		if ((rc & 0xff) == SQLITE_CONSTRAINT) {
			log_warn("store %s: update job %s: %s", st->path, j->id,
				 sqlite3_errmsg(st->db));
			rv = -EINVAL;
		} else {
			rv = sq_fail(st, rc, s, "update job");
		}
		sq_reset(s);
		return rv;
	}
	sq_reset(s);
	if (sqlite3_changes(st->db) > 0)
		return 0;
	rv = get_job(st, j->id, current);
	if (rv)
		return rv; /* -ENOENT, or a storage error */
	return -ESTALE;
}

static int op_update(struct store *st, struct store_req *r)
{
	return run_update(st, r->p_.job, r->p_.fields, r->p_.expect, &r->job);
}

static int op_get(struct store *st, struct store_req *r)
{
	return get_job(st, r->p_.job->id, &r->job);
}

static int op_list(struct store *st, struct store_req *r)
{
	sqlite3_stmt *s = st->stmts[S_LIST];

	bind_text(s, 1, r->p_.user);
	bind_text(s, 2, r->p_.site);
	bind_text(s, 3,
		  r->p_.fstate >= 0
		      ? store_job_state_name((enum store_job_state)r->p_.fstate)
		      : NULL);
	sqlite3_bind_int64(s, 4, r->p_.limit);
	return read_rows(st, s, r, "list jobs");
}

static int op_unfinished(struct store *st, struct store_req *r)
{
	return read_rows(st, st->stmts[S_UNFIN], r, "unfinished jobs");
}

#define USAGE_FIELDS (STORE_F(CPU_SECONDS) | STORE_F(CHARGE))

static int op_event(struct store *st, struct store_req *r)
{
	const struct store_event *e = r->p_.event;
	sqlite3_stmt *s = st->stmts[S_INS_EVENT];
	int rc, rv;

	bind_text(s, 1, e->id);
	bind_text(s, 2, e->site);
	bind_int(s, 3, e->slurm_job_id);
	bind_text(s, 4, e->gw_job);
	bind_text(s, 5, e->kind);
	bind_text(s, 6, e->body);
	sqlite3_bind_int64(s, 7, e->received_at);
	rc = sqlite3_step(s);
	if (rc != SQLITE_DONE) {
		rv = sq_fail(st, rc, s, "insert event");
		sq_reset(s);
		return rv;
	}
	sq_reset(s);
	if (sqlite3_changes(st->db) == 0) {
		r->duplicate = true;
		return 0;
	}
	if (!r->p_.job)
		return 0;
	rv = 0;
	if (r->p_.fields & USAGE_FIELDS) {
		/* added, not set: two events of a job may be in flight */
		s = st->stmts[S_ADD_USAGE];
		bind_text(s, 1, r->p_.job->id);
		sqlite3_bind_double(s, 2, r->p_.job->cpu_seconds);
		sqlite3_bind_double(s, 3, r->p_.job->charge);
		rc = sqlite3_step(s);
		if (rc != SQLITE_DONE)
			rv = sq_fail(st, rc, s, "add usage");
		else if (sqlite3_changes(st->db) == 0)
			rv = -ENOENT;
		sq_reset(s);
	}
	if (!rv && (r->p_.fields & ~USAGE_FIELDS))
		rv = run_update(st, r->p_.job, r->p_.fields & ~USAGE_FIELDS, -1,
				&r->job);
	store_job_free(r->job);
	r->job = NULL;
	if (rv == -ENOENT) {
		r->job_missing = true;
		return 0;
	}
	/*
	 * A request-level failure after the event was stored would leave
	 * the event without its effect: make it a batch failure (the batch
	 * is rolled back and this request re-run alone, failing alone).
	 */
	return rv == -EINVAL ? -EPROTO : rv;
}

static int op_usage(struct store *st, struct store_req *r)
{
	sqlite3_stmt *s = st->stmts[S_USAGE];
	size_t cap = 0;
	int rc, rv = 0;

	bind_text(s, 1, r->p_.user);
	sqlite3_bind_int64(s, 2, r->p_.since);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_usage *u;

		if (r->n_usage == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			struct store_usage *v =
			    realloc(r->usage, ncap * sizeof(*v));

			if (!v) {
				rv = -ENOMEM;
				break;
			}
			r->usage = v;
			cap = ncap;
		}
		u = &r->usage[r->n_usage];
		memset(u, 0, sizeof(*u));
		if (dup_str(&u->user,
			    (const char *)sqlite3_column_text(s, 0)) ||
		    dup_str(&u->tier,
			    (const char *)sqlite3_column_text(s, 1))) {
			free(u->user);
			rv = -ENOMEM;
			break;
		}
		u->cpu_seconds = sqlite3_column_double(s, 2);
		u->charge = sqlite3_column_double(s, 3);
		u->jobs = sqlite3_column_int64(s, 4);
		r->n_usage++;
	}
	if (!rv && rc != SQLITE_DONE)
		rv = sq_fail(st, rc, s, "usage");
	sq_reset(s);
	return rv;
}

/* Token NULL: delete (-ENOENT when there was none). */
static int op_cred_put(struct store *st, struct store_req *r)
{
	const struct store_credential *c = r->p_.cred;
	sqlite3_stmt *s = st->stmts[c->token ? S_CRED_PUT : S_CRED_DEL];
	int rc, rv = 0;

	bind_text(s, 1, c->site);
	bind_text(s, 2, c->user);
	if (c->token) {
		bind_text(s, 3, c->token);
		sqlite3_bind_int64(s, 4, c->expires_at);
		sqlite3_bind_int64(s, 5, c->registered_at);
	}
	rc = sqlite3_step(s);
	if (rc != SQLITE_DONE)
		rv = sq_fail(st, rc, s,
			     c->token ? "put credential" : "delete credential");
	else if (!c->token && sqlite3_changes(st->db) == 0)
		rv = -ENOENT;
	sq_reset(s);
	return rv;
}

static int op_cred_list(struct store *st, struct store_req *r)
{
	sqlite3_stmt *s = st->stmts[S_CRED_LIST];
	size_t cap = 0;
	int rc, rv = 0;

	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_credential *c;

		if (r->n_creds == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			struct store_credential *v =
			    realloc(r->creds, ncap * sizeof(*v));

			if (!v) {
				rv = -ENOMEM;
				break;
			}
			r->creds = v;
			cap = ncap;
		}
		c = &r->creds[r->n_creds];
		memset(c, 0, sizeof(*c));
		if (dup_str(&c->site,
			    (const char *)sqlite3_column_text(s, 0)) ||
		    dup_str(&c->user,
			    (const char *)sqlite3_column_text(s, 1)) ||
		    dup_str(&c->token,
			    (const char *)sqlite3_column_text(s, 2))) {
			store_credential_clear(c);
			rv = -ENOMEM;
			break;
		}
		c->expires_at = sqlite3_column_int64(s, 3);
		c->registered_at = sqlite3_column_int64(s, 4);
		r->n_creds++;
	}
	if (!rv && rc != SQLITE_DONE)
		rv = sq_fail(st, rc, s, "list credentials");
	sq_reset(s);
	return rv;
}

static void req_clear_results(struct store_req *r)
{
	size_t i;

	r->rv = 0;
	r->existed = r->duplicate = r->job_missing = false;
	r->seq = 0;
	store_job_free(r->job);
	r->job = NULL;
	for (i = 0; i < r->n_jobs; i++)
		store_job_free(r->jobs[i]);
	free(r->jobs);
	r->jobs = NULL;
	r->n_jobs = 0;
	for (i = 0; i < r->n_usage; i++) {
		free(r->usage[i].user);
		free(r->usage[i].tier);
	}
	free(r->usage);
	r->usage = NULL;
	r->n_usage = 0;
	for (i = 0; i < r->n_creds; i++)
		store_credential_clear(&r->creds[i]);
	free(r->creds);
	r->creds = NULL;
	r->n_creds = 0;
}

static int op_run(struct store *st, struct store_req *r)
{
	req_clear_results(r);
	switch ((enum store_op)r->p_.op) {
	case OP_INSERT:
		return op_insert(st, r);
	case OP_UPDATE:
		return op_update(st, r);
	case OP_GET:
		return op_get(st, r);
	case OP_LIST:
		return op_list(st, r);
	case OP_UNFINISHED:
		return op_unfinished(st, r);
	case OP_EVENT:
		return op_event(st, r);
	case OP_USAGE:
		return op_usage(st, r);
	case OP_CRED_PUT:
		return op_cred_put(st, r);
	case OP_CRED_LIST:
		return op_cred_list(st, r);
	case OP_NONE:
	case OP_LOAD:
		break;
	}
	return -EINVAL;
}

/* Failures that changed nothing and leave the batch's transaction sound. */
static bool request_level(int rv)
{
	return rv == 0 || rv == -ENOENT || rv == -EEXIST || rv == -ENOTUNIQ ||
	       rv == -ESTALE || rv == -EINVAL || rv == -E2BIG;
}

/*
 * Run requests first..(n of them) in one transaction.  0 when it
 * committed (each request has its own rv), else the storage error: rolled
 * back, every request's rv set to it.
 */
static int txn_run(struct store *st, struct store_req *first, unsigned n,
		   bool write)
{
	struct store_req *r;
	unsigned i;
	int rc, rv = 0;

	sq_check(st, "txn");
	rc = sqlite3_step(st->stmts[write ? S_BEGIN_IMM : S_BEGIN]);
	if (rc != SQLITE_DONE)
		rv = sq_fail(st, rc, st->stmts[write ? S_BEGIN_IMM : S_BEGIN],
			     "begin");
	sqlite3_reset(st->stmts[write ? S_BEGIN_IMM : S_BEGIN]);
	if (rv)
		goto out_fail;
	for (r = first, i = 0; r && i < n; r = r->p_.next, i++) {
		r->rv = op_run(st, r);
		if (!request_level(r->rv)) {
			rv = r->rv;
			break;
		}
	}
	if (!rv) {
		rc = sqlite3_step(st->stmts[S_COMMIT]);
		if (rc != SQLITE_DONE)
			rv = sq_fail(st, rc, st->stmts[S_COMMIT], "commit");
		sqlite3_reset(st->stmts[S_COMMIT]);
	}
	if (!rv)
		return 0;
	if (!sqlite3_get_autocommit(st->db)) {
		rc = sqlite3_step(st->stmts[S_ROLLBACK]);
		if (rc != SQLITE_DONE)
			sq_fail(st, rc, st->stmts[S_ROLLBACK], "rollback");
		sqlite3_reset(st->stmts[S_ROLLBACK]);
	}
out_fail:
	for (r = first, i = 0; r && i < n; r = r->p_.next, i++) {
		req_clear_results(r);
		r->rv = rv;
	}
	return rv;
}

static void lat_record(struct store *st, uint64_t us)
{
	st->lat[st->lat_i] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
	st->lat_i = (st->lat_i + 1) % STORE_LAT_RING;
	if (st->lat_n < STORE_LAT_RING)
		st->lat_n++;
	if (us > st->commit_us_max)
		st->commit_us_max = us;
}

static void run_batch(struct store *st, struct store_req *batch, unsigned n)
{
	struct store_req *r;
	unsigned writes = 0, i, ok_writes = 0, commits = 0, reads = 0;
	uint64_t t0 = now_us(), t1, wait_max = 0, lat_max = 0, t;
	bool failed = false;
	int rv;

	for (r = batch; r; r = r->p_.next) {
		if (op_writes[r->p_.op])
			writes++;
		if (t0 - r->queued_us > wait_max)
			wait_max = t0 - r->queued_us;
	}
	rv = txn_run(st, batch, n, writes > 0);
	t1 = now_us();
	if (!rv) {
		if (writes) {
			commits = 1;
			ok_writes = writes;
			lat_max = t1 - t0;
		} else {
			reads = 1;
		}
	} else {
		failed = true;
		if (n > 1) {
			log_warn("store %s: batch of %u rolled back (%s): "
				 "re-running one request per transaction",
				 st->path, n, store_strerror(rv));
			for (r = batch; r; r = r->p_.next) {
				t = now_us();
				if (txn_run(st, r, 1, op_writes[r->p_.op]))
					continue;
				if (op_writes[r->p_.op]) {
					commits++;
					ok_writes++;
					if (now_us() - t > lat_max)
						lat_max = now_us() - t;
				} else {
					reads++;
				}
			}
			t1 = now_us();
		}
	}
	for (r = batch, i = 0; r; r = r->p_.next, i++)
		r->finished_us = t1;

	pthread_mutex_lock(&st->lock);
	st->requests += n;
	st->commits += commits;
	st->rows_committed += ok_writes;
	st->read_txns += reads;
	if (failed)
		st->failed_txns++;
	if (commits == 1 && !failed && writes > st->max_batch)
		st->max_batch = writes;
	if (commits)
		lat_record(st, lat_max);
	if (wait_max > st->queue_wait_us_max)
		st->queue_wait_us_max = wait_max;
	/* hand the batch to the loop thread */
	if (st->done_tail)
		st->done_tail->p_.next = batch;
	else
		st->done_head = batch;
	for (r = batch; r->p_.next; r = r->p_.next)
		;
	st->done_tail = r;
	pthread_mutex_unlock(&st->lock);
	loop_async_send(st->async);
}

/* -------------------------------------------------------------- load */

/* Store thread: hand a chunk over; -ECANCELED when the reader stopped. */
static int load_push(struct store *st, struct load_ctx *ctx,
		     struct load_chunk *c)
{
	pthread_mutex_lock(&st->lock);
	while (ctx->n_chunks >= LOAD_MAX_CHUNKS && !ctx->abort)
		pthread_cond_wait(&st->cond_back, &st->lock);
	if (ctx->abort) {
		pthread_mutex_unlock(&st->lock);
		return -ECANCELED;
	}
	c->next = NULL;
	if (ctx->tail)
		ctx->tail->next = c;
	else
		ctx->head = c;
	ctx->tail = c;
	ctx->n_chunks++;
	pthread_cond_broadcast(&st->cond_back);
	pthread_mutex_unlock(&st->lock);
	return 0;
}

static void load_chunk_free(struct load_chunk *c)
{
	size_t i;

	if (!c)
		return;
	for (i = 0; i < c->n; i++)
		store_job_free(c->v[i]);
	free(c);
}

static void run_load(struct store *st, struct store_req *r)
{
	struct load_ctx *ctx = r->p_.load;
	enum stmt_id sid = S_LOAD_NOBODY;
	sqlite3_stmt *s;
	struct load_chunk *c = NULL;
	struct store_job *j;
	int rc = SQLITE_DONE, rv;

	if (ctx->flags & STORE_LOAD_BODY)
		sid = S_LOAD;
	else if (ctx->flags & STORE_LOAD_BODY_UNFINISHED)
		sid = S_LOAD_BODY_UNFIN;
	s = st->stmts[sid];
	sq_check(st, "load");
	rv = 0;
	rc = sqlite3_step(st->stmts[S_BEGIN]);
	if (rc != SQLITE_DONE)
		rv = sq_fail(st, rc, st->stmts[S_BEGIN], "begin load");
	sqlite3_reset(st->stmts[S_BEGIN]);
	if (rv)
		goto out_finish;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (!c) {
			c = malloc(sizeof(*c));
			if (!c) {
				rv = -ENOMEM;
				break;
			}
			c->next = NULL;
			c->n = 0;
		}
		rv = read_row(st, s, &j);
		if (rv)
			break;
		c->v[c->n++] = j;
		if (c->n == LOAD_CHUNK) {
			rv = load_push(st, ctx, c);
			if (rv) {
				load_chunk_free(c);
				c = NULL;
				break;
			}
			c = NULL;
		}
	}
	if (!rv && rc != SQLITE_DONE)
		rv = sq_fail(st, rc, s, "load jobs");
	sq_reset(s);
	rc = sqlite3_step(st->stmts[S_COMMIT]);
	if (rc != SQLITE_DONE && !rv)
		rv = sq_fail(st, rc, st->stmts[S_COMMIT], "end load");
	sqlite3_reset(st->stmts[S_COMMIT]);
	if (c && !rv && c->n) {
		rv = load_push(st, ctx, c);
		if (!rv)
			c = NULL; /* the reader has it */
	}
	load_chunk_free(c);
out_finish:
	pthread_mutex_lock(&st->lock);
	ctx->finished = true;
	ctx->rv = rv == -ECANCELED ? 0 : rv;
	st->requests++;
	pthread_cond_broadcast(&st->cond_back);
	pthread_mutex_unlock(&st->lock);
	/* r and ctx belong to the caller from here on */
}

/* ------------------------------------------------------- store thread */

static void *store_main(void *arg)
{
	struct store *st = arg;
	struct store_req *batch, *r, *last;
	char err[sizeof(st->open_err)];
	unsigned n;
	int rv;

	st->self = pthread_self();
	err[0] = '\0';
	rv = db_open(st, err, sizeof(err));
	pthread_mutex_lock(&st->lock);
	st->open_rv = rv;
	snprintf(st->open_err, sizeof(st->open_err), "%s", err);
	st->open_done = true;
	pthread_cond_broadcast(&st->cond_back);
	if (rv) {
		pthread_mutex_unlock(&st->lock);
		return NULL;
	}
	for (;;) {
		while (!st->pend_head && !st->stopping) {
			st->thread_idle = true;
			pthread_cond_wait(&st->cond, &st->lock);
		}
		st->thread_idle = false;
		if (!st->pend_head)
			break; /* stopping, and everything ran */
		batch = st->pend_head;
		if (batch->p_.op == OP_LOAD) {
			st->pend_head = batch->p_.next;
			batch->p_.next = NULL;
			n = 1;
		} else {
			n = 1;
			last = batch;
			while (last->p_.next && n < st->opts.max_batch &&
			       last->p_.next->p_.op != OP_LOAD) {
				last = last->p_.next;
				n++;
			}
			st->pend_head = last->p_.next;
			last->p_.next = NULL;
		}
		if (!st->pend_head)
			st->pend_tail = NULL;
		st->n_pend -= n;
		pthread_mutex_unlock(&st->lock);

		r = batch;
		if (r->p_.op == OP_LOAD)
			run_load(st, r);
		else
			run_batch(st, r, n);

		pthread_mutex_lock(&st->lock);
	}
	pthread_mutex_unlock(&st->lock);
	db_close(st);
	return NULL;
}

/* --------------------------------------------------------- loop side */

static void req_free_inputs(struct store_req *r)
{
	store_job_free(r->p_.job);
	r->p_.job = NULL;
	event_free(r->p_.event);
	r->p_.event = NULL;
	free(r->p_.user);
	r->p_.user = NULL;
	free(r->p_.site);
	r->p_.site = NULL;
	if (r->p_.cred) {
		store_credential_clear(r->p_.cred);
		free(r->p_.cred);
		r->p_.cred = NULL;
	}
}

static void complete(struct store *st, struct store_req *r)
{
	void (*cb)(struct store_req *) = r->cb;
	struct task *t = r->task;

	r->p_.next = NULL;
	r->p_.state = REQ_DONE;
	req_free_inputs(r);
	dbg("store req %s done rv=%d (%s) in %" PRIu64 "us", op_names[r->p_.op],
	    r->rv, store_strerror(r->rv), r->finished_us - r->queued_us);
	st->in_flight--;
	if (!st->in_flight && st->holding) {
		st->holding = false;
		loop_release(st->loop);
	}
	if (cb)
		cb(r); /* may reset, resubmit or free r */
	if (t) {
		if (!task_destroyed(t))
			task_wake(t, TASK_WAKE_WORKER);
		task_unref(t);
	}
}

static void deliver(struct store *st, unsigned budget)
{
	struct store_req *r;

	/*
	 * Always take what is done, even with leftovers in `ready`: a batch
	 * finished meanwhile may have had its loop_async_send coalesced with
	 * our own "more next turn" send, consumed before we are called.
	 * (Every send happens after its batch was appended, and the async
	 * flag is cleared before this runs, so this splice sees the batch.)
	 */
	pthread_mutex_lock(&st->lock);
	if (st->done_head) {
		if (st->ready_tail)
			st->ready_tail->p_.next = st->done_head;
		else
			st->ready_head = st->done_head;
		st->ready_tail = st->done_tail;
		st->done_head = st->done_tail = NULL;
	}
	pthread_mutex_unlock(&st->lock);
	while (st->ready_head && budget) {
		r = st->ready_head;
		st->ready_head = r->p_.next;
		if (!st->ready_head)
			st->ready_tail = NULL;
		complete(st, r);
		budget--;
	}
	if (st->ready_head && st->async)
		loop_async_send(st->async); /* the rest next turn */
}

static void store_async_cb(struct loop_async *a, void *arg)
{
	deliver(arg, STORE_DELIVER_BUDGET);
}

bool store_req_pending(const struct store_req *r)
{
	return r->p_.state == REQ_QUEUED;
}

void store_req_reset(struct store_req *r)
{
	if (store_req_pending(r)) {
		log_err("store_req_reset: request %s is in flight",
			op_names[r->p_.op]);
		return;
	}
	req_clear_results(r);
	req_free_inputs(r);
	r->p_.state = REQ_IDLE;
}

/* Checks before any input is copied; resets old results. */
static int submit_prep(struct store *st, struct store_req *r)
{
	if (!st || !r)
		return -EINVAL;
	if (st->closed)
		return -ESHUTDOWN;
	if (store_req_pending(r))
		return -EBUSY;
	req_clear_results(r);
	req_free_inputs(r);
	r->p_.state = REQ_IDLE;
	r->p_.st = st;
	r->p_.next = NULL;
	r->p_.fields = 0;
	r->p_.expect = -1;
	r->p_.fstate = -1;
	r->p_.limit = 0;
	r->p_.since = 0;
	r->p_.load = NULL;
	return 0;
}

/* Queue r (inputs attached).  On failure the inputs are freed. */
static int submit(struct store *st, struct store_req *r, enum store_op op)
{
	r->p_.op = op;
	r->queued_us = now_us();
	r->finished_us = 0;
	pthread_mutex_lock(&st->lock);
	if (st->stopping) {
		pthread_mutex_unlock(&st->lock);
		req_free_inputs(r);
		return -ESHUTDOWN;
	}
	r->p_.state = REQ_QUEUED;
	if (r->task)
		task_ref(r->task);
	if (st->pend_tail)
		st->pend_tail->p_.next = r;
	else
		st->pend_head = r;
	st->pend_tail = r;
	st->n_pend++;
	if (st->thread_idle)
		pthread_cond_signal(&st->cond);
	pthread_mutex_unlock(&st->lock);
	st->in_flight++;
	if (!st->holding) {
		st->holding = true;
		loop_hold(st->loop);
	}
	return 0;
}

static bool valid_job_for_insert(const struct store_job *j)
{
	return j && j->id && *j->id && j->site && *j->site && j->user &&
	       *j->user && (unsigned)j->state < STORE_JOB_STATE_COUNT_ &&
	       j->created_at != STORE_NULL && j->updated_at != STORE_NULL;
}

int store_job_insert(struct store *st, struct store_req *r,
		     const struct store_job *job)
{
	struct store_job *j;
	int rv = submit_prep(st, r);

	if (rv)
		return rv;
	if (!valid_job_for_insert(job))
		return -EINVAL;
	j = store_job_dup(job);
	if (!j)
		return -ENOMEM;
	if (!j->created_at)
		j->created_at = time(NULL);
	if (!j->updated_at)
		j->updated_at = j->created_at;
	r->p_.job = j;
	return submit(st, r, OP_INSERT);
}

static bool valid_update(const struct store_job *j, uint64_t f)
{
	if (!j || !j->id || !f || (f & ~STORE_F_ALL) || (f & STORE_F(ID)))
		return false;
	if ((f & STORE_F(SITE)) && !j->site)
		return false;
	if ((f & STORE_F(USER)) && !j->user)
		return false;
	if ((f & STORE_F(STATE)) &&
	    (unsigned)j->state >= STORE_JOB_STATE_COUNT_)
		return false;
	if ((f & STORE_F(CREATED_AT)) && j->created_at == STORE_NULL)
		return false;
	if ((f & STORE_F(UPDATED_AT)) && j->updated_at == STORE_NULL)
		return false;
	return true;
}

int store_job_update(struct store *st, struct store_req *r,
		     const struct store_job *job, uint64_t fields_,
		     int expect_state)
{
	int rv = submit_prep(st, r);

	if (rv)
		return rv;
	if (!valid_update(job, fields_) ||
	    expect_state >= STORE_JOB_STATE_COUNT_)
		return -EINVAL;
	r->p_.job = job_dup_fields(job, fields_);
	if (!r->p_.job)
		return -ENOMEM;
	r->p_.fields = fields_;
	r->p_.expect = expect_state < 0 ? -1 : expect_state;
	return submit(st, r, OP_UPDATE);
}

int store_job_get(struct store *st, struct store_req *r, const char *id)
{
	int rv = submit_prep(st, r);

	if (rv)
		return rv;
	if (!id)
		return -EINVAL;
	r->p_.job = malloc(sizeof(*r->p_.job));
	if (!r->p_.job)
		return -ENOMEM;
	store_job_init(r->p_.job);
	r->p_.job->id = strdup(id);
	if (!r->p_.job->id) {
		req_free_inputs(r);
		return -ENOMEM;
	}
	return submit(st, r, OP_GET);
}

int store_jobs_list(struct store *st, struct store_req *r,
		    const struct store_filter *f)
{
	int rv = submit_prep(st, r);

	if (rv)
		return rv;
	if (f && f->state >= STORE_JOB_STATE_COUNT_)
		return -EINVAL;
	if (f &&
	    (dup_str(&r->p_.user, f->user) || dup_str(&r->p_.site, f->site))) {
		req_free_inputs(r);
		return -ENOMEM;
	}
	r->p_.fstate = f && f->state >= 0 ? f->state : -1;
	r->p_.limit = f && f->limit ? f->limit : STORE_LIST_DEFAULT;
	if (r->p_.limit > STORE_LIST_MAX)
		r->p_.limit = STORE_LIST_MAX;
	return submit(st, r, OP_LIST);
}

int store_jobs_unfinished(struct store *st, struct store_req *r)
{
	int rv = submit_prep(st, r);

	if (rv)
		return rv;
	return submit(st, r, OP_UNFINISHED);
}

int store_event_insert(struct store *st, struct store_req *r,
		       const struct store_event *ev,
		       const struct store_job *upd, uint64_t fields_)
{
	int rv = submit_prep(st, r);

	if (rv)
		return rv;
	if (!ev || !ev->id || !*ev->id || (upd && !valid_update(upd, fields_)))
		return -EINVAL;
	r->p_.event = event_dup(ev);
	if (!r->p_.event)
		return -ENOMEM;
	if (upd) {
		r->p_.job = job_dup_fields(upd, fields_);
		if (!r->p_.job) {
			req_free_inputs(r);
			return -ENOMEM;
		}
		r->p_.fields = fields_;
	}
	return submit(st, r, OP_EVENT);
}

int store_usage(struct store *st, struct store_req *r, const char *user,
		int64_t since)
{
	int rv = submit_prep(st, r);

	if (rv)
		return rv;
	if (dup_str(&r->p_.user, user))
		return -ENOMEM;
	r->p_.since = since;
	return submit(st, r, OP_USAGE);
}

void store_credential_clear(struct store_credential *c)
{
	if (!c)
		return;
	free(c->site);
	free(c->user);
	if (c->token) {
		explicit_bzero(c->token, strlen(c->token));
		free(c->token);
	}
	memset(c, 0, sizeof(*c));
}

int store_credential_put(struct store *st, struct store_req *r,
			 const struct store_credential *c)
{
	struct store_credential *in;
	int rv = submit_prep(st, r);

	if (rv)
		return rv;
	if (!c || !c->site || !*c->site || !c->user || !*c->user)
		return -EINVAL;
	in = calloc(1, sizeof(*in));
	if (!in)
		return -ENOMEM;
	r->p_.cred = in;
	if (dup_str(&in->site, c->site) || dup_str(&in->user, c->user) ||
	    dup_str(&in->token, c->token)) {
		req_free_inputs(r);
		return -ENOMEM;
	}
	in->expires_at = c->expires_at;
	in->registered_at = c->registered_at;
	return submit(st, r, OP_CRED_PUT);
}

int store_credentials_list(struct store *st, struct store_req *r)
{
	int rv = submit_prep(st, r);

	if (rv)
		return rv;
	return submit(st, r, OP_CRED_LIST);
}

int store_load_all(struct store *st, unsigned flags, store_load_fn *fn,
		   void *arg, uint64_t *count)
{
	struct load_ctx ctx = {.flags = flags};
	struct store_req r;
	struct load_chunk *c;
	uint64_t n = 0;
	int stop = 0, rv;
	size_t i;

	if (count)
		*count = 0;
	if (!st || !fn)
		return -EINVAL;
	if (st->closed)
		return -ESHUTDOWN;
	memset(&r, 0, sizeof(r));
	r.p_.op = OP_LOAD;
	r.p_.load = &ctx;
	r.queued_us = now_us();
	pthread_mutex_lock(&st->lock);
	if (st->stopping) {
		pthread_mutex_unlock(&st->lock);
		return -ESHUTDOWN;
	}
	/* r lives on this stack until the store thread is done with it: the
	 * loop below waits for that before returning */
	if (st->pend_tail)
		st->pend_tail->p_.next = &r; // cppcheck-suppress autoVariables
	else
		st->pend_head = &r; // cppcheck-suppress autoVariables
	st->pend_tail = &r;	    // cppcheck-suppress autoVariables
	st->n_pend++;
	pthread_cond_signal(&st->cond);
	for (;;) {
		while (!ctx.head && !ctx.finished)
			pthread_cond_wait(&st->cond_back, &st->lock);
		c = ctx.head;
		if (!c)
			break; /* finished and drained */
		ctx.head = c->next;
		if (!ctx.head)
			ctx.tail = NULL;
		ctx.n_chunks--;
		pthread_cond_broadcast(&st->cond_back);
		pthread_mutex_unlock(&st->lock);
		for (i = 0; i < c->n; i++) {
			if (stop) {
				store_job_free(c->v[i]);
				continue;
			}
			n++;
			stop = fn(c->v[i], arg); /* fn owns it */
		}
		free(c);
		pthread_mutex_lock(&st->lock);
		if (stop && !ctx.abort) {
			ctx.abort = true;
			pthread_cond_broadcast(&st->cond_back);
		}
	}
	rv = ctx.rv;
	pthread_mutex_unlock(&st->lock);
	if (count)
		*count = n;
	return stop ? stop : rv;
}

/* ------------------------------------------------------ open / close */

int store_open(struct loop *l, const char *path, const struct store_opts *opts,
	       struct store **out, char *err, size_t errlen)
{
	char ebuf[512], lock_path[4096];
	struct store *st;
	sigset_t all, old;
	int rv, e;

	*out = NULL;
	ebuf[0] = '\0';
	if (!l || !path || !*path) {
		snprintf(ebuf, sizeof(ebuf), "store_open: no loop or path");
		rv = -EINVAL;
		goto out_err;
	}
	rv = store_check_local_fs(path, ebuf, sizeof(ebuf));
	if (rv)
		goto out_err;
	st = calloc(1, sizeof(*st));
	if (!st) {
		rv = -ENOMEM;
		snprintf(ebuf, sizeof(ebuf), "%s: out of memory", path);
		goto out_err;
	}
	st->loop = l;
	st->lock_fd = -1;
	if (opts)
		st->opts = *opts;
	if (!st->opts.max_batch)
		st->opts.max_batch = STORE_DEFAULT_BATCH;
	atomic_init(&st->off_thread, 0);
	st->path = strdup(path);
	if (!st->path) {
		rv = -ENOMEM;
		snprintf(ebuf, sizeof(ebuf), "%s: out of memory", path);
		goto out_free;
	}
	/* one gateway per database: two would submit the same jobs */
	snprintf(lock_path, sizeof(lock_path), "%s.lock", path);
	st->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (st->lock_fd < 0) {
		rv = -errno;
		snprintf(ebuf, sizeof(ebuf), "cannot open %.400s: %s",
			 lock_path, strerror(-rv));
		goto out_free;
	}
	if (flock(st->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		rv = errno == EWOULDBLOCK ? -EBUSY : -errno;
		snprintf(ebuf, sizeof(ebuf),
			 "%.200s is in use by another process (%.250s is "
			 "locked)",
			 path, lock_path);
		goto out_free;
	}
	if ((e = pthread_mutex_init(&st->lock, NULL))) {
		rv = -e;
		goto out_free;
	}
	pthread_cond_init(&st->cond, NULL);
	pthread_cond_init(&st->cond_back, NULL);
	st->async = loop_async_new(l, store_async_cb, st);
	if (!st->async) {
		rv = -errno;
		snprintf(ebuf, sizeof(ebuf), "%s: loop_async_new: %s", path,
			 strerror(errno));
		goto out_destroy;
	}
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	e = pthread_create(&st->thread, NULL, store_main, st);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (e) {
		rv = -e;
		snprintf(ebuf, sizeof(ebuf), "%s: pthread_create: %s", path,
			 strerror(e));
		goto out_async;
	}
	pthread_setname_np(st->thread, "tg-store");
	st->thread_started = true;
	pthread_mutex_lock(&st->lock);
	while (!st->open_done)
		pthread_cond_wait(&st->cond_back, &st->lock);
	rv = st->open_rv;
	snprintf(ebuf, sizeof(ebuf), "%s", st->open_err);
	pthread_mutex_unlock(&st->lock);
	if (rv) {
		pthread_join(st->thread, NULL);
		goto out_async;
	}
	log_info("store %s: open (schema %d, WAL, synchronous=FULL, batch "
		 "<= %u)",
		 path, STORE_SCHEMA_VERSION, st->opts.max_batch);
	*out = st;
	return 0;

out_async:
	loop_async_close(st->async);
out_destroy:
	pthread_cond_destroy(&st->cond_back);
	pthread_cond_destroy(&st->cond);
	pthread_mutex_destroy(&st->lock);
out_free:
	if (st->lock_fd >= 0)
		close(st->lock_fd);
	free(st->path);
	free(st);
out_err:
	if (!ebuf[0])
		snprintf(ebuf, sizeof(ebuf), "%s: %s", path ? path : "?",
			 strerror(-rv));
	log_err("store: %s", ebuf);
	if (err && errlen)
		snprintf(err, errlen, "%s", ebuf);
	return rv;
}

void store_close(struct store *st)
{
	if (!st)
		return;
	st->closed = true;
	pthread_mutex_lock(&st->lock);
	st->stopping = true;
	pthread_cond_broadcast(&st->cond);
	pthread_mutex_unlock(&st->lock);
	if (st->thread_started)
		pthread_join(st->thread, NULL);
	/* everything queued ran: deliver every completion now */
	while (st->ready_head || st->done_head)
		deliver(st, UINT32_MAX);
	loop_async_close(st->async);
	st->async = NULL;
	if (st->holding) {
		st->holding = false;
		loop_release(st->loop);
	}
	log_info("store %s: closed (%" PRIu64 " commits)", st->path,
		 st->commits);
	pthread_cond_destroy(&st->cond_back);
	pthread_cond_destroy(&st->cond);
	pthread_mutex_destroy(&st->lock);
	if (st->lock_fd >= 0)
		close(st->lock_fd);
	free(st->path);
	free(st);
}

/* ------------------------------------------------------ introspection */

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

void store_stats(struct store *st, struct store_stats *s)
{
	uint32_t lat[STORE_LAT_RING];
	unsigned n;

	memset(s, 0, sizeof(*s));
	pthread_mutex_lock(&st->lock);
	s->requests = st->requests;
	s->commits = st->commits;
	s->rows_committed = st->rows_committed;
	s->max_batch = st->max_batch;
	s->read_txns = st->read_txns;
	s->failed_txns = st->failed_txns;
	s->commit_us_max = st->commit_us_max;
	s->queue_wait_us_max = st->queue_wait_us_max;
	s->queued = st->n_pend;
	s->last_error = st->last_error;
	s->last_error_at = st->last_error_at;
	n = st->lat_n;
	memcpy(lat, st->lat, n * sizeof(lat[0]));
	pthread_mutex_unlock(&st->lock);
	s->in_flight = atomic_load(&st->in_flight);
	s->off_thread_sqlite = atomic_load(&st->off_thread);
	if (n) {
		qsort(lat, n, sizeof(lat[0]), cmp_u32);
		s->commit_us_p50 = lat[(n - 1) / 2];
		s->commit_us_p99 = lat[(n * 99 - 1) / 100];
	}
}

const char *store_debug_str(struct store *st, char *buf, size_t len)
{
	struct store_stats s;

	if (!st) {
		snprintf(buf, len, "store (null)");
		return buf;
	}
	store_stats(st, &s);
	snprintf(
	    buf, len,
	    "store %s schema=%d %s queued=%u in_flight=%u requests=%" PRIu64
	    " commits=%" PRIu64 " rows/commit=%.1f max_batch=%" PRIu64
	    " commit_max=%" PRIu64 "us p50=%" PRIu64 "us p99=%" PRIu64
	    "us failed_txns=%" PRIu64 " off_thread=%" PRIu64 " last_error=%s",
	    st->path, STORE_SCHEMA_VERSION, st->closed ? "closing" : "open",
	    s.queued, s.in_flight, s.requests, s.commits,
	    s.commits ? (double)s.rows_committed / (double)s.commits : 0.0,
	    s.max_batch, s.commit_us_max, s.commit_us_p50, s.commit_us_p99,
	    s.failed_txns, s.off_thread_sqlite,
	    s.last_error ? store_strerror(s.last_error) : "none");
	return buf;
}
