/* train.h: the training loop, its configuration (recipes, the checkpoint's "state" map)
 * and evaluation.
 *
 * A run trains ck in place for cfg->epochs epochs in all. Each epoch: a plan (augment.h:
 * order and augmentations from rng_seed(seed, AUG_STREAM + epoch)), then ceil(n / batch)
 * steps; the last batch of an epoch keeps the remaining n % batch images (a smaller batch,
 * like PyTorch's DataLoader and Keras with drop_last off). Step s (0-based, over the whole
 * run) uses lr = schedule_lr(s, epoch).
 *
 * Checkpoint fields: epoch = completed epochs, step = completed steps; state holds every
 * setting (train_cfg_to_state) plus "epoch_step" (steps done in the unfinished epoch, 0 at
 * an epoch boundary) and the running sums of that epoch's train loss/accuracy. Resuming
 * from any checkpoint written by a run continues it bit-identically: the epoch plans do not
 * depend on earlier epochs, the optimizer state is in the "opt" tensors and the BN running
 * statistics in the "buffer" tensors. Nothing time-dependent is stored in the checkpoint. */
#ifndef BN_TRAIN_H
#define BN_TRAIN_H
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "augment.h"
#include "checkpoint.h"
#include "dataset.h"
#include "model.h"
#include "ops.h"
#include "optim.h"
#include "schedule.h"

typedef struct train_cfg {
    int64_t epochs;        /* total epochs of the run (a resumed run counts those done) */
    int batch;
    optim_cfg opt;
    schedule sched;
    uint64_t seed;         /* shuffling and augmentation */
    aug_kind augment;
    bool shuffle;          /* false only in tests */
    norm_cfg norm;         /* meanstd: mean/std filled (from the data or given) */
    int every;             /* write a checkpoint every N epochs (and always the last); 0 = last only */
} train_cfg;

/* Defaults: the paper's recipe (train_cfg_recipe "paper"). */
void train_cfg_defaults(train_cfg *c);
/* "paper": SGD lr 0.1 momentum 0.9 wd 1e-4, batch 128, 160 epochs, step at 80,120 x0.1,
 * crop-flip, meanstd. "seed": SGD lr 0.01, no momentum, no wd, batch 128, 75 epochs,
 * constant lr, augment seed, normalize none. -1 when the name is unknown. */
int train_cfg_recipe(train_cfg *c, const char *name);
void train_cfg_to_state(const train_cfg *c, kvlist *state);
/* Reads every setting back from a state written by train_cfg_to_state; -1 with err when a
 * setting is missing or malformed (e.g. the checkpoint was never trained). */
int train_cfg_from_state(train_cfg *c, const kvlist *state, char err[256]);

/* What a run writes as it goes. Every field may be NULL / false. */
typedef struct train_io {
    swriter *out;          /* checkpoint stream: sections after each `every` epochs and the last */
    const char *out_name;  /* its name, for messages */
    FILE *log;             /* TSV: epoch step lr train_loss train_acc test_loss test_acc images_per_s seconds */
    bool verbose;          /* one line per epoch on stderr */
    bool progress;         /* progress bar (cli_progress draws only on a terminal) */
    bool stop_signals;     /* poll cli_stop_requested between steps */
    const dataset *test;   /* evaluated after each epoch */
    int64_t max_steps;     /* stop (as if asked to) after this many steps of this call; 0 = no limit */
    int sections;          /* out: checkpoints written */
    int64_t bad_epoch, bad_step;   /* out: where the loss became NaN/Inf */
    int stop_signal;       /* out: the signal that stopped the run */
    /* out: the path the run took (a backend with memory of its own: batches built there,
     * the test set's batches too, optimizer steps there; the model's fast path with its fusions) */
    bool backend_data, backend_eval, backend_optim, fast;
    int64_t graph_steps;   /* out: steps run from a recording (ops.h graph_*) */
    int64_t graph_records; /* out: recordings of a step made (each one's first run counted above) */
    int64_t eval_replays, eval_records;   /* out: the same for the test set's batches */
} train_io;

enum { TRAIN_DONE = 0, TRAIN_NAN = 1, TRAIN_STOPPED = 2, TRAIN_ERROR = 3 };

/* Trains. resume: continue ck's epoch/step/optimizer state (cfg must be what the
 * checkpoint recorded, possibly with more epochs); otherwise a new run from ck's weights
 * (epoch and step start at 0, optimizer state is created afresh). On TRAIN_STOPPED the last
 * section written holds the state after the last completed step. Returns TRAIN_* (err for
 * TRAIN_ERROR). */
int train_run(checkpoint *ck, ops *o, const dataset *train, const train_cfg *cfg, train_io *io, bool resume,
              char err[256]);

/* Does backend o's train-mode BatchNorm call ops.h's allreduce hook (forward and backward)?
 * A tiny probe in o's memory; data-parallel training refuses a backend that does not. */
bool train_backend_reduces_bn(const ops *o);

/* Checks a dataset fits a model's input (3x32x32) and classes. 0 or -1 with err. */
int train_check_data(const checkpoint *ck, const dataset *d, const char *what, char err[256]);

typedef struct eval_result {
    uint64_t n, correct;
    double loss;           /* mean cross-entropy */
    int classes;
    uint64_t *confusion;   /* [true * classes + predicted], malloc'd */
    uint64_t replayed;     /* batches run from a recording (ops.h graph_*) */
    uint64_t recorded;     /* recordings made (each also counted in replayed when it ran) */
} eval_result;
/* Inference-mode BN over every image of d in order (no augmentation), normalised by nm.
 * With d in backend memory (model_data_attach) and a backend that records, the full
 * batches after the first are recorded once and replayed (BN_GRAPH=0: never), as training
 * steps are; the results are the same bits either way. */
int eval_run(model *m, const dataset *d, const norm_cfg *nm, eval_result *r, char err[256]);
void eval_free(eval_result *r);
#endif
