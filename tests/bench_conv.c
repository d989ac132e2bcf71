/* bench_conv.c: ResNet-20's convolutions on the GPU, cuDNN against kernels/cuda_conv3.cu
 * (BN_CUDA_CONV=own), in one process, each direction of each shape timed alone.
 *
 * usage: bench_conv [--batch N] [--reps R]     (default 128 and 50)
 *
 * For each of ResNet-20's 8 convolution shapes at batch N and each direction (fwd, bwd_data,
 * bwd_filter): the milliseconds a call takes (R calls queued back to back after 3 warm-up
 * calls, one synchronisation at the end, averaged) with cuDNN's choice (the backend's
 * default: heuristics, deterministic FMA algorithms), and with cuda_conv3.cu's kernels (the
 * shape's choice of rows a thread, then 2 and 4 forced) where they take the shape; the
 * TFLOP/s of each (direct-convolution flops) and own/cuDNN. Then the convolutions of one
 * ResNet-20 training step (each shape times its count in the network; all parameters:
 * every direction but the stem's data gradient; BN only: forward and data gradient) with
 * cuDNN alone and with the own kernels where they serve, and the ratio.
 *
 * Without a usable GPU it says so and exits 0 (a benchmark, not a test). Figures go to
 * docs/benchmarks.md with the device's name. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "ops.h"
#include "rng.h"
#ifdef HAVE_CUDA
#include "../kernels/cuda_mem.h"
#endif

static void usage(FILE *f) {
    fprintf(f, "usage: bench_conv [--batch N] [--reps R]   (default 128 and 50)\n");
}

#ifdef HAVE_CUDA
typedef struct { int cin, h, cout, k, stride, pad, count; } layer;
/* ResNet-20 (the paper's: 16/32/64 channels, 1x1 projections): each shape and how many of it */
static const layer layers[] = {
    {3, 32, 16, 3, 1, 1, 1},  {16, 32, 16, 3, 1, 1, 6}, {16, 32, 32, 3, 2, 1, 1}, {16, 32, 32, 1, 2, 0, 1},
    {32, 16, 32, 3, 1, 1, 5}, {32, 16, 64, 3, 2, 1, 1}, {32, 16, 64, 1, 2, 0, 1}, {64, 8, 64, 3, 1, 1, 5},
};
static const char *dirs[] = {"fwd", "bwd_data", "bwd_filter"};

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static float *dev_random(size_t n, uint64_t seed) {
    float *h = malloc(n * sizeof *h), *d = cuda_alloc(n * sizeof *h);
    if (!h || !d) cli_die("out of memory for %zu floats", n);
    rng r;
    rng_seed(&r, seed, 0);
    for (size_t i = 0; i < n; i++) h[i] = (float)(rng_uniform(&r) - 0.5);
    cuda_to_device(d, h, n * sizeof *h);
    free(h);
    return d;
}

static void call_dir(ops *G, const conv_desc *d, int dir, float *x, float *w, float *y, float *dx, float *dw) {
    if (dir == 0) G->conv_fwd(G, d, x, w, NULL, y);
    else if (dir == 1) G->conv_bwd_data(G, d, y, w, dx);
    else G->conv_bwd_filter(G, d, x, y, dw, NULL);
}

/* ms a call of direction dir, or -1 when impl "own" does not serve it */
static double time_dir(ops *G, const conv_desc *d, int dir, const char *impl, int rows, int reps, float *x, float *w,
                       float *y, float *dx, float *dw) {
    cuda_conv_impl(impl);
    cuda_conv3_set_rows(rows);
    long before = cuda_conv3_served();
    for (int r = 0; r < 3; r++) call_dir(G, d, dir, x, w, y, dx, dw);   /* algorithms chosen, buffers grown */
    if (strcmp(impl, "own") == 0 && cuda_conv3_served() == before) return -1;
    cuda_sync();
    double t0 = now();
    for (int r = 0; r < reps; r++) call_dir(G, d, dir, x, w, y, dx, dw);
    cuda_sync();
    return (now() - t0) * 1e3 / reps;
}

static int run(int batch, int reps) {
    const char *why = NULL;
    ops *G = ops_get("cuda", &why);
    if (!G) {
        printf("bench_conv: skipped: no CUDA device: %s\n", why ? why : "(no reason given)");
        return 0;
    }
    printf("# ResNet-20's convolutions at batch %d, %d calls each: ms a call, TFLOP/s, own/cuDNN\n", batch, reps);
    printf("%-22s %-10s %8s %9s %9s %9s %9s %8s %8s %9s\n", "shape", "direction", "GFLOP", "cudnn_ms", "own_ms",
           "own2_ms", "own4_ms", "cudnn_TF", "own_TF", "own/cudnn");
    double step[2][2] = {{0, 0}, {0, 0}};   /* [all, bn-only][cudnn, own] */
    for (size_t l = 0; l < sizeof layers / sizeof *layers; l++) {
        const layer *L = &layers[l];
        conv_desc d;
        conv_desc_init(&d, batch, L->cin, L->h, L->h, L->cout, L->k, L->stride, L->pad);
        size_t nx = (size_t)batch * L->cin * L->h * L->h, ny = (size_t)batch * L->cout * d.ho * d.wo;
        size_t nw = (size_t)L->cout * L->cin * L->k * L->k;
        float *x = dev_random(nx, 1), *w = dev_random(nw, 2), *y = dev_random(ny, 3), *dx = dev_random(nx, 4);
        float *dw = dev_random(nw, 5);
        double gflop = 2.0 * (double)ny * L->cin * L->k * L->k * 1e-9;
        char name[64];
        snprintf(name, sizeof name, "%d->%d %dx%d k%d s%d", L->cin, L->cout, L->h, L->h, L->k, L->stride);
        for (int dir = 0; dir < 3; dir++) {
            double c = time_dir(G, &d, dir, "cudnn", 0, reps, x, w, y, dx, dw);
            double o = time_dir(G, &d, dir, "own", 0, reps, x, w, y, dx, dw);
            double o2 = o < 0 ? -1 : time_dir(G, &d, dir, "own", 2, reps, x, w, y, dx, dw);
            double o4 = o < 0 ? -1 : time_dir(G, &d, dir, "own", 4, reps, x, w, y, dx, dw);
            char so[16] = "-", so2[16] = "-", so4[16] = "-", sot[16] = "-", sr[16] = "-";
            if (o >= 0) snprintf(so, sizeof so, "%.4f", o), snprintf(sot, sizeof sot, "%.2f", gflop / o);
            if (o >= 0) snprintf(sr, sizeof sr, "%.2f", o / c);
            if (o2 >= 0) snprintf(so2, sizeof so2, "%.4f", o2);
            if (o4 >= 0) snprintf(so4, sizeof so4, "%.4f", o4);
            printf("%-22s %-10s %8.3f %9.4f %9s %9s %9s %8.2f %8s %9s\n", name, dirs[dir], gflop, c, so, so2, so4,
                   gflop / c, sot, sr);
            double best = o >= 0 ? o : c;
            int in_all = !(l == 0 && dir == 1), in_bn = dir < 2 && !(l == 0 && dir == 1);
            if (in_all) step[0][0] += L->count * c, step[0][1] += L->count * best;
            if (in_bn) step[1][0] += L->count * c, step[1][1] += L->count * best;
        }
        cuda_free(x), cuda_free(w), cuda_free(y), cuda_free(dx), cuda_free(dw);
    }
    cuda_conv_impl("cudnn");
    cuda_conv3_set_rows(0);
    printf("step convolutions, all parameters: cudnn %.3f ms, own where it serves %.3f ms, ratio %.2f\n", step[0][0],
           step[0][1], step[0][1] / step[0][0]);
    printf("step convolutions, BN only: cudnn %.3f ms, own where it serves %.3f ms, ratio %.2f\n", step[1][0],
           step[1][1], step[1][1] / step[1][0]);
    return 0;
}
#endif

int main(int argc, char **argv) {
    cli_init(argv[0]);
    int batch = 128, reps = 50;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--batch") == 0) {
            batch = (int)cli_int("--batch", i + 1 < argc ? argv[++i] : NULL, 1, 100000);
        } else if (strcmp(argv[i], "--reps") == 0) {
            reps = (int)cli_int("--reps", i + 1 < argc ? argv[++i] : NULL, 1, 100000);
        } else {
            cli_usage_error("unknown argument '%s'", argv[i]);
        }
    }
#ifdef HAVE_CUDA
    return run(batch, reps);
#else
    (void)batch, (void)reps;
    printf("bench_conv: skipped: not built with CUDA\n");
    return 0;
#endif
}
