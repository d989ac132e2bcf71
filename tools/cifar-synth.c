/* cifar-synth: writes a synthetic CIFAR-10-shaped dataset stream (random pixels, labels
 * cycling or random), for benchmarks and memory tests at the full dataset's size. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dataset.h"
#include "rng.h"

_Noreturn static void usage(void) {
    printf("usage: %s [--count N] [--seed S] [--pattern random|gradient] [-o FILE]\n"
           "\n"
           "Writes a dataset stream of N synthetic 3x32x32 images with the CIFAR-10 classes\n"
           "(stdout unless -o). Labels are uniform random; pixels are uniform random bytes, or with\n"
           "--pattern gradient a per-class brightness ramp plus noise (learnable, for smoke tests).\n"
           "\n"
           "  -n, --count N     records (default 50000)\n"
           "  -s, --seed S      random seed (default 1)\n"
           "      --pattern P   random (default) or gradient\n"
           "  -o, --output FILE write FILE (whole or not at all) instead of stdout\n"
           "  -h, --help        this help\n"
           "  -V, --version     version\n",
           cli_prog);
    exit(EXIT_OK);
}

int main(int argc, char **argv) {
    cli_init(argv[0]);
    static const struct option opts[] = {{"count", required_argument, 0, 'n'}, {"seed", required_argument, 0, 's'},
                                         {"pattern", required_argument, 0, 'p'}, {"output", required_argument, 0, 'o'},
                                         {"help", no_argument, 0, 'h'},         {"version", no_argument, 0, 'V'},
                                         {0, 0, 0, 0}};
    long long count = 50000, seed = 1;
    const char *out = NULL;
    int gradient = 0, c;
    while ((c = getopt_long(argc, argv, "n:s:o:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'n': count = cli_int("--count", optarg, 0, 100000000); break;
        case 's': seed = cli_int("--seed", optarg, 0, INT64_MAX); break;
        case 'p':
            gradient = strcmp(cli_choice("--pattern", optarg, "random,gradient"), "gradient") == 0;
            break;
        case 'o': out = optarg; break;
        case 'h': usage();
        case 'V': cli_version();
        default: cli_usage_error("unknown option");
        }
    }
    if (optind < argc) cli_usage_error("unexpected argument '%s'", argv[optind]);
    cli_install_signals();
    cli_out *o = cli_out_open(out, true);
    ds_header h;
    ds_header_cifar10(&h, (uint64_t)count);
    snprintf(h.source, sizeof h.source, "cifar-synth --count %lld --seed %lld --pattern %s", count, seed,
             gradient ? "gradient" : "random");
    ds_writer w;
    ds_write_begin(&w, o->fd, &h);
    rng r;
    rng_seed(&r, (uint64_t)seed, 0);
    uint8_t px[3072];
    for (long long i = 0; i < count; i++) {
        uint8_t label = (uint8_t)rng_below(&r, 10);
        if (gradient) {
            for (int ch = 0; ch < 3; ch++)
                for (int p = 0; p < 1024; p++) {
                    int v = (label * 25 + (p / 32) * (ch + 1) * 2) % 256 + (int)rng_below(&r, 32) - 16;
                    px[ch * 1024 + p] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
                }
        } else {
            for (int p = 0; p < 3072; p += 8) {
                uint64_t x = rng_u64(&r);
                memcpy(px + p, &x, 8);
            }
        }
        ds_write(&w, label, px);
    }
    if (ds_write_end(&w) != 0) cli_die("%s: write error: %s", out ? out : "stdout", strerror(w.w.err ? w.w.err : errno));
    ds_writer_free(&w);
    cli_out_commit(o);
    return EXIT_OK;
}
