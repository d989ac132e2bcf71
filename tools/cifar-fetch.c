/* cifar-fetch: downloads the CIFAR-10 binary release once into a cache, checks it (MD5,
 * gzip CRC, tar structure, record sizes, labels) and writes its train or test split as a
 * dataset stream. The archive is read once, streaming, with bounded memory. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cifar.h"
#include "cli.h"
#include "dataset.h"

_Noreturn static void usage(void) {
    printf("usage: %s [OPTIONS]\n"
           "\n"
           "Fetches the CIFAR-10 binary release (downloaded once into a cache), checks it and\n"
           "writes one split as a dataset stream (stdout unless -o): train = data_batch_1..5 in\n"
           "that order (50,000 records), test = test_batch (10,000). Class names come from the\n"
           "archive's batches.meta.txt. --split both writes the two in one pass over the archive.\n"
           "\n"
           "  -s, --split train|test|both  the split to write (default train); both: the train\n"
           "                           split to -o FILE and the test split to --test-output FILE\n"
           "  -o, --output FILE        write FILE (whole or not at all) instead of stdout\n"
           "      --test-output FILE   with --split both: where the test split goes\n"
           "  -u, --url URL|PATH       where the archive is: any URL libcurl takes (https://,\n"
           "                           file://, ...; downloaded into the cache) or a local path\n"
           "                           (read where it is); default\n"
           "                           %s\n"
           "  -c, --cache-dir DIR      the cache (default ${XDG_CACHE_HOME:-$HOME/.cache}/bnonly)\n"
           "      --allow-unofficial   accept an archive whose MD5 is not the official\n"
           "                           %s (it is then checked structurally;\n"
           "                           what it holds is reported on stderr)\n"
           "  -l, --list               print the archive's members as TSV (member, bytes, records)\n"
           "                           and write no stream\n"
           "      --check, --md5       print the archive's MD5 and whether it is the official one;\n"
           "                           exit 0 when it is, 1 when not\n"
           "  -q, --quiet              no summary or progress\n"
           "  -h, --help               this help\n"
           "  -V, --version            version\n"
           "\n"
           "The archive is checked as it is read: the MD5 of the file, the gzip CRC, the members\n"
           "cifar-10-batches-bin/data_batch_1..5.bin and test_batch.bin (present, a whole number\n"
           "of 3073-byte records, labels 0..9). A download goes to a temporary name and is kept\n"
           "only when complete and official (or with --allow-unofficial).\n"
           "Exit status: 0 ok, 1 download, checksum, archive or write error, 2 usage error.\n",
           cli_prog, CIFAR_URL, CIFAR_MD5);
    exit(EXIT_OK);
}

/* One output stream per split written: [0] the split asked for (train for both), [1] the
 * test split of --split both. */
typedef struct ctx {
    cli_out *o[2];
    ds_writer w[2];
    int nout;
    uint64_t first_count, delivered; /* records of output 0; records delivered so far */
    bool begun;
    const char *split, *archive;
    bool show_progress;
    const char *what;
} ctx;

static void on_progress(void *ud, uint64_t done, uint64_t total) {
    ctx *c = ud;
    if (c->show_progress) cli_progress(c->what, done, total);
}

static void begin_output(ctx *c, int k, const cifar_info *info, const char *split, uint64_t count) {
    ds_header h;
    ds_header_cifar10(&h, count);
    for (int i = 0; i < CIFAR_CLASSES; i++) snprintf(h.classes[i], DS_NAMELEN, "%s", info->classes[i]);
    const char *base = strrchr(c->archive, '/');
    base = base ? base + 1 : c->archive;
    snprintf(h.source, sizeof h.source, "CIFAR-10 %s split (%s) of %.120s", split,
             strcmp(split, "train") == 0 ? "data_batch_1..5" : "test_batch", base);
    ds_write_begin(&c->w[k], c->o[k]->fd, &h);
}

static int on_begin(void *ud, const cifar_info *info) {
    ctx *c = ud;
    if (c->nout == 2) {
        uint64_t train = 0;
        for (int m = 0; m < 5; m++) train += info->member[m].records;
        c->first_count = train;
        begin_output(c, 0, info, "train", train);
        begin_output(c, 1, info, "test", info->member[5].records);
    } else {
        c->first_count = info->split_records;
        begin_output(c, 0, info, c->split, info->split_records);
    }
    c->begun = true;
    return 0;
}

/* Records come in split order: for --split both, the train members and then test_batch. */
static int on_record(void *ud, uint8_t label, const uint8_t *pixels) {
    ctx *c = ud;
    ds_write(&c->w[c->delivered++ < c->first_count ? 0 : 1], label, pixels);
    return 0;
}

/* "data_batch_1.bin 4000, ..., test_batch.bin 1000" */
static void holdings(const cifar_info *info, char *buf, size_t cap) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < CIFAR_NDATA && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%s %" PRIu64, i ? ", " : "", info->member[i].name,
                              info->member[i].records);
}

int main(int argc, char **argv) {
    cli_init(argv[0]);
    cli_install_signals();
    enum { OPT_ALLOW = 256, OPT_CHECK, OPT_TEST_OUT };
    static const struct option longopts[] = {
        {"split", required_argument, 0, 's'},     {"output", required_argument, 0, 'o'},
        {"test-output", required_argument, 0, OPT_TEST_OUT},
        {"url", required_argument, 0, 'u'},       {"cache-dir", required_argument, 0, 'c'},
        {"allow-unofficial", no_argument, 0, OPT_ALLOW},
        {"list", no_argument, 0, 'l'},            {"check", no_argument, 0, OPT_CHECK},
        {"md5", no_argument, 0, OPT_CHECK},       {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},            {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0}};
    const char *split = "train", *output = NULL, *test_output = NULL, *url = CIFAR_URL, *cache_opt = NULL;
    bool allow = false, list = false, check = false, quiet = false;
    int ch;
    while ((ch = getopt_long(argc, argv, "s:o:u:c:lqhV", longopts, NULL)) != -1) {
        switch (ch) {
        case 's': split = optarg; break;
        case 'o': output = optarg; break;
        case OPT_TEST_OUT: test_output = optarg; break;
        case 'u': url = optarg; break;
        case 'c': cache_opt = optarg; break;
        case OPT_ALLOW: allow = true; break;
        case 'l': list = true; break;
        case OPT_CHECK: check = true; break;
        case 'q': quiet = true; break;
        case 'h': usage();
        case 'V': cli_version();
        default: cli_usage_error("unknown option");
        }
    }
    if (optind < argc) cli_usage_error("unexpected argument '%s'", argv[optind]);
    split = cli_choice("--split", split, "train,test,both");
    bool both = strcmp(split, "both") == 0;
    if (both && (list || check)) cli_usage_error("--split both writes streams; --list and --check print text");
    if (both && (!output || !test_output || strcmp(output, "-") == 0 || strcmp(test_output, "-") == 0))
        cli_usage_error("--split both needs -o FILE (train) and --test-output FILE (test), both files");
    if (!both && test_output) cli_usage_error("--test-output goes with --split both");
    if (list && check) cli_usage_error("--list and --check do not go together");
    if ((list || check) && output) cli_usage_error("-o writes a stream; --list and --check print text");
    if (!*url) cli_usage_error("--url: empty");
    char cache_buf[PATH_MAX];
    const char *cache_dir = cache_opt;
    if (cache_dir && !*cache_dir) cli_usage_error("--cache-dir: empty");
    if (!cache_dir && cifar_default_cache_dir(cache_buf, sizeof cache_buf) == 0) cache_dir = cache_buf;

    ctx c = {.split = split, .show_progress = !quiet};
    /* The outputs first: a terminal or an unwritable path is refused before any download. */
    if (!list && !check) {
        c.o[c.nout++] = cli_out_open(output, true);
        if (both) c.o[c.nout++] = cli_out_open(test_output, true);
    }

    char path[PATH_MAX], err[CIFAR_ERRMAX];
    bool downloaded = false;
    c.what = "downloading";
    int rc = cifar_fetch_url(url, cache_dir, allow, on_progress, &c, path, sizeof path, &downloaded, err);
    cli_progress_end();
    if (rc == CIFAR_UNOFFICIAL) cli_die("%s; pass --allow-unofficial to use it anyway", err);
    if (rc) cli_die("%s", err);
    if (downloaded && !quiet) cli_warn("downloaded %s into %s", url, path);
    c.archive = path;

    if (check) {
        char hex[33];
        if (cifar_md5_file(path, hex, err)) cli_die("%s", err);
        bool official = strcmp(hex, CIFAR_MD5) == 0;
        printf("%s\t%s\t%s\n", hex, official ? "official" : "unofficial", path);
        if (fflush(stdout) != 0) cli_die("write error on stdout: %s", strerror(errno));
        if (!official) cli_die("%s: checksum differs from the official CIFAR-10 release (official md5 %s)", path, CIFAR_MD5);
        return EXIT_OK;
    }

    cifar_read_opts opts = {.allow_unofficial = allow || list, .progress = on_progress, .ctx = &c};
    if (!list) {
        opts.split = both ? "all" : split;
        opts.begin = on_begin;
        opts.record = on_record;
    }
    cifar_info info;
    c.what = "reading";
    rc = cifar_read_archive(path, &opts, &info, err);
    cli_progress_end();
    if (rc == CIFAR_UNOFFICIAL) {
        if (!downloaded && strcmp(path, url) != 0)
            cli_die("%s; pass --allow-unofficial to use it anyway (or remove this cached copy to download again)", err);
        cli_die("%s; pass --allow-unofficial to use it anyway", err);
    }
    if (rc) cli_die("%s", err);

    if (list) {
        printf("member\tbytes\trecords\n");
        for (size_t i = 0; i < info.nentries; i++) {
            const cifar_entry *e = &info.entries[i];
            if (e->is_dir) continue;
            if (e->records >= 0) printf("%s\t%" PRIu64 "\t%" PRId64 "\n", e->name, e->bytes, e->records);
            else printf("%s\t%" PRIu64 "\t-\n", e->name, e->bytes);
        }
        if (fflush(stdout) != 0 || ferror(stdout)) cli_die("write error on stdout: %s", strerror(errno));
        cifar_info_free(&info);
        return EXIT_OK;
    }

    if (!c.begun) cli_die("internal error: no records were delivered");
    const char *names[2] = {output ? output : "stdout", test_output};
    for (int k = 0; k < c.nout; k++) {
        if (ds_write_end(&c.w[k]) != 0) {
            if (errno == EINVAL) cli_die("internal error: header count differs from the records written");
            cli_die("%s: write error: %s", names[k], strerror(c.w[k].w.err ? c.w[k].w.err : errno));
        }
    }
    for (int k = 0; k < c.nout; k++) {
        ds_writer_free(&c.w[k]);
        cli_out_commit(c.o[k]);
    }

    if (!info.official) {
        char held[512];
        holdings(&info, held, sizeof held);
        if (!quiet)
            cli_warn("%s is not the official release (md5 %s); accepted with --allow-unofficial. Records per member: %s "
                     "(the official release has %d each)",
                     path, info.md5, held, CIFAR_OFFICIAL_RECORDS);
    }
    if (!quiet)
        cli_warn("%s: %" PRIu64 " records written (%s archive, md5 %s)", split, info.split_records,
                 info.official ? "official" : "unofficial", info.md5);
    cifar_info_free(&info);
    return EXIT_OK;
}
