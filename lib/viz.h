/* viz.h: what filter-viz draws with, apart from gnuplot itself: grid layouts for N tiles,
 * per-tile normalisation of floats to [0,255] grey levels, composition of tiles (grey or
 * planar RGB, magnified) into one RGB canvas, histograms with a shared bin range, a check
 * of a PNG file's signature and size, and the plumbing that finds and runs gnuplot. */
#ifndef BN_VIZ_H
#define BN_VIZ_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The square-ish grid for n tiles: cols = ceil(sqrt(n)), rows = ceil(n / cols)
 * (16 -> 4x4, 64 -> 8x8, 10 -> 3 rows of 4). n <= 0 gives 0x0. */
void viz_grid(int n, int *rows, int *cols);

/* Maps the finite values of x[0..n) linearly from [min, max] onto [0, 255] (rounded).
 * A constant tile (max == min) and non-finite values give 0: no division by zero.
 * Returns the number of non-finite values. */
size_t viz_normalize(const float *x, size_t n, uint8_t *out);

/* A mosaic: rows x cols tiles of tw x th source pixels, each magnified by `scale`, `gap`
 * canvas pixels between tiles and around the edge. */
typedef struct viz_layout {
    int rows, cols, tw, th, scale, gap;
    int w, h;                 /* canvas size in pixels */
} viz_layout;
/* Picks the smallest scale that makes a tile at least min_px canvas pixels on its larger
 * side (scale >= 1). Returns 0, or -1 when the canvas would be absurdly large or a
 * dimension is not positive. */
int viz_layout_init(viz_layout *l, int rows, int cols, int tw, int th, int gap, int min_px);
/* Top-left canvas pixel of tile (r, c); the centre is at + (tw*scale-1)/2.0. */
void viz_tile_origin(const viz_layout *l, int r, int c, int *x, int *y);

/* An RGB image, 3 bytes per pixel, row 0 at the top. */
typedef struct viz_canvas {
    int w, h;
    uint8_t *rgb;
} viz_canvas;
/* Returns 0, or -1 when out of memory. Every pixel starts as colour bg (0xRRGGBB). */
int viz_canvas_init(viz_canvas *c, int w, int h, uint32_t bg);
/* The colour between tiles: a pale blue that grey tiles cannot be mistaken for. */
#define VIZ_BG 0xc0d0e8u
void viz_canvas_free(viz_canvas *c);
/* Copies tile (r, c) of layout l into the canvas, magnified: px holds channels (1 = grey,
 * 3 = RGB) planes of th x tw bytes each, C order (CHW, as datasets and conv weights are). */
void viz_put_tile(viz_canvas *cv, const viz_layout *l, int r, int c, const uint8_t *px, int channels);

/* Nearest-neighbour resampling of a planar image (ch planes of sh x sw bytes) to dh x dw. */
void viz_resize(const uint8_t *src, int sw, int sh, int ch, uint8_t *dst, int dw, int dh);

/* Widens [*lo, *hi] to hold the finite values of x (start with lo = +inf, hi = -inf). */
void viz_range(const float *x, size_t n, double *lo, double *hi);
/* Makes a usable bin range: non-finite or empty -> [0, 1]; lo == hi -> [lo-0.5, hi+0.5]. */
void viz_range_fix(double *lo, double *hi);
/* counts[nbins] (overwritten) of the finite values in [lo, hi]: bin i holds
 * [lo + i*width, lo + (i+1)*width), the last bin also hi. Returns how many values were left
 * out (non-finite or outside the range). */
size_t viz_hist(const float *x, size_t n, double lo, double hi, int nbins, uint64_t *counts);

/* Reads a PNG's width and height from its first bytes (8-byte signature, IHDR chunk).
 * Returns 0, or -1 when buf is not a PNG. */
int viz_png_dims(const uint8_t *buf, size_t n, int *w, int *h);

/* The gnuplot program: $BN_GNUPLOT when set (a path, or a name searched in PATH), else
 * "gnuplot" searched in PATH. Returns 0 with the path in out, or -1 with why filled. */
int viz_gnuplot_find(char *out, size_t outlen, char *why, size_t whylen);
/* Writes s to f as a gnuplot single-quoted string ('' for a quote). */
void viz_gp_quote(FILE *f, const char *s);
/* Runs gnuplot on a script (fed on its standard input); gnuplot's messages go to our
 * stderr. Returns gnuplot's exit status, or -1 when it could not be started. */
int viz_gnuplot_run(const char *gnuplot, const char *script, size_t len);
#endif
