/* ops_cpu_k3.c: the "cpu" backend's own AVX-512 kernels for 3x3, stride-1, pad-1
 * convolutions on nChw16c activations whose channel counts are multiples of 16 (in ResNet-20:
 * the six 16->16 convolutions of the first stage, 35% of a training step). oneDNN 2.6's
 * direct kernel reaches 65-80% of the machine's fp32 peak on 16 input channels; these reach
 * ~90% (docs/cpu-ops.md). ops_cpu_conv.c calls them where cpu_k3_wanted() says so.
 *
 * Layouts: x [n][cin/16][h][w][16], y [n][cout/16][h][w][16] (the backend's act_blk = 16);
 * weights and their gradient plain OIHW, repacked per call (a few KB) into
 * [out block][in block][kh][kw][in 16][out 16], so that one zmm register holds a weight's
 * 16 output channels.
 *
 * Forward: each thread takes whole images. A row is computed in runs of 16, 8, 4 and 1
 * output pixels, one zmm accumulator per pixel, summed over (in block, kh, kw, ic) in that
 * fixed order; the taps that fall on the zero padding (first and last row, first and last
 * column) are left out by the loop bounds, so nothing is copied. The data gradient of a
 * 3x3 stride-1 pad-1 convolution is the forward convolution of dy with the weights flipped
 * in kh and kw and in and out exchanged: the same code on other packed weights.
 *
 * Filter gradient: the batch is cut into parts fixed by the batch alone (as BatchNorm's,
 * ops_cpu_bn.c); a part's images are summed one after the other, each image's sum for one
 * (kh, kw) in registers (16 accumulators: 16 input channels x 16 output lanes) and then
 * added to the part's float partial; the parts are added in part order. So every result
 * here is the same bits whatever the thread count and from run to run.
 *
 * All arithmetic is explicit FMA (_mm512_fmadd_ps): one instance, no clones. Machines
 * without AVX-512 never get here (cpu_k3_wanted is 0 there: oneDNN computes in nChw8c). */
#include <stdlib.h>
#include <string.h>

#include "ops_cpu.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define K3_HAVE 1
#include <immintrin.h>
#define K3_TARGET __attribute__((target("avx512f")))
#define K3_INLINE static inline __attribute__((always_inline)) K3_TARGET
#else
#define K3_HAVE 0
#endif

enum { LANES = 16 };

int cpu_k3_wanted(const conv_desc *d, int dir, int layout, int blk) {
#if K3_HAVE
    static int mode = -1;
    if (mode < 0) {
        const char *s = getenv("BN_CPU_K3");    /* 0: oneDNN for these shapes too */
        mode = !(s && strcmp(s, "0") == 0) && __builtin_cpu_supports("avx512f");
    }
    if (!mode || blk != LANES || layout != (OPS_BLK_IN | OPS_BLK_OUT)) return 0;
    if (d->k != 3 || d->stride != 1 || d->pad != 1 || d->n < 1 || d->h < 1 || d->w < 1) return 0;
    if (d->cin % LANES || d->cout % LANES) return 0;
    /* where they were measured faster than oneDNN (docs/cpu-ops.md): the first stage's
     * 16 -> 16 in every direction; with more channels oneDNN's Winograd (forward, data
     * gradient) and direct kernels (filter gradient from 32) are as fast or faster */
    (void)dir;
    return d->cin == 16 && d->cout == 16;
#else
    (void)d, (void)dir, (void)layout, (void)blk;
    return 0;
#endif
}

#if K3_HAVE
/* ---- scratch: the packed weights and the filter gradient's partial sums (grown, never shrunk) */
static float *wpk;
static size_t wpk_len;

static float *grow(float **p, size_t *len, size_t want) {
    if (want > *len) {
        free(*p);
        *p = aligned_alloc(64, (want * sizeof **p + 63) / 64 * 64);
        if (!*p) abort();
        *len = want;
    }
    return *p;
}

/* P[ob][ib][kh][kw][i][o] from OIHW w: flip = 0: o = output channel, i = input channel;
 * flip = 1 (data gradient): o = input channel, i = output channel, kh, kw mirrored */
static const float *pack(const float *w, int cout, int cin, int flip) {
    int no = flip ? cin : cout, ni = flip ? cout : cin;
    float *P = grow(&wpk, &wpk_len, (size_t)no * ni * 9);
    for (int o = 0; o < no; o++)
        for (int i = 0; i < ni; i++)
            for (int kh = 0; kh < 3; kh++)
                for (int kw = 0; kw < 3; kw++) {
                    size_t src = flip ? (((size_t)i * cin + o) * 3 + (2 - kh)) * 3 + (2 - kw)
                                      : (((size_t)o * cin + i) * 3 + kh) * 3 + kw;
                    size_t dst = (((((size_t)(o / LANES) * (ni / LANES) + i / LANES) * 3 + kh) * 3 + kw) * LANES +
                                  i % LANES) * LANES + o % LANES;
                    P[dst] = w[src];
                }
    return P;
}

/* ---- forward (and data gradient) ----------------------------------------------------- */
/* R output pixels of one row of one output block. xb: the input (block 0) at the first
 * pixel's own position; rows kh in [kh0, kh1) of the window exist; lft / rgt: the run
 * starts at column 0 / ends at the last column, so that the kw = 0 tap of its first pixel /
 * the kw = 2 tap of its last one reads the zero padding and is left out (all constants
 * once inlined: each case is its own straight-line code). wb: the packed weights of this
 * output block. */
K3_INLINE void fwd_run(const int R, const int lft, const int rgt, const float *xb, size_t row, size_t plane,
                       int kh0, int kh1, int ib, const float *wb, const float *bias, float *yq) {
    __m512 acc[16];
    __m512 b0 = bias ? _mm512_loadu_ps(bias) : _mm512_setzero_ps();
#pragma GCC unroll 16
    for (int p = 0; p < R; p++) acc[p] = b0;
    for (int b = 0; b < ib; b++)
        for (int kh = kh0; kh < kh1; kh++)
#pragma GCC unroll 3
            for (int kw = 0; kw < 3; kw++) {
                const float *xs = xb + b * plane + (ptrdiff_t)(kh - 1) * (ptrdiff_t)row + (kw - 1) * LANES;
                const float *ws = wb + ((size_t)(b * 3 + kh) * 3 + kw) * LANES * LANES;
                const int p0 = lft && kw == 0 ? 1 : 0, p1 = rgt && kw == 2 ? R - 1 : R;
#pragma GCC unroll 4
                for (int ic = 0; ic < LANES; ic++) {
                    __m512 wv = _mm512_load_ps(ws + ic * LANES);
#pragma GCC unroll 16
                    for (int p = p0; p < p1; p++)
                        acc[p] = _mm512_fmadd_ps(_mm512_set1_ps(xs[p * LANES + ic]), wv, acc[p]);
                }
            }
#pragma GCC unroll 16
    for (int p = 0; p < R; p++) _mm512_storeu_ps(yq + p * LANES, acc[p]);
}

/* runs of R pixels from column *c while they fit, each with its edge case */
#define RUNS(R)                                                                                             \
    for (; *c + (R) <= w; *c += (R)) {                                                                      \
        int l = *c == 0, e = *c + (R) == w;                                                                 \
        const float *xb = xr + (size_t)*c * LANES;                                                          \
        float *q = yr + (size_t)*c * LANES;                                                                 \
        if (l && e) fwd_run(R, 1, 1, xb, row, plane, kh0, kh1, ib, wb, bo, q);                              \
        else if (l) fwd_run(R, 1, 0, xb, row, plane, kh0, kh1, ib, wb, bo, q);                              \
        else if (e) fwd_run(R, 0, 1, xb, row, plane, kh0, kh1, ib, wb, bo, q);                              \
        else fwd_run(R, 0, 0, xb, row, plane, kh0, kh1, ib, wb, bo, q);                                     \
    }
static K3_TARGET void fwd_row(int *c, int w, const float *xr, size_t row, size_t plane, int kh0, int kh1,
                              int ib, const float *wb, const float *bo, float *yr) {
    RUNS(16)
    RUNS(8)
    RUNS(4)
    RUNS(1)
}
#undef RUNS

/* y[n][ob][h][w][16] = the 3x3 pad-1 stride-1 convolution of x[n][ib][h][w][16], P packed */
static K3_TARGET void fwd_all(int n, int ib, int ob, int h, int w, const float *x, const float *P,
                              const float *bias, float *y) {
    size_t row = (size_t)w * LANES, plane = (size_t)h * row;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++)
        for (int o = 0; o < ob; o++) {
            const float *wb = P + (size_t)o * ib * 9 * LANES * LANES, *bo = bias ? bias + o * LANES : NULL;
            for (int r = 0; r < h; r++) {
                int c = 0, kh0 = r == 0 ? 1 : 0, kh1 = r == h - 1 ? 2 : 3;
                fwd_row(&c, w, x + (size_t)i * ib * plane + r * row, row, plane, kh0, kh1, ib, wb, bo,
                        y + ((size_t)i * ob + o) * plane + r * row);
            }
        }
}

void cpu_k3_fwd(const conv_desc *d, const float *x, const float *w, const float *b, float *y) {
    fwd_all(d->n, d->cin / LANES, d->cout / LANES, d->h, d->w, x, pack(w, d->cout, d->cin, 0), b, y);
}

void cpu_k3_bwd_data(const conv_desc *d, const float *dy, const float *w, float *dx) {
    fwd_all(d->n, d->cout / LANES, d->cin / LANES, d->h, d->w, dy, pack(w, d->cout, d->cin, 1), NULL, dx);
}

/* ---- filter gradient ------------------------------------------------------------------ */
enum { MAX_PARTS = 8 };
static float *parts;
static size_t parts_len;

/* acc[ic] (16 input channels, 16 output lanes) = the sum over the image's pixels of dy * x
 * at the pixel moved by (kh - 1, kw - 1) (where that is inside the image): dyi is the
 * image's output block [h][w][16], xi its input block; added to part */
K3_INLINE void filt_tap(const float *dyi, const float *xi, int h, int w, int kh, int kw, float *part) {
    __m512 acc[LANES];
#pragma GCC unroll 16
    for (int ic = 0; ic < LANES; ic++) acc[ic] = _mm512_setzero_ps();
    int r0 = kh == 0 ? 1 : 0, r1 = kh == 2 ? h - 1 : h, c0 = kw == 0 ? 1 : 0, c1 = kw == 2 ? w - 1 : w;
    for (int r = r0; r < r1; r++) {
        const float *g = dyi + ((size_t)r * w + c0) * LANES;
        const float *xs = xi + ((size_t)(r + kh - 1) * w + (c0 + kw - 1)) * LANES;
        for (int c = c0; c < c1; c++, g += LANES, xs += LANES) {
            __m512 gv = _mm512_loadu_ps(g);
#pragma GCC unroll 16
            for (int ic = 0; ic < LANES; ic++) acc[ic] = _mm512_fmadd_ps(_mm512_set1_ps(xs[ic]), gv, acc[ic]);
        }
    }
#pragma GCC unroll 16
    for (int ic = 0; ic < LANES; ic++)
        _mm512_storeu_ps(part + ic * LANES, _mm512_add_ps(_mm512_loadu_ps(part + ic * LANES), acc[ic]));
}

/* part[ob][ib][kh][kw][ic 16][oc 16] over images [n0, n1); pb[cout] the bias sums (or NULL) */
static K3_TARGET void filt_part(const conv_desc *d, int n0, int n1, const float *x, const float *dy, float *part,
                                float *pb) {
    int ib = d->cin / LANES, ob = d->cout / LANES, h = d->h, w = d->w;
    size_t hw = (size_t)h * w;
    memset(part, 0, (size_t)d->cout * d->cin * 9 * sizeof *part);
    if (pb) memset(pb, 0, (size_t)d->cout * sizeof *pb);
    for (int i = n0; i < n1; i++)
        for (int o = 0; o < ob; o++) {
            const float *dyi = dy + ((size_t)i * ob + o) * hw * LANES;
            for (int b = 0; b < ib; b++)
                for (int kh = 0; kh < 3; kh++)
                    for (int kw = 0; kw < 3; kw++)
                        filt_tap(dyi, x + ((size_t)i * ib + b) * hw * LANES, h, w, kh, kw,
                                 part + ((((size_t)o * ib + b) * 3 + kh) * 3 + kw) * LANES * LANES);
            if (pb) {
                __m512 s = _mm512_setzero_ps();
                for (size_t j = 0; j < hw; j++) s = _mm512_add_ps(s, _mm512_loadu_ps(dyi + j * LANES));
                _mm512_storeu_ps(pb + o * LANES, _mm512_add_ps(_mm512_loadu_ps(pb + o * LANES), s));
            }
        }
}

void cpu_k3_bwd_filter(const conv_desc *d, const float *x, const float *dy, float *dw, float *db) {
    int P = d->n < MAX_PARTS ? d->n : MAX_PARTS;
    size_t nw = (size_t)d->cout * d->cin * 9, nb = db ? (size_t)d->cout : 0, one = nw + nb;
    float *acc = grow(&parts, &parts_len, one * (size_t)P);
#pragma omp parallel for schedule(static)
    for (int q = 0; q < P; q++) {
        int n0 = (int)((long)d->n * q / P), n1 = (int)((long)d->n * (q + 1) / P);
        filt_part(d, n0, n1, x, dy, acc + one * q, db ? acc + one * q + nw : NULL);
    }
    int ib = d->cin / LANES;
    for (int o = 0; o < d->cout; o++)
        for (int i = 0; i < d->cin; i++)
            for (int k = 0; k < 9; k++) {
                size_t at = ((((size_t)(o / LANES) * ib + i / LANES) * 9 + k) * LANES + i % LANES) * LANES + o % LANES;
                float s = 0.0f;
                for (int q = 0; q < P; q++) s += acc[one * q + at];
                dw[((size_t)o * d->cin + i) * 9 + k] = s;
            }
    for (size_t o = 0; o < nb; o++) {
        float s = 0.0f;
        for (int q = 0; q < P; q++) s += acc[one * q + nw + o];
        db[o] = s;
    }
}
#else
void cpu_k3_fwd(const conv_desc *d, const float *x, const float *w, const float *b, float *y) {
    (void)d, (void)x, (void)w, (void)b, (void)y;
    abort();
}
void cpu_k3_bwd_data(const conv_desc *d, const float *dy, const float *w, float *dx) {
    (void)d, (void)dy, (void)w, (void)dx;
    abort();
}
void cpu_k3_bwd_filter(const conv_desc *d, const float *x, const float *dy, float *dw, float *db) {
    (void)d, (void)x, (void)dy, (void)dw, (void)db;
    abort();
}
#endif
