/* net-ablate: the paper's gamma study. Reports, per BatchNorm layer, the fraction of
 * |gamma| below thresholds, and writes a checkpoint with the small gammas set to zero
 * (those random features switched off) so net-eval can measure what they were worth. */
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "cli.h"

_Noreturn static void usage(void) {
    printf("usage: %s CHECKPOINT --report T1,T2,... [--format tsv|text]\n"
           "       %s CHECKPOINT --zero-below T [--beta] [-o FILE]\n"
           "\n"
           "The gamma study of Frankle et al. (section 5). Reads a checkpoint stream (CHECKPOINT or\n"
           "stdin; the last checkpoint unless --pick). BatchNorm layers are the tensors named\n"
           "*.gamma (and their *.beta).\n"
           "\n"
           "  -r, --report LIST     print, for every BN layer and for all of them together, the\n"
           "                        number of channels and the fraction whose |gamma| is below each\n"
           "                        threshold of LIST (e.g. 0.01,0.05,0.1)\n"
           "  -z, --zero-below T    write the checkpoint with every gamma of |gamma| < T set to 0\n"
           "                        (the channel then outputs its beta, a constant); stderr says how\n"
           "                        many of how many were zeroed\n"
           "      --beta            with --zero-below: zero those channels' beta too (the channel\n"
           "                        then outputs 0)\n"
           "  -f, --format F        --report: tsv (default: layer, channels, then below_T columns)\n"
           "                        or text (aligned, percentages)\n"
           "  -p, --pick N          checkpoint N of the stream (from 0) instead of the last\n"
           "  -o, --output FILE     write FILE (whole or not at all) instead of stdout\n"
           "  -h, --help            this help\n"
           "  -V, --version         version\n"
           "\n"
           "Example: net-ablate bnonly.ckpt --zero-below 0.05 | net-eval - test.ds\n",
           cli_prog, cli_prog);
    exit(EXIT_OK);
}

#define MAXT 16

static bool is_gamma(const ck_tensor *t) {
    size_t n = strlen(t->name);
    return n > 6 && strcmp(t->name + n - 6, ".gamma") == 0 && strcmp(t->role, "param") == 0 && t->dtype == DT_F32;
}

static float getf(const ck_tensor *t, size_t i) {
    float v;
    memcpy(&v, (const char *)t->data + i * sizeof v, sizeof v);
    return v;
}

static void setf(ck_tensor *t, size_t i, float v) { memcpy((char *)t->data + i * sizeof v, &v, sizeof v); }

static void report(const checkpoint *ck, const double *th, int nth, bool text) {
    uint64_t all = 0, allbelow[MAXT] = {0};
    if (text) {
        printf("%-24s %8s", "layer", "channels");
        for (int k = 0; k < nth; k++) printf("  |g|<%-7g", th[k]);
        printf("\n");
    } else {
        printf("layer\tchannels");
        for (int k = 0; k < nth; k++) printf("\tbelow_%g", th[k]);
        printf("\n");
    }
    for (int i = 0; i < ck->nt; i++) {
        const ck_tensor *t = &ck->t[i];
        if (!is_gamma(t)) continue;
        uint64_t below[MAXT] = {0};
        for (size_t j = 0; j < t->numel; j++) {
            double a = fabs((double)getf(t, j));
            for (int k = 0; k < nth; k++) below[k] += a < th[k];
        }
        int len = (int)strlen(t->name) - 6;
        if (text) printf("%-24.*s %8zu", len, t->name, t->numel);
        else printf("%.*s\t%zu", len, t->name, t->numel);
        for (int k = 0; k < nth; k++) {
            double fr = t->numel ? (double)below[k] / (double)t->numel : 0;
            if (text) printf("  %10.1f%%", 100 * fr);
            else printf("\t%.6f", fr);
            allbelow[k] += below[k];
        }
        printf("\n");
        all += t->numel;
    }
    if (text) printf("%-24s %8llu", "all", (unsigned long long)all);
    else printf("all\t%llu", (unsigned long long)all);
    for (int k = 0; k < nth; k++) {
        double fr = all ? (double)allbelow[k] / (double)all : 0;
        if (text) printf("  %10.1f%%", 100 * fr);
        else printf("\t%.6f", fr);
    }
    printf("\n");
}

static char *beta_name(const char *gamma) {
    size_t n = strlen(gamma) - 6;
    char *s = malloc(n + 6);
    if (!s) abort();
    memcpy(s, gamma, n);
    strcpy(s + n, ".beta");
    return s;
}

int main(int argc, char **argv) {
    cli_init(argv[0]);
    static const struct option opts[] = {
        {"report", required_argument, 0, 'r'}, {"zero-below", required_argument, 0, 'z'},
        {"beta", no_argument, 0, 'b'},         {"format", required_argument, 0, 'f'},
        {"pick", required_argument, 0, 'p'},   {"output", required_argument, 0, 'o'},
        {"help", no_argument, 0, 'h'},         {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0}};
    const char *in = "-", *out = NULL, *format = "tsv", *reportarg = NULL;
    double zero = -1;
    bool beta = false;
    long long pick = -1;
    int c;
    while ((c = getopt_long(argc, argv, "r:z:f:p:o:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'r': reportarg = optarg; break;
        case 'z': zero = cli_double("--zero-below", optarg, 0, INFINITY); break;
        case 'b': beta = true; break;
        case 'f': format = cli_choice("--format", optarg, "tsv,text"); break;
        case 'p': pick = cli_int("--pick", optarg, 0, 1 << 30); break;
        case 'o': out = optarg; break;
        case 'h': usage();
        case 'V': cli_version();
        default: cli_usage_error("unknown option");
        }
    }
    if (optind < argc) in = argv[optind++];
    if (optind < argc) cli_usage_error("unexpected argument '%s'", argv[optind]);
    if (!reportarg == (zero < 0)) cli_usage_error("give exactly one of --report and --zero-below");
    if (beta && zero < 0) cli_usage_error("--beta only applies to --zero-below");
    if (out && reportarg) cli_usage_error("--output only applies to --zero-below (the report goes to stdout)");

    double th[MAXT];
    int nth = 0;
    if (reportarg) {
        /* thresholds are reals: split by hand, each through cli_double */
        char *s = strdup(reportarg), *save = NULL;
        if (!s) abort();
        if (!*s || s[0] == ',' || s[strlen(s) - 1] == ',' || strstr(s, ",,"))
            cli_usage_error("--report: empty threshold in '%s'", reportarg);
        for (char *p = strtok_r(s, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
            if (nth == MAXT) cli_usage_error("--report: at most %d thresholds", MAXT);
            th[nth++] = cli_double("--report", p, 0, INFINITY);
        }
        free(s);
    }

    cli_install_signals();
    cli_out *o = reportarg ? NULL : cli_out_open(out, true);
    FILE *f = cli_open_in(in);
    char err[STREAM_ERRMAX];
    const char *inname = strcmp(in, "-") ? in : "stdin";
    checkpoint *ck = ck_read(f, inname, (int)pick, NULL, err);
    cli_close_in(f);
    if (!ck) cli_die("%s", err);
    int ngamma = 0;
    for (int i = 0; i < ck->nt; i++) ngamma += is_gamma(&ck->t[i]);
    if (!ngamma) cli_die("%s: no BatchNorm gamma tensor (*.gamma, f32 param)", inname);

    if (reportarg) {
        report(ck, th, nth, strcmp(format, "text") == 0);
        if (fflush(stdout) || ferror(stdout)) cli_die("writing stdout failed");
        ck_free(ck);
        return EXIT_OK;
    }

    uint64_t zeroed = 0, total = 0;
    for (int i = 0; i < ck->nt; i++) {
        ck_tensor *t = &ck->t[i];
        if (!is_gamma(t)) continue;
        ck_tensor *b = NULL;
        if (beta) {
            char *bn = beta_name(t->name);
            b = ck_find(ck, bn);
            if (!b || b->dtype != DT_F32 || b->numel != t->numel) cli_die("%s: no f32 %s beside %s", inname, bn, t->name);
            free(bn);
        }
        for (size_t j = 0; j < t->numel; j++)
            if (fabs((double)getf(t, j)) < zero) {
                setf(t, j, 0.0f);
                if (b) setf(b, j, 0.0f);
                zeroed++;
            }
        total += t->numel;
    }
    swriter w;
    sw_init(&w, o->fd);
    ck_write(&w, ck);
    if (sw_flush(&w)) cli_die("writing %s: %s", out && strcmp(out, "-") ? out : "stdout", strerror(w.err));
    sw_free(&w);
    cli_out_commit(o);
    fprintf(stderr, "%s: %llu of %llu gammas below %g set to zero (%.1f%%)%s\n", cli_prog, (unsigned long long)zeroed,
            (unsigned long long)total, zero, total ? 100.0 * (double)zeroed / (double)total : 0.0,
            beta ? ", their betas too" : "");
    ck_free(ck);
    return EXIT_OK;
}
