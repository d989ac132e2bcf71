/* dist.h: data-parallel training ranks: who am I, how many are we, sum a buffer over all.
 *
 * One process is one rank. A build with MPI (mk/mpi.mk: HAVE_MPI) initialises MPI only when
 * the process was started by a launcher (mpirun/mpiexec: OMPI_COMM_WORLD_SIZE; Hydra, srun
 * --mpi=pmi2: PMI_SIZE; PMIx launchers: PMIX_RANK); a plain run, or a build without MPI, is
 * the single-process fallback: rank 0 of 1, every collective a no-op. So a plain `net-train`
 * never touches MPI.
 *
 * Collectives are called by every rank in the same order (the training loop's structure
 * guarantees it). Sums are in double; every rank gets the very same bits (a reduce to rank 0
 * then a broadcast, whatever the MPI library's allreduce algorithm would do), so ranks that
 * apply the same update to the same weights stay identical.
 *
 * Errors: MPI's default handler aborts the whole job on a failed collective; a rank that
 * exits without dist_finalize (cli_die, a crash) takes the job down with it (an atexit
 * handler calls MPI_Abort), so no rank waits forever for a dead one.
 *
 * NCCL (dist_nccl.c, built where nccl.h is found: HAVE_NCCL) is a second transport for GPU
 * ranks: MPI still starts the ranks and hands out NCCL's unique id; the sums then go
 * through NCCL on each rank's GPU (one GPU per rank: local rank modulo the device count). */
#ifndef BN_DIST_H
#define BN_DIST_H
#include <stdbool.h>
#include <stddef.h>
#include "ops.h"

/* Starts this rank. transport: "auto" (MPI when launched by a launcher, else single),
 * "none" (single even under a launcher: every rank a separate run), "mpi" (MPI, an error
 * when not launched by one) or "nccl" (MPI to start, NCCL for the sums). 0, or -1 with err
 * (a transport not built, srun started several tasks with no MPI wiring, ...). Call once,
 * before anything else is read. */
int dist_init(int *argc, char ***argv, const char *transport, char err[256]);
int dist_rank(void);                /* 0 .. size-1 (0 before dist_init) */
int dist_size(void);                /* 1 before dist_init and in the fallback */
const char *dist_transport(void);   /* "none", "mpi" or "nccl" */
bool dist_built_mpi(void);          /* built with MPI */
bool dist_built_nccl(void);         /* built with NCCL */

/* buf[0..n) = its sum over every rank (host memory), same bits on every rank. */
void dist_allreduce(double *buf, size_t n);
/* The float version through a double staging buffer: exact sums of the ranks' floats
 * rounded once; scratch holds n doubles (NULL: allocated and freed here). */
void dist_allreduce_f32(float *buf, size_t n, double *scratch);
/* Rank 0's bytes to every rank (any size). */
void dist_bcast(void *buf, size_t bytes);
/* 1 on every rank when any rank passes flag != 0 (e.g. a stop request seen by one rank). */
int dist_any(int flag);
void dist_barrier(void);

/* The ops.h allreduce hook: sets o->allreduce (and its context) when there is more than
 * one rank, clears it otherwise. */
void dist_attach(ops *o);

/* Ends this rank cleanly (MPI_Finalize); after it, exit does not abort the job. */
void dist_finalize(void);

/* Hooks of the NCCL transport (dist_nccl.c; stubs returning -1 with err without NCCL). */
int dist_nccl_init(int rank, int size, int local_rank, char err[256]);
void dist_nccl_allreduce(double *buf, size_t n);
void dist_nccl_finalize(void);
#endif
