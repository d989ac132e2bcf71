/* checkpoint.c: checkpoints in memory and as stream sections (checkpoint.h, FORMAT.md). */
#include "checkpoint.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *dtype_names[] = {"f32", "f64", "u8", "i64", "u64"};
static const size_t dtype_sizes[] = {4, 8, 1, 8, 8};

const char *dtype_name(ck_dtype t) { return (unsigned)t < 5 ? dtype_names[t] : "?"; }
size_t dtype_size(ck_dtype t) { return (unsigned)t < 5 ? dtype_sizes[t] : 0; }
int dtype_parse(const char *s) {
    for (int i = 0; i < 5; i++)
        if (strcmp(s, dtype_names[i]) == 0) return i;
    return -1;
}

/* ---- key/value lists -------------------------------------------------------------- */
static kv *kv_slot(kvlist *l, const char *key) {
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->v[i].key, key) == 0) return &l->v[i];
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        kv *nv = realloc(l->v, (size_t)l->cap * sizeof *nv);
        if (!nv) abort();
        l->v = nv;
    }
    kv *e = &l->v[l->n++];
    memset(e, 0, sizeof *e);
    snprintf(e->key, sizeof e->key, "%s", key);
    return e;
}
void kv_set_int(kvlist *l, const char *key, int64_t v) {
    kv *e = kv_slot(l, key);
    e->type = KV_INT, e->i = v;
}
void kv_set_double(kvlist *l, const char *key, double v) {
    kv *e = kv_slot(l, key);
    e->type = KV_DOUBLE, e->d = v;
}
void kv_set_str(kvlist *l, const char *key, const char *v) {
    kv *e = kv_slot(l, key);
    e->type = KV_STR;
    snprintf(e->s, sizeof e->s, "%s", v);
}
const kv *kv_find(const kvlist *l, const char *key) {
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->v[i].key, key) == 0) return &l->v[i];
    return NULL;
}
int64_t kv_int(const kvlist *l, const char *key, int64_t dflt) {
    const kv *e = kv_find(l, key);
    if (!e || e->type == KV_STR) return dflt;
    if (e->type == KV_INT) return e->i;
    /* a double outside int64's range (or NaN) has no truncation: the default, never UB */
    return e->d > -9223372036854775808.0 && e->d < 9223372036854775808.0 ? (int64_t)e->d : dflt;
}
double kv_double(const kvlist *l, const char *key, double dflt) {
    const kv *e = kv_find(l, key);
    if (!e || e->type == KV_STR) return dflt;
    return e->type == KV_DOUBLE ? e->d : (double)e->i;
}
const char *kv_str(const kvlist *l, const char *key, const char *dflt) {
    const kv *e = kv_find(l, key);
    return e && e->type == KV_STR ? e->s : dflt;
}
void kv_free(kvlist *l) {
    free(l->v);
    memset(l, 0, sizeof *l);
}
void kv_copy(kvlist *dst, const kvlist *src) {
    kv_free(dst);
    for (int i = 0; i < src->n; i++) *kv_slot(dst, src->v[i].key) = src->v[i];
}

/* ---- checkpoints in memory -------------------------------------------------------- */
checkpoint *ck_new(void) {
    checkpoint *c = calloc(1, sizeof *c);
    if (!c) abort();
    return c;
}

static void tensor_free(ck_tensor *t) {
    free(t->data);
    t->data = NULL;
}

void ck_free(checkpoint *c) {
    if (!c) return;
    for (int i = 0; i < c->nt; i++) tensor_free(&c->t[i]);
    free(c->t);
    kv_free(&c->arch);
    kv_free(&c->state);
    free(c);
}

ck_tensor *ck_find(const checkpoint *c, const char *name) {
    for (int i = 0; i < c->nt; i++)
        if (strcmp(c->t[i].name, name) == 0) return &c->t[i];
    return NULL;
}

static void *alloc_data(size_t bytes) {
    void *p = NULL;
    size_t rounded = (bytes + 63) / 64 * 64;
    if (posix_memalign(&p, 64, rounded ? rounded : 64) != 0) abort();
    memset(p, 0, rounded ? rounded : 64);
    return p;
}

ck_tensor *ck_add(checkpoint *c, const char *name, ck_dtype dt, int ndim, const int64_t *shape, bool trainable,
                  const char *role) {
    if (ck_find(c, name)) {
        fprintf(stderr, "ck_add: duplicate tensor name %s\n", name);
        abort();
    }
    if (ndim < 0 || ndim > CK_MAXDIM || strlen(name) >= CK_NAMELEN) abort();
    if (c->nt == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 64;
        ck_tensor *nt = realloc(c->t, (size_t)c->cap * sizeof *nt);
        if (!nt) abort();
        c->t = nt;
    }
    ck_tensor *t = &c->t[c->nt++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    snprintf(t->role, sizeof t->role, "%s", role ? role : "param");
    t->dtype = dt;
    t->ndim = ndim;
    t->numel = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        t->numel *= (size_t)shape[i];
    }
    t->trainable = trainable;
    t->data = alloc_data(t->numel * dtype_size(dt));
    return t;
}

checkpoint *ck_clone(const checkpoint *src) {
    checkpoint *c = ck_new();
    c->seed = src->seed, c->epoch = src->epoch, c->step = src->step;
    kv_copy(&c->arch, &src->arch);
    kv_copy(&c->state, &src->state);
    for (int i = 0; i < src->nt; i++) {
        const ck_tensor *s = &src->t[i];
        ck_tensor *t = ck_add(c, s->name, s->dtype, s->ndim, s->shape, s->trainable, s->role);
        memcpy(t->data, s->data, s->numel * dtype_size(s->dtype));
    }
    return c;
}

void ck_drop_role(checkpoint *c, const char *role) {
    int k = 0;
    for (int i = 0; i < c->nt; i++) {
        if (strcmp(c->t[i].role, role) == 0)
            tensor_free(&c->t[i]);
        else
            c->t[k++] = c->t[i];
    }
    c->nt = k;
}

uint64_t ck_count(const checkpoint *c, const char *role, bool trainable_only) {
    uint64_t n = 0;
    for (int i = 0; i < c->nt; i++)
        if ((!role || strcmp(c->t[i].role, role) == 0) && (!trainable_only || c->t[i].trainable)) n += c->t[i].numel;
    return n;
}

const ck_tensor *ck_nonfinite(const checkpoint *c, const char *role, uint64_t *nan, uint64_t *inf) {
    for (int i = 0; i < c->nt; i++) {
        const ck_tensor *t = &c->t[i];
        if ((role && strcmp(t->role, role) != 0) || (t->dtype != DT_F32 && t->dtype != DT_F64)) continue;
        uint64_t nn = 0, ni = 0;
        for (size_t k = 0; k < t->numel; k++) {
            double v;
            if (t->dtype == DT_F32) {
                float f;
                memcpy(&f, (const char *)t->data + 4 * k, 4);
                v = f;
            } else {
                memcpy(&v, (const char *)t->data + 8 * k, 8);
            }
            nn += isnan(v) != 0;
            ni += isinf(v) != 0;
        }
        if (nn || ni) {
            *nan = nn, *inf = ni;
            return t;
        }
    }
    *nan = *inf = 0;
    return NULL;
}

/* ---- writing ---------------------------------------------------------------------- */
static void write_kv(swriter *w, const kvlist *l) {
    msgpack_pack_map(&w->pk, (size_t)l->n);
    for (int i = 0; i < l->n; i++) {
        sw_str(w, l->v[i].key);
        switch (l->v[i].type) {
        case KV_INT: msgpack_pack_int64(&w->pk, l->v[i].i); break;
        case KV_DOUBLE: msgpack_pack_double(&w->pk, l->v[i].d); break;
        case KV_STR: sw_str(w, l->v[i].s); break;
        }
    }
}

void ck_write(swriter *w, const checkpoint *c) {
    msgpack_packer *pk = &w->pk;
    sw_section_begin(w);
    msgpack_pack_map(pk, 9);
    sw_str(w, "kind");
    sw_str(w, "checkpoint");
    sw_str(w, "version");
    msgpack_pack_int(pk, CK_VERSION);
    sw_str(w, "seed");
    msgpack_pack_uint64(pk, c->seed);
    sw_str(w, "epoch");
    msgpack_pack_int64(pk, c->epoch);
    sw_str(w, "step");
    msgpack_pack_int64(pk, c->step);
    sw_str(w, "arch");
    write_kv(w, &c->arch);
    sw_str(w, "state");
    write_kv(w, &c->state);
    sw_str(w, "tensors");
    msgpack_pack_int(pk, c->nt);
    sw_str(w, "endian");
    sw_str(w, "little");
    for (int i = 0; i < c->nt; i++) {
        const ck_tensor *t = &c->t[i];
        msgpack_pack_map(pk, 6);
        sw_str(w, "name");
        sw_str(w, t->name);
        sw_str(w, "dtype");
        sw_str(w, dtype_name(t->dtype));
        sw_str(w, "shape");
        msgpack_pack_array(pk, (size_t)t->ndim);
        for (int d = 0; d < t->ndim; d++) msgpack_pack_int64(pk, t->shape[d]);
        sw_str(w, "trainable");
        if (t->trainable)
            msgpack_pack_true(pk);
        else
            msgpack_pack_false(pk);
        sw_str(w, "role");
        sw_str(w, t->role);
        sw_str(w, "data");
        sw_bin(w, t->data, t->numel * dtype_size(t->dtype)); /* x86-64 and aarch64: little-endian */
        sw_record(w);
    }
    sw_trailer(w, "checkpoint");
}

/* ---- reading ---------------------------------------------------------------------- */
static int read_kv(sreader *r, const msgpack_object *map, const char *field, kvlist *out) {
    const msgpack_object *m = mp_get(map, field);
    if (!m) return sr_fail(r, "field \"%s\" is missing", field);
    if (m->type != MSGPACK_OBJECT_MAP) return sr_fail(r, "field \"%s\" is not a map", field);
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key, *v = &m->via.map.ptr[i].val;
        char key[CK_KEYLEN];
        if (k->type != MSGPACK_OBJECT_STR || k->via.str.size >= CK_KEYLEN)
            return sr_fail(r, "field \"%s\": a key is not a string of under %d bytes", field, CK_KEYLEN);
        memcpy(key, k->via.str.ptr, k->via.str.size);
        key[k->via.str.size] = 0;
        if (kv_find(out, key)) return sr_fail(r, "field \"%s\": duplicate key \"%s\"", field, key);
        switch (v->type) {
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
            if (v->via.u64 > (uint64_t)INT64_MAX) return sr_fail(r, "field \"%s.%s\" is too large", field, key);
            kv_set_int(out, key, (int64_t)v->via.u64);
            break;
        case MSGPACK_OBJECT_NEGATIVE_INTEGER: kv_set_int(out, key, v->via.i64); break;
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64: kv_set_double(out, key, v->via.f64); break;
        case MSGPACK_OBJECT_STR: {
            char s[CK_STRLEN];
            if (v->via.str.size >= CK_STRLEN) return sr_fail(r, "field \"%s.%s\" is too long", field, key);
            memcpy(s, v->via.str.ptr, v->via.str.size);
            s[v->via.str.size] = 0;
            kv_set_str(out, key, s);
            break;
        }
        default: return sr_fail(r, "field \"%s.%s\" is not a number or a string", field, key);
        }
    }
    return 0;
}

static int read_tensor(sreader *r, checkpoint *c) {
    const msgpack_object *o = &r->obj.data, *sh;
    char name[CK_NAMELEN], dt[16], role[16];
    bool trainable;
    const char *data;
    size_t n;
    if (o->type != MSGPACK_OBJECT_MAP) return sr_fail(r, "expected a tensor record (a map)");
    if (mp_str(r, o, "name", name, sizeof name) || mp_str(r, o, "dtype", dt, sizeof dt) ||
        mp_bool(r, o, "trainable", &trainable) || mp_str(r, o, "role", role, sizeof role))
        return -1;
    int dtype = dtype_parse(dt);
    if (dtype < 0) return sr_fail(r, "tensor %s: unknown dtype \"%s\"", name, dt);
    if (ck_find(c, name)) return sr_fail(r, "tensor %s: duplicate tensor name", name);
    sh = mp_get(o, "shape");
    if (!sh || sh->type != MSGPACK_OBJECT_ARRAY || sh->via.array.size > CK_MAXDIM)
        return sr_fail(r, "tensor %s: field \"shape\" must be an array of at most %d sizes", name, CK_MAXDIM);
    int64_t shape[CK_MAXDIM];
    uint64_t numel = 1;
    for (uint32_t i = 0; i < sh->via.array.size; i++) {
        const msgpack_object *e = &sh->via.array.ptr[i];
        if (e->type != MSGPACK_OBJECT_POSITIVE_INTEGER || e->via.u64 > (1ull << 40))
            return sr_fail(r, "tensor %s: shape[%u] is not a size", name, i);
        shape[i] = (int64_t)e->via.u64;
        if (e->via.u64 && numel > (UINT64_MAX / 8) / e->via.u64)
            return sr_fail(r, "tensor %s: shape overflows", name);
        numel *= e->via.u64;
    }
    /* The payload must match before anything is allocated from the shape. */
    if (mp_bin(r, o, "data", &data, &n)) return -1;
    if (n != numel * dtype_size((ck_dtype)dtype))
        return sr_fail(r, "tensor %s: data holds %zu bytes, shape and dtype need %" PRIu64, name, n,
                       numel * dtype_size((ck_dtype)dtype));
    ck_tensor *t = ck_add(c, name, (ck_dtype)dtype, (int)sh->via.array.size, shape, trainable, role);
    memcpy(t->data, data, n);
    r->records++;
    return 0;
}

int ck_read_next(sreader *r, checkpoint **out) {
    int64_t version, ntensors, x;
    uint64_t seed;
    *out = NULL;
    int rc = sr_next(r);
    if (rc <= 0) return rc;
    if (sr_check_header(r, "checkpoint", CK_VERSION, &version)) return -1;
    const msgpack_object *h = &r->obj.data;
    checkpoint *c = ck_new();
    if (mp_uint64(r, h, "seed", &seed) || mp_int(r, h, "epoch", 0, INT64_MAX, &c->epoch) ||
        mp_int(r, h, "step", 0, INT64_MAX, &c->step) || mp_int(r, h, "tensors", 0, 1 << 20, &ntensors) ||
        read_kv(r, h, "arch", &c->arch) || read_kv(r, h, "state", &c->state))
        goto fail;
    c->seed = seed;
    const msgpack_object *e = mp_get(h, "endian");
    if (e && !mp_str_eq(e, "little")) {
        sr_fail(r, "field \"endian\": only little-endian tensors are supported");
        goto fail;
    }
    for (x = 0; x < ntensors; x++) {
        rc = sr_next(r);
        if (rc < 0) goto fail;
        if (rc == 0) {
            sr_fail(r, "stream truncated: checkpoint has %" PRId64 " of its %" PRId64 " tensors", x, ntensors);
            goto fail;
        }
        if (sr_is_trailer(r)) {
            sr_fail(r, "checkpoint ends after %" PRId64 " of its %" PRId64 " tensors", x, ntensors);
            goto fail;
        }
        if (read_tensor(r, c)) goto fail;
    }
    rc = sr_next(r);
    if (rc < 0) goto fail;
    if (rc == 0) {
        sr_fail(r, "stream truncated: checkpoint has no trailer");
        goto fail;
    }
    if (sr_check_trailer(r, "checkpoint")) goto fail;
    *out = c;
    return 1;
fail:
    ck_free(c);
    return -1;
}

checkpoint *ck_read(FILE *f, const char *name, int which, int *count, char err[STREAM_ERRMAX]) {
    sreader r;
    checkpoint *keep = NULL, *c;
    int n = 0, rc;
    sr_init(&r, f, name);
    while ((rc = ck_read_next(&r, &c)) == 1) {
        if (which < 0 || n == which) {
            ck_free(keep);
            keep = c;
        } else {
            ck_free(c);
        }
        n++;
    }
    if (rc == 0 && n == 0) {
        r.offset = 0;
        sr_fail(&r, "empty input: no checkpoint stream");
        rc = -1;
    } else if (rc == 0 && which >= n) {
        snprintf(r.err, sizeof r.err, "%s: asked for checkpoint %d but the stream holds %d (numbered from 0)", r.name,
                 which, n);
        rc = -1;
    }
    if (count) *count = n;
    if (rc < 0) {
        snprintf(err, STREAM_ERRMAX, "%s", r.err);
        ck_free(keep);
        keep = NULL;
    }
    sr_free(&r);
    return keep;
}
