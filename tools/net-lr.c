/* net-lr: the learning rate of every optimizer step of a recorded run. A trained checkpoint
 * holds every setting of its run (train.h); this replays its schedule (schedule.h) with the
 * same steps per epoch, so the table is the rate net-train used, not a re-typed formula. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "cli.h"
#include "train.h"

_Noreturn static void usage(void) {
    printf("usage: %s CHECKPOINT [--every N] [--epochs N]\n"
           "\n"
           "Prints the learning rate of every optimizer step of the run recorded in a checkpoint\n"
           "written by net-train (CHECKPOINT or stdin; the last checkpoint unless --pick): its\n"
           "schedule, epochs, batch size and training-set size. TSV on stdout: step (0-based,\n"
           "the number of steps already taken), epoch (0-based), lr.\n"
           "\n"
           "  -e, --every N      every Nth step only (default 1; the last step always)\n"
           "      --epochs N     as if the run lasted N epochs (default: as recorded)\n"
           "  -p, --pick N       checkpoint N of the stream (from 0) instead of the last\n"
           "  -h, --help         this help\n"
           "  -V, --version      version\n",
           cli_prog);
    exit(EXIT_OK);
}

int main(int argc, char **argv) {
    cli_init(argv[0]);
    enum { O_EPOCHS = 256 };
    static const struct option opts[] = {
        {"every", required_argument, 0, 'e'}, {"epochs", required_argument, 0, O_EPOCHS},
        {"pick", required_argument, 0, 'p'},  {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},     {0, 0, 0, 0}};
    const char *in = "-";
    long long every = 1, epochs = 0, pick = -1;
    int c;
    while ((c = getopt_long(argc, argv, "e:p:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'e': every = cli_int("--every", optarg, 1, INT64_MAX); break;
        case O_EPOCHS: epochs = cli_int("--epochs", optarg, 1, 1000000); break;
        case 'p': pick = cli_int("--pick", optarg, 0, 1 << 30); break;
        case 'h': usage();
        case 'V': cli_version();
        default: cli_usage_error("unknown option");
        }
    }
    if (optind < argc) in = argv[optind++];
    if (optind < argc) cli_usage_error("unexpected argument '%s'", argv[optind]);

    cli_install_signals();
    FILE *f = cli_open_in(in);
    char err[STREAM_ERRMAX];
    const char *inname = strcmp(in, "-") ? in : "stdin";
    checkpoint *ck = ck_read(f, inname, (int)pick, NULL, err);
    cli_close_in(f);
    if (!ck) cli_die("%s", err);
    train_cfg cfg;
    char e2[256];
    if (train_cfg_from_state(&cfg, &ck->state, e2)) cli_die("%s: %s (was it written by net-train?)", inname, e2);
    int64_t n = kv_int(&ck->state, "train_images", -1);
    if (n < 1) cli_die("%s: no train_images in the state (was it written by net-train?)", inname);
    if (epochs) cfg.epochs = epochs;
    int64_t spe = (n + cfg.batch - 1) / cfg.batch, total = cfg.epochs * spe;
    schedule s = cfg.sched;             /* as train_run sets it up */
    s.total_steps = total;
    s.steps_per_epoch = spe;

    printf("step\tepoch\tlr\n");
    for (int64_t t = 0; t < total; t++)
        if (t % every == 0 || t == total - 1)
            printf("%lld\t%lld\t%.9g\n", (long long)t, (long long)(t / spe), schedule_lr(&s, t, t / spe));
    if (fflush(stdout) || ferror(stdout)) cli_die("writing stdout failed");
    ck_free(ck);
    return EXIT_OK;
}
