// cuda_bn.cu: BatchNorm on the GPU, exactly the definition of ops.h (biased variance to
// normalise, unbiased for the running variance, eps inside the square root, PyTorch's
// momentum), in the arithmetic of the reference (lib/ops_ref_impl.h): statistics and the
// per-element formulas in double, results rounded to float once.
//
// Per-channel sums: a channel's m = n*hw values are split in S slices (S chosen so that
// the whole grid has a few blocks per SM); block (c, s) sums its slice in double
// (k_bn_partial), then one thread per channel adds the S partial sums in slice order. No
// atomics: the same inputs give the same bits on every run. In a single process that
// adding is done by the kernel that needs the sum (the centred pass adds the first pass's
// partial sums itself, the statistics kernel the centred ones, the backward's collector
// rounds dgamma and dbeta), so a training BN is 4 kernels forward and 3 backward; with
// allreduce the sums are collected apart (k_bn_collect) for the trip to the host, with
// the same additions in the same order, so the bits are the same either way.
//
// Data-parallel training (ops.h, o->allreduce non-NULL): the per-channel sums are copied
// to the host, reduced, and copied back, in the layout of ops.h and of the ref and cpu
// backends (lib/ops_ref.c, lib/ops_cpu_bn.c), so that ranks on different backends agree:
//   bn_fwd_train: {sum x [c], m} then {sum (x-mean)^2 [c]};
//   bn_bwd:       {sum dy [c], sum dy*xhat [c], m}   (dx needs the global count m too).
//
// The per-element kernels (apply, infer, dx) find a value's channel without a division
// (cuda_index.h) and take 4 values a thread as a float4 where hw % 4 == 0 and the pointers
// are aligned (cuda_vec.cuh); each value's arithmetic is the same either way. The partial
// sums take groups of 4 where hw % 4 == 0 (float4 loads when aligned), so their order
// depends on the shape alone.
//
// Fused ReLU (ops.h OPS_RELU, the _l entries of ops_cuda.cu): the forward applies
// max(0, .) to the rounded float (NaN kept, as relu_fwd), the backward masks dy by the
// forward's output y > 0 (as relu_bwd) wherever it reads dy, so the fused ops give the
// bits of the separate ones. dx may be dy: each element reads its dy before writing dx.
#include <math.h>

#include "cuda_internal.h"
#include "cuda_reduce.cuh"
#include "cuda_vec.cuh"

enum { SUM_X, SUM_SQ, SUM_BWD };

// part[(q*C + c)*S + s] = slice s of channel c's sum of quantity q:
//   SUM_X: x;   SUM_SQ: (x - mean[c])^2;   SUM_BWD: q=0 dy, q=1 dy*(x - smean[c]), with dy
//   masked by ym > 0 when ym is not NULL (a fused ReLU's output).
// SUM_SQ with xpart (the SUM_X pass's partial sums, single process): mean[c] is made here,
// as k_bn_collect then k_bn_mean would make it (block (c, 0) stores it for the kernels after).
// A thread takes its values in groups of G consecutive ones of a plane (G = 4 where hw % 4
// == 0, else 1), added in order: the sums' order depends on the shape alone. vec: the
// pointers are 16-byte aligned, so a group is one float4 load (else G scalar loads: the
// same values, the same additions, the same bits).
template <int MODE, int G>
__device__ __forceinline__ void bn_partial(const float *x, const float *dy, const float *ym, double *mean,
                                           const float *smean, const double *xpart, double M, int C, cuda_div hwg,
                                           uint32_t mg, int vec, double *part) {
    int c = blockIdx.x, s = blockIdx.y, S = gridDim.y;
    double mu = MODE == SUM_BWD ? (double)smean[c] : 0.0;
    if (MODE == SUM_SQ && xpart) {
        __shared__ double mu_s;
        if (threadIdx.x == 0) {
            double a = 0.0;
            for (int k = 0; k < S; k++) a += xpart[(size_t)c * S + k];
            mu_s = M > 0 ? a / M : 0.0;
            if (s == 0) mean[c] = mu_s;
        }
        __syncthreads();
        mu = mu_s;
    } else if (MODE == SUM_SQ) {
        mu = mean[c];
    }
    double a = 0.0, b = 0.0;
    uint32_t hw = hwg.d;   // groups a plane
    for (uint32_t j = s * blockDim.x + threadIdx.x; j < mg; j += S * blockDim.x) {   // mg < 2^31: no wrap
        uint32_t ni = cuda_div_q(hwg, j), i = j - ni * hw;
        size_t at = ((size_t)ni * C + c) * hw + i;      // the group's index in the tensor
        float xv[G], dv[G], mv[G];
        load_v<G>(x, at, xv, vec);
        if (MODE == SUM_BWD) load_v<G>(dy, at, dv, vec);
        if (MODE == SUM_BWD && ym) load_v<G>(ym, at, mv, vec);
        for (int k = 0; k < G; k++) {
            if (MODE == SUM_X) {
                a += xv[k];
            } else if (MODE == SUM_SQ) {
                double v = (double)xv[k] - mu;
                a += v * v;
            } else {
                double g = ym && !(mv[k] > 0.0f) ? 0.0 : (double)dv[k];
                a += g;
                b += g * ((double)xv[k] - mu);
            }
        }
    }
    block_sum2(a, b);
    if (threadIdx.x == 0) {
        part[(size_t)c * S + s] = a;
        if (MODE == SUM_BWD) part[((size_t)C + c) * S + s] = b;
    }
}
// the kernels, by group (one template argument each: a launch names them in a macro)
template <int MODE>
__global__ void k_bn_partial(const float *x, const float *dy, const float *ym, double *mean, const float *smean,
                             const double *xpart, double M, int C, cuda_div hwg, uint32_t mg, int vec, double *part) {
    bn_partial<MODE, 1>(x, dy, ym, mean, smean, xpart, M, C, hwg, mg, vec, part);
}
template <int MODE>
__global__ void k_bn_partial4(const float *x, const float *dy, const float *ym, double *mean, const float *smean,
                              const double *xpart, double M, int C, cuda_div hwg, uint32_t mg, int vec, double *part) {
    bn_partial<MODE, 4>(x, dy, ym, mean, smean, xpart, M, C, hwg, mg, vec, part);
}

// sum[q*C + c] = sum over s of part[(q*C + c)*S + s], in slice order
__global__ void k_bn_collect(const double *part, int rows, int S, double *sum) {
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    double a = 0.0;
    for (int s = 0; s < S; s++) a += part[(size_t)r * S + s];
    sum[r] = a;
}

__global__ void k_bn_mean(const double *sum, double M, int C, double *mean) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c < C) mean[c] = M > 0 ? sum[c] / M : 0.0;
}

// From the centred sum of squares (sumsq[c], or the S partial sums sqpart[c*S ..] added in
// slice order): invstd, the saved statistics, the running averages.
__global__ void k_bn_stats(const double *sumsq, const double *sqpart, int S, const double *mean, double M, int C,
                           float eps, float momentum, double *invstd, float *save_mean, float *save_invstd,
                           float *run_mean, float *run_var) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    double sq = 0.0;
    if (sqpart)
        for (int k = 0; k < S; k++) sq += sqpart[(size_t)c * S + k];
    else
        sq = sumsq[c];
    double var = M > 0 ? sq / M : 0.0;                    // biased: normalises
    double is = 1.0 / sqrt(var + (double)eps);
    invstd[c] = is;
    if (save_mean) save_mean[c] = (float)mean[c];
    if (save_invstd) save_invstd[c] = (float)is;
    double mom = momentum, unbiased = M > 1 ? var * M / (M - 1) : var;
    if (run_mean) run_mean[c] = (float)((1.0 - mom) * (double)run_mean[c] + mom * mean[c]);
    if (run_var) run_var[c] = (float)((1.0 - mom) * (double)run_var[c] + mom * unbiased);
}

// relu_fwd's rule: NaN stays NaN (NaN < 0 is false)
__device__ inline float relu_if(float v, int relu) { return relu && v < 0.0f ? 0.0f : v; }

// the BN value v, rounded to float, plus the residual rv when there is one (rounded once,
// as the separate add kernel does), then the ReLU when asked
__device__ __forceinline__ float bn_out(float v, bool add, float rv, int relu) {
    if (add) v = __fadd_rn(v, rv);
    return relu_if(v, relu);
}

template <int V>
__global__ void k_bn_apply(const float *x, const float *gamma, const float *beta, const double *mean,
                           const double *invstd, cuda_chan ix, uint32_t nv, int relu, const float *r, float *y) {
    GROUPS(v, nv) {
        int c = cuda_chan_of(ix, v);
        double g = gamma[c], mu = mean[c], is = invstd[c], b = beta[c];
        float xv[V], rv[V], out[V];
        load_v<V>(x, v, xv);
        if (r) load_v<V>(r, v, rv);
        for (int k = 0; k < V; k++)
            out[k] = bn_out((float)(g * ((double)xv[k] - mu) * is + b), r != NULL, r ? rv[k] : 0.0f, relu);
        store_v<V>(y, v, out);
    }
}

template <int V>
__global__ void k_bn_infer(const float *x, const float *gamma, const float *beta, const float *run_mean,
                           const float *run_var, float eps, cuda_chan ix, uint32_t nv, int relu, const float *r,
                           float *y) {
    GROUPS(v, nv) {
        int c = cuda_chan_of(ix, v);
        double scale = (double)gamma[c] / sqrt((double)run_var[c] + (double)eps), mu = run_mean[c], b = beta[c];
        float xv[V], rv[V], out[V];
        load_v<V>(x, v, xv);
        if (r) load_v<V>(r, v, rv);
        for (int k = 0; k < V; k++)
            out[k] = bn_out((float)(scale * ((double)xv[k] - mu) + b), r != NULL, r ? rv[k] : 0.0f, relu);
        store_v<V>(y, v, out);
    }
}

// The backward's sums from their partial sums (in slice order, as k_bn_collect adds them):
// sum[c] = sum dy, sum[C + c] = sum dy*(x - mean) times invstd = sum dy*xhat; with finish,
// dbeta and dgamma rounded from them too (single process; with allreduce k_bn_bwd_round
// does that after the trip to the host).
__global__ void k_bn_collect_bwd(const double *part, int S, const float *save_invstd, int C, double *sum,
                                 float *dgamma, float *dbeta, int finish) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    double a = 0.0, b = 0.0;
    for (int k = 0; k < S; k++) a += part[(size_t)c * S + k];
    for (int k = 0; k < S; k++) b += part[((size_t)C + c) * S + k];
    b *= (double)save_invstd[c];
    sum[c] = a, sum[C + c] = b;
    if (finish) dbeta[c] = (float)a, dgamma[c] = (float)b;
}

// dbeta and dgamma rounded from the sums (with allreduce: after the trip to the host)
__global__ void k_bn_bwd_round(const double *sum, int C, float *dgamma, float *dbeta) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    dbeta[c] = (float)sum[c];
    dgamma[c] = (float)sum[C + c];
}

// dx = gamma*invstd/M * (M*dy - sum dy - xhat * sum dy*xhat)
template <int V>
__global__ void k_bn_bwd_dx(const float *x, const float *dy, const float *ym, const float *gamma,
                            const float *save_mean, const float *save_invstd, const double *sum, double M, int C,
                            cuda_chan ix, uint32_t nv, float *dx) {
    GROUPS(v, nv) {
        int c = cuda_chan_of(ix, v);
        double is = save_invstd[c], k = (double)gamma[c] * is / M, mu = save_mean[c];
        double s1 = sum[c], s2 = sum[C + c];
        float xv[V], dyv[V], ymv[V], out[V];
        load_v<V>(x, v, xv);
        load_v<V>(dy, v, dyv);
        if (ym) load_v<V>(ym, v, ymv);
        for (int j = 0; j < V; j++) {
            double xhat = ((double)xv[j] - mu) * is;
            double g = ym && !(ymv[j] > 0.0f) ? 0.0 : (double)dyv[j];
            out[j] = (float)(k * (M * g - s1 - xhat * s2));
        }
        store_v<V>(dx, v, out);     // after every read of this group: dx may be dy
    }
}

// ---- host side -------------------------------------------------------------------------

static unsigned small_blocks(int n) { return (unsigned)((n + CUDA_THREADS - 1) / CUDA_THREADS); }

// Slices per channel: about 2048 values per block, at most ~2048 blocks in all.
static int slices(int C, size_t m) {
    size_t s = (m + 2047) / 2048, cap = 2048 / (size_t)C;
    if (s > cap) s = cap;
    if (s > 65535) s = 65535;
    return s < 1 ? 1 : (int)s;
}

// The partial sums of one MODE into part (rows*C*S doubles, rows 2 for SUM_BWD), and with
// sum (allreduce) the rows*C sums collected into sum. xpart, M: see k_bn_partial.
template <int MODE>
static void channel_sums(const bn_desc *d, const float *x, const float *dy, const float *ym, double *mean,
                         const float *smean, const double *xpart, double M, double *part, int S, double *sum) {
    size_t m = (size_t)d->n * (size_t)d->hw;
    if (m > 2147483647u) cli_die("BatchNorm: a channel of %zu values is over the 2^31 - 1 its sums can index", m);
    dim3 grid((unsigned)d->c, (unsigned)S);
    int hw = d->hw > 0 ? d->hw : 1, G = hw % 4 ? 1 : 4;   // the group: by the shape alone
    int vec = G == 4 && cuda_vec_width(hw, x, MODE == SUM_BWD ? dy : NULL, MODE == SUM_BWD ? ym : NULL, NULL) == 4;
    cuda_div hwg = cuda_div_make((uint32_t)(hw / G));
    uint32_t mg = (uint32_t)(m / G);
    if (G == 4)
        k_bn_partial4<MODE><<<grid, CUDA_THREADS, 0, cuda_stream()>>>(x, dy, ym, mean, smean, xpart, M, d->c, hwg, mg, vec, part);
    else
        k_bn_partial<MODE><<<grid, CUDA_THREADS, 0, cuda_stream()>>>(x, dy, ym, mean, smean, xpart, M, d->c, hwg, mg, vec, part);
    CUDA_LAUNCH_CHECK();
    if (!sum) return;
    int rows = (MODE == SUM_BWD ? 2 : 1) * d->c;
    k_bn_collect<<<small_blocks(rows), CUDA_THREADS, 0, cuda_stream()>>>(part, rows, S, sum);
    CUDA_LAUNCH_CHECK();
}

// sum[0..k) summed over the ranks in place, with extra (host value) appended when with_extra
static double reduce_over_ranks(ops *o, double *sum, int k, int with_extra, double extra) {
    cuda_ctx *c = cuda_ctx_of(o);
    if (cuda_recording) {   // host copies cannot be recorded, nor may the buffer grow
        cuda_record_failed("BatchNorm's sums over the ranks go through the host", "reduce_over_ranks", __FILE__,
                           __LINE__);
        return 0.0;
    }
    double *h = (double *)cuda_ctx_hscratch(c, ((size_t)k + 1) * sizeof(double));
    CUDA_CHECK(cudaMemcpy(h, sum, (size_t)k * sizeof(double), cudaMemcpyDeviceToHost));
    if (with_extra) h[k] = extra;
    o->allreduce(o->allreduce_ctx, h, (size_t)k + (with_extra ? 1 : 0));
    CUDA_CHECK(cudaMemcpy(sum, h, (size_t)k * sizeof(double), cudaMemcpyHostToDevice));
    return with_extra ? h[k] : 0.0;
}

void cuda_bn_fwd_train_ex(ops *o, const bn_desc *d, int relu, const float *r, const float *x, const float *gamma,
                          const float *beta, float *y, float *save_mean, float *save_invstd, float *run_mean,
                          float *run_var) {
    cuda_ctx *c = cuda_ctx_of(o);
    if (d->c <= 0) return;
    int C = d->c;
    size_t m = d->n > 0 && d->hw > 0 ? (size_t)d->n * (size_t)d->hw : 0;
    int S = slices(C, m);
    // scratch: part [C*S] (sum x), part2 [C*S] (sum (x-mean)^2), sum [C], mean [C], invstd [C]
    double *part = (double *)cuda_ctx_scratch(c, (2 * (size_t)C * S + 3 * (size_t)C) * sizeof(double));
    double *part2 = part + (size_t)C * S, *sum = part2 + (size_t)C * S, *mean = sum + C, *invstd = mean + C;
    double M = (double)m;
    if (o->allreduce) {     // the sums go through the host: collected apart
        channel_sums<SUM_X>(d, x, NULL, NULL, NULL, NULL, NULL, 0.0, part, S, sum);
        M = reduce_over_ranks(o, sum, C, 1, M);
        k_bn_mean<<<small_blocks(C), CUDA_THREADS, 0, cuda_stream()>>>(sum, M, C, mean);
        CUDA_LAUNCH_CHECK();
        channel_sums<SUM_SQ>(d, x, NULL, NULL, mean, NULL, NULL, 0.0, part2, S, sum);
        reduce_over_ranks(o, sum, C, 0, 0.0);
    } else {                // the centred pass makes the mean, the statistics kernel adds its sums
        channel_sums<SUM_X>(d, x, NULL, NULL, NULL, NULL, NULL, 0.0, part, S, NULL);
        channel_sums<SUM_SQ>(d, x, NULL, NULL, mean, NULL, part, M, part2, S, NULL);
    }
    k_bn_stats<<<small_blocks(C), CUDA_THREADS, 0, cuda_stream()>>>(sum, o->allreduce ? NULL : part2, S, mean, M, C,
                                                                     d->eps, d->momentum, invstd, save_mean,
                                                                     save_invstd, run_mean, run_var);
    CUDA_LAUNCH_CHECK();
    if (!m) return;
    by_image_chunks("bn_fwd_train", d->n, (size_t)C * d->hw, [&](size_t off, size_t count) {
        const float *xs = x + off, *rs = r ? r + off : NULL;
        float *ys = y + off;
        cuda_span sp = cuda_span_make(C, d->hw, count, xs, rs, ys, NULL);
        if (sp.V == 4)
            k_bn_apply<4><<<cuda_blocks(sp.nv), CUDA_THREADS, 0, cuda_stream()>>>(xs, gamma, beta, mean, invstd, sp.ix, sp.nv, relu, rs, ys);
        else
            k_bn_apply<1><<<cuda_blocks(sp.nv), CUDA_THREADS, 0, cuda_stream()>>>(xs, gamma, beta, mean, invstd, sp.ix, sp.nv, relu, rs, ys);
        CUDA_LAUNCH_CHECK();
    });
}

void cuda_bn_fwd_train(ops *o, const bn_desc *d, const float *x, const float *gamma, const float *beta, float *y,
                       float *save_mean, float *save_invstd, float *run_mean, float *run_var) {
    cuda_bn_fwd_train_ex(o, d, 0, NULL, x, gamma, beta, y, save_mean, save_invstd, run_mean, run_var);
}

void cuda_bn_fwd_infer_ex(ops *o, const bn_desc *d, int relu, const float *r, const float *x, const float *gamma,
                          const float *beta, const float *run_mean, const float *run_var, float *y) {
    (void)o;
    if (d->c <= 0 || d->n <= 0 || d->hw <= 0) return;
    by_image_chunks("bn_fwd_infer", d->n, (size_t)d->c * d->hw, [&](size_t off, size_t count) {
        const float *xs = x + off, *rs = r ? r + off : NULL;
        float *ys = y + off;
        cuda_span sp = cuda_span_make(d->c, d->hw, count, xs, rs, ys, NULL);
        if (sp.V == 4)
            k_bn_infer<4><<<cuda_blocks(sp.nv), CUDA_THREADS, 0, cuda_stream()>>>(xs, gamma, beta, run_mean, run_var, d->eps, sp.ix, sp.nv, relu, rs, ys);
        else
            k_bn_infer<1><<<cuda_blocks(sp.nv), CUDA_THREADS, 0, cuda_stream()>>>(xs, gamma, beta, run_mean, run_var, d->eps, sp.ix, sp.nv, relu, rs, ys);
        CUDA_LAUNCH_CHECK();
    });
}

void cuda_bn_fwd_infer(ops *o, const bn_desc *d, const float *x, const float *gamma, const float *beta,
                       const float *run_mean, const float *run_var, float *y) {
    cuda_bn_fwd_infer_ex(o, d, 0, NULL, x, gamma, beta, run_mean, run_var, y);
}

void cuda_bn_bwd_ex(ops *o, const bn_desc *d, const float *ym, const float *x, const float *dy, const float *gamma,
                    const float *save_mean, const float *save_invstd, float *dx, float *dgamma, float *dbeta) {
    cuda_ctx *c = cuda_ctx_of(o);
    if (d->c <= 0) return;
    int C = d->c;
    size_t m = d->n > 0 && d->hw > 0 ? (size_t)d->n * (size_t)d->hw : 0;
    int S = slices(C, m);
    // scratch: part [2*C*S], sum [2*C]
    double *part = (double *)cuda_ctx_scratch(c, (2 * (size_t)C * S + 2 * (size_t)C) * sizeof(double));
    double *sum = part + 2 * (size_t)C * S;
    channel_sums<SUM_BWD>(d, x, dy, ym, NULL, save_mean, NULL, 0.0, part, S, NULL);
    k_bn_collect_bwd<<<small_blocks(C), CUDA_THREADS, 0, cuda_stream()>>>(part, S, save_invstd, C, sum, dgamma, dbeta,
                                                                           o->allreduce ? 0 : 1);
    CUDA_LAUNCH_CHECK();
    double M = (double)m;
    if (o->allreduce) {     // sums over the ranks, then dgamma and dbeta from them
        M = reduce_over_ranks(o, sum, 2 * C, 1, M);
        k_bn_bwd_round<<<small_blocks(C), CUDA_THREADS, 0, cuda_stream()>>>(sum, C, dgamma, dbeta);
        CUDA_LAUNCH_CHECK();
    }
    if (!dx || !m || !(M > 0)) return;
    by_image_chunks("bn_bwd", d->n, (size_t)C * d->hw, [&](size_t off, size_t count) {
        const float *xs = x + off, *dys = dy + off, *yms = ym ? ym + off : NULL;
        float *dxs = dx + off;
        cuda_span sp = cuda_span_make(C, d->hw, count, xs, dys, yms, dxs);
        if (sp.V == 4)
            k_bn_bwd_dx<4><<<cuda_blocks(sp.nv), CUDA_THREADS, 0, cuda_stream()>>>(xs, dys, yms, gamma, save_mean, save_invstd, sum, M, C, sp.ix, sp.nv, dxs);
        else
            k_bn_bwd_dx<1><<<cuda_blocks(sp.nv), CUDA_THREADS, 0, cuda_stream()>>>(xs, dys, yms, gamma, save_mean, save_invstd, sum, M, C, sp.ix, sp.nv, dxs);
        CUDA_LAUNCH_CHECK();
    });
}

void cuda_bn_bwd(ops *o, const bn_desc *d, const float *x, const float *dy, const float *gamma,
                 const float *save_mean, const float *save_invstd, float *dx, float *dgamma, float *dbeta) {
    cuda_bn_bwd_ex(o, d, NULL, x, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta);
}
