/* train.c: the training loop, its settings in the checkpoint, and evaluation (train.h). */
#include "train.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "dist.h"
#include "model_extra.h"

/* ---- one step in backend memory ------------------------------------------------------------ */
/* The batch built there from the stage, the forward pass, the loss per image, the backward
 * pass and, with dev_optim, the optimizer (which skips the step, there, when a loss is not
 * finite, as the loop does on the host). */
static void device_ops(model *m, const train_cfg *cfg, int n, double lr, int64_t t, bool dev_optim) {
    model_forward_staged(m, n, cfg->augment, &cfg->norm, true);
    model_loss_queue(m, n, true);
    if (dev_optim) optim_step_backend(m, &cfg->opt, lr, t, model_step_vals(m));
}

/* Recorded steps (ops.h graph_*, CUDA graphs): the first full batch of a run goes op by op
 * (it chooses the convolution algorithms and sizes every buffer), the next is recorded and
 * every later full batch replays that recording; a smaller last batch goes op by op. A
 * recording that fails turns them off for the run; a stale one is recorded again. */
typedef struct step_graph {
    bool on, warm;
    int64_t replays, records;   /* steps run from a recording; recordings made */
} step_graph;

static void device_step(model *m, const train_cfg *cfg, step_graph *sg, int n, double lr, int64_t t, bool dev_optim,
                        bool verbose) {
    const int S = MODEL_GRAPH_STEP;
    if (sg->on && n == cfg->batch) {
        if (model_graph_launch(m, S, n, cfg->augment, &cfg->norm) == 0) {
            sg->replays++;
            return;
        }
        if (sg->warm) {
            bool began = model_graph_begin(m, S) == 0;
            if (began) device_ops(m, cfg, n, lr, t, dev_optim);
            if (began && model_graph_end(m, n) == 0 && model_graph_launch(m, S, n, cfg->augment, &cfg->norm) == 0) {
                sg->replays++, sg->records++;
                return;
            }
            sg->on = false;     /* nothing of the recording ran: the step goes op by op below */
            if (verbose) fprintf(stderr, "%s: steps go op by op from step %lld on\n", cli_prog, (long long)t);
        }
    }
    device_ops(m, cfg, n, lr, t, dev_optim);
    if (n == cfg->batch) sg->warm = true;
}

/* ---- settings ------------------------------------------------------------------------ */
void train_cfg_defaults(train_cfg *c) {
    memset(c, 0, sizeof *c);
    c->shuffle = true;
    c->every = 1;
    c->seed = 1;
    c->opt.beta1 = 0.9, c->opt.beta2 = 0.999, c->opt.eps = 1e-7;
    train_cfg_recipe(c, "paper");
}

int train_cfg_recipe(train_cfg *c, const char *name) {
    if (strcmp(name, "paper") == 0) {
        c->opt.kind = OPT_SGD, c->opt.momentum = 0.9, c->opt.nesterov = false, c->opt.wd = 1e-4;
        sched_defaults(&c->sched, SCHED_STEP);
        c->sched.lr = 0.1, c->sched.gamma = 0.1;
        c->sched.nmilestones = 2, c->sched.milestones[0] = 80, c->sched.milestones[1] = 120;
        c->batch = 128, c->epochs = 160;
        c->augment = AUG_CROP_FLIP;
        c->norm.meanstd = true, c->norm.c = 0;   /* computed from the training set */
        return 0;
    }
    if (strcmp(name, "seed") == 0) {
        c->opt.kind = OPT_SGD, c->opt.momentum = 0.0, c->opt.nesterov = false, c->opt.wd = 0.0;
        sched_defaults(&c->sched, SCHED_CONSTANT);
        c->sched.lr = 0.01;
        c->batch = 128, c->epochs = 75;
        c->augment = AUG_SEED;
        memset(&c->norm, 0, sizeof c->norm);
        return 0;
    }
    return -1;
}

void train_cfg_to_state(const train_cfg *c, kvlist *s) {
    kv_set_str(s, "optimizer", optim_name(c->opt.kind));
    kv_set_double(s, "lr", c->sched.lr);
    kv_set_double(s, "momentum", c->opt.momentum);
    kv_set_int(s, "nesterov", c->opt.nesterov);
    kv_set_double(s, "wd", c->opt.wd);
    kv_set_double(s, "adam_beta1", c->opt.beta1);
    kv_set_double(s, "adam_beta2", c->opt.beta2);
    kv_set_double(s, "adam_eps", c->opt.eps);
    kv_set_str(s, "schedule", sched_names[c->sched.kind]);
    char ms[CK_STRLEN] = "";
    for (int i = 0; i < c->sched.nmilestones; i++) {
        size_t l = strlen(ms);
        snprintf(ms + l, sizeof ms - l, "%s%" PRId64, i ? "," : "", c->sched.milestones[i]);
    }
    kv_set_str(s, "milestones", ms);
    kv_set_double(s, "gamma", c->sched.gamma);
    kv_set_double(s, "warmup", c->sched.warmup);
    kv_set_int(s, "decay_steps", c->sched.decay_steps);
    kv_set_double(s, "keras_alpha", c->sched.alpha);
    kv_set_double(s, "keras_beta", c->sched.beta);
    kv_set_double(s, "num_periods", c->sched.num_periods);
    kv_set_double(s, "t_mul", c->sched.t_mul);
    kv_set_double(s, "m_mul", c->sched.m_mul);
    kv_set_double(s, "ramp_start", c->sched.ramp_start);
    kv_set_double(s, "ramp_min", c->sched.ramp_min);
    kv_set_double(s, "ramp_decay", c->sched.ramp_decay);
    kv_set_int(s, "ramp_epochs", c->sched.ramp_epochs);
    kv_set_int(s, "epochs", c->epochs);
    kv_set_int(s, "batch", c->batch);
    kv_set_int(s, "train_seed", (int64_t)c->seed);
    kv_set_str(s, "augment", aug_name(c->augment));
    kv_set_int(s, "shuffle", c->shuffle);
    kv_set_int(s, "every", c->every);
    norm_to_state(&c->norm, s);
}

static int need(const kvlist *s, const char *key, char err[256]) {
    if (kv_find(s, key)) return 0;
    snprintf(err, 256, "checkpoint state has no \"%s\": it was not written by net-train, cannot resume", key);
    return -1;
}

int train_cfg_from_state(train_cfg *c, const kvlist *s, char err[256]) {
    static const char *const keys[] = {"optimizer", "lr", "momentum", "nesterov", "wd", "adam_beta1", "adam_beta2",
                                       "adam_eps", "schedule", "milestones", "gamma", "warmup", "decay_steps",
                                       "keras_alpha", "keras_beta", "num_periods", "t_mul", "m_mul", "ramp_start",
                                       "ramp_min", "ramp_decay", "ramp_epochs", "epochs", "batch", "train_seed",
                                       "augment", "shuffle", "every", "normalize", NULL};
    for (int i = 0; keys[i]; i++)
        if (need(s, keys[i], err)) return -1;
    int opt = optim_parse(kv_str(s, "optimizer", "")), sk = sched_parse(kv_str(s, "schedule", "")),
        ak = aug_parse(kv_str(s, "augment", ""));
    if (opt < 0 || sk < 0 || ak < 0) {
        snprintf(err, 256, "checkpoint state: unknown optimizer, schedule or augment");
        return -1;
    }
    c->opt.kind = (opt_kind)opt;
    c->opt.momentum = kv_double(s, "momentum", 0);
    c->opt.nesterov = kv_int(s, "nesterov", 0) != 0;
    c->opt.wd = kv_double(s, "wd", 0);
    c->opt.beta1 = kv_double(s, "adam_beta1", 0.9);
    c->opt.beta2 = kv_double(s, "adam_beta2", 0.999);
    c->opt.eps = kv_double(s, "adam_eps", 1e-7);
    sched_defaults(&c->sched, (sched_kind)sk);
    c->sched.lr = kv_double(s, "lr", 0.1);
    const char *ms = kv_str(s, "milestones", "");
    c->sched.nmilestones = 0;
    while (*ms) {
        char *end;
        long long v = strtoll(ms, &end, 10);
        if (end == ms || c->sched.nmilestones >= SCHED_MAXMILESTONES || (*end && *end != ',')) {
            snprintf(err, 256, "checkpoint state: malformed milestones");
            return -1;
        }
        c->sched.milestones[c->sched.nmilestones++] = v;
        ms = *end ? end + 1 : end;
    }
    c->sched.gamma = kv_double(s, "gamma", 0.1);
    c->sched.warmup = kv_double(s, "warmup", 0);
    c->sched.decay_steps = kv_int(s, "decay_steps", 1000);
    c->sched.alpha = kv_double(s, "keras_alpha", 0);
    c->sched.beta = kv_double(s, "keras_beta", 0.001);
    c->sched.num_periods = kv_double(s, "num_periods", 0.5);
    c->sched.t_mul = kv_double(s, "t_mul", 2);
    c->sched.m_mul = kv_double(s, "m_mul", 1);
    c->sched.ramp_start = kv_double(s, "ramp_start", 1e-5);
    c->sched.ramp_min = kv_double(s, "ramp_min", 1e-5);
    c->sched.ramp_decay = kv_double(s, "ramp_decay", 0.8);
    c->sched.ramp_epochs = (int)kv_int(s, "ramp_epochs", 5);
    c->epochs = kv_int(s, "epochs", 1);
    c->batch = (int)kv_int(s, "batch", 128);
    c->seed = (uint64_t)kv_int(s, "train_seed", 1);
    c->augment = (aug_kind)ak;
    c->shuffle = kv_int(s, "shuffle", 1) != 0;
    c->every = (int)kv_int(s, "every", 1);
    if (c->batch < 1 || c->epochs < 0 || c->sched.decay_steps < 1 || c->every < 0) {
        snprintf(err, 256, "checkpoint state: batch, epochs, decay_steps or every out of range");
        return -1;
    }
    return norm_from_state(s, &c->norm, err);
}

/* ---- data ---------------------------------------------------------------------------- */
int train_check_data(const checkpoint *ck, const dataset *d, const char *what, char err[256]) {
    int64_t classes = kv_int(&ck->arch, "classes", 10);
    if (d->h.c != 3 || d->h.h != 32 || d->h.w != 32) {
        snprintf(err, 256, "%s: images are %dx%dx%d, the model takes 3x32x32", what, d->h.c, d->h.h, d->h.w);
        return -1;
    }
    if (d->h.nclasses > classes) {
        snprintf(err, 256, "%s: %d classes, the model has %" PRId64 " outputs", what, d->h.nclasses, classes);
        return -1;
    }
    if (d->n == 0) {
        snprintf(err, 256, "%s: no images", what);
        return -1;
    }
    return 0;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- evaluation ---------------------------------------------------------------------- */
/* A staged test batch's forward and loss, in backend memory. Full batches replay the
 * recording of one (MODEL_GRAPH_EVAL), made at the first full batch of a pass that finds
 * none once a full batch has run op by op (which chose the algorithms and sized the
 * buffers: in training, the steps did); *rec: 0 before such a batch, 1 after, -1 once a
 * recording failed (op by op for the rest of the pass). 1 when the batch ran from the
 * recording (r->recorded counts those made), -1 when its loss could not be queued. */
static int eval_forward(model *m, int nb, int mb, const norm_cfg *nm, int *rec, eval_result *r) {
    const int E = MODEL_GRAPH_EVAL;
    if (nb == mb && *rec >= 0) {
        if (model_graph_launch(m, E, nb, AUG_NONE, nm) == 0) return 1;
        if (*rec == 1) {
            bool began = model_graph_begin(m, E) == 0, queued = false;
            if (began) model_forward_staged(m, nb, AUG_NONE, nm, false), queued = model_loss_queue(m, nb, false) == 0;
            bool made = began && model_graph_end(m, nb) == 0;
            if (made && !queued) model_graph_drop_slot(m, E);   /* a forward without its loss: not a test batch */
            if (made && queued && model_graph_launch(m, E, nb, AUG_NONE, nm) == 0) {
                r->recorded++;
                return 1;
            }
            *rec = -1;      /* nothing of the recording ran: the batch goes op by op below */
        }
    }
    model_forward_staged(m, nb, AUG_NONE, nm, false);
    if (model_loss_queue(m, nb, false)) return -1;
    if (nb == mb && *rec == 0) *rec = 1;
    return 0;
}

int eval_run(model *m, const dataset *d, const norm_cfg *nm, eval_result *r, char err[256]) {
    memset(r, 0, sizeof *r);
    int classes = model_classes(m), mb = model_max_batch(m);
    size_t img = ds_image_bytes(&d->h);
    r->classes = classes;
    r->confusion = calloc((size_t)classes * (size_t)classes, sizeof *r->confusion);
    /* d in backend memory (model_data_attach's extra: the test set): batches built there,
     * the same bits as here; else built here (in x) and uploaded */
    int64_t base = model_data_base(m, d);
    float *x = base < 0 ? malloc((size_t)mb * img * sizeof *x) : NULL;
    uint32_t *idx = malloc((size_t)mb * sizeof *idx);
    if (!r->confusion || (base < 0 && !x) || !idx) {
        free(x), free(idx);
        snprintf(err, 256, "out of memory evaluating");
        return -1;
    }
    double loss = 0;
    int rec = !model_can_record(m) || !cli_env_flag("BN_GRAPH", true) ? -1 : model_full_batch_ran(m) ? 1 : 0;
    for (size_t i0 = 0; i0 < d->n; i0 += (size_t)mb) {
        int nb = (int)(d->n - i0 < (size_t)mb ? d->n - i0 : (size_t)mb);
        int ok = 0;
        double l;
        if (base >= 0) {
            for (int i = 0; i < nb; i++) idx[i] = (uint32_t)((size_t)base + i0 + (size_t)i);
            model_step_stage(m, idx, NULL, nb, 0.0f);
            int f = eval_forward(m, nb, mb, nm, &rec, r);
            r->replayed += f > 0;
            l = f < 0 ? NAN : model_loss_collect(m, nb, &ok);
        } else {
            for (int i = 0; i < nb; i++) idx[i] = (uint32_t)(i0 + (size_t)i);
            batch_fill(x, d, idx, NULL, nb, AUG_NONE, nm);
            model_forward(m, x, nb, false);
            l = model_loss_backward(m, d->labels + i0, nb, &ok, false);
        }
        loss += l * nb;
        r->correct += (uint64_t)ok;
        const float *lg = model_logits(m);
        for (int i = 0; i < nb; i++) {
            const float *row = lg + (size_t)i * classes;
            int best = 0;
            for (int k = 1; k < classes; k++)
                if (row[k] > row[best]) best = k;
            r->confusion[(size_t)d->labels[i0 + (size_t)i] * classes + best]++;
        }
    }
    r->n = d->n;
    r->loss = d->n ? loss / (double)d->n : NAN;
    free(x), free(idx);
    return 0;
}

void eval_free(eval_result *r) {
    free(r->confusion);
    r->confusion = NULL;
}

/* ---- the loop ------------------------------------------------------------------------ */
/* Writes the checkpoint: 0, TRAIN_ERROR (err says why), or TRAIN_NAN when a parameter or a
 * BN running statistic is no longer finite (a diverged run whose loss was still finite):
 * such a checkpoint is never written, so the stream keeps only good ones. */
static int write_ck(train_io *io, model *m, const checkpoint *ck, char err[256]) {
    uint64_t nan = 0, inf = 0;
    model_sync(m);      /* the BN running statistics, from a backend with memory of its own */
    const ck_tensor *bad = ck_nonfinite(ck, "param", &nan, &inf);
    if (!bad) bad = ck_nonfinite(ck, "buffer", &nan, &inf);
    if (bad) {
        snprintf(err, 256, "%s holds %llu NaN and %llu infinite values after step %lld", bad->name,
                 (unsigned long long)nan, (unsigned long long)inf, (long long)ck->step);
        io->bad_epoch = ck->epoch + (kv_int(&ck->state, "epoch_step", 0) ? 1 : 0), io->bad_step = ck->step;
        return TRAIN_NAN;
    }
    if (!io->out) return 0;
    ck_write(io->out, ck);
    if (sw_flush(io->out)) {
        snprintf(err, 256, "writing the checkpoint stream to %s: %s", io->out_name ? io->out_name : "the output",
                 strerror(io->out->err));
        return TRAIN_ERROR;
    }
    io->sections++;
    return 0;
}

static void set_partial(checkpoint *ck, int64_t epoch_step, double loss_sum, int64_t correct, int64_t seen) {
    kv_set_int(&ck->state, "epoch_step", epoch_step);
    kv_set_double(&ck->state, "epoch_loss_sum", loss_sum);
    kv_set_int(&ck->state, "epoch_correct", correct);
    kv_set_int(&ck->state, "epoch_seen", seen);
}

/* ---- data parallel (dist.h) ----------------------------------------------------------
 * Rank r of P takes positions [r*nb/P, (r+1)*nb/P) of every global batch of nb images (the
 * same plan as one process: order and augmentation of every position), so the P slices are
 * exactly the single process's batch. BatchNorm reduces its statistics and gradients over
 * the ranks inside the ops (ops.h); the model weighs each image 1/nb (model_set_batch_total);
 * the other gradients are summed here, in one buffer with the step's loss, correct count and
 * stop request. Every rank then takes the same optimizer step on the same weights. */

/* Does the backend call the allreduce hook in train-mode BatchNorm? A tiny BN forward and
 * backward with a hook that only counts; its tensors in the backend's memory when it has
 * its own (ops.h mem_*). */
static void count_hook(void *ctx, double *buf, size_t n) {
    (void)buf, (void)n;
    ++*(int *)ctx;
}
bool train_backend_reduces_bn(const ops *o) {
    ops probe = *o;
    int calls_fwd = 0, calls_bwd = 0;
    /* x[4] dy[4] g b y[4] dx[4] mean invstd dg db: 22 floats */
    float host[22] = {1, 2, 3, 5, 1, -1, 2, 0, 1, 0};
    bool dev = o->mem_alloc != NULL;
    float *t = dev ? o->mem_alloc(&probe, sizeof host) : host;
    if (!t) return false;
    if (dev) o->mem_upload(&probe, t, host, sizeof host);
    float *x = t, *dy = t + 4, *g = t + 8, *b = t + 9, *y = t + 10, *dx = t + 14, *mean = t + 18, *invstd = t + 19;
    float *dg = t + 20, *db = t + 21;
    bn_desc d = {2, 1, 2, 1e-5f, 0.1f};
    probe.allreduce = count_hook, probe.allreduce_ctx = &calls_fwd;
    probe.bn_fwd_train(&probe, &d, x, g, b, y, mean, invstd, NULL, NULL);
    probe.allreduce_ctx = &calls_bwd;
    probe.bn_bwd(&probe, &d, x, dy, g, mean, invstd, dx, dg, db);
    if (dev) o->mem_free(&probe, t);
    return calls_fwd > 0 && calls_bwd > 0;
}

/* Is trainable tensor i a BatchNorm gamma or beta (whose gradient comes out global)? */
static bool is_bn_param(const model *m, int i) {
    const ck_tensor *t = model_param(m, i);
    if (!t) return false;
    for (int l = 0; l < model_nlayers(m); l++) {
        model_layer_info li;
        model_layer(m, l, &li);
        if (strcmp(li.kind, "bn")) continue;
        size_t k = strlen(li.name);
        if (!strncmp(t->name, li.name, k) && (!strcmp(t->name + k, ".gamma") || !strcmp(t->name + k, ".beta")))
            return true;
    }
    return false;
}

typedef struct dp_state {
    int P, r;
    int ng, *gi;          /* trainable tensors summed here (not BN gamma/beta) */
    size_t len;           /* their elements + 3 */
    double *buf;
} dp_state;

static int dp_setup(dp_state *dp, const model *m, char err[256]) {
    dp->gi = malloc(((size_t)model_nparams(m) + 1) * sizeof *dp->gi);
    if (!dp->gi) goto oom;
    dp->ng = 0, dp->len = 3;
    for (int i = 0; i < model_nparams(m); i++)
        if (!is_bn_param(m, i)) {
            dp->gi[dp->ng++] = i;
            dp->len += model_param(m, i)->numel;
        }
    dp->buf = malloc(dp->len * sizeof *dp->buf);
    if (!dp->buf) goto oom;
    return 0;
oom:
    snprintf(err, 256, "out of memory for the gradient sums");
    return -1;
}

/* Sums the non-BN gradients over the ranks, and {loss*n, correct, stop}; returns the
 * global mean loss and sets the global *correct and *stop. */
static double dp_reduce(dp_state *dp, const model *m, double loss, int nl, int nb, int *correct, int *stop) {
    size_t k = 0;
    for (int j = 0; j < dp->ng; j++) {
        const float *g = model_grad(m, dp->gi[j]);
        size_t n = model_param(m, dp->gi[j])->numel;
        for (size_t e = 0; e < n; e++) dp->buf[k++] = g[e];
    }
    dp->buf[k] = loss * nl, dp->buf[k + 1] = *correct, dp->buf[k + 2] = *stop;
    dist_allreduce(dp->buf, dp->len);
    k = 0;
    for (int j = 0; j < dp->ng; j++) {
        float *g = model_grad(m, dp->gi[j]);
        size_t n = model_param(m, dp->gi[j])->numel;
        for (size_t e = 0; e < n; e++) g[e] = (float)dp->buf[k++];
    }
    *correct = (int)dp->buf[k + 1];
    *stop = dp->buf[k + 2] > 0;
    return dp->buf[k] / nb;
}

/* FNV-1a over every tensor's bytes: the ranks' weights, buffers and optimizer state must
 * be the same bits at the end of a run. */
static uint64_t ck_hash(const checkpoint *ck) {
    uint64_t h = 1469598103934665603ULL;
    for (int j = 0; j < ck->nt; j++) {
        const unsigned char *p = ck->t[j].data;
        size_t n = ck->t[j].numel * dtype_size(ck->t[j].dtype);
        for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ULL;
    }
    return h;
}

int train_run(checkpoint *ck, ops *o, const dataset *train, const train_cfg *cfg, train_io *io, bool resume,
              char err[256]) {
    train_io none = {0};
    if (!io) io = &none;
    if (cfg->batch < 1) {
        snprintf(err, 256, "batch size must be at least 1");
        return TRAIN_ERROR;
    }
    if (train_check_data(ck, train, "training set", err)) return TRAIN_ERROR;
    if (cfg->norm.meanstd && cfg->norm.c != train->h.c) {
        snprintf(err, 256, "meanstd normalisation has %d channels, the images %d", cfg->norm.c, train->h.c);
        return TRAIN_ERROR;
    }
    const size_t n = train->n, img = ds_image_bytes(&train->h);
    const int64_t spe = (int64_t)((n + (size_t)cfg->batch - 1) / (size_t)cfg->batch);
    dp_state dp = {dist_size(), dist_rank(), 0, NULL, 0, NULL};
    if (dp.P > 1) {
        size_t last = n - (size_t)(spe - 1) * (size_t)cfg->batch;
        if ((size_t)cfg->batch < (size_t)dp.P || last < (size_t)dp.P) {
            snprintf(err, 256,
                     "%d ranks, but %s has %zu image%s: every rank needs at least one image of every batch "
                     "(a larger batch, another training-set size, or fewer ranks)",
                     dp.P, last < (size_t)cfg->batch ? "an epoch's last batch" : "a batch",
                     last < (size_t)cfg->batch ? last : (size_t)cfg->batch, last == 1 ? "" : "s");
            return TRAIN_ERROR;
        }
        if (!train_backend_reduces_bn(o)) {
            snprintf(err, 256,
                     "backend %s does not sum BatchNorm statistics over ranks (ops.h allreduce hook): "
                     "data-parallel training needs --device ref or a backend that does",
                     o->name);
            return TRAIN_ERROR;
        }
    }
    int64_t epoch_step = 0, correct = 0, seen = 0;
    double loss_sum = 0;
    if (resume) {
        epoch_step = kv_int(&ck->state, "epoch_step", 0);
        loss_sum = kv_double(&ck->state, "epoch_loss_sum", 0);
        correct = kv_int(&ck->state, "epoch_correct", 0);
        seen = kv_int(&ck->state, "epoch_seen", 0);
        int64_t was = kv_int(&ck->state, "train_images", -1);
        if (was >= 0 && was != (int64_t)n) {
            snprintf(err, 256, "the checkpoint was trained on %" PRId64 " images, this training set has %zu", was, n);
            return TRAIN_ERROR;
        }
        if (ck->epoch < 0 || epoch_step < 0 || epoch_step >= spe || ck->step != ck->epoch * spe + epoch_step) {
            snprintf(err, 256,
                     "checkpoint at epoch %" PRId64 " step %" PRId64 " does not match %" PRId64
                     " steps per epoch (%zu images, batch %d): not the same training set?",
                     ck->epoch, ck->step, spe, n, cfg->batch);
            return TRAIN_ERROR;
        }
    } else {
        ck->epoch = 0, ck->step = 0;
    }
    if (optim_prepare(ck, &cfg->opt, !resume, err)) return TRAIN_ERROR;
    train_cfg_to_state(cfg, &ck->state);
    kv_set_int(&ck->state, "train_images", (int64_t)n);
    set_partial(ck, epoch_step, loss_sum, correct, seen);

    schedule sched = cfg->sched;
    sched.total_steps = cfg->epochs * spe;
    sched.steps_per_epoch = spe;

    /* a rank's slice of a batch has at most ceil(batch / P) images */
    const int local_max = (int)(((int64_t)cfg->batch + dp.P - 1) / dp.P);
    model *m = model_build(ck, o, local_max, err);
    if (!m) return TRAIN_ERROR;
    if (dp.P > 1) {
        dist_attach(o);
        if (dp_setup(&dp, m, err)) {
            model_free(m);
            o->allreduce = NULL, o->allreduce_ctx = NULL;
            return TRAIN_ERROR;
        }
    }
    /* In a backend with memory of its own (cuda), the batches are built there from the
     * training set copied once, and the optimizer updates the parameters there: a step then
     * uploads and downloads nothing but the loss. The optimizer stays on the host with
     * several ranks (their gradient sums are made there). BN_DEVICE_DATA=0 and
     * BN_DEVICE_OPTIM=0 keep either on the host (the results are the same bits). */
    char why[256] = "";
    bool dev_optim = dp.P == 1 && cli_env_flag("BN_DEVICE_OPTIM", true) && optim_backend_prepare(ck, m, &cfg->opt);
    bool dev_data = false, dev_eval = false;
    if (cli_env_flag("BN_DEVICE_DATA", true)) {   /* the test set there too, for eval_run (BN_DEVICE_EVAL=0: not) */
        const dataset *t = io->test && cli_env_flag("BN_DEVICE_EVAL", true) ? io->test : NULL;
        dev_eval = dev_data = t && !model_data_attach(m, train, t, why);
        if (!dev_data) why[0] = 0, dev_data = !model_data_attach(m, train, NULL, why);
    }
    /* and with both there, a step is recorded once and replayed (BN_GRAPH=0: never) */
    step_graph sg = {dev_data && dev_optim && model_can_record(m) && cli_env_flag("BN_GRAPH", true), false, 0, 0};
    io->backend_data = dev_data, io->backend_eval = dev_eval, io->backend_optim = dev_optim, io->fast = model_is_fast(m);
    io->graph_steps = io->graph_records = io->eval_replays = io->eval_records = 0;
    if (io->verbose && model_backend(m))
        fprintf(stderr, "%s: %s backend: batches built %s%s%s%s, optimizer on the %s%s\n", cli_prog, o->name,
                dev_data ? "there" : "on the host", dev_eval ? " (the test set's too)" : "", *why ? ": " : "", why,
                dev_optim ? "backend" : "host", sg.on ? ", steps replayed from a recording" : "");
    float *x = malloc((size_t)local_max * img * sizeof *x);
    uint8_t *lab = malloc((size_t)local_max);
    uint32_t *order = malloc(n * sizeof *order);
    aug_param *par = malloc(n * sizeof *par);
    int rc = TRAIN_DONE;
    if (!x || !lab || !order || !par) {
        snprintf(err, 256, "out of memory");
        rc = TRAIN_ERROR;
        goto done;
    }

    int64_t steps_this_call = 0;
    for (int64_t epoch = ck->epoch; epoch < cfg->epochs && rc == TRAIN_DONE; epoch++) {
        double t0 = now_s(), train_s = 0, lr = 0;
        int64_t images = 0;
        bool stop = false;
        epoch_plan(cfg->seed, epoch, n, cfg->shuffle, cfg->augment, order, par);
        char what[48];
        snprintf(what, sizeof what, "epoch %" PRId64 "/%" PRId64, epoch + 1, cfg->epochs);
        for (int64_t st = epoch_step; st < spe; st++) {
            size_t i0 = (size_t)st * (size_t)cfg->batch;
            int nb = (int)(n - i0 < (size_t)cfg->batch ? n - i0 : (size_t)cfg->batch);
            /* this rank's slice [lo, lo + nl) of the batch (all of it in one process) */
            size_t lo = (size_t)((int64_t)dp.r * nb / dp.P);
            int nl = (int)((int64_t)(dp.r + 1) * nb / dp.P - (int64_t)lo);
            lr = schedule_lr(&sched, ck->step, epoch);
            if (dp.P > 1) model_set_batch_total(m, nb);
            int ok = 0;
            double loss;
            if (dev_data) {
                model_step_stage(m, order + i0 + lo, cfg->augment == AUG_NONE ? NULL : par + i0 + lo, nl,
                                 optim_step_size(&cfg->opt, lr, ck->step + 1));
                device_step(m, cfg, &sg, nl, lr, ck->step + 1, dev_optim, io->verbose);
                loss = model_loss_collect(m, nl, &ok);
            } else {
                batch_fill(x, train, order + i0 + lo, par + i0 + lo, nl, cfg->augment, &cfg->norm);
                for (int i = 0; i < nl; i++) lab[i] = train->labels[order[i0 + lo + (size_t)i]];
                model_forward(m, x, nl, true);
                loss = model_loss_backward(m, lab, nl, &ok, true);
            }
            int sig = io->stop_signals ? cli_stop_requested() : 0, stop_any = sig != 0;
            if (dp.P > 1) loss = dp_reduce(&dp, m, loss, nl, nb, &ok, &stop_any);
            if (!isfinite(loss)) {
                io->bad_epoch = epoch + 1, io->bad_step = ck->step + 1;
                rc = TRAIN_NAN;
                break;
            }
            if (dev_optim && !dev_data) {   /* with dev_data, done in the step */
                optim_step_backend(m, &cfg->opt, lr, ck->step + 1, NULL);
            } else if (!dev_optim) {
                optim_step(ck, m, &cfg->opt, lr, ck->step + 1);
                model_upload_params(m);
            }
            ck->step++, steps_this_call++;
            loss_sum += loss * nb, correct += ok, seen += nb, images += nb;
            if (io->progress) cli_progress(what, (uint64_t)(st + 1), (uint64_t)spe);
            if (stop_any || (io->max_steps > 0 && steps_this_call >= io->max_steps)) {
                io->stop_signal = sig;
                stop = true;
                if (st + 1 < spe) {   /* mid-epoch: record the position and stop */
                    set_partial(ck, st + 1, loss_sum, correct, seen);
                    if (io->progress) cli_progress_end();
                    int wr = write_ck(io, m, ck, err);
                    rc = wr ? wr : TRAIN_STOPPED;
                    break;
                }
            }
        }
        train_s = now_s() - t0;
        if (io->progress) cli_progress_end();
        if (rc != TRAIN_DONE) break;
        ck->epoch = epoch + 1;
        epoch_step = 0;
        double tl = seen ? loss_sum / (double)seen : NAN, ta = seen ? (double)correct / (double)seen : NAN;
        set_partial(ck, 0, 0, 0, 0);
        loss_sum = 0, correct = 0, seen = 0;

        double vl = NAN, va = NAN;
        if (io->test) {
            eval_result r;
            if (eval_run(m, io->test, &cfg->norm, &r, err)) {
                rc = TRAIN_ERROR;
                break;
            }
            vl = r.loss, va = r.n ? (double)r.correct / (double)r.n : NAN;
            io->eval_replays += (int64_t)r.replayed, io->eval_records += (int64_t)r.recorded;
            eval_free(&r);
        }
        double secs = now_s() - t0, ips = train_s > 0 ? (double)images / train_s : 0;
        if (io->log) {
            fprintf(io->log, "%" PRId64 "\t%" PRId64 "\t%.9g\t%.6f\t%.6f\t%.6f\t%.6f\t%.1f\t%.3f\n", ck->epoch,
                    ck->step, lr, tl, ta, vl, va, ips, secs);
            fflush(io->log);
        }
        if (io->verbose) {
            fprintf(stderr, "%s: epoch %" PRId64 "/%" PRId64 " step %" PRId64 " lr %.6g train loss %.4f acc %.2f%%",
                    cli_prog, ck->epoch, cfg->epochs, ck->step, lr, tl, 100 * ta);
            if (io->test) fprintf(stderr, " test loss %.4f acc %.2f%%", vl, 100 * va);
            fprintf(stderr, " %.0f img/s %.1f s\n", ips, secs);
        }
        bool last = ck->epoch == cfg->epochs;
        if (stop || last || (cfg->every > 0 && ck->epoch % cfg->every == 0))
            if ((rc = write_ck(io, m, ck, err)) != 0) break;
        if (stop) rc = last ? TRAIN_DONE : TRAIN_STOPPED; /* stopped at the very end: complete */
    }
    /* nothing left to train (a resumed run already complete, or --epochs 0): the
     * checkpoint still goes out, with its settings */
    io->graph_steps = sg.replays, io->graph_records = sg.records;
    if (rc == TRAIN_DONE && steps_this_call == 0 && io->sections == 0) rc = write_ck(io, m, ck, err);
    model_sync(m);      /* the caller's checkpoint holds the final state, whatever the backend */
    if (dp.P > 1 && rc != TRAIN_ERROR) {
        /* the ranks must end with the same bits (rank 0 wrote them); a difference would be
         * a bug in a backend's reduction or the MPI library: never let it pass silently */
        uint64_t h0 = ck_hash(ck), mine = h0;
        dist_bcast(&h0, sizeof h0);
        if (dist_any(mine != h0)) {
            snprintf(err, 256, "the ranks' weights differ at the end of the run (rank %d): results not trustworthy",
                     dp.r);
            rc = TRAIN_ERROR;
        }
    }
done:
    free(x), free(lab), free(order), free(par);
    free(dp.gi), free(dp.buf);
    if (dp.P > 1) o->allreduce = NULL, o->allreduce_ctx = NULL;   /* back to a single process */
    model_free(m);
    return rc;
}
