/* checkpoint.h: checkpoint streams (FORMAT.md). A checkpoint is a header (architecture,
 * seed, epoch, step, training state) and one record per tensor; a stream may hold several
 * (one per epoch), readers take the last unless told otherwise. */
#ifndef BN_CHECKPOINT_H
#define BN_CHECKPOINT_H
#include "stream.h"

#define CK_VERSION 1
#define CK_NAMELEN 128
#define CK_MAXDIM 8
#define CK_KEYLEN 48
#define CK_STRLEN 256

typedef enum { DT_F32, DT_F64, DT_U8, DT_I64, DT_U64 } ck_dtype;
const char *dtype_name(ck_dtype t);       /* "f32", ... */
int dtype_parse(const char *s);           /* -1 when unknown */
size_t dtype_size(ck_dtype t);

/* A flat list of key -> scalar (int, double or string): the checkpoint's "arch" and
 * "state" maps. */
typedef enum { KV_INT, KV_DOUBLE, KV_STR } kv_type;
typedef struct kv {
    char key[CK_KEYLEN];
    kv_type type;
    int64_t i;
    double d;
    char s[CK_STRLEN];
} kv;
typedef struct kvlist { kv *v; int n, cap; } kvlist;
void kv_set_int(kvlist *l, const char *key, int64_t v);
void kv_set_double(kvlist *l, const char *key, double v);
void kv_set_str(kvlist *l, const char *key, const char *v);
const kv *kv_find(const kvlist *l, const char *key);
int64_t kv_int(const kvlist *l, const char *key, int64_t dflt);      /* doubles are truncated (out of range, NaN: dflt) */
double kv_double(const kvlist *l, const char *key, double dflt);     /* ints are converted */
const char *kv_str(const kvlist *l, const char *key, const char *dflt);
void kv_free(kvlist *l);
void kv_copy(kvlist *dst, const kvlist *src);

typedef struct ck_tensor {
    char name[CK_NAMELEN];
    ck_dtype dtype;
    int ndim;
    int64_t shape[CK_MAXDIM];
    size_t numel;
    bool trainable;
    char role[16];      /* "param", "buffer" (BN running stats), "opt" (optimizer state), "rng" */
    void *data;         /* numel * dtype_size, 64-byte aligned */
} ck_tensor;

typedef struct checkpoint {
    uint64_t seed;
    int64_t epoch, step;
    kvlist arch;        /* "name" (resnet|bottleneck), "depth", "width", "classes", BN conventions... */
    kvlist state;       /* training state needed to resume: optimizer, lr, schedule, ... */
    ck_tensor *t;
    int nt, cap;
} checkpoint;

checkpoint *ck_new(void);
void ck_free(checkpoint *c);
checkpoint *ck_clone(const checkpoint *c);
/* Adds a zeroed tensor; the name must be new (dies otherwise: a programming error). */
ck_tensor *ck_add(checkpoint *c, const char *name, ck_dtype dt, int ndim, const int64_t *shape,
                  bool trainable, const char *role);
ck_tensor *ck_find(const checkpoint *c, const char *name);
/* Removes every tensor whose role is ROLE (e.g. "opt" when the trainable set changes). */
void ck_drop_role(checkpoint *c, const char *role);
/* Parameters (role "param") and how many of them are trainable. */
uint64_t ck_count(const checkpoint *c, const char *role, bool trainable_only);

/* The first float tensor (f32/f64) of role ROLE (NULL: any) holding NaN or Inf values:
 * returns it, with how many of each in *nan and *inf; NULL when every value is finite. */
const ck_tensor *ck_nonfinite(const checkpoint *c, const char *role, uint64_t *nan, uint64_t *inf);

/* Writes one checkpoint section to the stream. */
void ck_write(swriter *w, const checkpoint *c);

/* Reads the checkpoint numbered `which` (0-based; -1 = the last) from a stream, checking
 * every section through to the end of the input. *count gets how many the stream holds.
 * Returns the checkpoint, or NULL with err filled. */
checkpoint *ck_read(FILE *f, const char *name, int which, int *count, char err[STREAM_ERRMAX]);
/* Reads the next checkpoint section from an open reader (for tools that visit each one).
 * Returns 1 with *out set, 0 at clean end of input, -1 on error (r->err). */
int ck_read_next(sreader *r, checkpoint **out);
#endif
