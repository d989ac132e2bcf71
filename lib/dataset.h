/* dataset.h: dataset streams (FORMAT.md): a header, chunks of records (label + pixels,
 * uint8, C order CHW), a trailer. Reading and writing keep one chunk in memory. */
#ifndef BN_DATASET_H
#define BN_DATASET_H
#include "stream.h"

#define DS_VERSION 1
#define DS_CHUNK 1024          /* records per chunk written (fewer when images are large: */
#define DS_CHUNK_BYTES (4u << 20) /* a chunk's pixels stay under 4 MiB, or one image) */
#define DS_MAXCLASS 256
#define DS_NAMELEN 64
#define DS_COUNT_UNKNOWN UINT64_MAX

typedef struct ds_header {
    int c, h, w;                             /* image shape; CIFAR-10: 3, 32, 32 */
    int nclasses;
    char classes[DS_MAXCLASS][DS_NAMELEN];
    uint64_t count;                          /* records, or DS_COUNT_UNKNOWN (written as nil) */
    char source[256];                        /* free text: where the records came from */
} ds_header;

static inline size_t ds_image_bytes(const ds_header *h) { return (size_t)h->c * h->h * h->w; }
/* The CIFAR-10 header: 3x32x32 and its ten class names. */
void ds_header_cifar10(ds_header *h, uint64_t count);

typedef struct ds_writer {
    swriter w;
    ds_header h;
    uint64_t written;
    uint8_t *labels, *pixels;   /* the chunk being filled */
    size_t n;
    size_t chunk;               /* records per chunk: DS_CHUNK, fewer for big images */
} ds_writer;

/* Starts a stream on fd and writes the header. */
void ds_write_begin(ds_writer *d, int fd, const ds_header *h);
/* Adds one record (pixels: ds_image_bytes). */
void ds_write(ds_writer *d, uint8_t label, const uint8_t *pixels);
/* Writes the last chunk and the trailer and flushes. Returns 0, or -1 with errno set
 * (write error) or EINVAL (the header's count differs from the records written). */
int ds_write_end(ds_writer *d);
void ds_writer_free(ds_writer *d);

typedef struct ds_reader {
    sreader r;
    ds_header h;
    uint64_t read;              /* records delivered so far */
    int64_t version;
} ds_reader;

/* Reads the header. Returns 0, or -1 with r.err set. */
int ds_read_begin(ds_reader *d, FILE *f, const char *name);
/* Next chunk: 1 with labels and pixels pointing at n records (valid until the next call),
 * 0 at the trailer (checked: counts and CRC; and no second section may follow), -1 on
 * error (d->r.err). Labels are checked to be < nclasses. */
int ds_read_chunk(ds_reader *d, const uint8_t **labels, const uint8_t **pixels, size_t *n);
void ds_reader_free(ds_reader *d);

/* A whole dataset in memory. */
typedef struct dataset {
    ds_header h;
    size_t n;
    uint8_t *labels;
    uint8_t *pixels;   /* n times ds_image_bytes */
} dataset;
/* Loads every record. Returns 0, or -1 with err filled. */
int ds_load(FILE *f, const char *name, dataset *out, char err[STREAM_ERRMAX]);
void ds_free(dataset *d);
#endif
