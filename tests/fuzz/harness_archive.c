/* harness_archive.c: fuzz harness of the CIFAR-10 archive reader (harness.h). The bytes go
 * to cifar_read_archive through a memory file (/proc/self/fd/N): no network, no disk. */
#include "harness.h"

#include <inttypes.h>
#include <stdbool.h>
#include <zlib.h>

#include "cifar.h"
#include "harness_util.h"

typedef struct {
    uint64_t records, sum;
    bool begun;
    uint64_t announced;
    int broken;
} fuzz_sink;

static int on_begin(void *ctx, const cifar_info *info) {
    fuzz_sink *s = ctx;
    if (s->begun) s->broken = FUZZ_BROKEN("archive: begin called twice");
    s->begun = true;
    s->announced = info->split_records;
    for (int i = 0; i < CIFAR_CLASSES; i++)
        if (strnlen(info->classes[i], DS_NAMELEN) >= DS_NAMELEN) s->broken = FUZZ_BROKEN("archive: class %d unterminated", i);
    return 0;
}

static int on_record(void *ctx, uint8_t label, const uint8_t *pixels) {
    fuzz_sink *s = ctx;
    if (!s->begun) s->broken = FUZZ_BROKEN("archive: a record before begin");
    if (label >= CIFAR_CLASSES) s->broken = FUZZ_BROKEN("archive: label %u delivered", label);
    s->sum += pixels[0] + pixels[CIFAR_PIXELS - 1];   /* touches both ends */
    s->records++;
    return 0;
}

/* gzips src into a new buffer (level 1); returns its size, 0 on failure. */
static size_t gzip_bytes(const uint8_t *src, size_t n, uint8_t **out) {
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return 0;
    size_t cap = deflateBound(&z, (uLong)n) + 64;
    *out = malloc(cap);
    if (!*out) { deflateEnd(&z); return 0; }
    z.next_in = (Bytef *)(uintptr_t)src;
    z.avail_in = (uInt)n;
    z.next_out = *out;
    z.avail_out = (uInt)cap;
    int rc = deflate(&z, Z_FINISH);
    size_t got = cap - z.avail_out;
    deflateEnd(&z);
    if (rc != Z_STREAM_END) { free(*out); *out = NULL; return 0; }
    return got;
}

int fuzz_archive(const uint8_t *data, size_t size) {
    fuzz_accepted = 0;
    if (size < 1 || size > (64u << 20)) return 0;
    uint8_t mode = data[0];
    const uint8_t *body = data + 1;
    size_t n = size - 1;
    uint8_t *gz = NULL;
    if (!(mode & 1)) {
        n = gzip_bytes(body, n, &gz);
        if (!gz) return 0;
        body = gz;
    }
    FILE *f = fuzz_file(body, n);
    free(gz);
    if (!f) return 0;
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fileno(f));
    static const char *splits[4] = {NULL, "train", "test", "all"};
    fuzz_sink sink;
    memset(&sink, 0, sizeof sink);
    cifar_read_opts o;
    memset(&o, 0, sizeof o);
    o.split = splits[(mode >> 1) & 3];
    o.allow_unofficial = !(mode & 8);
    o.begin = on_begin;
    o.record = on_record;
    o.ctx = &sink;
    cifar_info info;
    char err[CIFAR_ERRMAX];
    int rc = cifar_read_archive(path, &o, &info, err);
    fclose(f);
    int ret = sink.broken;
    if (rc != 0 && !err[0]) ret = FUZZ_BROKEN("archive: failed (%d) without a message", rc);
    if (rc == 0) {
        /* read whole: every data member present, the split delivered as announced */
        for (int i = 0; i < CIFAR_NDATA; i++)
            if (!info.member[i].present || info.member[i].bytes != info.member[i].records * CIFAR_RECORD)
                ret = FUZZ_BROKEN("archive: accepted with member %d absent or of odd size", i);
        if (o.split && (!sink.begun || sink.records != sink.announced || sink.records != info.split_records))
            ret = FUZZ_BROKEN("archive: %" PRIu64 " records delivered, %" PRIu64 " announced", sink.records, sink.announced);
        if (!o.split && sink.records) ret = FUZZ_BROKEN("archive: records without a split");
        if (strlen(info.md5) != 32) ret = FUZZ_BROKEN("archive: md5 \"%s\"", info.md5);
    }
    for (size_t i = 0; i < info.nentries; i++)
        if (!info.entries[i].name) ret = FUZZ_BROKEN("archive: entry %zu without a name", i);
    cifar_info_free(&info);
    fuzz_accepted = rc == 0 && ret == 0;
    return ret;
}
