/* identity.h: a job user's name and group names, for entitlement rules. */
#ifndef TIERGATE_SPANK_IDENTITY_H
#define TIERGATE_SPANK_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define IDENTITY_MAX_GROUPS 64

struct identity {
	uid_t uid;
	gid_t gid;
	char user[64];
	size_t n_groups;
	bool groups_loaded;
	char group_names[IDENTITY_MAX_GROUPS][64];
	const char *groups[IDENTITY_MAX_GROUPS]; /* points into group_names */
};

/* The user's name: 0, or -ENOENT when the uid has no passwd entry.
 * Groups are left empty: they cost an NSS group enumeration. */
int identity_load(uid_t uid, gid_t gid, struct identity *id);

/* The user's group names, once (later calls return at once). */
void identity_load_groups(struct identity *id);

/* For tier_request.load_groups: arg is a struct identity. */
void identity_groups_cb(void *arg, const char *const **groups, size_t *n);

#endif
