// cuda_vec.cuh: the loop and the loads and stores of the per-element kernels (device code,
// for the .cu files; the index arithmetic is cuda_index.h's). A kernel takes the values of
// its launch in groups of V consecutive ones, V = 4 (one float4: 16-byte aligned pointers,
// cuda_vec_width) or 1; the launch has nv < 2^31 groups (by_image_chunks), so 32-bit
// indices do not wrap.
#ifndef BN_CUDA_VEC_CUH
#define BN_CUDA_VEC_CUH
#include <stdint.h>

// The emulation (tests/cudasim/cudasim.h) defines this to check that each float4 access is
// 16-byte aligned, as the GPU requires ("misaligned address"); here it is nothing.
#ifndef CUDA_VEC_CHECK
#define CUDA_VEC_CHECK(p) ((void)0)
#endif

// a grid-stride loop over the nv groups (nv + the stride < 2^32)
#define GROUPS(v, nv) \
    for (uint32_t v = blockIdx.x * blockDim.x + threadIdx.x; v < (nv); v += gridDim.x * blockDim.x)

// the V values of group v: one float4 when V = 4 and vec (the pointer 16-byte aligned), else
// V scalar loads of the same values
template <int V> __device__ __forceinline__ void load_v(const float *p, size_t v, float *out, int vec = 1) {
    if (V == 4 && vec) {
        CUDA_VEC_CHECK(reinterpret_cast<const float4 *>(p) + v);
        float4 t = reinterpret_cast<const float4 *>(p)[v];
        out[0] = t.x, out[1] = t.y, out[2] = t.z, out[3] = t.w;
    } else {
        for (int k = 0; k < V; k++) out[k] = p[v * V + k];
    }
}
template <int V> __device__ __forceinline__ void store_v(float *p, uint32_t v, const float *in) {
    if (V == 4) {
        CUDA_VEC_CHECK(reinterpret_cast<float4 *>(p) + v);
        reinterpret_cast<float4 *>(p)[v] = make_float4(in[0], in[1], in[2], in[3]);
    } else {
        p[v] = in[0];
    }
}
#endif
