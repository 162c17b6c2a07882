/*
 * ticket_check.h: the verdict on a job's ticket, and two ways to get it.
 *
 * The plugin is dlopen'ed into every srun, sbatch and slurmstepd: linking
 * libjwt and OpenSSL into it costs every srun about 10 ms (measured, see
 * docs/performance.md).  So the plugin never verifies a ticket itself: when
 * a job carries one it runs `tiergate-relay --check-ticket KEY` (which links
 * them) and reads the verdict (ticket_check_exec).  The verifier itself
 * (ticket_check_verify) is also used by the unit tests.
 */
#ifndef TIERGATE_SPANK_TICKET_CHECK_H
#define TIERGATE_SPANK_TICKET_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "ticket.h"

struct jwt_key;

struct ticket_check {
	bool present;	 /* the job carries a ticket */
	bool valid;	 /* signature and every claim checked */
	struct ticket t; /* when valid */
	char error[160]; /* why it is not valid */
};

/* In-process verification (relay, tests).  token may be NULL. */
void ticket_check_verify(const struct jwt_key *key, const char *token,
			 time_t now, struct ticket_check *tc);

/* The one-line verdict the relay prints and the plugin parses. */
int ticket_check_format(const struct ticket_check *tc, char *buf, size_t len);
int ticket_check_parse(const char *line, struct ticket_check *tc);

/*
 * Verify `token` with the key file `key_path` by running `relay
 * --check-ticket key_path` (token on its stdin, verdict on its stdout),
 * waiting at most timeout_ms.  Any failure of the helper leaves the ticket
 * present and not valid, with the reason.
 */
void ticket_check_exec(const char *relay, const char *key_path,
		       const char *token, int timeout_ms,
		       struct ticket_check *tc);

#endif
