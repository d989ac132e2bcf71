/* cuda_mem.h: device memory for the CUDA backend, callable from C (the tests; the model
 * reaches the same functions through ops.h's mem_* entries of the table ops_cuda).
 *
 * All of these work on the CUDA device in use (device 0 unless the caller chose another)
 * and on the legacy default stream. The ops of ops_cuda run on a stream of their own,
 * created blocking (cudaStreamCreate, not cudaStreamNonBlocking: ops_cuda.cu start), so
 * that it and the legacy stream wait for each other: a copy here is ordered after the ops
 * issued before it, and the ops after it wait for it. cuda_to_host returns when the data is on the
 * host. Any CUDA error ends the program with a message (kernels/cuda_check.h), except that
 * cuda_alloc returns NULL when the device is out of memory, so that the caller can say what
 * it was allocating. Sizes are in bytes; 0 bytes is allowed (cuda_alloc(0) returns NULL,
 * copies and memsets of 0 bytes do nothing). */
#ifndef BN_CUDA_MEM_H
#define BN_CUDA_MEM_H
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif
void *cuda_alloc(size_t bytes);                                  /* NULL: out of device memory */
void cuda_free(void *p);                                         /* NULL: nothing */
void cuda_to_device(void *dst, const void *src, size_t bytes);   /* host -> device */
void cuda_to_host(void *dst, const void *src, size_t bytes);     /* device -> host */
void cuda_copy(void *dst, const void *src, size_t bytes);        /* device -> device */
void cuda_memset(void *p, int byte, size_t bytes);               /* each byte = byte */
void cuda_sync(void);                                            /* wait for all queued work */
/* Number of usable CUDA devices; 0 with *why set when there is none. */
int cuda_device_count(const char **why);
/* Whose 3x3 stride-1 convolutions run in the fp32 mode: "cudnn" or "own" (cuda_conv3.cu),
 * in place of BN_CUDA_CONV's choice (the tests try both). Returns the previous choice (0
 * cudnn, 1 own), or -1 for another name or no usable device. */
int cuda_conv_impl(const char *name);
/* cuda_conv3.cu's forward and data gradient with 2 or 4 rows a thread, or 0: chosen by the
 * shape (as BN_CUDA_CONV3_ROWS does; a shape whose height the number does not divide then
 * goes to cuDNN). -1 for another number. Every choice gives the same bits. */
int cuda_conv3_set_rows(int rows);
/* How many convolution ops (one direction of one call each) cuda_conv3.cu's kernels served. */
long cuda_conv3_served(void);
/* Read BN_CUDA_INDEX_LIMIT again at the next op (it is read once; the tests change it). */
void cuda_index_limit_reread(void);
#ifdef __cplusplus
}
#endif
#endif
