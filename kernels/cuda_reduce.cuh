// cuda_reduce.cuh: a block-wide sum of two doubles (device code, for the .cu files).
// Every thread of the block calls it once with its partial sums; thread 0 gets the totals.
// The order of the additions depends only on blockDim, never on timing: deterministic.
#ifndef BN_CUDA_REDUCE_CUH
#define BN_CUDA_REDUCE_CUH

// blockDim.x must be a multiple of 32, at most 1024. Call it at most once per kernel.
__device__ inline void block_sum2(double &a, double &b) {
    __shared__ double sa[32], sb[32];
    for (int off = 16; off > 0; off >>= 1) {
        a += __shfl_down_sync(0xffffffffu, a, off);
        b += __shfl_down_sync(0xffffffffu, b, off);
    }
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    if (lane == 0) sa[warp] = a, sb[warp] = b;
    __syncthreads();
    if (warp == 0) {
        a = lane < nwarps ? sa[lane] : 0.0;
        b = lane < nwarps ? sb[lane] : 0.0;
        for (int off = 16; off > 0; off >>= 1) {
            a += __shfl_down_sync(0xffffffffu, a, off);
            b += __shfl_down_sync(0xffffffffu, b, off);
        }
    }
}
#endif
