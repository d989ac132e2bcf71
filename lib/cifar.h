/* cifar.h: the CIFAR-10 binary release (cifar-10-binary.tar.gz): reading it in one streaming
 * pass (MD5 of the file, gzip with its CRC checked, tar, structural checks, the records of
 * a split in order) and fetching it into a cache. */
#ifndef BN_CIFAR_H
#define BN_CIFAR_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataset.h"

#define CIFAR_URL "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
#define CIFAR_MD5 "c32a1d4ab5d03f1284b67883e8d87530"
#define CIFAR_ARCHIVE_NAME "cifar-10-binary.tar.gz"
#define CIFAR_DIR "cifar-10-batches-bin/"
#define CIFAR_RECORD 3073            /* 1 label byte + 3072 pixel bytes */
#define CIFAR_PIXELS 3072
#define CIFAR_CLASSES 10
#define CIFAR_OFFICIAL_RECORDS 10000 /* per data file in the official release */
#define CIFAR_NDATA 6                /* data_batch_1..5, test_batch */
#define CIFAR_ERRMAX 512

/* Return values of cifar_read_archive besides 0 and -1. */
#define CIFAR_UNOFFICIAL 2           /* read, but the MD5 differs and unofficial was not allowed */

/* A data member: index 0..4 are data_batch_1..5.bin, 5 is test_batch.bin. */
typedef struct cifar_member {
    const char *name;   /* "data_batch_1.bin", ... (without the directory) */
    bool present;
    uint64_t bytes, records;
} cifar_member;

/* Every entry of the archive, in archive order (for listings). */
typedef struct cifar_entry {
    char *name;
    uint64_t bytes;
    int64_t records;    /* data members: records; other entries: -1 */
    bool is_dir;
} cifar_entry;

typedef struct cifar_info {
    cifar_member member[CIFAR_NDATA];
    cifar_entry *entries;
    size_t nentries;
    bool have_meta;                            /* batches.meta.txt was found */
    char classes[CIFAR_CLASSES][DS_NAMELEN];   /* its names, else the standard ten */
    uint64_t split_records;                    /* records of the split read (0 without one) */
    uint64_t file_bytes;                       /* compressed bytes read (the whole file) */
    uint64_t tar_bytes;                        /* decompressed bytes */
    char md5[33];                              /* hex MD5 of the file */
    bool official;                             /* md5 equals CIFAR_MD5 */
} cifar_info;

void cifar_info_free(cifar_info *info);

/* Called once before the first record of the split, when the split's record count
 * (info->split_records) and the class names (info->classes) are final. */
typedef int (*cifar_begin_fn)(void *ctx, const cifar_info *info);
/* Called per record of the split, in order (train: data_batch_1..5, test: test_batch);
 * pixels point at CIFAR_PIXELS bytes valid only during the call. Nonzero stops reading. */
typedef int (*cifar_record_fn)(void *ctx, uint8_t label, const uint8_t *pixels);
/* Progress: bytes of the file read so far, and its size (0 when unknown). */
typedef void (*cifar_progress_fn)(void *ctx, uint64_t done, uint64_t total);

typedef struct cifar_read_opts {
    const char *split;          /* "train", "test", "all" (train then test, one pass), or
                                 * NULL: no records delivered */
    bool allow_unofficial;      /* accept an archive whose MD5 is not the official one */
    cifar_begin_fn begin;
    cifar_record_fn record;
    cifar_progress_fn progress;
    void *ctx;
} cifar_read_opts;

/* Reads the archive at path ("-": stdin) once: the file's MD5 as its bytes go by, gzip
 * (CRC-32 and length checked), tar; checks that the six data members are present, regular,
 * a multiple of 3073 bytes, with labels 0..9 (all six, whatever the split), and that
 * batches.meta.txt, when present, names ten classes. Memory stays bounded: member data is
 * processed in blocks, and the split's members that come before their turn in the tar are
 * spooled to an unlinked temporary file (in $TMPDIR) until it comes; the first record is
 * delivered once all of the split's members and batches.meta.txt (or the end) have been seen.
 * Returns 0; -1 with err set (the path and what is wrong); or CIFAR_UNOFFICIAL with err
 * set, when everything was read but the MD5 is not the official one and allow_unofficial
 * is false (records may already have been delivered: the caller discards its output).
 * info is filled as far as it got in every case; free it with cifar_info_free. */
int cifar_read_archive(const char *path, const cifar_read_opts *opts, cifar_info *info,
                       char err[CIFAR_ERRMAX]);

/* The hex MD5 of a file ("-": stdin) into hex[33]. Returns 0 or -1 with err set. */
int cifar_md5_file(const char *path, char hex[33], char err[CIFAR_ERRMAX]);

/* Makes a local path for url. A plain path (no "scheme://") is returned as it is, after
 * checking it can be read. Otherwise the archive is looked up in cache_dir (created when
 * missing): the official URL under CIFAR_ARCHIVE_NAME, another URL under a name made of a
 * hash of the URL and its last path component. When absent it is downloaded with libcurl
 * (any URL libcurl takes) to a temporary name in cache_dir, its MD5 computed as it comes,
 * and renamed into place when complete -- only when its MD5 is the official one, unless
 * allow_unofficial. *downloaded says whether it was. Returns 0, -1 with err set (curl's
 * message for a failed download), or CIFAR_UNOFFICIAL with err set (nothing is cached). */
int cifar_fetch_url(const char *url, const char *cache_dir, bool allow_unofficial,
                    cifar_progress_fn progress, void *pctx, char *path_out, size_t cap,
                    bool *downloaded, char err[CIFAR_ERRMAX]);

/* The default cache directory: ${XDG_CACHE_HOME:-$HOME/.cache}/bnonly, into out[cap].
 * Returns 0, or -1 when neither variable is set. */
int cifar_default_cache_dir(char *out, size_t cap);
#endif
