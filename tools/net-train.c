/* net-train: trains a checkpoint's trainable tensors on a dataset stream and writes a
 * checkpoint stream (one section per --every epochs and always the last). */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "cli.h"
#include "dataset.h"
#include "dist.h"
#include "ops.h"
#include "train.h"

_Noreturn static void usage(void) {
    printf(
        "usage: %s [CHECKPOINT] --train DATA [--test DATA] [options] [-o FILE]\n"
        "\n"
        "Trains the trainable tensors of a checkpoint (CHECKPOINT or --init FILE, '-' or none =\n"
        "stdin; the last of the stream unless --pick) on a dataset stream and writes a checkpoint\n"
        "stream (stdout unless -o): one checkpoint every --every epochs and always the last. Each\n"
        "checkpoint carries the optimizer state and every setting, so --resume continues a run\n"
        "exactly (bit-identical to an uninterrupted run). One line per epoch on stderr; a progress\n"
        "bar when stderr is a terminal.\n"
        "\n"
        "Input and output:\n"
        "  -i, --init FILE        the checkpoint to train (default: the positional argument or stdin)\n"
        "      --pick N           train the checkpoint numbered N (from 0) of the stream, not the last\n"
        "  -t, --train FILE       training dataset stream (required)\n"
        "  -T, --test FILE        evaluate on this dataset after every epoch (BN in inference mode)\n"
        "  -o, --output FILE      write FILE (whole or not at all) instead of stdout\n"
        "      --every N          a checkpoint every N epochs (default 1; 0 = only the last)\n"
        "      --log FILE         TSV, one row per epoch: epoch step lr train_loss train_acc test_loss\n"
        "                         test_acc images_per_s seconds (accuracies are fractions; nan: no --test)\n"
        "  -r, --resume           continue the checkpoint's run (epoch, step, optimizer state, settings)\n"
        "                         up to --epochs in all; options given override the recorded ones\n"
        "\n"
        "Settings (defaults: --recipe paper; explicit options override the recipe):\n"
        "      --recipe R         paper: SGD lr 0.1 momentum 0.9 wd 1e-4, batch 128, 160 epochs, step\n"
        "                         at 80,120 x0.1, crop-flip, meanstd. seed: SGD lr 0.01, no momentum,\n"
        "                         no wd, batch 128, 75 epochs, constant lr, augment seed, normalize none\n"
        "  -e, --epochs N         epochs in all\n"
        "  -b, --batch N          batch size; an epoch's last batch keeps the remainder (smaller batch)\n"
        "      --lr X             learning rate (rampup: its peak, default 4e-4)\n"
        "      --optimizer O      sgd or adam (TF 2.2 Keras Adam)\n"
        "      --momentum X       SGD momentum (0 = plain SGD)\n"
        "      --nesterov         Nesterov momentum\n"
        "      --wd X             L2 weight decay, on trainable tensors only\n"
        "      --adam-beta1 X     (0.9)  --adam-beta2 X (0.999)  --adam-eps X (1e-7, Keras)\n"
        "      --schedule S       constant, step, cosine, keras-cosine, keras-linear-cosine,\n"
        "                         keras-cosine-restarts or rampup\n"
        "      --milestones LIST  step: epochs where the rate is multiplied by --gamma (80,120)\n"
        "      --gamma X          step: factor (0.1)\n"
        "      --warmup E         cosine: linear warm-up epochs (0); cosine spans the whole run\n"
        "      --decay-steps N    Keras schedules: decay_steps / first_decay_steps, in steps (1000)\n"
        "      --seed S           shuffling and augmentation (default: the checkpoint's seed)\n"
        "      --augment A        none, crop-flip (pad 4, random crop, flip) or seed (pad to 40x40,\n"
        "                         random crop, brightness +-0.5, clip to [0,1])\n"
        "      --normalize N      none (pixels/255) or meanstd (per channel; from the training set\n"
        "                         unless --mean/--std); recorded in the checkpoint for net-eval\n"
        "      --mean A,B,C       per-channel means (of pixels/255); implies meanstd\n"
        "      --std A,B,C        per-channel standard deviations; implies meanstd\n"
        "\n"
        "Machine:\n"
        "      --device D         ref, cpu, cuda or auto (default)\n"
        "      --precision P      fp32 (default); tf32 (cuda: convolutions on TF32 tensor cores,\n"
        "                         faster, not the CPU's bits); tf32-sim or bf16-sim (cpu, ref: the\n"
        "                         convolutions round their operands as TF32 / bf16 tensor cores do,\n"
        "                         to measure the accuracy effect; no faster). Recorded in the checkpoint\n"
        "      --threads N        OpenMP threads (results are reproducible for a given count; under a\n"
        "                         launcher, default: the node's processors / its ranks)\n"
        "      --dist T           data parallel: auto (default: MPI when started by mpirun/mpiexec or\n"
        "                         srun --mpi=pmix, else one process), none, mpi, or nccl (MPI starts\n"
        "                         the ranks, NCCL sums on one GPU per rank)\n"
        "  -h, --help             this help\n"
        "  -V, --version          version\n"
        "\n"
        "SIGINT or SIGTERM stop after the current step: the state at that step (position in the\n"
        "epoch included) is written as a last checkpoint, the output committed, exit status 1;\n"
        "--resume continues from it exactly. A NaN or infinite loss stops the run with exit 1;\n"
        "the output then holds only the checkpoints written before (none: no output file).\n"
        "\n"
        "Data parallel: `mpirun -np P net-train ...` runs P ranks that split every batch (rank r\n"
        "takes positions [r*b/P, (r+1)*b/P) of the single-process batch b) and sum gradients and\n"
        "BatchNorm statistics, so the run is the single-process run up to float summation order.\n"
        "Every rank reads the files (stdin is read by rank 0 and sent to the others); rank 0 alone\n"
        "writes the checkpoints, the log and the messages. A checkpoint resumes with any P.\n",
        cli_prog);
    exit(EXIT_OK);
}

enum {
    O_PICK = 256, O_EVERY, O_LOG, O_RECIPE, O_LR, O_OPT, O_MOM, O_NEST, O_WD, O_B1, O_B2, O_EPS, O_SCHED, O_MILE,
    O_GAMMA, O_WARM, O_DECAY, O_SEED, O_AUG, O_NORM, O_MEAN, O_STD, O_DEVICE, O_THREADS, O_DIST, O_PREC
};

static int parse_doubles(const char *opt, const char *s, double *out, int max) {
    int n = 0;
    const char *p = s;
    while (1) {
        char *end;
        if (n >= max) cli_usage_error("%s: more than %d values in '%s'", opt, max, s);
        out[n] = strtod(p, &end);
        if (end == p || (*end && *end != ',') || !isfinite(out[n]))
            cli_usage_error("%s: '%s' is not a comma-separated list of numbers", opt, s);
        n++;
        if (!*end) break;
        p = end + 1;
    }
    return n;
}

typedef struct setting { int code; const char *arg; } setting;

/* Applies one explicit setting on top of the recipe / recorded settings. */
static void apply(train_cfg *c, int code, const char *a, bool *lr_set) {
    switch (code) {
    case 'e': c->epochs = cli_int("--epochs", a, 0, 1000000); break;
    case 'b': c->batch = (int)cli_int("--batch", a, 1, 1 << 20); break;
    case O_EVERY: c->every = (int)cli_int("--every", a, 0, 1000000); break;
    case O_LR: c->sched.lr = cli_double("--lr", a, 0, 1e300); *lr_set = true; break;
    case O_OPT: {
        int k = optim_parse(a);
        if (k < 0) cli_usage_error("--optimizer: '%s' is not sgd or adam", a);
        c->opt.kind = (opt_kind)k;
        break;
    }
    case O_MOM: c->opt.momentum = cli_double("--momentum", a, 0, 1); break;
    case O_NEST: c->opt.nesterov = true; break;
    case O_WD: c->opt.wd = cli_double("--wd", a, 0, 1e3); break;
    case O_B1: c->opt.beta1 = cli_double("--adam-beta1", a, 0, 0.999999999); break;
    case O_B2: c->opt.beta2 = cli_double("--adam-beta2", a, 0, 0.999999999); break;
    case O_EPS: c->opt.eps = cli_double("--adam-eps", a, 1e-30, 1); break;
    case O_SCHED: {
        int k = sched_parse(a);
        if (k < 0)
            cli_usage_error("--schedule: '%s' is not constant, step, cosine, keras-cosine, keras-linear-cosine, "
                            "keras-cosine-restarts or rampup", a);
        c->sched.kind = (sched_kind)k;
        break;
    }
    case O_MILE: {
        long long v[SCHED_MAXMILESTONES];
        int n = cli_int_list("--milestones", a, v, SCHED_MAXMILESTONES, 1, 1000000);
        for (int i = 0; i < n; i++) c->sched.milestones[i] = v[i];
        c->sched.nmilestones = n;
        break;
    }
    case O_GAMMA: c->sched.gamma = cli_double("--gamma", a, 0, 1e6); break;
    case O_WARM: c->sched.warmup = cli_double("--warmup", a, 0, 1e6); break;
    case O_DECAY: c->sched.decay_steps = cli_int("--decay-steps", a, 1, INT64_MAX / 4); break;
    case O_SEED: c->seed = (uint64_t)cli_int("--seed", a, 0, INT64_MAX); break;
    case O_AUG: {
        int k = aug_parse(a);
        if (k < 0) cli_usage_error("--augment: '%s' is not none, crop-flip or seed", a);
        c->augment = (aug_kind)k;
        break;
    }
    case O_NORM:
        if (strcmp(a, "none") == 0) memset(&c->norm, 0, sizeof c->norm);
        else if (strcmp(a, "meanstd") == 0) {
            if (!c->norm.meanstd) c->norm.c = 0;   /* computed from the training set */
            c->norm.meanstd = true;
        } else cli_usage_error("--normalize: '%s' is not none or meanstd", a);
        break;
    case O_MEAN:
    case O_STD: {
        double v[NORM_MAXC];
        int n = parse_doubles(code == O_MEAN ? "--mean" : "--std", a, v, NORM_MAXC);
        if (c->norm.c && c->norm.c != n && c->norm.meanstd)
            cli_usage_error("--mean and --std must have as many values (%d and %d)", c->norm.c, n);
        for (int i = 0; i < n; i++) {
            if (code == O_STD && !(v[i] > 0)) cli_usage_error("--std: values must be positive");
            (code == O_MEAN ? c->norm.mean : c->norm.std)[i] = v[i];
        }
        c->norm.meanstd = true, c->norm.c = n;
        break;
    }
    }
}

/* Opens an input. With several ranks stdin ('-') reaches rank 0 alone (launchers forward
 * it to rank 0): rank 0 reads it whole and sends the bytes to every rank; *mem then holds
 * them (free after closing). */
static FILE *open_in(const char *path, char **mem) {
    *mem = NULL;
    if (dist_size() < 2 || strcmp(path, "-")) return cli_open_in(path);
    uint64_t len = 0;
    char *buf = NULL;
    if (dist_rank() == 0) {
        size_t cap = 1 << 20, got;
        if (!(buf = malloc(cap))) cli_die("out of memory reading stdin");
        while ((got = fread(buf + len, 1, cap - len, stdin)) > 0) {
            len += got;
            if (len == cap) {
                char *p = realloc(buf, cap *= 2);
                if (!p) cli_die("out of memory reading stdin");
                buf = p;
            }
        }
        if (ferror(stdin)) cli_die("stdin: %s", strerror(errno));
    }
    dist_bcast(&len, sizeof len);
    if (dist_rank() != 0 && !(buf = malloc(len ? len : 1))) cli_die("out of memory for stdin's %llu bytes",
                                                                  (unsigned long long)len);
    dist_bcast(buf, len);
    FILE *f = len ? fmemopen(buf, len, "rb") : fopen("/dev/null", "rb");
    if (!f) cli_die("stdin: %s", strerror(errno));
    *mem = buf;
    return f;
}

static void close_in(FILE *f, char *mem) {
    if (mem) fclose(f), free(mem);
    else cli_close_in(f);
}

static dataset load_ds(const char *path) {
    dataset d;
    char err[STREAM_ERRMAX], *mem;
    FILE *f = open_in(path, &mem);
    if (ds_load(f, strcmp(path, "-") ? path : "stdin", &d, err)) cli_die("%s", err);
    close_in(f, mem);
    return d;
}

int main(int argc, char **argv) {
    cli_init(argv[0]);
    static const struct option opts[] = {
        {"init", required_argument, 0, 'i'},       {"pick", required_argument, 0, O_PICK},
        {"train", required_argument, 0, 't'},      {"test", required_argument, 0, 'T'},
        {"output", required_argument, 0, 'o'},     {"every", required_argument, 0, O_EVERY},
        {"log", required_argument, 0, O_LOG},      {"resume", no_argument, 0, 'r'},
        {"recipe", required_argument, 0, O_RECIPE}, {"epochs", required_argument, 0, 'e'},
        {"batch", required_argument, 0, 'b'},      {"lr", required_argument, 0, O_LR},
        {"optimizer", required_argument, 0, O_OPT}, {"momentum", required_argument, 0, O_MOM},
        {"nesterov", no_argument, 0, O_NEST},      {"wd", required_argument, 0, O_WD},
        {"adam-beta1", required_argument, 0, O_B1}, {"adam-beta2", required_argument, 0, O_B2},
        {"adam-eps", required_argument, 0, O_EPS}, {"schedule", required_argument, 0, O_SCHED},
        {"milestones", required_argument, 0, O_MILE}, {"gamma", required_argument, 0, O_GAMMA},
        {"warmup", required_argument, 0, O_WARM},  {"decay-steps", required_argument, 0, O_DECAY},
        {"seed", required_argument, 0, O_SEED},    {"augment", required_argument, 0, O_AUG},
        {"normalize", required_argument, 0, O_NORM}, {"mean", required_argument, 0, O_MEAN},
        {"std", required_argument, 0, O_STD},      {"device", required_argument, 0, O_DEVICE},
        {"precision", required_argument, 0, O_PREC},
        {"threads", required_argument, 0, O_THREADS}, {"dist", required_argument, 0, O_DIST},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},          {0, 0, 0, 0}};
    const char *init = NULL, *train_path = NULL, *test_path = NULL, *out = NULL, *log_path = NULL, *recipe = NULL,
               *device = "auto", *transport = "auto", *precision = "fp32";
    long long pick = -1, threads = 0;
    bool resume = false;
    static setting *set;   /* static: still reachable when cli_die exits early (LeakSanitizer) */
    set = calloc((size_t)argc + 1, sizeof *set);
    int nset = 0, c;
    if (!set) cli_die("out of memory");
    while ((c = getopt_long(argc, argv, "i:t:T:o:re:b:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'i': init = optarg; break;
        case O_PICK: pick = cli_int("--pick", optarg, 0, 1000000000); break;
        case 't': train_path = optarg; break;
        case 'T': test_path = optarg; break;
        case 'o': out = optarg; break;
        case O_LOG: log_path = optarg; break;
        case 'r': resume = true; break;
        case O_RECIPE:
            recipe = cli_choice("--recipe", optarg, "paper,seed");
            break;
        case O_DEVICE:
            device = cli_choice("--device", optarg, CLI_DEVICES);
            break;
        case O_PREC: precision = cli_choice("--precision", optarg, OPS_PRECISIONS); break;
        case O_THREADS: threads = cli_int("--threads", optarg, 1, 4096); break;
        case O_DIST: transport = cli_choice("--dist", optarg, "auto,none,mpi,nccl"); break;
        case 'h': usage();
        case 'V': cli_version();
        case '?': cli_usage_error("unknown option or missing value");
        default:
            set[nset].code = c, set[nset].arg = optarg;
            /* check values now, so that usage errors come before any reading */
            {
                train_cfg scratch;
                bool dummy = false;
                train_cfg_defaults(&scratch);
                apply(&scratch, c, optarg, &dummy);
            }
            nset++;
        }
    }
    if (optind < argc) {
        if (init) cli_usage_error("a checkpoint is given twice (--init and '%s')", argv[optind]);
        init = argv[optind++];
    }
    if (optind < argc) cli_usage_error("unexpected argument '%s'", argv[optind]);
    if (!init) init = "-";
    if (!train_path) cli_usage_error("--train DATA is required");
    int stdins = !strcmp(init, "-") + !strcmp(train_path, "-") + (test_path && !strcmp(test_path, "-"));
    if (stdins > 1) cli_usage_error("only one input can be stdin ('-')");
    if (log_path && !strcmp(log_path, "-") && (!out || !strcmp(out, "-")))
        cli_usage_error("--log -: stdout already carries the checkpoints");
    if (resume && recipe) cli_usage_error("--recipe with --resume: a resumed run keeps its recorded settings");

    /* ranks (dist.h): MPI starts here when a launcher started this process */
    char err[STREAM_ERRMAX];
    if (dist_init(&argc, &argv, transport, err)) cli_die("%s", err);
    const int rank = dist_rank(), nranks = dist_size();
    const char *why = NULL;
    ops *o = ops_get(device, &why);
    if (!o) cli_die("--device %s: %s", device, why ? why : "not available");
    ops *po = ops_precision(o, precision, &why);
    if (!po) cli_die("--precision %s on the %s backend: %s", precision, o->name, why);
    o = po;
    if (threads > 0) omp_set_num_threads((int)threads);
    else if (nranks > 1 && !getenv("OMP_NUM_THREADS")) {   /* share the node's processors */
        const char *ls = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
        if (!ls) ls = getenv("SLURM_NTASKS_PER_NODE");
        int local = ls ? atoi(ls) : 1, t = omp_get_num_procs() / (local > 0 ? local : 1);
        omp_set_num_threads(t > 0 ? t : 1);
    }

    cli_install_signals();
    int count = 0;
    char *mem;
    FILE *f = open_in(init, &mem);
    checkpoint *ck = ck_read(f, strcmp(init, "-") ? init : "stdin", (int)pick, &count, err);
    if (!ck) cli_die("%s", err);
    close_in(f, mem);
    {
        uint64_t nan = 0, inf = 0;
        const ck_tensor *bad = ck_nonfinite(ck, NULL, &nan, &inf);
        if (bad)
            cli_die("%s: tensor %s holds %llu NaN and %llu infinite values: refusing to train from it",
                    strcmp(init, "-") ? init : "stdin", bad->name, (unsigned long long)nan, (unsigned long long)inf);
    }
    dataset train = load_ds(train_path), test;
    if (test_path) test = load_ds(test_path);
    if (train_check_data(ck, &train, train_path, err)) cli_die("%s", err);
    if (test_path && train_check_data(ck, &test, test_path, err)) cli_die("%s", err);

    /* settings: defaults < recipe < recorded (resume) < explicit options */
    train_cfg cfg;
    train_cfg_defaults(&cfg);
    cfg.seed = ck->seed;
    if (recipe) train_cfg_recipe(&cfg, recipe);
    if (resume && train_cfg_from_state(&cfg, &ck->state, err)) cli_die("%s", err);
    {   /* the arithmetic the run used: "mixed" once a resume changed it */
        const char *was = resume ? kv_str(&ck->state, "precision", "fp32") : precision;
        kv_set_str(&ck->state, "precision", strcmp(was, precision) ? "mixed" : precision);
    }
    bool lr_set = false;
    for (int i = 0; i < nset; i++) apply(&cfg, set[i].code, set[i].arg, &lr_set);
    if (!resume && cfg.sched.kind == SCHED_RAMPUP && !lr_set) cfg.sched.lr = 4e-4;
    if (cfg.norm.meanstd && cfg.norm.c == 0 && norm_compute(&train, &cfg.norm, err)) cli_die("%s", err);
    if (cfg.norm.meanstd) {
        bool ok = true;
        for (int i = 0; i < cfg.norm.c; i++) ok = ok && cfg.norm.std[i] > 0;
        if (!ok) cli_usage_error("--mean needs --std (and the other way round)");
        if (cfg.norm.c != train.h.c)
            cli_usage_error("--mean/--std give %d channels, the images have %d", cfg.norm.c, train.h.c);
    }

    /* from here on SIGINT/SIGTERM stop the run cleanly (a checkpoint is written) */
    cli_catch_stop_signals();
    FILE *log = NULL;
    if (rank != 0) log_path = NULL;   /* rank 0 alone writes */
    if (log_path) {
        log = strcmp(log_path, "-") ? fopen(log_path, "w") : stdout;
        if (!log) cli_die("cannot write %s: %s", log_path, strerror(errno));
        fprintf(log, "epoch\tstep\tlr\ttrain_loss\ttrain_acc\ttest_loss\ttest_acc\timages_per_s\tseconds\n");
        fflush(log);
    }
    cli_out *co = rank == 0 ? cli_out_open(out, true) : NULL;
    swriter w;
    sw_init(&w, co ? co->fd : -1);
    train_io io = {0};
    io.out = co ? &w : NULL, io.out_name = out && strcmp(out, "-") ? out : "stdout", io.log = log, io.verbose = rank == 0, io.progress = rank == 0, io.stop_signals = true;
    io.test = test_path && rank == 0 ? &test : NULL;
    if (nranks > 1 && rank == 0)
        fprintf(stderr, "%s: %d ranks (%s), batch %d: %d to %d images per rank\n", cli_prog, nranks,
                dist_transport(), cfg.batch, cfg.batch / nranks, (cfg.batch + nranks - 1) / nranks);
    err[0] = 0;
    int rc = train_run(ck, o, &train, &cfg, &io, resume, err);
    if (rank != 0) {   /* the other ranks: no output, no messages (rank 0 reports) */
        if (rc == TRAIN_ERROR) cli_die("rank %d: %s", rank, err);
        sw_free(&w);
        ds_free(&train);
        if (test_path) ds_free(&test);
        ck_free(ck);
        free(set);
        dist_finalize();
        return rc == TRAIN_DONE ? EXIT_OK : EXIT_RUNTIME;
    }
    const char *where = out && strcmp(out, "-") ? out : "stdout";
    switch (rc) {
    case TRAIN_DONE:
        cli_out_commit(co);
        fprintf(stderr, "%s: wrote %d checkpoint%s (epoch %lld, step %lld) to %s\n", cli_prog, io.sections,
                io.sections == 1 ? "" : "s", (long long)ck->epoch, (long long)ck->step, where);
        break;
    case TRAIN_NAN:
        if (io.sections) cli_out_commit(co);
        else cli_out_abort(co);
        cli_warn("%s at epoch %lld step %lld; %d earlier checkpoint%s written to %s",
                 err[0] ? "the run diverged: weights not finite" : "loss is NaN", (long long)io.bad_epoch,
                 (long long)io.bad_step, io.sections, io.sections == 1 ? "" : "s", where);
        if (err[0]) cli_warn("%s", err);
        rc = EXIT_RUNTIME;
        break;
    case TRAIN_STOPPED:
        cli_out_commit(co);
        cli_warn("stopped by %s at epoch %lld step %lld: checkpoint written to %s; continue with --resume",
                 io.stop_signal == SIGTERM ? "SIGTERM" : io.stop_signal == SIGINT ? "SIGINT" : "request",
                 (long long)ck->epoch + (kv_int(&ck->state, "epoch_step", 0) ? 1 : 0), (long long)ck->step, where);
        rc = EXIT_RUNTIME;
        break;
    default: cli_die("%s", err);
    }
    sw_free(&w);
    if (log && log != stdout) fclose(log);
    ds_free(&train);
    if (test_path) ds_free(&test);
    ck_free(ck);
    free(set);
    dist_finalize();
    return rc;
}
