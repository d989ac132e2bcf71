/* cli.h: what every program shares: its name in messages, exit codes, numeric option
 * parsing, opening inputs ("-" = stdin) and outputs written whole or not at all. */
#ifndef BN_CLI_H
#define BN_CLI_H
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

extern const char *cli_prog; /* set by cli_init(argv[0]) */

void cli_init(const char *argv0);
/* "prog: message" on stderr. */
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "prog: message" then exit(1); removes any output file still open (cli_out). */
_Noreturn void cli_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "prog: message" and "Try 'prog --help'." then exit(2). */
_Noreturn void cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints "prog VERSION" and exits 0. */
_Noreturn void cli_version(void);

/* Strict numeric parsing of option values: the whole string must be a number in
 * [lo, hi]; otherwise a usage error naming the option. */
long long cli_int(const char *opt, const char *s, long long lo, long long hi);
double cli_double(const char *opt, const char *s, double lo, double hi);
/* Parses "a,b,c" into at most max integers in [lo,hi]; returns the count. */
int cli_int_list(const char *opt, const char *s, long long *out, int max, long long lo, long long hi);

/* Returns value when it is one of the comma-separated choices ("ref,cpu,cuda,auto");
 * otherwise a usage error naming the option and the choices. */
const char *cli_choice(const char *opt, const char *value, const char *choices);
/* Non-exiting cores of the four parsers above (for fuzzing and for callers that want to
 * recover): return 0 with the value (or *count values, or the choice accepted), or -1 with
 * the message the exiting form prints (without the program name) in why[cap]. */
#define CLI_WHYMAX 1024
int cli_parse_int(const char *opt, const char *s, long long lo, long long hi, long long *out, char *why,
                  size_t cap);
int cli_parse_double(const char *opt, const char *s, double lo, double hi, double *out, char *why, size_t cap);
int cli_parse_int_list(const char *opt, const char *s, long long *out, int max, long long lo, long long hi,
                       int *count, char *why, size_t cap);
int cli_parse_choice(const char *opt, const char *value, const char *choices, char *why, size_t cap);
/* An on/off switch from the environment (BN_FAST, BN_DEVICE_DATA, ...): "0" is off, any
 * other value on; unset or empty: dflt. */
bool cli_env_flag(const char *name, bool dflt);
/* The --device choices every computing tool takes. */
#define CLI_DEVICES "ref,cpu,cuda,auto"

/* Opens an input: "-" or NULL is stdin. Dies with a message when it cannot. */
FILE *cli_open_in(const char *path);
void cli_close_in(FILE *f);

/* An output written whole or not at all. "-" or NULL is stdout (refused when it is a
 * terminal and binary is set); an existing device or FIFO (/dev/null) is written as it is. A file is written to "PATH.tmp.PID" and renamed onto PATH
 * by cli_out_commit; cli_die, a fatal signal (cli_install_signals) or cli_out_abort remove
 * the temporary, so no partial file is ever left behind under PATH. */
typedef struct cli_out {
    FILE *f;
    int fd;
    char *path;  /* final path, NULL for stdout */
    char *tmp;   /* temporary path, NULL for stdout */
    bool direct; /* a device or FIFO opened as it is (path stays NULL) */
} cli_out;
cli_out *cli_out_open(const char *path, bool binary);
/* Flushes, fsyncs and renames into place; dies with a message on any error. */
void cli_out_commit(cli_out *o);
void cli_out_abort(cli_out *o);
/* Removes every uncommitted temporary output (called by cli_die and the signal handler). */
void cli_out_cleanup_all(void);
/* SIGINT/SIGTERM/SIGHUP: remove temporaries, then die by the signal. A program that wants
 * to act on SIGINT itself (net-train writes a checkpoint) uses cli_stop_requested instead. */
void cli_install_signals(void);
/* Makes SIGINT/SIGTERM set a flag that cli_stop_requested() returns, instead of dying. */
void cli_catch_stop_signals(void);
int cli_stop_requested(void);   /* 0, or the signal number that asked to stop */

/* True when fd is a terminal (progress bars are drawn only then). */
bool cli_isatty(int fd);
/* A progress bar on stderr, only when stderr is a terminal. */
void cli_progress(const char *what, uint64_t done, uint64_t total);
void cli_progress_end(void);

/* Matches a shell glob (fnmatch) against a name. */
bool cli_glob(const char *pattern, const char *name);
#endif
