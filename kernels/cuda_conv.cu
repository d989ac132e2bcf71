// cuda_conv.cu: convolutions through cuDNN (legacy convolution API): forward, backward
// data, backward filter, with the bias gradient in a kernel of our own.
//
// Algorithms: chosen once per shape and direction, on first use, and cached with the
// shape's descriptors (cuda_internal.h: conv_entry). By default cuDNN's heuristics
// (cudnnGet*_v7) order the candidates and we take the first DETERMINISTIC one that runs in
// fp32 FMA arithmetic (no tensor cores, so no TF32) with at most WS_LIMIT bytes of
// workspace; with BN_CUDNN_FIND=1 cudnnFind* times every algorithm and we take the fastest
// such one (off by default: another process may time them otherwise, choose another
// algorithm and give other bits). When nothing qualifies, the deterministic GEMM-based
// algorithm of that direction. Every descriptor has math type CUDNN_FMA_MATH, except in the "tf32" mode
// (ops.h set_precision): candidates are searched under CUDNN_DEFAULT_MATH, which lets cuDNN
// use TF32 tensor cores for float data (as PyTorch's allow_tf32 does), tensor-op candidates
// are accepted, and each direction runs with its candidate's math type (set on the shared
// descriptor before each call, as PyTorch does); fp16 conversion
// (TENSOR_OP_MATH_ALLOW_CONVERSION) never. The workspace is one buffer
// grown as needed (cuda_ctx_workspace). BN_CUDA_VERBOSE=1 prints each choice.
//
// With BN_CUDA_CONV=own, 3x3 stride-1 shapes in fp32 go to cuda_conv3.cu's kernels instead.
//
// Zero-sized shapes (no batch, no output pixels, no input channels) never reach cuDNN,
// which rejects them: the outputs are what the reference gives (zeros, or the bias).
#include <stdio.h>
#include <string.h>

#include "cuda_internal.h"
#include "cuda_reduce.cuh"

#define WS_LIMIT ((size_t)1 << 30)
#define MAX_ALGOS 16

static const float one = 1.0f, zero = 0.0f;

static int same_shape(const conv_desc *a, const conv_desc *b) {
    return a->n == b->n && a->cin == b->cin && a->h == b->h && a->w == b->w && a->cout == b->cout && a->k == b->k &&
           a->stride == b->stride && a->pad == b->pad;
}

static conv_entry *entry_for(cuda_ctx *c, const conv_desc *d) {
    for (int i = 0; i < c->nconv; i++)
        if (same_shape(&c->conv[i].key, d)) return &c->conv[i];
    if (c->nconv == c->capconv) {
        int cap = c->capconv ? 2 * c->capconv : 32;
        conv_entry *p = (conv_entry *)realloc(c->conv, (size_t)cap * sizeof *p);
        if (!p) cli_die("out of memory for the convolution cache");
        c->conv = p;
        c->capconv = cap;
    }
    conv_entry *e = &c->conv[c->nconv];
    memset(e, 0, sizeof *e);
    e->key = *d;
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&e->x));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&e->y));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&e->bias));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&e->w));
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&e->conv));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(e->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, d->n, d->cin, d->h, d->w));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(e->y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, d->n, d->cout, d->ho, d->wo));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(e->bias, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, d->cout, 1, 1));
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(e->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, d->cout, d->cin, d->k, d->k));
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(e->conv, d->pad, d->pad, d->stride, d->stride, 1, 1,
                                                CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    CUDNN_CHECK(cudnnSetConvolutionMathType(e->conv, c->tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH));
    int n, co, ho, wo;
    CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(e->conv, e->x, e->w, &n, &co, &ho, &wo));
    if (n != d->n || co != d->cout || ho != d->ho || wo != d->wo)
        cli_die("cuDNN's output shape %dx%dx%dx%d is not conv_desc's %dx%dx%dx%d (kernels/cuda_conv.cu)", n, co, ho, wo,
                d->n, d->cout, d->ho, d->wo);
    c->nconv++;
    return e;
}

// The first candidate (fastest first, or in the heuristics' order) that ran, is
// deterministic (the same seed gives the same bits), needs at most WS_LIMIT of workspace and,
// in fp32 mode, runs under FMA math: cuDNN reports each candidate's math type, and under an
// FMA descriptor only FMA ones (PyTorch asserts as much), but a candidate of another type
// may have been fast only on tensor cores, or have no FMA kernel for the shape at all. In
// tf32 mode any math type but fp16 conversion. -1 when none qualifies: the caller's
// deterministic GEMM-based algorithm then.
// The math type a direction runs with: FMA in fp32 mode; in tf32 mode the chosen
// candidate's (cuDNN timed it with that math type), or the default math.
template <typename Perf> static cudnnMathType_t math_of(const cuda_ctx *c, const Perf *p, int i) {
    if (!c->tf32) return CUDNN_FMA_MATH;
    return i >= 0 ? p[i].mathType : CUDNN_DEFAULT_MATH;
}
template <typename Perf> static int pick(const Perf *p, int n, int tf32) {
    for (int i = 0; i < n; i++) {
        if (p[i].status != CUDNN_STATUS_SUCCESS || p[i].memory > WS_LIMIT) continue;
        if (p[i].determinism != CUDNN_DETERMINISTIC) continue;
        if (p[i].mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) continue;   // fp16: never
        if (!tf32 && p[i].mathType != CUDNN_FMA_MATH) continue;
        return i;
    }
    return -1;
}

// cudnnFind could not time the candidates: with BN_CUDNN_FIND unset (not asked), or out of
// memory for its trials (host or device), or the problem not supported (cuDNN 9 says why
// in finer codes: 3000-3004, 3010-3012), the heuristics order them instead; any other
// failure is a fault and ends the program here, not later: perhaps an earlier kernel's, or
// the machine's (3005-3009: the driver, the runtime, the architecture, a sub-library).
static bool find_may_fail(cudnnStatus_t s) {
    switch ((int)s) {
    case CUDNN_STATUS_NOT_SUPPORTED:
    case CUDNN_STATUS_NOT_SUPPORTED_GRAPH_PATTERN:
    case CUDNN_STATUS_NOT_SUPPORTED_SHAPE:
    case CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE:
    case CUDNN_STATUS_NOT_SUPPORTED_LAYOUT:
    case CUDNN_STATUS_NOT_SUPPORTED_SHARED_MEMORY_INSUFFICIENT:
    case CUDNN_STATUS_NOT_SUPPORTED_PADDING:
    case CUDNN_STATUS_NOT_SUPPORTED_BAD_LAUNCH_PARAM:
    case CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED:
    case CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED: return true;
    default: return false;
    }
}
static void find_failed(const cuda_ctx *c, cudnnStatus_t s, const char *call) {
    if (s == CUDNN_STATUS_NOT_SUPPORTED && !c->find) return;   // not asked
    if (!find_may_fail(s)) cudnn_check_(s, call, __FILE__, __LINE__);
    const char *why = cuda_cudnn_last_error();   // read (and so cleared) even when not shown
    if (c->verbose)
        fprintf(stderr, "cuda: cudnnFind gave %s%s%s: heuristics order the algorithms\n", cudnnGetErrorString(s),
                *why ? ": " : "", why);
}

static const char *math_name(cudnnMathType_t m) {
    switch (m) {
    case CUDNN_DEFAULT_MATH: return "default";
    case CUDNN_TENSOR_OP_MATH: return "tensor-op";
    case CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION: return "tensor-op+conversion";
    case CUDNN_FMA_MATH: return "fma";
    default: return "?";
    }
}

template <typename Perf> static void report(const conv_desc *d, const char *dir, const Perf *p, int i, int algo,
                                            size_t ws) {
    fprintf(stderr, "cuda: conv n%d %d->%d %dx%d k%d s%d p%d %s: algo %d%s, timed under %s math, workspace %zu bytes",
            d->n, d->cin, d->cout, d->h, d->w, d->k, d->stride, d->pad, dir, algo,
            i >= 0 && p[i].determinism != CUDNN_DETERMINISTIC ? " (non-deterministic)" : "",
            i >= 0 ? math_name(p[i].mathType) : "no", ws);
    if (i >= 0 && p[i].time >= 0) fprintf(stderr, ", %.4f ms", p[i].time);
    fprintf(stderr, "%s\n", i < 0 ? " (fallback)" : "");
}

// the math type the candidates are searched with (a direction chosen before may have left another)
static void search_math(const cuda_ctx *c, conv_entry *e) {
    CUDNN_CHECK(cudnnSetConvolutionMathType(e->conv, c->tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH));
}

// Choosing an algorithm times candidates (synchronising) and may grow the workspace: never
// while a step is being recorded. The first full step runs op by op for that; a shape first
// seen while recording makes the recording fail (nothing of it runs), and the step then
// runs op by op, choosing as usual.
static int recording_refused(const char *dir) {
    if (!cuda_recording) return 0;
    cuda_record_failed("a convolution shape first seen while recording a step", dir, __FILE__, __LINE__);
    return 1;
}

void cuda_conv_cache_clear(cuda_ctx *c) {
    c->gen++;       // recorded steps used these plans
    for (int i = 0; i < c->nconv; i++) {
        conv_entry *e = &c->conv[i];
        CUDNN_CHECK(cudnnDestroyTensorDescriptor(e->x));
        CUDNN_CHECK(cudnnDestroyTensorDescriptor(e->y));
        CUDNN_CHECK(cudnnDestroyTensorDescriptor(e->bias));
        CUDNN_CHECK(cudnnDestroyFilterDescriptor(e->w));
        CUDNN_CHECK(cudnnDestroyConvolutionDescriptor(e->conv));
    }
    c->nconv = 0;
}

static void choose_fwd(cuda_ctx *c, conv_entry *e) {
    if (recording_refused("choosing the fwd algorithm")) return;
    search_math(c, e);
    cudnnConvolutionFwdAlgoPerf_t p[MAX_ALGOS];
    int n = 0;
    cudnnStatus_t s = CUDNN_STATUS_NOT_SUPPORTED;
    if (c->find) s = cudnnFindConvolutionForwardAlgorithm(c->dnn, e->x, e->w, e->conv, e->y, MAX_ALGOS, &n, p);
    if (s != CUDNN_STATUS_SUCCESS) {
        find_failed(c, s, "cudnnFindConvolutionForwardAlgorithm");
        for (int i = 0; i < MAX_ALGOS; i++) p[i].time = -1.0f;
        CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(c->dnn, e->x, e->w, e->conv, e->y, MAX_ALGOS, &n, p));
    }
    int i = pick(p, n, c->tf32);
    e->fwd = i >= 0 ? p[i].algo : CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
    e->fwd_math = math_of(c, p, i);
    CUDNN_CHECK(cudnnSetConvolutionMathType(e->conv, e->fwd_math));
    CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(c->dnn, e->x, e->w, e->conv, e->y, e->fwd, &e->fwd_ws));
    e->have_fwd = 1;
    if (c->verbose) report(&e->key, "fwd", p, i, (int)e->fwd, e->fwd_ws);
}

static void choose_bwd_data(cuda_ctx *c, conv_entry *e) {
    if (recording_refused("choosing the bwd data algorithm")) return;
    search_math(c, e);
    cudnnConvolutionBwdDataAlgoPerf_t p[MAX_ALGOS];
    int n = 0;
    cudnnStatus_t s = CUDNN_STATUS_NOT_SUPPORTED;
    if (c->find) s = cudnnFindConvolutionBackwardDataAlgorithm(c->dnn, e->w, e->y, e->conv, e->x, MAX_ALGOS, &n, p);
    if (s != CUDNN_STATUS_SUCCESS) {
        find_failed(c, s, "cudnnFindConvolutionBackwardDataAlgorithm");
        for (int i = 0; i < MAX_ALGOS; i++) p[i].time = -1.0f;
        CUDNN_CHECK(
            cudnnGetConvolutionBackwardDataAlgorithm_v7(c->dnn, e->w, e->y, e->conv, e->x, MAX_ALGOS, &n, p));
    }
    int i = pick(p, n, c->tf32);
    e->bwd_data = i >= 0 ? p[i].algo : CUDNN_CONVOLUTION_BWD_DATA_ALGO_1;
    e->bwd_data_math = math_of(c, p, i);
    CUDNN_CHECK(cudnnSetConvolutionMathType(e->conv, e->bwd_data_math));
    CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(c->dnn, e->w, e->y, e->conv, e->x, e->bwd_data,
                                                             &e->bwd_data_ws));
    e->have_bwd_data = 1;
    if (c->verbose) report(&e->key, "bwd_data", p, i, (int)e->bwd_data, e->bwd_data_ws);
}

static void choose_bwd_filter(cuda_ctx *c, conv_entry *e) {
    if (recording_refused("choosing the bwd filter algorithm")) return;
    search_math(c, e);
    cudnnConvolutionBwdFilterAlgoPerf_t p[MAX_ALGOS];
    int n = 0;
    cudnnStatus_t s = CUDNN_STATUS_NOT_SUPPORTED;
    if (c->find)
        s = cudnnFindConvolutionBackwardFilterAlgorithm(c->dnn, e->x, e->y, e->conv, e->w, MAX_ALGOS, &n, p);
    if (s != CUDNN_STATUS_SUCCESS) {
        find_failed(c, s, "cudnnFindConvolutionBackwardFilterAlgorithm");
        for (int i = 0; i < MAX_ALGOS; i++) p[i].time = -1.0f;
        CUDNN_CHECK(
            cudnnGetConvolutionBackwardFilterAlgorithm_v7(c->dnn, e->x, e->y, e->conv, e->w, MAX_ALGOS, &n, p));
    }
    int i = pick(p, n, c->tf32);
    e->bwd_filter = i >= 0 ? p[i].algo : CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1;
    e->bwd_filter_math = math_of(c, p, i);
    CUDNN_CHECK(cudnnSetConvolutionMathType(e->conv, e->bwd_filter_math));
    CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(c->dnn, e->x, e->y, e->conv, e->w, e->bwd_filter,
                                                               &e->bwd_filter_ws));
    e->have_bwd_filter = 1;
    if (c->verbose) report(&e->key, "bwd_filter", p, i, (int)e->bwd_filter, e->bwd_filter_ws);
}

// ---- kernels of our own ----------------------------------------------------------------

// y[n, c, hw] = b[c] (or 0 when b is NULL): the forward pass with no input channel
__global__ void k_fill_channels(float *y, const float *b, int c, int hw, size_t total) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x)
        y[i] = b ? b[(i / hw) % c] : 0.0f;
}

// db[co] = sum over n and the ho*wo pixels of dy[n, co, :]: one block per channel, in double
__global__ void k_bias_grad(const float *dy, int n, int cout, int hw, float *db) {
    int co = blockIdx.x;
    double a = 0.0, unused = 0.0;
    size_t m = (size_t)n * hw;
    for (size_t j = threadIdx.x; j < m; j += blockDim.x) {
        size_t ni = j / hw, i = j - ni * hw;
        a += dy[(ni * cout + co) * hw + i];
    }
    block_sum2(a, unused);
    if (threadIdx.x == 0) db[co] = (float)a;
}

static int empty(const conv_desc *d) {
    return d->n <= 0 || d->cin <= 0 || d->cout <= 0 || d->h <= 0 || d->w <= 0 || d->k <= 0 || d->stride <= 0 ||
           d->ho <= 0 || d->wo <= 0;
}

static size_t count(long long a, long long b, long long c, long long d) {
    return a > 0 && b > 0 && c > 0 && d > 0 ? (size_t)a * (size_t)b * (size_t)c * (size_t)d : 0;
}

// BN_CUDA_CONV=own, fp32 mode, a shape cuda_conv3.cu takes: its kernels for direction dir
// (0 fwd, 1 bwd data, 2 bwd filter), named once per shape under BN_CUDA_VERBOSE=1
static bool use_own(cuda_ctx *c, const conv_desc *d, int dir) {
    static const char *names[] = {"fwd", "bwd_data", "bwd_filter"};
    if (!c->own_conv || c->tf32) return false;
    if (!(dir == 2 ? cuda_conv3_filter_fits(d) : cuda_conv3_fits(d, dir))) return false;
    if (c->verbose) {
        conv_entry *e = entry_for(c, d);
        if (!(e->own_said & (1 << dir)))
            fprintf(stderr, "cuda: conv n%d %d->%d %dx%d k%d s%d p%d %s: cuda_conv3.cu's kernel (fp32 FMA)\n", d->n,
                    d->cin, d->cout, d->h, d->w, d->k, d->stride, d->pad, names[dir]);
        e->own_said |= 1 << dir;
    }
    return true;
}

// ---- the ops ---------------------------------------------------------------------------

void cuda_conv_fwd(ops *o, const conv_desc *d, const float *x, const float *w, const float *b, float *y) {
    cuda_ctx *c = cuda_ctx_of(o);
    size_t ny = count(d->n, d->cout, d->ho, d->wo);
    if (ny == 0) return;
    if (empty(d)) {                                       // no input channel: y = b
        k_fill_channels<<<cuda_blocks(ny), CUDA_THREADS, 0, cuda_stream()>>>(y, b, d->cout, d->ho * d->wo, ny);
        CUDA_LAUNCH_CHECK();
        return;
    }
    if (use_own(c, d, 0)) return cuda_conv3_fwd(d, x, w, b, y);
    conv_entry *e = entry_for(c, d);
    if (!e->have_fwd) choose_fwd(c, e);
    CUDNN_CHECK(cudnnSetConvolutionMathType(e->conv, e->fwd_math));   // one descriptor serves three directions
    void *ws = cuda_ctx_workspace(c, e->fwd_ws);
    CUDNN_CHECK(cudnnConvolutionForward(c->dnn, &one, e->x, x, e->w, w, e->conv, e->fwd, ws, e->fwd_ws, &zero, e->y, y));
    if (b) CUDNN_CHECK(cudnnAddTensor(c->dnn, &one, e->bias, b, &one, e->y, y));
}

void cuda_conv_bwd_data(ops *o, const conv_desc *d, const float *dy, const float *w, float *dx) {
    cuda_ctx *c = cuda_ctx_of(o);
    size_t nx = count(d->n, d->cin, d->h, d->w);
    if (nx == 0) return;
    if (empty(d)) {                                       // no output depends on x
        CUDA_CHECK(cudaMemsetAsync(dx, 0, nx * sizeof *dx, cuda_stream()));
        return;
    }
    if (use_own(c, d, 1)) return cuda_conv3_bwd_data(d, dy, w, dx);
    conv_entry *e = entry_for(c, d);
    if (!e->have_bwd_data) choose_bwd_data(c, e);
    CUDNN_CHECK(cudnnSetConvolutionMathType(e->conv, e->bwd_data_math));
    void *ws = cuda_ctx_workspace(c, e->bwd_data_ws);
    CUDNN_CHECK(cudnnConvolutionBackwardData(c->dnn, &one, e->w, w, e->y, dy, e->conv, e->bwd_data, ws, e->bwd_data_ws,
                                             &zero, e->x, dx));
}

void cuda_conv_bwd_filter(ops *o, const conv_desc *d, const float *x, const float *dy, float *dw, float *db) {
    cuda_ctx *c = cuda_ctx_of(o);
    size_t nw = count(d->cout, d->cin, d->k, d->k);
    if (empty(d)) {                                       // sums over nothing
        if (nw) CUDA_CHECK(cudaMemsetAsync(dw, 0, nw * sizeof *dw, cuda_stream()));
        if (db && d->cout > 0) {
            if (d->n > 0 && d->ho > 0 && d->wo > 0) {     // cin = 0: db is still sum dy
                k_bias_grad<<<d->cout, CUDA_THREADS, 0, cuda_stream()>>>(dy, d->n, d->cout, d->ho * d->wo, db);
                CUDA_LAUNCH_CHECK();
            } else {
                CUDA_CHECK(cudaMemsetAsync(db, 0, (size_t)d->cout * sizeof *db, cuda_stream()));
            }
        }
        return;
    }
    if (use_own(c, d, 2)) {
        cuda_conv3_bwd_filter(d, x, dy, dw, (float *)cuda_ctx_workspace(c, cuda_conv3_filter_workspace(d)));
    } else {
        conv_entry *e = entry_for(c, d);
        if (!e->have_bwd_filter) choose_bwd_filter(c, e);
        CUDNN_CHECK(cudnnSetConvolutionMathType(e->conv, e->bwd_filter_math));
        void *ws = cuda_ctx_workspace(c, e->bwd_filter_ws);
        CUDNN_CHECK(cudnnConvolutionBackwardFilter(c->dnn, &one, e->x, x, e->y, dy, e->conv, e->bwd_filter, ws,
                                                   e->bwd_filter_ws, &zero, e->w, dw));
    }
    if (db) {
        k_bias_grad<<<d->cout, CUDA_THREADS, 0, cuda_stream()>>>(dy, d->n, d->cout, d->ho * d->wo, db);
        CUDA_LAUNCH_CHECK();
    }
}
