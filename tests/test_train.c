/* test_train.c: schedules, optimizers, augmentation, the training loop (overfitting, frozen
 * tensors, masks, NaN), determinism and bit-exact resume. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "augment.h"
#include "check.h"
#include "testds.h"
#include "checkpoint.h"
#include "model.h"
#include "optim.h"
#include "schedule.h"
#include "train.h"

static const double PI = 3.14159265358979323846;

/* ---- schedules ------------------------------------------------------------------------ */
TEST(schedule_keras_cosine) {
    schedule s;
    sched_defaults(&s, SCHED_KERAS_COSINE);
    s.lr = 0.1, s.decay_steps = 1000;
    CHECK_CLOSE(schedule_lr(&s, 0, 0), 0.1, 1e-12, 0, "step 0");
    CHECK_CLOSE(schedule_lr(&s, 250, 0), 0.1 * 0.5 * (1 + cos(PI / 4)), 1e-12, 0, "step 250");
    CHECK_CLOSE(schedule_lr(&s, 500, 3), 0.05, 1e-12, 0, "step 500");
    CHECK_CLOSE(schedule_lr(&s, 1000, 0), 0.0, 1e-12, 0, "step 1000");
    CHECK_CLOSE(schedule_lr(&s, 5000, 0), 0.0, 1e-12, 0, "past decay_steps");
    s.alpha = 0.1;   /* floor: lr*alpha */
    CHECK_CLOSE(schedule_lr(&s, 5000, 0), 0.01, 1e-12, 0, "alpha floor");
    CHECK_CLOSE(schedule_lr(&s, 500, 0), 0.1 * (0.9 * 0.5 + 0.1), 1e-12, 0, "alpha mid");
}

TEST(schedule_keras_linear_cosine) {
    schedule s;
    sched_defaults(&s, SCHED_KERAS_LINEAR_COSINE);
    s.lr = 0.1, s.decay_steps = 1000;
    CHECK_CLOSE(schedule_lr(&s, 0, 0), 0.1 * (1.0 + 0.001), 1e-12, 0, "step 0");
    /* step 250: linear 0.75, cosine 0.5*(1+cos(pi*0.25)) */
    CHECK_CLOSE(schedule_lr(&s, 250, 0), 0.1 * (0.75 * 0.5 * (1 + cos(PI * 0.25)) + 0.001), 1e-12, 0, "step 250");
    CHECK_CLOSE(schedule_lr(&s, 500, 0), 0.1 * (0.5 * 0.5 + 0.001), 1e-12, 0, "step 500");
    CHECK_CLOSE(schedule_lr(&s, 1000, 0), 0.1 * 0.001, 1e-12, 0, "step 1000");
    CHECK_CLOSE(schedule_lr(&s, 4000, 0), 0.1 * 0.001, 1e-12, 0, "past decay_steps");
}

TEST(schedule_keras_cosine_restarts) {
    schedule s;
    sched_defaults(&s, SCHED_KERAS_COSINE_RESTARTS);
    s.lr = 0.1, s.decay_steps = 1000;   /* t_mul 2, m_mul 1: periods 1000, 2000, 4000 */
    CHECK_CLOSE(schedule_lr(&s, 0, 0), 0.1, 1e-12, 0, "step 0");
    CHECK_CLOSE(schedule_lr(&s, 500, 0), 0.05, 1e-12, 0, "step 500");
    CHECK_CLOSE(schedule_lr(&s, 999, 0), 0.1 * 0.5 * (1 + cos(PI * 0.999)), 1e-12, 0, "step 999");
    CHECK_CLOSE(schedule_lr(&s, 1000, 0), 0.1, 1e-9, 0, "restart at 1000");
    CHECK_CLOSE(schedule_lr(&s, 2000, 0), 0.05, 1e-9, 0, "middle of the second period");
    CHECK_CLOSE(schedule_lr(&s, 2500, 0), 0.1 * 0.5 * (1 + cos(PI * 0.75)), 1e-9, 0, "step 2500");
    CHECK_CLOSE(schedule_lr(&s, 3000, 0), 0.1, 1e-9, 0, "restart at 3000");
    CHECK_CLOSE(schedule_lr(&s, 5000, 0), 0.05, 1e-9, 0, "middle of the third period");
    s.m_mul = 0.5;   /* each restart peaks at half the previous */
    CHECK_CLOSE(schedule_lr(&s, 3000, 0), 0.025, 1e-9, 0, "m_mul 0.5, second restart");
    s.m_mul = 1.0, s.t_mul = 1.0;   /* fixed periods */
    CHECK_CLOSE(schedule_lr(&s, 1500, 0), 0.05, 1e-12, 0, "t_mul 1, step 1500");
    CHECK_CLOSE(schedule_lr(&s, 2250, 0), 0.1 * 0.5 * (1 + cos(PI * 0.25)), 1e-12, 0, "t_mul 1, step 2250");
}

TEST(schedule_rampup) {
    schedule s;
    sched_defaults(&s, SCHED_RAMPUP);
    s.lr = 4e-4;
    /* hand-computed: start 1e-5, max 4e-4, 5 ramp epochs, then (max-min)*0.8^(e-5)+min */
    const double want[9] = {1e-5, 8.8e-5, 1.66e-4, 2.44e-4, 3.22e-4, 4e-4, 3.22e-4, 2.596e-4, 2.0968e-4};
    for (int e = 0; e < 9; e++) {
        char what[32];
        snprintf(what, sizeof what, "epoch %d", e);
        CHECK_CLOSE(schedule_lr(&s, 12345, e), want[e], 1e-15, 1e-9, what);
    }
}

TEST(schedule_step_cosine) {
    schedule s;
    sched_defaults(&s, SCHED_STEP);
    s.lr = 0.1, s.gamma = 0.1, s.nmilestones = 2, s.milestones[0] = 80, s.milestones[1] = 120;
    CHECK_CLOSE(schedule_lr(&s, 0, 79), 0.1, 1e-15, 0, "epoch 79");
    CHECK_CLOSE(schedule_lr(&s, 0, 80), 0.01, 1e-15, 0, "epoch 80");
    CHECK_CLOSE(schedule_lr(&s, 0, 119), 0.01, 1e-15, 0, "epoch 119");
    CHECK_CLOSE(schedule_lr(&s, 0, 120), 0.001, 1e-15, 0, "epoch 120");
    sched_defaults(&s, SCHED_COSINE);
    s.lr = 0.2, s.total_steps = 100, s.steps_per_epoch = 10;
    CHECK_CLOSE(schedule_lr(&s, 0, 0), 0.2, 1e-15, 0, "cosine start");
    CHECK_CLOSE(schedule_lr(&s, 50, 5), 0.1, 1e-12, 0, "cosine middle");
    CHECK_CLOSE(schedule_lr(&s, 100, 10), 0.0, 1e-12, 0, "cosine end");
    s.warmup = 2;   /* 20 warm-up steps, then cosine over 80 */
    CHECK_CLOSE(schedule_lr(&s, 0, 0), 0.2 / 20, 1e-15, 0, "warm-up first step");
    CHECK_CLOSE(schedule_lr(&s, 19, 1), 0.2, 1e-15, 0, "warm-up last step");
    CHECK_CLOSE(schedule_lr(&s, 60, 6), 0.1, 1e-12, 0, "after warm-up, middle");
    CHECK(sched_parse("keras-cosine-restarts") == SCHED_KERAS_COSINE_RESTARTS && sched_parse("nope") < 0, "parse");
}

/* ---- optimizers ----------------------------------------------------------------------- */
TEST(sgd_steps) {
    float w[3] = {1.0f, -2.0f, 0.5f}, g[3] = {0.5f, 0.25f, -1.0f}, buf[3] = {0};
    sgd_update(w, g, NULL, NULL, 3, 0.1, 0, false, 0);   /* plain: w - lr g */
    CHECK_CLOSE(w[0], 0.95, 1e-7, 0, "plain 0");
    CHECK_CLOSE(w[2], 0.6, 1e-7, 0, "plain 2");
    float v[2] = {1.0f, 2.0f}, gg[2] = {0.5f, -1.0f};
    /* momentum 0.9, wd 0.01, two steps by hand:
     * step 1: d = g + wd w = (0.51, -0.98); buf = d; w = (1 - 0.051, 2 + 0.098) = (0.949, 2.098)
     * step 2: d = (0.5 + 0.00949, -1 + 0.02098) = (0.50949, -0.97902);
     *         buf = 0.9*(0.51, -0.98) + d = (0.96849, -1.86102); w -= 0.1 buf */
    sgd_update(v, gg, buf, NULL, 2, 0.1, 0.9, false, 0.01);
    CHECK_CLOSE(v[0], 0.949, 1e-6, 0, "momentum step 1");
    CHECK_CLOSE(v[1], 2.098, 1e-6, 0, "momentum step 1 (1)");
    sgd_update(v, gg, buf, NULL, 2, 0.1, 0.9, false, 0.01);
    CHECK_CLOSE(buf[0], 0.96849, 1e-6, 0, "buffer step 2");
    CHECK_CLOSE(v[0], 0.949 - 0.096849, 1e-6, 0, "momentum step 2");
    CHECK_CLOSE(v[1], 2.098 + 0.186102, 1e-6, 0, "momentum step 2 (1)");
    /* Nesterov, two steps: step 1 buf = g, d = g + m buf = 1.9 g; step 2 buf = 1.9 g, d = g + 0.9*1.9 g */
    float n[1] = {1.0f}, ng[1] = {1.0f}, nb[1] = {0};
    sgd_update(n, ng, nb, NULL, 1, 0.1, 0.9, true, 0);
    CHECK_CLOSE(n[0], 1.0 - 0.19, 1e-6, 0, "nesterov step 1");
    sgd_update(n, ng, nb, NULL, 1, 0.1, 0.9, true, 0);
    CHECK_CLOSE(n[0], 1.0 - 0.19 - 0.1 * (1 + 0.9 * 1.9), 1e-6, 0, "nesterov step 2");
}

TEST(adam_steps) {
    float w[2] = {1.0f, -1.0f}, g[2] = {0.2f, -0.4f}, m[2] = {0}, v[2] = {0};
    double lr = 0.001, b1 = 0.9, b2 = 0.999, eps = 1e-7;
    adam_update(w, g, m, v, NULL, 2, lr, b1, b2, eps, 0, 1);
    /* t=1: m = 0.1 g, v = 0.001 g^2, lr_t = lr sqrt(0.001)/0.1; step = lr_t m/(sqrt v + eps) ~ lr sign(g) */
    double lr_t = lr * sqrt(1 - b2) / (1 - b1);
    double m0 = 0.1 * 0.2, v0 = 0.001 * 0.04;
    CHECK_CLOSE(w[0], 1.0 - lr_t * m0 / (sqrt(v0) + eps), 1e-7, 0, "adam step 1");
    CHECK_CLOSE(w[0], 1.0 - 0.001, 1e-6, 0, "adam step 1 ~ lr");
    CHECK_CLOSE(w[1], -1.0 + 0.001, 1e-6, 0, "adam step 1 (1)");
    CHECK_CLOSE(m[1], -0.04, 0, 1e-5, "first moment");
    CHECK_CLOSE(v[1], 0.001 * 0.16, 0, 1e-4, "second moment");
    /* t=2 with a different gradient, by hand */
    float g2[2] = {-0.2f, 0.0f};
    double w0 = w[0];
    adam_update(w, g2, m, v, NULL, 2, lr, b1, b2, eps, 0, 2);
    double m1 = 0.9 * m0 + 0.1 * -0.2, v1 = 0.999 * v0 + 0.001 * 0.04;
    double lr_t2 = lr * sqrt(1 - b2 * b2) / (1 - b1 * b1);
    CHECK_CLOSE(w[0], w0 - lr_t2 * m1 / (sqrt(v1) + eps), 1e-7, 0, "adam step 2");
}

TEST(optim_masks) {
    float w[4] = {1, 2, 3, 4}, g[4] = {1, 1, 1, 1}, b[4] = {0}, m[4] = {0}, v[4] = {0};
    const uint8_t mask[4] = {1, 0, 1, 0};
    sgd_update(w, g, b, mask, 4, 0.1, 0.9, false, 0.5);
    CHECK(w[1] == 2.0f && w[3] == 4.0f && b[1] == 0.0f, "masked-out elements changed: %g %g", w[1], w[3]);
    CHECK_CLOSE(w[0], 1 - 0.1 * 1.5, 1e-6, 0, "masked-in element");
    adam_update(w, g, m, v, mask, 4, 0.1, 0.9, 0.999, 1e-7, 0.5, 1);
    CHECK(w[1] == 2.0f && w[3] == 4.0f && m[3] == 0.0f && v[3] == 0.0f, "adam: masked-out elements changed");
    CHECK(w[2] < 3.0f - 0.1f, "adam: masked-in element unchanged");
}

/* ---- augmentation --------------------------------------------------------------------- */

TEST(augment_params) {
    rng r;
    rng_seed(&r, 5, 0);
    int flips = 0, seen_dy[9] = {0}, minb = 1, maxb = 0;
    for (int i = 0; i < 4000; i++) {
        aug_param p;
        aug_draw(&r, AUG_CROP_FLIP, &p);
        CHECK(p.dy >= 0 && p.dy <= 8 && p.dx >= 0 && p.dx <= 8, "offset out of range: %d %d", p.dy, p.dx);
        if (p.dy >= 0 && p.dy <= 8) seen_dy[p.dy]++;
        flips += p.flip;
        aug_draw(&r, AUG_SEED, &p);
        CHECK(p.flip == 0 && p.delta >= -0.5f && p.delta < 0.5f, "seed augmentation: flip %d delta %g", p.flip, p.delta);
        if (p.delta < -0.45f) minb = 0;
        if (p.delta > 0.45f) maxb = 1;
    }
    for (int k = 0; k <= 8; k++) CHECK(seen_dy[k] > 300, "offset %d drawn %d times of 4000", k, seen_dy[k]);
    CHECK(flips > 1800 && flips < 2200, "%d flips of 4000", flips);
    CHECK(minb == 0 && maxb == 1, "brightness does not span [-0.5, 0.5)");
}

TEST(augment_fill) {
    dataset d = make_ds(2, 3, false);
    float *x = malloc(2 * 3072 * sizeof *x);
    uint32_t idx[2] = {1, 0};
    batch_fill(x, &d, idx, NULL, 2, AUG_NONE, NULL);
    CHECK(x[5] == d.pixels[3072 + 5] / 255.0f && x[3072 + 7] == d.pixels[7] / 255.0f, "plain scaling");
    /* crop at (0,0) of the padded image: output (y,x) = input (y-4, x-4), zero outside */
    aug_param p[2] = {{0, 0, 0, 0}, {8, 8, 1, 0}};
    batch_fill(x, &d, idx, p, 2, AUG_CROP_FLIP, NULL);
    const uint8_t *a = d.pixels + 3072, *b = d.pixels;
    CHECK(x[0] == 0.0f && x[3 * 32 + 3] == 0.0f, "padding is zero");
    CHECK(x[4 * 32 + 4] == a[0] / 255.0f && x[1024 + 10 * 32 + 20] == a[1024 + 6 * 32 + 16] / 255.0f, "shifted crop");
    /* image 2: crop at (8,8) then mirror: out(y,x) = in(y+4, 31-x+4) */
    const float *x2 = x + 3072;
    CHECK(x2[0 * 32 + 31] == b[4 * 32 + 4] / 255.0f, "crop + flip corner");
    CHECK(x2[2048 + 10 * 32 + 5] == b[2048 + 14 * 32 + 30] / 255.0f, "crop + flip inside");
    CHECK(x2[27 * 32 + 0] == 0.0f && x2[28 * 32 + 10] == 0.0f, "crop + flip padding");
    /* brightness: +0.49 then clip */
    aug_param q[2] = {{4, 4, 0, 0.49f}, {4, 4, 0, -0.49f}};
    batch_fill(x, &d, idx, q, 2, AUG_SEED, NULL);
    int inrange = 1, clipped_hi = 0, clipped_lo = 0;
    for (int i = 0; i < 2 * 3072; i++) {
        inrange &= x[i] >= 0.0f && x[i] <= 1.0f;
        clipped_hi += x[i] == 1.0f, clipped_lo += x[i] == 0.0f;
    }
    CHECK(inrange, "brightness not clipped to [0,1]");
    CHECK(clipped_hi > 1000 && clipped_lo > 1000, "clipping did not happen: %d %d", clipped_hi, clipped_lo);
    CHECK_CLOSE(x[100], fminf(a[100] / 255.0f + 0.49f, 1.0f), 1e-6, 0, "brightness added");
    /* meanstd */
    norm_cfg nm;
    char err[256];
    CHECK(norm_compute(&d, &nm, err) == 0, "%s", err);
    batch_fill(x, &d, idx, NULL, 2, AUG_NONE, &nm);
    double s = 0, s2 = 0;
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 1024; j++) s += x[i * 3072 + 1024 + j], s2 += x[i * 3072 + 1024 + j] * x[i * 3072 + 1024 + j];
    CHECK_CLOSE(s / 2048, 0.0, 1e-5, 0, "normalised mean");
    CHECK_CLOSE(s2 / 2048, 1.0, 1e-4, 0, "normalised variance");
    kvlist st = {0};
    norm_cfg back;
    norm_to_state(&nm, &st);
    CHECK(norm_from_state(&st, &back, err) == 0 && back.meanstd && back.c == 3 && back.mean[2] == nm.mean[2] &&
              back.std[1] == nm.std[1], "normalisation round trip");
    kv_free(&st);
    free(x);
    ds_free(&d);
}

TEST(epoch_plan_determinism) {
    enum { N = 500 };
    uint32_t o1[N], o2[N], o3[N];
    aug_param p1[N], p2[N], p3[N];
    epoch_plan(7, 3, N, true, AUG_CROP_FLIP, o1, p1);
    epoch_plan(7, 3, N, true, AUG_CROP_FLIP, o2, p2);
    epoch_plan(7, 4, N, true, AUG_CROP_FLIP, o3, p3);
    CHECK(memcmp(o1, o2, sizeof o1) == 0 && memcmp(p1, p2, sizeof p1) == 0, "same (seed, epoch), different plan");
    CHECK(memcmp(o1, o3, sizeof o1) != 0, "epochs 3 and 4 have the same order");
    int seen[N] = {0}, ok = 1;
    for (int i = 0; i < N; i++) ok &= o1[i] < N && !seen[o1[i]]++;
    CHECK(ok, "order is not a permutation");
    epoch_plan(8, 3, N, true, AUG_CROP_FLIP, o3, p3);
    CHECK(memcmp(o1, o3, sizeof o1) != 0, "seeds 7 and 8 have the same order");
}

/* ---- the loop ------------------------------------------------------------------------- */
static ops *backend(void) {
    ops *o = ops_get("cpu", NULL);
    return o ? o : &ops_ref;
}

static checkpoint *tiny(uint64_t seed) {
    char err[256];
    checkpoint *ck = model_init("resnet", 8, 4, 10, "uniform", seed, err);
    if (!ck) printf("  model_init: %s\n", err);
    return ck;
}

/* The bytes of one checkpoint section. */
static unsigned char *ck_bytes(const checkpoint *ck, size_t *len) {
    FILE *f = tmpfile();
    swriter w;
    sw_init(&w, fileno(f));
    ck_write(&w, ck);
    sw_flush(&w);
    sw_free(&w);
    long n = lseek(fileno(f), 0, SEEK_END);
    unsigned char *b = malloc((size_t)n);
    if (pread(fileno(f), b, (size_t)n, 0) != n) n = 0;
    fclose(f);
    *len = (size_t)n;
    return b;
}
static int same_bytes(const checkpoint *a, const checkpoint *b) {
    size_t la, lb;
    unsigned char *x = ck_bytes(a, &la), *y = ck_bytes(b, &lb);
    int same = la == lb && memcmp(x, y, la) == 0;
    free(x), free(y);
    return same;
}

TEST(overfit_tiny_batch) {
    checkpoint *ck = tiny(1);
    if (!ck) { CHECK(0, "no model"); return; }
    dataset d = make_ds(8, 11, false);
    char err[256];
    model *m = model_build(ck, backend(), 8, err);
    CHECK(m != NULL, "%s", err);
    if (!m) return;
    optim_cfg oc = {OPT_SGD, 0.9, false, 0, 0.9, 0.999, 1e-7};
    optim_prepare(ck, &oc, true, err);
    model_free(m);   /* rebuild: optim_prepare moved the tensors */
    m = model_build(ck, backend(), 8, err);
    float *x = malloc(8 * 3072 * sizeof *x);
    uint32_t idx[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    batch_fill(x, &d, idx, NULL, 8, AUG_NONE, NULL);
    double first = 0, loss = 0;
    int ok = 0;
    for (int s = 0; s < 300; s++) {
        model_forward(m, x, 8, true);
        loss = model_loss_backward(m, d.labels, 8, &ok, true);
        if (s == 0) first = loss;
        optim_step(ck, m, &oc, 0.05, s + 1);
    }
    CHECK(first > 1.5, "first loss %g", first);
    CHECK(loss < 0.05 && ok == 8, "after 300 steps: loss %g, %d/8 right", loss, ok);
    free(x);
    model_free(m);
    ds_free(&d);
    ck_free(ck);
}

static train_cfg small_cfg(void) {
    train_cfg c;
    train_cfg_defaults(&c);
    c.epochs = 2, c.batch = 16, c.every = 1;
    sched_defaults(&c.sched, SCHED_COSINE);
    c.sched.lr = 0.05;
    c.opt.momentum = 0.9, c.opt.wd = 5e-4;
    c.augment = AUG_CROP_FLIP;
    c.seed = 42;
    return c;
}

static int run(checkpoint *ck, const dataset *d, train_cfg *c, bool resume, int64_t max_steps) {
    char err[256] = "";
    train_io io = {0};
    io.max_steps = max_steps;
    if (c->norm.meanstd && c->norm.c == 0) norm_compute(d, &c->norm, err);
    int rc = train_run(ck, backend(), d, c, &io, resume, err);
    if (rc == TRAIN_ERROR) printf("  train_run: %s\n", err);
    return rc;
}

TEST(determinism_and_resume) {
    dataset d = make_ds(50, 5, false);   /* 4 steps per epoch: 16, 16, 16, 2 */
    checkpoint *init = tiny(3);
    if (!init) { CHECK(0, "no model"); return; }
    train_cfg c = small_cfg();
    checkpoint *a = ck_clone(init), *b = ck_clone(init);
    CHECK(run(a, &d, &c, false, 0) == TRAIN_DONE, "run a");
    CHECK(run(b, &d, &c, false, 0) == TRAIN_DONE, "run b");
    CHECK(a->epoch == 2 && a->step == 8, "epoch %lld step %lld", (long long)a->epoch, (long long)a->step);
    CHECK(same_bytes(a, b), "two identical runs give different checkpoints");
    CHECK(!same_bytes(a, init), "training changed nothing");

    /* stopped at the end of epoch 1, resumed */
    checkpoint *r1 = ck_clone(init);
    CHECK(run(r1, &d, &c, false, 4) == TRAIN_STOPPED, "stop after epoch 1");
    CHECK(r1->epoch == 1 && r1->step == 4, "stopped at epoch %lld step %lld", (long long)r1->epoch, (long long)r1->step);
    train_cfg rc1;
    char err[STREAM_ERRMAX];
    train_cfg_defaults(&rc1);
    CHECK(train_cfg_from_state(&rc1, &r1->state, err) == 0, "%s", err);
    CHECK(run(r1, &d, &rc1, true, 0) == TRAIN_DONE, "resume from epoch 1");
    CHECK(same_bytes(a, r1), "resumed at an epoch boundary: not bit-identical");

    /* stopped mid-epoch (step 6 of 8), resumed through a written and re-read stream */
    checkpoint *r2 = ck_clone(init);
    CHECK(run(r2, &d, &c, false, 6) == TRAIN_STOPPED, "stop mid-epoch");
    CHECK(r2->epoch == 1 && r2->step == 6 && kv_int(&r2->state, "epoch_step", -1) == 2, "mid-epoch position");
    size_t len;
    unsigned char *bytes = ck_bytes(r2, &len);
    FILE *f = fmemopen(bytes, len, "rb");
    int count = 0;
    checkpoint *r2b = ck_read(f, "mem", -1, &count, err);
    fclose(f);
    free(bytes);
    CHECK(r2b != NULL, "%s", err);
    if (r2b) {
        train_cfg rc2;
        train_cfg_defaults(&rc2);
        CHECK(train_cfg_from_state(&rc2, &r2b->state, err) == 0, "%s", err);
        CHECK(run(r2b, &d, &rc2, true, 0) == TRAIN_DONE, "resume mid-epoch");
        CHECK(same_bytes(a, r2b), "resumed mid-epoch: not bit-identical");
        ck_free(r2b);
    }

    /* a different seed gives a different run */
    train_cfg c2 = small_cfg();
    c2.seed = 43;
    checkpoint *e = ck_clone(init);
    run(e, &d, &c2, false, 0);
    CHECK(!same_bytes(a, e), "seeds 42 and 43 gave the same checkpoint");
    ck_free(a), ck_free(b), ck_free(r1), ck_free(r2), ck_free(e), ck_free(init);
    ds_free(&d);
}

TEST(resume_adam_rampup) {
    dataset d = make_ds(40, 6, false);
    checkpoint *init = tiny(4);
    if (!init) { CHECK(0, "no model"); return; }
    train_cfg c = small_cfg();
    c.epochs = 3, c.opt.kind = OPT_ADAM, c.augment = AUG_SEED, c.norm.meanstd = false;
    sched_defaults(&c.sched, SCHED_RAMPUP);
    c.sched.lr = 4e-3;
    checkpoint *a = ck_clone(init), *r = ck_clone(init);
    CHECK(run(a, &d, &c, false, 0) == TRAIN_DONE, "straight");
    CHECK(run(r, &d, &c, false, 5) == TRAIN_STOPPED, "stopped");
    train_cfg rc;
    char err[256];
    train_cfg_defaults(&rc);
    CHECK(train_cfg_from_state(&rc, &r->state, err) == 0, "%s", err);
    CHECK(run(r, &d, &rc, true, 0) == TRAIN_DONE, "resumed");
    CHECK(same_bytes(a, r), "Adam + rampup + seed augmentation: resume not bit-identical");
    CHECK(ck_find(a, "opt.v/fc.w") != NULL, "no Adam state in the checkpoint");
    ck_free(a), ck_free(r), ck_free(init);
    ds_free(&d);
}

static bool is_bn(const char *n) {
    size_t l = strlen(n);
    return (l > 6 && !strcmp(n + l - 6, ".gamma")) || (l > 5 && !strcmp(n + l - 5, ".beta"));
}

TEST(frozen_stay_identical) {
    dataset d = make_ds(40, 8, false);
    checkpoint *init = tiny(5);
    if (!init) { CHECK(0, "no model"); return; }
    for (int i = 0; i < init->nt; i++)
        if (!strcmp(init->t[i].role, "param")) init->t[i].trainable = is_bn(init->t[i].name);
    checkpoint *ck = ck_clone(init);
    train_cfg c = small_cfg();
    c.opt.wd = 0.1;   /* large: weight decay on a frozen tensor would show */
    CHECK(run(ck, &d, &c, false, 0) == TRAIN_DONE, "run");
    int frozen_same = 1, bn_changed = 0, nfrozen = 0;
    for (int i = 0; i < init->nt; i++) {
        const ck_tensor *t0 = &init->t[i], *t1 = ck_find(ck, t0->name);
        if (!t1 || strcmp(t0->role, "param")) continue;
        int same = memcmp(t0->data, t1->data, t0->numel * dtype_size(t0->dtype)) == 0;
        if (is_bn(t0->name)) bn_changed += !same;
        else nfrozen++, frozen_same &= same;
    }
    CHECK(nfrozen > 5 && frozen_same, "a frozen tensor changed");
    CHECK(bn_changed > 5, "only %d BN tensors changed", bn_changed);
    CHECK(ck_find(ck, "opt.m/stem.conv.w") == NULL && ck_find(ck, "opt.m/stem.bn.gamma") != NULL,
          "optimizer state for the wrong tensors");
    ck_free(ck), ck_free(init);
    ds_free(&d);
}

TEST(masked_tensor) {
    dataset d = make_ds(32, 9, false);
    checkpoint *init = tiny(6);
    if (!init) { CHECK(0, "no model"); return; }
    ck_tensor *w = ck_find(init, "stem.conv.w");
    CHECK(w != NULL, "no stem.conv.w");
    if (!w) return;
    for (int i = 0; i < init->nt; i++)
        if (!strcmp(init->t[i].role, "param")) init->t[i].trainable = false;
    w->trainable = true;
    int64_t shape[CK_MAXDIM];
    memcpy(shape, w->shape, sizeof shape);
    int nd = w->ndim;
    size_t numel = w->numel;
    ck_tensor *mk = ck_add(init, "stem.conv.w.mask", DT_U8, nd, shape, false, "mask");
    for (size_t i = 0; i < numel; i++) ((uint8_t *)mk->data)[i] = i % 7 == 0;
    checkpoint *ck = ck_clone(init);
    train_cfg c = small_cfg();
    c.epochs = 1;
    CHECK(run(ck, &d, &c, false, 0) == TRAIN_DONE, "run");
    const float *a = ck_find(init, "stem.conv.w")->data, *b = ck_find(ck, "stem.conv.w")->data;
    int out_same = 1, in_changed = 0;
    for (size_t i = 0; i < numel; i++) {
        if (i % 7) out_same &= memcmp(&a[i], &b[i], sizeof *a) == 0;
        else in_changed += a[i] != b[i];
    }
    CHECK(out_same, "an element outside the mask changed");
    CHECK(in_changed > (int)(numel / 7) / 2, "only %d masked elements changed", in_changed);
    ck_free(ck), ck_free(init);
    ds_free(&d);
}

TEST(nan_stops) {
    dataset d = make_ds(64, 10, false);
    checkpoint *ck = tiny(7);
    if (!ck) { CHECK(0, "no model"); return; }
    train_cfg c = small_cfg();
    c.epochs = 3, c.opt.momentum = 0, c.opt.wd = 0;
    sched_defaults(&c.sched, SCHED_CONSTANT);
    c.sched.lr = 1e30;
    char err[256];
    train_io io = {0};
    norm_compute(&d, &c.norm, err);
    int rc = train_run(ck, backend(), &d, &c, &io, false, err);
    CHECK(rc == TRAIN_NAN, "rc %d", rc);
    CHECK(io.bad_step >= 1 && io.bad_step <= 12 && io.bad_epoch >= 1, "bad step %lld epoch %lld",
          (long long)io.bad_step, (long long)io.bad_epoch);
    ck_free(ck);
    ds_free(&d);
}

TEST(state_round_trip) {
    train_cfg a, b;
    char err[256];
    train_cfg_defaults(&a);
    a.opt.kind = OPT_ADAM, a.opt.beta2 = 0.98, a.sched.kind = SCHED_KERAS_COSINE_RESTARTS, a.sched.decay_steps = 777;
    a.sched.nmilestones = 3, a.sched.milestones[2] = 150, a.seed = UINT64_MAX - 5, a.augment = AUG_SEED;
    a.norm.meanstd = true, a.norm.c = 3, a.norm.mean[0] = 0.4914, a.norm.std[0] = 0.247, a.norm.mean[1] = 0.48,
    a.norm.std[1] = 0.24, a.norm.mean[2] = 0.44, a.norm.std[2] = 0.26;
    kvlist s = {0};
    train_cfg_to_state(&a, &s);
    train_cfg_defaults(&b);
    CHECK(train_cfg_from_state(&b, &s, err) == 0, "%s", err);
    CHECK(b.opt.kind == OPT_ADAM && b.opt.beta2 == 0.98 && b.sched.kind == SCHED_KERAS_COSINE_RESTARTS &&
              b.sched.decay_steps == 777 && b.sched.nmilestones == 3 && b.sched.milestones[2] == 150 &&
              b.seed == UINT64_MAX - 5 && b.augment == AUG_SEED && b.norm.meanstd && b.norm.mean[0] == 0.4914,
          "settings lost in the round trip");
    kvlist empty = {0};
    CHECK(train_cfg_from_state(&b, &empty, err) == -1 && strstr(err, "not written by net-train"),
          "an untrained checkpoint's state accepted: %s", err);
    kv_free(&s);
}

int main(void) {
    RUN(schedule_keras_cosine);
    RUN(schedule_keras_linear_cosine);
    RUN(schedule_keras_cosine_restarts);
    RUN(schedule_rampup);
    RUN(schedule_step_cosine);
    RUN(sgd_steps);
    RUN(adam_steps);
    RUN(optim_masks);
    RUN(augment_params);
    RUN(augment_fill);
    RUN(epoch_plan_determinism);
    RUN(overfit_tiny_batch);
    RUN(determinism_and_resume);
    RUN(resume_adam_rampup);
    RUN(frozen_stay_identical);
    RUN(masked_tensor);
    RUN(nan_stops);
    RUN(state_round_trip);
    return DONE();
}
