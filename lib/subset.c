/* subset.c: class lists, per-class reservoir sampling, n of m at random (subset.h). */
#include "subset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int find_class(const ds_header *h, const char *tok) {
    for (int i = 0; i < h->nclasses; i++)
        if (strcmp(h->classes[i], tok) == 0) return i;
    if (!*tok || strspn(tok, "0123456789") != strlen(tok) || strlen(tok) > 6) return -1;
    int v = atoi(tok);
    return v < h->nclasses ? v : -1;
}

int subset_classes(const char *list, const ds_header *h, int map[DS_MAXCLASS], char *err, size_t errcap) {
    int k = 0;
    for (int i = 0; i < DS_MAXCLASS; i++) map[i] = -1;
    const char *p = list;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char tok[DS_NAMELEN + 8];
        if (len == 0) {
            snprintf(err, errcap, "--classes: empty entry in '%s'", list);
            return -1;
        }
        if (len >= sizeof tok) {
            snprintf(err, errcap, "--classes: entry '%.*s...' is too long", 16, p);
            return -1;
        }
        memcpy(tok, p, len);
        tok[len] = 0;
        int c = find_class(h, tok);
        if (c < 0) {
            snprintf(err, errcap, "--classes: '%s' is neither a class name of this dataset nor an index below %d",
                     tok, h->nclasses);
            return -1;
        }
        if (map[c] >= 0) {
            snprintf(err, errcap, "--classes: class '%s' is listed twice", h->classes[c]);
            return -1;
        }
        map[c] = k++;
        if (!end) break;
        p = end + 1;
    }
    return k;
}

void subset_choose(rng *r, uint64_t m, uint64_t n, uint8_t *bits) {
    /* Floyd: for j in m-n .. m-1, pick t in [0, j]; take t unless already taken, then j. */
    for (uint64_t j = m - n; j < m; j++) {
        uint64_t t = rng_below(r, j + 1);
        if (subset_bit(bits, t)) t = j;
        bits[t >> 3] |= (uint8_t)(1u << (t & 7));
    }
}

void res_init(reservoir *rs, size_t k, size_t image_bytes) {
    memset(rs, 0, sizeof *rs);
    rs->k = k;
    rs->ib = image_bytes;
}

static int grow(reservoir *rs, res_class *c) {
    size_t cap = c->cap ? c->cap * 2 : 64;
    if (cap > rs->k) cap = rs->k;
    uint64_t *ni = realloc(c->index, cap * sizeof *ni);
    if (ni) c->index = ni;
    uint8_t *nl = realloc(c->labels, cap);
    if (nl) c->labels = nl;
    uint8_t *np = realloc(c->pixels, cap * rs->ib);
    if (np) c->pixels = np;
    if (!ni || !nl || !np) return -1;
    c->cap = cap;
    return 0;
}

int res_add(reservoir *rs, rng *r, int cls, uint64_t index, uint8_t label, const uint8_t *pixels) {
    res_class *c = &rs->cls[cls];
    size_t slot;
    c->seen++;
    if (rs->k == 0) return 0;
    if (c->n < rs->k) {
        if (c->n == c->cap && grow(rs, c) != 0) return -1;
        slot = c->n++;
    } else {
        uint64_t j = rng_below(r, c->seen);
        if (j >= rs->k) return 0;
        slot = (size_t)j;
    }
    c->index[slot] = index;
    c->labels[slot] = label;
    memcpy(c->pixels + slot * rs->ib, pixels, rs->ib);
    return 0;
}

static int by_index(const void *a, const void *b) {
    uint64_t x = ((const res_entry *)a)->index, y = ((const res_entry *)b)->index;
    return (x > y) - (x < y);
}

res_entry *res_sorted(const reservoir *rs, size_t *n) {
    size_t total = 0;
    for (int c = 0; c < DS_MAXCLASS; c++) total += rs->cls[c].n;
    *n = 0;
    if (total == 0) return NULL;
    res_entry *e = malloc(total * sizeof *e);
    if (!e) return NULL;
    for (int c = 0; c < DS_MAXCLASS; c++)
        for (size_t s = 0; s < rs->cls[c].n; s++) e[(*n)++] = (res_entry){rs->cls[c].index[s], c, s};
    qsort(e, total, sizeof *e, by_index);
    return e;
}

void res_free(reservoir *rs) {
    for (int c = 0; c < DS_MAXCLASS; c++) {
        free(rs->cls[c].index);
        free(rs->cls[c].labels);
        free(rs->cls[c].pixels);
    }
    memset(rs->cls, 0, sizeof rs->cls);
}
