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

static void *in(const void *p) { return p ? (void *)((uintptr_t)p ^ WALL) : NULL; }   /* backend -> real */
static void *out(void *p) { return p ? (void *)((uintptr_t)p ^ WALL) : NULL; }        /* real -> backend */
#define R(p) ((float *)in(p))

static void *d_alloc(ops *o, size_t bytes) {
    (void)o;
    if (!bytes || alloc_calls++ == fail_at) return NULL;
    void *p = calloc(1, bytes);
    if (p) live_allocs++;
    return out(p);
}
static void d_free(ops *o, void *p) {
    (void)o;
    if (p) live_allocs--;
    free(in(p));
}
static void d_upload(ops *o, void *dst, const void *src, size_t n) { (void)o, uploads++, memcpy(in(dst), src, n); }
static void d_download(ops *o, void *dst, const void *src, size_t n) {
    (void)o, downloads++, memcpy(dst, in(src), n);
}
static void d_copy(ops *o, void *dst, const void *src, size_t n) { (void)o, memcpy(in(dst), in(src), n); }

static ops *F = &ops_ref;
static void conv_fwd(ops *o, const conv_desc *d, const float *x, const float *w, const float *b, float *y) {
    (void)o, F->conv_fwd(F, d, R(x), R(w), R(b), R(y));
}
static void conv_bwd_data(ops *o, const conv_desc *d, const float *dy, const float *w, float *dx) {
    (void)o, F->conv_bwd_data(F, d, R(dy), R(w), R(dx));
}
static void conv_bwd_filter(ops *o, const conv_desc *d, const float *x, const float *dy, float *dw, float *db) {
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
    ops f = with_hook(o);
    f.bn_fwd_train(&f, d, R(x), R(g), R(b), R(y), R(sm), R(si), R(rm), R(rv));
}
static void bn_fwd_infer(ops *o, const bn_desc *d, const float *x, const float *g, const float *b, const float *rm,
                         const float *rv, float *y) {
    (void)o, F->bn_fwd_infer(F, d, R(x), R(g), R(b), R(rm), R(rv), R(y));
}
static void bn_bwd(ops *o, const bn_desc *d, const float *x, const float *dy, const float *g, const float *sm,
                   const float *si, float *dx, float *dg, float *db) {
    ops f = with_hook(o);
    f.bn_bwd(&f, d, R(x), R(dy), R(g), R(sm), R(si), R(dx), R(dg), R(db));
}
static void bn_bwd_nohook(ops *o, const bn_desc *d, const float *x, const float *dy, const float *g,
                          const float *sm, const float *si, float *dx, float *dg, float *db) {
    (void)o, F->bn_bwd(F, d, R(x), R(dy), R(g), R(sm), R(si), R(dx), R(dg), R(db));
}
static void relu_fwd(ops *o, size_t n, const float *x, float *y) { (void)o, F->relu_fwd(F, n, R(x), R(y)); }
static void relu_bwd(ops *o, size_t n, const float *y, const float *dy, float *dx) {
    (void)o, F->relu_bwd(F, n, R(y), R(dy), R(dx));
}
static void add(ops *o, size_t n, const float *a, const float *b, float *y) { (void)o, F->add(F, n, R(a), R(b), R(y)); }
static void gap_fwd(ops *o, int n, int c, int hw, const float *x, float *y) { (void)o, F->gap_fwd(F, n, c, hw, R(x), R(y)); }
static void gap_bwd(ops *o, int n, int c, int hw, const float *dy, float *dx) {
    (void)o, F->gap_bwd(F, n, c, hw, R(dy), R(dx));
}
static void linear_fwd(ops *o, int n, int i, int k, const float *x, const float *w, const float *b, float *y) {
    (void)o, F->linear_fwd(F, n, i, k, R(x), R(w), R(b), R(y));
}
static void linear_bwd_data(ops *o, int n, int i, int k, const float *dy, const float *w, float *dx) {
    (void)o, F->linear_bwd_data(F, n, i, k, R(dy), R(w), R(dx));
}
static void linear_bwd_filter(ops *o, int n, int i, int k, const float *x, const float *dy, float *dw, float *db) {
    (void)o, F->linear_bwd_filter(F, n, i, k, R(x), R(dy), R(dw), R(db));
}
static void xent(ops *o, int n, int classes, const float *logits, const uint8_t *labels, float *dlogits,
                 double *loss, int *correct) {   /* loss and correct are host pointers (ops.h) */
    (void)o, F->xent(F, n, classes, R(logits), (const uint8_t *)in(labels), R(dlogits), loss, correct);
}

/* the optional work in backend memory (ops.h): the host functions that define it, behind the wall */
static void sgd_upd(ops *o, float *w, const float *g, float *buf, const uint8_t *mask, size_t n, double lr,
                    double mom, bool nesterov, double wd) {
    (void)o, sgd_update(R(w), R(g), R(buf), in(mask), n, lr, mom, nesterov, wd);
}
static void adam_upd(ops *o, float *w, const float *g, float *m, float *v, const uint8_t *mask, size_t n, double lr,
                     double b1, double b2, double eps, double wd, int64_t t) {
    (void)o, adam_update(R(w), R(g), R(m), R(v), in(mask), n, lr, b1, b2, eps, wd, t);
}
static void bfill(ops *o, float *x, const uint8_t *pixels, int c, int h, int w, const uint32_t *idx,
                  const aug_param *par, int n, bool bright, const double *mean, const double *inv,
                  const uint8_t *labels, uint8_t *lab) {
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

static void make_devfull(void) {
    devfull = devref;
    devfull.name = "devfull";
    devfull.sgd_update = sgd_upd, devfull.adam_update = adam_upd, devfull.batch_fill = bfill;
    devfast = devfull;
    devfast.name = "devfast";
    devfast.act_blk = 1;
    devfast.conv_fwd_l = conv_fwd_1, devfast.conv_bwd_data_l = conv_bwd_data_1;
    devfast.conv_bwd_filter_l = conv_bwd_filter_1, devfast.bn_fwd_train_l = bn_fwd_train_1;
    devfast.bn_fwd_infer_l = bn_fwd_infer_1, devfast.bn_bwd_l = bn_bwd_1, devfast.gap_fwd_l = gap_fwd_1;
    devfast.gap_bwd_l = gap_bwd_1, devfast.act_convert = act_convert_1, devfast.add_relu = add_relu_1;
    devfast.relu_bwd_add = relu_bwd_add_1;
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
 * brightness, a test set evaluated each epoch, a checkpoint per epoch), on ref, on devref
 * and on devfull: identical checkpoints, logs, and nothing of the backend's memory left
 * allocated. Both architectures, all parameters, BN
 * only and random-k (masked updates). */
static void loop_case(const char *arch, int depth, const char *regime, int opt_adam) {
    dataset d = make_ds(40, 4, false), t = make_ds(12, 5, false);
    enum { NB = 4 };
    ops *be[NB] = {&ops_ref, &devref, &devfull, &devfast};
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
        size_t before = live_allocs;
        int rc = train_run(c[k], be[k], &d, &cfg, &io, false, err);
        CHECK(rc == TRAIN_DONE, "%s on %s: rc %d %s", what, be[k]->name, rc, err);
        CHECK(io.sections == 2, "%s: %d sections written, expected one per epoch", what, io.sections);
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

/* With batches and the optimizer in backend memory (devfull), a step moves nothing across:
 * the same run with twice the steps per epoch makes exactly as many uploads and
 * downloads. (With either on the host, every step uploads its batch or its parameters.) */
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
    *up = uploads - u0, *down = downloads - d0;
    *out = c;
    ds_free(&d);
}
TEST(steps_move_nothing) {
    size_t u[2], dn[2], hu[2], hd[2];
    checkpoint *c[4];
    count_run(&devfull, 8, 2, &u[0], &dn[0], &c[0]);     /* 8 steps */
    count_run(&devfull, 4, 2, &u[1], &dn[1], &c[1]);     /* 16 steps */
    CHECK(u[0] == u[1] && dn[0] == dn[1], "devfull: %zu/%zu uploads, %zu/%zu downloads for 8/16 steps", u[0], u[1],
          dn[0], dn[1]);
    count_run(&devref, 8, 2, &hu[0], &hd[0], &c[2]);
    count_run(&devref, 4, 2, &hu[1], &hd[1], &c[3]);
    CHECK(hu[1] > hu[0] && hd[1] > hd[0], "devref (host batches and optimizer) moves data every step: %zu/%zu, %zu/%zu",
          hu[0], hu[1], hd[0], hd[1]);
    CHECK(same_tensors(c[0], c[2], "batch 8") && same_tensors(c[1], c[3], "batch 4"), "devfull vs devref");
    for (int k = 0; k < 4; k++) ck_free(c[k]);
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

/* A run stopped mid-epoch on devfull (parameters and momentum in backend memory) and
 * resumed, on devfull or on ref, ends with the bits of a run straight through. */
TEST(devfull_resume) {
    dataset d = make_ds(30, 4, false);
    train_cfg cfg;
    char err[256] = "";
    short_cfg(&cfg, &d, 6);
    checkpoint *whole = net("resnet", 8, "bn");
    int rc = train_run(whole, &devfull, &d, &cfg, NULL, false, err);
    CHECK(rc == TRAIN_DONE, "straight run: %d %s", rc, err);
    ops *then[2] = {&devfull, &ops_ref};
    for (int k = 0; k < 2; k++) {
        checkpoint *c = net("resnet", 8, "bn");
        train_io io = {0};
        io.max_steps = 3;           /* stops inside epoch 1 (4 steps) */
        rc = train_run(c, &devfull, &d, &cfg, &io, false, err);
        CHECK(rc == TRAIN_STOPPED, "stopped run: %d %s", rc, err);
        rc = train_run(c, then[k], &d, &cfg, NULL, true, err);
        CHECK(rc == TRAIN_DONE, "resumed on %s: %d %s", then[k]->name, rc, err);
        CHECK(same_tensors(whole, c, "resume"), "stopped on devfull, resumed on %s: differs", then[k]->name);
        ck_free(c);
    }
    ck_free(whole);
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
    RUN(train_loop_matches_ref);
    RUN(steps_move_nothing);
    RUN(devfull_resume);
    RUN(optim_bind_fails);
    RUN(model_api_matches_ref);
    RUN(steps_match_ref);
    RUN(bn_hook_probe);
    RUN(wall_is_real);
    return DONE();
}
