/* rng.h: the project's one random number generator: xoshiro256** seeded through
 * splitmix64. Its whole state is four uint64 words, saved in checkpoints so that a resumed
 * run draws the same numbers as an uninterrupted one. */
#ifndef BN_RNG_H
#define BN_RNG_H
#include <math.h>
#include <stdint.h>

typedef struct rng { uint64_t s[4]; } rng;

static inline uint64_t rng_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
/* Seeds from (seed, stream): different streams of one seed are independent. */
static inline void rng_seed(rng *r, uint64_t seed, uint64_t stream) {
    uint64_t x = seed ^ (stream * 0xd1b54a32d192ed03ULL);
    for (int i = 0; i < 4; i++) r->s[i] = rng_splitmix64(&x);
}
static inline uint64_t rng_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
static inline uint64_t rng_u64(rng *r) {
    uint64_t *s = r->s, out = rng_rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t; s[3] = rng_rotl(s[3], 45);
    return out;
}
/* Uniform in [0, 1) with 53 random bits. */
static inline double rng_uniform(rng *r) { return (double)(rng_u64(r) >> 11) * 0x1.0p-53; }
/* Uniform integer in [0, n), unbiased (Lemire's method with rejection). */
static inline uint64_t rng_below(rng *r, uint64_t n) {
    if (n == 0) return 0;
    unsigned __int128 m = (unsigned __int128)rng_u64(r) * n;
    uint64_t lo = (uint64_t)m;
    if (lo < n) {
        uint64_t t = -n % n;
        while (lo < t) { m = (unsigned __int128)rng_u64(r) * n; lo = (uint64_t)m; }
    }
    return (uint64_t)(m >> 64);
}
/* Standard normal (Box-Muller, one value per call: reproducible and simple). */
static inline double rng_normal(rng *r) {
    double u1 = rng_uniform(r), u2 = rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586476925 * u2);
}
/* Fisher-Yates shuffle of an index array. */
static inline void rng_shuffle_u32(rng *r, uint32_t *a, uint64_t n) {
    for (uint64_t i = n; i > 1; i--) {
        uint64_t j = rng_below(r, i);
        uint32_t t = a[i - 1]; a[i - 1] = a[j]; a[j] = t;
    }
}
#endif
