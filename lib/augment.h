/* augment.h: from uint8 dataset records to a float batch: the epoch's order, data
 * augmentation, scaling and normalisation.
 *
 * Pixels are always scaled to [0,1] (x/255). Augmentations (all in that [0,1] space, before
 * normalisation, as torchvision and the seed's tf.image pipeline do):
 *   none       the image as it is
 *   crop-flip  the paper's: zero-pad by 4 (40x40), random 32x32 crop, then a horizontal flip
 *              with probability 1/2 (torchvision RandomCrop(32, padding=4) + RandomHorizontalFlip)
 *   seed       the seed's: zero-pad to 40x40, random 32x32 crop, random brightness
 *              (one delta ~ U[-0.5, 0.5) added to the whole image), clip to [0,1]; no flip
 * Crop offsets are uniform in 0..2*pad (pad = 4), i.e. the crop's top-left corner in the
 * padded image. Normalisation: none, or meanstd: (x - mean[c]) / std[c] per channel.
 *
 * An epoch's plan (order and every image's augmentation) is drawn from its own generator
 * rng_seed(seed, AUG_STREAM + epoch), all of it at the start of the epoch, so epoch k is
 * the same whether or not the run was interrupted and resumed (even mid-epoch). */
#ifndef BN_AUGMENT_H
#define BN_AUGMENT_H
#include <stdbool.h>
#include <stdint.h>
#include "checkpoint.h"
#include "dataset.h"
#include "ops.h"
#include "rng.h"

#define AUG_STREAM 0x7472616E00000000ULL   /* "tran": keeps epoch streams apart from init's */
#define NORM_MAXC AUG_NORM_MAXC

typedef enum { AUG_NONE, AUG_CROP_FLIP, AUG_SEED } aug_kind;
const char *aug_name(aug_kind k);
int aug_parse(const char *s);            /* -1 when unknown */

/* aug_param (one image's crop, mirror and brightness) is ops.h's: the backends' batch_fill takes it */
/* Draws one image's augmentation (identity for AUG_NONE, drawing nothing). */
void aug_draw(rng *r, aug_kind k, aug_param *p);

typedef struct norm_cfg {
    bool meanstd;
    int c;                          /* channels of mean/std */
    double mean[NORM_MAXC], std[NORM_MAXC];
} norm_cfg;
/* Per-channel mean and (population) standard deviation of the [0,1]-scaled pixels of d. */
int norm_compute(const dataset *d, norm_cfg *out, char err[256]);
/* Records the normalisation in a checkpoint's state ("normalize", "norm_c", "norm_mean0",
 * "norm_std0", ...) and reads it back (absent = none). -1 with err when malformed. */
void norm_to_state(const norm_cfg *n, kvlist *state);
int norm_from_state(const kvlist *state, norm_cfg *out, char err[256]);

/* An epoch's plan: order[n] a permutation of 0..n-1 (shuffled unless shuffle is false) and
 * par[n] the augmentation of the image at each position. */
void epoch_plan(uint64_t seed, int64_t epoch, size_t n, bool shuffle, aug_kind k, uint32_t *order, aug_param *par);

/* Fills x[n, c, h, w] with the images d[idx[i]], augmented by par[i] (par NULL = none) and
 * normalised by nm. Images of any c, h, w; the crop keeps h x w. */
void batch_fill(float *x, const dataset *d, const uint32_t *idx, const aug_param *par, int n, aug_kind k,
                const norm_cfg *nm);
/* The same from raw records pixels[.][c][h][w] (what ops.h's batch_fill entry computes in a
 * backend's memory): par NULL = as they are; bright: the seed's brightness and clip; mean and
 * inv (NULL = none; min(c, NORM_MAXC) values each: later channels are never normalised):
 * v -> (v - mean) * inv in double. */
void batch_fill_raw(float *x, const uint8_t *pixels, int c, int h, int w, const uint32_t *idx, const aug_param *par,
                    int n, bool bright, const double *mean, const double *inv);
/* batch_fill's per-channel mean and 1/std for min(c, NORM_MAXC) channels (0 and 1 beyond nm's);
 * false when nm normalises nothing (the arrays are then not used). */
bool norm_arrays(const norm_cfg *nm, int c, double *mean, double *inv);
#endif
