/* test_ops_cpu.c: the fast CPU backend (ops_cpu) against the reference (ops_ref).
 *
 * Every op on fresh random inputs over several shapes (odd batches, stride 2, 1x1, odd
 * sizes where a strided window never reaches the last row, with and without bias, the
 * ResNet-20 shapes at a small batch, and batches longer than the convolution chunk so that
 * chunk tails and the filter gradient's sum over chunks are exercised); determinism (two
 * calls bit-identical); NaN through the convolutions. Outputs are filled with NaN before
 * each call, so an op that leaves part of its output unwritten fails.
 *
 * Tolerances. The reference sums in double and rounds once; ops_cpu (oneDNN) sums K float
 * products in float, in its own order. With random-sign terms the rounding errors add up
 * like a random walk: error ~ eps * sqrt(K) * (a typical partial sum), and a partial sum is
 * about the result's scale max|ref| or less. So we require (CONV_TOL(K) below)
 *     max|cpu - ref| <= 16 * eps * sqrt(K) * (max|ref| + 1),    eps = 2^-24,
 * where K is the reduction length: cin*k*k (forward), cout*k*k (backward data), n*ho*wo
 * (filter). Measured over seeds 1-5 and all the shapes here, the worst error was
 * 1.3 * eps * sqrt(K) * (max|ref| + 1): the bound leaves ~12x room. The "+1" keeps
 * tensors whose values are all tiny from turning
 * into a relative test. A wrong tap, a missed chunk or a wrong stride gives errors of the
 * order of max|ref| itself, orders of magnitude above this.
 * BatchNorm: statistics in double in both, per-element float arithmetic of ~4 roundings
 * in ops_cpu; the inputs have mean/std ~ 3, which multiplies the rounding of x - mean by
 * ~4: errors measured up to 1.4e-7 of the tensor's scale; BN_TOL = 2e-6 leaves ~14x room. */
#include <stdint.h>

#include "../tests/check.h"
#include "ops.h"
#include "rng.h"

extern ops ops_cpu;

static rng R;
#include "testvec.h"
static ops *C = &ops_cpu, *F = &ops_ref;

#define EPS32 5.9604644775390625e-08        /* 2^-24 */
#define CONV_TOL(K) (16.0 * EPS32 * sqrt((double)(K)))


/* ---- convolutions -------------------------------------------------------------------- */

typedef struct { int n, cin, h, w, cout, k, stride, pad; } shape;

static const shape conv_shapes[] = {
    {1, 3, 8, 8, 4, 3, 1, 1},      /* n = 1 */
    {3, 5, 7, 9, 6, 3, 2, 1},      /* odd batch, odd sizes, stride 2, non-square */
    {5, 4, 6, 6, 8, 1, 1, 0},      /* 1x1 */
    {3, 16, 9, 9, 8, 1, 2, 0},     /* 1x1 stride 2 on odd size: the last row is never read */
    {2, 3, 5, 5, 2, 5, 1, 2},      /* 5x5 */
    {2, 4, 6, 6, 3, 3, 1, 0},      /* no padding */
    {40, 8, 6, 6, 8, 3, 1, 1},     /* longer than one chunk: a chunk and a tail */
    {70, 4, 5, 5, 6, 3, 2, 1},     /* three chunks */
    /* ResNet-20 at batch 2 */
    {2, 3, 32, 32, 16, 3, 1, 1},
    {2, 16, 32, 32, 16, 3, 1, 1},
    {2, 16, 32, 32, 32, 3, 2, 1},
    {2, 16, 32, 32, 32, 1, 2, 0},
    {2, 32, 16, 16, 32, 3, 1, 1},
    {2, 32, 16, 16, 64, 3, 2, 1},
    {2, 32, 16, 16, 64, 1, 2, 0},
    {2, 64, 8, 8, 64, 3, 1, 1},
};

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
    float *y1 = fvec(ny), *y0 = fvec(ny), *dx1 = fvec(nx), *dx0 = fvec(nx);
    float *dw1 = fvec(nw), *dw0 = fvec(nw), *db1 = fvec(d.cout), *db0 = fvec(d.cout);
    char what[160];

    C->conv_fwd(C, &d, x, w, b, y1);
    F->conv_fwd(F, &d, x, w, b, y0);
    snprintf(what, sizeof what, "fwd n%d %d->%d %dx%d k%d s%d p%d bias%d", d.n, d.cin, d.cout, d.h, d.w, d.k,
             d.stride, d.pad, with_bias);
    CHECK_ERR(y1, y0, ny, CONV_TOL(d.cin * d.k * d.k), what);

    C->conv_bwd_data(C, &d, dy, w, dx1);
    F->conv_bwd_data(F, &d, dy, w, dx0);
    what[0] = 'B', what[1] = 'D', what[2] = 'A';
    CHECK_ERR(dx1, dx0, nx, CONV_TOL(d.cout * d.k * d.k), what);

    C->conv_bwd_filter(C, &d, x, dy, dw1, with_bias ? db1 : NULL);
    F->conv_bwd_filter(F, &d, x, dy, dw0, with_bias ? db0 : NULL);
    what[0] = 'B', what[1] = 'F', what[2] = 'I';
    CHECK_ERR(dw1, dw0, nw, CONV_TOL(d.n * d.ho * d.wo), what);
    if (with_bias) CHECK_ERR(db1, db0, (size_t)d.cout, CONV_TOL(d.n * d.ho * d.wo), what);

    free(x), free(w), free(b), free(dy), free(y1), free(y0), free(dx1), free(dx0);
    free(dw1), free(dw0), free(db1), free(db0);
}

TEST(conv_vs_ref) {
    for (size_t i = 0; i < sizeof conv_shapes / sizeof *conv_shapes; i++) {
        conv_case(&conv_shapes[i], 0);
        conv_case(&conv_shapes[i], 1);
    }
}

/* A second call for a cached shape on new data (the cache must not keep old inputs). */
TEST(conv_cache_new_data) {
    for (int rep = 0; rep < 3; rep++) conv_case(&conv_shapes[6], rep & 1);
}

/* Two calls on the same inputs give the same bits; a chunked batch (n = 70). */
TEST(conv_deterministic) {
    const shape *s = &conv_shapes[7];
    conv_desc d;
    desc_of(&d, s);
    size_t nx = (size_t)d.n * d.cin * d.h * d.w, ny = (size_t)d.n * d.cout * d.ho * d.wo;
    size_t nw = (size_t)d.cout * d.cin * d.k * d.k;
    float *x = rand_vec(nx, 0, 1), *w = rand_vec(nw, 0, 1), *b = rand_vec(d.cout, 0, 1), *dy = rand_vec(ny, 0, 1);
    float *o[2][4];
    for (int r = 0; r < 2; r++) {
        o[r][0] = fvec(ny), o[r][1] = fvec(nx), o[r][2] = fvec(nw), o[r][3] = fvec(d.cout);
        C->conv_fwd(C, &d, x, w, b, o[r][0]);
        C->conv_bwd_data(C, &d, dy, w, o[r][1]);
        C->conv_bwd_filter(C, &d, x, dy, o[r][2], o[r][3]);
    }
    CHECK(memcmp(o[0][0], o[1][0], ny * sizeof(float)) == 0, "conv_fwd differs between calls");
    CHECK(memcmp(o[0][1], o[1][1], nx * sizeof(float)) == 0, "conv_bwd_data differs between calls");
    CHECK(memcmp(o[0][2], o[1][2], nw * sizeof(float)) == 0, "conv_bwd_filter dw differs between calls");
    CHECK(memcmp(o[0][3], o[1][3], (size_t)d.cout * sizeof(float)) == 0, "conv_bwd_filter db differs");
    for (int r = 0; r < 2; r++)
        for (int j = 0; j < 4; j++) free(o[r][j]);
    free(x), free(w), free(b), free(dy);
}

/* One NaN input value: exactly the outputs that depend on it are NaN, as in the reference
 * (whose loops touch only the taps inside the window). */
TEST(conv_nan_propagates) {
    const shape *s = &conv_shapes[1];
    conv_desc d;
    desc_of(&d, s);
    size_t nx = (size_t)d.n * d.cin * d.h * d.w, ny = (size_t)d.n * d.cout * d.ho * d.wo;
    size_t nw = (size_t)d.cout * d.cin * d.k * d.k;
    float *x = rand_vec(nx, 0, 1), *w = rand_vec(nw, 0, 1), *dy = rand_vec(ny, 0, 1);
    float *y1 = fvec(ny), *y0 = fvec(ny), *dx1 = fvec(nx), *dx0 = fvec(nx);
    x[nx / 2 + 3] = NAN;
    dy[ny / 3] = NAN;
    C->conv_fwd(C, &d, x, w, NULL, y1);
    F->conv_fwd(F, &d, x, w, NULL, y0);
    C->conv_bwd_data(C, &d, dy, w, dx1);
    F->conv_bwd_data(F, &d, dy, w, dx0);
    int nan_y = 0, nan_dx = 0, same = 1;
    for (size_t i = 0; i < ny; i++) {
        nan_y += isnan(y0[i]) != 0;
        if (!!isnan(y1[i]) != !!isnan(y0[i])) same = 0;
    }
    for (size_t i = 0; i < nx; i++) {
        nan_dx += isnan(dx0[i]) != 0;
        if (!!isnan(dx1[i]) != !!isnan(dx0[i])) same = 0;
    }
    CHECK(nan_y > 0 && nan_dx > 0, "the reference has %d NaN outputs and %d NaN dx", nan_y, nan_dx);
    CHECK(same, "NaN positions differ from the reference");
    free(x), free(w), free(dy), free(y1), free(y0), free(dx1), free(dx0);
}

/* ---- BatchNorm ------------------------------------------------------------------------ */

typedef struct { int n, c, hw; } bn_shape;
static const bn_shape bn_shapes[] = {
    {1, 3, 1}, {3, 7, 9}, {5, 16, 64}, {2, 64, 64}, {4, 16, 1024}, {1, 5, 33},
};
#define BN_TOL 2e-6

static void bn_case(const bn_shape *s) {
    bn_desc d = {s->n, s->c, s->hw, 1e-5f, 0.1f};
    size_t nx = (size_t)s->n * s->c * s->hw, nc = (size_t)s->c;
    char what[96];
    snprintf(what, sizeof what, "bn n%d c%d hw%d", s->n, s->c, s->hw);
    float *x = rand_vec(nx, 3.0, 1.0), *dy = rand_vec(nx, 0, 1);
    float *g = rand_vec(nc, 1.0, 0.3), *bt = rand_vec(nc, 0, 0.5);
    float *rm1 = rand_vec(nc, 0, 1), *rv1 = rand_vec(nc, 2, 0.1);
    float *rm0 = copy_vec(rm1, nc), *rv0 = copy_vec(rv1, nc);
    float *y1 = fvec(nx), *y0 = fvec(nx), *m1 = fvec(nc), *m0 = fvec(nc), *is1 = fvec(nc), *is0 = fvec(nc);

    C->bn_fwd_train(C, &d, x, g, bt, y1, m1, is1, rm1, rv1);
    F->bn_fwd_train(F, &d, x, g, bt, y0, m0, is0, rm0, rv0);
    CHECK_ERR(y1, y0, nx, BN_TOL, what);
    CHECK_ERR(m1, m0, nc, 1e-6, "save_mean");
    CHECK_ERR(is1, is0, nc, 1e-6, "save_invstd");
    CHECK_ERR(rm1, rm0, nc, 1e-6, "run_mean");
    CHECK_ERR(rv1, rv0, nc, 1e-6, "run_var");

    /* backward from the reference's saved statistics, so that only bn_bwd is compared */
    float *dx1 = fvec(nx), *dx0 = fvec(nx), *dg1 = fvec(nc), *dg0 = fvec(nc), *db1 = fvec(nc), *db0 = fvec(nc);
    C->bn_bwd(C, &d, x, dy, g, m0, is0, dx1, dg1, db1);
    F->bn_bwd(F, &d, x, dy, g, m0, is0, dx0, dg0, db0);
    /* dx cancels (dy - mean(dy) - xhat*...): compare to the scale of gamma*invstd*dy */
    double scale = 0.0;
    for (size_t i = 0; i < nc; i++) scale = fmax(scale, fabs(g[i] * is0[i]));
    scale *= max_abs(dy, nx);
    double e = 0.0;
    for (size_t i = 0; i < nx; i++) e = fmax(e, fabs((double)dx1[i] - dx0[i]));
    CHECK(e <= BN_TOL * (scale + 1.0), "%s: bn_bwd dx error %.3g (scale %.3g)", what, e, scale);
    CHECK(!isnan(e), "%s: bn_bwd dx has NaN", what);
    CHECK_ERR(dg1, dg0, nc, 1e-6, "dgamma");
    CHECK_ERR(db1, db0, nc, 1e-6, "dbeta");
    float *dg2 = fvec(nc), *db2 = fvec(nc);
    C->bn_bwd(C, &d, x, dy, g, m0, is0, NULL, dg2, db2);             /* dx not needed */
    CHECK(memcmp(dg2, dg1, nc * sizeof(float)) == 0 && memcmp(db2, db1, nc * sizeof(float)) == 0,
          "%s: bn_bwd without dx gives other dgamma/dbeta", what);

    C->bn_fwd_infer(C, &d, x, g, bt, rm0, rv0, y1);
    F->bn_fwd_infer(F, &d, x, g, bt, rm0, rv0, y0);
    CHECK_ERR(y1, y0, nx, BN_TOL, "bn_fwd_infer");

    free(x), free(dy), free(g), free(bt), free(rm1), free(rv1), free(rm0), free(rv0);
    free(y1), free(y0), free(m1), free(m0), free(is1), free(is0);
    free(dx1), free(dx0), free(dg1), free(dg0), free(db1), free(db0), free(dg2), free(db2);
}

TEST(bn_vs_ref) {
    for (size_t i = 0; i < sizeof bn_shapes / sizeof *bn_shapes; i++) bn_case(&bn_shapes[i]);
}

/* Without running statistics or saved statistics (NULL pointers are allowed). */
TEST(bn_null_stats) {
    bn_desc d = {3, 4, 10, 1e-5f, 0.1f};
    size_t nx = 120;
    float *x = rand_vec(nx, 0, 1), *g = rand_vec(4, 1, 0.1), *bt = rand_vec(4, 0, 0.1);
    float *y1 = fvec(nx), *y0 = fvec(nx);
    C->bn_fwd_train(C, &d, x, g, bt, y1, NULL, NULL, NULL, NULL);
    F->bn_fwd_train(F, &d, x, g, bt, y0, NULL, NULL, NULL, NULL);
    CHECK_ERR(y1, y0, nx, BN_TOL, "bn_fwd_train without statistics");
    free(x), free(g), free(bt), free(y1), free(y0);
}

TEST(bn_deterministic) {
    bn_desc d = {4, 16, 1024, 1e-5f, 0.1f};
    size_t nx = (size_t)4 * 16 * 1024;
    float *x = rand_vec(nx, 1, 2), *dy = rand_vec(nx, 0, 1), *g = rand_vec(16, 1, 0.1), *bt = rand_vec(16, 0, 0.1);
    float *y[2], *m[2], *is[2], *dx[2], *dg[2], *db[2];
    for (int r = 0; r < 2; r++) {
        y[r] = fvec(nx), m[r] = fvec(16), is[r] = fvec(16), dx[r] = fvec(nx), dg[r] = fvec(16), db[r] = fvec(16);
        C->bn_fwd_train(C, &d, x, g, bt, y[r], m[r], is[r], NULL, NULL);
        C->bn_bwd(C, &d, x, dy, g, m[r], is[r], dx[r], dg[r], db[r]);
    }
    CHECK(memcmp(y[0], y[1], nx * 4) == 0 && memcmp(m[0], m[1], 64) == 0 && memcmp(is[0], is[1], 64) == 0,
          "bn_fwd_train differs between calls");
    CHECK(memcmp(dx[0], dx[1], nx * 4) == 0 && memcmp(dg[0], dg[1], 64) == 0 && memcmp(db[0], db[1], 64) == 0,
          "bn_bwd differs between calls");
    for (int r = 0; r < 2; r++) free(y[r]), free(m[r]), free(is[r]), free(dx[r]), free(dg[r]), free(db[r]);
    free(x), free(dy), free(g), free(bt);
}

/* ---- elementwise, pooling, linear, loss ---------------------------------------------- */

TEST(elementwise_vs_ref) {
    size_t sizes[] = {1, 7, 1000, 100003};          /* the last one runs in parallel */
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = sizes[k];
        float *a = rand_vec(n, 0, 1), *b = rand_vec(n, 0, 1), *y1 = fvec(n), *y0 = fvec(n);
        a[n / 2] = NAN;                              /* NaN passes through ReLU and add */
        C->relu_fwd(C, n, a, y1);
        F->relu_fwd(F, n, a, y0);
        CHECK(memcmp(y1, y0, n * 4) == 0, "relu_fwd n=%zu differs", n);
        float *dx = copy_vec(b, n);
        C->relu_bwd(C, n, y0, dx, dx);               /* in place: dx == dy */
        F->relu_bwd(F, n, y0, b, y1);
        CHECK(memcmp(dx, y1, n * 4) == 0, "relu_bwd n=%zu differs", n);
        free(dx);
        C->add(C, n, a, b, y1);
        F->add(F, n, a, b, y0);
        CHECK(memcmp(y1, y0, n * 4) == 0, "add n=%zu differs", n);
        float *a2 = copy_vec(a, n);
        C->add(C, n, a2, b, a2);                     /* y == a */
        CHECK(memcmp(a2, y0, n * 4) == 0, "in-place add n=%zu differs", n);
        C->relu_fwd(C, n, a2, a2);                   /* y == x */
        F->relu_fwd(F, n, y0, y0);
        CHECK(memcmp(a2, y0, n * 4) == 0, "in-place relu n=%zu differs", n);
        free(a), free(b), free(y1), free(y0), free(a2);
    }
}

TEST(gap_vs_ref) {
    int shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {128, 64, 64}};
    for (int k = 0; k < 3; k++) {
        int n = shapes[k][0], c = shapes[k][1], hw = shapes[k][2];
        size_t nx = (size_t)n * c * hw, ny = (size_t)n * c;
        float *x = rand_vec(nx, 1, 1), *dy = rand_vec(ny, 0, 1);
        float *y1 = fvec(ny), *y0 = fvec(ny), *dx1 = fvec(nx), *dx0 = fvec(nx);
        C->gap_fwd(C, n, c, hw, x, y1);
        F->gap_fwd(F, n, c, hw, x, y0);
        CHECK_ERR(y1, y0, ny, 1e-7, "gap_fwd");      /* both: double sum, one rounding */
        C->gap_bwd(C, n, c, hw, dy, dx1);
        F->gap_bwd(F, n, c, hw, dy, dx0);
        CHECK(memcmp(dx1, dx0, nx * 4) == 0, "gap_bwd n%d c%d hw%d differs", n, c, hw);
        free(x), free(dy), free(y1), free(y0), free(dx1), free(dx0);
    }
}

TEST(linear_xent_vs_ref) {
    int shapes[][3] = {{1, 3, 2}, {5, 64, 10}, {128, 64, 10}};
    for (int k = 0; k < 3; k++) {
        int n = shapes[k][0], in = shapes[k][1], out = shapes[k][2];
        size_t nx = (size_t)n * in, ny = (size_t)n * out, nw = (size_t)in * out;
        float *x = rand_vec(nx, 0, 1), *w = rand_vec(nw, 0, 1), *b = rand_vec(out, 0, 1), *dy = rand_vec(ny, 0, 1);
        float *y1 = fvec(ny), *y0 = fvec(ny), *dx1 = fvec(nx), *dx0 = fvec(nx);
        float *dw1 = fvec(nw), *dw0 = fvec(nw), *db1 = fvec(out), *db0 = fvec(out);
        C->linear_fwd(C, n, in, out, x, w, b, y1);
        F->linear_fwd(F, n, in, out, x, w, b, y0);
        CHECK_ERR(y1, y0, ny, CONV_TOL(in), "linear_fwd");
        C->linear_bwd_data(C, n, in, out, dy, w, dx1);
        F->linear_bwd_data(F, n, in, out, dy, w, dx0);
        CHECK_ERR(dx1, dx0, nx, CONV_TOL(out), "linear_bwd_data");
        C->linear_bwd_filter(C, n, in, out, x, dy, dw1, db1);
        F->linear_bwd_filter(F, n, in, out, x, dy, dw0, db0);
        CHECK_ERR(dw1, dw0, nw, CONV_TOL(n), "linear_bwd_filter dw");
        CHECK_ERR(db1, db0, (size_t)out, CONV_TOL(n), "linear_bwd_filter db");

        uint8_t *lab = malloc((size_t)n);
        if (!lab) abort();
        for (int i = 0; i < n; i++) lab[i] = (uint8_t)rng_below(&R, (uint64_t)out);
        double l1, l0;
        int c1, c0;
        C->xent(C, n, out, y0, lab, dy, &l1, &c1);
        F->xent(F, n, out, y0, lab, y1, &l0, &c0);
        CHECK_CLOSE(l1, l0, 0, 1e-12, "xent loss");
        CHECK(c1 == c0, "xent correct %d vs %d", c1, c0);
        CHECK_ERR(dy, y1, ny, 1e-7, "xent dlogits");
        free(lab), free(x), free(w), free(b), free(dy), free(y1), free(y0), free(dx1), free(dx0);
        free(dw1), free(dw0), free(db1), free(db0);
    }
}

TEST(table_complete) {
    CHECK(C->name && strcmp(C->name, "cpu") == 0, "name %s", C->name ? C->name : "(null)");
    int missing = !C->conv_fwd + !C->conv_bwd_data + !C->conv_bwd_filter + !C->bn_fwd_train +
                  !C->bn_fwd_infer + !C->bn_bwd + !C->relu_fwd + !C->relu_bwd + !C->add + !C->gap_fwd +
                  !C->gap_bwd + !C->linear_fwd + !C->linear_bwd_data + !C->linear_bwd_filter + !C->xent;
    CHECK(missing == 0, "%d ops missing from ops_cpu", missing);
}

int main(void) {
    uint64_t seed = 20240601;
    const char *s = getenv("BN_TEST_SEED");
    if (s) seed = strtoull(s, NULL, 10);
    printf("# seed %llu\n", (unsigned long long)seed);
    rng_seed(&R, seed, 7);
    RUN(table_complete);
    RUN(conv_vs_ref);
    RUN(conv_cache_new_data);
    RUN(conv_deterministic);
    RUN(conv_nan_propagates);
    RUN(bn_vs_ref);
    RUN(bn_null_stats);
    RUN(bn_deterministic);
    RUN(elementwise_vs_ref);
    RUN(gap_vs_ref);
    RUN(linear_xent_vs_ref);
    return DONE();
}
