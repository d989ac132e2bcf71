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
    msgpack_unpacked_init(&r->obj);
    r->crc = (uint32_t)crc32(0L, Z_NULL, 0);
}

void sr_free(sreader *r) {
    msgpack_unpacked_destroy(&r->obj);
    free(r->buf);
    r->buf = NULL;
    r->pos = r->len = r->cap = 0;
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

/* Every pointer of an empty string or bin is made to point at "" (msgpack-c leaves it NULL,
 * and memcmp/memcpy/memchr of a NULL pointer is undefined even for 0 bytes). And a map with a
 * key twice would be read one way here (first match) and another way by other msgpack readers
 * (Python keeps the last): refused, for every map of a top-level object. */
static int check_object(sreader *r, msgpack_object *o) {
    static const char empty[1] = "";
    if (o->type == MSGPACK_OBJECT_STR && o->via.str.size == 0) o->via.str.ptr = empty;
    if (o->type == MSGPACK_OBJECT_BIN && o->via.bin.size == 0) o->via.bin.ptr = empty;
    if (o->type == MSGPACK_OBJECT_ARRAY) {
        for (uint32_t i = 0; i < o->via.array.size; i++)
            if (check_object(r, &o->via.array.ptr[i]) < 0) return -1;
        return 1;
    }
    if (o->type != MSGPACK_OBJECT_MAP) return 1;
    msgpack_object_kv *kv = o->via.map.ptr;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        if (check_object(r, &kv[i].key) < 0 || check_object(r, &kv[i].val) < 0) return -1;
        if (kv[i].key.type == MSGPACK_OBJECT_STR)
            for (uint32_t j = 0; j < i; j++)
                if (kv[j].key.type == MSGPACK_OBJECT_STR && kv[j].key.via.str.size == kv[i].key.via.str.size &&
                    memcmp(kv[j].key.via.str.ptr, kv[i].key.via.str.ptr, kv[i].key.via.str.size) == 0)
                    return sr_fail(r, "map has the key \"%.*s\" twice", (int)(kv[i].key.via.str.size > 64 ? 64 : kv[i].key.via.str.size),
                                   kv[i].key.via.str.ptr);
    }
    return 1;
}

/* Big-endian integers of msgpack headers. */
static uint64_t be(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = v << 8 | p[i];
    return v;
}

int mp_extent(const char *buf, size_t len, size_t *size, uint64_t *entries) {
    const unsigned char *p = (const unsigned char *)buf;
    uint64_t pos = 0, todo = 1;   /* objects still to walk */
    *entries = 0;
    while (todo > 0) {
        if (pos >= len) return 0;
        unsigned b = p[pos];
        uint64_t head = 1, body = 0, items = 0;
        int lenbytes = 0;   /* bytes of a length or count after the type byte */
        bool container = false, map = false;
        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
        } else if (b <= 0x8f) {
            items = b & 0x0f, container = map = true;
        } else if (b <= 0x9f) {
            items = b & 0x0f, container = true;
        } else if (b <= 0xbf) {
            body = b & 0x1f;
        } else if (b == 0xc1) {
            return -1;
        } else if (b >= 0xc4 && b <= 0xc6) {         /* bin 8/16/32 */
            lenbytes = 1 << (b - 0xc4);
        } else if (b >= 0xc7 && b <= 0xc9) {         /* ext 8/16/32: length, then a type byte */
            lenbytes = 1 << (b - 0xc7);
            head = 1;
        } else if (b == 0xca || b == 0xcb) {         /* float 32/64 */
            head = b == 0xca ? 5 : 9;
        } else if (b >= 0xcc && b <= 0xd3) {         /* uint/int 8..64 */
            head = 1 + (1u << ((b - 0xcc) & 3));
        } else if (b >= 0xd4 && b <= 0xd8) {         /* fixext 1..16: type byte + data */
            head = 2, body = 1u << (b - 0xd4);
        } else if (b >= 0xd9 && b <= 0xdb) {         /* str 8/16/32 */
            lenbytes = 1 << (b - 0xd9);
        } else if (b == 0xdc || b == 0xdd) {         /* array 16/32 */
            lenbytes = b == 0xdc ? 2 : 4, container = true;
        } else {                                     /* 0xde, 0xdf: map 16/32 */
            lenbytes = b == 0xde ? 2 : 4, container = map = true;
        }
        if (lenbytes) {
            if (len - pos < 1 + (uint64_t)lenbytes) return 0;
            uint64_t n = be(p + pos + 1, lenbytes);
            head = 1 + (uint64_t)lenbytes;
            if (b >= 0xc7 && b <= 0xc9) head++;      /* ext's type byte */
            if (container) items = n;
            else body = n;
        }
        if (container) {
            if (items > MP_MAX_ENTRIES) {
                *entries = items;
                return -1;
            }
            todo += map ? 2 * items : items;
        }
        if (len - pos < head + body) return 0;
        pos += head + body;
        todo--;
    }
    *size = (size_t)pos;
    return 1;
}

/* Makes room for more input: moves the unconsumed bytes to the front, grows the buffer when
 * they fill more than half of it. Returns 0 or -1 (out of memory). */
static int sr_room(sreader *r) {
    if (r->pos > 0) {
        memmove(r->buf, r->buf + r->pos, r->len - r->pos);
        r->len -= r->pos;
        r->pos = 0;
    }
    if (r->cap - r->len < SR_READ || r->len > r->cap / 2) {
        size_t cap = r->cap ? 2 * r->cap : 2 * SR_READ;
        while (cap - r->len < SR_READ) cap *= 2;
        char *nb = realloc(r->buf, cap);
        if (!nb) return -1;
        r->buf = nb;
        r->cap = cap;
    }
    return 0;
}

int sr_next(sreader *r) {
    if (r->err[0]) return -1;
    r->offset = r->consumed;
    for (;;) {
        size_t size = 0;
        uint64_t entries = 0;
        int x = r->buf ? mp_extent(r->buf + r->pos, r->len - r->pos, &size, &entries) : 0;
        if (x < 0 && entries)
            return sr_fail(r, "an array or map declares %" PRIu64 " entries, more than %u: refused", entries,
                           MP_MAX_ENTRIES);
        if (x < 0) return sr_fail(r, "not a valid msgpack stream");
        if (x > 0) {
            size_t off = 0;
            msgpack_unpack_return ret = msgpack_unpack_next(&r->obj, r->buf + r->pos, size, &off);
            if (ret == MSGPACK_UNPACK_NOMEM_ERROR) return sr_fail(r, "out of memory (object too large?)");
            if (ret != MSGPACK_UNPACK_SUCCESS || off != size) return sr_fail(r, "not a valid msgpack stream");
            r->pos += size;
            r->consumed += size;
            return check_object(r, &r->obj.data);
        }
        /* need more bytes */
        if (r->eof) {
            if (r->len == r->pos) return 0;
            return sr_fail(r, "stream truncated: %zu bytes at the end are not a whole object", r->len - r->pos);
        }
        if (sr_room(r) != 0) return sr_fail(r, "out of memory");
        /* at least as many bytes as are pending (an object needing many reads is walked a
         * logarithmic number of times), not much more (a live pipe is not waited on for long) */
        size_t want = r->len > SR_READ ? r->len : SR_READ;
        if (want > r->cap - r->len) want = r->cap - r->len;
        size_t n = fread(r->buf + r->len, 1, want, r->f);
        r->len += n;
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
