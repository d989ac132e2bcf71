/* stream.c: msgpack framing: buffered writer over a file descriptor, streaming reader with
 * byte offsets, section trailers with record counts and CRC-32 (stream.h, FORMAT.md). */
#include "stream.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

/* ---- writing ---------------------------------------------------------------------- */
#define SW_BUF (1u << 20)

static int write_all(swriter *w, const char *p, size_t n) {
    while (n > 0) {
        ssize_t k = write(w->fd, p, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            if (!w->err) w->err = errno;
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* msgpack_packer callback: small pieces go to the buffer, big ones straight to the fd. */
static int sw_callback(void *data, const char *buf, size_t len) {
    swriter *w = data;
    if (w->err) return -1;
    w->bytes += len;
    if (w->used + len > w->cap) {
        if (sw_flush(w) != 0) return -1;
        if (len >= w->cap) return write_all(w, buf, len);
    }
    memcpy(w->buf + w->used, buf, len);
    w->used += len;
    return 0;
}

void sw_init(swriter *w, int fd) {
    memset(w, 0, sizeof *w);
    w->fd = fd;
    w->cap = SW_BUF;
    w->buf = malloc(w->cap);
    if (!w->buf) w->err = ENOMEM;
    msgpack_packer_init(&w->pk, w, sw_callback);
    w->crc = (uint32_t)crc32(0L, Z_NULL, 0);
}

int sw_flush(swriter *w) {
    if (w->err) return -1;
    if (w->used && write_all(w, w->buf, w->used) != 0) return -1;
    w->used = 0;
    return 0;
}

void sw_free(swriter *w) {
    free(w->buf);
    w->buf = NULL;
}

/* zlib's crc32 takes a uInt length: feed big payloads in pieces. */
static uint32_t crc_update(uint32_t crc, const void *data, size_t n) {
    const unsigned char *p = data;
    while (n > 0) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = (uint32_t)crc32(crc, p, k);
        p += k;
        n -= k;
    }
    return crc;
}

void sw_bin(swriter *w, const void *data, size_t n) {
    w->crc = crc_update(w->crc, data, n);
    msgpack_pack_bin(&w->pk, n);
    msgpack_pack_bin_body(&w->pk, data, n);
}

void sw_str(swriter *w, const char *s) {
    size_t n = strlen(s);
    msgpack_pack_str(&w->pk, n);
    msgpack_pack_str_body(&w->pk, s, n);
}

void sw_section_begin(swriter *w) {
    w->crc = (uint32_t)crc32(0L, Z_NULL, 0);
    w->records = 0;
}

void sw_record(swriter *w) { w->records++; }

void sw_trailer(swriter *w, const char *kind) {
    msgpack_pack_map(&w->pk, 3);
    sw_str(w, "end");
    sw_str(w, kind);
    sw_str(w, "records");
    msgpack_pack_uint64(&w->pk, w->records);
    sw_str(w, "crc32");
    msgpack_pack_uint32(&w->pk, w->crc);
}

/* ---- reading ---------------------------------------------------------------------- */
#define SR_READ (1u << 16)

void sr_init(sreader *r, FILE *f, const char *name) {
    memset(r, 0, sizeof *r);
    r->f = f;
    r->name = name ? name : "stdin";
    if (!msgpack_unpacker_init(&r->up, SR_READ)) {
        snprintf(r->err, sizeof r->err, "%s: out of memory", r->name);
        r->eof = true;
    }
    msgpack_unpacked_init(&r->obj);
    r->crc = (uint32_t)crc32(0L, Z_NULL, 0);
}

void sr_free(sreader *r) {
    msgpack_unpacked_destroy(&r->obj);
    msgpack_unpacker_destroy(&r->up);
}

int sr_fail(sreader *r, const char *fmt, ...) {
    char msg[STREAM_ERRMAX / 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(r->err, sizeof r->err, "%s: at byte %" PRIu64 ": %s", r->name, r->offset, msg);
    return -1;
}

/* A map with a key twice would be read one way here (first match) and another way by
 * other msgpack readers (Python keeps the last): refused, for every map of a top-level object. */
static int check_unique_keys(sreader *r, const msgpack_object *o) {
    if (o->type == MSGPACK_OBJECT_ARRAY) {
        for (uint32_t i = 0; i < o->via.array.size; i++)
            if (check_unique_keys(r, &o->via.array.ptr[i]) < 0) return -1;
        return 1;
    }
    if (o->type != MSGPACK_OBJECT_MAP) return 1;
    const msgpack_object_kv *kv = o->via.map.ptr;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        if (kv[i].key.type == MSGPACK_OBJECT_STR)
            for (uint32_t j = 0; j < i; j++)
                if (kv[j].key.type == MSGPACK_OBJECT_STR && kv[j].key.via.str.size == kv[i].key.via.str.size &&
                    memcmp(kv[j].key.via.str.ptr, kv[i].key.via.str.ptr, kv[i].key.via.str.size) == 0)
                    return sr_fail(r, "map has the key \"%.*s\" twice", (int)(kv[i].key.via.str.size > 64 ? 64 : kv[i].key.via.str.size),
                                   kv[i].key.via.str.ptr);
        if (check_unique_keys(r, &kv[i].val) < 0) return -1;
    }
    return 1;
}

/* Bytes fed to the unpacker that are not yet part of a returned object. */
static size_t pending(const sreader *r) { return msgpack_unpacker_message_size(&r->up); }

int sr_next(sreader *r) {
    if (r->err[0]) return -1;
    r->offset = r->consumed;
    for (;;) {
        size_t size = 0;
        msgpack_unpack_return ret = msgpack_unpacker_next_with_size(&r->up, &r->obj, &size);
        if (ret == MSGPACK_UNPACK_SUCCESS) {
            r->consumed += size;
            return check_unique_keys(r, &r->obj.data);
        }
        if (ret == MSGPACK_UNPACK_PARSE_ERROR) return sr_fail(r, "not a valid msgpack stream");
        if (ret == MSGPACK_UNPACK_NOMEM_ERROR) return sr_fail(r, "out of memory (object too large?)");
        /* CONTINUE: need more bytes */
        if (r->eof) {
            if (pending(r) == 0) return 0;
            return sr_fail(r, "stream truncated: %zu bytes at the end are not a whole object", pending(r));
        }
        if (!msgpack_unpacker_reserve_buffer(&r->up, SR_READ)) return sr_fail(r, "out of memory");
        size_t n = fread(msgpack_unpacker_buffer(&r->up), 1, msgpack_unpacker_buffer_capacity(&r->up), r->f);
        if (n > 0) msgpack_unpacker_buffer_consumed(&r->up, n);
        if (n == 0) {
            if (ferror(r->f)) return sr_fail(r, "read error: %s", strerror(errno));
            r->eof = true;
        }
    }
}

const msgpack_object *mp_get(const msgpack_object *map, const char *key) {
    if (!map || map->type != MSGPACK_OBJECT_MAP) return NULL;
    size_t klen = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == klen && memcmp(k->via.str.ptr, key, klen) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

bool mp_str_eq(const msgpack_object *o, const char *s) {
    size_t n = strlen(s);
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == n && memcmp(o->via.str.ptr, s, n) == 0;
}

int mp_int(sreader *r, const msgpack_object *map, const char *key, int64_t lo, int64_t hi, int64_t *out) {
    const msgpack_object *o = mp_get(map, key);
    int64_t v;
    if (!o) return sr_fail(r, "field \"%s\" is missing", key);
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (o->via.u64 > (uint64_t)INT64_MAX) return sr_fail(r, "field \"%s\" is too large", key);
        v = (int64_t)o->via.u64;
    } else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        v = o->via.i64;
    } else {
        return sr_fail(r, "field \"%s\" is not an integer", key);
    }
    if (v < lo || v > hi)
        return sr_fail(r, "field \"%s\" = %" PRId64 " is out of range [%" PRId64 ", %" PRId64 "]", key, v, lo, hi);
    *out = v;
    return 0;
}

int mp_uint64(sreader *r, const msgpack_object *map, const char *key, uint64_t *out) {
    const msgpack_object *o = mp_get(map, key);
    if (!o) return sr_fail(r, "field \"%s\" is missing", key);
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER) return sr_fail(r, "field \"%s\" is not an unsigned integer", key);
    *out = o->via.u64;
    return 0;
}

int mp_double(sreader *r, const msgpack_object *map, const char *key, double *out) {
    const msgpack_object *o = mp_get(map, key);
    if (!o) return sr_fail(r, "field \"%s\" is missing", key);
    switch (o->type) {
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: *out = o->via.f64; return 0;
    case MSGPACK_OBJECT_POSITIVE_INTEGER: *out = (double)o->via.u64; return 0;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: *out = (double)o->via.i64; return 0;
    default: return sr_fail(r, "field \"%s\" is not a number", key);
    }
}

int mp_bool(sreader *r, const msgpack_object *map, const char *key, bool *out) {
    const msgpack_object *o = mp_get(map, key);
    if (!o) return sr_fail(r, "field \"%s\" is missing", key);
    if (o->type != MSGPACK_OBJECT_BOOLEAN) return sr_fail(r, "field \"%s\" is not a boolean", key);
    *out = o->via.boolean;
    return 0;
}

int mp_str(sreader *r, const msgpack_object *map, const char *key, char *out, size_t cap) {
    const msgpack_object *o = mp_get(map, key);
    if (!o) return sr_fail(r, "field \"%s\" is missing", key);
    if (o->type != MSGPACK_OBJECT_STR) return sr_fail(r, "field \"%s\" is not a string", key);
    if (o->via.str.size >= cap) return sr_fail(r, "field \"%s\" is too long (%u bytes)", key, o->via.str.size);
    if (memchr(o->via.str.ptr, 0, o->via.str.size)) return sr_fail(r, "field \"%s\" contains a NUL byte", key);
    memcpy(out, o->via.str.ptr, o->via.str.size);
    out[o->via.str.size] = 0;
    return 0;
}

int mp_bin(sreader *r, const msgpack_object *map, const char *key, const char **data, size_t *n) {
    const msgpack_object *o = mp_get(map, key);
    if (!o) return sr_fail(r, "field \"%s\" is missing", key);
    if (o->type != MSGPACK_OBJECT_BIN) return sr_fail(r, "field \"%s\" is not binary data", key);
    *data = o->via.bin.ptr;
    *n = o->via.bin.size;
    r->crc = crc_update(r->crc, *data, *n);
    return 0;
}

void sr_section_begin(sreader *r) {
    r->crc = (uint32_t)crc32(0L, Z_NULL, 0);
    r->records = 0;
}

bool sr_is_trailer(const sreader *r) { return mp_get(&r->obj.data, "end") != NULL; }

int sr_check_trailer(sreader *r, const char *kind) {
    const msgpack_object *o = &r->obj.data;
    uint64_t records, crc;
    if (!mp_str_eq(mp_get(o, "end"), kind)) return sr_fail(r, "trailer does not close a %s section", kind);
    if (mp_uint64(r, o, "records", &records) || mp_uint64(r, o, "crc32", &crc)) return -1;
    if (records != r->records)
        return sr_fail(r, "trailer says %" PRIu64 " records but the section holds %" PRIu64, records, r->records);
    if (crc != r->crc)
        return sr_fail(r, "CRC-32 mismatch: trailer %08" PRIx64 ", data %08" PRIx32 " (corrupt data)", crc, r->crc);
    return 0;
}

int sr_check_header(sreader *r, const char *kind, int64_t max_version, int64_t *version) {
    const msgpack_object *o = &r->obj.data;
    char got[64];
    if (o->type != MSGPACK_OBJECT_MAP) return sr_fail(r, "expected a %s header (a map)", kind);
    if (mp_get(o, "end")) return sr_fail(r, "expected a %s header, found a trailer", kind);
    if (mp_str(r, o, "kind", got, sizeof got)) return -1;
    if (strcmp(got, kind) != 0) return sr_fail(r, "this is a %s stream, not a %s stream", got, kind);
    if (mp_int(r, o, "version", 1, INT64_MAX, version)) return -1;
    if (*version > max_version)
        return sr_fail(r, "%s stream version %" PRId64 " is newer than this program understands (%" PRId64 ")", kind,
                       *version, max_version);
    sr_section_begin(r);
    return 0;
}
