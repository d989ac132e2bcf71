/* fetch.c: downloading the CIFAR-10 archive with libcurl into a cache directory (cifar.h).
 * The download goes to a temporary name (a cli_out, so a fatal signal or cli_die removes
 * it), its MD5 computed as bytes arrive, and is renamed into place only when complete and,
 * unless allowed otherwise, official. */
#include "cifar.h"
#include "cli.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cifar_default_cache_dir(char *out, size_t cap) {
    const char *x = getenv("XDG_CACHE_HOME");
    int n;
    if (x && *x) n = snprintf(out, cap, "%s/bnonly", x);
    else {
        const char *h = getenv("HOME");
        if (!h || !*h) return -1;
        n = snprintf(out, cap, "%s/.cache/bnonly", h);
    }
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* "scheme://..." with a scheme of letters, digits, '+', '-', '.' starting with a letter. */
static bool has_scheme(const char *url) {
    const char *p = strstr(url, "://");
    if (!p || p == url || !isalpha((unsigned char)url[0])) return false;
    for (const char *c = url; c < p; c++)
        if (!isalnum((unsigned char)*c) && *c != '+' && *c != '-' && *c != '.') return false;
    return true;
}

static int mkdir_p(const char *dir, char *err) {
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf) {
        snprintf(err, CIFAR_ERRMAX, "%s: path too long", dir);
        return -1;
    }
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
                snprintf(err, CIFAR_ERRMAX, "cannot create cache directory %.300s: %s", buf, strerror(errno));
                return -1;
            }
            *p = c;
            if (!c) break;
        }
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, CIFAR_ERRMAX, "cache directory %s: not a directory", dir);
        return -1;
    }
    return 0;
}

/* The cache file's name for url: the official name for the official URL; otherwise
 * "url-HASH-LAST" with 16 hex digits of the URL's MD5 and its last path component. */
static int cache_name(const char *url, char *out, size_t cap) {
    if (strcmp(url, CIFAR_URL) == 0) return snprintf(out, cap, "%s", CIFAR_ARCHIVE_NAME) >= (int)cap ? -1 : 0;
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!EVP_Digest(url, strlen(url), d, &len, EVP_md5(), NULL)) return -1;
    size_t end = strcspn(url, "?#");
    size_t start = end;
    while (start > 0 && url[start - 1] != '/') start--;
    char last[96];
    size_t k = 0;
    for (size_t i = start; i < end && k + 1 < sizeof last; i++) {
        char c = url[i];
        last[k++] = isalnum((unsigned char)c) || c == '.' || c == '-' || c == '_' ? c : '_';
    }
    last[k] = 0;
    if (!k || strcmp(last, ".") == 0 || strcmp(last, "..") == 0) snprintf(last, sizeof last, "archive");
    int n = snprintf(out, cap, "url-%02x%02x%02x%02x%02x%02x%02x%02x-%s", d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7],
                     last);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

typedef struct dl {
    cli_out *o;
    EVP_MD_CTX *md;
    int werr;
    cifar_progress_fn progress;
    void *pctx;
} dl;

static size_t on_data(char *p, size_t size, size_t n, void *ud) {
    dl *d = ud;
    size_t bytes = size * n;
    if (fwrite(p, 1, bytes, d->o->f) != bytes) {
        d->werr = errno ? errno : EIO;
        return 0;
    }
    EVP_DigestUpdate(d->md, p, bytes);
    return bytes;
}

static int on_progress(void *ud, curl_off_t total, curl_off_t now, curl_off_t ut, curl_off_t un) {
    (void)ut;
    (void)un;
    dl *d = ud;
    if (d->progress && now > 0) d->progress(d->pctx, (uint64_t)now, total > 0 ? (uint64_t)total : 0);
    return 0;
}

static int download(const char *url, const char *dest, bool allow_unofficial, cifar_progress_fn progress, void *pctx,
                    char *err) {
    static bool curl_ready;
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            snprintf(err, CIFAR_ERRMAX, "cannot initialise libcurl");
            return -1;
        }
        curl_ready = true;
    }
    dl d = {.progress = progress, .pctx = pctx};
    d.o = cli_out_open(dest, true);
    d.md = EVP_MD_CTX_new();
    CURL *c = curl_easy_init();
    if (!d.md || !c || !EVP_DigestInit_ex(d.md, EVP_md5(), NULL)) {
        snprintf(err, CIFAR_ERRMAX, "cannot start the download of %s (libcurl or MD5 unavailable)", url);
        if (c) curl_easy_cleanup(c);
        EVP_MD_CTX_free(d.md);
        cli_out_abort(d.o);
        return -1;
    }
    char cerr[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &d);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);     /* give up after 2 minutes without data */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 120L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "bnonly-cifar-fetch");
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &d);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, progress ? 0L : 1L);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_cleanup(c);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    int ok = EVP_DigestFinal_ex(d.md, md, &len);
    EVP_MD_CTX_free(d.md);
    if (rc != CURLE_OK) {
        if (d.werr) snprintf(err, CIFAR_ERRMAX, "%s: write error: %s", dest, strerror(d.werr));
        else snprintf(err, CIFAR_ERRMAX, "download of %s failed: %s", url, cerr[0] ? cerr : curl_easy_strerror(rc));
        cli_out_abort(d.o);
        return -1;
    }
    char hex[33];
    for (int i = 0; i < 16; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
    if (!ok || len != 16) {
        snprintf(err, CIFAR_ERRMAX, "MD5 failed");
        cli_out_abort(d.o);
        return -1;
    }
    if (strcmp(hex, CIFAR_MD5) != 0 && !allow_unofficial) {
        snprintf(err, CIFAR_ERRMAX,
                 "%s: checksum differs from the official CIFAR-10 release (md5 %s, official %s); not cached", url, hex,
                 CIFAR_MD5);
        cli_out_abort(d.o);
        return CIFAR_UNOFFICIAL;
    }
    cli_out_commit(d.o);
    return 0;
}

int cifar_fetch_url(const char *url, const char *cache_dir, bool allow_unofficial, cifar_progress_fn progress,
                    void *pctx, char *path_out, size_t cap, bool *downloaded, char err[CIFAR_ERRMAX]) {
    *downloaded = false;
    err[0] = 0;
    if (!has_scheme(url)) {   /* a local path, read where it is */
        struct stat st;
        if (strcmp(url, "-") != 0) {
            if (stat(url, &st) != 0) {
                snprintf(err, CIFAR_ERRMAX, "%s: %s", url, strerror(errno));
                return -1;
            }
            if (S_ISDIR(st.st_mode)) {
                snprintf(err, CIFAR_ERRMAX, "%s: is a directory", url);
                return -1;
            }
        }
        if (snprintf(path_out, cap, "%s", url) >= (int)cap) {
            snprintf(err, CIFAR_ERRMAX, "%s: path too long", url);
            return -1;
        }
        return 0;
    }
    if (!cache_dir) {
        snprintf(err, CIFAR_ERRMAX, "no cache directory: set HOME or XDG_CACHE_HOME, or use --cache-dir");
        return -1;
    }
    char name[160];
    if (cache_name(url, name, sizeof name)) {
        snprintf(err, CIFAR_ERRMAX, "%s: cannot make a cache name", url);
        return -1;
    }
    if (snprintf(path_out, cap, "%s/%s", cache_dir, name) >= (int)cap) {
        snprintf(err, CIFAR_ERRMAX, "%s: path too long", cache_dir);
        return -1;
    }
    struct stat st;
    if (stat(path_out, &st) == 0 && S_ISREG(st.st_mode)) return 0;   /* cached */
    if (mkdir_p(cache_dir, err)) return -1;
    int rc = download(url, path_out, allow_unofficial, progress, pctx, err);
    if (rc == 0) *downloaded = true;
    return rc;
}
