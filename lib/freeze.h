/* freeze.h: trainable regimes, i.e. which parameters of a checkpoint training may change.
 *
 * Regimes (freeze_regime) set every "param" tensor's trainable flag from scratch:
 *   all         every parameter
 *   none        nothing
 *   bn          BN gamma and beta (names ending in ".gamma" / ".beta")
 *   gamma, beta one of the two
 *   output      the final linear layer ("fc.w", "fc.b")
 *   bn+output   both
 *   random-k    the paper's control: in every conv weight [cout, cin, k, k], k random
 *               elements per output channel (2 by default, as many as BN-only trains per
 *               channel), nothing else. Because a tensor has one trainable flag, the chosen
 *               elements are a u8 tensor "<name>.mask" (same shape, role "mask", 1 = train);
 *               the tensor itself is marked trainable. Training must honour the mask: update
 *               only masked elements (gradient, momentum and weight decay alike).
 * Every regime first removes the masks of an earlier random-k. Globs (cli_glob) then add or
 * remove tensors by name; making a masked tensor trainable by a glob sets its mask to all
 * ones. */
#ifndef BN_FREEZE_H
#define BN_FREEZE_H
#include <stdbool.h>
#include <stdint.h>
#include "checkpoint.h"

/* The regime names, NULL-terminated (for help texts and error messages). */
extern const char *const freeze_regimes[];

/* Applies a regime; k and seed matter for random-k only. 0, or -1 with err (unknown regime,
 * k < 1). */
int freeze_regime(checkpoint *c, const char *regime, int k, uint64_t seed, char err[256]);
/* Marks every "param" tensor whose name matches pattern trainable (or frozen); returns how
 * many matched. */
int freeze_glob(checkpoint *c, const char *pattern, bool trainable);

/* Parameter elements in "param" tensors, and how many of them training changes (masked
 * tensors count their mask's nonzero bytes). */
uint64_t freeze_count_total(const checkpoint *c);
uint64_t freeze_count_trainable(const checkpoint *c);
/* The mask of tensor t, or NULL when t has none (or one of the wrong type or size). */
ck_tensor *freeze_mask_of(const checkpoint *c, const ck_tensor *t);
#endif
