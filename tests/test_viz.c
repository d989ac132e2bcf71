/* test_viz: the drawing arithmetic of filter-viz without gnuplot: grid shapes, per-tile
 * normalisation, layouts, tile composition (grey, planar RGB, magnified), resampling,
 * histograms and the PNG header check. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "viz.h"

TEST(grid_shapes) {
    static const int n[] = {1, 2, 3, 4, 5, 7, 9, 10, 16, 17, 64, 65, 256};
    static const int want_r[] = {1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 8, 8, 16};
    static const int want_c[] = {1, 2, 2, 2, 3, 3, 3, 4, 4, 5, 8, 9, 16};
    for (size_t i = 0; i < sizeof n / sizeof *n; i++) {
        int r, c;
        viz_grid(n[i], &r, &c);
        CHECK(r == want_r[i] && c == want_c[i], "n=%d: %dx%d, wanted %dx%d", n[i], r, c, want_r[i], want_c[i]);
        CHECK(r * c >= n[i] && (r - 1) * c < n[i], "n=%d: %dx%d has a wasted row", n[i], r, c);
    }
    int r = 9, c = 9;
    viz_grid(0, &r, &c);
    CHECK(r == 0 && c == 0, "n=0: %dx%d", r, c);
}

TEST(normalize_range) {
    float x[5] = {-2, 0, 1, 2, 0.5f};
    uint8_t o[5];
    CHECK(viz_normalize(x, 5, o) == 0, "no non-finite values");
    CHECK(o[0] == 0 && o[3] == 255, "min -> 0, max -> 255: %d %d", o[0], o[3]);
    CHECK(o[1] == 128, "0 in [-2,2] -> 127.5 rounds to 128: %d", o[1]);
    CHECK(o[2] == 191, "1 in [-2,2] -> 191.25 -> 191: %d", o[2]);
    CHECK(o[4] == 159, "0.5 in [-2,2] -> 159.375 -> 159: %d", o[4]);
}

TEST(normalize_constant_and_nonfinite) {
    float x[4] = {3, 3, 3, 3};
    uint8_t o[4] = {9, 9, 9, 9};
    viz_normalize(x, 4, o);
    for (int i = 0; i < 4; i++) CHECK(o[i] == 0, "constant tile -> 0, got %d at %d", o[i], i);
    float y[4] = {NAN, 1, INFINITY, 3};
    CHECK(viz_normalize(y, 4, o) == 2, "two non-finite values counted");
    CHECK(o[0] == 0 && o[2] == 0 && o[1] == 0 && o[3] == 255, "got %d %d %d %d", o[0], o[1], o[2], o[3]);
    float z[2] = {NAN, NAN};
    viz_normalize(z, 2, o);
    CHECK(o[0] == 0 && o[1] == 0, "all NaN -> 0");
}

TEST(layout_geometry) {
    viz_layout l;
    CHECK(viz_layout_init(&l, 4, 4, 32, 32, 2, 24) == 0, "4x4 of 32x32");
    CHECK(l.scale == 1, "32 px tiles need no magnification: %d", l.scale);
    CHECK(l.w == 4 * 34 + 2 && l.h == 4 * 34 + 2, "canvas %dx%d", l.w, l.h);
    int x, y;
    viz_tile_origin(&l, 2, 3, &x, &y);
    CHECK(x == 2 + 3 * 34 && y == 2 + 2 * 34, "tile (2,3) at %d,%d", x, y);
    CHECK(viz_layout_init(&l, 8, 8, 3, 3, 3, 24) == 0, "8x8 of 3x3 kernels");
    CHECK(l.scale == 8, "3x3 magnified to 24 px: scale %d", l.scale);
    CHECK(l.w == 8 * (24 + 3) + 3, "width %d", l.w);
    /* the rows layout: 8 images, the image then 7 channels */
    CHECK(viz_layout_init(&l, 8, 7 + 1, 32, 32, 2, 24) == 0, "rows layout");
    CHECK(l.rows == 8 && l.cols == 8, "%dx%d", l.rows, l.cols);
    CHECK(viz_layout_init(&l, 0, 4, 3, 3, 2, 24) == -1, "no rows refused");
    CHECK(viz_layout_init(&l, 4, 4, 0, 3, 2, 24) == -1, "empty tile refused");
    CHECK(viz_layout_init(&l, 100000, 4, 32, 32, 2, 24) == -1, "absurd canvas refused");
}

TEST(canvas_compose_grey_and_rgb) {
    viz_layout l;
    CHECK(viz_layout_init(&l, 1, 2, 2, 2, 1, 4) == 0, "1x2 of 2x2, scale 2");
    CHECK(l.scale == 2 && l.w == 2 * 5 + 1 && l.h == 6, "scale %d canvas %dx%d", l.scale, l.w, l.h);
    viz_canvas cv;
    CHECK(viz_canvas_init(&cv, l.w, l.h, 0x102030) == 0, "canvas");
    uint8_t grey[4] = {10, 20, 30, 40};
    uint8_t rgb[12] = {1, 2, 3, 4, /* R */ 5, 6, 7, 8, /* G */ 9, 10, 11, 12 /* B */};
    viz_put_tile(&cv, &l, 0, 0, grey, 1);
    viz_put_tile(&cv, &l, 0, 1, rgb, 3);
#define PX(x, y, k) cv.rgb[((size_t)(y) * cv.w + (x)) * 3 + (k)]
    CHECK(PX(0, 0, 0) == 0x10 && PX(0, 0, 1) == 0x20 && PX(0, 0, 2) == 0x30, "background at 0,0");
    CHECK(PX(5, 3, 0) == 0x10, "gap column 5 is background");
    /* grey tile at x 1..4, y 1..4, each source pixel 2x2 */
    CHECK(PX(1, 1, 0) == 10 && PX(1, 1, 1) == 10 && PX(1, 1, 2) == 10, "grey replicated into r,g,b");
    CHECK(PX(2, 2, 0) == 10 && PX(3, 1, 0) == 20 && PX(1, 3, 0) == 30 && PX(4, 4, 0) == 40, "grey magnified");
    /* RGB tile at x 6..9: source pixel (1,0) = R 2, G 6, B 10 */
    CHECK(PX(8, 1, 0) == 2 && PX(8, 1, 1) == 6 && PX(8, 1, 2) == 10, "planar RGB composed: %d %d %d", PX(8, 1, 0),
          PX(8, 1, 1), PX(8, 1, 2));
    CHECK(PX(9, 4, 0) == 4 && PX(9, 4, 1) == 8 && PX(9, 4, 2) == 12, "last RGB pixel");
    CHECK(PX(10, 5, 2) == 0x30, "outer gap");
#undef PX
    viz_canvas_free(&cv);
}

TEST(resize_nearest) {
    uint8_t src[4] = {1, 2, 3, 4}, dst[16];
    viz_resize(src, 2, 2, 1, dst, 4, 4);
    CHECK(dst[0] == 1 && dst[1] == 1 && dst[2] == 2 && dst[3] == 2, "row 0");
    CHECK(dst[8] == 3 && dst[15] == 4, "rows 2, 3");
    uint8_t src2[8] = {1, 2, 3, 4, 5, 6, 7, 8}, d2[2];
    viz_resize(src2, 2, 2, 2, d2, 1, 1);
    CHECK(d2[0] == 1 && d2[1] == 5, "two planes downsampled: %d %d", d2[0], d2[1]);
}

TEST(histogram) {
    float x[8] = {0, 0.1f, 0.25f, 0.5f, 0.99f, 1, NAN, 2};
    uint64_t c[5];
    double lo = INFINITY, hi = -INFINITY;
    viz_range(x, 6, &lo, &hi);
    CHECK(lo == 0 && hi == 1, "range %g..%g", lo, hi);
    size_t left = viz_hist(x, 8, 0, 1, 4, c);
    CHECK(left == 2, "NaN and 2 left out: %zu", left);
    CHECK(c[0] == 2 && c[1] == 1 && c[2] == 1 && c[3] == 2, "bins %llu %llu %llu %llu (1 goes in the last)",
          (unsigned long long)c[0], (unsigned long long)c[1], (unsigned long long)c[2], (unsigned long long)c[3]);
    uint64_t sum = c[0] + c[1] + c[2] + c[3];
    CHECK(sum == 6, "every finite value in range counted: %llu", (unsigned long long)sum);
    lo = hi = 1;
    viz_range_fix(&lo, &hi);
    CHECK(lo == 0.5 && hi == 1.5, "constant range widened: %g..%g", lo, hi);
    lo = INFINITY, hi = -INFINITY;
    viz_range_fix(&lo, &hi);
    CHECK(lo == 0 && hi == 1, "empty range -> [0,1]");
    float ones[3] = {1, 1, 1};
    lo = INFINITY, hi = -INFINITY;
    viz_range(ones, 3, &lo, &hi);
    viz_range_fix(&lo, &hi);
    viz_hist(ones, 3, lo, hi, 5, c);
    CHECK(c[2] == 3, "constant values land in the middle bin");
}

TEST(png_dims) {
    uint8_t b[33] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R',
                     0,    0,   3,   0xe8, 0,  0,   2,    0x58};
    int w = 0, h = 0;
    CHECK(viz_png_dims(b, sizeof b, &w, &h) == 0 && w == 1000 && h == 600, "1000x600: %dx%d", w, h);
    CHECK(viz_png_dims(b, 20, &w, &h) == -1, "short buffer refused");
    b[1] = 'p';
    CHECK(viz_png_dims(b, sizeof b, &w, &h) == -1, "bad signature refused");
}

TEST(gnuplot_find_env) {
    char path[4096], why[512];
    setenv("BN_GNUPLOT", "/nonexistent/gnuplot", 1);
    CHECK(viz_gnuplot_find(path, sizeof path, why, sizeof why) == -1, "missing BN_GNUPLOT refused");
    CHECK(strstr(why, "BN_GNUPLOT") != NULL, "why names BN_GNUPLOT: %s", why);
    setenv("BN_GNUPLOT", "/bin/sh", 1);
    CHECK(viz_gnuplot_find(path, sizeof path, why, sizeof why) == 0 && !strcmp(path, "/bin/sh"), "explicit path");
    unsetenv("BN_GNUPLOT");
    char *old = getenv("PATH") ? strdup(getenv("PATH")) : NULL;
    setenv("PATH", "/nonexistent", 1);
    CHECK(viz_gnuplot_find(path, sizeof path, why, sizeof why) == -1 && strstr(why, "gnuplot"), "no gnuplot in PATH");
    if (old) setenv("PATH", old, 1), free(old);
}

TEST(gp_quote) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    viz_gp_quote(f, "it's a/b");
    fclose(f);
    CHECK(!strcmp(buf, "'it''s a/b'"), "got %s", buf);
    free(buf);
}

int main(void) {
    RUN(grid_shapes);
    RUN(normalize_range);
    RUN(normalize_constant_and_nonfinite);
    RUN(layout_geometry);
    RUN(canvas_compose_grey_and_rgb);
    RUN(resize_nearest);
    RUN(histogram);
    RUN(png_dims);
    RUN(gnuplot_find_env);
    RUN(gp_quote);
    return DONE();
}
