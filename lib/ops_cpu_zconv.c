/* ops_cpu_zconv.c: the "cpu" backend's own AVX-512 ("zmm") convolutions for the shapes where
 * oneDNN 2.6 leaves most of the machine idle: 3x3 pad-1 stride-1 convolutions of 16 channels
 * (ResNet-20's first stage: 65-80% of the fp32 peak in oneDNN, ~95% here) and the 1x1
 * pad-0 stride-2 projections (15-50% in oneDNN, in a step). Activations in nChw16c with
 * channel counts that are multiples of 16; ops_cpu_conv.c calls these where
 * cpu_zconv_wanted() says so (docs/cpu-ops.md has the measurements behind the rule).
 *
 * Layouts: x [n][cin/16][h][w][16], y [n][cout/16][ho][wo][16] (the backend's act_blk = 16);
 * weights and their gradient plain OIHW, repacked per call (a few KB) into
 * [out block][in block][kh][kw][in 16][out 16], so that one zmm register holds a weight's
 * 16 output channels.
 *
 * Forward: each thread takes whole images. A row is computed in runs of 16, 8, 4 and 1
 * output pixels, one zmm accumulator per pixel, summed over (in block, kh, kw, ic) in that
 * fixed order; the taps that fall on the zero padding (first and last rows and columns) are
 * left out by the loop bounds, so nothing is copied. Data gradient: for 3x3 stride 1 it is
 * the forward convolution of dy with the weights flipped in kh and kw and in and out
 * exchanged; for 1x1 stride 2 it is the 1x1 forward convolution of dy with the exchanged
 * weights, written to the even pixels of dx (the others are 0). (3x3 stride 2 was tried:
 * no faster than oneDNN, so it is not here.)
 *
 * Filter gradient: the batch is cut into parts fixed by the batch alone (as BatchNorm's,
 * ops_cpu_bn.c); a part's images are summed one after the other, each image's sum for one
 * (kh, kw) in registers (16 accumulators: 16 input channels x 16 output lanes) and then
 * added to the part's float partial; the parts are added in part order. So every result
 * here is the same bits whatever the thread count and from run to run.
 *
 * All arithmetic is explicit FMA (_mm512_fmadd_ps): one instance, no clones. Machines
 * without AVX-512 never get here (cpu_zconv_wanted is 0 there: oneDNN computes in nChw8c). */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ops_cpu.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define Z_HAVE 1
#include <immintrin.h>
#define Z_TARGET __attribute__((target("avx512f")))
#define Z_INLINE static inline __attribute__((always_inline)) Z_TARGET
#else
#define Z_HAVE 0
#endif

enum { LANES = 16, DIR_FWD = 0, DIR_BWD_DATA = 1, DIR_BWD_FILTER = 2 };

/* the shapes these kernels compute, every direction: 3x3 pad 1 stride 1, 1x1 pad 0 stride 2 */
static int shape_ok(const conv_desc *d) {
    return ((d->k == 3 && d->pad == 1 && d->stride == 1) || (d->k == 1 && d->pad == 0 && d->stride == 2)) &&
           d->n >= 1 && d->h >= 1 && d->w >= 1 && d->cin > 0 && d->cout > 0 && d->cin % LANES == 0 &&
           d->cout % LANES == 0;
}

int cpu_zconv_wanted(const conv_desc *d, int dir, int layout, int blk) {
#if Z_HAVE
    static int mode = -1;
    if (mode < 0) {
        /* BN_CPU_ZCONV=0: oneDNN for these shapes too */
        mode = cli_env_flag("BN_CPU_ZCONV", true) && __builtin_cpu_supports("avx512f");
    }
    if (!mode || blk != LANES || layout != (OPS_BLK_IN | OPS_BLK_OUT) || !shape_ok(d)) return 0;
    /* where they were measured faster than oneDNN in a training step (docs/cpu-ops.md):
     * the 16->16 3x3 ones, and the gradients of the 16->32 projection; with more channels
     * oneDNN's Winograd (3x3 forward and data gradient) and direct kernels are as fast or
     * faster, and so is its 1x1 stride-2 forward */
    if (d->k == 3) return d->cin == 16 && d->cout == 16;
    return dir != DIR_FWD && d->cin == 16;          /* 1x1 stride 2 */
#else
    (void)d, (void)dir, (void)layout, (void)blk;
    return 0;
#endif
}

#if Z_HAVE
static cpu_buf wpk;     /* the packed weights */

/* P[ob][ib][kh][kw][i][o] from OIHW w (k x k): flip = 0: o = output channel, i = input
 * channel; flip = 1 (data gradient): o = input channel, i = output channel, kh, kw mirrored */
static const float *pack(const float *w, int cout, int cin, int k, int flip) {
    int no = flip ? cin : cout, ni = flip ? cout : cin, kk = k * k;
    float *P = cpu_buf_get(&wpk, (size_t)no * ni * kk * sizeof *P);
    for (int o = 0; o < no; o++)
        for (int i = 0; i < ni; i++)
            for (int kh = 0; kh < k; kh++)
                for (int kw = 0; kw < k; kw++) {
                    size_t src = flip ? (((size_t)i * cin + o) * k + (k - 1 - kh)) * k + (k - 1 - kw)
                                      : (((size_t)o * cin + i) * k + kh) * k + kw;
                    size_t dst = ((((size_t)(o / LANES) * (ni / LANES) + i / LANES) * kk + kh * k + kw) * LANES +
                                  i % LANES) * LANES + o % LANES;
                    P[dst] = w[src];
                }
    return P;
}

/* ---- forward (and data gradient) ----------------------------------------------------- */
/* Where one convolution reads and writes: input blocks of h x w, output blocks written at
 * (oh * yrow + ow * ypix) in planes of yplane floats (a plain output: wo * 16, 16, ho * wo * 16;
 * the 1x1 stride-2 data gradient writes the even pixels of an h x w image) */
typedef struct {
    int n, ib, ob, h, w, ho, wo;
    size_t yrow, ypix, yplane;
} zgeo;

/* R output pixels of one row of one output block, kernel K x K (pad K/2), stride S. xb: the
 * input (block 0) at the first pixel's window centre; rows kh in [kh0, kh1) of the window
 * exist; lft: the run starts at column 0, so its first pixel's kw = 0 tap reads the zero
 * padding; rgt: its last pixel's kw = K-1 tap does (only those two can, for these shapes).
 * Those taps are left out; all of R, K, S, lft, rgt are constants once inlined, so each case
 * is its own straight-line code. wb: the packed weights of this output block. */
Z_INLINE void fwd_run(const int R, const int K, const int S, const int lft, const int rgt, const float *xb,
                      size_t row, size_t plane, int kh0, int kh1, int ib, const float *wb, const float *bias,
                      float *yq, size_t ypix) {
    const int P = K / 2;
    __m512 acc[16];
    __m512 b0 = bias ? _mm512_loadu_ps(bias) : _mm512_setzero_ps();
#pragma GCC unroll 16
    for (int p = 0; p < R; p++) acc[p] = b0;
    for (int b = 0; b < ib; b++)
        for (int kh = kh0; kh < kh1; kh++)
#pragma GCC unroll 3
            for (int kw = 0; kw < K; kw++) {
                const int p0 = lft && kw == 0 && P ? 1 : 0, p1 = rgt && kw == K - 1 ? R - 1 : R;
                /* the first pixel this tap reads (so no pointer before the input is formed) */
                const float *xs = xb + b * plane + (ptrdiff_t)(kh - P) * (ptrdiff_t)row + (p0 * S + kw - P) * LANES;
                const float *ws = wb + ((size_t)(b * K + kh) * K + kw) * LANES * LANES;
#pragma GCC unroll 4
                for (int ic = 0; ic < LANES; ic++) {
                    __m512 wv = _mm512_load_ps(ws + ic * LANES);
#pragma GCC unroll 16
                    for (int p = p0; p < p1; p++)
                        acc[p] = _mm512_fmadd_ps(_mm512_set1_ps(xs[(p - p0) * S * LANES + ic]), wv, acc[p]);
                }
            }
#pragma GCC unroll 16
    for (int p = 0; p < R; p++) _mm512_storeu_ps(yq + p * ypix, acc[p]);
}

/* one output row of one output block, in runs of R pixels while they fit, each with its
 * edge case; rgt_tap: the last column's kw = K-1 tap falls outside the input */
#define RUNS(R)                                                                                             \
    for (; c + (R) <= g->wo; c += (R)) {                                                                    \
        int l = c == 0, e = c + (R) == g->wo && rgt_tap;                                                    \
        const float *xb = xr + (size_t)c * S * LANES;                                                       \
        float *q = yr + (size_t)c * g->ypix;                                                                \
        if (l && e) fwd_run(R, K, S, 1, 1, xb, row, plane, kh0, kh1, g->ib, wb, bo, q, g->ypix);            \
        else if (l) fwd_run(R, K, S, 1, 0, xb, row, plane, kh0, kh1, g->ib, wb, bo, q, g->ypix);            \
        else if (e) fwd_run(R, K, S, 0, 1, xb, row, plane, kh0, kh1, g->ib, wb, bo, q, g->ypix);            \
        else fwd_run(R, K, S, 0, 0, xb, row, plane, kh0, kh1, g->ib, wb, bo, q, g->ypix);                   \
    }
Z_INLINE void fwd_image(const int K, const int S, const zgeo *g, const float *x, const float *Pw,
                        const float *bias, float *y) {
    const int P = K / 2;
    size_t row = (size_t)g->w * LANES, plane = (size_t)g->h * row;
    int rgt_tap = S * (g->wo - 1) + K - 1 - P >= g->w;
    for (int o = 0; o < g->ob; o++) {
        const float *wb = Pw + (size_t)o * g->ib * K * K * LANES * LANES, *bo = bias ? bias + o * LANES : NULL;
        for (int r = 0; r < g->ho; r++) {
            int c = 0, ih = S * r, kh0 = ih - P < 0 ? P - ih : 0, kh1 = ih + K - P > g->h ? g->h + P - ih : K;
            const float *xr = x + (size_t)ih * row;
            float *yr = y + o * g->yplane + (size_t)r * g->yrow;
            RUNS(16)
            RUNS(8)
            RUNS(4)
            RUNS(1)
        }
    }
}
#undef RUNS

static Z_TARGET void fwd_image_any(int K, int S, const zgeo *g, const float *x, const float *Pw, const float *bias,
                                   float *y) {
    if (K == 3) fwd_image(3, 1, g, x, Pw, bias, y);
    else if (S == 1) fwd_image(1, 1, g, x, Pw, bias, y);
    else fwd_image(1, 2, g, x, Pw, bias, y);
}

/* every image of x through the K x K stride-S convolution with packed weights Pw; zero:
 * clear each output image first (the 1x1 stride-2 data gradient writes only its even pixels) */
static void fwd_all(int K, int S, const zgeo *g, const float *x, const float *Pw, const float *bias, float *y,
                    int zero) {
    size_t xi = (size_t)g->ib * g->h * g->w * LANES, yi = (size_t)g->ob * g->yplane;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < g->n; i++) {
        if (zero) memset(y + i * yi, 0, yi * sizeof *y);
        fwd_image_any(K, S, g, x + i * xi, Pw, bias, y + i * yi);
    }
}

void cpu_zconv_fwd(const conv_desc *d, const float *x, const float *w, const float *b, float *y) {
    zgeo g = {d->n, d->cin / LANES, d->cout / LANES, d->h, d->w, d->ho, d->wo,
              (size_t)d->wo * LANES, LANES, (size_t)d->ho * d->wo * LANES};
    fwd_all(d->k, d->stride, &g, x, pack(w, d->cout, d->cin, d->k, 0), b, y, 0);
}

void cpu_zconv_bwd_data(const conv_desc *d, const float *dy, const float *w, float *dx) {
    if (d->stride == 1) {   /* 3x3: the flipped forward over dy */
        zgeo g = {d->n, d->cout / LANES, d->cin / LANES, d->h, d->w, d->h, d->w,
                  (size_t)d->w * LANES, LANES, (size_t)d->h * d->w * LANES};
        fwd_all(3, 1, &g, dy, pack(w, d->cout, d->cin, 3, 1), NULL, dx, 0);
    } else {                /* 1x1 stride 2: a 1x1 over dy (ho x wo) onto dx's even pixels */
        zgeo g = {d->n, d->cout / LANES, d->cin / LANES, d->ho, d->wo, d->ho, d->wo,
                  (size_t)2 * d->w * LANES, 2 * LANES, (size_t)d->h * d->w * LANES};
        fwd_all(1, 1, &g, dy, pack(w, d->cout, d->cin, 1, 1), NULL, dx, 1);
    }
}

/* ---- filter gradient ------------------------------------------------------------------ */
enum { MAX_PARTS = 32 };   /* up to 32 threads busy; the parts depend on the batch alone */
static cpu_buf parts;   /* the filter gradient's partial sums, one set per part */

/* the output rows (or columns) o in [*lo, *hi) whose input S o + k - P lies in [0, n) */
static inline void tap_range(int k, int P, int S, int n, int no, int *lo, int *hi) {
    int a = P - k, b = n - 1 + P - k;   /* need a <= S o <= b */
    *lo = a > 0 ? (a + S - 1) / S : 0;
    *hi = b < 0 ? 0 : b / S + 1;
    if (*hi > no) *hi = no;
}

/* acc[ic] (16 input channels, 16 output lanes) = the sum over the image's output pixels of
 * dy * x at the tap (kh, kw) of the pixel's window (where that is inside the image): dyi is
 * the image's output block [ho][wo][16], xi its input block [h][w][16]; added to part */
Z_INLINE void filt_tap(const int S, const conv_desc *d, const float *dyi, const float *xi, int kh, int kw,
                       float *part) {
    int P = d->pad, r0, r1, c0, c1;
    tap_range(kh, P, S, d->h, d->ho, &r0, &r1);
    tap_range(kw, P, S, d->w, d->wo, &c0, &c1);
    __m512 acc[LANES];
#pragma GCC unroll 16
    for (int ic = 0; ic < LANES; ic++) acc[ic] = _mm512_setzero_ps();
    for (int r = r0; r < r1; r++) {
        const float *g = dyi + ((size_t)r * d->wo + c0) * LANES;
        const float *xs = xi + ((size_t)(S * r + kh - P) * d->w + (S * c0 + kw - P)) * LANES;
        for (int c = c0; c < c1; c++, g += LANES, xs += S * LANES) {
            __m512 gv = _mm512_loadu_ps(g);
#pragma GCC unroll 16
            for (int ic = 0; ic < LANES; ic++) acc[ic] = _mm512_fmadd_ps(_mm512_set1_ps(xs[ic]), gv, acc[ic]);
        }
    }
#pragma GCC unroll 16
    for (int ic = 0; ic < LANES; ic++)
        _mm512_storeu_ps(part + ic * LANES, _mm512_add_ps(_mm512_loadu_ps(part + ic * LANES), acc[ic]));
}

static Z_TARGET void filt_tap_any(const conv_desc *d, const float *dyi, const float *xi, int kh, int kw,
                                  float *part) {
    if (d->stride == 1) filt_tap(1, d, dyi, xi, kh, kw, part);
    else filt_tap(2, d, dyi, xi, kh, kw, part);
}

/* part[ob][ib][kh][kw][ic 16][oc 16] over images [n0, n1); pb[cout] the bias sums (or NULL) */
static Z_TARGET void filt_part(const conv_desc *d, int n0, int n1, const float *x, const float *dy, float *part,
                               float *pb) {
    int ib = d->cin / LANES, ob = d->cout / LANES, K = d->k;
    size_t hw = (size_t)d->h * d->w, hwo = (size_t)d->ho * d->wo;
    memset(part, 0, (size_t)d->cout * d->cin * K * K * sizeof *part);
    if (pb) memset(pb, 0, (size_t)d->cout * sizeof *pb);
    for (int i = n0; i < n1; i++)
        for (int o = 0; o < ob; o++) {
            const float *dyi = dy + ((size_t)i * ob + o) * hwo * LANES;
            for (int b = 0; b < ib; b++)
                for (int kh = 0; kh < K; kh++)
                    for (int kw = 0; kw < K; kw++)
                        filt_tap_any(d, dyi, x + ((size_t)i * ib + b) * hw * LANES, kh, kw,
                                     part + ((((size_t)o * ib + b) * K + kh) * K + kw) * LANES * LANES);
            if (pb) {
                __m512 s = _mm512_setzero_ps();
                for (size_t j = 0; j < hwo; j++) s = _mm512_add_ps(s, _mm512_loadu_ps(dyi + j * LANES));
                _mm512_storeu_ps(pb + o * LANES, _mm512_add_ps(_mm512_loadu_ps(pb + o * LANES), s));
            }
        }
}

void cpu_zconv_bwd_filter(const conv_desc *d, const float *x, const float *dy, float *dw, float *db) {
    int P = d->n < MAX_PARTS ? d->n : MAX_PARTS, kk = d->k * d->k;
    size_t nw = (size_t)d->cout * d->cin * kk, nb = db ? (size_t)d->cout : 0, one = nw + nb;
    float *acc = cpu_buf_get(&parts, one * (size_t)P * sizeof *acc);
#pragma omp parallel for schedule(static)
    for (int q = 0; q < P; q++) {
        int n0 = (int)((long)d->n * q / P), n1 = (int)((long)d->n * (q + 1) / P);
        filt_part(d, n0, n1, x, dy, acc + one * q, db ? acc + one * q + nw : NULL);
    }
    int ib = d->cin / LANES;
    for (int o = 0; o < d->cout; o++)
        for (int i = 0; i < d->cin; i++)
            for (int k = 0; k < kk; k++) {
                size_t at = ((((size_t)(o / LANES) * ib + i / LANES) * kk + k) * LANES + i % LANES) * LANES + o % LANES;
                float s = 0.0f;
                for (int q = 0; q < P; q++) s += acc[one * q + at];
                dw[((size_t)o * d->cin + i) * kk + k] = s;
            }
    for (size_t o = 0; o < nb; o++) {
        float s = 0.0f;
        for (int q = 0; q < P; q++) s += acc[one * q + nw + o];
        db[o] = s;
    }
}
#else
void cpu_zconv_fwd(const conv_desc *d, const float *x, const float *w, const float *b, float *y) {
    (void)d, (void)x, (void)w, (void)b, (void)y;
    abort();
}
void cpu_zconv_bwd_data(const conv_desc *d, const float *dy, const float *w, float *dx) {
    (void)d, (void)dy, (void)w, (void)dx;
    abort();
}
void cpu_zconv_bwd_filter(const conv_desc *d, const float *x, const float *dy, float *dw, float *db) {
    (void)d, (void)x, (void)dy, (void)dw, (void)db;
    abort();
}
#endif
