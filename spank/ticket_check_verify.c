/* ticket_check_verify.c: in-process ticket verification (links libjwt). */
#include <stdio.h>
#include <string.h>

#include "jwt_verify.h"
#include "ticket_check.h"

void ticket_check_verify(const struct jwt_key *key, const char *token,
			 time_t now, struct ticket_check *tc)
{
	char err[160];

	memset(tc, 0, sizeof(*tc));
	if (!token || !*token)
		return;
	tc->present = true;
	if (strlen(token) > JWT_TOKEN_MAX) {
		snprintf(tc->error, sizeof(tc->error),
			 "ticket longer than %d bytes", JWT_TOKEN_MAX);
		return;
	}
	if (!key) {
		snprintf(tc->error, sizeof(tc->error),
			 "this site accepts no tickets (no ticket_key)");
		return;
	}
	if (ticket_verify(key, token, now, &tc->t, err, sizeof(err))) {
		snprintf(tc->error, sizeof(tc->error), "%s", err);
		return;
	}
	tc->valid = true;
}
