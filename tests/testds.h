/* testds.h: a small synthetic dataset in memory for the unit tests (test_train, test_devmem,
 * test_cuda_train). n CIFAR-shaped images from rng stream (seed, 99): random pixels and
 * labels, or, when learnable, labels alternating 0/1 with dark (label 0) and bright
 * (label 1) images, which a few epochs learn. Free with ds_free. */
#ifndef BN_TESTDS_H
#define BN_TESTDS_H
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "rng.h"

static dataset make_ds(size_t n, uint64_t seed, bool learnable) {
    dataset d;
    memset(&d, 0, sizeof d);
    ds_header_cifar10(&d.h, n);
    d.n = n;
    d.labels = malloc(n);
    d.pixels = malloc(n * 3072);
    rng r;
    rng_seed(&r, seed, 99);
    for (size_t i = 0; i < n; i++) {
        d.labels[i] = (uint8_t)(learnable ? i % 2 : rng_below(&r, 10));
        for (size_t j = 0; j < 3072; j++) {
            int v = (int)rng_below(&r, 256);
            if (learnable) v = d.labels[i] ? v / 2 + 128 : v / 2;   /* bright vs dark */
            d.pixels[i * 3072 + j] = (uint8_t)v;
        }
    }
    return d;
}
#endif
