/* ops_sim.c: the "-sim" precisions (--precision tf32-sim, bf16-sim) on a host backend.
 *
 * What a GPU's tensor cores do to a convolution, on a machine without one, so that the
 * accuracy effect of the tf32 / bf16 options can be measured anywhere (it is no faster):
 * the table returned is the host backend's own, except that its convolutions (every
 * direction, plain and blocked layout) first round their operands to the format, round to
 * nearest even, and then compute in fp32 as before:
 *   tf32-sim: x, w, dy keep 10 of fp32's 23 mantissa bits (what TF32 tensor cores read);
 *             outputs stay fp32 (cuDNN's TF32 kernels accumulate and write fp32);
 *   bf16-sim: x, w, dy keep 7 mantissa bits (bf16), and the outputs y, dx, dw are rounded to
 *             bf16 too (cuDNN's bf16 convolutions read and write bf16 tensors and add in
 *             fp32: "PSEUDO_BFLOAT16"; PyTorch's autocast does the same). A bias is added
 *             in fp32 before the output's rounding; db stays fp32.
 * Everything else (BatchNorm, pooling, the linear layer, the loss, the optimizer, the
 * parameters themselves) stays fp32, as with --precision tf32 on cuda. The model is the
 * worst case of tf32 on cuda, where cuDNN may still pick an FMA algorithm for some shapes;
 * rounding ties to even where some hardware rounds ties away (a difference of one unit in
 * rare ties). Infinities and NaNs pass unchanged; a value that rounds past the largest
 * finite one becomes infinite, as the conversion does.
 *
 * The wrapper's table is a copy of the backend's (same ctx, same entries), so every other
 * op runs exactly as on the backend; the rounded operands go to scratch buffers of the
 * wrapper's, never into the caller's tensors. Only host backends (no mem_* entries): on a
 * device the operands would have to be rounded there. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

typedef struct sim {
    ops tab;           /* first: the table handed out; (sim *)o recovers the rest */
    ops *base;
    int drop;          /* mantissa bits dropped: 13 (tf32) or 16 (bf16) */
    int round_out;     /* bf16: outputs rounded too */
    float *buf[3];     /* rounded copies of up to three operands */
    size_t cap[3];
    struct sim *next;
} sim;

/* Every wrapper made, for the life of the process (a tool makes one; kept reachable, so a
 * leak checker does not report the tables the ops still use at exit). */
static sim *all_sims;

float ops_sim_round(float v, int drop) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    if ((u & 0x7f800000u) == 0x7f800000u) return v;   /* Inf, NaN */
    uint32_t lsb = (u >> drop) & 1u;
    u += (1u << (drop - 1)) - 1u + lsb;                /* to nearest, ties to even */
    u &= ~((1u << drop) - 1u);
    memcpy(&v, &u, sizeof v);
    return v;
}

static void round_into(float *dst, const float *src, size_t n, int drop) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) dst[i] = ops_sim_round(src[i], drop);
}

/* operand `slot` rounded into the wrapper's buffer */
static const float *rounded(sim *s, int slot, const float *src, size_t n) {
    if (n > s->cap[slot]) {
        free(s->buf[slot]);
        s->buf[slot] = malloc(n * sizeof(float));
        if (!s->buf[slot]) abort();
        s->cap[slot] = n;
    }
    round_into(s->buf[slot], src, n, s->drop);
    return s->buf[slot];
}

static void round_out(sim *s, float *y, size_t n) {
    if (s->round_out) round_into(y, y, n, s->drop);
}

static size_t in_size(const conv_desc *d) { return (size_t)d->n * d->cin * d->h * d->w; }
static size_t out_size(const conv_desc *d) { return (size_t)d->n * d->cout * d->ho * d->wo; }
static size_t w_size(const conv_desc *d) { return (size_t)d->cout * d->cin * d->k * d->k; }

/* flags < 0: the plain entries */
static void fwd(sim *s, const conv_desc *d, int flags, const float *x, const float *w, const float *b, float *y) {
    const float *rx = rounded(s, 0, x, in_size(d)), *rw = rounded(s, 1, w, w_size(d));
    if (flags < 0) s->base->conv_fwd(s->base, d, rx, rw, b, y);
    else s->base->conv_fwd_l(s->base, d, flags, rx, rw, b, y);
    round_out(s, y, out_size(d));
}

static void bwd_data(sim *s, const conv_desc *d, int flags, const float *dy, const float *w, float *dx) {
    const float *rdy = rounded(s, 0, dy, out_size(d)), *rw = rounded(s, 1, w, w_size(d));
    if (flags < 0) s->base->conv_bwd_data(s->base, d, rdy, rw, dx);
    else s->base->conv_bwd_data_l(s->base, d, flags, rdy, rw, dx);
    round_out(s, dx, in_size(d));
}

static void bwd_filter(sim *s, const conv_desc *d, int flags, const float *x, const float *dy, float *dw,
                       float *db) {
    const float *rx = rounded(s, 0, x, in_size(d)), *rdy = rounded(s, 2, dy, out_size(d));
    if (flags < 0) s->base->conv_bwd_filter(s->base, d, rx, rdy, dw, db);
    else s->base->conv_bwd_filter_l(s->base, d, flags, rx, rdy, dw, db);
    round_out(s, dw, w_size(d));
}

static void sim_conv_fwd(ops *o, const conv_desc *d, const float *x, const float *w, const float *b, float *y) {
    fwd((sim *)o, d, -1, x, w, b, y);
}
static void sim_conv_bwd_data(ops *o, const conv_desc *d, const float *dy, const float *w, float *dx) {
    bwd_data((sim *)o, d, -1, dy, w, dx);
}
static void sim_conv_bwd_filter(ops *o, const conv_desc *d, const float *x, const float *dy, float *dw, float *db) {
    bwd_filter((sim *)o, d, -1, x, dy, dw, db);
}
static void sim_conv_fwd_l(ops *o, const conv_desc *d, int flags, const float *x, const float *w, const float *b,
                           float *y) {
    fwd((sim *)o, d, flags, x, w, b, y);
}
static void sim_conv_bwd_data_l(ops *o, const conv_desc *d, int flags, const float *dy, const float *w, float *dx) {
    bwd_data((sim *)o, d, flags, dy, w, dx);
}
static void sim_conv_bwd_filter_l(ops *o, const conv_desc *d, int flags, const float *x, const float *dy, float *dw,
                                  float *db) {
    bwd_filter((sim *)o, d, flags, x, dy, dw, db);
}

ops *ops_sim_wrap(ops *base, const char *mode, const char **why) {
    int drop = !strcmp(mode, "tf32-sim") ? 13 : !strcmp(mode, "bf16-sim") ? 16 : 0;
    if (!drop) {
        *why = "no such simulated precision (expected tf32-sim or bf16-sim)";
        return NULL;
    }
    if (base->mem_alloc) {
        *why = "the -sim precisions round on the host: use --device cpu (on a GPU, tf32 is the real thing)";
        return NULL;
    }
    sim *s = calloc(1, sizeof *s);
    if (!s) abort();
    s->tab = *base;
    s->base = base;
    s->drop = drop;
    s->round_out = drop == 16;
    s->tab.conv_fwd = sim_conv_fwd;
    s->tab.conv_bwd_data = sim_conv_bwd_data;
    s->tab.conv_bwd_filter = sim_conv_bwd_filter;
    if (base->act_blk) {
        s->tab.conv_fwd_l = sim_conv_fwd_l;
        s->tab.conv_bwd_data_l = sim_conv_bwd_data_l;
        s->tab.conv_bwd_filter_l = sim_conv_bwd_filter_l;
    }
    s->tab.set_precision = NULL;   /* the mode is fixed for this table */
    s->next = all_sims;
    all_sims = s;
    return &s->tab;
}
