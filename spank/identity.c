/* identity.c: see identity.h. */
#include "identity.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>

int identity_load(uid_t uid, gid_t gid, struct identity *id)
{
	struct passwd pw, *pwp = NULL;
	char buf[16384];

	memset(id, 0, sizeof(*id));
	id->uid = uid;
	id->gid = gid;
	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &pwp) != 0 || !pwp)
		return -ENOENT;
	snprintf(id->user, sizeof(id->user), "%s", pw.pw_name);
	return 0;
}

void identity_load_groups(struct identity *id)
{
	struct group gr, *grp;
	char buf[16384];
	gid_t gids[IDENTITY_MAX_GROUPS];
	int n = IDENTITY_MAX_GROUPS, i;

	if (id->groups_loaded || !id->user[0])
		return;
	id->groups_loaded = true;
	if (getgrouplist(id->user, id->gid, gids, &n) < 0)
		n = IDENTITY_MAX_GROUPS; /* truncated list: use what fits */
	for (i = 0; i < n && id->n_groups < IDENTITY_MAX_GROUPS; i++) {
		grp = NULL;
		if (getgrgid_r(gids[i], &gr, buf, sizeof(buf), &grp) != 0 ||
		    !grp)
			continue;
		snprintf(id->group_names[id->n_groups],
			 sizeof(id->group_names[0]), "%s", gr.gr_name);
		id->groups[id->n_groups] = id->group_names[id->n_groups];
		id->n_groups++;
	}
}

void identity_groups_cb(void *arg, const char *const **groups, size_t *n)
{
	struct identity *id = arg;

	identity_load_groups(id);
	*groups = id->groups;
	*n = id->n_groups;
}
