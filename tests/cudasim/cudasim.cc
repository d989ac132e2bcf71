// cudasim.cc: a host emulation of the part of the CUDA runtime and cuDNN that kernels/ uses,
// so that the CUDA backend's own code (its host side and its kernels, compiled by g++ with
// cudasim.h) runs, and is tested, on a machine with no GPU ("make sim", mk/sim.mk).
//
// What it checks that a plain CPU build cannot:
//   - every kernel's indexing, its block and grid arithmetic, its barriers (a __syncthreads
//     or a shuffle that not all the threads it names reach is an error, not a hang) and its
//     launch configuration (the limits of compute capability 9.0);
//   - pointers: a kernel parameter, a cuDNN tensor or a copy that points outside the device
//     memory it must be in (cudaMalloc'd, and big enough for the tensor or the copy), or a
//     copy in the wrong direction, fails with an error, as it would crash or corrupt on a GPU;
//   - new device memory holds NaN bytes (0xff), so reading what nothing wrote shows;
//   - recording into a graph: launches, copies and cuDNN calls on the capturing stream are
//     recorded with their parameters as they are at the call, and replayed by
//     cudaGraphLaunch; a synchronous call, an allocation or work on another stream during
//     the capture invalidates it (cudaStreamEndCapture fails), as CUDA's thread-local
//     capture mode does;
//   - cuDNN's algorithm search: the candidates come back in an order that puts a
//     non-deterministic one, a tensor-op one and one that needs a workspace first, so the
//     backend's choice and workspace handling run; the convolution checks that its
//     workspace is device memory of the size the algorithm asked for.
//
// What it cannot show: speed, the GPU's own floating-point functions (exp, log, sqrt are
// the host's; the _rn intrinsics are exact either way), every race between threads (they
// run one at a time, each to its next barrier: only a race that the two orders of
// CUDASIM_ORDER resolve differently shows), cuDNN's own arithmetic (the
// convolutions here sum in double and round once; under tensor-op math their inputs are
// first rounded to TF32), and anything of the real driver.
//
// Execution is synchronous: work is done when it is queued (streams only record, during a
// capture). Blocks run one after another; the threads of a block are fibers that switch at
// barriers (a few instructions each, below). CUDASIM_ORDER=reverse runs blocks and threads
// last first: what depends on the order (a race) then comes out different.
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <map>
#include <string>
#include <vector>

#include "cudasim.h"

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

static void sim_die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void sim_die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cudasim: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(3);
}

// ---- memory ----------------------------------------------------------------------------------

// Each allocation (cudaMalloc, cudaMallocHost) is mapped pages of its own between two
// inaccessible guard pages, its end 16-byte aligned against the guard after it: a kernel
// that reads or writes past either end of its memory by more than that faults at once (the
// handler below names the kernel, block and thread). The slack around the allocation in
// its pages is filled with a pattern, checked after every kernel, cuDNN call and copy:
// a write there is reported too.
struct region {
    size_t bytes;
    bool pinned;    // cudaMallocHost: host memory a kernel can also read
    char *map;      // the mapping: guard page, the data pages, guard page
    size_t map_bytes;
};
static std::map<uintptr_t, region> regions;
#define PAGE ((size_t)4096)
#define SLACK_BYTE 0xa5

static void *guarded_alloc(size_t bytes, bool pinned) {
    size_t data = (bytes + 15) / 16 * 16, pages = (data + PAGE - 1) / PAGE * PAGE;
    if (pages == 0) pages = PAGE;
    size_t len = pages + 2 * PAGE;
    char *m = (char *)mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return NULL;
    if (mprotect(m + PAGE, pages, PROT_READ | PROT_WRITE)) {
        munmap(m, len);
        return NULL;
    }
    char *p = m + PAGE + pages - data;
    memset(m + PAGE, SLACK_BYTE, pages);
    memset(p, 0xff, bytes);                                 // NaN bytes: what nothing wrote
    regions[(uintptr_t)p] = region{bytes, pinned, m, len};
    return p;
}
static bool is_slack(const char *p, const char *end) {   // [p, end) holds only the pattern (< a page)
    static char pattern[PAGE];
    if (!pattern[0]) memset(pattern, SLACK_BYTE, sizeof pattern);
    return memcmp(p, pattern, (size_t)(end - p)) == 0;
}
// the first allocation whose slack was written ("before" or "after" it), or NULL
static const char *slack_written(uintptr_t *at) {
    for (auto &r : regions) {
        const char *lo = r.second.map + PAGE, *p = (const char *)r.first, *hi = r.second.map + r.second.map_bytes - PAGE;
        if (!is_slack(lo, p)) return *at = r.first, "before";
        if (!is_slack(p + r.second.bytes, hi)) return *at = r.first, "after";
    }
    return NULL;
}
static void check_slack(const char *after_what);

// the region [p, p + bytes) lies in, or NULL
static const region *region_of(const void *p, size_t bytes, bool *pinned_out = NULL) {
    uintptr_t a = (uintptr_t)p;
    auto it = regions.upper_bound(a);
    if (it == regions.begin()) return NULL;
    --it;
    if (a < it->first || a - it->first > it->second.bytes || bytes > it->second.bytes - (a - it->first)) return NULL;
    if (pinned_out) *pinned_out = it->second.pinned;
    return &it->second;
}
static bool is_device(const void *p, size_t bytes) {
    bool pinned = false;
    return region_of(p, bytes, &pinned) && !pinned;
}
// any part of [p, p + bytes) in device memory (a host pointer must have none)
static bool touches_device(const void *p, size_t bytes) {
    uintptr_t a = (uintptr_t)p;
    auto it = regions.upper_bound(a + (bytes ? bytes - 1 : 0));
    if (it == regions.begin()) return false;
    --it;
    return !it->second.pinned && it->first + it->second.bytes > a;
}

int sim_pointer_ok(const void *p) {
    if (!p) return 1;
    return region_of(p, 0) != NULL;
}

// ---- errors, streams, capture -----------------------------------------------------------

static cudaError_t last_error = cudaSuccess;
static cudaError_t fail(cudaError_t e) {
    if (e != cudaSuccess) last_error = e;
    return e;
}

struct CUstream_st {
    bool capturing, invalidated;
    std::vector<std::function<void()>> *rec;
};
struct CUgraph_st {
    std::vector<std::function<void()>> work;
};
struct CUgraphExec_st {
    std::vector<std::function<void()>> work;
};
static CUstream_st *capturing_stream;   // at most one capture at a time here

// A call that is not allowed while a capture is active (thread-local mode): it fails, and
// invalidates the capture.
static bool capture_forbids(void) {
    if (!capturing_stream) return false;
    capturing_stream->invalidated = true;
    return true;
}

// Queues work on st: records it when st is being captured, else runs it now. Work for
// another stream during a capture invalidates it (the legacy stream waits for a blocking
// stream being captured: cudaErrorStreamCaptureImplicit).
static cudaError_t enqueue(cudaStream_t st, std::function<void()> work) {
    if (capturing_stream) {
        if (st != capturing_stream) {
            capturing_stream->invalidated = true;
            return fail(cudaErrorStreamCaptureImplicit);
        }
        st->rec->push_back(std::move(work));
        return cudaSuccess;
    }
    work();
    return cudaSuccess;
}

static const char *sim_device_name = "cudasim: a host emulation of an sm_90 device (tests/cudasim)";

extern "C" {
cudaError_t cudaGetDeviceCount(int *n) {
    const char *s = getenv("CUDASIM_DEVICES");   // CUDASIM_DEVICES=0: as on a machine with no GPU
    if (s && strcmp(s, "0") == 0) {
        *n = 0;
        return fail(cudaErrorNoDevice);
    }
    *n = 1;
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : fail(cudaErrorInvalidDevice); }
cudaError_t cudaGetLastError(void) {
    cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}
cudaError_t cudaPeekAtLastError(void) { return last_error; }
const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureImplicit: return "operation would make the legacy stream depend on a capturing blocking stream";
    case cudaErrorIllegalState: return "the operation cannot be performed in the present state";
    default: return "cudasim: an error of the emulation";
    }
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d) {
    if (d != 0) return fail(cudaErrorInvalidDevice);
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", sim_device_name);
    p->major = 9, p->minor = 0;
    p->multiProcessorCount = 132;
    p->totalGlobalMem = (size_t)80 << 30;
    p->warpSize = 32;
    p->maxThreadsPerBlock = 1024;
    return cudaSuccess;
}
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes *a, const void *f) {
    if (!f) return fail(cudaErrorInvalidDeviceFunction);
    memset(a, 0, sizeof *a);
    a->binaryVersion = 90, a->ptxVersion = 90, a->maxThreadsPerBlock = 1024;
    return cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t bytes) {
    *p = NULL;
    if (capture_forbids()) return fail(cudaErrorStreamCaptureUnsupported);
    if (bytes == 0) return cudaSuccess;
    size_t cap = (size_t)1 << 36;                          // a limit to test out-of-memory paths
    const char *s = getenv("CUDASIM_MEMORY");
    if (s) cap = strtoull(s, NULL, 10);
    size_t used = 0;
    for (auto &r : regions)
        if (!r.second.pinned) used += r.second.bytes;
    if (bytes > cap || used > cap - bytes) return fail(cudaErrorMemoryAllocation);
    void *q = guarded_alloc(bytes, false);
    if (!q) return fail(cudaErrorMemoryAllocation);
    *p = q;
    return cudaSuccess;
}
cudaError_t cudaFree(void *p) {
    if (capture_forbids()) return fail(cudaErrorStreamCaptureUnsupported);
    if (!p) return cudaSuccess;                              // cudaFree(0): starts the context
    auto it = regions.find((uintptr_t)p);
    if (it == regions.end() || it->second.pinned) return fail(cudaErrorInvalidDevicePointer);
    check_slack("a cudaFree");
    munmap(it->second.map, it->second.map_bytes);
    regions.erase(it);
    return cudaSuccess;
}
cudaError_t cudaMallocHost(void **p, size_t bytes) {
    *p = NULL;
    if (capture_forbids()) return fail(cudaErrorStreamCaptureUnsupported);
    void *q = guarded_alloc(bytes, true);
    if (!q) return fail(cudaErrorMemoryAllocation);
    *p = q;
    return cudaSuccess;
}
cudaError_t cudaFreeHost(void *p) {
    if (capture_forbids()) return fail(cudaErrorStreamCaptureUnsupported);
    if (!p) return cudaSuccess;
    auto it = regions.find((uintptr_t)p);
    if (it == regions.end() || !it->second.pinned) return fail(cudaErrorInvalidValue);
    check_slack("a cudaFreeHost");
    munmap(it->second.map, it->second.map_bytes);
    regions.erase(it);
    return cudaSuccess;
}

// whether a copy's two ends are where its kind says; host memory may be pinned or not
static bool host_end(const void *p, size_t n) { return !touches_device(p, n); }
static cudaError_t check_copy(void *dst, const void *src, size_t n, cudaMemcpyKind k) {
    bool ok;
    switch (k) {
    case cudaMemcpyHostToDevice: ok = is_device(dst, n) && host_end(src, n); break;
    case cudaMemcpyDeviceToHost: ok = host_end(dst, n) && is_device(src, n); break;
    case cudaMemcpyDeviceToDevice: ok = is_device(dst, n) && is_device(src, n); break;
    case cudaMemcpyHostToHost: ok = host_end(dst, n) && host_end(src, n); break;
    case cudaMemcpyDefault: ok = (is_device(dst, n) || host_end(dst, n)) && (is_device(src, n) || host_end(src, n)); break;
    default: return fail(cudaErrorInvalidMemcpyDirection);
    }
    if (!ok) {
        fprintf(stderr, "cudasim: a copy of %zu bytes (kind %d) from %p to %p: an end is not the memory its kind names, "
                "or the copy runs past its allocation\n", n, (int)k, src, dst);
        return fail(cudaErrorInvalidValue);
    }
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind k) {
    if (capture_forbids()) return fail(cudaErrorStreamCaptureUnsupported);
    if (n == 0) return cudaSuccess;
    cudaError_t e = check_copy(dst, src, n, k);
    if (e == cudaSuccess) memmove(dst, src, n);
    return e;
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind k, cudaStream_t st) {
    if (n == 0) return cudaSuccess;
    cudaError_t e = check_copy(dst, src, n, k);
    if (e != cudaSuccess) return e;
    return enqueue(st, [=]() { memmove(dst, src, n); });
}
cudaError_t cudaMemset(void *p, int v, size_t n) {
    if (capture_forbids()) return fail(cudaErrorStreamCaptureUnsupported);
    if (n == 0) return cudaSuccess;
    if (!is_device(p, n)) return fail(cudaErrorInvalidValue);
    memset(p, v, n);
    return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t st) {
    if (n == 0) return cudaSuccess;
    if (!is_device(p, n)) return fail(cudaErrorInvalidValue);
    return enqueue(st, [=]() { memset(p, v, n); });
}
cudaError_t cudaDeviceSynchronize(void) {
    if (capture_forbids()) return fail(cudaErrorStreamCaptureUnsupported);
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t st) {
    if (capturing_stream) {
        capturing_stream->invalidated = true;
        return fail(st == capturing_stream ? cudaErrorStreamCaptureUnsupported : cudaErrorStreamCaptureImplicit);
    }
    return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t *st) {
    *st = new CUstream_st{false, false, NULL};
    return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t st) {
    if (st == capturing_stream) return fail(cudaErrorIllegalState);
    delete st;
    return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t st, cudaStreamCaptureMode mode) {
    (void)mode;
    if (!st) return fail(cudaErrorStreamCaptureUnsupported);   // the legacy stream cannot be captured
    if (capturing_stream) return fail(cudaErrorIllegalState);
    st->capturing = true, st->invalidated = false;
    st->rec = new std::vector<std::function<void()>>;
    capturing_stream = st;
    return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t st, cudaGraph_t *g) {
    *g = NULL;
    if (st != capturing_stream) return fail(cudaErrorIllegalState);
    capturing_stream = NULL;
    st->capturing = false;
    std::vector<std::function<void()>> *rec = st->rec;
    st->rec = NULL;
    if (st->invalidated) {
        delete rec;
        return fail(cudaErrorStreamCaptureInvalidated);
    }
    *g = new CUgraph_st{std::move(*rec)};
    delete rec;
    return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *x, cudaGraph_t g, unsigned long long flags) {
    (void)flags;
    if (!g) return fail(cudaErrorInvalidValue);
    *x = new CUgraphExec_st{g->work};
    return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t g) {
    delete g;
    return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t x) {
    delete x;
    return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t x, cudaStream_t st) {
    if (!x) return fail(cudaErrorInvalidValue);
    CUgraphExec_st *g = x;
    return enqueue(st, [g]() {
        for (auto &w : g->work) w();
    });
}
}   // extern "C"

// ---- fibers ----------------------------------------------------------------------------------
// A thread of a block is a fiber with a stack of its own. sim_switch saves the callee-saved
// registers on the current stack, stores its stack pointer in *save and resumes the fiber
// whose stack pointer is to (x86-64 System V).
#if !defined(__x86_64__)
#error "cudasim's fibers are written for x86-64"
#endif
extern "C" void sim_switch(void **save, void *to);
asm(".text\n"
    ".globl sim_switch\n"
    ".type sim_switch,@function\n"
    "sim_switch:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
    "  ret\n"
    ".size sim_switch,.-sim_switch\n");

enum { T_RUN, T_SYNC, T_SHFL, T_DONE };

struct fiber {
    void *sp;
    int state;
    uint3 tid;
    // a shuffle waiting: its mask, kind, argument, width, value in and out
    unsigned mask;
    int kind, arg, width;
    unsigned long long in, out;
};

#define STACK_BYTES ((size_t)64 << 10)
#define MAX_THREADS 1024
static char *stacks;                      // MAX_THREADS stacks, each above a guard page
static fiber fibers[MAX_THREADS];
static int nthreads;
static fiber *cur;                        // the fiber running, NULL in the scheduler
static void *sched_sp;
static const std::function<void()> *kernel_body;
static const char *kernel_name;

static const char *last_work = "no work yet";   // what ran last: a kernel's name, a cuDNN call, a copy

static void check_slack(const char *after_what) {
    uintptr_t at = 0;
    const char *side = slack_written(&at);
    if (side) {
        const region &r = regions[at];
        sim_die("after %s (%s): memory just %s the %zu-byte allocation at %p was written: out of bounds", after_what,
                last_work, side, r.bytes, (void *)at);
    }
}

void sim_vec_check(const void *p, const char *file, int line) {
    if ((uintptr_t)p % 16 == 0) return;
    fprintf(stderr,
            "cudasim: %s, block (%u,%u,%u), thread (%u,%u,%u): a 16-byte vector access at %p (%s:%d), not 16-byte "
            "aligned (a GPU: misaligned address)\n",
            last_work, blockIdx.x, blockIdx.y, blockIdx.z, threadIdx.x, threadIdx.y, threadIdx.z, p, file, line);
    _exit(3);
}

// A fault in a guard page: which allocation, how far off, in which kernel thread.
static void on_fault(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    uintptr_t a = (uintptr_t)si->si_addr;
    for (auto &r : regions) {
        uintptr_t m = (uintptr_t)r.second.map;
        if (a < m || a >= m + r.second.map_bytes) continue;
        long long off = (long long)(a - r.first);
        fprintf(stderr,
                "cudasim: %s, block (%u,%u,%u), thread (%u,%u,%u): touched address %p, byte %lld of the %zu-byte "
                "allocation at %p (%s): out of bounds\n",
                last_work, blockIdx.x, blockIdx.y, blockIdx.z, threadIdx.x, threadIdx.y, threadIdx.z, (void *)a, off,
                r.second.bytes, (void *)r.first, off < 0 ? "before its start" : "past its end");
        _exit(3);
    }
    if (stacks && a >= (uintptr_t)stacks && a < (uintptr_t)stacks + MAX_THREADS * (STACK_BYTES + PAGE)) {
        fprintf(stderr, "cudasim: %s: a thread overflowed its %zu-byte stack\n", last_work, STACK_BYTES);
        _exit(3);
    }
    signal(sig, SIG_DFL);   // not ours: the usual crash
    raise(sig);
}
static void install_fault_handler(void) {
    static bool done;
    if (done) return;
    done = true;
    static char alt[64 << 10];
    stack_t ss = {};
    ss.ss_sp = alt, ss.ss_size = sizeof alt;
    sigaltstack(&ss, NULL);
    struct sigaction sa = {};
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
}

static void fiber_main(void) {
    (*kernel_body)();
    cur->state = T_DONE;
    sim_switch(&cur->sp, sched_sp);
    abort();                              // a finished fiber is never resumed
}

static void fiber_init(int i) {
    if (!stacks) {
        size_t page = 4096, one = STACK_BYTES + page;
        stacks = (char *)mmap(NULL, one * MAX_THREADS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (stacks == MAP_FAILED) sim_die("no memory for the fibers' stacks");
        for (int t = 0; t < MAX_THREADS; t++) mprotect(stacks + t * one, page, PROT_NONE);   // overflow faults
    }
    char *top = stacks + (size_t)(i + 1) * (STACK_BYTES + 4096);
    void **sp = (void **)top;
    *--sp = NULL;                         // fiber_main's return address: it never returns
    *--sp = (void *)fiber_main;           // sim_switch's ret goes there
    for (int r = 0; r < 6; r++) *--sp = NULL;   // the six registers sim_switch pops
    fibers[i].sp = sp;
    fibers[i].state = T_RUN;
}

// A kernel whose first launch reached no barrier runs its later launches without fibers
// (each thread a plain call, several times faster); one that then reaches a barrier after
// all is stopped, saying so (CUDASIM_FIBERS=1 runs every launch with fibers).
static bool plain_mode, barrier_seen;
static std::map<std::string, bool> barrier_free;   // kernel name -> its first launch had no barrier

static void yield_to_scheduler(void) {
    if (plain_mode)
        sim_die("kernel %s reached a barrier, though its first launch had none and this one runs without fibers: "
                "rerun with CUDASIM_FIBERS=1", kernel_name);
    if (!cur) sim_die("a barrier outside a kernel");
    barrier_seen = true;
    sim_switch(&cur->sp, sched_sp);
}

void __syncthreads(void) {
    if (!cur) yield_to_scheduler();   // reports it
    cur->state = T_SYNC;
    yield_to_scheduler();
}

unsigned long long sim_shfl(unsigned mask, unsigned long long bits, int kind, int arg, int width) {
    if (width <= 0 || width > 32 || (width & (width - 1)))
        sim_die("kernel %s: a shuffle of width %d (a power of 2 up to 32)", kernel_name, width);
    if (!cur) yield_to_scheduler();
    cur->state = T_SHFL;
    cur->mask = mask, cur->kind = kind, cur->arg = arg, cur->width = width, cur->in = bits;
    yield_to_scheduler();
    return cur->out;
}

static void describe_block(char *buf, size_t size) {
    int n[4] = {0, 0, 0, 0};
    for (int i = 0; i < nthreads; i++) n[fibers[i].state]++;
    snprintf(buf, size, "block (%u,%u,%u) of %d threads: %d at __syncthreads, %d at a shuffle, %d exited", blockIdx.x,
             blockIdx.y, blockIdx.z, nthreads, n[T_SYNC], n[T_SHFL], n[T_DONE]);
}

// Completes the shuffles of warps whose every named lane waits at one; 1 when some did.
static int release_warps(void) {
    int released = 0;
    for (int w0 = 0; w0 < nthreads; w0 += 32) {
        int lanes = nthreads - w0 < 32 ? nthreads - w0 : 32;
        fiber *f = &fibers[w0];
        int waiting = 0;
        unsigned mask = 0;
        for (int l = 0; l < lanes; l++)
            if (f[l].state == T_SHFL) waiting++, mask = f[l].mask;
        if (!waiting) continue;
        char why[200];
        for (int l = 0; l < lanes; l++) {
            if (f[l].state == T_SHFL && f[l].mask != mask) {
                describe_block(why, sizeof why);
                sim_die("kernel %s, %s: lanes of warp %d shuffle with different masks", kernel_name, why, w0 / 32);
            }
        }
        int ready = 1;
        for (int l = 0; l < 32; l++) {
            if (!(mask >> l & 1)) continue;
            if (l >= lanes || f[l].state == T_DONE) {
                describe_block(why, sizeof why);
                sim_die("kernel %s, %s: a shuffle names lane %d of warp %d, which %s", kernel_name, why, l, w0 / 32,
                        l >= lanes ? "does not exist" : "has exited");
            }
            if (f[l].state != T_SHFL) ready = 0;
        }
        if (!ready) continue;
        for (int l = 0; l < 32; l++) {
            if (!(mask >> l & 1)) continue;
            int w = f[l].width, base = l / w * w, src;
            switch (f[l].kind) {
            case SIM_SHFL_IDX: src = base + ((f[l].arg % w) + w) % w; break;
            case SIM_SHFL_UP: src = l - base >= f[l].arg ? l - f[l].arg : l; break;
            case SIM_SHFL_DOWN: src = l - base + f[l].arg < w ? l + f[l].arg : l; break;
            default: src = ((l ^ f[l].arg) >= base + w || (l ^ f[l].arg) < base) ? l : (l ^ f[l].arg); break;
            }
            if (!(mask >> src & 1)) {
                describe_block(why, sizeof why);
                sim_die("kernel %s, %s: lane %d of warp %d reads lane %d, outside the shuffle's mask", kernel_name, why,
                        l, w0 / 32, src);
            }
            f[l].out = f[src].in;
        }
        for (int l = 0; l < 32; l++)
            if (mask >> l & 1) f[l].state = T_RUN;
        released = 1;
    }
    return released;
}

// CUDASIM_ORDER=reverse runs the blocks of a grid, and the threads of a block between two
// barriers, last first. A GPU promises no order, so a kernel whose result depends on it (a
// race through shared or global memory) gives different results under the two orders.
static bool reverse_order(void) {
    static int r = -1;
    if (r < 0) r = getenv("CUDASIM_ORDER") && strcmp(getenv("CUDASIM_ORDER"), "reverse") == 0;
    return r;
}
static inline int nth(int k, int n) { return reverse_order() ? n - 1 - k : k; }

// every __shared__ variable of the program (cudasim.h puts them in this section; the linker
// names its ends); weak, for a program with none
extern char __start_sim_shared[] __attribute__((weak)), __stop_sim_shared[] __attribute__((weak));

static void run_block(void) {
    char *s0 = __start_sim_shared, *s1 = __stop_sim_shared;
    if (s0 != s1) memset(s0, 0xff, (size_t)(s1 - s0));   // nothing defined in shared memory at a block's start
    if (plain_mode) {
        for (int k = 0; k < nthreads; k++) {
            int i = nth(k, nthreads);
            threadIdx = make_uint3(i % blockDim.x, i / blockDim.x % blockDim.y, i / (blockDim.x * blockDim.y));
            (*kernel_body)();
        }
        return;
    }
    for (int i = 0; i < nthreads; i++) {
        fiber_init(i);
        fibers[i].tid = make_uint3(i % blockDim.x, i / blockDim.x % blockDim.y, i / (blockDim.x * blockDim.y));
    }
    for (;;) {
        for (int k = 0; k < nthreads; k++) {
            int i = nth(k, nthreads);
            if (fibers[i].state != T_RUN) continue;
            cur = &fibers[i];
            threadIdx = cur->tid;
            sim_switch(&sched_sp, cur->sp);
            cur = NULL;
        }
        int done = 0, sync = 0;
        for (int i = 0; i < nthreads; i++) done += fibers[i].state == T_DONE, sync += fibers[i].state == T_SYNC;
        if (done == nthreads) return;
        if (release_warps()) continue;
        char why[200];
        describe_block(why, sizeof why);
        if (sync && sync + done == nthreads) {
            if (done) sim_die("kernel %s, %s: __syncthreads after some threads of the block exited", kernel_name, why);
            for (int i = 0; i < nthreads; i++) fibers[i].state = T_RUN;
            continue;
        }
        sim_die("kernel %s, %s: threads wait at barriers that the others do not reach", kernel_name, why);
    }
}

// CUDASIM_LAUNCHES=1: at exit, each kernel's name (a template's with its arguments, as the
// launch names it) and how many times it ran, on stderr ("cudasim: launches NAME COUNT"),
// so that a test can see which variant of a kernel a call took.
static std::map<std::string, unsigned long> *launch_counts;
static void print_launches(void) {
    for (const auto &kv : *launch_counts) fprintf(stderr, "cudasim: launches %s %lu\n", kv.first.c_str(), kv.second);
}
static void count_launch(const char *name) {
    static int on = -1;
    if (on < 0) {
        on = getenv("CUDASIM_LAUNCHES") && strcmp(getenv("CUDASIM_LAUNCHES"), "1") == 0;
        if (on) launch_counts = new std::map<std::string, unsigned long>, atexit(print_launches);
    }
    if (on) ++(*launch_counts)[name];
}

static void run_kernel(dim3 grid, dim3 block, const char *name, const std::function<void()> &body) {
    count_launch(name);
    gridDim = grid, blockDim = block;
    nthreads = (int)(block.x * block.y * block.z);
    kernel_body = &body, kernel_name = name, last_work = name;
    install_fault_handler();
    static int fibers_always = -1;
    if (fibers_always < 0) fibers_always = getenv("CUDASIM_FIBERS") && strcmp(getenv("CUDASIM_FIBERS"), "1") == 0;
    auto known = barrier_free.find(name);
    plain_mode = !fibers_always && known != barrier_free.end() && known->second;
    barrier_seen = false;
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                blockIdx = make_uint3((unsigned)nth((int)x, (int)grid.x), (unsigned)nth((int)y, (int)grid.y),
                                      (unsigned)nth((int)z, (int)grid.z));
                run_block();
            }
    if (known == barrier_free.end()) barrier_free[name] = !barrier_seen;
    plain_mode = false;
    check_slack("a kernel");
}

void sim_enqueue_launch(const sim_cfg &c, const char *name, int bad_arg, std::function<void()> body) {
    const dim3 &g = c.grid, &b = c.block;
    unsigned long long threads = (unsigned long long)b.x * b.y * b.z;
    if (!g.x || !g.y || !g.z || !b.x || !b.y || !b.z || threads > 1024 || b.z > 64 || g.x > 0x7fffffffu ||
        g.y > 65535 || g.z > 65535 || c.shared > 48 * 1024) {
        fprintf(stderr, "cudasim: kernel %s launched with grid (%u,%u,%u), block (%u,%u,%u), %zu shared bytes: "
                "outside compute capability 9.0's limits\n", name, g.x, g.y, g.z, b.x, b.y, b.z, c.shared);
        fail(cudaErrorInvalidConfiguration);
        return;
    }
    if (bad_arg) {
        fprintf(stderr, "cudasim: kernel %s: parameter %d points outside device memory\n", name, bad_arg);
        fail(cudaErrorInvalidValue);
        return;
    }
    dim3 gg = g, bb = b;
    cudaError_t e = enqueue(c.stream, [gg, bb, name, body]() { run_kernel(gg, bb, name, body); });
    (void)e;
}

// ---- cuDNN -------------------------------------------------------------------------------------

struct cudnnContext {
    cudaStream_t st;
};
struct cudnnTensorStruct {
    int set, n, c, h, w;
};
struct cudnnFilterStruct {
    int set, k, c, h, w;
};
struct cudnnConvolutionStruct {
    int set, pad_h, pad_w, u, v, dil_h, dil_w;
    cudnnMathType_t math;
};

static size_t tensor_bytes(const cudnnTensorStruct *t) { return (size_t)t->n * t->c * t->h * t->w * sizeof(float); }

// the shape of a convolution, once its descriptors agree
struct conv_shape {
    int n, ci, h, w, co, k, kh, kw, ho, wo, ph, pw, sh, sw;
};
static cudnnStatus_t shape_of(const cudnnTensorStruct *x, const cudnnFilterStruct *f, const cudnnConvolutionStruct *cv,
                              const cudnnTensorStruct *y, conv_shape *s) {
    if (!x || !f || !cv || !y || !x->set || !f->set || !cv->set || !y->set) return CUDNN_STATUS_BAD_PARAM;
    if (x->c != f->c || y->c != f->k || y->n != x->n) return CUDNN_STATUS_BAD_PARAM;
    if (cv->dil_h != 1 || cv->dil_w != 1) return CUDNN_STATUS_NOT_SUPPORTED;
    s->n = x->n, s->ci = x->c, s->h = x->h, s->w = x->w, s->co = f->k, s->kh = f->h, s->kw = f->w;
    s->k = f->h;
    s->ph = cv->pad_h, s->pw = cv->pad_w, s->sh = cv->u, s->sw = cv->v;
    s->ho = (x->h + 2 * cv->pad_h - f->h) / cv->u + 1;
    s->wo = (x->w + 2 * cv->pad_w - f->w) / cv->v + 1;
    if (y->h != s->ho || y->w != s->wo) return CUDNN_STATUS_BAD_PARAM;
    return CUDNN_STATUS_SUCCESS;
}

static float tf32(float v) {   // round to nearest even, 10 mantissa bits (Inf and NaN as they are)
    uint32_t u;
    memcpy(&u, &v, 4);
    if ((u & 0x7f800000u) == 0x7f800000u) return v;
    u = (u + 0xfffu + ((u >> 13) & 1u)) & ~0x1fffu;
    memcpy(&v, &u, 4);
    return v;
}
static bool tensor_math(cudnnMathType_t m) { return m != CUDNN_FMA_MATH; }
static const float *operand(const float *p, size_t n, bool round, std::vector<float> &buf) {
    if (!round) return p;
    buf.assign(p, p + n);
    for (auto &v : buf) v = tf32(v);
    return buf.data();
}

// The candidates of each direction: algorithm, workspace, determinism, math type and time.
// Listed fastest first, with, before the plain FMA algorithms, one that is tensor-op only
// and one that is not deterministic: the backend must pass over those in fp32.
struct candidate {
    int algo;
    bool deterministic, tensor_op;
    float ms;
    int ws_kind;   // 0: none, 1: the input's size, 2: twice the output's (the same wherever an algorithm is listed)
};
enum { DIR_FWD, DIR_BWD_DATA, DIR_BWD_FILTER };
static const candidate cands[3][4] = {
    {{CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, true, true, 0.01f, 1},
     {CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED, true, false, 0.02f, 2},
     {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, true, false, 0.03f, 1},
     {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, true, false, 0.04f, 0}},
    {{CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, false, false, 0.01f, 0},
     {CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, true, true, 0.015f, 0},
     {CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED, true, false, 0.02f, 2},
     {CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, true, false, 0.03f, 0}},
    {{CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, false, false, 0.01f, 0},
     {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, true, true, 0.015f, 1},
     {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED, true, false, 0.02f, 2},
     {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, true, false, 0.03f, 1}},
};
static bool winograd(int dir, int algo) {
    return (dir == DIR_FWD && algo == CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED) ||
           (dir == DIR_BWD_DATA && algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED) ||
           (dir == DIR_BWD_FILTER && algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED);
}
// whether algo runs this shape, and the workspace it needs
static bool algo_ws(int dir, int algo, const conv_shape &s, size_t *ws) {
    if (winograd(dir, algo) && (s.kh != 3 || s.kw != 3 || s.sh != 1 || s.sw != 1)) return false;
    bool known = false;
    for (const candidate &c : cands[dir]) known = known || c.algo == algo;
    if (!known) return false;
    size_t in = (size_t)s.n * s.ci * s.h * s.w * 4, out = (size_t)s.n * s.co * s.ho * s.wo * 4;
    *ws = 0;
    for (const candidate &c : cands[dir])
        if (c.algo == algo) {
            *ws = c.ws_kind == 0 ? 0 : c.ws_kind == 1 ? in : 2 * out;
            break;
        }
    return true;
}

template <typename Perf>
static cudnnStatus_t list(int dir, const conv_shape &s, cudnnMathType_t math, int want, int *got, Perf *p, bool timed) {
    int n = 0;
    for (const candidate &c : cands[dir]) {
        if (n == want) break;
        size_t ws;
        Perf q;
        memset(&q, 0, sizeof q);
        q.algo = (decltype(q.algo))c.algo;
        if (!algo_ws(dir, c.algo, s, &ws)) {
            q.status = CUDNN_STATUS_NOT_SUPPORTED;
            q.time = -1.0f;
        } else {
            q.status = CUDNN_STATUS_SUCCESS;
            q.memory = ws;
            q.time = timed ? c.ms : -1.0f;
        }
        q.determinism = c.deterministic ? CUDNN_DETERMINISTIC : CUDNN_NON_DETERMINISTIC;
        // timed under the descriptor's math type, and the tensor-op ones under default math
        q.mathType = c.tensor_op ? CUDNN_TENSOR_OP_MATH : math == CUDNN_FMA_MATH ? CUDNN_FMA_MATH : CUDNN_DEFAULT_MATH;
        p[n++] = q;
    }
    *got = n;
    return CUDNN_STATUS_SUCCESS;
}

// A convolution call, checked: its pointers in device memory and big enough, its algorithm
// able to run the shape, its workspace device memory of the algorithm's size. Then queued:
// the two inputs (a, b: na, nb floats) rounded to TF32 under tensor-op math, and loops run.
typedef void conv_loops_fn(const conv_shape &, const float *, const float *, float, float, float *);
static cudnnStatus_t conv_call(cudnnHandle_t h, int dir, int algo, const conv_shape &s,
                               const cudnnConvolutionStruct *cd, const void *ws, size_t wsb, const void *alpha,
                               const void *beta, const void *a, size_t na, const void *b, size_t nb, void *out,
                               size_t nout, conv_loops_fn *loops) {
    if (!h) return CUDNN_STATUS_BAD_PARAM;
    size_t need;
    if (!algo_ws(dir, algo, s, &need)) {
        fprintf(stderr, "cudasim: cuDNN direction %d: algorithm %d cannot run this shape\n", dir, algo);
        return CUDNN_STATUS_NOT_SUPPORTED;
    }
    if (wsb < need || (need && !is_device(ws, need))) {
        fprintf(stderr, "cudasim: cuDNN direction %d algorithm %d needs %zu workspace bytes in device memory, "
                "given %zu at %p\n", dir, algo, need, wsb, ws);
        return CUDNN_STATUS_BAD_PARAM;
    }
    if (!is_device(a, na * 4) || !is_device(b, nb * 4) || !is_device(out, nout * 4)) {
        fprintf(stderr, "cudasim: cuDNN direction %d: a tensor is not in device memory, or is smaller than its "
                "descriptor says\n", dir);
        return CUDNN_STATUS_BAD_PARAM;
    }
    static const char *names[3] = {"cudnnConvolutionForward", "cudnnConvolutionBackwardData",
                                   "cudnnConvolutionBackwardFilter"};
    const char *name = names[dir];
    float al = *(const float *)alpha, be = *(const float *)beta;
    bool round = tensor_math(cd->math);
    const float *ap = (const float *)a, *bp = (const float *)b;
    float *op = (float *)out;
    auto work = [=]() {
        last_work = name;
        std::vector<float> ba, bb;
        loops(s, operand(ap, na, round, ba), operand(bp, nb, round, bb), al, be, op);
        check_slack("a cuDNN convolution");
    };
    if (enqueue(h->st, work) != cudaSuccess) return CUDNN_STATUS_EXECUTION_FAILED;
    return CUDNN_STATUS_SUCCESS;
}

static size_t n_x(const conv_shape &s) { return (size_t)s.n * s.ci * s.h * s.w; }
static size_t n_y(const conv_shape &s) { return (size_t)s.n * s.co * s.ho * s.wo; }
static size_t n_w(const conv_shape &s) { return (size_t)s.co * s.ci * s.kh * s.kw; }
static inline size_t X(const conv_shape &s, int n, int c, int y, int x) { return (((size_t)n * s.ci + c) * s.h + y) * s.w + x; }
static inline size_t Y(const conv_shape &s, int n, int c, int y, int x) { return (((size_t)n * s.co + c) * s.ho + y) * s.wo + x; }
static inline size_t W(const conv_shape &s, int o, int c, int y, int x) { return (((size_t)o * s.ci + c) * s.kh + y) * s.kw + x; }
static inline float blend(float alpha, double v, float beta, float old) {
    return beta == 0.0f ? (float)(alpha * v) : (float)(alpha * v + (double)beta * old);   // beta 0: old is not read
}

// The three directions, each output a sum in double rounded once (then alpha and beta):
// parallel over outputs that do not share a sum, so the result does not depend on threads.
// Rows of valid output columns for a tap: ox in [lo, hi) reads input column ox*sw - pw + kx.
static void tap_cols(const conv_shape &s, int kx, int *lo, int *hi) {
    int l = 0, h = s.wo;
    while (l < h && l * s.sw - s.pw + kx < 0) l++;
    while (h > l && (h - 1) * s.sw - s.pw + kx >= s.w) h--;
    *lo = l, *hi = h;
}
static void conv_fwd_loops(const conv_shape &s, const float *x, const float *w, float al, float be, float *y) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < s.n; n++)
        for (int o = 0; o < s.co; o++) {
            std::vector<double> acc((size_t)s.ho * s.wo, 0.0);
            for (int c = 0; c < s.ci; c++)
                for (int ky = 0; ky < s.kh; ky++)
                    for (int kx = 0; kx < s.kw; kx++) {
                        double wv = w[W(s, o, c, ky, kx)];
                        int lo, hi;
                        tap_cols(s, kx, &lo, &hi);
                        for (int oy = 0; oy < s.ho; oy++) {
                            int iy = oy * s.sh - s.ph + ky;
                            if (iy < 0 || iy >= s.h) continue;
                            const float *row = x + X(s, n, c, iy, 0) - s.pw + kx;
                            double *a = &acc[(size_t)oy * s.wo];
                            if (s.sw == 1)
                                for (int ox = lo; ox < hi; ox++) a[ox] += (double)row[ox] * wv;
                            else
                                for (int ox = lo; ox < hi; ox++) a[ox] += (double)row[ox * s.sw] * wv;
                        }
                    }
            float *out = y + Y(s, n, o, 0, 0);
            for (size_t i = 0; i < acc.size(); i++) out[i] = blend(al, acc[i], be, out[i]);
        }
}
static void conv_bwd_data_loops(const conv_shape &s, const float *dy, const float *w, float al, float be, float *dx) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < s.n; n++)
        for (int c = 0; c < s.ci; c++) {
            std::vector<double> acc((size_t)s.h * s.w, 0.0);
            for (int o = 0; o < s.co; o++)
                for (int ky = 0; ky < s.kh; ky++)
                    for (int kx = 0; kx < s.kw; kx++) {
                        double wv = w[W(s, o, c, ky, kx)];
                        int lo, hi;
                        tap_cols(s, kx, &lo, &hi);
                        for (int oy = 0; oy < s.ho; oy++) {
                            int iy = oy * s.sh - s.ph + ky;
                            if (iy < 0 || iy >= s.h) continue;
                            const float *g = dy + Y(s, n, o, oy, 0);
                            double *a = &acc[(size_t)iy * s.w] - s.pw + kx;
                            if (s.sw == 1)
                                for (int ox = lo; ox < hi; ox++) a[ox] += (double)g[ox] * wv;
                            else
                                for (int ox = lo; ox < hi; ox++) a[ox * s.sw] += (double)g[ox] * wv;
                        }
                    }
            float *out = dx + X(s, n, c, 0, 0);
            for (size_t i = 0; i < acc.size(); i++) out[i] = blend(al, acc[i], be, out[i]);
        }
}
static void conv_bwd_filter_loops(const conv_shape &s, const float *x, const float *dy, float al, float be, float *dw) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int o = 0; o < s.co; o++)
        for (int c = 0; c < s.ci; c++)
            for (int ky = 0; ky < s.kh; ky++)
                for (int kx = 0; kx < s.kw; kx++) {
                    int lo, hi;
                    tap_cols(s, kx, &lo, &hi);
                    // a partial sum per output column (the column loop then vectorises), added
                    // up in one order at the end: the same result on any machine and thread count
                    std::vector<double> part((size_t)s.wo, 0.0);
                    double *p = part.data();
                    for (int n = 0; n < s.n; n++)
                        for (int oy = 0; oy < s.ho; oy++) {
                            int iy = oy * s.sh - s.ph + ky;
                            if (iy < 0 || iy >= s.h) continue;
                            const float *row = x + X(s, n, c, iy, 0) - s.pw + kx;
                            const float *g = dy + Y(s, n, o, oy, 0);
                            if (s.sw == 1)
                                for (int ox = lo; ox < hi; ox++) p[ox] += (double)row[ox] * g[ox];
                            else
                                for (int ox = lo; ox < hi; ox++) p[ox] += (double)row[ox * s.sw] * g[ox];
                        }
                    double a = 0;
                    for (int ox = lo; ox < hi; ox++) a += p[ox];
                    float &out = dw[W(s, o, c, ky, kx)];
                    out = blend(al, a, be, out);
                }
}

static char cudnn_last[256];   // cudnnGetLastErrorString's text

// Find times candidates by running them, which a capture does not allow (cuDNN refuses;
// the capture is invalidated); Get_v7 only orders them.
template <typename Perf>
static cudnnStatus_t search(int dir, bool timed, const cudnnTensorStruct *x, const cudnnFilterStruct *w,
                            const cudnnConvolutionStruct *c, const cudnnTensorStruct *y, int want, int *got, Perf *p) {
    if (timed && capture_forbids()) return CUDNN_STATUS_NOT_SUPPORTED;
    // CUDASIM_FIND_STATUS=n: cudnnFind fails with status n (cuDNN 9's finer codes: 3002 a
    // shape not supported, 4004 no device memory for its trials, 5000 a failed execution)
    const char *fs = timed ? getenv("CUDASIM_FIND_STATUS") : NULL;
    if (fs && *fs) {
        snprintf(cudnn_last, sizeof cudnn_last, "cudasim: cudnnFind fails as CUDASIM_FIND_STATUS=%s asks", fs);
        return (cudnnStatus_t)atoi(fs);
    }
    conv_shape s;
    cudnnStatus_t e = shape_of(x, w, c, y, &s);
    return e != CUDNN_STATUS_SUCCESS ? e : list(dir, s, c->math, want, got, p, timed);
}
static cudnnStatus_t ws_size(int dir, const cudnnTensorStruct *x, const cudnnFilterStruct *w,
                             const cudnnConvolutionStruct *c, const cudnnTensorStruct *y, int algo, size_t *bytes) {
    conv_shape s;
    cudnnStatus_t e = shape_of(x, w, c, y, &s);
    if (e != CUDNN_STATUS_SUCCESS) return e;
    return algo_ws(dir, algo, s, bytes) ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_NOT_SUPPORTED;
}

extern "C" {
size_t cudnnGetVersion(void) { return CUDNN_VERSION; }
const char *cudnnGetErrorString(cudnnStatus_t s) {
    switch (s) {
    case CUDNN_STATUS_SUCCESS: return "CUDNN_STATUS_SUCCESS";
    case CUDNN_STATUS_BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM";
    case CUDNN_STATUS_NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED";
    case CUDNN_STATUS_EXECUTION_FAILED: return "CUDNN_STATUS_EXECUTION_FAILED";
    case CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED: return "CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED";
    case CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED:
        return "CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED";
    case CUDNN_STATUS_NOT_SUPPORTED_SHAPE: return "CUDNN_STATUS_NOT_SUPPORTED_SHAPE";
    case CUDNN_STATUS_NOT_SUPPORTED_ARCH_MISMATCH: return "CUDNN_STATUS_NOT_SUPPORTED_ARCH_MISMATCH";
    case CUDNN_STATUS_SUBLIBRARY_LOADING_FAILED: return "CUDNN_STATUS_SUBLIBRARY_LOADING_FAILED";
    default: return "CUDNN_STATUS (cudasim: another)";
    }
}
void cudnnGetLastErrorString(char *message, size_t max_size) {
    if (max_size) snprintf(message, max_size, "%s", cudnn_last);
    cudnn_last[0] = 0;
}
// CUDASIM_CUDNN_SUBLIB=missing: as when libcudnn_cnn.so.9 cannot be loaded
static cudnnStatus_t sublib_check(void) {
    const char *s = getenv("CUDASIM_CUDNN_SUBLIB");
    if (!s || strcmp(s, "missing") != 0) return CUDNN_STATUS_SUCCESS;
    snprintf(cudnn_last, sizeof cudnn_last, "cudasim: libcudnn_cnn.so.9 not found (CUDASIM_CUDNN_SUBLIB=missing)");
    return CUDNN_STATUS_SUBLIBRARY_LOADING_FAILED;
}
cudnnStatus_t cudnnOpsVersionCheck(void) { return CUDNN_STATUS_SUCCESS; }
cudnnStatus_t cudnnCnnVersionCheck(void) { return sublib_check(); }
cudnnStatus_t cudnnCreate(cudnnHandle_t *h) {
    *h = new cudnnContext{NULL};
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroy(cudnnHandle_t h) {
    delete h;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetStream(cudnnHandle_t h, cudaStream_t st) {
    h->st = st;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t *t) {
    *t = new cudnnTensorStruct{};
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t t) {
    delete t;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t t, cudnnTensorFormat_t f, cudnnDataType_t d, int n,
                                         int c, int h, int w) {
    if (f != CUDNN_TENSOR_NCHW || d != CUDNN_DATA_FLOAT) return CUDNN_STATUS_NOT_SUPPORTED;
    if (n <= 0 || c <= 0 || h <= 0 || w <= 0) return CUDNN_STATUS_BAD_PARAM;
    *t = cudnnTensorStruct{1, n, c, h, w};
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t *f) {
    *f = new cudnnFilterStruct{};
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t f) {
    delete f;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t f, cudnnDataType_t d, cudnnTensorFormat_t fmt, int k,
                                         int c, int h, int w) {
    if (fmt != CUDNN_TENSOR_NCHW || d != CUDNN_DATA_FLOAT) return CUDNN_STATUS_NOT_SUPPORTED;
    if (k <= 0 || c <= 0 || h <= 0 || w <= 0) return CUDNN_STATUS_BAD_PARAM;
    *f = cudnnFilterStruct{1, k, c, h, w};
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t *c) {
    *c = new cudnnConvolutionStruct{};
    (*c)->math = CUDNN_DEFAULT_MATH;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t c) {
    delete c;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t c, int ph, int pw, int u, int v, int dh,
                                              int dw, cudnnConvolutionMode_t mode, cudnnDataType_t d) {
    if (ph < 0 || pw < 0 || u <= 0 || v <= 0 || dh <= 0 || dw <= 0) return CUDNN_STATUS_BAD_PARAM;
    if (mode != CUDNN_CROSS_CORRELATION || d != CUDNN_DATA_FLOAT) return CUDNN_STATUS_NOT_SUPPORTED;
    c->set = 1, c->pad_h = ph, c->pad_w = pw, c->u = u, c->v = v, c->dil_h = dh, c->dil_w = dw;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t c, cudnnMathType_t m) {
    if (m != CUDNN_DEFAULT_MATH && m != CUDNN_TENSOR_OP_MATH && m != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION &&
        m != CUDNN_FMA_MATH)
        return CUDNN_STATUS_BAD_PARAM;
    c->math = m;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolution2dForwardOutputDim(const cudnnConvolutionDescriptor_t cv,
                                                    const cudnnTensorDescriptor_t x, const cudnnFilterDescriptor_t f,
                                                    int *n, int *c, int *h, int *w) {
    if (!cv->set || !x->set || !f->set || x->c != f->c) return CUDNN_STATUS_BAD_PARAM;
    *n = x->n, *c = f->k;
    *h = (x->h + 2 * cv->pad_h - f->h) / cv->u + 1;
    *w = (x->w + 2 * cv->pad_w - f->w) / cv->v + 1;
    return *h > 0 && *w > 0 ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_BAD_PARAM;
}

cudnnStatus_t cudnnFindConvolutionForwardAlgorithm(cudnnHandle_t, const cudnnTensorDescriptor_t x,
                                                   const cudnnFilterDescriptor_t w, const cudnnConvolutionDescriptor_t c,
                                                   const cudnnTensorDescriptor_t y, const int want, int *got,
                                                   cudnnConvolutionFwdAlgoPerf_t *p) {
    return search(DIR_FWD, true, x, w, c, y, want, got, p);
}
cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(cudnnHandle_t, const cudnnTensorDescriptor_t x,
                                                     const cudnnFilterDescriptor_t w,
                                                     const cudnnConvolutionDescriptor_t c,
                                                     const cudnnTensorDescriptor_t y, const int want, int *got,
                                                     cudnnConvolutionFwdAlgoPerf_t *p) {
    return search(DIR_FWD, false, x, w, c, y, want, got, p);
}
cudnnStatus_t cudnnFindConvolutionBackwardDataAlgorithm(cudnnHandle_t, const cudnnFilterDescriptor_t w,
                                                        const cudnnTensorDescriptor_t dy,
                                                        const cudnnConvolutionDescriptor_t c,
                                                        const cudnnTensorDescriptor_t dx, const int want, int *got,
                                                        cudnnConvolutionBwdDataAlgoPerf_t *p) {
    return search(DIR_BWD_DATA, true, dx, w, c, dy, want, got, p);
}
cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithm_v7(cudnnHandle_t, const cudnnFilterDescriptor_t w,
                                                          const cudnnTensorDescriptor_t dy,
                                                          const cudnnConvolutionDescriptor_t c,
                                                          const cudnnTensorDescriptor_t dx, const int want, int *got,
                                                          cudnnConvolutionBwdDataAlgoPerf_t *p) {
    return search(DIR_BWD_DATA, false, dx, w, c, dy, want, got, p);
}
cudnnStatus_t cudnnFindConvolutionBackwardFilterAlgorithm(cudnnHandle_t, const cudnnTensorDescriptor_t x,
                                                          const cudnnTensorDescriptor_t dy,
                                                          const cudnnConvolutionDescriptor_t c,
                                                          const cudnnFilterDescriptor_t dw, const int want, int *got,
                                                          cudnnConvolutionBwdFilterAlgoPerf_t *p) {
    return search(DIR_BWD_FILTER, true, x, dw, c, dy, want, got, p);
}
cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithm_v7(cudnnHandle_t, const cudnnTensorDescriptor_t x,
                                                            const cudnnTensorDescriptor_t dy,
                                                            const cudnnConvolutionDescriptor_t c,
                                                            const cudnnFilterDescriptor_t dw, const int want,
                                                            int *got, cudnnConvolutionBwdFilterAlgoPerf_t *p) {
    return search(DIR_BWD_FILTER, false, x, dw, c, dy, want, got, p);
}

cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(cudnnHandle_t, const cudnnTensorDescriptor_t x,
                                                      const cudnnFilterDescriptor_t w,
                                                      const cudnnConvolutionDescriptor_t c,
                                                      const cudnnTensorDescriptor_t y, cudnnConvolutionFwdAlgo_t a,
                                                      size_t *bytes) {
    return ws_size(DIR_FWD, x, w, c, y, a, bytes);
}
cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(cudnnHandle_t, const cudnnFilterDescriptor_t w,
                                                           const cudnnTensorDescriptor_t dy,
                                                           const cudnnConvolutionDescriptor_t c,
                                                           const cudnnTensorDescriptor_t dx,
                                                           cudnnConvolutionBwdDataAlgo_t a, size_t *bytes) {
    return ws_size(DIR_BWD_DATA, dx, w, c, dy, a, bytes);
}
cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(cudnnHandle_t, const cudnnTensorDescriptor_t x,
                                                             const cudnnTensorDescriptor_t dy,
                                                             const cudnnConvolutionDescriptor_t c,
                                                             const cudnnFilterDescriptor_t dw,
                                                             cudnnConvolutionBwdFilterAlgo_t a, size_t *bytes) {
    return ws_size(DIR_BWD_FILTER, x, dw, c, dy, a, bytes);
}

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t h, const void *alpha, const cudnnTensorDescriptor_t xd,
                                      const void *x, const cudnnFilterDescriptor_t wd, const void *w,
                                      const cudnnConvolutionDescriptor_t cd, cudnnConvolutionFwdAlgo_t algo,
                                      void *ws, size_t wsb, const void *beta, const cudnnTensorDescriptor_t yd,
                                      void *y) {
    conv_shape s;
    cudnnStatus_t e = shape_of(xd, wd, cd, yd, &s);
    return e != CUDNN_STATUS_SUCCESS ? e : conv_call(h, DIR_FWD, algo, s, cd, ws, wsb, alpha, beta, x, n_x(s), w,
                                                     n_w(s), y, n_y(s), conv_fwd_loops);
}
cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t h, const void *alpha, const cudnnFilterDescriptor_t wd,
                                           const void *w, const cudnnTensorDescriptor_t dyd, const void *dy,
                                           const cudnnConvolutionDescriptor_t cd, cudnnConvolutionBwdDataAlgo_t algo,
                                           void *ws, size_t wsb, const void *beta, const cudnnTensorDescriptor_t dxd,
                                           void *dx) {
    conv_shape s;
    cudnnStatus_t e = shape_of(dxd, wd, cd, dyd, &s);
    return e != CUDNN_STATUS_SUCCESS ? e : conv_call(h, DIR_BWD_DATA, algo, s, cd, ws, wsb, alpha, beta, dy, n_y(s),
                                                     w, n_w(s), dx, n_x(s), conv_bwd_data_loops);
}
cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t h, const void *alpha, const cudnnTensorDescriptor_t xd,
                                             const void *x, const cudnnTensorDescriptor_t dyd, const void *dy,
                                             const cudnnConvolutionDescriptor_t cd,
                                             cudnnConvolutionBwdFilterAlgo_t algo, void *ws, size_t wsb,
                                             const void *beta, const cudnnFilterDescriptor_t dwd, void *dw) {
    conv_shape s;
    cudnnStatus_t e = shape_of(xd, dwd, cd, dyd, &s);
    return e != CUDNN_STATUS_SUCCESS ? e : conv_call(h, DIR_BWD_FILTER, algo, s, cd, ws, wsb, alpha, beta, x,
                                                     n_x(s), dy, n_y(s), dw, n_w(s), conv_bwd_filter_loops);
}

// C = alpha * A + beta * C, A broadcast over C's batch and pixels (a bias of 1 x C x 1 x 1)
cudnnStatus_t cudnnAddTensor(cudnnHandle_t h, const void *alpha, const cudnnTensorDescriptor_t ad, const void *A,
                             const void *beta, const cudnnTensorDescriptor_t cd, void *C) {
    if (!h || !ad->set || !cd->set) return CUDNN_STATUS_BAD_PARAM;
    if (ad->n != 1 || ad->h != 1 || ad->w != 1 || ad->c != cd->c) return CUDNN_STATUS_NOT_SUPPORTED;
    if (!is_device(A, tensor_bytes(ad)) || !is_device(C, tensor_bytes(cd))) {
        fprintf(stderr, "cudasim: cudnnAddTensor: a tensor is not in device memory, or is smaller than its descriptor\n");
        return CUDNN_STATUS_BAD_PARAM;
    }
    float al = *(const float *)alpha, be = *(const float *)beta;
    const float *a = (const float *)A;
    float *c = (float *)C;
    int n = cd->n, ch = cd->c;
    size_t hw = (size_t)cd->h * cd->w;
    cudaError_t e = enqueue(h->st, [=]() {
        for (int i = 0; i < n; i++)
            for (int k = 0; k < ch; k++)
                for (size_t p = 0; p < hw; p++) {
                    float &v = c[((size_t)i * ch + k) * hw + p];
                    v = blend(al, (double)a[k], be, v);
                }
    });
    return e == cudaSuccess ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_EXECUTION_FAILED;
}
}   // extern "C"
