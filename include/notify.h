/* notify.h -- telling systemd (Type=notify) how the daemon is doing. */
#ifndef BF_NOTIFY_H
#define BF_NOTIFY_H

#include <stdint.h>

/* Each is a no-op outside systemd (no NOTIFY_SOCKET). */
void bf_notify_ready(void);
void bf_notify_stopping(void);
void bf_notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* RELOADING=1 with MONOTONIC_USEC= (CLOCK_MONOTONIC, as systemd wants). */
void bf_notify_reloading(void);
void bf_notify_watchdog(void);

/* The watchdog interval systemd expects pings within (WATCHDOG_USEC for
 * this process), in microseconds; 0 when there is no watchdog. */
uint64_t bf_notify_watchdog_usec(void);

#endif
