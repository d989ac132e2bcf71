/* cifar-subset: selects part of a dataset stream (the first N, a balanced random sample,
 * some classes, everything after the first N) and optionally splits off a validation part.
 * Streams with bounded memory: one chunk in and out, plus K records per class for
 * --per-class; a held-out split of a selection of unknown size is spooled to a temporary
 * file, not kept in memory. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dataset.h"
#include "rng.h"
#include "subset.h"

_Noreturn static void usage(void) {
    printf("usage: %s [OPTIONS] [INPUT|-]\n"
           "\n"
           "Reads a dataset stream (stdin unless INPUT) and writes the selected records as a\n"
           "dataset stream (stdout unless -o), in input order. Selection steps, in this order:\n"
           "--classes filters, then --skip drops, then --first takes, then --per-class samples.\n"
           "Prints a one-line summary on stderr (records in, out, per class).\n"
           "\n"
           "  -c, --classes LIST     keep only these classes: names or indices, e.g. cat,dog or 3,5\n"
           "  -r, --relabel          with --classes: labels become 0..k-1 in LIST's order and the\n"
           "                         header's class names follow (default: labels and names stay)\n"
           "  -k, --skip N           drop the first N records (the rest of the data after --first N)\n"
           "  -f, --first N          keep the first N records (the seed's subsets: 10000 train, 2000 test)\n"
           "  -p, --per-class K      keep K records of each class, chosen at random (reservoir\n"
           "                         sampling; a class with fewer keeps all, with a warning)\n"
           "  -s, --seed S           seed for --per-class and --holdout-random (default 1); same\n"
           "                         seed and input, same bytes\n"
           "      --holdout N        send N records of the selection to --holdout-out FILE: the last N,\n"
           "                         or N at random with --holdout-random; the rest go to the main output\n"
           "      --holdout-out FILE the held-out part (both outputs are written whole or not at all)\n"
           "      --holdout-random   choose the held-out records at random (with --seed)\n"
           "  -o, --output FILE      write FILE (whole or not at all) instead of stdout\n"
           "  -q, --quiet            no summary\n"
           "  -h, --help             this help\n"
           "  -V, --version          version\n"
           "\n"
           "The output header's count is exact when it can be known before the records are\n"
           "written; otherwise (e.g. --classes without --per-class) it is nil and the trailer\n"
           "holds the count. Exit status: 0 ok, 1 bad input or write error, 2 usage error.\n",
           cli_prog);
    exit(EXIT_OK);
}

#define NONE UINT64_MAX

typedef struct options {
    const char *input, *output, *hold_path, *classes;
    bool relabel, hold_random, quiet, have_per_class;
    uint64_t skip, first, per_class, holdout, seed;
} options;

/* One output: its file and its stream writer, begun once the header's count is known. */
typedef struct sink {
    cli_out *o;
    ds_writer w;
    bool begun;
    uint64_t n, per_label[DS_MAXCLASS];
} sink;

typedef struct ctx {
    options opt;
    ds_header in, out;
    int map[DS_MAXCLASS];   /* input label -> output label, or -1 when filtered out */
    uint64_t m;             /* records in the selection (when known) */
    bool m_known;
    uint64_t routed;        /* selection records sent to an output so far */
    uint8_t *hold_bits;     /* --holdout-random: which of the m are held out */
    FILE *spool;            /* --holdout of a selection of unknown size: the selection */
    uint64_t spooled;
    sink main, hold;
} ctx;

static void sink_begin(sink *s, const ds_header *h, uint64_t count, const char *what) {
    ds_header hh = *h;
    hh.count = count;
    if (what) {
        size_t len = strlen(hh.source);
        snprintf(hh.source + len, sizeof hh.source - len, "%s", what);
    }
    ds_write_begin(&s->w, s->o->fd, &hh);
    s->begun = true;
}

static void sink_end(sink *s, const char *name) {
    if (ds_write_end(&s->w) != 0) {
        if (errno == EINVAL) cli_die("internal error: %s: header count differs from the records written", name);
        cli_die("%s: write error: %s", name, strerror(s->w.w.err ? s->w.w.err : errno));
    }
    ds_writer_free(&s->w);
}

/* Starts the outputs once the selection's size is known (or known to be unknown). */
static void begin_outputs(ctx *c) {
    const options *o = &c->opt;
    if (!o->hold_path) {
        sink_begin(&c->main, &c->out, c->m_known ? c->m : DS_COUNT_UNKNOWN, NULL);
        return;
    }
    if (o->holdout > c->m)
        cli_die("--holdout %" PRIu64 ": the selection holds only %" PRIu64 " records", o->holdout, c->m);
    if (o->hold_random) {
        c->hold_bits = calloc(c->m / 8 + 1, 1);
        if (!c->hold_bits) cli_die("out of memory");
        rng r;
        rng_seed(&r, o->seed, 2);
        subset_choose(&r, c->m, o->holdout, c->hold_bits);
    }
    sink_begin(&c->main, &c->out, c->m - o->holdout, NULL);
    sink_begin(&c->hold, &c->out, o->holdout, " (held out)");
}

/* A record of the selection, in order, to the output it belongs to. */
static void route(ctx *c, uint8_t label, const uint8_t *px) {
    const options *o = &c->opt;
    uint64_t i = c->routed++;
    bool held = o->hold_path && (o->hold_random ? subset_bit(c->hold_bits, i) : i >= c->m - o->holdout);
    sink *s = held ? &c->hold : &c->main;
    ds_write(&s->w, label, px);
    s->n++;
    s->per_label[label]++;
}

static void spool_put(ctx *c, uint8_t label, const uint8_t *px) {
    size_t ib = ds_image_bytes(&c->in);
    if (fwrite(&label, 1, 1, c->spool) != 1 || fwrite(px, 1, ib, c->spool) != ib)
        cli_die("temporary spool file: write error: %s", strerror(errno));
    c->spooled++;
}

static void spool_replay(ctx *c) {
    size_t ib = ds_image_bytes(&c->in);
    uint8_t *px = malloc(ib + 1);
    if (!px) cli_die("out of memory");
    if (fflush(c->spool) != 0 || fseek(c->spool, 0, SEEK_SET) != 0)
        cli_die("temporary spool file: %s", strerror(errno));
    for (uint64_t i = 0; i < c->spooled; i++) {
        if (fread(px, 1, ib + 1, c->spool) != ib + 1) cli_die("temporary spool file: read error");
        route(c, px[0], px + 1);
    }
    free(px);
    fclose(c->spool);
}

/* Output label of an input label, or -1. */
static int out_label(const ctx *c, int label) {
    if (c->map[label] < 0) return -1;
    return c->opt.relabel ? c->map[label] : label;
}

/* Builds the output header: classes (relabelled or not) and provenance. */
static void make_out_header(ctx *c, int k) {
    const options *o = &c->opt;
    c->out = c->in;
    if (o->relabel) {
        c->out.nclasses = k;
        for (int l = 0; l < c->in.nclasses; l++)
            if (c->map[l] >= 0) memcpy(c->out.classes[c->map[l]], c->in.classes[l], DS_NAMELEN);
    }
    char what[256] = "", *p = what;
    size_t left = sizeof what;
#define ADD(...) do { int n_ = snprintf(p, left, __VA_ARGS__); if (n_ > 0 && (size_t)n_ < left) { p += n_; left -= (size_t)n_; } } while (0)
    if (o->classes) ADD(" --classes %.64s%s", o->classes, o->relabel ? " --relabel" : "");
    if (o->skip) ADD(" --skip %" PRIu64, o->skip);
    if (o->first != NONE) ADD(" --first %" PRIu64, o->first);
    if (o->have_per_class) ADD(" --per-class %" PRIu64, o->per_class);
    if (o->hold_path) ADD(" --holdout %" PRIu64 "%s", o->holdout, o->hold_random ? " --holdout-random" : "");
    if (o->have_per_class || o->hold_random) ADD(" --seed %" PRIu64, o->seed);
#undef ADD
    char src[1024];
    snprintf(src, sizeof src, "%.700s%scifar-subset%s", c->in.source, c->in.source[0] ? " | " : "", what);
    /* too long for the header: keep the end (the latest steps), cut at a UTF-8 boundary */
    size_t n = strlen(src), cap = sizeof c->out.source;
    const char *tail = src;
    if (n >= cap) {
        tail = src + n - (cap - 4);
        while (((unsigned char)*tail & 0xC0) == 0x80) tail++;
        snprintf(c->out.source, cap, "...%s", tail);
    } else {
        memcpy(c->out.source, src, n + 1);
    }
}

static void summary(const ctx *c, uint64_t nin) {
    char line[8192];
    size_t len = 0;
#define ADD(...) do { if (len < sizeof line) len += (size_t)snprintf(line + len, sizeof line - len, __VA_ARGS__); } while (0)
    ADD("%" PRIu64 " records in, %" PRIu64 " out", nin, c->main.n);
    const sink *ss[2] = {&c->main, &c->hold};
    for (int k = 0; k < (c->opt.hold_path ? 2 : 1); k++) {
        if (k == 1) ADD("; %" PRIu64 " held out to %s", c->hold.n, c->opt.hold_path);
        const char *sep = " (";
        for (int l = 0; l < c->out.nclasses; l++) {
            if (c->opt.classes && !c->opt.relabel && c->map[l] < 0) continue;
            ADD("%s%s %" PRIu64, sep, c->out.classes[l], ss[k]->per_label[l]);
            sep = ", ";
        }
        if (sep[0] == ',') ADD(")");
    }
#undef ADD
    cli_warn("%s", line);
}

static void parse(int argc, char **argv, options *o) {
    enum { OPT_HOLDOUT = 256, OPT_HOLD_OUT, OPT_HOLD_RANDOM };
    static const struct option opts[] = {
        {"classes", required_argument, 0, 'c'},     {"relabel", no_argument, 0, 'r'},
        {"skip", required_argument, 0, 'k'},        {"first", required_argument, 0, 'f'},
        {"per-class", required_argument, 0, 'p'},   {"seed", required_argument, 0, 's'},
        {"holdout", required_argument, 0, OPT_HOLDOUT}, {"holdout-out", required_argument, 0, OPT_HOLD_OUT},
        {"holdout-random", no_argument, 0, OPT_HOLD_RANDOM}, {"output", required_argument, 0, 'o'},
        {"quiet", no_argument, 0, 'q'},             {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},           {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    o->first = NONE;
    o->seed = 1;
    bool have_holdout = false, have_seed = false;
    int ch;
    while ((ch = getopt_long(argc, argv, "c:rk:f:p:s:o:qhV", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': o->classes = optarg; break;
        case 'r': o->relabel = true; break;
        case 'k': o->skip = (uint64_t)cli_int("--skip", optarg, 0, INT64_MAX); break;
        case 'f': o->first = (uint64_t)cli_int("--first", optarg, 0, INT64_MAX); break;
        case 'p':
            o->per_class = (uint64_t)cli_int("--per-class", optarg, 1, 1 << 24);
            o->have_per_class = true;
            break;
        case 's': o->seed = (uint64_t)cli_int("--seed", optarg, 0, INT64_MAX); have_seed = true; break;
        case OPT_HOLDOUT: o->holdout = (uint64_t)cli_int("--holdout", optarg, 1, (1LL << 31) - 1); have_holdout = true; break;
        case OPT_HOLD_OUT: o->hold_path = optarg; break;
        case OPT_HOLD_RANDOM: o->hold_random = true; break;
        case 'o': o->output = optarg; break;
        case 'q': o->quiet = true; break;
        case 'h': usage();
        case 'V': cli_version();
        default: cli_usage_error("unknown option");
        }
    }
    if (optind < argc) o->input = argv[optind++];
    if (optind < argc) cli_usage_error("unexpected argument '%s'", argv[optind]);
    if (o->relabel && !o->classes) cli_usage_error("--relabel needs --classes");
    if (have_holdout != (o->hold_path != NULL)) cli_usage_error("--holdout N and --holdout-out FILE go together");
    if (o->hold_random && !have_holdout) cli_usage_error("--holdout-random needs --holdout N");
    if (have_seed && !o->have_per_class && !o->hold_random)
        cli_usage_error("--seed is used only by --per-class and --holdout-random");
    if (o->hold_path && strcmp(o->hold_path, "-") == 0) cli_usage_error("--holdout-out must name a file");
    if (o->hold_path && o->output && strcmp(o->hold_path, o->output) == 0)
        cli_usage_error("--holdout-out and --output name the same file");
}

int main(int argc, char **argv) {
    cli_init(argv[0]);
    ctx c;
    memset(&c, 0, sizeof c);
    options *o = &c.opt;
    parse(argc, argv, o);
    cli_install_signals();

    c.main.o = cli_out_open(o->output, true);
    if (o->hold_path) c.hold.o = cli_out_open(o->hold_path, true);
    FILE *f = cli_open_in(o->input);
    ds_reader d;
    if (ds_read_begin(&d, f, o->input && strcmp(o->input, "-") != 0 ? o->input : "stdin") != 0) cli_die("%s", d.r.err);
    c.in = d.h;

    int k = c.in.nclasses;
    if (o->classes) {
        char err[256];
        k = subset_classes(o->classes, &c.in, c.map, err, sizeof err);
        if (k < 0) cli_usage_error("%s", err);
    } else {
        for (int l = 0; l < DS_MAXCLASS; l++) c.map[l] = l < c.in.nclasses ? l : -1;
    }
    make_out_header(&c, k);

    /* The selection's size is known up front only when no filter depends on the labels. */
    bool streaming = !o->have_per_class;
    if (streaming && !o->classes && c.in.count != DS_COUNT_UNKNOWN) {
        uint64_t after_skip = c.in.count > o->skip ? c.in.count - o->skip : 0;
        c.m = o->first < after_skip ? o->first : after_skip;
        c.m_known = true;
    }
    if (streaming && o->hold_path && !c.m_known) {
        c.spool = tmpfile();
        if (!c.spool) cli_die("cannot create a temporary spool file: %s", strerror(errno));
    }
    if (streaming && !c.spool) begin_outputs(&c);

    reservoir rs;
    rng r;
    res_init(&rs, o->per_class, ds_image_bytes(&c.in));
    rng_seed(&r, o->seed, 1);
    uint64_t nin = 0, filtered = 0, taken = 0;
    size_t ib = ds_image_bytes(&c.in);
    for (;;) {
        const uint8_t *lab, *pix;
        size_t n;
        int rc = ds_read_chunk(&d, &lab, &pix, &n);
        if (rc < 0) cli_die("%s", d.r.err);
        if (rc == 0) break;
        for (size_t i = 0; i < n; i++, nin++) {
            int l = out_label(&c, lab[i]);
            if (l < 0) continue;
            if (filtered++ < o->skip) continue;
            if (taken >= o->first) continue;
            taken++;
            if (o->have_per_class) {
                if (res_add(&rs, &r, lab[i], taken - 1, (uint8_t)l, pix + i * ib) != 0) cli_die("out of memory");
            } else if (c.spool) {
                spool_put(&c, (uint8_t)l, pix + i * ib);
            } else {
                route(&c, (uint8_t)l, pix + i * ib);
            }
        }
    }
    ds_reader_free(&d);
    cli_close_in(f);

    if (o->have_per_class) {
        size_t n;
        res_entry *e = res_sorted(&rs, &n);
        if (!e && n) cli_die("out of memory");
        for (int l = 0; l < c.in.nclasses; l++)
            if (c.map[l] >= 0 && rs.cls[l].seen < o->per_class)
                cli_warn("warning: class %s has %" PRIu64 " records, fewer than --per-class %" PRIu64 ": took all",
                         c.in.classes[l], rs.cls[l].seen, o->per_class);
        c.m = n;
        c.m_known = true;
        begin_outputs(&c);
        for (size_t i = 0; i < n; i++) route(&c, res_label(&rs, &e[i]), res_pixels(&rs, &e[i]));
        free(e);
    } else if (c.spool) {
        c.m = c.spooled;
        c.m_known = true;
        begin_outputs(&c);
        spool_replay(&c);
    }
    res_free(&rs);

    sink_end(&c.main, o->output ? o->output : "stdout");
    if (o->hold_path) sink_end(&c.hold, o->hold_path);
    if (o->hold_path) cli_out_commit(c.hold.o);
    cli_out_commit(c.main.o);
    free(c.hold_bits);
    if (!o->quiet) summary(&c, nin);
    return EXIT_OK;
}
