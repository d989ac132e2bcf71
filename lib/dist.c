/* dist.c: ranks over MPI, or the single-process fallback (dist.h). */
#include "dist.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef HAVE_MPI
#include <mpi.h>
#endif

static int g_rank = 0, g_size = 1;
static const char *g_transport = "none";
#ifdef HAVE_MPI
static bool g_mpi = false, g_finalized = false;
#endif

int dist_rank(void) { return g_rank; }
int dist_size(void) { return g_size; }
const char *dist_transport(void) { return g_transport; }

bool dist_built_mpi(void) {
#ifdef HAVE_MPI
    return true;
#else
    return false;
#endif
}

/* an environment variable that is set and not empty */
static const char *env(const char *name) {
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/* Launched by a launcher that wires up MPI (Open MPI's mpirun, Hydra/PMI, PMIx). */
static bool launched(void) { return env("OMPI_COMM_WORLD_SIZE") || env("PMI_SIZE") || env("PMIX_RANK"); }

/* this rank's index among the ranks of its node (GPU choice) */
static int local_rank(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID", NULL};
    for (int i = 0; vars[i]; i++)
        if (env(vars[i])) return atoi(env(vars[i]));
    return 0;
}

#ifdef HAVE_MPI
/* A rank leaving without dist_finalize (cli_die, exit from anywhere) ends the job, so the
 * other ranks do not wait forever inside a collective. */
static void abort_at_exit(void) {
    if (g_mpi && !g_finalized) MPI_Abort(MPI_COMM_WORLD, 1);
}
#endif

int dist_init(int *argc, char ***argv, const char *transport, char err[256]) {
    if (!transport) transport = "auto";
    bool want_mpi = strcmp(transport, "mpi") == 0 || strcmp(transport, "nccl") == 0;
    if (strcmp(transport, "none") == 0) return 0;
    if (!want_mpi && strcmp(transport, "auto") != 0) {
        snprintf(err, 256, "unknown transport '%s' (expected auto, none, mpi or nccl)", transport);
        return -1;
    }
    if (!launched()) {
        /* srun with several tasks but no MPI wiring: each task would be a whole separate
         * run writing the same output; refuse instead */
        const char *st = env("SLURM_STEP_NUM_TASKS");
        if (st && atoi(st) > 1) {
            snprintf(err, 256,
                     "started by srun as one of %s tasks with no MPI wiring (no PMI/PMIx): launch with "
                     "srun --mpi=pmix (or pmi2), or mpirun, or run one task",
                     st);
            return -1;
        }
        if (want_mpi) {
            snprintf(err, 256, "--dist %s: not started by an MPI launcher (mpirun -np N ...)", transport);
            return -1;
        }
        return 0;
    }
#ifdef HAVE_MPI
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        snprintf(err, 256, "MPI_Init failed");
        return -1;
    }
    g_mpi = true;
    atexit(abort_at_exit);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    g_transport = "mpi";
    if (strcmp(transport, "nccl") == 0) {
        if (dist_nccl_init(g_rank, g_size, local_rank(), err)) return -1;
        g_transport = "nccl";
    }
    return 0;
#else
    (void)argc, (void)argv, (void)local_rank;
    if (want_mpi || (env("OMPI_COMM_WORLD_SIZE") && atoi(env("OMPI_COMM_WORLD_SIZE")) > 1) ||
        (env("PMI_SIZE") && atoi(env("PMI_SIZE")) > 1)) {
        snprintf(err, 256, "started by an MPI launcher, but this build has no MPI (rebuild where mpicc is found)");
        return -1;
    }
    return 0;
#endif
}

void dist_allreduce(double *buf, size_t n) {
    if (g_size < 2 || n == 0) return;
    if (strcmp(g_transport, "nccl") == 0) {
        dist_nccl_allreduce(buf, n);
        return;
    }
#ifdef HAVE_MPI
    /* reduce to rank 0, then broadcast: every rank gets rank 0's bits */
    for (size_t off = 0; off < n; off += (size_t)INT_MAX / 2) {
        int cnt = (int)(n - off < (size_t)INT_MAX / 2 ? n - off : (size_t)INT_MAX / 2);
        MPI_Reduce(g_rank == 0 ? MPI_IN_PLACE : buf + off, buf + off, cnt, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
        MPI_Bcast(buf + off, cnt, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    }
#endif
}

void dist_allreduce_f32(float *buf, size_t n, double *scratch) {
    if (g_size < 2 || n == 0) return;
    double *s = scratch ? scratch : malloc(n * sizeof *s);
    if (!s) {
        fprintf(stderr, "dist: out of memory for a %zu-value sum\n", n);
        exit(1);
    }
    for (size_t i = 0; i < n; i++) s[i] = buf[i];
    dist_allreduce(s, n);
    for (size_t i = 0; i < n; i++) buf[i] = (float)s[i];
    if (!scratch) free(s);
}

void dist_bcast(void *buf, size_t bytes) {
    if (g_size < 2) return;
#ifdef HAVE_MPI
    char *p = buf;
    for (size_t off = 0; off < bytes; off += (size_t)1 << 30) {
        size_t cnt = bytes - off < (size_t)1 << 30 ? bytes - off : (size_t)1 << 30;
        MPI_Bcast(p + off, (int)cnt, MPI_BYTE, 0, MPI_COMM_WORLD);
    }
#else
    (void)buf, (void)bytes;
#endif
}

int dist_any(int flag) {
    double v = flag != 0;
    dist_allreduce(&v, 1);
    return v > 0;
}

void dist_barrier(void) {
#ifdef HAVE_MPI
    if (g_size > 1) MPI_Barrier(MPI_COMM_WORLD);
#endif
}

static void hook(void *ctx, double *buf, size_t n) {
    (void)ctx;
    dist_allreduce(buf, n);
}

void dist_attach(ops *o) {
    if (!o) return;
    o->allreduce = g_size > 1 ? hook : NULL;
    o->allreduce_ctx = NULL;
}

void dist_finalize(void) {
    if (strcmp(g_transport, "nccl") == 0) dist_nccl_finalize();
#ifdef HAVE_MPI
    if (g_mpi && !g_finalized) {
        g_finalized = true;
        MPI_Finalize();
    }
#endif
}
