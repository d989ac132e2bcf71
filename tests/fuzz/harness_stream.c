/* harness_stream.c: fuzz harnesses of the stream readers: datasets and checkpoints
 * (harness.h). A stream that reads whole is written back and read again: it must come back
 * the same. */
#include "harness.h"

#include <inttypes.h>
#include <zlib.h>

#include "checkpoint.h"
#include "dataset.h"
#include "harness_util.h"

/* ---- datasets ------------------------------------------------------------------------- */
static uint32_t crc_of(uint32_t crc, const uint8_t *p, size_t n) {
    while (n) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = (uint32_t)crc32(crc, p, k);
        p += k;
        n -= k;
    }
    return crc;
}

static int same_header(const ds_header *a, const ds_header *b) {
    if (a->c != b->c || a->h != b->h || a->w != b->w || a->nclasses != b->nclasses) return 0;
    for (int i = 0; i < a->nclasses; i++)
        if (strcmp(a->classes[i], b->classes[i]) != 0) return 0;
    return strcmp(a->source, b->source) == 0;
}

/* Writes d to a memory file and loads it back; it must be the same. */
static int dataset_round_trip(const dataset *d) {
    int fd = memfd_create("fuzz-ds", MFD_CLOEXEC);
    if (fd < 0) return 0;
    ds_writer w;
    ds_write_begin(&w, fd, &d->h);
    size_t ib = ds_image_bytes(&d->h);
    for (size_t i = 0; i < d->n; i++) ds_write(&w, d->labels[i], d->pixels + i * ib);
    int rc = ds_write_end(&w);
    ds_writer_free(&w);
    if (rc != 0) {
        close(fd);
        return FUZZ_BROKEN("dataset: writing back %zu records failed", d->n);
    }
    lseek(fd, 0, SEEK_SET);
    FILE *f = fdopen(fd, "rb");
    if (!f) { close(fd); return 0; }
    dataset e;
    char err[STREAM_ERRMAX];
    rc = ds_load(f, "round-trip", &e, err);
    fclose(f);
    if (rc != 0) return FUZZ_BROKEN("dataset: reading back what was written failed: %s", err);
    int same = e.n == d->n && same_header(&e.h, &d->h) && e.h.count == d->n &&
               (d->n == 0 || (memcmp(e.labels, d->labels, d->n) == 0 && memcmp(e.pixels, d->pixels, d->n * ib) == 0));
    ds_free(&e);
    return same ? 0 : FUZZ_BROKEN("dataset: the round trip changed the records");
}

int fuzz_dataset(const uint8_t *data, size_t size) {
    fuzz_accepted = 0;
    /* 1. chunk by chunk, checking what each chunk promises */
    FILE *f = fuzz_file(data, size);
    if (!f) return 0;
    ds_reader d;
    int ok_stream = 0;
    uint64_t total = 0;
    uint32_t crc_lab = 0, crc_pix = 0;   /* incremental: equal to the CRCs of all labels, all pixels */
    ds_header h;
    memset(&h, 0, sizeof h);
    if (ds_read_begin(&d, f, "fuzz") == 0) {
        h = d.h;
        size_t ib = ds_image_bytes(&d.h);
        for (;;) {
            const uint8_t *lab, *pix;
            size_t n;
            int rc = ds_read_chunk(&d, &lab, &pix, &n);
            if (rc < 0) break;
            if (rc == 0) { ok_stream = 1; break; }
            if (n == 0) { ds_reader_free(&d); fclose(f); return FUZZ_BROKEN("dataset: a chunk of 0 records"); }
            for (size_t i = 0; i < n; i++)
                if (lab[i] >= d.h.nclasses) {
                    ds_reader_free(&d);
                    fclose(f);
                    return FUZZ_BROKEN("dataset: label %u of %d classes delivered", lab[i], d.h.nclasses);
                }
            crc_lab = crc_of(crc_lab, lab, n);
            crc_pix = crc_of(crc_pix, pix, n * ib);
            total += n;
        }
        if (ok_stream && d.h.count != DS_COUNT_UNKNOWN && d.h.count != total) {
            ds_reader_free(&d);
            fclose(f);
            return FUZZ_BROKEN("dataset: header count %" PRIu64 ", %" PRIu64 " records read", d.h.count, total);
        }
    }
    if (!ok_stream && !d.r.err[0]) {
        ds_reader_free(&d);
        fclose(f);
        return FUZZ_BROKEN("dataset: an error without a message");
    }
    ds_reader_free(&d);
    fclose(f);

    /* 2. all at once: the same verdict and the same records */
    f = fuzz_file(data, size);
    if (!f) return 0;
    dataset all;
    char err[STREAM_ERRMAX];
    err[0] = 0;
    int rc = ds_load(f, "fuzz", &all, err);
    fclose(f);
    if ((rc == 0) != ok_stream) {
        if (rc == 0) ds_free(&all);
        return FUZZ_BROKEN("dataset: ds_load says %d, chunk by chunk says %s (%s)", rc, ok_stream ? "ok" : "error", err);
    }
    if (rc != 0) return err[0] ? 0 : FUZZ_BROKEN("dataset: ds_load failed without a message");
    int bad = all.n != total || !same_header(&all.h, &h) || crc_of(0, all.labels, all.n) != crc_lab ||
              crc_of(0, all.pixels, all.n * ds_image_bytes(&all.h)) != crc_pix;
    if (bad) {
        ds_free(&all);
        return FUZZ_BROKEN("dataset: ds_load read %zu records, chunk by chunk %" PRIu64 " (or other records)", all.n, total);
    }
    rc = dataset_round_trip(&all);
    ds_free(&all);
    fuzz_accepted = rc == 0;
    return rc;
}

/* ---- checkpoints ---------------------------------------------------------------------- */
static int same_kv(const kvlist *a, const kvlist *b) {
    if (a->n != b->n) return 0;
    for (int i = 0; i < a->n; i++) {
        const kv *x = &a->v[i], *y = kv_find(b, x->key);
        if (!y || x->type != y->type) return 0;
        if (x->type == KV_INT && x->i != y->i) return 0;
        if (x->type == KV_DOUBLE && memcmp(&x->d, &y->d, sizeof x->d) != 0) return 0;
        if (x->type == KV_STR && strcmp(x->s, y->s) != 0) return 0;
    }
    return 1;
}

static int same_checkpoint(const checkpoint *a, const checkpoint *b) {
    if (a->seed != b->seed || a->epoch != b->epoch || a->step != b->step || a->nt != b->nt) return 0;
    if (!same_kv(&a->arch, &b->arch) || !same_kv(&a->state, &b->state)) return 0;
    for (int i = 0; i < a->nt; i++) {
        const ck_tensor *x = &a->t[i], *y = &b->t[i];
        if (strcmp(x->name, y->name) || x->dtype != y->dtype || x->ndim != y->ndim || x->numel != y->numel ||
            x->trainable != y->trainable || strcmp(x->role, y->role))
            return 0;
        if (memcmp(x->shape, y->shape, (size_t)x->ndim * sizeof x->shape[0])) return 0;
        if (memcmp(x->data, y->data, x->numel * dtype_size(x->dtype))) return 0;
    }
    return 1;
}

/* Checks what a checkpoint read whole promises: names unique, sizes consistent. */
static int check_tensors(const checkpoint *c) {
    for (int i = 0; i < c->nt; i++) {
        const ck_tensor *t = &c->t[i];
        uint64_t numel = 1;
        if (t->ndim < 0 || t->ndim > CK_MAXDIM) return FUZZ_BROKEN("checkpoint: tensor %s has %d dims", t->name, t->ndim);
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] < 0) return FUZZ_BROKEN("checkpoint: tensor %s: negative size", t->name);
            numel *= (uint64_t)t->shape[d];
        }
        if (numel != t->numel) return FUZZ_BROKEN("checkpoint: tensor %s: numel %zu, shape says %" PRIu64, t->name, t->numel, numel);
        if (!t->data) return FUZZ_BROKEN("checkpoint: tensor %s has no data", t->name);
        for (int j = 0; j < i; j++)
            if (strcmp(c->t[j].name, t->name) == 0) return FUZZ_BROKEN("checkpoint: tensor name %s twice", t->name);
    }
    return 0;
}

/* Writes c to a memory file and reads it back; it must be the same. */
static int checkpoint_round_trip(const checkpoint *c) {
    int fd = memfd_create("fuzz-ck", MFD_CLOEXEC);
    if (fd < 0) return 0;
    swriter w;
    sw_init(&w, fd);
    ck_write(&w, c);
    int rc = sw_flush(&w);
    sw_free(&w);
    if (rc != 0) {
        close(fd);
        return FUZZ_BROKEN("checkpoint: writing back failed");
    }
    lseek(fd, 0, SEEK_SET);
    FILE *f = fdopen(fd, "rb");
    if (!f) { close(fd); return 0; }
    char err[STREAM_ERRMAX];
    int count = 0;
    checkpoint *back = ck_read(f, "round-trip", -1, &count, err);
    fclose(f);
    if (!back) return FUZZ_BROKEN("checkpoint: reading back what was written failed: %s", err);
    int same = count == 1 && same_checkpoint(c, back);
    checkpoint *clone = ck_clone(back);
    same = same && same_checkpoint(clone, back);
    ck_free(clone);
    ck_free(back);
    return same ? 0 : FUZZ_BROKEN("checkpoint: the round trip changed it");
}

int fuzz_checkpoint(const uint8_t *data, size_t size) {
    fuzz_accepted = 0;
    FILE *f = fuzz_file(data, size);
    if (!f) return 0;
    char err[STREAM_ERRMAX];
    err[0] = 0;
    int count = -1;
    checkpoint *c = ck_read(f, "fuzz", -1, &count, err);
    fclose(f);
    if (!c) return err[0] ? 0 : FUZZ_BROKEN("checkpoint: ck_read failed without a message");
    if (count < 1) {
        ck_free(c);
        return FUZZ_BROKEN("checkpoint: read one but count is %d", count);
    }
    int rc = check_tensors(c);
    if (rc == 0) rc = checkpoint_round_trip(c);
    /* the getters on whatever came in */
    for (int i = 0; i < c->arch.n; i++) {
        (void)kv_int(&c->arch, c->arch.v[i].key, 0);
        (void)kv_double(&c->arch, c->arch.v[i].key, 0);
        (void)kv_str(&c->arch, c->arch.v[i].key, "");
    }
    (void)ck_count(c, "param", true);
    ck_free(c);
    if (rc) return rc;

    /* the first one, and a visit of each: the same count */
    f = fuzz_file(data, size);
    if (!f) return 0;
    int count0 = -1;
    c = ck_read(f, "fuzz", 0, &count0, err);
    fclose(f);
    if (!c) return FUZZ_BROKEN("checkpoint: the last reads but the first does not: %s", err);
    ck_free(c);
    if (count0 != count) return FUZZ_BROKEN("checkpoint: %d checkpoints, then %d", count, count0);
    f = fuzz_file(data, size);
    if (!f) return 0;
    sreader r;
    sr_init(&r, f, "fuzz");
    int n = 0;
    while ((rc = ck_read_next(&r, &c)) == 1) {
        ck_free(c);
        n++;
    }
    sr_free(&r);
    fclose(f);
    if (rc != 0 || n != count) return FUZZ_BROKEN("checkpoint: ck_read_next visits %d (rc %d), ck_read %d", n, rc, count);
    fuzz_accepted = 1;
    return 0;
}
