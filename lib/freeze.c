/* freeze.c: trainable regimes (freeze.h). */
#include "freeze.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "rng.h"

const char *const freeze_regimes[] = {"all", "none", "bn", "gamma", "beta", "output", "bn+output", "random-k", NULL};

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}
static bool is_param(const ck_tensor *t) { return strcmp(t->role, "param") == 0; }
static bool is_output(const ck_tensor *t) { return strncmp(t->name, "fc.", 3) == 0; }

ck_tensor *freeze_mask_of(const checkpoint *c, const ck_tensor *t) {
    char name[CK_NAMELEN + 8];
    snprintf(name, sizeof name, "%s.mask", t->name);
    ck_tensor *m = ck_find(c, name);
    if (!m || m->dtype != DT_U8 || m->numel != t->numel || strcmp(m->role, "mask")) return NULL;
    return m;
}

/* k distinct random elements of every output channel of a conv weight */
static void random_k(checkpoint *c, int ti, int k, uint64_t seed) {
    ck_tensor *t = &c->t[ti];
    char name[CK_NAMELEN + 8];
    snprintf(name, sizeof name, "%s.mask", t->name);
    if (strlen(name) >= CK_NAMELEN) {
        fprintf(stderr, "freeze: tensor name too long for a mask: %s\n", t->name);
        abort();
    }
    int64_t shape[CK_MAXDIM];
    memcpy(shape, t->shape, sizeof shape);
    int ndim = t->ndim;
    size_t cout = (size_t)t->shape[0], fan = t->numel / cout;
    ck_tensor *m = ck_add(c, name, DT_U8, ndim, shape, false, "mask"); /* c->t may move */
    c->t[ti].trainable = true;
    uint8_t *mask = m->data;
    uint32_t *idx = malloc(fan * sizeof *idx);
    if (!idx) abort();
    rng r;
    rng_seed(&r, seed, 0x72616e646b ^ (uint64_t)ti); /* one stream per tensor */
    size_t take = (size_t)k < fan ? (size_t)k : fan;
    for (size_t o = 0; o < cout; o++) {
        /* partial Fisher-Yates: the first `take` places of a random permutation */
        for (size_t i = 0; i < fan; i++) idx[i] = (uint32_t)i;
        for (size_t i = 0; i < take; i++) {
            size_t j = i + (size_t)rng_below(&r, fan - i);
            uint32_t s = idx[i];
            idx[i] = idx[j], idx[j] = s;
            mask[o * fan + idx[i]] = 1;
        }
    }
    free(idx);
}

int freeze_regime(checkpoint *c, const char *regime, int k, uint64_t seed, char err[256]) {
    int which = -1;
    for (int i = 0; freeze_regimes[i]; i++)
        if (strcmp(regime, freeze_regimes[i]) == 0) which = i;
    if (which < 0) {
        snprintf(err, 256, "unknown regime '%s' (expected all, none, bn, gamma, beta, output, bn+output, random-k)",
                 regime);
        return -1;
    }
    if (strcmp(regime, "random-k") == 0 && k < 1) {
        snprintf(err, 256, "random-k needs k >= 1, not %d", k);
        return -1;
    }
    ck_drop_role(c, "mask");
    int nt = c->nt; /* random-k appends masks: visit only the tensors there were */
    for (int i = 0; i < nt; i++) {
        ck_tensor *t = &c->t[i];
        if (!is_param(t)) continue;
        bool g = ends_with(t->name, ".gamma"), b = ends_with(t->name, ".beta"), out = is_output(t);
        bool on = false;
        switch (which) {
        case 0: on = true; break;
        case 1: on = false; break;
        case 2: on = g || b; break;
        case 3: on = g; break;
        case 4: on = b; break;
        case 5: on = out; break;
        case 6: on = g || b || out; break;
        case 7: on = false; break;
        }
        t->trainable = on;
        if (which == 7 && t->ndim == 4) random_k(c, i, k, seed);
    }
    return 0;
}

int freeze_glob(checkpoint *c, const char *pattern, bool trainable) {
    int n = 0;
    for (int i = 0; i < c->nt; i++) {
        ck_tensor *t = &c->t[i];
        if (!is_param(t) || !cli_glob(pattern, t->name)) continue;
        t->trainable = trainable;
        ck_tensor *m = trainable ? freeze_mask_of(c, t) : NULL;
        if (m) memset(m->data, 1, m->numel);
        n++;
    }
    return n;
}

uint64_t freeze_count_total(const checkpoint *c) { return ck_count(c, "param", false); }

uint64_t freeze_count_trainable(const checkpoint *c) {
    uint64_t n = 0;
    for (int i = 0; i < c->nt; i++) {
        const ck_tensor *t = &c->t[i];
        if (!is_param(t) || !t->trainable) continue;
        const ck_tensor *m = freeze_mask_of(c, t);
        if (!m) {
            n += t->numel;
            continue;
        }
        const uint8_t *p = m->data;
        for (size_t j = 0; j < m->numel; j++) n += p[j] != 0;
    }
    return n;
}
