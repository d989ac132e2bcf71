/* model_extra.h: what model.h does not need for training but other tools do: the layer
 * list (names, kinds, output shapes), activations of the last forward pass (feature-map
 * visualisation), element masks of partially trainable tensors, and the architecture
 * rules (depth checks) that net-init reports. */
#ifndef BN_MODEL_EXTRA_H
#define BN_MODEL_EXTRA_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "model.h"

/* Depth and width rules: 0 when (arch, depth, width) names a model, else -1 with err
 * ("resnet" depth 6n+2 >= 8, "bottleneck" depth 9n+2 >= 11). */
int model_check_arch(const char *arch, int depth, int width, int classes, char err[256]);

typedef struct model_layer_info {
    const char *name;   /* "stem.conv", "s1.b0.bn1", "s1.b0.relu", "fc", ... */
    const char *kind;   /* "conv", "bn", "relu", "add", "gap", "linear" */
    int c, h, w;        /* output shape of one image (h = w = 1 after gap / linear) */
} model_layer_info;
int model_nlayers(const model *m);
void model_layer(const model *m, int i, model_layer_info *out);
/* The output of layer `name` for the n images of the last forward pass, [n, c, h, w]
 * (backend memory), or NULL when there is no such layer, when a later in-place layer
 * (ReLU after BN, add) overwrote it (ask for the in-place layer's output instead), or when
 * it was never kept (a BN done by the add after it, ops.h bn_add_relu_*: run the model on a
 * backend without that fusion, such as cpu, to see it). */
const float *model_activation(const model *m, const char *name, int *c, int *h, int *w);

/* The element mask of trainable tensor i (model_param order): "<name>.mask", a u8 tensor
 * of the same shape, role "mask", written by net-freeze --train random-k. NULL when the
 * whole tensor is trainable. The model computes full gradients; the optimizer must
 * update only elements whose mask byte is nonzero (gradient, weight decay, momentum). */
const uint8_t *model_mask(const model *m, int i);
int model_max_batch(const model *m);

/* The optimizer in backend memory (optim.c's optim_step_backend). model_backend: the
 * backend when it has memory of its own, else NULL. model_bind_state gives trainable tensor
 * i's optimizer state (s1, s2: host arrays of the checkpoint, NULL when not used) and its
 * mask copies in backend memory, brought home by model_sync: -1 when out of memory.
 * model_dparam_get: tensor i's backend pointers, and marks the parameters as changed there
 * (model_sync downloads them; model_upload_params may not be called until it has). */
typedef struct model_dparam {
    float *w, *g, *s1, *s2;
    const uint8_t *mask;
    size_t n;
} model_dparam;
ops *model_backend(const model *m);
int model_bind_state(model *m, int i, float *s1, float *s2);
/* Undoes every model_bind_state (frees the copies: model_sync then leaves the host's state
 * alone), for a caller that falls back to the host optimizer. */
void model_unbind_state(model *m);
/* Whether the model runs the backend's fast path (layout entries, fused BN+ReLU). */
bool model_is_fast(const model *m);
void model_dparam_get(model *m, int i, model_dparam *out);
/* The trainable tensors' backend pointers (model_param order, trainable ones only) as one
 * table in backend memory, for the multi-tensor updates (ops.h sgd_update_many): *k
 * entries, *maxn the largest; made on first use (NULL when out of memory or nothing is
 * trainable), dropped by model_bind_state / model_unbind_state; marks the parameters as
 * changed there, as model_dparam_get does. */
const ops_tensor *model_dparam_table(model *m, int *k, size_t *maxn);
/* The staged step's values in backend memory (model_step_stage), for the optimizer's ops. */
ops_step *model_step_vals(const model *m);

/* Recordings (ops.h graph_*: CUDA graphs), replayed: a training step (slot MODEL_GRAPH_STEP:
 * model_forward_staged in train mode, model_loss_queue, optim_step_backend with
 * model_step_vals) and a test batch (MODEL_GRAPH_EVAL: model_forward_staged in inference
 * mode, model_loss_queue without backward), one of each at a time. Between
 * model_graph_begin (0; -1 when the backend cannot record, no data is attached, or under
 * BN_PROFILE, which times each layer; for a step also when no backward pass has run yet,
 * which sizes the buffers) and model_graph_end, the calls are recorded, not run;
 * model_graph_end is 0 when the slot begun then holds the recording of n images (else the
 * caller runs the calls again, as usual). model_graph_launch runs a slot's recording after
 * a model_step_stage, as the calls would: 0, or -1 when there is none for n, or it was
 * recorded with another augmentation kind or normalisation than k and nm (what
 * model_forward_staged was given is baked into the recording), or it is stale (memory of
 * the model or the backend moved since); in the last two cases it is dropped: record again.
 * model_graph_drop frees both (model_free and model_data_detach do), model_graph_drop_slot
 * one. */
enum { MODEL_GRAPH_STEP, MODEL_GRAPH_EVAL, MODEL_GRAPHS };
int model_graph_begin(model *m, int slot);
int model_graph_end(model *m, int n);
int model_graph_launch(model *m, int slot, int n, aug_kind k, const norm_cfg *nm);
bool model_has_graph(const model *m, int slot);
bool model_can_record(const model *m);   /* the backend records, data is attached, no BN_PROFILE */
/* A forward of model_max_batch images has run op by op (the convolution algorithms for that
 * batch are chosen, its buffers sized): a recording of one need not wait for another. */
bool model_full_batch_ran(const model *m);
void model_graph_drop(model *m);
void model_graph_drop_slot(model *m, int slot);

/* The work of a training step of n images, by layer kind and shape (the rows of BN_PROFILE's
 * table, in the model's order; a fused layer is counted in the one doing its work): per
 * direction (0 forward, 1 backward: the data gradient of a conv or linear layer, the whole
 * backward of the others, 2 a filter gradient), the floating-point operations of direct
 * convolutions / plain GEMMs (0 where a direction is never computed: a frozen filter,
 * nothing upstream to train), and the bytes it must move at least: each fp32 tensor read or
 * written once (activations for every image, weights once). kind: "conv", "linear", "bn",
 * "relu", "add" or "gap". model_cost_rows fills up to max rows (rows NULL: counts only) and
 * row_of[model_layers(m)] (when not NULL: each layer's row, -1 for a fused one); returns the
 * number of rows. The fusions are those of m's backend (the fast path's). */
typedef struct model_cost {
    char label[96];
    const char *kind;
    int count;                 /* layers in the row */
    double flops[3], bytes[3];
    double wbytes[3];          /* the part of bytes that is weights (w, dw), the rest activations */
} model_cost;
int model_cost_rows(const model *m, int n, model_cost *rows, int max, int *row_of);
int model_layers(const model *m);

/* Bytes the model holds now: activations, gradients of trainable tensors and of values
 * (the gradient pool grows to its peak during the first backward pass), BN statistics. */
size_t model_bytes(const model *m);
#endif
