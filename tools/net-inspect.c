/* net-inspect: a readable (or TSV / JSON) summary of any stream, dataset or checkpoint,
 * after checking all of it: trailers, counts and CRC-32. Datasets are read chunk by chunk
 * (bounded memory); checkpoints one section at a time. Nothing is printed unless the whole
 * stream checks out. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "cli.h"
#include "dataset.h"

_Noreturn static void usage(void) {
    printf("usage: %s [OPTIONS] [INPUT|-]\n"
           "\n"
           "Checks a whole stream (stdin unless INPUT) and summarises it on stdout; the kind\n"
           "(dataset or checkpoint) is taken from the header. A dataset: its header (version,\n"
           "shape, classes, count, source), the records and a class histogram. A checkpoint\n"
           "stream: for each checkpoint, seed, epoch, step, the arch and state maps, and per\n"
           "tensor its name, dtype, shape, trainable, role, element count and, for f32, f64 and\n"
           "u8, mean, std, min and max over the finite values (with counts of NaN and Inf), then\n"
           "totals (parameters, trainable parameters).\n"
           "\n"
           "  -f, --format F     text (default), tsv (one table with a header row: tensors, or the\n"
           "                     class histogram) or json\n"
           "  -p, --pick N       only checkpoint N (numbered from 0)\n"
           "  -l, --last         only the last checkpoint\n"
           "  -t, --tensors GLOB only tensors whose name matches GLOB (shell pattern)\n"
           "      --verify       only check the stream: print \"ok\" (exit 0) or the error (exit 1)\n"
           "  -h, --help         this help\n"
           "  -V, --version      version\n"
           "\n"
           "Exit status: 0 ok, 1 bad stream (the message names the byte offset), 2 usage error.\n",
           cli_prog);
    exit(EXIT_OK);
}

enum { FMT_TEXT, FMT_TSV, FMT_JSON };

typedef struct options {
    const char *input, *name, *glob;
    int format;
    int64_t pick;   /* -1: all */
    bool last, verify;
} options;

/* ---- reading the header ahead: a FILE that replays the bytes already read ----------- */
typedef struct peek {
    FILE *f;
    char *buf;
    size_t len, pos;
} peek;

static ssize_t peek_read(void *cookie, char *out, size_t n) {
    peek *p = cookie;
    if (p->pos < p->len) {
        size_t k = p->len - p->pos < n ? p->len - p->pos : n;
        memcpy(out, p->buf + p->pos, k);
        p->pos += k;
        return (ssize_t)k;
    }
    size_t k = fread(out, 1, n, p->f);
    if (k == 0 && ferror(p->f)) return -1;
    return (ssize_t)k;
}

/* Reads ahead until the first object is whole and returns its "kind" in kind[] ("" when it
 * cannot be told: the stream's reader then reports what is wrong). */
static FILE *open_peeked(FILE *f, peek *p, char *kind, size_t cap) {
    memset(p, 0, sizeof *p);
    p->f = f;
    kind[0] = 0;
    size_t cap_buf = 0;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    while (p->len < (16u << 20)) {
        if (p->len == cap_buf) {
            cap_buf = cap_buf ? cap_buf * 2 : 65536;
            char *nb = realloc(p->buf, cap_buf);
            if (!nb) cli_die("out of memory");
            p->buf = nb;
        }
        size_t k = fread(p->buf + p->len, 1, cap_buf - p->len, f);
        p->len += k;
        size_t off = 0, whole = 0;
        uint64_t entries;
        int x = mp_extent(p->buf, p->len, &whole, &entries);   /* unpacked only once whole */
        if (x < 0) break;
        if (x == 0) {
            if (k == 0) break;
            continue;
        }
        msgpack_unpack_return rc = msgpack_unpack_next(&u, p->buf, whole, &off);
        if (rc == MSGPACK_UNPACK_SUCCESS || rc == MSGPACK_UNPACK_EXTRA_BYTES) {
            const msgpack_object *o = mp_get(&u.data, "kind");
            if (o && o->type == MSGPACK_OBJECT_STR && o->via.str.size < cap) {
                if (o->via.str.size) memcpy(kind, o->via.str.ptr, o->via.str.size);   /* ptr may be NULL when empty */
                kind[o->via.str.size] = 0;
            }
            break;
        }
        if (rc != MSGPACK_UNPACK_CONTINUE || k == 0) break;
    }
    msgpack_unpacked_destroy(&u);
    FILE *g = fopencookie(p, "rb", (cookie_io_functions_t){.read = peek_read});
    if (!g) cli_die("%s", strerror(errno));
    return g;
}

/* ---- printing --------------------------------------------------------------------- */
/* Text and TSV: control characters (tabs, newlines) become '?'. */
static void put_plain(FILE *o, const char *s) {
    for (; *s; s++) fputc((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s, o);
}

/* Length of the valid UTF-8 sequence at s, or 0. */
static int utf8_len(const unsigned char *s) {
    int n = s[0] < 0x80 ? 1 : (s[0] >> 5) == 6 ? 2 : (s[0] >> 4) == 14 ? 3 : (s[0] >> 3) == 30 ? 4 : 0;
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    if (n == 2 && s[0] < 0xC2) return 0;
    if (n == 3 && ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] >= 0xA0))) return 0;
    if (n == 4 && ((s[0] == 0xF0 && s[1] < 0x90) || s[0] > 0xF4 || (s[0] == 0xF4 && s[1] >= 0x90))) return 0;
    return n;
}

static void put_json_str(FILE *o, const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', o);
    while (*p) {
        if (*p == '"' || *p == '\\') {
            fprintf(o, "\\%c", *p++);
        } else if (*p < 0x20 || *p == 0x7f) {
            fprintf(o, "\\u%04x", *p++);
        } else {
            int n = utf8_len(p);
            if (n == 0) {
                fputs("\\ufffd", o); /* not UTF-8: replacement character */
                p++;
            } else {
                fwrite(p, 1, (size_t)n, o);
                p += n;
            }
        }
    }
    fputc('"', o);
}

static void put_json_num(FILE *o, double v) {
    if (isfinite(v)) fprintf(o, "%.10g", v);
    else fputs("null", o);
}

static const char *fmt_shape(const int64_t *shape, int ndim, char *buf, size_t cap) {
    if (ndim == 0) return "scalar";
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < ndim && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%" PRId64, i ? "x" : "", shape[i]);
    return buf;
}

/* ---- datasets --------------------------------------------------------------------- */
static void inspect_dataset(FILE *f, const options *opt, FILE *o) {
    ds_reader d;
    uint64_t hist[DS_MAXCLASS] = {0};
    if (ds_read_begin(&d, f, opt->name) != 0) cli_die("%s", d.r.err);
    if (opt->pick >= 0 || opt->last || opt->glob)
        cli_usage_error("--pick, --last and --tensors apply to checkpoint streams; %s is a dataset", opt->name);
    int rc;
    const uint8_t *lab, *pix;
    size_t n;
    while ((rc = ds_read_chunk(&d, &lab, &pix, &n)) == 1)
        for (size_t i = 0; i < n; i++) hist[lab[i]]++;
    if (rc < 0) cli_die("%s", d.r.err);
    const ds_header *h = &d.h;
    if (opt->verify) {
        fputs("ok\n", o);
    } else if (opt->format == FMT_TSV) {
        fputs("label\tclass\tcount\n", o);
        for (int c = 0; c < h->nclasses; c++) {
            fprintf(o, "%d\t", c);
            put_plain(o, h->classes[c]);
            fprintf(o, "\t%" PRIu64 "\n", hist[c]);
        }
    } else if (opt->format == FMT_JSON) {
        fputs("{\"stream\": ", o);
        put_json_str(o, opt->name);
        fprintf(o, ", \"kind\": \"dataset\", \"version\": %" PRId64 ", \"shape\": [%d, %d, %d], \"classes\": [",
                d.version, h->c, h->h, h->w);
        for (int c = 0; c < h->nclasses; c++) {
            if (c) fputs(", ", o);
            put_json_str(o, h->classes[c]);
        }
        fputs("], \"count\": ", o);
        if (h->count == DS_COUNT_UNKNOWN) fputs("null", o);
        else fprintf(o, "%" PRIu64, h->count);
        fputs(", \"source\": ", o);
        put_json_str(o, h->source);
        fprintf(o, ", \"records\": %" PRIu64 ", \"histogram\": [", d.read);
        for (int c = 0; c < h->nclasses; c++) {
            fprintf(o, "%s{\"label\": %d, \"class\": ", c ? ", " : "", c);
            put_json_str(o, h->classes[c]);
            fprintf(o, ", \"count\": %" PRIu64 "}", hist[c]);
        }
        fputs("]}\n", o);
    } else {
        fputs("stream:   ", o);
        put_plain(o, opt->name);
        fprintf(o, "\nkind:     dataset\nversion:  %" PRId64 "\nshape:    %dx%dx%d (C x H x W)\nclasses:  %d (",
                d.version, h->c, h->h, h->w, h->nclasses);
        for (int c = 0; c < h->nclasses; c++) {
            if (c) fputs(", ", o);
            put_plain(o, h->classes[c]);
        }
        fputs(")\ncount:    ", o);
        if (h->count == DS_COUNT_UNKNOWN) fputs("nil (unknown in advance; trailer authoritative)", o);
        else fprintf(o, "%" PRIu64, h->count);
        fputs("\nsource:   ", o);
        put_plain(o, h->source);
        fprintf(o, "\nrecords:  %" PRIu64 " (trailer, count and CRC-32 checked)\nhistogram:\n", d.read);
        int w = 5;
        for (int c = 0; c < h->nclasses; c++)
            if ((int)strlen(h->classes[c]) > w) w = (int)strlen(h->classes[c]);
        for (int c = 0; c < h->nclasses; c++) {
            fprintf(o, "  %3d  ", c);
            put_plain(o, h->classes[c]);
            fprintf(o, "%*s %8" PRIu64 "  %5.1f%%\n", w - (int)strlen(h->classes[c]), "", hist[c],
                    d.read ? 100.0 * (double)hist[c] / (double)d.read : 0.0);
        }
    }
    ds_reader_free(&d);
}

/* ---- checkpoints ------------------------------------------------------------------ */
typedef struct stats {
    bool has;       /* a numeric dtype with stats */
    uint64_t finite, nan, inf;
    double mean, std, min, max;
} stats;

static double elem(const ck_tensor *t, size_t i) {
    if (t->dtype == DT_F32) {
        float v;
        memcpy(&v, (const char *)t->data + 4 * i, 4);
        return v;
    }
    if (t->dtype == DT_F64) {
        double v;
        memcpy(&v, (const char *)t->data + 8 * i, 8);
        return v;
    }
    return ((const uint8_t *)t->data)[i];
}

static stats tensor_stats(const ck_tensor *t) {
    stats s = {0};
    s.mean = s.std = s.min = s.max = NAN;
    if (t->dtype != DT_F32 && t->dtype != DT_F64 && t->dtype != DT_U8) return s;
    s.has = true;
    double sum = 0;
    for (size_t i = 0; i < t->numel; i++) {
        double v = elem(t, i);
        if (isnan(v)) { s.nan++; continue; }
        if (isinf(v)) { s.inf++; continue; }
        if (s.finite == 0 || v < s.min) s.min = v;
        if (s.finite == 0 || v > s.max) s.max = v;
        s.finite++;
        sum += v;
    }
    if (s.finite == 0) return s;
    s.mean = sum / (double)s.finite;
    double ss = 0;
    for (size_t i = 0; i < t->numel; i++) {
        double v = elem(t, i);
        if (isfinite(v)) ss += (v - s.mean) * (v - s.mean);
    }
    s.std = sqrt(ss / (double)s.finite);
    return s;
}

static void put_kv_text(FILE *o, const kvlist *l) {
    for (int i = 0; i < l->n; i++) {
        fputc(' ', o);
        put_plain(o, l->v[i].key);
        fputc('=', o);
        switch (l->v[i].type) {
        case KV_INT: fprintf(o, "%" PRId64, l->v[i].i); break;
        case KV_DOUBLE: fprintf(o, "%.10g", l->v[i].d); break;
        case KV_STR: put_plain(o, l->v[i].s); break;
        }
    }
    if (l->n == 0) fputs(" (empty)", o);
    fputc('\n', o);
}

static void put_kv_json(FILE *o, const kvlist *l) {
    fputc('{', o);
    for (int i = 0; i < l->n; i++) {
        if (i) fputs(", ", o);
        put_json_str(o, l->v[i].key);
        fputs(": ", o);
        switch (l->v[i].type) {
        case KV_INT: fprintf(o, "%" PRId64, l->v[i].i); break;
        case KV_DOUBLE: isfinite(l->v[i].d) ? fprintf(o, "%.17g", l->v[i].d) : fputs("null", o); break;
        case KV_STR: put_json_str(o, l->v[i].s); break;
        }
    }
    fputc('}', o);
}

static void put_stat_text(FILE *o, bool has, double v) {
    if (has && isfinite(v)) fprintf(o, " %12.6g", v);
    else fprintf(o, " %12s", "-");
}

/* One checkpoint's summary; `first` is false when another was printed before it. */
static void print_checkpoint(FILE *o, const options *opt, const checkpoint *c, int index, bool first) {
    char shp[160];
    int shown = 0, w = 4;
    for (int i = 0; i < c->nt; i++)
        if (!opt->glob || cli_glob(opt->glob, c->t[i].name)) {
            shown++;
            if ((int)strlen(c->t[i].name) > w) w = (int)strlen(c->t[i].name);
        }
    uint64_t params = ck_count(c, "param", false), trainable = ck_count(c, "param", true);
    if (opt->format == FMT_JSON) {
        fprintf(o, "%s\n  {\"index\": %d, \"seed\": %" PRIu64 ", \"epoch\": %" PRId64 ", \"step\": %" PRId64
                   ", \"arch\": ",
                first ? "" : ",", index, c->seed, c->epoch, c->step);
        put_kv_json(o, &c->arch);
        fputs(", \"state\": ", o);
        put_kv_json(o, &c->state);
        fprintf(o, ", \"totals\": {\"tensors\": %d, \"shown\": %d, \"params\": %" PRIu64 ", \"trainable_params\": %" PRIu64
                   "}, \"tensors\": [",
                c->nt, shown, params, trainable);
        bool any = false;
        for (int i = 0; i < c->nt; i++) {
            const ck_tensor *t = &c->t[i];
            if (opt->glob && !cli_glob(opt->glob, t->name)) continue;
            stats s = tensor_stats(t);
            fputs(any ? ",\n    {\"name\": " : "\n    {\"name\": ", o);
            any = true;
            put_json_str(o, t->name);
            fprintf(o, ", \"dtype\": \"%s\", \"shape\": [", dtype_name(t->dtype));
            for (int d = 0; d < t->ndim; d++) fprintf(o, "%s%" PRId64, d ? ", " : "", t->shape[d]);
            fprintf(o, "], \"trainable\": %s, \"role\": ", t->trainable ? "true" : "false");
            put_json_str(o, t->role);
            fprintf(o, ", \"numel\": %zu", t->numel);
            if (s.has) {
                fputs(", \"mean\": ", o);
                put_json_num(o, s.mean);
                fputs(", \"std\": ", o);
                put_json_num(o, s.std);
                fputs(", \"min\": ", o);
                put_json_num(o, s.min);
                fputs(", \"max\": ", o);
                put_json_num(o, s.max);
                fprintf(o, ", \"nan\": %" PRIu64 ", \"inf\": %" PRIu64, s.nan, s.inf);
            }
            fputc('}', o);
        }
        fputs(any ? "\n  ]}" : "]}", o);
        return;
    }
    if (opt->format == FMT_TSV) {
        for (int i = 0; i < c->nt; i++) {
            const ck_tensor *t = &c->t[i];
            if (opt->glob && !cli_glob(opt->glob, t->name)) continue;
            stats s = tensor_stats(t);
            fprintf(o, "%d\t%" PRId64 "\t%" PRId64 "\t", index, c->epoch, c->step);
            put_plain(o, t->name);
            fprintf(o, "\t%s\t%s\t%d\t", dtype_name(t->dtype), fmt_shape(t->shape, t->ndim, shp, sizeof shp),
                    t->trainable ? 1 : 0);
            put_plain(o, t->role);
            fprintf(o, "\t%zu", t->numel);
            double v[4] = {s.mean, s.std, s.min, s.max};
            for (int k = 0; k < 4; k++) {
                if (s.has && isfinite(v[k])) fprintf(o, "\t%.10g", v[k]);
                else fputs("\t-", o);
            }
            if (s.has) fprintf(o, "\t%" PRIu64 "\t%" PRIu64 "\n", s.nan, s.inf);
            else fputs("\t-\t-\n", o);
        }
        return;
    }
    if (!first) fputc('\n', o);
    fprintf(o, "checkpoint %d: seed %" PRIu64 ", epoch %" PRId64 ", step %" PRId64 "\n  arch:", index, c->seed,
            c->epoch, c->step);
    put_kv_text(o, &c->arch);
    fputs("  state:", o);
    put_kv_text(o, &c->state);
    fprintf(o, "  tensors: %d", c->nt);
    if (opt->glob) fprintf(o, " (%d shown)", shown);
    fprintf(o, ", parameters: %" PRIu64 ", trainable: %" PRIu64 "\n", params, trainable);
    if (shown == 0) return;
    fprintf(o, "  %-*s %-5s %-14s %-9s %-6s %10s %12s %12s %12s %12s\n", w, "name", "dtype", "shape", "trainable",
            "role", "numel", "mean", "std", "min", "max");
    for (int i = 0; i < c->nt; i++) {
        const ck_tensor *t = &c->t[i];
        if (opt->glob && !cli_glob(opt->glob, t->name)) continue;
        stats s = tensor_stats(t);
        fputs("  ", o);
        put_plain(o, t->name);
        fprintf(o, "%*s %-5s %-14s %-9s ", w - (int)strlen(t->name), "", dtype_name(t->dtype),
                fmt_shape(t->shape, t->ndim, shp, sizeof shp), t->trainable ? "yes" : "no");
        put_plain(o, t->role);
        fprintf(o, "%*s %10zu", 6 - (int)strlen(t->role) > 0 ? 6 - (int)strlen(t->role) : 0, "", t->numel);
        put_stat_text(o, s.has, s.mean);
        put_stat_text(o, s.has, s.std);
        put_stat_text(o, s.has, s.min);
        put_stat_text(o, s.has, s.max);
        if (s.nan || s.inf) fprintf(o, "  NaN %" PRIu64 ", Inf %" PRIu64, s.nan, s.inf);
        fputc('\n', o);
    }
}

static void inspect_checkpoints(FILE *f, const options *opt, FILE *o) {
    sreader r;
    checkpoint *c, *last = NULL;
    int n = 0, rc, printed = 0;
    sr_init(&r, f, opt->name);
    if (opt->format == FMT_TSV && !opt->verify)
        fputs("checkpoint\tepoch\tstep\tname\tdtype\tshape\ttrainable\trole\tnumel\tmean\tstd\tmin\tmax\tnan\tinf\n", o);
    if (opt->format == FMT_JSON && !opt->verify) {
        fputs("{\"stream\": ", o);
        put_json_str(o, opt->name);
        fputs(", \"kind\": \"checkpoint\", \"checkpoints\": [", o);
    }
    while ((rc = ck_read_next(&r, &c)) == 1) {
        if (opt->last) {
            ck_free(last);
            last = c;
        } else {
            if (!opt->verify && (opt->pick < 0 || opt->pick == n)) print_checkpoint(o, opt, c, n, printed++ == 0);
            ck_free(c);
        }
        n++;
    }
    if (rc < 0) cli_die("%s", r.err);
    if (n == 0) cli_die("%s: at byte 0: empty input: no checkpoint stream", opt->name);
    if (opt->pick >= n)
        cli_die("%s: --pick %" PRId64 ": the stream holds %d checkpoint%s (numbered from 0)", opt->name, opt->pick, n,
                n == 1 ? "" : "s");
    if (last && !opt->verify) print_checkpoint(o, opt, last, n - 1, true);
    ck_free(last);
    if (opt->verify) fputs("ok\n", o);
    else if (opt->format == FMT_JSON) fprintf(o, "\n], \"count\": %d}\n", n);
    else if (opt->format == FMT_TEXT) fprintf(o, "\n%d checkpoint%s in the stream (trailers, counts and CRC-32 checked)\n", n, n == 1 ? "" : "s");
    sr_free(&r);
}

int main(int argc, char **argv) {
    cli_init(argv[0]);
    static const struct option opts[] = {{"format", required_argument, 0, 'f'}, {"pick", required_argument, 0, 'p'},
                                         {"last", no_argument, 0, 'l'},         {"tensors", required_argument, 0, 't'},
                                         {"verify", no_argument, 0, 'v'},      {"help", no_argument, 0, 'h'},
                                         {"version", no_argument, 0, 'V'},     {0, 0, 0, 0}};
    options opt = {.format = FMT_TEXT, .pick = -1};
    int ch;
    while ((ch = getopt_long(argc, argv, "f:p:lt:hV", opts, NULL)) != -1) {
        switch (ch) {
        case 'f':
            if (strcmp(optarg, "text") == 0) opt.format = FMT_TEXT;
            else if (strcmp(optarg, "tsv") == 0) opt.format = FMT_TSV;
            else if (strcmp(optarg, "json") == 0) opt.format = FMT_JSON;
            else cli_usage_error("--format: '%s' is not text, tsv or json", optarg);
            break;
        case 'p': opt.pick = cli_int("--pick", optarg, 0, 1 << 30); break;
        case 'l': opt.last = true; break;
        case 't': opt.glob = optarg; break;
        case 'v': opt.verify = true; break;
        case 'h': usage();
        case 'V': cli_version();
        default: cli_usage_error("unknown option");
        }
    }
    if (optind < argc) opt.input = argv[optind++];
    if (optind < argc) cli_usage_error("unexpected argument '%s'", argv[optind]);
    if (opt.pick >= 0 && opt.last) cli_usage_error("--pick and --last exclude each other");
    opt.name = opt.input && strcmp(opt.input, "-") != 0 ? opt.input : "stdin";

    FILE *in = cli_open_in(opt.input);
    peek p;
    char kind[32];
    FILE *f = open_peeked(in, &p, kind, sizeof kind);
    /* The summary goes to memory first: printed only when the whole stream checks out. */
    char *text = NULL;
    size_t len = 0;
    FILE *o = open_memstream(&text, &len);
    if (!o) cli_die("out of memory");
    if (strcmp(kind, "checkpoint") == 0) inspect_checkpoints(f, &opt, o);
    else inspect_dataset(f, &opt, o); /* also reports garbage, empty input, unknown kinds */
    fclose(o);
    fclose(f);
    free(p.buf);
    cli_close_in(in);
    if (fwrite(text, 1, len, stdout) != len || fflush(stdout) != 0) cli_die("write error on stdout: %s", strerror(errno));
    free(text);
    return EXIT_OK;
}
