// cuda_linear.cu: the fully connected layer, and softmax cross-entropy.
//
// The layer is tiny (ResNet-20: 64 -> 10; the widest nets a few thousand inputs), so one
// tiled GEMM kernel of our own does its three products instead of cuBLAS: linking cuBLAS
// costs every program ~150 MB of resident memory at load time (libcublasLt's relocations),
// GPU or not, which broke the CPU path's 500 MB budget. The kernel reads its operands
// through strides, which is how the transposes below are expressed (row-major throughout):
//   y[n,out]   = x[n,in] . w[out,in]^T      A = x,    B(k,j) = w[j,k]
//   dx[n,in]   = dy[n,out] . w[out,in]      A = dy,   B = w
//   dw[out,in] = dy[n,out]^T . x[n,in]      A(o,i) = dy[i,o], B = x
// Each output element is one thread's sum over k in order, in fp32 (no tensor cores, no
// atomics: deterministic). Bias and its gradient are kernels of our own (the gradient summed
// in double, in order).
//
// Loss: one thread per row computes the row's loss and gradient in double (the arithmetic
// of the reference); the per-row losses and hits come back to the host and are added there
// in row order, so *loss is the reference's mean up to the last bits of exp and log.
#include <math.h>

#include "cuda_internal.h"

enum { TILE = 16 };

// One operand of a product: element (r, k) of the logical matrix is p[r*sr + k*sk].
typedef struct { const float *p; size_t sr, sk; } operand;

// c[m,n] (row-major, leading dimension n) = (accumulate ? c : 0) + sum_k A(m,k) B(k,n)
// with B given as its transpose's operand: B(k,j) = bt.p[j*bt.sr + k*bt.sk].
__global__ void k_gemm(int m, int n, int kk, operand a, operand bt, float *c, int accumulate) {
    __shared__ float as[TILE][TILE + 1], bs[TILE][TILE + 1];
    int r = blockIdx.y * TILE + threadIdx.y, j = blockIdx.x * TILE + threadIdx.x;
    float acc = 0.0f;
    for (int k0 = 0; k0 < kk; k0 += TILE) {
        int ka = k0 + threadIdx.x, kb = k0 + threadIdx.y;
        as[threadIdx.y][threadIdx.x] = r < m && ka < kk ? a.p[(size_t)r * a.sr + (size_t)ka * a.sk] : 0.0f;
        bs[threadIdx.y][threadIdx.x] = j < n && kb < kk ? bt.p[(size_t)j * bt.sr + (size_t)kb * bt.sk] : 0.0f;
        __syncthreads();
        for (int t = 0; t < TILE; t++) acc = fmaf(as[threadIdx.y][t], bs[t][threadIdx.x], acc);
        __syncthreads();
    }
    if (r < m && j < n) {
        float *out = c + (size_t)r * n + j;
        *out = accumulate ? *out + acc : acc;
    }
}

static void gemm(int m, int n, int kk, operand a, operand bt, float *c, int accumulate) {
    if ((m + TILE - 1) / TILE > 65535)   // gridDim.y's limit: a batch of a million rows
        cli_die("the linear layer's %d rows are more than its GPU kernel takes (%d; kernels/cuda_linear.cu)", m,
                65535 * TILE);
    dim3 block(TILE, TILE), grid((unsigned)((n + TILE - 1) / TILE), (unsigned)((m + TILE - 1) / TILE));
    k_gemm<<<grid, block, 0, cuda_stream()>>>(m, n, kk, a, bt, c, accumulate);
    CUDA_LAUNCH_CHECK();
}

__global__ void k_fill_rows(int n, int out, const float *b, float *y) {
    size_t total = (size_t)n * out;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x)
        y[i] = b ? b[i % out] : 0.0f;
}

// db[o] = sum over rows of dy[i, o], in double, rows in order
__global__ void k_col_sums(int n, int out, const float *dy, float *db) {
    int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= out) return;
    double a = 0.0;
    for (int i = 0; i < n; i++) a += dy[(size_t)i * out + o];
    db[o] = (float)a;
}

void cuda_linear_fwd(ops *o, int n, int in, int out, const float *x, const float *w, const float *b, float *y) {
    (void)o;
    if (n <= 0 || out <= 0) return;
    if (in <= 0 || b) {                            // y = b (then + x.w^T), or 0 when there is no input
        k_fill_rows<<<cuda_blocks((size_t)n * out), CUDA_THREADS, 0, cuda_stream()>>>(n, out, b, y);
        CUDA_LAUNCH_CHECK();
        if (in <= 0) return;
    }
    gemm(n, out, in, operand{x, (size_t)in, 1}, operand{w, (size_t)in, 1}, y, b != NULL);
}

void cuda_linear_bwd_data(ops *o, int n, int in, int out, const float *dy, const float *w, float *dx) {
    (void)o;
    if (n <= 0 || in <= 0) return;
    if (out <= 0) {
        CUDA_CHECK(cudaMemsetAsync(dx, 0, (size_t)n * in * sizeof *dx, cuda_stream()));
        return;
    }
    gemm(n, in, out, operand{dy, (size_t)out, 1}, operand{w, 1, (size_t)in}, dx, 0);
}

void cuda_linear_bwd_filter(ops *o, int n, int in, int out, const float *x, const float *dy, float *dw, float *db) {
    (void)o;
    if (out <= 0) return;
    if (in > 0) {
        if (n <= 0)
            CUDA_CHECK(cudaMemsetAsync(dw, 0, (size_t)out * in * sizeof *dw, cuda_stream()));
        else
            gemm(out, in, n, operand{dy, 1, (size_t)out}, operand{x, 1, (size_t)in}, dw, 0);
    }
    if (db) {
        k_col_sums<<<(unsigned)((out + CUDA_THREADS - 1) / CUDA_THREADS), CUDA_THREADS, 0, cuda_stream()>>>(n > 0 ? n : 0, out, dy, db);
        CUDA_LAUNCH_CHECK();
    }
}

// Row i: loss (NaN for a label outside [0, classes)), hit, and the gradient (p - onehot)/n.
// With step (xent_rows): a loss that is not finite sets step->skip (the optimizer then skips the step).
__global__ void k_xent(int n, int classes, const float *logits, const uint8_t *labels, float *dlogits,
                       double *row_loss, int32_t *row_hit, ops_step *step) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float *l = logits + (size_t)i * classes;
    int arg = 0;
    for (int j = 1; j < classes; j++)
        if (l[j] > l[arg]) arg = j;                // first maximum on ties
    double mx = l[arg], s = 0.0;
    for (int j = 0; j < classes; j++) s += exp((double)l[j] - mx);
    double lse = mx + log(s);
    int lab = labels[i];
    double loss = lab < classes ? lse - (double)l[lab] : (double)NAN;
    row_loss[i] = loss;
    row_hit[i] = lab < classes && arg == lab;
    if (step && !isfinite(loss)) step->skip = 1;
    if (dlogits)
        for (int j = 0; j < classes; j++) {
            double p = exp((double)l[j] - lse);
            dlogits[(size_t)i * classes + j] = (float)((p - (j == lab ? 1.0 : 0.0)) / n);
        }
}

void cuda_xent(ops *o, int n, int classes, const float *logits, const uint8_t *labels, float *dlogits, double *loss,
               int *correct) {
    cuda_ctx *c = cuda_ctx_of(o);
    if (n <= 0 || classes <= 0) {
        *loss = n > 0 ? (double)NAN : 0.0;         // no class: no probability for any label
        if (correct) *correct = 0;
        return;
    }
    size_t bytes = (size_t)n * (sizeof(double) + sizeof(int32_t));
    double *d_loss = (double *)cuda_ctx_scratch(c, bytes);
    int32_t *d_hit = (int32_t *)(d_loss + n);
    k_xent<<<(unsigned)((n + CUDA_THREADS - 1) / CUDA_THREADS), CUDA_THREADS, 0, cuda_stream()>>>(n, classes, logits, labels, dlogits,
                                                                                  d_loss, d_hit, NULL);
    CUDA_LAUNCH_CHECK();
    double *h_loss = (double *)cuda_ctx_hscratch(c, bytes);
    int32_t *h_hit = (int32_t *)(h_loss + n);
    CUDA_CHECK(cudaMemcpyAsync(h_loss, d_loss, bytes, cudaMemcpyDeviceToHost, c->st));
    CUDA_CHECK(cudaStreamSynchronize(c->st));
    double total = 0.0;
    int right = 0;
    for (int i = 0; i < n; i++) {
        total += h_loss[i];
        right += h_hit[i];
    }
    *loss = total / n;
    if (correct) *correct = right;
}

__global__ void k_xent_none(int n, double *row_loss, int32_t *row_hit, ops_step *step) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    row_loss[i] = (double)NAN, row_hit[i] = 0;
    if (step && i == 0) step->skip = 1;
}

// ops.h xent_rows: the same kernel, its rows left in device memory (the host sums them as
// cuda_xent does, so the two give the same loss)
void cuda_xent_rows(ops *o, int n, int classes, const float *logits, const uint8_t *labels, float *dlogits,
                    double *row_loss, int32_t *row_hit, ops_step *s) {
    (void)o;
    if (n <= 0) return;
    if (classes <= 0) {     // no probability for any label: NaN rows, no hit, skip
        k_xent_none<<<(unsigned)((n + CUDA_THREADS - 1) / CUDA_THREADS), CUDA_THREADS, 0, cuda_stream()>>>(
            n, row_loss, row_hit, s);
        CUDA_LAUNCH_CHECK();
        return;
    }
    k_xent<<<(unsigned)((n + CUDA_THREADS - 1) / CUDA_THREADS), CUDA_THREADS, 0, cuda_stream()>>>(
        n, classes, logits, labels, dlogits, row_loss, row_hit, s);
    CUDA_LAUNCH_CHECK();
}
