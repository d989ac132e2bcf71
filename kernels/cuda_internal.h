// cuda_internal.h: what the files of the CUDA backend share: the backend's state (handles,
// the convolution cache, growable buffers) and the entry points of each file.
//
// Files: ops_cuda.cu (the table, start-up, state), cuda_conv.cu (cuDNN convolutions),
// cuda_conv3.cu (3x3 convolutions of our own, BN_CUDA_CONV=own),
// cuda_bn.cu (BatchNorm), cuda_elem.cu (ReLU, add, pooling), cuda_linear.cu (linear,
// softmax cross-entropy), cuda_train.cu (optimizer updates, batch assembly, sync),
// cuda_device.cu (device detection, cuda_mem.h).
//
// Every op runs on the backend's stream (cuda_stream(): one stream, created blocking, so the
// copies of cuda_mem.h on the legacy default stream stay ordered with it without events; a
// stream of its own because the legacy one cannot be recorded into a graph). Ops return when
// their work is queued, except those that hand a result to the host (xent; BatchNorm when
// it calls allreduce).
#ifndef BN_CUDA_INTERNAL_H
#define BN_CUDA_INTERNAL_H
#include <stddef.h>

#include "cuda_check.h"
#include "cuda_index.h"
#include "ops.h"

#define CUDA_THREADS 256

// One convolution shape: its cuDNN descriptors and the algorithm chosen for each direction
// (found on first use of that direction). The whole conv_desc is the key, so the smaller
// last batch of an epoch is its own entry.
typedef struct conv_entry {
    conv_desc key;
    cudnnTensorDescriptor_t x, y, bias;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
    int have_fwd, have_bwd_data, have_bwd_filter;
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t bwd_data;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter;
    size_t fwd_ws, bwd_data_ws, bwd_filter_ws;
    cudnnMathType_t fwd_math, bwd_data_math, bwd_filter_math;   // set on the descriptor before each call
    int own_said;                   // BN_CUDA_VERBOSE: bit d set once direction d's own kernel was named
} conv_entry;

typedef struct cuda_ctx {
    cudnnHandle_t dnn;
    cudaStream_t st;                // every op's stream (cudnnSetStream too)
    unsigned gen;                   // bumped when the workspace or scratch moves or the plans are
                                    // dropped: a recorded step (graph_*) from before is then stale
    conv_entry *conv;               // the convolution cache
    int nconv, capconv;
    int find;                       // 1: time the algorithms (cudnnFind*, BN_CUDNN_FIND=1); 0: heuristics
    int verbose;                    // BN_CUDA_VERBOSE=1: print each choice on stderr
    int tf32;                       // set_precision "tf32": tensor-core convolutions allowed
    int own_conv;                   // BN_CUDA_CONV=own: 3x3 stride-1 convolutions in cuda_conv3.cu (fp32)
    void *ws;                       // cuDNN workspace, grown as needed
    size_t ws_size;
    void *scratch;                  // device scratch for BN sums and the loss, grown as needed
    size_t scratch_size;
    void *hscratch;                 // pinned host scratch (allreduce, the loss), grown as needed
    size_t hscratch_size;
} cuda_ctx;

static inline cuda_ctx *cuda_ctx_of(ops *o) { return (cuda_ctx *)o->ctx; }
cudaStream_t cuda_stream(void);                        // the backend's stream (ops_cuda.cu)
void cuda_conv_cache_clear(cuda_ctx *c);               // drops every cached shape (cuda_conv.cu)
void *cuda_ctx_workspace(cuda_ctx *c, size_t bytes);   // >= bytes of device memory (NULL for 0)
void *cuda_ctx_scratch(cuda_ctx *c, size_t bytes);     // >= bytes of device memory
void *cuda_ctx_hscratch(cuda_ctx *c, size_t bytes);    // >= bytes of pinned host memory

// A grid-stride loop over n elements (launched with cuda_blocks(n) blocks of CUDA_THREADS).
#define GRID_STRIDE(i, n) \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

// Blocks for a grid-stride loop over n elements.
static inline unsigned cuda_blocks(size_t n) {
    size_t b = (n + CUDA_THREADS - 1) / CUDA_THREADS;
    if (b > (1u << 20)) b = 1u << 20;
    return b ? (unsigned)b : 1u;
}

// The per-element kernels' launches (cuda_index.h): launch(off, count) for whole images
// [n0, n0 + k) at a time, off = n0 * per_image and count = k * per_image values, with
// count <= cuda_index_limit(), so that the kernels index with 32 bits. what names the op
// in the message when one image alone is over the limit.
size_t cuda_index_limit(void);   // 2^31 - 1, or BN_CUDA_INDEX_LIMIT (cuda_device.cu)
template <typename F> static void by_image_chunks(const char *what, int n, size_t per_image, F launch) {
    size_t limit = cuda_index_limit();
    int per = cuda_images_per_launch(per_image, n, limit);
    if (per < 1) cli_die("%s: an image of %zu values is over the %zu one kernel launch can index", what, per_image, limit);
    for (size_t n0 = 0; n0 < (size_t)n; n0 += (size_t)per)
        launch(n0 * per_image, ((size_t)per < (size_t)n - n0 ? (size_t)per : (size_t)n - n0) * per_image);
}

// The ops, by file.
void cuda_conv_fwd(ops *o, const conv_desc *d, const float *x, const float *w, const float *b, float *y);
void cuda_conv_bwd_data(ops *o, const conv_desc *d, const float *dy, const float *w, float *dx);
void cuda_conv_bwd_filter(ops *o, const conv_desc *d, const float *x, const float *dy, float *dw, float *db);
// kernels of our own for 3x3 convolutions of stride 1 and padding 1 (cuda_conv3.cu): the
// shapes they take (data_gradient: 1 for conv3_bwd_data), and the workspace the filter
// gradient's partial sums need
int cuda_conv3_fits(const conv_desc *d, int data_gradient);
int cuda_conv3_filter_fits(const conv_desc *d);
size_t cuda_conv3_filter_workspace(const conv_desc *d);
void cuda_conv3_fwd(const conv_desc *d, const float *x, const float *w, const float *b, float *y);
void cuda_conv3_bwd_data(const conv_desc *d, const float *dy, const float *w, float *dx);
void cuda_conv3_bwd_filter(const conv_desc *d, const float *x, const float *dy, float *dw, float *part);

void cuda_bn_fwd_train(ops *o, const bn_desc *d, const float *x, const float *gamma, const float *beta, float *y,
                       float *save_mean, float *save_invstd, float *run_mean, float *run_var);
void cuda_bn_fwd_infer(ops *o, const bn_desc *d, const float *x, const float *gamma, const float *beta,
                       const float *run_mean, const float *run_var, float *y);
void cuda_bn_bwd(ops *o, const bn_desc *d, const float *x, const float *dy, const float *gamma,
                 const float *save_mean, const float *save_invstd, float *dx, float *dgamma, float *dbeta);
// the same with a fused ReLU: relu applies max(0, .) to y, after adding the residual r[i]
// when r is not NULL (ops.h bn_add_relu_*); ym (the forward's y) masks dy
void cuda_bn_fwd_train_ex(ops *o, const bn_desc *d, int relu, const float *r, const float *x, const float *gamma,
                          const float *beta, float *y, float *save_mean, float *save_invstd, float *run_mean,
                          float *run_var);
void cuda_bn_fwd_infer_ex(ops *o, const bn_desc *d, int relu, const float *r, const float *x, const float *gamma,
                          const float *beta, const float *run_mean, const float *run_var, float *y);
void cuda_bn_bwd_ex(ops *o, const bn_desc *d, const float *ym, const float *x, const float *dy, const float *gamma,
                    const float *save_mean, const float *save_invstd, float *dx, float *dgamma, float *dbeta);

void cuda_relu_fwd(ops *o, size_t n, const float *x, float *y);
void cuda_relu_bwd(ops *o, size_t n, const float *y, const float *dy, float *dx);
void cuda_add(ops *o, size_t n, const float *a, const float *b, float *y);
void cuda_add_relu(ops *o, size_t n, const float *a, const float *b, float *y);
void cuda_relu_bwd_add(ops *o, size_t n, const float *y, const float *dy, const float *dy2, float *dx);
void cuda_gap_fwd(ops *o, int n, int c, int hw, const float *x, float *y);
void cuda_gap_bwd(ops *o, int n, int c, int hw, const float *dy, float *dx);

void cuda_linear_fwd(ops *o, int n, int in, int out, const float *x, const float *w, const float *b, float *y);
void cuda_linear_bwd_data(ops *o, int n, int in, int out, const float *dy, const float *w, float *dx);
void cuda_linear_bwd_filter(ops *o, int n, int in, int out, const float *x, const float *dy, float *dw, float *db);
void cuda_xent(ops *o, int n, int classes, const float *logits, const uint8_t *labels, float *dlogits, double *loss,
               int *correct);
void cuda_xent_rows(ops *o, int n, int classes, const float *logits, const uint8_t *labels, float *dlogits,
                    double *row_loss, int32_t *row_hit, ops_step *s);

void cuda_sgd_update(ops *o, float *w, const float *g, float *buf, const uint8_t *mask, size_t n, double lr,
                     double momentum, bool nesterov, double wd, const ops_step *s);
void cuda_adam_update(ops *o, float *w, const float *g, float *m, float *v, const uint8_t *mask, size_t n, double lr,
                      double beta1, double beta2, double eps, double wd, int64_t t, const ops_step *s);
void cuda_sgd_update_many(ops *o, const ops_tensor *t, int k, size_t maxn, double lr, double momentum, bool nesterov,
                          double wd, const ops_step *s);
void cuda_adam_update_many(ops *o, const ops_tensor *t, int k, size_t maxn, double lr, double beta1, double beta2,
                           double eps, double wd, int64_t step, const ops_step *s);
void cuda_batch_fill(ops *o, float *x, const uint8_t *pixels, int c, int h, int w, const uint32_t *idx,
                     const aug_param *par, int n, bool bright, const double *mean, const double *inv,
                     const uint8_t *labels, uint8_t *lab);
void cuda_sync_op(ops *o);
int cuda_graph_begin(ops *o);
void *cuda_graph_end(ops *o);
int cuda_graph_launch(ops *o, void *g);
void cuda_graph_free(ops *o, void *g);

// A kernel of this build, to test that the device can run its code (ops_cuda.cu).
const void *cuda_probe_kernel(void);
#endif
