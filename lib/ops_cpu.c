/* ops_cpu.c: the fast CPU backend "cpu": the ops table ops_cpu, and the memory-bound ops.
 *
 * Convolutions go to oneDNN (ops_cpu_conv.c). The rest stream through memory and are
 * written here as OpenMP loops over channels (BatchNorm) or elements, with inner loops the
 * compiler vectorises (`omp simd`). The fully connected layer and the loss are a few
 * thousand multiply-adds per batch in ResNet-20 (0.01% of a step): they use the reference
 * code as it is.
 *
 * Accuracy: BatchNorm's statistics and gradient sums are accumulated in double (each simd
 * lane a double partial sum; lanes added in a fixed order), so they are as good as the
 * reference's; the per-element work (normalise, dx) is float arithmetic, a few float
 * roundings per element. Determinism: every sum has a fixed order: a channel is summed by
 * one thread, in a loop whose vector shape is fixed at compile time; no atomics. The
 * results depend neither on the run nor (outside the convolutions) on the thread count.
 *
 * Small elementwise calls stay on one thread (OpenMP's fork costs more than the work). */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "ops_cpu.h"

/* elementwise ops below this many elements run on the calling thread alone */
#define PAR_MIN ((size_t)1 << 15)

/* ---- BatchNorm ----------------------------------------------------------------------- */

/* sum over channel c's values of (x - shift) and (x - shift)^2, in double */
static void bn_channel_sums(const bn_desc *d, int c, const float *x, double shift, double *s1, double *s2) {
    double a = 0.0, b = 0.0;
    for (int n = 0; n < d->n; n++) {
        const float *p = x + ((size_t)n * d->c + c) * d->hw;
#pragma omp simd reduction(+ : a, b)
        for (int i = 0; i < d->hw; i++) {
            double v = (double)p[i] - shift;
            a += v;
            b += v * v;
        }
    }
    *s1 = a;
    *s2 = b;
}

/* One pass for the statistics, shifted by the channel's first value so that
 * var = (s2 - s1^2/m)/m does not cancel catastrophically: with the shift inside the data's
 * range, s1^2/m <= s2 * (range/std)^2-ish, and in double that loses nothing a float keeps
 * unless |x - shift| / std exceeds ~1e4. A second pass writes y. */
static void bn_fwd_train(ops *o, const bn_desc *d, const float *x, const float *gamma, const float *beta, float *y,
                         float *save_mean, float *save_invstd, float *run_mean, float *run_var) {
    (void)o;
    size_t m = (size_t)d->n * (size_t)d->hw;
    if (m == 0) {
        ops_ref.bn_fwd_train(&ops_ref, d, x, gamma, beta, y, save_mean, save_invstd, run_mean, run_var);
        return;
    }
    double mom = d->momentum;
#pragma omp parallel for schedule(static) if (m * (size_t)d->c >= PAR_MIN)
    for (int c = 0; c < d->c; c++) {
        double shift = x[(size_t)c * d->hw], s1, s2;
        bn_channel_sums(d, c, x, shift, &s1, &s2);
        double dm = s1 / (double)m;
        double mean = shift + dm;
        double var = s2 / (double)m - dm * dm;
        if (var < 0.0) var = 0.0;
        double invstd = 1.0 / sqrt(var + (double)d->eps);
        float mf = (float)mean, scale = (float)((double)gamma[c] * invstd), bt = beta[c];
        for (int n = 0; n < d->n; n++) {
            const float *p = x + ((size_t)n * d->c + c) * d->hw;
            float *q = y + ((size_t)n * d->c + c) * d->hw;
#pragma omp simd
            for (int i = 0; i < d->hw; i++) q[i] = (p[i] - mf) * scale + bt;
        }
        if (save_mean) save_mean[c] = mf;
        if (save_invstd) save_invstd[c] = (float)invstd;
        double unbiased = m > 1 ? var * (double)m / (double)(m - 1) : var;
        if (run_mean) run_mean[c] = (float)((1.0 - mom) * (double)run_mean[c] + mom * mean);
        if (run_var) run_var[c] = (float)((1.0 - mom) * (double)run_var[c] + mom * unbiased);
    }
}

static void bn_fwd_infer(ops *o, const bn_desc *d, const float *x, const float *gamma, const float *beta,
                         const float *run_mean, const float *run_var, float *y) {
    (void)o;
    size_t m = (size_t)d->n * (size_t)d->hw;
#pragma omp parallel for schedule(static) if (m * (size_t)d->c >= PAR_MIN)
    for (int c = 0; c < d->c; c++) {
        float scale = (float)((double)gamma[c] / sqrt((double)run_var[c] + (double)d->eps));
        float mf = run_mean[c], bt = beta[c];
        for (int n = 0; n < d->n; n++) {
            const float *p = x + ((size_t)n * d->c + c) * d->hw;
            float *q = y + ((size_t)n * d->c + c) * d->hw;
#pragma omp simd
            for (int i = 0; i < d->hw; i++) q[i] = (p[i] - mf) * scale + bt;
        }
    }
}

/* As ops.h / the reference: dbeta = sum dy, dgamma = sum dy*xhat,
 * dx = gamma*invstd * (dy - dbeta/m - xhat*dgamma/m). */
static void bn_bwd(ops *o, const bn_desc *d, const float *x, const float *dy, const float *gamma,
                   const float *save_mean, const float *save_invstd, float *dx, float *dgamma, float *dbeta) {
    (void)o;
    size_t m = (size_t)d->n * (size_t)d->hw;
#pragma omp parallel for schedule(static) if (m * (size_t)d->c >= PAR_MIN)
    for (int c = 0; c < d->c; c++) {
        double mean = save_mean[c], invstd = save_invstd[c];
        double sdy = 0.0, sdyx = 0.0;
        for (int n = 0; n < d->n; n++) {
            size_t off = ((size_t)n * d->c + c) * d->hw;
            const float *p = x + off, *g = dy + off;
#pragma omp simd reduction(+ : sdy, sdyx)
            for (int i = 0; i < d->hw; i++) {
                sdy += g[i];
                sdyx += (double)g[i] * ((double)p[i] - mean);
            }
        }
        sdyx *= invstd;
        dbeta[c] = (float)sdy;
        dgamma[c] = (float)sdyx;
        if (!dx || m == 0) continue;
        float a = (float)((double)gamma[c] * invstd), b = (float)(sdy / (double)m);
        float k = (float)(invstd * sdyx / (double)m), mf = (float)mean;
        for (int n = 0; n < d->n; n++) {
            size_t off = ((size_t)n * d->c + c) * d->hw;
            const float *p = x + off, *g = dy + off;
            float *q = dx + off;
#pragma omp simd
            for (int i = 0; i < d->hw; i++) q[i] = a * (g[i] - b - (p[i] - mf) * k);
        }
    }
}

/* ---- elementwise ----------------------------------------------------------------------- */

/* NaN passes through (NaN < 0 is false), as in the reference and PyTorch. */
static void relu_fwd(ops *o, size_t n, const float *x, float *y) {
    (void)o;
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];
}

static void relu_bwd(ops *o, size_t n, const float *y, const float *dy, float *dx) {
    (void)o;
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float g = dy[i];                             /* loaded always: the loop vectorises */
        dx[i] = y[i] > 0.0f ? g : 0.0f;
    }
}

static void add(ops *o, size_t n, const float *a, const float *b, float *y) {
    (void)o;
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

/* ---- global average pool --------------------------------------------------------------- */

static void gap_fwd(ops *o, int n, int c, int hw, const float *x, float *y) {
    (void)o;
    size_t rows = (size_t)n * c;
#pragma omp parallel for schedule(static) if (rows * hw >= PAR_MIN)
    for (size_t j = 0; j < rows; j++) {
        const float *p = x + j * hw;
        double acc = 0.0;
#pragma omp simd reduction(+ : acc)
        for (int i = 0; i < hw; i++) acc += p[i];
        y[j] = (float)(acc / hw);
    }
}

static void gap_bwd(ops *o, int n, int c, int hw, const float *dy, float *dx) {
    (void)o;
    size_t rows = (size_t)n * c;
#pragma omp parallel for schedule(static) if (rows * hw >= PAR_MIN)
    for (size_t j = 0; j < rows; j++) {
        float g = (float)((double)dy[j] / hw);
        float *q = dx + j * hw;
        for (int i = 0; i < hw; i++) q[i] = g;
    }
}

/* ---- the small ops: the reference's ---------------------------------------------------- */

static void linear_fwd(ops *o, int n, int in, int out, const float *x, const float *w, const float *b, float *y) {
    (void)o;
    ops_ref.linear_fwd(&ops_ref, n, in, out, x, w, b, y);
}
static void linear_bwd_data(ops *o, int n, int in, int out, const float *dy, const float *w, float *dx) {
    (void)o;
    ops_ref.linear_bwd_data(&ops_ref, n, in, out, dy, w, dx);
}
static void linear_bwd_filter(ops *o, int n, int in, int out, const float *x, const float *dy, float *dw, float *db) {
    (void)o;
    ops_ref.linear_bwd_filter(&ops_ref, n, in, out, x, dy, dw, db);
}
static void xent(ops *o, int n, int classes, const float *logits, const uint8_t *labels, float *dlogits,
                 double *loss, int *correct) {
    (void)o;
    ops_ref.xent(&ops_ref, n, classes, logits, labels, dlogits, loss, correct);
}

ops ops_cpu = {
    .name = "cpu",
    .ctx = NULL,                    /* the convolution cache is ops_cpu_conv.c's own */
    .conv_fwd = cpu_conv_fwd,
    .conv_bwd_data = cpu_conv_bwd_data,
    .conv_bwd_filter = cpu_conv_bwd_filter,
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
};
