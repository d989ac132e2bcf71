/* harness_util.h: small helpers of the fuzz harnesses (included by each harness_*.c). */
#ifndef BN_FUZZ_HARNESS_UTIL_H
#define BN_FUZZ_HARNESS_UTIL_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* A FILE reading the bytes (an anonymous memory file: fmemopen refuses size 0). */
static inline FILE *fuzz_file(const uint8_t *data, size_t size) {
    int fd = memfd_create("fuzz", MFD_CLOEXEC);
    if (fd < 0) return NULL;
    size_t done = 0;
    while (done < size) {
        ssize_t k = write(fd, data + done, size - done);
        if (k <= 0) { close(fd); return NULL; }
        done += (size_t)k;
    }
    if (lseek(fd, 0, SEEK_SET) != 0) { close(fd); return NULL; }
    FILE *f = fdopen(fd, "rb");
    if (!f) close(fd);
    return f;
}

/* Set by each harness: 1 when the last input was read whole (accepted), 0 when it was refused
 * (with a message). The replay test checks that every corpus reaches both outcomes. */
static int fuzz_accepted;

/* Reports a broken property; returns -1. */
#define FUZZ_BROKEN(...) (fprintf(stderr, "fuzz harness: "), fprintf(stderr, __VA_ARGS__), fputc('\n', stderr), -1)
#endif
