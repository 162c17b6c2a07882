/* identity.h: a job user's name and group names, for entitlement rules. */
#ifndef TIERGATE_SPANK_IDENTITY_H
#define TIERGATE_SPANK_IDENTITY_H

#include <stddef.h>
#include <sys/types.h>

#define IDENTITY_MAX_GROUPS 64

struct identity {
	uid_t uid;
	gid_t gid;
	char user[64];
	size_t n_groups;
	char group_names[IDENTITY_MAX_GROUPS][64];
	const char *groups[IDENTITY_MAX_GROUPS]; /* points into group_names */
};

/* 0, or -ENOENT when the uid has no passwd entry. */
int identity_load(uid_t uid, gid_t gid, struct identity *id);

#endif
