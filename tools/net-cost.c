/* net-cost: the work of one training step of a checkpoint's model, counted, not timed:
 * floating-point operations and bytes per layer kind and direction (model.h's
 * model_cost_rows, the rows of BN_PROFILE's table), and the least time each could take on a
 * machine of given peaks (a roofline: the larger of flops / peak and bytes / bandwidth), so
 * that a measured profile can say how far each kernel is from its limit, and a target
 * (seconds per epoch) can be checked against what the hardware allows. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "cli.h"
#include "model.h"
#include "model_extra.h"
#include "ops.h"

_Noreturn static void usage(void) {
    printf("usage: %s [OPTIONS] [CHECKPOINT|-]\n"
           "\n"
           "Counts the work of one training step of the checkpoint's model (the last of the\n"
           "stream unless --pick; stdin unless CHECKPOINT): per layer kind and direction (fwd,\n"
           "bwd: data gradient or the whole backward, filt: filter gradient) the GFLOP (direct\n"
           "convolutions, plain GEMMs; none where the trainable flags skip a direction: no filter\n"
           "gradient for a frozen conv) and the MB each op must move at least (every fp32 tensor\n"
           "read or written once), and the least time it can take at a machine's peaks: the\n"
           "larger of GFLOP / peak and MB / bandwidth, with what bounds it. Then the step's\n"
           "totals and the epoch's least time. Nothing is run.\n"
           "\n"
           "  -b, --batch N        images per step (default 128)\n"
           "  -n, --images N       images per epoch (default 50000, CIFAR-10's training set)\n"
           "  -m, --machine M      peaks of a known GPU: h100 (SXM: 67 TFLOP/s fp32, 3350 GB/s;\n"
           "                       the default), h100-pcie (51, 2000), h200 (67, 4800)\n"
           "      --precision P    fp32 (default), tf32 or bf16: the convolutions' peak on tensor\n"
           "                       cores (h100/h200 dense: tf32 495, bf16 990 TFLOP/s; pcie 378,\n"
           "                       756); the bytes stay fp32's (as our kernels store tensors)\n"
           "      --storage S      fp32 (default; what the kernels do) or bf16: activations and\n"
           "                       their gradients stored in 16 bits (half the bytes; weights\n"
           "                       stay fp32): what a bf16 path would have to do to pay\n"
           "      --peak G,B       other peaks: G GFLOP/s for the convolutions, B GB/s\n"
           "      --fusions F      cuda (default: BN+ReLU, add+ReLU, BN+add+ReLU), cpu (BN+ReLU,\n"
           "                       add+ReLU) or none: which layers are done by another's pass\n"
           "  -p, --pick N         the checkpoint numbered N (from 0) of the stream\n"
           "  -f, --format F       text (default) or tsv\n"
           "  -h, --help           this help\n"
           "  -V, --version        version\n"
           "\n"
           "Left out: the optimizer (a few bytes per parameter: under 1%% of a ResNet-20 step),\n"
           "the loss, kernel launches and the host. Exit status: 0 ok, 1 bad input, 2 usage.\n",
           cli_prog);
    exit(EXIT_OK);
}

typedef struct machine {
    const char *name;
    double fp32, tf32, bf16, gbs;   /* GFLOP/s, GB/s */
} machine;
static const machine machines[] = {
    {"h100", 67000, 494700, 989400, 3350},
    {"h100-pcie", 51200, 378000, 756000, 2000},
    {"h200", 67000, 494700, 989400, 4800},
};

/* The fusion sets, as tables that only model_build sees: it reads which entries exist to
 * plan the step; nothing here is ever called (the stub says so if it were). */
_Noreturn static void not_run(void) { cli_die("internal error: the cost model's table ran an op"); }
static void stub_bn_add_relu_train(ops *o, const bn_desc *d, int f, const float *x, const float *g, const float *b,
                                   const float *r, float *y, float *sm, float *si, float *rm, float *rv) {
    (void)o, (void)d, (void)f, (void)x, (void)g, (void)b, (void)r, (void)y, (void)sm, (void)si, (void)rm, (void)rv;
    not_run();
}
static void stub_bn_add_relu_infer(ops *o, const bn_desc *d, int f, const float *x, const float *g, const float *b,
                                   const float *rm, const float *rv, const float *r, float *y) {
    (void)o, (void)d, (void)f, (void)x, (void)g, (void)b, (void)rm, (void)rv, (void)r, (void)y;
    not_run();
}
ops *cpu_backend(void);

static ops *fusion_table(const char *fusions) {
    static ops t;
    if (!strcmp(fusions, "none")) return &ops_ref;
    t = *cpu_backend();                   /* the layout entries, add+ReLU, relu_bwd_add */
    if (!strcmp(fusions, "cuda")) {
        t.act_blk = 1;                    /* the cuda table's: NCHW is its blocked layout */
        t.bn_add_relu_fwd_train_l = stub_bn_add_relu_train;
        t.bn_add_relu_fwd_infer_l = stub_bn_add_relu_infer;
    }
    return &t;
}

int main(int argc, char **argv) {
    cli_init(argv[0]);
    enum { O_PREC = 256, O_PEAK, O_FUS, O_STORE };
    static const struct option opts[] = {
        {"batch", required_argument, 0, 'b'},  {"images", required_argument, 0, 'n'},
        {"machine", required_argument, 0, 'm'}, {"precision", required_argument, 0, O_PREC},
        {"peak", required_argument, 0, O_PEAK}, {"fusions", required_argument, 0, O_FUS},
        {"pick", required_argument, 0, 'p'},    {"format", required_argument, 0, 'f'},
        {"storage", required_argument, 0, O_STORE},
        {"help", no_argument, 0, 'h'},          {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0}};
    long long batch = 128, images = 50000, pick = -1;
    const char *mach = "h100", *prec = "fp32", *fusions = "cuda", *format = "text", *peak = NULL, *store = "fp32";
    int ch;
    while ((ch = getopt_long(argc, argv, "b:n:m:p:f:hV", opts, NULL)) != -1) {
        switch (ch) {
        case 'b': batch = cli_int("--batch", optarg, 1, 1 << 20); break;
        case 'n': images = cli_int("--images", optarg, 1, 1LL << 40); break;
        case 'm': mach = cli_choice("--machine", optarg, "h100,h100-pcie,h200"); break;
        case O_PREC: prec = cli_choice("--precision", optarg, "fp32,tf32,bf16"); break;
        case O_PEAK: peak = optarg; break;
        case O_FUS: fusions = cli_choice("--fusions", optarg, "cuda,cpu,none"); break;
        case O_STORE: store = cli_choice("--storage", optarg, "fp32,bf16"); break;
        case 'p': pick = cli_int("--pick", optarg, 0, 1 << 30); break;
        case 'f': format = cli_choice("--format", optarg, "text,tsv"); break;
        case 'h': usage();
        case 'V': cli_version();
        default: cli_usage_error("unknown option or missing value");
        }
    }
    const char *path = optind < argc ? argv[optind++] : "-";
    if (optind < argc) cli_usage_error("unexpected argument '%s'", argv[optind]);

    double gflops = 0, gbs = 0, fp32 = 0;   /* fp32: the linear layer's (FMA kernels) */
    char where[64];
    if (peak) {   /* G,B: two numbers, each read as any other number option */
        const char *comma = strchr(peak, ',');
        if (!comma) cli_usage_error("--peak: '%s' is not GFLOPS,GBS", peak);
        char g[64];
        snprintf(g, sizeof g, "%.*s", (int)(comma - peak < 63 ? comma - peak : 63), peak);
        gflops = cli_double("--peak", g, 1e-12, 1e18);
        gbs = cli_double("--peak", comma + 1, 1e-12, 1e18);
        fp32 = gflops;
        snprintf(where, sizeof where, "--peak %s", peak);
    } else {
        const machine *mc = NULL;
        for (size_t i = 0; i < sizeof machines / sizeof *machines; i++)
            if (!strcmp(machines[i].name, mach)) mc = &machines[i];
        gflops = !strcmp(prec, "tf32") ? mc->tf32 : !strcmp(prec, "bf16") ? mc->bf16 : mc->fp32;
        gbs = mc->gbs, fp32 = mc->fp32;
        snprintf(where, sizeof where, "%s %s", mach, prec);
    }

    char err[STREAM_ERRMAX];
    int count = 0;
    FILE *f = cli_open_in(path);
    checkpoint *ck = ck_read(f, strcmp(path, "-") ? path : "stdin", (int)pick, &count, err);
    if (!ck) cli_die("%s", err);
    cli_close_in(f);
    char merr[256];
    model *m = model_build(ck, fusion_table(fusions), 1, merr);
    if (!m) cli_die("%s: %s", path, merr);
    int nr = model_cost_rows(m, (int)batch, NULL, 0, NULL);
    model_cost *rows = calloc((size_t)nr + 1, sizeof *rows);
    if (!rows) cli_die("out of memory");
    model_cost_rows(m, (int)batch, rows, nr, NULL);
    if (!strcmp(store, "bf16"))
        for (int r = 0; r < nr; r++)
            for (int k = 0; k < 3; k++) rows[r].bytes[k] = rows[r].wbytes[k] + 0.5 * (rows[r].bytes[k] - rows[r].wbytes[k]);

    bool tsv = !strcmp(format, "tsv");
    if (tsv) printf("layer\tcount\tgflop_fwd\tgflop_bwd\tgflop_filt\tmb_fwd\tmb_bwd\tmb_filt\tms_least\tbound\n");
    else
        printf("one training step of %lld images (%s fusions, %s activations), least time at %s: %.0f GFLOP/s "
               "(convolutions), %.0f GB/s\n%-26s %5s %22s %24s %9s %s\n",
               batch, fusions, store, where, gflops, gbs, "layer kind", "count", "GFLOP fwd/bwd/filt", "MB fwd/bwd/filt",
               "ms least", "bound");
    double tf = 0, tb = 0, tms = 0, fms = 0, bms = 0;
    for (int r = 0; r < nr; r++) {
        const model_cost *c = &rows[r];
        bool conv = !strcmp(c->kind, "conv");
        double ms = 0, by_flops = 0;
        for (int k = 0; k < 3; k++) {
            /* the tensor-core peak is the convolutions'; the linear layer runs on fp32 FMAs */
            double pk = conv ? gflops : fp32;
            double a = c->flops[k] / pk / 1e6, b = c->bytes[k] / gbs / 1e6;
            ms += a > b ? a : b;
            by_flops += a > b ? a : 0;
            tf += c->flops[k], tb += c->bytes[k];
            fms += a, bms += b;
        }
        tms += ms;
        const char *bound = ms <= 0 ? "-" : by_flops >= ms / 2 ? "flops" : "bytes";
        if (tsv)
            printf("%s\t%d\t%.4f\t%.4f\t%.4f\t%.3f\t%.3f\t%.3f\t%.4f\t%s\n", c->label, c->count, c->flops[0] / 1e9,
                   c->flops[1] / 1e9, c->flops[2] / 1e9, c->bytes[0] / 1e6, c->bytes[1] / 1e6, c->bytes[2] / 1e6, ms,
                   bound);
        else
            printf("%-26s %5d %7.3f %7.3f %7.3f %8.1f %7.1f %7.1f %9.4f %s\n", c->label, c->count, c->flops[0] / 1e9,
                   c->flops[1] / 1e9, c->flops[2] / 1e9, c->bytes[0] / 1e6, c->bytes[1] / 1e6, c->bytes[2] / 1e6, ms,
                   bound);
    }
    double steps = (double)((images + batch - 1) / batch);
    if (tsv)
        printf("step\t\t%.4f\t\t\t%.3f\t\t\t%.4f\t\n", tf / 1e9, tb / 1e6, tms);
    else
        printf("step: %.2f GFLOP, %.1f MB; least %.3f ms (flops alone %.3f, bytes alone %.3f): %.0f images/s;\n"
               "epoch of %lld images (%.0f steps, each counted as full): least %.3f s\n",
               tf / 1e9, tb / 1e6, tms, fms, bms, tms > 0 ? 1e3 * (double)batch / tms : 0.0, images, steps,
               steps * tms / 1e3);
    free(rows);
    model_free(m);
    ck_free(ck);
    return EXIT_OK;
}
