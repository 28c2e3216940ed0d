/* notify.c -- sd_notify(3) messages: READY, STATUS, RELOADING, WATCHDOG, STOPPING. */
#include "notify.h"

#include <stdarg.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>
#include <time.h>

void bf_notify_ready(void)
{
	sd_notify(0, "READY=1");
}

void bf_notify_stopping(void)
{
	sd_notify(0, "STOPPING=1");
}

void bf_notify_watchdog(void)
{
	sd_notify(0, "WATCHDOG=1");
}

void bf_notify_reloading(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
		   (unsigned long long)ts.tv_sec * 1000000ULL +
			   (unsigned long long)ts.tv_nsec / 1000);
}

uint64_t bf_notify_watchdog_usec(void)
{
	uint64_t usec = 0;

	/* 0: keep WATCHDOG_USEC and WATCHDOG_PID (nothing we start inherits
	 * them anyway: we start nothing). */
	if (sd_watchdog_enabled(0, &usec) <= 0)
		return 0;
	return usec;
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
