/* ops_cpu_conv.c: the "cpu" backend's convolutions, through oneDNN (libdnnl, C API).
 *
 * Each (direction, conv_desc, bias or not, layout) gets one oneDNN primitive, created on its
 * first call and kept in a small cache for the life of the process. The _l entries (ops.h
 * act_blk) take activations already in nChw8c or nChw16c (OPS_BLK_IN / OPS_BLK_OUT; the
 * table's act_blk, oneDNN's own layout on this machine: 8 on AVX2, 16 on AVX-512), so no reorder
 * is made; the plain entries are the _l ones with layout 0. Plain tensors are NCHW / OIHW;
 * oneDNN chooses its own blocked layouts ("any") and a call reorders into and out of them
 * through buffers owned by the cache entry, so nothing is allocated after the first call
 * for a shape. Measured on ResNet-20 shapes (see
 * docs/cpu-ops.md) the blocked kernels plus reorders beat oneDNN on plain layouts.
 *
 * oneDNN runs on the same OpenMP runtime (libgomp) as the rest of the program and uses
 * omp_get_max_threads() threads; for a fixed thread count its results are bit-identical run
 * to run (no atomics in the f32 convolution kernels; tested in tests/test_ops_cpu.c).
 *
 * A shape with a zero dimension, or one oneDNN refuses, is computed by the reference loops
 * (ops_ref): slow but right. The shapes cpu_zconv_wanted() names (the 16->16 3x3 ones and the
 * 16->32 projection's gradients, on AVX-512) go to the backend's own kernels instead
 * (ops_cpu_zconv.c). The cache is not thread-safe: call the ops from one thread. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <dnnl.h>

#include "ops_cpu.h"

enum { DIR_FWD, DIR_BWD_DATA, DIR_BWD_FILTER };
enum { MAX_ARGS = 4 };

/* One argument of a primitive: the user's plain memory, and when oneDNN wants another
 * layout, the internal memory and the reorder between them. */
typedef struct conv_arg {
    int id;                         /* DNNL_ARG_* */
    int is_output;
    dnnl_memory_t user;             /* plain layout; data handle set on every call */
    dnnl_memory_t inner;            /* NULL when oneDNN uses the plain layout itself */
    dnnl_primitive_t reorder;       /* user -> inner for inputs, inner -> user for outputs */
    void *buf;                      /* inner's storage */
} conv_arg;

typedef struct conv_entry {
    int dir, has_bias, layout;      /* layout: OPS_BLK_IN / OPS_BLK_OUT of the user's tensors */
    int blk;                        /* their block width when blocked (the caller's act_blk) */
    int wino;                       /* 1: oneDNN's Winograd algorithm, 0: direct */
    conv_desc d;
    int ok;                         /* 0: oneDNN refused this shape, use the reference */
    dnnl_primitive_t prim;
    int nargs;
    conv_arg args[MAX_ARGS];
    struct conv_entry *next;
} conv_entry;

static struct {
    int init, broken;
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    conv_entry *entries;
} g;

static int same_desc(const conv_desc *a, const conv_desc *b) {
    return a->n == b->n && a->cin == b->cin && a->h == b->h && a->w == b->w && a->cout == b->cout &&
           a->k == b->k && a->stride == b->stride && a->pad == b->pad && a->ho == b->ho && a->wo == b->wo;
}

static int engine_init(void) {
    if (g.init) return !g.broken;
    g.init = 1;
    if (dnnl_engine_create(&g.eng, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&g.stream, g.eng, dnnl_stream_default_flags) != dnnl_success)
        g.broken = 1;
    return !g.broken;
}

/* Bind argument a: `want` is the layout the primitive expects, `plain` the user's. */
static int arg_bind(conv_arg *a, int id, int is_output, const dnnl_memory_desc_t *plain,
                    const dnnl_memory_desc_t *want) {
    memset(a, 0, sizeof *a);
    a->id = id;
    a->is_output = is_output;
    if (dnnl_memory_create(&a->user, plain, g.eng, DNNL_MEMORY_NONE) != dnnl_success) return 0;
    if (dnnl_memory_desc_equal(plain, want)) return 1;
    size_t bytes = dnnl_memory_desc_get_size(want);
    a->buf = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!a->buf) return 0;
    if (dnnl_memory_create(&a->inner, want, g.eng, a->buf) != dnnl_success) return 0;
    dnnl_primitive_desc_t rpd;
    const dnnl_memory_desc_t *from = is_output ? want : plain, *to = is_output ? plain : want;
    if (dnnl_reorder_primitive_desc_create(&rpd, from, g.eng, to, g.eng, NULL) != dnnl_success) return 0;
    dnnl_status_t st = dnnl_primitive_create(&a->reorder, rpd);
    dnnl_primitive_desc_destroy(rpd);
    return st == dnnl_success;
}

static void md4(dnnl_memory_desc_t *md, int a, int b, int c, int d, dnnl_format_tag_t tag) {
    dnnl_dims_t dims = {a, b, c, d};
    dnnl_memory_desc_init_by_tag(md, 4, dims, dnnl_f32, tag);
}
static void md1(dnnl_memory_desc_t *md, int a, dnnl_format_tag_t tag) {
    dnnl_dims_t dims = {a};
    dnnl_memory_desc_init_by_tag(md, 1, dims, dnnl_f32, tag);
}

/* Winograd (oneDNN's F(4x4, 3x3), AVX-512 only) for 3x3 stride-1 convolutions of 32 or more
 * channels in and out (the filter gradient: 64 or more): measured 1.1-1.9x faster than
 * direct there on Zen 5 (16->16 at 32x32 is slower, and so is the 32->32 filter gradient in
 * a training step: docs/cpu-ops.md). A fixed rule, never a timing, so a run is reproducible. It
 * trades a little accuracy (still within the tolerances of tests/test_fast_layout.c).
 * BN_CPU_CONV=direct turns it off, =winograd uses it wherever oneDNN takes it. */
enum { ALG_AUTO, ALG_DIRECT, ALG_WINO };
static int alg_mode(void) {
    static int mode = -1;
    if (mode < 0) {
        const char *s = getenv("BN_CPU_CONV");
        mode = s && strcmp(s, "direct") == 0 ? ALG_DIRECT : s && strcmp(s, "winograd") == 0 ? ALG_WINO : ALG_AUTO;
    }
    return mode;
}
static int want_wino(const conv_desc *d, int dir) {
    int mode = alg_mode(), least = dir == DIR_BWD_FILTER ? 64 : 32;
    if (mode == ALG_DIRECT || d->k != 3 || d->stride != 1) return 0;
    return mode == ALG_WINO || (d->cin >= least && d->cout >= least && d->cin % 16 == 0 && d->cout % 16 == 0);
}

/* Set up e's primitive with algorithm alg: 1 done; -1 oneDNN refuses the shape (nothing made
 * yet); 0 a failure after that (what was made is leaked, once per shape: rare). */
static int entry_build_alg(conv_entry *e, dnnl_alg_kind_t alg) {
    const conv_desc *d = &e->d;
    dnnl_memory_desc_t src_p, wei_p, dst_p, bias_p, src_a, wei_a, dst_a, bias_a;
    dnnl_format_tag_t blk = e->blk == 16 ? dnnl_nChw16c : dnnl_nChw8c;
    md4(&src_p, d->n, d->cin, d->h, d->w, (e->layout & OPS_BLK_IN) ? blk : dnnl_nchw);
    md4(&wei_p, d->cout, d->cin, d->k, d->k, dnnl_oihw);
    md4(&dst_p, d->n, d->cout, d->ho, d->wo, (e->layout & OPS_BLK_OUT) ? blk : dnnl_nchw);
    md1(&bias_p, d->cout, dnnl_x);
    md4(&src_a, d->n, d->cin, d->h, d->w, dnnl_format_tag_any);
    md4(&wei_a, d->cout, d->cin, d->k, d->k, dnnl_format_tag_any);
    md4(&dst_a, d->n, d->cout, d->ho, d->wo, dnnl_format_tag_any);
    md1(&bias_a, d->cout, dnnl_x);
    dnnl_dims_t strides = {d->stride, d->stride};
    dnnl_dims_t pad_l = {d->pad, d->pad};
    /* right padding so that the last window ends where it does: may be negative (the
     * rows a strided conv never reaches), which oneDNN accepts */
    dnnl_dims_t pad_r = {(d->ho - 1) * d->stride + d->k - d->h - d->pad,
                         (d->wo - 1) * d->stride + d->k - d->w - d->pad};

    dnnl_convolution_desc_t fwd_cd, cd;
    if (dnnl_convolution_forward_desc_init(&fwd_cd, dnnl_forward_training, alg, &src_a, &wei_a,
                                           e->has_bias ? &bias_a : NULL, &dst_a, strides, pad_l,
                                           pad_r) != dnnl_success)
        return -1;
    dnnl_primitive_desc_t fwd_pd = NULL, pd = NULL;
    if (dnnl_primitive_desc_create(&fwd_pd, &fwd_cd, NULL, g.eng, NULL) != dnnl_success) return -1;
    int ok = -1;    /* -1 until the arguments are bound: a refusal, nothing to undo */
    if (e->dir == DIR_FWD) {
        pd = fwd_pd, fwd_pd = NULL;
    } else if (e->dir == DIR_BWD_DATA) {
        if (dnnl_convolution_backward_data_desc_init(&cd, alg, &src_a, &wei_a, &dst_a, strides,
                                                     pad_l, pad_r) != dnnl_success ||
            dnnl_primitive_desc_create(&pd, &cd, NULL, g.eng, fwd_pd) != dnnl_success)
            goto out;
    } else {
        if (dnnl_convolution_backward_weights_desc_init(&cd, alg, &src_a, &wei_a,
                                                        e->has_bias ? &bias_a : NULL, &dst_a, strides, pad_l,
                                                        pad_r) != dnnl_success ||
            dnnl_primitive_desc_create(&pd, &cd, NULL, g.eng, fwd_pd) != dnnl_success)
            goto out;
    }
#define Q(what) dnnl_primitive_desc_query_md(pd, what, 0)
#define Q1(what) dnnl_primitive_desc_query_md(pd, what, 1)     /* the bias, after the weights */
    ok = 0;
    conv_arg *a = e->args;
    int n = 0;
    if (e->dir == DIR_FWD) {
        if (!arg_bind(&a[n++], DNNL_ARG_SRC, 0, &src_p, Q(dnnl_query_src_md))) goto out;
        if (!arg_bind(&a[n++], DNNL_ARG_WEIGHTS, 0, &wei_p, Q(dnnl_query_weights_md))) goto out;
        if (e->has_bias && !arg_bind(&a[n++], DNNL_ARG_BIAS, 0, &bias_p, Q1(dnnl_query_weights_md))) goto out;
        if (!arg_bind(&a[n++], DNNL_ARG_DST, 1, &dst_p, Q(dnnl_query_dst_md))) goto out;
    } else if (e->dir == DIR_BWD_DATA) {
        if (!arg_bind(&a[n++], DNNL_ARG_DIFF_DST, 0, &dst_p, Q(dnnl_query_diff_dst_md))) goto out;
        if (!arg_bind(&a[n++], DNNL_ARG_WEIGHTS, 0, &wei_p, Q(dnnl_query_weights_md))) goto out;
        if (!arg_bind(&a[n++], DNNL_ARG_DIFF_SRC, 1, &src_p, Q(dnnl_query_diff_src_md))) goto out;
    } else {
        if (!arg_bind(&a[n++], DNNL_ARG_SRC, 0, &src_p, Q(dnnl_query_src_md))) goto out;
        if (!arg_bind(&a[n++], DNNL_ARG_DIFF_DST, 0, &dst_p, Q(dnnl_query_diff_dst_md))) goto out;
        if (!arg_bind(&a[n++], DNNL_ARG_DIFF_WEIGHTS, 1, &wei_p, Q(dnnl_query_diff_weights_md))) goto out;
        if (e->has_bias && !arg_bind(&a[n++], DNNL_ARG_DIFF_BIAS, 1, &bias_p, Q1(dnnl_query_diff_weights_md)))
            goto out;
    }
#undef Q
#undef Q1
    e->nargs = n;
    ok = dnnl_primitive_create(&e->prim, pd) == dnnl_success;
out:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (fwd_pd) dnnl_primitive_desc_destroy(fwd_pd);
    return ok;
}

/* Winograd where the rule wants it and oneDNN has it (it refuses on AVX2), else direct. */
static int entry_build(conv_entry *e) {
    if (want_wino(&e->d, e->dir)) {
        int r = entry_build_alg(e, dnnl_convolution_winograd);
        if (r >= 0) return r ? (e->wino = 1) : 0;
    }
    return entry_build_alg(e, dnnl_convolution_direct) == 1;
}

/* The block width of the layout oneDNN computes a ResNet convolution in on this machine (16
 * on AVX-512, 8 on AVX2): asked of the forward primitive of a 16->16 3x3 convolution of 32
 * images of 32x32. 8 when oneDNN is unusable or answers with something else. */
int cpu_blk_preferred(void) {
    if (!engine_init()) return 8;
    dnnl_memory_desc_t src, wei, dst, want;
    md4(&src, 32, 16, 32, 32, dnnl_format_tag_any);
    md4(&wei, 16, 16, 3, 3, dnnl_format_tag_any);
    md4(&dst, 32, 16, 32, 32, dnnl_format_tag_any);
    md4(&want, 32, 16, 32, 32, dnnl_nChw16c);
    dnnl_dims_t strides = {1, 1}, pad = {1, 1};
    dnnl_convolution_desc_t cd;
    dnnl_primitive_desc_t pd;
    if (dnnl_convolution_forward_desc_init(&cd, dnnl_forward_training, dnnl_convolution_direct, &src, &wei, NULL,
                                           &dst, strides, pad, pad) != dnnl_success ||
        dnnl_primitive_desc_create(&pd, &cd, NULL, g.eng, NULL) != dnnl_success)
        return 8;
    int blk = dnnl_memory_desc_equal(dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0), &want) ? 16 : 8;
    dnnl_primitive_desc_destroy(pd);
    return blk;
}

/* The cache entry for (dir, d, has_bias), built on first use; NULL: use the reference. */
static conv_entry *entry_get(int dir, const conv_desc *d, int has_bias, int layout, int blk) {
    if ((size_t)d->n * d->cin * d->h * d->w * d->cout * d->ho * d->wo == 0) return NULL;
    if (!engine_init()) return NULL;
    for (conv_entry *e = g.entries; e; e = e->next)
        if (e->dir == dir && e->has_bias == has_bias && e->layout == layout && e->blk == blk &&
            same_desc(&e->d, d))
            return e->ok ? e : NULL;
    conv_entry *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->dir = dir;
    e->has_bias = has_bias;
    e->layout = layout;
    e->blk = blk;
    e->d = *d;
    e->ok = entry_build(e);     /* a failed build leaks its few half-made objects, once per shape */
    e->next = g.entries;
    g.entries = e;
    return e->ok ? e : NULL;
}

/* Run e on the user's pointers, in the order of e->args (as entry_build bound them).
 * keep_weights: e's reordered weights are those of this call already (a previous chunk). */
static void entry_run(conv_entry *e, void *const ptrs[], int keep_weights) {
    dnnl_exec_arg_t ex[MAX_ARGS];
    for (int i = 0; i < e->nargs; i++) {
        conv_arg *a = &e->args[i];
        dnnl_memory_set_data_handle(a->user, ptrs[i]);
        ex[i].arg = a->id;
        ex[i].memory = a->inner ? a->inner : a->user;
        if (a->inner && !a->is_output && !(keep_weights && a->id == DNNL_ARG_WEIGHTS)) {
            dnnl_exec_arg_t r[2] = {{DNNL_ARG_FROM, a->user}, {DNNL_ARG_TO, a->inner}};
            dnnl_primitive_execute(a->reorder, g.stream, 2, r);
        }
    }
    dnnl_primitive_execute(e->prim, g.stream, e->nargs, ex);
    for (int i = 0; i < e->nargs; i++) {
        conv_arg *a = &e->args[i];
        if (a->inner && a->is_output) {
            dnnl_exec_arg_t r[2] = {{DNNL_ARG_FROM, a->inner}, {DNNL_ARG_TO, a->user}};
            dnnl_primitive_execute(a->reorder, g.stream, 2, r);
        }
    }
    dnnl_stream_wait(g.stream);
}

/* Images per oneDNN call. A call whose activations are not both in oneDNN's layout goes
 * through in chunks of 32 images, so that each chunk's reorders and convolution work on
 * data still in cache (measured on AVX2: 32 beats whole batches of 128 by ~10%), and so
 * does the filter gradient (its chunks' sums are added in order: measured a few % faster
 * than whole batches on Zen 5). Forward and data gradient with nothing to reorder take the
 * whole batch at once (Winograd's tiles, fewer calls: 64->64 8x8 ~10% faster on Zen 5;
 * docs/cpu-ops.md). BN_CPU_CONV_CHUNK=N forces N images everywhere (benchmarks only). */
static int chunk_size(int dir, int layout) {
    static int forced = -1;
    if (forced < 0) {
        const char *s = getenv("BN_CPU_CONV_CHUNK");
        forced = s ? atoi(s) : 0;
        if (s && forced < 1) forced = 1 << 30;
    }
    if (forced) return forced;
    return dir != DIR_BWD_FILTER && layout == (OPS_BLK_IN | OPS_BLK_OUT) ? 1 << 30 : 32;
}

/* d restricted to images [i, i + *len) of the batch */
static conv_desc sub_desc(const conv_desc *d, int dir, int layout, int i, int *len) {
    conv_desc s = *d;
    int cb = chunk_size(dir, layout);
    *len = d->n - i < cb ? d->n - i : cb;
    s.n = *len;
    return s;
}

int cpu_conv_winograd(const conv_desc *d, int dir) {
    int blk = ops_cpu.act_blk, len, layout = (d->cin % blk ? 0 : OPS_BLK_IN) | (d->cout % blk ? 0 : OPS_BLK_OUT);
    conv_desc s = sub_desc(d, dir, layout, 0, &len);
    conv_entry *e = entry_get(dir, &s, 0, layout, blk);
    return e && e->wino;
}

/* The reference loops on plain copies of blocked tensors (shapes oneDNN refuses: rare;
 * allocates). `blocked`: the tensor's flag (OPS_BLK_IN or OPS_BLK_OUT of the call). */
static float *plain_copy(ops *o, int blocked, int n, int c, int hw, const float *x) {
    if (!blocked || !x) return (float *)x;
    float *p = malloc(((size_t)n * c * hw + 1) * sizeof *p);
    if (!p) abort();
    cpu_act_convert(o, 0, n, c, hw, x, p);
    return p;
}
static float *plain_buf(int blocked, int n, int c, int hw, float *x) {
    if (!blocked || !x) return x;
    float *p = malloc(((size_t)n * c * hw + 1) * sizeof *p);
    if (!p) abort();
    return p;
}
static void plain_back(ops *o, int blocked, int n, int c, int hw, float *p, float *x) {
    if (!blocked || !x) return;
    cpu_act_convert(o, 1, n, c, hw, p, x);
    free(p);
}
static void plain_free(int blocked, const float *p) {
    if (blocked && p) free((void *)p);
}

void cpu_conv_fwd_l(ops *o, const conv_desc *d, int layout, const float *x, const float *w, const float *b,
                    float *y) {
    if (cpu_zconv_wanted(d, DIR_FWD, layout, o->act_blk)) {
        cpu_zconv_fwd(d, x, w, b, y);
        return;
    }
    size_t xs = (size_t)d->cin * d->h * d->w, ys = (size_t)d->cout * d->ho * d->wo;
    conv_entry *prev = NULL;
    for (int i = 0, len; i < d->n || i == 0; i += len) {
        conv_desc s = sub_desc(d, DIR_FWD, layout, i, &len);
        conv_entry *e = entry_get(DIR_FWD, &s, b != NULL, layout, o->act_blk);
        if (!e) {
            int bi = layout & OPS_BLK_IN, bo = layout & OPS_BLK_OUT;
            float *xp = plain_copy(o, bi, d->n, d->cin, d->h * d->w, x);
            float *yp = plain_buf(bo, d->n, d->cout, d->ho * d->wo, y);
            ops_ref.conv_fwd(o, d, xp, w, b, yp);
            plain_back(o, bo, d->n, d->cout, d->ho * d->wo, yp, y);
            plain_free(bi, xp);
            return;
        }
        float *yi = y + i * ys;
        void *p[MAX_ARGS] = {(void *)(x + i * xs), (void *)w, b ? (void *)b : yi, yi};
        entry_run(e, p, e == prev);
        prev = e;
    }
}

void cpu_conv_bwd_data_l(ops *o, const conv_desc *d, int layout, const float *dy, const float *w, float *dx) {
    if (cpu_zconv_wanted(d, DIR_BWD_DATA, layout, o->act_blk)) {
        cpu_zconv_bwd_data(d, dy, w, dx);
        return;
    }
    size_t xs = (size_t)d->cin * d->h * d->w, ys = (size_t)d->cout * d->ho * d->wo;
    conv_entry *prev = NULL;
    for (int i = 0, len; i < d->n || i == 0; i += len) {
        conv_desc s = sub_desc(d, DIR_BWD_DATA, layout, i, &len);
        conv_entry *e = entry_get(DIR_BWD_DATA, &s, 0, layout, o->act_blk);
        if (!e) {
            int bi = layout & OPS_BLK_IN, bo = layout & OPS_BLK_OUT;
            float *gp = plain_copy(o, bo, d->n, d->cout, d->ho * d->wo, dy);
            float *xp = plain_buf(bi, d->n, d->cin, d->h * d->w, dx);
            ops_ref.conv_bwd_data(o, d, gp, w, xp);
            plain_back(o, bi, d->n, d->cin, d->h * d->w, xp, dx);
            plain_free(bo, gp);
            return;
        }
        void *p[MAX_ARGS] = {(void *)(dy + i * ys), (void *)w, dx + i * xs, NULL};
        entry_run(e, p, e == prev);
        prev = e;
    }
}

/* The filter gradient sums over the batch: the first chunk writes dw (and db), each later
 * one writes a scratch buffer that is then added in, chunk after chunk (a fixed order). */
void cpu_conv_bwd_filter_l(ops *o, const conv_desc *d, int layout, const float *x, const float *dy, float *dw,
                           float *db) {
    if (cpu_zconv_wanted(d, DIR_BWD_FILTER, layout, o->act_blk)) {
        cpu_zconv_bwd_filter(d, x, dy, dw, db);
        return;
    }
    static float *scratch;
    static size_t scratch_len;
    size_t xs = (size_t)d->cin * d->h * d->w, ys = (size_t)d->cout * d->ho * d->wo;
    size_t nw = (size_t)d->cout * d->cin * d->k * d->k, nb = db ? (size_t)d->cout : 0;
    for (int i = 0, len; i < d->n || i == 0; i += len) {
        conv_desc s = sub_desc(d, DIR_BWD_FILTER, layout, i, &len);
        conv_entry *e = entry_get(DIR_BWD_FILTER, &s, db != NULL, layout, o->act_blk);
        if (e && i > 0 && scratch_len < nw + nb) {
            float *p = realloc(scratch, (nw + nb) * sizeof *p);
            if (p) scratch = p, scratch_len = nw + nb;
            else e = NULL;
        }
        if (!e) {
            int bi = layout & OPS_BLK_IN, bo = layout & OPS_BLK_OUT;
            float *xp = plain_copy(o, bi, d->n, d->cin, d->h * d->w, x);
            float *gp = plain_copy(o, bo, d->n, d->cout, d->ho * d->wo, dy);
            ops_ref.conv_bwd_filter(o, d, xp, gp, dw, db);
            plain_free(bi, xp);
            plain_free(bo, gp);
            return;
        }
        float *tw = i == 0 ? dw : scratch, *tb = i == 0 ? db : scratch + nw;
        void *p[MAX_ARGS] = {(void *)(x + i * xs), (void *)(dy + i * ys), tw, tb};
        entry_run(e, p, 0);
        if (i == 0) continue;
#pragma omp simd
        for (size_t j = 0; j < nw; j++) dw[j] += scratch[j];
        for (size_t j = 0; j < nb; j++) db[j] += scratch[nw + j];
    }
}

void cpu_conv_fwd(ops *o, const conv_desc *d, const float *x, const float *w, const float *b, float *y) {
    cpu_conv_fwd_l(o, d, 0, x, w, b, y);
}
void cpu_conv_bwd_data(ops *o, const conv_desc *d, const float *dy, const float *w, float *dx) {
    cpu_conv_bwd_data_l(o, d, 0, dy, w, dx);
}
void cpu_conv_bwd_filter(ops *o, const conv_desc *d, const float *x, const float *dy, float *dw, float *db) {
    cpu_conv_bwd_filter_l(o, d, 0, x, dy, dw, db);
}
