/* train_compare.h: whole training steps of one network on two backends, compared tensor by
 * tensor. Used by tests/test_devmem.c (a backend with memory of its own against ref: the
 * same ops, so tol 0, bit for bit) and tests/test_cuda_train.c (the GPU against the CPU,
 * within a tolerance). Include after check.h and testvec.h (its err()).
 *
 * compare_training runs `steps` steps of SGD (momentum 0.9, rate lr, the update done here on
 * the host from model_grad, then model_upload_params, as lib/train.c does) from the same
 * initial checkpoint on backends a and b, with n random images and labels; after the steps
 * both models are synced (model_sync) and every tensor of the two checkpoints compared:
 * max|a - b| <= tol * (max|a| + 1) for what training moves, the per-step losses within a
 * relative tol (tol 0: every tensor's bits equal), and frozen tensors bit-identical to the
 * initial ones on both. Returns the worst tensor error seen. */
#ifndef BN_TRAIN_COMPARE_H
#define BN_TRAIN_COMPARE_H
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "freeze.h"
#include "model.h"
#include "ops.h"
#include "rng.h"

static double compare_training(ops *a, ops *b, const char *arch, int depth, int width, const char *regime, int n,
                               int steps, float lr, double tol, const char *what) {
    char msg[256];
    checkpoint *init = model_init(arch, depth, width, 10, "uniform", 17, msg);
    if (!init || freeze_regime(init, regime, 2, 3, msg)) {
        CHECK(0, "%s: %s", what, msg);
        ck_free(init);
        return INFINITY;
    }
    rng r;
    rng_seed(&r, 23, 5);
    float *x = malloc((size_t)n * 3072 * sizeof *x);
    uint8_t *lab = malloc((size_t)n);
    for (size_t i = 0; i < (size_t)n * 3072; i++) x[i] = (float)rng_normal(&r);
    for (int i = 0; i < n; i++) lab[i] = (uint8_t)rng_below(&r, 10);
    checkpoint *c[2] = {ck_clone(init), ck_clone(init)};
    double *loss[2] = {calloc((size_t)steps, sizeof(double)), calloc((size_t)steps, sizeof(double))};
    ops *be[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        model *m = model_build(c[k], be[k], n, msg);
        CHECK(m != NULL, "%s on %s: %s", what, be[k]->name, msg);
        if (!m) continue;
        /* momentum buffers, host side like lib/optim.c's */
        int np = model_nparams(m);
        float **mom = calloc((size_t)np + 1, sizeof *mom);
        for (int i = 0; i < np; i++) mom[i] = calloc(model_param(m, i)->numel, sizeof(float));
        for (int s = 0; s < steps; s++) {
            model_forward(m, x, n, true);
            loss[k][s] = model_loss_backward(m, lab, n, NULL, true);
            for (int i = 0; i < np; i++) {
                ck_tensor *t = model_param(m, i);
                float *w = t->data;
                const float *g = model_grad(m, i);
                for (size_t j = 0; j < t->numel; j++) {
                    mom[i][j] = 0.9f * mom[i][j] + g[j];
                    w[j] -= lr * mom[i][j];
                }
            }
            model_upload_params(m);
        }
        model_sync(m);
        for (int i = 0; i < np; i++) free(mom[i]);
        free(mom);
        model_free(m);
    }
    double worst = 0.0;
    for (int s = 0; s < steps; s++) {
        double e = fabs(loss[0][s] - loss[1][s]) / (fabs(loss[0][s]) + 1e-30);
        CHECK(e <= tol && isfinite(loss[0][s]), "%s: step %d loss %.9g (%s) vs %.9g (%s)", what, s + 1, loss[0][s],
              a->name, loss[1][s], b->name);
    }
    CHECK(loss[0][steps - 1] < loss[0][0], "%s: the loss goes down (%g -> %g)", what, loss[0][0],
          loss[0][steps - 1]);
    int moved = 0;
    for (int i = 0; i < init->nt; i++) {
        const ck_tensor *t0 = &init->t[i], *ta = &c[0]->t[i], *tb = &c[1]->t[i];
        if (t0->dtype != DT_F32) continue;
        size_t bytes = t0->numel * sizeof(float);
        if (strcmp(t0->role, "param") == 0 && !t0->trainable) {
            CHECK(!memcmp(ta->data, t0->data, bytes) && !memcmp(tb->data, t0->data, bytes), "%s: frozen %s changed",
                  what, t0->name);
            continue;
        }
        moved += memcmp(ta->data, t0->data, bytes) != 0;
        /* tol 0: the same bits (-0 against +0 counts too) */
        double e = tol == 0.0 && memcmp(ta->data, tb->data, bytes) ? INFINITY : err(tb->data, ta->data, t0->numel);
        if (e > worst) worst = e;
        CHECK(e <= tol, "%s: %s differs by %.3g (tolerance %.3g)", what, t0->name, e, tol);
    }
    CHECK(moved > 0, "%s: training changed nothing", what);
    ck_free(c[0]), ck_free(c[1]), ck_free(init);
    free(loss[0]), free(loss[1]), free(x), free(lab);
    return worst;
}
#endif
