/* ops_ref.c: the plain reference backend "ref" (float, host memory): the loops of
 * ops_ref_impl.h instantiated for float, plus the elementwise ops. Slow and obviously
 * correct; every other backend is tested against it and its double twin (ops_ref_f64.c). */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "ops.h"

#define REAL float
#define FN(name) ref32_##name
#include "ops_ref_impl.h"

static void conv_fwd(ops *o, const conv_desc *d, const float *x, const float *w, const float *b, float *y) {
    (void)o;
    ref32_conv_fwd(d, x, w, b, y);
}
static void conv_bwd_data(ops *o, const conv_desc *d, const float *dy, const float *w, float *dx) {
    (void)o;
    ref32_conv_bwd_data(d, dy, w, dx);
}
static void conv_bwd_filter(ops *o, const conv_desc *d, const float *x, const float *dy, float *dw, float *db) {
    (void)o;
    ref32_conv_bwd_filter(d, x, dy, dw, db);
}

/* ---- BatchNorm over the ranks of a data-parallel run (ops.h: the allreduce hook) -------
 * The same two-pass formulas as ref32_bn_fwd_train / ref32_bn_bwd, with each per-channel
 * sum (and the value count m) summed over the ranks before it is used, so every rank
 * normalises with the global batch's statistics and gets the global dgamma / dbeta. With
 * one rank (a hook that changes nothing) the results are those of the plain functions, bit
 * for bit: the same double sums in the same order. */
/* A thread's scratch for the reductions (ranks are threads in tests/test_dist.c): kept
 * between calls, freed when its thread ends (the key's destructor). */
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static void scratch_key_make(void) { (void)pthread_key_create(&scratch_key, free); }

static double *ref_scratch(size_t n) {
    static _Thread_local double *buf;
    static _Thread_local size_t cap;
    if (n > cap) {
        pthread_once(&scratch_once, scratch_key_make);
        double *p = realloc(buf, n * sizeof *p);
        if (!p) {
            fprintf(stderr, "ops ref: out of memory (%zu doubles for a BatchNorm reduction)\n", n);
            exit(1);
        }
        buf = p, cap = n;
        (void)pthread_setspecific(scratch_key, p);
    }
    return buf;
}

static void bn_fwd_train_global(ops *o, const bn_desc *d, const float *x, const float *gamma, const float *beta,
                                float *y, float *save_mean, float *save_invstd, float *run_mean, float *run_var) {
    int C = d->c;
    /* s: sum x [C] then the means, m; sq: sum (x-mean)^2 [C] */
    double *s = ref_scratch(2 * (size_t)C + 1), *sq = s + C + 1, mom = d->momentum;
    for (int c = 0; c < C; c++) {
        double sum = 0.0;
        for (int n = 0; n < d->n; n++) {
            const float *p = x + ((size_t)n * C + c) * d->hw;
            for (int i = 0; i < d->hw; i++) sum += p[i];
        }
        s[c] = sum;
    }
    s[C] = (double)d->n * (double)d->hw;
    o->allreduce(o->allreduce_ctx, s, (size_t)C + 1);
    double m = s[C];
    for (int c = 0; c < C; c++) s[c] = m > 0 ? s[c] / m : 0.0;      /* s: the global means now */
    for (int c = 0; c < C; c++) {
        double acc = 0.0, mean = s[c];
        for (int n = 0; n < d->n; n++) {
            const float *p = x + ((size_t)n * C + c) * d->hw;
            for (int i = 0; i < d->hw; i++) acc += ((double)p[i] - mean) * ((double)p[i] - mean);
        }
        sq[c] = acc;
    }
    o->allreduce(o->allreduce_ctx, sq, (size_t)C);
    for (int c = 0; c < C; c++) {
        double mean = s[c], var = m > 0 ? sq[c] / m : 0.0;          /* biased: normalises */
        double invstd = 1.0 / sqrt(var + (double)d->eps);
        double g = gamma[c], bt = beta[c];
        for (int n = 0; n < d->n; n++) {
            const float *p = x + ((size_t)n * C + c) * d->hw;
            float *q = y + ((size_t)n * C + c) * d->hw;
            for (int i = 0; i < d->hw; i++) q[i] = (float)(g * ((double)p[i] - mean) * invstd + bt);
        }
        if (save_mean) save_mean[c] = (float)mean;
        if (save_invstd) save_invstd[c] = (float)invstd;
        double unbiased = m > 1 ? var * m / (m - 1) : var;
        if (run_mean) run_mean[c] = (float)((1.0 - mom) * (double)run_mean[c] + mom * mean);
        if (run_var) run_var[c] = (float)((1.0 - mom) * (double)run_var[c] + mom * unbiased);
    }
}

static void bn_bwd_global(ops *o, const bn_desc *d, const float *x, const float *dy, const float *gamma,
                          const float *save_mean, const float *save_invstd, float *dx, float *dgamma, float *dbeta) {
    int C = d->c;
    double *s = ref_scratch(2 * (size_t)C + 1);    /* sum dy [C], sum dy*xhat [C], m */
    for (int c = 0; c < C; c++) {
        double mean = save_mean[c], invstd = save_invstd[c], sdy = 0.0, sdyx = 0.0;
        for (int n = 0; n < d->n; n++) {
            size_t off = ((size_t)n * C + c) * d->hw;
            for (int i = 0; i < d->hw; i++) {
                sdy += dy[off + i];
                sdyx += (double)dy[off + i] * ((double)x[off + i] - mean) * invstd;
            }
        }
        s[c] = sdy, s[C + c] = sdyx;
    }
    s[2 * C] = (double)d->n * (double)d->hw;
    o->allreduce(o->allreduce_ctx, s, 2 * (size_t)C + 1);
    double m = s[2 * C];
    for (int c = 0; c < C; c++) {
        double sdy = s[c], sdyx = s[C + c], invstd = save_invstd[c], mean = save_mean[c];
        dbeta[c] = (float)sdy;
        dgamma[c] = (float)sdyx;
        if (!dx || m <= 0) continue;
        double k = (double)gamma[c] * invstd / m;
        for (int n = 0; n < d->n; n++) {
            size_t off = ((size_t)n * C + c) * d->hw;
            for (int i = 0; i < d->hw; i++) {
                double xhat = ((double)x[off + i] - mean) * invstd;
                dx[off + i] = (float)(k * (m * (double)dy[off + i] - sdy - xhat * sdyx));
            }
        }
    }
}

static void bn_fwd_train(ops *o, const bn_desc *d, const float *x, const float *gamma, const float *beta, float *y,
                         float *save_mean, float *save_invstd, float *run_mean, float *run_var) {
    if (o && o->allreduce) bn_fwd_train_global(o, d, x, gamma, beta, y, save_mean, save_invstd, run_mean, run_var);
    else ref32_bn_fwd_train(d, x, gamma, beta, y, save_mean, save_invstd, run_mean, run_var);
}
static void bn_fwd_infer(ops *o, const bn_desc *d, const float *x, const float *gamma, const float *beta,
                         const float *run_mean, const float *run_var, float *y) {
    (void)o;
    ref32_bn_fwd_infer(d, x, gamma, beta, run_mean, run_var, y);
}
static void bn_bwd(ops *o, const bn_desc *d, const float *x, const float *dy, const float *gamma,
                   const float *save_mean, const float *save_invstd, float *dx, float *dgamma, float *dbeta) {
    if (o && o->allreduce) bn_bwd_global(o, d, x, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta);
    else ref32_bn_bwd(d, x, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta);
}

/* NaN passes through (NaN < 0 is false), as in PyTorch. */
static void relu_fwd(ops *o, size_t n, const float *x, float *y) {
    (void)o;
    for (size_t i = 0; i < n; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];
}
static void relu_bwd(ops *o, size_t n, const float *y, const float *dy, float *dx) {
    (void)o;
    for (size_t i = 0; i < n; i++) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}
static void add(ops *o, size_t n, const float *a, const float *b, float *y) {
    (void)o;
    for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

static void gap_fwd(ops *o, int n, int c, int hw, const float *x, float *y) {
    (void)o;
    for (size_t j = 0; j < (size_t)n * c; j++) {
        double acc = 0.0;
        for (int i = 0; i < hw; i++) acc += x[j * hw + i];
        y[j] = (float)(acc / hw);
    }
}
static void gap_bwd(ops *o, int n, int c, int hw, const float *dy, float *dx) {
    (void)o;
    for (size_t j = 0; j < (size_t)n * c; j++) {
        float g = (float)((double)dy[j] / hw);
        for (int i = 0; i < hw; i++) dx[j * hw + i] = g;
    }
}

static void linear_fwd(ops *o, int n, int in, int out, const float *x, const float *w, const float *b, float *y) {
    (void)o;
    ref32_linear_fwd(n, in, out, x, w, b, y);
}
static void linear_bwd_data(ops *o, int n, int in, int out, const float *dy, const float *w, float *dx) {
    (void)o;
    ref32_linear_bwd_data(n, in, out, dy, w, dx);
}
static void linear_bwd_filter(ops *o, int n, int in, int out, const float *x, const float *dy, float *dw, float *db) {
    (void)o;
    ref32_linear_bwd_filter(n, in, out, x, dy, dw, db);
}

static void xent(ops *o, int n, int classes, const float *logits, const uint8_t *labels, float *dlogits,
                 double *loss, int *correct) {
    (void)o;
    ref32_xent(n, classes, logits, labels, dlogits, loss, correct);
}

/* ops.h xent_rows, defined by xent: each row's loss is xent's on that row alone (a mean
 * over one row is the row's loss), dlogits xent's over the batch */
static void xent_rows(ops *o, int n, int classes, const float *logits, const uint8_t *labels, float *dlogits,
                      double *row_loss, int32_t *row_hit, ops_step *s) {
    (void)o;
    double total;
    if (classes <= 0) {     /* no probability for any label */
        for (int i = 0; i < n; i++) row_loss[i] = NAN, row_hit[i] = 0;
        if (s && n > 0) s->skip = 1;
        return;
    }
    if (dlogits) ref32_xent(n, classes, logits, labels, dlogits, &total, NULL);
    for (int i = 0; i < n; i++) {
        int hit = 0;
        ref32_xent(1, classes, logits + (size_t)i * (size_t)classes, labels + i, NULL, &row_loss[i], &hit);
        row_hit[i] = hit;
        if (s && !isfinite(row_loss[i])) s->skip = 1;
    }
}

ops ops_ref = {
    .name = "ref",
    .ctx = NULL,
    .conv_fwd = conv_fwd,
    .conv_bwd_data = conv_bwd_data,
    .conv_bwd_filter = conv_bwd_filter,
    .bn_fwd_train = bn_fwd_train,
    .bn_fwd_infer = bn_fwd_infer,
    .bn_bwd = bn_bwd,
    .relu_fwd = relu_fwd,
    .relu_bwd = relu_bwd,
    .add = add,
    .gap_fwd = gap_fwd,
    .gap_bwd = gap_bwd,
    .linear_fwd = linear_fwd,
    .linear_bwd_data = linear_bwd_data,
    .linear_bwd_filter = linear_bwd_filter,
    .xent = xent,
    .xent_rows = xent_rows,
};
