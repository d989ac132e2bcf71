/* cli.c: messages, exit codes, option parsing and whole-or-nothing outputs (cli.h). */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *cli_prog = "bnonly";

void cli_init(const char *argv0) {
    const char *s = argv0 ? strrchr(argv0, '/') : NULL;
    cli_prog = s ? s + 1 : (argv0 ? argv0 : "bnonly");
    signal(SIGPIPE, SIG_DFL);
}

static void vmsg(const char *fmt, va_list ap) {
    fprintf(stderr, "%s: ", cli_prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void cli_warn(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmsg(fmt, ap);
    va_end(ap);
}

void cli_die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    cli_progress_end();
    vmsg(fmt, ap);
    va_end(ap);
    cli_out_cleanup_all();
    exit(EXIT_RUNTIME);
}

void cli_usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmsg(fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try '%s --help' for more information.\n", cli_prog);
    cli_out_cleanup_all();
    exit(EXIT_USAGE);
}

void cli_version(void) {
#ifdef BN_VERSION
    printf("%s (bnonly) %s\n", cli_prog, BN_VERSION);
#else
    printf("%s (bnonly)\n", cli_prog);
#endif
    exit(EXIT_OK);
}

/* ---- numeric options: non-exiting cores, and the exiting forms built on them ---------- */
__attribute__((format(printf, 3, 4))) static int why_set(char *why, size_t cap, const char *fmt, ...) {
    if (why && cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, cap, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int cli_parse_int(const char *opt, const char *s, long long lo, long long hi, long long *out, char *why,
                  size_t cap) {
    char *end;
    if (!s || !*s) return why_set(why, cap, "%s: missing number", opt);
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno == ERANGE || *end || end == s) return why_set(why, cap, "%s: '%s' is not an integer", opt, s);
    if (v < lo || v > hi) return why_set(why, cap, "%s: %lld is out of range [%lld, %lld]", opt, v, lo, hi);
    *out = v;
    return 0;
}

int cli_parse_double(const char *opt, const char *s, double lo, double hi, double *out, char *why, size_t cap) {
    char *end;
    if (!s || !*s) return why_set(why, cap, "%s: missing number", opt);
    errno = 0;
    double v = strtod(s, &end);
    if (errno == ERANGE || *end || end == s || !isfinite(v))
        return why_set(why, cap, "%s: '%s' is not a finite number", opt, s);
    if (!(v >= lo && v <= hi)) return why_set(why, cap, "%s: %g is out of range [%g, %g]", opt, v, lo, hi);
    *out = v;
    return 0;
}

int cli_parse_int_list(const char *opt, const char *s, long long *out, int max, long long lo, long long hi,
                       int *count, char *why, size_t cap) {
    int n = 0;
    char item[64];
    if (!s) return why_set(why, cap, "%s: missing list", opt);
    for (const char *p = s;; p++) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 0) return why_set(why, cap, "%s: empty item in '%s'", opt, s);
        if (len >= sizeof item) return why_set(why, cap, "%s: item too long in '%s'", opt, s);
        if (n >= max) return why_set(why, cap, "%s: more than %d values", opt, max);
        memcpy(item, p, len);
        item[len] = 0;
        if (cli_parse_int(opt, item, lo, hi, &out[n], why, cap)) return -1;
        n++;
        if (!end) break;
        p = end;
    }
    *count = n;
    return 0;
}

bool cli_env_flag(const char *name, bool dflt) {
    const char *s = getenv(name);
    if (!s || !*s) return dflt;
    return strcmp(s, "0") != 0;
}

int cli_parse_choice(const char *opt, const char *value, const char *choices, char *why, size_t cap) {
    if (!value) return why_set(why, cap, "%s: missing value (one of %s)", opt, choices);
    size_t n = strlen(value);
    for (const char *p = choices; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && strncmp(p, value, n) == 0) return 0;
        if (!end) break;
        p = end + 1;
    }
    return why_set(why, cap, "%s: '%s' is not one of %s", opt, value, choices);
}

long long cli_int(const char *opt, const char *s, long long lo, long long hi) {
    char why[CLI_WHYMAX];
    long long v = 0;
    if (cli_parse_int(opt, s, lo, hi, &v, why, sizeof why)) cli_usage_error("%s", why);
    return v;
}

double cli_double(const char *opt, const char *s, double lo, double hi) {
    char why[CLI_WHYMAX];
    double v = 0;
    if (cli_parse_double(opt, s, lo, hi, &v, why, sizeof why)) cli_usage_error("%s", why);
    return v;
}

int cli_int_list(const char *opt, const char *s, long long *out, int max, long long lo, long long hi) {
    char why[CLI_WHYMAX];
    int n = 0;
    if (cli_parse_int_list(opt, s, out, max, lo, hi, &n, why, sizeof why)) cli_usage_error("%s", why);
    return n;
}

const char *cli_choice(const char *opt, const char *value, const char *choices) {
    char why[CLI_WHYMAX];
    if (cli_parse_choice(opt, value, choices, why, sizeof why)) cli_usage_error("%s", why);
    return value;
}

FILE *cli_open_in(const char *path) {
    if (!path || strcmp(path, "-") == 0) return stdin;
    FILE *f = fopen(path, "rb");
    if (!f) cli_die("%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) cli_die("%s: is a directory", path);
    return f;
}

void cli_close_in(FILE *f) {
    if (f && f != stdin) fclose(f);
}

/* ---- whole-or-nothing outputs ------------------------------------------------------ */
#define MAX_OUTS 16
static cli_out *outs[MAX_OUTS];
/* Paths of uncommitted temporaries, copied so that the signal handler need not touch the
 * heap structures while they change. */
static char out_tmp_paths[MAX_OUTS][PATH_MAX];
static volatile sig_atomic_t out_tmp_live[MAX_OUTS];

/* Outputs written in place (stdout, a device): kept here only so that one still open when the
 * program exits (cli_die) stays reachable, which leak checkers want. */
static cli_out *plain_outs[MAX_OUTS];
static void plain_keep(cli_out *o) {
    for (int i = 0; i < MAX_OUTS; i++)
        if (!plain_outs[i]) { plain_outs[i] = o; return; }
}
static void plain_forget(cli_out *o) {
    for (int i = 0; i < MAX_OUTS; i++)
        if (plain_outs[i] == o) plain_outs[i] = NULL;
}

static int out_slot(cli_out *o) {
    for (int i = 0; i < MAX_OUTS; i++)
        if (outs[i] == o) return i;
    return -1;
}

cli_out *cli_out_open(const char *path, bool binary) {
    cli_out *o = calloc(1, sizeof *o);
    if (!o) cli_die("out of memory");
    if (!path || strcmp(path, "-") == 0) {
        if (binary && isatty(STDOUT_FILENO))
            cli_usage_error("refusing to write binary data to a terminal; redirect stdout or use -o FILE");
        o->f = stdout;
        o->fd = STDOUT_FILENO;
        plain_keep(o);
        return o;
    }
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        /* a device or a named pipe (/dev/null, a FIFO): written directly, never renamed onto */
        if (S_ISDIR(st.st_mode)) cli_die("%s: is a directory", path);
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0) cli_die("%s: cannot open: %s", path, strerror(errno));
        if (binary && isatty(fd)) cli_usage_error("refusing to write binary data to the terminal %s", path);
        o->fd = fd;
        o->f = fdopen(fd, "wb");
        if (!o->f) cli_die("%s: %s", path, strerror(errno));
        o->direct = true;
        plain_keep(o);
        return o;
    }
    int slot = -1;
    for (int i = 0; i < MAX_OUTS; i++)
        if (!outs[i]) { slot = i; break; }
    if (slot < 0) cli_die("too many open outputs");
    size_t n = strlen(path) + 32;
    o->path = strdup(path);
    o->tmp = malloc(n);
    if (!o->path || !o->tmp) cli_die("out of memory");
    snprintf(o->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    if (strlen(o->tmp) >= PATH_MAX) cli_die("%s: path too long", path);
    int fd = open(o->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) cli_die("%s: cannot create: %s", o->tmp, strerror(errno));
    o->fd = fd;
    o->f = fdopen(fd, "wb");
    if (!o->f) cli_die("%s: %s", o->tmp, strerror(errno));
    outs[slot] = o;
    strcpy(out_tmp_paths[slot], o->tmp);
    out_tmp_live[slot] = 1;
    return o;
}

static void out_release(cli_out *o) {
    int slot = out_slot(o);
    if (slot >= 0) {
        out_tmp_live[slot] = 0;
        outs[slot] = NULL;
    }
    free(o->path);
    free(o->tmp);
    free(o);
}

void cli_out_commit(cli_out *o) {
    if (!o) return;
    if (!o->path) {
        if (fflush(o->f) != 0 || ferror(o->f)) cli_die("write error on output: %s", strerror(errno));
        if (o->direct) fclose(o->f);
        plain_forget(o);
        free(o);
        return;
    }
    if (fflush(o->f) != 0 || ferror(o->f)) cli_die("%s: write error: %s", o->path, strerror(errno));
    if (fsync(o->fd) != 0 && errno != EINVAL) cli_die("%s: fsync: %s", o->path, strerror(errno));
    if (fclose(o->f) != 0) cli_die("%s: close: %s", o->path, strerror(errno));
    o->f = NULL;
    if (rename(o->tmp, o->path) != 0) cli_die("%s: cannot rename into place: %s", o->path, strerror(errno));
    out_release(o);
}

void cli_out_abort(cli_out *o) {
    if (!o) return;
    if (o->path) {
        if (o->f) fclose(o->f);
        unlink(o->tmp);
        out_release(o);
    } else {
        if (o->direct) fclose(o->f);
        plain_forget(o);
        free(o);
    }
}

void cli_out_cleanup_all(void) {
    for (int i = 0; i < MAX_OUTS; i++)
        if (out_tmp_live[i]) {
            unlink(out_tmp_paths[i]);
            out_tmp_live[i] = 0;
        }
}

static void on_fatal_signal(int sig) {
    for (int i = 0; i < MAX_OUTS; i++)
        if (out_tmp_live[i]) unlink(out_tmp_paths[i]);
    signal(sig, SIG_DFL);
    raise(sig);
}

void cli_install_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fatal_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGPIPE, &sa, NULL);
}

static volatile sig_atomic_t stop_signal;
static void on_stop_signal(int sig) { stop_signal = sig; }

void cli_catch_stop_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = on_fatal_signal;
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGPIPE, &sa, NULL);
}

int cli_stop_requested(void) { return stop_signal; }

bool cli_isatty(int fd) { return isatty(fd) == 1; }

static bool progress_drawn;

void cli_progress(const char *what, uint64_t done, uint64_t total) {
    static int tty = -1;
    if (tty < 0) tty = cli_isatty(STDERR_FILENO);
    if (!tty || total == 0) return;
    int width = 30, fill = (int)(width * (done > total ? total : done) / total);
    fprintf(stderr, "\r%s: %-12s [", cli_prog, what);
    for (int i = 0; i < width; i++) fputc(i < fill ? '#' : '.', stderr);
    fprintf(stderr, "] %3d%%", (int)(100 * (done > total ? total : done) / total));
    fflush(stderr);
    progress_drawn = true;
}

void cli_progress_end(void) {
    if (progress_drawn) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        progress_drawn = false;
    }
}

bool cli_glob(const char *pattern, const char *name) { return fnmatch(pattern, name, 0) == 0; }
