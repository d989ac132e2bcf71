// cuda_check.h: every CUDA and cuDNN call of kernels/ goes through one of these
// macros. A failure is a bug or a broken device, never a data error the caller could
// handle, so it ends the program with "prog: CUDA error at kernels/file.cu:123: what
// (the call)" through cli_die (exit 1, uncommitted output files removed). After a kernel
// launch, CUDA_LAUNCH_CHECK() catches a bad launch configuration at its own line.
//
// Set BN_CUDA_SYNC=1 in the environment to synchronise after every launch: an error inside
// a kernel (an illegal address) is then reported at the launch that caused it rather than
// at the next synchronising call.
#ifndef BN_CUDA_CHECK_H
#define BN_CUDA_CHECK_H
#include <cuda_runtime.h>
#include <cudnn.h>

// lib/cli.c (cli.h itself is C11: its _Noreturn is not C++)
extern "C" void cli_die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
extern "C" bool cli_env_flag(const char *name, bool dflt);

int cuda_sync_each_launch(void);   // BN_CUDA_SYNC=1 (read once; cuda_device.cu)
const char *cuda_cudnn_last_error(void);   // cuDNN's text for its last failure, or "" (cuda_device.cu)

// While a step is being recorded into a CUDA graph (ops.h graph_begin .. graph_end,
// ops_cuda.cu), a failing call does not end the program: nothing it recorded has run, so
// the first failure is kept (with its file and line) and graph_end reports it and drops the
// recording; the step then runs op by op, where a failure ends the program as usual.
extern int cuda_recording;
void cuda_record_failed(const char *what, const char *call, const char *file, int line);

static inline void cuda_check_(cudaError_t e, const char *call, const char *file, int line) {
    if (e == cudaSuccess) return;
    if (cuda_recording) return cuda_record_failed(cudaGetErrorString(e), call, file, line);
    cli_die("CUDA error at %s:%d: %s (%s)", file, line, cudaGetErrorString(e), call);
}
static inline void cudnn_check_(cudnnStatus_t s, const char *call, const char *file, int line) {
    if (s == CUDNN_STATUS_SUCCESS) return;
    if (cuda_recording) return cuda_record_failed(cudnnGetErrorString(s), call, file, line);
    const char *more = cuda_cudnn_last_error();
    cli_die("cuDNN error at %s:%d: %s (%s)%s%s", file, line, cudnnGetErrorString(s), call,
            *more ? "; cuDNN's last message: " : "", more);
}
static inline void cuda_launch_check_(const char *file, int line) {
    cuda_check_(cudaGetLastError(), "kernel launch", file, line);
    if (cuda_sync_each_launch() && !cuda_recording)
        cuda_check_(cudaDeviceSynchronize(), "kernel run (BN_CUDA_SYNC=1)", file, line);
}

#define CUDA_CHECK(call) cuda_check_((call), #call, __FILE__, __LINE__)
#define CUDNN_CHECK(call) cudnn_check_((call), #call, __FILE__, __LINE__)
#define CUDA_LAUNCH_CHECK() cuda_launch_check_(__FILE__, __LINE__)
#endif
