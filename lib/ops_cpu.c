/* ops_cpu.c: the fast CPU backend "cpu": the ops table ops_cpu, and the memory-bound ops.
 *
 * Convolutions go to oneDNN (ops_cpu_conv.c), BatchNorm is ops_cpu_bn.c. The rest stream
 * through memory and are written here as OpenMP loops over elements (or rows, or blocks of
 * 8 or 16 channels for the blocked layout of ops.h act_blk), with inner loops the compiler
 * vectorises (`omp simd`). The fully connected layer and the loss are a few
 * thousand multiply-adds per batch in ResNet-20 (0.01% of a step): they use the reference
 * code as it is.
 *
 * Accuracy: BatchNorm's statistics and gradient sums are accumulated in double (each simd
 * lane a double partial sum; lanes added in a fixed order), so they are as good as the
 * reference's; the per-element work (normalise, dx) is float arithmetic, a few float
 * roundings per element. Determinism: every sum has a fixed order: a channel is summed by
 * one thread, in a loop whose vector shape is fixed at compile time; no atomics. The
 * results depend neither on the run nor (outside the convolutions) on the thread count.
 *
 * Small elementwise calls stay on one thread (OpenMP's fork costs more than the work). */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ops_cpu.h"

/* elementwise ops below this many elements run on the calling thread alone */
#define PAR_MIN ((size_t)1 << 15)

/* ---- elementwise ----------------------------------------------------------------------- */

/* NaN passes through (NaN < 0 is false), as in the reference and PyTorch. */
static void relu_fwd(ops *o, size_t n, const float *x, float *y) {
    (void)o;
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];
}

static void relu_bwd(ops *o, size_t n, const float *y, const float *dy, float *dx) {
    (void)o;
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float g = dy[i];                             /* loaded always: the loop vectorises */
        dx[i] = y[i] > 0.0f ? g : 0.0f;
    }
}

static void add(ops *o, size_t n, const float *a, const float *b, float *y) {
    (void)o;
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

static void add_relu(ops *o, size_t n, const float *a, const float *b, float *y) {
    (void)o;
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float v = a[i] + b[i];
        y[i] = v < 0.0f ? 0.0f : v;
    }
}

static void relu_bwd_add(ops *o, size_t n, const float *y, const float *dy, const float *dy2, float *dx) {
    (void)o;
    /* the select as a bit mask: written as `y > 0 ? g : 0` GCC 12 keeps a branch per element
     * here (scalar, 7x slower than relu_bwd) */
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float g = dy[i] + dy2[i];
        uint32_t b;
        memcpy(&b, &g, sizeof b);
        b &= -(uint32_t)(y[i] > 0.0f);
        memcpy(&dx[i], &b, sizeof b);
    }
}

/* ---- global average pool --------------------------------------------------------------- */

static void gap_fwd(ops *o, int n, int c, int hw, const float *x, float *y) {
    (void)o;
    size_t rows = (size_t)n * c;
#pragma omp parallel for schedule(static) if (rows * hw >= PAR_MIN)
    for (size_t j = 0; j < rows; j++) {
        const float *p = x + j * hw;
        double acc = 0.0;
#pragma omp simd reduction(+ : acc)
        for (int i = 0; i < hw; i++) acc += p[i];
        y[j] = (float)(acc / hw);
    }
}

static void gap_bwd(ops *o, int n, int c, int hw, const float *dy, float *dx) {
    (void)o;
    size_t rows = (size_t)n * c;
#pragma omp parallel for schedule(static) if (rows * hw >= PAR_MIN)
    for (size_t j = 0; j < rows; j++) {
        float g = (float)((double)dy[j] / hw);
        float *q = dx + j * hw;
        for (int i = 0; i < hw; i++) q[i] = g;
    }
}

/* ---- blocked layout (ops.h act_blk): pooling and conversion ------------------------------ */

static void gap_fwd_l(ops *o, int flags, int n, int c, int hw, const float *x, float *y) {
    if (!(flags & OPS_BLK_IN)) {
        gap_fwd(o, n, c, hw, x, y);
        return;
    }
    const int L = o->act_blk, cbs = c / L;
#pragma omp parallel for schedule(static) if ((size_t)n * c * hw >= PAR_MIN)
    for (int j = 0; j < n * cbs; j++) {
        const float *p = x + (size_t)j * hw * L;
        double acc[16] = {0};
        for (int i = 0; i < hw; i++)
#pragma omp simd
            for (int l = 0; l < L; l++) acc[l] += p[i * L + l];
        for (int l = 0; l < L; l++) y[(size_t)j * L + l] = (float)(acc[l] / hw);
    }
}

static void gap_bwd_l(ops *o, int flags, int n, int c, int hw, const float *dy, float *dx) {
    if (!(flags & OPS_BLK_IN)) {
        gap_bwd(o, n, c, hw, dy, dx);
        return;
    }
    const int L = o->act_blk, cbs = c / L;
#pragma omp parallel for schedule(static) if ((size_t)n * c * hw >= PAR_MIN)
    for (int j = 0; j < n * cbs; j++) {
        float g[16];
        for (int l = 0; l < L; l++) g[l] = (float)((double)dy[(size_t)j * L + l] / hw);
        float *q = dx + (size_t)j * hw * L;
        for (int i = 0; i < hw; i++)
#pragma omp simd
            for (int l = 0; l < L; l++) q[i * L + l] = g[l];
    }
}

/* NCHW <-> nChwLc: image n, block b: the hw x L tile is the transpose of L rows of hw */
void cpu_act_convert(ops *o, int to_blocked, int n, int c, int hw, const float *x, float *y) {
    (void)o;
    const int L = o->act_blk, cbs = c / L;
#pragma omp parallel for schedule(static) if ((size_t)n * c * hw >= PAR_MIN)
    for (int j = 0; j < n * cbs; j++) {
        const float *p = x + (size_t)j * hw * L;
        float *q = y + (size_t)j * hw * L;
        for (int l = 0; l < L; l++)
            for (int i = 0; i < hw; i++) {
                if (to_blocked) q[i * L + l] = p[(size_t)l * hw + i];
                else q[(size_t)l * hw + i] = p[i * L + l];
            }
    }
}

/* ---- the small ops: the reference's ---------------------------------------------------- */

static void linear_fwd(ops *o, int n, int in, int out, const float *x, const float *w, const float *b, float *y) {
    (void)o;
    ops_ref.linear_fwd(&ops_ref, n, in, out, x, w, b, y);
}
static void linear_bwd_data(ops *o, int n, int in, int out, const float *dy, const float *w, float *dx) {
    (void)o;
    ops_ref.linear_bwd_data(&ops_ref, n, in, out, dy, w, dx);
}
static void linear_bwd_filter(ops *o, int n, int in, int out, const float *x, const float *dy, float *dw, float *db) {
    (void)o;
    ops_ref.linear_bwd_filter(&ops_ref, n, in, out, x, dy, dw, db);
}
static void xent(ops *o, int n, int classes, const float *logits, const uint8_t *labels, float *dlogits,
                 double *loss, int *correct) {
    (void)o;
    ops_ref.xent(&ops_ref, n, classes, logits, labels, dlogits, loss, correct);
}

ops ops_cpu = {
    .name = "cpu",
    .ctx = NULL,                    /* the convolution cache is ops_cpu_conv.c's own */
    .conv_fwd = cpu_conv_fwd,
    .conv_bwd_data = cpu_conv_bwd_data,
    .conv_bwd_filter = cpu_conv_bwd_filter,
    .bn_fwd_train = cpu_bn_fwd_train,
    .bn_fwd_infer = cpu_bn_fwd_infer,
    .bn_bwd = cpu_bn_bwd,
    .relu_fwd = relu_fwd,
    .relu_bwd = relu_bwd,
    .add = add,
    .gap_fwd = gap_fwd,
    .gap_bwd = gap_bwd,
    .linear_fwd = linear_fwd,
    .linear_bwd_data = linear_bwd_data,
    .linear_bwd_filter = linear_bwd_filter,
    .xent = xent,
    .act_blk = 8,                   /* until cpu_backend() chooses */
    .conv_fwd_l = cpu_conv_fwd_l,
    .conv_bwd_data_l = cpu_conv_bwd_data_l,
    .conv_bwd_filter_l = cpu_conv_bwd_filter_l,
    .bn_fwd_train_l = cpu_bn_fwd_train_l,
    .bn_fwd_infer_l = cpu_bn_fwd_infer_l,
    .bn_bwd_l = cpu_bn_bwd_l,
    .gap_fwd_l = gap_fwd_l,
    .gap_bwd_l = gap_bwd_l,
    .act_convert = cpu_act_convert,
    .add_relu = add_relu,
    .relu_bwd_add = relu_bwd_add,
};

/* ---- scratch buffers (ops_cpu.h) ------------------------------------------------------- */
void *cpu_buf_get(cpu_buf *b, size_t bytes) {
    if (bytes > b->cap) {
        size_t n = (bytes + 63) / 64 * 64;
        free(b->p);
        b->p = aligned_alloc(64, n);
        if (!b->p) abort();
        b->cap = n;
    }
    return b->p;
}

/* ---- the block width ------------------------------------------------------------------- */
void cpu_blk_set(int blk) { ops_cpu.act_blk = blk == 16 ? 16 : 8; }

ops *cpu_backend(void) {
    static int chosen;
    if (!chosen) {
        const char *e = getenv("BN_CPU_BLK");
        int b = e && strcmp(e, "16") == 0 ? 16 : e && strcmp(e, "8") == 0 ? 8 : cpu_blk_preferred();
        cpu_blk_set(b);
        chosen = 1;
    }
    return &ops_cpu;
}
