// cuda_linear.cu: the fully connected layer through cuBLAS, and softmax cross-entropy.
//
// Row-major care: cuBLAS is column-major, and a row-major matrix A[r][c] is the
// column-major matrix A^T with leading dimension c. So with x[n,in], w[out,in], y[n,out]:
//   y^T (out x n)   = w (out x in, i.e. (col-major w^T)^T)   . x^T (in x n)
//   dx^T (in x n)   = w^T (in x out)                          . dy^T (out x n)
//   dw^T (in x out) = x^T (in x n)                            . dy (n x out, i.e. (col-major dy^T)^T)
// which are the three sgemm calls below. fp32 in fp32 (CUBLAS_DEFAULT_MATH: no TF32).
// Bias and its gradient are kernels of our own (the gradient summed in double, in order).
//
// Loss: one thread per row computes the row's loss and gradient in double (the arithmetic
// of the reference); the per-row losses and hits come back to the host and are added there
// in row order, so *loss is the reference's mean up to the last bits of exp and log.
#include <math.h>

#include "cuda_internal.h"

static const float one = 1.0f, zero = 0.0f;

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
    cuda_ctx *c = cuda_ctx_of(o);
    if (n <= 0 || out <= 0) return;
    if (in <= 0 || b) {                            // y = b (then + x.w^T), or 0 when there is no input
        k_fill_rows<<<cuda_blocks((size_t)n * out), CUDA_THREADS>>>(n, out, b, y);
        CUDA_LAUNCH_CHECK();
        if (in <= 0) return;
    }
    CUBLAS_CHECK(cublasSgemm(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &one, w, in, x, in, b ? &one : &zero, y,
                             out));
}

void cuda_linear_bwd_data(ops *o, int n, int in, int out, const float *dy, const float *w, float *dx) {
    cuda_ctx *c = cuda_ctx_of(o);
    if (n <= 0 || in <= 0) return;
    if (out <= 0) {
        CUDA_CHECK(cudaMemset(dx, 0, (size_t)n * in * sizeof *dx));
        return;
    }
    CUBLAS_CHECK(cublasSgemm(c->blas, CUBLAS_OP_N, CUBLAS_OP_N, in, n, out, &one, w, in, dy, out, &zero, dx, in));
}

void cuda_linear_bwd_filter(ops *o, int n, int in, int out, const float *x, const float *dy, float *dw, float *db) {
    cuda_ctx *c = cuda_ctx_of(o);
    if (out <= 0) return;
    if (in > 0) {
        if (n <= 0)
            CUDA_CHECK(cudaMemset(dw, 0, (size_t)out * in * sizeof *dw));
        else
            CUBLAS_CHECK(
                cublasSgemm(c->blas, CUBLAS_OP_N, CUBLAS_OP_T, in, out, n, &one, x, in, dy, out, &zero, dw, in));
    }
    if (db) {
        k_col_sums<<<(unsigned)((out + CUDA_THREADS - 1) / CUDA_THREADS), CUDA_THREADS>>>(n > 0 ? n : 0, out, dy, db);
        CUDA_LAUNCH_CHECK();
    }
}

// Row i: loss (NaN for a label outside [0, classes)), hit, and the gradient (p - onehot)/n.
__global__ void k_xent(int n, int classes, const float *logits, const uint8_t *labels, float *dlogits,
                       double *row_loss, int *row_hit) {
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
    row_loss[i] = lab < classes ? lse - (double)l[lab] : (double)NAN;
    row_hit[i] = lab < classes && arg == lab;
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
    size_t bytes = (size_t)n * (sizeof(double) + sizeof(int));
    double *d_loss = (double *)cuda_ctx_scratch(c, bytes);
    int *d_hit = (int *)(d_loss + n);
    k_xent<<<(unsigned)((n + CUDA_THREADS - 1) / CUDA_THREADS), CUDA_THREADS>>>(n, classes, logits, labels, dlogits,
                                                                                  d_loss, d_hit);
    CUDA_LAUNCH_CHECK();
    double *h_loss = (double *)cuda_ctx_hscratch(c, bytes);
    int *h_hit = (int *)(h_loss + n);
    CUDA_CHECK(cudaMemcpy(h_loss, d_loss, bytes, cudaMemcpyDeviceToHost));
    double total = 0.0;
    int right = 0;
    for (int i = 0; i < n; i++) {
        total += h_loss[i];
        right += h_hit[i];
    }
    *loss = total / n;
    if (correct) *correct = right;
}
