/* model.c: the two architectures as one list of layers (model.h, model_extra.h).
 *
 * A model is a list of layers over numbered values (value 0 is the input image batch).
 * The same plan serves two purposes: model_init creates the tensors the plan names (with
 * their initial values), and model_build binds a checkpoint's tensors to the plan and
 * allocates the activations once for max_batch images.
 *
 * Activations: each value has a storage buffer. A ReLU runs in place over its input, and
 * an add over its first input (a BN output that nothing else reads), so a conv -> BN ->
 * ReLU costs two buffers: the conv output (the BN backward needs it) and the BN/ReLU
 * output (the ReLU backward and the next conv's filter gradient need it).
 *
 * Backward: value v "needs a gradient" when some trainable tensor lies upstream of it
 * (need[]), computed at build time from the trainable flags. A layer whose output needs
 * no gradient is skipped; a conv computes its filter gradient only when its weight or
 * bias is trainable and its input gradient only when its input needs one (never for the
 * first conv). Gradients of values live in a small pool of reference-counted buffers: an
 * add hands its output gradient to both inputs without copying, a ReLU works in place,
 * and a value read by two layers (a block input: conv1 and the shortcut) accumulates.
 *
 * Init: every tensor draws from its own stream rng_seed(seed, fnv1a(name)), so a tensor's
 * initial values depend only on the seed, its name and its shape. Conv and linear weights
 * are He normal, fan-in (std sqrt(2/fan_in), fan_in = cin*k*k or in): plain normal for
 * "resnet" (PyTorch kaiming_normal_), truncated at 2 std and rescaled by 1/0.8796 for
 * "bottleneck" (Keras he_normal). Biases 0, beta 0, running mean 0, running var 1.
 *
 * Memory: with a host backend (ref, cpu) every tensor is host memory and parameters are
 * the checkpoint's own arrays, updated in place. A backend with ops.h's mem_* entries (cuda)
 * gets everything an op reads or writes in its own memory (tensor_alloc): activations,
 * gradients, BN statistics, the input batch and labels, and a copy of each bound checkpoint
 * tensor. The host side then holds the checkpoint and a host copy of each gradient, which
 * model_grad downloads when asked. With the host optimizer, model_upload_params sends the
 * updated parameters back; with the backend's (optim.c optim_step_backend, through
 * model_bind_state / model_dparam_get) parameters and optimizer state stay there and
 * model_sync brings them home, with the BN running statistics, before a checkpoint is
 * written. The training set can live there too (model_data_attach: batches built by the
 * backend's batch_fill from a per-step stage, the loss per image left there by xent_rows),
 * and a step's ops can be recorded once and replayed (model_graph_*, ops.h graph_*: every
 * per-step value comes from the stage, and `gen` counts the allocations that would make a
 * recording's pointers stale). Nothing on the host dereferences backend memory
 * (tests/test_devmem.c checks that with a backend whose pointers fault on the host).
 *
 * Fast path (backends with ops.h act_blk: cpu, and cuda at block width 1): activations in
 * the backend's blocked layout and BN+ReLU, add+ReLU fused (fast_setup); BN_PROFILE=1|cpu
 * times every layer (prof_print, at model_free). */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "model_extra.h"
#include "rng.h"

enum { L_CONV, L_BN, L_RELU, L_ADD, L_GAP, L_LINEAR };
typedef struct prof prof;
static const char *kind_names[] = {"conv", "bn", "relu", "add", "gap", "linear"};

typedef struct layer {
    int type;
    char name[64];
    int in, in2, out;           /* values; in2 only for add */
    int cout, k, stride, pad;   /* conv: cout, k, stride, pad; linear: cout = out features */
    bool bias;                  /* conv / linear has a bias tensor */
    /* bound tensors (model_build): data pointers stay valid when the checkpoint's tensor
     * array grows or shrinks around them */
    int ti[4];                  /* checkpoint indices: conv/linear w, b; bn gamma, beta, mean, var */
    float *w, *b, *gamma, *beta, *mean, *var;
    bool tw, tb, tgamma, tbeta; /* trainable */
    float *gw, *gb, *ggamma, *gbeta;
    float *save_mean, *save_invstd;
    bool fuse_relu;             /* fast path: this BN (or add: forward only) also applies the ReLU after it */
    bool fused;                 /* fast path: this ReLU is done by the BN before it */
    bool fwd_by_add;            /* fast path: this ReLU's forward is done by the add before it */
    bool fuse_add;              /* fast path: this BN is done by the add that reads its output, in one
                                 * op with the add's ReLU (ops.h bn_add_relu_*): its output is never kept */
    int bn;                     /* an add's forward that does the BN layer L[bn] too, -1 none */
} layer;

typedef struct value {
    int c, h, w;
    int storage;                /* index into model.store; 0 = the input */
    int writer;                 /* the last value written into this value's storage (in-place) */
    bool blk;                   /* fast path: stored in the backend's blocked layout */
} value;

typedef struct gbuf { float *p; int refs; } gbuf;

typedef struct mparam {         /* a trainable tensor and its gradient */
    char name[CK_NAMELEN];
    float *data;                /* the checkpoint's array (host); identifies the tensor */
    float *dptr;                /* what the ops see: data, or its copy in backend memory */
    float *grad;                /* backend memory */
    float *hgrad;               /* host: grad itself, or its copy (downloaded by model_grad) */
    bool stale;                 /* hgrad is older than grad: model_grad downloads it first */
    float *dstate[2];           /* backend copies of its optimizer state (model_bind_state) */
    uint8_t *dmask;             /* backend copy of its mask (model_bind_state) */
    size_t numel;
} mparam;

typedef struct binding {        /* a checkpoint tensor copied to backend memory */
    float *host, *dev;
    size_t numel;
    bool buffer;                /* a BN running statistic: the forward updates it */
} binding;

struct model {
    char arch[32];
    int depth, width, classes;
    float bn_eps, bn_momentum;
    bool conv_bias;             /* bottleneck: every conv has a bias */
    bool truncated_init;        /* bottleneck: Keras he_normal */

    layer *L;
    int nl, capl;
    value *v;
    int nv, capv;

    /* model_build only */
    checkpoint *ck;
    ops *o;
    int max_batch, n;
    bool last_train;
    bool fast;                  /* the backend's blocked layout and fused BN+ReLU (ops.h act_blk) */
    float *plain;               /* model_activation's NCHW copy of a blocked value (lazy) */
    prof *pf;                   /* BN_PROFILE=1: time per layer kind and direction */
    int batch_total;            /* model_set_batch_total: 0 = the local batch */
    float **store;              /* per storage: max_batch * c*h*w floats (store[0] = input) */
    int nstore;
    bool *need;                 /* per value */
    gbuf *pool;
    int npool, cappool;
    int *gof;                   /* per value: pool index of its gradient, -1 none */
    int *pend;                  /* per value: a second part of its gradient not yet added in
                                 * (pool index, -1 none): the ReLU that made it adds it (relu_bwd_add) */
    bool *defer;                /* per value: its gradient parts may wait for that ReLU */
    size_t max_elems;           /* largest value for max_batch images */
    size_t act_elems;           /* all activation storage */
    float *scratch;             /* gradients of frozen tensors that an op must write anyway */
    size_t scratch_n;
    mparam *P;
    int np;
    /* backend memory (ops.h mem_*), when the backend has it */
    bool dev;
    binding *B;
    int nb, capb;
    uint8_t *dlabels;           /* max_batch labels */
    float *hlogits;             /* host: model_logits' copy, max_batch * classes */
    float *hdlogits;            /* host: the logits' gradient while it is scaled */
    float *dplain;              /* backend: model_activation's NCHW conversion */
    bool params_moved;          /* the backend's parameters changed there: model_sync downloads */
    ops_tensor *dtable;         /* model_dparam_table: backend memory, dtable_k entries */
    int dtable_k;
    size_t dtable_maxn;
    /* training data in backend memory (model_data_attach) */
    uint8_t *dpixels, *dlabels_all;
    int dc, dh, dw;
    size_t dn;                  /* images there: the first dataset's, then the second's */
    const dataset *dsets[2];    /* which (host) datasets they are (model_data_base) */
    size_t dset_n0;
    unsigned char *dstage, *hstage;   /* a step's stage: ops_step, idx[max_batch], par[max_batch] */
    size_t stage_par;           /* offset of par in the stage */
    bool stage_has_par;
    double *drows, *hrows;      /* xent_rows: loss[max_batch] doubles, then hit[max_batch] int32 */
    bool labels_ready;          /* dlabels hold the staged batch's labels */
    bool pool_ready;            /* a backward pass has sized the gradient pool */
    bool full_ran;              /* a forward of max_batch images has run (not recorded) */
    unsigned gen;               /* backend allocations and releases so far */
    unsigned bwd_count;         /* backward passes queued so far */
    /* the recordings (model_graph_*): a training step, a test batch */
    struct mgraph {
        void *g;
        int n;
        unsigned gen;           /* gen when it was recorded: another value makes it stale */
        bool moves, bwd;        /* it updates the parameters / runs a backward pass */
        bool train;             /* the recorded forward was in train mode */
        struct recipe {         /* what its batch_fill was given (by value: baked in) */
            bool staged;        /* it holds a model_forward_staged */
            aug_kind aug;
            bool norm;
            double mean[NORM_MAXC], inv[NORM_MAXC];
        } recipe;
    } graph[MODEL_GRAPHS];
    int rec_slot;               /* the one being recorded */
    struct recipe rec_recipe;   /* its model_forward_staged's, so far */
    bool recording, rec_failed; /* rec_failed: something while recording could not be recorded */
    bool rec_moved;             /* params_moved before the recording */
    unsigned rec_gen, rec_bwd;
};

/* ---- memory --------------------------------------------------------------------------- */
static float *buf_alloc(size_t n) {
    void *p = NULL;
    size_t bytes = (n ? n : 1) * sizeof(float);
    bytes = (bytes + 63) / 64 * 64;
    if (posix_memalign(&p, 64, bytes) != 0) return NULL;
    memset(p, 0, bytes);
    return p;
}

/* Backend memory for n floats (zero-filled), and its release; the host's with a host backend. */
static void *dev_alloc(model *m, size_t bytes) {
    m->gen++;
    return m->o->mem_alloc(m->o, bytes);
}
static void dev_free(model *m, void *p) {
    if (!p) return;
    m->gen++;
    m->o->mem_free(m->o, p);
}
/* model_dparam_table's table (its pointers change with the optimizer state's bindings) */
static void dtable_drop(model *m) {
    if (m->dtable) dev_free(m, m->dtable);
    m->dtable = NULL, m->dtable_k = 0, m->dtable_maxn = 0;
}
static float *tensor_alloc(model *m, size_t n) {
    if (!m->dev) return buf_alloc(n);
    return dev_alloc(m, (n ? n : 1) * sizeof(float));
}
static void tensor_free(model *m, void *p) {
    if (!p) return;
    if (m->dev) dev_free(m, p);
    else free(p);
}
static void to_backend(model *m, void *dst, const void *src, size_t bytes) {
    if (m->dev) m->o->mem_upload(m->o, dst, src, bytes);
    else memcpy(dst, src, bytes);
}
static void to_host(const model *m, void *dst, const void *src, size_t bytes) {
    if (m->dev) m->o->mem_download(m->o, dst, src, bytes);
    else memcpy(dst, src, bytes);
}
static void backend_copy(model *m, void *dst, const void *src, size_t bytes) {
    if (m->dev) m->o->mem_copy(m->o, dst, src, bytes);
    else memcpy(dst, src, bytes);
}

/* The pointer the ops get for checkpoint array `host` (numel floats): the array itself with
 * a host backend, else its copy in backend memory (made on first use). NULL: out of memory. */
static float *bind_tensor(model *m, float *host, size_t numel, bool buffer) {
    if (!m->dev) return host;
    for (int i = 0; i < m->nb; i++)
        if (m->B[i].host == host) return m->B[i].dev;
    if (m->nb == m->capb) {
        m->capb = m->capb ? 2 * m->capb : 64;
        m->B = realloc(m->B, (size_t)m->capb * sizeof *m->B);
        if (!m->B) abort();
    }
    float *d = tensor_alloc(m, numel);
    if (!d) return NULL;
    to_backend(m, d, host, numel * sizeof *host);
    m->B[m->nb++] = (binding){host, d, numel, buffer};
    return d;
}

/* ---- the plan ---------------------------------------------------------------------------- */
static layer *add_layer(model *m, int type, const char *name) {
    if (m->nl == m->capl) {
        m->capl = m->capl ? 2 * m->capl : 64;
        m->L = realloc(m->L, (size_t)m->capl * sizeof *m->L);
        if (!m->L) abort();
    }
    layer *l = &m->L[m->nl++];
    memset(l, 0, sizeof *l);
    l->type = type;
    snprintf(l->name, sizeof l->name, "%s", name);
    l->in2 = -1, l->bn = -1;
    for (int i = 0; i < 4; i++) l->ti[i] = -1;
    return l;
}

/* A new value; storage -1 = a new buffer, else shares (overwrites) value `storage`'s. */
static int add_value(model *m, int c, int h, int w, int share) {
    if (m->nv == m->capv) {
        m->capv = m->capv ? 2 * m->capv : 64;
        m->v = realloc(m->v, (size_t)m->capv * sizeof *m->v);
        if (!m->v) abort();
    }
    int id = m->nv++;
    value *v = &m->v[id];
    v->c = c, v->h = h, v->w = w;
    v->writer = id;
    v->blk = false;
    if (share < 0) {
        v->storage = m->nstore++;
    } else {
        v->storage = m->v[share].storage;
        for (int i = 0; i < id; i++)
            if (m->v[i].storage == v->storage) m->v[i].writer = id;
    }
    return id;
}

static int p_conv(model *m, const char *name, int in, int cout, int k, int stride, bool bias) {
    const value *x = &m->v[in];
    conv_desc d;
    conv_desc_init(&d, 1, x->c, x->h, x->w, cout, k, stride, k / 2);
    layer *l = add_layer(m, L_CONV, name);
    l->in = in, l->cout = cout, l->k = k, l->stride = stride, l->pad = k / 2, l->bias = bias;
    l->out = add_value(m, cout, d.ho, d.wo, -1);
    return l->out;
}
static int p_bn(model *m, const char *name, int in) {
    layer *l = add_layer(m, L_BN, name);
    l->in = in;
    l->out = add_value(m, m->v[in].c, m->v[in].h, m->v[in].w, -1);
    return l->out;
}
static int p_relu(model *m, const char *name, int in) {
    layer *l = add_layer(m, L_RELU, name);
    l->in = in;
    l->out = add_value(m, m->v[in].c, m->v[in].h, m->v[in].w, in);
    return l->out;
}
static int p_add(model *m, const char *name, int a, int b) {
    layer *l = add_layer(m, L_ADD, name);
    l->in = a, l->in2 = b;
    l->out = add_value(m, m->v[a].c, m->v[a].h, m->v[a].w, a);
    return l->out;
}
static int p_gap(model *m, const char *name, int in) {
    layer *l = add_layer(m, L_GAP, name);
    l->in = in;
    l->out = add_value(m, m->v[in].c, 1, 1, -1);
    return l->out;
}
static int p_linear(model *m, const char *name, int in, int out) {
    layer *l = add_layer(m, L_LINEAR, name);
    l->in = in, l->cout = out, l->bias = true;
    l->out = add_value(m, out, 1, 1, -1);
    return l->out;
}
/* conv -> BN (-> ReLU) named PREFIX.convS / PREFIX.bnS / PREFIX.reluS */
static int p_conv_bn(model *m, const char *prefix, const char *suffix, int in, int cout, int k, int stride,
                     bool bias, bool relu) {
    char a[64], b[64], c[64];
    snprintf(a, sizeof a, "%s.conv%s", prefix, suffix);
    snprintf(b, sizeof b, "%s.bn%s", prefix, suffix);
    snprintf(c, sizeof c, "%s.relu%s", prefix, suffix);
    int x = p_conv(m, a, in, cout, k, stride, bias);
    x = p_bn(m, b, x);
    return relu ? p_relu(m, c, x) : x;
}

/* The paper's ResNet: basic blocks, projection shortcut conv1x1 + BN where shape changes. */
static void plan_resnet(model *m) {
    int n = (m->depth - 2) / 6, W = m->width;
    int x = add_value(m, 3, 32, 32, -1);
    x = p_conv_bn(m, "stem", "", x, W, 3, 1, false, true);
    for (int s = 0; s < 3; s++) {
        int c = W << s;
        for (int b = 0; b < n; b++) {
            char pre[48], nm[64];
            snprintf(pre, sizeof pre, "s%d.b%d", s + 1, b);
            int stride = (s > 0 && b == 0) ? 2 : 1, sc = x;
            int y = p_conv_bn(m, pre, "1", x, c, 3, stride, false, true);
            y = p_conv_bn(m, pre, "2", y, c, 3, 1, false, false);
            if (stride != 1 || m->v[x].c != c) {
                snprintf(nm, sizeof nm, "%s.short", pre);
                sc = p_conv_bn(m, nm, "", x, c, 1, stride, false, false);
            }
            snprintf(nm, sizeof nm, "%s.add", pre);
            y = p_add(m, nm, y, sc);
            snprintf(nm, sizeof nm, "%s.relu", pre);
            x = p_relu(m, nm, y);
        }
    }
    x = p_gap(m, "gap", x);
    p_linear(m, "fc", x, m->classes);
}

/* The seed's Keras bottleneck ResNet v1: per group one projection block (shortcut
 * conv1x1 with bias, no BN) and n-1 identity blocks; classifier BN -> ReLU -> pool. */
static void plan_bottleneck(model *m) {
    int n = (m->depth - 2) / 9, W = m->width;
    int f[3] = {W, 4 * W, 8 * W}, mult[3] = {4, 2, 2};
    int x = add_value(m, 3, 32, 32, -1);
    x = p_conv_bn(m, "stem", "", x, W, 3, 1, true, true);
    for (int s = 0; s < 3; s++) {
        int cout = f[s] * mult[s];
        for (int b = 0; b < n; b++) {
            char pre[48], nm[64];
            snprintf(pre, sizeof pre, "s%d.b%d", s + 1, b);
            int stride = (s > 0 && b == 0) ? 2 : 1, sc = x;
            int y = p_conv_bn(m, pre, "1", x, f[s], 1, 1, true, true);
            y = p_conv_bn(m, pre, "2", y, f[s], 3, stride, true, true);
            y = p_conv_bn(m, pre, "3", y, cout, 1, 1, true, false);
            if (b == 0) {
                snprintf(nm, sizeof nm, "%s.short.conv", pre);
                sc = p_conv(m, nm, x, cout, 1, stride, true);
            }
            snprintf(nm, sizeof nm, "%s.add", pre);
            y = p_add(m, nm, y, sc);
            snprintf(nm, sizeof nm, "%s.relu", pre);
            x = p_relu(m, nm, y);
        }
    }
    x = p_bn(m, "head.bn", x);
    x = p_relu(m, "head.relu", x);
    x = p_gap(m, "gap", x);      /* AveragePooling2D(8) over the 8x8 map = global average */
    p_linear(m, "fc", x, m->classes);
}

int model_check_arch(const char *arch, int depth, int width, int classes, char err[256]) {
    if (!arch) arch = "(none)";
    if (strcmp(arch, "resnet") == 0) {
        if (depth < 8 || depth > 20000 || (depth - 2) % 6 != 0) {
            snprintf(err, 256, "resnet depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 56, 110, ...), not %d", depth);
            return -1;
        }
    } else if (strcmp(arch, "bottleneck") == 0) {
        if (depth < 11 || depth > 20000 || (depth - 2) % 9 != 0) {
            snprintf(err, 256, "bottleneck depth must be 9n+2 with n >= 1 (11, 20, 29, 38, ...), not %d", depth);
            return -1;
        }
    } else {
        snprintf(err, 256, "unknown architecture '%s' (expected resnet or bottleneck)", arch);
        return -1;
    }
    if (width < 1 || width > 1024) {
        snprintf(err, 256, "width must be in 1..1024, not %d", width);
        return -1;
    }
    if (classes < 2 || classes > 256) {
        snprintf(err, 256, "classes must be in 2..256 (labels are bytes), not %d", classes);
        return -1;
    }
    return 0;
}

static model *plan(const char *arch, int depth, int width, int classes, char err[256]) {
    if (model_check_arch(arch, depth, width, classes, err)) return NULL;
    model *m = calloc(1, sizeof *m);
    if (!m) abort();
    snprintf(m->arch, sizeof m->arch, "%s", arch);
    m->depth = depth, m->width = width, m->classes = classes;
    if (strcmp(arch, "resnet") == 0) {
        m->bn_eps = 1e-5f, m->bn_momentum = 0.1f;
        plan_resnet(m);
    } else {
        m->bn_eps = 1e-3f, m->bn_momentum = 0.01f, m->conv_bias = true, m->truncated_init = true;
        plan_bottleneck(m);
    }
    return m;
}

/* The tensors of layer l: name suffixes and shapes; returns how many (<= 4). */
static int layer_tensors(const model *m, const layer *l, char names[4][CK_NAMELEN], int *ndim,
                         int64_t shapes[4][4]) {
    int cin = m->v[l->in].c;
    if (l->type == L_CONV || l->type == L_LINEAR) {
        snprintf(names[0], CK_NAMELEN, "%s.w", l->name);
        snprintf(names[1], CK_NAMELEN, "%s.b", l->name);
        if (l->type == L_CONV) {
            ndim[0] = 4;
            int64_t s[4] = {l->cout, cin, l->k, l->k};
            memcpy(shapes[0], s, sizeof s);
        } else {
            ndim[0] = 2;
            shapes[0][0] = l->cout, shapes[0][1] = cin;
        }
        ndim[1] = 1, shapes[1][0] = l->cout;
        return l->bias ? 2 : 1;
    }
    if (l->type == L_BN) {
        static const char *sfx[4] = {"gamma", "beta", "mean", "var"};
        for (int i = 0; i < 4; i++) {
            snprintf(names[i], CK_NAMELEN, "%s.%s", l->name, sfx[i]);
            ndim[i] = 1, shapes[i][0] = cin;
        }
        return 4;
    }
    return 0;
}

static void plan_free(model *m) {
    free(m->L);
    free(m->v);
    free(m);
}

/* ---- init -------------------------------------------------------------------------------- */
static uint64_t fnv1a(const char *s) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

static void init_tensor(const model *m, ck_tensor *t, int which, const layer *l, const char *gamma_init,
                        uint64_t seed) {
    float *p = t->data;
    rng r;
    rng_seed(&r, seed, fnv1a(t->name));
    if ((l->type == L_CONV || l->type == L_LINEAR) && which == 0) {
        size_t fan_in = t->numel / (size_t)t->shape[0];
        double std = sqrt(2.0 / (double)fan_in);
        for (size_t i = 0; i < t->numel; i++) {
            double z = rng_normal(&r);
            if (m->truncated_init) {
                while (fabs(z) > 2.0) z = rng_normal(&r);
                z /= 0.87962566103423978;
            }
            p[i] = (float)(z * std);
        }
    } else if (l->type == L_BN && which == 0) {
        for (size_t i = 0; i < t->numel; i++) {
            if (strcmp(gamma_init, "ones") == 0) p[i] = 1.0f;
            else if (strcmp(gamma_init, "uniform") == 0) p[i] = (float)rng_uniform(&r);
            else p[i] = (float)(2.0 * rng_uniform(&r) - 1.0);
        }
    } else if (l->type == L_BN && which == 3) {
        for (size_t i = 0; i < t->numel; i++) p[i] = 1.0f;
    }
    /* biases, beta, running mean: 0 (ck_add zeroes) */
}

checkpoint *model_init(const char *arch, int depth, int width, int classes, const char *gamma_init, uint64_t seed,
                       char err[256]) {
    model *m = plan(arch, depth, width, classes, err);
    if (!m) return NULL;
    if (!gamma_init) gamma_init = strcmp(arch, "resnet") == 0 ? "uniform" : "ones";
    if (strcmp(gamma_init, "ones") && strcmp(gamma_init, "uniform") && strcmp(gamma_init, "uniform-sym")) {
        snprintf(err, 256, "unknown gamma init '%s' (expected ones, uniform or uniform-sym)", gamma_init);
        plan_free(m);
        return NULL;
    }
    checkpoint *c = ck_new();
    c->seed = seed;
    kv_set_str(&c->arch, "name", arch);
    kv_set_int(&c->arch, "depth", depth);
    kv_set_int(&c->arch, "width", width);
    kv_set_int(&c->arch, "classes", classes);
    kv_set_int(&c->arch, "input_channels", 3);
    kv_set_int(&c->arch, "input_size", 32);
    bool keras = m->truncated_init;   /* exact decimal values, not float roundings */
    kv_set_double(&c->arch, "bn_momentum", keras ? 0.01 : 0.1);
    kv_set_double(&c->arch, "bn_eps", keras ? 1e-3 : 1e-5);
    kv_set_str(&c->arch, "bn_momentum_convention", "pytorch");
    kv_set_str(&c->arch, "gamma_init", gamma_init);
    kv_set_str(&c->arch, "weight_init", m->truncated_init ? "he-normal-truncated" : "he-normal");
    kv_set_int(&c->arch, "conv_bias", m->conv_bias);
    for (int i = 0; i < m->nl; i++) {
        char names[4][CK_NAMELEN];
        int ndim[4];
        int64_t shapes[4][4];
        int nt = layer_tensors(m, &m->L[i], names, ndim, shapes);
        for (int j = 0; j < nt; j++) {
            bool param = !(m->L[i].type == L_BN && j >= 2);
            ck_tensor *t = ck_add(c, names[j], DT_F32, ndim[j], shapes[j], param, param ? "param" : "buffer");
            init_tensor(m, t, j, &m->L[i], gamma_init, seed);
        }
    }
    plan_free(m);
    return c;
}

/* ---- build ------------------------------------------------------------------------------- */
static int ck_index(const checkpoint *c, const char *name) {
    for (int i = 0; i < c->nt; i++)
        if (strcmp(c->t[i].name, name) == 0) return i;
    return -1;
}

static int bind_layer(model *m, layer *l, char err[256]) {
    char names[4][CK_NAMELEN];
    int ndim[4];
    int64_t shapes[4][4];
    int nt = layer_tensors(m, l, names, ndim, shapes);
    float **ptr[4];
    bool *tr[4];
    if (l->type == L_BN) {
        ptr[0] = &l->gamma, ptr[1] = &l->beta, ptr[2] = &l->mean, ptr[3] = &l->var;
        tr[0] = &l->tgamma, tr[1] = &l->tbeta, tr[2] = tr[3] = NULL;
    } else {
        ptr[0] = &l->w, ptr[1] = &l->b;
        tr[0] = &l->tw, tr[1] = &l->tb;
    }
    for (int j = 0; j < nt; j++) {
        int ix = ck_index(m->ck, names[j]);
        if (ix < 0) {
            snprintf(err, 256, "checkpoint lacks tensor %s of a %s-%d", names[j], m->arch, m->depth);
            return -1;
        }
        ck_tensor *t = &m->ck->t[ix];
        bool shape_ok = t->ndim == ndim[j];
        for (int d = 0; shape_ok && d < ndim[j]; d++) shape_ok = t->shape[d] == shapes[j][d];
        if (t->dtype != DT_F32 || !shape_ok) {
            char want[64] = "", got[64] = "";
            for (int d = 0; d < ndim[j]; d++)
                snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", d ? "," : "",
                         (long long)shapes[j][d]);
            for (int d = 0; d < t->ndim && d < 4; d++)
                snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? "," : "", (long long)t->shape[d]);
            snprintf(err, 256, "tensor %s: expected f32 [%s], got %s [%s%s]", names[j], want, dtype_name(t->dtype),
                     got, t->ndim > 4 ? ",..." : "");
            return -1;
        }
        bool param = strcmp(t->role, "param") == 0;
        if (param != !(l->type == L_BN && j >= 2)) {
            snprintf(err, 256, "tensor %s has role '%s', expected '%s'", names[j], t->role,
                     param ? "buffer" : "param");
            return -1;
        }
        l->ti[j] = ix;
        if (!(*ptr[j] = bind_tensor(m, t->data, t->numel, !param))) {
            snprintf(err, 256, "out of backend memory for tensor %s", names[j]);
            return -1;
        }
        if (tr[j]) *tr[j] = t->trainable;
    }
    return 0;
}

/* the gradient of the tensor the ops see at `ptr` */
static float *grad_for(model *m, const float *ptr) {
    for (int i = 0; i < m->np; i++)
        if (m->P[i].dptr == ptr) return m->P[i].grad;
    return NULL;
}

/* ---- the backend's fast path (ops.h act_blk) ----------------------------------------------
 * When the backend has blocked-layout entries (and BN_FAST is not 0), every activation
 * whose channel count is a multiple of its block and that has more than one pixel lives in
 * that layout (the input image, the pooled features and the logits stay NCHW; the stem
 * conv reads NCHW and writes blocked), and a BN whose output goes only to a ReLU applies
 * the ReLU itself (the ReLU layer then does nothing, forward or backward). Parameters,
 * gradients of parameters and model_activation stay plain. */
/* Layer i is of this type and its output is read by the ReLU right after it, and by nothing else. */
static bool relu_alone_after(const model *m, int i, int type) {
    const layer *b = &m->L[i], *r = &m->L[i + 1];
    if (b->type != type || r->type != L_RELU || r->in != b->out) return false;
    int readers = 0;
    for (int j = 0; j < m->nl; j++) readers += (m->L[j].in == b->out) + (m->L[j].in2 == b->out);
    return readers == 1;
}

static void fast_setup(model *m) {
    ops *o = m->o;
    m->fast = o->act_blk > 0 && o->conv_fwd_l && o->conv_bwd_data_l && o->conv_bwd_filter_l && o->bn_fwd_train_l &&
              o->bn_fwd_infer_l && o->bn_bwd_l && o->gap_fwd_l && o->gap_bwd_l && o->act_convert &&
              cli_env_flag("BN_FAST", true);
    if (!m->fast) return;
    for (int i = 1; i < m->nv; i++) {
        value *v = &m->v[i];
        v->blk = v->c % o->act_blk == 0 && v->h * v->w > 1;
    }
    for (int i = 0; i + 1 < m->nl; i++)
        if (relu_alone_after(m, i, L_BN)) m->L[i].fuse_relu = true, m->L[i + 1].fused = true;
    /* an add whose output only a ReLU reads applies it in the forward (add_relu); the
     * backward of that ReLU stays (it masks the gradient the add hands to both inputs) */
    for (int i = 0; o->add_relu && i + 1 < m->nl; i++)
        if (relu_alone_after(m, i, L_ADD)) m->L[i].fuse_relu = true, m->L[i + 1].fwd_by_add = true;
    /* an add+ReLU whose input is the output of a BN read by nothing else does that BN too, in
     * one op (ops.h bn_add_relu_*), at the add's place (its other input is ready then); the
     * BN's input must still be there: no layer between them overwrites its storage */
    for (int j = 0; o->bn_add_relu_fwd_train_l && o->bn_add_relu_fwd_infer_l && j < m->nl; j++) {
        layer *a = &m->L[j];
        if (a->type != L_ADD || !a->fuse_relu || a->in == a->in2) continue;
        for (int i = j - 1; i >= 0 && a->bn < 0; i--) {
            layer *b = &m->L[i];
            if (b->type != L_BN || b->fuse_relu || (b->out != a->in && b->out != a->in2)) continue;
            int readers = 0, x = m->v[b->in].storage;
            bool kept = m->v[a->in].blk == m->v[a->in2].blk;
            for (int k = 0; k < m->nl; k++) readers += (m->L[k].in == b->out) + (m->L[k].in2 == b->out);
            for (int k = i + 1; k < j; k++) kept &= m->v[m->L[k].out].storage != x;
            kept &= m->v[a->out].storage != x;     /* nor the fused op's own output */
            if (readers == 1 && kept) b->fuse_add = true, a->bn = i;
        }
    }
    /* the output of a plain ReLU read by two layers (a block's output: the next conv and the
     * shortcut) gets its gradient in two parts: the ReLU's backward adds them (relu_bwd_add) */
    for (int i = 0; o->relu_bwd_add && i < m->nl; i++)
        if (m->L[i].type == L_RELU && !m->L[i].fused) m->defer[m->L[i].out] = true;
}
static int lay(const model *m, int v) { return m->v[v].blk ? OPS_BLK_IN : 0; }
static int conv_flags(const model *m, const layer *l) {
    return (m->v[l->in].blk ? OPS_BLK_IN : 0) | (m->v[l->out].blk ? OPS_BLK_OUT : 0);
}
static int bn_flags(const model *m, const layer *l) { return lay(m, l->in) | (l->fuse_relu ? OPS_RELU : 0); }

/* ---- BN_PROFILE: time per layer, summed by layer kind and shape, printed by model_free ---- */
struct prof {
    double *t;                  /* per layer: forward, backward (data), filter gradient (s) */
    long fwd, bwd;              /* train-mode forward passes, backward passes */
    double img_fwd, img_bwd;    /* images through them */
};
static clockid_t prof_clock = CLOCK_MONOTONIC;   /* BN_PROFILE=cpu: the process's CPU time */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(prof_clock, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
/* the profile's clock, once the backend's queued work is done (ops.h sync) */
static double prof_now(const model *m) {
    if (m->o->sync) m->o->sync(m->o);
    return now_s();
}
static void layer_label(const model *m, const layer *l, char *buf, size_t len) {
    const value *x = &m->v[l->in], *y = &m->v[l->out];
    if (l->type == L_CONV)
        snprintf(buf, len, "conv %d->%d %dx%d k%d s%d", x->c, l->cout, x->h, x->w, l->k, l->stride);
    else if (l->type == L_LINEAR)
        snprintf(buf, len, "linear %d->%d", x->c, l->cout);
    else
        snprintf(buf, len, "%s%s%s %dx%dx%d", l->bn >= 0 ? "bn+" : "", kind_names[l->type], l->fuse_relu ? "+relu" : "",
                 y->c, x->h, x->w);
}
/* ---- the work of a step (model_cost_rows; BN_PROFILE's table) ---------------------------- */
/* floating-point operations of one image through conv / linear layer l in direction dir
 * (0 forward, 1 data gradient, 2 filter gradient), counted as a direct convolution / a plain
 * GEMM; 0 for other layers or a direction never computed (a frozen filter, nothing upstream
 * to train) */
static double layer_flops(const model *m, const layer *l, int dir) {
    if ((l->type != L_CONV && l->type != L_LINEAR) || (dir == 1 && !m->need[l->in]) ||
        (dir == 2 && !l->tw && !l->tb))
        return 0.0;
    const value *x = &m->v[l->in], *y = &m->v[l->out];
    return l->type == L_LINEAR ? 2.0 * x->c * l->cout : 2.0 * x->c * l->cout * l->k * l->k * y->h * y->w;
}

/* Bytes of n images through layer l in direction dir (as layer_flops; 1 is the whole backward
 * of the other layers): each fp32 tensor the op reads or writes, once. Convolutions and the
 * linear layer: x and y forward, dy and dx for the data gradient, x and dy for the filter's,
 * plus the weights (w or dw) once a step. BN forward x, y; backward x, dy, dx; ReLU x, y /
 * y, dy, dx; add a, b, y (its backward hands dy on: nothing); pooling x / dx. A fused
 * layer's work is counted in the layer doing it (BN+ReLU in the BN, add+ReLU in the add, a
 * BN done by its add: x, the residual, y there). Left out: BN parameters, the y a fused BN
 * backward reads for its mask, the second part a ReLU's gradient may come in. A real kernel
 * moves at least this much: bytes / time is a lower bound on its bandwidth. */
static double layer_bytes(const model *m, const layer *l, int dir, int n, double *weights) {
    const value *x = &m->v[l->in], *y = &m->v[l->out];
    double e = 4.0 * n * x->c * x->h * x->w, ey = 4.0 * n * y->c * y->h * y->w;
    *weights = 0.0;
    if (dir && !m->need[l->out]) return 0.0;          /* no backward through it */
    if (l->type == L_CONV || l->type == L_LINEAR) {
        if (layer_flops(m, l, dir) <= 0) return 0.0;
        *weights = 4.0 * x->c * l->cout * (l->type == L_CONV ? l->k * l->k : 1);
        return e + ey + *weights;
    }
    if (dir == 2) return 0.0;
    switch (l->type) {
    case L_BN: return dir ? 3 * e : l->fuse_add ? 0.0 : 2 * e;
    case L_RELU: return dir ? 3 * e : l->fwd_by_add || l->fused ? 0.0 : 2 * e;
    case L_ADD: return dir ? 0.0 : 3 * e;
    case L_GAP: return e;
    default: return 0.0;
    }
}

int model_layers(const model *m) { return m->nl; }

int model_cost_rows(const model *m, int n, model_cost *rows, int max, int *row_of) {
    int nrows = 0;
    model_cost cur;
    for (int i = 0; i < m->nl; i++)
        if (row_of) row_of[i] = -1;
    bool *done = calloc((size_t)m->nl + 1, sizeof *done);
    if (!done) abort();
    for (int i = 0; i < m->nl; i++) {
        if (done[i] || m->L[i].fused) continue;
        memset(&cur, 0, sizeof cur);
        layer_label(m, &m->L[i], cur.label, sizeof cur.label);
        cur.kind = kind_names[m->L[i].type];
        for (int j = i; j < m->nl; j++) {
            char b[96];
            layer_label(m, &m->L[j], b, sizeof b);
            if (done[j] || m->L[j].fused || strcmp(cur.label, b)) continue;
            done[j] = true, cur.count++;
            if (row_of) row_of[j] = nrows;
            for (int k = 0; k < 3; k++) {
                cur.flops[k] += n * layer_flops(m, &m->L[j], k);
                double w;
                cur.bytes[k] += layer_bytes(m, &m->L[j], k, n, &w);
                cur.wbytes[k] += w;
            }
        }
        if (rows && nrows < max) rows[nrows] = cur;
        nrows++;
    }
    free(done);
    return nrows;
}

/* The table: ms per step by layer kind and direction; for convolutions also GFLOP/s per
 * direction and, with BN_PEAK_GFLOPS (the machine's fp32 peak), their share of it; for the
 * memory-bound layers GB/s (layer_bytes) and, with BN_PEAK_GBS (the memory bandwidth), their
 * share of that; with both, each row's time over the least its flops and bytes allow at
 * those peaks (the roofline of net-cost: 1.0x is at the limit). The work is counted at the
 * passes' mean batch. The flops are those of a direct convolution, so a Winograd layer can
 * show more than 100%. */
static void prof_print(const model *m) {
    const prof *p = m->pf;
    if (!p->fwd) return;
    double nf = (double)p->fwd, nb = p->bwd ? (double)p->bwd : 1.0, tot[3] = {0, 0, 0}, ctot[3] = {0, 0, 0},
           cfl[3] = {0, 0, 0};
    const char *pk = getenv("BN_PEAK_GFLOPS"), *pb = getenv("BN_PEAK_GBS");
    double peak = pk ? atof(pk) : 0.0, peak_bw = pb ? atof(pb) : 0.0, mtot = 0.0, mbytes = 0.0;
    int bf = (int)(p->img_fwd / nf + 0.5), bb = p->bwd ? (int)(p->img_bwd / nb + 0.5) : bf;
    int nrows = model_cost_rows(m, 1, NULL, 0, NULL);
    model_cost *rf = calloc((size_t)nrows + 1, sizeof *rf), *rb = calloc((size_t)nrows + 1, sizeof *rb);
    int *row_of = calloc((size_t)m->nl + 1, sizeof *row_of);
    double *t = calloc(3 * (size_t)nrows + 1, sizeof *t);
    if (!rf || !rb || !row_of || !t) abort();
    model_cost_rows(m, bf, rf, nrows, row_of);   /* per step: forward at its batch, backward at its */
    model_cost_rows(m, bb, rb, nrows, NULL);
    for (int j = 0; j < m->nl; j++)
        if (row_of[j] >= 0)
            for (int k = 0; k < 3; k++) t[3 * row_of[j] + k] += p->t[3 * j + k];
    fprintf(stderr, "model profile: ms %s per step, mean of %ld forward / %ld backward passes (%s backend%s)\n"
                    "%-28s %5s %9s %9s %9s   %s%s\n",
            prof_clock == CLOCK_MONOTONIC ? "wall" : "CPU", p->fwd, p->bwd, m->o->name,
            m->fast ? ", blocked layout" : "", "layer kind", "count", "fwd", "bwd", "bwd_filt",
            peak > 0 ? "GFLOP/s fwd/bwd/filt (% of peak)" : "GFLOP/s fwd/bwd/filt",
            peak > 0 && peak_bw > 0 ? "   x least" : "");
    for (int r = 0; r < nrows; r++) {
        const char *kind = rf[r].kind;
        double tr[3] = {t[3 * r] / nf, t[3 * r + 1] / nb, t[3 * r + 2] / nb};   /* s per step */
        double fl[3] = {rf[r].flops[0], rb[r].flops[1], rb[r].flops[2]};         /* per step */
        double by[3] = {rf[r].bytes[0], rb[r].bytes[1], rb[r].bytes[2]};
        fprintf(stderr, "%-28s %5d %9.3f %9.3f %9.3f", rf[r].label, rf[r].count, 1e3 * tr[0], 1e3 * tr[1],
                1e3 * tr[2]);
        bool conv = !strcmp(kind, "conv"), linear = !strcmp(kind, "linear");
        if (conv && fl[0] > 0) {
            for (int k = 0; k < 3; k++) {
                double rate = tr[k] > 0 ? fl[k] / tr[k] / 1e9 : 0.0;
                if (fl[k] > 0 && tr[k] > 0) ctot[k] += tr[k], cfl[k] += fl[k];
                if (fl[k] <= 0 || tr[k] <= 0) fprintf(stderr, peak > 0 ? "        -" : "       -");
                else if (peak > 0) fprintf(stderr, " %4.0f %3.0f%%", rate, 100.0 * rate / peak);
                else fprintf(stderr, " %7.0f", rate);
            }
        } else if (!conv && !linear && (by[0] > 0 || by[1] > 0)) {   /* memory-bound: GB/s forward / backward */
            fprintf(stderr, "  GB/s");
            for (int k = 0; k < 2; k++) {
                double rate = tr[k] > 0 && by[k] > 0 ? by[k] / tr[k] / 1e9 : 0.0;
                if (rate > 0) mtot += tr[k], mbytes += by[k];
                if (rate <= 0) fprintf(stderr, peak_bw > 0 ? "        -" : "      -");
                else if (peak_bw > 0) fprintf(stderr, " %4.0f %3.0f%%", rate, 100.0 * rate / peak_bw);
                else fprintf(stderr, " %6.0f", rate);
            }
            fprintf(stderr, "         ");   /* under the third rate column */
        } else {
            fprintf(stderr, "%*s", peak > 0 ? 27 : 24, "");
        }
        if (peak > 0 && peak_bw > 0) {
            double least = 0.0, spent = tr[0] + tr[1] + tr[2];
            for (int k = 0; k < 3; k++) {
                double a = fl[k] / (peak * 1e9), b = by[k] / (peak_bw * 1e9);
                least += a > b ? a : b;
            }
            if (least > 0 && spent > 0) fprintf(stderr, " %8.1fx", spent / least);
        }
        fputc('\n', stderr);
        tot[0] += tr[0], tot[1] += tr[1], tot[2] += tr[2];
    }
    fprintf(stderr, "%-28s %5s %9.3f %9.3f %9.3f  (total %.1f ms)\n", "all layers", "", 1e3 * tot[0], 1e3 * tot[1],
            1e3 * tot[2], 1e3 * (tot[0] + tot[1] + tot[2]));
    double ct = ctot[0] + ctot[1] + ctot[2], cf = cfl[0] + cfl[1] + cfl[2];
    if (ct > 0) {
        fprintf(stderr, "%-28s %5s %9.3f %9.3f %9.3f  (total %.1f ms, %.1f GFLOP per step, %.0f GFLOP/s", "convolutions",
                "", 1e3 * ctot[0], 1e3 * ctot[1], 1e3 * ctot[2], 1e3 * ct, cf / 1e9, cf / ct / 1e9);
        if (peak > 0) fprintf(stderr, ", %.0f%% of %.0f", 100.0 * cf / ct / 1e9 / peak, peak);
        fprintf(stderr, ")\n");
    }
    if (mtot > 0) {
        fprintf(stderr, "%-28s %5s %9s %9s %9s  (total %.1f ms, %.3f GB per step, %.0f GB/s", "memory-bound layers", "",
                "", "", "", 1e3 * mtot, mbytes / 1e9, mbytes / mtot / 1e9);
        if (peak_bw > 0) fprintf(stderr, ", %.0f%% of %.0f", 100.0 * mbytes / mtot / 1e9 / peak_bw, peak_bw);
        fprintf(stderr, ")\n");
    }
    free(rf), free(rb), free(row_of), free(t);
}

model *model_build(checkpoint *ck, ops *o, int max_batch, char err[256]) {
    const char *arch = kv_str(&ck->arch, "name", NULL);
    int64_t depth = kv_int(&ck->arch, "depth", -1), width = kv_int(&ck->arch, "width", 16),
            classes = kv_int(&ck->arch, "classes", 10);
    if (!arch) {
        snprintf(err, 256, "checkpoint has no architecture name (arch.name)");
        return NULL;
    }
    if (depth < 0 || depth > 100000 || width > 100000 || classes > 100000 || width < 0 || classes < 0) {
        snprintf(err, 256, "checkpoint architecture: depth, width or classes missing or out of range");
        return NULL;
    }
    if (max_batch < 1) {
        snprintf(err, 256, "batch size must be at least 1, not %d", max_batch);
        return NULL;
    }
    model *m = plan(arch, (int)depth, (int)width, (int)classes, err);
    if (!m) return NULL;
    m->ck = ck, m->o = o, m->max_batch = max_batch;
    int mem = !!o->mem_alloc + !!o->mem_free + !!o->mem_upload + !!o->mem_download + !!o->mem_copy;
    if (mem != 0 && mem != 5) {
        snprintf(err, 256, "backend %s has %d of the 5 memory entries of ops.h: all or none", o->name, mem);
        model_free(m);
        return NULL;
    }
    m->dev = mem == 5;
    /* the checkpoint's BN conventions win over the architecture's defaults */
    double mom = kv_double(&ck->arch, "bn_momentum", m->bn_momentum), eps = kv_double(&ck->arch, "bn_eps", m->bn_eps);
    if (!(mom >= 0 && mom <= 1) || !(eps > 0 && eps < 1)) {
        snprintf(err, 256, "checkpoint BN conventions out of range: bn_momentum %g, bn_eps %g", mom, eps);
        model_free(m);
        return NULL;
    }
    m->bn_momentum = (float)mom, m->bn_eps = (float)eps;

    for (int i = 0; i < m->nl; i++)
        if (bind_layer(m, &m->L[i], err)) {
            model_free(m);
            return NULL;
        }
    /* every trainable param of the checkpoint must belong to the model */
    int nparam = 0;
    for (int i = 0; i < ck->nt; i++)
        if (strcmp(ck->t[i].role, "param") == 0) nparam++;
    int bound = 0;
    for (int i = 0; i < m->nl; i++)
        for (int j = 0; j < 4; j++)
            if (m->L[i].ti[j] >= 0 && strcmp(ck->t[m->L[i].ti[j]].role, "param") == 0) bound++;
    if (bound != nparam) {
        snprintf(err, 256, "checkpoint has %d parameter tensors that a %s-%d does not use", nparam - bound, arch,
                 (int)depth);
        model_free(m);
        return NULL;
    }

    /* trainable tensors and their gradients, in checkpoint order */
    m->P = calloc((size_t)nparam + 1, sizeof *m->P);
    if (!m->P) abort();
    for (int i = 0; i < ck->nt; i++) {
        ck_tensor *t = &ck->t[i];
        if (strcmp(t->role, "param") || !t->trainable) continue;
        mparam *p = &m->P[m->np++];
        snprintf(p->name, sizeof p->name, "%s", t->name);
        p->data = t->data, p->numel = t->numel;
        p->dptr = bind_tensor(m, t->data, t->numel, false);
        if (!p->dptr || !(p->grad = tensor_alloc(m, t->numel))) goto oom;
        if (!(p->hgrad = m->dev ? buf_alloc(t->numel) : p->grad)) goto oom;
    }
    size_t maxparam = 0;
    for (int i = 0; i < m->nl; i++) {
        layer *l = &m->L[i];
        if (l->w) l->gw = l->tw ? grad_for(m, l->w) : NULL;
        if (l->b) l->gb = l->tb ? grad_for(m, l->b) : NULL;
        if (l->gamma) l->ggamma = l->tgamma ? grad_for(m, l->gamma) : NULL;
        if (l->gamma) l->gbeta = l->tbeta ? grad_for(m, l->beta) : NULL;
        for (int j = 0; j < 4; j++)
            if (l->ti[j] >= 0 && ck->t[l->ti[j]].numel > maxparam) maxparam = ck->t[l->ti[j]].numel;
        if (l->type == L_BN) {
            int c = m->v[l->in].c;
            if (!(l->save_mean = tensor_alloc(m, (size_t)c)) || !(l->save_invstd = tensor_alloc(m, (size_t)c)))
                goto oom;
        }
    }
    m->scratch_n = 2 * maxparam;   /* two halves: weight-like and bias-like gradients */
    if (!(m->scratch = tensor_alloc(m, m->scratch_n))) goto oom;

    /* which values need a gradient */
    m->need = calloc((size_t)m->nv, sizeof *m->need);
    m->gof = malloc((size_t)m->nv * sizeof *m->gof);
    m->pend = malloc((size_t)m->nv * sizeof *m->pend);
    m->defer = calloc((size_t)m->nv, sizeof *m->defer);
    if (!m->need || !m->gof || !m->pend || !m->defer) abort();
    for (int i = 0; i < m->nl; i++) {
        layer *l = &m->L[i];
        m->need[l->out] = m->need[l->in] || (l->in2 >= 0 && m->need[l->in2]) || l->tw || l->tb || l->tgamma ||
                          l->tbeta;
    }

    /* activation storage */
    m->store = calloc((size_t)m->nstore, sizeof *m->store);
    if (!m->store) abort();
    for (int i = 0; i < m->nv; i++) {
        size_t e = (size_t)max_batch * (size_t)m->v[i].c * (size_t)m->v[i].h * (size_t)m->v[i].w;
        if (e > m->max_elems) m->max_elems = e;
        if (i == 0 || m->store[m->v[i].storage]) continue;
        if (!(m->store[m->v[i].storage] = tensor_alloc(m, e))) goto oom;
        m->act_elems += e;
    }
    if (m->dev) {   /* the input batch, its labels, the logits' host side */
        size_t img = (size_t)max_batch * (size_t)m->v[0].c * (size_t)m->v[0].h * (size_t)m->v[0].w;
        if (!(m->store[0] = tensor_alloc(m, img))) goto oom;
        if (!(m->dlabels = dev_alloc(m, (size_t)max_batch))) goto oom;
        if (!(m->hlogits = buf_alloc((size_t)max_batch * (size_t)m->classes))) goto oom;
        if (!(m->hdlogits = buf_alloc((size_t)max_batch * (size_t)m->classes))) goto oom;
    }
    fast_setup(m);
    if (getenv("BN_PROFILE") && *getenv("BN_PROFILE") && strcmp(getenv("BN_PROFILE"), "0")) {
        if (!(m->pf = calloc(1, sizeof *m->pf)) || !(m->pf->t = calloc(3 * (size_t)m->nl, sizeof *m->pf->t)))
            goto oom;
        if (strcmp(getenv("BN_PROFILE"), "cpu") == 0) prof_clock = CLOCK_PROCESS_CPUTIME_ID;
    }
    return m;
oom:
    snprintf(err, 256, "out of memory building a %s-%d for batches of %d", arch, (int)depth, max_batch);
    model_free(m);
    return NULL;
}

void model_free(model *m) {
    if (!m) return;
    model_graph_drop(m);
    if (m->pf) {    /* first: the table reads need[] */
        prof_print(m);
        free(m->pf->t);
        free(m->pf);
    }
    for (int i = 0; i < m->nl; i++) {
        tensor_free(m, m->L[i].save_mean);
        tensor_free(m, m->L[i].save_invstd);
    }
    for (int i = 0; i < m->np; i++) {
        if (m->P[i].hgrad != m->P[i].grad) free(m->P[i].hgrad);
        tensor_free(m, m->P[i].grad);
        dev_free(m, m->P[i].dmask);
    }
    free(m->P);
    if (m->store)
        for (int i = m->dev ? 0 : 1; i < m->nstore; i++) tensor_free(m, m->store[i]);
    free(m->store);
    for (int i = 0; i < m->npool; i++) tensor_free(m, m->pool[i].p);
    free(m->pool);
    for (int i = 0; i < m->nb; i++) tensor_free(m, m->B[i].dev);
    free(m->B);
    if (m->dlabels) dev_free(m, m->dlabels);
    dtable_drop(m);
    free(m->hlogits);
    free(m->hdlogits);
    tensor_free(m, m->dplain);
    model_data_detach(m);
    free(m->need);
    free(m->gof);
    free(m->pend);
    free(m->defer);
    tensor_free(m, m->scratch);
    free(m->plain);
    plan_free(m);
}

/* ---- forward ----------------------------------------------------------------------------- */
static float *data_of(const model *m, int v) { return m->store[m->v[v].storage]; }
static size_t elems(const model *m, int v, int n) {
    return (size_t)n * (size_t)m->v[v].c * (size_t)m->v[v].h * (size_t)m->v[v].w;
}
static void conv_of(const model *m, const layer *l, int n, conv_desc *d) {
    const value *x = &m->v[l->in];
    conv_desc_init(d, n, x->c, x->h, x->w, l->cout, l->k, l->stride, l->pad);
}

static void check_batch(const model *m, int n, const char *fn) {
    if (n >= 1 && n <= m->max_batch) return;
    fprintf(stderr, "%s: batch of %d images, model built for 1..%d\n", fn, n, m->max_batch);
    abort();
}
static void forward_run(model *m, int n, bool train);

void model_forward(model *m, const float *x, int n, bool train) {
    check_batch(m, n, "model_forward");
    if (m->dev) to_backend(m, m->store[0], x, elems(m, 0, n) * sizeof *x);
    else m->store[0] = (float *)x;   /* read only */
    m->labels_ready = false;
    forward_run(m, n, train);
}

static int data_fits(const model *m, const dataset *d, const char *what, char err[256]) {
    const value *in = &m->v[0];
    if (d->h.c != in->c || d->h.h != in->h || d->h.w != in->w || d->n == 0 || d->n > UINT32_MAX) {
        snprintf(err, 256, "%s: %zu images of %dx%dx%d: the model takes 1 or more of %dx%dx%d", what, d->n, d->h.c,
                 d->h.h, d->h.w, in->c, in->h, in->w);
        return -1;
    }
    for (size_t i = 0; i < d->n; i++)
        if (d->labels[i] >= m->classes) {
            snprintf(err, 256, "%s: image %zu has label %d, the model has %d classes", what, i, d->labels[i],
                     m->classes);
            return -1;
        }
    return 0;
}

int model_data_attach(model *m, const dataset *d, const dataset *extra, char err[256]) {
    ops *o = m->o;
    if (!m->dev || !o->batch_fill || !o->xent_rows) {
        snprintf(err, 256, "backend %s does not build batches in its own memory", o->name);
        return -1;
    }
    if (data_fits(m, d, "data", err) || (extra && data_fits(m, extra, "second data", err))) return -1;
    size_t n = d->n + (extra ? extra->n : 0);
    if (n > UINT32_MAX) {
        snprintf(err, 256, "%zu images in all: more than image numbers can name", n);
        return -1;
    }
    model_data_detach(m);
    size_t img = ds_image_bytes(&d->h), mb = (size_t)m->max_batch;
    m->stage_par = sizeof(ops_step) + (mb * sizeof(uint32_t) + 15) / 16 * 16;
    size_t stage = m->stage_par + mb * sizeof(aug_param), rows = mb * (sizeof(double) + sizeof(int32_t));
    if (!(m->dpixels = dev_alloc(m, n * img)) || !(m->dlabels_all = dev_alloc(m, n)) ||
        !(m->dstage = dev_alloc(m, stage)) || !(m->drows = dev_alloc(m, rows)) || !(m->hstage = calloc(1, stage)) ||
        !(m->hrows = malloc(rows))) {
        model_data_detach(m);
        snprintf(err, 256, "out of %s memory for %zu images (%.0f MB)", o->name, n, 1e-6 * (double)(n * img));
        return -1;
    }
    o->mem_upload(o, m->dpixels, d->pixels, d->n * img);
    o->mem_upload(o, m->dlabels_all, d->labels, d->n);
    if (extra) {
        o->mem_upload(o, m->dpixels + d->n * img, extra->pixels, extra->n * img);
        o->mem_upload(o, m->dlabels_all + d->n, extra->labels, extra->n);
    }
    m->dc = d->h.c, m->dh = d->h.h, m->dw = d->h.w, m->dn = n;
    m->dsets[0] = d, m->dsets[1] = extra, m->dset_n0 = d->n;
    return 0;
}

int64_t model_data_base(const model *m, const dataset *d) {
    if (!m->dstage || !d) return -1;
    if (d == m->dsets[0]) return 0;
    if (d == m->dsets[1]) return (int64_t)m->dset_n0;
    return -1;
}

void model_data_detach(model *m) {
    model_graph_drop(m);
    void *p[4] = {m->dpixels, m->dlabels_all, m->dstage, m->drows};
    for (int i = 0; i < 4; i++) dev_free(m, p[i]);
    free(m->hstage), free(m->hrows);
    m->dpixels = m->dlabels_all = NULL, m->dstage = m->hstage = NULL, m->drows = m->hrows = NULL;
    m->dn = 0, m->labels_ready = false;
    m->dsets[0] = m->dsets[1] = NULL, m->dset_n0 = 0;
}

ops_step *model_step_vals(const model *m) { return (ops_step *)m->dstage; }

void model_step_stage(model *m, const uint32_t *idx, const aug_param *par, int n, float lr) {
    check_batch(m, n, "model_step_stage");
    if (!m->dstage) {
        fprintf(stderr, "model_step_stage: no data attached\n");
        abort();
    }
    for (int i = 0; i < n; i++)
        if (idx[i] >= m->dn) {
            fprintf(stderr, "model_step_stage: position %d names image %u of %zu\n", i, idx[i], m->dn);
            abort();
        }
    ops_step v = {lr, 0, {0, 0}};
    memcpy(m->hstage, &v, sizeof v);
    memcpy(m->hstage + sizeof v, idx, (size_t)n * sizeof *idx);
    size_t bytes = sizeof v + (size_t)n * sizeof *idx;
    m->stage_has_par = par != NULL;
    if (par) {
        memcpy(m->hstage + m->stage_par, par, (size_t)n * sizeof *par);
        bytes = m->stage_par + (size_t)n * sizeof *par;
    }
    m->o->mem_upload(m->o, m->dstage, m->hstage, bytes);   /* one upload a step */
}

/* what model_forward_staged hands batch_fill for k and nm (unused entries 0) */
static struct recipe recipe_of(const model *m, aug_kind k, const norm_cfg *nm) {
    struct recipe r;
    memset(&r, 0, sizeof r);
    r.staged = true, r.aug = k;
    r.norm = norm_arrays(nm, m->dc, r.mean, r.inv);
    return r;
}
static bool same_recipe(const struct recipe *a, const struct recipe *b) {
    return a->staged == b->staged && a->aug == b->aug && a->norm == b->norm &&
           memcmp(a->mean, b->mean, sizeof a->mean) == 0 && memcmp(a->inv, b->inv, sizeof a->inv) == 0;
}

void model_forward_staged(model *m, int n, aug_kind k, const norm_cfg *nm, bool train) {
    check_batch(m, n, "model_forward_staged");
    if (!m->dstage || (k != AUG_NONE && !m->stage_has_par)) {
        fprintf(stderr, "model_forward_staged: no stage%s\n", m->dstage ? " with augmentations" : "");
        abort();
    }
    struct recipe r = recipe_of(m, k, nm);
    if (m->recording) m->rec_recipe = r;
    const uint32_t *idx = (const uint32_t *)(m->dstage + sizeof(ops_step));
    const aug_param *par = (const aug_param *)(m->dstage + m->stage_par);
    m->o->batch_fill(m->o, m->store[0], m->dpixels, m->dc, m->dh, m->dw, idx, k == AUG_NONE ? NULL : par, n,
                     k == AUG_SEED, r.norm ? r.mean : NULL, r.norm ? r.inv : NULL, m->dlabels_all, m->dlabels);
    m->labels_ready = true;
    forward_run(m, n, train);
}

static void forward_run(model *m, int n, bool train) {
    ops *o = m->o;
    m->n = n;
    m->last_train = train;
    if (n == m->max_batch && !m->recording) m->full_ran = true;
    bool fast = m->fast;
    if (m->pf && train) m->pf->fwd++, m->pf->img_fwd += n;
    for (int i = 0; i < m->nl; i++) {
        layer *l = &m->L[i];
        const float *in = data_of(m, l->in);
        float *out = data_of(m, l->out);
        const value *vi = &m->v[l->in];
        double t0 = m->pf && train ? prof_now(m) : 0.0;
        switch (l->type) {
        case L_CONV: {
            conv_desc d;
            conv_of(m, l, n, &d);
            if (fast) o->conv_fwd_l(o, &d, conv_flags(m, l), in, l->w, l->b, out);
            else o->conv_fwd(o, &d, in, l->w, l->b, out);
            break;
        }
        case L_BN: {
            bn_desc d = {n, vi->c, vi->h * vi->w, m->bn_eps, m->bn_momentum};
            if (l->fuse_add) break;     /* the add that reads it does it (below) */
            if (fast && train)
                o->bn_fwd_train_l(o, &d, bn_flags(m, l), in, l->gamma, l->beta, out, l->save_mean, l->save_invstd,
                                  l->mean, l->var);
            else if (fast)
                o->bn_fwd_infer_l(o, &d, bn_flags(m, l), in, l->gamma, l->beta, l->mean, l->var, out);
            else if (train)
                o->bn_fwd_train(o, &d, in, l->gamma, l->beta, out, l->save_mean, l->save_invstd, l->mean, l->var);
            else
                o->bn_fwd_infer(o, &d, in, l->gamma, l->beta, l->mean, l->var, out);
            break;
        }
        case L_RELU:
            if (!l->fused && !l->fwd_by_add) o->relu_fwd(o, elems(m, l->in, n), in, out);
            break;
        case L_ADD:
            if (l->bn >= 0) {   /* BN(x) + r and the ReLU, into the add's output */
                const layer *b = &m->L[l->bn];
                const value *bx = &m->v[b->in];
                bn_desc d = {n, bx->c, bx->h * bx->w, m->bn_eps, m->bn_momentum};
                const float *x = data_of(m, b->in), *r = data_of(m, b->out == l->in ? l->in2 : l->in);
                if (train)
                    o->bn_add_relu_fwd_train_l(o, &d, bn_flags(m, b), x, b->gamma, b->beta, r, out, b->save_mean,
                                               b->save_invstd, b->mean, b->var);
                else
                    o->bn_add_relu_fwd_infer_l(o, &d, bn_flags(m, b), x, b->gamma, b->beta, b->mean, b->var, r, out);
                break;
            }
            if (l->fuse_relu) o->add_relu(o, elems(m, l->in, n), in, data_of(m, l->in2), out);
            else o->add(o, elems(m, l->in, n), in, data_of(m, l->in2), out);
            break;
        case L_GAP:
            if (fast) o->gap_fwd_l(o, lay(m, l->in), n, vi->c, vi->h * vi->w, in, out);
            else o->gap_fwd(o, n, vi->c, vi->h * vi->w, in, out);
            break;
        case L_LINEAR: o->linear_fwd(o, n, vi->c, l->cout, in, l->w, l->b, out); break;
        }
        if (m->pf && train) m->pf->t[3 * i] += prof_now(m) - t0;
    }
}

/* the logits as the ops see them (backend memory) */
static const float *logits_of(const model *m) { return data_of(m, m->L[m->nl - 1].out); }
const float *model_logits(const model *m) {
    if (!m->dev) return logits_of(m);
    to_host(m, m->hlogits, logits_of(m), (size_t)m->n * (size_t)m->classes * sizeof *m->hlogits);
    return m->hlogits;
}

/* ---- backward ---------------------------------------------------------------------------- */
static int pool_get(model *m) {
    for (int i = 0; i < m->npool; i++)
        if (m->pool[i].refs == 0) {
            m->pool[i].refs = 1;
            return i;
        }
    if (m->npool == m->cappool) {
        m->cappool = m->cappool ? 2 * m->cappool : 8;
        m->pool = realloc(m->pool, (size_t)m->cappool * sizeof *m->pool);
        if (!m->pool) abort();
    }
    if (m->recording) {     /* no allocation may be recorded: the recording fails (its calls
                             * never run), and the step's rerun op by op allocates */
        m->rec_failed = true;
        m->pool[0].refs++;
        return 0;
    }
    float *p = tensor_alloc(m, m->max_elems);
    if (!p) {
        fprintf(stderr, "model: out of memory for a gradient buffer\n");
        abort();
    }
    m->pool[m->npool] = (gbuf){p, 1};
    return m->npool++;
}
static void pool_put(model *m, int i) {
    if (i >= 0) m->pool[i].refs--;
}

/* The buffer to write value v's gradient into: its own when it has none yet, else a
 * temporary that grad_end adds into it. */
static float *grad_begin(model *m, int v, int *tmp) {
    if (m->gof[v] < 0) {
        m->gof[v] = pool_get(m);
        *tmp = -1;
        return m->pool[m->gof[v]].p;
    }
    *tmp = pool_get(m);
    return m->pool[*tmp].p;
}
static void grad_add(model *m, int v, int tmp);
static void grad_end(model *m, int v, int tmp) {
    if (tmp < 0) return;
    if (m->defer[v]) {      /* the ReLU that made v adds the last part (relu_bwd_add) */
        if (m->pend[v] >= 0) grad_add(m, v, m->pend[v]);   /* a third part: sum in arrival order */
        m->pend[v] = tmp;
        return;
    }
    grad_add(m, v, tmp);
}
/* v's gradient += the part in pool buffer tmp (then released) */
static void grad_add(model *m, int v, int tmp) {
    size_t e = elems(m, v, m->n);
    int g = m->gof[v];
    if (m->pool[g].refs == 1) {
        m->o->add(m->o, e, m->pool[g].p, m->pool[tmp].p, m->pool[g].p);
        pool_put(m, tmp);
    } else { /* shared with another value: the sum goes into the temporary */
        m->o->add(m->o, e, m->pool[g].p, m->pool[tmp].p, m->pool[tmp].p);
        pool_put(m, g);
        m->gof[v] = tmp;
    }
}

static void backward_layer(model *m, layer *l) {
    ops *o = m->o;
    int n = m->n;
    const value *vi = &m->v[l->in];
    int g = m->gof[l->out];
    const float *dy = m->pool[g].p;
    const float *x = data_of(m, l->in);
    bool need_dx = m->need[l->in];
    int tmp;
    float *dx;
    bool fast = m->fast;
    double *pt = m->pf ? &m->pf->t[3 * (l - m->L)] : NULL, t0 = pt ? prof_now(m) : 0.0;
    switch (l->type) {
    case L_CONV: {
        conv_desc d;
        conv_of(m, l, n, &d);
        int cf = conv_flags(m, l);
        if (l->tw || l->tb) {
            float *gw = l->gw ? l->gw : m->scratch, *gb = l->b ? (l->gb ? l->gb : m->scratch + m->scratch_n / 2) : NULL;
            if (fast) o->conv_bwd_filter_l(o, &d, cf, x, dy, gw, gb);
            else o->conv_bwd_filter(o, &d, x, dy, gw, gb);
            if (pt) {
                double t1 = prof_now(m);
                pt[2] += t1 - t0, t0 = t1;
            }
        }
        if (need_dx) {
            dx = grad_begin(m, l->in, &tmp);
            if (fast) o->conv_bwd_data_l(o, &d, cf, dy, l->w, dx);
            else o->conv_bwd_data(o, &d, dy, l->w, dx);
            grad_end(m, l->in, tmp);
        }
        break;
    }
    case L_BN: {
        bn_desc d = {n, vi->c, vi->h * vi->w, m->bn_eps, m->bn_momentum};
        /* frozen gamma / beta: the op writes them anyway, into scratch (apart from each other) */
        float *dg = l->ggamma ? l->ggamma : m->scratch, *db = l->gbeta ? l->gbeta : m->scratch + m->scratch_n / 2;
        if (fast && need_dx && m->gof[l->in] < 0 && m->pool[g].refs == 1) {
            /* dx over dy (ops.h allows it on the fast path): hand the buffer down */
            o->bn_bwd_l(o, &d, bn_flags(m, l), x, data_of(m, l->out), dy, l->gamma, l->beta, l->save_mean,
                        l->save_invstd, m->pool[g].p, dg, db);
            m->gof[l->in] = g;
            m->gof[l->out] = -1;
            if (pt) pt[1] += prof_now(m) - t0;
            return;
        }
        dx = need_dx ? grad_begin(m, l->in, &tmp) : NULL;
        if (fast)   /* with a fused ReLU, data_of(out) holds the ReLU's output: the mask */
            o->bn_bwd_l(o, &d, bn_flags(m, l), x, data_of(m, l->out), dy, l->gamma, l->beta, l->save_mean,
                        l->save_invstd, dx, dg, db);
        else
            o->bn_bwd(o, &d, x, dy, l->gamma, l->save_mean, l->save_invstd, dx, dg, db);
        if (need_dx) grad_end(m, l->in, tmp);
        break;
    }
    case L_RELU:
        if (l->fused) { /* the BN before applies the mask: hand dy down as it is */
            if (m->gof[l->in] < 0) {
                m->gof[l->in] = g;
                m->gof[l->out] = -1;
                return;
            }
            dx = grad_begin(m, l->in, &tmp);   /* not reached: the BN output has one reader */
            backend_copy(m, dx, dy, elems(m, l->out, n) * sizeof *dx);
            grad_end(m, l->in, tmp);
            break;
        }
        if (!need_dx) break;    /* (not seen: a ReLU's output needs a gradient only when its input does) */
        if (m->pend[l->out] >= 0) {     /* dy arrives in two parts: add them while masking */
            int q = m->pend[l->out];
            m->pend[l->out] = -1;
            size_t e = elems(m, l->out, n);
            if (m->gof[l->in] < 0) {    /* into the part that is ours alone, handed down */
                int own = m->pool[g].refs == 1 ? g : q;
                o->relu_bwd_add(o, e, data_of(m, l->out), dy, m->pool[q].p, m->pool[own].p);
                m->gof[l->in] = own;
                pool_put(m, own == g ? q : g);
                m->gof[l->out] = -1;
                if (pt) pt[1] += prof_now(m) - t0;
                return;
            }
            dx = grad_begin(m, l->in, &tmp);
            o->relu_bwd_add(o, e, data_of(m, l->out), dy, m->pool[q].p, dx);
            pool_put(m, q);
            grad_end(m, l->in, tmp);
            break;
        }
        if (m->gof[l->in] < 0 && m->pool[g].refs == 1) { /* in place: hand the buffer down */
            o->relu_bwd(o, elems(m, l->out, n), data_of(m, l->out), dy, m->pool[g].p);
            m->gof[l->in] = g;
            m->gof[l->out] = -1;
            if (pt) pt[1] += prof_now(m) - t0;
            return;
        }
        dx = grad_begin(m, l->in, &tmp);
        o->relu_bwd(o, elems(m, l->out, n), data_of(m, l->out), dy, dx);
        grad_end(m, l->in, tmp);
        break;
    case L_ADD: {
        int ins[2] = {l->in, l->in2};
        for (int k = 0; k < 2; k++) {
            int v = ins[k];
            if (!m->need[v]) continue;
            if (m->gof[v] < 0) { /* share dy */
                m->gof[v] = g;
                m->pool[g].refs++;
            } else {
                size_t e = elems(m, v, n);
                int h = m->gof[v];
                if (m->pool[h].refs == 1) {
                    o->add(o, e, m->pool[h].p, dy, m->pool[h].p);
                } else {
                    int t = pool_get(m);
                    o->add(o, e, m->pool[h].p, dy, m->pool[t].p);
                    pool_put(m, h);
                    m->gof[v] = t;
                }
            }
        }
        break;
    }
    case L_GAP:
        if (!need_dx) break;
        dx = grad_begin(m, l->in, &tmp);
        if (fast) o->gap_bwd_l(o, lay(m, l->in), n, vi->c, vi->h * vi->w, dy, dx);
        else o->gap_bwd(o, n, vi->c, vi->h * vi->w, dy, dx);
        grad_end(m, l->in, tmp);
        break;
    case L_LINEAR:
        if (l->tw || l->tb) o->linear_bwd_filter(o, n, vi->c, l->cout, x, dy, l->gw ? l->gw : m->scratch,
                                                 l->gb ? l->gb : m->scratch + m->scratch_n / 2);
        if (need_dx) {
            dx = grad_begin(m, l->in, &tmp);
            o->linear_bwd_data(o, n, vi->c, l->cout, dy, l->w, dx);
            grad_end(m, l->in, tmp);
        }
        break;
    }
    if (pt) pt[1] += prof_now(m) - t0;
    pool_put(m, g);
    m->gof[l->out] = -1;
}

/* The loss (and with backward the backward pass) of the last forward. labels NULL: the
 * staged batch's, the loss per row left in backend memory by xent_rows (model_loss_collect
 * takes it); else xent's mean in *loss. -1 for a call that cannot be served. */
static int loss_run(model *m, const uint8_t *labels, int n, bool backward, double *loss, int *ok) {
    if (n != m->n || n < 1) return -1;
    if (!labels && (!m->labels_ready || !m->drows)) return -1;
    for (int i = 0; labels && i < n; i++)
        if (labels[i] >= m->classes) return -1;
    if (backward && !m->last_train) return -1;   /* BN backward needs batch statistics */
    const float *logits = logits_of(m);
    int last = m->L[m->nl - 1].out;
    bool rows = !labels;
    if (rows) {     /* those model_forward_staged gathered, already in backend memory */
        labels = m->dlabels;
    } else if (m->dev) {   /* the ops read labels from backend memory */
        m->o->mem_upload(m->o, m->dlabels, labels, (size_t)n);
        labels = m->dlabels;
    }
    bool bwd = backward && m->need[last];   /* else no backward, or nothing trainable */
    int g = -1;
    if (bwd) {
        for (int i = 0; i < m->nv; i++) m->gof[i] = -1, m->pend[i] = -1;
        for (int i = 0; i < m->npool; i++) m->pool[i].refs = 0;
        g = pool_get(m);                  /* the logits' gradient */
    }
    float *dl = bwd ? m->pool[g].p : NULL;
    if (rows)
        m->o->xent_rows(m->o, n, m->classes, logits, labels, dl, m->drows, (int32_t *)(m->drows + m->max_batch),
                        model_step_vals(m));
    else
        m->o->xent(m->o, n, m->classes, logits, labels, dl, loss, ok);
    if (!bwd) return 0;
    if (m->batch_total > 0 && m->batch_total != n) {   /* each image weighs 1/batch_total */
        size_t k = (size_t)n * (size_t)m->classes;
        float s = (float)n / (float)m->batch_total, *h = m->dev ? m->hdlogits : dl;
        if (m->dev) to_host(m, h, dl, k * sizeof *h);
        for (size_t i = 0; i < k; i++) h[i] *= s;
        if (m->dev) to_backend(m, dl, h, k * sizeof *h);
    }
    m->gof[last] = g;
    if (m->pf) m->pf->bwd++, m->pf->img_bwd += n;
    for (int i = m->nl - 1; i >= 0; i--) {
        layer *l = &m->L[i];
        if (!m->need[l->out] || m->gof[l->out] < 0) continue;
        backward_layer(m, l);
    }
    if (m->dev)     /* model_grad downloads a gradient when the host asks for it */
        for (int i = 0; i < m->np; i++) m->P[i].stale = true;
    m->bwd_count++;
    if (!m->recording) m->pool_ready = true;
    return 0;
}

double model_loss_backward(model *m, const uint8_t *labels, int n, int *correct, bool backward) {
    double loss = NAN;
    int ok = 0;
    if (correct) *correct = 0;
    if (loss_run(m, labels, n, backward, &loss, &ok)) return NAN;
    if (!labels) loss = model_loss_collect(m, n, &ok);
    if (correct) *correct = ok;
    return loss;
}

int model_loss_queue(model *m, int n, bool backward) {
    double loss;
    int ok;
    return loss_run(m, NULL, n, backward, &loss, &ok);
}

double model_loss_collect(model *m, int n, int *correct) {
    if (correct) *correct = 0;
    if (!m->drows || n < 1 || n > m->max_batch) return NAN;
    size_t mb = (size_t)m->max_batch;
    to_host(m, m->hrows, m->drows, mb * sizeof(double) + (size_t)n * sizeof(int32_t));
    const int32_t *hit = (const int32_t *)(m->hrows + mb);
    double total = 0.0;
    int right = 0;
    for (int i = 0; i < n; i++) total += m->hrows[i], right += hit[i];
    if (correct) *correct = right;
    return total / n;
}

void model_upload_params(model *m) {
    if (!m->dev) return;
    if (m->params_moved) {   /* the host's would overwrite newer ones */
        fprintf(stderr, "model_upload_params: the parameters were updated in backend memory (model_sync first)\n");
        abort();
    }
    for (int i = 0; i < m->np; i++) to_backend(m, m->P[i].dptr, m->P[i].data, m->P[i].numel * sizeof(float));
}

void model_sync(model *m) {
    if (!m->dev) return;
    for (int i = 0; i < m->nb; i++)   /* BN running statistics, optimizer state */
        if (m->B[i].buffer) to_host(m, m->B[i].host, m->B[i].dev, m->B[i].numel * sizeof(float));
    for (int i = 0; m->params_moved && i < m->np; i++)   /* the trainable parameters, once changed there */
        to_host(m, m->P[i].data, m->P[i].dptr, m->P[i].numel * sizeof(float));
    m->params_moved = false;
}

/* ---- work in backend memory (model_extra.h) ------------------------------------------ */
ops *model_backend(const model *m) { return m->dev ? m->o : NULL; }

const ops_tensor *model_dparam_table(model *m, int *k, size_t *maxn) {
    *k = 0, *maxn = 0;
    if (!m->dev) return NULL;
    if (!m->dtable && m->recording) {   /* no allocation may be recorded: the recording fails */
        m->rec_failed = true;
        return NULL;
    }
    if (!m->dtable) {
        ops_tensor *h = malloc((size_t)(m->np ? m->np : 1) * sizeof *h);
        if (!h) return NULL;
        int n = 0;
        size_t big = 0;
        for (int i = 0; i < m->np; i++) {
            ck_tensor *t = model_param(m, i);
            if (!t || !t->trainable) continue;
            const mparam *p = &m->P[i];
            h[n++] = (ops_tensor){p->dptr, p->grad, p->dstate[0], p->dstate[1], p->dmask, p->numel};
            if (p->numel > big) big = p->numel;
        }
        if (n && (m->dtable = dev_alloc(m, (size_t)n * sizeof *h))) {
            m->o->mem_upload(m->o, m->dtable, h, (size_t)n * sizeof *h);
            m->dtable_k = n, m->dtable_maxn = big;
        }
        free(h);
        if (!m->dtable) return NULL;
    }
    *k = m->dtable_k, *maxn = m->dtable_maxn;
    m->params_moved = true;
    return m->dtable;
}

int model_bind_state(model *m, int i, float *s1, float *s2) {
    if (!m->dev || i < 0 || i >= m->np) return -1;
    dtable_drop(m);     /* its pointers change */
    mparam *p = &m->P[i];
    float *h[2] = {s1, s2};
    for (int k = 0; k < 2; k++)
        if (h[k] && !(p->dstate[k] = bind_tensor(m, h[k], p->numel, true))) return -1;
    const uint8_t *mask = model_mask(m, i);
    if (mask && !p->dmask) {
        if (!(p->dmask = dev_alloc(m, p->numel))) return -1;
        m->o->mem_upload(m->o, p->dmask, mask, p->numel);
    }
    return 0;
}

void model_unbind_state(model *m) {
    dtable_drop(m);
    for (int i = 0; m->dev && i < m->np; i++) {
        mparam *p = &m->P[i];
        for (int k = 0; k < 2; k++) {
            for (int j = 0; p->dstate[k] && j < m->nb; j++)
                if (m->B[j].dev == p->dstate[k]) {
                    tensor_free(m, m->B[j].dev);
                    m->B[j] = m->B[--m->nb];
                    break;
                }
            p->dstate[k] = NULL;
        }
        if (p->dmask) dev_free(m, p->dmask), p->dmask = NULL;
    }
}

void model_dparam_get(model *m, int i, model_dparam *out) {
    mparam *p = &m->P[i];
    *out = (model_dparam){p->dptr, p->grad, p->dstate[0], p->dstate[1], p->dmask, p->numel};
    m->params_moved = true;
}

bool model_is_fast(const model *m) { return m->fast; }

/* ---- recorded steps (ops.h graph_*) ---------------------------------------------------- */
void model_graph_drop_slot(model *m, int slot) {
    if (slot < 0 || slot >= MODEL_GRAPHS) return;
    struct mgraph *g = &m->graph[slot];
    if (g->g) m->o->graph_free(m->o, g->g);
    g->g = NULL;
}

int model_graph_begin(model *m, int slot) {
    ops *o = m->o;
    if (slot < 0 || slot >= MODEL_GRAPHS || !model_can_record(m) || m->recording) return -1;
    if (slot == MODEL_GRAPH_STEP && !m->pool_ready) return -1;   /* a backward pass sizes the pool first */
    model_graph_drop_slot(m, slot);
    if (o->graph_begin(o)) return -1;
    m->recording = true, m->rec_failed = false, m->rec_slot = slot;
    memset(&m->rec_recipe, 0, sizeof m->rec_recipe);
    m->rec_gen = m->gen, m->rec_bwd = m->bwd_count, m->rec_moved = m->params_moved;
    m->params_moved = false;
    return 0;
}

int model_graph_end(model *m, int n) {
    if (!m->recording) return -1;
    m->recording = false;
    void *g = m->o->graph_end(m->o);
    bool moves = m->params_moved;
    m->params_moved = m->rec_moved || moves;
    if (!g) return -1;
    if (m->gen != m->rec_gen || m->rec_failed) {   /* memory moved while recording: its pointers may be gone */
        m->o->graph_free(m->o, g);
        return -1;
    }
    m->graph[m->rec_slot] =
        (struct mgraph){g, n, m->gen, moves, m->bwd_count != m->rec_bwd, m->last_train, m->rec_recipe};
    return 0;
}

int model_graph_launch(model *m, int slot, int n, aug_kind k, const norm_cfg *nm) {
    if (slot < 0 || slot >= MODEL_GRAPHS) return -1;
    struct mgraph *g = &m->graph[slot];
    if (!g->g || g->n != n) return -1;
    struct recipe want = recipe_of(m, k, nm);
    bool other = g->recipe.staged && !same_recipe(&g->recipe, &want);   /* another augmentation or normalisation */
    if (other || m->gen != g->gen || m->o->graph_launch(m->o, g->g)) {
        model_graph_drop_slot(m, slot);
        return -1;
    }
    /* what the recorded calls did on the host side when they were made */
    m->n = n, m->last_train = g->train, m->labels_ready = true;
    if (g->bwd)
        for (int i = 0; i < m->np; i++) m->P[i].stale = true;
    if (g->moves) m->params_moved = true;
    return 0;
}

bool model_full_batch_ran(const model *m) { return m->full_ran; }
bool model_has_graph(const model *m, int slot) { return slot >= 0 && slot < MODEL_GRAPHS && m->graph[slot].g; }
bool model_can_record(const model *m) { return m->dev && m->o->graph_begin && m->dstage && !m->pf; }

void model_graph_drop(model *m) {
    for (int k = 0; k < MODEL_GRAPHS; k++) model_graph_drop_slot(m, k);
}

void model_set_batch_total(model *m, int total) { m->batch_total = total > 0 ? total : 0; }

/* ---- parameters ------------------------------------------------------------------------- */
int model_nparams(const model *m) { return m->np; }
ck_tensor *model_param(const model *m, int i) {
    if (i < 0 || i >= m->np) return NULL;
    for (int j = 0; j < m->ck->nt; j++)
        if (m->ck->t[j].data == m->P[i].data) return &m->ck->t[j];
    return NULL;
}
float *model_grad(const model *m, int i) {
    if (i < 0 || i >= m->np) return NULL;
    mparam *p = &m->P[i];
    if (p->stale) to_host(m, p->hgrad, p->grad, p->numel * sizeof(float)), p->stale = false;
    return p->hgrad;
}
int model_classes(const model *m) { return m->classes; }

/* ---- model_extra.h ---------------------------------------------------------------------- */
int model_nlayers(const model *m) { return m->nl; }
void model_layer(const model *m, int i, model_layer_info *out) {
    const layer *l = &m->L[i];
    const value *v = &m->v[l->out];
    out->name = l->name;
    out->kind = kind_names[l->type];
    out->c = v->c, out->h = v->h, out->w = v->w;
}
const float *model_activation(const model *m, const char *name, int *c, int *h, int *w) {
    for (int i = 0; i < m->nl; i++) {
        const layer *l = &m->L[i];
        if (strcmp(l->name, name)) continue;
        const value *v = &m->v[l->out];
        if (v->writer != l->out || l->fuse_add) return NULL;
        if (c) *c = v->c;
        if (h) *h = v->h;
        if (w) *w = v->w;
        const float *a = data_of(m, l->out);
        if (!v->blk && !m->dev) return a;
        /* an NCHW host copy (the model is not const underneath; the copies are caches) */
        model *mm = (model *)m;
        if (!mm->plain && !(mm->plain = buf_alloc(m->max_elems))) return NULL;
        if (v->blk) {
            if (m->dev && !mm->dplain && !(mm->dplain = tensor_alloc(mm, m->max_elems))) return NULL;
            float *to = m->dev ? mm->dplain : mm->plain;
            m->o->act_convert(m->o, 0, m->n, v->c, v->h * v->w, a, to);
            a = to;
        }
        if (m->dev) to_host(m, mm->plain, a, (size_t)m->n * v->c * v->h * v->w * sizeof(float));
        return mm->plain;
    }
    return NULL;
}
const uint8_t *model_mask(const model *m, int i) {
    if (i < 0 || i >= m->np) return NULL;
    char name[CK_NAMELEN + 8];
    snprintf(name, sizeof name, "%s.mask", m->P[i].name);
    const ck_tensor *t = ck_find(m->ck, name);
    if (!t || t->dtype != DT_U8 || t->numel != m->P[i].numel) return NULL;
    return t->data;
}
int model_max_batch(const model *m) { return m->max_batch; }
size_t model_bytes(const model *m) {
    size_t f = m->act_elems + m->scratch_n + (size_t)m->npool * m->max_elems + (m->plain ? m->max_elems : 0);
    for (int i = 0; i < m->np; i++) f += m->P[i].numel;
    for (int i = 0; i < m->nl; i++)
        if (m->L[i].type == L_BN) f += 2 * (size_t)m->v[m->L[i].in].c;
    return f * sizeof(float);
}
