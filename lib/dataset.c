/* dataset.c: dataset streams (dataset.h, FORMAT.md). */
#include "dataset.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *cifar10_names[10] = {"airplane", "automobile", "bird",  "cat",  "deer",
                                        "dog",      "frog",       "horse", "ship", "truck"};

void ds_header_cifar10(ds_header *h, uint64_t count) {
    memset(h, 0, sizeof *h);
    h->c = 3;
    h->h = 32;
    h->w = 32;
    h->nclasses = 10;
    for (int i = 0; i < 10; i++) strcpy(h->classes[i], cifar10_names[i]);
    h->count = count;
}

/* ---- writing ---------------------------------------------------------------------- */
static void write_header(ds_writer *d) {
    msgpack_packer *pk = &d->w.pk;
    const ds_header *h = &d->h;
    msgpack_pack_map(pk, 7);
    sw_str(&d->w, "kind");
    sw_str(&d->w, "dataset");
    sw_str(&d->w, "version");
    msgpack_pack_int(pk, DS_VERSION);
    sw_str(&d->w, "shape");
    msgpack_pack_array(pk, 3);
    msgpack_pack_int(pk, h->c);
    msgpack_pack_int(pk, h->h);
    msgpack_pack_int(pk, h->w);
    sw_str(&d->w, "classes");
    msgpack_pack_array(pk, (size_t)h->nclasses);
    for (int i = 0; i < h->nclasses; i++) sw_str(&d->w, h->classes[i]);
    sw_str(&d->w, "count");
    if (h->count == DS_COUNT_UNKNOWN)
        msgpack_pack_nil(pk);
    else
        msgpack_pack_uint64(pk, h->count);
    sw_str(&d->w, "chunk");
    msgpack_pack_uint64(pk, d->chunk);
    sw_str(&d->w, "source");
    sw_str(&d->w, h->source);
}

void ds_write_begin(ds_writer *d, int fd, const ds_header *h) {
    memset(d, 0, sizeof *d);
    d->h = *h;
    sw_init(&d->w, fd);
    size_t ib = ds_image_bytes(h);
    d->chunk = ib * DS_CHUNK <= DS_CHUNK_BYTES ? DS_CHUNK : (DS_CHUNK_BYTES / ib ? DS_CHUNK_BYTES / ib : 1);
    d->labels = malloc(d->chunk);
    d->pixels = malloc(d->chunk * ib);
    if (!d->labels || !d->pixels) d->w.err = ENOMEM;
    sw_section_begin(&d->w);
    write_header(d);
}

static void flush_chunk(ds_writer *d) {
    if (d->n == 0) return;
    msgpack_packer *pk = &d->w.pk;
    msgpack_pack_map(pk, 3);
    sw_str(&d->w, "n");
    msgpack_pack_uint64(pk, d->n);
    sw_str(&d->w, "labels");
    sw_bin(&d->w, d->labels, d->n);
    sw_str(&d->w, "pixels");
    sw_bin(&d->w, d->pixels, d->n * ds_image_bytes(&d->h));
    d->w.records += d->n; /* a dataset's trailer counts images, not chunks */
    d->n = 0;
}

void ds_write(ds_writer *d, uint8_t label, const uint8_t *pixels) {
    if (d->w.err) return;
    size_t ib = ds_image_bytes(&d->h);
    d->labels[d->n] = label;
    memcpy(d->pixels + d->n * ib, pixels, ib);
    d->n++;
    d->written++;
    if (d->n == d->chunk) flush_chunk(d);
}

int ds_write_end(ds_writer *d) {
    flush_chunk(d);
    sw_trailer(&d->w, "dataset");
    if (sw_flush(&d->w) != 0) {
        errno = d->w.err;
        return -1;
    }
    if (d->h.count != DS_COUNT_UNKNOWN && d->h.count != d->written) {
        errno = EINVAL;
        return -1;
    }
    return 0;
}

void ds_writer_free(ds_writer *d) {
    sw_free(&d->w);
    free(d->labels);
    free(d->pixels);
    d->labels = d->pixels = NULL;
}

/* ---- reading ---------------------------------------------------------------------- */
static int read_header(ds_reader *d) {
    sreader *r = &d->r;
    const msgpack_object *o = &r->obj.data, *v;
    ds_header *h = &d->h;
    int64_t x;
    memset(h, 0, sizeof *h);
    if (sr_check_header(r, "dataset", DS_VERSION, &d->version)) return -1;
    v = mp_get(o, "shape");
    if (!v || v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size != 3)
        return sr_fail(r, "field \"shape\" must be an array of 3 integers [C, H, W]");
    int dims[3];
    for (int i = 0; i < 3; i++) {
        const msgpack_object *e = &v->via.array.ptr[i];
        if (e->type != MSGPACK_OBJECT_POSITIVE_INTEGER || e->via.u64 < 1 || e->via.u64 > 4096)
            return sr_fail(r, "field \"shape\" must hold integers in [1, 4096]");
        dims[i] = (int)e->via.u64;
    }
    h->c = dims[0], h->h = dims[1], h->w = dims[2];
    if (ds_image_bytes(h) > (64u << 20)) return sr_fail(r, "field \"shape\": images larger than 64 MiB");
    v = mp_get(o, "classes");
    if (!v || v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size < 1 || v->via.array.size > DS_MAXCLASS)
        return sr_fail(r, "field \"classes\" must be an array of 1 to %d names", DS_MAXCLASS);
    h->nclasses = (int)v->via.array.size;
    for (int i = 0; i < h->nclasses; i++) {
        const msgpack_object *e = &v->via.array.ptr[i];
        if (e->type != MSGPACK_OBJECT_STR || e->via.str.size >= DS_NAMELEN ||
            memchr(e->via.str.ptr, 0, e->via.str.size))
            return sr_fail(r, "field \"classes\": entry %d is not a name of under %d bytes without NUL", i,
                           DS_NAMELEN);
        memcpy(h->classes[i], e->via.str.ptr, e->via.str.size);
    }
    v = mp_get(o, "count");
    if (!v) return sr_fail(r, "field \"count\" is missing");
    if (v->type == MSGPACK_OBJECT_NIL) {
        h->count = DS_COUNT_UNKNOWN;
    } else {
        if (mp_int(r, o, "count", 0, INT64_MAX - 1, &x)) return -1;
        h->count = (uint64_t)x;
    }
    if (mp_get(o, "source")) {
        if (mp_str(r, o, "source", h->source, sizeof h->source)) return -1;
    }
    return 0;
}

int ds_read_begin(ds_reader *d, FILE *f, const char *name) {
    memset(d, 0, sizeof *d);
    sr_init(&d->r, f, name);
    int rc = sr_next(&d->r);
    if (rc == 0) {
        d->r.offset = 0;
        return sr_fail(&d->r, "empty input: no dataset stream");
    }
    if (rc < 0) return -1;
    return read_header(d);
}

int ds_read_chunk(ds_reader *d, const uint8_t **labels, const uint8_t **pixels, size_t *n) {
    sreader *r = &d->r;
    int rc = sr_next(r);
    if (rc < 0) return -1;
    if (rc == 0) return sr_fail(r, "stream truncated: no trailer after %" PRIu64 " records", d->read);
    const msgpack_object *o = &r->obj.data;
    if (o->type != MSGPACK_OBJECT_MAP) return sr_fail(r, "expected a chunk or trailer map");
    if (sr_is_trailer(r)) {
        if (sr_check_trailer(r, "dataset")) return -1;
        if (d->h.count != DS_COUNT_UNKNOWN && d->h.count != d->read)
            return sr_fail(r, "header says %" PRIu64 " records but the stream holds %" PRIu64, d->h.count, d->read);
        rc = sr_next(r);
        if (rc < 0) return -1;
        if (rc > 0) return sr_fail(r, "data after the end of the dataset stream");
        return 0;
    }
    int64_t k;
    const char *lab, *pix;
    size_t nl, np, ib = ds_image_bytes(&d->h);
    if (mp_int(r, o, "n", 1, 1 << 24, &k)) return -1;
    if (mp_bin(r, o, "labels", &lab, &nl) || mp_bin(r, o, "pixels", &pix, &np)) return -1;
    if (nl != (size_t)k) return sr_fail(r, "chunk of %" PRId64 " records has %zu labels", k, nl);
    if (np != (size_t)k * ib)
        return sr_fail(r, "chunk of %" PRId64 " records has %zu pixel bytes, expected %zu", k, np, (size_t)k * ib);
    for (size_t i = 0; i < nl; i++)
        if ((uint8_t)lab[i] >= d->h.nclasses)
            return sr_fail(r, "record %" PRIu64 ": label %u is not below the %d classes", d->read + i,
                           (unsigned)(uint8_t)lab[i], d->h.nclasses);
    if (d->h.count != DS_COUNT_UNKNOWN && d->read + (uint64_t)k > d->h.count)
        return sr_fail(r, "more records than the header's count %" PRIu64, d->h.count);
    r->records += (uint64_t)k;
    d->read += (uint64_t)k;
    *labels = (const uint8_t *)lab;
    *pixels = (const uint8_t *)pix;
    *n = (size_t)k;
    return 1;
}

void ds_reader_free(ds_reader *d) { sr_free(&d->r); }

int ds_load(FILE *f, const char *name, dataset *out, char err[STREAM_ERRMAX]) {
    ds_reader d;
    memset(out, 0, sizeof *out);
    int rc = ds_read_begin(&d, f, name);
    size_t cap = 0, ib = 0;
    while (rc == 0) {
        const uint8_t *lab, *pix;
        size_t n;
        ib = ds_image_bytes(&d.h);
        int k = ds_read_chunk(&d, &lab, &pix, &n);
        if (k < 0) { rc = -1; break; }
        if (k == 0) break;
        if (out->n + n > cap) {
            /* the header's count sizes the first reservation when the input is a regular
             * file big enough to hold that many images (one allocation, no copies); otherwise
             * (a pipe, or a count larger than the file could hold) up to 64 MiB of pixels: a
             * count is a claim, and memory then follows the records actually read, never
             * beyond the count */
            size_t want = cap * 2;
            bool known = d.h.count != DS_COUNT_UNKNOWN;
            if (!cap) {
                uint64_t first = known ? d.h.count : 4096, most = (64u << 20) / ib;
                struct stat st;
                bool fits = known && fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) &&
                            d.h.count <= (uint64_t)st.st_size / ib;
                want = (size_t)(fits || first < most ? first : most);
                if (want < 1) want = 1;
            }
            while (want < out->n + n) want *= 2;
            if (known && want > d.h.count && d.h.count >= out->n + n) want = (size_t)d.h.count;
            uint8_t *nl = realloc(out->labels, want), *np = realloc(out->pixels, want * ib);
            if (nl) out->labels = nl;
            if (np) out->pixels = np;
            if (!nl || !np) { sr_fail(&d.r, "out of memory"); rc = -1; break; }
            cap = want;
        }
        memcpy(out->labels + out->n, lab, n);
        memcpy(out->pixels + out->n * ib, pix, n * ib);
        out->n += n;
    }
    if (rc != 0) {
        snprintf(err, STREAM_ERRMAX, "%s", d.r.err);
        ds_free(out);
    } else {
        out->h = d.h;
        out->h.count = out->n;
    }
    ds_reader_free(&d);
    return rc;
}

void ds_free(dataset *d) {
    free(d->labels);
    free(d->pixels);
    d->labels = d->pixels = NULL;
    d->n = 0;
}
