/* test_index.c: the index arithmetic of the CUDA backend's per-element kernels
 * (kernels/cuda_index.h), on the host: it is plain C there, the same expressions the GPU
 * runs (the multiply-high is __umulhi on the device, the top half of a 64-bit product here).
 *
 * 1. cuda_div_q and cuda_div_r against / and %: every divisor up to 4,100 with the
 *    numerators around each of its first multiples and 300 random ones below 2^31; 20,000
 *    random divisors up to 2^31 - 1 (and every power of two and its neighbours) with edge
 *    and random numerators; every numerator below 2^25 for the divisors ResNet-20's
 *    tensors give (hw / 4 and hw for hw = 1024, 256, 64; C = 16, 32, 64; and 3, 7, 9).
 * 2. cuda_chan_of against (i / hw) % C for value groups of 1 and 4.
 * 3. cuda_images_per_launch and cuda_vec_width at their edges. */
#include <stdint.h>

#include "../kernels/cuda_index.h"
#include "../tests/check.h"
#include "rng.h"

static rng R;

/* one divisor against / and %; the first failure is reported, then the rest are counted */
static long bad;
static void div_at(cuda_div f, uint32_t d, uint32_t n) {
    uint32_t q = cuda_div_q(f, n), r = cuda_div_r(f, n);
    if (q == n / d && r == n % d) return;
    if (!bad++) CHECK(0, "%u / %u: got %u rem %u, want %u rem %u", n, d, q, r, n / d, n % d);
}
static void div_edges(uint32_t d) {
    cuda_div f = cuda_div_make(d);
    const uint32_t top = 2147483647u;   /* 2^31 - 1 */
    for (uint32_t k = 0; k < 4 && (uint64_t)k * d <= top; k++)
        for (int j = -2; j <= 2; j++) {
            int64_t n = (int64_t)k * d + j;
            if (n >= 0 && n <= top) div_at(f, d, (uint32_t)n);
        }
    for (uint32_t k = top / d - (top / d > 0); k <= top / d; k++)   /* the last multiples below 2^31 */
        for (int j = -1; j <= 1; j++) {
            int64_t n = (int64_t)k * d + j;
            if (n >= 0 && n <= top) div_at(f, d, (uint32_t)n);
        }
    div_at(f, d, top), div_at(f, d, top - 1);
}

TEST(div_small_divisors) {
    bad = 0;
    for (uint32_t d = 1; d <= 4100; d++) {
        div_edges(d);
        cuda_div f = cuda_div_make(d);
        for (int i = 0; i < 300; i++) div_at(f, d, (uint32_t)rng_below(&R, 2147483648u));
    }
    CHECK(bad == 0, "%ld wrong quotients", bad);
}

TEST(div_large_divisors) {
    bad = 0;
    for (int s = 1; s <= 31; s++)
        for (int j = -1; j <= 1; j++) {
            uint64_t d = ((uint64_t)1 << s) + j;
            if (d >= 1 && d <= 2147483647u) div_edges((uint32_t)d);
        }
    for (int i = 0; i < 20000; i++) {
        uint32_t d = 1 + (uint32_t)rng_below(&R, 2147483647u);
        div_edges(d);
        cuda_div f = cuda_div_make(d);
        for (int k = 0; k < 20; k++) div_at(f, d, (uint32_t)rng_below(&R, 2147483648u));
    }
    CHECK(bad == 0, "%ld wrong quotients", bad);
}

TEST(div_exhaustive_resnet) {
    static const uint32_t ds[] = {256, 64, 16, 1024, 32, 3, 7, 9};
    bad = 0;
    for (size_t k = 0; k < sizeof ds / sizeof *ds; k++) {
        cuda_div f = cuda_div_make(ds[k]);
        for (uint32_t n = 0; n < (1u << 25); n++) div_at(f, ds[k], n);
    }
    CHECK(bad == 0, "%ld wrong quotients", bad);
}

TEST(channel_of) {
    static const int shapes[][2] = {{16, 1024}, {32, 256}, {64, 64}, {3, 36}, {7, 9}, {5, 1}, {1, 4}};
    for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
        int C = shapes[k][0], hw = shapes[k][1];
        for (int V = 1; V <= 4; V += 3) {
            if (hw % V) continue;
            cuda_chan ix = cuda_chan_make(C, hw, V);
            long wrong = 0;
            for (uint32_t v = 0; v < (uint32_t)(7 * C * hw / V); v++) {   /* 7 images */
                int want = (int)(((size_t)v * V / hw) % C);
                for (int j = 0; j < V; j++)   /* every value of the group is in that channel */
                    wrong += want != (int)((((size_t)v * V + j) / hw) % C);
                wrong += cuda_chan_of(ix, v) != want;
            }
            CHECK(wrong == 0, "C %d hw %d V %d: %ld wrong channels", C, hw, V, wrong);
        }
    }
}

TEST(images_per_launch) {
    CHECK(cuda_images_per_launch(1024, 128, 2147483647u) == 128, "a small tensor: one launch");
    CHECK(cuda_images_per_launch(1024, 5, 2048) == 2, "2048 values: 2 images of 1024");
    CHECK(cuda_images_per_launch(1024, 5, 2047) == 1, "2047 values: 1 image");
    CHECK(cuda_images_per_launch(1024, 5, 1024) == 1, "exactly one image");
    CHECK(cuda_images_per_launch(1024, 5, 1023) == 0, "one image over the limit: 0");
    CHECK(cuda_images_per_launch(0, 5, 1) == 5, "empty images: all at once");
    CHECK(cuda_images_per_launch((size_t)64 * 224 * 224, 1000, 2147483647u) == 668,
          "64 x 224 x 224 images: 668 a launch");
}

TEST(vec_width) {
    static float buf[16] __attribute__((aligned(16)));
    CHECK(cuda_vec_width(64, buf, buf + 4, NULL, NULL) == 4, "aligned, hw 64: float4");
    CHECK(cuda_vec_width(64, buf, buf + 1, NULL, NULL) == 1, "one pointer 4 bytes off: scalar");
    CHECK(cuda_vec_width(64, buf, NULL, NULL, buf + 2) == 1, "the last pointer 8 bytes off: scalar");
    CHECK(cuda_vec_width(36, buf, buf, buf, buf) == 4, "hw 36: float4");
    CHECK(cuda_vec_width(9, buf, NULL, NULL, NULL) == 1, "hw 9: scalar");
    CHECK(cuda_vec_width(2, buf, NULL, NULL, NULL) == 1, "hw 2: scalar");
}

int main(void) {
    rng_seed(&R, check_seed(20261203), 12);
    RUN(div_small_divisors);
    RUN(div_large_divisors);
    RUN(div_exhaustive_resnet);
    RUN(channel_of);
    RUN(images_per_launch);
    RUN(vec_width);
    return DONE();
}
