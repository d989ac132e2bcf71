/* test_fuzz_replay.c: replays every file of the committed fuzz corpus (tests/fuzz/corpus/TARGET/)
 * through the same harnesses the libFuzzer targets run (tests/fuzz/harness_*.c), built here
 * with the normal compiler and no sanitizer: no input may crash or break a harness property,
 * and each corpus must hold inputs that are read whole as well as inputs that are refused
 * (so that the replay reaches both the success paths and the error paths).
 * The corpus directory is BN_FUZZ_CORPUS, default tests/fuzz/corpus (run from the top). */
#include <dirent.h>
#include <sys/stat.h>

#include "../tests/check.h"
#include "fuzz/harness_archive.c"
#include "fuzz/harness_cli.c"
#include "fuzz/harness_stream.c"

typedef int (*harness_fn)(const uint8_t *, size_t);

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Replays every file of TOP/TARGET; counts files, accepted inputs and failures. */
static void replay(const char *target, harness_fn fn, int *files, int *accepted, int *failed) {
    const char *top = getenv("BN_FUZZ_CORPUS");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", top && *top ? top : "tests/fuzz/corpus", target);
    *files = *accepted = *failed = 0;
    DIR *d = opendir(dir);
    CHECK(d != NULL, "%s: cannot open the corpus directory", dir);
    if (!d) return;
    char **names = NULL;
    size_t n = 0, cap = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            names = realloc(names, cap * sizeof *names);
            if (!names) abort();
        }
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp_names);   /* the same order everywhere */
    for (size_t i = 0; i < n; i++) {
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        FILE *f = fopen(path, "rb");
        struct stat st;
        CHECK(f && fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode), "%s: cannot read", path);
        if (!f) { free(names[i]); continue; }
        uint8_t *buf = malloc((size_t)st.st_size + 1);
        size_t got = fread(buf, 1, (size_t)st.st_size, f);
        fclose(f);
        CHECK(got == (size_t)st.st_size, "%s: short read", path);
        int rc = fn(buf, got);
        CHECK(rc == 0, "%s: the harness found a broken property (see above)", path);
        (*files)++;
        *accepted += fuzz_accepted;
        *failed += rc != 0;
        free(buf);
        free(names[i]);
    }
    free(names);
}

static void replay_target(const char *target, harness_fn fn) {
    int files, accepted, failed;
    replay(target, fn, &files, &accepted, &failed);
    printf("  %s: %d inputs, %d read whole, %d refused, %d broken\n", target, files, accepted, files - accepted, failed);
    CHECK(files > 0, "%s: empty corpus", target);
    CHECK(accepted > 0, "%s: no input of the corpus is accepted (the seeds should be)", target);
    CHECK(accepted < files, "%s: no input of the corpus is refused", target);
}

TEST(replay_dataset) { replay_target("dataset", fuzz_dataset); }
TEST(replay_checkpoint) { replay_target("checkpoint", fuzz_checkpoint); }
TEST(replay_archive) { replay_target("archive", fuzz_archive); }
TEST(replay_cli) { replay_target("cli", fuzz_cli); }

/* The harnesses can fail: a property they check, broken on purpose. */
TEST(harness_catches_a_broken_property) {
    /* a valid dataset must be accepted: the replay would flag a reader that refused it */
    ds_header h;
    ds_header_cifar10(&h, 2);
    int fd = memfd_create("ok", 0);
    ds_writer w;
    ds_write_begin(&w, fd, &h);
    uint8_t px[3072] = {0};
    ds_write(&w, 3, px);
    ds_write(&w, 9, px);
    CHECK(ds_write_end(&w) == 0, "writing");
    ds_writer_free(&w);
    off_t n = lseek(fd, 0, SEEK_END);
    uint8_t *buf = malloc((size_t)n);
    CHECK(pread(fd, buf, (size_t)n, 0) == n, "reading back");
    close(fd);
    CHECK(fuzz_dataset(buf, (size_t)n) == 0 && fuzz_accepted == 1, "a valid dataset is not accepted");
    buf[n - 1] ^= 1;   /* the trailer's CRC: refused, with a message, no property broken */
    CHECK(fuzz_dataset(buf, (size_t)n) == 0 && fuzz_accepted == 0, "a bad CRC is accepted");
    free(buf);
    /* the cli harness compares against strtoll: an int the parser must take */
    const uint8_t in[] = "\000" "42";
    CHECK(fuzz_cli(in, 3) == 0 && fuzz_accepted == 1, "42 is not an integer?");
    const uint8_t junk[] = "\000" "4x2";
    CHECK(fuzz_cli(junk, 4) == 0 && fuzz_accepted == 0, "4x2 taken as an integer");
}

/* mp_extent: frames objects without building them; refuses huge declared containers. */
TEST(mp_extent_frames_and_bounds) {
    size_t size = 0;
    uint64_t entries = 0;
    CHECK(mp_extent("\xdf\xff\xff\xff\xff", 5, &size, &entries) == -1 && entries == 0xffffffffu,
          "a map32 of 2^32-1 entries is not refused (%llu)", (unsigned long long)entries);
    CHECK(mp_extent("\xdd\x00\x10\x00\x01", 5, &size, &entries) == -1 && entries == (1u << 20) + 1,
          "an array of 2^20+1 entries is not refused");
    CHECK(mp_extent("\xdd\x00\x10\x00\x00", 5, &size, &entries) == 0, "an array of 2^20 entries: needs more bytes");
    CHECK(mp_extent("\xc1", 1, &size, &entries) == -1 && entries == 0, "0xc1 is not msgpack");
    CHECK(mp_extent("", 0, &size, &entries) == 0, "nothing: needs more");
    /* {"a": [1, bin(3)], "b": "xy"} then a byte of the next object */
    const char obj[] = "\x82\xa1" "a" "\x92\x01\xc4\x03" "abc" "\xa1" "b" "\xa2" "xy" "\x00";
    size_t whole = sizeof obj - 2;   /* without the next object's byte and the NUL */
    CHECK(mp_extent(obj, sizeof obj - 1, &size, &entries) == 1 && size == whole, "size %zu, expected %zu", size, whole);
    for (size_t cut = 0; cut < whole; cut++)
        CHECK(mp_extent(obj, cut, &size, &entries) == 0, "cut at %zu: not incomplete", cut);
    /* bin32 claiming 4 GiB: incomplete, never allocated */
    CHECK(mp_extent("\xc6\xff\xff\xff\xff\x00", 6, &size, &entries) == 0, "bin32 of 4 GiB with 1 byte");
    /* every fixed-size type */
    const char ints[] = "\xcc\x01\xcd\x00\x01\xce\x00\x00\x00\x01\xcf\x00\x00\x00\x00\x00\x00\x00\x01"
                        "\xca\x00\x00\x00\x00\xcb\x00\x00\x00\x00\x00\x00\x00\x00\xd4\x01\x02\xd8\x01"
                        "0123456789abcdef\xc7\x01\x05z";
    size_t at = 0;
    int n = 0;
    while (at < sizeof ints - 1 && mp_extent(ints + at, sizeof ints - 1 - at, &size, &entries) == 1) at += size, n++;
    CHECK(at == sizeof ints - 1 && n == 9, "walked %zu of %zu bytes in %d objects", at, sizeof ints - 1, n);
}

int main(void) {
    RUN(replay_dataset);
    RUN(replay_checkpoint);
    RUN(replay_archive);
    RUN(replay_cli);
    RUN(harness_catches_a_broken_property);
    RUN(mp_extent_frames_and_bounds);
    return DONE();
}
