/* test_ops.c: the ops of ops.h.
 *
 *  1. The double-precision reference (the _f64 functions): every backward pass against
 *     central finite differences of a random linear functional of the forward output.
 *  2. Hand-computed tiny cases, the BatchNorm definition (running statistics, inference
 *     mode, normalised output) and NaN propagation.
 *  3. Every host backend (ref, and cpu when it is a different table) against the double
 *     reference on the same inputs: backend_* tests take the table in `B`, so a new
 *     host backend is checked by the same code (see main).
 * Seed: fixed (printed); set BN_TEST_SEED to try others. */
#include <stdint.h>

#include "../tests/check.h"
#include "ops.h"
#include "rng.h"

static rng R;
static ops *B;          /* the backend under test in the backend_* tests */

/* ---- helpers ------------------------------------------------------------------------ */

static double *dvec(size_t n) {
    double *p = calloc(n ? n : 1, sizeof *p);
    if (!p) abort();
    return p;
}
static float *fvec(size_t n) {
    float *p = calloc(n ? n : 1, sizeof *p);
    if (!p) abort();
    return p;
}
/* Normal(mean, sd) values rounded to float, so that a float and a double copy hold the
 * very same numbers and the comparisons measure only the arithmetic. */
static double *drand_vec(size_t n, double mean, double sd) {
    double *p = dvec(n);
    for (size_t i = 0; i < n; i++) p[i] = (double)(float)(mean + sd * rng_normal(&R));
    return p;
}
static float *to_f(const double *a, size_t n) {
    float *p = fvec(n);
    for (size_t i = 0; i < n; i++) p[i] = (float)a[i];
    return p;
}
/* Fills an output buffer with NaN before a call: an op that accumulates into its output
 * or leaves part of it unwritten then fails the comparison. */
static void poison(float *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = NAN;
}
static uint8_t *rand_labels(int n, int classes) {
    uint8_t *p = malloc((size_t)n);
    if (!p) abort();
    for (int i = 0; i < n; i++) p[i] = (uint8_t)rng_below(&R, (uint64_t)classes);
    return p;
}

/* max|a-b| / max|b|: error relative to the tensor's scale (a single entry near zero
 * after cancellation must not count as a large relative error). NaN anywhere: infinity. */
static double rel_err_dd(const double *a, const double *b, size_t n) {
    double worst = 0.0, scale = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) || isnan(b[i])) return INFINITY;
        if (fabs(a[i] - b[i]) > worst) worst = fabs(a[i] - b[i]);
        if (fabs(b[i]) > scale) scale = fabs(b[i]);
    }
    return worst == 0.0 ? 0.0 : worst / (scale > 0.0 ? scale : 1e-300);
}
static double rel_err_fd(const float *a, const double *b, size_t n) {
    double *t = dvec(n);
    for (size_t i = 0; i < n; i++) t[i] = a[i];
    double e = rel_err_dd(t, b, n);
    free(t);
    return e;
}
#define CHECK_REL(err, tol, what)                                                   \
    do {                                                                            \
        double e_ = (err);                                                          \
        CHECK(e_ <= (tol), "%s: relative error %.3g > %.3g", (what), e_, (double)(tol)); \
    } while (0)

static double dot(const double *a, const double *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* ---- 1. finite differences on the double reference ----------------------------------
 *
 * Each backward pass is checked through a scalar L = sum(r * y) with r random (y the
 * forward output; for xent L is the loss itself), whose gradient is the backward pass fed
 * with dy = r. Central differences (L(p+h) - L(p-h)) / 2h with h = 1e-5:
 *   - conv and linear are linear in every single input, so the difference quotient has no
 *     truncation error at all; BN and softmax are smooth, truncation is h^2/6 * L''' ~ 1e-10
 *     for the O(1) values used here;
 *   - rounding: L is a sum of at most a few hundred O(1) terms, computed to ~1e-14
 *     absolute, which the division by 2h turns into ~1e-9.
 * So a correct gradient agrees to ~1e-9 of its scale; we demand 1e-6 (three orders of
 * margin for unlucky inputs), while any real mistake (a wrong index, a missing term of the
 * BN mean/variance path) gives errors of order 1. */
#define FD_H 1e-5
#define FD_TOL 1e-6

typedef double (*loss_fn)(void *ctx);

/* num[i] = dL/dp[i] by central differences, perturbing p in place (restored after). */
static void fd_grad(double *p, size_t n, loss_fn f, void *ctx, double *num) {
    for (size_t i = 0; i < n; i++) {
        double keep = p[i];
        p[i] = keep + FD_H;
        double lp = f(ctx);
        p[i] = keep - FD_H;
        double lm = f(ctx);
        p[i] = keep;
        num[i] = (lp - lm) / (2.0 * FD_H);
    }
}

typedef struct {
    conv_desc d;
    double *x, *w, *b, *r, *y;
} conv_ctx;
static double conv_loss(void *p) {
    conv_ctx *c = p;
    conv_fwd_f64(&c->d, c->x, c->w, c->b, c->y);
    return dot(c->r, c->y, (size_t)c->d.n * c->d.cout * c->d.ho * c->d.wo);
}

static void conv_fd_case(int n, int cin, int h, int w, int cout, int k, int stride, int pad, int bias) {
    conv_ctx c;
    conv_desc_init(&c.d, n, cin, h, w, cout, k, stride, pad);
    size_t nx = (size_t)n * cin * h * w, nw = (size_t)cout * cin * k * k;
    size_t ny = (size_t)n * cout * c.d.ho * c.d.wo;
    c.x = drand_vec(nx, 0, 1);
    c.w = drand_vec(nw, 0, 1);
    c.b = bias ? drand_vec((size_t)cout, 0, 1) : NULL;
    c.r = drand_vec(ny, 0, 1);
    c.y = dvec(ny);
    double *dx = dvec(nx), *dw = dvec(nw), *db = dvec((size_t)cout), *num = dvec(nx > nw ? nx : nw);
    conv_bwd_data_f64(&c.d, c.r, c.w, dx);
    conv_bwd_filter_f64(&c.d, c.x, c.r, dw, bias ? db : NULL);
    char what[128];
    snprintf(what, sizeof what, "fd conv k%d s%d p%d %dx%d%s", k, stride, pad, h, w, bias ? " +bias" : "");
    fd_grad(c.x, nx, conv_loss, &c, num);
    char lbl[160];
    snprintf(lbl, sizeof lbl, "%s dx", what);
    CHECK_REL(rel_err_dd(dx, num, nx), FD_TOL, lbl);
    fd_grad(c.w, nw, conv_loss, &c, num);
    snprintf(lbl, sizeof lbl, "%s dw", what);
    CHECK_REL(rel_err_dd(dw, num, nw), FD_TOL, lbl);
    if (bias) {
        fd_grad(c.b, (size_t)cout, conv_loss, &c, num);
        snprintf(lbl, sizeof lbl, "%s db", what);
        CHECK_REL(rel_err_dd(db, num, (size_t)cout), FD_TOL, lbl);
    }
    free(c.x), free(c.w), free(c.b), free(c.r), free(c.y), free(dx), free(dw), free(db), free(num);
}

TEST(fd_conv) {
    for (int bias = 0; bias <= 1; bias++) {
        conv_fd_case(3, 2, 5, 5, 3, 3, 1, 1, bias);
        conv_fd_case(3, 2, 7, 7, 3, 3, 2, 1, bias);
        conv_fd_case(3, 2, 5, 5, 3, 3, 2, 1, bias);
        conv_fd_case(3, 2, 7, 7, 4, 1, 2, 0, bias);
        conv_fd_case(3, 2, 5, 5, 3, 1, 1, 0, bias);
        conv_fd_case(2, 3, 6, 5, 2, 3, 1, 0, bias);     /* no padding, non-square */
    }
}

typedef struct {
    bn_desc d;
    double *x, *g, *b, *r, *y, *mean, *invstd;
} bn_ctx;
static double bn_loss(void *p) {
    bn_ctx *c = p;
    bn_fwd_train_f64(&c->d, c->x, c->g, c->b, c->y, c->mean, c->invstd, NULL, NULL);
    return dot(c->r, c->y, (size_t)c->d.n * c->d.c * c->d.hw);
}

static void bn_fd_case(int n, int ch, int hw, float eps) {
    bn_ctx c = {.d = {.n = n, .c = ch, .hw = hw, .eps = eps, .momentum = 0.1f}};
    size_t nx = (size_t)n * ch * hw;
    c.x = drand_vec(nx, 0.5, 2);
    c.g = drand_vec((size_t)ch, 1, 0.5);
    c.b = drand_vec((size_t)ch, 0, 1);
    c.r = drand_vec(nx, 0, 1);
    c.y = dvec(nx), c.mean = dvec((size_t)ch), c.invstd = dvec((size_t)ch);
    double *dx = dvec(nx), *dg = dvec((size_t)ch), *db = dvec((size_t)ch), *num = dvec(nx);
    bn_loss(&c);
    bn_bwd_f64(&c.d, c.x, c.r, c.g, c.mean, c.invstd, dx, dg, db);
    char what[128];
    snprintf(what, sizeof what, "fd bn n%d c%d hw%d eps %g", n, ch, hw, eps);
    char lbl[160];
    fd_grad(c.x, nx, bn_loss, &c, num);
    snprintf(lbl, sizeof lbl, "%s dx", what);
    CHECK_REL(rel_err_dd(dx, num, nx), FD_TOL, lbl);
    fd_grad(c.g, (size_t)ch, bn_loss, &c, num);
    snprintf(lbl, sizeof lbl, "%s dgamma", what);
    CHECK_REL(rel_err_dd(dg, num, (size_t)ch), FD_TOL, lbl);
    fd_grad(c.b, (size_t)ch, bn_loss, &c, num);
    snprintf(lbl, sizeof lbl, "%s dbeta", what);
    CHECK_REL(rel_err_dd(db, num, (size_t)ch), FD_TOL, lbl);
    free(c.x), free(c.g), free(c.b), free(c.r), free(c.y), free(c.mean), free(c.invstd);
    free(dx), free(dg), free(db), free(num);
}

TEST(fd_bn) {
    bn_fd_case(4, 3, 5, 1e-5f);
    bn_fd_case(3, 2, 7, 1e-3f);
    bn_fd_case(6, 4, 1, 1e-5f);      /* the classifier BN of the bottleneck model: hw = 1 */
    bn_fd_case(2, 2, 3, 0.5f);       /* a large eps: its place inside the sqrt matters */
}

typedef struct {
    int n, in, out;
    double *x, *w, *b, *r, *y;
} lin_ctx;
static double lin_loss(void *p) {
    lin_ctx *c = p;
    linear_fwd_f64(c->n, c->in, c->out, c->x, c->w, c->b, c->y);
    return dot(c->r, c->y, (size_t)c->n * c->out);
}

TEST(fd_linear) {
    for (int bias = 0; bias <= 1; bias++) {
        lin_ctx c = {.n = 3, .in = 5, .out = 4};
        size_t nx = 15, nw = 20, ny = 12;
        c.x = drand_vec(nx, 0, 1), c.w = drand_vec(nw, 0, 1);
        c.b = bias ? drand_vec(4, 0, 1) : NULL;
        c.r = drand_vec(ny, 0, 1), c.y = dvec(ny);
        double *dx = dvec(nx), *dw = dvec(nw), *db = dvec(4), *num = dvec(nw);
        linear_bwd_data_f64(c.n, c.in, c.out, c.r, c.w, dx);
        linear_bwd_filter_f64(c.n, c.in, c.out, c.x, c.r, dw, bias ? db : NULL);
        fd_grad(c.x, nx, lin_loss, &c, num);
        CHECK_REL(rel_err_dd(dx, num, nx), FD_TOL, bias ? "fd linear+bias dx" : "fd linear dx");
        fd_grad(c.w, nw, lin_loss, &c, num);
        CHECK_REL(rel_err_dd(dw, num, nw), FD_TOL, bias ? "fd linear+bias dw" : "fd linear dw");
        if (bias) {
            fd_grad(c.b, 4, lin_loss, &c, num);
            CHECK_REL(rel_err_dd(db, num, 4), FD_TOL, "fd linear db");
        }
        free(c.x), free(c.w), free(c.b), free(c.r), free(c.y), free(dx), free(dw), free(db), free(num);
    }
}

typedef struct {
    int n, classes;
    double *logits;
    uint8_t *labels;
} xent_ctx;
static double xent_loss(void *p) {
    xent_ctx *c = p;
    double loss;
    xent_f64(c->n, c->classes, c->logits, c->labels, NULL, &loss);
    return loss;
}

TEST(fd_xent) {
    xent_ctx c = {.n = 4, .classes = 5};
    size_t nl = 20;
    c.logits = drand_vec(nl, 0, 2);
    c.labels = rand_labels(c.n, c.classes);
    double *dl = dvec(nl), *num = dvec(nl), loss;
    xent_f64(c.n, c.classes, c.logits, c.labels, dl, &loss);
    fd_grad(c.logits, nl, xent_loss, &c, num);
    CHECK_REL(rel_err_dd(dl, num, nl), FD_TOL, "fd xent dlogits");
    free(c.logits), free(c.labels), free(dl), free(num);
}

/* ---- 2. definitions, hand-computed cases, NaN -------------------------------------- */

TEST(hand_conv) {
    ops *o = B;
    conv_desc d;
    /* a 1x1 image, two input channels, 3x3 kernel, pad 1: only the centre taps see it */
    float x1[2] = {2, 3}, w1[18] = {0}, b1[1] = {0.5f}, y1[1];
    w1[4] = 5, w1[9 + 4] = 7, w1[0] = 100, w1[9 + 8] = 100;   /* off-centre taps hit padding */
    conv_desc_init(&d, 1, 2, 1, 1, 1, 3, 1, 1);
    CHECK(d.ho == 1 && d.wo == 1, "1x1 image: output %dx%d", d.ho, d.wo);
    o->conv_fwd(o, &d, x1, w1, b1, y1);
    CHECK_CLOSE(y1[0], 2 * 5 + 3 * 7 + 0.5, 0, 1e-6, "1x1 image");
    float dy1[1] = {2}, dx1[2];
    o->conv_bwd_data(o, &d, dy1, w1, dx1);
    CHECK(dx1[0] == 10 && dx1[1] == 14, "1x1 image dx %g %g", dx1[0], dx1[1]);

    /* a 3x3 image 1..9 with an all-ones kernel: sums of 3x3 neighbourhoods */
    float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, ones[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1}, y[9];
    float want[9] = {12, 21, 16, 27, 45, 33, 24, 39, 28};
    conv_desc_init(&d, 1, 1, 3, 3, 1, 3, 1, 1);
    o->conv_fwd(o, &d, x, ones, NULL, y);
    for (int i = 0; i < 9; i++) CHECK(y[i] == want[i], "ones kernel y[%d] = %g, want %g", i, y[i], want[i]);
    /* stride 2: the corners of the above */
    conv_desc_init(&d, 1, 1, 3, 3, 1, 3, 2, 1);
    CHECK(d.ho == 2 && d.wo == 2, "stride 2 output %dx%d", d.ho, d.wo);
    o->conv_fwd(o, &d, x, ones, NULL, y);
    float want2[4] = {12, 16, 24, 28};
    for (int i = 0; i < 4; i++) CHECK(y[i] == want2[i], "stride 2 y[%d] = %g, want %g", i, y[i], want2[i]);
    /* a kernel with only its top-left tap: cross-correlation (not flipped) shifts the image
     * down-right: y[i][j] = x[i-1][j-1] */
    float tl[9] = {1, 0, 0, 0, 0, 0, 0, 0, 0}, want3[9] = {0, 0, 0, 0, 1, 2, 0, 4, 5};
    conv_desc_init(&d, 1, 1, 3, 3, 1, 3, 1, 1);
    o->conv_fwd(o, &d, x, tl, NULL, y);
    for (int i = 0; i < 9; i++) CHECK(y[i] == want3[i], "top-left kernel y[%d] = %g, want %g", i, y[i], want3[i]);

    /* output sizes */
    conv_desc_init(&d, 1, 1, 32, 32, 1, 3, 2, 1);
    CHECK(d.ho == 16 && d.wo == 16, "32 k3 s2 p1 -> %dx%d", d.ho, d.wo);
    conv_desc_init(&d, 1, 1, 7, 8, 1, 1, 2, 0);
    CHECK(d.ho == 4 && d.wo == 4, "7x8 k1 s2 -> %dx%d", d.ho, d.wo);
    conv_desc_init(&d, 1, 1, 1, 1, 1, 5, 2, 1);
    CHECK(d.ho == 0 && d.wo == 0, "kernel larger than padded input -> %dx%d", d.ho, d.wo);
}

TEST(hand_xent) {
    ops *o = B;
    enum { N = 3, C = 10 };
    float logits[N * C], dl[N * C];
    uint8_t labels[N] = {0, 7, 0};
    for (int i = 0; i < N * C; i++) logits[i] = 0.25f;
    double loss = 0;
    int correct = -1;
    o->xent(o, N, C, logits, labels, dl, &loss, &correct);
    CHECK_CLOSE(loss, log(10.0), 0, 1e-6, "uniform logits: loss = ln(classes)");
    CHECK(correct == 2, "ties go to the first maximum (class 0): correct %d, want 2", correct);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < C; j++)
            CHECK_CLOSE(dl[i * C + j], (0.1 - (j == labels[i])) / N, 1e-7, 1e-6, "uniform dlogits");

    /* huge logits: stable (no overflow), loss ~ 0 for the right class, ~2000 otherwise */
    float big[2 * 3] = {1000, 0, -1000, 1000, 0, -1000};
    uint8_t lab2[2] = {0, 2};
    o->xent(o, 2, 3, big, lab2, dl, &loss, &correct);
    CHECK(isfinite(loss), "huge logits give loss %g", loss);
    CHECK_CLOSE(loss, (0 + 2000) / 2.0, 1e-6, 1e-9, "huge logits loss");
    CHECK(correct == 1, "huge logits correct %d", correct);
    CHECK_CLOSE(dl[0], 0, 1e-12, 0, "huge logits dl[0]");
    CHECK_CLOSE(dl[5], -0.5, 1e-12, 0, "huge logits dl[5]");
    CHECK_CLOSE(dl[3], 0.5, 1e-12, 0, "huge logits dl[3]");

    /* two classes, by hand: logits (0, ln 3) -> p = (1/4, 3/4) */
    float two[2] = {0, (float)log(3.0)};
    uint8_t lab1[1] = {0};
    o->xent(o, 1, 2, two, lab1, dl, &loss, &correct);
    CHECK_CLOSE(loss, log(4.0), 0, 1e-6, "two-class loss");
    CHECK_CLOSE(dl[0], 0.25 - 1, 0, 1e-6, "two-class dl[0]");
    CHECK_CLOSE(dl[1], 0.75, 0, 1e-6, "two-class dl[1]");
    CHECK(correct == 0, "two-class correct %d", correct);
}

/* Running statistics, inference mode and the normalised output, against the formulas of
 * ops.h written out here (not the reference loops). */
static void bn_running_case(ops *o, int n, int ch, int hw, float momentum) {
    bn_desc d = {.n = n, .c = ch, .hw = hw, .eps = 1e-5f, .momentum = momentum};
    size_t nx = (size_t)n * ch * hw, m = (size_t)n * hw;
    double *xd = drand_vec(nx, 1.5, 2.0);
    float *x = to_f(xd, nx), *y = fvec(nx), *g = fvec(ch), *b = fvec(ch);
    float *sm = fvec(ch), *si = fvec(ch), *rm = fvec(ch), *rv = fvec(ch);
    for (int c = 0; c < ch; c++) g[c] = 1, b[c] = 0, rm[c] = 0.3f * c - 0.2f, rv[c] = 1.0f + 0.5f * c;
    float *rm0 = fvec(ch), *rv0 = fvec(ch);
    memcpy(rm0, rm, ch * sizeof *rm);
    memcpy(rv0, rv, ch * sizeof *rv);
    o->bn_fwd_train(o, &d, x, g, b, y, sm, si, rm, rv);
    char what[96];
    snprintf(what, sizeof what, "bn n%d c%d hw%d momentum %g", n, ch, hw, momentum);
    for (int c = 0; c < ch; c++) {
        double s = 0, q = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < hw; j++) s += xd[((size_t)i * ch + c) * hw + j];
        double mean = s / m;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < hw; j++) {
                double t = xd[((size_t)i * ch + c) * hw + j] - mean;
                q += t * t;
            }
        double var = q / m, unb = m > 1 ? q / (m - 1) : var;
        double want_rm = (1 - (double)momentum) * rm0[c] + (double)momentum * mean;
        double want_rv = (1 - (double)momentum) * rv0[c] + (double)momentum * unb;
        CHECK(fabs(rm[c] - want_rm) <= 1e-6 * (1 + fabs(want_rm)), "%s: running_mean[%d] %.9g, want %.9g", what, c,
              rm[c], want_rm);
        CHECK(fabs(rv[c] - want_rv) <= 1e-6 * (1 + fabs(want_rv)), "%s: running_var[%d] %.9g, want %.9g (biased "
              "would give %.9g)", what, c, rv[c], want_rv, (1 - (double)momentum) * rv0[c] + (double)momentum * var);
        CHECK_CLOSE(sm[c], mean, 1e-6, 1e-6, "save_mean");
        CHECK_CLOSE(si[c], 1 / sqrt(var + 1e-5), 1e-6, 1e-6, "save_invstd");
    }
    /* NULL running statistics: skipped, y the same */
    float *y2 = fvec(nx);
    o->bn_fwd_train(o, &d, x, g, b, y2, sm, si, NULL, NULL);
    CHECK(memcmp(y, y2, nx * sizeof *y) == 0, "%s: y changes when the running stats are NULL", what);
    /* inference mode uses the running statistics */
    for (int c = 0; c < ch; c++) g[c] = 0.5f + c, b[c] = 0.25f * c;
    o->bn_fwd_infer(o, &d, x, g, b, rm, rv, y);
    double worst = 0;
    for (int i = 0; i < n; i++)
        for (int c = 0; c < ch; c++)
            for (int j = 0; j < hw; j++) {
                size_t k = ((size_t)i * ch + c) * hw + j;
                double want = g[c] * (xd[k] - rm[c]) / sqrt((double)rv[c] + 1e-5) + b[c];
                double e = fabs(y[k] - want) / (1 + fabs(want));
                if (!(e <= worst)) worst = e;
            }
    CHECK(worst <= 1e-6, "%s: inference mode off by %.3g", what, worst);
    free(xd), free(x), free(y), free(y2), free(g), free(b), free(sm), free(si);
    free(rm), free(rv), free(rm0), free(rv0);
}

TEST(bn_running) {
    bn_running_case(B, 4, 3, 5, 0.1f);
    bn_running_case(B, 4, 3, 5, 0.01f);
    bn_running_case(B, 2, 3, 1, 0.1f);      /* m = 2: unbiased var is twice the biased one */
    bn_running_case(B, 1, 2, 1, 0.1f);      /* m = 1: var (0) itself */
}

/* gamma 1, beta 0: each channel of y has mean 0 and biased variance var/(var+eps); a
 * large eps shows eps sits inside the square root. */
TEST(bn_normalised) {
    ops *o = B;
    float epss[2] = {1e-5f, 1.0f};
    for (int e = 0; e < 2; e++) {
        bn_desc d = {.n = 8, .c = 3, .hw = 16, .eps = epss[e], .momentum = 0.1f};
        size_t nx = 8 * 3 * 16;
        double *xd = drand_vec(nx, -3, 2);
        float *x = to_f(xd, nx), *y = fvec(nx), g[3] = {1, 1, 1}, b[3] = {0, 0, 0}, sm[3], si[3];
        o->bn_fwd_train(o, &d, x, g, b, y, sm, si, NULL, NULL);
        for (int c = 0; c < 3; c++) {
            double sx = 0, qx = 0, sy = 0, qy = 0;
            for (int i = 0; i < 8; i++)
                for (int j = 0; j < 16; j++) sx += xd[(i * 3 + c) * 16 + j], sy += y[(i * 3 + c) * 16 + j];
            sx /= 128, sy /= 128;
            for (int i = 0; i < 8; i++)
                for (int j = 0; j < 16; j++) {
                    size_t k = (i * 3 + c) * 16 + j;
                    qx += (xd[k] - sx) * (xd[k] - sx), qy += (y[k] - sy) * (y[k] - sy);
                }
            qx /= 128, qy /= 128;
            CHECK_CLOSE(sy, 0, 1e-6, 0, "normalised mean");
            CHECK_CLOSE(qy, qx / (qx + epss[e]), 0, 1e-5, "normalised biased variance");
        }
        free(xd), free(x), free(y);
    }
}

TEST(nan_propagates) {
    ops *o = B;
    conv_desc d;
    conv_desc_init(&d, 1, 2, 5, 5, 2, 3, 1, 1);
    double *xd = drand_vec(50, 0, 1), *wd = drand_vec(36, 0, 1);
    float *x = to_f(xd, 50), *w = to_f(wd, 36), y[50];
    x[25 + 2 * 5 + 2] = NAN;                   /* channel 1, centre pixel */
    o->conv_fwd(o, &d, x, w, NULL, y);
    for (int co = 0; co < 2; co++)
        for (int i = 0; i < 5; i++)
            for (int j = 0; j < 5; j++) {
                int near = abs(i - 2) <= 1 && abs(j - 2) <= 1;
                float v = y[co * 25 + i * 5 + j];
                CHECK(near ? isnan(v) : isfinite(v), "NaN input: y[%d,%d,%d] = %g", co, i, j, v);
            }
    x[25 + 2 * 5 + 2] = 0.5f;
    w[18 + 4] = NAN;                           /* output channel 1's weights */
    o->conv_fwd(o, &d, x, w, NULL, y);
    for (int i = 0; i < 25; i++)
        CHECK(isfinite(y[i]) && isnan(y[25 + i]), "NaN weight: y[%d] %g %g", i, y[i], y[25 + i]);

    float lg[4] = {1, NAN, 0, 2};
    uint8_t lab[2] = {0, 1};
    double loss;
    int correct;
    o->xent(o, 2, 2, lg, lab, NULL, &loss, &correct);
    CHECK(isnan(loss), "NaN logit: loss %g", loss);
    free(xd), free(wd), free(x), free(w);
}

/* ref's own choice for bad labels (ops.h leaves it open): a NaN loss, never a number. */
TEST(ref_bad_label) {
    float lg[4] = {1, 0, 0, 2}, dl[4];
    uint8_t lab[2] = {0, 7};
    double loss = 0;
    int correct = -1;
    ops_ref.xent(&ops_ref, 2, 2, lg, lab, dl, &loss, &correct);
    CHECK(isnan(loss), "label 7 of 2 classes: loss %g", loss);
    CHECK(correct == 1, "correct %d", correct);
}

TEST(relu_mask) {
    ops *o = B;
    enum { N = 1000 };
    float x[N], y[N], dy[N], dx[N], t[N];
    for (int i = 0; i < N; i++) {
        double v;
        do v = rng_normal(&R);
        while (fabs(v) <= 1e-3);                /* keep away from the kink */
        x[i] = (float)v, dy[i] = (float)rng_normal(&R);
    }
    poison(y, N), poison(dx, N);
    o->relu_fwd(o, N, x, y);
    o->relu_bwd(o, N, y, dy, dx);
    int bad_y = 0, bad_dx = 0;
    for (int i = 0; i < N; i++) {
        bad_y += y[i] != (x[i] > 0 ? x[i] : 0);
        bad_dx += dx[i] != (x[i] > 0 ? dy[i] : 0);
    }
    CHECK(bad_y == 0, "%d relu outputs wrong", bad_y);
    CHECK(bad_dx == 0, "%d relu gradients differ from the mask", bad_dx);
    /* in place */
    memcpy(t, x, sizeof t);
    o->relu_fwd(o, N, t, t);
    CHECK(memcmp(t, y, sizeof t) == 0, "in-place relu_fwd differs");
    memcpy(t, dy, sizeof t);
    o->relu_bwd(o, N, y, t, t);
    CHECK(memcmp(t, dx, sizeof t) == 0, "in-place relu_bwd differs");
}

/* ---- 3. a host backend against the double reference --------------------------------
 *
 * Inputs are float values, so the double reference computes the exact answer to ~1e-16.
 * A float backend rounds each product and partial sum to 24 bits: for a sum of K terms
 * the error is at most ~K * 6e-8 of sum|terms| and typically sqrt(K) * 6e-8; the largest
 * K here is the stem's filter gradient, n*ho*wo = 2048 terms (typical ~3e-6). BN's
 * backward subtracts nearly equal sums, which can cost one more digit. We allow 1e-5 of
 * each tensor's largest value, 1e-4 for BN's dx and dgamma. Measured: ref (double
 * accumulators) ~1e-7; the same loops with naive sequential float accumulators at most
 * 1.4e-6 (conv filter gradient) and 8e-7 (BN). A mistake in indexing or a missing term
 * is off by order 1. */
#define BK_TOL 1e-5
#define BK_TOL_BN_BWD 1e-4

static void backend_conv_case(ops *o, int n, int cin, int h, int w, int cout, int k, int stride, int pad, int bias) {
    conv_desc d;
    conv_desc_init(&d, n, cin, h, w, cout, k, stride, pad);
    size_t nx = (size_t)n * cin * h * w, nw = (size_t)cout * cin * k * k, ny = (size_t)n * cout * d.ho * d.wo;
    double *xd = drand_vec(nx, 0, 1), *wd = drand_vec(nw, 0, 0.3), *bd = drand_vec((size_t)cout, 0, 1);
    double *dyd = drand_vec(ny, 0, 1);
    double *y64 = dvec(ny), *dx64 = dvec(nx), *dw64 = dvec(nw), *db64 = dvec((size_t)cout);
    float *x = to_f(xd, nx), *wf = to_f(wd, nw), *b = to_f(bd, (size_t)cout), *dy = to_f(dyd, ny);
    float *y = fvec(ny), *dx = fvec(nx), *dw = fvec(nw), *db = fvec((size_t)cout);
    char what[128], lbl[160];
    snprintf(what, sizeof what, "%s conv n%d %dx%dx%d -> %d k%d s%d p%d%s", o->name, n, cin, h, w, cout, k, stride,
             pad, bias ? " +bias" : "");

    conv_fwd_f64(&d, xd, wd, bias ? bd : NULL, y64);
    poison(y, ny);
    o->conv_fwd(o, &d, x, wf, bias ? b : NULL, y);
    snprintf(lbl, sizeof lbl, "%s fwd", what);
    CHECK_REL(rel_err_fd(y, y64, ny), BK_TOL, lbl);

    conv_bwd_data_f64(&d, dyd, wd, dx64);
    poison(dx, nx);
    o->conv_bwd_data(o, &d, dy, wf, dx);
    snprintf(lbl, sizeof lbl, "%s bwd_data", what);
    CHECK_REL(rel_err_fd(dx, dx64, nx), BK_TOL, lbl);

    conv_bwd_filter_f64(&d, xd, dyd, dw64, db64);
    poison(dw, nw), poison(db, (size_t)cout);
    o->conv_bwd_filter(o, &d, x, dy, dw, bias ? db : NULL);
    snprintf(lbl, sizeof lbl, "%s bwd_filter dw", what);
    CHECK_REL(rel_err_fd(dw, dw64, nw), BK_TOL, lbl);
    if (bias) {
        snprintf(lbl, sizeof lbl, "%s bwd_filter db", what);
        CHECK_REL(rel_err_fd(db, db64, (size_t)cout), BK_TOL, lbl);
    }
    free(xd), free(wd), free(bd), free(dyd), free(y64), free(dx64), free(dw64), free(db64);
    free(x), free(wf), free(b), free(dy), free(y), free(dx), free(dw), free(db);
}

TEST(backend_conv) {
    for (int bias = 0; bias <= 1; bias++) {
        backend_conv_case(B, 2, 3, 32, 32, 16, 3, 1, 1, bias);     /* the stem */
        backend_conv_case(B, 2, 16, 8, 8, 16, 3, 1, 1, bias);
        backend_conv_case(B, 3, 16, 9, 9, 32, 3, 2, 1, bias);      /* odd size, stride 2 */
        backend_conv_case(B, 2, 16, 8, 8, 32, 1, 2, 0, bias);      /* projection shortcut */
        backend_conv_case(B, 2, 32, 7, 7, 8, 1, 1, 0, bias);       /* bottleneck 1x1 */
        backend_conv_case(B, 2, 64, 8, 8, 64, 3, 1, 1, bias);      /* K = 576 */
        backend_conv_case(B, 1, 1, 1, 1, 1, 3, 1, 1, bias);        /* tiny */
    }
}

static void backend_bn_case(ops *o, int n, int ch, int hw, float eps, float momentum) {
    bn_desc d = {.n = n, .c = ch, .hw = hw, .eps = eps, .momentum = momentum};
    size_t nx = (size_t)n * ch * hw, nc = (size_t)ch;
    double *xd = drand_vec(nx, 3, 2), *gd = drand_vec(nc, 1, 0.5), *bd = drand_vec(nc, 0, 1);
    double *dyd = drand_vec(nx, 0, 1), *rmd = drand_vec(nc, 0, 1), *rvd = dvec(nc);
    for (size_t c = 0; c < nc; c++) rvd[c] = (double)(float)(0.5 + rng_uniform(&R));
    float *x = to_f(xd, nx), *g = to_f(gd, nc), *b = to_f(bd, nc), *dy = to_f(dyd, nx);
    float *rm = to_f(rmd, nc), *rv = to_f(rvd, nc);
    float *y = fvec(nx), *sm = fvec(nc), *si = fvec(nc), *dx = fvec(nx), *dg = fvec(nc), *db = fvec(nc);
    double *y64 = dvec(nx), *sm64 = dvec(nc), *si64 = dvec(nc), *dx64 = dvec(nx), *dg64 = dvec(nc), *db64 = dvec(nc);
    char what[128], lbl[160];
    snprintf(what, sizeof what, "%s bn n%d c%d hw%d eps %g momentum %g", o->name, n, ch, hw, eps, momentum);

    bn_fwd_train_f64(&d, xd, gd, bd, y64, sm64, si64, rmd, rvd);
    poison(y, nx), poison(sm, nc), poison(si, nc);
    o->bn_fwd_train(o, &d, x, g, b, y, sm, si, rm, rv);
    snprintf(lbl, sizeof lbl, "%s fwd y", what);
    CHECK_REL(rel_err_fd(y, y64, nx), BK_TOL, lbl);
    snprintf(lbl, sizeof lbl, "%s save_mean", what);
    CHECK_REL(rel_err_fd(sm, sm64, nc), BK_TOL, lbl);
    snprintf(lbl, sizeof lbl, "%s save_invstd", what);
    CHECK_REL(rel_err_fd(si, si64, nc), BK_TOL, lbl);
    snprintf(lbl, sizeof lbl, "%s running_mean", what);
    CHECK_REL(rel_err_fd(rm, rmd, nc), BK_TOL, lbl);
    snprintf(lbl, sizeof lbl, "%s running_var", what);
    CHECK_REL(rel_err_fd(rv, rvd, nc), BK_TOL, lbl);

    bn_bwd_f64(&d, xd, dyd, gd, sm64, si64, dx64, dg64, db64);
    poison(dx, nx), poison(dg, nc), poison(db, nc);
    o->bn_bwd(o, &d, x, dy, g, sm, si, dx, dg, db);
    snprintf(lbl, sizeof lbl, "%s bwd dx", what);
    CHECK_REL(rel_err_fd(dx, dx64, nx), BK_TOL_BN_BWD, lbl);
    snprintf(lbl, sizeof lbl, "%s bwd dgamma", what);
    CHECK_REL(rel_err_fd(dg, dg64, nc), BK_TOL_BN_BWD, lbl);
    snprintf(lbl, sizeof lbl, "%s bwd dbeta", what);
    CHECK_REL(rel_err_fd(db, db64, nc), BK_TOL, lbl);
    poison(dg, nc), poison(db, nc);
    o->bn_bwd(o, &d, x, dy, g, sm, si, NULL, dg, db);         /* dx not needed */
    snprintf(lbl, sizeof lbl, "%s bwd (dx NULL) dgamma", what);
    CHECK_REL(rel_err_fd(dg, dg64, nc), BK_TOL_BN_BWD, lbl);

    /* inference mode, against the formula in double */
    poison(y, nx);
    o->bn_fwd_infer(o, &d, x, g, b, rm, rv, y);
    for (int i = 0; i < n; i++)
        for (int c = 0; c < ch; c++)
            for (int j = 0; j < hw; j++) {
                size_t k = ((size_t)i * ch + c) * hw + j;
                y64[k] = gd[c] * (xd[k] - rm[c]) / sqrt((double)rv[c] + (double)eps) + bd[c];
            }
    snprintf(lbl, sizeof lbl, "%s infer", what);
    CHECK_REL(rel_err_fd(y, y64, nx), BK_TOL, lbl);
    free(xd), free(gd), free(bd), free(dyd), free(rmd), free(rvd), free(x), free(g), free(b), free(dy), free(rm);
    free(rv), free(y), free(sm), free(si), free(dx), free(dg), free(db), free(y64), free(sm64), free(si64);
    free(dx64), free(dg64), free(db64);
}

TEST(backend_bn) {
    backend_bn_case(B, 8, 16, 64, 1e-5f, 0.1f);
    backend_bn_case(B, 3, 5, 49, 1e-3f, 0.01f);
    backend_bn_case(B, 16, 10, 1, 1e-3f, 0.01f);    /* classifier BN, hw = 1 */
    backend_bn_case(B, 2, 4, 3, 0.5f, 0.1f);
}

TEST(backend_elementwise) {
    ops *o = B;
    enum { N = 2, C = 6, HW = 25, T = N * C * HW };
    double *ad = drand_vec(T, 0, 1), *bd = drand_vec(T, 0, 1), *gd = drand_vec(N * C, 0, 1);
    float *a = to_f(ad, T), *b = to_f(bd, T), *g = to_f(gd, N * C), *y = fvec(T), *p = fvec(N * C);
    poison(y, T);
    o->add(o, T, a, b, y);
    int bad = 0;
    for (int i = 0; i < T; i++) bad += y[i] != a[i] + b[i];
    CHECK(bad == 0, "%s add: %d wrong", o->name, bad);
    memcpy(y, a, T * sizeof *y);
    o->add(o, T, y, b, y);                          /* y == a */
    bad = 0;
    for (int i = 0; i < T; i++) bad += y[i] != a[i] + b[i];
    CHECK(bad == 0, "%s add in place: %d wrong", o->name, bad);

    double want[N * C], wantd[T];
    for (int j = 0; j < N * C; j++) {
        double s = 0;
        for (int i = 0; i < HW; i++) s += ad[j * HW + i];
        want[j] = s / HW;
        for (int i = 0; i < HW; i++) wantd[j * HW + i] = gd[j] / HW;
    }
    poison(p, N * C);
    o->gap_fwd(o, N, C, HW, a, p);
    CHECK_REL(rel_err_fd(p, want, N * C), BK_TOL, "gap_fwd");
    poison(y, T);
    o->gap_bwd(o, N, C, HW, g, y);
    CHECK_REL(rel_err_fd(y, wantd, T), BK_TOL, "gap_bwd");
    free(ad), free(bd), free(gd), free(a), free(b), free(g), free(y), free(p);
}

TEST(backend_linear) {
    ops *o = B;
    for (int bias = 0; bias <= 1; bias++) {
        int n = 5, in = 64, out = 10;
        size_t nx = (size_t)n * in, nw = (size_t)out * in, ny = (size_t)n * out;
        double *xd = drand_vec(nx, 0, 1), *wd = drand_vec(nw, 0, 0.2), *bd = drand_vec(out, 0, 1);
        double *dyd = drand_vec(ny, 0, 1), *y64 = dvec(ny), *dx64 = dvec(nx), *dw64 = dvec(nw), *db64 = dvec(out);
        float *x = to_f(xd, nx), *w = to_f(wd, nw), *b = to_f(bd, out), *dy = to_f(dyd, ny);
        float *y = fvec(ny), *dx = fvec(nx), *dw = fvec(nw), *db = fvec(out);
        linear_fwd_f64(n, in, out, xd, wd, bias ? bd : NULL, y64);
        linear_bwd_data_f64(n, in, out, dyd, wd, dx64);
        linear_bwd_filter_f64(n, in, out, xd, dyd, dw64, db64);
        poison(y, ny), poison(dx, nx), poison(dw, nw), poison(db, out);
        o->linear_fwd(o, n, in, out, x, w, bias ? b : NULL, y);
        o->linear_bwd_data(o, n, in, out, dy, w, dx);
        o->linear_bwd_filter(o, n, in, out, x, dy, dw, bias ? db : NULL);
        CHECK_REL(rel_err_fd(y, y64, ny), BK_TOL, bias ? "linear+bias fwd" : "linear fwd");
        CHECK_REL(rel_err_fd(dx, dx64, nx), BK_TOL, "linear bwd_data");
        CHECK_REL(rel_err_fd(dw, dw64, nw), BK_TOL, "linear bwd_filter dw");
        if (bias) CHECK_REL(rel_err_fd(db, db64, out), BK_TOL, "linear bwd_filter db");
        free(xd), free(wd), free(bd), free(dyd), free(y64), free(dx64), free(dw64), free(db64);
        free(x), free(w), free(b), free(dy), free(y), free(dx), free(dw), free(db);
    }
}

TEST(backend_xent) {
    ops *o = B;
    int n = 64, classes = 10;
    size_t nl = (size_t)n * classes;
    double *ld = drand_vec(nl, 0, 5), *dl64 = dvec(nl), loss64, loss = 0, loss2 = 0;
    uint8_t *lab = rand_labels(n, classes);
    float *l = to_f(ld, nl), *dl = fvec(nl);
    xent_f64(n, classes, ld, lab, dl64, &loss64);
    int want_correct = 0;
    for (int i = 0; i < n; i++) {
        int arg = 0;
        for (int j = 1; j < classes; j++)
            if (ld[i * classes + j] > ld[i * classes + arg]) arg = j;
        want_correct += arg == lab[i];
    }
    int correct = -1, correct2 = -1;
    poison(dl, nl);
    o->xent(o, n, classes, l, lab, dl, &loss, &correct);
    CHECK_CLOSE(loss, loss64, 0, BK_TOL, "xent loss");
    CHECK_REL(rel_err_fd(dl, dl64, nl), BK_TOL, "xent dlogits");
    CHECK(correct == want_correct, "xent correct %d, want %d", correct, want_correct);
    o->xent(o, n, classes, l, lab, NULL, &loss2, &correct2);
    CHECK(loss2 == loss && correct2 == correct, "xent without dlogits: %g %d vs %g %d", loss2, correct2, loss,
          correct);
    free(ld), free(dl64), free(lab), free(l), free(dl);
}

TEST(ops_get_names) {
    const char *why = NULL;
    ops *o = ops_get("ref", &why);
    CHECK(o == &ops_ref && o && strcmp(o->name, "ref") == 0, "ops_get(ref)");
    why = NULL;
    o = ops_get("cpu", &why);
    CHECK(o != NULL, "ops_get(cpu): %s", why ? why : "NULL");
    why = NULL;
    o = ops_get("cuda", &why);
#ifndef HAVE_CUDA
    CHECK(o == NULL && why && strstr(why, "CUDA"), "ops_get(cuda) without CUDA: %p %s", (void *)o,
          why ? why : "(no why)");
#endif
    CHECK(o != NULL || why != NULL, "ops_get(cuda) NULL without a reason");
    CHECK(ops_get("auto", NULL) != NULL, "ops_get(auto)");
    why = NULL;
    CHECK(ops_get("gpu", &why) == NULL && why, "ops_get(gpu) should fail with a reason");
    CHECK(ops_get(NULL, NULL) == NULL, "ops_get(NULL)");
}

/* The host backends every backend_* test runs on: ref, and cpu when it is its own table. */
static void run_backend(ops *o) {
    B = o;
    printf("# backend %s\n", o->name);
    RUN(hand_conv);
    RUN(hand_xent);
    RUN(bn_running);
    RUN(bn_normalised);
    RUN(nan_propagates);
    RUN(relu_mask);
    RUN(backend_conv);
    RUN(backend_bn);
    RUN(backend_elementwise);
    RUN(backend_linear);
    RUN(backend_xent);
}

static ops *cpu_ops;
TEST(cpu_backend) {
    if (cpu_ops == &ops_ref) SKIP("no fast CPU backend linked: \"cpu\" is the reference ops");
    CHECK(cpu_ops && cpu_ops->name && strcmp(cpu_ops->name, "ref") != 0, "cpu backend named %s",
          cpu_ops ? cpu_ops->name : "(none)");
}

int main(void) {
    uint64_t seed = 20240611;
    const char *s = getenv("BN_TEST_SEED");
    if (s && *s) seed = strtoull(s, NULL, 0);
    printf("# seed %llu (BN_TEST_SEED)\n", (unsigned long long)seed);
    rng_seed(&R, seed, 1);

    RUN(fd_conv);
    RUN(fd_bn);
    RUN(fd_linear);
    RUN(fd_xent);
    RUN(ref_bad_label);
    RUN(ops_get_names);

    run_backend(&ops_ref);
    cpu_ops = ops_get("cpu", NULL);
    RUN(cpu_backend);
    if (cpu_ops && cpu_ops != &ops_ref) run_backend(cpu_ops);
    return DONE();
}
