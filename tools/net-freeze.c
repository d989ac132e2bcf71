/* net-freeze: chooses what training may change in a checkpoint (freeze.h). */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "cli.h"
#include "freeze.h"

_Noreturn static void usage(void) {
    printf("usage: %s [--train REGIME] [--glob PATTERN]... [--freeze-glob PATTERN]... [-o FILE] [FILE]\n"
           "\n"
           "Reads a checkpoint stream (FILE or stdin; the last checkpoint unless --pick), sets which\n"
           "parameters are trainable, and writes that one checkpoint (stdout unless -o). Optimizer\n"
           "state is dropped when the trainable set changes. Prints on stderr how many parameters\n"
           "are trainable out of the total.\n"
           "\n"
           "  -t, --train REGIME       start from a regime (default: keep the current flags):\n"
           "                           all, none, bn (gamma+beta), gamma, beta, output (final linear),\n"
           "                           bn+output, random-k (k random weights per output channel of\n"
           "                           every conv, stored as \"<name>.mask\" tensors; nothing else)\n"
           "  -k, --k K                random-k: weights per channel (default 2, as many as BN-only)\n"
           "  -s, --seed S             random-k: seed of the choice (default 1)\n"
           "  -g, --glob PATTERN       also train the parameter tensors whose name matches the shell\n"
           "                           pattern, e.g. 'fc.*' or 's3.*' (repeatable)\n"
           "  -f, --freeze-glob PATTERN  freeze the matching tensors (repeatable; applied last)\n"
           "  -p, --pick N             use checkpoint N of the input (from 0; default the last)\n"
           "  -l, --list               print each parameter tensor and its flag on stderr\n"
           "  -o, --output FILE        write FILE (whole or not at all) instead of stdout\n"
           "  -h, --help               this help\n"
           "  -V, --version            version\n"
           "\n"
           "Example: net-init --depth 56 | net-freeze --train bn | net-train ...\n",
           cli_prog);
    exit(EXIT_OK);
}

#define MAXGLOB 64

/* Trainable flags and masks, to tell whether anything changed. */
static char *snapshot(const checkpoint *c, size_t *len) {
    size_t n = 0;
    for (int i = 0; i < c->nt; i++) n += strlen(c->t[i].name) + 3 + (strcmp(c->t[i].role, "mask") ? 0 : c->t[i].numel);
    char *s = malloc(n + 1), *p = s;
    if (!s) abort();
    for (int i = 0; i < c->nt; i++) {
        const ck_tensor *t = &c->t[i];
        p += sprintf(p, "%s%c%c", t->name, 0, t->trainable ? 'T' : 'F');
        if (strcmp(t->role, "mask") == 0) {
            memcpy(p, t->data, t->numel);
            p += t->numel;
        }
    }
    *len = (size_t)(p - s);
    return s;
}

int main(int argc, char **argv) {
    cli_init(argv[0]);
    static const struct option opts[] = {
        {"train", required_argument, 0, 't'}, {"k", required_argument, 0, 'k'},
        {"seed", required_argument, 0, 's'},  {"glob", required_argument, 0, 'g'},
        {"freeze-glob", required_argument, 0, 'f'}, {"pick", required_argument, 0, 'p'},
        {"list", no_argument, 0, 'l'},        {"output", required_argument, 0, 'o'},
        {"help", no_argument, 0, 'h'},        {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0}};
    const char *regime = NULL, *out = NULL, *in = "-";
    const char *globs[MAXGLOB], *fglobs[MAXGLOB];
    int nglob = 0, nfglob = 0, list = 0, c;
    long long k = 2, seed = 1, pick = -1;
    bool k_set = false;
    while ((c = getopt_long(argc, argv, "t:k:s:g:f:p:lo:hV", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            if (regime) cli_usage_error("--train given twice ('%s' and '%s')", regime, optarg);
            regime = optarg;
            break;
        case 'k': k = cli_int("--k", optarg, 1, 1 << 30), k_set = true; break;
        case 's': seed = cli_int("--seed", optarg, 0, INT64_MAX); break;
        case 'g':
            if (nglob == MAXGLOB) cli_usage_error("too many --glob (at most %d)", MAXGLOB);
            globs[nglob++] = optarg;
            break;
        case 'f':
            if (nfglob == MAXGLOB) cli_usage_error("too many --freeze-glob (at most %d)", MAXGLOB);
            fglobs[nfglob++] = optarg;
            break;
        case 'p': pick = cli_int("--pick", optarg, 0, 1 << 30); break;
        case 'l': list = 1; break;
        case 'o': out = optarg; break;
        case 'h': usage();
        case 'V': cli_version();
        default: cli_usage_error("unknown option");
        }
    }
    if (optind < argc) in = argv[optind++];
    if (optind < argc) cli_usage_error("unexpected argument '%s'", argv[optind]);
    if (regime) {
        bool known = false;
        for (int i = 0; freeze_regimes[i]; i++) known |= strcmp(regime, freeze_regimes[i]) == 0;
        if (!known)
            cli_usage_error("--train: unknown regime '%s' (all, none, bn, gamma, beta, output, bn+output, random-k)",
                            regime);
    }
    if (k_set && !(regime && strcmp(regime, "random-k") == 0)) cli_usage_error("--k only applies to --train random-k");

    cli_install_signals();
    cli_out *o = cli_out_open(out, true);   /* refuses a terminal before reading anything */
    FILE *f = cli_open_in(in);
    char err[STREAM_ERRMAX];
    const char *inname = strcmp(in, "-") ? in : "stdin";
    checkpoint *ck = ck_read(f, inname, (int)pick, NULL, err);
    cli_close_in(f);
    if (!ck) cli_die("%s", err);
    uint64_t nnan, ninf;
    const ck_tensor *bad = ck_nonfinite(ck, NULL, &nnan, &ninf);
    if (bad)   /* passed through as it is: net-inspect shows them, net-train and net-eval refuse */
        cli_warn("warning: %s: tensor %s holds %llu NaN and %llu Inf values", inname, bad->name,
                 (unsigned long long)nnan, (unsigned long long)ninf);

    size_t la, lb;
    char *before = snapshot(ck, &la);
    if (regime && freeze_regime(ck, regime, (int)k, (uint64_t)seed, err)) cli_die("%s", err);
    for (int i = 0; i < nglob; i++)
        if (freeze_glob(ck, globs[i], true) == 0) cli_die("--glob '%s' matches no parameter tensor", globs[i]);
    for (int i = 0; i < nfglob; i++)
        if (freeze_glob(ck, fglobs[i], false) == 0) cli_die("--freeze-glob '%s' matches no parameter tensor", fglobs[i]);
    char *after = snapshot(ck, &lb);
    bool changed = la != lb || memcmp(before, after, la) != 0;
    free(before);
    free(after);
    if (changed) ck_drop_role(ck, "opt");

    if (list)
        for (int i = 0; i < ck->nt; i++) {
            const ck_tensor *t = &ck->t[i];
            if (strcmp(t->role, "param")) continue;
            const ck_tensor *m = freeze_mask_of(ck, t);
            fprintf(stderr, "%-28s %9zu  %s\n", t->name, t->numel,
                    !t->trainable ? "frozen" : m ? "trainable (masked)" : "trainable");
        }

    swriter w;
    sw_init(&w, o->fd);
    ck_write(&w, ck);
    if (sw_flush(&w)) cli_die("writing %s: %s", out && strcmp(out, "-") ? out : "stdout", strerror(w.err));
    sw_free(&w);
    cli_out_commit(o);

    uint64_t tr = freeze_count_trainable(ck), tot = freeze_count_total(ck);
    fprintf(stderr, "%s: %s: %llu of %llu parameters trainable (%.3f%%)%s\n", cli_prog, regime ? regime : "flags kept",
            (unsigned long long)tr, (unsigned long long)tot, tot ? 100.0 * (double)tr / (double)tot : 0.0,
            changed ? "" : ", unchanged");
    ck_free(ck);
    return EXIT_OK;
}
