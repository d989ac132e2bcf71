// cuda_conv3.cu: 3x3 convolutions of stride 1 and padding 1 (nearly all of ResNet-20's
// arithmetic) in kernels of our own, in fp32 FMA arithmetic: forward, data gradient and
// filter gradient. Used in place of cuDNN with BN_CUDA_CONV=own, in the fp32 mode only (the
// tf32 mode's tensor cores are cuDNN's), for the shapes that fit (cuda_conv3_fits, cuda_conv3_filter_fits);
// any other shape still goes to cuDNN.
//
// Why: on an H200 cuDNN's NCHW fp32 FMA kernels ran ResNet-20's 16-64 channel layers at 3.8
// TFLOP/s, 6% of the chip's fp32 rate (docs/benchmarks.md, "GPU"). These kernels are
// register-blocked direct convolutions: each thread of the forward computes 4 (or 2) rows x 8
// output channels (32 sums, 8 FMAs per shared-memory load; 16 and 4.8), each lane of the filter
// gradient 8 output channels x 9 taps (72 sums, 6.5 FMAs per load).
//
// Deterministic, whatever the grid: every output is one thread's sum in a fixed order (input
// channel, then tap), and the filter gradient's partial sums are split by the shape alone
// (bands of F3_ROWS image rows, 128/W bands a block) and added in a fixed order, in double.
#include "cuda_internal.h"
#include "cuda_mem.h"

#if defined(__CUDACC__)
#define C3_UNROLL _Pragma("unroll")
#define C3_LDG(p) __ldg(p)   // read-only: the loads need not wait for the shared-memory stores
#else
#define C3_UNROLL
#define C3_LDG(p) (*(p))
#endif

// ---- forward and data gradient: one kernel ------------------------------------------------
//
// out[n][o][y][x] = sum over i, ky, kx of W(o, i, ky*3+kx) * in[n][i][y+ky-1][x+kx-1] (+ bias[o]),
// with W(o, i, t) = w[o*so + i*si + t] for the forward (so = cin*9, si = 9), and for the data
// gradient (in = dy, out = dx, the forward's weights flipped and transposed)
// W(o, i, t) = w[i*si + o*so + 8 - t] (so = 9, si = cin*9).
//
// A block: nb whole images of H x W pixels (nb*H*W <= C3_PIX) and C3_CO output channels. A
// thread: one column x of ROWS rows of one image, C3_CO channels (ROWS 4, or 2 where a grid of
// 4 would leave the SMs with under 4 warps each: conv3_plan). The sums' order does not
// depend on ROWS or nb: every variant gives the same bits. The weights of all input
// channels (at most C3_MAXIN) go to shared memory once, as float4s [channel][tap][o/4] (one
// broadcast load gives 4 of a thread's 8 channels). Input channels go C3_CI at a time
// through shared memory (the images with a zero border, which is written once; each thread
// copies its own ROWS pixels of each channel), the next round's read into registers while
// this one's are summed.
#define C3_CO 8
#define C3_CI 4
#define C3_MAXIN 64           // input channels at most (their weights in shared memory: 18 KB)
#define C3_PIX 1024
#define C3_TILE 6400          // floats of staged input: C3_CI * nb * (H+2) * (W+2) at most
#define C3_MIN_BLOCKS 256     // fewer images per block until the grid has this many (about 2 per SM of an H100/H200)
#define C3_FEW_THREADS 16896  // under this many threads at ROWS 4 (4 warps an SM of 132), ROWS 2: a guess to tune

// a thread's ROWS pixels of input channels i0 .. i0+ci-1 (src: channel i0's first pixel)
template <int ROWS>
__device__ __forceinline__ void c3_fetch(float (&pre)[C3_CI][ROWS], const float *src, size_t HW, int W, int ci) {
    C3_UNROLL for (int cc = 0; cc < C3_CI; cc++) {
        if (cc >= ci) break;
        C3_UNROLL for (int r = 0; r < ROWS; r++) pre[cc][r] = C3_LDG(src + cc * HW + (size_t)r * W);
    }
}

template <int ROWS>
__global__ void k_conv3(const float *in, const float *w, const float *bias, float *out, int n, int cin, int cout,
                        int H, int W, int nb, int so, int si, int flip) {
    __shared__ float tile[C3_TILE];
    __shared__ float4 wt[C3_MAXIN * 9 * 2];
    const int P = W + 2, img = (H + 2) * P, S = H / ROWS;
    const int t = threadIdx.x, x = t % W, s = (t / W) % S, b = t / (W * S);
    const int n0 = blockIdx.x * nb, o0 = blockIdx.y * C3_CO;
    const bool live = n0 + b < n;   // a thread past the last image still meets every barrier
    const size_t HW = (size_t)H * W;
    const float *src = in + (size_t)(n0 + b) * cin * HW + (size_t)s * ROWS * W + x;   // channel 0, this thread's pixels

    float pre[C3_CI][ROWS];   // the first round's pixels in flight while the weights are staged
    if (live) c3_fetch<ROWS>(pre, src, HW, W, cin < C3_CI ? cin : C3_CI);
    for (int e = t; e < C3_CI * nb * img; e += blockDim.x) tile[e] = 0.0f;   // the border stays 0
    for (int e = t; e < cin * 18; e += blockDim.x) {   // a block may have fewer threads than weights
        const int i = e / 18, tap = (e % 18) / 2, o = o0 + (e % 2) * 4;
        float v[4];
        for (int k = 0; k < 4; k++)
            v[k] = o + k < cout ? w[(size_t)(o + k) * so + (size_t)i * si + (flip ? 8 - tap : tap)] : 0.0f;
        wt[e] = make_float4(v[0], v[1], v[2], v[3]);
    }
    float acc[ROWS][C3_CO];
    C3_UNROLL for (int r = 0; r < ROWS; r++) C3_UNROLL for (int o = 0; o < C3_CO; o++) acc[r][o] = 0.0f;

    for (int i0 = 0; i0 < cin; i0 += C3_CI) {
        const int ci = cin - i0 < C3_CI ? cin - i0 : C3_CI;
        __syncthreads();   // the last round's reads are done
        if (live)
            C3_UNROLL for (int cc = 0; cc < C3_CI; cc++) {
                if (cc >= ci) break;
                float *dst = tile + (cc * nb + b) * img + (s * ROWS + 1) * P + x + 1;
                C3_UNROLL for (int r = 0; r < ROWS; r++) dst[r * P] = pre[cc][r];
            }
        __syncthreads();
        if (!live) continue;
        const int next = i0 + C3_CI;   // the next round's pixels in flight while this one is summed
        if (next < cin) c3_fetch<ROWS>(pre, src + (size_t)next * HW, HW, W, cin - next < C3_CI ? cin - next : C3_CI);
        for (int cc = 0; cc < ci; cc++) {
            const float *tb = tile + (cc * nb + b) * img + s * ROWS * P + x;
            float v[ROWS + 2][3];
            C3_UNROLL for (int r = 0; r < ROWS + 2; r++) C3_UNROLL for (int k = 0; k < 3; k++) v[r][k] = tb[r * P + k];
            const float4 *wp = wt + (i0 + cc) * 18;
            C3_UNROLL for (int ky = 0; ky < 3; ky++) C3_UNROLL for (int kx = 0; kx < 3; kx++) {
                const float4 a = wp[(ky * 3 + kx) * 2], c = wp[(ky * 3 + kx) * 2 + 1];
                C3_UNROLL for (int r = 0; r < ROWS; r++) {
                    const float xv = v[r + ky][kx];
                    acc[r][0] = __fmaf_rn(a.x, xv, acc[r][0]);
                    acc[r][1] = __fmaf_rn(a.y, xv, acc[r][1]);
                    acc[r][2] = __fmaf_rn(a.z, xv, acc[r][2]);
                    acc[r][3] = __fmaf_rn(a.w, xv, acc[r][3]);
                    acc[r][4] = __fmaf_rn(c.x, xv, acc[r][4]);
                    acc[r][5] = __fmaf_rn(c.y, xv, acc[r][5]);
                    acc[r][6] = __fmaf_rn(c.z, xv, acc[r][6]);
                    acc[r][7] = __fmaf_rn(c.w, xv, acc[r][7]);
                }
            }
        }
    }
    if (!live) return;
    C3_UNROLL for (int o = 0; o < C3_CO; o++) {
        if (o0 + o >= cout) break;
        const float bo = bias ? bias[o0 + o] : 0.0f;
        float *dst = out + ((size_t)(n0 + b) * cout + o0 + o) * HW + (size_t)s * ROWS * W + x;
        C3_UNROLL for (int r = 0; r < ROWS; r++) dst[(size_t)r * W] = bias ? __fadd_rn(acc[r][o], bo) : acc[r][o];
    }
}

static int is_3x3_same(const conv_desc *d) {
    return d->k == 3 && d->stride == 1 && d->pad == 1 && d->ho == d->h && d->wo == d->w && d->n > 0 && d->cin > 0 &&
           d->cout > 0;
}

// The blocking of a launch over n images of H x W with outc output channels: rows per
// thread and images per block; rows 0 when the shape does not fit these kernels.
struct c3_plan {
    int rows, nb;
};
static int rows_forced;   // cuda_conv3_set_rows (BN_CUDA_CONV3_ROWS): 0 chooses

static c3_plan conv3_plan(int n, int outc, int H, int W) {
    c3_plan p = {0, 0};
    if ((long)H * W > C3_PIX || n < 1 || outc < 1) return p;
    long groups = (outc + C3_CO - 1) / C3_CO;
    if (rows_forced) p.rows = H % rows_forced ? 0 : rows_forced;
    else if (H % 4 == 0 && (long)n * groups * H * W / 4 >= C3_FEW_THREADS) p.rows = 4;
    else p.rows = H % 2 ? 0 : 2;
    if (!p.rows) return p;
    int nb = C3_PIX / (H * W), fit = C3_TILE / (C3_CI * (H + 2) * (W + 2));
    if (fit < nb) nb = fit;
    if (nb > n) nb = n;
    if (nb < 1) return p.rows = 0, p;
    // the most images that still make C3_MIN_BLOCKS blocks, in whole warps where it can
    long per_image = (long)W * (H / p.rows);
    p.nb = nb;
    for (int k = nb; k >= 1; k--) {
        if (k > 1 && k * per_image % 32) continue;
        p.nb = k;
        if (((long)n + k - 1) / k * groups >= C3_MIN_BLOCKS) break;
    }
    return p;
}

extern "C" int cuda_conv3_set_rows(int rows) {
    if (rows != 0 && rows != 2 && rows != 4) return -1;
    rows_forced = rows;
    return 0;
}

// the forward's output channels are cout, the data gradient's cin (65535 groups at most: the grid's
// height); its input channels, at most C3_MAXIN, cin and cout
int cuda_conv3_fits(const conv_desc *d, int data_gradient) {
    int outc = data_gradient ? d->cin : d->cout, inc = data_gradient ? d->cout : d->cin;
    return is_3x3_same(d) && inc <= C3_MAXIN && conv3_plan(d->n, outc, d->h, d->w).rows > 0 &&
           (outc + C3_CO - 1) / C3_CO <= 65535;
}

static long served;   // cuda_mem.h cuda_conv3_served
extern "C" long cuda_conv3_served(void) { return served; }

static void launch_conv3(const float *in, const float *w, const float *bias, float *out, int n, int cin, int cout,
                         int H, int W, int so, int si, int flip) {
    c3_plan p = conv3_plan(n, cout, H, W);
    dim3 grid((unsigned)((n + p.nb - 1) / p.nb), (unsigned)((cout + C3_CO - 1) / C3_CO));
    unsigned threads = (unsigned)(p.nb * W * (H / p.rows));
    if (p.rows == 4)
        k_conv3<4><<<grid, threads, 0, cuda_stream()>>>(in, w, bias, out, n, cin, cout, H, W, p.nb, so, si, flip);
    else
        k_conv3<2><<<grid, threads, 0, cuda_stream()>>>(in, w, bias, out, n, cin, cout, H, W, p.nb, so, si, flip);
    CUDA_LAUNCH_CHECK();
    served++;
}

void cuda_conv3_fwd(const conv_desc *d, const float *x, const float *w, const float *b, float *y) {
    launch_conv3(x, w, b, y, d->n, d->cin, d->cout, d->h, d->w, d->cin * 9, 9, 0);
}

void cuda_conv3_bwd_data(const conv_desc *d, const float *dy, const float *w, float *dx) {
    launch_conv3(dy, w, NULL, dx, d->n, d->cout, d->cin, d->h, d->w, 9, d->cin * 9, 1);
}

// ---- filter gradient ----------------------------------------------------------------------
//
// dw[o][i][ky*3+kx] = sum over n, y, x of dy[n][o][y][x] * x[n][i][y+ky-1][x+kx-1].
// The N*H image rows, stacked, go in bands of F3_ROWS; a block takes 128/W bands (so the
// split of the sum depends on the shape alone), C3_CO = 8 output channels and F3_CI = 8
// input channels, one warp each. Lane l takes band row l % 16 and half l / 16 of its
// columns, and keeps all 8 x 9 sums of its input channel, sliding a 3x3 window of x along
// its row (3 new loads and 8 of dy per pixel, 72 FMAs). A band's x and dy go through
// shared memory, each warp copying its own channel's rows, 32/W at a time (x with a zero border: a band
// of 16 rows covers 16/H whole images when H < 16, each with its own border rows; rows of
// odd pitch, so that the 16 rows' lanes fall in different banks). The lanes' sums are added
// by a fixed shuffle tree; lane 0 writes the block's 72 partial sums of its channel, and
// k_conv3_sum adds the blocks' partials of each weight in double, in order.
#define F3_CI 8
#define F3_ROWS 16
#define F3_BANDS 4            // bands per block at W = 32 (f3_geom.bpb: 128 / W)
#define F3_XT 5120            // floats of staged x: F3_CI * segs * (R + 2) * PX
#define F3_DT 4224            // floats of staged dy: C3_CO * F3_ROWS * PD (W <= 32)

struct f3_geom {
    int R, segs, PX, PD;      // rows per image segment, segments per band, pitches
    int hs;                   // log2 H (H is a power of 2: cuda_conv3_filter_fits)
    int bpb;                  // bands per block: F3_BANDS * 32 / W, so that a lane sums as many pixels at any width
};
static f3_geom f3_geometry(int H, int W) {
    f3_geom g;
    g.R = H < F3_ROWS ? H : F3_ROWS;
    g.segs = F3_ROWS / g.R;
    g.PX = (W + 2) | 1;
    g.PD = W | 1;
    for (g.hs = 0; (1 << g.hs) < H; g.hs++) {}
    g.bpb = F3_BANDS * 32 / W;
    return g;
}

__global__ void k_conv3_filter(const float *x, const float *dy, float *part, int n, int cin, int cout, int H, int W,
                               f3_geom g, int nbands) {
    __shared__ float xs[F3_XT];
    __shared__ float ds[F3_DT];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int i = blockIdx.x * F3_CI + warp, o0 = blockIdx.y * C3_CO, z = blockIdx.z;
    const int r = lane & 15, half = lane >> 4, seg = r / g.R, yl = r % g.R, rows = g.R + 2;
    const int per = 32 / W, sj = lane / W, sc = lane % W;   // the copies: rows at a time, this lane's row and column
    const size_t HW = (size_t)H * W, M = (size_t)cout * cin * 9;

    // the border columns stay 0
    for (int e = threadIdx.x; e < F3_CI * g.segs * rows * g.PX; e += blockDim.x) xs[e] = 0.0f;
    float acc[C3_CO][9];
    C3_UNROLL for (int o = 0; o < C3_CO; o++) C3_UNROLL for (int k = 0; k < 9; k++) acc[o][k] = 0.0f;

    const int band_end = (z + 1) * g.bpb < nbands ? (z + 1) * g.bpb : nbands;
    for (int band = z * g.bpb; band < band_end; band++) {
        __syncthreads();   // the last band's reads are done
        // warp `warp` copies input channel i's rows (segment by segment, each with the rows
        // above and below it: image rows or the zero border) and output channel o0+warp's,
        // 32 / W rows at a time (lane: column sc of row sj + k * 32/W)
        if (sj < per) {
            // 4 loads in flight before their stores; the stacked row G is image G >> hs, row G & (H-1)
            for (int sg = 0; sg < g.segs; sg++) {
                const long G = (long)band * F3_ROWS + (long)sg * g.R;   // the segment's first stacked row
                const long im = G >> g.hs;
                const int ys = (int)(G & (H - 1));
                const float *src = x + ((size_t)im * cin + i) * HW + sc;
                const bool ok = i < cin && im < n;
                float *dst = xs + ((warp * g.segs + sg) * rows) * g.PX + sc + 1;
                for (int j0 = sj; j0 < rows; j0 += 4 * per) {
                    float v[4];
                    C3_UNROLL for (int k = 0; k < 4; k++) {
                        const int j = j0 + k * per, yy = ys + j - 1;
                        v[k] = ok && j < rows && yy >= 0 && yy < H ? C3_LDG(src + (size_t)yy * W) : 0.0f;
                    }
                    C3_UNROLL for (int k = 0; k < 4; k++)
                        if (j0 + k * per < rows) dst[(j0 + k * per) * g.PX] = v[k];
                }
            }
            const int o = o0 + warp;
            for (int j0 = sj; j0 < F3_ROWS; j0 += 4 * per) {
                float v[4];
                C3_UNROLL for (int k = 0; k < 4; k++) {
                    const long G = (long)band * F3_ROWS + j0 + k * per, im = G >> g.hs;
                    const int yy = (int)(G & (H - 1));
                    v[k] = o < cout && im < n && j0 + k * per < F3_ROWS
                               ? C3_LDG(dy + ((size_t)im * cout + o) * HW + (size_t)yy * W + sc)
                               : 0.0f;
                }
                C3_UNROLL for (int k = 0; k < 4; k++)
                    if (j0 + k * per < F3_ROWS) ds[(warp * F3_ROWS + j0 + k * per) * g.PD + sc] = v[k];
            }
        }
        __syncthreads();
        const float *xr = xs + ((warp * g.segs + seg) * rows + yl) * g.PX;   // + ky*PX: the window's rows
        const float *dr = ds + r * g.PD;                                     // + o*F3_ROWS*PD
        const int c0 = half * (W / 2), c1 = c0 + W / 2;
        float xw[3][3];
        C3_UNROLL for (int ky = 0; ky < 3; ky++) xw[ky][0] = xr[ky * g.PX + c0], xw[ky][1] = xr[ky * g.PX + c0 + 1];
        for (int c = c0; c < c1; c++) {
            C3_UNROLL for (int ky = 0; ky < 3; ky++) xw[ky][2] = xr[ky * g.PX + c + 2];
            C3_UNROLL for (int o = 0; o < C3_CO; o++) {
                const float dv = dr[o * F3_ROWS * g.PD + c];
                C3_UNROLL for (int ky = 0; ky < 3; ky++) C3_UNROLL for (int kx = 0; kx < 3; kx++)
                    acc[o][ky * 3 + kx] = __fmaf_rn(dv, xw[ky][kx], acc[o][ky * 3 + kx]);
            }
            C3_UNROLL for (int ky = 0; ky < 3; ky++) xw[ky][0] = xw[ky][1], xw[ky][1] = xw[ky][2];
        }
    }
    C3_UNROLL for (int o = 0; o < C3_CO; o++) C3_UNROLL for (int k = 0; k < 9; k++) {
        float v = acc[o][k];
        for (int off = 16; off > 0; off >>= 1) v = __fadd_rn(v, __shfl_down_sync(0xffffffffu, v, off));
        acc[o][k] = v;
    }
    if (lane != 0 || i >= cin) return;
    for (int o = 0; o < C3_CO && o0 + o < cout; o++)
        for (int k = 0; k < 9; k++) part[(size_t)z * M + ((size_t)(o0 + o) * cin + i) * 9 + k] = acc[o][k];
}

// dw[e] = the sum over the nz blocks' partials of weight e, in double, in order
__global__ void k_conv3_sum(const float *part, int nz, size_t m, float *dw) {
    GRID_STRIDE(e, m) {
        double s = 0.0;
        for (int z = 0; z < nz; z++) s += part[(size_t)z * m + e];
        dw[e] = (float)s;
    }
}

static int f3_bands(const conv_desc *d) { return (int)(((long)d->n * d->h + F3_ROWS - 1) / F3_ROWS); }
static int f3_blocks(const conv_desc *d) {   // blocks along the bands (the grid's depth)
    int bpb = f3_geometry(d->h, d->w).bpb;
    return (f3_bands(d) + bpb - 1) / bpb;
}

size_t cuda_conv3_filter_workspace(const conv_desc *d) {
    size_t nz = (size_t)f3_blocks(d);
    return nz * (size_t)d->cout * d->cin * 9 * sizeof(float);
}

// rows of at most 32 pixels, in two halves; bands of whole images or whole halves of them
int cuda_conv3_filter_fits(const conv_desc *d) {
    if (!is_3x3_same(d) || d->w > 32 || d->w % 2 || d->h > 32 || (d->h % F3_ROWS && F3_ROWS % d->h)) return 0;
    f3_geom g = f3_geometry(d->h, d->w);   // the staged band within shared memory; the grid's height and depth
    return F3_CI * g.segs * (g.R + 2) * g.PX <= F3_XT && C3_CO * F3_ROWS * g.PD <= F3_DT &&
           (d->cout + C3_CO - 1) / C3_CO <= 65535 && f3_blocks(d) <= 65535;
}

void cuda_conv3_bwd_filter(const conv_desc *d, const float *x, const float *dy, float *dw, float *part) {
    f3_geom g = f3_geometry(d->h, d->w);
    int nbands = f3_bands(d), nz = f3_blocks(d);
    dim3 grid((unsigned)((d->cin + F3_CI - 1) / F3_CI), (unsigned)((d->cout + C3_CO - 1) / C3_CO), (unsigned)nz);
    k_conv3_filter<<<grid, F3_CI * 32, 0, cuda_stream()>>>(x, dy, part, d->n, d->cin, d->cout, d->h, d->w, g, nbands);
    CUDA_LAUNCH_CHECK();
    size_t m = (size_t)d->cout * d->cin * 9;
    k_conv3_sum<<<cuda_blocks(m), CUDA_THREADS, 0, cuda_stream()>>>(part, nz, m, dw);
    CUDA_LAUNCH_CHECK();
    served++;
}
