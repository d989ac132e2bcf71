/* optim.h: optimizers that update a model's trainable tensors in place (host memory).
 *
 * SGD (PyTorch's torch.optim.SGD, dampening 0): d = g + wd*w; with momentum
 * buf = momentum*buf + d (buf starts at 0, so the first step has buf = d); Nesterov:
 * d = d + momentum*buf, else d = buf; w -= lr*d.
 * Adam (TensorFlow 2.2's Keras Adam, the seed's optimizer; L2 weight decay added to the
 * gradient as PyTorch's Adam does): m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
 * lr_t = lr*sqrt(1-b2^t)/(1-b1^t); w -= lr_t*m/(sqrt(v)+eps), t = 1, 2, ... the step number.
 *
 * State lives in the checkpoint as f32 tensors of role "opt", shaped like their parameter:
 * "opt.m/NAME" (SGD momentum buffer or Adam first moment) and "opt.v/NAME" (Adam second
 * moment). A tensor with a mask ("NAME.mask", random-k) changes only where the mask is
 * nonzero: gradient, weight decay and state alike; other elements stay bit-identical.
 * Frozen tensors are never touched. Element-wise work only, so results do not depend on
 * the number of threads. */
#ifndef BN_OPTIM_H
#define BN_OPTIM_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "checkpoint.h"
#include "model.h"

typedef enum { OPT_SGD, OPT_ADAM } opt_kind;

typedef struct optim_cfg {
    opt_kind kind;
    double momentum;     /* SGD; 0 = plain SGD (no state) */
    bool nesterov;
    double wd;           /* L2 weight decay on trainable tensors */
    double beta1, beta2, eps;   /* Adam: defaults 0.9, 0.999, 1e-7 (Keras) */
} optim_cfg;

const char *optim_name(opt_kind k);       /* "sgd", "adam" */
int optim_parse(const char *s);           /* -1 when unknown */

/* One tensor, n elements. buf may be NULL when momentum is 0; mask may be NULL. */
void sgd_update(float *w, const float *g, float *buf, const uint8_t *mask, size_t n, double lr, double momentum,
                bool nesterov, double wd);
void adam_update(float *w, const float *g, float *m, float *v, const uint8_t *mask, size_t n, double lr, double beta1,
                 double beta2, double eps, double wd, int64_t t);
/* The float step size the updates apply: (float)lr for SGD; Adam's bias-corrected
 * (float)(lr * sqrt(1 - beta2^t) / (1 - beta1^t)). adam_update_at is adam_update with that
 * size given (adam_update(.., lr, .., t) = adam_update_at(.., optim_step_size(..), ..)). */
float optim_step_size(const optim_cfg *cfg, double lr, int64_t t);
void adam_update_at(float *w, const float *g, float *m, float *v, const uint8_t *mask, size_t n, float lr_t,
                    double beta1, double beta2, double eps, double wd);

/* Makes sure ck holds the state tensors of cfg for every trainable "param" tensor (zeroed
 * when created). fresh: drops any earlier "opt" tensors first. Without fresh, existing
 * state of the wrong shape or dtype is an error. Call before model_build: adding tensors
 * moves ck's tensor array. 0, or -1 with err. */
int optim_prepare(checkpoint *ck, const optim_cfg *cfg, bool fresh, char err[256]);

/* Applies one step to every trainable tensor of m with its gradients from the last
 * model_loss_backward. t: the 1-based number of this step (Adam's bias correction). */
void optim_step(checkpoint *ck, const model *m, const optim_cfg *cfg, double lr, int64_t t);

/* The same step in the backend's memory (a backend with memory of its own and ops.h
 * sgd_update / adam_update: cuda), so that no gradient or parameter crosses to the host:
 * the same bits as optim_step followed by model_upload_params. optim_backend_prepare
 * (after optim_prepare and model_build) binds the optimizer state and masks there; false
 * when the backend cannot or its memory is short (use optim_step then). The checkpoint's
 * parameters and state are brought up to date by model_sync. */
bool optim_backend_prepare(checkpoint *ck, model *m, const optim_cfg *cfg);
/* s: NULL, or the step's values in backend memory (ops.h ops_step: the updates then take
 * their step size from there, and skip the step when it says so; a recorded step). */
void optim_step_backend(model *m, const optim_cfg *cfg, double lr, int64_t t, const ops_step *s);
#endif
