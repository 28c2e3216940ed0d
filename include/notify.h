/* notify.h -- telling systemd (Type=notify) how the daemon is doing. */
#ifndef BF_NOTIFY_H
#define BF_NOTIFY_H

/* Each is a no-op outside systemd (no NOTIFY_SOCKET). */
void bf_notify_ready(void);
void bf_notify_stopping(void);
void bf_notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
