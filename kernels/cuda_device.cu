// cuda_device.cu: finding a usable CUDA device. The CUDA ops themselves (issue "GPU")
// will fill the ops table here; until then a present GPU is reported but not used.
#include <cuda_runtime.h>
#include <cudnn.h>
#include <stdio.h>

#include "ops.h"

static char why_buf[256];

// Number of usable CUDA devices; 0 with *why set when there is none (no driver, the
// driver is older than the runtime, no device, ...).
extern "C" int cuda_device_count(const char **why) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        snprintf(why_buf, sizeof why_buf, "no usable CUDA device (%s)", cudaGetErrorString(e));
        if (why) *why = why_buf;
        return 0;
    }
    if (n == 0) {
        snprintf(why_buf, sizeof why_buf, "no CUDA device found");
        if (why) *why = why_buf;
    }
    return n;
}

extern "C" ops *ops_cuda_get(const char **why) {
    if (cuda_device_count(why) == 0) return NULL;
    snprintf(why_buf, sizeof why_buf, "a CUDA device is present but the CUDA ops are not implemented yet (cuDNN %zu)",
             cudnnGetVersion());
    if (why) *why = why_buf;
    return NULL;
}
