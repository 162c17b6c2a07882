/*
 * mint-ticket: sign a job ticket as the gateway does (shared/ticket.c),
 * for the integration tests.
 *
 *   mint-ticket --key FILE --user U --tier T [--job J] [--site S]
 *               [--ttl SECONDS] [--age SECONDS]
 *
 * --age moves iat (and so exp) into the past: --ttl 60 --age 600 gives a
 * ticket that expired nine minutes ago.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jwt_verify.h"
#include "ticket.h"

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"key", required_argument, NULL, 'k'},
	    {"user", required_argument, NULL, 'u'},
	    {"tier", required_argument, NULL, 't'},
	    {"job", required_argument, NULL, 'j'},
	    {"site", required_argument, NULL, 's'},
	    {"ttl", required_argument, NULL, 'l'},
	    {"age", required_argument, NULL, 'a'},
	    {NULL, 0, NULL, 0},
	};
	const char *key_path = NULL;
	struct ticket t = {0};
	struct jwt_key *key = NULL;
	long ttl = 600, age = 0;
	char err[256], *tok = NULL;
	int c;

	snprintf(t.job_id, sizeof(t.job_id), "test-job");
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'k':
			key_path = optarg;
			break;
		case 'u':
			snprintf(t.user, sizeof(t.user), "%s", optarg);
			break;
		case 't':
			snprintf(t.tier, sizeof(t.tier), "%s", optarg);
			break;
		case 'j':
			snprintf(t.job_id, sizeof(t.job_id), "%s", optarg);
			break;
		case 's':
			snprintf(t.site, sizeof(t.site), "%s", optarg);
			break;
		case 'l':
			ttl = atol(optarg);
			break;
		case 'a':
			age = atol(optarg);
			break;
		default:
			fprintf(stderr,
				"usage: mint-ticket --key FILE --user U --tier "
				"T [--job J] [--site S] [--ttl S] [--age S]\n");
			return 2;
		}
	}
	if (!key_path || !t.user[0] || !t.tier[0]) {
		fprintf(stderr,
			"mint-ticket: --key, --user and --tier are required\n");
		return 2;
	}
	if (jwt_key_load_file(key_path, NULL, &key, err, sizeof(err))) {
		fprintf(stderr, "mint-ticket: %s\n", err);
		return 1;
	}
	t.iat = time(NULL) - age;
	t.exp = t.iat + ttl;
	if (ticket_sign(key, &t, &tok, err, sizeof(err))) {
		fprintf(stderr, "mint-ticket: %s\n", err);
		jwt_key_free(key);
		return 1;
	}
	printf("%s\n", tok);
	free(tok);
	jwt_key_free(key);
	return 0;
}
