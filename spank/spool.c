/* spool.c: see spool.h. */
#include "spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/*
 * Spare job dirs, "<spool>/.spare-<k>": an emptied job dir the relay kept
 * instead of removing it, taken by the next job with one rename.  On this
 * machine's ext4 each new inode costs ~0.4 ms (the allocator skips the
 * many recently deleted ones), and a job dir with its events/ and lock
 * file was three of them on the path of every step's start.
 */
#define SPOOL_SPARES 8

/*
 * Free files, "events/.free-<k>": the inodes of delivered events and of
 * replaced small files, taken again by the next file the dir needs.  On
 * ext4 without a journal, every inode freed within the last minute makes
 * the next allocations slower (the allocator skips recently deleted
 * ones): files that come and go per step are recycled, not deleted.
 */
#define SPOOL_FREE_FILES 8
#define SPARE_FREE_FILES 4 /* with a spare: an srun step's 3 events, meta */

static int mkdir_p(const char *path, mode_t mode)
{
	char tmp[4096], *p;

	/* the parents exist but for the first job on a fresh node */
	if (mkdir(path, mode) == 0 || errno == EEXIST)
		return 0;
	if (errno != ENOENT)
		return -errno;
	if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	for (p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static bool at_its_path(const struct spool_job *sj);
static int seq_lock(struct spool_job *sj);

/* "<the spool job_dir is in>/.spare-<k>" */
static int spare_path(const char *job_dir, int k, char *out, size_t len)
{
	const char *slash = strrchr(job_dir, '/');

	if (!slash || snprintf(out, len, "%.*s/.spare-%d",
			       (int)(slash - job_dir), job_dir, k) >= (int)len)
		return -ENAMETOOLONG;
	return 0;
}

/* Make dir by renaming a spare into place; 0 when one was taken. */
static int take_spare(const char *dir)
{
	char spare[4200];
	int k;

	for (k = 0; k < SPOOL_SPARES; k++) {
		if (spare_path(dir, k, spare, sizeof(spare)))
			return -ENAMETOOLONG;
		if (renameat2(AT_FDCWD, spare, AT_FDCWD, dir,
			      RENAME_NOREPLACE) == 0)
			return 0;
		if (errno == EEXIST)
			return -EEXIST; /* made meanwhile by another step */
	}
	return -ENOENT;
}

/* "events/.free-<k>" */
static void free_name(int k, char *out, size_t len)
{
	snprintf(out, len, "events/.free-%d", k);
}

/* Make name (in the job dir) exist by taking a free file; 0 when it
 * exists now (its contents are stale: write_new_file cuts them). */
static int claim_file(struct spool_job *sj, const char *name)
{
	char from[32];

	for (int k = 0; k < SPOOL_FREE_FILES; k++) {
		free_name(k, from, sizeof(from));
		if (renameat2(sj->dir_fd, from, sj->dir_fd, name,
			      RENAME_NOREPLACE) == 0 ||
		    errno == EEXIST)
			return 0;
	}
	return -ENOENT;
}

/* Done with the file name: keep it as a free file, or unlink it. */
static int release_file(struct spool_job *sj, const char *name)
{
	char to[32];

	for (int k = 0; k < SPOOL_FREE_FILES; k++) {
		free_name(k, to, sizeof(to));
		if (renameat2(sj->dir_fd, name, sj->dir_fd, to,
			      RENAME_NOREPLACE) == 0)
			return 0;
		if (errno == ENOENT || errno == EISDIR)
			return -errno; /* gone, or a directory */
		if (errno != EEXIST)
			break; /* e.g. EROFS: unlink says what is wrong */
	}
	return unlinkat(sj->dir_fd, name, 0) < 0 ? -errno : 0;
}

/* Open the job dir; create: take a spare or make it when missing. */
static int job_dir_open(const char *dir, struct spool_job *sj, bool create)
{
	int rv;

	sj->dir_fd = sj->seq_fd = -1;
	if (snprintf(sj->dir, sizeof(sj->dir), "%s", dir) >=
	    (int)sizeof(sj->dir))
		return -ENAMETOOLONG;
	sj->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sj->dir_fd < 0 && !create)
		return -errno; /* gone: delivered and removed meanwhile */
	if (sj->dir_fd < 0) {
		/* a spare was emptied when it was made one, and handles still
		 * open on it from before write nothing more (seq_lock) */
		if (take_spare(dir) != 0 && (rv = mkdir_p(dir, 0700))) {
			log_err("spool: cannot create %s: %s", dir,
				strerror(-rv));
			return rv;
		}
		sj->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
	if (sj->dir_fd < 0) {
		rv = -errno;
		log_err("spool: cannot open %s: %m", dir);
		return rv;
	}
	/* dead/ is made by the relay when the gateway first refuses one */
	if (mkdirat(sj->dir_fd, "events", 0700) < 0 && errno != EEXIST) {
		rv = -errno;
		log_err("spool: cannot create events dirs in %s: %m", dir);
		close(sj->dir_fd);
		sj->dir_fd = -1;
		return rv;
	}
	return 0;
}

int spool_job_open_dir(const char *dir, struct spool_job *sj)
{
	return job_dir_open(dir, sj, false);
}

int spool_job_open(const char *spool, const char *site, uint32_t job_id,
		   struct spool_job *sj)
{
	char dir[4096];

	if (snprintf(dir, sizeof(dir), "%s/%s-%u", spool, site, job_id) >=
	    (int)sizeof(dir))
		return -ENAMETOOLONG;
	return job_dir_open(dir, sj, true);
}

void spool_job_close(struct spool_job *sj)
{
	if (sj->dir_fd >= 0)
		close(sj->dir_fd);
	if (sj->seq_fd >= 0)
		close(sj->seq_fd);
	sj->dir_fd = sj->seq_fd = -1;
}

int spool_lock(struct spool_job *sj, const char *which, bool wait, int *lock_fd)
{
	int fd = openat(sj->dir_fd, which, O_RDWR | O_CLOEXEC);

	if (fd < 0 && errno == ENOENT) {
		claim_file(sj, which);
		fd = openat(sj->dir_fd, which, O_RDWR | O_CREAT | O_CLOEXEC,
			    0600);
	}

	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB)) < 0) {
		int rv = -errno;

		close(fd);
		return rv;
	}
	*lock_fd = fd;
	return 0;
}

void spool_unlock(int lock_fd)
{
	if (lock_fd >= 0)
		close(lock_fd); /* releases the flock */
}

/*
 * Create tmp in the job dir with text in it; 0 or -errno.  A free file is
 * overwritten and then cut to length, never opened with O_TRUNC: on ext4 a
 * file truncated to 0 and written is flushed to disk at close (its
 * "auto_da_alloc" for editors that replace files that way), which cost a
 * step ~0.3 ms per event here (docs/performance.md).
 */
static int write_new_file(struct spool_job *sj, const char *tmp,
			  const char *text, size_t len)
{
	size_t off = 0;
	int fd, rv = 0;

	claim_file(sj, tmp); /* else a new inode */
	fd = openat(sj->dir_fd, tmp, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	while (off < len) {
		ssize_t n = pwrite(fd, text + off, len - off, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rv = -errno;
			break;
		}
		off += (size_t)n;
	}
	if (!rv && ftruncate(fd, (off_t)len) < 0)
		rv = -errno;
	close(fd);
	return rv;
}

int spool_write_file(struct spool_job *sj, const char *name, const char *text)
{
	char tmp[256];
	int rv;

	/* the temporary file sits beside the target, so rename is atomic */
	{
		const char *slash = strrchr(name, '/');
		int dlen = slash ? (int)(slash - name + 1) : 0;

		snprintf(tmp, sizeof(tmp), "%.*s.%s.%d.tmp", dlen, name,
			 name + dlen, (int)getpid());
	}
	rv = write_new_file(sj, tmp, text, strlen(text));
	if (!rv && renameat2(sj->dir_fd, tmp, sj->dir_fd, name,
			     RENAME_EXCHANGE) == 0) {
		/* swapped in atomically; the old inode, now at tmp, is kept */
		if (release_file(sj, tmp))
			unlinkat(sj->dir_fd, tmp, 0);
	} else if (!rv && renameat(sj->dir_fd, tmp, sj->dir_fd, name) < 0) {
		rv = -errno; /* (no such name yet: a plain rename) */
	}
	if (rv) {
		unlinkat(sj->dir_fd, tmp, 0);
		log_err("spool: cannot write %s/%s: %s", sj->dir, name,
			strerror(-rv));
	}
	return rv;
}

int spool_read_file(struct spool_job *sj, const char *name, char *buf,
		    size_t len)
{
	int fd = openat(sj->dir_fd, name, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return (int)n;
}

bool spool_has_file(struct spool_job *sj, const char *name)
{
	return faccessat(sj->dir_fd, name, F_OK, 0) == 0;
}

/* The last sequence number: kept in the seq lock file itself (no file to
 * replace per event); a spool written before that keeps it in "seq". */
static unsigned long seq_read(struct spool_job *sj, int lock_fd)
{
	char buf[32];
	ssize_t n = pread(lock_fd, buf, sizeof(buf) - 1, 0);

	if (n > 0) {
		buf[n] = '\0';
		return strtoul(buf, NULL, 10);
	}
	if (spool_read_file(sj, "seq", buf, sizeof(buf)) > 0)
		return strtoul(buf, NULL, 10);
	return 0;
}

/*
 * Take the job dir's seq lock (appenders and the relay emptying the dir
 * exclude each other with it): 0, or -ESTALE when a relay removed the
 * dir since it was opened or made it a spare (another job's, maybe, by
 * now): nothing may be written through this handle then.
 */
static int seq_lock(struct spool_job *sj)
{
	if (sj->seq_fd < 0) {
		sj->seq_fd = openat(sj->dir_fd, SPOOL_LOCK_SEQ,
				    O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (sj->seq_fd < 0)
			return -errno;
	}
	if (flock(sj->seq_fd, LOCK_EX) < 0)
		return -errno;
	if (!at_its_path(sj)) {
		flock(sj->seq_fd, LOCK_UN);
		return -ESTALE;
	}
	return 0;
}

int spool_write_file_locked(struct spool_job *sj, const char *name,
			    const char *text, bool if_missing)
{
	int rv = seq_lock(sj);

	if (rv)
		return rv;
	if (!if_missing || !spool_has_file(sj, name))
		rv = spool_write_file(sj, name, text);
	flock(sj->seq_fd, LOCK_UN);
	return rv;
}

/* Write one event under the seq lock; seq is the last number used. */
static int append_locked(struct spool_job *sj, const char *json,
			 unsigned long *seq)
{
	char tmp[64], name[64];
	int rv, tries;

	snprintf(tmp, sizeof(tmp), "events/.new.%d.tmp", (int)getpid());
	rv = write_new_file(sj, tmp, json, strlen(json));
	/* never replace an event: a number already taken (the counter lost
	 * by a crash between the rename and saving it) is skipped */
	for (tries = 0; !rv; tries++) {
		++*seq;
		snprintf(name, sizeof(name), "events/%010lu.json", *seq);
		if (renameat2(sj->dir_fd, tmp, sj->dir_fd, name,
			      RENAME_NOREPLACE) == 0)
			break;
		if (errno != EEXIST || tries >= 1000)
			rv = -errno;
	}
	if (rv)
		unlinkat(sj->dir_fd, tmp, 0);
	return rv;
}

int spool_event_append_n(struct spool_job *sj, const char *const *jsons,
			 size_t n)
{
	char buf[32];
	unsigned long seq, first;
	size_t i;
	int rv = 0;

	rv = seq_lock(sj);
	if (rv)
		return rv;
	first = seq = seq_read(sj, sj->seq_fd);
	for (i = 0; i < n && !rv; i++)
		rv = append_locked(sj, jsons[i], &seq);
	if (rv)
		log_err("spool: cannot queue an event in %s: %s", sj->dir,
			strerror(-rv));
	if (seq != first) {
		/* fixed width: a shorter number never leaves digits behind */
		snprintf(buf, sizeof(buf), "%020lu\n", seq);
		if (pwrite(sj->seq_fd, buf, strlen(buf), 0) !=
		    (ssize_t)strlen(buf))
			log_err(
			    "spool: cannot save the event counter in %s: %m",
			    sj->dir);
	}
	flock(sj->seq_fd, LOCK_UN);
	return rv;
}

int spool_event_append(struct spool_job *sj, const char *json)
{
	return spool_event_append_n(sj, &json, 1);
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names in events/; caller frees each and the array. */
int spool_events_list(struct spool_job *sj, char ***out, size_t *n_out)
{
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d;
	int fd;

	*out = NULL;
	*n_out = 0;
	fd = openat(sj->dir_fd, "events", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(d))) {
		size_t l = strlen(de->d_name);

		if (de->d_name[0] == '.' || l < 6 ||
		    strcmp(de->d_name + l - 5, ".json"))
			continue;
		if (n == cap) {
			char **p = reallocarray(names, cap ? cap * 2 : 16,
						sizeof(*names));
			if (!p)
				break;
			names = p;
			cap = cap ? cap * 2 : 16;
		}
		names[n] = strdup(de->d_name);
		if (names[n])
			n++;
	}
	closedir(d);
	if (n)
		qsort(names, n, sizeof(*names), name_cmp);
	*out = names;
	*n_out = n;
	return 0;
}

void spool_names_free(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

int spool_event_read(struct spool_job *sj, const char *name, char *buf,
		     size_t len)
{
	char path[128];

	if (snprintf(path, sizeof(path), "events/%s", name) >=
	    (int)sizeof(path))
		return -ENAMETOOLONG;
	return spool_read_file(sj, path, buf, len);
}

bool spool_events_pending(struct spool_job *sj)
{
	char **names;
	size_t n;

	if (spool_events_list(sj, &names, &n))
		return false;
	spool_names_free(names, n);
	return n > 0;
}

int spool_event_done(struct spool_job *sj, const char *name)
{
	char path[128];

	snprintf(path, sizeof(path), "events/%s", name);
	return release_file(sj, path);
}

int spool_event_dead(struct spool_job *sj, const char *name)
{
	char from[128], to[128];

	snprintf(from, sizeof(from), "events/%s", name);
	snprintf(to, sizeof(to), "dead/%s", name);
	if (mkdirat(sj->dir_fd, "dead", 0700) < 0 && errno != EEXIST)
		return -errno;
	return renameat(sj->dir_fd, from, sj->dir_fd, to) < 0 ? -errno : 0;
}

static int remove_tree_at(int dfd)
{
	struct dirent *de;
	DIR *d = fdopendir(dfd);

	if (!d) {
		close(dfd);
		return -errno;
	}
	while ((de = readdir(d))) {
		int sub;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) == 0)
			continue;
		sub = openat(dirfd(d), de->d_name,
			     O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub >= 0) {
			remove_tree_at(sub);
			unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR);
		}
	}
	closedir(d);
	return 0;
}

/*
 * Release (keep as free files, else unlink) the files of the job dir's
 * subdir ("." or "events"), but for its lock files and free files; 0 when
 * nothing else is left (a directory, dead/, is not released).
 */
static int release_all(struct spool_job *sj, const char *subdir)
{
	char path[320];
	struct dirent *de;
	int fd = openat(sj->dir_fd, subdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rv = 0;
	DIR *d;

	/* a fresh open: a dup of dir_fd would share its read position */
	d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	while ((de = readdir(d))) {
		const char *n = de->d_name;

		if (!strcmp(n, ".") || !strcmp(n, "..") ||
		    !strcmp(n, "events") || !strcmp(n, SPOOL_LOCK_SEQ) ||
		    !strcmp(n, SPOOL_LOCK_RELAY) || !strncmp(n, ".free-", 6))
			continue;
		snprintf(path, sizeof(path), "%s/%s", subdir, n);
		if (release_file(sj, path))
			rv = -ENOTEMPTY;
	}
	closedir(d);
	return rv;
}

/*
 * Keep the idle job dir, seq-locked, as a spare when a slot is free:
 * emptied but for events/ (its free files) and the lock files, then
 * renamed.  0 when done; else the dir is still there for
 * spool_remove_job.
 */
static int make_spare(struct spool_job *sj)
{
	char spare[4200];
	int k, rv;

	for (k = 0; k < SPOOL_SPARES; k++) {
		if (spare_path(sj->dir, k, spare, sizeof(spare)))
			return -ENAMETOOLONG;
		if (access(spare, F_OK) < 0 && errno == ENOENT)
			break;
	}
	if (k == SPOOL_SPARES)
		return -ENOSPC; /* spares enough */
	if (faccessat(sj->dir_fd, "dead", F_OK, 0) == 0)
		return -ENOTEMPTY;
	/* events/ holds no event (checked under the lock): tmp leftovers;
	 * then meta, stdio, <stream>.acked, end, relay.pid */
	rv = release_all(sj, "events");
	if (!rv)
		rv = release_all(sj, ".");
	if (!rv &&
	    renameat2(AT_FDCWD, sj->dir, AT_FDCWD, spare, RENAME_NOREPLACE) < 0)
		rv = -errno;
	return rv;
}

/* True while the job dir open as sj is the one at its path. */
static bool at_its_path(const struct spool_job *sj)
{
	struct stat st, at_path;

	return fstat(sj->dir_fd, &st) == 0 && st.st_nlink > 0 &&
	       stat(sj->dir, &at_path) == 0 && at_path.st_ino == st.st_ino &&
	       at_path.st_dev == st.st_dev;
}

/* Remove the directory at path with all in it. */
static void remove_dir(const char *path)
{
	struct spool_job sj = {.seq_fd = -1};

	sj.dir_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sj.dir_fd < 0)
		return;
	snprintf(sj.dir, sizeof(sj.dir), "%s", path);
	spool_remove_job(&sj);
	close(sj.dir_fd);
}

/*
 * A new spare made at tmp and renamed to spare: events/, the seq lock and
 * free files for what a step writes (its events and meta).  0 or -errno.
 */
static int new_spare(const char *tmp, const char *spare)
{
	char name[32];
	int fd, f, rv;

	if (mkdir(tmp, 0700) < 0)
		return -errno;
	fd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	rv = fd >= 0 && mkdirat(fd, "events", 0700) == 0 ? 0 : -errno;
	for (f = -1; !rv && f < SPARE_FREE_FILES; f++) {
		int ffd;

		if (f < 0)
			snprintf(name, sizeof(name), "%s", SPOOL_LOCK_SEQ);
		else
			free_name(f, name, sizeof(name));
		ffd = openat(fd, name, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
		if (ffd < 0)
			rv = -errno;
		else
			close(ffd);
	}
	if (!rv &&
	    renameat2(AT_FDCWD, tmp, AT_FDCWD, spare, RENAME_NOREPLACE) < 0)
		rv = -errno;
	if (fd >= 0)
		close(fd);
	if (rv)
		remove_dir(tmp);
	return rv;
}

int spool_make_spares(const char *spool, int max_new)
{
	char spare[4200], tmp[4096], job[4096];
	int k, made = 0;

	snprintf(job, sizeof(job), "%s/x", spool); /* a job dir's path */
	snprintf(tmp, sizeof(tmp), "%s/.spare-new.%d", spool, (int)getpid());
	remove_dir(tmp); /* one node relay per spool: a crashed one's */
	for (k = 0; k < SPOOL_SPARES && made < max_new; k++) {
		if (spare_path(job, k, spare, sizeof(spare)) ||
		    access(spare, F_OK) == 0)
			continue;
		if (new_spare(tmp, spare))
			break;
		made++;
	}
	return made;
}

int spool_remove_job_if_idle(struct spool_job *sj, int *relay_lock_fd)
{
	int lock_fd, rv = -EBUSY;

	if (spool_lock(sj, SPOOL_LOCK_SEQ, true, &lock_fd))
		return -EBUSY;
	/* another relay made it a spare meanwhile, maybe another job's now */
	if (!at_its_path(sj)) {
		rv = -ESTALE;
	} else if (!spool_events_pending(sj)) {
		/* before the next job can take it: its relay must find the
		 * relay lock free (a relay coming meanwhile finds nothing) */
		spool_unlock(*relay_lock_fd);
		*relay_lock_fd = -1;
		rv = make_spare(sj) == 0 ? 0 : spool_remove_job(sj);
	}
	spool_unlock(lock_fd);
	return rv;
}

int spool_remove_job(struct spool_job *sj)
{
	int fd = dup(sj->dir_fd);

	if (fd < 0)
		return -errno;
	remove_tree_at(fd);
	return rmdir(sj->dir) < 0 ? -errno : 0;
}
