// cuda_device.cu: finding a usable CUDA device, and the device memory entry points of
// cuda_mem.h. The ops table itself is in ops_cuda.cu.
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_check.h"
#include "cuda_mem.h"

static char why_buf[256];

// Number of usable CUDA devices; 0 with *why set when there is none (no driver, the
// driver is older than the runtime, no device, ...).
extern "C" int cuda_device_count(const char **why) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();                       // clear it: it is an answer, not a fault
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

// cuDNN 9's own account of its last failure (cudnnGetLastErrorString: which engine, what
// it could not do), "" when it has none; the codes' names alone say little
const char *cuda_cudnn_last_error(void) {
    static char msg[512];
    msg[0] = 0;
    cudnnGetLastErrorString(msg, sizeof msg);
    msg[sizeof msg - 1] = 0;
    for (char *c = msg; *c; c++)
        if (*c == '\n' || *c == '\r') *c = ' ';   // one line of the message
    return msg;
}

int cuda_sync_each_launch(void) {
    static int v = -1;
    if (v < 0) {
        const char *s = getenv("BN_CUDA_SYNC");
        v = s && strcmp(s, "1") == 0;
    }
    return v;
}

// The most values one per-element launch covers (cuda_internal.h by_image_chunks): 2^31 - 1,
// the 32-bit index of cuda_index.h; BN_CUDA_INDEX_LIMIT=n lowers it, so that the tests can
// split small tensors into several launches, which must give the same bits. Read once (an
// op-by-op step asks some 60 times) and again after cuda_index_limit_reread().
static size_t index_limit_read(void) {
    const size_t most = 2147483647u;
    const char *s = getenv("BN_CUDA_INDEX_LIMIT");
    if (!s || !*s) return most;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(s, &end, 10);
    if (*end || errno || n < 1 || n > most || !isdigit((unsigned char)s[0]))
        cli_die("BN_CUDA_INDEX_LIMIT: '%s' is not a whole number from 1 to %zu", s, most);
    return (size_t)n;
}
static size_t index_limit;   // 0: not read yet

size_t cuda_index_limit(void) {
    if (!index_limit) index_limit = index_limit_read();
    return index_limit;
}

extern "C" void cuda_index_limit_reread(void) { index_limit = 0; }

extern "C" void *cuda_alloc(size_t bytes) {
    if (bytes == 0) return NULL;
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        return NULL;
    }
    cuda_check_(e, "cudaMalloc(&p, bytes)", __FILE__, __LINE__);
    return p;
}

// cudaFree "may" synchronise (cuda_runtime_api.h): the queued work that reads p ends first
extern "C" void cuda_free(void *p) {
    if (!p) return;
    if (cuda_recording) {   // neither can be recorded: the recording fails, p stays
        cuda_record_failed("device memory freed while recording a step", "cuda_free", __FILE__, __LINE__);
        return;
    }
    CUDA_CHECK(cudaDeviceSynchronize());
    CUDA_CHECK(cudaFree(p));
}

extern "C" void cuda_to_device(void *dst, const void *src, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}

extern "C" void cuda_to_host(void *dst, const void *src, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}

extern "C" void cuda_copy(void *dst, const void *src, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
}

extern "C" void cuda_memset(void *p, int byte, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemset(p, byte, bytes));
}

extern "C" void cuda_sync(void) { CUDA_CHECK(cudaDeviceSynchronize()); }
