/* test_cuda_train.c: training on the GPU against training on the CPU, end to end (issue 5).
 * Skips, saying why, where there is no usable CUDA device (every machine but the lent GPU
 * ones; then nothing of it has run).
 *
 * - Steps (tests/train_compare.h): 3 SGD steps (lr 0.01, momentum 0.9) of ResNet-20
 *   (width 16) at batch 32, all parameters and BN only, and of the bottleneck ResNet-20 BN
 *   only, cuda against cpu from the same checkpoint: losses and every tensor within
 *   TRAIN_TOL = 1e-3 of each other, frozen tensors bit-identical. Why 1e-3: the backends'
 *   convolutions sum in different orders (each op ~1e-7..1e-6 relative), carried through
 *   the steps. The same harness with the reference backend standing in for the GPU (a
 *   throwaway build) measured 3.3e-5 (all), 1.2e-5 (BN only), 1.8e-5 (bottleneck): 30x
 *   room for cuDNN's other algorithms; with lr 0.05 and 4 steps it was 1.2e-3 (ReLU inputs
 *   within rounding of 0 flip, moving a step's gradient discretely), hence the gentle rate.
 *   A wrong layer moves the first loss or update by far more than 1e-2.
 * - The loop (lib/train.c): 2 epochs (16 steps, lr 0.05) of ResNet-8 with a test set on
 *   cuda and on cpu: the checkpoints within LOOP_TOL = 5e-3, the test accuracy within 2 of
 *   100 images. Measured on an NVIDIA H200 (2026-12-04, cuDNN 9.19, heuristics' choices):
 *   1.54e-3, in BatchNorm running variances (the square of the activations: twice their
 *   relative difference; every parameter under 1e-3), both 100%; ref standing in for the
 *   GPU: 8.2e-6; make sim's emulation: 1.3e-6. 16 steps at this rate carry the backends'
 *   different summation orders further than the 3 gentle steps above (TRAIN_TOL's 1e-3 was
 *   exceeded there). A wrong loop is far above 5e-3: the cuda run shuffled with another
 *   seed (planted under the emulation) differs by 0.009 to 0.07 in most tensors. Not a
 *   gentler rate: at lr 0.01 the emulation measured 1.06e-3 (the stem's momentum: the
 *   CPU's float filter gradient of a cancelling sum, relatively larger when training moves
 *   less).
 * - A checkpoint moves between devices: 1 epoch on cuda then --resume for 1 on cpu equals
 *   2 epochs on cpu within LOOP_TOL (the format is the same whichever device wrote it).
 * - Batches and optimizer steps in GPU memory (kernels/cuda_train.cu, the default) give the
 *   same bits as with both on the host (BN_DEVICE_DATA=0 BN_DEVICE_OPTIM=0), and the fused
 *   BN+ReLU / add+ReLU kernels (the default) the same bits as the separate ones (BN_FAST=0):
 *   SGD with momentum and Adam, crop + flip and the seed's brightness, all parameters,
 *   random-k (masked updates) and BN only. Same process, so cuDNN's algorithm choices are
 *   the same. */
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
#include "ops.h"
#include "train.h"

static rng R;   /* testvec.h's generator (unused here) */
#include "testvec.h"
#include "train_compare.h"

#define TRAIN_TOL 1e-3
#define LOOP_TOL 5e-3
static ops *G, *C;
static char no_gpu[400];
#define NEED_GPU()                 \
    do {                           \
        if (!G) SKIP(no_gpu);      \
    } while (0)


TEST(steps_cuda_vs_cpu) {
    NEED_GPU();
    double e1 = compare_training(C, G, "resnet", 20, 16, "all", 32, 3, 0.01f, TRAIN_TOL, "resnet-20 all");
    double e2 = compare_training(C, G, "resnet", 20, 16, "bn", 32, 3, 0.01f, TRAIN_TOL, "resnet-20 bn");
    double e3 = compare_training(C, G, "bottleneck", 20, 16, "bn", 32, 3, 0.01f, TRAIN_TOL, "bottleneck-20 bn");
    printf("# worst tensor difference cuda vs cpu after the steps: all %.3g, bn %.3g, bottleneck bn %.3g\n", e1, e2, e3);
}

static int run(checkpoint *ck, ops *o, const dataset *d, const dataset *t, int epochs, bool resume, double *acc) {
    train_cfg cfg;
    train_cfg_defaults(&cfg);
    cfg.epochs = epochs, cfg.batch = 32, cfg.every = 1, cfg.seed = 4;
    cfg.sched.lr = 0.05, cfg.opt.momentum = 0.9, cfg.opt.wd = 5e-4;
    char err[256] = "";
    if (cfg.norm.meanstd && cfg.norm.c == 0) norm_compute(d, &cfg.norm, err);
    train_io io = {0};
    io.test = t;
    int rc = train_run(ck, o, d, &cfg, &io, resume, err);
    if (rc) printf("  train_run on %s: %s\n", o->name, err);
    if (acc) {
        eval_result r;
        model *m = model_build(ck, o, 32, err);
        *acc = m && !eval_run(m, t, &cfg.norm, &r, err) ? (double)r.correct / (double)r.n : -1;
        if (m) eval_free(&r);
        model_free(m);
    }
    return rc;
}

static double ck_err(const checkpoint *a, const checkpoint *b, double tol, const char *what) {
    double worst = 0;
    for (int i = 0; i < a->nt && i < b->nt; i++) {
        if (a->t[i].dtype != DT_F32) continue;
        double e = err(b->t[i].data, a->t[i].data, a->t[i].numel);
        if (e > worst) worst = e;
        CHECK(e <= tol, "%s: %s differs by %.3g (tolerance %.3g)", what, a->t[i].name, e, tol);
    }
    return worst;
}

TEST(loop_cuda_vs_cpu) {
    NEED_GPU();
    dataset d = make_ds(256, 1, true), t = make_ds(100, 2, true);
    char err[256];
    checkpoint *init = model_init("resnet", 8, 16, 10, NULL, 5, err);
    checkpoint *a = ck_clone(init), *b = ck_clone(init);
    double acc_c, acc_g;
    CHECK(run(a, C, &d, &t, 2, false, &acc_c) == TRAIN_DONE, "cpu run");
    CHECK(run(b, G, &d, &t, 2, false, &acc_g) == TRAIN_DONE, "cuda run");
    double e = ck_err(a, b, LOOP_TOL, "2 epochs cuda vs cpu");
    CHECK(fabs(acc_c - acc_g) <= 0.02 + 1e-9, "test accuracy %.2f (cpu) vs %.2f (cuda)", acc_c, acc_g);
    printf("# loop: worst tensor difference %.3g, test accuracy cpu %.2f cuda %.2f\n", e, acc_c, acc_g);
    /* 1 epoch on the GPU, resumed on the CPU for the second */
    checkpoint *h = ck_clone(init);
    CHECK(run(h, G, &d, &t, 1, false, NULL) == TRAIN_DONE, "cuda, epoch 1");
    CHECK(run(h, C, &d, &t, 2, true, NULL) == TRAIN_DONE, "cpu, --resume to epoch 2");
    ck_err(a, h, LOOP_TOL, "cuda then cpu vs cpu");
    ck_free(init), ck_free(a), ck_free(b), ck_free(h);
    ds_free(&d), ds_free(&t);
}

/* ResNet-8 for 2 epochs on the GPU (a cosine step size: it changes every step); on_host:
 * kernels/cuda_train.cu's work on the host; unfused: BN_FAST=0 (no layout entries: BN, ReLU
 * and add as separate kernels); nograph: BN_GRAPH=0 (every step op by op) */
static checkpoint *dev_run(const checkpoint *init, const dataset *d, int adam, aug_kind aug, int on_host,
                           int unfused, int nograph) {
    setenv("BN_DEVICE_DATA", on_host ? "0" : "1", 1);
    setenv("BN_DEVICE_OPTIM", on_host ? "0" : "1", 1);
    setenv("BN_FAST", unfused ? "0" : "1", 1);
    setenv("BN_GRAPH", nograph ? "0" : "1", 1);
    checkpoint *c = ck_clone(init);
    train_cfg cfg;
    train_cfg_defaults(&cfg);
    cfg.epochs = 2, cfg.batch = 24, cfg.every = 1, cfg.seed = 8, cfg.augment = aug;
    sched_defaults(&cfg.sched, SCHED_COSINE);
    cfg.sched.lr = 0.05, cfg.opt.momentum = 0.9, cfg.opt.wd = 5e-4;
    if (adam) cfg.opt.kind = OPT_ADAM, cfg.sched.lr = 0.002;
    char err[256] = "";
    norm_compute(d, &cfg.norm, err);
    train_io io = {0};
    int rc = train_run(c, G, d, &cfg, &io, false, err);
    CHECK(rc == TRAIN_DONE, "train_run (work on the %s): %s", on_host ? "host" : "device", err);
    /* the comparison means something only if each run took the path it was meant to */
    CHECK(io.backend_data == !on_host && io.backend_optim == !on_host && io.fast == !unfused,
          "path taken: batches %s, optimizer %s, %s (wanted %s, %s)", io.backend_data ? "device" : "host",
          io.backend_optim ? "device" : "host", io.fast ? "fused" : "unfused", on_host ? "host" : "device",
          unfused ? "unfused" : "fused");
    /* 100 images in batches of 24: 4 full steps an epoch, all but the first replayed */
    int64_t replays = on_host || nograph ? 0 : 7;
    CHECK(io.graph_steps == replays, "%lld steps replayed from a CUDA graph, wanted %lld", (long long)io.graph_steps,
          (long long)replays);
    unsetenv("BN_DEVICE_DATA"), unsetenv("BN_DEVICE_OPTIM"), unsetenv("BN_FAST"), unsetenv("BN_GRAPH");
    return c;
}

TEST(device_work_same_bits) {
    NEED_GPU();
    dataset d = make_ds(100, 3, true);   /* 5 steps per epoch, the last of 4 images */
    char err[256];
    static const struct { const char *regime; int adam; aug_kind aug; } cases[] = {
        {"all", 0, AUG_CROP_FLIP}, {"all", 1, AUG_SEED}, {"random-k", 0, AUG_CROP_FLIP}, {"bn", 1, AUG_NONE}};
    for (int k = 0; k < 4; k++) {
        checkpoint *init = model_init("resnet", 8, 16, 10, NULL, 5, err);
        if (!init || freeze_regime(init, cases[k].regime, 2, 5, err)) {
            CHECK(0, "init: %s", err);
            return;
        }
        checkpoint *a = dev_run(init, &d, cases[k].adam, cases[k].aug, 0, 0, 0);
        checkpoint *b[3] = {dev_run(init, &d, cases[k].adam, cases[k].aug, 1, 0, 0),
                            dev_run(init, &d, cases[k].adam, cases[k].aug, 0, 1, 0),
                            dev_run(init, &d, cases[k].adam, cases[k].aug, 0, 0, 1)};
        static const char *const other[3] = {"batches and optimizer on the host", "unfused BN, ReLU and add",
                                             "every step op by op (no CUDA graph)"};
        for (int j = 0; j < 3; j++) {
            int diff = a->nt != b[j]->nt;
            for (int i = 0; !diff && i < a->nt; i++)
                if (memcmp(a->t[i].data, b[j]->t[i].data, a->t[i].numel * dtype_size(a->t[i].dtype))) {
                    printf("  %s: %s differs\n", cases[k].regime, a->t[i].name);
                    diff = 1;
                }
            CHECK(!diff, "%s %s: the default (fused, work on the device, replayed) differs from %s", cases[k].regime,
                  cases[k].adam ? "adam" : "sgd", other[j]);
            ck_free(b[j]);
        }
        ck_free(init), ck_free(a);
    }
    ds_free(&d);
}

/* A test set's pass from a CUDA graph (lib/train.c eval_run: full batches recorded once and
 * replayed) against the same pass op by op (BN_GRAPH=0): the same loss bits, counts and
 * confusion matrix. ResNet-8 (BN's running statistics moved off 0/1, so that inference
 * mode matters), 100 images in batches of 24: on a fresh model the first full batch goes op
 * by op and the next three run from the recording; a second pass on the same model replays
 * all four and records nothing. */
TEST(eval_replay_same_bits) {
    NEED_GPU();
    dataset t = make_ds(100, 6, true);
    char err[256];
    checkpoint *ck = model_init("resnet", 8, 16, 10, NULL, 7, err);
    for (int i = 0; ck && i < ck->nt; i++) {   /* BN running statistics (x.bn.mean, x.bn.var) off 0 and 1 */
        const ck_tensor *u = &ck->t[i];
        size_t len = strlen(u->name);
        bool var = len > 4 && !strcmp(u->name + len - 4, ".var"), mean = len > 5 && !strcmp(u->name + len - 5, ".mean");
        for (size_t j = 0; strcmp(u->role, "buffer") == 0 && (var || mean) && j < u->numel; j++)
            ((float *)u->data)[j] = var ? 0.5f + 0.1f * (float)(j % 7) : 0.05f * (float)(j % 5);
    }
    norm_cfg nm;
    memset(&nm, 0, sizeof nm);
    eval_result r[3];
    uint64_t want_replays[3] = {3, 4, 0};
    for (int k = 0; k < 3; k++) {
        setenv("BN_GRAPH", k < 2 ? "1" : "0", 1);
        static model *m;   /* pass 2 reuses pass 1's model: its recording must still be there */
        if (k != 1) {
            model_free(m), m = ck ? model_build(ck, G, 24, err) : NULL;
            CHECK(m && !model_data_attach(m, &t, NULL, err), "model with the test set on the device: %s", err);
        }
        if (!m || eval_run(m, &t, &nm, &r[k], err)) {
            CHECK(0, "eval_run: %s", err);
            return;
        }
        CHECK(r[k].replayed == want_replays[k] && r[k].recorded == (k == 0),
              "pass %d: %llu batches from a recording, %llu recordings; wanted %llu, %d", k + 1,
              (unsigned long long)r[k].replayed, (unsigned long long)r[k].recorded,
              (unsigned long long)want_replays[k], k == 0);
        if (k == 2) model_free(m), m = NULL;
    }
    unsetenv("BN_GRAPH");
    for (int k = 0; k < 2; k++) {
        CHECK(memcmp(&r[k].loss, &r[2].loss, sizeof r[k].loss) == 0 && r[k].correct == r[2].correct &&
                  memcmp(r[k].confusion, r[2].confusion, (size_t)r[2].classes * r[2].classes * sizeof *r[2].confusion) == 0,
              "pass %d from the recording: loss %.17g, %llu correct; op by op %.17g, %llu", k + 1, r[k].loss,
              (unsigned long long)r[k].correct, r[2].loss, (unsigned long long)r[2].correct);
    }
    printf("# eval: loss %.6f, %llu of %llu correct, the same bits replayed and op by op\n", r[2].loss,
           (unsigned long long)r[2].correct, (unsigned long long)r[2].n);
    for (int k = 0; k < 3; k++) eval_free(&r[k]);
    ck_free(ck), ds_free(&t);
}

int main(void) {
    const char *why = NULL;
    G = ops_get("cuda", &why);
    C = ops_get("cpu", NULL);
    snprintf(no_gpu, sizeof no_gpu, "no CUDA device: %s", why ? why : "(no reason given)");
    if (!G) printf("# %s\n", no_gpu);
    RUN(steps_cuda_vs_cpu);
    RUN(loop_cuda_vs_cpu);
    RUN(device_work_same_bits);
    RUN(eval_replay_same_bits);
    return DONE();
}
