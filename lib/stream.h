/* stream.h: msgpack framing shared by every stream kind (see FORMAT.md).
 *
 * A stream is a sequence of sections; a section is a header map, zero or more record
 * maps, and a trailer map {"end": KIND, "records": N, "crc32": C} where C is the CRC-32
 * of every bin payload of the section's records, in order. A stream that stops before a
 * trailer is truncated, an error. Readers frame each object (mp_extent), unpack it whole, copy numbers
 * out of bin payloads with memcpy, and name the byte offset of any problem. */
#ifndef BN_STREAM_H
#define BN_STREAM_H
#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define STREAM_ERRMAX 512

/* ---- writing ---------------------------------------------------------------------- */
typedef struct swriter {
    int fd;
    msgpack_packer pk;
    uint64_t bytes;     /* bytes written so far */
    uint32_t crc;       /* CRC-32 of the current section's bin payloads */
    uint64_t records;   /* records in the current section */
    int err;            /* errno of the first failed write, 0 if none */
    char *buf;          /* write buffer */
    size_t used, cap;
} swriter;

/* Writes to fd (any kind: file, pipe, socket); short writes and EINTR are handled. */
void sw_init(swriter *w, int fd);
/* Packs a bin payload and adds it to the section's CRC. */
void sw_bin(swriter *w, const void *data, size_t n);
void sw_str(swriter *w, const char *s);
/* Starts a section (resets the CRC and record count); the caller then packs the header map. */
void sw_section_begin(swriter *w);
/* Counts one record (call once per record map). */
void sw_record(swriter *w);
/* Packs the trailer of the current section. */
void sw_trailer(swriter *w, const char *kind);
/* Flushes the buffer; returns 0, or -1 with errno-style code in w->err. */
int sw_flush(swriter *w);
void sw_free(swriter *w);

/* ---- reading ---------------------------------------------------------------------- */
typedef struct sreader {
    FILE *f;                /* the input */
    const char *name;       /* for messages: a path or "stdin" */
    msgpack_unpacker up;    /* unused (objects are framed by mp_extent, then unpacked whole) */
    msgpack_unpacked obj;   /* the current object (valid until the next sr_next) */
    uint64_t offset;        /* byte offset of the current object in the stream */
    uint64_t consumed;      /* byte offset just past the current object */
    uint32_t crc;           /* CRC-32 of the current section's bin payloads so far */
    uint64_t records;       /* records read in the current section */
    bool eof;
    char err[STREAM_ERRMAX];
    char *buf;              /* bytes read and not yet consumed: buf[pos..len), capacity cap */
    size_t pos, len, cap;
} sreader;

/* The most entries an array or map may declare: msgpack-c allocates a container's entries
 * when it reads its header, so a 5-byte header claiming 2^32 entries is refused before that. */
#define MP_MAX_ENTRIES (1u << 20)
/* Walks the msgpack object at buf[0..len) without building it: returns 1 when it is whole
 * (*size: its bytes), 0 when more bytes are needed, -1 when the bytes are not msgpack (0xc1)
 * or a container declares more than MP_MAX_ENTRIES entries (*entries: how many; 0 for a
 * bad byte). Readers frame each object with it before msgpack-c unpacks it, so memory follows
 * the bytes actually read, never a count in a header. */
int mp_extent(const char *buf, size_t len, size_t *size, uint64_t *entries);

void sr_init(sreader *r, FILE *f, const char *name);
void sr_free(sreader *r);
/* Reads the next object into r->obj. Returns 1 on an object, 0 at a clean end of input
 * (no bytes left), -1 on error (r->err says what and where: a parse error, bytes left at
 * EOF that are not a whole object, a read error). */
int sr_next(sreader *r);
/* Sets r->err to "NAME: at byte OFFSET: message" for the current object; returns -1. */
int sr_fail(sreader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Map access on an object; each returns NULL when absent. */
const msgpack_object *mp_get(const msgpack_object *map, const char *key);
/* Typed getters: return 0 on success, -1 (and an sr_fail message naming the field) when
 * the field is missing or of the wrong type or out of range. */
int mp_int(sreader *r, const msgpack_object *map, const char *key, int64_t lo, int64_t hi, int64_t *out);
int mp_uint64(sreader *r, const msgpack_object *map, const char *key, uint64_t *out);
int mp_double(sreader *r, const msgpack_object *map, const char *key, double *out);
int mp_bool(sreader *r, const msgpack_object *map, const char *key, bool *out);
/* Copies a string (NUL-terminated, truncation is an error) into out[cap]. */
int mp_str(sreader *r, const msgpack_object *map, const char *key, char *out, size_t cap);
/* Points at a bin payload; adds it to the section CRC. */
int mp_bin(sreader *r, const msgpack_object *map, const char *key, const char **data, size_t *n);
bool mp_str_eq(const msgpack_object *o, const char *s);

/* Starts a section: resets CRC and record count. */
void sr_section_begin(sreader *r);
/* True when the current object is a trailer map (has key "end"). */
bool sr_is_trailer(const sreader *r);
/* Checks the current object is the trailer of a KIND section whose counts and CRC match
 * what was read; returns 0 or -1 with a message. */
int sr_check_trailer(sreader *r, const char *kind);
/* Reads the kind of the section whose header is the current object: checks "kind" and
 * "version" (an unknown version is an error). Returns 0 or -1. */
int sr_check_header(sreader *r, const char *kind, int64_t max_version, int64_t *version);
#endif
