/* ops_ref_f64.c: the reference loops of ops_ref_impl.h in double precision, for
 * finite-difference gradient tests and as the yardstick every float backend is
 * compared with (tests/test_ops.c). Same semantics as the ops table in ops.h. */
#include "ops.h"

#define REAL double
#define FN(name) ref64_##name
#include "ops_ref_impl.h"

void conv_fwd_f64(const conv_desc *d, const double *x, const double *w, const double *b, double *y) {
    ref64_conv_fwd(d, x, w, b, y);
}
void conv_bwd_data_f64(const conv_desc *d, const double *dy, const double *w, double *dx) {
    ref64_conv_bwd_data(d, dy, w, dx);
}
void conv_bwd_filter_f64(const conv_desc *d, const double *x, const double *dy, double *dw, double *db) {
    ref64_conv_bwd_filter(d, x, dy, dw, db);
}
void bn_fwd_train_f64(const bn_desc *d, const double *x, const double *gamma, const double *beta, double *y,
                      double *save_mean, double *save_invstd, double *run_mean, double *run_var) {
    ref64_bn_fwd_train(d, x, gamma, beta, y, save_mean, save_invstd, run_mean, run_var);
}
void bn_bwd_f64(const bn_desc *d, const double *x, const double *dy, const double *gamma, const double *save_mean,
                const double *save_invstd, double *dx, double *dgamma, double *dbeta) {
    ref64_bn_bwd(d, x, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta);
}
void linear_fwd_f64(int n, int in, int out, const double *x, const double *w, const double *b, double *y) {
    ref64_linear_fwd(n, in, out, x, w, b, y);
}
void linear_bwd_data_f64(int n, int in, int out, const double *dy, const double *w, double *dx) {
    ref64_linear_bwd_data(n, in, out, dy, w, dx);
}
void linear_bwd_filter_f64(int n, int in, int out, const double *x, const double *dy, double *dw, double *db) {
    ref64_linear_bwd_filter(n, in, out, x, dy, dw, db);
}
void xent_f64(int n, int classes, const double *logits, const uint8_t *labels, double *dlogits, double *loss) {
    ref64_xent(n, classes, logits, labels, dlogits, loss, NULL);
}
