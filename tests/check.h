/* check.h: the tiny unit-test harness shared by tests/test_*.c.
 *
 * A test binary is a list of TEST(name) functions run from main() with RUN(name).
 * CHECK(cond, fmt, ...) records a failure with file and line and keeps going; each test
 * prints one line "ok - name", "FAIL - name" or "skip - name: why". DONE() prints the
 * binary's tally as "# N passed, N failed, N skipped" (tests/run.sh adds them up) and
 * returns the exit status. */
#ifndef CHECK_H
#define CHECK_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_passed, check_failed, check_skipped;
static int check_cur_failed;
static const char *check_skip_why;

#define TEST(name) static void test_##name(void)
#define RUN(name)                                                                    \
    do {                                                                             \
        check_cur_failed = 0;                                                        \
        check_skip_why = NULL;                                                       \
        test_##name();                                                               \
        if (check_skip_why) {                                                        \
            check_skipped++;                                                         \
            printf("skip - %s: %s\n", #name, check_skip_why);                        \
        } else if (check_cur_failed) {                                               \
            check_failed++;                                                          \
            printf("FAIL - %s\n", #name);                                            \
        } else {                                                                     \
            check_passed++;                                                          \
            printf("ok - %s\n", #name);                                              \
        }                                                                            \
        fflush(stdout);                                                              \
    } while (0)
#define SKIP(why)                                                                    \
    do {                                                                             \
        check_skip_why = (why);                                                      \
        return;                                                                      \
    } while (0)
#define CHECK(cond, ...)                                                             \
    do {                                                                             \
        if (!(cond)) {                                                               \
            check_cur_failed++;                                                      \
            printf("  %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);        \
            printf(__VA_ARGS__);                                                     \
            printf("\n");                                                            \
        }                                                                            \
    } while (0)
/* |a-b| <= atol + rtol*|b| */
#define CHECK_CLOSE(a, b, atol, rtol, what)                                          \
    do {                                                                             \
        double check_a_ = (a), check_b_ = (b);                                       \
        CHECK(fabs(check_a_ - check_b_) <= (atol) + (rtol) * fabs(check_b_),         \
              "%s: %.9g vs %.9g", (what), check_a_, check_b_);                       \
    } while (0)
/* The test's random seed: BN_TEST_SEED when set, else dflt; printed as "# seed N" so that
 * a failure can be rerun with it. */
static inline unsigned long long check_seed(unsigned long long dflt) {
    const char *s = getenv("BN_TEST_SEED");
    unsigned long long seed = s ? strtoull(s, NULL, 10) : dflt;
    printf("# seed %llu\n", seed);
    return seed;
}
#define DONE()                                                                       \
    (printf("# %d passed, %d failed, %d skipped\n", check_passed, check_failed,      \
            check_skipped),                                                          \
     check_failed ? 1 : 0)
#endif
