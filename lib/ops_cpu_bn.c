/* ops_cpu_bn.c: BatchNorm of the "cpu" backend, plain NCHW and blocked nChw8c (ops.h
 * act_blk), with the optional fused ReLU (OPS_RELU) and the data-parallel allreduce hook.
 *
 * Train forward: pass 1 (OpenMP over channels, or over blocks of 8 channels) sums, per
 * channel, (x - s) and (x - s)^2 in double with s the channel's first local value (so the
 * variance does not cancel when |mean| >> std). The global mean and the sum of squared
 * deviations follow exactly (ops.h's two reductions, through o->allreduce when set):
 *     mean = (sum_r (s1_r + m_r s_r)) / M,
 *     sum (x - mean)^2 = sum_r [ s2_r - 2 (mean - s_r) s1_r + m_r (mean - s_r)^2 ].
 * Pass 2 writes y = (x - mean) * (gamma invstd) + beta (max(0, .) with OPS_RELU), float.
 * Backward: pass 1 sums dy and dy*(x - mean) in double (dy masked by y > 0 with OPS_RELU),
 * allreduce of {sum dy [c], sum dy*xhat [c]}, pass 2 writes dx. With one process the
 * allreduce is skipped and the formulas are the same.
 *
 * Determinism: each channel (block) is summed by one thread in a fixed order; the results
 * depend neither on the run nor on the thread count. The per-call scratch (a few doubles
 * per channel) is kept between calls: no allocation after the first call for a width. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops_cpu.h"

#define PAR_MIN ((size_t)1 << 15)
enum { L8 = CPU_BLK };

/* The blocked loops are compiled twice, for AVX2 and for the baseline x86-64 (SSE2), and
 * the loader picks one per machine (GCC target_clones): the double accumulators of the
 * statistics run twice as wide on AVX2. No FMA in the clone: both give the same bits
 * ("arch=haswell" would add FMA, but GCC's resolver tests the CPU model, not its features,
 * and picks the baseline on AMD Zen). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CLONES
#endif

/* per channel: shift, s1, s2 (then mean, var) and the backward sums; grown, never shrunk */
static double *scr;
static int scr_c;
static double *scratch(int c) {
    if (c > scr_c) {
        double *p = realloc(scr, (size_t)(6 * c + 2) * sizeof *p);
        if (!p) abort();
        scr = p, scr_c = c;
    }
    return scr;
}

/* element (n, c, i) */
static inline size_t at(const bn_desc *d, int blk, int n, int c, int i) {
    if (!blk) return ((size_t)n * d->c + c) * d->hw + i;
    return (((size_t)n * (d->c / L8) + c / L8) * d->hw + i) * L8 + c % L8;
}

/* The blocked loops work on the 8 lanes of a pixel as two vectors of 4 (GCC/Clang vector
 * extensions: the accumulators stay in registers whatever the target's vector width; a
 * plain `omp simd` over an 8-element array kept them in memory and ran 3x slower). */
typedef float v4f __attribute__((vector_size(16)));
typedef double v4d __attribute__((vector_size(32)));
typedef int v4i __attribute__((vector_size(16)));
static inline v4f ld4(const float *p) {
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void st4(float *p, v4f v) { memcpy(p, &v, sizeof v); }
/* float lanes to double (a macro: a function returning a 32-byte vector warns on SSE2 ABIs) */
#define wide(v) __builtin_convertvector((v), v4d)
static inline v4f set4(const float *p) { return ld4(p); }
/* v where keep (all ones), else 0 */
static inline v4f mask4(v4f v, v4i keep) {
    v4i r;
    memcpy(&r, &v, sizeof r);
    r &= keep;
    memcpy(&v, &r, sizeof v);
    return v;
}

/* pass 1 of the forward, channel block [cb*8, cb*8 + 8) of a blocked tensor */
static CLONES void sums_blk(const bn_desc *d, int cb, const float *x, double *sh, double *s1, double *s2) {
    const float *p0 = x + at(d, 1, 0, cb * L8, 0);
    v4d s[2] = {wide(ld4(p0)), wide(ld4(p0 + 4))}, a[2] = {0}, b[2] = {0};
    for (int n = 0; n < d->n; n++) {
        const float *p = x + at(d, 1, n, cb * L8, 0);
        for (int i = 0; i < d->hw; i++, p += L8)
            for (int h = 0; h < 2; h++) {
                v4d v = wide(ld4(p + 4 * h)) - s[h];
                a[h] += v;
                b[h] += v * v;
            }
    }
    for (int l = 0; l < L8; l++)
        sh[cb * L8 + l] = s[l / 4][l % 4], s1[cb * L8 + l] = a[l / 4][l % 4], s2[cb * L8 + l] = b[l / 4][l % 4];
}

static void sums_plain(const bn_desc *d, int c, const float *x, double *sh, double *s1, double *s2) {
    double a = 0.0, b = 0.0, s = x[at(d, 0, 0, c, 0)];
    for (int n = 0; n < d->n; n++) {
        const float *p = x + at(d, 0, n, c, 0);
#pragma omp simd reduction(+ : a, b)
        for (int i = 0; i < d->hw; i++) {
            double v = (double)p[i] - s;
            a += v;
            b += v * v;
        }
    }
    sh[c] = s, s1[c] = a, s2[c] = b;
}

static CLONES void write_blk(const bn_desc *d, int cb, int relu, const float *x, float *y, const double *mean,
                              const double *s1, const float *beta) {
            float mf[L8], sc[L8], bt[L8];
            for (int l = 0; l < L8; l++) {
                int c = cb * L8 + l;
                mf[l] = (float)mean[c], sc[l] = (float)s1[c], bt[l] = beta[c];
            }
            v4f M4[2] = {set4(mf), set4(mf + 4)}, S4[2] = {set4(sc), set4(sc + 4)}, B4[2] = {set4(bt), set4(bt + 4)};
            v4f zero = {0, 0, 0, 0};
            for (int n = 0; n < d->n; n++) {
                const float *p = x + at(d, 1, n, cb * L8, 0);
                float *q = y + at(d, 1, n, cb * L8, 0);
                for (int i = 0; i < d->hw; i++, p += L8, q += L8)
                    for (int h = 0; h < 2; h++) {
                        v4f v = (ld4(p + 4 * h) - M4[h]) * S4[h] + B4[h];
                        if (relu) v = mask4(v, ~(v < zero));   /* NaN passes, as relu_fwd */
                        st4(q + 4 * h, v);
                    }
            }
        }

static CLONES void bwd_sums_blk(const bn_desc *d, int cb, int relu, const float *x, const float *y, const float *dy,
                                 const float *save_mean, double *sdy, double *sdx) {
            float muf[L8];
            for (int l = 0; l < L8; l++) muf[l] = save_mean[cb * L8 + l];
            v4d mu[2] = {wide(set4(muf)), wide(set4(muf + 4))}, a[2] = {0}, b[2] = {0};
            v4f zero = {0, 0, 0, 0};
            for (int n = 0; n < d->n; n++) {
                size_t off = at(d, 1, n, cb * L8, 0);
                const float *p = x + off, *g = dy + off, *r = relu ? y + off : g;
                for (int i = 0; i < d->hw; i++, p += L8, g += L8, r += L8)
                    for (int h = 0; h < 2; h++) {
                        v4f gv = ld4(g + 4 * h);
                        if (relu) gv = mask4(gv, ld4(r + 4 * h) > zero);
                        v4d gd = wide(gv);
                        a[h] += gd;
                        b[h] += gd * (wide(ld4(p + 4 * h)) - mu[h]);
                    }
            }
            for (int l = 0; l < L8; l++) sdy[cb * L8 + l] = a[l / 4][l % 4], sdx[cb * L8 + l] = b[l / 4][l % 4];
        }

static CLONES void bwd_dx_blk(const bn_desc *d, int cb, int relu, const float *x, const float *y, const float *dy,
                               const float *gamma, const float *save_mean, const float *save_invstd,
                               const double *red, double M, float *dx) {
    int C = d->c;
            float A[L8], B[L8], K[L8], mf[L8];
            for (int l = 0; l < L8; l++) {
                int c = cb * L8 + l;
                double invstd = save_invstd[c];
                A[l] = (float)((double)gamma[c] * invstd), B[l] = (float)(red[c] / M);
                K[l] = (float)(invstd * red[C + c] / M), mf[l] = save_mean[c];
            }
            v4f A4[2] = {set4(A), set4(A + 4)}, B4[2] = {set4(B), set4(B + 4)}, K4[2] = {set4(K), set4(K + 4)},
                M4[2] = {set4(mf), set4(mf + 4)}, zero = {0, 0, 0, 0};
            for (int n = 0; n < d->n; n++) {
                size_t off = at(d, 1, n, cb * L8, 0);
                const float *p = x + off, *g = dy + off, *r = relu ? y + off : g;
                float *q = dx + off;
                for (int i = 0; i < d->hw; i++, p += L8, g += L8, r += L8, q += L8)
                    for (int h = 0; h < 2; h++) {
                        v4f gv = ld4(g + 4 * h);
                        if (relu) gv = mask4(gv, ld4(r + 4 * h) > zero);
                        st4(q + 4 * h, A4[h] * (gv - B4[h] - (ld4(p + 4 * h) - M4[h]) * K4[h]));
                    }
            }
        }

static void bn_train(ops *o, const bn_desc *d, int flags, const float *x, const float *gamma, const float *beta,
                     float *y, float *save_mean, float *save_invstd, float *run_mean, float *run_var) {
    int C = d->c, blk = (flags & OPS_BLK_IN) != 0, relu = (flags & OPS_RELU) != 0;
    size_t m = (size_t)d->n * (size_t)d->hw, total = m * (size_t)C;
    double *sh = scratch(C), *s1 = sh + C, *s2 = s1 + C, *mean = s2 + C, *var = mean + C, *red = var + C;
    if (m == 0) {
        for (int c = 0; c < C; c++) sh[c] = s1[c] = s2[c] = 0.0;
    } else if (blk) {
#pragma omp parallel for schedule(static) if (total >= PAR_MIN)
        for (int cb = 0; cb < C / L8; cb++) sums_blk(d, cb, x, sh, s1, s2);
    } else {
#pragma omp parallel for schedule(static) if (total >= PAR_MIN)
        for (int c = 0; c < C; c++) sums_plain(d, c, x, sh, s1, s2);
    }
    /* global mean: reduce {sum x [c], m}; red is 2C+2 doubles past var (scratch's 6C+2) */
    double M = (double)m;
    for (int c = 0; c < C; c++) red[c] = s1[c] + (double)m * sh[c];
    red[C] = (double)m;
    if (o->allreduce) o->allreduce(o->allreduce_ctx, red, (size_t)C + 1), M = red[C];
    for (int c = 0; c < C; c++) mean[c] = M > 0 ? red[c] / M : 0.0;
    for (int c = 0; c < C; c++) {
        double dm = mean[c] - sh[c];
        red[c] = s2[c] - 2.0 * dm * s1[c] + (double)m * dm * dm;
    }
    if (o->allreduce) o->allreduce(o->allreduce_ctx, red, (size_t)C);
    for (int c = 0; c < C; c++) var[c] = M > 0 && red[c] > 0 ? red[c] / M : 0.0;

    double mom = d->momentum;
    for (int c = 0; c < C; c++) {
        double invstd = 1.0 / sqrt(var[c] + (double)d->eps);
        if (save_mean) save_mean[c] = (float)mean[c];
        if (save_invstd) save_invstd[c] = (float)invstd;
        double unbiased = M > 1 ? var[c] * M / (M - 1) : var[c];
        if (M > 0 && run_mean) run_mean[c] = (float)((1.0 - mom) * (double)run_mean[c] + mom * mean[c]);
        if (M > 0 && run_var) run_var[c] = (float)((1.0 - mom) * (double)run_var[c] + mom * unbiased);
        s1[c] = (double)gamma[c] * invstd;      /* s1, s2 now: scale and shift of pass 2 */
    }
    if (m == 0) return;
    if (blk) {
#pragma omp parallel for schedule(static) if (total >= PAR_MIN)
        for (int cb = 0; cb < C / L8; cb++) write_blk(d, cb, relu, x, y, mean, s1, beta);
    } else {
#pragma omp parallel for schedule(static) if (total >= PAR_MIN)
        for (int c = 0; c < C; c++) {
            float mf = (float)mean[c], sc = (float)s1[c], bt = beta[c];
            for (int n = 0; n < d->n; n++) {
                const float *p = x + at(d, 0, n, c, 0);
                float *q = y + at(d, 0, n, c, 0);
#pragma omp simd
                for (int i = 0; i < d->hw; i++) {
                    float v = (p[i] - mf) * sc + bt;
                    q[i] = relu && v < 0.0f ? 0.0f : v;
                }
            }
        }
    }
}

static void bn_infer(ops *o, const bn_desc *d, int flags, const float *x, const float *gamma, const float *beta,
                     const float *run_mean, const float *run_var, float *y) {
    (void)o;
    int C = d->c, blk = (flags & OPS_BLK_IN) != 0, relu = (flags & OPS_RELU) != 0;
    size_t total = (size_t)d->n * (size_t)d->hw * (size_t)C;
#pragma omp parallel for schedule(static) if (total >= PAR_MIN)
    for (int c = 0; c < C; c++) {
        float sc = (float)((double)gamma[c] / sqrt((double)run_var[c] + (double)d->eps));
        float mf = run_mean[c], bt = beta[c];
        size_t step = blk ? L8 : 1;
        for (int n = 0; n < d->n; n++) {
            const float *p = x + at(d, blk, n, c, 0);
            float *q = y + at(d, blk, n, c, 0);
            for (int i = 0; i < d->hw; i++) {     /* strided when blocked: inference only */
                float v = (p[i * step] - mf) * sc + bt;
                q[i * step] = relu && v < 0.0f ? 0.0f : v;
            }
        }
    }
}

/* dbeta = sum g, dgamma = sum g*xhat, dx = gamma*invstd * (g - dbeta/M - xhat*dgamma/M),
 * g = dy (OPS_RELU: dy where y > 0, else 0; y is the fused op's output). */
static void bn_backward(ops *o, const bn_desc *d, int flags, const float *x, const float *y, const float *dy,
                        const float *gamma, const float *save_mean, const float *save_invstd, float *dx,
                        float *dgamma, float *dbeta) {
    int C = d->c, blk = (flags & OPS_BLK_IN) != 0, relu = (flags & OPS_RELU) != 0;
    size_t m = (size_t)d->n * (size_t)d->hw, total = m * (size_t)C;
    double *sdy = scratch(C), *sdx = sdy + C, *red = sdx + C;
    if (blk) {
#pragma omp parallel for schedule(static) if (total >= PAR_MIN)
        for (int cb = 0; cb < C / L8; cb++) bwd_sums_blk(d, cb, relu, x, y, dy, save_mean, sdy, sdx);
    } else {
#pragma omp parallel for schedule(static) if (total >= PAR_MIN)
        for (int c = 0; c < C; c++) {
            double a = 0.0, b = 0.0, mu = save_mean[c];
            for (int n = 0; n < d->n; n++) {
                size_t off = at(d, 0, n, c, 0);
                const float *p = x + off, *g = dy + off, *r = relu ? y + off : g;
#pragma omp simd reduction(+ : a, b)
                for (int i = 0; i < d->hw; i++) {
                    float gv = relu && !(r[i] > 0.0f) ? 0.0f : g[i];
                    a += gv;
                    b += (double)gv * ((double)p[i] - mu);
                }
            }
            sdy[c] = a, sdx[c] = b;
        }
    }
    /* reduce {sum g [c], sum g*xhat [c], m} as the reference does */
    for (int c = 0; c < C; c++) red[c] = sdy[c], red[C + c] = sdx[c] * (double)save_invstd[c];
    red[2 * C] = (double)m;
    if (o->allreduce) o->allreduce(o->allreduce_ctx, red, 2 * (size_t)C + 1);
    double M = red[2 * C];
    for (int c = 0; c < C; c++) dbeta[c] = (float)red[c], dgamma[c] = (float)red[C + c];
    if (!dx || m == 0 || !(M > 0)) return;
    if (blk) {
#pragma omp parallel for schedule(static) if (total >= PAR_MIN)
        for (int cb = 0; cb < C / L8; cb++)
            bwd_dx_blk(d, cb, relu, x, y, dy, gamma, save_mean, save_invstd, red, M, dx);
    } else {
#pragma omp parallel for schedule(static) if (total >= PAR_MIN)
        for (int c = 0; c < C; c++) {
            double invstd = save_invstd[c];
            float a = (float)((double)gamma[c] * invstd), b = (float)(red[c] / M);
            float k = (float)(invstd * red[C + c] / M), mf = save_mean[c];
            for (int n = 0; n < d->n; n++) {
                size_t off = at(d, 0, n, c, 0);
                const float *p = x + off, *g = dy + off, *r = relu ? y + off : g;
                float *q = dx + off;
#pragma omp simd
                for (int i = 0; i < d->hw; i++) {
                    float gv = relu && !(r[i] > 0.0f) ? 0.0f : g[i];
                    q[i] = a * (gv - b - (p[i] - mf) * k);
                }
            }
        }
    }
}

/* ---- the entries (ops_cpu.h) ----------------------------------------------------------- */
void cpu_bn_fwd_train(ops *o, const bn_desc *d, const float *x, const float *gamma, const float *beta, float *y,
                      float *save_mean, float *save_invstd, float *run_mean, float *run_var) {
    bn_train(o, d, 0, x, gamma, beta, y, save_mean, save_invstd, run_mean, run_var);
}
void cpu_bn_fwd_train_l(ops *o, const bn_desc *d, int flags, const float *x, const float *gamma,
                        const float *beta, float *y, float *save_mean, float *save_invstd, float *run_mean,
                        float *run_var) {
    bn_train(o, d, flags, x, gamma, beta, y, save_mean, save_invstd, run_mean, run_var);
}
void cpu_bn_fwd_infer(ops *o, const bn_desc *d, const float *x, const float *gamma, const float *beta,
                      const float *run_mean, const float *run_var, float *y) {
    bn_infer(o, d, 0, x, gamma, beta, run_mean, run_var, y);
}
void cpu_bn_fwd_infer_l(ops *o, const bn_desc *d, int flags, const float *x, const float *gamma,
                        const float *beta, const float *run_mean, const float *run_var, float *y) {
    bn_infer(o, d, flags, x, gamma, beta, run_mean, run_var, y);
}
void cpu_bn_bwd(ops *o, const bn_desc *d, const float *x, const float *dy, const float *gamma,
                const float *save_mean, const float *save_invstd, float *dx, float *dgamma, float *dbeta) {
    bn_backward(o, d, 0, x, NULL, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta);
}
void cpu_bn_bwd_l(ops *o, const bn_desc *d, int flags, const float *x, const float *y, const float *dy,
                  const float *gamma, const float *save_mean, const float *save_invstd, float *dx, float *dgamma,
                  float *dbeta) {
    bn_backward(o, d, flags, x, y, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta);
}
