/* ops.c: conv_desc_init and ops_get, the choice of a backend by name.
 *
 * Backends: "ref" (ops_ref.c) always; "cpu" the fast CPU table (ops_cpu.c, oneDNN);
 * "cuda" from ops_cuda_get (kernels/) when built with CUDA; "auto" is cuda when usable,
 * else cpu. */
#include <string.h>

#include "ops.h"

ops *cpu_backend(void);     /* ops_cpu.c: the table, its block width chosen */
#ifdef HAVE_CUDA
ops *ops_cuda_get(const char **why);
#endif

void conv_desc_init(conv_desc *d, int n, int cin, int h, int w, int cout, int k, int stride, int pad) {
    d->n = n;
    d->cin = cin;
    d->h = h;
    d->w = w;
    d->cout = cout;
    d->k = k;
    d->stride = stride;
    d->pad = pad;
    /* no output (0) when the padded input is smaller than the kernel or stride < 1;
     * C division truncates towards zero, so test before dividing */
    int ok = k > 0 && stride > 0;
    d->ho = ok && h + 2 * pad >= k ? (h + 2 * pad - k) / stride + 1 : 0;
    d->wo = ok && w + 2 * pad >= k ? (w + 2 * pad - k) / stride + 1 : 0;
}

static ops *get_cpu(const char **why) {
    (void)why;
    return cpu_backend();
}

static ops *get_cuda(const char **why) {
#ifdef HAVE_CUDA
    return ops_cuda_get(why);
#else
    *why = "not built with CUDA";
    return NULL;
#endif
}

ops *ops_precision(ops *o, const char *name, const char **why) {
    const char *unused;
    if (!why) why = &unused;
    *why = NULL;
    if (!name) {
        *why = "no precision named";
        return NULL;
    }
    size_t len = strlen(name);
    if (len > 4 && strcmp(name + len - 4, "-sim") == 0) return ops_sim_wrap(o, name, why);
    if (o->set_precision) {
        if (o->set_precision(o, name) == 0) return o;
    } else if (strcmp(name, "fp32") == 0) {
        return o;
    }
    *why = "this backend has no such mode (tf32 needs --device cuda on a GPU; tf32-sim and bf16-sim "
           "simulate the tensor cores' rounding on the CPU)";
    return NULL;
}

ops *ops_get(const char *name, const char **why) {
    const char *unused;
    if (!why) why = &unused;
    *why = NULL;
    if (!name) {
        *why = "no backend named";
        return NULL;
    }
    if (strcmp(name, "ref") == 0) return &ops_ref;
    if (strcmp(name, "cpu") == 0) return get_cpu(why);
    if (strcmp(name, "cuda") == 0) return get_cuda(why);
    if (strcmp(name, "auto") == 0) {
        const char *cuda_why = NULL;
        ops *o = get_cuda(&cuda_why);
        return o ? o : get_cpu(why);
    }
    *why = "unknown backend (expected ref, cpu, cuda or auto)";
    return NULL;
}
