/* net-eval: evaluates a checkpoint on a dataset stream: loss, top-1 accuracy, per-class
 * accuracy and the confusion matrix. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "cli.h"
#include "dataset.h"
#include "model.h"
#include "model_extra.h"
#include "ops.h"
#include "train.h"

_Noreturn static void usage(void) {
    printf("usage: %s CHECKPOINT DATA [--pick N] [--format text|tsv|json]\n"
           "\n"
           "Evaluates a checkpoint (the last of the stream unless --pick) on a dataset stream, BN in\n"
           "inference mode (running statistics), pixels scaled and normalised as recorded in the\n"
           "checkpoint by net-train (none for a checkpoint never trained). Prints the mean\n"
           "cross-entropy loss, top-1 accuracy, per-class accuracy and the confusion matrix (rows:\n"
           "true class, columns: predicted). Either input may be '-' (stdin), not both.\n"
           "\n"
           "  -p, --pick N        the checkpoint numbered N (from 0) of the stream\n"
           "  -f, --format F      text (default), tsv (key<TAB>value lines: images, correct, loss,\n"
           "                      accuracy, acc.CLASS, then confusion.CLASS<TAB>counts...) or json\n"
           "  -b, --batch N       images per forward pass (default 256; results do not depend on it)\n"
           "      --device D      ref, cpu, cuda or auto (default)\n"
           "      --precision P   fp32 (default), tf32 (cuda: TF32 tensor-core convolutions), or\n"
           "                      tf32-sim / bf16-sim (cpu, ref: their rounding simulated)\n"
           "      --threads N     OpenMP threads\n"
           "  -h, --help          this help\n"
           "  -V, --version       version\n",
           cli_prog);
    exit(EXIT_OK);
}

enum { O_DEVICE = 256, O_THREADS, O_PREC };

static void json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') printf("\\%c", ch);
        else if (ch < 0x20) printf("\\u%04x", ch);
        else putchar(ch);
    }
    putchar('"');
}
static void json_num(double v) {
    if (isfinite(v)) printf("%.6f", v);
    else printf("null");
}

int main(int argc, char **argv) {
    cli_init(argv[0]);
    static const struct option opts[] = {
        {"pick", required_argument, 0, 'p'},       {"format", required_argument, 0, 'f'},
        {"batch", required_argument, 0, 'b'},      {"device", required_argument, 0, O_DEVICE},
        {"precision", required_argument, 0, O_PREC},
        {"threads", required_argument, 0, O_THREADS}, {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},          {0, 0, 0, 0}};
    const char *format = "text", *device = "auto", *precision = "fp32";
    long long pick = -1, batch = 256, threads = 0;
    int c;
    while ((c = getopt_long(argc, argv, "p:f:b:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'p': pick = cli_int("--pick", optarg, 0, 1000000000); break;
        case 'f':
            format = cli_choice("--format", optarg, "text,tsv,json");
            break;
        case 'b': batch = cli_int("--batch", optarg, 1, 1 << 16); break;
        case O_DEVICE:
            device = cli_choice("--device", optarg, CLI_DEVICES);
            break;
        case O_PREC: precision = cli_choice("--precision", optarg, OPS_PRECISIONS); break;
        case O_THREADS: threads = cli_int("--threads", optarg, 1, 4096); break;
        case 'h': usage();
        case 'V': cli_version();
        default: cli_usage_error("unknown option or missing value");
        }
    }
    if (argc - optind != 2) cli_usage_error("expected CHECKPOINT and DATA, got %d argument%s", argc - optind,
                                            argc - optind == 1 ? "" : "s");
    const char *ckp = argv[optind], *dsp = argv[optind + 1];
    if (!strcmp(ckp, "-") && !strcmp(dsp, "-")) cli_usage_error("only one input can be stdin ('-')");
    const char *why = NULL;
    ops *o = ops_get(device, &why);
    if (!o) cli_die("--device %s: %s", device, why ? why : "not available");
    ops *po = ops_precision(o, precision, &why);
    if (!po) cli_die("--precision %s on the %s backend: %s", precision, o->name, why);
    o = po;
    if (threads > 0) omp_set_num_threads((int)threads);

    char err[STREAM_ERRMAX];
    int count = 0;
    FILE *f = cli_open_in(ckp);
    checkpoint *ck = ck_read(f, strcmp(ckp, "-") ? ckp : "stdin", (int)pick, &count, err);
    if (!ck) cli_die("%s", err);
    uint64_t nnan, ninf;
    const ck_tensor *bad = ck_nonfinite(ck, NULL, &nnan, &ninf);
    if (bad && (strcmp(bad->role, "param") == 0 || strcmp(bad->role, "buffer") == 0))
        cli_die("%s: tensor %s holds %llu NaN and %llu Inf values: the network cannot be evaluated", ckp, bad->name,
                (unsigned long long)nnan, (unsigned long long)ninf);
    cli_close_in(f);
    dataset d;
    f = cli_open_in(dsp);
    if (ds_load(f, strcmp(dsp, "-") ? dsp : "stdin", &d, err)) cli_die("%s", err);
    cli_close_in(f);
    if (train_check_data(ck, &d, dsp, err)) cli_die("%s", err);
    norm_cfg nm;
    if (norm_from_state(&ck->state, &nm, err)) cli_die("%s: %s", ckp, err);
    if (nm.meanstd && nm.c != d.h.c) cli_die("%s: normalisation for %d channels, images have %d", ckp, nm.c, d.h.c);
    if ((size_t)batch > d.n) batch = (long long)d.n;
    model *m = model_build(ck, o, (int)batch, err);
    if (!m) cli_die("%s: %s", ckp, err);
    /* on a backend with memory of its own the images go there once and the batches are
     * built there (the same bits); where they cannot, they are built here */
    char dwhy[256];
    if (cli_env_flag("BN_DEVICE_DATA", true) && model_data_attach(m, &d, NULL, dwhy) && model_backend(m))
        cli_warn("batches built on the host: %s", dwhy);
    eval_result r;
    if (eval_run(m, &d, &nm, &r, err)) cli_die("%s", err);

    int K = r.classes;
    char (*names)[DS_NAMELEN] = calloc((size_t)K, sizeof *names);
    uint64_t *rows = calloc((size_t)K, sizeof *rows);
    if (!names || !rows) cli_die("out of memory");
    for (int k = 0; k < K; k++) {
        if (k < d.h.nclasses) snprintf(names[k], DS_NAMELEN, "%s", d.h.classes[k]);
        else snprintf(names[k], DS_NAMELEN, "class%d", k);
        for (int j = 0; j < K; j++) rows[k] += r.confusion[(size_t)k * K + j];
    }
    double acc = r.n ? (double)r.correct / (double)r.n : NAN;
    const char *arch = kv_str(&ck->arch, "name", "?");
    if (!strcmp(format, "tsv")) {
        printf("images\t%llu\ncorrect\t%llu\nloss\t%.6f\naccuracy\t%.6f\n", (unsigned long long)r.n,
               (unsigned long long)r.correct, r.loss, acc);
        for (int k = 0; k < K; k++)
            printf("acc.%s\t%.6f\n", names[k], rows[k] ? (double)r.confusion[(size_t)k * K + k] / (double)rows[k] : NAN);
        for (int k = 0; k < K; k++) {
            printf("confusion.%s", names[k]);
            for (int j = 0; j < K; j++) printf("\t%llu", (unsigned long long)r.confusion[(size_t)k * K + j]);
            putchar('\n');
        }
    } else if (!strcmp(format, "json")) {
        printf("{\"checkpoint\": {\"arch\": ");
        json_str(arch);
        printf(", \"depth\": %lld, \"epoch\": %lld, \"step\": %lld}, \"images\": %llu, \"correct\": %llu, \"loss\": ",
               (long long)kv_int(&ck->arch, "depth", 0), (long long)ck->epoch, (long long)ck->step,
               (unsigned long long)r.n, (unsigned long long)r.correct);
        json_num(r.loss);
        printf(", \"accuracy\": ");
        json_num(acc);
        printf(", \"classes\": [");
        for (int k = 0; k < K; k++) {
            printf("%s{\"name\": ", k ? ", " : "");
            json_str(names[k]);
            printf(", \"images\": %llu, \"correct\": %llu, \"accuracy\": ", (unsigned long long)rows[k],
                   (unsigned long long)r.confusion[(size_t)k * K + k]);
            json_num(rows[k] ? (double)r.confusion[(size_t)k * K + k] / (double)rows[k] : NAN);
            printf("}");
        }
        printf("], \"confusion\": [");
        for (int k = 0; k < K; k++) {
            printf("%s[", k ? ", " : "");
            for (int j = 0; j < K; j++) printf("%s%llu", j ? ", " : "", (unsigned long long)r.confusion[(size_t)k * K + j]);
            printf("]");
        }
        printf("]}\n");
    } else {
        printf("checkpoint  %s: %s-%lld, epoch %lld, step %lld\n", ckp, arch, (long long)kv_int(&ck->arch, "depth", 0),
               (long long)ck->epoch, (long long)ck->step);
        printf("dataset     %s: %llu images\n", dsp, (unsigned long long)r.n);
        printf("normalize   %s\n", nm.meanstd ? "meanstd (as recorded)" : "none (pixels/255)");
        printf("loss        %.4f\n", r.loss);
        printf("accuracy    %.2f%% (%llu/%llu)\n\nper class:\n", 100 * acc, (unsigned long long)r.correct,
               (unsigned long long)r.n);
        for (int k = 0; k < K; k++) {
            if (rows[k])
                printf("  %-12s %6.2f%% (%llu/%llu)\n", names[k],
                       100.0 * (double)r.confusion[(size_t)k * K + k] / (double)rows[k],
                       (unsigned long long)r.confusion[(size_t)k * K + k], (unsigned long long)rows[k]);
            else printf("  %-12s      - (0 images)\n", names[k]);
        }
        printf("\nconfusion matrix (rows: true class, columns: predicted):\n%12s", "");
        for (int j = 0; j < K; j++) printf(" %6.6s", names[j]);
        putchar('\n');
        for (int k = 0; k < K; k++) {
            printf("  %-10.10s", names[k]);
            for (int j = 0; j < K; j++) printf(" %6llu", (unsigned long long)r.confusion[(size_t)k * K + j]);
            putchar('\n');
        }
    }
    if (fflush(stdout) || ferror(stdout)) cli_die("writing stdout: %s", strerror(errno));
    free(names), free(rows);
    eval_free(&r);
    model_free(m);
    ds_free(&d);
    ck_free(ck);
    return EXIT_OK;
}
