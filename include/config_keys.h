/* config_keys.h -- the table of configuration keys: each key's section,
 * name, type, field of bf_config, bounds and default (config_keys.c), read
 * by the loader (config.c). */
#ifndef BF_CONFIG_KEYS_H
#define BF_CONFIG_KEYS_H

#include <stddef.h>

#include "config.h"

enum bf_key_type {
	BF_KEY_INT,
	BF_KEY_STRING,
	BF_KEY_LOG_LEVEL,
	BF_KEY_MODE,  /* an octal file mode, "0660" */
	BF_KEY_NAMES, /* a list of user or group names (or numeric ids), stored "a,b" */
	BF_KEY_LIST,  /* a list of items checked by key->check, stored "a,b" */
	BF_KEY_BYTES, /* int64_t: an integer, or "16MB" (kB, MB, GB, TB: powers of 1024) */
	BF_KEY_BOOL,
	BF_KEY_CHOICE, /* int: the index of the value in key->choices */
};

/* Checks one item of a BF_KEY_LIST; -1 with a reason in err. */
typedef int (*bf_item_check)(const char *text, char *err, size_t errlen);

struct bf_key {
	const char *section;
	const char *name;
	enum bf_key_type type;
	size_t offset;		    /* of the field in bf_config */
	long long min, max;	    /* BF_KEY_INT: inclusive bounds */
	long long def;		    /* BF_KEY_INT and BF_KEY_LOG_LEVEL */
	const char *def_str;	    /* BF_KEY_STRING; never freed, see bf_config_free */
	bf_item_check check;	    /* BF_KEY_LIST */
	const char *const *choices; /* BF_KEY_CHOICE, NULL-terminated */
};

#define BF_INT(sec, key, field, dflt, lo, hi)                                                      \
	{                                                                                          \
		sec, key, BF_KEY_INT, offsetof(bf_config, field), lo, hi, dflt, NULL, NULL, NULL   \
	}
#define BF_STRING(sec, key, field, dflt)                                                           \
	{                                                                                          \
		sec, key, BF_KEY_STRING, offsetof(bf_config, field), 0, 0, 0, dflt, NULL, NULL     \
	}
#define BF_NAMES(sec, key, field)                                                                  \
	{                                                                                          \
		sec, key, BF_KEY_NAMES, offsetof(bf_config, field), 0, 0, 0, "", NULL, NULL        \
	}

#define BF_LIST(sec, key, field, chk)                                                              \
	{                                                                                          \
		sec, key, BF_KEY_LIST, offsetof(bf_config, field), 0, 0, 0, "", chk, NULL          \
	}
#define BF_BYTES(sec, key, field, dflt, lo, hi)                                                    \
	{                                                                                          \
		sec, key, BF_KEY_BYTES, offsetof(bf_config, field), lo, hi, dflt, NULL, NULL, NULL \
	}
#define BF_BOOL(sec, key, field, dflt)                                                             \
	{                                                                                          \
		sec, key, BF_KEY_BOOL, offsetof(bf_config, field), 0, 1, dflt, NULL, NULL, NULL    \
	}

/* At least the number of keys (config_keys.c checks). */
#define BF_CONFIG_MAX_KEYS 128

/* Every key; config/backfilld.yaml explains each default at length. */
extern const struct bf_key bf_keys[];
extern const size_t bf_nkeys;

#endif
