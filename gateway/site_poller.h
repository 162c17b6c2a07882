/*
 * site_poller.h: one task per site that asks it about all the gateway's
 * jobs at once: one GET /jobs?update_time= per poll interval, whatever the
 * number of jobs and clients (slurmrestd's GET /jobs costs ~0.2 ms of CPU
 * per job listed, so clients must never cause it).  Every 10th poll is a
 * full listing: a tracked job absent from it was purged (MinJobAge) before
 * its final state was seen, and becomes `unknown` (never a guess).
 */
#ifndef TIERGATE_SITE_POLLER_H
#define TIERGATE_SITE_POLLER_H

#include "gw.h"

struct site_poller;

int site_poller_start(struct gw *gw, struct gw_site *s);
/* Poll now (a job was just submitted). */
void site_poller_kick(struct site_poller *p);
void site_poller_stop(struct site_poller *p);

#endif
