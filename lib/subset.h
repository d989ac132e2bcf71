/* subset.h: the selection logic of cifar-subset, apart from its I/O: class lists by name
 * or index, per-class reservoir sampling, and choosing n of m positions at random. */
#ifndef BN_SUBSET_H
#define BN_SUBSET_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataset.h"
#include "rng.h"

/* Parses a class list such as "cat,dog" or "3,5" against the header's class names. A token
 * that is a class name means that class; otherwise a decimal index below nclasses. Fills
 * map[label] with the class's position in the list (0..k-1) or -1 for classes not listed.
 * Returns k, or -1 with a message in err (unknown name, index out of range, duplicate,
 * empty entry). */
int subset_classes(const char *list, const ds_header *h, int map[DS_MAXCLASS], char *err, size_t errcap);

/* Marks n distinct positions of [0, m) chosen uniformly at random (Floyd's algorithm) in
 * bits, a zeroed array of (m + 7) / 8 bytes. Requires n <= m. */
void subset_choose(rng *r, uint64_t m, uint64_t n, uint8_t *bits);
static inline bool subset_bit(const uint8_t *bits, uint64_t i) { return (bits[i >> 3] >> (i & 7)) & 1; }

/* Per-class reservoir sampling: keeps a uniform random sample of at most k records of each
 * class (the first k as they come, then Algorithm R), with their positions in the input so
 * that the sample can be given back in input order. Memory: k records per class seen. */
typedef struct res_class {
    uint64_t seen;      /* records of this class offered */
    size_t n, cap;      /* records kept, slots allocated (grows to k) */
    uint64_t *index;    /* input position of each kept record */
    uint8_t *labels;
    uint8_t *pixels;
} res_class;

typedef struct reservoir {
    size_t k, ib;       /* records per class, bytes per image */
    res_class cls[DS_MAXCLASS];
} reservoir;

typedef struct res_entry {
    uint64_t index;     /* input position */
    int cls;            /* class (reservoir bucket) */
    size_t slot;        /* position in the bucket */
} res_entry;

void res_init(reservoir *rs, size_t k, size_t image_bytes);
/* Offers a record of class cls (the bucket) at input position index. Returns 0, or -1 when
 * out of memory. */
int res_add(reservoir *rs, rng *r, int cls, uint64_t index, uint8_t label, const uint8_t *pixels);
/* Every kept record, sorted by input position; *n gets the count. Returns NULL when out of
 * memory (or when nothing was kept, with *n = 0). The caller frees the array. */
res_entry *res_sorted(const reservoir *rs, size_t *n);
static inline const uint8_t *res_pixels(const reservoir *rs, const res_entry *e) {
    return rs->cls[e->cls].pixels + e->slot * rs->ib;
}
static inline uint8_t res_label(const reservoir *rs, const res_entry *e) { return rs->cls[e->cls].labels[e->slot]; }
void res_free(reservoir *rs);
#endif
