/* schedule.h: learning-rate schedules. schedule_lr gives the rate of the optimizer step
 * numbered `step` (0-based: the number of steps already taken) within epoch `epoch`
 * (0-based). Per-epoch schedules (step, rampup) look at the epoch only; the Keras ones
 * at the step only, exactly as TensorFlow 2.2's optimizer.iterations; cosine at both.
 *
 *   constant             lr
 *   step                 lr * gamma^(number of milestones <= epoch)       (PyTorch MultiStepLR)
 *   cosine               linear warm-up from lr/W to lr over `warmup` epochs (W = warm-up steps),
 *                        then lr * 0.5 * (1 + cos(pi * t / T)) over the remaining T steps of
 *                        the run (t counted from the end of the warm-up): the schedule scaled
 *                        to the run's length
 *   keras-cosine         tf.keras.experimental.CosineDecay(lr, decay_steps, alpha)
 *   keras-linear-cosine  tf.keras.experimental.LinearCosineDecay(lr, decay_steps, num_periods,
 *                        alpha, beta)
 *   keras-cosine-restarts tf.keras.experimental.CosineDecayRestarts(lr, first_decay_steps =
 *                        decay_steps, t_mul, m_mul, alpha)
 *   rampup               the seed's per-epoch Keras LearningRateScheduler (Kaggle TPU "lrfn"):
 *                        e < R: start + (max - start) * e / R; then (max - min) * decay^(e - R) + min,
 *                        with max = lr, start = min = 1e-5, R = 5, decay 0.8, e from 0
 *                        (Keras passes the 0-based epoch), so epoch 5 is the peak. */
#ifndef BN_SCHEDULE_H
#define BN_SCHEDULE_H
#include <stdint.h>

#define SCHED_MAXMILESTONES 32

typedef enum {
    SCHED_CONSTANT,
    SCHED_STEP,
    SCHED_COSINE,
    SCHED_KERAS_COSINE,
    SCHED_KERAS_LINEAR_COSINE,
    SCHED_KERAS_COSINE_RESTARTS,
    SCHED_RAMPUP,
    SCHED_NKINDS
} sched_kind;

typedef struct schedule {
    sched_kind kind;
    double lr;                          /* base (or peak) rate */
    int nmilestones;                    /* step */
    int64_t milestones[SCHED_MAXMILESTONES];
    double gamma;
    double warmup;                      /* cosine: warm-up epochs */
    int64_t decay_steps;                /* Keras: decay_steps / first_decay_steps */
    double alpha, beta, num_periods;    /* Keras: defaults 0, 0.001, 0.5 */
    double t_mul, m_mul;                /* CosineDecayRestarts: defaults 2, 1 */
    double ramp_start, ramp_min, ramp_decay; /* rampup: 1e-5, 1e-5, 0.8 */
    int ramp_epochs;                    /* rampup: 5 */
    int64_t total_steps;                /* cosine: steps of the whole run */
    int64_t steps_per_epoch;            /* cosine: for the warm-up */
} schedule;

/* The kind names in sched_kind order, and parsing (-1 when unknown). */
extern const char *const sched_names[SCHED_NKINDS];
int sched_parse(const char *s);
/* Every field at its default for kind (lr 0.1, milestones none, gamma 0.1, Keras defaults...). */
void sched_defaults(schedule *s, sched_kind kind);
double schedule_lr(const schedule *s, int64_t step, int64_t epoch);
#endif
