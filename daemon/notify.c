/* notify.c -- sd_notify(3) messages: READY, STATUS, STOPPING. */
#include "notify.h"

#include <stdarg.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>

void bf_notify_ready(void)
{
	sd_notify(0, "READY=1");
}

void bf_notify_stopping(void)
{
	sd_notify(0, "STOPPING=1");
}

void bf_notify_status(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	sd_notifyf(0, "STATUS=%s", msg);
}
