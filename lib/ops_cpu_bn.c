/* ops_cpu_bn.c: BatchNorm of the "cpu" backend, plain NCHW and blocked nChw8c/nChw16c (ops.h
 * act_blk), with the optional fused ReLU (OPS_RELU) and the data-parallel allreduce hook.
 *
 * Train forward: pass 1 (OpenMP over channels when plain; over parts of the batch, each
 * streaming all its channel blocks in memory order, when blocked) sums, per
 * channel, (x - s) and (x - s)^2 in double with s the channel's first local value (so the
 * variance does not cancel when |mean| >> std). The global mean and the sum of squared
 * deviations follow exactly (ops.h's two reductions, through o->allreduce when set):
 *     mean = (sum_r (s1_r + m_r s_r)) / M,
 *     sum (x - mean)^2 = sum_r [ s2_r - 2 (mean - s_r) s1_r + m_r (mean - s_r)^2 ].
 * Pass 2 writes y = (x - mean) * (gamma invstd) + beta (max(0, .) with OPS_RELU), float.
 * Backward: pass 1 sums dy and dy*(x - mean) in double (dy masked by y > 0 with OPS_RELU,
 * y recomputed from x rather than read: relu_scale), allreduce of {sum dy [c], sum dy*xhat
 * [c]}, pass 2 writes dx (over dy when the caller passes the same buffer). With one process the
 * allreduce is skipped and the formulas are the same.
 *
 * Determinism: each channel (plain), or each part of the batch (blocked: the parts are
 * fixed by the batch alone and added in part order), is summed by one thread in a fixed
 * order; the results depend neither on the run nor on the thread count (tested with 1, 2
 * and 3 threads). The per-call scratch (a few doubles per channel) is kept between calls:
 * no allocation after the first call for a width. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops_cpu.h"

#define PAR_MIN ((size_t)1 << 15)

/* The blocked loops are compiled three times, for AVX-512, AVX2 and the baseline x86-64
 * (SSE2), and the loader picks one per machine (GCC target_clones). No FMA in any clone
 * (-ffp-contract=off: an AVX-512 target could contract a*b+c): all give the same bits
 * ("arch=haswell" would add FMA, but GCC's resolver tests the CPU model, not its features,
 * and picks the baseline on AMD Zen). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

/* per channel: shift, s1, s2 (then mean, var) and the backward sums */
static double *scratch(int c) {
    static cpu_buf b;
    return cpu_buf_get(&b, (size_t)(6 * c + 2) * sizeof(double));
}
/* six float constants per channel for the blocked passes */
static float *fconsts(int c) {
    static cpu_buf b;
    return cpu_buf_get(&b, (size_t)(6 * c + 1) * sizeof(float));
}

/* Blocked tensors are cut into tasks of one part of the batch each, every channel block of
 * its images in memory order ([n][c/L][hw][L]: one contiguous stream per task, so that the
 * hardware prefetcher keeps up; a task per (block, part) read 4 KB pieces 16 KB apart in the
 * 64-channel layers and ran at a third of the bandwidth). The number of parts depends on
 * the batch alone, never on the thread count, and the parts' double sums are added in part
 * order: the same bits whatever the threads. */
enum { MAX_PARTS = 32 };   /* up to 32 threads busy */
static int nparts(const bn_desc *d) { return d->n < MAX_PARTS ? (d->n > 0 ? d->n : 1) : MAX_PARTS; }
static int part_lo(const bn_desc *d, int part) { return (int)((long)d->n * part / nparts(d)); }
/* a[c], b[c] = the parts' partial sums pa / pb (P rows of C), added in part order */
static void add_parts(int P, int C, const double *pa, const double *pb, double *a, double *b) {
    for (int c = 0; c < C; c++) {
        double x = 0.0, y = 0.0;
        for (int part = 0; part < P; part++) x += pa[(size_t)part * C + c], y += pb[(size_t)part * C + c];
        a[c] = x, b[c] = y;
    }
}

/* per part and channel: two partial sums */
static double *partials(int c) {
    static cpu_buf b;
    return cpu_buf_get(&b, (size_t)MAX_PARTS * 2 * (size_t)c * sizeof(double));
}

/* The scale of the normalisation, gamma * invstd rounded once: the forward computes it from
 * the float invstd it saves, so the backward can recompute it exactly (relu_scale). */
static inline float bn_scale(float gamma, float invstd) { return (float)((double)gamma * (double)invstd); }

/* element (n, c, i); blk: 0 (NCHW) or the block width L (nChwLc) */
static inline size_t at(const bn_desc *d, int blk, int n, int c, int i) {
    if (!blk) return ((size_t)n * d->c + c) * d->hw + i;
    return (((size_t)n * (d->c / blk) + c / blk) * d->hw + i) * blk + c % blk;
}

/* The blocked loops work on the L lanes of a pixel (L = 8 or 16: the table's act_blk) as L/8 vectors of
 * 8 floats (GCC/Clang vector extensions: the accumulators stay in registers whatever the
 * target's vector width; a plain `omp simd` over an 8-element array kept them in memory and
 * ran 3x slower), their double sums as vectors of 8 doubles (one zmm on AVX-512, two ymm on
 * AVX2). Each loop body is one always-inline function of L, instantiated for 8 and 16 (the
 * compiler unrolls the groups); every lane is summed in the same order whatever L and
 * whatever the clone, so all give the same bits. */
enum { VW = 8 };
typedef float vf __attribute__((vector_size(4 * VW)));
typedef double vd __attribute__((vector_size(8 * VW)));
typedef int vi __attribute__((vector_size(4 * VW)));
#define INLINE static inline __attribute__((always_inline))
enum { LMAX = 16, GMAX = LMAX / VW };
INLINE vf ldv(const float *p) {
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}
INLINE void stv(float *p, vf v) { memcpy(p, &v, sizeof v); }
#define wide(v) __builtin_convertvector((v), vd)
/* v where keep (all ones), else 0 */
INLINE vf maskv(vf v, vi keep) {
    vi r;
    memcpy(&r, &v, sizeof r);
    r &= keep;
    memcpy(&v, &r, sizeof v);
    return v;
}

/* vector h of a pixel's L lanes, from per-channel float constants k (channel block cb) */
#define KV(k, cb, h) ldv((k) + (size_t)(cb) * L + VW * (h))

/* pass 1 of the forward, images [n0, n1), every channel block: sums of (x - s) and
 * (x - s)^2 into pa[c], pb[c] (image after image: each image's block sum in registers, then
 * added in), with sh[c] the channel's shift (image 0, pixel 0: the same in every part) */
INLINE void sums_blk(const int L, const bn_desc *d, int n0, int n1, const float *x, const double *sh,
                     double *pa, double *pb) {
    const int G = L / VW, nb = d->c / L;
    for (int c = 0; c < d->c; c++) pa[c] = pb[c] = 0.0;
    for (int n = n0; n < n1; n++)
        for (int cb = 0; cb < nb; cb++) {
            const float *p = x + at(d, L, n, cb * L, 0);
            vd s[GMAX], a[GMAX], b[GMAX];
            for (int h = 0; h < G; h++) memcpy(&s[h], sh + cb * L + VW * h, sizeof s[h]), a[h] = b[h] = (vd){0};
            for (int i = 0; i < d->hw; i++, p += L)
                for (int h = 0; h < G; h++) {
                    vd v = wide(ldv(p + VW * h)) - s[h];
                    a[h] += v;
                    b[h] += v * v;
                }
            for (int l = 0; l < L; l++) pa[cb * L + l] += a[l / VW][l % VW], pb[cb * L + l] += b[l / VW][l % VW];
        }
}

/* pass 2: y = (x - mf) * sc + bt (max(0, .) with relu), images [n0, n1) */
INLINE void write_blk(const int L, const bn_desc *d, int n0, int n1, int relu, const float *x, float *y,
                      const float *mf, const float *sc, const float *bt) {
    const int G = L / VW, nb = d->c / L;
    const vf zero = {0};
    for (int n = n0; n < n1; n++)
        for (int cb = 0; cb < nb; cb++) {
            size_t off = at(d, L, n, cb * L, 0);
            const float *p = x + off;
            float *q = y + off;
            vf M4[GMAX], S4[GMAX], B4[GMAX];
            for (int h = 0; h < G; h++) M4[h] = KV(mf, cb, h), S4[h] = KV(sc, cb, h), B4[h] = KV(bt, cb, h);
            for (int i = 0; i < d->hw; i++, p += L, q += L)
                for (int h = 0; h < G; h++) {
                    vf v = (ldv(p + VW * h) - M4[h]) * S4[h] + B4[h];
                    if (relu) v = maskv(v, ~(v < zero));   /* NaN passes, as relu_fwd */
                    stv(q + VW * h, v);
                }
        }
}

/* The ReLU mask of the backward, without reading y: the forward's y = max(0, v) with
 * v = (x - mean) * scale + beta, recomputed with the same float operations from the same
 * float constants (mean = save_mean, scale = bn_scale of the float invstd, as the forward
 * computes it), so v > 0 is exactly the forward's y > 0, NaN included (false). */
INLINE float relu_scale(const float *gamma, const float *save_invstd, int c) {
    return bn_scale(gamma[c], save_invstd[c]);
}

/* pass 1 of the backward, images [n0, n1): sums of g and g * (x - mu) into pa[c], pb[c];
 * with relu, g = dy where (x - mu) * sc + bt > 0 (the forward's y > 0), else 0 */
INLINE void bwd_sums_blk(const int L, const bn_desc *d, int n0, int n1, int relu, const float *x,
                         const float *dy, const float *muf, const float *sc, const float *bt, double *pa,
                         double *pb) {
    const int G = L / VW, nb = d->c / L;
    const vf zero = {0};
    for (int c = 0; c < d->c; c++) pa[c] = pb[c] = 0.0;
    for (int n = n0; n < n1; n++)
        for (int cb = 0; cb < nb; cb++) {
            size_t off = at(d, L, n, cb * L, 0);
            const float *p = x + off, *g = dy + off;
            vd mu[GMAX], a[GMAX], b[GMAX];
            vf M4[GMAX], S4[GMAX], B4[GMAX];
            for (int h = 0; h < G; h++) {
                M4[h] = KV(muf, cb, h), S4[h] = KV(sc, cb, h), B4[h] = KV(bt, cb, h);
                mu[h] = wide(M4[h]), a[h] = b[h] = (vd){0};
            }
            for (int i = 0; i < d->hw; i++, p += L, g += L)
                for (int h = 0; h < G; h++) {
                    vf xv = ldv(p + VW * h), gv = ldv(g + VW * h);
                    if (relu) gv = maskv(gv, (xv - M4[h]) * S4[h] + B4[h] > zero);
                    vd gd = wide(gv);
                    a[h] += gd;
                    b[h] += gd * (wide(xv) - mu[h]);
                }
            for (int l = 0; l < L; l++) pa[cb * L + l] += a[l / VW][l % VW], pb[cb * L + l] += b[l / VW][l % VW];
        }
}

/* pass 2 of the backward, images [n0, n1): dx = A (g - B - (x - mf) K), g as in pass 1 (k:
 * the six per-channel constants A, B, K, mf, sc, bt, C each); may write over dy (each
 * element reads its own dy before writing dx) */
INLINE void bwd_dx_blk(const int L, const bn_desc *d, int n0, int n1, int relu, const float *x,
                       const float *dy, const float *k, float *dx) {
    const int G = L / VW, nb = d->c / L, C = d->c;
    const float *A = k, *B = A + C, *K = B + C, *mf = K + C, *sc = mf + C, *bt = sc + C;
    const vf zero = {0};
    for (int n = n0; n < n1; n++)
        for (int cb = 0; cb < nb; cb++) {
            size_t off = at(d, L, n, cb * L, 0);
            const float *p = x + off, *g = dy + off;
            float *q = dx + off;
            vf A4[GMAX], B4[GMAX], K4[GMAX], M4[GMAX], S4[GMAX], T4[GMAX];
            for (int h = 0; h < G; h++) {
                A4[h] = KV(A, cb, h), B4[h] = KV(B, cb, h), K4[h] = KV(K, cb, h), M4[h] = KV(mf, cb, h);
                S4[h] = KV(sc, cb, h), T4[h] = KV(bt, cb, h);
            }
            for (int i = 0; i < d->hw; i++, p += L, g += L, q += L)
                for (int h = 0; h < G; h++) {
                    vf xc = ldv(p + VW * h) - M4[h], gv = ldv(g + VW * h);
                    if (relu) gv = maskv(gv, xc * S4[h] + T4[h] > zero);
                    stv(q + VW * h, A4[h] * (gv - B4[h] - xc * K4[h]));
                }
        }
}
#undef KV

/* The instances: one function per loop and block width, each cloned (CLONES);
 * bn_train / bn_backward pick the width (the table's act_blk) at run time. */
#define INSTANCES(L)                                                                                             \
    static CLONES void sums_blk##L(const bn_desc *d, int n0, int n1, const float *x, const double *sh,         \
                                   double *pa, double *pb) {                                                   \
        sums_blk(L, d, n0, n1, x, sh, pa, pb);                                                                 \
    }                                                                                                          \
    static CLONES void write_blk##L(const bn_desc *d, int n0, int n1, int relu, const float *x, float *y,      \
                                    const float *mf, const float *sc, const float *bt) {                       \
        write_blk(L, d, n0, n1, relu, x, y, mf, sc, bt);                                                       \
    }                                                                                                          \
    static CLONES void bwd_sums_blk##L(const bn_desc *d, int n0, int n1, int relu, const float *x,             \
                                       const float *dy, const float *muf, const float *sc, const float *bt,    \
                                       double *pa, double *pb) {                                               \
        bwd_sums_blk(L, d, n0, n1, relu, x, dy, muf, sc, bt, pa, pb);                                          \
    }                                                                                                          \
    static CLONES void bwd_dx_blk##L(const bn_desc *d, int n0, int n1, int relu, const float *x,               \
                                     const float *dy, const float *k, float *dx) {                             \
        bwd_dx_blk(L, d, n0, n1, relu, x, dy, k, dx);                                                          \
    }
INSTANCES(8)
INSTANCES(16)

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

static void bn_train(ops *o, const bn_desc *d, int flags, const float *x, const float *gamma, const float *beta,
                     float *y, float *save_mean, float *save_invstd, float *run_mean, float *run_var) {
    int C = d->c, blk = (flags & OPS_BLK_IN) ? o->act_blk : 0, relu = (flags & OPS_RELU) != 0;
    size_t m = (size_t)d->n * (size_t)d->hw, total = m * (size_t)C;
    double *sh = scratch(C), *s1 = sh + C, *s2 = s1 + C, *mean = s2 + C, *var = mean + C, *red = var + C;
    if (m == 0) {
        for (int c = 0; c < C; c++) sh[c] = s1[c] = s2[c] = 0.0;
    } else if (blk) {
        int P = nparts(d);
        double *pa = partials(C), *pb = pa + (size_t)P * C;
        for (int c = 0; c < C; c++) sh[c] = x[at(d, blk, 0, c, 0)];
#pragma omp parallel for schedule(static) if (total >= PAR_MIN)
        for (int part = 0; part < P; part++) {
            int n0 = part_lo(d, part), n1 = part_lo(d, part + 1);
            size_t off = (size_t)part * C;
            if (blk == 16) sums_blk16(d, n0, n1, x, sh, pa + off, pb + off);
            else sums_blk8(d, n0, n1, x, sh, pa + off, pb + off);
        }
        add_parts(P, C, pa, pb, s1, s2);
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
        s1[c] = bn_scale(gamma[c], (float)invstd);   /* s1 now: the scale of pass 2 (exact in double) */
    }
    if (m == 0) return;
    if (blk) {
        int P = nparts(d);
        float *mf = fconsts(C), *sc = mf + C, *bt = sc + C;
        for (int c = 0; c < C; c++) mf[c] = (float)mean[c], sc[c] = (float)s1[c], bt[c] = beta[c];
#pragma omp parallel for schedule(static) if (total >= PAR_MIN)
        for (int part = 0; part < P; part++) {
            int n0 = part_lo(d, part), n1 = part_lo(d, part + 1);
            if (blk == 16) write_blk16(d, n0, n1, relu, x, y, mf, sc, bt);
            else write_blk8(d, n0, n1, relu, x, y, mf, sc, bt);
        }
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
    int C = d->c, blk = (flags & OPS_BLK_IN) ? o->act_blk : 0, relu = (flags & OPS_RELU) != 0;
    size_t total = (size_t)d->n * (size_t)d->hw * (size_t)C;
#pragma omp parallel for schedule(static) if (total >= PAR_MIN)
    for (int c = 0; c < C; c++) {
        float sc = (float)((double)gamma[c] / sqrt((double)run_var[c] + (double)d->eps));
        float mf = run_mean[c], bt = beta[c];
        size_t step = blk ? (size_t)blk : 1;
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
 * g = dy (OPS_RELU: dy where the forward's y > 0, else 0, with y recomputed from x: see
 * relu_scale). dx may be dy. */
static void bn_backward(ops *o, const bn_desc *d, int flags, const float *x, const float *dy, const float *gamma,
                        const float *beta, const float *save_mean, const float *save_invstd, float *dx,
                        float *dgamma, float *dbeta) {
    int C = d->c, blk = (flags & OPS_BLK_IN) ? o->act_blk : 0, relu = (flags & OPS_RELU) != 0;
    size_t m = (size_t)d->n * (size_t)d->hw, total = m * (size_t)C;
    double *sdy = scratch(C), *sdx = sdy + C, *red = sdx + C;
    if (blk) {
        int P = nparts(d);
        double *pa = partials(C), *pb = pa + (size_t)P * C;
        /* fconsts: A, B, K (pass 2, below) then mf, sc, bt, the mask's constants (both passes) */
        float *muf = fconsts(C) + 3 * C, *sc = muf + C, *bt = sc + C;
        for (int c = 0; c < C; c++) {
            muf[c] = save_mean[c];
            sc[c] = relu ? relu_scale(gamma, save_invstd, c) : 0.0f, bt[c] = relu ? beta[c] : 0.0f;
        }
#pragma omp parallel for schedule(static) if (total >= PAR_MIN)
        for (int part = 0; part < P; part++) {
            int n0 = part_lo(d, part), n1 = part_lo(d, part + 1);
            size_t off = (size_t)part * C;
            if (blk == 16) bwd_sums_blk16(d, n0, n1, relu, x, dy, muf, sc, bt, pa + off, pb + off);
            else bwd_sums_blk8(d, n0, n1, relu, x, dy, muf, sc, bt, pa + off, pb + off);
        }
        add_parts(P, C, pa, pb, sdy, sdx);
    } else {
#pragma omp parallel for schedule(static) if (total >= PAR_MIN)
        for (int c = 0; c < C; c++) {
            double a = 0.0, b = 0.0, mu = save_mean[c];
            float mf = save_mean[c], sc = relu ? relu_scale(gamma, save_invstd, c) : 0.0f, bt = relu ? beta[c] : 0.0f;
            for (int n = 0; n < d->n; n++) {
                size_t off = at(d, 0, n, c, 0);
                const float *p = x + off, *g = dy + off;
#pragma omp simd reduction(+ : a, b)
                for (int i = 0; i < d->hw; i++) {
                    float gv = relu && !((p[i] - mf) * sc + bt > 0.0f) ? 0.0f : g[i];
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
        int P = nparts(d);
        float *k = fconsts(C), *A = k, *B = A + C, *K = B + C;   /* mf, sc, bt: set by pass 1 */
        for (int c = 0; c < C; c++) {
            double invstd = save_invstd[c];
            A[c] = (float)((double)gamma[c] * invstd), B[c] = (float)(red[c] / M);
            K[c] = (float)(invstd * red[C + c] / M);
        }
#pragma omp parallel for schedule(static) if (total >= PAR_MIN)
        for (int part = 0; part < P; part++) {
            int n0 = part_lo(d, part), n1 = part_lo(d, part + 1);
            if (blk == 16) bwd_dx_blk16(d, n0, n1, relu, x, dy, k, dx);
            else bwd_dx_blk8(d, n0, n1, relu, x, dy, k, dx);
        }
    } else {
#pragma omp parallel for schedule(static) if (total >= PAR_MIN)
        for (int c = 0; c < C; c++) {
            double invstd = save_invstd[c];
            float a = (float)((double)gamma[c] * invstd), b = (float)(red[c] / M);
            float k = (float)(invstd * red[C + c] / M), mf = save_mean[c];
            float sc = relu ? relu_scale(gamma, save_invstd, c) : 0.0f, bt = relu ? beta[c] : 0.0f;
            for (int n = 0; n < d->n; n++) {
                size_t off = at(d, 0, n, c, 0);
                const float *p = x + off, *g = dy + off;
                float *q = dx + off;
#pragma omp simd
                for (int i = 0; i < d->hw; i++) {
                    float xc = p[i] - mf;
                    float gv = relu && !(xc * sc + bt > 0.0f) ? 0.0f : g[i];
                    q[i] = a * (gv - b - xc * k);
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
    bn_backward(o, d, 0, x, dy, gamma, NULL, save_mean, save_invstd, dx, dgamma, dbeta);
}
void cpu_bn_bwd_l(ops *o, const bn_desc *d, int flags, const float *x, const float *y, const float *dy,
                  const float *gamma, const float *beta, const float *save_mean, const float *save_invstd, float *dx,
                  float *dgamma, float *dbeta) {
    (void)y;    /* the ReLU mask is recomputed from x (relu_scale) */
    bn_backward(o, d, flags, x, dy, gamma, beta, save_mean, save_invstd, dx, dgamma, dbeta);
}
