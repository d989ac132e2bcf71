/* ops_ref.c: the plain reference backend "ref" (float, host memory): the loops of
 * ops_ref_impl.h instantiated for float, plus the elementwise ops. Slow and obviously
 * correct; every other backend is tested against it and its double twin (ops_ref_f64.c). */
#include "ops.h"

#define REAL float
#define FN(name) ref32_##name
#include "ops_ref_impl.h"

static void conv_fwd(ops *o, const conv_desc *d, const float *x, const float *w, const float *b, float *y) {
    (void)o;
    ref32_conv_fwd(d, x, w, b, y);
}
static void conv_bwd_data(ops *o, const conv_desc *d, const float *dy, const float *w, float *dx) {
    (void)o;
    ref32_conv_bwd_data(d, dy, w, dx);
}
static void conv_bwd_filter(ops *o, const conv_desc *d, const float *x, const float *dy, float *dw, float *db) {
    (void)o;
    ref32_conv_bwd_filter(d, x, dy, dw, db);
}

static void bn_fwd_train(ops *o, const bn_desc *d, const float *x, const float *gamma, const float *beta, float *y,
                         float *save_mean, float *save_invstd, float *run_mean, float *run_var) {
    (void)o;
    ref32_bn_fwd_train(d, x, gamma, beta, y, save_mean, save_invstd, run_mean, run_var);
}
static void bn_fwd_infer(ops *o, const bn_desc *d, const float *x, const float *gamma, const float *beta,
                         const float *run_mean, const float *run_var, float *y) {
    (void)o;
    ref32_bn_fwd_infer(d, x, gamma, beta, run_mean, run_var, y);
}
static void bn_bwd(ops *o, const bn_desc *d, const float *x, const float *dy, const float *gamma,
                   const float *save_mean, const float *save_invstd, float *dx, float *dgamma, float *dbeta) {
    (void)o;
    ref32_bn_bwd(d, x, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta);
}

/* NaN passes through (NaN < 0 is false), as in PyTorch. */
static void relu_fwd(ops *o, size_t n, const float *x, float *y) {
    (void)o;
    for (size_t i = 0; i < n; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];
}
static void relu_bwd(ops *o, size_t n, const float *y, const float *dy, float *dx) {
    (void)o;
    for (size_t i = 0; i < n; i++) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}
static void add(ops *o, size_t n, const float *a, const float *b, float *y) {
    (void)o;
    for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

static void gap_fwd(ops *o, int n, int c, int hw, const float *x, float *y) {
    (void)o;
    for (size_t j = 0; j < (size_t)n * c; j++) {
        double acc = 0.0;
        for (int i = 0; i < hw; i++) acc += x[j * hw + i];
        y[j] = (float)(acc / hw);
    }
}
static void gap_bwd(ops *o, int n, int c, int hw, const float *dy, float *dx) {
    (void)o;
    for (size_t j = 0; j < (size_t)n * c; j++) {
        float g = (float)((double)dy[j] / hw);
        for (int i = 0; i < hw; i++) dx[j * hw + i] = g;
    }
}

static void linear_fwd(ops *o, int n, int in, int out, const float *x, const float *w, const float *b, float *y) {
    (void)o;
    ref32_linear_fwd(n, in, out, x, w, b, y);
}
static void linear_bwd_data(ops *o, int n, int in, int out, const float *dy, const float *w, float *dx) {
    (void)o;
    ref32_linear_bwd_data(n, in, out, dy, w, dx);
}
static void linear_bwd_filter(ops *o, int n, int in, int out, const float *x, const float *dy, float *dw, float *db) {
    (void)o;
    ref32_linear_bwd_filter(n, in, out, x, dy, dw, db);
}

static void xent(ops *o, int n, int classes, const float *logits, const uint8_t *labels, float *dlogits,
                 double *loss, int *correct) {
    (void)o;
    ref32_xent(n, classes, logits, labels, dlogits, loss, correct);
}

ops ops_ref = {
    .name = "ref",
    .ctx = NULL,
    .conv_fwd = conv_fwd,
    .conv_bwd_data = conv_bwd_data,
    .conv_bwd_filter = conv_bwd_filter,
    .bn_fwd_train = bn_fwd_train,
    .bn_fwd_infer = bn_fwd_infer,
    .bn_bwd = bn_bwd,
    .relu_fwd = relu_fwd,
    .relu_bwd = relu_bwd,
    .add = add,
    .gap_fwd = gap_fwd,
    .gap_bwd = gap_bwd,
    .linear_fwd = linear_fwd,
    .linear_bwd_data = linear_bwd_data,
    .linear_bwd_filter = linear_bwd_filter,
    .xent = xent,
};
