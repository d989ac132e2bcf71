/* fuzz_cli.c: libFuzzer target for fuzz_cli (harness.h); built by `make fuzz`. */
#include <stdlib.h>

#include "harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (fuzz_cli(data, size) != 0) abort();
    return 0;
}
