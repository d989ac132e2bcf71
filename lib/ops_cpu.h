/* ops_cpu.h: the parts of the fast CPU backend "cpu" (ops_cpu.c, ops_cpu_conv.c) as seen
 * by each other; the rest of the project uses only `extern ops ops_cpu` from ops.h's world. */
#ifndef BN_OPS_CPU_H
#define BN_OPS_CPU_H
#include "ops.h"

extern ops ops_cpu;

/* Convolutions through oneDNN (ops_cpu_conv.c). One primitive per shape (and direction,
 * and with/without bias), created on first use and cached for the life of the process;
 * a shape oneDNN cannot take (or any zero-sized one) goes to the reference loops. */
void cpu_conv_fwd(ops *o, const conv_desc *d, const float *x, const float *w, const float *b, float *y);
void cpu_conv_bwd_data(ops *o, const conv_desc *d, const float *dy, const float *w, float *dx);
void cpu_conv_bwd_filter(ops *o, const conv_desc *d, const float *x, const float *dy, float *dw, float *db);
#endif
