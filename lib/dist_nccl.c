/* dist_nccl.c: the NCCL transport of dist.h, for GPU ranks (one GPU per rank).
 *
 * Built with HAVE_NCCL (mk/mpi.mk: nccl.h under CUDA_HOME and MPI found); otherwise stubs
 * that refuse. MPI starts the ranks and broadcasts NCCL's unique id; each rank then uses the
 * GPU numbered local_rank % device count. A sum of host doubles goes through a device
 * staging buffer (ncclFloat64, ncclSum), on one stream, synchronously: the callers (BN
 * statistics, gradient buffers) need the result before going on.
 *
 * Status: compiled everywhere NCCL is installed; never run on a GPU in this repository's
 * CI (no GPU there). The CUDA ops table does not exist yet, so today this transport only
 * carries the host-side sums of the CPU backends (correct, but pointless for speed). */
#include "dist.h"

#include <stdio.h>
#include <stdlib.h>

#ifdef HAVE_NCCL
#include <cuda_runtime_api.h>
#include <nccl.h>

static ncclComm_t comm;
static cudaStream_t stream;
static double *dbuf;
static size_t dcap;
static int ready;

static void die_nccl(const char *what, const char *msg) {
    fprintf(stderr, "dist: %s: %s\n", what, msg);
    exit(1);   /* dist.c's atexit handler aborts the other ranks */
}

int dist_nccl_init(int rank, int size, int local, char err[256]) {
    int ndev = 0;
    cudaError_t ce = cudaGetDeviceCount(&ndev);
    if (ce != cudaSuccess || ndev < 1) {
        snprintf(err, 256, "--dist nccl: no usable CUDA device (%s)",
                 ce != cudaSuccess ? cudaGetErrorString(ce) : "none found");
        return -1;
    }
    if ((ce = cudaSetDevice(local % ndev)) != cudaSuccess || (ce = cudaStreamCreate(&stream)) != cudaSuccess) {
        snprintf(err, 256, "--dist nccl: GPU %d: %s", local % ndev, cudaGetErrorString(ce));
        return -1;
    }
    ncclUniqueId id;
    if (rank == 0) {
        ncclResult_t r = ncclGetUniqueId(&id);
        if (r != ncclSuccess) {
            snprintf(err, 256, "ncclGetUniqueId: %s", ncclGetErrorString(r));
            return -1;
        }
    }
    dist_bcast(&id, sizeof id);
    ncclResult_t r = ncclCommInitRank(&comm, size, id, rank);
    if (r != ncclSuccess) {
        snprintf(err, 256, "ncclCommInitRank (rank %d of %d): %s", rank, size, ncclGetErrorString(r));
        return -1;
    }
    ready = 1;
    return 0;
}

void dist_nccl_allreduce(double *buf, size_t n) {
    if (!ready || n == 0) return;
    if (n > dcap) {
        if (dbuf) cudaFree(dbuf);
        dbuf = NULL;
        if (cudaMalloc((void **)&dbuf, n * sizeof *dbuf) != cudaSuccess) die_nccl("cudaMalloc", "out of GPU memory");
        dcap = n;
    }
    cudaError_t ce = cudaMemcpyAsync(dbuf, buf, n * sizeof *buf, cudaMemcpyHostToDevice, stream);
    if (ce != cudaSuccess) die_nccl("cudaMemcpy", cudaGetErrorString(ce));
    ncclResult_t r = ncclAllReduce(dbuf, dbuf, n, ncclFloat64, ncclSum, comm, stream);
    if (r != ncclSuccess) die_nccl("ncclAllReduce", ncclGetErrorString(r));
    ce = cudaMemcpyAsync(buf, dbuf, n * sizeof *buf, cudaMemcpyDeviceToHost, stream);
    if (ce == cudaSuccess) ce = cudaStreamSynchronize(stream);
    if (ce != cudaSuccess) die_nccl("cudaMemcpy", cudaGetErrorString(ce));
}

void dist_nccl_finalize(void) {
    if (!ready) return;
    ready = 0;
    ncclCommDestroy(comm);
    if (dbuf) cudaFree(dbuf);
    dbuf = NULL, dcap = 0;
    cudaStreamDestroy(stream);
}

bool dist_built_nccl(void) { return true; }

#else /* no NCCL in this build */

int dist_nccl_init(int rank, int size, int local, char err[256]) {
    (void)rank, (void)size, (void)local;
    snprintf(err, 256, "--dist nccl: this build has no NCCL (nccl.h not found under CUDA_HOME, or NCCL=0)");
    return -1;
}
void dist_nccl_allreduce(double *buf, size_t n) { (void)buf, (void)n; }
void dist_nccl_finalize(void) {}
bool dist_built_nccl(void) { return false; }
#endif
