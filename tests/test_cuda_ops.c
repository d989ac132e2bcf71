/* test_cuda_ops.c: the CUDA backend (kernels/) against the reference (ops_ref) on the host.
 *
 * Every op on fresh random inputs (lib/rng.h; BN_TEST_SEED picks the seed) over several
 * shapes: small odd ones, and ResNet-20's (16/32/64 channels at 32/16/8 pixels, stride 2,
 * the 1x1 projections) at batch 1, 128 and 80 (the last batch of a 50,000-image epoch), forward and
 * backward; determinism; NaN/Inf agreement; the allreduce protocol of ops.h; the memory
 * entry points of kernels/cuda_mem.h. Device outputs are filled with NaN before each call,
 * so an op that leaves part of its output unwritten fails.
 *
 * Where there is no usable GPU (not built with CUDA, no driver, no device), every test
 * that needs one says "skip - ...: no CUDA device: <why>", and one test checks that the
 * backend then reports itself unusable with a reason (ops_get returns NULL, "auto" falls
 * back to cpu).
 *
 * Tolerances (EPS32 = 2^-24; errors are max|gpu - ref| / (max|ref| + 1), as in test_ops_cpu.c):
 * - Convolutions: the reference sums in double and rounds once; cuDNN sums K float products
 *   in its own order (K = cin*k*k forward, cout*k*k backward data, n*ho*wo filter), maybe
 *   through Winograd or FFT transforms, which add a few times the rounding error of a direct
 *   sum. A direct float sum of random-sign terms errs like a random walk, ~EPS32*sqrt(K) of
 *   the result's scale (oneDNN measured up to 1.3 of that, see test_ops_cpu.c); we allow
 *   GPU_CONV_TOL(K) = 64*EPS32*sqrt(K): 4x the CPU backend's bound, for the transforms.
 *   A wrong tap, stride, padding or layout errs by ~max|ref|, >= 1000x more. The worst
 *   error of each direction is printed (in units of EPS32*sqrt(K)) to tighten this later.
 *   No TF32: its 10-bit mantissa would err by ~2^-11*sqrt(K), 500x EPS32*sqrt(K), and fail.
 * - Linear (our tiled GEMM kernel, fp32 FMA in k order, no transforms): 16*EPS32*sqrt(K), the
 *   CPU test's bound.
 * - BatchNorm, pooling, the loss and the bias gradients: the kernels compute in double
 *   exactly the reference's formulas, so results differ only where a double sum in another
 *   order rounds to another float: a few float ulps. BN_TOL = 5e-7 (8 ulps of the scale);
 *   bn_bwd's dx against gamma*invstd*max|dy|, the scale of its terms, as in the CPU test.
 *   A float per-element implementation (4 roundings, like ops_cpu) would need the CPU
 *   test's 2e-6.
 * - gap_bwd, ReLU, add: the same single rounding as the reference: identical bits (NaN
 *   payloads aside: the GPU makes every NaN the canonical one).
 * - The per-element kernels' float4 and scalar variants, and their launches split by images
 *   (kernels/cuda_index.h): the same arithmetic per value, so identical bits to each other.
 * - The optimizer updates and batch assembly (kernels/cuda_train.cu) against the host
 *   functions that define them (lib/optim.c, lib/augment.c): identical bits, since both
 *   round every operation once in the same order (no fused multiply-add on either side). */
#include <stdint.h>

#include "../tests/check.h"
#include "augment.h"
#include "ops.h"
#include "optim.h"
#include "rng.h"

static rng R;
static char no_gpu[400];

#ifdef HAVE_CUDA
#include "../kernels/cuda_mem.h"
#include "testvec.h"

static ops *G, *F = &ops_ref;

#define EPS32 5.9604644775390625e-08 /* 2^-24 */
/* the rounding unit and factor of the convolution bound: fp32's, or TF32's in conv_tf32 */
static double conv_eps = EPS32, conv_factor = 64.0;
#define GPU_CONV_TOL(K) (conv_factor * conv_eps * sqrt((double)(K)))
#define LINEAR_TOL(K) (16.0 * EPS32 * sqrt((double)(K)))
#define BN_TOL 5e-7
#define NEED_GPU()                                                                               \
    do {                                                                                         \
        if (!G) SKIP(no_gpu);                                                                    \
    } while (0)

/* ---- host buffers ---------------------------------------------------------------------- */

/* the same bits, or NaN on both sides */
static int same(const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) && isnan(b[i])) continue;
        if (memcmp(&a[i], &b[i], sizeof a[i]) != 0) return 0;
    }
    return 1;
}

/* ---- device buffers -------------------------------------------------------------------- */

static float *dalloc(size_t n) {
    if (n == 0) return NULL;
    float *p = cuda_alloc(n * sizeof *p);
    if (!p) {
        fprintf(stderr, "test_cuda_ops: out of device memory (%zu floats)\n", n);
        abort();
    }
    return p;
}
/* a device copy of host h[n] */
static float *dup(const float *h, size_t n) {
    float *p = dalloc(n);
    cuda_to_device(p, h, n * sizeof *h);
    return p;
}
/* n device floats, all NaN */
static float *dpoison(size_t n) {
    float *h = fvec(n), *p = dup(h, n);
    free(h);
    return p;
}
/* a new host copy of device d[n] */
static float *back(const float *d, size_t n) {
    float *h = fvec(n);
    cuda_to_host(h, d, n * sizeof *h);
    return h;
}
static void refill(float *d, size_t n) {   /* NaN again */
    float *h = fvec(n);
    cuda_to_device(d, h, n * sizeof *h);
    free(h);
}

/* ---- convolutions ---------------------------------------------------------------------- */

typedef struct { int n, cin, h, w, cout, k, stride, pad; } shape;

static const shape conv_shapes[] = {
    {1, 3, 8, 8, 4, 3, 1, 1},      /* n = 1 */
    {3, 5, 7, 9, 6, 3, 2, 1},      /* odd batch, odd sizes, stride 2, non-square */
    {5, 4, 6, 6, 8, 1, 1, 0},      /* 1x1 */
    {3, 16, 9, 9, 8, 1, 2, 0},     /* 1x1 stride 2 on an odd size: the last row is never read */
    {2, 3, 5, 5, 2, 5, 1, 2},      /* 5x5 */
    {2, 4, 6, 6, 3, 3, 1, 0},      /* no padding */
    {3, 4, 2, 2, 5, 3, 1, 0},      /* kernel larger than the input: no output, dx = dw = 0 */
};
/* ResNet-20's convolutions (run at batch 1, 128 and 80) */
static const shape resnet_shapes[] = {
    {0, 3, 32, 32, 16, 3, 1, 1},  {0, 16, 32, 32, 16, 3, 1, 1}, {0, 16, 32, 32, 32, 3, 2, 1},
    {0, 16, 32, 32, 32, 1, 2, 0}, {0, 32, 16, 16, 32, 3, 1, 1}, {0, 32, 16, 16, 64, 3, 2, 1},
    {0, 32, 16, 16, 64, 1, 2, 0}, {0, 64, 8, 8, 64, 3, 1, 1},
};

/* worst error seen per direction, in units of EPS32*sqrt(K) */
static double worst_fwd, worst_bd, worst_bf;

static void desc_of(conv_desc *d, const shape *s) {
    conv_desc_init(d, s->n, s->cin, s->h, s->w, s->cout, s->k, s->stride, s->pad);
}

static void conv_case(const shape *s, int with_bias) {
    conv_desc d;
    desc_of(&d, s);
    size_t nx = (size_t)d.n * d.cin * d.h * d.w, ny = (size_t)d.n * d.cout * d.ho * d.wo;
    size_t nw = (size_t)d.cout * d.cin * d.k * d.k;
    float *x = rand_vec(nx, 0, 1), *w = rand_vec(nw, 0, 1), *b = with_bias ? rand_vec(d.cout, 0, 1) : NULL;
    float *dy = rand_vec(ny, 0, 1);
    float *y0 = fvec(ny), *dx0 = fvec(nx), *dw0 = fvec(nw), *db0 = fvec(d.cout);
    float *gx = dup(x, nx), *gw = dup(w, nw), *gb = with_bias ? dup(b, d.cout) : NULL, *gdy = dup(dy, ny);
    float *gy = dpoison(ny), *gdx = dpoison(nx), *gdw = dpoison(nw), *gdb = dpoison(d.cout);
    char what[160];
    snprintf(what, sizeof what, "n%d %d->%d %dx%d k%d s%d p%d bias%d", d.n, d.cin, d.cout, d.h, d.w, d.k, d.stride,
             d.pad, with_bias);

    G->conv_fwd(G, &d, gx, gw, gb, gy);
    F->conv_fwd(F, &d, x, w, b, y0);
    float *y1 = back(gy, ny);
    double e = err(y1, y0, ny), unit = conv_eps * sqrt((double)(d.cin * d.k * d.k));
    CHECK(e <= GPU_CONV_TOL(d.cin * d.k * d.k), "fwd %s: error %.3g > %.3g", what, e,
          GPU_CONV_TOL(d.cin * d.k * d.k));
    if (e / unit > worst_fwd) worst_fwd = e / unit;

    G->conv_bwd_data(G, &d, gdy, gw, gdx);
    F->conv_bwd_data(F, &d, dy, w, dx0);
    float *dx1 = back(gdx, nx);
    e = err(dx1, dx0, nx), unit = conv_eps * sqrt((double)(d.cout * d.k * d.k));
    CHECK(e <= GPU_CONV_TOL(d.cout * d.k * d.k), "bwd_data %s: error %.3g", what, e);
    if (e / unit > worst_bd) worst_bd = e / unit;

    G->conv_bwd_filter(G, &d, gx, gdy, gdw, with_bias ? gdb : NULL);
    F->conv_bwd_filter(F, &d, x, dy, dw0, with_bias ? db0 : NULL);
    float *dw1 = back(gdw, nw), *db1 = back(gdb, d.cout);
    int K = d.n * d.ho * d.wo;
    e = err(dw1, dw0, nw), unit = conv_eps * sqrt((double)(K > 0 ? K : 1));
    CHECK(e <= GPU_CONV_TOL(K), "bwd_filter %s: dw error %.3g", what, e);
    if (e / unit > worst_bf) worst_bf = e / unit;
    if (with_bias) CHECK_ERR(db1, db0, (size_t)d.cout, BN_TOL, "bwd_filter db (a double sum)");

    cuda_free(gx), cuda_free(gw), cuda_free(gb), cuda_free(gdy), cuda_free(gy), cuda_free(gdx), cuda_free(gdw);
    cuda_free(gdb);
    free(x), free(w), free(b), free(dy), free(y0), free(dx0), free(dw0), free(db0), free(y1), free(dx1), free(dw1);
    free(db1);
}

TEST(conv_small_vs_ref) {
    NEED_GPU();
    for (size_t i = 0; i < sizeof conv_shapes / sizeof *conv_shapes; i++) {
        conv_case(&conv_shapes[i], 0);
        conv_case(&conv_shapes[i], 1);
    }
}

/* ResNet-20 at batch 1, 128, then the last batch (80): a shape seen at another batch size
 * is a new cache entry, and going back to 128 must find the first entry again. */
TEST(conv_resnet_vs_ref) {
    NEED_GPU();
    static const int batches[] = {1, 128, 80, 128};
    for (size_t b = 0; b < sizeof batches / sizeof *batches; b++)
        for (size_t i = 0; i < sizeof resnet_shapes / sizeof *resnet_shapes; i++) {
            shape s = resnet_shapes[i];
            s.n = batches[b];
            if (b == 3 && i != 1 && i != 5) continue;   /* back at 128: two shapes are enough */
            conv_case(&s, b == 0);
        }
    printf("# conv worst error / (EPS32*sqrt(K)): fwd %.2f, bwd_data %.2f, bwd_filter %.2f (limit 64)\n", worst_fwd,
           worst_bd, worst_bf);
}

/* The "tf32" mode (ops.h set_precision): cuDNN may use TF32 tensor cores, whose inputs keep
 * 10 of fp32's 23 mantissa bits (unit roundoff 2^-11), so the bound is 8*2^-11*sqrt(K),
 * on ResNet-20's shapes at batch 1 and 4 (a small K keeps the bound well below a wrong
 * result's error, ~1). Prints the worst error in units of 2^-11*sqrt(K). Back to fp32 at
 * the end (the change drops the cached plans, so fp32 shapes are planned afresh). */
TEST(conv_tf32) {
    NEED_GPU();
    CHECK(G->set_precision && G->set_precision(G, "tf32") == 0, "set_precision(\"tf32\")");
    if (!G->set_precision) return;
    CHECK(G->set_precision(G, "bf16") == -1, "an unknown mode is refused");
    double saved[3] = {worst_fwd, worst_bd, worst_bf};
    worst_fwd = worst_bd = worst_bf = 0;
    conv_eps = 0x1p-11, conv_factor = 8.0;
    static const int batches[] = {1, 4};
    for (size_t b = 0; b < 2; b++)
        for (size_t i = 0; i < sizeof resnet_shapes / sizeof *resnet_shapes; i++) {
            shape s = resnet_shapes[i];
            s.n = batches[b];
            conv_case(&s, 0);
        }
    /* whether cuDNN really used tensor cores is not visible here (BN_CUDA_VERBOSE=1 prints
     * each choice's math type): errors near fp32's (~2^-13 of these units) say it did not */
    printf("# tf32 conv worst error / (2^-11*sqrt(K)): fwd %.2f, bwd_data %.2f, bwd_filter %.2f (limit 8)%s\n",
           worst_fwd, worst_bd, worst_bf,
           fmax(worst_fwd, fmax(worst_bd, worst_bf)) < 0.01 ? ": as small as fp32's, TF32 seems unused" : "");
    conv_eps = EPS32, conv_factor = 64.0;
    worst_fwd = saved[0], worst_bd = saved[1], worst_bf = saved[2];
    CHECK(G->set_precision(G, "fp32") == 0, "back to fp32");
    shape s = resnet_shapes[1];         /* planned again under FMA math: fp32's bound */
    s.n = 4;
    conv_case(&s, 0);
}

/* Two calls on the same inputs give the same bits (only deterministic algorithms are picked). */
TEST(conv_deterministic) {
    NEED_GPU();
    shape shapes[] = {{128, 16, 32, 32, 16, 3, 1, 1}, {80, 32, 16, 16, 64, 3, 2, 1}};
    for (int k = 0; k < 2; k++) {
        conv_desc d;
        desc_of(&d, &shapes[k]);
        size_t nx = (size_t)d.n * d.cin * d.h * d.w, ny = (size_t)d.n * d.cout * d.ho * d.wo;
        size_t nw = (size_t)d.cout * d.cin * d.k * d.k;
        float *x = rand_vec(nx, 0, 1), *w = rand_vec(nw, 0, 1), *b = rand_vec(d.cout, 0, 1), *dy = rand_vec(ny, 0, 1);
        float *gx = dup(x, nx), *gw = dup(w, nw), *gb = dup(b, d.cout), *gdy = dup(dy, ny);
        float *h[2][4];
        for (int r = 0; r < 2; r++) {
            float *gy = dpoison(ny), *gdx = dpoison(nx), *gdw = dpoison(nw), *gdb = dpoison(d.cout);
            G->conv_fwd(G, &d, gx, gw, gb, gy);
            G->conv_bwd_data(G, &d, gdy, gw, gdx);
            G->conv_bwd_filter(G, &d, gx, gdy, gdw, gdb);
            h[r][0] = back(gy, ny), h[r][1] = back(gdx, nx), h[r][2] = back(gdw, nw), h[r][3] = back(gdb, d.cout);
            cuda_free(gy), cuda_free(gdx), cuda_free(gdw), cuda_free(gdb);
        }
        CHECK(memcmp(h[0][0], h[1][0], ny * 4) == 0, "conv_fwd n%d differs between calls", d.n);
        CHECK(memcmp(h[0][1], h[1][1], nx * 4) == 0, "conv_bwd_data n%d differs between calls", d.n);
        CHECK(memcmp(h[0][2], h[1][2], nw * 4) == 0, "conv_bwd_filter dw n%d differs between calls", d.n);
        CHECK(memcmp(h[0][3], h[1][3], (size_t)d.cout * 4) == 0, "conv_bwd_filter db n%d differs", d.n);
        for (int r = 0; r < 2; r++)
            for (int j = 0; j < 4; j++) free(h[r][j]);
        cuda_free(gx), cuda_free(gw), cuda_free(gb), cuda_free(gdy);
        free(x), free(w), free(b), free(dy);
    }
}

/* A NaN or an Inf in the input: every output the reference makes non-finite is non-finite
 * on the GPU too. (The converse is not required: a Winograd or FFT algorithm spreads a
 * non-finite value over its whole tile; the extra ones are counted and printed.) */
static void nonfinite_case(const shape *s, float bad) {
    conv_desc d;
    desc_of(&d, s);
    size_t nx = (size_t)d.n * d.cin * d.h * d.w, ny = (size_t)d.n * d.cout * d.ho * d.wo;
    size_t nw = (size_t)d.cout * d.cin * d.k * d.k;
    float *x = rand_vec(nx, 0, 1), *w = rand_vec(nw, 0, 1), *dy = rand_vec(ny, 0, 1);
    x[nx / 2 + 3] = bad;
    dy[ny / 3] = bad;
    float *y0 = fvec(ny), *dx0 = fvec(nx);
    float *gx = dup(x, nx), *gw = dup(w, nw), *gdy = dup(dy, ny), *gy = dpoison(ny), *gdx = dpoison(nx);
    G->conv_fwd(G, &d, gx, gw, NULL, gy);
    F->conv_fwd(F, &d, x, w, NULL, y0);
    G->conv_bwd_data(G, &d, gdy, gw, gdx);
    F->conv_bwd_data(F, &d, dy, w, dx0);
    float *y1 = back(gy, ny), *dx1 = back(gdx, nx);
    int bad_ref = 0, missed = 0, extra = 0;
    for (size_t i = 0; i < ny; i++) {
        bad_ref += !isfinite(y0[i]);
        missed += !isfinite(y0[i]) && isfinite(y1[i]);
        extra += isfinite(y0[i]) && !isfinite(y1[i]);
    }
    for (size_t i = 0; i < nx; i++) {
        bad_ref += !isfinite(dx0[i]);
        missed += !isfinite(dx0[i]) && isfinite(dx1[i]);
        extra += isfinite(dx0[i]) && !isfinite(dx1[i]);
    }
    CHECK(bad_ref > 0, "the reference has no non-finite output for %g", bad);
    CHECK(missed == 0, "%d outputs non-finite in the reference are finite on the GPU (input %g)", missed, bad);
    printf("# conv n%d %d->%d k%d s%d, input %g: %d non-finite outputs in the reference, %d more on the GPU\n", d.n,
           d.cin, d.cout, d.k, d.stride, bad, bad_ref, extra);
    cuda_free(gx), cuda_free(gw), cuda_free(gdy), cuda_free(gy), cuda_free(gdx);
    free(x), free(w), free(dy), free(y0), free(dx0), free(y1), free(dx1);
}

TEST(conv_nan_inf) {
    NEED_GPU();
    shape s1 = conv_shapes[1], s2 = {4, 16, 32, 32, 16, 3, 1, 1};
    nonfinite_case(&s1, NAN);
    nonfinite_case(&s2, NAN);
    nonfinite_case(&s2, INFINITY);
}

/* The 3x3 stride-1 kernels of our own (kernels/cuda_conv3.cu, BN_CUDA_CONV=own) against the
 * reference, with the same bounds as cuDNN's: shapes that stress their tiling (one image,
 * input channels not a multiple of the 4 staged per round, output channels not a multiple
 * of the 8 per block, small and odd-width images, a last block of fewer images, a last band
 * of fewer rows, 40 input channels in 10 rounds), then ResNet-20's shapes at batch 1, 128
 * and 80, where the 3x3 stride-1 ones must be served by them (each direction counted by
 * cuda_conv3_served) and the others by cuDNN; then the determinism and NaN/Inf tests again
 * with them, and the tf32 mode, which leaves them to cuDNN. */
static const shape own_shapes[] = {
    {1, 3, 8, 8, 4, 3, 1, 1},    {3, 5, 4, 6, 12, 3, 1, 1},  {2, 16, 32, 32, 16, 3, 1, 1}, {5, 9, 16, 16, 20, 3, 1, 1},
    {17, 8, 8, 8, 8, 3, 1, 1},   {2, 4, 4, 4, 8, 3, 1, 1},   {1, 40, 32, 32, 8, 3, 1, 1},  {3, 6, 8, 2, 5, 3, 1, 1},
    {2, 33, 16, 30, 17, 3, 1, 1},
};
/* a height of 6: the forward and data gradient in 2 rows a thread only, the filter gradient by cuDNN */
static const shape own_rows2_shape = {2, 5, 6, 10, 9, 3, 1, 1};
/* 65 input channels: over the forward's 64 (cuDNN), the data gradient (8 in) and the filter gradient ours */
static const shape own_wide_shape = {1, 65, 8, 8, 8, 3, 1, 1};

static void own_case(const shape *s, int with_bias, int served) {
    long before = cuda_conv3_served();
    conv_case(s, with_bias);
    long got = cuda_conv3_served() - before;
    CHECK(got == served, "n%d %d->%d %dx%d k%d s%d: %ld directions by cuda_conv3.cu, expected %d", s->n, s->cin, s->cout,
          s->h, s->w, s->k, s->stride, got, served);
}

TEST(conv_own_vs_ref) {
    NEED_GPU();
    CHECK(cuda_conv_impl("winograd") == -1, "cuda_conv_impl takes cudnn or own only");
    int was = cuda_conv_impl("own");
    CHECK(was >= 0, "cuda_conv_impl(\"own\")");
    double saved[3] = {worst_fwd, worst_bd, worst_bf};
    worst_fwd = worst_bd = worst_bf = 0;
    for (size_t i = 0; i < sizeof own_shapes / sizeof *own_shapes; i++) {
        own_case(&own_shapes[i], 0, 3);
        own_case(&own_shapes[i], 1, 3);
    }
    own_case(&own_rows2_shape, 1, 2);
    own_case(&own_wide_shape, 0, 2);
    CHECK(cuda_conv3_set_rows(3) == -1, "cuda_conv3_set_rows takes 0, 2 or 4");
    for (int rows = 2; rows <= 4; rows += 2) {   /* each variant on every tiling shape */
        cuda_conv3_set_rows(rows);
        for (size_t i = 0; i < sizeof own_shapes / sizeof *own_shapes; i++) own_case(&own_shapes[i], 1, 3);
    }
    cuda_conv3_set_rows(4);
    own_case(&own_rows2_shape, 0, 0);   /* 4 rows do not divide 6: cuDNN */
    cuda_conv3_set_rows(0);
    static const int batches[] = {1, 128, 80};
    for (size_t b = 0; b < 3; b++)
        for (size_t i = 0; i < sizeof resnet_shapes / sizeof *resnet_shapes; i++) {
            shape s = resnet_shapes[i];
            s.n = batches[b];
            own_case(&s, b == 0, s.k == 3 && s.stride == 1 ? 3 : 0);
        }
    printf("# own conv worst error / (EPS32*sqrt(K)): fwd %.2f, bwd_data %.2f, bwd_filter %.2f (limit 64)\n",
           worst_fwd, worst_bd, worst_bf);
    worst_fwd = saved[0], worst_bd = saved[1], worst_bf = saved[2];
    long before = cuda_conv3_served();
    test_conv_deterministic();
    test_conv_nan_inf();
    CHECK(cuda_conv3_served() - before == 3 * 2 + 2 * 2, "the determinism and NaN tests' 3x3 stride-1 shapes were "
          "served by cuda_conv3.cu: %ld directions", cuda_conv3_served() - before);
    if (G->set_precision && G->set_precision(G, "tf32") == 0) {
        conv_eps = 0x1p-11, conv_factor = 8.0;
        shape s = resnet_shapes[1];
        s.n = 2;
        own_case(&s, 0, 0);
        conv_eps = EPS32, conv_factor = 64.0;
        CHECK(G->set_precision(G, "fp32") == 0, "back to fp32");
    }
    cuda_conv_impl(was ? "own" : "cudnn");
}

/* cuda_conv3.cu's 2- and 4-row variants, and any number of images per block, sum every
 * output in the same order: the same bits, on ResNet-20's widest and narrowest 3x3 layers
 * (whose automatic choices differ: 4 rows at 32x32, 2 at 8x8). */
TEST(conv_own_rows_same_bits) {
    NEED_GPU();
    int was = cuda_conv_impl("own");
    shape shapes[] = {{128, 16, 32, 32, 16, 3, 1, 1}, {128, 64, 8, 8, 64, 3, 1, 1}, {7, 24, 16, 16, 40, 3, 1, 1}};
    for (int k = 0; k < 3; k++) {
        conv_desc d;
        desc_of(&d, &shapes[k]);
        size_t nx = (size_t)d.n * d.cin * d.h * d.w, ny = (size_t)d.n * d.cout * d.ho * d.wo;
        size_t nw = (size_t)d.cout * d.cin * 9;
        float *x = rand_vec(nx, 0, 1), *w = rand_vec(nw, 0, 1), *b = rand_vec(d.cout, 0, 1), *dy = rand_vec(ny, 0, 1);
        float *gx = dup(x, nx), *gw = dup(w, nw), *gb = dup(b, d.cout), *gdy = dup(dy, ny);
        float *h[3][2];
        static const int rows[] = {0, 2, 4};
        for (int r = 0; r < 3; r++) {
            cuda_conv3_set_rows(rows[r]);
            float *gy = dpoison(ny), *gdx = dpoison(nx);
            long before = cuda_conv3_served();
            G->conv_fwd(G, &d, gx, gw, gb, gy);
            G->conv_bwd_data(G, &d, gdy, gw, gdx);
            CHECK(cuda_conv3_served() - before == 2, "n%d %d->%d %dx%d rows %d: not served by cuda_conv3.cu", d.n,
                  d.cin, d.cout, d.h, d.w, rows[r]);
            h[r][0] = back(gy, ny), h[r][1] = back(gdx, nx);
            cuda_free(gy), cuda_free(gdx);
        }
        for (int r = 1; r < 3; r++) {
            CHECK(memcmp(h[0][0], h[r][0], ny * 4) == 0, "fwd n%d %d->%d %dx%d: %d rows a thread give other bits", d.n,
                  d.cin, d.cout, d.h, d.w, rows[r]);
            CHECK(memcmp(h[0][1], h[r][1], nx * 4) == 0, "bwd_data n%d %d->%d %dx%d: %d rows a thread give other bits",
                  d.n, d.cin, d.cout, d.h, d.w, rows[r]);
        }
        for (int r = 0; r < 3; r++) free(h[r][0]), free(h[r][1]);
        cuda_free(gx), cuda_free(gw), cuda_free(gb), cuda_free(gdy);
        free(x), free(w), free(b), free(dy);
    }
    cuda_conv3_set_rows(0);
    cuda_conv_impl(was ? "own" : "cudnn");
}

/* ---- BatchNorm ------------------------------------------------------------------------- */

typedef struct { int n, c, hw; } bn_shape;
static const bn_shape bn_shapes[] = {
    {1, 3, 1}, {3, 7, 9}, {5, 16, 64}, {2, 64, 64}, {4, 16, 1024}, {1, 5, 33},   /* m = 1, odd sizes */
    {128, 16, 1024}, {128, 32, 256}, {128, 64, 64}, {80, 16, 1024}, {1, 64, 64}, /* ResNet-20 */
};

/* gamma*invstd*max|dy|: the scale of bn_bwd's dx terms */
static double dx_scale(const float *g, const float *is, size_t nc, const float *dy, size_t nx) {
    double s = 0.0;
    for (size_t i = 0; i < nc; i++) s = fmax(s, fabs(g[i] * is[i]));
    return s * max_abs(dy, nx);
}
static double max_diff(const float *a, const float *b, size_t n) {
    double e = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d != d) return INFINITY;
        e = fmax(e, d);
    }
    return e;
}

static void bn_case(const bn_shape *s) {
    bn_desc d = {s->n, s->c, s->hw, 1e-5f, 0.1f};
    size_t nx = (size_t)s->n * s->c * s->hw, nc = (size_t)s->c;
    char what[96];
    snprintf(what, sizeof what, "bn n%d c%d hw%d", s->n, s->c, s->hw);
    float *x = rand_vec(nx, 3.0, 1.0), *dy = rand_vec(nx, 0, 1);
    float *g = rand_vec(nc, 1.0, 0.3), *bt = rand_vec(nc, 0, 0.5);
    float *rm0 = rand_vec(nc, 0, 1), *rv0 = rand_vec(nc, 2, 0.1);
    float *y0 = fvec(nx), *m0 = fvec(nc), *is0 = fvec(nc);
    float *gx = dup(x, nx), *gdy = dup(dy, nx), *gg = dup(g, nc), *gbt = dup(bt, nc);
    float *grm = dup(rm0, nc), *grv = dup(rv0, nc), *gy = dpoison(nx), *gm = dpoison(nc), *gis = dpoison(nc);

    G->bn_fwd_train(G, &d, gx, gg, gbt, gy, gm, gis, grm, grv);
    F->bn_fwd_train(F, &d, x, g, bt, y0, m0, is0, rm0, rv0);
    float *y1 = back(gy, nx), *m1 = back(gm, nc), *is1 = back(gis, nc), *rm1 = back(grm, nc), *rv1 = back(grv, nc);
    CHECK_ERR(y1, y0, nx, BN_TOL, what);
    CHECK_ERR(m1, m0, nc, BN_TOL, "save_mean");
    CHECK_ERR(is1, is0, nc, BN_TOL, "save_invstd");
    CHECK_ERR(rm1, rm0, nc, BN_TOL, "run_mean");
    CHECK_ERR(rv1, rv0, nc, BN_TOL, "run_var");

    /* backward from the reference's saved statistics, so that only bn_bwd is compared */
    float *dx0 = fvec(nx), *dg0 = fvec(nc), *db0 = fvec(nc);
    float *gm0 = dup(m0, nc), *gis0 = dup(is0, nc), *gdx = dpoison(nx), *gdg = dpoison(nc), *gdb = dpoison(nc);
    G->bn_bwd(G, &d, gx, gdy, gg, gm0, gis0, gdx, gdg, gdb);
    F->bn_bwd(F, &d, x, dy, g, m0, is0, dx0, dg0, db0);
    float *dx1 = back(gdx, nx), *dg1 = back(gdg, nc), *db1 = back(gdb, nc);
    double scale = dx_scale(g, is0, nc, dy, nx), e = max_diff(dx1, dx0, nx);
    CHECK(e <= BN_TOL * (scale + 1.0), "%s: bn_bwd dx error %.3g (scale %.3g)", what, e, scale);
    CHECK_ERR(dg1, dg0, nc, BN_TOL, "dgamma");
    CHECK_ERR(db1, db0, nc, BN_TOL, "dbeta");
    refill(gdg, nc), refill(gdb, nc);
    G->bn_bwd(G, &d, gx, gdy, gg, gm0, gis0, NULL, gdg, gdb);         /* dx not needed */
    float *dg2 = back(gdg, nc), *db2 = back(gdb, nc);
    CHECK(memcmp(dg2, dg1, nc * 4) == 0 && memcmp(db2, db1, nc * 4) == 0,
          "%s: bn_bwd without dx gives other dgamma/dbeta", what);

    refill(gy, nx);
    float *grm0 = dup(rm0, nc), *grv0 = dup(rv0, nc);
    G->bn_fwd_infer(G, &d, gx, gg, gbt, grm0, grv0, gy);
    F->bn_fwd_infer(F, &d, x, g, bt, rm0, rv0, y0);
    float *y2 = back(gy, nx);
    CHECK_ERR(y2, y0, nx, BN_TOL, "bn_fwd_infer");

    float *gone[] = {gx, gdy, gg, gbt, grm, grv, gy, gm, gis, gm0, gis0, gdx, gdg, gdb, grm0, grv0};
    for (size_t i = 0; i < sizeof gone / sizeof *gone; i++) cuda_free(gone[i]);
    float *hone[] = {x, dy, g, bt, rm0, rv0, y0, m0, is0, y1, m1, is1, rm1, rv1, dx0, dg0, db0, dx1, dg1, db1, dg2,
                     db2, y2};
    for (size_t i = 0; i < sizeof hone / sizeof *hone; i++) free(hone[i]);
}

TEST(bn_vs_ref) {
    NEED_GPU();
    for (size_t i = 0; i < sizeof bn_shapes / sizeof *bn_shapes; i++) bn_case(&bn_shapes[i]);
}

/* The fused BN+ReLU of the layout entries (act_blk 1: the layout is NCHW): the forward
 * against ref's bn then relu, the backward (in place, dx = dy, as the model calls it) against
 * ref's relu_bwd by the forward's output then bn_bwd; the same tolerances as bn_case. */
static void bn_fused_case(const bn_shape *s) {
    bn_desc d = {s->n, s->c, s->hw, 1e-5f, 0.1f};
    size_t nx = (size_t)s->n * s->c * s->hw, nc = (size_t)s->c;
    const int fl = OPS_BLK_IN | OPS_RELU;
    char what[96];
    snprintf(what, sizeof what, "bn+relu n%d c%d hw%d", s->n, s->c, s->hw);
    float *x = rand_vec(nx, 0.5, 1.0), *dy = rand_vec(nx, 0, 1);
    float *g = rand_vec(nc, 1.0, 0.3), *bt = rand_vec(nc, 0, 0.5);
    float *rm = rand_vec(nc, 0, 1), *rv = rand_vec(nc, 2, 0.1), *rm0 = copy_vec(rm, nc), *rv0 = copy_vec(rv, nc);
    float *y0 = fvec(nx), *m0 = fvec(nc), *is0 = fvec(nc);
    float *gx = dup(x, nx), *gdy = dup(dy, nx), *gg = dup(g, nc), *gbt = dup(bt, nc), *grm = dup(rm, nc);
    float *grv = dup(rv, nc), *gy = dpoison(nx), *gm = dpoison(nc), *gis = dpoison(nc);
    G->bn_fwd_train_l(G, &d, fl, gx, gg, gbt, gy, gm, gis, grm, grv);
    F->bn_fwd_train(F, &d, x, g, bt, y0, m0, is0, rm0, rv0);
    F->relu_fwd(F, nx, y0, y0);
    float *y1 = back(gy, nx), *rm1 = back(grm, nc);
    CHECK_ERR(y1, y0, nx, BN_TOL, what);
    {   /* and the bits of the GPU's own separate kernels: bn, then relu in place */
        float *grm3 = dup(rm, nc), *grv3 = dup(rv, nc), *gy3 = dpoison(nx);
        G->bn_fwd_train(G, &d, gx, gg, gbt, gy3, NULL, NULL, grm3, grv3);
        G->relu_fwd(G, nx, gy3, gy3);
        float *y3 = back(gy3, nx);
        CHECK(same(y1, y3, nx), "%s: fused forward differs from bn_fwd_train + relu_fwd on the GPU", what);
        cuda_free(grm3), cuda_free(grv3), cuda_free(gy3), free(y3);
    }
    CHECK_ERR(rm1, rm0, nc, BN_TOL, "bn+relu run_mean");
    size_t zeros = 0;
    for (size_t i = 0; i < nx; i++) zeros += y0[i] == 0.0f;
    if (nx >= 4096)   /* the test means something: the ReLU masks a good part, not all */
        CHECK(zeros > nx / 10 && zeros < nx - nx / 10, "%s: the ReLU masks %zu of %zu values", what, zeros, nx);

    /* backward from the reference's y and statistics, in place as the model calls it */
    float *dx0 = fvec(nx), *dg0 = fvec(nc), *db0 = fvec(nc), *dym = fvec(nx);
    float *gy0 = dup(y0, nx), *gm0 = dup(m0, nc), *gis0 = dup(is0, nc), *gdg = dpoison(nc), *gdb = dpoison(nc);
    G->bn_bwd_l(G, &d, fl, gx, gy0, gdy, gg, gbt, gm0, gis0, gdy, gdg, gdb);
    F->relu_bwd(F, nx, y0, dy, dym);
    F->bn_bwd(F, &d, x, dym, g, m0, is0, dx0, dg0, db0);
    float *dx1 = back(gdy, nx), *dg1 = back(gdg, nc), *db1 = back(gdb, nc);
    double scale = dx_scale(g, is0, nc, dym, nx), e = max_diff(dx1, dx0, nx);
    CHECK(e <= BN_TOL * (scale + 1.0), "%s: bwd dx error %.3g (scale %.3g)", what, e, scale);
    {   /* the GPU's separate kernels: relu_bwd, then bn_bwd */
        float *gdy3 = dup(dy, nx), *gt = dpoison(nx), *gdx3 = dpoison(nx), *gdg3 = dpoison(nc), *gdb3 = dpoison(nc);
        G->relu_bwd(G, nx, gy0, gdy3, gt);
        G->bn_bwd(G, &d, gx, gt, gg, gm0, gis0, gdx3, gdg3, gdb3);
        float *dx3 = back(gdx3, nx), *dg3 = back(gdg3, nc), *db3 = back(gdb3, nc);
        CHECK(same(dx1, dx3, nx) && same(dg1, dg3, nc) && same(db1, db3, nc),
              "%s: fused backward differs from relu_bwd + bn_bwd on the GPU", what);
        cuda_free(gdy3), cuda_free(gt), cuda_free(gdx3), cuda_free(gdg3), cuda_free(gdb3);
        free(dx3), free(dg3), free(db3);
    }
    CHECK_ERR(dg1, dg0, nc, BN_TOL, "bn+relu dgamma");
    CHECK_ERR(db1, db0, nc, BN_TOL, "bn+relu dbeta");

    refill(gy, nx);
    float *grm2 = dup(rm, nc), *grv2 = dup(rv, nc);
    G->bn_fwd_infer_l(G, &d, fl, gx, gg, gbt, grm2, grv2, gy);
    F->bn_fwd_infer(F, &d, x, g, bt, rm, rv, y0);
    F->relu_fwd(F, nx, y0, y0);
    float *y2 = back(gy, nx);
    CHECK_ERR(y2, y0, nx, BN_TOL, "bn+relu infer");

    float *gone[] = {gx, gdy, gg, gbt, grm, grv, gy, gm, gis, gy0, gm0, gis0, gdg, gdb, grm2, grv2};
    for (size_t i = 0; i < sizeof gone / sizeof *gone; i++) cuda_free(gone[i]);
    float *hone[] = {x, dy, g, bt, rm, rv, rm0, rv0, y0, m0, is0, y1, rm1, dx0, dg0, db0, dym, dx1, dg1, db1, y2};
    for (size_t i = 0; i < sizeof hone / sizeof *hone; i++) free(hone[i]);
}

/* BN + residual + ReLU in one kernel (ops.h bn_add_relu_*), train and inference: within the
 * BN tolerance of ref's bn, add, relu, and the bits of the GPU's own bn then add_relu; also
 * with y on top of r (in place, as the model calls it in a projection block). */
static void bn_add_relu_case(const bn_shape *s) {
    bn_desc d = {s->n, s->c, s->hw, 1e-5f, 0.1f};
    size_t nx = (size_t)s->n * s->c * s->hw, nc = (size_t)s->c;
    char what[96];
    snprintf(what, sizeof what, "bn+add+relu n%d c%d hw%d", s->n, s->c, s->hw);
    float *x = rand_vec(nx, 0.5, 1.0), *r = rand_vec(nx, 0, 1), *g = rand_vec(nc, 1.0, 0.3), *bt = rand_vec(nc, 0, 0.5);
    float *rm = rand_vec(nc, 0, 1), *rv = rand_vec(nc, 2, 0.1), *rm0 = copy_vec(rm, nc), *rv0 = copy_vec(rv, nc);
    float *y0 = fvec(nx), *m0 = fvec(nc), *is0 = fvec(nc);
    float *gx = dup(x, nx), *gr = dup(r, nx), *gg = dup(g, nc), *gbt = dup(bt, nc);
    for (int infer = 0; infer < 2; infer++)
        for (int inplace = 0; inplace < 2; inplace++) {
            float *grm = dup(rm, nc), *grv = dup(rv, nc), *gm = dpoison(nc), *gis = dpoison(nc);
            float *gy = inplace ? dup(r, nx) : dpoison(nx), *gin = inplace ? gy : gr;
            if (infer) G->bn_add_relu_fwd_infer_l(G, &d, OPS_BLK_IN, gx, gg, gbt, grm, grv, gin, gy);
            else G->bn_add_relu_fwd_train_l(G, &d, OPS_BLK_IN, gx, gg, gbt, gin, gy, gm, gis, grm, grv);
            memcpy(rm0, rm, nc * sizeof *rm), memcpy(rv0, rv, nc * sizeof *rv);
            if (infer) F->bn_fwd_infer(F, &d, x, g, bt, rm0, rv0, y0);
            else F->bn_fwd_train(F, &d, x, g, bt, y0, m0, is0, rm0, rv0);
            F->add(F, nx, y0, r, y0);
            F->relu_fwd(F, nx, y0, y0);
            float *y1 = back(gy, nx);
            CHECK_ERR(y1, y0, nx, BN_TOL, what);
            /* the GPU's separate kernels: bn into a buffer, then add_relu */
            float *grm3 = dup(rm, nc), *grv3 = dup(rv, nc), *gt = dpoison(nx), *gy3 = dpoison(nx);
            if (infer) G->bn_fwd_infer(G, &d, gx, gg, gbt, grm3, grv3, gt);
            else G->bn_fwd_train(G, &d, gx, gg, gbt, gt, NULL, NULL, grm3, grv3);
            G->add_relu(G, nx, gt, gr, gy3);
            float *y3 = back(gy3, nx), *rm1 = back(grm, nc), *rm3 = back(grm3, nc);
            CHECK(same(y1, y3, nx) && same(rm1, rm3, nc), "%s (%s%s): fused differs from bn + add_relu on the GPU", what,
                  infer ? "inference" : "train", inplace ? ", in place" : "");
            if (!infer) {
                float *m1 = back(gm, nc);
                CHECK_ERR(m1, m0, nc, BN_TOL, "bn+add+relu save_mean");
                free(m1);
            }
            cuda_free(grm), cuda_free(grv), cuda_free(gm), cuda_free(gis), cuda_free(gy);
            cuda_free(grm3), cuda_free(grv3), cuda_free(gt), cuda_free(gy3);
            free(y1), free(y3), free(rm1), free(rm3);
        }
    cuda_free(gx), cuda_free(gr), cuda_free(gg), cuda_free(gbt);
    float *hone[] = {x, r, g, bt, rm, rv, rm0, rv0, y0, m0, is0};
    for (size_t i = 0; i < sizeof hone / sizeof *hone; i++) free(hone[i]);
}

TEST(bn_fused_vs_ref) {
    NEED_GPU();
    CHECK(G->act_blk == 1 && G->bn_fwd_train_l && G->bn_bwd_l && G->bn_fwd_infer_l, "cuda's layout entries");
    if (G->act_blk != 1 || !G->bn_fwd_train_l || !G->bn_bwd_l || !G->bn_fwd_infer_l) return;
    for (size_t i = 0; i < sizeof bn_shapes / sizeof *bn_shapes; i++) bn_fused_case(&bn_shapes[i]);
    CHECK(G->bn_add_relu_fwd_train_l && G->bn_add_relu_fwd_infer_l, "cuda's bn_add_relu entries");
    if (!G->bn_add_relu_fwd_train_l || !G->bn_add_relu_fwd_infer_l) return;
    for (size_t i = 0; i < sizeof bn_shapes / sizeof *bn_shapes; i++) bn_add_relu_case(&bn_shapes[i]);
}

/* Without running statistics or saved statistics (NULL pointers are allowed). */
TEST(bn_null_stats) {
    NEED_GPU();
    bn_desc d = {3, 4, 10, 1e-5f, 0.1f};
    size_t nx = 120;
    float *x = rand_vec(nx, 0, 1), *g = rand_vec(4, 1, 0.1), *bt = rand_vec(4, 0, 0.1), *y0 = fvec(nx);
    float *gx = dup(x, nx), *gg = dup(g, 4), *gbt = dup(bt, 4), *gy = dpoison(nx);
    G->bn_fwd_train(G, &d, gx, gg, gbt, gy, NULL, NULL, NULL, NULL);
    F->bn_fwd_train(F, &d, x, g, bt, y0, NULL, NULL, NULL, NULL);
    float *y1 = back(gy, nx);
    CHECK_ERR(y1, y0, nx, BN_TOL, "bn_fwd_train without statistics");
    cuda_free(gx), cuda_free(gg), cuda_free(gbt), cuda_free(gy);
    free(x), free(g), free(bt), free(y0), free(y1);
}

TEST(bn_deterministic) {
    NEED_GPU();
    bn_desc d = {128, 16, 1024, 1e-5f, 0.1f};
    size_t nx = (size_t)128 * 16 * 1024;
    float *x = rand_vec(nx, 1, 2), *dy = rand_vec(nx, 0, 1), *g = rand_vec(16, 1, 0.1), *bt = rand_vec(16, 0, 0.1);
    float *gx = dup(x, nx), *gdy = dup(dy, nx), *gg = dup(g, 16), *gbt = dup(bt, 16);
    float *h[2][6];
    for (int r = 0; r < 2; r++) {
        float *gy = dpoison(nx), *gm = dpoison(16), *gis = dpoison(16), *gdx = dpoison(nx), *gdg = dpoison(16);
        float *gdb = dpoison(16);
        G->bn_fwd_train(G, &d, gx, gg, gbt, gy, gm, gis, NULL, NULL);
        G->bn_bwd(G, &d, gx, gdy, gg, gm, gis, gdx, gdg, gdb);
        h[r][0] = back(gy, nx), h[r][1] = back(gm, 16), h[r][2] = back(gis, 16);
        h[r][3] = back(gdx, nx), h[r][4] = back(gdg, 16), h[r][5] = back(gdb, 16);
        cuda_free(gy), cuda_free(gm), cuda_free(gis), cuda_free(gdx), cuda_free(gdg), cuda_free(gdb);
    }
    CHECK(memcmp(h[0][0], h[1][0], nx * 4) == 0 && memcmp(h[0][1], h[1][1], 64) == 0 &&
              memcmp(h[0][2], h[1][2], 64) == 0,
          "bn_fwd_train differs between calls");
    CHECK(memcmp(h[0][3], h[1][3], nx * 4) == 0 && memcmp(h[0][4], h[1][4], 64) == 0 &&
              memcmp(h[0][5], h[1][5], 64) == 0,
          "bn_bwd differs between calls");
    for (int r = 0; r < 2; r++)
        for (int j = 0; j < 6; j++) free(h[r][j]);
    cuda_free(gx), cuda_free(gdy), cuda_free(gg), cuda_free(gbt);
    free(x), free(dy), free(g), free(bt);
}

/* A NaN in one value of channel 1 makes that channel's statistics NaN: every output of
 * channel 1 is NaN, the other channels are untouched; the same positions as the reference. */
TEST(bn_nan) {
    NEED_GPU();
    bn_desc d = {4, 3, 50, 1e-5f, 0.1f};
    size_t nx = 600;
    float *x = rand_vec(nx, 0, 1), *g = rand_vec(3, 1, 0.1), *bt = rand_vec(3, 0, 0.1), *y0 = fvec(nx);
    x[2 * 150 + 50 + 7] = NAN;                     /* image 2, channel 1 */
    float *gx = dup(x, nx), *gg = dup(g, 3), *gbt = dup(bt, 3), *gy = dpoison(nx);
    G->bn_fwd_train(G, &d, gx, gg, gbt, gy, NULL, NULL, NULL, NULL);
    F->bn_fwd_train(F, &d, x, g, bt, y0, NULL, NULL, NULL, NULL);
    float *y1 = back(gy, nx);
    int nan0 = 0, differ = 0;
    for (size_t i = 0; i < nx; i++) {
        nan0 += isnan(y0[i]) != 0;
        differ += !isnan(y0[i]) != !isnan(y1[i]);
    }
    CHECK(nan0 == 4 * 50, "the reference has %d NaN outputs, expected one channel's 200", nan0);
    CHECK(differ == 0, "%d outputs NaN on one side only", differ);
    cuda_free(gx), cuda_free(gg), cuda_free(gbt), cuda_free(gy);
    free(x), free(g), free(bt), free(y0), free(y1);
}

/* Data-parallel BatchNorm through o->allreduce (ops.h), with a fake of RANKS identical
 * ranks: the reduction multiplies every sum (and the count) by RANKS. The global batch is
 * then RANKS copies of the local one, so: y, mean, invstd and dx are the local ones; the
 * running variance uses the unbiased factor M/(M-1) with M = RANKS*m; dgamma and dbeta are
 * RANKS times the local sums. The fake also records the sizes it is called with, which
 * must be those of ops.h and of the ref and cpu backends (lib/ops_ref.c), so that ranks
 * on different backends agree: {c sums, m}, then {c sums}; backward {2c sums, m}. */
#define RANKS 3
static size_t calls[8];
static int ncalls;
static void fake_allreduce(void *ctx, double *buf, size_t n) {
    (void)ctx;
    if (ncalls < 8) calls[ncalls] = n;
    ncalls++;
    for (size_t i = 0; i < n; i++) buf[i] *= RANKS;
}

TEST(bn_allreduce) {
    NEED_GPU();
    bn_desc d = {5, 6, 49, 1e-5f, 0.1f};
    size_t nx = (size_t)5 * 6 * 49, nc = 6, m = 5 * 49;
    float *x = rand_vec(nx, 2.0, 1.5), *dy = rand_vec(nx, 0, 1), *g = rand_vec(nc, 1, 0.3), *bt = rand_vec(nc, 0, 0.5);
    float *rm = rand_vec(nc, 0, 1), *rv = rand_vec(nc, 2, 0.1), *rv_start = copy_vec(rv, nc);
    float *y0 = fvec(nx), *m0 = fvec(nc), *is0 = fvec(nc), *dx0 = fvec(nx), *dg0 = fvec(nc), *db0 = fvec(nc);
    float *gx = dup(x, nx), *gdy = dup(dy, nx), *gg = dup(g, nc), *gbt = dup(bt, nc), *grv = dup(rv, nc);
    float *grm = dup(rm, nc), *gy = dpoison(nx), *gm = dpoison(nc), *gis = dpoison(nc), *gdx = dpoison(nx);
    float *gdg = dpoison(nc), *gdb = dpoison(nc);

    ncalls = 0;
    G->allreduce = fake_allreduce;
    G->bn_fwd_train(G, &d, gx, gg, gbt, gy, gm, gis, grm, grv);
    G->bn_bwd(G, &d, gx, gdy, gg, gm, gis, gdx, gdg, gdb);
    G->allreduce = NULL;
    CHECK(ncalls == 3 && calls[0] == nc + 1 && calls[1] == nc && calls[2] == 2 * nc + 1,
          "allreduce called %d times with sizes %zu %zu %zu, expected 3 with %zu %zu %zu", ncalls, calls[0], calls[1],
          calls[2], nc + 1, nc, 2 * nc + 1);

    F->bn_fwd_train(F, &d, x, g, bt, y0, m0, is0, rm, rv);     /* rm as the GPU's; rv recomputed below */
    F->bn_bwd(F, &d, x, dy, g, m0, is0, dx0, dg0, db0);
    float *y1 = back(gy, nx), *m1 = back(gm, nc), *is1 = back(gis, nc), *rm1 = back(grm, nc), *rv1 = back(grv, nc);
    float *dx1 = back(gdx, nx), *dg1 = back(gdg, nc), *db1 = back(gdb, nc);
    CHECK_ERR(y1, y0, nx, BN_TOL, "y with allreduce");
    CHECK_ERR(m1, m0, nc, BN_TOL, "save_mean with allreduce");
    CHECK_ERR(is1, is0, nc, BN_TOL, "save_invstd with allreduce");
    CHECK_ERR(rm1, rm, nc, BN_TOL, "run_mean with allreduce");
    double M = (double)RANKS * m;
    float *rv_want = fvec(nc), *dg_want = fvec(nc), *db_want = fvec(nc);
    for (size_t c = 0; c < nc; c++) {
        double s = 0.0, q = 0.0;
        for (int n = 0; n < d.n; n++)
            for (int i = 0; i < d.hw; i++) s += x[((size_t)n * nc + c) * d.hw + i];
        double mean = s / m;
        for (int n = 0; n < d.n; n++)
            for (int i = 0; i < d.hw; i++) {
                double v = x[((size_t)n * nc + c) * d.hw + i] - mean;
                q += v * v;
            }
        double var = q / m;
        rv_want[c] = (float)(0.9 * (double)rv_start[c] + 0.1 * var * M / (M - 1));
        dg_want[c] = (float)(RANKS * (double)dg0[c]);
        db_want[c] = (float)(RANKS * (double)db0[c]);
    }
    CHECK_ERR(rv1, rv_want, nc, BN_TOL, "run_var with allreduce (unbiased over the global batch)");
    CHECK_ERR(dg1, dg_want, nc, BN_TOL, "dgamma with allreduce (global sum)");
    CHECK_ERR(db1, db_want, nc, BN_TOL, "dbeta with allreduce (global sum)");
    double scale = dx_scale(g, is0, nc, dy, nx), e = max_diff(dx1, dx0, nx);
    CHECK(e <= BN_TOL * (scale + 1.0), "dx with allreduce: error %.3g (scale %.3g)", e, scale);

    /* the reference with the same hook (its data-parallel path) agrees too */
    float *y2 = fvec(nx), *m2 = fvec(nc), *is2 = fvec(nc), *rv2 = copy_vec(rv_start, nc), *dx2 = fvec(nx);
    float *dg2 = fvec(nc), *db2 = fvec(nc);
    ncalls = 0;
    F->allreduce = fake_allreduce;
    F->bn_fwd_train(F, &d, x, g, bt, y2, m2, is2, NULL, rv2);
    F->bn_bwd(F, &d, x, dy, g, m2, is2, dx2, dg2, db2);
    F->allreduce = NULL;
    if (ncalls == 3) {                             /* the reference implements the hook */
        CHECK_ERR(y1, y2, nx, BN_TOL, "y against the reference with allreduce");
        CHECK_ERR(rv1, rv2, nc, BN_TOL, "run_var against the reference with allreduce");
        CHECK_ERR(dg1, dg2, nc, BN_TOL, "dgamma against the reference with allreduce");
        CHECK_ERR(db1, db2, nc, BN_TOL, "dbeta against the reference with allreduce");
        e = max_diff(dx1, dx2, nx);
        CHECK(e <= BN_TOL * (scale + 1.0), "dx against the reference with allreduce: error %.3g", e);
    }
    free(y2), free(m2), free(is2), free(rv2), free(dx2), free(dg2), free(db2);

    float *gone[] = {gx, gdy, gg, gbt, grv, grm, gy, gm, gis, gdx, gdg, gdb};
    for (size_t i = 0; i < sizeof gone / sizeof *gone; i++) cuda_free(gone[i]);
    float *hone[] = {x, dy, g, bt, rm, rv, rv_start, y0, m0, is0, dx0, dg0, db0, y1, m1, is1, rm1, rv1, dx1, dg1, db1,
                     rv_want, dg_want, db_want};
    for (size_t i = 0; i < sizeof hone / sizeof *hone; i++) free(hone[i]);
}

/* ---- elementwise, pooling, linear, loss ---------------------------------------------- */

TEST(elementwise_vs_ref) {
    NEED_GPU();
    size_t sizes[] = {1, 7, 1000, 100003, (size_t)128 * 16 * 1024};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = sizes[k];
        float *a = rand_vec(n, 0, 1), *b = rand_vec(n, 0, 1), *y0 = fvec(n);
        a[n / 2] = NAN;                              /* NaN passes through ReLU and add */
        if (n > 2) a[n / 3] = -INFINITY, b[n - 1] = INFINITY;
        float *ga = dup(a, n), *gb = dup(b, n), *gy = dpoison(n);
        G->relu_fwd(G, n, ga, gy);
        F->relu_fwd(F, n, a, y0);
        float *y1 = back(gy, n);
        CHECK(same(y1, y0, n), "relu_fwd n=%zu differs", n);
        G->relu_bwd(G, n, gy, gb, gb);               /* in place: dx == dy */
        F->relu_bwd(F, n, y0, b, y0);
        free(y1), y1 = back(gb, n);
        CHECK(same(y1, y0, n), "relu_bwd n=%zu differs", n);
        cuda_to_device(gb, b, n * 4);
        refill(gy, n);
        G->add(G, n, ga, gb, gy);
        F->add(F, n, a, b, y0);
        free(y1), y1 = back(gy, n);
        CHECK(same(y1, y0, n), "add n=%zu differs", n);
        G->add(G, n, ga, gb, ga);                    /* y == a */
        free(y1), y1 = back(ga, n);
        CHECK(same(y1, y0, n), "in-place add n=%zu differs", n);
        G->relu_fwd(G, n, ga, ga);                   /* y == x */
        F->relu_fwd(F, n, y0, y0);
        free(y1), y1 = back(ga, n);
        CHECK(same(y1, y0, n), "in-place relu n=%zu differs", n);
        /* the fused pair against its composition: add_relu in place (y == a), relu_bwd_add
         * by that y with dx == dy */
        float *c = rand_vec(n, 0, 1), *r0 = fvec(n), *r1;
        float *gc = dup(c, n);
        cuda_to_device(ga, a, n * 4);
        G->add_relu(G, n, ga, gb, ga);
        F->add(F, n, a, b, r0);
        F->relu_fwd(F, n, r0, r0);
        r1 = back(ga, n);
        CHECK(same(r1, r0, n), "add_relu n=%zu differs", n);
        G->relu_bwd_add(G, n, ga, gb, gc, gb);
        F->add(F, n, b, c, y0);
        F->relu_bwd(F, n, r0, y0, y0);
        free(r1), r1 = back(gb, n);
        CHECK(same(r1, y0, n), "relu_bwd_add n=%zu differs", n);
        cuda_free(gc);
        free(c), free(r0), free(r1);
        cuda_free(ga), cuda_free(gb), cuda_free(gy);
        free(a), free(b), free(y0), free(y1);
    }
}

/* The per-element kernels' layouts and launch splits (kernels/cuda_index.h): BatchNorm's
 * apply (with a residual and ReLU), inference and dx (masked by a ReLU), and pooling's
 * backward. With any one tensor (or all) 4 bytes off 16-byte alignment they take one value a
 * thread instead of a float4; under BN_CUDA_INDEX_LIMIT below the tensor's size they launch a few
 * whole images at a time (here 2, 2, 1 of 5, or one by one). The arithmetic of each value
 * is the same in every case, so every output must be the same bits as the aligned, unsplit
 * run's (which bn_vs_ref and gap_vs_ref compare with the reference). */
enum { PE_X, PE_R, PE_DY, PE_Y, PE_GDY, PE_BIG };           /* tensors of n*c*hw (PE_GDY: n*c) */
enum { PE_G, PE_B, PE_RM, PE_RV, PE_M, PE_IS, PE_SMALL };   /* tensors of c */
enum { PE_OUT_Y, PE_OUT_YI, PE_OUT_DX, PE_OUT_GDX, PE_OUT_DG, PE_OUT_DB, PE_OUT_RM, PE_OUT };

/* the ops on device copies of in[], tensor k placed one float past its allocation's start
 * when bit k of offs is set (bits PE_BIG.. for the outputs yi, dx, gdx); out[k] are new host
 * copies of the results */
static void per_element_run(const bn_shape *s, float *const big[PE_BIG], float *const small[PE_SMALL], unsigned offs,
                            float *out[PE_OUT]) {
    bn_desc d = {s->n, s->c, s->hw, 1e-5f, 0.1f};
    size_t nx = (size_t)s->n * s->c * s->hw, nc = (size_t)s->c, nr = (size_t)s->n * s->c;
    size_t len[PE_OUT] = {nx, nx, nx, nx, nc, nc, nc};
    float *base[PE_BIG + 3], *t[PE_BIG + 3];   /* + the outputs yi, dx, gdx */
    for (int k = 0; k < PE_BIG + 3; k++) {
        size_t n = k == PE_GDY ? nr : nx, off = (offs >> k) & 1;
        base[k] = dalloc(n + off), t[k] = base[k] + off;
        if (k < PE_BIG) cuda_to_device(t[k], big[k], n * sizeof(float));
        else refill(base[k], n + off);
    }
    float *c[PE_SMALL];
    for (int k = 0; k < PE_SMALL; k++) c[k] = dup(small[k], nc);
    float *yi = t[PE_BIG], *dx = t[PE_BIG + 1], *gdx = t[PE_BIG + 2], *dg = dpoison(nc), *db = dpoison(nc);
    G->bn_add_relu_fwd_train_l(G, &d, OPS_BLK_IN, t[PE_X], c[PE_G], c[PE_B], t[PE_R], t[PE_Y], c[PE_M], c[PE_IS],
                               c[PE_RM], c[PE_RV]);
    G->bn_fwd_infer_l(G, &d, OPS_BLK_IN | OPS_RELU, t[PE_X], c[PE_G], c[PE_B], c[PE_RM], c[PE_RV], yi);
    G->bn_bwd_l(G, &d, OPS_BLK_IN | OPS_RELU, t[PE_X], t[PE_Y], t[PE_DY], c[PE_G], c[PE_B], c[PE_M], c[PE_IS], dx, dg,
                db);
    G->gap_bwd(G, s->n, s->c, s->hw, t[PE_GDY], gdx);
    const float *res[PE_OUT] = {t[PE_Y], yi, dx, gdx, dg, db, c[PE_RM]};
    for (int k = 0; k < PE_OUT; k++) out[k] = back(res[k], len[k]);
    for (int k = 0; k < PE_BIG + 3; k++) cuda_free(base[k]);
    for (int k = 0; k < PE_SMALL; k++) cuda_free(c[k]);
    cuda_free(dg), cuda_free(db);
}

TEST(per_element_layouts) {
    NEED_GPU();
    static const bn_shape shapes[] = {{5, 16, 64}, {5, 3, 36}, {5, 4, 9}};   /* float4; float4, odd C; scalar */
    static const char *outs[PE_OUT] = {"bn+add+relu y", "bn infer+relu y", "bn bwd dx", "gap_bwd dx",
                                       "dgamma", "dbeta", "run_mean"};
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        const bn_shape *s = &shapes[i];
        size_t nx = (size_t)s->n * s->c * s->hw, nc = (size_t)s->c, img = (size_t)s->c * s->hw;
        float *big[PE_BIG] = {rand_vec(nx, 0.5, 1), rand_vec(nx, 0, 1), rand_vec(nx, 0, 1), NULL,
                              rand_vec((size_t)s->n * s->c, 0, 1)};
        big[PE_Y] = fvec(nx);   /* the forward's output: written by the first op */
        float *small[PE_SMALL] = {rand_vec(nc, 1, 0.3), rand_vec(nc, 0, 0.5), rand_vec(nc, 0, 1),
                                  rand_vec(nc, 2, 0.1), fvec(nc), fvec(nc)};
        float *want[PE_OUT], *got[PE_OUT];
        char lim[32];
        per_element_run(s, big, small, 0, want);
        const unsigned all = (1u << (PE_BIG + 3)) - 1;
        struct { unsigned offs; size_t limit; const char *how; } cases[] = {
            {all, 0, "every tensor 4 bytes off alignment"}, {1u << PE_X, 0, "x alone off alignment"},
            {1u << PE_R, 0, "the residual alone off alignment"}, {1u << PE_DY, 0, "dy alone off alignment"},
            {1u << PE_Y, 0, "y (the backward's ReLU mask) alone off alignment"},
            {1u << (PE_BIG + 1), 0, "dx alone off alignment"}, {0, 2 * img + 1, "2 images a launch"},
            {all, img, "one image a launch, off alignment"}};
        for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
            if (cases[k].limit) snprintf(lim, sizeof lim, "%zu", cases[k].limit), setenv("BN_CUDA_INDEX_LIMIT", lim, 1);
            cuda_index_limit_reread();
            per_element_run(s, big, small, cases[k].offs, got);
            unsetenv("BN_CUDA_INDEX_LIMIT");
            cuda_index_limit_reread();
            for (int o = 0; o < PE_OUT; o++) {
                size_t len = o >= PE_OUT_DG ? nc : nx;
                CHECK(same(got[o], want[o], len), "n%d c%d hw%d, %s: %s differs from the aligned single launch's",
                      s->n, s->c, s->hw, cases[k].how, outs[o]);
                free(got[o]);
            }
        }
        for (int o = 0; o < PE_OUT; o++) free(want[o]);
        for (int k = 0; k < PE_BIG; k++) free(big[k]);
        for (int k = 0; k < PE_SMALL; k++) free(small[k]);
    }
}

TEST(gap_vs_ref) {
    NEED_GPU();
    int shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {128, 64, 64}, {80, 64, 64}, {2, 3, 1000}};
    for (int k = 0; k < 5; k++) {
        int n = shapes[k][0], c = shapes[k][1], hw = shapes[k][2];
        size_t nx = (size_t)n * c * hw, ny = (size_t)n * c;
        float *x = rand_vec(nx, 1, 1), *dy = rand_vec(ny, 0, 1), *y0 = fvec(ny), *dx0 = fvec(nx);
        float *gx = dup(x, nx), *gdy = dup(dy, ny), *gy = dpoison(ny), *gdx = dpoison(nx);
        G->gap_fwd(G, n, c, hw, gx, gy);
        F->gap_fwd(F, n, c, hw, x, y0);
        float *y1 = back(gy, ny);
        CHECK_ERR(y1, y0, ny, BN_TOL, "gap_fwd");    /* both: a double sum, one rounding */
        G->gap_bwd(G, n, c, hw, gdy, gdx);
        F->gap_bwd(F, n, c, hw, dy, dx0);
        float *dx1 = back(gdx, nx);
        CHECK(memcmp(dx1, dx0, nx * 4) == 0, "gap_bwd n%d c%d hw%d differs", n, c, hw);
        cuda_free(gx), cuda_free(gdy), cuda_free(gy), cuda_free(gdx);
        free(x), free(dy), free(y0), free(dx0), free(y1), free(dx1);
    }
}

TEST(linear_vs_ref) {
    NEED_GPU();
    int shapes[][3] = {{1, 3, 2}, {5, 64, 10}, {128, 64, 10}, {80, 64, 10}, {7, 33, 17}};
    for (int k = 0; k < 5; k++)
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            int n = shapes[k][0], in = shapes[k][1], out = shapes[k][2];
            size_t nx = (size_t)n * in, ny = (size_t)n * out, nw = (size_t)in * out;
            char what[80];
            snprintf(what, sizeof what, "linear n%d %d->%d bias%d", n, in, out, with_bias);
            float *x = rand_vec(nx, 0, 1), *w = rand_vec(nw, 0, 1), *b = with_bias ? rand_vec(out, 0, 1) : NULL;
            float *dy = rand_vec(ny, 0, 1), *y0 = fvec(ny), *dx0 = fvec(nx), *dw0 = fvec(nw), *db0 = fvec(out);
            float *gx = dup(x, nx), *gw = dup(w, nw), *gb = with_bias ? dup(b, out) : NULL, *gdy = dup(dy, ny);
            float *gy = dpoison(ny), *gdx = dpoison(nx), *gdw = dpoison(nw), *gdb = dpoison(out);
            G->linear_fwd(G, n, in, out, gx, gw, gb, gy);
            F->linear_fwd(F, n, in, out, x, w, b, y0);
            float *y1 = back(gy, ny);
            CHECK(err(y1, y0, ny) <= LINEAR_TOL(in), "%s fwd: error %.3g", what, err(y1, y0, ny));
            G->linear_bwd_data(G, n, in, out, gdy, gw, gdx);
            F->linear_bwd_data(F, n, in, out, dy, w, dx0);
            float *dx1 = back(gdx, nx);
            CHECK(err(dx1, dx0, nx) <= LINEAR_TOL(out), "%s bwd_data: error %.3g", what, err(dx1, dx0, nx));
            G->linear_bwd_filter(G, n, in, out, gx, gdy, gdw, with_bias ? gdb : NULL);
            F->linear_bwd_filter(F, n, in, out, x, dy, dw0, with_bias ? db0 : NULL);
            float *dw1 = back(gdw, nw), *db1 = back(gdb, out);
            CHECK(err(dw1, dw0, nw) <= LINEAR_TOL(n), "%s bwd_filter dw: error %.3g", what, err(dw1, dw0, nw));
            if (with_bias) CHECK_ERR(db1, db0, (size_t)out, BN_TOL, "linear db (a double sum)");
            cuda_free(gx), cuda_free(gw), cuda_free(gb), cuda_free(gdy), cuda_free(gy), cuda_free(gdx);
            cuda_free(gdw), cuda_free(gdb);
            free(x), free(w), free(b), free(dy), free(y0), free(dx0), free(dw0), free(db0), free(y1), free(dx1);
            free(dw1), free(db1);
        }
}

/* NaN-aware: the same NaN positions, and the finite values within tol of (max|ref| + 1) */
static int close_nan(const float *a, const float *b, size_t n, double tol) {
    double scale = 0.0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(b[i])) scale = fmax(scale, fabs(b[i]));
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) || isnan(b[i])) {
            if (!(isnan(a[i]) && isnan(b[i]))) return 0;
            continue;
        }
        if (fabs((double)a[i] - (double)b[i]) > tol * (scale + 1.0)) return 0;
    }
    return 1;
}

static void *dbytes(const void *h, size_t bytes);

/* xent_rows on the same inputs: its rows summed in order over n are xent's loss bit for
 * bit (gl1, gc1: the GPU's xent; gd1: its dlogits, which xent_rows must repeat bit for bit),
 * each row within the loss tolerance of the reference's row, the hits equal, and the step's
 * skip flag set exactly when the reference sets it (a row that is not finite) */
static void xent_rows_check(int n, int classes, const float *l, const uint8_t *lab, const float *gl,
                            const uint8_t *glab, double gl1, int gc1, const float *gd1) {
    size_t ny = (size_t)n * classes;
    double *r0 = malloc((size_t)n * sizeof *r0), *r1 = malloc((size_t)n * sizeof *r1);
    int32_t *h0 = malloc((size_t)n * sizeof *h0), *h1 = malloc((size_t)n * sizeof *h1);
    float *d0 = fvec(ny), *gd = dpoison(ny);
    double *gr = cuda_alloc((size_t)n * sizeof *gr);
    int32_t *gh = cuda_alloc((size_t)n * sizeof *gh);
    ops_step hs = {0.1f, 0, {0, 0}}, s0 = hs, s1;
    ops_step *gs = dbytes(&hs, sizeof hs);
    if (!r0 || !r1 || !h0 || !h1 || !gr || !gh) abort();
    G->xent_rows(G, n, classes, gl, glab, gd, gr, gh, gs);
    F->xent_rows(F, n, classes, l, lab, d0, r0, h0, &s0);
    cuda_to_host(r1, gr, (size_t)n * sizeof *r1);
    cuda_to_host(h1, gh, (size_t)n * sizeof *h1);
    cuda_to_host(&s1, gs, sizeof s1);
    float *d1 = back(gd, ny);
    double total = 0.0;
    int right = 0, rows_ok = 1, hits_ok = 1;
    for (int i = 0; i < n; i++) {
        total += r1[i], right += h1[i];
        rows_ok &= isnan(r0[i]) ? isnan(r1[i]) : fabs(r1[i] - r0[i]) <= 1e-12 * (1.0 + fabs(r0[i]));
        hits_ok &= h1[i] == h0[i];
    }
    total /= n;
    CHECK(memcmp(&total, &gl1, sizeof total) == 0 || (isnan(total) && isnan(gl1)),
          "xent_rows n%d: rows sum to %.17g, xent gave %.17g", n, total, gl1);
    CHECK(right == gc1 && hits_ok, "xent_rows n%d: %d hits (xent %d), rows %s", n, right, gc1,
          hits_ok ? "agree" : "differ from the reference");
    CHECK(rows_ok, "xent_rows n%d: a row's loss differs from the reference's", n);
    CHECK(same(d1, gd1, ny), "xent_rows n%d: dlogits differ from xent's", n);
    CHECK(s1.skip == s0.skip && s1.lr == hs.lr, "xent_rows n%d: skip %d (reference %d)", n, s1.skip, s0.skip);
    cuda_free(gr), cuda_free(gh), cuda_free(gs), cuda_free(gd);
    free(r0), free(r1), free(h0), free(h1), free(d0), free(d1);
}

/* special: 1 = rows with tied maxima, 2 = a NaN logit and then a label out of range */
static void xent_case(int n, int classes, int special) {
    size_t ny = (size_t)n * classes;
    float *l = rand_vec(ny, 0, 3), *d0 = fvec(ny);
    uint8_t *lab = malloc((size_t)n);
    if (!lab) abort();
    for (int i = 0; i < n; i++) lab[i] = (uint8_t)rng_below(&R, (uint64_t)classes);
    if (special & 1) {                              /* ties */
        for (int j = 0; j < classes; j++) l[j] = 1.5f;            /* row 0: all equal: argmax 0 */
        lab[0] = 0;
        l[classes + 2] = l[classes + 5] = 9.0f;                   /* row 1: tie between 2 and 5 */
        lab[1] = 5;
    }
    if ((special & 2) && n > 3) l[3 * classes + 1] = NAN;         /* row 3: NaN */
    float *gl = dup(l, ny), *gd = dpoison(ny);
    uint8_t *glab = cuda_alloc((size_t)n);
    if (!glab) abort();
    cuda_to_device(glab, lab, (size_t)n);
    double l1 = -1, l0 = -1;
    int c1 = -1, c0 = -1;
    G->xent(G, n, classes, gl, glab, gd, &l1, &c1);
    F->xent(F, n, classes, l, lab, d0, &l0, &c0);
    float *d1 = back(gd, ny);
    if (isnan(l0))
        CHECK(isnan(l1), "xent n%d: loss %.9g where the reference has NaN", n, l1);
    else
        CHECK_CLOSE(l1, l0, 1e-12, 1e-12, "xent loss");  /* double exp/log: ~1e-16 each */
    CHECK(c1 == c0, "xent n%d correct %d vs %d", n, c1, c0);
    CHECK(close_nan(d1, d0, ny, BN_TOL), "xent n%d dlogits differ", n);
    xent_rows_check(n, classes, l, lab, gl, glab, l1, c1, d1);
    double l2 = -1;
    G->xent(G, n, classes, gl, glab, NULL, &l2, NULL);          /* no gradient, no count */
    CHECK(memcmp(&l2, &l1, sizeof l1) == 0 || (isnan(l2) && isnan(l1)), "xent without dlogits: %.17g vs %.17g", l2,
          l1);
    if ((special & 2) && n > 4) {                   /* a label outside [0, classes): NaN loss */
        lab[4] = (uint8_t)(classes + 3);
        cuda_to_device(glab, lab, (size_t)n);
        G->xent(G, n, classes, gl, glab, gd, &l1, &c1);
        F->xent(F, n, classes, l, lab, d0, &l0, &c0);
        free(d1), d1 = back(gd, ny);
        CHECK(isnan(l0) && isnan(l1), "bad label: losses %g (gpu) and %g (ref), both should be NaN", l1, l0);
        CHECK(c1 == c0, "bad label: correct %d vs %d", c1, c0);
        CHECK(close_nan(d1, d0, ny, BN_TOL), "bad label: dlogits differ");
        xent_rows_check(n, classes, l, lab, gl, glab, l1, c1, d1);
    }
    cuda_free(gl), cuda_free(gd), cuda_free(glab);
    free(l), free(d0), free(d1), free(lab);
}

TEST(xent_vs_ref) {
    NEED_GPU();
    xent_case(1, 10, 0);
    xent_case(128, 10, 0);
    xent_case(80, 10, 1);                           /* ties */
    xent_case(7, 100, 3);                           /* ties, a NaN logit, a bad label */
}

TEST(memory) {
    NEED_GPU();
    CHECK(cuda_alloc(0) == NULL, "cuda_alloc(0) is not NULL");
    size_t n = 1000;
    float *a = rand_vec(n, 0, 1), *ga = dup(a, n), *gb = dalloc(n);
    cuda_copy(gb, ga, n * 4);
    float *b = back(gb, n);
    CHECK(memcmp(a, b, n * 4) == 0, "to_device, copy, to_host do not give the data back");
    cuda_memset(gb + 10, 0, 20 * 4);
    free(b), b = back(gb, n);
    int ok = 1;
    for (size_t i = 0; i < n; i++) ok &= i >= 10 && i < 30 ? b[i] == 0.0f : memcmp(&b[i], &a[i], 4) == 0;
    CHECK(ok, "cuda_memset wrote outside [10, 30) or not inside it");
    cuda_sync();
    cuda_free(NULL);
    cuda_free(ga), cuda_free(gb);
    free(a), free(b);
}

/* ---- optimizer updates and batch assembly (cuda_train.cu) ------------------------------ */

static void *dbytes(const void *h, size_t bytes) {
    void *p = cuda_alloc(bytes ? bytes : 1);
    if (!p) abort();
    if (bytes) cuda_to_device(p, h, bytes);
    return p;
}

/* one update of n elements on both sides: kind 0 sgd, 1 adam; the tensors and state compared
 * bit for bit. via: 0 the step size as arguments; 1 from an ops_step in device memory (the
 * arguments then wrong on purpose); 2 the same with skip set: nothing may change */
static int optim_case_via(int via, int kind, size_t n, double mom, bool nesterov, double wd, int masked, int64_t t,
                          int specials) {
    float *w = rand_vec(n, 0, 1), *g = rand_vec(n, 0, 0.1), *s1 = rand_vec(n, 0, 0.05), *s2 = rand_vec(n, 0, 0.01);
    uint8_t *mask = masked ? malloc(n) : NULL;
    for (size_t i = 0; i < n; i++) {
        s2[i] = fabsf(s2[i]);                       /* Adam's second moment is >= 0 */
        if (mask) mask[i] = (uint8_t)(rng_u64(&R) % 3 != 0);
    }
    if (specials && n > 4) g[0] = NAN, g[1] = INFINITY, g[2] = -INFINITY, g[3] = 0.0f, w[3] = -0.0f;
    float *gw = dup(w, n), *gg = dup(g, n), *g1 = dup(s1, n), *g2 = dup(s2, n);
    uint8_t *gm = mask ? dbytes(mask, n) : NULL;
    const double lr = 0.05;
    optim_cfg oc = {0};
    oc.kind = kind ? OPT_ADAM : OPT_SGD, oc.beta1 = 0.9, oc.beta2 = 0.999;
    ops_step hs = {optim_step_size(&oc, lr, t), via == 2, {0, 0}};
    ops_step *gs = via ? dbytes(&hs, sizeof hs) : NULL;
    double glr = via ? 7.0 : lr;                    /* must be ignored with a step */
    int64_t gt = via ? t + 5 : t;
    if (via != 2) {
        if (kind == 0) sgd_update(w, g, mom != 0.0 ? s1 : NULL, mask, n, lr, mom, nesterov, wd);
        else adam_update(w, g, s1, s2, mask, n, lr, 0.9, 0.999, 1e-7, wd, t);
    }
    if (kind == 0) G->sgd_update(G, gw, gg, mom != 0.0 ? g1 : NULL, gm, n, glr, mom, nesterov, wd, gs);
    else G->adam_update(G, gw, gg, g1, g2, gm, n, glr, 0.9, 0.999, 1e-7, wd, gt, gs);
    cuda_free(gs);
    float *bw = back(gw, n), *b1 = back(g1, n), *b2 = back(g2, n);
    int ok = same(w, bw, n) && same(s1, b1, n) && same(s2, b2, n);
    cuda_free(gw), cuda_free(gg), cuda_free(g1), cuda_free(g2), cuda_free(gm);
    free(w), free(g), free(s1), free(s2), free(mask), free(bw), free(b1), free(b2);
    return ok;
}
static int optim_case(int kind, size_t n, double mom, bool nesterov, double wd, int masked, int64_t t, int specials) {
    return optim_case_via(0, kind, n, mom, nesterov, wd, masked, t, specials) &&
           optim_case_via(1, kind, n, mom, nesterov, wd, masked, t, specials) &&
           optim_case_via(2, kind, n, mom, nesterov, wd, masked, t, specials);
}

TEST(optim_vs_host) {
    NEED_GPU();
    static const size_t sizes[] = {1, 1000, 70001};   /* 70001: the host loop runs on several threads */
    for (int z = 0; z < 3; z++) {
        size_t n = sizes[z];
        CHECK(optim_case(0, n, 0.0, false, 0.0, 0, 1, 0), "sgd n %zu", n);
        CHECK(optim_case(0, n, 0.9, false, 5e-4, 0, 1, 0), "sgd momentum + wd, n %zu", n);
        CHECK(optim_case(0, n, 0.9, true, 1e-4, 1, 1, 0), "sgd nesterov, masked, n %zu", n);
        CHECK(optim_case(1, n, 0.0, false, 0.0, 0, 1, 0), "adam t 1, n %zu", n);
        CHECK(optim_case(1, n, 0.0, false, 1e-4, 1, 9, 0), "adam t 9, wd, masked, n %zu", n);
    }
    CHECK(optim_case(0, 64, 0.9, true, 5e-4, 0, 1, 1), "sgd with NaN/Inf gradients");
    CHECK(optim_case(1, 64, 0.0, false, 5e-4, 0, 3, 1), "adam with NaN/Inf gradients");
}

/* The multi-tensor updates (ops.h *_update_many): 5 tensors of 1 to 70001 elements, some
 * masked, one SGD (momentum, weight decay; Nesterov in the ops_step case) or Adam step of
 * all of them in one call against the host's update of each, bit for bit; via an ops_step
 * with a size (arguments wrong on purpose) and with skip (nothing may change) */
static int optim_many_case(int adam, int via) {
    enum { K = 5 };
    static const size_t sizes[K] = {1, 16, 70001, 1000, 5};
    float *w[K], *g[K], *m[K], *v[K], *gw[K], *gg[K], *gm[K], *gv[K];
    uint8_t *mask[K], *gmask[K];
    ops_tensor t[K];
    const double lr = 0.05, mom = 0.9, wd = 5e-4;
    const int64_t step = 3;
    optim_cfg oc = {0};
    oc.kind = adam ? OPT_ADAM : OPT_SGD, oc.beta1 = 0.9, oc.beta2 = 0.999;
    ops_step hs = {optim_step_size(&oc, lr, step), via == 2, {0, 0}};
    ops_step *gs = via ? dbytes(&hs, sizeof hs) : NULL;
    for (int j = 0; j < K; j++) {
        size_t n = sizes[j];
        w[j] = rand_vec(n, 0, 1), g[j] = rand_vec(n, 0, 0.1), m[j] = rand_vec(n, 0, 0.05), v[j] = rand_vec(n, 0, 0.01);
        for (size_t i = 0; i < n; i++) v[j][i] = fabsf(v[j][i]);
        mask[j] = j % 2 ? malloc(n) : NULL;
        for (size_t i = 0; mask[j] && i < n; i++) mask[j][i] = (uint8_t)(rng_u64(&R) % 3 != 0);
        gw[j] = dup(w[j], n), gg[j] = dup(g[j], n), gm[j] = dup(m[j], n), gv[j] = dup(v[j], n);
        gmask[j] = mask[j] ? dbytes(mask[j], n) : NULL;
        t[j] = (ops_tensor){gw[j], gg[j], gm[j], adam ? gv[j] : NULL, gmask[j], n};
        if (via == 2) continue;
        if (adam) adam_update(w[j], g[j], m[j], v[j], mask[j], n, lr, 0.9, 0.999, 1e-7, wd, step);
        else sgd_update(w[j], g[j], m[j], mask[j], n, lr, mom, via == 1, wd);
    }
    ops_tensor *gt = dbytes(t, sizeof t);
    double glr = via ? 9.0 : lr;
    if (adam) G->adam_update_many(G, gt, K, 70001, glr, 0.9, 0.999, 1e-7, wd, via ? step + 4 : step, gs);
    else G->sgd_update_many(G, gt, K, 70001, glr, mom, via == 1, wd, gs);
    int ok = 1;
    for (int j = 0; j < K; j++) {
        size_t n = sizes[j];
        float *bw = back(gw[j], n), *bm = back(gm[j], n), *bv = back(gv[j], n);
        ok &= same(bw, w[j], n) && same(bm, m[j], n) && same(bv, v[j], n);
        free(bw), free(bm), free(bv);
    }
    for (int j = 0; j < K; j++) {
        cuda_free(gw[j]), cuda_free(gg[j]), cuda_free(gm[j]), cuda_free(gv[j]), cuda_free(gmask[j]);
        free(w[j]), free(g[j]), free(m[j]), free(v[j]), free(mask[j]);
    }
    cuda_free(gt), cuda_free(gs);
    return ok;
}

TEST(optim_many_vs_host) {
    NEED_GPU();
    for (int via = 0; via < 3; via++) {
        CHECK(optim_many_case(0, via), "sgd, 5 tensors in one call (%s)", via ? via == 1 ? "ops_step" : "skip" : "args");
        CHECK(optim_many_case(1, via), "adam, 5 tensors in one call (%s)", via ? via == 1 ? "ops_step" : "skip" : "args");
    }
}

/* n images of c x h x w from N records: idx with repeats, par drawn for kind k (NULL when k is
 * none), normalised (nc channels, 0: none); x and the gathered labels bit for bit */
static int fill_case(int N, int c, int h, int w, int n, aug_kind k, int nc) {
    size_t img = (size_t)c * h * w;
    uint8_t *pix = malloc((size_t)N * img), *labels = malloc((size_t)N), lab[256];
    uint32_t idx[256];
    aug_param par[256];
    for (size_t i = 0; i < (size_t)N * img; i++) pix[i] = (uint8_t)rng_u64(&R);
    for (int i = 0; i < N; i++) labels[i] = (uint8_t)(rng_u64(&R) % 10);
    for (int i = 0; i < n; i++) idx[i] = (uint32_t)(rng_u64(&R) % (uint64_t)N), aug_draw(&R, k, &par[i]);
    norm_cfg nm = {0};
    nm.meanstd = nc > 0, nm.c = nc;
    for (int i = 0; i < nc; i++) nm.mean[i] = 0.3 + 0.01 * i, nm.std[i] = 0.2 + 0.013 * i;
    double mean[NORM_MAXC], inv[NORM_MAXC];
    bool norm = norm_arrays(&nm, c, mean, inv);
    const aug_param *p = k == AUG_NONE ? NULL : par;
    size_t nx = (size_t)n * img;
    float *x = fvec(nx);
    batch_fill_raw(x, pix, c, h, w, idx, p, n, k == AUG_SEED, norm ? mean : NULL, norm ? inv : NULL);
    uint8_t *gpix = dbytes(pix, (size_t)N * img), *glabels = dbytes(labels, (size_t)N), *glab = dbytes(lab, (size_t)n);
    uint32_t *gidx = dbytes(idx, (size_t)n * sizeof *idx);
    aug_param *gpar = dbytes(par, (size_t)n * sizeof *par);
    float *gx = dpoison(nx);
    G->batch_fill(G, gx, gpix, c, h, w, gidx, p ? gpar : NULL, n, k == AUG_SEED, norm ? mean : NULL,
                  norm ? inv : NULL, glabels, glab);
    float *bx = back(gx, nx);
    uint8_t blab[256];
    cuda_to_host(blab, glab, (size_t)n);
    int ok = same(x, bx, nx);
    for (int i = 0; i < n; i++) ok &= blab[i] == labels[idx[i]];
    cuda_free(gpix), cuda_free(glabels), cuda_free(glab), cuda_free(gidx), cuda_free(gpar), cuda_free(gx);
    free(pix), free(labels), free(x), free(bx);
    return ok;
}

TEST(batch_fill_vs_host) {
    NEED_GPU();
    CHECK(fill_case(50, 3, 32, 32, 128, AUG_CROP_FLIP, 3), "crop-flip, meanstd, batch 128");
    CHECK(fill_case(50, 3, 32, 32, 80, AUG_SEED, 0), "seed (brightness, clip), no normalisation, batch 80");
    CHECK(fill_case(9, 3, 32, 32, 1, AUG_NONE, 3), "none, one image");
    CHECK(fill_case(7, 17, 5, 9, 6, AUG_CROP_FLIP, 16), "17 channels (the 17th not normalised), 5x9 images");
    CHECK(fill_case(7, 2, 3, 3, 5, AUG_SEED, 1), "3x3 images: crops entirely in the padding");
}

/* ---- recorded steps (ops.h graph_*: CUDA graphs) ------------------------------------------ */

/* A small step, y = relu(a + b) then an SGD update whose step size and skip flag come from an
 * ops_step in device memory: recorded once (nothing runs while recording), then replayed with
 * new inputs and new step values each time, bit for bit what the host computes; a skip flag
 * leaves the weights alone; a change of the backend's plans makes the recording stale; a
 * call that cannot be recorded (a synchronous copy) makes graph_end fail without ending the
 * program, and the backend works as before afterwards. */
TEST(graph_record_replay) {
    NEED_GPU();
    enum { N = 5000 };
    float *a = rand_vec(N, 0, 1), *b = rand_vec(N, 0, 1), *w = rand_vec(N, 0, 1), *g = rand_vec(N, 0, 0.1);
    float *y = fvec(N), *w0 = malloc(N * sizeof *w0);
    memcpy(w0, w, N * sizeof *w);
    float *ga = dup(a, N), *gb = dup(b, N), *gw = dup(w, N), *gg = dup(g, N), *gy = dpoison(N);
    ops_step hs = {0.5f, 0, {0, 0}};
    ops_step *gs = dbytes(&hs, sizeof hs);
    CHECK(G->graph_begin(G) == 0, "graph_begin failed");
    G->add_relu(G, N, ga, gb, gy);
    G->sgd_update(G, gw, gg, NULL, NULL, N, 99.0, 0.0, false, 0.0, gs);   /* 99: ignored, s gives the size */
    void *gr = G->graph_end(G);
    CHECK(gr != NULL, "graph_end gave no recording");
    float *bw = back(gw, N), *by = back(gy, N);
    CHECK(same(bw, w0, N) && isnan(by[0]), "ops ran while being recorded");
    free(bw), free(by);
    for (int k = 0; gr && k < 3; k++) {
        for (size_t i = 0; i < N; i++) a[i] = (float)rng_uniform(&R) - 0.5f;
        cuda_to_device(ga, a, N * sizeof *a);
        hs.lr = 0.1f * (float)(k + 1), hs.skip = k == 2;
        cuda_to_device(gs, &hs, sizeof hs);
        CHECK(G->graph_launch(G, gr) == 0, "replay %d refused", k);
        for (size_t i = 0; i < N; i++) y[i] = a[i] + b[i] > 0.0f ? a[i] + b[i] : 0.0f;
        if (!hs.skip) sgd_update(w, g, NULL, NULL, N, hs.lr, 0.0, false, 0.0);
        by = back(gy, N), bw = back(gw, N);
        CHECK(same(by, y, N), "replay %d: y differs (the recording kept old inputs?)", k);
        CHECK(same(bw, w, N), "replay %d (lr %g, skip %d): weights differ", k, hs.lr, hs.skip);
        free(by), free(bw);
    }
    if (gr) {   /* new plans (a precision change drops them): the recording is stale */
        G->set_precision(G, "tf32"), G->set_precision(G, "fp32");
        CHECK(G->graph_launch(G, gr) == -1, "a recording from before a change of plans still launches");
        G->graph_free(G, gr);
    }
    CHECK(G->graph_begin(G) == 0, "graph_begin failed (second)");
    G->relu_fwd(G, N, ga, gy);
    float h[4];
    cuda_to_host(h, ga, sizeof h);                   /* synchronous: cannot be recorded */
    void *bad = G->graph_end(G);
    CHECK(bad == NULL, "a recording with a synchronous copy in it was accepted");
    if (bad) G->graph_free(G, bad);
    G->add(G, N, ga, gb, gy);                       /* and the stream works as before */
    by = back(gy, N);
    for (size_t i = 0; i < N; i++) y[i] = a[i] + b[i];
    CHECK(same(by, y, N), "after a failed recording, add differs");
    free(by);
    cuda_free(ga), cuda_free(gb), cuda_free(gw), cuda_free(gg), cuda_free(gy), cuda_free(gs);
    free(a), free(b), free(w), free(g), free(y), free(w0);
}
#endif /* HAVE_CUDA */

/* Runs everywhere: with a GPU the table is complete; without one, ops_get("cuda") says why
 * and "auto" falls back to cpu. */
TEST(backend) {
#ifndef HAVE_CUDA
    SKIP("not built with CUDA (make found no nvcc or cuDNN, or CUDA=0)");
#else
    const char *why = NULL;
    ops *o = ops_get("cuda", &why);
    ops *a = ops_get("auto", NULL);
    if (!o) {
        CHECK(why && *why, "ops_get(\"cuda\") gave NULL without a reason");
        CHECK(a && strcmp(a->name, "cpu") == 0, "auto is %s without a GPU", a ? a->name : "NULL");
        return;
    }
    CHECK(strcmp(o->name, "cuda") == 0 && a == o, "names: %s, auto %s", o->name, a ? a->name : "NULL");
    int missing = !o->conv_fwd + !o->conv_bwd_data + !o->conv_bwd_filter + !o->bn_fwd_train + !o->bn_fwd_infer +
                  !o->bn_bwd + !o->relu_fwd + !o->relu_bwd + !o->add + !o->gap_fwd + !o->gap_bwd + !o->linear_fwd +
                  !o->linear_bwd_data + !o->linear_bwd_filter + !o->xent + !o->sgd_update + !o->adam_update +
                  !o->batch_fill + !o->sync + !o->set_precision + !o->add_relu + !o->relu_bwd_add + !o->conv_fwd_l +
                  !o->conv_bwd_data_l + !o->conv_bwd_filter_l + !o->bn_fwd_train_l + !o->bn_fwd_infer_l + !o->bn_bwd_l +
                  !o->gap_fwd_l + !o->gap_bwd_l + !o->act_convert + (o->act_blk != 1) + !o->xent_rows +
                  !o->sgd_update_many + !o->adam_update_many + !o->bn_add_relu_fwd_train_l +
                  !o->bn_add_relu_fwd_infer_l + !o->graph_begin + !o->graph_end + !o->graph_launch + !o->graph_free;
    CHECK(missing == 0, "%d ops missing from the cuda table", missing);
    CHECK(o->allreduce == NULL, "allreduce is set in a single process");
#endif
}

int main(void) {
    uint64_t seed = 20240601;
    const char *s = getenv("BN_TEST_SEED");
    if (s) seed = strtoull(s, NULL, 10);
    printf("# seed %llu\n", (unsigned long long)seed);
    rng_seed(&R, seed, 11);
#ifdef HAVE_CUDA
    const char *why = NULL;
    G = ops_get("cuda", &why);
    snprintf(no_gpu, sizeof no_gpu, "no CUDA device: %s", why ? why : "(no reason given)");
    if (!G) printf("# %s\n", no_gpu);
#else
    snprintf(no_gpu, sizeof no_gpu, "no CUDA device: not built with CUDA");
#endif
    RUN(backend);
#ifdef HAVE_CUDA
    RUN(memory);
    RUN(conv_small_vs_ref);
    RUN(conv_resnet_vs_ref);
    RUN(conv_deterministic);
    RUN(conv_tf32);
    RUN(conv_nan_inf);
    RUN(conv_own_vs_ref);
    RUN(conv_own_rows_same_bits);
    RUN(bn_vs_ref);
    RUN(bn_fused_vs_ref);
    RUN(bn_null_stats);
    RUN(bn_deterministic);
    RUN(bn_nan);
    RUN(bn_allreduce);
    RUN(elementwise_vs_ref);
    RUN(gap_vs_ref);
    RUN(per_element_layouts);
    RUN(linear_vs_ref);
    RUN(xent_vs_ref);
    RUN(optim_vs_host);
    RUN(optim_many_vs_host);
    RUN(batch_fill_vs_host);
    RUN(graph_record_replay);
#endif
    return DONE();
}
