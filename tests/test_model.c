/* test_model: architectures (parameter counts), init, forward, whole-model gradients by
 * finite differences, what the backward skips for frozen tensors, trainable regimes. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "freeze.h"
#include "model.h"
#include "model_extra.h"
#include "rng.h"

static uint64_t bn_params(const checkpoint *c) {
    uint64_t n = 0;
    for (int i = 0; i < c->nt; i++) {
        const char *s = c->t[i].name;
        size_t l = strlen(s);
        if ((l > 6 && !strcmp(s + l - 6, ".gamma")) || (l > 5 && !strcmp(s + l - 5, ".beta"))) n += c->t[i].numel;
    }
    return n;
}

TEST(param_counts) {
    static const struct { int depth; uint64_t params, bn; } want[] = {
        {14, 175258, 1120},    {20, 272474, 1568},    {32, 466906, 2464},     {56, 855770, 4256},
        {110, 1730714, 8288},  {218, 3480602, 16352}, {434, 6980378, 32480},  {866, 13979930, 64736}};
    char err[256];
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        checkpoint *c = model_init("resnet", want[i].depth, 16, 10, NULL, 1, err);
        CHECK(c != NULL, "resnet-%d: %s", want[i].depth, err);
        if (!c) continue;
        CHECK(freeze_count_total(c) == want[i].params, "resnet-%d: %llu params", want[i].depth,
              (unsigned long long)freeze_count_total(c));
        CHECK(ck_count(c, "param", true) == want[i].params, "resnet-%d: all trainable", want[i].depth);
        CHECK(bn_params(c) == want[i].bn, "resnet-%d: %llu BN params", want[i].depth, (unsigned long long)bn_params(c));
        ck_tensor *w = ck_find(c, "fc.w"), *b = ck_find(c, "fc.b");
        CHECK(w && b && w->numel + b->numel == 650, "resnet-%d: output layer", want[i].depth);
        /* running statistics: one mean and one var per BN channel, buffers, not trainable */
        CHECK(ck_count(c, "buffer", false) == want[i].bn, "resnet-%d: BN buffers", want[i].depth);
        CHECK(ck_count(c, "buffer", true) == 0, "resnet-%d: buffers trainable", want[i].depth);
        ck_free(c);
    }
    checkpoint *c = model_init("bottleneck", 20, 16, 10, NULL, 1, err);
    CHECK(c != NULL, "bottleneck: %s", err);
    if (c) {
        CHECK(freeze_count_total(c) == 571114, "bottleneck-20: %llu params", (unsigned long long)freeze_count_total(c));
        CHECK(bn_params(c) == 4000, "bottleneck-20: %llu BN", (unsigned long long)bn_params(c));
        /* Keras' 575,114 counts the 4,000 moving statistics too */
        CHECK(freeze_count_total(c) + ck_count(c, "buffer", false) == 575114, "bottleneck-20 Keras total");
        CHECK(ck_find(c, "s1.b0.short.conv.b") && !ck_find(c, "s1.b0.short.bn.gamma"), "projection: bias, no BN");
        CHECK(ck_find(c, "head.bn.gamma") != NULL, "classifier BN");
        CHECK(kv_double(&c->arch, "bn_eps", 0) == 1e-3 && kv_double(&c->arch, "bn_momentum", 0) == 0.01,
              "Keras BN conventions");
        ck_free(c);
    }
}

TEST(bad_arch) {
    char err[256];
    CHECK(model_init("resnet", 21, 16, 10, NULL, 1, err) == NULL, "depth 21");
    CHECK(strstr(err, "6n+2") != NULL, "message: %s", err);
    CHECK(model_init("resnet", 2, 16, 10, NULL, 1, err) == NULL, "depth 2");
    CHECK(model_init("bottleneck", 14, 16, 10, NULL, 1, err) == NULL, "bottleneck 14");
    CHECK(model_init("resnet", 20, 0, 10, NULL, 1, err) == NULL, "width 0");
    CHECK(model_init("resnet", 20, 16, 1, NULL, 1, err) == NULL, "1 class");
    CHECK(model_init("vgg", 20, 16, 10, NULL, 1, err) == NULL, "vgg");
    CHECK(model_init("resnet", 20, 16, 10, "twos", 1, err) == NULL, "gamma init");
}

static bool same_tensors(const checkpoint *a, const checkpoint *b) {
    if (a->nt != b->nt) return false;
    for (int i = 0; i < a->nt; i++)
        if (strcmp(a->t[i].name, b->t[i].name) || a->t[i].numel != b->t[i].numel ||
            memcmp(a->t[i].data, b->t[i].data, a->t[i].numel * dtype_size(a->t[i].dtype)))
            return false;
    return true;
}

TEST(init_determinism) {
    char err[256];
    checkpoint *a = model_init("resnet", 20, 16, 10, NULL, 7, err), *b = model_init("resnet", 20, 16, 10, NULL, 7, err),
               *c = model_init("resnet", 20, 16, 10, NULL, 8, err);
    CHECK(same_tensors(a, b), "same seed, same tensors");
    CHECK(!same_tensors(a, c), "different seed, same tensors");
    /* every weight tensor differs with the seed (not just one) */
    int differ = 0, weights = 0;
    for (int i = 0; i < a->nt; i++)
        if (a->t[i].ndim >= 2) {
            weights++;
            differ += memcmp(a->t[i].data, c->t[i].data, a->t[i].numel * 4) != 0;
        }
    CHECK(differ == weights && weights == 22, "%d of %d weight tensors differ", differ, weights);
    /* two tensors of the same shape are not copies of each other */
    CHECK(memcmp(ck_find(a, "s1.b0.conv1.w")->data, ck_find(a, "s1.b0.conv2.w")->data, 2304 * 4) != 0, "streams");
    ck_free(a), ck_free(b), ck_free(c);
    a = model_init("bottleneck", 20, 16, 10, NULL, 3, err);
    b = model_init("bottleneck", 20, 16, 10, NULL, 3, err);
    CHECK(same_tensors(a, b), "bottleneck: same seed, same tensors");
    ck_free(a), ck_free(b);
}

static void moments(const ck_tensor *t, double *mean, double *std, double *maxabs) {
    const float *p = t->data;
    double s = 0, s2 = 0, mx = 0;
    for (size_t i = 0; i < t->numel; i++) {
        s += p[i], s2 += (double)p[i] * p[i];
        if (fabs(p[i]) > mx) mx = fabs(p[i]);
    }
    *mean = s / (double)t->numel;
    *std = sqrt(s2 / (double)t->numel - *mean * *mean);
    *maxabs = mx;
}

TEST(init_statistics) {
    char err[256];
    checkpoint *c = model_init("resnet", 20, 16, 10, NULL, 1, err);
    double mean, std, mx;
    /* 36,864 draws: the sample std's standard error is 0.37%; allow 2% */
    moments(ck_find(c, "s3.b1.conv1.w"), &mean, &std, &mx);
    double want = sqrt(2.0 / 576);
    CHECK_CLOSE(std, want, 0, 0.02, "He std of s3.b1.conv1.w");
    CHECK(fabs(mean) < 5 * want / sqrt(36864.0), "mean %g", mean);
    CHECK(mx > 3.5 * want, "plain normal reaches 3.5 std in 36,864 draws: max %g", mx / want);
    moments(ck_find(c, "fc.w"), &mean, &std, &mx);
    CHECK_CLOSE(std, sqrt(2.0 / 64), 0, 0.15, "He std of fc.w (640 draws)");
    moments(ck_find(c, "stem.bn.gamma"), &mean, &std, &mx);
    const float *g = ck_find(c, "s3.b2.bn2.gamma")->data;
    bool in01 = true;
    for (int i = 0; i < 64; i++) in01 &= g[i] >= 0 && g[i] < 1;
    CHECK(in01, "uniform gamma in [0,1)");
    const ck_tensor *v = ck_find(c, "s2.b0.short.bn.var"), *mu = ck_find(c, "s2.b0.short.bn.mean"),
                    *be = ck_find(c, "s2.b0.short.bn.beta");
    CHECK(v && !strcmp(v->role, "buffer") && !v->trainable && ((float *)v->data)[5] == 1.0f, "running var");
    CHECK(mu && !strcmp(mu->role, "buffer") && ((float *)mu->data)[5] == 0.0f, "running mean");
    CHECK(be && be->trainable && ((float *)be->data)[5] == 0.0f, "beta");
    CHECK(ck_find(c, "stem.conv.b") == NULL, "resnet convs have no bias");
    ck_free(c);

    c = model_init("bottleneck", 20, 16, 10, NULL, 1, err);
    moments(ck_find(c, "s3.b0.conv2.w"), &mean, &std, &mx);
    want = sqrt(2.0 / 1152);
    CHECK_CLOSE(std, want, 0, 0.02, "truncated He std of s3.b0.conv2.w");
    CHECK(mx <= 2.0 / 0.87962566103423978 * want * 1.0001, "truncated at 2 std: max %g std", mx / want);
    CHECK(((float *)ck_find(c, "head.bn.gamma")->data)[3] == 1.0f, "Keras gamma ones");
    ck_free(c);

    c = model_init("resnet", 8, 16, 10, "uniform-sym", 1, err);
    g = ck_find(c, "s3.b0.bn1.gamma")->data;
    int neg = 0;
    for (int i = 0; i < 64; i++) neg += g[i] < 0 && g[i] >= -1;
    CHECK(neg > 10 && neg < 54, "uniform-sym: %d of 64 negative", neg);
    ck_free(c);
}

static float *random_images(int n, uint64_t seed) {
    float *x = malloc((size_t)n * 3072 * sizeof *x);
    rng r;
    rng_seed(&r, seed, 99);
    for (int i = 0; i < n * 3072; i++) x[i] = (float)rng_normal(&r);
    return x;
}

TEST(forward_shapes) {
    char err[256];
    checkpoint *c = model_init("resnet", 8, 4, 7, NULL, 1, err);
    model *m = model_build(c, &ops_ref, 5, err);
    CHECK(m != NULL, "build: %s", err);
    if (!m) return;
    CHECK(model_classes(m) == 7, "classes");
    model_layer_info li;
    model_layer(m, model_nlayers(m) - 1, &li);
    CHECK(!strcmp(li.name, "fc") && !strcmp(li.kind, "linear") && li.c == 7, "last layer %s %s %d", li.name, li.kind,
          li.c);
    int ch, h, w;
    const float *a = model_activation(m, "s3.b0.conv1", &ch, &h, &w);
    CHECK(a && ch == 16 && h == 8 && w == 8, "s3 activation %dx%dx%d", ch, h, w);
    CHECK(model_activation(m, "stem.bn", NULL, NULL, NULL) == NULL, "BN output overwritten by its ReLU");
    CHECK(model_activation(m, "stem.relu", &ch, &h, &w) && ch == 4 && h == 32, "stem relu");
    float *x = random_images(5, 1);
    model_forward(m, x, 3, false);
    const float *lg = model_logits(m);
    float eval[21];
    bool finite = true;
    for (int i = 0; i < 21; i++) finite &= isfinite(lg[i]), eval[i] = lg[i];
    CHECK(finite, "finite logits");
    model_forward(m, x, 3, true);
    int diff = 0;
    for (int i = 0; i < 21; i++) diff += lg[i] != eval[i];
    CHECK(diff > 0, "train-mode BN differs from eval mode");
    uint8_t labels[5] = {1, 2, 3, 4, 5}, bad[5] = {1, 2, 7, 4, 5};
    int correct = -1;
    double loss = model_loss_backward(m, labels, 3, &correct, false);
    CHECK(isfinite(loss) && loss > 0 && correct >= 0 && correct <= 3, "loss %g correct %d", loss, correct);
    CHECK(isnan(model_loss_backward(m, bad, 3, &correct, true)), "label 7 of 7 classes refused");
    CHECK(isnan(model_loss_backward(m, labels, 4, &correct, true)), "n differs from the forward's");
    model_free(m);

    /* the checkpoint's BN conventions rule: momentum 0 leaves the running mean alone, and
     * another eps changes eval-mode logits */
    kv_set_double(&c->arch, "bn_momentum", 0.0);
    float *rm = ck_find(c, "s1.b0.bn1.mean")->data;
    rm[0] = rm[1] = 0;   /* the train-mode forward above moved them */
    m = model_build(c, &ops_ref, 5, err);
    model_forward(m, x, 3, true);
    CHECK(rm[0] == 0 && rm[1] == 0, "momentum 0: running mean %g", rm[0]);
    model_free(m);
    kv_set_double(&c->arch, "bn_momentum", 0.1);
    m = model_build(c, &ops_ref, 5, err);
    model_forward(m, x, 3, true);
    CHECK(rm[0] != 0, "momentum 0.1 moves the running mean");
    model_forward(m, x, 3, false);
    float before[21];
    memcpy(before, model_logits(m), sizeof before);
    model_free(m);
    kv_set_double(&c->arch, "bn_eps", 0.5);
    m = model_build(c, &ops_ref, 5, err);
    model_forward(m, x, 3, false);
    CHECK(memcmp(before, model_logits(m), sizeof before) != 0, "bn_eps honoured");
    model_free(m);
    kv_set_double(&c->arch, "bn_eps", 1e-5);

    /* build refuses checkpoints that do not describe the model */
    ck_tensor *t = ck_find(c, "s2.b0.conv1.w");
    t->shape[1] = 5;
    CHECK(model_build(c, &ops_ref, 2, err) == NULL && strstr(err, "s2.b0.conv1.w"), "wrong shape: %s", err);
    t->shape[1] = 4;
    kv_set_int(&c->arch, "depth", 14);
    CHECK(model_build(c, &ops_ref, 2, err) == NULL && strstr(err, "lacks"), "missing tensor: %s", err);
    kv_set_int(&c->arch, "depth", 8);
    kv_set_str(&c->arch, "name", "bottleneck");
    CHECK(model_build(c, &ops_ref, 2, err) == NULL, "wrong arch");
    free(x);
    ck_free(c);
}

/* Finite differences of the whole model's loss against model_loss_backward. ReLU's kinks
 * make a network of thousands of activations only piecewise smooth: any step crosses some
 * kinks and central differences then disagree with the true gradient by several percent
 * (measured: 5-15% at steps 1e-2..1e-3). The test therefore swaps ReLU for softplus
 * through the ops table (y = log(1+e^x), dy/dx = 1 - e^-y, a function of the output as
 * relu_bwd's contract has it): the model's wiring of forward and backward is what is under
 * test here, ReLU itself is tested with the ops. The loss is then smooth and float central
 * differences with h = 1e-2 * max(|p|, 0.05) agree to O(h^2) plus float rounding of the
 * loss (~1e-6 absolute, divided by 2h: up to 1e-4, as much as the smallest gradients).
 * So each tensor's checked elements are its largest gradient and random ones at least 0.2
 * of it; relative error < 5e-2 is required. Conv biases just before a BN have a zero gradient (BN removes any shift):
 * checked as such. */
static void softplus_fwd(ops *o, size_t n, const float *x, float *y) {
    (void)o;
    for (size_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] + log1pf(expf(-x[i])) : log1pf(expf(x[i]));
}
static void softplus_bwd(ops *o, size_t n, const float *y, const float *dy, float *dx) {
    (void)o;
    for (size_t i = 0; i < n; i++) dx[i] = dy[i] * -expm1f(-y[i]);
}

static void grad_check(const char *arch, int depth, int width, const char *const *names, int nnames) {
    char err[256];
    checkpoint *c = model_init(arch, depth, width, 10, NULL, 5, err);
    const int n = 3;
    ops smooth = ops_ref;
    smooth.relu_fwd = softplus_fwd, smooth.relu_bwd = softplus_bwd;
    model *m = model_build(c, &smooth, n, err);
    CHECK(m != NULL, "build %s", err);
    if (!m) return;
    float *x = random_images(n, 2);
    uint8_t labels[3] = {3, 7, 1};
    int correct;
    model_forward(m, x, n, true);
    model_loss_backward(m, labels, n, &correct, true);
    rng r;
    rng_seed(&r, 11, 0);
    int checked = 0;
    double worst = 0;
    for (int k = 0; k < nnames; k++) {
        int pi = -1;
        for (int i = 0; i < model_nparams(m); i++)
            if (!strcmp(model_param(m, i)->name, names[k])) pi = i;
        CHECK(pi >= 0, "%s is a trainable parameter", names[k]);
        if (pi < 0) continue;
        ck_tensor *t = model_param(m, pi);
        float *p = t->data;
        const float *g = model_grad(m, pi);
        float gmax = 0;
        for (size_t i = 0; i < t->numel; i++) gmax = fmaxf(gmax, fabsf(g[i]));
        size_t nl = strlen(names[k]);
        if (strstr(names[k], "conv") && nl > 2 && !strcmp(names[k] + nl - 2, ".b") && !strstr(names[k], "short")) {
            CHECK(gmax < 1e-6f, "%s: conv bias before BN: gradient %g", names[k], gmax);
            continue;
        }
        CHECK(gmax > 0, "%s has a nonzero gradient", names[k]);
        size_t imax = 0;
        for (size_t i = 0; i < t->numel; i++)
            if (fabsf(g[i]) == gmax) imax = i;
        for (int trial = 0, done = 0; trial < 60 && done < 3; trial++) {
            size_t i = trial ? (size_t)rng_below(&r, t->numel) : imax;
            float gi = g[i];
            if (fabsf(gi) < 0.2f * gmax) continue;
            float p0 = p[i], h = 1e-2f * fmaxf(fabsf(p0), 0.05f);
            p[i] = p0 + h;
            model_forward(m, x, n, true);
            double lp = model_loss_backward(m, labels, n, &correct, false);
            p[i] = p0 - h;
            model_forward(m, x, n, true);
            double lm = model_loss_backward(m, labels, n, &correct, false);
            p[i] = p0;
            double fd = (lp - lm) / (double)((p0 + h) - (p0 - h));
            CHECK(fabs(fd - gi) <= 5e-2 * fabs(gi) + 1e-4 * gmax, "%s %s[%zu]: backward %.6g, differences %.6g", arch,
                  names[k], i, gi, fd);
            done++, checked++;
            if (fabs(fd - gi) / fabs(gi) > worst) worst = fabs(fd - gi) / fabs(gi);
        }
    }
    CHECK(checked >= 2 * (nnames - 2), "%d elements checked", checked);
    printf("  # %s-%d: %d elements, worst relative error %.2g\n", arch, depth, checked, worst);
    free(x);
    model_free(m);
    ck_free(c);
}

TEST(gradients_resnet) {
    static const char *const names[] = {"stem.conv.w", "stem.bn.gamma", "s1.b0.conv2.w", "s1.b0.bn1.gamma",
                                        "s1.b0.bn2.beta", "s2.b0.short.conv.w", "s2.b0.short.bn.gamma",
                                        "s3.b0.conv1.w", "s3.b0.bn2.beta", "fc.w", "fc.b"};
    grad_check("resnet", 8, 4, names, (int)(sizeof names / sizeof *names));
}

TEST(gradients_bottleneck) {
    static const char *const names[] = {"stem.conv.w", "stem.conv.b", "s1.b0.conv1.w", "s1.b0.bn3.gamma",
                                        "s2.b0.short.conv.w", "s2.b0.short.conv.b", "s3.b0.conv2.b",
                                        "head.bn.gamma", "head.bn.beta", "fc.w"};
    grad_check("bottleneck", 11, 2, names, (int)(sizeof names / sizeof *names));
}

/* ---- what the backward computes for each regime: a counting ops table ---------------- */
static int n_filter, n_data, n_bn, n_lin_filter, n_lin_data;
static void c_conv_bwd_filter(ops *o, const conv_desc *d, const float *x, const float *dy, float *dw, float *db) {
    n_filter++;
    ops_ref.conv_bwd_filter(o, d, x, dy, dw, db);
}
static void c_conv_bwd_data(ops *o, const conv_desc *d, const float *dy, const float *w, float *dx) {
    n_data++;
    ops_ref.conv_bwd_data(o, d, dy, w, dx);
}
static void c_bn_bwd(ops *o, const bn_desc *d, const float *x, const float *dy, const float *gamma, const float *sm,
                     const float *si, float *dx, float *dg, float *db) {
    n_bn++;
    ops_ref.bn_bwd(o, d, x, dy, gamma, sm, si, dx, dg, db);
}
static void c_lin_filter(ops *o, int n, int in, int out, const float *x, const float *dy, float *dw, float *db) {
    n_lin_filter++;
    ops_ref.linear_bwd_filter(o, n, in, out, x, dy, dw, db);
}
static void c_lin_data(ops *o, int n, int in, int out, const float *dy, const float *w, float *dx) {
    n_lin_data++;
    ops_ref.linear_bwd_data(o, n, in, out, dy, w, dx);
}

/* Runs one training step of a resnet-8 (9 convs, 9 BNs) under a regime; returns the
 * model's gradients copied into *grads (names in *names) */
static int run_regime(const char *regime, float ***grads, char (**names)[CK_NAMELEN]) {
    char err[256];
    ops counting = ops_ref;
    counting.conv_bwd_filter = c_conv_bwd_filter, counting.conv_bwd_data = c_conv_bwd_data;
    counting.bn_bwd = c_bn_bwd, counting.linear_bwd_filter = c_lin_filter, counting.linear_bwd_data = c_lin_data;
    checkpoint *c = model_init("resnet", 8, 4, 10, NULL, 9, err);
    freeze_regime(c, regime, 2, 1, err);
    model *m = model_build(c, &counting, 2, err);
    float *x = random_images(2, 4);
    uint8_t labels[2] = {0, 9};
    int correct;
    n_filter = n_data = n_bn = n_lin_filter = n_lin_data = 0;
    model_forward(m, x, 2, true);
    double loss = model_loss_backward(m, labels, 2, &correct, true);
    CHECK(isfinite(loss), "%s: loss", regime);
    int np = model_nparams(m);
    *grads = malloc(sizeof **grads * (size_t)(np + 1));
    *names = malloc(sizeof **names * (size_t)(np + 1));
    for (int i = 0; i < np; i++) {
        ck_tensor *t = model_param(m, i);
        CHECK(t && t->trainable, "%s: param %d trainable", regime, i);
        (*grads)[i] = malloc(t->numel * sizeof(float));
        memcpy((*grads)[i], model_grad(m, i), t->numel * sizeof(float));
        snprintf((*names)[i], CK_NAMELEN, "%s", t->name);
    }
    free(x);
    model_free(m);
    ck_free(c);
    return np;
}
static void free_grads(float **g, int n, void *names) {
    for (int i = 0; i < n; i++) free(g[i]);
    free(g);
    free(names);
}

TEST(frozen_backward) {
    float **ga, **gb;
    char(*na)[CK_NAMELEN], (*nb)[CK_NAMELEN];
    int npa = run_regime("all", &ga, &na);
    CHECK(n_filter == 9 && n_data == 8 && n_bn == 9 && n_lin_filter == 1 && n_lin_data == 1,
          "all: filter %d data %d bn %d (want 9 8 9)", n_filter, n_data, n_bn);
    CHECK(npa == 9 + 18 + 2, "all: %d trainable tensors", npa);
    int npb = run_regime("bn", &gb, &nb);
    CHECK(n_filter == 0 && n_data == 8 && n_bn == 9 && n_lin_filter == 0 && n_lin_data == 1,
          "bn: filter %d data %d bn %d lin %d/%d", n_filter, n_data, n_bn, n_lin_filter, n_lin_data);
    CHECK(npb == 18, "bn: %d trainable tensors", npb);
    /* a tensor's gradient does not depend on what else trains */
    int matched = 0;
    for (int i = 0; i < npb; i++)
        for (int j = 0; j < npa; j++)
            if (!strcmp(nb[i], na[j])) {
                size_t numel = strstr(nb[i], "stem") || strstr(nb[i], "s1.") ? 4 : strstr(nb[i], "s2.") ? 8 : 16;
                float d = 0;
                for (size_t e = 0; e < numel; e++) d = fmaxf(d, fabsf(ga[j][e] - gb[i][e]));
                CHECK(d <= 1e-6f, "%s: bn-only and all gradients differ by %g", nb[i], d);
                matched++;
            }
    CHECK(matched == 18, "matched %d", matched);
    free_grads(gb, npb, nb);
    npb = run_regime("output", &gb, &nb);
    CHECK(n_filter == 0 && n_data == 0 && n_bn == 0 && n_lin_filter == 1 && n_lin_data == 0,
          "output: filter %d data %d bn %d lin %d/%d", n_filter, n_data, n_bn, n_lin_filter, n_lin_data);
    CHECK(npb == 2, "output: %d", npb);
    free_grads(gb, npb, nb);
    npb = run_regime("none", &gb, &nb);
    CHECK(n_filter + n_data + n_bn + n_lin_filter + n_lin_data == 0, "none: no backward work");
    CHECK(npb == 0, "none: %d", npb);
    free_grads(gb, npb, nb);
    npb = run_regime("random-k", &gb, &nb);
    CHECK(n_filter == 9 && n_data == 8 && n_lin_filter == 0, "random-k: filter %d data %d", n_filter, n_data);
    CHECK(npb == 9, "random-k: %d conv weights", npb);
    free_grads(gb, npb, nb);
    free_grads(ga, npa, na);
}

TEST(memory) {
    char err[256];
    checkpoint *c = model_init("resnet", 20, 16, 10, NULL, 1, err);
    model *m = model_build(c, &ops_ref, 128, err);
    CHECK(m != NULL, "%s", err);
    if (!m) return;
    float *x = random_images(2, 1);
    uint8_t labels[2] = {1, 2};
    int correct;
    model_forward(m, x, 2, true);          /* the gradient pool reaches its size whatever n */
    model_loss_backward(m, labels, 2, &correct, true);
    size_t bytes = model_bytes(m);
    printf("  # resnet-20, batch 128, all trainable: %.1f MB\n", (double)bytes / 1e6);
    CHECK(bytes < 300e6, "%.1f MB", (double)bytes / 1e6);
    CHECK(bytes > 150e6, "%.1f MB is less than the activations alone", (double)bytes / 1e6);
    free(x);
    model_free(m);
    ck_free(c);
}

static uint64_t masked(const checkpoint *c) {
    uint64_t n = 0;
    for (int i = 0; i < c->nt; i++)
        if (!strcmp(c->t[i].role, "mask"))
            for (size_t j = 0; j < c->t[i].numel; j++) n += ((uint8_t *)c->t[i].data)[j];
    return n;
}

TEST(regimes) {
    char err[256];
    checkpoint *c = model_init("resnet", 20, 16, 10, NULL, 1, err);
    static const struct { const char *r; uint64_t n; } want[] = {
        {"bn", 1568},  {"gamma", 784},    {"beta", 784},     {"output", 650},
        {"bn+output", 2218}, {"none", 0}, {"all", 272474}, {"random-k", 1568}};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        CHECK(freeze_regime(c, want[i].r, 2, 1, err) == 0, "%s: %s", want[i].r, err);
        CHECK(freeze_count_trainable(c) == want[i].n, "%s: %llu trainable", want[i].r,
              (unsigned long long)freeze_count_trainable(c));
    }
    /* random-k: exactly k per output channel of every conv, nothing else trainable */
    CHECK(ck_count(c, "mask", false) == ck_count(c, "param", false) - 1568 - 650, "masks cover the conv weights");
    bool per_channel = true;
    for (int i = 0; i < c->nt; i++) {
        ck_tensor *t = &c->t[i];
        if (strcmp(t->role, "mask")) continue;
        size_t cout = (size_t)t->shape[0], fan = t->numel / cout;
        for (size_t o = 0; o < cout; o++) {
            int s = 0;
            for (size_t j = 0; j < fan; j++) s += ((uint8_t *)t->data)[o * fan + j];
            per_channel &= s == 2;
        }
    }
    CHECK(per_channel, "2 per channel");
    CHECK(!ck_find(c, "fc.w")->trainable && !ck_find(c, "stem.bn.gamma")->trainable, "random-k trains convs only");
    checkpoint *d = ck_clone(c), *e = ck_clone(c);
    freeze_regime(d, "random-k", 2, 1, err);
    freeze_regime(e, "random-k", 2, 2, err);
    CHECK(same_tensors(c, d), "same seed, same choice");
    CHECK(!same_tensors(c, e), "another seed, another choice");
    freeze_regime(d, "random-k", 3, 1, err);
    CHECK(freeze_count_trainable(d) == 2352 && masked(d) == 2352, "k=3: %llu", (unsigned long long)masked(d));
    /* a glob over a masked tensor trains all of it */
    CHECK(freeze_glob(d, "stem.conv.w", true) == 1, "glob stem");
    CHECK(freeze_count_trainable(d) == 2352 - 48 + 432, "stem fully trainable: %llu",
          (unsigned long long)freeze_count_trainable(d));
    /* a new regime drops the masks */
    freeze_regime(d, "bn", 2, 1, err);
    CHECK(ck_count(d, "mask", false) == 0 && freeze_count_trainable(d) == 1568, "masks dropped");
    CHECK(freeze_glob(d, "fc.*", true) == 2 && freeze_count_trainable(d) == 2218, "bn + glob fc.*");
    CHECK(freeze_glob(d, "*.beta", false) == 21 && freeze_count_trainable(d) == 784 + 650, "freeze-glob beta");
    CHECK(freeze_glob(d, "nothing*", true) == 0, "glob matching nothing");
    CHECK(freeze_glob(d, "stem.bn.mean", true) == 0, "buffers never trainable");
    CHECK(freeze_regime(d, "bn-only", 2, 1, err) == -1 && strstr(err, "bn-only"), "unknown regime");
    CHECK(freeze_regime(d, "random-k", 0, 1, err) == -1, "k = 0");
    /* the model honours masks: model_mask gives them to the optimizer */
    model *m = model_build(c, &ops_ref, 1, err);
    CHECK(m && model_nparams(m) == 21, "random-k: 21 conv weights");
    int with_mask = 0;
    for (int i = 0; m && i < model_nparams(m); i++) with_mask += model_mask(m, i) != NULL;
    CHECK(with_mask == 21, "%d masks", with_mask);
    model_free(m);
    ck_free(c), ck_free(d), ck_free(e);

    c = model_init("bottleneck", 20, 16, 10, NULL, 1, err);
    freeze_regime(c, "bn", 2, 1, err);
    CHECK(freeze_count_trainable(c) == 4000, "bottleneck bn");
    freeze_regime(c, "output", 2, 1, err);
    CHECK(freeze_count_trainable(c) == 2570, "bottleneck output");
    ck_free(c);
}

int main(void) {
    RUN(param_counts);
    RUN(bad_arch);
    RUN(init_determinism);
    RUN(init_statistics);
    RUN(forward_shapes);
    RUN(gradients_resnet);
    RUN(gradients_bottleneck);
    RUN(frozen_backward);
    RUN(memory);
    RUN(regimes);
    return DONE();
}
