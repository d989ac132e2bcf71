/* test_dist.c: the ranks of data-parallel training (dist.h) and the reference backend's
 * BatchNorm over ranks (ops.h allreduce hook).
 *
 * Run plainly (make test) it checks the single-process fallback, and BatchNorm split over
 * two "ranks" that are two threads of this process summing through a barrier: each thread
 * gets half of a batch and the results must equal one call on the whole batch. Run under
 * `mpirun -np 2` (tests/cli_mpi.sh) the same split goes through MPI between two processes. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "dist.h"
#include "ops.h"
#include "rng.h"

/* ---- the fallback --------------------------------------------------------------------- */
TEST(fallback) {
    if (dist_size() > 1) SKIP("running as several ranks");
    CHECK(dist_rank() == 0 && dist_size() == 1, "rank %d of %d", dist_rank(), dist_size());
    double v[3] = {1.5, -2, 7};
    dist_allreduce(v, 3);
    CHECK(v[0] == 1.5 && v[1] == -2 && v[2] == 7, "a single rank's sum changed the values");
    float f[2] = {0.25f, 3};
    dist_allreduce_f32(f, 2, NULL);
    CHECK(f[0] == 0.25f && f[1] == 3, "f32 sum changed the values");
    CHECK(dist_any(0) == 0 && dist_any(5) == 1, "dist_any");
    ops o = ops_ref;
    o.allreduce = (void (*)(void *, double *, size_t))1;   /* must be cleared */
    dist_attach(&o);
    CHECK(o.allreduce == NULL, "one rank leaves no hook");
}

TEST(init_errors) {
    if (dist_size() > 1 || getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK"))
        SKIP("started by a launcher");
    char err[256] = "";
    int argc = 1;
    char *args[] = {"test_dist", NULL}, **argv = args;
    CHECK(dist_init(&argc, &argv, "mpi", err) == -1, "--dist mpi outside a launcher must fail");
    CHECK(strstr(err, "launcher") != NULL, "err: %s", err);
    CHECK(dist_init(&argc, &argv, "bogus", err) == -1 && strstr(err, "unknown"), "err: %s", err);
    CHECK(dist_init(&argc, &argv, "auto", err) == 0 && dist_size() == 1, "auto alone is one rank");
    CHECK(strcmp(dist_transport(), "none") == 0, "transport %s", dist_transport());
}

/* ---- BatchNorm over ranks ------------------------------------------------------------- */
enum { N = 7, C = 3, HW = 5 };   /* an odd batch: the ranks get 3 and 4 images */

typedef struct bn_case {
    float x[N * C * HW], dy[N * C * HW], gamma[C], beta[C];
} bn_case;

static void make_case(bn_case *k) {
    rng r;
    rng_seed(&r, 42, 7);
    for (int i = 0; i < N * C * HW; i++) {
        k->x[i] = (float)(3.0 * rng_normal(&r) + 1.5);
        k->dy[i] = (float)rng_normal(&r);
    }
    for (int c = 0; c < C; c++) k->gamma[c] = (float)(0.5 + c), k->beta[c] = (float)(0.1 * c - 0.2);
}

typedef struct bn_out {
    float y[N * C * HW], dx[N * C * HW], mean[C], invstd[C], rm[C], rv[C], dg[C], db[C];
} bn_out;

/* images [lo, hi) of the case through o (the whole batch when lo = 0, hi = N); outputs
 * at the same positions of *out */
static void run_slice(ops *o, const bn_case *k, int lo, int hi, bn_out *out) {
    bn_desc d = {hi - lo, C, HW, 1e-5f, 0.1f};
    size_t off = (size_t)lo * C * HW;
    for (int c = 0; c < C; c++) out->rm[c] = 0.3f, out->rv[c] = 2.0f;
    o->bn_fwd_train(o, &d, k->x + off, k->gamma, k->beta, out->y + off, out->mean, out->invstd, out->rm, out->rv);
    o->bn_bwd(o, &d, k->x + off, k->dy + off, k->gamma, out->mean, out->invstd, out->dx + off, out->dg, out->db);
}

/* split against whole: values of images [lo, hi) and every per-channel value. Tolerance:
 * the split sums the same double terms in another grouping (rank sums, then their sum),
 * a few double roundings on values rounded once to float: results within 1 float ulp, i.e.
 * 2^-23 relative; 1e-6 relative plus 1e-6 absolute (for values near 0) covers it, and a
 * rank that used its own statistics instead of the global ones is off by 1e-2 or more. */
static void compare(const bn_out *split, const bn_out *whole, int lo, int hi, const char *who) {
    int bad = 0;
    for (size_t i = (size_t)lo * C * HW; i < (size_t)hi * C * HW; i++) {
        bad += fabs(split->y[i] - whole->y[i]) > 1e-6 + 1e-6 * fabs(whole->y[i]);
        bad += fabs(split->dx[i] - whole->dx[i]) > 1e-6 + 1e-6 * fabs(whole->dx[i]);
    }
    CHECK(bad == 0, "%s: %d of y/dx differ", who, bad);
    for (int c = 0; c < C; c++) {
        CHECK_CLOSE(split->mean[c], whole->mean[c], 1e-6, 1e-6, "mean");
        CHECK_CLOSE(split->invstd[c], whole->invstd[c], 1e-6, 1e-6, "invstd");
        CHECK_CLOSE(split->rm[c], whole->rm[c], 1e-6, 1e-6, "running mean");
        CHECK_CLOSE(split->rv[c], whole->rv[c], 1e-6, 1e-6, "running var");
        CHECK_CLOSE(split->dg[c], whole->dg[c], 1e-6, 1e-6, "dgamma");
        CHECK_CLOSE(split->db[c], whole->db[c], 1e-6, 1e-6, "dbeta");
    }
}

/* two threads as two ranks: sum through shared slots between barriers */
typedef struct group {
    pthread_barrier_t bar;
    double *slot[2];
    int calls[2];
} group;
typedef struct member {
    group *g;
    int id;
    ops o;
    const bn_case *k;
    bn_out *out;
} member;

static void thread_sum(void *ctx, double *buf, size_t n) {
    member *me = ctx;
    group *g = me->g;
    g->slot[me->id] = buf;
    g->calls[me->id]++;
    pthread_barrier_wait(&g->bar);
    double *sum = malloc(n * sizeof *sum);
    for (size_t i = 0; i < n; i++) sum[i] = g->slot[0][i] + g->slot[1][i];   /* the same order on both */
    pthread_barrier_wait(&g->bar);   /* both have read both slots */
    for (size_t i = 0; i < n; i++) buf[i] = sum[i];
    free(sum);
}

static const int split_at = 3;
static void *thread_main(void *arg) {
    member *me = arg;
    run_slice(&me->o, me->k, me->id ? split_at : 0, me->id ? N : split_at, me->out);
    return NULL;
}

TEST(bn_two_threads) {
    static bn_case k;
    static bn_out whole, part[2];
    make_case(&k);
    ops plain = ops_ref;
    plain.allreduce = NULL;
    run_slice(&plain, &k, 0, N, &whole);
    group g = {0};
    pthread_barrier_init(&g.bar, NULL, 2);
    member mem[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        mem[i] = (member){&g, i, ops_ref, &k, &part[i]};
        mem[i].o.allreduce = thread_sum, mem[i].o.allreduce_ctx = &mem[i];
        pthread_create(&th[i], NULL, thread_main, &mem[i]);
    }
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&g.bar);
    CHECK(g.calls[0] == 3 && g.calls[1] == 3, "hook calls %d %d (ops.h: 2 in forward, 1 in backward)", g.calls[0],
          g.calls[1]);
    compare(&part[0], &whole, 0, split_at, "rank 0");
    compare(&part[1], &whole, split_at, N, "rank 1");
    /* the check can fail: a half alone (no hook) has its own statistics */
    static bn_out alone;
    run_slice(&plain, &k, 0, split_at, &alone);
    double diff = 0;
    for (int c = 0; c < C; c++) diff += fabs(alone.mean[c] - whole.mean[c]) + fabs(alone.dg[c] - whole.dg[c]);
    CHECK(diff > 1e-3, "a half batch without the hook should differ (diff %g)", diff);
}

/* one rank with a hook that changes nothing: bit for bit the plain reference */
static void identity(void *ctx, double *buf, size_t n) { (void)ctx, (void)buf, (void)n; }
TEST(bn_one_rank_bitexact) {
    static bn_case k;
    static bn_out a, b;
    make_case(&k);
    ops plain = ops_ref, hooked = ops_ref;
    plain.allreduce = NULL;
    hooked.allreduce = identity;
    run_slice(&plain, &k, 0, N, &a);
    run_slice(&hooked, &k, 0, N, &b);
    CHECK(memcmp(&a, &b, sizeof a) == 0, "the hooked path with one rank is not bit-identical");
}

/* Under mpirun -np 2: rank r takes its half through MPI. */
TEST(bn_mpi_ranks) {
    if (dist_size() != 2) SKIP("needs mpirun -np 2 (tests/cli_mpi.sh)");
    static bn_case k;
    static bn_out whole, part;
    make_case(&k);
    ops plain = ops_ref, o = ops_ref;
    plain.allreduce = NULL;
    run_slice(&plain, &k, 0, N, &whole);
    dist_attach(&o);
    CHECK(o.allreduce != NULL, "two ranks attach the hook");
    int r = dist_rank();
    run_slice(&o, &k, r ? split_at : 0, r ? N : split_at, &part);
    compare(&part, &whole, r ? split_at : 0, r ? N : split_at, r ? "mpi rank 1" : "mpi rank 0");
    double v[2] = {1.0 + r, 10.0 * r};
    dist_allreduce(v, 2);
    CHECK(v[0] == 3 && v[1] == 10, "allreduce: %g %g", v[0], v[1]);
    CHECK(dist_any(r == 1) == 1 && dist_any(0) == 0, "dist_any over ranks");
    uint64_t b = r == 0 ? 0x1234567890ULL : 0;
    dist_bcast(&b, sizeof b);
    CHECK(b == 0x1234567890ULL, "bcast");
}

int main(int argc, char **argv) {
    char err[256];
    /* under a launcher this makes the ranks; plainly it is the fallback */
    if (dist_init(&argc, &argv, "auto", err)) {
        printf("FAIL - dist_init: %s\n", err);
        return 1;
    }
    RUN(fallback);
    RUN(init_errors);
    RUN(bn_two_threads);
    RUN(bn_one_rank_bitexact);
    RUN(bn_mpi_ranks);
    int rc = DONE();
    dist_finalize();
    return rc;
}
