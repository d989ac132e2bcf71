// cudasim.h: what the kernels of kernels/*.cu need to compile as host C++ and run on the CPU,
// under the emulation of tests/cudasim/cudasim.cc ("make sim": the CUDA backend's own code,
// host side and kernels, executed where there is no GPU).
//
// The build (mk/sim.mk) force-includes this header into each kernels/*.cu, compiled by g++
// after one rewrite: a launch  k<<<grid, block, shared, stream>>>(args)  becomes
// sim_launch(sim_cfg(grid, block, shared, stream), k, args)  (tests/cli_cuda_source.sh
// keeps every launch configuration on one line, so a sed line can do it).
//
// The real CUDA and cuDNN headers give the types, constants and declarations, so the code
// compiles against exactly what nvcc compiles it against; cudasim.cc defines the functions.
// Device code semantics emulated here:
//   - threadIdx, blockIdx, blockDim, gridDim: set for each emulated thread;
//   - __shared__: one instance (a static), shared by the threads of the block running now
//     (blocks run one after another), refilled with 0xff bytes (NaN) before each block, so
//     a read of what this block did not write shows;
//   - __syncthreads and the __shfl_*_sync shuffles: real barriers between the block's
//     threads (each thread is a fiber); a barrier that not every thread reaches is reported
//     as an error, not hung on;
//   - the __f*_rn / __d*_rn intrinsics: one IEEE rounding, as on the GPU (the build has
//     -ffp-contract=off, so no other expression is fused into an FMA either);
//   - kernel parameters are copied at the launch (a graph replays the copies), pointer
//     parameters must point into device memory (cudaMalloc) or pinned host memory;
//   - a float4 access of kernels/cuda_vec.cuh at an address not 16-byte aligned stops the
//     program, as the GPU's "misaligned address" does.
#ifndef BN_CUDASIM_H
#define BN_CUDASIM_H
#include <cuda_runtime.h>
#include <cudnn.h>
#include <math.h>
#include <string.h>

#include <cstddef>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

// Kernels and device functions with internal linkage: a static in an inline or template
// function would otherwise go to a COMDAT group, which cannot share the section below.
#undef __global__
#define __global__ static
#undef __device__
#define __device__ static
#undef __shared__
// in a section of their own, so that cudasim.cc can fill them all with NaN bytes before each
// block (on a GPU, shared memory holds nothing defined when a block starts)
#define __shared__ static __attribute__((section("sim_shared")))

extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;

// ---- barriers ----------------------------------------------------------------------------
void __syncthreads(void);
enum { SIM_SHFL_IDX, SIM_SHFL_UP, SIM_SHFL_DOWN, SIM_SHFL_XOR };
unsigned long long sim_shfl(unsigned mask, unsigned long long bits, int kind, int arg, int width);

template <typename T> static inline T sim_shfl_t(unsigned mask, T v, int kind, int arg, int width) {
    static_assert(sizeof(T) <= 8, "a shuffle moves at most 8 bytes");
    unsigned long long b = 0;
    memcpy(&b, &v, sizeof v);
    b = sim_shfl(mask, b, kind, arg, width);
    T r;
    memcpy(&r, &b, sizeof r);
    return r;
}
template <typename T> static inline T __shfl_sync(unsigned m, T v, int src, int w = 32) {
    return sim_shfl_t(m, v, SIM_SHFL_IDX, src, w);
}
template <typename T> static inline T __shfl_up_sync(unsigned m, T v, unsigned d, int w = 32) {
    return sim_shfl_t(m, v, SIM_SHFL_UP, (int)d, w);
}
template <typename T> static inline T __shfl_down_sync(unsigned m, T v, unsigned d, int w = 32) {
    return sim_shfl_t(m, v, SIM_SHFL_DOWN, (int)d, w);
}
template <typename T> static inline T __shfl_xor_sync(unsigned m, T v, int x, int w = 32) {
    return sim_shfl_t(m, v, SIM_SHFL_XOR, x, w);
}

// ---- rounding intrinsics: one IEEE operation each -------------------------------------------
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline float __fsqrt_rn(float a) { return sqrtf(a); }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline double __dadd_rn(double a, double b) { return a + b; }
static inline double __dsub_rn(double a, double b) { return a - b; }
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline double __ddiv_rn(double a, double b) { return a / b; }
static inline float __double2float_rn(double a) { return (float)a; }

// ---- vector accesses -------------------------------------------------------------------------
// kernels/cuda_vec.cuh's float4 loads and stores: the GPU faults on one whose address is not
// a multiple of 16 ("misaligned address"); so does the emulation, naming the kernel and thread
void sim_vec_check(const void *p, const char *file, int line);
#define CUDA_VEC_CHECK(p) sim_vec_check((const void *)(p), __FILE__, __LINE__)

// ---- launches ------------------------------------------------------------------------------
struct sim_cfg {
    dim3 grid, block;
    size_t shared;
    cudaStream_t stream;
    sim_cfg(dim3 g, dim3 b, size_t s = 0, cudaStream_t st = 0) : grid(g), block(b), shared(s), stream(st) {}
};

// 0 when p is NULL or points into device or pinned memory; else the launch fails
int sim_pointer_ok(const void *p);
// checks the configuration, then runs the kernel's blocks (or records them when the stream is
// being captured); a bad launch sets the error cudaGetLastError returns
void sim_enqueue_launch(const sim_cfg &c, const char *name, int bad_arg, std::function<void()> body);

template <typename T> static inline int sim_arg_bad(const T &) { return 0; }
template <typename T> static inline int sim_arg_bad(T *const &p) { return !sim_pointer_ok((const void *)p); }

// sim_launch(cfg, k, args...) is sim_launch_k(cfg, "k", k)(args...): the call operator takes
// the kernel's own parameter types, so the arguments convert as in the kernel call itself
// (NULL to a pointer, a double to a float, ...)
template <typename... P> struct sim_launcher {
    sim_cfg cfg;
    const char *name;
    void (*k)(P...);
    void operator()(P... p) const {
        // the parameters are copied now, as a launch (and a graph's recording of it) does
        std::tuple<typename std::decay<P>::type...> args(p...);
        int bad = 0, i = 0;   // the first parameter (from 1) that points where a kernel cannot read
        std::apply([&](const auto &...v) { ((++i, bad = !bad && sim_arg_bad(v) ? i : bad), ...); }, args);
        void (*kk)(P...) = k;
        sim_enqueue_launch(cfg, name, bad, [kk, args]() { std::apply(kk, args); });
    }
};
template <typename... P> static sim_launcher<P...> sim_launch_k(const sim_cfg &c, const char *name, void (*k)(P...)) {
    return sim_launcher<P...>{c, name, k};
}
#define sim_launch(cfg, k, ...) sim_launch_k(cfg, #k, k)(__VA_ARGS__)
#endif
