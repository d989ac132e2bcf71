/* test_sim.c: the simulated tensor-core precisions (lib/ops_sim.c, --precision tf32-sim and
 * bf16-sim) on the ref and cpu backends.
 *
 * 1. The rounding against a definition of its own: v = m * 2^e (frexp), the mantissa
 *    scaled to an integer of p bits and rounded by nearbyint (ties to even in the default
 *    rounding mode), scaled back: for a million random normal floats, every tie, the
 *    largest float (to infinity), zeros of both signs, Inf and NaN.
 * 2. Each convolution direction of the wrapper against the double-precision reference of
 *    operands rounded by that definition (and, in bf16, its output rounded the same way),
 *    on ref and cpu, plain and blocked layout: within the fp32 tolerance of test_ops_cpu
 *    (CONV_TOL) plus, in bf16, one bf16 unit of the output (an fp32 result a hair from a tie
 *    may round the other way). bf16 outputs must be bf16 values (low 16 bits zero). The
 *    wrapper's result must differ from the plain fp32 convolution by the format's rounding
 *    (more than 1e-5 of the scale for tf32, 1e-3 for bf16; fp32's own differences are
 *    ~1e-7), so a wrapper that rounds nothing fails, and the caller's inputs are unchanged.
 * 3. The wrapper refuses device backends and unknown modes with a reason, and leaves every
 *    entry but the convolutions the backend's own. */
#include <float.h>
#include <stdint.h>

#include "../tests/check.h"
#include "ops.h"
#include "rng.h"

extern ops ops_cpu;
ops *cpu_backend(void);

static rng R;
#include "testvec.h"

#define EPS32 5.9604644775390625e-08        /* 2^-24 */
#define CONV_TOL(K) (16.0 * EPS32 * sqrt((double)(K)))

/* the definition: keep `keep` explicit mantissa bits, to nearest, ties to even */
static double def_round(double v, int keep) {
    if (!isfinite(v) || v == 0.0) return v;
    int e;
    double m = frexp(v, &e);                       /* v = m 2^e, 0.5 <= |m| < 1 */
    return ldexp(nearbyint(ldexp(m, keep + 1)), e - keep - 1);
}
static float def_roundf(float v, int keep) {
    double r = def_round(v, keep);
    return fabs(r) > FLT_MAX ? (float)copysign(INFINITY, r) : (float)r;
}
static uint32_t bits(float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}
static float of_bits(uint32_t u) {
    float v;
    memcpy(&v, &u, sizeof v);
    return v;
}

TEST(round_definition) {
    static const int keeps[2] = {10, 7}, drops[2] = {13, 16};
    for (int f = 0; f < 2; f++) {
        int keep = keeps[f], drop = drops[f], bad = 0;
        for (int i = 0; i < 1000000; i++) {
            uint32_t u = (uint32_t)rng_u64(&R);
            uint32_t ex = (u >> 23) & 0xff;
            if (ex == 0 || ex == 0xff) continue;   /* normal numbers only: see the cases below */
            if (i % 4 == 0) u = (u & ~((1u << drop) - 1u)) | (1u << (drop - 1));   /* an exact tie */
            float v = of_bits(u), a = ops_sim_round(v, drop), b = def_roundf(v, keep);
            if (bits(a) != bits(b) && bad++ < 5)
                CHECK(0, "keep %d: %a -> %a, the definition %a", keep, (double)v, (double)a, (double)b);
        }
        CHECK(bad == 0, "keep %d: %d values rounded otherwise", keep, bad);
        float one = 1.0f, up = ldexpf(1.0f, -keep);       /* one unit at 1 */
        CHECK(ops_sim_round(one + up / 2, drop) == one, "a tie goes to the even 1");
        CHECK(ops_sim_round(one + 3 * up / 2, drop) == one + 2 * up, "a tie goes to the even 1 + 2 units");
        CHECK(ops_sim_round(one + up / 2 + ldexpf(1.0f, -23), drop) == one + up, "past a tie rounds up");
        CHECK(ops_sim_round(-(one + 3 * up / 2), drop) == -(one + 2 * up), "sign kept");
        CHECK(isinf(ops_sim_round(FLT_MAX, drop)), "the largest float rounds to infinity");
        CHECK(bits(ops_sim_round(-0.0f, drop)) == bits(-0.0f), "-0 kept");
        CHECK(ops_sim_round(INFINITY, drop) == INFINITY && ops_sim_round(-INFINITY, drop) == -INFINITY, "Inf");
        CHECK(isnan(ops_sim_round(NAN, drop)) && isnan(ops_sim_round(of_bits(0x7f800001u), drop)),
              "NaN stays NaN, even with its payload in the dropped bits");
    }
}

typedef struct { int n, cin, h, w, cout, k, stride, pad; } shape;
static const shape shapes[] = {
    {3, 5, 7, 9, 6, 3, 2, 1},
    {2, 16, 16, 16, 16, 3, 1, 1},
    {2, 16, 16, 16, 32, 1, 2, 0},
    {4, 32, 8, 8, 64, 3, 2, 1},
};

static float *rounded_copy(const float *a, size_t n, int keep) {
    float *p = fvec(n);
    for (size_t i = 0; i < n; i++) p[i] = def_roundf(a[i], keep);
    return p;
}
static double *to_f64(const float *a, size_t n) {
    double *p = malloc((n ? n : 1) * sizeof *p);
    if (!p) abort();
    for (size_t i = 0; i < n; i++) p[i] = a[i];
    return p;
}

/* got (the wrapper) against the f64 reference r of the rounded operands, its output rounded
 * when bf16; and apart from plain (the fp32 convolution) by at least `apart` */
static void check_dir(const char *what, const float *got, const double *r, const float *plain, size_t n, size_t K,
                      int keep, int bf16, double apart) {
    float *want = fvec(n);
    for (size_t i = 0; i < n; i++) want[i] = bf16 ? def_roundf((float)r[i], keep) : (float)r[i];
    double scale = max_abs(want, n) + 1.0, worst = 0.0;
    int notbf = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - (double)want[i]);
        double tol = CONV_TOL(K) * scale + (bf16 ? ldexp(fabs(want[i]), -keep) : 0.0);
        if (!(e <= tol)) worst = INFINITY;
        else if (e / scale > worst) worst = e / scale;
        if (bf16 && (bits(got[i]) & 0xffffu)) notbf++;
    }
    CHECK(isfinite(worst), "%s: beyond the tolerance", what);
    CHECK(notbf == 0, "%s: %d outputs are not bf16 values", what, notbf);
    double d = err(got, plain, n);
    CHECK(d > apart, "%s: only %.3g from the fp32 convolution (no rounding?)", what, d);
    free(want);
}

/* one shape on backend b wrapped as mode (keep bits); blocked: the cpu's _l entries with
 * blocked activations (converted with its act_convert) */
static void conv_case(ops *b, const char *mode, int keep, const shape *s, int blocked) {
    const char *why = NULL;
    ops *S = ops_sim_wrap(b, mode, &why);
    CHECK(S != NULL, "%s on %s: %s", mode, b->name, why ? why : "");
    if (!S) return;
    int bf16 = keep == 7;
    double apart = bf16 ? 1e-3 : 1e-5;
    conv_desc d;
    conv_desc_init(&d, s->n, s->cin, s->h, s->w, s->cout, s->k, s->stride, s->pad);
    size_t nx = (size_t)d.n * d.cin * d.h * d.w, ny = (size_t)d.n * d.cout * d.ho * d.wo;
    size_t nw = (size_t)d.cout * d.cin * d.k * d.k;
    float *x = rand_vec(nx, 0, 1), *w = rand_vec(nw, 0, 1), *dy = rand_vec(ny, 0, 1);
    float *x0 = copy_vec(x, nx), *w0 = copy_vec(w, nw), *dy0 = copy_vec(dy, ny);
    float *xr = rounded_copy(x, nx, keep), *wr = rounded_copy(w, nw, keep), *dyr = rounded_copy(dy, ny, keep);
    double *X = to_f64(xr, nx), *W = to_f64(wr, nw), *DY = to_f64(dyr, ny);
    double *Y = to_f64(x, ny), *DX = to_f64(x, nx), *DW = to_f64(w, nw);
    conv_fwd_f64(&d, X, W, NULL, Y);
    conv_bwd_data_f64(&d, DY, W, DX);
    conv_bwd_filter_f64(&d, X, DY, DW, NULL);
    float *y = fvec(ny), *dx = fvec(nx), *dw = fvec(nw), *py = fvec(ny), *pdx = fvec(nx), *pdw = fvec(nw);
    b->conv_fwd(b, &d, x, w, NULL, py);
    b->conv_bwd_data(b, &d, dy, w, pdx);
    b->conv_bwd_filter(b, &d, x, dy, pdw, NULL);
    if (!blocked) {
        S->conv_fwd(S, &d, x, w, NULL, y);
        S->conv_bwd_data(S, &d, dy, w, dx);
        S->conv_bwd_filter(S, &d, x, dy, dw, NULL);
    } else {
        int hw = d.h * d.w, ohw = d.ho * d.wo, io = OPS_BLK_IN | OPS_BLK_OUT;
        float *bx = fvec(nx), *bdy = fvec(ny), *by = fvec(ny), *bdx = fvec(nx);
        S->act_convert(S, 1, d.n, d.cin, hw, x, bx);
        S->act_convert(S, 1, d.n, d.cout, ohw, dy, bdy);
        S->conv_fwd_l(S, &d, io, bx, w, NULL, by);
        S->conv_bwd_data_l(S, &d, io, bdy, w, bdx);
        S->conv_bwd_filter_l(S, &d, io, bx, bdy, dw, NULL);
        S->act_convert(S, 0, d.n, d.cout, ohw, by, y);
        S->act_convert(S, 0, d.n, d.cin, hw, bdx, dx);
        free(bx), free(bdy), free(by), free(bdx);
    }
    char what[160];
    snprintf(what, sizeof what, "%s on %s%s, n%d %d->%d %dx%d k%d s%d", mode, b->name, blocked ? " blocked" : "",
             d.n, d.cin, d.cout, d.h, d.w, d.k, d.stride);
    char wf[200];
    snprintf(wf, sizeof wf, "%s fwd", what);
    check_dir(wf, y, Y, py, ny, (size_t)d.cin * d.k * d.k, keep, bf16, apart);
    snprintf(wf, sizeof wf, "%s bwd data", what);
    check_dir(wf, dx, DX, pdx, nx, (size_t)d.cout * d.k * d.k, keep, bf16, apart);
    snprintf(wf, sizeof wf, "%s bwd filter", what);
    check_dir(wf, dw, DW, pdw, nw, (size_t)d.n * d.ho * d.wo, keep, bf16, apart);
    CHECK(!memcmp(x, x0, nx * 4) && !memcmp(w, w0, nw * 4) && !memcmp(dy, dy0, ny * 4),
          "%s: the caller's operands were changed", what);
    free(x), free(w), free(dy), free(x0), free(w0), free(dy0), free(xr), free(wr), free(dyr);
    free(X), free(W), free(DY), free(Y), free(DX), free(DW);
    free(y), free(dx), free(dw), free(py), free(pdx), free(pdw);
}

TEST(conv_tf32_sim) {
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        conv_case(&ops_ref, "tf32-sim", 10, &shapes[i], 0);
        conv_case(cpu_backend(), "tf32-sim", 10, &shapes[i], 0);
    }
}

TEST(conv_bf16_sim) {
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        conv_case(&ops_ref, "bf16-sim", 7, &shapes[i], 0);
        conv_case(cpu_backend(), "bf16-sim", 7, &shapes[i], 0);
    }
}

/* the cpu's blocked entries (the model's fast path): shapes whose channels fill blocks */
TEST(conv_sim_blocked) {
    ops *c = cpu_backend();
    for (size_t i = 1; i < sizeof shapes / sizeof *shapes; i++) {
        if (shapes[i].cin % c->act_blk || shapes[i].cout % c->act_blk) continue;
        conv_case(c, "tf32-sim", 10, &shapes[i], 1);
        conv_case(c, "bf16-sim", 7, &shapes[i], 1);
    }
}

/* a NaN or Inf operand reaches the outputs it touches, as in fp32 */
TEST(conv_sim_nonfinite) {
    conv_desc d;
    conv_desc_init(&d, 1, 2, 5, 5, 3, 3, 1, 1);
    float x[50], w[54], y[75];
    for (int i = 0; i < 50; i++) x[i] = (float)rng_normal(&R);
    for (int i = 0; i < 54; i++) w[i] = (float)rng_normal(&R);
    x[12] = NAN, x[37] = INFINITY;
    ops *S = ops_sim_wrap(&ops_ref, "bf16-sim", &(const char *){NULL});
    S->conv_fwd(S, &d, x, w, NULL, y);
    CHECK(!isfinite(y[12]) && !isfinite(y[25 + 12]), "the NaN's outputs are not finite");
    CHECK(isfinite(y[0]) && isfinite(y[24]), "outputs away from them are finite");
}

static void *fake_alloc(ops *o, size_t n) {
    (void)o, (void)n;
    return NULL;
}

TEST(sim_wrapper) {
    const char *why = NULL;
    ops dev = ops_ref;
    dev.mem_alloc = fake_alloc;
    CHECK(ops_sim_wrap(&dev, "tf32-sim", &why) == NULL && why && strstr(why, "--device cpu"),
          "a backend with its own memory is refused: %s", why ? why : "(no reason)");
    why = NULL;
    CHECK(ops_sim_wrap(&ops_ref, "fp16-sim", &why) == NULL && why, "an unknown mode is refused");
    CHECK(ops_precision(&ops_ref, "bf17-sim", &why) == NULL, "ops_precision passes the refusal on");
    CHECK(ops_precision(&ops_ref, "fp32", &why) == &ops_ref, "fp32 is the backend itself");
    CHECK(ops_precision(&ops_ref, "tf32", &why) == NULL && why && strstr(why, "tf32-sim"),
          "tf32 on a host backend is refused, naming the simulation");
    ops *c = cpu_backend(), *S = ops_precision(c, "bf16-sim", &why);
    CHECK(S && S != c, "a new table");
    if (!S) return;
    CHECK(S->conv_fwd != c->conv_fwd && S->conv_fwd_l != c->conv_fwd_l &&
          S->conv_bwd_filter_l != c->conv_bwd_filter_l, "the convolutions are wrapped");
    CHECK(S->bn_fwd_train_l == c->bn_fwd_train_l && S->linear_fwd == c->linear_fwd && S->xent == c->xent &&
          S->act_blk == c->act_blk && S->ctx == c->ctx && !strcmp(S->name, c->name),
          "everything else is the backend's own");
    ops *R2 = ops_precision(&ops_ref, "tf32-sim", &why);
    CHECK(R2 && !R2->conv_fwd_l, "ref has no blocked entries, and its wrapper none either");
}

int main(void) {
    rng_seed(&R, check_seed(20261202), 11);
    RUN(round_definition);
    RUN(conv_tf32_sim);
    RUN(conv_bf16_sim);
    RUN(conv_sim_blocked);
    RUN(conv_sim_nonfinite);
    RUN(sim_wrapper);
    return DONE();
}
