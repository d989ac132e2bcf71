// cuda_index.h: the index arithmetic of the per-element kernels (BatchNorm's apply, infer
// and dx, pooling's backward): which channel element i of an NCHW tensor is in,
// c = (i / hw) % C, without a division per element. A 64-bit division is a long
// software routine on the GPU (a 32-bit one is some twenty instructions), and in a kernel
// that reads 8 bytes and writes 4 per element it is the element's largest cost. So:
//   - the divisions are by divisors fixed at launch, done as a multiply-high, an add and a
//     shift (Granlund and Montgomery 1994, in the form of PyTorch's IntDivider), exact for
//     every n < 2^31 and 1 <= d < 2^31 (tests/test_index.c checks it against / and %);
//   - indices are 32-bit: a launch covers whole images, at most cuda_index_limit() values
//     (2^31 - 1; BN_CUDA_INDEX_LIMIT lowers it, so that the tests can make several launches
//     of one op out of small tensors: the chunked results are the same bits);
//   - where hw is a multiple of 4 and every pointer 16-byte aligned, a thread takes 4
//     consecutive values of one plane as one float4.
// Plain C as well as CUDA, so that a host test can check the arithmetic.
#ifndef BN_CUDA_INDEX_H
#define BN_CUDA_INDEX_H
#include <stddef.h>
#include <stdint.h>

#ifdef __CUDACC__
#define CUDA_HD __host__ __device__
#else
#define CUDA_HD
#endif

typedef struct cuda_div {
    uint32_t d, magic, shift;
} cuda_div;

// d >= 1, d < 2^31
static inline cuda_div cuda_div_make(uint32_t d) {
    uint32_t s = 0;
    while (s < 31 && (1u << s) < d) s++;                       // s = ceil(log2 d)
    uint64_t magic = ((uint64_t)1 << 32) * (((uint64_t)1 << s) - d) / d + 1;
    cuda_div f = {d, (uint32_t)magic, s};
    return f;
}

// n / d for n < 2^31 (then t <= n, so t + n does not wrap)
CUDA_HD static inline uint32_t cuda_div_q(cuda_div f, uint32_t n) {
#ifdef __CUDA_ARCH__
    uint32_t t = __umulhi(n, f.magic);
#else
    uint32_t t = (uint32_t)(((uint64_t)n * f.magic) >> 32);
#endif
    return (t + n) >> f.shift;
}

// n % d
CUDA_HD static inline uint32_t cuda_div_r(cuda_div f, uint32_t n) { return n - cuda_div_q(f, n) * f.d; }

// The channel of value group v (of V values) of an NCHW tensor with C channels of hw values,
// hw a multiple of V: hwv divides by hw / V, ch by C.
typedef struct cuda_chan {
    cuda_div hwv, ch;
} cuda_chan;

static inline cuda_chan cuda_chan_make(int C, int hw, int V) {
    cuda_chan k = {cuda_div_make((uint32_t)(hw / V)), cuda_div_make((uint32_t)C)};
    return k;
}
CUDA_HD static inline int cuda_chan_of(cuda_chan k, uint32_t v) { return (int)cuda_div_r(k.ch, cuda_div_q(k.hwv, v)); }

// 4 when every non-NULL pointer is 16-byte aligned and hw is a multiple of 4, else 1
static inline int cuda_vec_width(int hw, const void *a, const void *b, const void *c, const void *d) {
    const void *p[4] = {a, b, c, d};
    if (hw % 4) return 1;
    for (int i = 0; i < 4; i++)
        if ((uintptr_t)p[i] % 16) return 1;
    return 4;
}

// One per-element launch over count values of an NCHW tensor (whole images): the group
// width V (cuda_vec_width of its pointers), the nv groups, the channel arithmetic.
typedef struct cuda_span {
    int V;
    uint32_t nv;
    cuda_chan ix;
} cuda_span;

static inline cuda_span cuda_span_make(int C, int hw, size_t count, const void *a, const void *b, const void *c,
                                       const void *d) {
    int V = cuda_vec_width(hw, a, b, c, d);
    cuda_span s = {V, (uint32_t)(count / (size_t)V), cuda_chan_make(C, hw, V)};
    return s;
}

// How many images of per_image values one launch may cover (at least 1, at most n); 0 when
// one image alone is over the limit.
static inline int cuda_images_per_launch(size_t per_image, int n, size_t limit) {
    if (per_image == 0) return n;
    size_t k = limit / per_image;
    return k > (size_t)n ? n : (int)k;
}

#endif
