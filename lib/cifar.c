/* cifar.c: reading the CIFAR-10 binary release in one streaming pass (cifar.h).
 *
 * The file is read in 1 MiB blocks; each block goes through MD5 (OpenSSL EVP) and zlib's
 * inflate (gzip wrapper: its CRC-32 and length are checked, which libarchive's own gzip
 * filter does not do), and the decompressed bytes are handed to libarchive's tar reader
 * through an archive_read_open callback. Member data comes back in blocks; records are
 * handled in place where whole, and a record that straddles two blocks is put together in
 * a 3073-byte carry buffer. The MD5 runs on a helper thread, one block behind the reads
 * (two input buffers), so that it overlaps the decompression. */
#include "cifar.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define IN_BUF (1u << 20)
#define OUT_BUF (1u << 20)
#define REPLAY_RECORDS 256
#define META_MAX 65536

static const char *data_names[CIFAR_NDATA] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                              "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"};

/* ---- the compressed source: MD5 + inflate ------------------------------------------- */
typedef struct source {
    int fd;
    bool own_fd;
    const char *name;
    EVP_MD_CTX *md;
    z_stream z;
    bool z_ready;
    bool started;       /* the gzip magic has been checked */
    bool member_ended;  /* a gzip member ended; more may follow */
    bool done;          /* every byte read and the last gzip member ended */
    unsigned char *inbuf[2], *in, *out;
    int cur;                /* which inbuf the last read went to */
    uint64_t raw, total, tar;
    /* the MD5 thread: hashes md_len bytes at md_block while md_busy */
    pthread_t md_thread;
    bool md_started, md_busy, md_quit, md_bad;
    pthread_mutex_t md_mu;
    pthread_cond_t md_cv;
    const unsigned char *md_block;
    size_t md_len;
    cifar_progress_fn progress;
    void *pctx;
    bool failed;
    char err[CIFAR_ERRMAX];
} source;

__attribute__((format(printf, 2, 3))) static void src_fail(source *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = snprintf(s->err, sizeof s->err, "%s: ", s->name);
    if (k > 0 && (size_t)k < sizeof s->err) vsnprintf(s->err + k, sizeof s->err - (size_t)k, fmt, ap);
    va_end(ap);
    s->failed = true;
}

static void *md_main(void *ud) {
    source *s = ud;
    pthread_mutex_lock(&s->md_mu);
    for (;;) {
        while (!s->md_busy && !s->md_quit) pthread_cond_wait(&s->md_cv, &s->md_mu);
        if (!s->md_busy) break;
        const unsigned char *p = s->md_block;
        size_t n = s->md_len;
        pthread_mutex_unlock(&s->md_mu);
        bool ok = EVP_DigestUpdate(s->md, p, n) == 1;
        pthread_mutex_lock(&s->md_mu);
        if (!ok) s->md_bad = true;
        s->md_busy = false;
        pthread_cond_broadcast(&s->md_cv);
    }
    pthread_mutex_unlock(&s->md_mu);
    return NULL;
}

/* Waits until the MD5 thread has hashed every block handed to it. */
static void md_wait(source *s) {
    if (!s->md_started) return;
    pthread_mutex_lock(&s->md_mu);
    while (s->md_busy) pthread_cond_wait(&s->md_cv, &s->md_mu);
    pthread_mutex_unlock(&s->md_mu);
}

/* Hands a block to the MD5 thread (hashes it here when there is no thread). The block
 * must stay unchanged until the next md_hand or md_wait returns. */
static void md_hand(source *s, const unsigned char *p, size_t n) {
    if (!s->md_started) {
        if (EVP_DigestUpdate(s->md, p, n) != 1) s->md_bad = true;
        return;
    }
    md_wait(s);
    pthread_mutex_lock(&s->md_mu);
    s->md_block = p;
    s->md_len = n;
    s->md_busy = true;
    pthread_cond_broadcast(&s->md_cv);
    pthread_mutex_unlock(&s->md_mu);
}

/* Reads the next block of the file into the inflate input. Returns bytes, 0 at EOF, -1.
 * Reads alternate between two buffers: the MD5 thread may still hash the previous one. */
static ssize_t src_fill(source *s) {
    ssize_t n;
    s->cur ^= 1;
    s->in = s->inbuf[s->cur];
    do n = read(s->fd, s->in, IN_BUF);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        src_fail(s, "read error: %s", strerror(errno));
        return -1;
    }
    if (n == 0) return 0;
    md_hand(s, s->in, (size_t)n);
    s->raw += (uint64_t)n;
    if (s->progress) s->progress(s->pctx, s->raw, s->total);
    s->z.next_in = s->in;
    s->z.avail_in = (uInt)n;
    return n;
}

/* Decompresses into buf[cap]. Returns bytes (> 0), 0 at the clean end of the gzip data,
 * -1 on error (s->err). */
static ssize_t src_inflate(source *s, unsigned char *buf, size_t cap) {
    if (s->done) return 0;
    if (s->failed) return -1;
    s->z.next_out = buf;
    s->z.avail_out = (uInt)cap;
    while (s->z.avail_out == cap) {
        if (s->z.avail_in == 0) {
            ssize_t n = src_fill(s);
            if (n < 0) return -1;
            if (n == 0) {
                if (s->member_ended) {
                    s->done = true;
                    return 0;
                }
                if (s->raw == 0) src_fail(s, "empty file");
                else src_fail(s, "truncated archive: the gzip data stops after %" PRIu64 " bytes, before its end", s->raw);
                return -1;
            }
        }
        if (!s->started) {
            if (s->z.next_in[0] != 0x1f || (s->z.avail_in > 1 && s->z.next_in[1] != 0x8b)) {
                src_fail(s, "not a gzip file (the release is a .tar.gz)");
                return -1;
            }
            s->started = true;
        }
        if (s->member_ended) {   /* another gzip member follows */
            inflateReset(&s->z);
            s->member_ended = false;
        }
        int rc = inflate(&s->z, Z_NO_FLUSH);
        if (rc == Z_STREAM_END) s->member_ended = true;
        else if (rc == Z_BUF_ERROR && s->z.avail_in == 0) continue;
        else if (rc != Z_OK) {
            src_fail(s, "corrupt gzip data at compressed byte %" PRIu64 " (%s)",
                     s->raw - s->z.avail_in, s->z.msg ? s->z.msg : "inflate failed");
            return -1;
        }
    }
    size_t got = cap - s->z.avail_out;
    s->tar += got;
    return (ssize_t)got;
}

/* Reads and checks the rest of the file after the tar's end (tar padding, the gzip trailer). */
static int src_finish(source *s) {
    ssize_t n;
    while ((n = src_inflate(s, s->out, OUT_BUF)) > 0) {}
    return n < 0 ? -1 : 0;
}

static la_ssize_t on_read(struct archive *a, void *ud, const void **buf) {
    source *s = ud;
    ssize_t n = src_inflate(s, s->out, OUT_BUF);
    if (n < 0) {
        archive_set_error(a, EIO, "%s", s->err);
        return -1;
    }
    *buf = s->out;
    return n;
}

static int src_open(source *s, const char *path, char *err) {
    memset(s, 0, sizeof *s);
    s->fd = -1;
    if (!path || strcmp(path, "-") == 0) {
        s->fd = STDIN_FILENO;
        s->name = "stdin";
    } else {
        s->name = path;
        s->fd = open(path, O_RDONLY | O_CLOEXEC);
        if (s->fd < 0) {
            snprintf(err, CIFAR_ERRMAX, "%s: %s", path, strerror(errno));
            return -1;
        }
        s->own_fd = true;
    }
    struct stat st;
    if (fstat(s->fd, &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            snprintf(err, CIFAR_ERRMAX, "%s: is a directory", s->name);
            return -1;
        }
        if (S_ISREG(st.st_mode)) s->total = (uint64_t)st.st_size;
    }
    s->inbuf[0] = malloc(IN_BUF);
    s->inbuf[1] = malloc(IN_BUF);
    s->out = malloc(OUT_BUF);
    s->md = EVP_MD_CTX_new();
    if (!s->inbuf[0] || !s->inbuf[1] || !s->out || !s->md) {
        snprintf(err, CIFAR_ERRMAX, "out of memory");
        return -1;
    }
    if (!EVP_DigestInit_ex(s->md, EVP_md5(), NULL)) {
        snprintf(err, CIFAR_ERRMAX, "MD5 is not available in this OpenSSL");
        return -1;
    }
    if (inflateInit2(&s->z, 15 + 16) != Z_OK) {
        snprintf(err, CIFAR_ERRMAX, "zlib: cannot start inflate");
        return -1;
    }
    s->z_ready = true;
    if (pthread_mutex_init(&s->md_mu, NULL) == 0) {
        if (pthread_cond_init(&s->md_cv, NULL) == 0) {
            if (pthread_create(&s->md_thread, NULL, md_main, s) == 0) s->md_started = true;
            else pthread_cond_destroy(&s->md_cv);
        }
        if (!s->md_started) pthread_mutex_destroy(&s->md_mu);
    }
    return 0;   /* without the thread, the MD5 is computed inline */
}

static void md_stop(source *s) {
    if (!s->md_started) return;
    pthread_mutex_lock(&s->md_mu);
    s->md_quit = true;
    pthread_cond_broadcast(&s->md_cv);
    pthread_mutex_unlock(&s->md_mu);
    pthread_join(s->md_thread, NULL);
    pthread_cond_destroy(&s->md_cv);
    pthread_mutex_destroy(&s->md_mu);
    s->md_started = false;
}

static void src_close(source *s) {
    md_stop(s);
    if (s->z_ready) inflateEnd(&s->z);
    if (s->md) EVP_MD_CTX_free(s->md);
    if (s->own_fd && s->fd >= 0) close(s->fd);
    free(s->inbuf[0]);
    free(s->inbuf[1]);
    free(s->out);
}

static void md5_hex(const unsigned char *d, char hex[33]) {
    for (int i = 0; i < 16; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

static int src_md5(source *s, char hex[33]) {
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    md_stop(s);   /* every block hashed */
    if (s->md_bad || !EVP_DigestFinal_ex(s->md, d, &len) || len != 16) return -1;
    md5_hex(d, hex);
    return 0;
}

/* ---- the archive reader --------------------------------------------------------------- */
typedef struct reader {
    const cifar_read_opts *o;
    cifar_info *info;
    source s;
    struct archive *a;
    char *err;
    int split[CIFAR_NDATA], nsplit;  /* the split's members in delivery order */
    int turn[CIFAR_NDATA];           /* member -> position in split, or -1 */
    int next;                        /* position of the next member to deliver */
    bool ready;                      /* delivery has begun */
    bool meta_seen;
    bool complete[CIFAR_NDATA], delivered[CIFAR_NDATA];
    int spool_fd;
    uint64_t spool_size, spool_off[CIFAR_NDATA];
    uint8_t carry[CIFAR_RECORD];
    size_t ncarry;
    uint8_t *replay;
} reader;

__attribute__((format(printf, 2, 3))) static int fail(reader *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = snprintf(r->err, CIFAR_ERRMAX, "%s: ", r->s.name);
    if (k > 0 && k < CIFAR_ERRMAX) vsnprintf(r->err + k, CIFAR_ERRMAX - (size_t)k, fmt, ap);
    va_end(ap);
    return -1;
}

/* The message for a libarchive failure: ours when the source failed underneath it. */
static int fail_archive(reader *r, const char *what) {
    if (r->s.failed) {
        snprintf(r->err, CIFAR_ERRMAX, "%s", r->s.err);
        return -1;
    }
    const char *m = archive_error_string(r->a);
    return fail(r, "%s: %s", what, m ? m : "unknown libarchive error");
}

static int write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int spool_open(reader *r) {
    if (r->spool_fd >= 0) return 0;
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    char tmpl[4096];
    if (snprintf(tmpl, sizeof tmpl, "%s/bnonly-cifar-spool.XXXXXX", dir) >= (int)sizeof tmpl)
        return fail(r, "TMPDIR is too long");
    r->spool_fd = mkstemp(tmpl);
    if (r->spool_fd < 0) return fail(r, "cannot create a spool file in %s: %s", dir, strerror(errno));
    unlink(tmpl);
    return 0;
}

static int deliver(reader *r, const uint8_t *recs, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = recs + i * CIFAR_RECORD;
        if (r->o->record && r->o->record(r->o->ctx, p[0], p + 1)) return fail(r, "stopped while writing records");
    }
    return 0;
}

/* Delivers a spooled member. */
static int replay(reader *r, int m) {
    uint64_t off = r->spool_off[m], left = r->info->member[m].bytes;
    if (!r->replay && !(r->replay = malloc((size_t)REPLAY_RECORDS * CIFAR_RECORD))) return fail(r, "out of memory");
    while (left) {
        size_t want = left < (uint64_t)REPLAY_RECORDS * CIFAR_RECORD ? (size_t)left : (size_t)REPLAY_RECORDS * CIFAR_RECORD;
        size_t got = 0;
        while (got < want) {
            ssize_t k = pread(r->spool_fd, r->replay + got, want - got, (off_t)(off + got));
            if (k < 0 && errno == EINTR) continue;
            if (k <= 0) return fail(r, "spool file: read error: %s", k < 0 ? strerror(errno) : "short read");
            got += (size_t)k;
        }
        if (deliver(r, r->replay, want / CIFAR_RECORD)) return -1;
        off += want;
        left -= want;
    }
    return 0;
}

/* Delivers, in order, every member whose turn has come and that has been read whole. */
static int drain(reader *r) {
    while (r->ready && r->next < r->nsplit) {
        int m = r->split[r->next];
        if (!r->complete[m]) break;
        if (!r->delivered[m]) {
            if (replay(r, m)) return -1;
            r->delivered[m] = true;
        }
        r->next++;
    }
    return 0;
}

/* Starts delivery once the split's counts and the class names are final (or at the end). */
static int maybe_ready(reader *r, bool at_end) {
    if (r->ready || r->nsplit == 0) return 0;
    if (!at_end) {
        if (!r->meta_seen) return 0;
        for (int i = 0; i < r->nsplit; i++)
            if (!r->info->member[r->split[i]].present) return 0;
    }
    r->ready = true;
    r->info->split_records = 0;
    for (int i = 0; i < r->nsplit; i++) r->info->split_records += r->info->member[r->split[i]].records;
    if (r->o->begin && r->o->begin(r->o->ctx, r->info)) return fail(r, "stopped before the first record");
    return drain(r);
}

/* Checks labels of n whole records, then delivers them, spools them, or just drops them. */
static int handle_records(reader *r, int m, const uint8_t *recs, size_t n, uint64_t first, int mode) {
    for (size_t i = 0; i < n; i++)
        if (recs[i * CIFAR_RECORD] >= CIFAR_CLASSES)
            return fail(r, "%s%s: record %" PRIu64 " has label %u (labels are 0..9)", CIFAR_DIR, data_names[m],
                        first + i, recs[i * CIFAR_RECORD]);
    if (mode == 1) return deliver(r, recs, n);
    if (mode == 2) {
        if (write_all(r->spool_fd, recs, n * CIFAR_RECORD))
            return fail(r, "spool file: write error: %s", strerror(errno));
        r->spool_size += (uint64_t)n * CIFAR_RECORD;
    }
    return 0;
}

static int read_data_member(reader *r, int m) {
    cifar_member *mem = &r->info->member[m];
    bool direct = r->ready && r->next < r->nsplit && r->split[r->next] == m;
    int mode = direct ? 1 : r->turn[m] >= 0 ? 2 : 0;   /* 1 deliver, 2 spool, 0 check only */
    if (mode == 2) {
        if (spool_open(r)) return -1;
        r->spool_off[m] = r->spool_size;
    }
    uint64_t at = 0, rec = 0;
    r->ncarry = 0;
    for (;;) {
        const void *buf;
        size_t n;
        la_int64_t off;
        int rc = archive_read_data_block(r->a, &buf, &n, &off);
        if (rc == ARCHIVE_EOF) break;
        if (rc != ARCHIVE_OK) return fail_archive(r, CIFAR_DIR "data");
        if (off < 0 || (uint64_t)off != at) return fail(r, "%s%s: sparse or out-of-order data", CIFAR_DIR, data_names[m]);
        at += n;
        if (at > mem->bytes) return fail(r, "%s%s: more data than its size", CIFAR_DIR, data_names[m]);
        const uint8_t *p = buf;
        if (r->ncarry) {
            size_t k = CIFAR_RECORD - r->ncarry < n ? CIFAR_RECORD - r->ncarry : n;
            memcpy(r->carry + r->ncarry, p, k);
            r->ncarry += k;
            p += k;
            n -= k;
            if (r->ncarry == CIFAR_RECORD) {
                if (handle_records(r, m, r->carry, 1, rec, mode)) return -1;
                rec++;
                r->ncarry = 0;
            }
        }
        size_t whole = n / CIFAR_RECORD;
        if (whole) {
            if (handle_records(r, m, p, whole, rec, mode)) return -1;
            rec += whole;
            p += whole * CIFAR_RECORD;
            n -= whole * CIFAR_RECORD;
        }
        if (n) {
            memcpy(r->carry, p, n);
            r->ncarry = n;
        }
    }
    if (at != mem->bytes || rec != mem->records)
        return fail(r, "truncated archive: %s%s stops after %" PRIu64 " of its %" PRIu64 " bytes", CIFAR_DIR,
                    data_names[m], at, mem->bytes);
    r->complete[m] = true;
    if (mode == 1) r->delivered[m] = true;
    return drain(r);
}

/* batches.meta.txt: one class name a line; blank lines ignored; exactly ten. */
static int read_meta(reader *r, struct archive_entry *e) {
    la_int64_t size = archive_entry_size(e);
    if (size < 0 || size > META_MAX) return fail(r, CIFAR_DIR "batches.meta.txt: %lld bytes, more than %d", (long long)size, META_MAX);
    char *buf = malloc((size_t)size + 1);
    if (!buf) return fail(r, "out of memory");
    size_t got = 0;
    while (got < (size_t)size) {
        la_ssize_t k = archive_read_data(r->a, buf + got, (size_t)size - got);
        if (k < 0) {
            free(buf);
            return fail_archive(r, CIFAR_DIR "batches.meta.txt");
        }
        if (k == 0) break;
        got += (size_t)k;
    }
    buf[got] = 0;
    if (got != (size_t)size) {
        free(buf);
        return fail(r, "truncated archive: " CIFAR_DIR "batches.meta.txt stops early");
    }
    char names[CIFAR_CLASSES][DS_NAMELEN];
    int n = 0;
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *end = line + strlen(line);
        while (*line == ' ' || *line == '\t' || *line == '\r') line++;
        while (end > line && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r')) *--end = 0;
        if (!*line) continue;
        if (n == CIFAR_CLASSES) {
            n++;
            break;
        }
        bool printable = true;
        for (const char *c = line; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f) printable = false;
        if (!printable || strlen(line) >= DS_NAMELEN) {
            free(buf);
            return fail(r, CIFAR_DIR "batches.meta.txt: class name %d is not printable or longer than %d bytes", n, DS_NAMELEN - 1);
        }
        strcpy(names[n++], line);
    }
    free(buf);
    if (n != CIFAR_CLASSES)
        return fail(r, CIFAR_DIR "batches.meta.txt: names %s%d classes, expected 10", n > CIFAR_CLASSES ? "more than " : "", n > CIFAR_CLASSES ? CIFAR_CLASSES : n);
    memcpy(r->info->classes, names, sizeof names);
    r->info->have_meta = true;
    r->meta_seen = true;
    return maybe_ready(r, false);
}

static int add_entry(reader *r, const char *name, uint64_t bytes, bool is_dir) {
    cifar_info *in = r->info;
    if ((in->nentries & (in->nentries - 1)) == 0) {   /* grow at powers of two */
        size_t cap = in->nentries ? in->nentries * 2 : 16;
        cifar_entry *e = realloc(in->entries, cap * sizeof *e);
        if (!e) return fail(r, "out of memory");
        in->entries = e;
    }
    cifar_entry *e = &in->entries[in->nentries];
    e->name = strdup(name);
    if (!e->name) return fail(r, "out of memory");
    e->bytes = bytes;
    e->records = -1;
    e->is_dir = is_dir;
    in->nentries++;
    return 0;
}

static int read_entry(reader *r, struct archive_entry *e) {
    const char *name = archive_entry_pathname(e);
    if (!name) return fail(r, "an entry without a name");
    while (name[0] == '.' && name[1] == '/') name += 2;
    la_int64_t size = archive_entry_size_is_set(e) ? archive_entry_size(e) : 0;
    mode_t type = archive_entry_filetype(e);
    if (add_entry(r, name, size > 0 ? (uint64_t)size : 0, type == AE_IFDIR)) return -1;

    int m = -1;
    if (strncmp(name, CIFAR_DIR, strlen(CIFAR_DIR)) == 0)
        for (int i = 0; i < CIFAR_NDATA; i++)
            if (strcmp(name + strlen(CIFAR_DIR), data_names[i]) == 0) m = i;
    if (m >= 0) {
        cifar_member *mem = &r->info->member[m];
        if (type != AE_IFREG || archive_entry_hardlink(e)) return fail(r, "%s: not a regular file", name);
        if (mem->present) return fail(r, "%s appears twice", name);
        if (!archive_entry_size_is_set(e) || size < 0) return fail(r, "%s: no size", name);
        if (size % CIFAR_RECORD)
            return fail(r, "%s: member of wrong size: %lld bytes is not a whole number of %d-byte records", name,
                        (long long)size, CIFAR_RECORD);
        mem->present = true;
        mem->bytes = (uint64_t)size;
        mem->records = (uint64_t)size / CIFAR_RECORD;
        r->info->entries[r->info->nentries - 1].records = (int64_t)mem->records;
        if (maybe_ready(r, false)) return -1;
        return read_data_member(r, m);
    }
    if (strcmp(name, CIFAR_DIR "batches.meta.txt") == 0 && type == AE_IFREG) {
        if (r->meta_seen) return fail(r, "%s appears twice", name);
        return read_meta(r, e);
    }
    if (archive_read_data_skip(r->a) != ARCHIVE_OK) return fail_archive(r, name);
    return 0;
}

void cifar_info_free(cifar_info *info) {
    if (!info) return;
    for (size_t i = 0; i < info->nentries; i++) free(info->entries[i].name);
    free(info->entries);
    info->entries = NULL;
    info->nentries = 0;
}

static int read_all(reader *r) {
    cifar_info *info = r->info;
    int rc = archive_read_open(r->a, &r->s, NULL, on_read, NULL);
    if (rc != ARCHIVE_OK) return fail_archive(r, "not a tar archive inside the gzip data");
    for (;;) {
        struct archive_entry *e;
        rc = archive_read_next_header(r->a, &e);
        if (rc == ARCHIVE_EOF) break;
        if (rc < ARCHIVE_WARN) {
            if (info->nentries == 0 && !r->s.failed) return fail_archive(r, "not a tar archive inside the gzip data");
            return fail_archive(r, "bad tar archive");
        }
        if (read_entry(r, e)) return -1;
    }
    if (src_finish(&r->s)) return fail_archive(r, "after the tar data");
    for (int i = 0; i < CIFAR_NDATA; i++)
        if (!info->member[i].present) return fail(r, "missing member %s%s", CIFAR_DIR, data_names[i]);
    if (src_md5(&r->s, info->md5)) return fail(r, "MD5 failed");
    info->official = strcmp(info->md5, CIFAR_MD5) == 0;
    info->file_bytes = r->s.raw;
    info->tar_bytes = r->s.tar;
    if (!info->official && !r->o->allow_unofficial) {
        fail(r, "checksum differs from the official CIFAR-10 release (md5 %s, official %s)", info->md5, CIFAR_MD5);
        return CIFAR_UNOFFICIAL;
    }
    if (maybe_ready(r, true) || drain(r)) return -1;
    if (r->next != r->nsplit) return fail(r, "internal error: split not delivered whole");
    return 0;
}

int cifar_read_archive(const char *path, const cifar_read_opts *opts, cifar_info *info, char err[CIFAR_ERRMAX]) {
    memset(info, 0, sizeof *info);
    for (int i = 0; i < CIFAR_NDATA; i++) info->member[i].name = data_names[i];
    ds_header h;
    ds_header_cifar10(&h, 0);
    for (int i = 0; i < CIFAR_CLASSES; i++) snprintf(info->classes[i], DS_NAMELEN, "%s", h.classes[i]);
    err[0] = 0;

    reader r;
    memset(&r, 0, sizeof r);
    r.o = opts;
    r.info = info;
    r.err = err;
    r.spool_fd = -1;
    for (int i = 0; i < CIFAR_NDATA; i++) r.turn[i] = -1;
    if (opts->split && strcmp(opts->split, "train") == 0) {
        for (int i = 0; i < 5; i++) r.split[r.nsplit++] = i;
    } else if (opts->split && strcmp(opts->split, "test") == 0) {
        r.split[r.nsplit++] = 5;
    } else if (opts->split && strcmp(opts->split, "all") == 0) {
        for (int i = 0; i < CIFAR_NDATA; i++) r.split[r.nsplit++] = i;
    } else if (opts->split) {
        snprintf(err, CIFAR_ERRMAX, "unknown split '%s' (train, test or all)", opts->split);
        return -1;
    }
    for (int i = 0; i < r.nsplit; i++) r.turn[r.split[i]] = i;

    int rc = -1;
    if (src_open(&r.s, path, err) == 0) {
        r.s.progress = opts->progress;
        r.s.pctx = opts->ctx;
        r.a = archive_read_new();
        if (!r.a) snprintf(err, CIFAR_ERRMAX, "out of memory");
        else if (archive_read_support_format_tar(r.a) != ARCHIVE_OK) fail_archive(&r, "libarchive");
        else rc = read_all(&r);
        if (r.a) archive_read_free(r.a);
    }
    src_close(&r.s);
    if (r.spool_fd >= 0) close(r.spool_fd);
    free(r.replay);
    return rc;
}

int cifar_md5_file(const char *path, char hex[33], char err[CIFAR_ERRMAX]) {
    source s;
    int rc = -1;
    if (src_open(&s, path, err) == 0) {
        ssize_t n;
        while ((n = src_fill(&s)) > 0) {}
        if (n < 0) snprintf(err, CIFAR_ERRMAX, "%s", s.err);
        else if (src_md5(&s, hex)) snprintf(err, CIFAR_ERRMAX, "%s: MD5 failed", s.name);
        else rc = 0;
    }
    src_close(&s);
    return rc;
}
