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
/* The same with the activation layout flags of ops.h (OPS_BLK_IN: x / dx are blocked,
 * OPS_BLK_OUT: y / dy are, in nChw<B>c with B = o->act_blk; their channel counts must then
 * be multiples of B). */
void cpu_conv_fwd_l(ops *o, const conv_desc *d, int layout, const float *x, const float *w, const float *b,
                    float *y);
void cpu_conv_bwd_data_l(ops *o, const conv_desc *d, int layout, const float *dy, const float *w, float *dx);
void cpu_conv_bwd_filter_l(ops *o, const conv_desc *d, int layout, const float *x, const float *dy, float *dw,
                           float *db);

/* 1 when the convolution of d in direction dir (0 forward, 1 data gradient, 2 filter
 * gradient; blocked where the channels allow, no bias) runs oneDNN's Winograd algorithm
 * here (builds the primitive if needed; 0: direct or the reference). */
int cpu_conv_winograd(const conv_desc *d, int dir);

/* A scratch buffer kept between calls (ops_cpu.c): cpu_buf_get returns at least `bytes`
 * bytes, 64-byte aligned, growing it when needed and never shrinking it; the contents are
 * not kept across a growth. Aborts when out of memory (a few KB per op: never seen). */
typedef struct cpu_buf { void *p; size_t cap; } cpu_buf;
void *cpu_buf_get(cpu_buf *b, size_t bytes);

/* Own AVX-512 convolutions on nChw16c (ops_cpu_zconv.c), for 3x3 pad-1 stride-1 and 1x1
 * pad-0 stride-2 shapes with channels that are multiples of 16: cpu_zconv_wanted says whether
 * the convolution of d in direction dir (0 forward, 1 data gradient, 2 filter gradient) with
 * these layout flags and block width goes to them (never without AVX-512; BN_CPU_ZCONV=0 in
 * the environment: never); the entries take blocked x / y and plain OIHW weights. */
int cpu_zconv_wanted(const conv_desc *d, int dir, int layout, int blk);
void cpu_zconv_fwd(const conv_desc *d, const float *x, const float *w, const float *b, float *y);
void cpu_zconv_bwd_data(const conv_desc *d, const float *dy, const float *w, float *dx);
void cpu_zconv_bwd_filter(const conv_desc *d, const float *x, const float *dy, float *dw, float *db);

/* The blocked activation layout of this backend: nChw8c (8 fp32 lanes: AVX2) or nChw16c
 * (16 lanes: AVX-512), the layout oneDNN's convolutions compute in on this machine, so no
 * activation is reordered around a convolution. The width in use is the table's act_blk,
 * which every entry reads from its `ops *` (a copy of the table keeps the width it was
 * made with). cpu_backend() chooses it once, on the first ops_get("cpu"): the environment's
 * BN_CPU_BLK=8|16 if set, else cpu_blk_preferred(). cpu_blk_set changes ops_cpu's (tests and
 * benchmarks; models built before keep the old layout, so do it before). */
int cpu_blk_preferred(void);
void cpu_blk_set(int blk);
ops *cpu_backend(void);
/* NCHW <-> nChw<act_blk>c (ops.h act_convert) */
void cpu_act_convert(ops *o, int to_blocked, int n, int c, int hw, const float *x, float *y);

/* BatchNorm (ops_cpu_bn.c): plain and _l entries of ops.h */
void cpu_bn_fwd_train(ops *o, const bn_desc *d, const float *x, const float *gamma, const float *beta, float *y,
                      float *save_mean, float *save_invstd, float *run_mean, float *run_var);
void cpu_bn_fwd_train_l(ops *o, const bn_desc *d, int flags, const float *x, const float *gamma,
                        const float *beta, float *y, float *save_mean, float *save_invstd, float *run_mean,
                        float *run_var);
void cpu_bn_fwd_infer(ops *o, const bn_desc *d, const float *x, const float *gamma, const float *beta,
                      const float *run_mean, const float *run_var, float *y);
void cpu_bn_fwd_infer_l(ops *o, const bn_desc *d, int flags, const float *x, const float *gamma,
                        const float *beta, const float *run_mean, const float *run_var, float *y);
void cpu_bn_bwd(ops *o, const bn_desc *d, const float *x, const float *dy, const float *gamma,
                const float *save_mean, const float *save_invstd, float *dx, float *dgamma, float *dbeta);
void cpu_bn_bwd_l(ops *o, const bn_desc *d, int flags, const float *x, const float *y, const float *dy,
                  const float *gamma, const float *beta, const float *save_mean, const float *save_invstd, float *dx,
                  float *dgamma, float *dbeta);
#endif
