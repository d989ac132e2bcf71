/* harness_cli.c: fuzz harness of the numeric option parsers (harness.h): the non-exiting
 * cores cli_parse_int/double/int_list/choice that cli_int & co. exit on. Byte 0 picks the
 * parser (bits 0-1) and the range (bits 2-4); the rest is the value (cut at a NUL). */
#include "harness.h"

#include <errno.h>
#include <limits.h>
#include <math.h>

#include "cli.h"
#include "harness_util.h"

static const long long int_lo[8] = {LLONG_MIN, 0, 1, -5, 0, 1, LLONG_MIN, 1};
static const long long int_hi[8] = {LLONG_MAX, 255, 1000000, 5, 0, LLONG_MAX, -1, 1};
static const double dbl_lo[8] = {-HUGE_VAL, 0, 1e-12, -1, 0, 0.5, -1e300, 1};
static const double dbl_hi[8] = {HUGE_VAL, 1, 1e6, 1, 0, 0.5, 1e300, 1e308};
static const char *choices[8] = {"ref,cpu,cuda,auto", "train,test,both", "a", "x,,y",
                                 "text,tsv,json", ",", "paper,seed", "one,two,three,four,five,six"};

/* True when value is one of the comma-separated items of list. */
static int is_item(const char *value, const char *list) {
    size_t n = strlen(value);
    for (const char *p = list;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && strncmp(p, value, n) == 0) return 1;
        if (!end) return 0;
        p = end + 1;
    }
}

/* The verdict a plain reading of the rules gives for an integer. */
static int int_ok(const char *s, long long lo, long long hi, long long *v) {
    char *end;
    errno = 0;
    if (!*s) return 0;
    *v = strtoll(s, &end, 10);
    return errno == 0 && end != s && !*end && *v >= lo && *v <= hi;
}

int fuzz_cli(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int which = data[0] & 3, range = (data[0] >> 2) & 7;
    size_t n = size - 1;
    char *s = malloc(n + 1);
    if (!s) return 0;
    memcpy(s, data + 1, n);
    s[n] = 0;
    char why[CLI_WHYMAX];
    why[0] = 0;
    int ret = 0, rc = -1;
    fuzz_accepted = 0;
    if (which == 0) {
        long long v = 12345, want;
        rc = cli_parse_int("--int", s, int_lo[range], int_hi[range], &v, why, sizeof why);
        int ok = int_ok(s, int_lo[range], int_hi[range], &want);
        if ((rc == 0) != ok) ret = FUZZ_BROKEN("cli_parse_int(\"%s\") = %d, expected %s", s, rc, ok ? "ok" : "an error");
        else if (rc == 0 && v != want) ret = FUZZ_BROKEN("cli_parse_int(\"%s\") = %lld, expected %lld", s, v, want);
        else if (rc != 0 && strncmp(why, "--int: ", 7) != 0) ret = FUZZ_BROKEN("cli_parse_int: message \"%s\"", why);
    } else if (which == 1) {
        double v = 0;
        rc = cli_parse_double("--x", s, dbl_lo[range], dbl_hi[range], &v, why, sizeof why);
        if (rc == 0 && (!isfinite(v) || v < dbl_lo[range] || v > dbl_hi[range]))
            ret = FUZZ_BROKEN("cli_parse_double(\"%s\") accepted %g outside [%g, %g]", s, v, dbl_lo[range], dbl_hi[range]);
        else if (rc == 0 && strtod(s, NULL) != v) ret = FUZZ_BROKEN("cli_parse_double(\"%s\") = %g", s, v);
        else if (rc != 0 && strncmp(why, "--x: ", 5) != 0) ret = FUZZ_BROKEN("cli_parse_double: message \"%s\"", why);
    } else if (which == 2) {
        long long out[8];
        int count = -1, max = 1 + (range & 7);
        long long lo = int_lo[range], hi = int_hi[range];
        rc = cli_parse_int_list("--list", s, out, max, lo, hi, &count, why, sizeof why);
        if (rc == 0) {
            if (count < 1 || count > max) ret = FUZZ_BROKEN("cli_parse_int_list(\"%s\"): %d values, max %d", s, count, max);
            for (int i = 0; ret == 0 && i < count; i++)
                if (out[i] < lo || out[i] > hi) ret = FUZZ_BROKEN("cli_parse_int_list(\"%s\"): %lld out of range", s, out[i]);
            /* the values printed back with commas give the same list */
            char back[8 * 24];
            size_t at = 0;
            for (int i = 0; ret == 0 && i < count; i++) at += (size_t)snprintf(back + at, sizeof back - at, "%s%lld", i ? "," : "", out[i]);
            long long again[8];
            int count2 = -1;
            if (ret == 0 && (cli_parse_int_list("--list", back, again, max, lo, hi, &count2, why, sizeof why) != 0 ||
                             count2 != count || memcmp(again, out, (size_t)count * sizeof out[0]) != 0))
                ret = FUZZ_BROKEN("cli_parse_int_list: \"%s\" reads back differently", back);
        } else if (strncmp(why, "--list: ", 8) != 0) {
            ret = FUZZ_BROKEN("cli_parse_int_list: message \"%s\"", why);
        }
    } else {
        rc = cli_parse_choice("--choice", s, choices[range], why, sizeof why);
        if ((rc == 0) != is_item(s, choices[range]))
            ret = FUZZ_BROKEN("cli_parse_choice(\"%s\", \"%s\") = %d", s, choices[range], rc);
        else if (rc != 0 && strncmp(why, "--choice: ", 10) != 0) ret = FUZZ_BROKEN("cli_parse_choice: message \"%s\"", why);
    }
    free(s);
    fuzz_accepted = rc == 0 && ret == 0;
    return ret;
}
