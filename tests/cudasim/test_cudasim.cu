// test_cudasim.cu: the emulation of tests/cudasim (cudasim.cc) against CUDA's documented
// semantics, so that what it says of kernels/ can be trusted: thread and block indices,
// shared memory and __syncthreads, the warp shuffles, launch limits, pointer and copy
// checks, graph capture, cuDNN's convolutions; and that it reports, rather than hides, a
// barrier not every thread reaches. Built like kernels/*.cu (mk/sim.mk: the launches
// rewritten, cudasim.h included), run by `make test` as build/sim/tests/test_cudasim.
//
// Each error the emulation must stop at runs in a child process (fork), whose exit status
// (3) and message are checked.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vector>

#include "check.h"
#include "cuda_reduce.cuh"
#include "cuda_vec.cuh"

// ---- helpers ---------------------------------------------------------------------------------

template <typename T> static T *dnew(size_t n) {
    void *p = NULL;
    if (cudaMalloc(&p, n * sizeof(T)) != cudaSuccess) abort();
    return (T *)p;
}
template <typename T> static std::vector<T> back(const T *d, size_t n) {
    std::vector<T> h(n);
    if (cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost) != cudaSuccess) abort();
    return h;
}
template <typename T> static T *up(const std::vector<T> &h) {
    T *d = dnew<T>(h.size());
    if (cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice) != cudaSuccess) abort();
    return d;
}

// A test that provokes the emulator's refusals says so first: they print on stderr.
static void expect_refusals(const char *test) {
    fflush(stdout);
    fprintf(stderr, "# %s: the cudasim refusals that follow are expected\n", test);
}

// Runs f in a child; 1 when it exited with status 3 and its stderr holds want.
template <typename F> static int dies_saying(F f, const char *want) {
    int fd[2];
    if (pipe(fd)) return 0;
    fflush(stdout), fflush(stderr);
    pid_t p = fork();
    if (p == 0) {
        dup2(fd[1], 2);
        close(fd[0]);
        f();
        cudaDeviceSynchronize();
        _exit(0);
    }
    close(fd[1]);
    char buf[4096];
    size_t n = 0;
    ssize_t r;
    while (n < sizeof buf - 1 && (r = read(fd[0], buf + n, sizeof buf - 1 - n)) > 0) n += (size_t)r;
    buf[n] = 0;
    close(fd[0]);
    int st = 0;
    waitpid(p, &st, 0);
    int ok = WIFEXITED(st) && WEXITSTATUS(st) == 3 && strstr(buf, want);
    if (!ok) printf("  child: status %d, stderr: %s\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1, buf);
    return ok;
}

// ---- kernels -------------------------------------------------------------------------------

__global__ void k_ids(int *out) {
    unsigned bx = blockIdx.x + gridDim.x * blockIdx.y;
    unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    unsigned nt = blockDim.x * blockDim.y * blockDim.z;
    out[bx * nt + t] = (int)(bx * 10000 + threadIdx.z * 1000 + threadIdx.y * 100 + threadIdx.x);
}

// each block reverses its part through shared memory: wrong without a real barrier
__global__ void k_reverse(const int *in, int *out) {
    __shared__ int s[256];
    int t = threadIdx.x, base = blockIdx.x * blockDim.x;
    s[t] = in[base + t];
    __syncthreads();
    out[base + t] = s[blockDim.x - 1 - t];
}

__global__ void k_shuffles(const int *in, int *out, int width, int arg) {
    int t = threadIdx.x, v = in[t];
    out[4 * t + 0] = __shfl_down_sync(0xffffffffu, v, (unsigned)arg, width);
    out[4 * t + 1] = __shfl_up_sync(0xffffffffu, v, (unsigned)arg, width);
    out[4 * t + 2] = __shfl_xor_sync(0xffffffffu, v, arg, width);
    out[4 * t + 3] = __shfl_sync(0xffffffffu, v, arg + 3, width);
}

__global__ void k_block_sum(const double *in, double *out) {
    double a = in[blockIdx.x * blockDim.x + threadIdx.x], b = 2.0 * a;
    block_sum2(a, b);
    if (threadIdx.x == 0) out[2 * blockIdx.x] = a, out[2 * blockIdx.x + 1] = b;
}

__global__ void k_early_exit_sync(int *out) {
    if (threadIdx.x < 16) return;
    __syncthreads();
    out[threadIdx.x] = 1;
}
__global__ void k_split_barriers(int *out) {   // half a warp at a shuffle, half at __syncthreads
    if (threadIdx.x < 16) out[threadIdx.x] = __shfl_down_sync(0xffffffffu, 1, 1);
    else __syncthreads();
}
__global__ void k_shfl_exited(int *out) {
    if (threadIdx.x == 5) return;
    out[threadIdx.x] = __shfl_down_sync(0xffffffffu, (int)threadIdx.x, 1);
}
__global__ void k_sync_if(int *out, int sync) {
    if (sync) __syncthreads();
    out[threadIdx.x] = (int)threadIdx.x;
}

// thread 0 of block b reads a shared float before storing b in it: what block b-1 left
__global__ void k_stale_shared(float *out) {
    __shared__ float v;
    if (threadIdx.x == 0) {
        out[blockIdx.x] = v;
        v = (float)blockIdx.x;
    }
    __syncthreads();
}
__global__ void k_set(int *out, int v) { out[threadIdx.x] = v + out[threadIdx.x] * 0 + (int)threadIdx.x; }
__global__ void k_write_at(float *out, long i) { out[i] = 1.0f; }
__global__ void k_read_at(const float *in, long i, float *out) { out[0] = in[i]; }
__global__ void k_add_from(int *out, const int *src) { out[threadIdx.x] += src[threadIdx.x]; }

// ---- tests ---------------------------------------------------------------------------------

TEST(indices) {
    dim3 grid(3, 2), block(4, 3, 2);
    int nt = 24, nb = 6;
    int *d = dnew<int>((size_t)nt * nb);
    k_ids<<<grid, block, 0, 0>>>(d);
    CHECK(cudaGetLastError() == cudaSuccess, "launch failed");
    std::vector<int> h = back(d, (size_t)nt * nb);
    int bad = 0;
    for (int b = 0; b < nb; b++)
        for (int z = 0; z < 2; z++)
            for (int y = 0; y < 3; y++)
                for (int x = 0; x < 4; x++) {
                    int t = x + 4 * (y + 3 * z);
                    bad += h[(size_t)b * nt + t] != b * 10000 + z * 1000 + y * 100 + x;
                }
    CHECK(bad == 0, "%d threads saw wrong indices or dimensions", bad);
    cudaFree(d);
}

TEST(syncthreads_and_shared) {
    int n = 3 * 256;
    std::vector<int> in(n);
    for (int i = 0; i < n; i++) in[i] = i * 7 + 1;
    int *din = up(in), *dout = dnew<int>(n);
    k_reverse<<<3, 256, 0, 0>>>(din, dout);
    std::vector<int> h = back(dout, n);
    int bad = 0;
    for (int b = 0; b < 3; b++)
        for (int t = 0; t < 256; t++) bad += h[b * 256 + t] != in[b * 256 + 255 - t];
    CHECK(bad == 0, "%d elements not reversed: the barrier did not hold the threads", bad);
    cudaFree(din), cudaFree(dout);
    // shared memory holds nothing defined when a block starts: NaN, never the last block's
    float *st = dnew<float>(3);
    k_stale_shared<<<3, 64, 0, 0>>>(st);
    std::vector<float> f(3);
    cudaMemcpy(f.data(), st, sizeof(float) * 3, cudaMemcpyDeviceToHost);
    CHECK(std::isnan(f[0]) && std::isnan(f[1]) && std::isnan(f[2]),
          "shared memory at a block's start read %g %g %g, not NaN", f[0], f[1], f[2]);
    cudaFree(st);
}

// CUDA's definitions (Programming Guide, warp shuffle functions), lane by lane
static int model(const std::vector<int> &v, int lane, int kind, int arg, int width) {
    int base = lane / width * width, src;
    switch (kind) {
    case 0: src = lane - base + arg < width ? lane + arg : lane; break;
    case 1: src = lane - base >= arg ? lane - arg : lane; break;
    case 2: src = (lane ^ arg) >= base + width ? lane : (lane ^ arg); break;
    default: src = base + (arg + 3) % width; break;
    }
    return v[src];
}

TEST(shuffles) {
    std::vector<int> in(64);
    for (int i = 0; i < 64; i++) in[i] = 100 + i * i;
    int *din = up(in), *dout = dnew<int>(4 * 64);
    static const int cases[][2] = {{32, 1}, {32, 16}, {32, 5}, {8, 1}, {8, 3}, {16, 7}, {4, 2}};
    for (auto &c : cases) {
        k_shuffles<<<1, 64, 0, 0>>>(din, dout, c[0], c[1]);
        std::vector<int> h = back(dout, 4 * 64);
        int bad = 0;
        for (int t = 0; t < 64; t++) {
            int w0 = t / 32 * 32;
            std::vector<int> warp(in.begin() + w0, in.begin() + w0 + 32);
            for (int k = 0; k < 4; k++) bad += h[4 * t + k] != model(warp, t - w0, k, c[1], c[0]);
        }
        CHECK(bad == 0, "width %d, argument %d: %d results differ from CUDA's definitions", c[0], c[1], bad);
    }
    cudaFree(din), cudaFree(dout);
}

TEST(block_sum2) {
    static const int threads[] = {32, 256, 1024};
    for (int nt : threads) {
        int nb = 3;
        std::vector<double> in((size_t)nt * nb);
        for (size_t i = 0; i < in.size(); i++) in[i] = (double)((i * 37) % 1001) - 500.0;   // exact sums
        double *din = up(in), *dout = dnew<double>(2 * nb);
        k_block_sum<<<nb, nt, 0, 0>>>(din, dout);
        std::vector<double> h = back(dout, 2 * nb);
        for (int b = 0; b < nb; b++) {
            double s = 0;
            for (int t = 0; t < nt; t++) s += in[(size_t)b * nt + t];
            CHECK(h[2 * b] == s && h[2 * b + 1] == 2 * s, "%d threads, block %d: %g, %g (want %g, %g)", nt, b,
                  h[2 * b], h[2 * b + 1], s, 2 * s);
        }
        cudaFree(din), cudaFree(dout);
    }
}

TEST(barrier_faults_reported) {
    int *d = dnew<int>(1024);
    CHECK(dies_saying([&] { k_early_exit_sync<<<1, 64, 0, 0>>>(d); }, "__syncthreads after some threads"),
          "a __syncthreads skipped by exited threads was not reported");
    CHECK(dies_saying([&] { k_split_barriers<<<1, 32, 0, 0>>>(d); }, "wait at barriers that the others do not reach"),
          "threads at different barriers were not reported");
    CHECK(dies_saying([&] { k_shfl_exited<<<1, 32, 0, 0>>>(d); }, "has exited"),
          "a shuffle naming an exited lane was not reported");
    // a kernel first launched without reaching a barrier runs later launches as plain calls:
    // one that reaches one then is stopped, not run wrong
    CHECK(dies_saying(
              [&] {
                  k_sync_if<<<1, 64, 0, 0>>>(d, 0);
                  k_sync_if<<<1, 64, 0, 0>>>(d, 1);
              },
              "CUDASIM_FIBERS=1"),
          "a barrier in a launch run without fibers was not reported");
    k_sync_if<<<2, 64, 0, 0>>>(d, 1);   // first launch with barriers: fibers every time
    k_sync_if<<<2, 64, 0, 0>>>(d, 0);
    std::vector<int> h = back(d, 64);
    int bad = 0;
    for (int t = 0; t < 64; t++) bad += h[t] != t;
    CHECK(bad == 0, "k_sync_if wrote wrong values");
    cudaFree(d);
}

TEST(launch_limits) {
    expect_refusals("launch_limits");
    int *d = dnew<int>(2048);
    cudaMemset(d, 0, 2048 * sizeof(int));
    (void)cudaGetLastError();
    k_set<<<1, 2048, 0, 0>>>(d, 5);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration, "2048 threads in a block were accepted");
    k_set<<<dim3(1, 70000), 32, 0, 0>>>(d, 5);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration, "a grid of 70000 in y was accepted");
    k_set<<<0, 32, 0, 0>>>(d, 5);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration, "an empty grid was accepted");
    CHECK(cudaGetLastError() == cudaSuccess, "cudaGetLastError does not clear the error");
    std::vector<int> h = back(d, 32);
    CHECK(h[3] == 0, "a refused launch ran");
    k_set<<<1, 1024, 0, 0>>>(d, 5);
    CHECK(cudaGetLastError() == cudaSuccess && back(d, 1024)[1023] == 5 + 1023, "1024 threads refused");
    cudaFree(d);
}

TEST(pointers_and_copies) {
    expect_refusals("pointers_and_copies");
    int *d = dnew<int>(64), *pinned = NULL, host[64];
    std::vector<int> h = back(d, 64);
    int nan_bytes = 1;
    for (int v : h) nan_bytes &= v == -1;
    CHECK(nan_bytes, "new device memory is not all 0xff bytes (NaN as floats)");
    k_set<<<1, 64, 0, 0>>>(host, 1);
    CHECK(cudaGetLastError() == cudaErrorInvalidValue, "a kernel was given host memory");
    CHECK(cudaMallocHost((void **)&pinned, 64 * sizeof(int)) == cudaSuccess, "cudaMallocHost");
    k_set<<<1, 64, 0, 0>>>(pinned, 1);
    CHECK(cudaGetLastError() == cudaSuccess && pinned[7] == 8, "a kernel could not use pinned memory");
    CHECK(cudaMemcpy(host, d, sizeof host, cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
          "a copy the wrong way round was accepted");
    CHECK(cudaMemcpy(d + 1, host, sizeof host, cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
          "a copy past the end of its allocation was accepted");
    CHECK(cudaMemcpy(host, d, sizeof host, cudaMemcpyDeviceToHost) == cudaSuccess, "a good copy failed");
    CHECK(cudaMemcpy(d, d + 32, 32 * sizeof(int), cudaMemcpyDeviceToDevice) == cudaSuccess, "device to device");
    CHECK(cudaMemset(host, 0, sizeof host) == cudaErrorInvalidValue, "cudaMemset on host memory was accepted");
    CHECK(cudaFree(host) == cudaErrorInvalidDevicePointer, "cudaFree of host memory was accepted");
    (void)cudaGetLastError();
    cudaFreeHost(pinned), cudaFree(d);
}

TEST(out_of_bounds_reported) {
    float *a = dnew<float>(64), *b = dnew<float>(3), *o = dnew<float>(1);
    k_write_at<<<1, 1, 0, 0>>>(a, 63);
    k_read_at<<<1, 1, 0, 0>>>(a, 63, o);
    CHECK(cudaGetLastError() == cudaSuccess && back(o, 1)[0] == 1.0f, "in-bounds accesses failed");
    CHECK(dies_saying([&] { k_write_at<<<1, 1, 0, 0>>>(a, 64); }, "past its end"), "a write one past the end");
    CHECK(dies_saying([&] { k_read_at<<<1, 1, 0, 0>>>(a, 64, o); }, "byte 256 of the 256-byte allocation"),
          "a read one past the end");
    CHECK(dies_saying([&] { k_write_at<<<1, 1, 0, 0>>>(b, 3); }, "just after the 12-byte allocation"),
          "a write into the slack after an allocation");
    CHECK(dies_saying([&] { k_write_at<<<1, 1, 0, 0>>>(a, -1); }, "just before the 256-byte allocation"),
          "a write before the start");
    CHECK(dies_saying([&] { k_read_at<<<1, 1, 0, 0>>>(a, -2000, o); }, "out of bounds"), "a read far before");
    cudaFree(a), cudaFree(b), cudaFree(o);
}

// kernels/cuda_vec.cuh's float4 accesses, from an offset of off floats
__global__ void k_vec_copy(const float *x, float *y, int off) {
    float v[4];
    load_v<4>(x + off, 0, v);
    store_v<4>(y, 0, v);
}
__global__ void k_vec_store(const float *x, float *y, int off) {
    float v[4] = {x[0], x[1], x[2], x[3]};
    store_v<4>(y + off, 0, v);
}

TEST(vector_alignment_reported) {
    float *a = dnew<float>(16), *b = dnew<float>(16);
    k_vec_copy<<<1, 1, 0, 0>>>(a, b, 4);   // 16 bytes on: aligned
    CHECK(cudaGetLastError() == cudaSuccess, "an aligned float4 copy failed");
    expect_refusals("vector_alignment_reported");
    CHECK(dies_saying([&] { k_vec_copy<<<1, 1, 0, 0>>>(a, b, 1); }, "not 16-byte aligned"),
          "a float4 load 4 bytes off alignment");
    CHECK(dies_saying([&] { k_vec_store<<<1, 1, 0, 0>>>(a, b, 2); }, "misaligned address"),
          "a float4 store 8 bytes off alignment");
    cudaFree(a), cudaFree(b);
}

TEST(graph_capture) {
    cudaStream_t st;
    cudaStreamCreate(&st);
    int *d = dnew<int>(32), *src = dnew<int>(32);
    cudaMemset(d, 0, 32 * sizeof(int));
    cudaMemset(src, 0, 32 * sizeof(int));
    int v = 10;
    CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal) == cudaSuccess, "begin capture");
    k_set<<<1, 32, 0, st>>>(d, v);
    k_add_from<<<1, 32, 0, st>>>(d, src);
    cudaGraph_t g = NULL;
    CHECK(cudaStreamEndCapture(st, &g) == cudaSuccess && g, "end capture");
    CHECK(back(d, 32)[3] == 0, "work ran while being captured");
    cudaGraphExec_t x = NULL;
    CHECK(cudaGraphInstantiate(&x, g, 0) == cudaSuccess, "instantiate");
    cudaGraphDestroy(g);
    v = 99;                                                 // a parameter: copied at capture
    std::vector<int> one(32, 1000);
    cudaMemcpy(src, one.data(), 32 * sizeof(int), cudaMemcpyHostToDevice);   // memory: read at replay
    cudaGraphLaunch(x, st);
    cudaStreamSynchronize(st);
    CHECK(back(d, 32)[3] == 10 + 3 + 1000, "replay gave %d (want 1013)", back(d, 32)[3]);
    cudaGraphExecDestroy(x);

    // a synchronous call, or work for another stream, during a capture invalidates it
    cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal);
    k_set<<<1, 32, 0, st>>>(d, 1);
    int h[4];
    CHECK(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost) == cudaErrorStreamCaptureUnsupported,
          "a synchronous copy during capture was allowed");
    CHECK(cudaStreamEndCapture(st, &g) == cudaErrorStreamCaptureInvalidated && !g, "the capture stayed valid");
    cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal);
    k_set<<<1, 32, 0, 0>>>(d, 1);                            // the legacy stream
    CHECK(cudaGetLastError() == cudaErrorStreamCaptureImplicit, "a launch on the legacy stream during capture");
    CHECK(cudaStreamEndCapture(st, &g) == cudaErrorStreamCaptureInvalidated, "the capture stayed valid");
    void *p = NULL;
    cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal);
    CHECK(cudaMalloc(&p, 64) == cudaErrorStreamCaptureUnsupported, "cudaMalloc during capture was allowed");
    CHECK(cudaStreamEndCapture(st, &g) == cudaErrorStreamCaptureInvalidated, "the capture stayed valid");
    (void)cudaGetLastError();
    cudaFree(d), cudaFree(src), cudaStreamDestroy(st);
}

// ---- cuDNN -----------------------------------------------------------------------------------

static float tf32_host(float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    u = (u + 0xfffu + ((u >> 13) & 1u)) & ~0x1fffu;
    memcpy(&v, &u, 4);
    return v;
}

TEST(cudnn_convolution) {
    expect_refusals("cudnn_convolution");
    const int N = 2, C = 3, H = 7, Wd = 6, K = 4, R = 3, S = 2, P = 1;
    const int HO = (H + 2 * P - R) / S + 1, WO = (Wd + 2 * P - R) / S + 1;
    std::vector<float> x((size_t)N * C * H * Wd), w((size_t)K * C * R * R), dy((size_t)N * K * HO * WO);
    unsigned z = 1;
    auto rnd = [&] { return (z = z * 1103515245u + 12345u, (float)((z >> 8) % 2001) / 1000.0f - 1.0f + 1e-4f); };
    for (auto &v : x) v = rnd();
    for (auto &v : w) v = rnd();
    for (auto &v : dy) v = rnd();
    cudnnHandle_t h;
    cudnnCreate(&h);
    cudnnTensorDescriptor_t xd, yd;
    cudnnFilterDescriptor_t wd;
    cudnnConvolutionDescriptor_t cd;
    cudnnCreateTensorDescriptor(&xd), cudnnCreateTensorDescriptor(&yd);
    cudnnCreateFilterDescriptor(&wd), cudnnCreateConvolutionDescriptor(&cd);
    cudnnSetTensor4dDescriptor(xd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, N, C, H, Wd);
    cudnnSetTensor4dDescriptor(yd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, N, K, HO, WO);
    cudnnSetFilter4dDescriptor(wd, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, K, C, R, R);
    cudnnSetConvolution2dDescriptor(cd, P, P, S, S, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT);
    float *dx_ = up(x), *dw_ = up(w), *ddy = up(dy), *dyo = dnew<float>(dy.size()), *dxo = dnew<float>(x.size()),
          *dwo = dnew<float>(w.size());
    void *ws = dnew<char>(1 << 20);
    const float one = 1.0f, zero = 0.0f, half = 0.5f;
    for (int tensor = 0; tensor < 2; tensor++) {
        cudnnSetConvolutionMathType(cd, tensor ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH);
        auto in = [&](float v) { return tensor ? tf32_host(v) : v; };
        // y = conv, then y = 0.5 * conv + 1 * y (= 1.5 conv)
        CHECK(cudnnConvolutionForward(h, &one, xd, dx_, wd, dw_, cd, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, NULL, 0,
                                      &zero, yd, dyo) == CUDNN_STATUS_SUCCESS, "forward");
        CHECK(cudnnConvolutionForward(h, &half, xd, dx_, wd, dw_, cd, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, NULL,
                                      0, &one, yd, dyo) == CUDNN_STATUS_SUCCESS, "forward, beta 1");
        CHECK(cudnnConvolutionBackwardData(h, &one, wd, dw_, yd, ddy, cd, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, NULL, 0,
                                           &zero, xd, dxo) == CUDNN_STATUS_SUCCESS, "backward data");
        size_t need = 0;
        cudnnGetConvolutionBackwardFilterWorkspaceSize(h, xd, yd, cd, wd, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, &need);
        CHECK(cudnnConvolutionBackwardFilter(h, &one, xd, dx_, yd, ddy, cd, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, ws,
                                             need, &zero, wd, dwo) == CUDNN_STATUS_SUCCESS, "backward filter");
        std::vector<double> y(dy.size(), 0.0), gx(x.size(), 0.0), gw(w.size(), 0.0);
        for (int n = 0; n < N; n++)
            for (int k = 0; k < K; k++)
                for (int oy = 0; oy < HO; oy++)
                    for (int ox = 0; ox < WO; ox++)
                        for (int c = 0; c < C; c++)
                            for (int r = 0; r < R; r++)
                                for (int s = 0; s < R; s++) {
                                    int iy = oy * S - P + r, ix = ox * S - P + s;
                                    if (iy < 0 || iy >= H || ix < 0 || ix >= Wd) continue;
                                    size_t xi = ((size_t)(n * C + c) * H + iy) * Wd + ix;
                                    size_t wi = ((size_t)(k * C + c) * R + r) * R + s;
                                    size_t yi = ((size_t)(n * K + k) * HO + oy) * WO + ox;
                                    y[yi] += (double)in(x[xi]) * in(w[wi]);
                                    gx[xi] += (double)in(dy[yi]) * in(w[wi]);
                                    gw[wi] += (double)in(x[xi]) * in(dy[yi]);
                                }
        std::vector<float> hy = back(dyo, y.size()), hx = back(dxo, x.size()), hw = back(dwo, w.size());
        double ey = 0, ex = 0, ew = 0;
        for (size_t i = 0; i < y.size(); i++) ey = fmax(ey, fabs(hy[i] - (float)(1.5 * (float)y[i])));
        for (size_t i = 0; i < x.size(); i++) ex = fmax(ex, fabs(hx[i] - (float)gx[i]));
        for (size_t i = 0; i < w.size(); i++) ew = fmax(ew, fabs(hw[i] - (float)gw[i]));
        CHECK(ey < 1e-5 && ex < 1e-6 && ew < 1e-6, "%s: errors fwd %g, bwd data %g, bwd filter %g",
              tensor ? "tensor-op (TF32 inputs)" : "fma", ey, ex, ew);
    }
    // the workspace an algorithm asks for must be given; Winograd runs 3x3 stride 1 only
    size_t need = 0;
    cudnnSetConvolutionMathType(cd, CUDNN_FMA_MATH);
    CHECK(cudnnGetConvolutionForwardWorkspaceSize(h, xd, wd, cd, yd, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
                                                  &need) == CUDNN_STATUS_SUCCESS && need > 0,
          "an algorithm with a workspace");
    CHECK(cudnnConvolutionForward(h, &one, xd, dx_, wd, dw_, cd, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, ws,
                                  need - 1, &zero, yd, dyo) == CUDNN_STATUS_BAD_PARAM, "a short workspace was taken");
    CHECK(cudnnGetConvolutionForwardWorkspaceSize(h, xd, wd, cd, yd, CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED,
                                                  &need) == CUDNN_STATUS_NOT_SUPPORTED, "Winograd at stride 2");
    std::vector<float> hostx(x);
    CHECK(cudnnConvolutionForward(h, &one, xd, hostx.data(), wd, dw_, cd, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
                                  NULL, 0, &zero, yd, dyo) == CUDNN_STATUS_BAD_PARAM, "a host tensor was taken");
    // the search lists a non-deterministic or tensor-op candidate first: the backend must choose
    cudnnConvolutionBwdFilterAlgoPerf_t perf[8];
    int got = 0;
    cudnnFindConvolutionBackwardFilterAlgorithm(h, xd, yd, cd, wd, 8, &got, perf);
    CHECK(got >= 3 && perf[0].determinism == CUDNN_NON_DETERMINISTIC && perf[1].mathType == CUDNN_TENSOR_OP_MATH,
          "the candidates are not in the order that tests the backend's choice");
    cudaFree(dx_), cudaFree(dw_), cudaFree(ddy), cudaFree(dyo), cudaFree(dxo), cudaFree(dwo), cudaFree(ws);
    cudnnDestroyTensorDescriptor(xd), cudnnDestroyTensorDescriptor(yd);
    cudnnDestroyFilterDescriptor(wd), cudnnDestroyConvolutionDescriptor(cd), cudnnDestroy(h);
}

int main(void) {
    RUN(indices);
    RUN(syncthreads_and_shared);
    RUN(shuffles);
    RUN(block_sum2);
    RUN(barrier_faults_reported);
    RUN(launch_limits);
    RUN(pointers_and_copies);
    RUN(out_of_bounds_reported);
    RUN(vector_alignment_reported);
    RUN(graph_capture);
    RUN(cudnn_convolution);
    return DONE();
}
