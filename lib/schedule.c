/* schedule.c: learning-rate schedules (schedule.h). The Keras ones follow TensorFlow 2.2's
 * learning_rate_schedule.py line by line (computed in double rather than float32). */
#include "schedule.h"

#include <math.h>
#include <string.h>

const char *const sched_names[SCHED_NKINDS] = {"constant",           "step",
                                               "cosine",             "keras-cosine",
                                               "keras-linear-cosine", "keras-cosine-restarts",
                                               "rampup"};

int sched_parse(const char *s) {
    for (int i = 0; s && i < SCHED_NKINDS; i++)
        if (strcmp(s, sched_names[i]) == 0) return i;
    return -1;
}

void sched_defaults(schedule *s, sched_kind kind) {
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->lr = 0.1;
    s->gamma = 0.1;
    s->decay_steps = 1000;
    s->alpha = 0.0, s->beta = 0.001, s->num_periods = 0.5;
    s->t_mul = 2.0, s->m_mul = 1.0;
    s->ramp_start = 1e-5, s->ramp_min = 1e-5, s->ramp_decay = 0.8, s->ramp_epochs = 5;
}

static const double PI = 3.14159265358979323846;

/* CosineDecay: alpha floor, flat after decay_steps. */
static double keras_cosine(const schedule *s, double step) {
    double ds = (double)s->decay_steps;
    double frac = fmin(step, ds) / ds;
    double cosine = 0.5 * (1.0 + cos(PI * frac));
    return s->lr * ((1.0 - s->alpha) * cosine + s->alpha);
}

static double keras_linear_cosine(const schedule *s, double step) {
    double ds = (double)s->decay_steps, g = fmin(step, ds);
    double linear = (ds - g) / ds;
    double cosine = 0.5 * (1.0 + cos(PI * 2.0 * s->num_periods * (g / ds)));
    return s->lr * ((s->alpha + linear) * cosine + s->beta);
}

static double keras_cosine_restarts(const schedule *s, double step) {
    double frac = step / (double)s->decay_steps, i_restart;
    if (s->t_mul == 1.0) {
        i_restart = floor(frac);
        frac -= i_restart;
    } else {
        i_restart = floor(log(1.0 - frac * (1.0 - s->t_mul)) / log(s->t_mul));
        double sum_r = (1.0 - pow(s->t_mul, i_restart)) / (1.0 - s->t_mul);
        frac = (frac - sum_r) / pow(s->t_mul, i_restart);
    }
    double m_fac = pow(s->m_mul, i_restart);
    double cosine = 0.5 * m_fac * (1.0 + cos(PI * frac));
    return s->lr * ((1.0 - s->alpha) * cosine + s->alpha);
}

static double cosine(const schedule *s, int64_t step) {
    int64_t w = (int64_t)llround(s->warmup * (double)s->steps_per_epoch);
    if (w > 0 && step < w) return s->lr * (double)(step + 1) / (double)w;
    double t = (double)(step - w), T = (double)(s->total_steps - w);
    if (T <= 0) return s->lr;
    return s->lr * 0.5 * (1.0 + cos(PI * fmin(t, T) / T));
}

static double rampup(const schedule *s, int64_t epoch) {
    double e = (double)epoch, r = s->ramp_epochs;
    if (e < r) return s->ramp_start + (s->lr - s->ramp_start) * e / r;
    return (s->lr - s->ramp_min) * pow(s->ramp_decay, e - r) + s->ramp_min;
}

double schedule_lr(const schedule *s, int64_t step, int64_t epoch) {
    switch (s->kind) {
    case SCHED_CONSTANT: return s->lr;
    case SCHED_STEP: {
        double lr = s->lr;
        for (int i = 0; i < s->nmilestones; i++)
            if (epoch >= s->milestones[i]) lr *= s->gamma;
        return lr;
    }
    case SCHED_COSINE: return cosine(s, step);
    case SCHED_KERAS_COSINE: return keras_cosine(s, (double)step);
    case SCHED_KERAS_LINEAR_COSINE: return keras_linear_cosine(s, (double)step);
    case SCHED_KERAS_COSINE_RESTARTS: return keras_cosine_restarts(s, (double)step);
    case SCHED_RAMPUP: return rampup(s, epoch);
    default: return s->lr;
    }
}
