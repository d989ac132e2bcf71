/* viz.c: grid layouts, normalisation, tile composition, histograms, PNG size check and
 * the gnuplot plumbing for filter-viz (see viz.h). */
#include "viz.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

void viz_grid(int n, int *rows, int *cols) {
    if (n <= 0) {
        *rows = *cols = 0;
        return;
    }
    int c = 1;
    while (c * c < n) c++;
    *cols = c;
    *rows = (n + c - 1) / c;
}

size_t viz_normalize(const float *x, size_t n, uint8_t *out) {
    double lo = INFINITY, hi = -INFINITY;
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) {
            bad++;
            continue;
        }
        if (x[i] < lo) lo = x[i];
        if (x[i] > hi) hi = x[i];
    }
    double span = hi - lo;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !(span > 0)) {
            out[i] = 0;
            continue;
        }
        double v = (x[i] - lo) / span * 255.0 + 0.5;
        out[i] = (uint8_t)(v >= 255.0 ? 255 : v);
    }
    return bad;
}

int viz_layout_init(viz_layout *l, int rows, int cols, int tw, int th, int gap, int min_px) {
    memset(l, 0, sizeof *l);
    if (rows <= 0 || cols <= 0 || tw <= 0 || th <= 0 || gap < 0) return -1;
    int big = tw > th ? tw : th, scale = 1;
    while (big * scale < min_px) scale++;
    long long w = (long long)cols * (tw * (long long)scale + gap) + gap;
    long long h = (long long)rows * (th * (long long)scale + gap) + gap;
    if (w > 20000 || h > 20000) return -1;
    l->rows = rows, l->cols = cols, l->tw = tw, l->th = th, l->scale = scale, l->gap = gap;
    l->w = (int)w, l->h = (int)h;
    return 0;
}

void viz_tile_origin(const viz_layout *l, int r, int c, int *x, int *y) {
    *x = l->gap + c * (l->tw * l->scale + l->gap);
    *y = l->gap + r * (l->th * l->scale + l->gap);
}

int viz_canvas_init(viz_canvas *c, int w, int h, uint32_t bg) {
    c->w = w, c->h = h;
    c->rgb = malloc((size_t)w * h * 3 + 1);
    if (!c->rgb) return -1;
    for (size_t i = 0; i < (size_t)w * h; i++) {
        c->rgb[3 * i] = (uint8_t)(bg >> 16);
        c->rgb[3 * i + 1] = (uint8_t)(bg >> 8);
        c->rgb[3 * i + 2] = (uint8_t)bg;
    }
    return 0;
}

void viz_canvas_free(viz_canvas *c) {
    free(c->rgb);
    c->rgb = NULL;
    c->w = c->h = 0;
}

void viz_put_tile(viz_canvas *cv, const viz_layout *l, int r, int c, const uint8_t *px, int channels) {
    int x0, y0, s = l->scale;
    size_t plane = (size_t)l->tw * l->th;
    viz_tile_origin(l, r, c, &x0, &y0);
    for (int y = 0; y < l->th * s; y++) {
        int cy = y0 + y;
        if (cy < 0 || cy >= cv->h) continue;
        for (int x = 0; x < l->tw * s; x++) {
            int cx = x0 + x;
            if (cx < 0 || cx >= cv->w) continue;
            size_t src = (size_t)(y / s) * l->tw + (size_t)(x / s);
            uint8_t *dst = cv->rgb + ((size_t)cy * cv->w + cx) * 3;
            for (int k = 0; k < 3; k++) dst[k] = px[(channels == 3 ? (size_t)k * plane : 0) + src];
        }
    }
}

void viz_resize(const uint8_t *src, int sw, int sh, int ch, uint8_t *dst, int dw, int dh) {
    for (int k = 0; k < ch; k++)
        for (int y = 0; y < dh; y++) {
            int sy = (int)((long long)y * sh / dh);
            for (int x = 0; x < dw; x++) {
                int sx = (int)((long long)x * sw / dw);
                dst[((size_t)k * dh + y) * dw + x] = src[((size_t)k * sh + sy) * sw + sx];
            }
        }
}

void viz_range(const float *x, size_t n, double *lo, double *hi) {
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) continue;
        if (x[i] < *lo) *lo = x[i];
        if (x[i] > *hi) *hi = x[i];
    }
}

void viz_range_fix(double *lo, double *hi) {
    if (!isfinite(*lo) || !isfinite(*hi) || *lo > *hi) {
        *lo = 0, *hi = 1;
    } else if (*lo == *hi) {
        *lo -= 0.5, *hi += 0.5;
    }
}

size_t viz_hist(const float *x, size_t n, double lo, double hi, int nbins, uint64_t *counts) {
    size_t left = 0;
    for (int b = 0; b < nbins; b++) counts[b] = 0;
    double width = (hi - lo) / nbins;
    for (size_t i = 0; i < n; i++) {
        double v = x[i];
        if (!isfinite(v) || v < lo || v > hi || !(width > 0)) {
            left++;
            continue;
        }
        int b = (int)((v - lo) / width);
        if (b >= nbins) b = nbins - 1;
        if (b < 0) b = 0;
        counts[b]++;
    }
    return left;
}

int viz_png_dims(const uint8_t *buf, size_t n, int *w, int *h) {
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n < 24 || memcmp(buf, sig, 8) != 0 || memcmp(buf + 12, "IHDR", 4) != 0) return -1;
    uint32_t ww = (uint32_t)buf[16] << 24 | (uint32_t)buf[17] << 16 | (uint32_t)buf[18] << 8 | buf[19];
    uint32_t hh = (uint32_t)buf[20] << 24 | (uint32_t)buf[21] << 16 | (uint32_t)buf[22] << 8 | buf[23];
    if (ww == 0 || hh == 0 || ww > 0x7fffffff || hh > 0x7fffffff) return -1;
    *w = (int)ww, *h = (int)hh;
    return 0;
}

/* ---- gnuplot ----------------------------------------------------------------------------- */
static int search_path(const char *name, char *out, size_t outlen) {
    if (strchr(name, '/')) {
        if (access(name, X_OK) != 0) return -1;
        snprintf(out, outlen, "%s", name);
        return 0;
    }
    const char *path = getenv("PATH");
    if (!path) path = "/usr/bin:/bin";
    while (*path) {
        size_t len = strcspn(path, ":");
        char cand[4096];
        if (len == 0)
            snprintf(cand, sizeof cand, "./%s", name);
        else
            snprintf(cand, sizeof cand, "%.*s/%s", (int)len, path, name);
        if (access(cand, X_OK) == 0) {
            snprintf(out, outlen, "%s", cand);
            return 0;
        }
        path += len;
        if (*path == ':') path++;
    }
    return -1;
}

int viz_gnuplot_find(char *out, size_t outlen, char *why, size_t whylen) {
    const char *env = getenv("BN_GNUPLOT");
    if (env && *env) {
        if (search_path(env, out, outlen) == 0) return 0;
        snprintf(why, whylen, "BN_GNUPLOT names '%s', which is not an executable program", env);
        return -1;
    }
    if (search_path("gnuplot", out, outlen) == 0) return 0;
    snprintf(why, whylen,
             "gnuplot is not installed or not in PATH (install gnuplot-nox, or set BN_GNUPLOT to its path)");
    return -1;
}

void viz_gp_quote(FILE *f, const char *s) {
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f);
        fputc(*s, f);
    }
    fputc('\'', f);
}

int viz_gnuplot_run(const char *gnuplot, const char *script, size_t len) {
    int fd[2];
    if (pipe(fd) != 0) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]), close(fd[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(fd[0], 0);
        close(fd[0]), close(fd[1]);
        execl(gnuplot, "gnuplot", (char *)NULL);
        _exit(127);
    }
    close(fd[0]);
    void (*old)(int) = signal(SIGPIPE, SIG_IGN);
    size_t done = 0;
    while (done < len) {
        ssize_t k = write(fd[1], script + done, len - done);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        done += (size_t)k;
    }
    close(fd[1]);
    signal(SIGPIPE, old);
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    if (WIFEXITED(st)) return WEXITSTATUS(st) == 127 ? -1 : WEXITSTATUS(st);
    return 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}
