/* testvec.h: float vectors for the op tests (test_ops_cpu, test_fast_layout, test_cuda_ops).
 * Include after check.h and after declaring the test's generator `static rng R;`. */
#ifndef BN_TESTVEC_H
#define BN_TESTVEC_H
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* n floats, poisoned with NaN: every op under test must overwrite what it outputs */
static inline float *fvec(size_t n) {
    float *p = malloc((n ? n : 1) * sizeof *p);
    if (!p) abort();
    for (size_t i = 0; i < (n ? n : 1); i++) p[i] = NAN;
    return p;
}
static inline float *rand_vec(size_t n, double mean, double sd) {
    float *p = fvec(n);
    for (size_t i = 0; i < n; i++) p[i] = (float)(mean + sd * rng_normal(&R));
    return p;
}
static inline float *copy_vec(const float *a, size_t n) {
    float *p = fvec(n);
    memcpy(p, a, n * sizeof *p);
    return p;
}
static inline double max_abs(const float *a, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++)
        if (fabs(a[i]) > m) m = fabs(a[i]);
    return m;
}
/* max|a-b| / (max|b| + 1); NaN anywhere: infinity */
static inline double err(const float *a, const float *b, size_t n) {
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]);
        if (e != e) return INFINITY;
        if (e > worst) worst = e;
    }
    return worst / (max_abs(b, n) + 1.0);
}
#define CHECK_ERR(a, b, n, tol, what)                                                            \
    do {                                                                                         \
        double e_ = err((a), (b), (n));                                                          \
        CHECK(e_ <= (tol), "%s: error %.3g > %.3g", (what), e_, (double)(tol));                  \
    } while (0)
#endif
