/* augment.c: epoch plans, augmentation, scaling and normalisation (augment.h). */
#include "augment.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const aug_names[] = {"none", "crop-flip", "seed"};

const char *aug_name(aug_kind k) { return (unsigned)k < 3 ? aug_names[k] : "?"; }
int aug_parse(const char *s) {
    for (int i = 0; s && i < 3; i++)
        if (strcmp(s, aug_names[i]) == 0) return i;
    return -1;
}

void aug_draw(rng *r, aug_kind k, aug_param *p) {
    p->dy = p->dx = AUG_PAD;
    p->flip = 0;
    p->delta = 0.0f;
    if (k == AUG_NONE) return;
    p->dy = (int)rng_below(r, 2 * AUG_PAD + 1);
    p->dx = (int)rng_below(r, 2 * AUG_PAD + 1);
    if (k == AUG_CROP_FLIP) p->flip = (int)(rng_u64(r) >> 63);
    if (k == AUG_SEED) p->delta = (float)(rng_uniform(r) - 0.5);
}

int norm_compute(const dataset *d, norm_cfg *out, char err[256]) {
    memset(out, 0, sizeof *out);
    out->meanstd = true;
    int c = d->h.c;
    size_t hw = (size_t)d->h.h * d->h.w, img = ds_image_bytes(&d->h);
    if (c < 1 || c > NORM_MAXC || d->n == 0 || hw == 0) {
        snprintf(err, 256, "cannot compute mean/std: %zu images of %d channels", d->n, c);
        return -1;
    }
    out->c = c;
    for (int ch = 0; ch < c; ch++) {
        /* exact integer sums: the result does not depend on summation order */
        uint64_t s = 0, s2 = 0;
        for (size_t i = 0; i < d->n; i++) {
            const uint8_t *p = d->pixels + i * img + (size_t)ch * hw;
            for (size_t j = 0; j < hw; j++) s += p[j], s2 += (uint64_t)p[j] * p[j];
        }
        double m = (double)d->n * (double)hw;
        double mean = (double)s / m, var = (double)s2 / m - mean * mean;
        out->mean[ch] = mean / 255.0;
        out->std[ch] = sqrt(var > 0 ? var : 0) / 255.0;
        if (!(out->std[ch] > 0)) {
            snprintf(err, 256, "cannot normalise: channel %d of the training set is constant", ch);
            return -1;
        }
    }
    return 0;
}

void norm_to_state(const norm_cfg *n, kvlist *state) {
    kv_set_str(state, "normalize", n->meanstd ? "meanstd" : "none");
    if (!n->meanstd) return;
    kv_set_int(state, "norm_c", n->c);
    for (int i = 0; i < n->c; i++) {
        char k[32];
        snprintf(k, sizeof k, "norm_mean%d", i);
        kv_set_double(state, k, n->mean[i]);
        snprintf(k, sizeof k, "norm_std%d", i);
        kv_set_double(state, k, n->std[i]);
    }
}

int norm_from_state(const kvlist *state, norm_cfg *out, char err[256]) {
    memset(out, 0, sizeof *out);
    const char *s = kv_str(state, "normalize", "none");
    if (strcmp(s, "none") == 0) return 0;
    if (strcmp(s, "meanstd")) {
        snprintf(err, 256, "checkpoint state: unknown normalize '%s'", s);
        return -1;
    }
    out->meanstd = true;
    int64_t c = kv_int(state, "norm_c", -1);
    if (c < 1 || c > NORM_MAXC) {
        snprintf(err, 256, "checkpoint state: norm_c missing or out of range");
        return -1;
    }
    out->c = (int)c;
    for (int i = 0; i < out->c; i++) {
        char k[32];
        snprintf(k, sizeof k, "norm_mean%d", i);
        out->mean[i] = kv_double(state, k, NAN);
        snprintf(k, sizeof k, "norm_std%d", i);
        out->std[i] = kv_double(state, k, NAN);
        if (!isfinite(out->mean[i]) || !(out->std[i] > 0) || !isfinite(out->std[i])) {
            snprintf(err, 256, "checkpoint state: mean/std of channel %d missing or invalid", i);
            return -1;
        }
    }
    return 0;
}

void epoch_plan(uint64_t seed, int64_t epoch, size_t n, bool shuffle, aug_kind k, uint32_t *order, aug_param *par) {
    rng r;
    rng_seed(&r, seed, AUG_STREAM + (uint64_t)epoch);
    for (size_t i = 0; i < n; i++) order[i] = (uint32_t)i;
    if (shuffle) rng_shuffle_u32(&r, order, n);
    for (size_t i = 0; i < n; i++) aug_draw(&r, k, &par[i]);
}

bool norm_arrays(const norm_cfg *nm, int c, double *mean, double *inv) {
    bool any = nm && nm->meanstd && nm->c > 0;
    for (int k = 0; k < c && k < NORM_MAXC; k++) {
        mean[k] = any && k < nm->c ? nm->mean[k] : 0.0;
        inv[k] = any && k < nm->c ? 1.0 / nm->std[k] : 1.0;
    }
    return any;
}

void batch_fill_raw(float *x, const uint8_t *pixels, int C, int H, int W, const uint32_t *idx, const aug_param *par,
                    int n, bool bright, const double *mean, const double *inv) {
    const size_t img = (size_t)C * (size_t)H * (size_t)W;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        const uint8_t *src = pixels + (size_t)idx[i] * img;
        float *dst = x + (size_t)i * img;
        aug_param id = {AUG_PAD, AUG_PAD, 0, 0.0f};
        const aug_param *p = par ? &par[i] : &id;
        for (int c = 0; c < C; c++) {
            bool nc = mean && inv && c < NORM_MAXC;
            double mc = nc ? mean[c] : 0.0, ic = nc ? inv[c] : 1.0;
            for (int y = 0; y < H; y++) {
                int sy = y + p->dy - AUG_PAD;
                for (int xx = 0; xx < W; xx++) {
                    int sx = (p->flip ? W - 1 - xx : xx) + p->dx - AUG_PAD;
                    float v = 0.0f;
                    if (sy >= 0 && sy < H && sx >= 0 && sx < W)
                        v = (float)src[((size_t)c * H + sy) * W + sx] / 255.0f;
                    if (bright) {
                        v += p->delta;
                        v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
                    }
                    dst[((size_t)c * H + y) * W + xx] = (float)((v - mc) * ic);
                }
            }
        }
    }
}

void batch_fill(float *x, const dataset *d, const uint32_t *idx, const aug_param *par, int n, aug_kind k,
                const norm_cfg *nm) {
    double mean[NORM_MAXC], inv[NORM_MAXC];
    bool norm = norm_arrays(nm, d->h.c, mean, inv);
    batch_fill_raw(x, d->pixels, d->h.c, d->h.h, d->h.w, idx, k == AUG_NONE ? NULL : par, n, k == AUG_SEED,
                   norm ? mean : NULL, norm ? inv : NULL);
}
