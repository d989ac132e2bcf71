/* ops_ref_impl.h: the reference loops, written once and compiled twice: ops_ref.c includes
 * this file with REAL = float and ops_ref_f64.c with REAL = double. Before including it
 * define REAL (the element type) and FN(name) (the name of each static function made here).
 *
 * Every loop is the plain textbook definition from ops.h: direct convolution (a
 * cross-correlation, as in PyTorch and cuDNN), gathered so that each output is one sum.
 * Sums are accumulated in double whatever REAL is, so the float version is as exact as a
 * float result can be and differs from the double one only by the final rounding (and by
 * the float rounding of intermediate results it is given, e.g. BN's saved statistics). */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "ops.h"

/* Each instantiation uses only some of these (the double one has no inference-mode BN). */
#define REF_FN static __attribute__((unused))

/* x[n, c, y, x] of an NCHW tensor */
#define REF_AT(p, C, H, W, ni, ci, yi, xi) ((p)[(((size_t)(ni) * (C) + (ci)) * (H) + (yi)) * (W) + (xi)])

REF_FN void FN(conv_fwd)(const conv_desc *d, const REAL *x, const REAL *w, const REAL *b, REAL *y) {
    int k = d->k;
    for (int n = 0; n < d->n; n++)
        for (int co = 0; co < d->cout; co++)
            for (int oy = 0; oy < d->ho; oy++)
                for (int ox = 0; ox < d->wo; ox++) {
                    double acc = b ? (double)b[co] : 0.0;
                    for (int ci = 0; ci < d->cin; ci++)
                        for (int ky = 0; ky < k; ky++) {
                            int iy = oy * d->stride - d->pad + ky;
                            if (iy < 0 || iy >= d->h) continue;     /* zero padding */
                            for (int kx = 0; kx < k; kx++) {
                                int ix = ox * d->stride - d->pad + kx;
                                if (ix < 0 || ix >= d->w) continue;
                                acc += (double)REF_AT(x, d->cin, d->h, d->w, n, ci, iy, ix) *
                                       (double)REF_AT(w, d->cin, k, k, co, ci, ky, kx);
                            }
                        }
                    REF_AT(y, d->cout, d->ho, d->wo, n, co, oy, ox) = (REAL)acc;
                }
}

/* dx[n,ci,iy,ix] = sum over the outputs (oy,ox) whose window covers (iy,ix), i.e.
 * iy = oy*stride - pad + ky for some tap ky, of dy[n,co,oy,ox] * w[co,ci,ky,kx]. */
REF_FN void FN(conv_bwd_data)(const conv_desc *d, const REAL *dy, const REAL *w, REAL *dx) {
    int k = d->k, s = d->stride > 0 ? d->stride : 1;   /* stride < 1: ho = wo = 0, dx = 0 */
    for (int n = 0; n < d->n; n++)
        for (int ci = 0; ci < d->cin; ci++)
            for (int iy = 0; iy < d->h; iy++)
                for (int ix = 0; ix < d->w; ix++) {
                    double acc = 0.0;
                    for (int co = 0; co < d->cout; co++)
                        for (int ky = 0; ky < k; ky++) {
                            int ty = iy + d->pad - ky;             /* = oy * stride */
                            if (ty < 0 || ty % s != 0 || ty / s >= d->ho) continue;
                            for (int kx = 0; kx < k; kx++) {
                                int tx = ix + d->pad - kx;
                                if (tx < 0 || tx % s != 0 || tx / s >= d->wo) continue;
                                acc += (double)REF_AT(dy, d->cout, d->ho, d->wo, n, co, ty / s, tx / s) *
                                       (double)REF_AT(w, d->cin, k, k, co, ci, ky, kx);
                            }
                        }
                    REF_AT(dx, d->cin, d->h, d->w, n, ci, iy, ix) = (REAL)acc;
                }
}

/* dw[co,ci,ky,kx] = sum over n, oy, ox of dy[n,co,oy,ox] * x[n,ci,iy,ix]; db[co] = sum dy. */
REF_FN void FN(conv_bwd_filter)(const conv_desc *d, const REAL *x, const REAL *dy, REAL *dw, REAL *db) {
    int k = d->k;
    for (int co = 0; co < d->cout; co++)
        for (int ci = 0; ci < d->cin; ci++)
            for (int ky = 0; ky < k; ky++)
                for (int kx = 0; kx < k; kx++) {
                    double acc = 0.0;
                    for (int n = 0; n < d->n; n++)
                        for (int oy = 0; oy < d->ho; oy++) {
                            int iy = oy * d->stride - d->pad + ky;
                            if (iy < 0 || iy >= d->h) continue;
                            for (int ox = 0; ox < d->wo; ox++) {
                                int ix = ox * d->stride - d->pad + kx;
                                if (ix < 0 || ix >= d->w) continue;
                                acc += (double)REF_AT(dy, d->cout, d->ho, d->wo, n, co, oy, ox) *
                                       (double)REF_AT(x, d->cin, d->h, d->w, n, ci, iy, ix);
                            }
                        }
                    REF_AT(dw, d->cin, k, k, co, ci, ky, kx) = (REAL)acc;
                }
    if (db)
        for (int co = 0; co < d->cout; co++) {
            double acc = 0.0;
            for (int n = 0; n < d->n; n++)
                for (int oy = 0; oy < d->ho; oy++)
                    for (int ox = 0; ox < d->wo; ox++) acc += (double)REF_AT(dy, d->cout, d->ho, d->wo, n, co, oy, ox);
            db[co] = (REAL)acc;
        }
}

/* BatchNorm, train mode, exactly as defined in ops.h. Statistics in double, two passes. */
REF_FN void FN(bn_fwd_train)(const bn_desc *d, const REAL *x, const REAL *gamma, const REAL *beta, REAL *y,
                             REAL *save_mean, REAL *save_invstd, REAL *run_mean, REAL *run_var) {
    size_t m = (size_t)d->n * (size_t)d->hw;
    double mom = d->momentum;
    for (int c = 0; c < d->c; c++) {
        double sum = 0.0, sq = 0.0;
        for (int n = 0; n < d->n; n++) {
            const REAL *p = x + ((size_t)n * d->c + c) * d->hw;
            for (int i = 0; i < d->hw; i++) sum += p[i];
        }
        double mean = m ? sum / (double)m : 0.0;
        for (int n = 0; n < d->n; n++) {
            const REAL *p = x + ((size_t)n * d->c + c) * d->hw;
            for (int i = 0; i < d->hw; i++) sq += ((double)p[i] - mean) * ((double)p[i] - mean);
        }
        double var = m ? sq / (double)m : 0.0;                  /* biased: normalises */
        double invstd = 1.0 / sqrt(var + (double)d->eps);
        double g = gamma[c], bt = beta[c];
        for (int n = 0; n < d->n; n++) {
            const REAL *p = x + ((size_t)n * d->c + c) * d->hw;
            REAL *q = y + ((size_t)n * d->c + c) * d->hw;
            for (int i = 0; i < d->hw; i++) q[i] = (REAL)(g * ((double)p[i] - mean) * invstd + bt);
        }
        if (save_mean) save_mean[c] = (REAL)mean;
        if (save_invstd) save_invstd[c] = (REAL)invstd;
        double unbiased = m > 1 ? var * (double)m / (double)(m - 1) : var;
        if (run_mean) run_mean[c] = (REAL)((1.0 - mom) * (double)run_mean[c] + mom * mean);
        if (run_var) run_var[c] = (REAL)((1.0 - mom) * (double)run_var[c] + mom * unbiased);
    }
}

REF_FN void FN(bn_fwd_infer)(const bn_desc *d, const REAL *x, const REAL *gamma, const REAL *beta,
                             const REAL *run_mean, const REAL *run_var, REAL *y) {
    for (int c = 0; c < d->c; c++) {
        double scale = (double)gamma[c] / sqrt((double)run_var[c] + (double)d->eps);
        double mean = run_mean[c], bt = beta[c];
        for (int n = 0; n < d->n; n++) {
            const REAL *p = x + ((size_t)n * d->c + c) * d->hw;
            REAL *q = y + ((size_t)n * d->c + c) * d->hw;
            for (int i = 0; i < d->hw; i++) q[i] = (REAL)(scale * ((double)p[i] - mean) + bt);
        }
    }
}

/* With xhat = (x - mean)*invstd and m values per channel:
 *   dbeta = sum dy,  dgamma = sum dy*xhat,
 *   dx = gamma*invstd/m * (m*dy - dbeta - xhat*dgamma)   (mean and var depend on x). */
REF_FN void FN(bn_bwd)(const bn_desc *d, const REAL *x, const REAL *dy, const REAL *gamma, const REAL *save_mean,
                       const REAL *save_invstd, REAL *dx, REAL *dgamma, REAL *dbeta) {
    double m = (double)d->n * (double)d->hw;
    for (int c = 0; c < d->c; c++) {
        double mean = save_mean[c], invstd = save_invstd[c];
        double sdy = 0.0, sdyx = 0.0;
        for (int n = 0; n < d->n; n++) {
            size_t off = ((size_t)n * d->c + c) * d->hw;
            for (int i = 0; i < d->hw; i++) {
                sdy += dy[off + i];
                sdyx += (double)dy[off + i] * ((double)x[off + i] - mean) * invstd;
            }
        }
        dbeta[c] = (REAL)sdy;
        dgamma[c] = (REAL)sdyx;
        if (!dx) continue;
        double k = (double)gamma[c] * invstd / m;
        for (int n = 0; n < d->n; n++) {
            size_t off = ((size_t)n * d->c + c) * d->hw;
            for (int i = 0; i < d->hw; i++) {
                double xhat = ((double)x[off + i] - mean) * invstd;
                dx[off + i] = (REAL)(k * (m * (double)dy[off + i] - sdy - xhat * sdyx));
            }
        }
    }
}

REF_FN void FN(linear_fwd)(int n, int in, int out, const REAL *x, const REAL *w, const REAL *b, REAL *y) {
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out; o++) {
            double acc = b ? (double)b[o] : 0.0;
            for (int k = 0; k < in; k++) acc += (double)x[(size_t)i * in + k] * (double)w[(size_t)o * in + k];
            y[(size_t)i * out + o] = (REAL)acc;
        }
}

REF_FN void FN(linear_bwd_data)(int n, int in, int out, const REAL *dy, const REAL *w, REAL *dx) {
    for (int i = 0; i < n; i++)
        for (int k = 0; k < in; k++) {
            double acc = 0.0;
            for (int o = 0; o < out; o++) acc += (double)dy[(size_t)i * out + o] * (double)w[(size_t)o * in + k];
            dx[(size_t)i * in + k] = (REAL)acc;
        }
}

REF_FN void FN(linear_bwd_filter)(int n, int in, int out, const REAL *x, const REAL *dy, REAL *dw, REAL *db) {
    for (int o = 0; o < out; o++) {
        for (int k = 0; k < in; k++) {
            double acc = 0.0;
            for (int i = 0; i < n; i++) acc += (double)dy[(size_t)i * out + o] * (double)x[(size_t)i * in + k];
            dw[(size_t)o * in + k] = (REAL)acc;
        }
        if (db) {
            double acc = 0.0;
            for (int i = 0; i < n; i++) acc += dy[(size_t)i * out + o];
            db[o] = (REAL)acc;
        }
    }
}

/* Mean softmax cross-entropy, stable: loss_i = log(sum_j exp(l_j - max)) + max - l_label.
 * A label outside [0, classes) makes the loss NaN (never a silent number) and its row
 * gets the softmax alone as gradient. correct may be NULL. */
REF_FN void FN(xent)(int n, int classes, const REAL *logits, const uint8_t *labels, REAL *dlogits, double *loss,
                     int *correct) {
    double total = 0.0;
    int right = 0;
    for (int i = 0; i < n; i++) {
        const REAL *l = logits + (size_t)i * classes;
        int arg = 0;
        for (int j = 1; j < classes; j++)
            if (l[j] > l[arg]) arg = j;                         /* first maximum on ties */
        double mx = l[arg], s = 0.0;
        for (int j = 0; j < classes; j++) s += exp((double)l[j] - mx);
        double lse = mx + log(s);
        int lab = labels[i];
        if (lab < classes) {
            total += lse - (double)l[lab];
            right += arg == lab;
        } else {
            total = NAN;
        }
        if (dlogits)
            for (int j = 0; j < classes; j++) {
                double p = exp((double)l[j] - lse);
                dlogits[(size_t)i * classes + j] = (REAL)((p - (j == lab ? 1.0 : 0.0)) / n);
            }
    }
    *loss = n > 0 ? total / n : 0.0;
    if (correct) *correct = right;
}
#undef REF_AT
#undef REF_FN
