/* filter-viz: pictures of a checkpoint, drawn by gnuplot into PNG files: the filters of a
 * conv layer, the feature maps of any layer for some dataset images (the seed's
 * Visualization and Visualization_II notebooks), and histograms of BN gamma / beta for
 * one or several checkpoints (all-trained vs BN-only). The mosaic arithmetic lives in
 * lib/viz.c; this file reads the streams, runs the model and writes gnuplot scripts. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "cli.h"
#include "dataset.h"
#include "model.h"
#include "augment.h"
#include "model_extra.h"
#include "ops.h"
#include "rng.h"
#include "viz.h"

#define MAX_IMAGES 64
#define MAX_CKPTS 16

static void usage(void) {
    printf(
        "usage: filter-viz filters CKPT --layer NAME [--in-channel K] [-o FILE.png]\n"
        "       filter-viz maps CKPT DATASET --layer NAME [--image N] [-o FILE.png]\n"
        "       filter-viz maps CKPT DATASET --layer NAME --images K [--seed S] [--channels C] [-o FILE.png]\n"
        "       filter-viz gamma CKPT [CKPT...] [--labels A,B,...] [--param gamma|beta] [--per-layer]\n"
        "                  [--format png|tsv] [-o FILE]\n"
        "\n"
        "Draws pictures of a checkpoint through gnuplot into a PNG file (stdout unless -o;\n"
        "written whole or not at all). Checkpoint streams: the last checkpoint, or --pick N.\n"
        "\n"
        "  filters   the filters of a conv layer in a square grid, each tile normalised to its\n"
        "            own range: 3-input-channel kernels (the stem) as colour images, others as\n"
        "            grey images of one input channel (--in-channel, default 0)\n"
        "  maps      the feature maps of any layer (conv, bn, relu, add, ...) for dataset images,\n"
        "            BN in inference mode, images preprocessed as the checkpoint's training did\n"
        "            (its state keys normalize/mean/std; pixels in [0,1] otherwise). One image\n"
        "            (--image): all channels in a square grid (16 -> 4x4, 64 -> 8x8). Several\n"
        "            (--images K at random, or --image-list): one row each, the image and then\n"
        "            --channels C channels (default 7) or those of --channel-list\n"
        "  gamma     histograms of BN gamma (or --param beta) over every BN layer together, or\n"
        "            --per-layer in small multiples; several checkpoints overlaid with a legend\n"
        "\n"
        "  -l, --layer NAME        layer (a wrong name lists the valid ones)\n"
        "  -p, --pick N            checkpoint N of each stream (from 0) instead of the last\n"
        "  -i, --image N           the image of DATASET to show (default 0)\n"
        "  -n, --images K          K images chosen at random (1..%d), one row each\n"
        "      --image-list A,B,.. these images, one row each\n"
        "      --seed S            random seed for --images (default 1)\n"
        "  -c, --channels C        how many channels to show (maps; default all, or 7 in rows)\n"
        "      --channel-list A,.. these channels (rows layout)\n"
        "      --in-channel K      the input channel of the filters to show (grey)\n"
        "      --labels A,B,..     names of the checkpoints in the legend (default: file names)\n"
        "      --param P           gamma (default) or beta\n"
        "      --per-layer         one small histogram per BN layer\n"
        "      --bins N            histogram bins (default 40)\n"
        "  -f, --format F          png (default) or tsv (gamma: the histogram numbers as text)\n"
        "  -s, --size WxH          picture size in pixels (default 1000x1000; gamma 1000x700)\n"
        "  -t, --title TEXT        title instead of the generated one\n"
        "  -o, --output FILE       write FILE instead of stdout\n"
        "  -h, --help              this help\n"
        "  -V, --version           version\n"
        "\n"
        "gnuplot draws the pictures: BN_GNUPLOT names the program (default: gnuplot in PATH).\n",
        MAX_IMAGES);
}

/* ---- options ------------------------------------------------------------------------------- */
typedef struct options {
    const char *layer, *output, *title, *labels, *param, *image_list, *channel_list;
    int pick, image, images, channels, in_channel, bins, width, height;
    uint64_t seed;
    bool per_layer, tsv, size_given;
} options;

enum { O_IMAGE_LIST = 256, O_SEED, O_CHANNEL_LIST, O_IN_CHANNEL, O_LABELS, O_PARAM, O_PER_LAYER, O_BINS };
enum { M_FILTERS = 1, M_MAPS = 2, M_GAMMA = 4 };

/* Which modes each option applies to (indexed by the option's value). */
static int option_modes(int ch) {
    switch (ch) {
    case 'l': return M_FILTERS | M_MAPS;
    case 'i': case 'n': case 'c': case O_IMAGE_LIST: case O_SEED: case O_CHANNEL_LIST: return M_MAPS;
    case O_IN_CHANNEL: return M_FILTERS;
    case O_LABELS: case O_PARAM: case O_PER_LAYER: case O_BINS: case 'f': return M_GAMMA;
    default: return M_FILTERS | M_MAPS | M_GAMMA;
    }
}

static void parse_size(const char *s, int *w, int *h) {
    char a[32], *x = strchr(s, 'x');
    if (!x || x == s || (size_t)(x - s) >= sizeof a) cli_usage_error("--size: expected WxH (e.g. 1000x800), not '%s'", s);
    memcpy(a, s, (size_t)(x - s));
    a[x - s] = 0;
    *w = (int)cli_int("--size width", a, 100, 10000);
    *h = (int)cli_int("--size height", x + 1, 100, 10000);
}

/* ---- temporary files, removed at exit (also after cli_die) -------------------------------- */
static char tmp_paths[4][4096];
static void remove_temps(void) {
    for (int i = 0; i < 4; i++)
        if (tmp_paths[i][0]) unlink(tmp_paths[i]), tmp_paths[i][0] = 0;
}
static const char *make_temp(const char *suffix) {
    for (int i = 0; i < 4; i++) {
        if (tmp_paths[i][0]) continue;
        const char *dir = getenv("TMPDIR");
        if (!dir || !*dir) dir = "/tmp";
        snprintf(tmp_paths[i], sizeof tmp_paths[i], "%s/filter-viz.XXXXXX%s", dir, suffix);
        int fd = mkstemps(tmp_paths[i], (int)strlen(suffix));
        if (fd < 0) {
            int e = errno;
            char p[4096];
            snprintf(p, sizeof p, "%s", tmp_paths[i]);
            tmp_paths[i][0] = 0;
            cli_die("cannot create a temporary file %s: %s", p, strerror(e));
        }
        close(fd);
        return tmp_paths[i];
    }
    cli_die("too many temporary files");
}

/* ---- a gnuplot script that writes one PNG ------------------------------------------------- */
typedef struct plot {
    char gnuplot[4096];
    const char *png;    /* gnuplot's output, a temporary */
    char *buf;
    size_t len;
    FILE *f;            /* the script */
    int w, h;
} plot;

static void find_gnuplot(char *out, size_t n) {
    char why[512];
    if (viz_gnuplot_find(out, n, why, sizeof why) != 0) cli_die("%s", why);
}

static void plot_begin(plot *p, const options *opt) {
    memset(p, 0, sizeof *p);
    find_gnuplot(p->gnuplot, sizeof p->gnuplot);
    p->png = make_temp(".png");
    p->f = open_memstream(&p->buf, &p->len);
    if (!p->f) cli_die("out of memory");
    p->w = opt->width, p->h = opt->height;
    int fs = (p->w < p->h ? p->w : p->h) / 70;
    if (fs < 8) fs = 8;
    if (fs > 16) fs = 16;
    fprintf(p->f,
            "if (strstrt(GPVAL_TERMINALS, \"pngcairo\") > 0) {\n"
            "  set terminal pngcairo size %d,%d font \"sans,%d\" noenhanced\n"
            "} else {\n"
            "  set terminal png size %d,%d font \"sans,%d\" noenhanced\n"
            "}\n",
            p->w, p->h, fs, p->w, p->h, fs);
    fputs("set output ", p->f);
    viz_gp_quote(p->f, p->png);
    fputs("\nset encoding utf8\n", p->f);
}

/* Runs the script, checks that a PNG of the asked size came out, and writes it. */
static void plot_finish(plot *p, const char *output) {
    fputs("unset output\n", p->f);
    if (fclose(p->f) != 0) cli_die("out of memory");
    int rc = viz_gnuplot_run(p->gnuplot, p->buf, p->len);
    free(p->buf);
    if (rc < 0) cli_die("cannot run gnuplot (%s)", p->gnuplot);
    if (rc != 0) cli_die("gnuplot (%s) failed with status %d", p->gnuplot, rc);
    FILE *in = fopen(p->png, "rb");
    if (!in) cli_die("gnuplot wrote no picture (%s)", p->png);
    size_t cap = 1 << 16, n = 0;
    uint8_t *data = malloc(cap);
    size_t k;
    while (data && (k = fread(data + n, 1, cap - n, in)) > 0) {
        n += k;
        if (n == cap) data = realloc(data, cap *= 2);
    }
    if (!data) cli_die("out of memory");
    fclose(in);
    int w, h;
    if (viz_png_dims(data, n, &w, &h) != 0) cli_die("gnuplot's output is not a PNG picture");
    if (w != p->w || h != p->h) cli_die("gnuplot drew %dx%d pixels, not the %dx%d asked", w, h, p->w, p->h);
    cli_out *o = cli_out_open(output, true);
    if (fwrite(data, 1, n, o->f) != n) cli_die("%s: write error: %s", output ? output : "stdout", strerror(errno));
    cli_out_commit(o);
    free(data);
    remove_temps();
}

/* Draws a canvas as an image with tick labels at tile centres: xt[cols] under the columns,
 * yt[rows] beside the rows (either may be NULL). */
static void plot_canvas(plot *p, const viz_canvas *cv, const viz_layout *l, const char *title, char **xt, char **yt,
                        const char *xlabel, const char *ylabel) {
    const char *raw = make_temp(".rgb");
    FILE *f = fopen(raw, "wb");
    if (!f) cli_die("%s: %s", raw, strerror(errno));
    if (fwrite(cv->rgb, 3, (size_t)cv->w * cv->h, f) != (size_t)cv->w * cv->h || fclose(f) != 0)
        cli_die("%s: write error", raw);
    fputs("set title ", p->f);
    viz_gp_quote(p->f, title);
    fprintf(p->f, "\nset xrange [-0.5:%d.5]\nset yrange [%d.5:-0.5]\nset size ratio -1\nunset key\n"
                  "set border 0\nset tics scale 0\n",
            cv->w - 1, cv->h - 1);
    for (int axis = 0; axis < 2; axis++) {
        char **t = axis ? yt : xt;
        int nt = axis ? l->rows : l->cols;
        fprintf(p->f, "set %ctics (", axis ? 'y' : 'x');
        for (int i = 0; t && i < nt; i++) {
            int x, y;
            viz_tile_origin(l, axis ? i : 0, axis ? 0 : i, &x, &y);
            double at = axis ? y + (l->th * l->scale - 1) / 2.0 : x + (l->tw * l->scale - 1) / 2.0;
            if (i) fputs(", ", p->f);
            viz_gp_quote(p->f, t[i]);
            fprintf(p->f, " %.1f", at);
        }
        fputs(")\n", p->f);
        fprintf(p->f, "set %clabel ", axis ? 'y' : 'x');
        viz_gp_quote(p->f, (axis ? ylabel : xlabel) ? (axis ? ylabel : xlabel) : "");
        fputc('\n', p->f);
    }
    fputs("plot ", p->f);
    viz_gp_quote(p->f, raw);
    fprintf(p->f, " binary array=(%d,%d) format='%%uchar' with rgbimage notitle\n", cv->w, cv->h);
}

/* ---- checkpoints and models ---------------------------------------------------------------- */
static checkpoint *load_ck(const char *path, int pick) {
    FILE *f = cli_open_in(path);
    char err[STREAM_ERRMAX];
    int count = 0;
    checkpoint *ck = ck_read(f, path && strcmp(path, "-") ? path : "stdin", pick, &count, err);
    cli_close_in(f);
    if (!ck) cli_die("%s", err);
    return ck;
}

static const char *base_name(const char *path) {
    if (!path || !strcmp(path, "-")) return "stdin";
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static model *build(checkpoint *ck, int batch, const char *path) {
    const char *why = NULL;
    ops *o = ops_get("cpu", &why);
    if (!o) o = &ops_ref;
    char err[256];
    model *m = model_build(ck, o, batch, err);
    if (!m) cli_die("%s: %s", base_name(path), err);
    return m;
}

/* Dies with the list of the model's layers (of `kind`, or all when NULL). */
_Noreturn static void no_such_layer(const model *m, const char *name, const char *kind, const char *why) {
    cli_warn("%s '%s'; the %s layers of this model are:", why, name, kind ? kind : "valid");
    int col = 0;
    for (int i = 0; i < model_nlayers(m); i++) {
        model_layer_info li;
        model_layer(m, i, &li);
        if (kind && strcmp(li.kind, kind)) continue;
        int len = (int)strlen(li.name) + 1;
        if (col && col + len > 78) fputc('\n', stderr), col = 0;
        fprintf(stderr, "%s%s", col ? " " : "  ", li.name);
        col += len + (col ? 0 : 1);
    }
    fputc('\n', stderr);
    exit(EXIT_RUNTIME);
}

static int find_layer(const model *m, const char *name, model_layer_info *out) {
    for (int i = 0; i < model_nlayers(m); i++) {
        model_layer(m, i, out);
        if (!strcmp(out->name, name)) return i;
    }
    return -1;
}

static char *xstrdup(const char *s) {
    char *d = strdup(s);
    if (!d) cli_die("out of memory");
    return d;
}
static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    char *s = NULL;
    if (vasprintf(&s, f, ap) < 0) cli_die("out of memory");
    va_end(ap);
    return s;
}
static void free_strs(char **s, int n) {
    for (int i = 0; s && i < n; i++) free(s[i]);
    free(s);
}
/* Tick labels for a square grid: columns 0..cols-1, rows by their first index. */
static void grid_ticks(const viz_layout *l, char ***xt, char ***yt) {
    *xt = calloc((size_t)l->cols, sizeof **xt);
    *yt = calloc((size_t)l->rows, sizeof **yt);
    if (!*xt || !*yt) cli_die("out of memory");
    for (int c = 0; c < l->cols; c++) (*xt)[c] = fmt("+%d", c);
    for (int r = 0; r < l->rows; r++) (*yt)[r] = fmt("%d", r * l->cols);
}

static void default_size(options *opt, int w, int h) {
    if (!opt->size_given) opt->width = w, opt->height = h;
}

/* ---- filters ------------------------------------------------------------------------------- */
static void mode_filters(options *opt, const char *ckpath) {
    if (!opt->layer) cli_usage_error("filters: --layer NAME is required (e.g. --layer stem.conv)");
    char gp[4096];
    find_gnuplot(gp, sizeof gp);
    checkpoint *ck = load_ck(ckpath, opt->pick);
    model *m = build(ck, 1, ckpath);
    model_layer_info li;
    if (find_layer(m, opt->layer, &li) < 0) no_such_layer(m, opt->layer, "conv", "no layer");
    if (strcmp(li.kind, "conv")) no_such_layer(m, opt->layer, "conv", fmt("not a conv layer (%s):", li.kind));
    char wname[CK_NAMELEN + 4];
    snprintf(wname, sizeof wname, "%s.w", opt->layer);
    const ck_tensor *t = ck_find(ck, wname);
    if (!t || t->dtype != DT_F32 || t->ndim != 4 || t->shape[2] != t->shape[3])
        cli_die("%s: no f32 [cout, cin, k, k] tensor %s", base_name(ckpath), wname);
    int cout = (int)t->shape[0], cin = (int)t->shape[1], k = (int)t->shape[2];
    bool rgb = cin == 3 && opt->in_channel < 0;
    int inch = opt->in_channel < 0 ? 0 : opt->in_channel;
    if (inch >= cin) cli_die("--in-channel %d: layer %s has %d input channels (0..%d)", inch, opt->layer, cin, cin - 1);
    int rows, cols;
    viz_grid(cout, &rows, &cols);
    viz_layout l;
    if (viz_layout_init(&l, rows, cols, k, k, k >= 3 ? 3 : 2, 24) != 0) cli_die("too many filters to draw (%d)", cout);
    viz_canvas cv;
    if (viz_canvas_init(&cv, l.w, l.h, VIZ_BG) != 0) cli_die("out of memory");
    const float *w = t->data;
    size_t kk = (size_t)k * k;
    float *tile = malloc(3 * kk * sizeof *tile);
    uint8_t *px = malloc(3 * kk);
    if (!tile || !px) cli_die("out of memory");
    for (int f = 0; f < cout; f++) {
        const float *wf = w + (size_t)f * cin * kk;
        if (rgb) {
            viz_normalize(wf, 3 * kk, px);
        } else {
            viz_normalize(wf + (size_t)inch * kk, kk, px);
        }
        viz_put_tile(&cv, &l, f / cols, f % cols, px, rgb ? 3 : 1);
    }
    char what[64];
    snprintf(what, sizeof what, rgb ? "RGB" : "input channel %d of %d", inch, cin);
    char *title = opt->title ? xstrdup(opt->title)
                             : fmt("%s filters: %d x %dx%dx%d, %s, each normalised (%s, epoch %" PRId64 ")",
                                   opt->layer, cout, cin, k, k, what, base_name(ckpath), ck->epoch);
    char **xt, **yt;
    grid_ticks(&l, &xt, &yt);
    default_size(opt, 1000, 1000);
    plot p;
    plot_begin(&p, opt);
    plot_canvas(&p, &cv, &l, title, xt, yt, "filter = row + column", "filter");
    plot_finish(&p, opt->output);
    free_strs(xt, l.cols), free_strs(yt, l.rows);
    free(title), free(tile), free(px);
    viz_canvas_free(&cv);
    model_free(m);
    ck_free(ck);
}

/* ---- maps ---------------------------------------------------------------------------------- */
/* The input preprocessing of the checkpoint's training, as net-train recorded it in the
 * state (augment.h: norm_from_state): x = (p/255 - mean[c]) / std[c], or p/255 when it did
 * not normalise or the checkpoint was never trained. */
static void preprocessing(const checkpoint *ck, const char *ckpath, double mean[3], double std[3]) {
    for (int c = 0; c < 3; c++) mean[c] = 0, std[c] = 1;
    if (!kv_find(&ck->state, "normalize")) return;        /* never trained */
    norm_cfg nm;
    char err[256];
    if (norm_from_state(&ck->state, &nm, err)) cli_die("%s: %s", base_name(ckpath), err);
    if (!nm.meanstd) return;
    if (nm.c != 3) cli_die("%s: mean/std normalisation of %d channels, the images have 3", base_name(ckpath), nm.c);
    for (int c = 0; c < 3; c++) {
        mean[c] = nm.mean[c], std[c] = nm.std[c];
        if (!(std[c] > 0)) cli_die("%s: std %g in the training state is not positive", base_name(ckpath), std[c]);
    }
}

static int parse_list(const char *opt, const char *s, long long *out, int max, long long hi) {
    return cli_int_list(opt, s, out, max, 0, hi);
}

/* A layer whose output is overwritten in place: the first later relu/add layer of the same
 * shape whose activation survives. */
static const char *inplace_successor(const model *m, int at) {
    model_layer_info li, lj;
    model_layer(m, at, &li);
    for (int j = at + 1; j < model_nlayers(m); j++) {
        model_layer(m, j, &lj);
        if (strcmp(lj.kind, "relu") && strcmp(lj.kind, "add")) continue;
        if (lj.c != li.c || lj.h != li.h || lj.w != li.w) continue;
        if (model_activation(m, lj.name, NULL, NULL, NULL)) return lj.name;
    }
    return NULL;
}

static void mode_maps(options *opt, const char *ckpath, const char *dspath) {
    if (!opt->layer) cli_usage_error("maps: --layer NAME is required (e.g. --layer stem.conv)");
    bool rows_layout = opt->images > 0 || opt->image_list;
    if (opt->images > 0 && opt->image_list) cli_usage_error("--images and --image-list exclude each other");
    if (opt->image >= 0 && rows_layout) cli_usage_error("--image shows one image; --images/--image-list several");
    if (opt->channel_list && !rows_layout) cli_usage_error("--channel-list applies to the rows layout (--images or --image-list)");
    if (opt->channel_list && opt->channels > 0) cli_usage_error("--channels and --channel-list exclude each other");
    char gp[4096];
    find_gnuplot(gp, sizeof gp);
    checkpoint *ck = load_ck(ckpath, opt->pick);
    FILE *f = cli_open_in(dspath);
    dataset ds;
    char err[STREAM_ERRMAX];
    if (ds_load(f, strcmp(dspath, "-") ? dspath : "stdin", &ds, err) != 0) cli_die("%s", err);
    cli_close_in(f);
    if (ds.h.c != 3 || ds.h.h != 32 || ds.h.w != 32)
        cli_die("%s: images are %dx%dx%d; the model takes 3x32x32", base_name(dspath), ds.h.c, ds.h.h, ds.h.w);
    if (ds.n == 0) cli_die("%s: the dataset holds no images", base_name(dspath));

    /* which images */
    long long idx[MAX_IMAGES];
    int nimg;
    if (opt->image_list) {
        nimg = parse_list("--image-list", opt->image_list, idx, MAX_IMAGES, (long long)1 << 40);
    } else if (opt->images > 0) {
        if ((size_t)opt->images > ds.n) cli_die("--images %d: %s holds %zu images", opt->images, base_name(dspath), ds.n);
        uint32_t *perm = malloc(ds.n * sizeof *perm);
        if (!perm) cli_die("out of memory");
        for (size_t i = 0; i < ds.n; i++) perm[i] = (uint32_t)i;
        rng r;
        rng_seed(&r, opt->seed, 0);
        rng_shuffle_u32(&r, perm, ds.n);
        nimg = opt->images;
        for (int i = 0; i < nimg; i++) idx[i] = perm[i];
        free(perm);
    } else {
        nimg = 1;
        idx[0] = opt->image < 0 ? 0 : opt->image;
    }
    for (int i = 0; i < nimg; i++)
        if ((size_t)idx[i] >= ds.n)
            cli_die("image %lld: %s holds %zu images (0..%zu)", idx[i], base_name(dspath), ds.n, ds.n - 1);

    /* forward */
    model *m = build(ck, nimg, ckpath);
    model_layer_info li;
    int at = find_layer(m, opt->layer, &li);
    if (at < 0) no_such_layer(m, opt->layer, NULL, "no layer");
    if (li.h < 1 || li.w < 1) cli_die("layer %s has no spatial map", opt->layer);
    double mean[3], sd[3];
    preprocessing(ck, ckpath, mean, sd);
    size_t img = ds_image_bytes(&ds.h);
    float *x = malloc((size_t)nimg * img * sizeof *x);
    if (!x) cli_die("out of memory");
    for (int i = 0; i < nimg; i++)
        for (size_t j = 0; j < img; j++) {
            int c = (int)(j / 1024);
            x[i * img + j] = (float)((ds.pixels[(size_t)idx[i] * img + j] / 255.0 - mean[c]) / sd[c]);
        }
    model_forward(m, x, nimg, false);
    int C, H, W;
    const float *act = model_activation(m, opt->layer, &C, &H, &W);
    if (!act) {
        const char *succ = inplace_successor(m, at);
        if (succ)
            cli_die("the output of layer %s is overwritten in place by %s; ask for --layer %s instead", opt->layer,
                    succ, succ);
        cli_die("the output of layer %s is overwritten in place by a later layer", opt->layer);
    }

    /* which channels */
    long long ch[4096];
    int nch;
    if (opt->channel_list) {
        nch = parse_list("--channel-list", opt->channel_list, ch, 4096, 1 << 20);
        for (int i = 0; i < nch; i++)
            if (ch[i] >= C) cli_die("--channel-list: channel %lld, but layer %s has %d channels", ch[i], opt->layer, C);
    } else {
        nch = opt->channels > 0 ? opt->channels : rows_layout ? 7 : C;
        if (nch > C) nch = C;
        if (nch > 4096) nch = 4096;
        for (int i = 0; i < nch; i++) ch[i] = i;
    }

    /* the mosaic: tiles as big as the input image (32x32) in rows, else the map's size */
    int rows, cols, tw = W, th = H;
    if (rows_layout) {
        rows = nimg, cols = nch + 1;
        tw = th = 32;
    } else {
        viz_grid(nch, &rows, &cols);
    }
    viz_layout l;
    if (viz_layout_init(&l, rows, cols, tw, th, 2, 24) != 0) cli_die("too many tiles to draw");
    viz_canvas cv;
    if (viz_canvas_init(&cv, l.w, l.h, VIZ_BG) != 0) cli_die("out of memory");
    size_t hw = (size_t)H * W;
    uint8_t *px = malloc(hw), *big = malloc((size_t)tw * th * 3);
    if (!px || !big) cli_die("out of memory");
    for (int i = 0; i < nimg; i++) {
        if (rows_layout) viz_put_tile(&cv, &l, i, 0, ds.pixels + (size_t)idx[i] * img, 3);
        for (int k = 0; k < nch; k++) {
            viz_normalize(act + ((size_t)i * C + (size_t)ch[k]) * hw, hw, px);
            if (rows_layout) {
                viz_resize(px, W, H, 1, big, tw, th);
                viz_put_tile(&cv, &l, i, k + 1, big, 1);
            } else {
                viz_put_tile(&cv, &l, k / cols, k % cols, px, 1);
            }
        }
    }
    char **xt, **yt, *title;
    const char *xlabel, *ylabel;
    if (rows_layout) {
        xt = calloc((size_t)cols, sizeof *xt);
        yt = calloc((size_t)rows, sizeof *yt);
        if (!xt || !yt) cli_die("out of memory");
        xt[0] = xstrdup("image");
        for (int k = 0; k < nch; k++) xt[k + 1] = fmt("ch %lld", ch[k]);
        for (int i = 0; i < nimg; i++) {
            int lab = ds.labels[idx[i]];
            yt[i] = fmt("#%lld %s", idx[i], lab < ds.h.nclasses ? ds.h.classes[lab] : "?");
        }
        title = opt->title ? xstrdup(opt->title)
                           : fmt("%s feature maps (%d of %d channels, %dx%d) of %d images (%s, epoch %" PRId64 ")",
                                 opt->layer, nch, C, H, W, nimg, base_name(ckpath), ck->epoch);
        xlabel = "each map normalised to its own range", ylabel = "image";
    } else {
        grid_ticks(&l, &xt, &yt);
        int lab = ds.labels[idx[0]];
        title = opt->title ? xstrdup(opt->title)
                           : fmt("%s feature maps (%d of %d channels, %dx%d) of image %lld (%s) (%s, epoch %" PRId64 ")",
                                 opt->layer, nch, C, H, W, idx[0], lab < ds.h.nclasses ? ds.h.classes[lab] : "?",
                                 base_name(ckpath), ck->epoch);
        xlabel = "channel = row + column (each map normalised to its own range)", ylabel = "channel";
    }
    default_size(opt, 1000, rows_layout ? 150 + 750 * rows / cols : 1000);
    plot p;
    plot_begin(&p, opt);
    plot_canvas(&p, &cv, &l, title, xt, yt, xlabel, ylabel);
    plot_finish(&p, opt->output);
    free_strs(xt, cols), free_strs(yt, rows);
    free(title), free(px), free(big), free(x);
    viz_canvas_free(&cv);
    model_free(m);
    ds_free(&ds);
    ck_free(ck);
}

/* ---- gamma --------------------------------------------------------------------------------- */
typedef struct bnset {
    char label[128];
    int n;                 /* BN layers */
    char (*names)[CK_NAMELEN];
    const float **v;
    size_t *len;
    checkpoint *ck;
} bnset;

static void collect(bnset *s, checkpoint *ck, const char *param, const char *path) {
    s->ck = ck;
    s->names = calloc((size_t)ck->nt + 1, sizeof *s->names);
    s->v = calloc((size_t)ck->nt + 1, sizeof *s->v);
    s->len = calloc((size_t)ck->nt + 1, sizeof *s->len);
    if (!s->names || !s->v || !s->len) cli_die("out of memory");
    size_t pl = strlen(param);
    for (int i = 0; i < ck->nt; i++) {
        const ck_tensor *t = &ck->t[i];
        size_t nl = strlen(t->name);
        if (nl <= pl + 1 || t->name[nl - pl - 1] != '.' || strcmp(t->name + nl - pl, param)) continue;
        if (strcmp(t->role, "param") || t->dtype != DT_F32) continue;
        snprintf(s->names[s->n], CK_NAMELEN, "%.*s", (int)(nl - pl - 1), t->name);
        s->v[s->n] = t->data;
        s->len[s->n] = t->numel;
        s->n++;
    }
    if (s->n == 0) cli_die("%s: no BN %s tensors (*.%s) in the checkpoint", base_name(path), param, param);
}

static void gp_datablock_start(FILE *f, const char *name) { fprintf(f, "$%s << EOD\n", name); }

/* One histogram group: the values of layer `layer` (NULL = all layers) of every set. */
typedef struct hgroup {
    double lo, hi;
    uint64_t *counts;   /* [nsets][bins] */
} hgroup;

static void make_group(hgroup *g, bnset *sets, int ns, const char *layer, int bins) {
    g->lo = INFINITY, g->hi = -INFINITY;
    for (int s = 0; s < ns; s++)
        for (int i = 0; i < sets[s].n; i++)
            if (!layer || !strcmp(sets[s].names[i], layer)) viz_range(sets[s].v[i], sets[s].len[i], &g->lo, &g->hi);
    viz_range_fix(&g->lo, &g->hi);
    g->counts = calloc((size_t)ns * bins, sizeof *g->counts);
    uint64_t *tmp = malloc((size_t)bins * sizeof *tmp);
    if (!g->counts || !tmp) cli_die("out of memory");
    for (int s = 0; s < ns; s++)
        for (int i = 0; i < sets[s].n; i++) {
            if (layer && strcmp(sets[s].names[i], layer)) continue;
            viz_hist(sets[s].v[i], sets[s].len[i], g->lo, g->hi, bins, tmp);
            for (int b = 0; b < bins; b++) g->counts[(size_t)s * bins + b] += tmp[b];
        }
    free(tmp);
}

static void mode_gamma(options *opt, char **paths, int np) {
    const char *param = opt->param ? opt->param : "gamma";
    if (strcmp(param, "gamma") && strcmp(param, "beta")) cli_usage_error("--param: gamma or beta, not '%s'", param);
    if (np > MAX_CKPTS) cli_usage_error("at most %d checkpoints", MAX_CKPTS);
    int stdin_uses = 0;
    for (int i = 0; i < np; i++) stdin_uses += !strcmp(paths[i], "-");
    if (stdin_uses > 1) cli_usage_error("only one checkpoint can come from stdin");
    char *labels[MAX_CKPTS] = {0};
    char *lcopy = NULL;
    if (opt->labels) {
        lcopy = xstrdup(opt->labels);
        int n = 0;
        char *save, *tok;
        for (tok = strtok_r(lcopy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            if (n == MAX_CKPTS) break;
            labels[n++] = tok;
        }
        if (n != np) cli_usage_error("--labels names %d checkpoint%s, but %d %s given", n, n == 1 ? "" : "s", np,
                                     np == 1 ? "is" : "are");
    }
    char gp[4096];
    if (!opt->tsv) find_gnuplot(gp, sizeof gp);
    bnset sets[MAX_CKPTS];
    memset(sets, 0, sizeof sets);
    for (int i = 0; i < np; i++) {
        checkpoint *ck = load_ck(paths[i], opt->pick);
        collect(&sets[i], ck, param, paths[i]);
        snprintf(sets[i].label, sizeof sets[i].label, "%s", labels[i] ? labels[i] : base_name(paths[i]));
    }
    /* the layers: union in order of first appearance */
    int nl = 0, cap = 0;
    const char **layers = NULL;
    for (int s = 0; s < np; s++)
        for (int i = 0; i < sets[s].n; i++) {
            int j = 0;
            while (j < nl && strcmp(layers[j], sets[s].names[i])) j++;
            if (j < nl) continue;
            if (nl == cap) {
                cap = cap ? 2 * cap : 64;
                layers = realloc(layers, (size_t)cap * sizeof *layers);
                if (!layers) cli_die("out of memory");
            }
            layers[nl++] = sets[s].names[i];
        }
    int ng = opt->per_layer ? nl : 1, bins = opt->bins;
    hgroup *g = calloc((size_t)ng, sizeof *g);
    if (!g) cli_die("out of memory");
    for (int k = 0; k < ng; k++) make_group(&g[k], sets, np, opt->per_layer ? layers[k] : NULL, bins);

    if (opt->tsv) {
        cli_out *o = cli_out_open(opt->output, false);
        fprintf(o->f, "layer\tcheckpoint\tbin_lo\tbin_hi\tcount\n");
        for (int k = 0; k < ng; k++) {
            double wdt = (g[k].hi - g[k].lo) / bins;
            for (int s = 0; s < np; s++)
                for (int b = 0; b < bins; b++)
                    fprintf(o->f, "%s\t%s\t%.9g\t%.9g\t%" PRIu64 "\n", opt->per_layer ? layers[k] : "all",
                            sets[s].label, g[k].lo + b * wdt, b == bins - 1 ? g[k].hi : g[k].lo + (b + 1) * wdt,
                            g[k].counts[(size_t)s * bins + b]);
        }
        cli_out_commit(o);
    } else {
        default_size(opt, 1000, opt->per_layer ? 1000 : 700);
        plot p;
        plot_begin(&p, opt);
        FILE *f = p.f;
        for (int k = 0; k < ng; k++) {
            char name[32];
            snprintf(name, sizeof name, "H%d", k);
            gp_datablock_start(f, name);
            double wdt = (g[k].hi - g[k].lo) / bins;
            for (int b = 0; b < bins; b++) {
                fprintf(f, "%.9g", g[k].lo + (b + 0.5) * wdt);
                for (int s = 0; s < np; s++) fprintf(f, " %" PRIu64, g[k].counts[(size_t)s * bins + b]);
                fputc('\n', f);
            }
            fputs("EOD\n", f);
        }
        fputs("set style fill transparent solid 0.35 border\nset grid ytics lc rgb '#dddddd'\n", f);
        char *title = opt->title ? xstrdup(opt->title)
                                 : opt->per_layer ? fmt("BN %s per layer, %d checkpoint%s", param, np, np == 1 ? "" : "s")
                                                  : fmt("BN %s of all %d BN layers, %d checkpoint%s", param, nl, np,
                                                        np == 1 ? "" : "s");
        if (!opt->per_layer) {
            fputs("set title ", f);
            viz_gp_quote(f, title);
            fprintf(f, "\nset xlabel '%s value'\nset ylabel 'count (channels)'\nset key top right box opaque\n"
                       "set boxwidth %.9g absolute\nset yrange [0:*]\nset offsets 0,0,graph 0.08,0\nset xrange [%.9g:%.9g]\n",
                    param, (g[0].hi - g[0].lo) / bins, g[0].lo, g[0].hi);
        } else {
            int rows, cols;
            viz_grid(nl, &rows, &cols);
            fprintf(f, "set multiplot layout %d,%d title ", rows, cols);
            viz_gp_quote(f, title);
            fputs("\nset tics font ',7'\nset title font ',8'\nset key font ',8' top right opaque\n"
                  "set yrange [0:*]\nset format y '%g'\nset format x '%.3g'\n",
                  f);
        }
        for (int k = 0; k < ng; k++) {
            if (opt->per_layer) {
                fputs("set title ", f);
                viz_gp_quote(f, layers[k]);
                fprintf(f, "\nset boxwidth %.9g absolute\n%s\nset xrange [%.9g:%.9g]\nset xtics %.9g, %.9g, %.9g\n",
                        (g[k].hi - g[k].lo) / bins, k ? "unset key" : "", g[k].lo, g[k].hi, g[k].lo,
                        (g[k].hi - g[k].lo) / 2, g[k].hi);
            }
            fputs("plot ", f);
            for (int s = 0; s < np; s++) {
                fprintf(f, "%s$H%d using 1:%d with boxes lc %d title ", s ? ", " : "", k, s + 2, s + 1);
                viz_gp_quote(f, sets[s].label);
            }
            fputc('\n', f);
        }
        if (opt->per_layer) fputs("unset multiplot\n", f);
        free(title);
        plot_finish(&p, opt->output);
    }
    for (int k = 0; k < ng; k++) free(g[k].counts);
    free(g);
    free(layers);
    for (int s = 0; s < np; s++) {
        free(sets[s].names), free(sets[s].v), free(sets[s].len);
        ck_free(sets[s].ck);
    }
    free(lcopy);
}

/* ---- main ---------------------------------------------------------------------------------- */
int main(int argc, char **argv) {
    cli_init(argv[0]);
    static const struct option lo[] = {
        {"layer", required_argument, 0, 'l'},     {"pick", required_argument, 0, 'p'},
        {"image", required_argument, 0, 'i'},     {"images", required_argument, 0, 'n'},
        {"image-list", required_argument, 0, O_IMAGE_LIST}, {"seed", required_argument, 0, O_SEED},
        {"channels", required_argument, 0, 'c'},  {"channel-list", required_argument, 0, O_CHANNEL_LIST},
        {"in-channel", required_argument, 0, O_IN_CHANNEL}, {"labels", required_argument, 0, O_LABELS},
        {"param", required_argument, 0, O_PARAM}, {"per-layer", no_argument, 0, O_PER_LAYER},
        {"bins", required_argument, 0, O_BINS},   {"format", required_argument, 0, 'f'},
        {"size", required_argument, 0, 's'},      {"title", required_argument, 0, 't'},
        {"output", required_argument, 0, 'o'},    {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},         {0, 0, 0, 0}};
    options opt = {.pick = -1, .image = -1, .in_channel = -1, .bins = 40, .seed = 1, .width = 1000, .height = 1000};
    int given[512] = {0};
    const char *given_name[512] = {0};
    int ch, idx;
    while ((ch = getopt_long(argc, argv, "l:p:i:n:c:f:s:t:o:hV", lo, &idx)) != -1) {
        if (ch >= 0 && ch < 512) {
            given[ch] = 1;
            for (int k = 0; lo[k].name; k++)
                if (lo[k].val == ch) given_name[ch] = lo[k].name;
        }
        switch (ch) {
        case 'l': opt.layer = optarg; break;
        case 'p': opt.pick = (int)cli_int("--pick", optarg, 0, 1 << 30); break;
        case 'i': opt.image = (int)cli_int("--image", optarg, 0, 1 << 30); break;
        case 'n': opt.images = (int)cli_int("--images", optarg, 1, MAX_IMAGES); break;
        case O_IMAGE_LIST: opt.image_list = optarg; break;
        case O_SEED: opt.seed = (uint64_t)cli_int("--seed", optarg, 0, INT64_MAX); break;
        case 'c': opt.channels = (int)cli_int("--channels", optarg, 1, 4096); break;
        case O_CHANNEL_LIST: opt.channel_list = optarg; break;
        case O_IN_CHANNEL: opt.in_channel = (int)cli_int("--in-channel", optarg, 0, 1 << 20); break;
        case O_LABELS: opt.labels = optarg; break;
        case O_PARAM: opt.param = optarg; break;
        case O_PER_LAYER: opt.per_layer = true; break;
        case O_BINS: opt.bins = (int)cli_int("--bins", optarg, 1, 10000); break;
        case 'f':
            if (!strcmp(optarg, "tsv")) opt.tsv = true;
            else if (strcmp(optarg, "png")) cli_usage_error("--format: png or tsv, not '%s'", optarg);
            break;
        case 's': parse_size(optarg, &opt.width, &opt.height), opt.size_given = true; break;
        case 't': opt.title = optarg; break;
        case 'o': opt.output = optarg; break;
        case 'h': usage(); return EXIT_OK;
        case 'V': cli_version();
        default: cli_usage_error("unknown option");
        }
    }
    int na = argc - optind;
    char **args = argv + optind;
    if (na < 1) cli_usage_error("which picture? filters, maps or gamma");
    const char *mode = args[0];
    int mbit = !strcmp(mode, "filters") ? M_FILTERS : !strcmp(mode, "maps") ? M_MAPS : !strcmp(mode, "gamma") ? M_GAMMA : 0;
    if (!mbit) cli_usage_error("unknown picture '%s' (filters, maps or gamma)", mode);
    for (int c = 0; c < 512; c++)
        if (given[c] && !(option_modes(c) & mbit)) cli_usage_error("--%s does not apply to %s", given_name[c], mode);
    cli_install_signals();
    atexit(remove_temps);
    if (mbit == M_FILTERS) {
        if (na != 2) cli_usage_error("filters takes one checkpoint stream");
        mode_filters(&opt, args[1]);
    } else if (mbit == M_MAPS) {
        if (na != 3) cli_usage_error("maps takes a checkpoint stream and a dataset stream");
        if (!strcmp(args[1], "-") && !strcmp(args[2], "-")) cli_usage_error("only one input can come from stdin");
        mode_maps(&opt, args[1], args[2]);
    } else {
        if (na < 2) cli_usage_error("gamma takes one or more checkpoint streams");
        mode_gamma(&opt, args + 1, na - 1);
    }
    return EXIT_OK;
}
