/* fuzz_dataset.c: libFuzzer target for fuzz_dataset (harness.h); built by `make fuzz`. */
#include <stdlib.h>

#include "harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (fuzz_dataset(data, size) != 0) abort();
    return 0;
}
