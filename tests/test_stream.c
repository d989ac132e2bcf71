/* test_stream.c: the stream library: round trips of every field, chunking, several
 * checkpoints in one stream, truncation at many offsets, corruption, versions. */
#include <unistd.h>

#include "../tests/check.h"
#include "checkpoint.h"
#include "dataset.h"
#include "rng.h"

/* Writes through a pipe-less temporary file and returns its bytes. */
typedef struct { char *buf; size_t n; } bytes;

static FILE *tmpf(void) {
    FILE *f = tmpfile();
    if (!f) abort();
    return f;
}
static bytes slurp(FILE *f) {
    bytes b;
    fflush(f);
    fseek(f, 0, SEEK_END);
    b.n = (size_t)ftell(f);
    b.buf = malloc(b.n + 1);
    rewind(f);
    if (fread(b.buf, 1, b.n, f) != b.n) abort();
    return b;
}
static FILE *from_bytes(const char *p, size_t n) {
    FILE *f = tmpf();
    if (n && fwrite(p, 1, n, f) != n) abort();
    rewind(f);
    return f;
}

static bytes make_dataset(size_t n, ds_header *h, uint8_t **labels, uint8_t **pixels) {
    ds_header_cifar10(h, n);
    snprintf(h->source, sizeof h->source, "test");
    rng r;
    rng_seed(&r, 7, 0);
    *labels = malloc(n + 1);
    *pixels = malloc(n * 3072 + 1);
    for (size_t i = 0; i < n; i++) (*labels)[i] = (uint8_t)rng_below(&r, 10);
    for (size_t i = 0; i < n * 3072; i++) (*pixels)[i] = (uint8_t)rng_u64(&r);
    FILE *f = tmpf();
    ds_writer w;
    ds_write_begin(&w, fileno(f), h);
    for (size_t i = 0; i < n; i++) ds_write(&w, (*labels)[i], *pixels + i * 3072);
    if (ds_write_end(&w) != 0) abort();
    ds_writer_free(&w);
    bytes b = slurp(f);
    fclose(f);
    return b;
}

TEST(dataset_round_trip_chunked) {
    ds_header h;
    uint8_t *lab, *pix;
    size_t n = 2 * DS_CHUNK + 37; /* three chunks, the last partial */
    bytes b = make_dataset(n, &h, &lab, &pix);
    FILE *f = from_bytes(b.buf, b.n);
    ds_reader d;
    CHECK(ds_read_begin(&d, f, "mem") == 0, "%s", d.r.err);
    CHECK(d.h.c == 3 && d.h.h == 32 && d.h.w == 32, "shape");
    CHECK(d.h.nclasses == 10 && strcmp(d.h.classes[9], "truck") == 0, "classes");
    CHECK(d.h.count == n, "count %llu", (unsigned long long)d.h.count);
    CHECK(strcmp(d.h.source, "test") == 0, "source %s", d.h.source);
    size_t got = 0, chunks = 0, k;
    const uint8_t *l, *p;
    int rc;
    while ((rc = ds_read_chunk(&d, &l, &p, &k)) == 1) {
        CHECK(k <= DS_CHUNK, "chunk size %zu", k);
        CHECK(memcmp(l, lab + got, k) == 0, "labels of chunk %zu", chunks);
        CHECK(memcmp(p, pix + got * 3072, k * 3072) == 0, "pixels of chunk %zu", chunks);
        got += k, chunks++;
    }
    CHECK(rc == 0, "end: %s", d.r.err);
    CHECK(got == n && chunks == 3, "got %zu in %zu chunks", got, chunks);
    ds_reader_free(&d);
    fclose(f);
    free(b.buf), free(lab), free(pix);
}

TEST(dataset_unknown_count_and_empty) {
    ds_header h;
    ds_header_cifar10(&h, DS_COUNT_UNKNOWN);
    FILE *f = tmpf();
    ds_writer w;
    ds_write_begin(&w, fileno(f), &h);
    CHECK(ds_write_end(&w) == 0, "end");
    ds_writer_free(&w);
    rewind(f);
    dataset ds;
    char err[STREAM_ERRMAX];
    CHECK(ds_load(f, "mem", &ds, err) == 0, "%s", err);
    CHECK(ds.n == 0, "n=%zu", ds.n);
    ds_free(&ds);
    fclose(f);
}

TEST(dataset_count_mismatch_is_write_error) {
    ds_header h;
    ds_header_cifar10(&h, 5);
    FILE *f = tmpf();
    ds_writer w;
    uint8_t px[3072] = {0};
    ds_write_begin(&w, fileno(f), &h);
    ds_write(&w, 1, px);
    CHECK(ds_write_end(&w) != 0, "a header promising 5 records with 1 written must fail");
    ds_writer_free(&w);
    fclose(f);
}

/* Every proper prefix of a stream is an error, never a shorter dataset. */
TEST(dataset_truncated_everywhere) {
    ds_header h;
    uint8_t *lab, *pix;
    bytes b = make_dataset(DS_CHUNK + 3, &h, &lab, &pix);
    size_t cuts[] = {0, 1, 5, 20, 100, 200, 3000, b.n / 2, b.n - 200, b.n - 20, b.n - 5, b.n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        FILE *f = from_bytes(b.buf, cuts[i]);
        dataset ds;
        char err[STREAM_ERRMAX] = "";
        int rc = ds_load(f, "cut", &ds, err);
        CHECK(rc != 0, "prefix of %zu of %zu bytes accepted", cuts[i], b.n);
        CHECK(strstr(err, "cut: at byte ") != NULL, "message names the offset: %s", err);
        fclose(f);
    }
    free(b.buf), free(lab), free(pix);
}

TEST(dataset_corrupt_pixel_fails_crc) {
    ds_header h;
    uint8_t *lab, *pix;
    bytes b = make_dataset(50, &h, &lab, &pix);
    b.buf[b.n / 2] ^= 0x40; /* inside the pixel payload */
    FILE *f = from_bytes(b.buf, b.n);
    dataset ds;
    char err[STREAM_ERRMAX] = "";
    CHECK(ds_load(f, "bad", &ds, err) != 0, "corrupt stream accepted");
    CHECK(strstr(err, "CRC") != NULL, "message: %s", err);
    fclose(f);
    free(b.buf), free(lab), free(pix);
}

TEST(dataset_trailing_bytes_and_garbage) {
    ds_header h;
    uint8_t *lab, *pix;
    bytes b = make_dataset(3, &h, &lab, &pix);
    char *more = malloc(b.n + 2);
    memcpy(more, b.buf, b.n);
    more[b.n] = (char)0x93; /* the start of an array, cut short */
    FILE *f = from_bytes(more, b.n + 1);
    dataset ds;
    char err[STREAM_ERRMAX] = "";
    CHECK(ds_load(f, "x", &ds, err) != 0, "leftover bytes accepted");
    CHECK(strstr(err, "truncated") || strstr(err, "after the end"), "message: %s", err);
    fclose(f);
    f = from_bytes("hello, world\n", 13);
    CHECK(ds_load(f, "g", &ds, err) != 0, "garbage accepted");
    fclose(f);
    f = from_bytes("", 0);
    CHECK(ds_load(f, "e", &ds, err) != 0 && strstr(err, "empty"), "empty: %s", err);
    fclose(f);
    free(more), free(b.buf), free(lab), free(pix);
}

static checkpoint *sample_ck(int epoch) {
    checkpoint *c = ck_new();
    c->seed = 0xfedcba9876543210ULL;
    c->epoch = epoch;
    c->step = 391 * epoch;
    kv_set_str(&c->arch, "name", "resnet");
    kv_set_int(&c->arch, "depth", 20);
    kv_set_double(&c->arch, "bn_eps", 1e-5);
    kv_set_int(&c->state, "neg", -5);
    int64_t s4[4] = {4, 3, 3, 3}, s1[1] = {4}, s0[1] = {0};
    ck_tensor *w = ck_add(c, "stem.conv.w", DT_F32, 4, s4, false, "param");
    for (size_t i = 0; i < w->numel; i++) ((float *)w->data)[i] = (float)i * 0.5f - 3.0f + (float)epoch;
    ck_tensor *g = ck_add(c, "stem.bn.gamma", DT_F32, 1, s1, true, "param");
    ((float *)g->data)[2] = -1.0f / 3.0f;
    ck_tensor *m = ck_add(c, "rng.state", DT_U64, 1, s1, false, "rng");
    ((uint64_t *)m->data)[3] = UINT64_MAX;
    ck_add(c, "empty", DT_F64, 1, s0, false, "buffer");
    ck_tensor *sc = ck_add(c, "scalar", DT_I64, 0, NULL, false, "opt");
    *(int64_t *)sc->data = -42;
    return c;
}

static bool ck_equal(const checkpoint *a, const checkpoint *b) {
    if (a->seed != b->seed || a->epoch != b->epoch || a->step != b->step || a->nt != b->nt) return false;
    if (a->arch.n != b->arch.n || a->state.n != b->state.n) return false;
    if (strcmp(kv_str(&a->arch, "name", ""), kv_str(&b->arch, "name", "?")) != 0) return false;
    if (kv_int(&a->arch, "depth", 0) != kv_int(&b->arch, "depth", 1)) return false;
    if (kv_double(&a->arch, "bn_eps", 0) != kv_double(&b->arch, "bn_eps", 1)) return false;
    if (kv_int(&a->state, "neg", 0) != kv_int(&b->state, "neg", 1)) return false;
    for (int i = 0; i < a->nt; i++) {
        const ck_tensor *x = &a->t[i], *y = &b->t[i];
        if (strcmp(x->name, y->name) || x->dtype != y->dtype || x->ndim != y->ndim || x->numel != y->numel ||
            x->trainable != y->trainable || strcmp(x->role, y->role))
            return false;
        for (int d = 0; d < x->ndim; d++)
            if (x->shape[d] != y->shape[d]) return false;
        if (memcmp(x->data, y->data, x->numel * dtype_size(x->dtype))) return false;
    }
    return true;
}

static bytes write_cks(int n) {
    FILE *f = tmpf();
    swriter w;
    sw_init(&w, fileno(f));
    for (int e = 0; e < n; e++) {
        checkpoint *c = sample_ck(e);
        ck_write(&w, c);
        ck_free(c);
    }
    if (sw_flush(&w) != 0) abort();
    sw_free(&w);
    bytes b = slurp(f);
    fclose(f);
    return b;
}

TEST(checkpoint_round_trip_every_field) {
    bytes b = write_cks(1);
    FILE *f = from_bytes(b.buf, b.n);
    char err[STREAM_ERRMAX] = "";
    int count = 0;
    checkpoint *c = ck_read(f, "mem", -1, &count, err), *want = sample_ck(0);
    CHECK(c != NULL, "%s", err);
    CHECK(count == 1, "count %d", count);
    if (c) CHECK(ck_equal(c, want), "round trip differs");
    if (c) CHECK(ck_count(c, "param", false) == 112 && ck_count(c, "param", true) == 4, "counts");
    ck_free(c), ck_free(want);
    fclose(f);
    free(b.buf);
}

TEST(checkpoint_several_in_one_stream) {
    bytes b = write_cks(4);
    char err[STREAM_ERRMAX] = "";
    int count = 0;
    for (int which = -1; which < 4; which++) {
        FILE *f = from_bytes(b.buf, b.n);
        checkpoint *c = ck_read(f, "mem", which, &count, err);
        CHECK(c != NULL, "%s", err);
        CHECK(count == 4, "count %d", count);
        if (c) CHECK(c->epoch == (which < 0 ? 3 : which), "picked epoch %lld for %d", (long long)c->epoch, which);
        ck_free(c);
        fclose(f);
    }
    FILE *f = from_bytes(b.buf, b.n);
    CHECK(ck_read(f, "mem", 4, &count, err) == NULL && strstr(err, "holds 4"), "out of range: %s", err);
    fclose(f);
    free(b.buf);
}

TEST(checkpoint_truncated_everywhere) {
    bytes b = write_cks(2);
    for (size_t cut = 0; cut < b.n; cut += (cut < 200 ? 1 : 37)) {
        FILE *f = from_bytes(b.buf, cut);
        char err[STREAM_ERRMAX] = "";
        checkpoint *c = ck_read(f, "cut", -1, NULL, err);
        CHECK(c == NULL, "prefix of %zu of %zu bytes accepted", cut, b.n);
        ck_free(c);
        fclose(f);
    }
    free(b.buf);
}

TEST(checkpoint_wrong_kind_and_version) {
    ds_header h;
    uint8_t *lab, *pix;
    bytes b = make_dataset(2, &h, &lab, &pix);
    FILE *f = from_bytes(b.buf, b.n);
    char err[STREAM_ERRMAX] = "";
    CHECK(ck_read(f, "ds", -1, NULL, err) == NULL && strstr(err, "not a checkpoint"), "kind: %s", err);
    fclose(f);
    free(b.buf), free(lab), free(pix);
    /* a header claiming version 99 */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "kind", 4);
    msgpack_pack_str_with_body(&pk, "checkpoint", 10);
    msgpack_pack_str_with_body(&pk, "version", 7);
    msgpack_pack_int(&pk, 99);
    f = from_bytes(sb.data, sb.size);
    CHECK(ck_read(f, "v", -1, NULL, err) == NULL && strstr(err, "version 99"), "version: %s", err);
    fclose(f);
    msgpack_sbuffer_destroy(&sb);
}

TEST(kvlist_types) {
    kvlist l = {0};
    kv_set_int(&l, "a", 3);
    kv_set_double(&l, "b", 2.5);
    kv_set_str(&l, "c", "x");
    kv_set_int(&l, "a", 4);
    CHECK(l.n == 3, "n=%d", l.n);
    CHECK(kv_int(&l, "a", 0) == 4 && kv_double(&l, "a", 0) == 4.0, "a");
    CHECK(kv_int(&l, "b", 0) == 2 && kv_double(&l, "b", 0) == 2.5, "b");
    CHECK(strcmp(kv_str(&l, "c", "?"), "x") == 0 && kv_int(&l, "c", -1) == -1, "c");
    CHECK(kv_int(&l, "zz", 9) == 9, "default");
    kv_free(&l);
}

/* A map with a key twice is refused (other msgpack readers would keep the other value). */
TEST(duplicate_keys_refused) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str_with_body(&pk, "kind", 4);
    msgpack_pack_str_with_body(&pk, "dataset", 7);
    msgpack_pack_str_with_body(&pk, "version", 7);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_str_with_body(&pk, "kind", 4);
    msgpack_pack_str_with_body(&pk, "checkpoint", 10);
    FILE *f = from_bytes(sb.data, sb.size);
    dataset ds;
    char err[STREAM_ERRMAX] = "";
    CHECK(ds_load(f, "dup", &ds, err) != 0 && strstr(err, "twice"), "message: %s", err);
    fclose(f);
    msgpack_sbuffer_destroy(&sb);
}

TEST(class_name_with_nul_refused) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    msgpack_pack_str_with_body(&pk, "kind", 4);
    msgpack_pack_str_with_body(&pk, "dataset", 7);
    msgpack_pack_str_with_body(&pk, "version", 7);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_str_with_body(&pk, "shape", 5);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_int(&pk, 3), msgpack_pack_int(&pk, 32), msgpack_pack_int(&pk, 32);
    msgpack_pack_str_with_body(&pk, "classes", 7);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_str_with_body(&pk, "a\0b", 3);
    msgpack_pack_str_with_body(&pk, "count", 5);
    msgpack_pack_nil(&pk);
    FILE *f = from_bytes(sb.data, sb.size);
    dataset ds;
    char err[STREAM_ERRMAX] = "";
    CHECK(ds_load(f, "nul", &ds, err) != 0 && strstr(err, "NUL"), "message: %s", err);
    fclose(f);
    msgpack_sbuffer_destroy(&sb);
}

/* Large images: the writer makes smaller chunks (never a chunk-sized allocation of 1,024
 * huge images), and the reader takes them back. */
TEST(dataset_large_images_small_chunks) {
    ds_header h;
    memset(&h, 0, sizeof h);
    h.c = 3, h.h = 512, h.w = 512, h.nclasses = 2, h.count = 5;
    strcpy(h.classes[0], "a");
    strcpy(h.classes[1], "b");
    size_t ib = ds_image_bytes(&h);
    uint8_t *px = malloc(ib);
    FILE *f = tmpf();
    ds_writer w;
    ds_write_begin(&w, fileno(f), &h);
    CHECK(w.chunk * ib <= DS_CHUNK_BYTES && w.chunk >= 1, "chunk %zu", w.chunk);
    for (int i = 0; i < 5; i++) {
        memset(px, i, ib);
        ds_write(&w, (uint8_t)(i % 2), px);
    }
    CHECK(ds_write_end(&w) == 0, "write");
    ds_writer_free(&w);
    rewind(f);
    dataset ds;
    char err[STREAM_ERRMAX] = "";
    CHECK(ds_load(f, "big", &ds, err) == 0, "%s", err);
    CHECK(ds.n == 5 && ds.labels[3] == 1 && ds.pixels[4 * ib + 7] == 4, "content");
    ds_free(&ds);
    fclose(f);
    free(px);
}

int main(void) {
    RUN(dataset_round_trip_chunked);
    RUN(dataset_unknown_count_and_empty);
    RUN(dataset_count_mismatch_is_write_error);
    RUN(dataset_truncated_everywhere);
    RUN(dataset_corrupt_pixel_fails_crc);
    RUN(dataset_trailing_bytes_and_garbage);
    RUN(checkpoint_round_trip_every_field);
    RUN(checkpoint_several_in_one_stream);
    RUN(checkpoint_truncated_everywhere);
    RUN(checkpoint_wrong_kind_and_version);
    RUN(kvlist_types);
    RUN(duplicate_keys_refused);
    RUN(class_name_with_nul_refused);
    RUN(dataset_large_images_small_chunks);
    return DONE();
}
