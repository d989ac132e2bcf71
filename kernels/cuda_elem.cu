// cuda_elem.cu: ReLU, add (and the fused add+ReLU, ReLU-backward+add), global average
// pooling on the GPU, with the reference's
// arithmetic: ReLU keeps NaN (NaN < 0 is false), pooling sums in double and rounds once,
// its backward is the float of dy/hw computed in double. All are grid-stride loops.
#include "cuda_internal.h"
#include "cuda_vec.cuh"

__global__ void k_relu_fwd(size_t n, const float *x, float *y) {
    GRID_STRIDE(i, n) y[i] = x[i] < 0.0f ? 0.0f : x[i];
}
__global__ void k_relu_bwd(size_t n, const float *y, const float *dy, float *dx) {
    GRID_STRIDE(i, n) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}
__global__ void k_add(size_t n, const float *a, const float *b, float *y) {
    GRID_STRIDE(i, n) y[i] = a[i] + b[i];
}
// ops.h's fused pair, the bits of add then relu_fwd / add then relu_bwd
__global__ void k_add_relu(size_t n, const float *a, const float *b, float *y) {
    GRID_STRIDE(i, n) {
        float v = a[i] + b[i];
        y[i] = v < 0.0f ? 0.0f : v;
    }
}
__global__ void k_relu_bwd_add(size_t n, const float *y, const float *dy, const float *dy2, float *dx) {
    GRID_STRIDE(i, n) dx[i] = y[i] > 0.0f ? dy[i] + dy2[i] : 0.0f;
}

// one warp per (image, channel) row of hw values
__global__ void k_gap_fwd(size_t rows, int hw, const float *x, float *y) {
    size_t warp = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x & 31;
    if (warp >= rows) return;                      // whole warps leave together
    const float *p = x + warp * hw;
    double a = 0.0;
    for (int i = lane; i < hw; i += 32) a += p[i];
    for (int off = 16; off > 0; off >>= 1) a += __shfl_down_sync(0xffffffffu, a, off);
    if (lane == 0) y[warp] = (float)(a / hw);
}
// groups of V values of one row: row = v / (hw / V)
template <int V> __global__ void k_gap_bwd(uint32_t nv, cuda_div hwv, int hw, const float *dy, float *dx) {
    GROUPS(v, nv) {
        float g = (float)((double)dy[cuda_div_q(hwv, v)] / hw), out[V];
        for (int k = 0; k < V; k++) out[k] = g;
        store_v<V>(dx, v, out);
    }
}

const void *cuda_probe_kernel(void) { return (const void *)k_add; }

void cuda_relu_fwd(ops *o, size_t n, const float *x, float *y) {
    (void)o;
    if (!n) return;
    k_relu_fwd<<<cuda_blocks(n), CUDA_THREADS, 0, cuda_stream()>>>(n, x, y);
    CUDA_LAUNCH_CHECK();
}

void cuda_relu_bwd(ops *o, size_t n, const float *y, const float *dy, float *dx) {
    (void)o;
    if (!n) return;
    k_relu_bwd<<<cuda_blocks(n), CUDA_THREADS, 0, cuda_stream()>>>(n, y, dy, dx);
    CUDA_LAUNCH_CHECK();
}

void cuda_add(ops *o, size_t n, const float *a, const float *b, float *y) {
    (void)o;
    if (!n) return;
    k_add<<<cuda_blocks(n), CUDA_THREADS, 0, cuda_stream()>>>(n, a, b, y);
    CUDA_LAUNCH_CHECK();
}

void cuda_add_relu(ops *o, size_t n, const float *a, const float *b, float *y) {
    (void)o;
    if (!n) return;
    k_add_relu<<<cuda_blocks(n), CUDA_THREADS, 0, cuda_stream()>>>(n, a, b, y);
    CUDA_LAUNCH_CHECK();
}

void cuda_relu_bwd_add(ops *o, size_t n, const float *y, const float *dy, const float *dy2, float *dx) {
    (void)o;
    if (!n) return;
    k_relu_bwd_add<<<cuda_blocks(n), CUDA_THREADS, 0, cuda_stream()>>>(n, y, dy, dy2, dx);
    CUDA_LAUNCH_CHECK();
}

void cuda_gap_fwd(ops *o, int n, int c, int hw, const float *x, float *y) {
    (void)o;
    if (n <= 0 || c <= 0) return;
    size_t rows = (size_t)n * (size_t)c;
    if (hw <= 0) {                                 // the mean of nothing: 0/0, as the reference
        CUDA_CHECK(cudaMemsetAsync(y, 0xff, rows * sizeof *y, cuda_stream()));   // all-ones bits: a NaN
        return;
    }
    size_t blocks = (rows * 32 + CUDA_THREADS - 1) / CUDA_THREADS;
    k_gap_fwd<<<(unsigned)blocks, CUDA_THREADS, 0, cuda_stream()>>>(rows, hw, x, y);
    CUDA_LAUNCH_CHECK();
}

void cuda_gap_bwd(ops *o, int n, int c, int hw, const float *dy, float *dx) {
    (void)o;
    if (n <= 0 || c <= 0 || hw <= 0) return;
    by_image_chunks("gap_bwd", n, (size_t)c * hw, [&](size_t off, size_t count) {
        const float *dys = dy + off / hw;
        float *dxs = dx + off;
        cuda_span sp = cuda_span_make(c, hw, count, dxs, NULL, NULL, NULL);   // its row: sp.ix.hwv
        if (sp.V == 4)
            k_gap_bwd<4><<<cuda_blocks(sp.nv), CUDA_THREADS, 0, cuda_stream()>>>(sp.nv, sp.ix.hwv, hw, dys, dxs);
        else
            k_gap_bwd<1><<<cuda_blocks(sp.nv), CUDA_THREADS, 0, cuda_stream()>>>(sp.nv, sp.ix.hwv, hw, dys, dxs);
        CUDA_LAUNCH_CHECK();
    });
}
