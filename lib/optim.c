/* optim.c: SGD with momentum / Nesterov / weight decay, and Adam (optim.h). */
#include "optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_extra.h"

const char *optim_name(opt_kind k) { return k == OPT_ADAM ? "adam" : "sgd"; }
int optim_parse(const char *s) {
    if (s && strcmp(s, "sgd") == 0) return OPT_SGD;
    if (s && strcmp(s, "adam") == 0) return OPT_ADAM;
    return -1;
}

void sgd_update(float *w, const float *g, float *buf, const uint8_t *mask, size_t n, double lr, double momentum,
                bool nesterov, double wd) {
    const float flr = (float)lr, fmom = (float)momentum, fwd = (float)wd;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        if (mask && !mask[i]) continue;
        float d = g[i];
        if (fwd != 0.0f) d += fwd * w[i];
        if (buf && fmom != 0.0f) {
            buf[i] = fmom * buf[i] + d;
            d = nesterov ? d + fmom * buf[i] : buf[i];
        }
        w[i] -= flr * d;
    }
}

void adam_update(float *w, const float *g, float *m, float *v, const uint8_t *mask, size_t n, double lr, double beta1,
                 double beta2, double eps, double wd, int64_t t) {
    optim_cfg c = {.kind = OPT_ADAM, .beta1 = beta1, .beta2 = beta2};
    adam_update_at(w, g, m, v, mask, n, optim_step_size(&c, lr, t), beta1, beta2, eps, wd);
}

float optim_step_size(const optim_cfg *cfg, double lr, int64_t t) {
    if (cfg->kind != OPT_ADAM) return (float)lr;
    return (float)(lr * sqrt(1.0 - pow(cfg->beta2, (double)t)) / (1.0 - pow(cfg->beta1, (double)t)));
}

void adam_update_at(float *w, const float *g, float *m, float *v, const uint8_t *mask, size_t n, float lr_t,
                    double beta1, double beta2, double eps, double wd) {
    const float flr = lr_t, b1 = (float)beta1, b2 = (float)beta2, feps = (float)eps, fwd = (float)wd;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        if (mask && !mask[i]) continue;
        float d = g[i];
        if (fwd != 0.0f) d += fwd * w[i];
        m[i] = b1 * m[i] + (1.0f - b1) * d;
        v[i] = b2 * v[i] + (1.0f - b2) * d * d;
        w[i] -= flr * m[i] / (sqrtf(v[i]) + feps);
    }
}

static int need_state(checkpoint *ck, const ck_tensor *p, const char *prefix, char err[256]) {
    char name[CK_NAMELEN + 16];
    if (snprintf(name, sizeof name, "%s%s", prefix, p->name) >= CK_NAMELEN) {
        snprintf(err, 256, "tensor name too long for its optimizer state: %s", p->name);
        return -1;
    }
    ck_tensor *s = ck_find(ck, name);
    if (s) {
        if (s->dtype != DT_F32 || s->numel != p->numel || s->ndim != p->ndim ||
            memcmp(s->shape, p->shape, sizeof(int64_t) * (size_t)p->ndim)) {
            snprintf(err, 256, "optimizer state %s does not match its parameter's shape", name);
            return -1;
        }
        return 0;
    }
    int64_t shape[CK_MAXDIM];
    memcpy(shape, p->shape, sizeof shape);
    ck_add(ck, name, DT_F32, p->ndim, shape, false, "opt");
    return 0;
}

int optim_prepare(checkpoint *ck, const optim_cfg *cfg, bool fresh, char err[256]) {
    /* The "opt" tensors belong to the optimizer recorded in "opt_state": a resume with
     * another optimizer (or SGD without momentum after SGD with it) starts from fresh state
     * instead of reading one optimizer's buffers as another's. */
    const char *kind = cfg->kind == OPT_ADAM ? "adam" : cfg->momentum != 0.0 ? "sgd-momentum" : "sgd";
    const char *was = kv_str(&ck->state, "opt_state", NULL);
    if (fresh || (was && strcmp(was, kind) != 0)) ck_drop_role(ck, "opt");
    kv_set_str(&ck->state, "opt_state", kind);
    /* collect names first: ck_add moves the tensor array */
    int n = ck->nt;
    for (int i = 0; i < n; i++) {
        ck_tensor p = ck->t[i];   /* a copy: ck->t may move below */
        if (strcmp(p.role, "param") || !p.trainable) continue;
        if (cfg->kind == OPT_SGD && cfg->momentum != 0.0 && need_state(ck, &p, "opt.m/", err)) return -1;
        if (cfg->kind == OPT_ADAM && (need_state(ck, &p, "opt.m/", err) || need_state(ck, &p, "opt.v/", err)))
            return -1;
    }
    return 0;
}

static float *state_of(checkpoint *ck, const char *prefix, const char *name) {
    char full[CK_NAMELEN + 16];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    if (strlen(full) >= CK_NAMELEN) return NULL;
    ck_tensor *t = ck_find(ck, full);
    return t ? t->data : NULL;
}

/* The state arrays cfg's optimizer keeps for tensor `name` (*s1: momentum buffer or first
 * moment, *s2: second moment; NULL when not used); false when one it needs is missing. */
static bool param_state(checkpoint *ck, const optim_cfg *cfg, const char *name, float **s1, float **s2) {
    bool adam = cfg->kind == OPT_ADAM;
    *s1 = adam || cfg->momentum != 0.0 ? state_of(ck, "opt.m/", name) : NULL;
    *s2 = adam ? state_of(ck, "opt.v/", name) : NULL;
    return adam ? *s1 && *s2 : cfg->momentum == 0.0 || *s1;
}

void optim_step(checkpoint *ck, const model *m, const optim_cfg *cfg, double lr, int64_t t) {
    int np = model_nparams(m);
    for (int i = 0; i < np; i++) {
        ck_tensor *p = model_param(m, i);
        const float *g = model_grad(m, i);
        const uint8_t *mask = model_mask(m, i);
        if (!p || !g || !p->trainable) continue;
        float *s1, *s2;
        if (!param_state(ck, cfg, p->name, &s1, &s2)) {
            fprintf(stderr, "optim_step: no %s state for %s (optim_prepare not called)\n", optim_name(cfg->kind),
                    p->name);
            abort();
        }
        if (cfg->kind == OPT_ADAM)
            adam_update(p->data, g, s1, s2, mask, p->numel, lr, cfg->beta1, cfg->beta2, cfg->eps, cfg->wd, t);
        else
            sgd_update(p->data, g, s1, mask, p->numel, lr, cfg->momentum, cfg->nesterov, cfg->wd);
    }
}

/* ---- in backend memory ------------------------------------------------------------------ */
static bool backend_can(const ops *o, const optim_cfg *cfg) {
    return o && (cfg->kind == OPT_ADAM ? o->adam_update != NULL : o->sgd_update != NULL);
}

bool optim_backend_prepare(checkpoint *ck, model *m, const optim_cfg *cfg) {
    if (!backend_can(model_backend(m), cfg)) return false;
    for (int i = 0; i < model_nparams(m); i++) {
        ck_tensor *p = model_param(m, i);
        if (!p || !p->trainable) continue;
        float *s1, *s2;
        if (!param_state(ck, cfg, p->name, &s1, &s2) || model_bind_state(m, i, s1, s2)) {
            model_unbind_state(m);   /* else model_sync would bring stale copies home over the host's */
            return false;
        }
    }
    return true;
}

void optim_step_backend(model *m, const optim_cfg *cfg, double lr, int64_t t, const ops_step *s) {
    ops *o = model_backend(m);
    if (!backend_can(o, cfg)) {
        fprintf(stderr, "optim_step_backend: backend cannot (optim_backend_prepare said so)\n");
        abort();
    }
    bool adam = cfg->kind == OPT_ADAM;
    if (adam ? o->adam_update_many != NULL : o->sgd_update_many != NULL) {   /* one call for all */
        int k;
        size_t maxn;
        const ops_tensor *tab = model_dparam_table(m, &k, &maxn);
        if (tab && adam) o->adam_update_many(o, tab, k, maxn, lr, cfg->beta1, cfg->beta2, cfg->eps, cfg->wd, t, s);
        else if (tab) o->sgd_update_many(o, tab, k, maxn, lr, cfg->momentum, cfg->nesterov, cfg->wd, s);
        if (tab) return;
    }
    for (int i = 0; i < model_nparams(m); i++) {
        ck_tensor *p = model_param(m, i);
        if (!p || !p->trainable) continue;
        model_dparam d;
        model_dparam_get(m, i, &d);
        if (adam)
            o->adam_update(o, d.w, d.g, d.s1, d.s2, d.mask, d.n, lr, cfg->beta1, cfg->beta2, cfg->eps, cfg->wd, t,
                           s);
        else
            o->sgd_update(o, d.w, d.g, d.s1, d.mask, d.n, lr, cfg->momentum, cfg->nesterov, cfg->wd, s);
    }
}
