/* unit.h -- a minimal unit-test harness for the pure parts of backfilld.
 *
 * A test file defines test functions, lists them in main() with UNIT_RUN and
 * returns UNIT_DONE(). The closing line is "N passed, N failed", which CI
 * reads; the exit status is non-zero when anything failed.
 */
#ifndef BF_UNIT_H
#define BF_UNIT_H

#include <stdio.h>
#include <string.h>

static int unit_passed, unit_failed, unit_current_failed;

#define UNIT_CHECK(cond)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
			unit_current_failed = 1;                                                   \
		}                                                                                  \
	} while (0)

#define UNIT_CHECK_INT(a, b)                                                                       \
	do {                                                                                       \
		long long ua_ = (long long)(a), ub_ = (long long)(b);                              \
		if (ua_ != ub_) {                                                                  \
			fprintf(stderr, "%s:%d: %s == %lld, expected %lld\n", __FILE__, __LINE__,  \
				#a, ua_, ub_);                                                     \
			unit_current_failed = 1;                                                   \
		}                                                                                  \
	} while (0)

#define UNIT_CHECK_STR(a, b)                                                                       \
	do {                                                                                       \
		const char *ua_ = (a), *ub_ = (b);                                                 \
		if (!ua_ || !ub_ || strcmp(ua_, ub_) != 0) {                                       \
			fprintf(stderr, "%s:%d: %s ==\n  \"%s\"\nexpected\n  \"%s\"\n", __FILE__,  \
				__LINE__, #a, ua_ ? ua_ : "(null)", ub_ ? ub_ : "(null)");         \
			unit_current_failed = 1;                                                   \
		}                                                                                  \
	} while (0)

#define UNIT_CHECK_CONTAINS(hay, needle)                                                           \
	do {                                                                                       \
		const char *uh_ = (hay), *un_ = (needle);                                          \
		if (!uh_ || !strstr(uh_, un_)) {                                                   \
			fprintf(stderr, "%s:%d: \"%s\" does not contain \"%s\"\n", __FILE__,       \
				__LINE__, uh_ ? uh_ : "(null)", un_);                              \
			unit_current_failed = 1;                                                   \
		}                                                                                  \
	} while (0)

#define UNIT_RUN(fn)                                                                               \
	do {                                                                                       \
		unit_current_failed = 0;                                                           \
		fn();                                                                              \
		if (unit_current_failed) {                                                         \
			unit_failed++;                                                             \
			fprintf(stderr, "FAIL %s\n", #fn);                                         \
		} else {                                                                           \
			unit_passed++;                                                             \
		}                                                                                  \
	} while (0)

#define UNIT_DONE()                                                                                \
	(printf("%s: %d passed, %d failed\n", __FILE__, unit_passed, unit_failed),                 \
	 unit_failed ? 1 : 0)

#endif
