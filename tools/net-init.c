/* net-init: writes a freshly initialised checkpoint for an architecture. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "cli.h"
#include "freeze.h"
#include "model.h"
#include "model_extra.h"

_Noreturn static void usage(void) {
    printf("usage: %s [--arch resnet|bottleneck] [--depth N] [--width W] [--seed S] [-o FILE]\n"
           "\n"
           "Writes a checkpoint stream holding a freshly initialised network (stdout unless -o):\n"
           "He-normal fan-in conv and linear weights, zero biases and BN beta, BN gamma by\n"
           "--gamma-init, running mean 0 and variance 1. Every parameter is trainable; pipe into\n"
           "net-freeze to choose what trains. Prints a one-line summary on stderr.\n"
           "\n"
           "  -a, --arch A         resnet (the paper's: depth 6n+2, width W, basic blocks; default)\n"
           "                       or bottleneck (the seed's Keras \"ResNet20\": depth 9n+2)\n"
           "  -d, --depth N        depth (default 20): resnet 8, 14, 20, 32, 56, 110, 218, 434, 866, ...;\n"
           "                       bottleneck 11, 20, 29, ...\n"
           "  -w, --width W        channels of the first stage (default 16)\n"
           "  -c, --classes K      output classes (default 10)\n"
           "  -g, --gamma-init G   ones, uniform (U[0,1]) or uniform-sym (U[-1,1]); default uniform for\n"
           "                       resnet (the paper's framework), ones for bottleneck (Keras)\n"
           "  -s, --seed S         random seed (default 1); same seed, same bytes\n"
           "  -o, --output FILE    write FILE (whole or not at all) instead of stdout\n"
           "  -h, --help           this help\n"
           "  -V, --version        version\n",
           cli_prog);
    exit(EXIT_OK);
}

int main(int argc, char **argv) {
    cli_init(argv[0]);
    static const struct option opts[] = {
        {"arch", required_argument, 0, 'a'},    {"depth", required_argument, 0, 'd'},
        {"width", required_argument, 0, 'w'},   {"classes", required_argument, 0, 'c'},
        {"gamma-init", required_argument, 0, 'g'}, {"seed", required_argument, 0, 's'},
        {"output", required_argument, 0, 'o'},  {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},       {0, 0, 0, 0}};
    const char *arch = "resnet", *gamma = NULL, *out = NULL;
    long long depth = 20, width = 16, classes = 10, seed = 1;
    int c;
    while ((c = getopt_long(argc, argv, "a:d:w:c:g:s:o:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'a': arch = optarg; break;
        case 'd': depth = cli_int("--depth", optarg, 1, 20000); break;
        case 'w': width = cli_int("--width", optarg, 1, 1024); break;
        case 'c': classes = cli_int("--classes", optarg, 2, 256); break;
        case 'g': gamma = optarg; break;
        case 's': seed = cli_int("--seed", optarg, 0, INT64_MAX); break;
        case 'o': out = optarg; break;
        case 'h': usage();
        case 'V': cli_version();
        default: cli_usage_error("unknown option");
        }
    }
    if (optind < argc) cli_usage_error("unexpected argument '%s'", argv[optind]);
    char err[256];
    if (model_check_arch(arch, (int)depth, (int)width, (int)classes, err)) cli_usage_error("%s", err);
    if (gamma && strcmp(gamma, "ones") && strcmp(gamma, "uniform") && strcmp(gamma, "uniform-sym"))
        cli_usage_error("--gamma-init: '%s' is not ones, uniform or uniform-sym", gamma);

    cli_install_signals();
    cli_out *o = cli_out_open(out, true);
    checkpoint *ck = model_init(arch, (int)depth, (int)width, (int)classes, gamma, (uint64_t)seed, err);
    if (!ck) cli_die("%s", err);
    swriter w;
    sw_init(&w, o->fd);
    ck_write(&w, ck);
    if (sw_flush(&w)) cli_die("writing %s: %s", out && strcmp(out, "-") ? out : "stdout", strerror(w.err));
    sw_free(&w);
    cli_out_commit(o);

    uint64_t bn = 0;
    for (int i = 0; i < ck->nt; i++) {
        const char *n = ck->t[i].name;
        size_t l = strlen(n);
        if (strcmp(ck->t[i].role, "param") == 0 &&
            ((l > 6 && strcmp(n + l - 6, ".gamma") == 0) || (l > 5 && strcmp(n + l - 5, ".beta") == 0)))
            bn += ck->t[i].numel;
    }
    fprintf(stderr, "%s: %s-%lld width %lld, %lld classes, seed %lld: %llu parameters, %llu trainable, %llu BN "
                    "gamma+beta, gamma init %s\n",
            cli_prog, arch, depth, width, classes, seed, (unsigned long long)freeze_count_total(ck),
            (unsigned long long)freeze_count_trainable(ck), (unsigned long long)bn,
            kv_str(&ck->arch, "gamma_init", "?"));
    ck_free(ck);
    return EXIT_OK;
}
