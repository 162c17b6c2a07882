/*
 * reload.h: SIGHUP reloads the config file (see reload.c for what is
 * applied and what needs a restart).  Loop thread.
 */
#ifndef TIERGATE_RELOAD_H
#define TIERGATE_RELOAD_H

#include "gw.h"

/* Start a reload: the file is read on a worker, applied on its return. */
void gw_reload(struct gw *gw);
/* Daemon shutdown: a reload still in flight is dropped when it returns. */
void gw_reload_shutdown(void);

#endif
