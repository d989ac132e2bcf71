/* ops.h: the one op interface. Every backend (the plain reference "ref", the fast CPU
 * path "cpu", the CUDA path "cuda") fills an ops table with these functions; the model
 * (model.c) drives forward, backward and update through a table chosen at run time.
 *
 * Conventions: float32, tensors NCHW and contiguous, pointers are device pointers of the
 * backend (host memory for ref and cpu). Every function overwrites its outputs (never
 * accumulates) unless its comment says otherwise.
 *
 * BatchNorm, the one definition used everywhere (train mode, per channel c over the N*H*W
 * values x of that channel, m = N*H*W):
 *   mean = sum(x)/m;  var = sum((x-mean)^2)/m            (biased: used to normalise)
 *   invstd = 1/sqrt(var + eps)                           (eps inside the square root)
 *   y = gamma * (x - mean) * invstd + beta
 *   running_mean = (1-momentum)*running_mean + momentum*mean
 *   running_var  = (1-momentum)*running_var  + momentum*var*m/(m-1)  (unbiased; m=1: var)
 * momentum here is PyTorch's (0.1 = new batch weighs 0.1); Keras' momentum 0.99 is 0.01.
 * Inference mode: y = gamma*(x-running_mean)/sqrt(running_var+eps) + beta. */
#ifndef BN_OPS_H
#define BN_OPS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct conv_desc {
    int n, cin, h, w;        /* input */
    int cout, k, stride, pad;
    int ho, wo;              /* output: (h + 2*pad - k)/stride + 1 (conv_desc_init fills) */
} conv_desc;
void conv_desc_init(conv_desc *d, int n, int cin, int h, int w, int cout, int k, int stride, int pad);

/* One image's augmentation (augment.h draws them): the corner of the crop (the image's own
 * h x w) in the image zero-padded by AUG_PAD on every side (0..2*AUG_PAD each), a
 * left-right mirror, and a brightness delta. */
#define AUG_PAD 4
#define AUG_NORM_MAXC 16   /* batch_fill's mean/inv: channels 0..15 at most are normalised */
typedef struct aug_param {
    int dy, dx;        /* crop corner in the padded image */
    int flip;          /* 1: mirror left-right */
    float delta;       /* brightness added (augment "seed") */
} aug_param;

/* Values of one training step in backend memory, written by the host before the step
 * (model_step_stage) and read by the ops when they run, so that a step recorded once
 * (graph_begin) can be replayed with the next step's values. */
typedef struct ops_step {
    float lr;          /* the optimizer's step size: optim.h optim_step_size */
    int32_t skip;      /* nonzero: sgd_update / adam_update change nothing (xent_rows sets it
                        * when a loss is not finite, as the host skips the step then) */
    int32_t pad[2];
} ops_step;

/* One tensor of a multi-tensor optimizer update (sgd_update_many, adam_update_many): its
 * backend pointers (s1: momentum or Adam's m, NULL when not used; s2: Adam's v; mask NULL:
 * every element) and its size. */
typedef struct ops_tensor {
    float *w;
    const float *g;
    float *s1, *s2;
    const uint8_t *mask;
    size_t n;
} ops_tensor;

typedef struct bn_desc {
    int n, c, hw;            /* x is [n, c, hw] */
    float eps, momentum;
} bn_desc;

typedef struct ops ops;
struct ops {
    const char *name;
    void *ctx;               /* backend state (plans, workspaces); NULL for ref */

    /* y[n,cout,ho,wo] = conv(x[n,cin,h,w], w[cout,cin,k,k]) + b[cout] (b may be NULL) */
    void (*conv_fwd)(ops *o, const conv_desc *d, const float *x, const float *w, const float *b, float *y);
    /* dx[n,cin,h,w] from dy[n,cout,ho,wo] and w */
    void (*conv_bwd_data)(ops *o, const conv_desc *d, const float *dy, const float *w, float *dx);
    /* dw[cout,cin,k,k] (and db[cout] when db != NULL) from x and dy */
    void (*conv_bwd_filter)(ops *o, const conv_desc *d, const float *x, const float *dy, float *dw, float *db);

    /* train mode: y, and save_mean/save_invstd [c] for the backward pass; updates
     * run_mean/run_var in place (skipped when they are NULL) */
    void (*bn_fwd_train)(ops *o, const bn_desc *d, const float *x, const float *gamma, const float *beta,
                         float *y, float *save_mean, float *save_invstd, float *run_mean, float *run_var);
    void (*bn_fwd_infer)(ops *o, const bn_desc *d, const float *x, const float *gamma, const float *beta,
                         const float *run_mean, const float *run_var, float *y);
    /* train-mode backward: dx, dgamma[c], dbeta[c] (dx may be NULL when not needed) */
    void (*bn_bwd)(ops *o, const bn_desc *d, const float *x, const float *dy, const float *gamma,
                   const float *save_mean, const float *save_invstd, float *dx, float *dgamma, float *dbeta);

    void (*relu_fwd)(ops *o, size_t n, const float *x, float *y);          /* y may equal x */
    /* dx = dy * (y > 0), from the ReLU's output y; dx may equal dy */
    void (*relu_bwd)(ops *o, size_t n, const float *y, const float *dy, float *dx);
    void (*add)(ops *o, size_t n, const float *a, const float *b, float *y);   /* y may equal a or b */

    /* global average pool: x[n,c,hw] -> y[n,c]; backward spreads dy/hw */
    void (*gap_fwd)(ops *o, int n, int c, int hw, const float *x, float *y);
    void (*gap_bwd)(ops *o, int n, int c, int hw, const float *dy, float *dx);

    /* y[n,out] = x[n,in] . w[out,in]^T + b[out] (b may be NULL) */
    void (*linear_fwd)(ops *o, int n, int in, int out, const float *x, const float *w, const float *b, float *y);
    void (*linear_bwd_data)(ops *o, int n, int in, int out, const float *dy, const float *w, float *dx);
    void (*linear_bwd_filter)(ops *o, int n, int in, int out, const float *x, const float *dy, float *dw, float *db);

    /* mean softmax cross-entropy over the batch; dlogits = (softmax - onehot)/n (dlogits may
     * be NULL); *loss = mean loss; *correct = number of rows whose argmax is the label
     * (first maximum on ties). loss and correct are host pointers. */
    void (*xent)(ops *o, int n, int classes, const float *logits, const uint8_t *labels,
                 float *dlogits, double *loss, int *correct);

    /* Data-parallel training (set by lib/dist.c; NULL in a single process, the default).
     * allreduce(allreduce_ctx, buf, n) sums buf[0..n) in place over every rank (host memory).
     * Train-mode BatchNorm calls it so that its statistics and gradients are those of the
     * global batch whatever the number of ranks, with the same formulas as one process:
     *   bn_fwd_train: reduce {sum x [c] ..., m} -> mean; then reduce {sum (x-mean)^2 [c]} -> var
     *                 (m = the global count; running averages from the global mean/var);
     *   bn_bwd:       reduce {sum dy [c] ..., sum dy*xhat [c] ..., m} before dx, so dgamma and
     *                 dbeta come out as global sums (the trainer must not reduce them again).
     * Other ops never call it. */
    void (*allreduce)(void *allreduce_ctx, double *buf, size_t n);
    void *allreduce_ctx;

    /* Optional fast path: a blocked activation layout (NULL / 0 in a backend that has none;
     * the model then uses the NCHW entries above only). act_blk = B > 0 means the entries
     * below exist and also take activations "nCHWB": [n][c/B][h][w][B] (channel c at block
     * c/B, lane c%B), for tensors whose channel count is a multiple of B (no padding: the
     * same number of floats as NCHW). `flags` says which tensors are blocked (OPS_BLK_IN:
     * the input side x / dx; OPS_BLK_OUT: the output side y / dy; BatchNorm and pooling
     * take OPS_BLK_IN for all their activation tensors) and which fused work to do:
     *   OPS_RELU (BatchNorm): y = max(0, BN(x)) in one pass; the backward takes dy of that
     *   ReLU's output and the forward's y, and applies the ReLU's mask y > 0 itself (the
     *   gradient of BN then sums the masked dy). Elementwise ops (relu, add) and the
     *   allreduce rule do not depend on the layout. Weights, biases and BN parameters stay
     *   plain. Everything else as the plain entries. */
    int act_blk;
    void (*conv_fwd_l)(ops *o, const conv_desc *d, int flags, const float *x, const float *w, const float *b,
                       float *y);
    void (*conv_bwd_data_l)(ops *o, const conv_desc *d, int flags, const float *dy, const float *w, float *dx);
    void (*conv_bwd_filter_l)(ops *o, const conv_desc *d, int flags, const float *x, const float *dy, float *dw,
                              float *db);
    void (*bn_fwd_train_l)(ops *o, const bn_desc *d, int flags, const float *x, const float *gamma,
                           const float *beta, float *y, float *save_mean, float *save_invstd, float *run_mean,
                           float *run_var);
    void (*bn_fwd_infer_l)(ops *o, const bn_desc *d, int flags, const float *x, const float *gamma,
                           const float *beta, const float *run_mean, const float *run_var, float *y);
    /* y: the forward's output, beta its shift. With OPS_RELU the mask is y > 0: a backend
     * reads it from y, or recomputes y from x, the saved statistics, gamma and beta exactly
     * as its forward did (the cpu one: no pass over y). dx may equal dy (in place). */
    void (*bn_bwd_l)(ops *o, const bn_desc *d, int flags, const float *x, const float *y, const float *dy,
                     const float *gamma, const float *beta, const float *save_mean, const float *save_invstd,
                     float *dx, float *dgamma, float *dbeta);
    void (*gap_fwd_l)(ops *o, int flags, int n, int c, int hw, const float *x, float *y);
    void (*gap_bwd_l)(ops *o, int flags, int n, int c, int hw, const float *dy, float *dx);
    /* layout conversion of an activation x[n,c,hw]: to_blocked 1: NCHW -> nCHWB, 0: back */
    void (*act_convert)(ops *o, int to_blocked, int n, int c, int hw, const float *x, float *y);
    /* Memory. NULL in the host backends (ref, cpu): their tensors are ordinary host memory
     * and the model allocates and copies them itself. A backend whose tensors live elsewhere
     * (cuda: device memory) sets all five, and the model then keeps every tensor an op sees
     * (activations, gradients, parameters, BN statistics, labels) in memory from mem_alloc
     * and never touches it on the host: it moves data only through these. All sizes in
     * bytes; mem_alloc's memory is zero-filled, NULL when out of memory (or for 0 bytes). */
    void *(*mem_alloc)(ops *o, size_t bytes);
    void (*mem_free)(ops *o, void *p);
    void (*mem_upload)(ops *o, void *dst, const void *src, size_t bytes);     /* host -> backend */
    void (*mem_download)(ops *o, void *dst, const void *src, size_t bytes);   /* backend -> host */
    void (*mem_copy)(ops *o, void *dst, const void *src, size_t bytes);       /* within the backend */

    /* Optional fused elementwise ops (NULL: the model composes the plain ones). Each gives
     * the same bits as the composition (a + b is rounded once either way):
     *   add_relu:     y = max(0, a + b) as add then relu_fwd; y may equal a or b;
     *   relu_bwd_add: dx = y > 0 ? dy + dy2 : 0 as add(dy, dy2) then relu_bwd (a ReLU whose
     *                 output's gradient arrives in two parts); dx may equal dy or dy2. */
    void (*add_relu)(ops *o, size_t n, const float *a, const float *b, float *y);
    void (*relu_bwd_add)(ops *o, size_t n, const float *y, const float *dy, const float *dy2, float *dx);
    /* Optional, with the layout entries (NULL: the model runs the BN, then add_relu):
     * BatchNorm, a residual and the ReLU in one pass, y = max(0, BN(x) + r), the same bits as
     * bn_fwd_train_l / bn_fwd_infer_l (flags without OPS_RELU) into a buffer t followed by
     * add_relu(t, r, y). The BN's own output is not kept (its backward does not need it); r
     * has x's layout (flags) and shape; y may equal r. */
    void (*bn_add_relu_fwd_train_l)(ops *o, const bn_desc *d, int flags, const float *x, const float *gamma,
                                    const float *beta, const float *r, float *y, float *save_mean, float *save_invstd,
                                    float *run_mean, float *run_var);
    void (*bn_add_relu_fwd_infer_l)(ops *o, const bn_desc *d, int flags, const float *x, const float *gamma,
                                    const float *beta, const float *run_mean, const float *run_var, const float *r,
                                    float *y);

    /* Optional work in the backend's own memory (only used with the mem_* entries; NULL: the
     * model and the loop do it on the host, as they always do with the host backends), so
     * that a training step moves nothing between host and backend but the loss. All array
     * pointers are backend pointers (mean and inv are host pointers). The host functions
     * named define them, bit for bit (NaN payloads aside):
     *   sgd_update, adam_update: optim.h's, on one tensor of n elements (buf, m, v: its
     *     optimizer state; mask: uint8, NULL = every element);
     *   batch_fill: augment.h's batch_fill_raw: x[n,c,h,w] from the uint8 records
     *     pixels[.][c][h][w] named by idx[n], cropped and mirrored by par[n] (NULL: as they
     *     are), brightness added and clipped when bright, then (v - mean[c]) * inv[c] in
     *     double (mean/inv NULL: none; min(c, AUG_NORM_MAXC) values each); when labels is not NULL also lab[i] = labels[idx[i]];
     *   sync: returns when all queued work is done (BN_PROFILE's timing).
     * sgd_update and adam_update take s (backend memory) or NULL: with s, nothing is done
     * when s->skip is nonzero, and the step size is s->lr (a float, as optim.h's
     * optim_step_size gives it for lr and t) in place of lr (and Adam's t). */
    void (*sgd_update)(ops *o, float *w, const float *g, float *buf, const uint8_t *mask, size_t n, double lr,
                       double momentum, bool nesterov, double wd, const ops_step *s);
    void (*adam_update)(ops *o, float *w, const float *g, float *m, float *v, const uint8_t *mask, size_t n,
                        double lr, double beta1, double beta2, double eps, double wd, int64_t t, const ops_step *s);
    /* Optional: the same update of k tensors in one call (NULL: one call per tensor), each
     * tensor's result sgd_update's / adam_update's bit for bit. t: k entries in backend
     * memory (written once by the caller, mem_upload); maxn: the largest n among them. */
    void (*sgd_update_many)(ops *o, const ops_tensor *t, int k, size_t maxn, double lr, double momentum,
                            bool nesterov, double wd, const ops_step *s);
    void (*adam_update_many)(ops *o, const ops_tensor *t, int k, size_t maxn, double lr, double beta1, double beta2,
                             double eps, double wd, int64_t step, const ops_step *s);
    void (*batch_fill)(ops *o, float *x, const uint8_t *pixels, int c, int h, int w, const uint32_t *idx,
                       const aug_param *par, int n, bool bright, const double *mean, const double *inv,
                       const uint8_t *labels, uint8_t *lab);
    void (*sync)(ops *o);
    /* Optional arithmetic modes (NULL: fp32 only). name "fp32" (the default: every backend's
     * results within fp32 rounding of the reference) or "tf32" (cuda: convolutions may use
     * tensor cores, whose inputs keep 10 mantissa bits); 0, or -1 for a mode the backend
     * does not have. Call before the first op (a change drops cached convolution plans). */
    int (*set_precision)(ops *o, const char *name);

    /* Optional: xent with its results left in backend memory (NULL: the model uses xent).
     * row_loss[i] is row i's loss in double (NaN for a label out of range), row_hit[i] 1
     * when its argmax is the label, else 0; dlogits as xent's. The host's mean is the sum of
     * row_loss in row order over n, which is xent's loss bit for bit (ops_ref defines both).
     * When s is not NULL and some row's loss is not finite, s->skip is set nonzero (never
     * cleared here). */
    void (*xent_rows)(ops *o, int n, int classes, const float *logits, const uint8_t *labels, float *dlogits,
                      double *row_loss, int32_t *row_hit, ops_step *s);
    /* Optional step recording (cuda: CUDA graphs; NULL: none). After graph_begin (0; -1 when
     * it cannot start) the ops called are recorded, not run, until graph_end, which returns
     * the recording, or NULL when recording failed (a call that cannot be recorded: then
     * nothing of it ran). While recording, the caller calls nothing but ops (no mem_*).
     * graph_launch queues the recorded ops again, with the same arguments and pointers: 0,
     * or -1 when the recording is stale (the backend's own buffers or plans changed since:
     * record again). graph_free releases a recording. */
    int (*graph_begin)(ops *o);
    void *(*graph_end)(ops *o);
    int (*graph_launch)(ops *o, void *g);
    void (*graph_free)(ops *o, void *g);
};
enum { OPS_BLK_IN = 1, OPS_BLK_OUT = 2, OPS_RELU = 4 };

/* The plain reference backend (float) and its double-precision twin for gradient tests. */
extern ops ops_ref;

/* Double-precision reference ops, same semantics, for finite-difference tests. */
void conv_fwd_f64(const conv_desc *d, const double *x, const double *w, const double *b, double *y);
void conv_bwd_data_f64(const conv_desc *d, const double *dy, const double *w, double *dx);
void conv_bwd_filter_f64(const conv_desc *d, const double *x, const double *dy, double *dw, double *db);
void bn_fwd_train_f64(const bn_desc *d, const double *x, const double *gamma, const double *beta,
                      double *y, double *save_mean, double *save_invstd, double *run_mean, double *run_var);
void bn_bwd_f64(const bn_desc *d, const double *x, const double *dy, const double *gamma,
                const double *save_mean, const double *save_invstd, double *dx, double *dgamma, double *dbeta);
void linear_fwd_f64(int n, int in, int out, const double *x, const double *w, const double *b, double *y);
void linear_bwd_data_f64(int n, int in, int out, const double *dy, const double *w, double *dx);
void linear_bwd_filter_f64(int n, int in, int out, const double *x, const double *dy, double *dw, double *db);
void xent_f64(int n, int classes, const double *logits, const uint8_t *labels, double *dlogits, double *loss);

/* A backend by name: "ref", "cpu", "cuda" (NULL when not built or not usable; *why says
 * why). "auto" picks cuda when usable, else cpu. */
ops *ops_get(const char *name, const char **why);
/* The --precision choices, and the table to use for one: o itself with the mode set (fp32,
 * and tf32 on cuda), or for "tf32-sim" / "bf16-sim" a new table, o's own except that its
 * convolutions round their operands as tensor cores do (ops_sim.c: host backends only);
 * NULL with *why when the backend has no such mode. */
#define OPS_PRECISIONS "fp32,tf32,tf32-sim,bf16-sim"
ops *ops_precision(ops *o, const char *name, const char **why);
/* ops_sim.c: the wrapper, and its rounding of one value (drop 13: tf32, 16: bf16) */
ops *ops_sim_wrap(ops *base, const char *mode, const char **why);
float ops_sim_round(float v, int drop);
#endif
