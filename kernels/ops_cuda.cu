// ops_cuda.cu: the CUDA backend "cuda": its ops table, start-up and growable buffers.
//
// ops_cuda_get starts the backend once (device 0, a cuDNN handle) and returns the table, or
// NULL with the reason when there is no usable device: no driver or GPU, a device this build
// has no code for (kernels are built for sm_90 only), cuDNN unable to start, or a cuDNN
// library of another major version than the headers'.
//
// Precision: fp32 throughout, no TF32, by default. cuDNN convolutions are restricted to FMA
// kernels (CUDNN_FMA_MATH, see cuda_conv.cu); the linear layer's GEMM is our own fp32 kernel
// (no cuBLAS: see cuda_linear.cu). The environment variable NVIDIA_TF32_OVERRIDE=1 would not
// enable TF32 either: it can only disable it. set_precision("tf32") (net-train --precision
// tf32) lets the convolutions use TF32 tensor cores; everything else stays as it is.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"
#include "cuda_mem.h"

static char why_buf[512];
static cuda_ctx ctx;
static int started;                 // 1: usable; -1: tried and failed (why_buf says why)

// ops.h's memory entries: the model keeps every tensor in device memory through these
static void *mem_alloc(ops *o, size_t bytes) {
    (void)o;
    void *p = cuda_alloc(bytes);
    if (p) cuda_memset(p, 0, bytes);
    return p;
}
static void mem_free(ops *o, void *p) { (void)o, cuda_free(p); }
static void mem_upload(ops *o, void *dst, const void *src, size_t bytes) { (void)o, cuda_to_device(dst, src, bytes); }
static void mem_download(ops *o, void *dst, const void *src, size_t bytes) { (void)o, cuda_to_host(dst, src, bytes); }
static void mem_copy(ops *o, void *dst, const void *src, size_t bytes) { (void)o, cuda_copy(dst, src, bytes); }

// ops.h's layout entries with block width 1: "nCHW1" is NCHW itself, so the model's fast path
// (model.c fast_setup) runs on the plain kernels with its fusions: BN+ReLU in one kernel each
// way (OPS_RELU), add+ReLU, and the ReLU backward that adds a gradient's two parts.
static void conv_fwd_l(ops *o, const conv_desc *d, int flags, const float *x, const float *w, const float *b,
                       float *y) {
    (void)flags, cuda_conv_fwd(o, d, x, w, b, y);
}
static void conv_bwd_data_l(ops *o, const conv_desc *d, int flags, const float *dy, const float *w, float *dx) {
    (void)flags, cuda_conv_bwd_data(o, d, dy, w, dx);
}
static void conv_bwd_filter_l(ops *o, const conv_desc *d, int flags, const float *x, const float *dy, float *dw,
                              float *db) {
    (void)flags, cuda_conv_bwd_filter(o, d, x, dy, dw, db);
}
static void bn_fwd_train_l(ops *o, const bn_desc *d, int flags, const float *x, const float *gamma, const float *beta,
                           float *y, float *save_mean, float *save_invstd, float *run_mean, float *run_var) {
    cuda_bn_fwd_train_ex(o, d, flags & OPS_RELU, NULL, x, gamma, beta, y, save_mean, save_invstd, run_mean, run_var);
}
static void bn_fwd_infer_l(ops *o, const bn_desc *d, int flags, const float *x, const float *gamma, const float *beta,
                           const float *run_mean, const float *run_var, float *y) {
    cuda_bn_fwd_infer_ex(o, d, flags & OPS_RELU, NULL, x, gamma, beta, run_mean, run_var, y);
}
// BN + residual + ReLU in one kernel (ops.h bn_add_relu_*): the apply pass adds r
static void bn_add_relu_fwd_train_l(ops *o, const bn_desc *d, int flags, const float *x, const float *gamma,
                                    const float *beta, const float *r, float *y, float *save_mean, float *save_invstd,
                                    float *run_mean, float *run_var) {
    (void)flags;
    cuda_bn_fwd_train_ex(o, d, 1, r, x, gamma, beta, y, save_mean, save_invstd, run_mean, run_var);
}
static void bn_add_relu_fwd_infer_l(ops *o, const bn_desc *d, int flags, const float *x, const float *gamma,
                                    const float *beta, const float *run_mean, const float *run_var, const float *r,
                                    float *y) {
    (void)flags;
    cuda_bn_fwd_infer_ex(o, d, 1, r, x, gamma, beta, run_mean, run_var, y);
}
static void bn_bwd_l(ops *o, const bn_desc *d, int flags, const float *x, const float *y, const float *dy,
                     const float *gamma, const float *beta, const float *save_mean, const float *save_invstd,
                     float *dx, float *dgamma, float *dbeta) {
    (void)beta;
    cuda_bn_bwd_ex(o, d, flags & OPS_RELU ? y : NULL, x, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta);
}
static void gap_fwd_l(ops *o, int flags, int n, int c, int hw, const float *x, float *y) {
    (void)flags, cuda_gap_fwd(o, n, c, hw, x, y);
}
static void gap_bwd_l(ops *o, int flags, int n, int c, int hw, const float *dy, float *dx) {
    (void)flags, cuda_gap_bwd(o, n, c, hw, dy, dx);
}
static void act_convert(ops *o, int to_blocked, int n, int c, int hw, const float *x, float *y) {
    (void)o, (void)to_blocked;
    if (x != y)
        CUDA_CHECK(cudaMemcpyAsync(y, x, (size_t)n * (size_t)c * (size_t)hw * sizeof *x, cudaMemcpyDeviceToDevice,
                                   cuda_stream()));
}

// ops.h set_precision: "fp32" (FMA convolutions only) or "tf32" (tensor cores allowed)
static int set_precision(ops *o, const char *name) {
    int t = strcmp(name, "tf32") == 0 ? 1 : strcmp(name, "fp32") == 0 ? 0 : -1;
    if (t < 0) return -1;
    cuda_ctx *c = cuda_ctx_of(o);
    if (c->tf32 != t) {
        c->tf32 = t;
        cuda_conv_cache_clear(c);       // plans chosen under the other math type
    }
    return 0;
}

// whose 3x3 stride-1 convolutions in fp32 (BN_CUDA_CONV, cuda_conv_impl): 0 cuDNN's, 1
// cuda_conv3.cu's, -1 another name
static int conv_impl_of(const char *name) {
    return strcmp(name, "own") == 0 ? 1 : strcmp(name, "cudnn") == 0 ? 0 : -1;
}

extern "C" ops *ops_cuda_get(const char **why);
extern "C" int cuda_conv_impl(const char *name) {
    int v = conv_impl_of(name);
    if (v < 0 || !ops_cuda_get(NULL)) return -1;
    int was = ctx.own_conv;
    if (was != v) ctx.own_conv = v, ctx.gen++;   // recorded steps launch the other kernels
    return was;
}

static ops ops_cuda = {
    .name = "cuda",
    .ctx = &ctx,
    .conv_fwd = cuda_conv_fwd,
    .conv_bwd_data = cuda_conv_bwd_data,
    .conv_bwd_filter = cuda_conv_bwd_filter,
    .bn_fwd_train = cuda_bn_fwd_train,
    .bn_fwd_infer = cuda_bn_fwd_infer,
    .bn_bwd = cuda_bn_bwd,
    .relu_fwd = cuda_relu_fwd,
    .relu_bwd = cuda_relu_bwd,
    .add = cuda_add,
    .gap_fwd = cuda_gap_fwd,
    .gap_bwd = cuda_gap_bwd,
    .linear_fwd = cuda_linear_fwd,
    .linear_bwd_data = cuda_linear_bwd_data,
    .linear_bwd_filter = cuda_linear_bwd_filter,
    .xent = cuda_xent,
    .allreduce = NULL,
    .allreduce_ctx = NULL,
    .act_blk = 1,
    .conv_fwd_l = conv_fwd_l,
    .conv_bwd_data_l = conv_bwd_data_l,
    .conv_bwd_filter_l = conv_bwd_filter_l,
    .bn_fwd_train_l = bn_fwd_train_l,
    .bn_fwd_infer_l = bn_fwd_infer_l,
    .bn_bwd_l = bn_bwd_l,
    .gap_fwd_l = gap_fwd_l,
    .gap_bwd_l = gap_bwd_l,
    .act_convert = act_convert,
    .mem_alloc = mem_alloc,
    .mem_free = mem_free,
    .mem_upload = mem_upload,
    .mem_download = mem_download,
    .mem_copy = mem_copy,
    .add_relu = cuda_add_relu,
    .relu_bwd_add = cuda_relu_bwd_add,
    .bn_add_relu_fwd_train_l = bn_add_relu_fwd_train_l,
    .bn_add_relu_fwd_infer_l = bn_add_relu_fwd_infer_l,
    .sgd_update = cuda_sgd_update,
    .adam_update = cuda_adam_update,
    .sgd_update_many = cuda_sgd_update_many,
    .adam_update_many = cuda_adam_update_many,
    .batch_fill = cuda_batch_fill,
    .sync = cuda_sync_op,
    .set_precision = set_precision,
    .xent_rows = cuda_xent_rows,
    .graph_begin = cuda_graph_begin,
    .graph_end = cuda_graph_end,
    .graph_launch = cuda_graph_launch,
    .graph_free = cuda_graph_free,
};

cudaStream_t cuda_stream(void) { return ctx.st; }

// 0 when usable; else why_buf says why.
static int start(void) {
    const char *why = NULL;
    if (cuda_device_count(&why) == 0) {
        snprintf(why_buf, sizeof why_buf, "%s", why);
        return -1;
    }
    cudaError_t e = cudaSetDevice(0);
    if (e == cudaSuccess) e = cudaFree(0);                  // creates the context now
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        snprintf(why_buf, sizeof why_buf, "the CUDA device could not be started (%s)", cudaGetErrorString(e));
        return -1;
    }
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) {
        (void)cudaGetLastError();   // else the first launch check would report it, at its own line
        memset(&p, 0, sizeof p);
    }
    cudaFuncAttributes fa;
    e = cudaFuncGetAttributes(&fa, cuda_probe_kernel());
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        snprintf(why_buf, sizeof why_buf,
                 "this build has no GPU code for the device %.64s (compute capability %d.%d): %s; rebuild with "
                 "NVFLAGS naming -arch=sm_%d%d",
                 p.name, p.major, p.minor, cudaGetErrorString(e), p.major, p.minor);
        return -1;
    }
    size_t v = cudnnGetVersion();
    if (v / 10000 != CUDNN_MAJOR) {
        snprintf(why_buf, sizeof why_buf, "cuDNN %zu found at run time, but built with cuDNN %d.%d", v, CUDNN_MAJOR,
                 CUDNN_MINOR);
        return -1;
    }
    // cuDNN 9's libcudnn loads its sub-libraries at first use: a missing or mismatched ops or
    // cnn library is found here, as a reason, not as an error at the first convolution (the
    // engine libraries cuDNN loads as it needs them: one missing there is an error, with
    // cuDNN's message)
    cudnnStatus_t ds = cudnnOpsVersionCheck();
    if (ds == CUDNN_STATUS_SUCCESS) ds = cudnnCnnVersionCheck();
    if (ds != CUDNN_STATUS_SUCCESS) {
        const char *more = cuda_cudnn_last_error();
        snprintf(why_buf, sizeof why_buf, "cuDNN %zu's sub-libraries could not be loaded (%s%s%s)", v,
                 cudnnGetErrorString(ds), *more ? ": " : "", more);
        return -1;
    }
    ds = cudnnCreate(&ctx.dnn);
    if (ds != CUDNN_STATUS_SUCCESS) {
        snprintf(why_buf, sizeof why_buf, "cuDNN could not start (%s)", cudnnGetErrorString(ds));
        return -1;
    }
    // a stream of our own (the legacy default stream cannot be captured into a graph),
    // blocking: the legacy stream's copies (cuda_mem.h) and it still wait for each other
    e = cudaStreamCreate(&ctx.st);
    if (e == cudaSuccess && (ds = cudnnSetStream(ctx.dnn, ctx.st)) != CUDNN_STATUS_SUCCESS) {
        snprintf(why_buf, sizeof why_buf, "cuDNN could not take a stream (%s)", cudnnGetErrorString(ds));
        return -1;
    }
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        snprintf(why_buf, sizeof why_buf, "no CUDA stream (%s)", cudaGetErrorString(e));
        return -1;
    }
    // heuristics by default: timing (cudnnFind) may choose other algorithms in another
    // process, and so other bits; the same seed must give the same checkpoint
    ctx.find = cli_env_flag("BN_CUDNN_FIND", false);
    ctx.verbose = cli_env_flag("BN_CUDA_VERBOSE", false);
    const char *cv = getenv("BN_CUDA_CONV");   // cuDNN's by default
    if (cv && *cv && (ctx.own_conv = conv_impl_of(cv)) < 0)
        cli_die("BN_CUDA_CONV=%s: expected cudnn (the default) or own", cv);
    const char *rows = getenv("BN_CUDA_CONV3_ROWS");   // a tuning knob: cuda_conv3.cu's rows a thread
    int r = rows && *rows ? (strcmp(rows, "0") && strcmp(rows, "2") && strcmp(rows, "4") ? -1 : atoi(rows)) : 0;
    if (cuda_conv3_set_rows(r))
        cli_die("BN_CUDA_CONV3_ROWS=%s: expected 2 or 4 (or 0: chosen by the shape)", rows);
    if (ctx.verbose)
        fprintf(stderr, "cuda: %.64s (sm_%d%d, %d SMs), cuDNN %zu, algorithms by %s%s\n", p.name, p.major, p.minor,
                p.multiProcessorCount, v, ctx.find ? "timing (cudnnFind)" : "heuristics (cudnnGet_v7)",
                ctx.own_conv ? ", 3x3 stride-1 convolutions in fp32 by cuda_conv3.cu" : "");
    return 0;
}

extern "C" ops *ops_cuda_get(const char **why) {
    if (started == 0) started = start() == 0 ? 1 : -1;
    if (started < 0) {
        if (why) *why = why_buf;
        return NULL;
    }
    return &ops_cuda;
}

// ---- growable buffers ----------------------------------------------------------------
// None may grow while a step is being recorded (an allocation there fails the capture): the
// recording fails instead, and the buffer stays as it is for the step's rerun op by op.
static int growth_refused(const char *what) {
    if (!cuda_recording) return 0;
    cuda_record_failed("a buffer would grow while recording a step", what, __FILE__, __LINE__);
    return 1;
}

static size_t grown(size_t have, size_t want) {
    size_t n = have ? have : 1024;
    while (n < want) n *= 2;
    return n;
}

// *buf (*size bytes) replaced by one of at least bytes; cuda_free waits for the work that
// used the old one, and the recorded steps that used it are stale (gen)
static void *grown_device(cuda_ctx *c, void **buf, size_t *size, size_t bytes, const char *what) {
    if (bytes <= *size && *buf) return *buf;
    if (growth_refused(what)) return *buf;
    cuda_free(*buf);
    *size = grown(*size, bytes);
    c->gen++;
    CUDA_CHECK(cudaMalloc(buf, *size));
    return *buf;
}

void *cuda_ctx_workspace(cuda_ctx *c, size_t bytes) {
    return bytes ? grown_device(c, &c->ws, &c->ws_size, bytes, "the cuDNN workspace") : NULL;
}

void *cuda_ctx_scratch(cuda_ctx *c, size_t bytes) {
    return grown_device(c, &c->scratch, &c->scratch_size, bytes, "the scratch buffer");
}

void *cuda_ctx_hscratch(cuda_ctx *c, size_t bytes) {
    if (bytes > c->hscratch_size || !c->hscratch) {
        if (growth_refused("the pinned host buffer")) return c->hscratch;
        if (c->hscratch) CUDA_CHECK(cudaStreamSynchronize(c->st)), CUDA_CHECK(cudaFreeHost(c->hscratch));
        c->hscratch_size = grown(c->hscratch_size, bytes);   // no recorded op uses it: gen stays
        CUDA_CHECK(cudaMallocHost(&c->hscratch, c->hscratch_size));
    }
    return c->hscratch;
}
