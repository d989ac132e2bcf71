// cuda_train.cu: the work of a training step outside the layers, in device memory, so that
// a step moves nothing between host and GPU but its plan and its loss: the optimizer updates
// (ops.h sgd_update, adam_update), batch assembly from the uint8 training set with its
// augmentation and normalisation (ops.h batch_fill), sync (BN_PROFILE's timing), and the
// recording of a whole step into a CUDA graph (ops.h graph_*).
//
// Each is the same bits as the host function that defines it (lib/optim.c sgd_update and
// adam_update, lib/augment.c batch_fill_raw). nvcc contracts a*b + c into one fused
// multiply-add by default, which the host code (built with -ffp-contract=off) never does,
// so every product and sum here is an explicitly rounded intrinsic (__fmul_rn, __fadd_rn,
// ...: never contracted), in the host code's order of evaluation; / and sqrtf are
// IEEE-rounded in both (nvcc's default -prec-div=true -prec-sqrt=true, and we use the
// _rn intrinsics anyway). tests/test_cuda_ops.c compares them with the host functions bit
// for bit.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda_internal.h"
#include "cuda_mem.h"

// ---- optimizers (lib/optim.c) -------------------------------------------------------------

// One element's update, in the host code's order (every product and sum rounded once).
__device__ __forceinline__ void sgd_elem(size_t i, float *w, const float *g, float *buf, const uint8_t *mask,
                                         float lr, float mom, int nesterov, float wd) {
    if (mask && !mask[i]) return;
    float d = g[i];
    if (wd != 0.0f) d = __fadd_rn(d, __fmul_rn(wd, w[i]));
    if (buf && mom != 0.0f) {
        float b = __fadd_rn(__fmul_rn(mom, buf[i]), d);
        buf[i] = b;
        d = nesterov ? __fadd_rn(d, __fmul_rn(mom, b)) : b;
    }
    w[i] = __fsub_rn(w[i], __fmul_rn(lr, d));
}
__device__ __forceinline__ void adam_elem(size_t i, float *w, const float *g, float *m, float *v,
                                          const uint8_t *mask, float lr, float b1, float b2, float ob1, float ob2,
                                          float eps, float wd) {
    if (mask && !mask[i]) return;
    float d = g[i];
    if (wd != 0.0f) d = __fadd_rn(d, __fmul_rn(wd, w[i]));
    float mi = __fadd_rn(__fmul_rn(b1, m[i]), __fmul_rn(ob1, d));
    float vi = __fadd_rn(__fmul_rn(b2, v[i]), __fmul_rn(__fmul_rn(ob2, d), d));
    m[i] = mi, v[i] = vi;
    w[i] = __fsub_rn(w[i], __fdiv_rn(__fmul_rn(lr, mi), __fadd_rn(__fsqrt_rn(vi), eps)));
}

// s (a recorded step's values, ops.h ops_step): the step size from there, or no step at all
__device__ __forceinline__ bool step_size(const ops_step *s, float *lr) {
    if (!s) return true;
    if (s->skip) return false;
    *lr = s->lr;
    return true;
}

__global__ void k_sgd(size_t n, float *w, const float *g, float *buf, const uint8_t *mask, float lr, float mom,
                      int nesterov, float wd, const ops_step *s) {
    if (!step_size(s, &lr)) return;
    GRID_STRIDE(i, n) sgd_elem(i, w, g, buf, mask, lr, mom, nesterov, wd);
}

__global__ void k_adam(size_t n, float *w, const float *g, float *m, float *v, const uint8_t *mask, float lr,
                       float b1, float b2, float ob1, float ob2, float eps, float wd, const ops_step *s) {
    if (!step_size(s, &lr)) return;
    GRID_STRIDE(i, n) adam_elem(i, w, g, m, v, mask, lr, b1, b2, ob1, ob2, eps, wd);
}

// Many tensors in one launch (ops.h *_update_many): tensor blockIdx.y (strided past 65535),
// its elements over the gridDim.x blocks of that row (GRID_STRIDE); t is in device memory.
#define TENSOR_ROWS(j, k) for (int j = blockIdx.y; j < (k); j += gridDim.y)

__global__ void k_sgd_many(const ops_tensor *t, int k, float lr, float mom, int nesterov, float wd,
                           const ops_step *s) {
    if (!step_size(s, &lr)) return;
    TENSOR_ROWS(j, k) {
        const ops_tensor e = t[j];
        GRID_STRIDE(i, e.n) sgd_elem(i, e.w, e.g, e.s1, e.mask, lr, mom, nesterov, wd);
    }
}

__global__ void k_adam_many(const ops_tensor *t, int k, float lr, float b1, float b2, float ob1, float ob2,
                            float eps, float wd, const ops_step *s) {
    if (!step_size(s, &lr)) return;
    TENSOR_ROWS(j, k) {
        const ops_tensor e = t[j];
        GRID_STRIDE(i, e.n) adam_elem(i, e.w, e.g, e.s1, e.s2, e.mask, lr, b1, b2, ob1, ob2, eps, wd);
    }
}

// Adam's step size for step t, on the host in double exactly as lib/optim.c computes it
// (0 with s: the ops then read the one optim_step_size gave, in device memory)
static float adam_step_size(double lr, double beta1, double beta2, int64_t t, const ops_step *s) {
    return s ? 0.0f : (float)(lr * sqrt(1.0 - pow(beta2, (double)t)) / (1.0 - pow(beta1, (double)t)));
}

// k tensors as rows of a 2-D grid, each row about maxn / 8 threads wide (at least a block)
static dim3 many_grid(int k, size_t maxn) {
    size_t bx = (maxn + 8 * CUDA_THREADS - 1) / (8 * CUDA_THREADS);
    if (bx < 1) bx = 1;
    if (bx > 1024) bx = 1024;
    return dim3((unsigned)bx, (unsigned)(k < 65535 ? k : 65535));
}

void cuda_sgd_update(ops *o, float *w, const float *g, float *buf, const uint8_t *mask, size_t n, double lr,
                     double momentum, bool nesterov, double wd, const ops_step *s) {
    (void)o;
    if (!n) return;
    k_sgd<<<cuda_blocks(n), CUDA_THREADS, 0, cuda_stream()>>>(n, w, g, buf, mask, (float)lr, (float)momentum,
                                                            nesterov ? 1 : 0, (float)wd, s);
    CUDA_LAUNCH_CHECK();
}

void cuda_adam_update(ops *o, float *w, const float *g, float *m, float *v, const uint8_t *mask, size_t n, double lr,
                      double beta1, double beta2, double eps, double wd, int64_t t, const ops_step *s) {
    (void)o;
    if (!n) return;
    const float b1 = (float)beta1, b2 = (float)beta2;
    k_adam<<<cuda_blocks(n), CUDA_THREADS, 0, cuda_stream()>>>(n, w, g, m, v, mask,
                                                             adam_step_size(lr, beta1, beta2, t, s), b1, b2, 1.0f - b1,
                                                             1.0f - b2, (float)eps, (float)wd, s);
    CUDA_LAUNCH_CHECK();
}

void cuda_sgd_update_many(ops *o, const ops_tensor *t, int k, size_t maxn, double lr, double momentum, bool nesterov,
                          double wd, const ops_step *s) {
    (void)o;
    if (k <= 0 || !maxn) return;
    k_sgd_many<<<many_grid(k, maxn), CUDA_THREADS, 0, cuda_stream()>>>(t, k, (float)lr, (float)momentum,
                                                                       nesterov ? 1 : 0, (float)wd, s);
    CUDA_LAUNCH_CHECK();
}

void cuda_adam_update_many(ops *o, const ops_tensor *t, int k, size_t maxn, double lr, double beta1, double beta2,
                           double eps, double wd, int64_t step, const ops_step *s) {
    (void)o;
    if (k <= 0 || !maxn) return;
    const float b1 = (float)beta1, b2 = (float)beta2;
    k_adam_many<<<many_grid(k, maxn), CUDA_THREADS, 0, cuda_stream()>>>(t, k, adam_step_size(lr, beta1, beta2, step, s),
                                                                        b1, b2, 1.0f - b1,
                                                                        1.0f - b2, (float)eps, (float)wd, s);
    CUDA_LAUNCH_CHECK();
}

// ---- batch assembly (lib/augment.c batch_fill_raw) -----------------------------------------

struct norm_arg {           // by value: 264 bytes of kernel parameters
    int on;
    double mean[AUG_NORM_MAXC], inv[AUG_NORM_MAXC];
};

// image i in blockIdx.y (strided past 65535), its values r = (c*H + y)*W + xx in x: 32-bit
// index arithmetic within an image (at most 64 MiB of values, dataset.c)
__global__ void k_batch_fill(int n, float *x, const uint8_t *pixels, int C, int H, int W, const uint32_t *idx,
                             const aug_param *par, int bright, norm_arg nm) {
    const int hw = H * W, img = C * hw;
    for (int i = blockIdx.y; i < n; i += gridDim.y) {
        const uint8_t *src = pixels + (size_t)idx[i] * (size_t)img;
        float *dst = x + (size_t)i * (size_t)img;
        int dy = AUG_PAD, dx = AUG_PAD, flip = 0;
        float delta = 0.0f;
        if (par) dy = par[i].dy, dx = par[i].dx, flip = par[i].flip, delta = par[i].delta;
        for (int r = blockIdx.x * blockDim.x + threadIdx.x; r < img; r += gridDim.x * blockDim.x) {
            int c = r / hw, y = r % hw / W, xx = r % W;
            int sy = y + dy - AUG_PAD, sx = (flip ? W - 1 - xx : xx) + dx - AUG_PAD;
            float v = 0.0f;
            if (sy >= 0 && sy < H && sx >= 0 && sx < W) v = __fdiv_rn((float)src[(c * H + sy) * W + sx], 255.0f);
            if (bright) {
                v = __fadd_rn(v, delta);
                v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
            }
            bool nc = nm.on && c < AUG_NORM_MAXC;
            double mc = nc ? nm.mean[c] : 0.0, ic = nc ? nm.inv[c] : 1.0;
            dst[r] = __double2float_rn(__dmul_rn(__dsub_rn((double)v, mc), ic));
        }
    }
}

__global__ void k_gather_labels(int n, const uint32_t *idx, const uint8_t *labels, uint8_t *lab) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) lab[i] = labels[idx[i]];
}

void cuda_batch_fill(ops *o, float *x, const uint8_t *pixels, int c, int h, int w, const uint32_t *idx,
                     const aug_param *par, int n, bool bright, const double *mean, const double *inv,
                     const uint8_t *labels, uint8_t *lab) {
    (void)o;
    if (n <= 0) return;
    norm_arg nm;
    nm.on = mean && inv;
    for (int k = 0; k < AUG_NORM_MAXC; k++) {
        bool have = nm.on && k < c;
        nm.mean[k] = have ? mean[k] : 0.0;
        nm.inv[k] = have ? inv[k] : 1.0;
    }
    size_t img = (size_t)c * (size_t)h * (size_t)w;
    if (img) {
        unsigned bx = (unsigned)((img + CUDA_THREADS - 1) / CUDA_THREADS), by = n < 65535 ? (unsigned)n : 65535u;
        if (bx > 1024) bx = 1024;
        k_batch_fill<<<dim3(bx, by), CUDA_THREADS, 0, cuda_stream()>>>(n, x, pixels, c, h, w, idx, par, bright ? 1 : 0, nm);
        CUDA_LAUNCH_CHECK();
    }
    if (labels) {
        k_gather_labels<<<(n + CUDA_THREADS - 1) / CUDA_THREADS, CUDA_THREADS, 0, cuda_stream()>>>(n, idx, labels, lab);
        CUDA_LAUNCH_CHECK();
    }
}

void cuda_sync_op(ops *o) {
    (void)o;
    cuda_sync();
}

// ---- recorded steps (ops.h graph_*) ---------------------------------------------------------
// The step's ops are captured from the backend's stream (thread-local mode: a call that would
// break the capture, such as a synchronous copy or an allocation from this thread, fails
// instead, and cuda_check.h keeps that failure rather than ending the program), instantiated
// once, and launched on the same stream. A recording holds the backend's generation: its
// workspace, scratch and plans may not move or change after it (ctx.gen), else it is stale.

int cuda_recording;
static char record_why[320];
static unsigned record_gen;         // ctx.gen when the recording began

void cuda_record_failed(const char *what, const char *call, const char *file, int line) {
    (void)cudaGetLastError();           // clear it: the recording is dropped, the step rerun
    if (!record_why[0]) snprintf(record_why, sizeof record_why, "%s:%d: %s (%s)", file, line, what, call);
}

typedef struct cuda_graph {
    cudaGraphExec_t exec;
    unsigned gen;
} cuda_graph;

int cuda_graph_begin(ops *o) {
    cuda_ctx *c = cuda_ctx_of(o);
    if (cuda_recording) return -1;
    record_why[0] = 0;
    cudaError_t e = cudaStreamBeginCapture(c->st, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        if (c->verbose) fprintf(stderr, "cuda: no step recording: %s\n", cudaGetErrorString(e));
        return -1;
    }
    cuda_recording = 1;
    record_gen = c->gen;
    return 0;
}

void *cuda_graph_end(ops *o) {
    cuda_ctx *c = cuda_ctx_of(o);
    if (!cuda_recording) return NULL;
    cudaGraph_t graph = NULL;
    cudaError_t e = cudaStreamEndCapture(c->st, &graph);
    cuda_recording = 0;
    cudaGraphExec_t exec = NULL;
    if (e == cudaSuccess && !record_why[0] && c->gen != record_gen)
        snprintf(record_why, sizeof record_why, "the backend's buffers or plans changed while recording");
    if (e == cudaSuccess && !record_why[0]) e = cudaGraphInstantiate(&exec, graph, 0);
    if (graph) (void)cudaGraphDestroy(graph);   // the instance holds what it needs
    if (e != cudaSuccess || record_why[0]) {
        if (e != cudaSuccess && !record_why[0])
            snprintf(record_why, sizeof record_why, "%s (ending the capture)", cudaGetErrorString(e));
        (void)cudaGetLastError();
        if (exec) (void)cudaGraphExecDestroy(exec);
        fprintf(stderr, "cuda: the work could not be recorded into a graph: %s; it goes op by op\n", record_why);
        return NULL;
    }
    cuda_graph *g = (cuda_graph *)malloc(sizeof *g);
    if (!g) {
        CUDA_CHECK(cudaGraphExecDestroy(exec));
        return NULL;
    }
    g->exec = exec, g->gen = c->gen;
    return g;
}

int cuda_graph_launch(ops *o, void *p) {
    cuda_ctx *c = cuda_ctx_of(o);
    cuda_graph *g = (cuda_graph *)p;
    if (!g || g->gen != c->gen) return -1;
    CUDA_CHECK(cudaGraphLaunch(g->exec, c->st));
    if (cuda_sync_each_launch()) CUDA_CHECK(cudaStreamSynchronize(c->st));
    return 0;
}

void cuda_graph_free(ops *o, void *p) {
    (void)o;
    cuda_graph *g = (cuda_graph *)p;
    if (!g) return;
    CUDA_CHECK(cudaGraphExecDestroy(g->exec));
    free(g);
}
