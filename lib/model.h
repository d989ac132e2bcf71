/* model.h: one model description for both architectures (FORMAT.md and EXPERIMENTS.md):
 *   "resnet":     the paper's CIFAR ResNet, depth 6n+2, width W, basic blocks, projection
 *                 shortcuts conv1x1+BN, no conv bias, GAP, linear head. BN momentum 0.1
 *                 (PyTorch convention), eps 1e-5.
 *   "bottleneck": the seed's Keras bottleneck "ResNet20", depth 9n+2, conv biases, BN
 *                 momentum 0.01 (Keras 0.99), eps 1e-3, classifier BN.
 * The architecture lives in the checkpoint's "arch" map; model_build turns a checkpoint
 * into a graph of layers that drives forward, backward (only what the trainable flags
 * need) and exposes parameters and gradients to the optimizer. */
#ifndef BN_MODEL_H
#define BN_MODEL_H
#include <stdbool.h>
#include "augment.h"
#include "checkpoint.h"
#include "dataset.h"
#include "ops.h"

typedef struct model model;

/* A fresh checkpoint for an architecture: tensors named like "stem.conv.w", "s1.b0.bn1.gamma",
 * "fc.w" (see model.c), He-normal fan-in conv/linear weights, BN gamma by gamma_init
 * ("ones", "uniform" = U[0,1], "uniform-sym" = U[-1,1]), beta 0, running mean 0 / var 1,
 * biases 0. Every "param" tensor trainable. NULL with err on bad arguments (depth not 6n+2 /
 * 9n+2, width < 1, ...). */
checkpoint *model_init(const char *arch, int depth, int width, int classes,
                       const char *gamma_init, uint64_t seed, char err[256]);

/* Builds the graph for ck (which it keeps pointers into: parameters are updated in place
 * in ck's tensors) for batches of up to max_batch images of 3x32x32 floats. NULL with err
 * when the checkpoint does not describe a known model. With a backend that has memory of
 * its own (ops.h mem_*), the ops work on copies of ck's tensors there: after changing ck's
 * parameters call model_upload_params, and before reading ck's BN running statistics (a
 * checkpoint to write) model_sync. With host backends both do nothing. */
model *model_build(checkpoint *ck, ops *o, int max_batch, char err[256]);
void model_free(model *m);

/* Forward pass on n <= max_batch images x[n,3,32,32] (host memory: copied to the backend's
 * when it has its own, ops.h mem_*). train: BN uses batch statistics and updates running
 * averages; otherwise running averages. */
void model_forward(model *m, const float *x, int n, bool train);
const float *model_logits(const model *m);      /* [n, classes] of the last forward (host) */
/* Loss of the last forward against labels (host; NULL: model_forward_staged's); *correct = right top-1 predictions.
 * When backward is true, also runs the backward pass: gradients of every trainable tensor
 * (and nothing for frozen ones: no filter gradient work for a frozen conv). */
double model_loss_backward(model *m, const uint8_t *labels, int n, int *correct, bool backward);

/* Training data in backend memory (a backend with memory of its own and ops.h batch_fill
 * and xent_rows: the cuda one), so that a step moves only its plan and its loss.
 * model_data_attach copies d's records and labels there, and extra's after them when extra
 * is not NULL (-1 with err when the backend cannot, d or extra does not fit the model, a
 * label is out of range, or its memory is short: then build batches on the host as before).
 * A step there:
 *   model_step_stage: one upload of the batch's image numbers idx[n] (< the images
 *     attached; extra's from d's count on, model_data_base), their
 *     augmentations par[n] (NULL: none) and the optimizer's step size lr (ops.h ops_step);
 *   model_forward_staged: the batch built there as batch_fill would (augmentation k,
 *     normalisation nm), with its labels, and model_forward on it;
 *   model_loss_queue: the loss of each image, left there, and with backward the backward
 *     pass (-1 when it cannot: no staged forward of n images); the optimizer may follow
 *     (optim.h optim_step_backend with model_step_vals);
 *   model_loss_collect: waits for that work and returns the mean loss (and *correct).
 * model_loss_backward(m, NULL, n, ...) does the last two at once. model_free detaches. */
int model_data_attach(model *m, const dataset *d, const dataset *extra, char err[256]);
/* Where d's images start among the attached ones (image numbers for model_step_stage): 0 for
 * the first dataset, its count for the extra one (the test set, which eval_run then
 * evaluates there), -1 when d is not attached. */
int64_t model_data_base(const model *m, const dataset *d);
void model_step_stage(model *m, const uint32_t *idx, const aug_param *par, int n, float lr);
void model_forward_staged(model *m, int n, aug_kind k, const norm_cfg *nm, bool train);
int model_loss_queue(model *m, int n, bool backward);
double model_loss_collect(model *m, int n, int *correct);
void model_data_detach(model *m);

/* Backend memory (see model_build): send ck's trainable parameters to the backend after an
 * optimizer step on the host; bring the BN running statistics (and, after optimizer steps
 * in backend memory, optim.h's optim_step_backend, the parameters and their optimizer
 * state) back into ck. No-ops on host backends. */
void model_upload_params(model *m);
void model_sync(model *m);

/* Data-parallel training: this rank's n images are part of a global batch of total images,
 * so the gradient is that of the mean loss over total (each image weighs 1/total instead of
 * 1/n). 0 (the default) means total = n. */
void model_set_batch_total(model *m, int total);

/* The trainable tensors (the checkpoint's, host) and their gradients (host memory, valid
 * after model_loss_backward; with backend memory, downloaded on the first call after it). */
int model_nparams(const model *m);
ck_tensor *model_param(const model *m, int i);
float *model_grad(const model *m, int i);
int model_classes(const model *m);
#endif
