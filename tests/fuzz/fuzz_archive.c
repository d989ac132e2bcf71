/* fuzz_archive.c: libFuzzer target for fuzz_archive (harness.h); built by `make fuzz`. */
#include <stdlib.h>

#include "harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (fuzz_archive(data, size) != 0) abort();
    return 0;
}
