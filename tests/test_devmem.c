/* test_devmem.c: the model and the training loop on a backend with memory of its own
 * (ops.h mem_*), as the cuda one is, checked here without a GPU.
 *
 * "devref" is the reference backend behind a wall: its memory comes from mem_alloc as
 * pointers with bit 62 set (x86-64 addresses are canonical below 2^47, so such a pointer
 * faults the moment the host dereferences it, while pointer arithmetic on it still works:
 * no carry reaches bit 62). Its ops strip the bit and call ops_ref; mem_upload /
 * mem_download / mem_copy are the only other way in. So any place where the model, the
 * optimizer or the loop touches backend memory on the host crashes this test, and any
 * place where they forget to move data (an input not uploaded, gradients not downloaded,
 * parameters not sent back after the optimizer, running statistics not brought home before
 * a checkpoint is written) makes its results differ from ops_ref's. With the same ops in
 * the same order the two must agree bit for bit: checkpoints, losses, logits,
 * activations. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tests/check.h"
#include "../tests/testds.h"
#include "checkpoint.h"
#include "dataset.h"
#include "freeze.h"
#include "model.h"
#include "model_extra.h"
#include "ops.h"
#include "optim.h"
#include "rng.h"
#include "stream.h"
#include "train.h"

static rng R;   /* testvec.h's generator (unused here) */
#include "testvec.h"
#include "train_compare.h"

#define WALL ((uintptr_t)1 << 62)
static size_t live_allocs, uploads, downloads;
static size_t alloc_calls, fail_at = SIZE_MAX;   /* mem_alloc number fail_at returns NULL */

/* devgraph (below) is recording: what may not be called then fails the recording (rec_bad) */
static bool recording_on, rec_bad;
#define NOT_RECORDING()        \
    do {                       \
        if (recording_on) {    \
            rec_bad = true;    \
            return;            \
        }                      \
    } while (0)

static void *in(const void *p) { return p ? (void *)((uintptr_t)p ^ WALL) : NULL; }   /* backend -> real */
static void *out(void *p) { return p ? (void *)((uintptr_t)p ^ WALL) : NULL; }        /* real -> backend */
#define R(p) ((float *)in(p))

static void *d_alloc(ops *o, size_t bytes) {
    (void)o;
    if (recording_on) {     /* refused, as cudaMalloc is under stream capture */
        rec_bad = true;
        return NULL;
    }
    if (!bytes || alloc_calls++ == fail_at) return NULL;
    void *p = calloc(1, bytes);
    if (p) live_allocs++;
    return out(p);
}
static void d_free(ops *o, void *p) {
    (void)o;
    if (recording_on) rec_bad = true;
    if (p) live_allocs--;
    free(in(p));
}
static void d_upload(ops *o, void *dst, const void *src, size_t n) {
    NOT_RECORDING();
    (void)o, uploads++, memcpy(in(dst), src, n);
}
static void d_download(ops *o, void *dst, const void *src, size_t n) {
    NOT_RECORDING();
    (void)o, downloads++, memcpy(dst, in(src), n);
}
static void d_copy(ops *o, void *dst, const void *src, size_t n) {
    NOT_RECORDING();
    (void)o, memcpy(in(dst), in(src), n);
}

static ops *F = &ops_ref;
static void conv_fwd(ops *o, const conv_desc *d, const float *x, const float *w, const float *b, float *y) {
    NOT_RECORDING();
    (void)o, F->conv_fwd(F, d, R(x), R(w), R(b), R(y));
}
static void conv_bwd_data(ops *o, const conv_desc *d, const float *dy, const float *w, float *dx) {
    NOT_RECORDING();
    (void)o, F->conv_bwd_data(F, d, R(dy), R(w), R(dx));
}
static void conv_bwd_filter(ops *o, const conv_desc *d, const float *x, const float *dy, float *dw, float *db) {
    NOT_RECORDING();
    (void)o, F->conv_bwd_filter(F, d, R(x), R(dy), R(dw), R(db));
}
/* the reference with o's allreduce hook (data-parallel BatchNorm) */
static ops with_hook(const ops *o) {
    ops f = ops_ref;
    f.allreduce = o->allreduce, f.allreduce_ctx = o->allreduce_ctx;
    return f;
}
static void bn_fwd_train(ops *o, const bn_desc *d, const float *x, const float *g, const float *b, float *y,
                         float *sm, float *si, float *rm, float *rv) {
    NOT_RECORDING();
    ops f = with_hook(o);
    f.bn_fwd_train(&f, d, R(x), R(g), R(b), R(y), R(sm), R(si), R(rm), R(rv));
}
static void bn_fwd_infer(ops *o, const bn_desc *d, const float *x, const float *g, const float *b, const float *rm,
                         const float *rv, float *y) {
    NOT_RECORDING();
    (void)o, F->bn_fwd_infer(F, d, R(x), R(g), R(b), R(rm), R(rv), R(y));
}
static void bn_bwd(ops *o, const bn_desc *d, const float *x, const float *dy, const float *g, const float *sm,
                   const float *si, float *dx, float *dg, float *db) {
    NOT_RECORDING();
    ops f = with_hook(o);
    f.bn_bwd(&f, d, R(x), R(dy), R(g), R(sm), R(si), R(dx), R(dg), R(db));
}
static void bn_bwd_nohook(ops *o, const bn_desc *d, const float *x, const float *dy, const float *g,
                          const float *sm, const float *si, float *dx, float *dg, float *db) {
    NOT_RECORDING();
    (void)o, F->bn_bwd(F, d, R(x), R(dy), R(g), R(sm), R(si), R(dx), R(dg), R(db));
}
static void relu_fwd(ops *o, size_t n, const float *x, float *y) {
    NOT_RECORDING(); (void)o, F->relu_fwd(F, n, R(x), R(y)); }
static void relu_bwd(ops *o, size_t n, const float *y, const float *dy, float *dx) {
    NOT_RECORDING();
    (void)o, F->relu_bwd(F, n, R(y), R(dy), R(dx));
}
static void add(ops *o, size_t n, const float *a, const float *b, float *y) {
    NOT_RECORDING(); (void)o, F->add(F, n, R(a), R(b), R(y)); }
static void gap_fwd(ops *o, int n, int c, int hw, const float *x, float *y) {
    NOT_RECORDING(); (void)o, F->gap_fwd(F, n, c, hw, R(x), R(y)); }
static void gap_bwd(ops *o, int n, int c, int hw, const float *dy, float *dx) {
    NOT_RECORDING();
    (void)o, F->gap_bwd(F, n, c, hw, R(dy), R(dx));
}
static void linear_fwd(ops *o, int n, int i, int k, const float *x, const float *w, const float *b, float *y) {
    NOT_RECORDING();
    (void)o, F->linear_fwd(F, n, i, k, R(x), R(w), R(b), R(y));
}
static void linear_bwd_data(ops *o, int n, int i, int k, const float *dy, const float *w, float *dx) {
    NOT_RECORDING();
    (void)o, F->linear_bwd_data(F, n, i, k, R(dy), R(w), R(dx));
}
static void linear_bwd_filter(ops *o, int n, int i, int k, const float *x, const float *dy, float *dw, float *db) {
    NOT_RECORDING();
    (void)o, F->linear_bwd_filter(F, n, i, k, R(x), R(dy), R(dw), R(db));
}
static void xent(ops *o, int n, int classes, const float *logits, const uint8_t *labels, float *dlogits,
                 double *loss, int *correct) {
    NOT_RECORDING();   /* loss and correct are host pointers (ops.h) */
    (void)o, F->xent(F, n, classes, R(logits), (const uint8_t *)in(labels), R(dlogits), loss, correct);
}

/* the optional work in backend memory (ops.h): the host functions that define it, behind the wall */
static void sgd_upd(ops *o, float *w, const float *g, float *buf, const uint8_t *mask, size_t n, double lr,
                    double mom, bool nesterov, double wd, const ops_step *s) {
    NOT_RECORDING();
    (void)o;
    const ops_step *hs = in(s);
    if (hs && hs->skip) return;
    sgd_update(R(w), R(g), R(buf), in(mask), n, hs ? (double)hs->lr : lr, mom, nesterov, wd);
}
static void adam_upd(ops *o, float *w, const float *g, float *m, float *v, const uint8_t *mask, size_t n, double lr,
                     double b1, double b2, double eps, double wd, int64_t t, const ops_step *s) {
    NOT_RECORDING();
    (void)o;
    const ops_step *hs = in(s);
    if (hs && hs->skip) return;
    if (hs) adam_update_at(R(w), R(g), R(m), R(v), in(mask), n, hs->lr, b1, b2, eps, wd);
    else adam_update(R(w), R(g), R(m), R(v), in(mask), n, lr, b1, b2, eps, wd, t);
}
/* the multi-tensor updates: the table read behind the wall, each tensor as sgd_upd / adam_upd */
static size_t many_calls;
static void sgd_many(ops *o, const ops_tensor *t, int k, size_t maxn, double lr, double mom, bool nesterov,
                     double wd, const ops_step *s) {
    NOT_RECORDING();
    const ops_tensor *h = in(t);
    size_t big = 0;
    for (int j = 0; j < k; j++) big = h[j].n > big ? h[j].n : big;
    if (big != maxn) abort();   /* the caller's maxn must be the table's */
    for (int j = 0; j < k; j++) sgd_upd(o, h[j].w, h[j].g, h[j].s1, h[j].mask, h[j].n, lr, mom, nesterov, wd, s);
    many_calls++;
}
static void adam_many(ops *o, const ops_tensor *t, int k, size_t maxn, double lr, double b1, double b2, double eps,
                      double wd, int64_t step, const ops_step *s) {
    NOT_RECORDING();
    const ops_tensor *h = in(t);
    size_t big = 0;
    for (int j = 0; j < k; j++) big = h[j].n > big ? h[j].n : big;
    if (big != maxn) abort();
    for (int j = 0; j < k; j++)
        adam_upd(o, h[j].w, h[j].g, h[j].s1, h[j].s2, h[j].mask, h[j].n, lr, b1, b2, eps, wd, step, s);
    many_calls++;
}
static void xent_rows(ops *o, int n, int classes, const float *logits, const uint8_t *labels, float *dlogits,
                      double *row_loss, int32_t *row_hit, ops_step *s) {
    NOT_RECORDING();
    (void)o, F->xent_rows(F, n, classes, R(logits), in(labels), R(dlogits), in(row_loss), in(row_hit), in(s));
}
static void bfill(ops *o, float *x, const uint8_t *pixels, int c, int h, int w, const uint32_t *idx,
                  const aug_param *par, int n, bool bright, const double *mean, const double *inv,
                  const uint8_t *labels, uint8_t *lab) {
    NOT_RECORDING();
    (void)o;
    const uint32_t *ri = in(idx);
    batch_fill_raw(R(x), in(pixels), c, h, w, ri, in(par), n, bright, mean, inv);
    if (labels)
        for (int i = 0; i < n; i++) ((uint8_t *)in(lab))[i] = ((const uint8_t *)in(labels))[ri[i]];
}

static ops devref = {
    .name = "devref",
    .conv_fwd = conv_fwd, .conv_bwd_data = conv_bwd_data, .conv_bwd_filter = conv_bwd_filter,
    .bn_fwd_train = bn_fwd_train, .bn_fwd_infer = bn_fwd_infer, .bn_bwd = bn_bwd,
    .relu_fwd = relu_fwd, .relu_bwd = relu_bwd, .add = add, .gap_fwd = gap_fwd, .gap_bwd = gap_bwd,
    .linear_fwd = linear_fwd, .linear_bwd_data = linear_bwd_data, .linear_bwd_filter = linear_bwd_filter,
    .xent = xent,
    .mem_alloc = d_alloc, .mem_free = d_free, .mem_upload = d_upload, .mem_download = d_download,
    .mem_copy = d_copy,
};
/* devref that also builds batches and takes optimizer steps in its memory, as cuda does */
static ops devfull, devfast;

/* The layout entries at block width 1 (nCHW1 is NCHW), as the cuda backend has them, so that
 * the model takes its fast path (fused BN+ReLU, add+ReLU, ReLU backward + add): here each is
 * the composition of the plain ops it fuses, so the results must be ref's bits. */
static size_t bn_numel(const bn_desc *d) { return (size_t)d->n * (size_t)d->c * (size_t)d->hw; }
static void conv_fwd_1(ops *o, const conv_desc *d, int fl, const float *x, const float *w, const float *b, float *y) {
    (void)fl, conv_fwd(o, d, x, w, b, y);
}
static void conv_bwd_data_1(ops *o, const conv_desc *d, int fl, const float *dy, const float *w, float *dx) {
    (void)fl, conv_bwd_data(o, d, dy, w, dx);
}
static void conv_bwd_filter_1(ops *o, const conv_desc *d, int fl, const float *x, const float *dy, float *dw,
                              float *db) {
    (void)fl, conv_bwd_filter(o, d, x, dy, dw, db);
}
static void bn_fwd_train_1(ops *o, const bn_desc *d, int fl, const float *x, const float *g, const float *b, float *y,
                           float *sm, float *si, float *rm, float *rv) {
    bn_fwd_train(o, d, x, g, b, y, sm, si, rm, rv);
    if (fl & OPS_RELU) relu_fwd(o, bn_numel(d), y, y);
}
static void bn_fwd_infer_1(ops *o, const bn_desc *d, int fl, const float *x, const float *g, const float *b,
                           const float *rm, const float *rv, float *y) {
    bn_fwd_infer(o, d, x, g, b, rm, rv, y);
    if (fl & OPS_RELU) relu_fwd(o, bn_numel(d), y, y);
}
static void bn_bwd_1(ops *o, const bn_desc *d, int fl, const float *x, const float *y, const float *dy,
                     const float *g, const float *b, const float *sm, const float *si, float *dx, float *dg,
                     float *db) {
    (void)b;
    if (!(fl & OPS_RELU)) {
        bn_bwd(o, d, x, dy, g, sm, si, dx, dg, db);
        return;
    }
    float *t = d_alloc(o, bn_numel(d) * sizeof *t);   /* the masked dy (dx may be dy or NULL) */
    relu_bwd(o, bn_numel(d), y, dy, t);
    bn_bwd(o, d, x, t, g, sm, si, dx, dg, db);
    d_free(o, t);
}
static void gap_fwd_1(ops *o, int fl, int n, int c, int hw, const float *x, float *y) {
    (void)fl, gap_fwd(o, n, c, hw, x, y);
}
static void gap_bwd_1(ops *o, int fl, int n, int c, int hw, const float *dy, float *dx) {
    (void)fl, gap_bwd(o, n, c, hw, dy, dx);
}
static void act_convert_1(ops *o, int to, int n, int c, int hw, const float *x, float *y) {
    (void)to;
    if (x != y) d_copy(o, y, x, (size_t)n * c * hw * sizeof *x);
}
static void add_relu_1(ops *o, size_t n, const float *a, const float *b, float *y) {
    add(o, n, a, b, y);
    relu_fwd(o, n, y, y);
}
static void relu_bwd_add_1(ops *o, size_t n, const float *y, const float *dy, const float *dy2, float *dx) {
    add(o, n, dy, dy2, dx);
    relu_bwd(o, n, y, dx, dx);
}

/* BN + residual + ReLU: the BN into a buffer of its own (y may be r), then add_relu */
static size_t bn_add_relu_calls;
static void bn_add_relu_fwd_train_1(ops *o, const bn_desc *d, int fl, const float *x, const float *g, const float *b,
                                    const float *r, float *y, float *sm, float *si, float *rm, float *rv) {
    float *t = d_alloc(o, bn_numel(d) * sizeof *t);
    bn_fwd_train_1(o, d, fl, x, g, b, t, sm, si, rm, rv);
    add_relu_1(o, bn_numel(d), t, r, y);
    d_free(o, t);
    bn_add_relu_calls++;
}
static void bn_add_relu_fwd_infer_1(ops *o, const bn_desc *d, int fl, const float *x, const float *g, const float *b,
                                    const float *rm, const float *rv, const float *r, float *y) {
    float *t = d_alloc(o, bn_numel(d) * sizeof *t);
    bn_fwd_infer_1(o, d, fl, x, g, b, rm, rv, t);
    add_relu_1(o, bn_numel(d), t, r, y);
    d_free(o, t);
    bn_add_relu_calls++;
}

static void make_devfull(void) {
    devfull = devref;
    devfull.name = "devfull";
    devfull.sgd_update = sgd_upd, devfull.adam_update = adam_upd, devfull.batch_fill = bfill;
    devfull.xent_rows = xent_rows;
    devfast = devfull;
    devfast.sgd_update_many = sgd_many, devfast.adam_update_many = adam_many;   /* devfull: one call a tensor */
    devfast.name = "devfast";
    devfast.act_blk = 1;
    devfast.conv_fwd_l = conv_fwd_1, devfast.conv_bwd_data_l = conv_bwd_data_1;
    devfast.conv_bwd_filter_l = conv_bwd_filter_1, devfast.bn_fwd_train_l = bn_fwd_train_1;
    devfast.bn_fwd_infer_l = bn_fwd_infer_1, devfast.bn_bwd_l = bn_bwd_1, devfast.gap_fwd_l = gap_fwd_1;
    devfast.gap_bwd_l = gap_bwd_1, devfast.act_convert = act_convert_1, devfast.add_relu = add_relu_1;
    devfast.relu_bwd_add = relu_bwd_add_1;
    devfast.bn_add_relu_fwd_train_l = bn_add_relu_fwd_train_1, devfast.bn_add_relu_fwd_infer_l = bn_add_relu_fwd_infer_1;
}

/* ---- devgraph: devfast with recorded steps (ops.h graph_*) -------------------------------- */
/* Between graph_begin and graph_end its ops record their calls, arguments by value (the
 * descriptors and the host arrays batch_fill reads copied, as a CUDA graph copies kernel
 * arguments), and run nothing; graph_launch runs the calls again in order. So a value that a
 * step takes from the host when a call is made, rather than from backend memory when it
 * runs (the stage), stays frozen at the recording, and every replayed step after it differs
 * from ref's: the bit-for-bit tests below catch that. mem_* while recording make the
 * recording fail, as a synchronous copy or an allocation does under CUDA (rec_bad). Knobs:
 * fail_records (graph_end fails), stale_launches (graph_launch of a recording launched
 * before says stale). */
enum {
    C_CONV_FWD, C_CONV_BWD_DATA, C_CONV_BWD_FILTER, C_BN_FWD_TRAIN, C_BN_FWD_INFER, C_BN_BWD, C_RELU_FWD,
    C_RELU_BWD, C_ADD, C_GAP_FWD, C_GAP_BWD, C_LIN_FWD, C_LIN_BWD_DATA, C_LIN_BWD_FILTER, C_XENT, C_XENT_ROWS,
    C_ADD_RELU, C_RELU_BWD_ADD, C_SGD, C_ADAM, C_FILL, C_CONVERT, C_BN_ADD_RELU_TRAIN, C_BN_ADD_RELU_INFER,
    C_SGD_MANY, C_ADAM_MANY
};
typedef struct call {
    int kind, fl, i[4];
    conv_desc cd;
    bn_desc bd;
    void *p[11];
    size_t z;
    double d[5];
    int64_t t;
    bool b, norm;
    double mean[AUG_NORM_MAXC], inv[AUG_NORM_MAXC];
} call;
typedef struct recording { call *c; int n, launched; } recording;
static call *rec;
static int nrec, caprec;
static int fail_records, stale_launches;   /* knobs: how many of the next graph_end / graph_launch fail */
static size_t records, launches;

static call *push(int kind) {
    if (nrec == caprec) {
        caprec = caprec ? 2 * caprec : 256;
        rec = realloc(rec, (size_t)caprec * sizeof *rec);
        if (!rec) abort();
    }
    call *c = &rec[nrec++];
    memset(c, 0, sizeof *c);
    c->kind = kind;
    return c;
}
#define P(k, v) (c->p[k] = (void *)(v))

static void run_call(ops *o, const call *c);
#define OR_RECORD(kind) \
    call *c = NULL;     \
    if (recording_on) c = push(kind);
/* each op: run it now, or record it */
static void g_conv_fwd_l(ops *o, const conv_desc *d, int fl, const float *x, const float *w, const float *b,
                         float *y) {
    OR_RECORD(C_CONV_FWD);
    if (!c) return conv_fwd_1(o, d, fl, x, w, b, y);
    c->cd = *d, c->fl = fl, P(0, x), P(1, w), P(2, b), P(3, y);
}
static void g_conv_bwd_data_l(ops *o, const conv_desc *d, int fl, const float *dy, const float *w, float *dx) {
    OR_RECORD(C_CONV_BWD_DATA);
    if (!c) return conv_bwd_data_1(o, d, fl, dy, w, dx);
    c->cd = *d, c->fl = fl, P(0, dy), P(1, w), P(2, dx);
}
static void g_conv_bwd_filter_l(ops *o, const conv_desc *d, int fl, const float *x, const float *dy, float *dw,
                                float *db) {
    OR_RECORD(C_CONV_BWD_FILTER);
    if (!c) return conv_bwd_filter_1(o, d, fl, x, dy, dw, db);
    c->cd = *d, c->fl = fl, P(0, x), P(1, dy), P(2, dw), P(3, db);
}
static void g_bn_fwd_train_l(ops *o, const bn_desc *d, int fl, const float *x, const float *g, const float *b,
                             float *y, float *sm, float *si, float *rm, float *rv) {
    OR_RECORD(C_BN_FWD_TRAIN);
    if (!c) return bn_fwd_train_1(o, d, fl, x, g, b, y, sm, si, rm, rv);
    c->bd = *d, c->fl = fl, P(0, x), P(1, g), P(2, b), P(3, y), P(4, sm), P(5, si), P(6, rm), P(7, rv);
}
static void g_bn_fwd_infer_l(ops *o, const bn_desc *d, int fl, const float *x, const float *g, const float *b,
                             const float *rm, const float *rv, float *y) {
    OR_RECORD(C_BN_FWD_INFER);
    if (!c) return bn_fwd_infer_1(o, d, fl, x, g, b, rm, rv, y);
    c->bd = *d, c->fl = fl, P(0, x), P(1, g), P(2, b), P(3, rm), P(4, rv), P(5, y);
}
static void g_bn_bwd_l(ops *o, const bn_desc *d, int fl, const float *x, const float *y, const float *dy,
                       const float *g, const float *b, const float *sm, const float *si, float *dx, float *dg,
                       float *db) {
    OR_RECORD(C_BN_BWD);
    if (!c) return bn_bwd_1(o, d, fl, x, y, dy, g, b, sm, si, dx, dg, db);
    c->bd = *d, c->fl = fl, P(0, x), P(1, y), P(2, dy), P(3, g), P(4, b), P(5, sm), P(6, si), P(7, dx), P(8, dg),
    P(9, db);
}
static void g_bn_add_relu_train(ops *o, const bn_desc *d, int fl, const float *x, const float *g, const float *b,
                                const float *r, float *y, float *sm, float *si, float *rm, float *rv) {
    OR_RECORD(C_BN_ADD_RELU_TRAIN);
    if (!c) return bn_add_relu_fwd_train_1(o, d, fl, x, g, b, r, y, sm, si, rm, rv);
    c->bd = *d, c->fl = fl, P(0, x), P(1, g), P(2, b), P(3, r), P(4, y), P(5, sm), P(6, si), P(7, rm), P(8, rv);
}
static void g_bn_add_relu_infer(ops *o, const bn_desc *d, int fl, const float *x, const float *g, const float *b,
                                const float *rm, const float *rv, const float *r, float *y) {
    OR_RECORD(C_BN_ADD_RELU_INFER);
    if (!c) return bn_add_relu_fwd_infer_1(o, d, fl, x, g, b, rm, rv, r, y);
    c->bd = *d, c->fl = fl, P(0, x), P(1, g), P(2, b), P(3, rm), P(4, rv), P(5, r), P(6, y);
}
static void g_relu_fwd(ops *o, size_t n, const float *x, float *y) {
    OR_RECORD(C_RELU_FWD);
    if (!c) return relu_fwd(o, n, x, y);
    c->z = n, P(0, x), P(1, y);
}
static void g_relu_bwd(ops *o, size_t n, const float *y, const float *dy, float *dx) {
    OR_RECORD(C_RELU_BWD);
    if (!c) return relu_bwd(o, n, y, dy, dx);
    c->z = n, P(0, y), P(1, dy), P(2, dx);
}
static void g_add(ops *o, size_t n, const float *a, const float *b, float *y) {
    OR_RECORD(C_ADD);
    if (!c) return add(o, n, a, b, y);
    c->z = n, P(0, a), P(1, b), P(2, y);
}
static void g_add_relu(ops *o, size_t n, const float *a, const float *b, float *y) {
    OR_RECORD(C_ADD_RELU);
    if (!c) return add_relu_1(o, n, a, b, y);
    c->z = n, P(0, a), P(1, b), P(2, y);
}
static void g_relu_bwd_add(ops *o, size_t n, const float *y, const float *dy, const float *dy2, float *dx) {
    OR_RECORD(C_RELU_BWD_ADD);
    if (!c) return relu_bwd_add_1(o, n, y, dy, dy2, dx);
    c->z = n, P(0, y), P(1, dy), P(2, dy2), P(3, dx);
}
static void g_gap_fwd_l(ops *o, int fl, int n, int ch, int hw, const float *x, float *y) {
    OR_RECORD(C_GAP_FWD);
    if (!c) return gap_fwd_1(o, fl, n, ch, hw, x, y);
    c->fl = fl, c->i[0] = n, c->i[1] = ch, c->i[2] = hw, P(0, x), P(1, y);
}
static void g_gap_bwd_l(ops *o, int fl, int n, int ch, int hw, const float *dy, float *dx) {
    OR_RECORD(C_GAP_BWD);
    if (!c) return gap_bwd_1(o, fl, n, ch, hw, dy, dx);
    c->fl = fl, c->i[0] = n, c->i[1] = ch, c->i[2] = hw, P(0, dy), P(1, dx);
}
static void g_linear_fwd(ops *o, int n, int i, int k, const float *x, const float *w, const float *b, float *y) {
    OR_RECORD(C_LIN_FWD);
    if (!c) return linear_fwd(o, n, i, k, x, w, b, y);
    c->i[0] = n, c->i[1] = i, c->i[2] = k, P(0, x), P(1, w), P(2, b), P(3, y);
}
static void g_linear_bwd_data(ops *o, int n, int i, int k, const float *dy, const float *w, float *dx) {
    OR_RECORD(C_LIN_BWD_DATA);
    if (!c) return linear_bwd_data(o, n, i, k, dy, w, dx);
    c->i[0] = n, c->i[1] = i, c->i[2] = k, P(0, dy), P(1, w), P(2, dx);
}
static void g_linear_bwd_filter(ops *o, int n, int i, int k, const float *x, const float *dy, float *dw,
                                float *db) {
    OR_RECORD(C_LIN_BWD_FILTER);
    if (!c) return linear_bwd_filter(o, n, i, k, x, dy, dw, db);
    c->i[0] = n, c->i[1] = i, c->i[2] = k, P(0, x), P(1, dy), P(2, dw), P(3, db);
}
static void g_xent(ops *o, int n, int classes, const float *logits, const uint8_t *labels, float *dlogits,
                   double *loss, int *correct) {
    if (recording_on) {     /* its results go to the host at once: not recordable */
        rec_bad = true;
        return;
    }
    xent(o, n, classes, logits, labels, dlogits, loss, correct);
}
static void g_xent_rows(ops *o, int n, int classes, const float *logits, const uint8_t *labels, float *dlogits,
                        double *row_loss, int32_t *row_hit, ops_step *s) {
    OR_RECORD(C_XENT_ROWS);
    if (!c) return xent_rows(o, n, classes, logits, labels, dlogits, row_loss, row_hit, s);
    c->i[0] = n, c->i[1] = classes, P(0, logits), P(1, labels), P(2, dlogits), P(3, row_loss), P(4, row_hit),
    P(5, s);
}
static void g_sgd(ops *o, float *w, const float *g, float *buf, const uint8_t *mask, size_t n, double lr,
                  double mom, bool nesterov, double wd, const ops_step *s) {
    OR_RECORD(C_SGD);
    if (!c) return sgd_upd(o, w, g, buf, mask, n, lr, mom, nesterov, wd, s);
    c->z = n, c->d[0] = lr, c->d[1] = mom, c->b = nesterov, c->d[2] = wd;
    P(0, w), P(1, g), P(2, buf), P(3, mask), P(4, s);
}
static void g_adam(ops *o, float *w, const float *g, float *m, float *v, const uint8_t *mask, size_t n, double lr,
                   double b1, double b2, double eps, double wd, int64_t t, const ops_step *s) {
    OR_RECORD(C_ADAM);
    if (!c) return adam_upd(o, w, g, m, v, mask, n, lr, b1, b2, eps, wd, t, s);
    c->z = n, c->d[0] = lr, c->d[1] = b1, c->d[2] = b2, c->d[3] = eps, c->d[4] = wd, c->t = t;
    P(0, w), P(1, g), P(2, m), P(3, v), P(4, mask), P(5, s);
}
static void g_sgd_many(ops *o, const ops_tensor *t, int k, size_t maxn, double lr, double mom, bool nesterov,
                       double wd, const ops_step *s) {
    OR_RECORD(C_SGD_MANY);
    if (!c) return sgd_many(o, t, k, maxn, lr, mom, nesterov, wd, s);
    c->i[0] = k, c->z = maxn, c->d[0] = lr, c->d[1] = mom, c->b = nesterov, c->d[2] = wd, P(0, t), P(1, s);
}
static void g_adam_many(ops *o, const ops_tensor *t, int k, size_t maxn, double lr, double b1, double b2, double eps,
                        double wd, int64_t step, const ops_step *s) {
    OR_RECORD(C_ADAM_MANY);
    if (!c) return adam_many(o, t, k, maxn, lr, b1, b2, eps, wd, step, s);
    c->i[0] = k, c->z = maxn, c->d[0] = lr, c->d[1] = b1, c->d[2] = b2, c->d[3] = eps, c->d[4] = wd, c->t = step;
    P(0, t), P(1, s);
}
static void g_fill(ops *o, float *x, const uint8_t *pixels, int ch, int h, int w, const uint32_t *idx,
                   const aug_param *par, int n, bool bright, const double *mean, const double *inv,
                   const uint8_t *labels, uint8_t *lab) {
    OR_RECORD(C_FILL);
    if (!c) return bfill(o, x, pixels, ch, h, w, idx, par, n, bright, mean, inv, labels, lab);
    c->i[0] = ch, c->i[1] = h, c->i[2] = w, c->i[3] = n, c->b = bright, c->norm = mean && inv;
    for (int k = 0; c->norm && k < ch && k < AUG_NORM_MAXC; k++) c->mean[k] = mean[k], c->inv[k] = inv[k];
    P(0, x), P(1, pixels), P(2, idx), P(3, par), P(4, labels), P(5, lab);
}
static void g_convert(ops *o, int to, int n, int ch, int hw, const float *x, float *y) {
    OR_RECORD(C_CONVERT);
    if (!c) return act_convert_1(o, to, n, ch, hw, x, y);
    c->fl = to, c->i[0] = n, c->i[1] = ch, c->i[2] = hw, P(0, x), P(1, y);
}

static void run_call(ops *o, const call *c) {
    void *const *p = c->p;
    const int *i = c->i;
    switch (c->kind) {
    case C_CONV_FWD: conv_fwd_1(o, &c->cd, c->fl, p[0], p[1], p[2], p[3]); break;
    case C_CONV_BWD_DATA: conv_bwd_data_1(o, &c->cd, c->fl, p[0], p[1], p[2]); break;
    case C_CONV_BWD_FILTER: conv_bwd_filter_1(o, &c->cd, c->fl, p[0], p[1], p[2], p[3]); break;
    case C_BN_FWD_TRAIN: bn_fwd_train_1(o, &c->bd, c->fl, p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]); break;
    case C_BN_FWD_INFER: bn_fwd_infer_1(o, &c->bd, c->fl, p[0], p[1], p[2], p[3], p[4], p[5]); break;
    case C_BN_BWD: bn_bwd_1(o, &c->bd, c->fl, p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9]); break;
    case C_BN_ADD_RELU_TRAIN:
        bn_add_relu_fwd_train_1(o, &c->bd, c->fl, p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8]);
        break;
    case C_BN_ADD_RELU_INFER: bn_add_relu_fwd_infer_1(o, &c->bd, c->fl, p[0], p[1], p[2], p[3], p[4], p[5], p[6]); break;
    case C_RELU_FWD: relu_fwd(o, c->z, p[0], p[1]); break;
    case C_RELU_BWD: relu_bwd(o, c->z, p[0], p[1], p[2]); break;
    case C_ADD: add(o, c->z, p[0], p[1], p[2]); break;
    case C_ADD_RELU: add_relu_1(o, c->z, p[0], p[1], p[2]); break;
    case C_RELU_BWD_ADD: relu_bwd_add_1(o, c->z, p[0], p[1], p[2], p[3]); break;
    case C_GAP_FWD: gap_fwd_1(o, c->fl, i[0], i[1], i[2], p[0], p[1]); break;
    case C_GAP_BWD: gap_bwd_1(o, c->fl, i[0], i[1], i[2], p[0], p[1]); break;
    case C_LIN_FWD: linear_fwd(o, i[0], i[1], i[2], p[0], p[1], p[2], p[3]); break;
    case C_LIN_BWD_DATA: linear_bwd_data(o, i[0], i[1], i[2], p[0], p[1], p[2]); break;
    case C_LIN_BWD_FILTER: linear_bwd_filter(o, i[0], i[1], i[2], p[0], p[1], p[2], p[3]); break;
    case C_XENT_ROWS: xent_rows(o, i[0], i[1], p[0], p[1], p[2], p[3], p[4], p[5]); break;
    case C_SGD: sgd_upd(o, p[0], p[1], p[2], p[3], c->z, c->d[0], c->d[1], c->b, c->d[2], p[4]); break;
    case C_ADAM:
        adam_upd(o, p[0], p[1], p[2], p[3], p[4], c->z, c->d[0], c->d[1], c->d[2], c->d[3], c->d[4], c->t, p[5]);
        break;
    case C_FILL:
        bfill(o, p[0], p[1], i[0], i[1], i[2], p[2], p[3], i[3], c->b, c->norm ? c->mean : NULL,
              c->norm ? c->inv : NULL, p[4], p[5]);
        break;
    case C_CONVERT: act_convert_1(o, c->fl, i[0], i[1], i[2], p[0], p[1]); break;
    case C_SGD_MANY: sgd_many(o, p[0], i[0], c->z, c->d[0], c->d[1], c->b, c->d[2], p[1]); break;
    case C_ADAM_MANY: adam_many(o, p[0], i[0], c->z, c->d[0], c->d[1], c->d[2], c->d[3], c->d[4], c->t, p[1]); break;
    default: abort();
    }
}

static int g_begin(ops *o) {
    (void)o;
    if (recording_on) return -1;
    recording_on = true, rec_bad = false, nrec = 0;
    return 0;
}
static void *g_end(ops *o) {
    (void)o;
    recording_on = false;
    if (rec_bad || fail_records > 0) {
        if (fail_records > 0) fail_records--;
        return NULL;
    }
    recording *r = malloc(sizeof *r);
    r->c = malloc((size_t)(nrec ? nrec : 1) * sizeof *r->c);
    if (!r->c) abort();
    memcpy(r->c, rec, (size_t)nrec * sizeof *rec);
    r->n = nrec, r->launched = 0;
    records++;
    return r;
}
static int g_launch(ops *o, void *g) {
    recording *r = g;
    if (stale_launches > 0 && r->launched > 0) {   /* a replay, not the launch right after recording */
        stale_launches--;
        return -1;
    }
    r->launched++;
    for (int k = 0; k < r->n; k++) run_call(o, &r->c[k]);
    launches++;
    return 0;
}
static void g_free(ops *o, void *g) {
    (void)o;
    recording *r = g;
    if (r) free(r->c), free(r);
}
static ops devgraph;
static void make_devgraph(void) {
    devgraph = devfast;
    devgraph.name = "devgraph";
    devgraph.conv_fwd_l = g_conv_fwd_l, devgraph.conv_bwd_data_l = g_conv_bwd_data_l;
    devgraph.conv_bwd_filter_l = g_conv_bwd_filter_l, devgraph.bn_fwd_train_l = g_bn_fwd_train_l;
    devgraph.bn_fwd_infer_l = g_bn_fwd_infer_l, devgraph.bn_bwd_l = g_bn_bwd_l;
    devgraph.relu_fwd = g_relu_fwd, devgraph.relu_bwd = g_relu_bwd, devgraph.add = g_add;
    devgraph.add_relu = g_add_relu, devgraph.relu_bwd_add = g_relu_bwd_add;
    devgraph.gap_fwd_l = g_gap_fwd_l, devgraph.gap_bwd_l = g_gap_bwd_l;
    devgraph.linear_fwd = g_linear_fwd, devgraph.linear_bwd_data = g_linear_bwd_data;
    devgraph.linear_bwd_filter = g_linear_bwd_filter, devgraph.xent = g_xent, devgraph.xent_rows = g_xent_rows;
    devgraph.sgd_update = g_sgd, devgraph.adam_update = g_adam, devgraph.batch_fill = g_fill;
    devgraph.act_convert = g_convert;
    devgraph.bn_add_relu_fwd_train_l = g_bn_add_relu_train, devgraph.bn_add_relu_fwd_infer_l = g_bn_add_relu_infer;
    devgraph.sgd_update_many = g_sgd_many, devgraph.adam_update_many = g_adam_many;
    /* the plain entries the fast path does not use stay devref's: a call while recording
     * fails the recording (NOT_RECORDING) */
    devgraph.graph_begin = g_begin, devgraph.graph_end = g_end, devgraph.graph_launch = g_launch;
    devgraph.graph_free = g_free;
}

/* ---- data ----------------------------------------------------------------------------------- */

static checkpoint *net(const char *arch, int depth, const char *regime) {
    char err[256];
    checkpoint *c = model_init(arch, depth, 4, 10, "uniform", 3, err);
    if (!c || freeze_regime(c, regime, 2, 5, err)) {
        printf("  %s\n", err);
        abort();
    }
    return c;
}

/* every tensor of a and b has the same bits */
static int same_tensors(const checkpoint *a, const checkpoint *b, const char *what) {
    int diff = 0;
    if (a->nt != b->nt) {
        printf("  %s: %d vs %d tensors\n", what, a->nt, b->nt);
        return 0;
    }
    for (int i = 0; i < a->nt; i++) {
        const ck_tensor *x = &a->t[i], *y = &b->t[i];
        if (strcmp(x->name, y->name) || x->numel != y->numel || x->dtype != y->dtype ||
            memcmp(x->data, y->data, x->numel * dtype_size(x->dtype))) {
            if (diff++ < 3) printf("  %s: tensor %s differs\n", what, x->name);
        }
    }
    return diff == 0;
}

/* ---- tests ---------------------------------------------------------------------------------- */

/* The whole loop (SGD with momentum and weight decay, crop + flip or the seed's crop +
 * brightness, a test set evaluated each epoch, a checkpoint per epoch), on ref, on devref,
 * devfull, devfast and devgraph (whose full batches after the first replay one recording,
 * training steps and test batches alike):
 * identical checkpoints, logs, and nothing of the backend's memory left allocated. Both
 * architectures, all parameters, BN only and random-k (masked updates). */
static void loop_case(const char *arch, int depth, const char *regime, int opt_adam) {
    dataset d = make_ds(40, 4, false), t = make_ds(36, 5, false);
    enum { NB = 5 };
    ops *be[NB] = {&ops_ref, &devref, &devfull, &devfast, &devgraph};
    checkpoint *c[NB];
    char logs[NB][2048];
    FILE *stream[NB];
    char what[96];
    snprintf(what, sizeof what, "%s-%d %s %s", arch, depth, regime, opt_adam ? "adam" : "sgd");
    for (int k = 0; k < NB; k++) {
        c[k] = net(arch, depth, regime);
        train_cfg cfg;
        train_cfg_defaults(&cfg);
        cfg.epochs = 2, cfg.batch = 16, cfg.every = 1, cfg.seed = 9;
        cfg.augment = strcmp(arch, "bottleneck") ? AUG_CROP_FLIP : AUG_SEED;   /* the seed's brightness */
        if (opt_adam) cfg.opt.kind = OPT_ADAM;
        cfg.opt.momentum = 0.9, cfg.opt.wd = 5e-4;
        sched_defaults(&cfg.sched, SCHED_COSINE);   /* a step size that changes every step */
        cfg.sched.lr = 0.05;
        char err[256] = "";
        if (cfg.norm.meanstd && cfg.norm.c == 0 && norm_compute(&d, &cfg.norm, err)) printf("  %s\n", err);
        train_io io = {0};
        io.test = &t;
        io.log = tmpfile();
        stream[k] = tmpfile();      /* the checkpoint stream, a section per epoch */
        swriter w;
        sw_init(&w, fileno(stream[k]));
        io.out = &w;
        size_t before = live_allocs, fused0 = bn_add_relu_calls, many0 = many_calls;
        int rc = train_run(c[k], be[k], &d, &cfg, &io, false, err);
        /* the fast fakes fuse BN + add + ReLU: every block's (resnet-8: 3 blocks a forward) */
        bool fuses = be[k]->bn_add_relu_fwd_train_l != NULL;
        CHECK((bn_add_relu_calls > fused0) == fuses, "%s on %s: %zu BN+add+ReLU calls", what, be[k]->name,
              bn_add_relu_calls - fused0);
        /* and take each optimizer step in one call for all tensors (2 epochs of 3 steps) */
        bool many = be[k]->sgd_update_many != NULL;
        CHECK(many_calls - many0 == (many ? 6u : 0u), "%s on %s: %zu multi-tensor updates", what, be[k]->name,
              many_calls - many0);
        CHECK(rc == TRAIN_DONE, "%s on %s: rc %d %s", what, be[k]->name, rc, err);
        /* the test set goes where the training set goes, and is evaluated there */
        CHECK(io.backend_eval == (be[k]->batch_fill != NULL) && io.backend_eval == io.backend_data,
              "%s on %s: test set %s the backend", what, be[k]->name, io.backend_eval ? "in" : "not in");
        CHECK(io.sections == 2, "%s: %d sections written, expected one per epoch", what, io.sections);
        /* 2 epochs of 16 + 16 + 8: the first 16 goes op by op, the other three replay */
        int64_t want = be[k] == &devgraph ? 3 : 0;
        CHECK(io.graph_steps == want, "%s on %s: %lld steps replayed, expected %lld", what, be[k]->name,
              (long long)io.graph_steps, (long long)want);
        /* the test set's 16 + 16 + 4: in epoch 1 the first 16 is recorded (the training steps
         * have run batches of 16 already) and both run from the recording, as in epoch 2
         * (it outlives the training between); the 4 go op by op */
        int64_t want_eval = be[k] == &devgraph ? 4 : 0, once = be[k] == &devgraph;
        CHECK(io.eval_replays == want_eval, "%s on %s: %lld test batches replayed, expected %lld", what,
              be[k]->name, (long long)io.eval_replays, (long long)want_eval);
        /* one recording of each for the run: neither drops the other, epoch 2 records nothing */
        CHECK(io.graph_records == once && io.eval_records == once, "%s on %s: %lld step and %lld test recordings",
              what, be[k]->name, (long long)io.graph_records, (long long)io.eval_records);
        sw_free(&w);
        CHECK(live_allocs == before, "%s: %zu backend allocations not freed", what, live_allocs - before);
        /* the log without its last two columns (images/s, seconds) */
        logs[k][0] = 0;
        rewind(io.log);
        char line[512];
        while (fgets(line, sizeof line, io.log)) {
            for (int tabs = 0, j = 0; line[j]; j++)
                if (line[j] == '\t' && ++tabs == 7) line[j] = 0;
            strncat(logs[k], line, sizeof logs[k] - strlen(logs[k]) - 2);
            strcat(logs[k], ";");
        }
        fclose(io.log);
    }
    for (int k = 1; k < NB; k++)
        CHECK(same_tensors(c[0], c[k], what), "%s: checkpoints differ between ref and %s", what, be[k]->name);
    /* the streams as written, byte for byte: the epoch-1 section catches running
     * statistics (and, with devfull, parameters and optimizer state) left on the backend
     * when the section was written */
    long len[NB];
    char *bytes[NB];
    for (int k = 0; k < NB; k++) {
        len[k] = ftell(stream[k]);
        bytes[k] = malloc(len[k] > 0 ? (size_t)len[k] : 1);
        rewind(stream[k]);
        if (len[k] > 0 && fread(bytes[k], 1, (size_t)len[k], stream[k]) != (size_t)len[k]) len[k] = -1;
        fclose(stream[k]);
    }
    for (int k = 1; k < NB; k++) {
        CHECK(len[0] > 0 && len[0] == len[k] && memcmp(bytes[0], bytes[k], (size_t)len[0]) == 0,
              "%s: checkpoint streams differ on %s (%ld vs %ld bytes)", what, be[k]->name, len[0], len[k]);
        CHECK(strcmp(logs[0], logs[k]) == 0 && strstr(logs[0], "nan") == NULL, "%s: logs differ on %s: %s | %s",
              what, be[k]->name, logs[0], logs[k]);
    }
    for (int k = 0; k < NB; k++) free(bytes[k]), ck_free(c[k]);
    ds_free(&d), ds_free(&t);
}

TEST(train_loop_matches_ref) {
    loop_case("resnet", 8, "all", 0);
    loop_case("resnet", 8, "bn", 0);
    loop_case("resnet", 8, "random-k", 1);
    loop_case("resnet", 8, "random-k", 0);
    loop_case("bottleneck", 11, "all", 1);
}

/* With batches and the optimizer in backend memory (devfull; devgraph replaying its steps), a
 * step moves its stage up (the batch's image numbers and augmentations, the step size) and
 * its losses down, one copy each and nothing else: the same run with twice the steps per
 * epoch makes exactly that many more. (With either on the host, every step uploads its batch
 * or its parameters and downloads gradients.) */
static void count_run(ops *o, int batch, int epochs, size_t *up, size_t *down, checkpoint **out) {
    dataset d = make_ds(32, 4, false);
    checkpoint *c = net("resnet", 8, "all");
    train_cfg cfg;
    train_cfg_defaults(&cfg);
    cfg.epochs = epochs, cfg.batch = batch, cfg.every = 0, cfg.seed = 4;
    cfg.sched.lr = 0.05;
    char err[256] = "";
    norm_compute(&d, &cfg.norm, err);
    size_t u0 = uploads, d0 = downloads;
    train_io io = {0};
    int rc = train_run(c, o, &d, &cfg, &io, false, err);
    CHECK(rc == TRAIN_DONE, "%s batch %d: rc %d %s", o->name, batch, rc, err);
    bool full = o->batch_fill != NULL;
    CHECK(io.backend_data == full && io.backend_optim == full, "%s: batches %s, optimizer %s", o->name,
          io.backend_data ? "there" : "host", io.backend_optim ? "there" : "host");
    int64_t steps = (int64_t)epochs * (32 / batch);
    CHECK(io.graph_steps == (o->graph_begin ? steps - 1 : 0), "%s: %lld of %lld steps replayed", o->name,
          (long long)io.graph_steps, (long long)steps);
    *up = uploads - u0, *down = downloads - d0;
    *out = c;
    ds_free(&d);
}
TEST(steps_move_stage_and_loss) {
    ops *dev[2] = {&devfull, &devgraph};
    for (int k = 0; k < 2; k++) {
        size_t u[2], dn[2], hu[2], hd[2];
        checkpoint *c[4];
        count_run(dev[k], 8, 2, &u[0], &dn[0], &c[0]);     /* 8 steps */
        count_run(dev[k], 4, 2, &u[1], &dn[1], &c[1]);     /* 16 steps */
        CHECK(u[1] - u[0] == 8 && dn[1] - dn[0] == 8, "%s: %zu/%zu uploads, %zu/%zu downloads for 8/16 steps",
              dev[k]->name, u[0], u[1], dn[0], dn[1]);
        count_run(&devref, 8, 2, &hu[0], &hd[0], &c[2]);
        count_run(&devref, 4, 2, &hu[1], &hd[1], &c[3]);
        CHECK(hu[1] - hu[0] > 8 * 8 && hd[1] - hd[0] > 8 * 8,
              "devref (host batches and optimizer) moves every tensor every step: %zu/%zu, %zu/%zu", hu[0], hu[1],
              hd[0], hd[1]);
        CHECK(same_tensors(c[0], c[2], "batch 8") && same_tensors(c[1], c[3], "batch 4"), "%s vs devref",
              dev[k]->name);
        for (int j = 0; j < 4; j++) ck_free(c[j]);
    }
}

/* 2 epochs of batch 8, SGD with momentum and weight decay, normalised by d */
static void short_cfg(train_cfg *cfg, const dataset *d, uint64_t seed) {
    char err[256];
    train_cfg_defaults(cfg);
    cfg->epochs = 2, cfg->batch = 8, cfg->every = 1, cfg->seed = seed;
    cfg->opt.momentum = 0.9, cfg->opt.wd = 5e-4, cfg->sched.lr = 0.05;
    norm_compute(d, &cfg->norm, err);
}

/* The backend's memory runs out while the optimizer state is bound (the last state tensor):
 * the run falls back to the host optimizer and must still end with ref's bits (the partly
 * bound copies must not be brought home over the host's state by model_sync). */
TEST(optim_bind_fails) {
    dataset d = make_ds(24, 4, false);
    train_cfg cfg;
    char err[256] = "";
    short_cfg(&cfg, &d, 5);
    checkpoint *a = net("resnet", 8, "all"), *b = net("resnet", 8, "all");
    CHECK(train_run(a, &ops_ref, &d, &cfg, NULL, false, err) == TRAIN_DONE, "ref: %s", err);
    /* the allocations of model_build, then one per momentum buffer */
    checkpoint *probe = ck_clone(b);
    optim_prepare(probe, &cfg.opt, true, err);
    size_t a0 = alloc_calls;
    model *m = model_build(probe, &devfull, cfg.batch, err);
    size_t build = alloc_calls - a0;
    int states = m ? model_nparams(m) : 0;
    model_free(m), ck_free(probe);
    size_t before = live_allocs;
    fail_at = alloc_calls + build + (size_t)states - 1;
    train_io io = {0};
    int rc = train_run(b, &devfull, &d, &cfg, &io, false, err);
    fail_at = SIZE_MAX;
    CHECK(rc == TRAIN_DONE && !io.backend_optim && io.backend_data, "rc %d (%s), optimizer on the %s", rc, err,
          io.backend_optim ? "backend" : "host");
    CHECK(live_allocs == before, "%zu backend allocations left", live_allocs - before);
    CHECK(same_tensors(a, b, "bind fails"), "after the fallback to the host optimizer: differs from ref");
    ck_free(a), ck_free(b);
    ds_free(&d);
}

/* A run of n images in batches of `batch` stopped after `stop` steps on `be` (parameters and
 * optimizer state in its memory; `replays` of those steps replayed from a recording) and
 * resumed, on be or on ref, ends with the bits of ref's run straight through. */
static void resume_case(ops *be, const char *regime, int n, int batch, bool adam, int stop, int64_t replays,
                        uint64_t seed) {
    dataset d = make_ds(n, 4, false);
    train_cfg cfg;
    char err[256] = "";
    short_cfg(&cfg, &d, seed);
    cfg.batch = batch;
    if (adam) cfg.opt.kind = OPT_ADAM;
    checkpoint *whole = net("resnet", 8, regime);
    int rc = train_run(whole, &ops_ref, &d, &cfg, NULL, false, err);
    CHECK(rc == TRAIN_DONE, "straight run: %d %s", rc, err);
    ops *then[2] = {be, &ops_ref};
    for (int k = 0; k < 2; k++) {
        checkpoint *c = net("resnet", 8, regime);
        train_io io = {0};
        io.max_steps = stop;
        rc = train_run(c, be, &d, &cfg, &io, false, err);
        CHECK(rc == TRAIN_STOPPED && io.graph_steps == replays, "stopped run on %s: %d %s, %lld replayed", be->name,
              rc, err, (long long)io.graph_steps);
        rc = train_run(c, then[k], &d, &cfg, NULL, true, err);
        CHECK(rc == TRAIN_DONE, "resumed on %s: %d %s", then[k]->name, rc, err);
        CHECK(same_tensors(whole, c, "resume"), "stopped on %s, resumed on %s: differs", be->name, then[k]->name);
        ck_free(c);
    }
    ck_free(whole);
    ds_free(&d);
}
/* 4 steps an epoch, stopped inside epoch 1 */
TEST(devfull_resume) { resume_case(&devfull, "bn", 30, 8, false, 3, 0, 6); }
/* Adam, batch 4: 7 full steps and a smaller one an epoch; the stop comes after 4 replays */
TEST(devgraph_resume) { resume_case(&devgraph, "all", 30, 4, true, 5, 4, 7); }

/* When recording fails (graph_end: NULL) the run goes op by op with the same bits; a stale
 * recording is made again; BN_GRAPH=0 never records. */
TEST(graph_fallbacks) {
    dataset d = make_ds(24, 4, false);
    train_cfg cfg;
    char err[256] = "";
    short_cfg(&cfg, &d, 8);
    cfg.batch = 4;              /* 6 full steps an epoch, 12 in all */
    checkpoint *want = net("resnet", 8, "bn");
    CHECK(train_run(want, &ops_ref, &d, &cfg, NULL, false, err) == TRAIN_DONE, "ref: %s", err);
    for (int k = 0; k < 3; k++) {
        checkpoint *c = net("resnet", 8, "bn");
        size_t r0 = records, l0 = launches;
        if (k == 0) fail_records = 1;
        if (k == 1) stale_launches = 2;     /* the first replay of each of two recordings */
        if (k == 2) setenv("BN_GRAPH", "0", 1);
        train_io io = {0};
        int rc = train_run(c, &devgraph, &d, &cfg, &io, false, err);
        unsetenv("BN_GRAPH");
        const char *what = k == 0 ? "recording fails" : k == 1 ? "stale recordings" : "BN_GRAPH=0";
        CHECK(rc == TRAIN_DONE, "%s: rc %d %s", what, rc, err);
        CHECK(same_tensors(want, c, what), "%s: differs from ref", what);
        size_t nr = records - r0, nl = launches - l0;
        if (k == 0) CHECK(io.graph_steps == 0 && nr == 0 && nl == 0, "%s: %lld replayed", what, (long long)io.graph_steps);
        if (k == 1) CHECK(nr == 3 && io.graph_steps == 11 && nl == 11, "%s: %zu recordings, %lld replayed", what,
                          nr, (long long)io.graph_steps);
        if (k == 2) CHECK(io.graph_steps == 0 && nr == 0, "%s: %zu recordings", what, nr);
        ck_free(c);
    }
    fail_records = stale_launches = 0;
    ck_free(want);
    ds_free(&d);
}

/* A loss that stops being finite in a replayed step: the run ends TRAIN_NAN at the same step
 * as on ref, and the state matches ref's: the step's optimizer update is skipped on the
 * backend (ops_step skip, set by xent_rows), as the loop skips it on the host. */
TEST(graph_nan_step) {
    dataset d = make_ds(24, 4, false);
    train_cfg cfg;
    char err[256] = "";
    short_cfg(&cfg, &d, 9);
    cfg.batch = 4, cfg.opt.momentum = 0, cfg.opt.wd = 0, cfg.norm.meanstd = false;
    cfg.sched.lr = 1e5;     /* diverges in a few steps (1e30: at once, before any replay) */
    checkpoint *a = net("resnet", 8, "all"), *b = net("resnet", 8, "all");
    train_io ia = {0}, ib = {0};
    int ra = train_run(a, &ops_ref, &d, &cfg, &ia, false, err);
    int rb = train_run(b, &devgraph, &d, &cfg, &ib, false, err);
    CHECK(ra == TRAIN_NAN && rb == TRAIN_NAN && ia.bad_step == ib.bad_step, "rc %d / %d, bad step %lld / %lld", ra,
          rb, (long long)ia.bad_step, (long long)ib.bad_step);
    printf("  # the loss went bad at step %lld, %lld steps replayed\n", (long long)ia.bad_step,
           (long long)ib.graph_steps);
    CHECK(ia.bad_step > 2 && ib.graph_steps == ia.bad_step - 1, "not in a replayed step");
    CHECK(same_tensors(a, b, "nan step"), "after the bad step: differs from ref");
    ck_free(a), ck_free(b);
    ds_free(&d);
}

/* The model's recording API directly (model_extra.h): a step of forward and backward on the
 * staged batch, op by op, then recorded, then replayed, each on a new batch: the losses, hit
 * counts and every gradient (model_grad downloads them after a replay too) are ref's bits
 * for the same images. */
TEST(graph_model_api) {
    enum { B = 4, STEPS = 4 };
    dataset d = make_ds(STEPS * B, 6, false);
    char err[256] = "";
    checkpoint *cg = net("resnet", 8, "all"), *cr = net("resnet", 8, "all");
    model *g = model_build(cg, &devgraph, B, err), *r = model_build(cr, &ops_ref, B, err);
    CHECK(g && r && model_data_attach(g, &d, NULL, err) == 0, "build / attach: %s", err);
    if (!g || !r) return;
    CHECK(model_graph_begin(g, MODEL_GRAPH_STEP) == -1, "a recording before any backward pass (the buffers are not sized yet)");
    norm_cfg nm = {0};
    aug_param par[B] = {{0}};
    float *x = malloc((size_t)B * 3072 * sizeof *x);
    for (int k = 0; k < STEPS; k++) {
        uint32_t idx[B];
        uint8_t lab[B];
        for (int i = 0; i < B; i++) idx[i] = (uint32_t)(STEPS * B - 1 - (k * B + i)), lab[i] = d.labels[idx[i]];
        model_step_stage(g, idx, NULL, B, 0.1f);
        bool rec = k == 1;
        if (rec) CHECK(model_graph_begin(g, MODEL_GRAPH_STEP) == 0, "model_graph_begin");
        if (k < 2) {
            model_forward_staged(g, B, AUG_NONE, &nm, true);
            CHECK(model_loss_queue(g, B, true) == 0, "model_loss_queue");
        }
        if (rec) CHECK(model_graph_end(g, B) == 0 && model_has_graph(g, MODEL_GRAPH_STEP), "model_graph_end");
        if (k >= 1) CHECK(model_graph_launch(g, MODEL_GRAPH_STEP, B, AUG_NONE, &nm) == 0, "step %d: model_graph_launch", k);
        int okg = -1, okr = -2;
        double lg = model_loss_collect(g, B, &okg);
        batch_fill(x, &d, idx, par, B, AUG_NONE, &nm);
        model_forward(r, x, B, true);
        double lr = model_loss_backward(r, lab, B, &okr, true);
        CHECK(lg == lr && okg == okr, "step %d: loss %.9g / %.9g, hits %d / %d", k, lg, lr, okg, okr);
        int diff = 0;
        for (int i = 0; i < model_nparams(r); i++)
            diff += memcmp(model_grad(g, i), model_grad(r, i), model_param(r, i)->numel * sizeof(float)) != 0;
        CHECK(diff == 0, "step %d: %d gradients differ from ref", k, diff);
    }
    CHECK(model_graph_launch(g, MODEL_GRAPH_STEP, B - 1, AUG_NONE, &nm) == -1, "a recording of %d images launched for %d", B, B - 1);
    /* the model's memory moves (model_activation's first call allocates its conversion
     * buffer): the recording is stale, dropped at the next launch */
    CHECK(model_activation(g, "s1.b0.relu1", NULL, NULL, NULL) != NULL, "model_activation");
    CHECK(model_graph_launch(g, MODEL_GRAPH_STEP, B, AUG_NONE, &nm) == -1 && !model_has_graph(g, MODEL_GRAPH_STEP), "a recording older than an allocation launched");
    CHECK(model_graph_begin(g, MODEL_GRAPH_STEP) == 0, "recording again");
    model_forward_staged(g, B, AUG_NONE, &nm, true);
    model_loss_queue(g, B, true);
    CHECK(model_graph_end(g, B) == 0 && model_graph_launch(g, MODEL_GRAPH_STEP, B, AUG_NONE, &nm) == 0, "the new recording");
    /* what model_forward_staged was given is in the recording: another normalisation or
     * augmentation must not replay it */
    norm_cfg other = {.meanstd = true, .c = 3, .mean = {0.5, 0.5, 0.5}, .std = {0.25, 0.25, 0.25}};
    CHECK(model_graph_launch(g, MODEL_GRAPH_STEP, B, AUG_NONE, &other) == -1 && !model_has_graph(g, MODEL_GRAPH_STEP),
          "a recording launched with another normalisation");
    CHECK(model_graph_begin(g, MODEL_GRAPH_STEP) == 0, "recording again");
    model_forward_staged(g, B, AUG_NONE, &nm, true);
    model_loss_queue(g, B, true);
    CHECK(model_graph_end(g, B) == 0 && model_graph_launch(g, MODEL_GRAPH_STEP, B, AUG_NONE, &nm) == 0, "recorded");
    CHECK(model_graph_launch(g, MODEL_GRAPH_STEP, B, AUG_SEED, &nm) == -1 && !model_has_graph(g, MODEL_GRAPH_STEP),
          "a recording launched with another augmentation");
    /* the two slots are apart: recording a test batch leaves the step's recording alone */
    CHECK(model_graph_begin(g, MODEL_GRAPH_STEP) == 0, "recording a step");
    model_forward_staged(g, B, AUG_NONE, &nm, true);
    model_loss_queue(g, B, true);
    CHECK(model_graph_end(g, B) == 0, "recorded the step");
    CHECK(model_graph_begin(g, MODEL_GRAPH_EVAL) == 0, "recording a test batch");
    model_forward_staged(g, B, AUG_NONE, &nm, false);
    model_loss_queue(g, B, false);
    CHECK(model_graph_end(g, B) == 0 && model_has_graph(g, MODEL_GRAPH_STEP) && model_has_graph(g, MODEL_GRAPH_EVAL),
          "both recordings held");
    CHECK(model_graph_launch(g, MODEL_GRAPH_EVAL, B, AUG_NONE, &nm) == 0 &&
              model_graph_launch(g, MODEL_GRAPH_STEP, B, AUG_NONE, &nm) == 0, "both launch");
    model_graph_drop_slot(g, MODEL_GRAPH_EVAL);
    CHECK(model_has_graph(g, MODEL_GRAPH_STEP) && !model_has_graph(g, MODEL_GRAPH_EVAL) &&
              model_graph_launch(g, MODEL_GRAPH_EVAL, B, AUG_NONE, &nm) == -1 &&
              model_graph_launch(g, MODEL_GRAPH_STEP, B, AUG_NONE, &nm) == 0, "one slot dropped, the other kept");
    model_graph_drop(g);
    CHECK(!model_has_graph(g, MODEL_GRAPH_STEP) && !model_has_graph(g, MODEL_GRAPH_EVAL) &&
              model_graph_launch(g, MODEL_GRAPH_STEP, B, AUG_NONE, &nm) == -1, "dropped, still launches");
    free(x);
    model_free(g), model_free(r);
    ck_free(cg), ck_free(cr);
    ds_free(&d);
}

/* The model API directly: evaluation logits and loss, an activation for filter-viz, the
 * gradients (host copies), a data-parallel batch total (the logits' gradient scaled on the
 * host), and the parameters sent back after a change on the host. */
TEST(model_api_matches_ref) {
    enum { N = 5 };
    dataset d = make_ds(N, 6, false);
    float *x = malloc(N * 3072 * sizeof *x);
    for (size_t i = 0; i < N * 3072; i++) x[i] = d.pixels[i] / 255.0f - 0.5f;
    enum { NB = 3 };
    ops *be[NB] = {&ops_ref, &devref, &devfast};
    checkpoint *c[NB];
    model *m[NB];
    char err[256];
    double loss[NB][3];
    int ok[NB];
    float *logit[NB], *act[NB], *grad[NB];
    size_t nl = N * 10, na = 0, ng = 0;
    for (int k = 0; k < NB; k++) {
        c[k] = net("resnet", 8, "all");
        m[k] = model_build(c[k], be[k], N, err);
        CHECK(m[k] != NULL, "model_build: %s", err);
        if (!m[k]) return;
        model_forward(m[k], x, N, false);
        loss[k][0] = model_loss_backward(m[k], d.labels, N, &ok[k], false);
        logit[k] = malloc(nl * sizeof(float));
        memcpy(logit[k], model_logits(m[k]), nl * sizeof(float));
        int ch, h, w;
        const float *a = model_activation(m[k], "s1.b0.relu1", &ch, &h, &w);
        CHECK(a != NULL, "model_activation");
        na = a ? (size_t)N * ch * h * w : 0;
        act[k] = malloc(na * sizeof(float) + 1);
        if (a) memcpy(act[k], a, na * sizeof(float));
        model_forward(m[k], x, N, true);
        model_set_batch_total(m[k], 2 * N);
        loss[k][1] = model_loss_backward(m[k], d.labels, N, NULL, true);
        ng = 0;
        for (int i = 0; i < model_nparams(m[k]); i++) ng += model_param(m[k], i)->numel;
        grad[k] = malloc(ng * sizeof(float));
        size_t off = 0;
        for (int i = 0; i < model_nparams(m[k]); i++) {
            size_t e = model_param(m[k], i)->numel;
            memcpy(grad[k] + off, model_grad(m[k], i), e * sizeof(float));
            off += e;
        }
        /* a host-side change to the parameters reaches the ops after model_upload_params */
        float *w0 = model_param(m[k], 0)->data;
        for (size_t j = 0; j < model_param(m[k], 0)->numel; j++) w0[j] *= 0.5f;
        model_upload_params(m[k]);
        model_forward(m[k], x, N, false);
        loss[k][2] = model_loss_backward(m[k], d.labels, N, NULL, false);
        model_sync(m[k]);
    }
    for (int k = 1; k < NB; k++) {
        const char *b = be[k]->name;
        CHECK(loss[0][0] == loss[k][0] && ok[0] == ok[k], "%s: eval loss %.9g vs %.9g", b, loss[0][0], loss[k][0]);
        CHECK(memcmp(logit[0], logit[k], nl * sizeof(float)) == 0, "%s: model_logits differ", b);
        CHECK(memcmp(act[0], act[k], na * sizeof(float)) == 0, "%s: model_activation differs", b);
        CHECK(loss[0][1] == loss[k][1], "%s: train loss %.9g vs %.9g", b, loss[0][1], loss[k][1]);
        CHECK(memcmp(grad[0], grad[k], ng * sizeof(float)) == 0, "%s: gradients (batch total 2N) differ", b);
        CHECK(loss[0][2] == loss[k][2] && loss[0][2] != loss[0][0],
              "%s: after model_upload_params: %.9g vs %.9g (before %.9g)", b, loss[0][2], loss[k][2], loss[0][0]);
        CHECK(same_tensors(c[0], c[k], "model api"), "%s: running statistics after model_sync", b);
    }
    for (int k = 0; k < NB; k++) {
        model_free(m[k]);
        ck_free(c[k]);
        free(logit[k]), free(act[k]), free(grad[k]);
    }
    CHECK(live_allocs == 0, "%zu backend allocations left after model_free", live_allocs);
    free(x);
    ds_free(&d);
}

/* The step harness shared with tests/test_cuda_train.c, here with the same ops on both
 * sides: bit for bit (tolerance 0). */
TEST(steps_match_ref) {
    double e = compare_training(&ops_ref, &devref, "resnet", 8, 4, "all", 6, 3, 0.05f, 0.0, "resnet-8 all");
    e += compare_training(&ops_ref, &devref, "resnet", 8, 4, "bn", 6, 3, 0.05f, 0.0, "resnet-8 bn");
    e += compare_training(&ops_ref, &devref, "bottleneck", 11, 4, "bn+output", 6, 3, 0.05f, 0.0, "bottleneck-11 bn+output");
    e += compare_training(&ops_ref, &devfast, "resnet", 8, 4, "all", 6, 3, 0.05f, 0.0, "resnet-8 all, devfast");
    e += compare_training(&ops_ref, &devfast, "bottleneck", 11, 4, "bn", 6, 3, 0.05f, 0.0, "bottleneck-11 bn, devfast");
    CHECK(e == 0.0, "differences %g", e);
}

/* Data-parallel training probes whether a backend's BatchNorm calls the allreduce hook
 * (lib/train.c): on a backend with its own memory the probe's tensors must live there. */
TEST(bn_hook_probe) {
    CHECK(train_backend_reduces_bn(&ops_ref), "ref reduces its BN statistics through the hook");
    size_t before = live_allocs;
    CHECK(train_backend_reduces_bn(&devref), "devref (ref behind the wall) does too");
    CHECK(live_allocs == before, "the probe's backend memory is freed");
    ops none = devref;
    none.bn_bwd = bn_bwd_nohook;
    CHECK(!train_backend_reduces_bn(&none), "a backward that ignores the hook is seen");
}

/* The wall itself: a backend pointer really is unusable on the host (else the tests above
 * would prove nothing). Checked without touching it: its address is non-canonical. */
TEST(wall_is_real) {
    void *p = d_alloc(&devref, 16);
    uintptr_t a = (uintptr_t)p;
    CHECK(a >> 47 != 0 && a >> 47 != ((uintptr_t)1 << 17) - 1, "backend pointer %p is a canonical address", p);
    d_free(&devref, p);
    CHECK(uploads > 0 && downloads > 0, "the loop moved data through mem_upload / mem_download (%zu, %zu)", uploads,
          downloads);
}

int main(void) {
#if !defined(__x86_64__)
    printf("skip - devmem: the pointer wall needs x86-64 canonical addresses\n# 0 passed, 0 failed, 1 skipped\n");
    return 0;
#endif
    make_devfull();
    make_devgraph();
    RUN(train_loop_matches_ref);
    RUN(steps_move_stage_and_loss);
    RUN(devfull_resume);
    RUN(devgraph_resume);
    RUN(graph_fallbacks);
    RUN(graph_nan_step);
    RUN(graph_model_api);
    RUN(optim_bind_fails);
    RUN(model_api_matches_ref);
    RUN(steps_match_ref);
    RUN(bn_hook_probe);
    RUN(wall_is_real);
    return DONE();
}
