/*
 * tlsctx.c: the TLS client contexts (SSL_CTX), one per distinct TLS configuration, built here
 * from the files' bytes (no lws vhost, no path-keyed cache): every connect reads the CA,
 * certificate and key files again, and a context is rebuilt when their bytes changed, so a
 * certificate rotated in place is used at the next reconnect, signal or not. Files that do not
 * load (half-written, a key that does not match the certificate) keep the previous context, in
 * one log line per new content; with no previous context the link fails with the reason.
 *
 * A context also holds: the options (minimum version, TLS 1.2 ciphers, TLS 1.3 suites), the
 * system trust store when no ca_file is given, the key log (tls.keylog_file), the client
 * certificate's expiry, and the sessions kept for resumption (one per server name and port,
 * dropped with the context whose certificate they were made with).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "io/internal.h"

#define FILE_MAX (16u * 1024u * 1024u)
#define SESSIONS_MAX 64

struct tls_session {
    char key[300]; /* "server_name port" */
    SSL_SESSION *s;
};

struct tls_ctx {
    struct tls_ctx *next;
    struct relay_transport *t;
    /* the configuration it serves (compared by value: reloads make new copies) */
    char *ca_file, *cert_file, *key_file, *ciphers, *ciphersuites, *keylog_file;
    uint16_t min_version;
    /* what runs now */
    SSL_CTX *ctx;    /* NULL until the files loaded once */
    uint8_t sum[32]; /* SHA-256 of the bytes ctx was built from */
    uint8_t bad[32]; /* bytes that did not load (said once) */
    bool bad_known;
    bool unreadable_said; /* a file could not be read: said until one can be again */
    int64_t not_after;    /* the client certificate's expiry, 0 = none */
    int keylog_fd;        /* -1 = none or not opened yet */
    struct tls_session sessions[SESSIONS_MAX];
    unsigned n_sessions;
};

static bool same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

static char *dup_or_null(const char *s, bool *oom)
{
    char *d = s ? strdup(s) : NULL;

    if (s && !d)
        *oom = true;
    return d;
}

static void drop_sessions(struct tls_ctx *c)
{
    for (unsigned i = 0; i < c->n_sessions; i++)
        SSL_SESSION_free(c->sessions[i].s);
    c->n_sessions = 0;
}

static void ctx_free(struct tls_ctx *c)
{
    drop_sessions(c);
    SSL_CTX_free(c->ctx);
    if (c->keylog_fd >= 0)
        close(c->keylog_fd);
    free(c->ca_file);
    free(c->cert_file);
    free(c->key_file);
    free(c->ciphers);
    free(c->ciphersuites);
    free(c->keylog_file);
    free(c);
}

void io_tls_ctx_free_all(struct relay_transport *t)
{
    while (t->tls_ctxs) {
        struct tls_ctx *c = t->tls_ctxs;

        t->tls_ctxs = c->next;
        ctx_free(c);
    }
}

SSL_CTX *io_tls_ctx_ssl(const struct tls_ctx *c)
{
    return c->ctx;
}

int64_t io_tls_ctx_not_after(const struct tls_ctx *c)
{
    return c->not_after;
}

struct relay_transport *io_tls_ctx_transport(SSL_CTX *sctx)
{
    struct tls_ctx *c = SSL_CTX_get_app_data(sctx);

    return c ? c->t : NULL;
}

/* ---- callbacks ---------------------------------------------------------------------------- */

/* tls.keylog_file: one line per secret (NSS key log format, what SSLKEYLOGFILE names). */
static void keylog_cb(const SSL *ssl, const char *line)
{
    struct tls_ctx *c = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    size_t n = strlen(line);
    char buf[512];

    if (!c || !c->keylog_file)
        return;
    if (c->keylog_fd < 0) {
        c->keylog_fd = open(c->keylog_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (c->keylog_fd < 0) {
            io_log(c->t, RELAY_LOG_WARN, NULL, "tls.keylog_file %s: %s", c->keylog_file,
                   strerror(errno));
            free(c->keylog_file); /* said once */
            c->keylog_file = NULL;
            return;
        }
    }
    if (n + 2 > sizeof(buf))
        return;
    memcpy(buf, line, n);
    buf[n++] = '\n';
    if (write(c->keylog_fd, buf, n) < 0) { /* a local file, a few lines per handshake */
    }
}

void io_tls_session_key(const struct link *l, char *out, size_t cap)
{
    snprintf(out, cap, "%s %u", l->server_name, (unsigned)l->port);
}

/* A new session (TLS 1.3: a ticket after the handshake): kept for this server's next
 * connection. Returns 1: the reference is ours. */
static int new_session_cb(SSL *ssl, SSL_SESSION *s)
{
    struct tls_ctx *c = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    struct link *l = SSL_get_app_data(ssl);
    char key[300];
    unsigned i;

    if (!c || !l || SSL_get_SSL_CTX(ssl) != c->ctx || !SSL_SESSION_is_resumable(s))
        return 0; /* a context replaced meanwhile: its sessions went with it */
    io_tls_session_key(l, key, sizeof(key));
    for (i = 0; i < c->n_sessions && strcmp(c->sessions[i].key, key); i++)
        ;
    if (i == c->n_sessions) {
        if (c->n_sessions == SESSIONS_MAX) {
            SSL_SESSION_free(c->sessions[0].s); /* the oldest goes */
            memmove(c->sessions, c->sessions + 1, (SESSIONS_MAX - 1) * sizeof(c->sessions[0]));
            i = --c->n_sessions;
        }
        c->n_sessions++;
        snprintf(c->sessions[i].key, sizeof(c->sessions[i].key), "%s", key);
        c->sessions[i].s = NULL;
    }
    SSL_SESSION_free(c->sessions[i].s);
    c->sessions[i].s = s;
    return 1;
}

SSL_SESSION *io_tls_ctx_session(struct tls_ctx *c, const char *key)
{
    for (unsigned i = 0; i < c->n_sessions; i++)
        if (!strcmp(c->sessions[i].key, key))
            return SSL_SESSION_is_resumable(c->sessions[i].s) ? c->sessions[i].s : NULL;
    return NULL;
}

/* OpenSSL 3.0 names TLS 1.3's newer alerts "unknown". */
static const char *alert_text(int ret)
{
    switch (ret & 0xff) {
    case 109:
        return "missing extension";
    case 115:
        return "unknown PSK identity";
    case 116:
        return "certificate required";
    case 120:
        return "no application protocol";
    default:
        return SSL_alert_desc_string_long(ret);
    }
}

/* Which settings an alert points at, for the operator. */
static const char *alert_hint(int ret)
{
    switch (ret & 0xff) {
    case 40: /* handshake_failure */
    case 71: /* insufficient_security */
        return " (nothing in common with the server: see tls.ciphers, tls.ciphersuites)";
    case 70: /* protocol_version */
        return " (no TLS version in common with the server: see tls.min_version)";
    case 120: /* no_application_protocol */
        return " (the server accepts none of tls.alpn)";
    default:
        return "";
    }
}

/* Fatal alerts become the link's reason (e.g. the server refusing our certificate: with TLS
 * 1.3 that alert comes after our side finished the handshake). */
static void info_cb(const SSL *ssl, int where, int ret)
{
    struct link *l = SSL_get_app_data(ssl);

    if (!l || !(where & SSL_CB_ALERT) || (ret >> 8) != SSL3_AL_FATAL)
        return;
    if (where & SSL_CB_READ)
        io_why_set(l, "TLS: server sent alert: %s%s", alert_text(ret), alert_hint(ret));
    else
        io_why_set(l, "TLS: handshake failed: we sent alert: %s%s", alert_text(ret),
                   alert_hint(ret));
}

/* ---- building a context ------------------------------------------------------------------- */

static const char *ssl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;

    return r ? r : "not understood";
}

/* The options of tc on a new SSL_CTX (no files). NULL with err. */
static SSL_CTX *new_ctx(const struct relay_tls_config *tc, char *err, size_t errlen)
{
    SSL_CTX *s = SSL_CTX_new(TLS_client_method());

    ERR_clear_error();
    if (!s) {
        snprintf(err, errlen, "TLS: cannot make a context: %s", ssl_reason());
        return NULL;
    }
    SSL_CTX_set_min_proto_version(s, tc->min_version == RELAY_TLS_1_3 ? TLS1_3_VERSION
                                                                      : TLS1_2_VERSION);
    if (tc->ciphers && !SSL_CTX_set_cipher_list(s, tc->ciphers)) {
        snprintf(err, errlen, "tls.ciphers \"%s\": OpenSSL knows none of these TLS 1.2 ciphers",
                 tc->ciphers);
        goto fail;
    }
    if (tc->ciphersuites && !SSL_CTX_set_ciphersuites(s, tc->ciphersuites)) {
        snprintf(err, errlen,
                 "tls.ciphersuites \"%s\": not a list of TLS 1.3 suites OpenSSL "
                 "knows (e.g. TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256)",
                 tc->ciphersuites);
        goto fail;
    }
    return s;
fail:
    ERR_clear_error();
    SSL_CTX_free(s);
    return NULL;
}

int io_tls_check_options(const struct relay_tls_config *tc, char *err, size_t errlen)
{
    SSL_CTX *s = new_ctx(tc, err, errlen);

    if (!s)
        return -EINVAL;
    SSL_CTX_free(s);
    return 0;
}

/* A whole file into *buf (malloc'ed). 0 or errno. */
static int read_file(const char *path, uint8_t **buf, size_t *len)
{
    size_t cap = 4096, n = 0;
    uint8_t *b = malloc(cap);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK), e;

    if (!b || fd < 0) {
        e = !b ? ENOMEM : errno;
        free(b);
        if (fd >= 0)
            close(fd);
        return e;
    }
    for (;;) {
        ssize_t r;

        if (n == cap) {
            uint8_t *nb = cap < FILE_MAX ? realloc(b, cap * 2) : NULL;

            if (!nb) {
                e = cap < FILE_MAX ? ENOMEM : EFBIG;
                goto fail;
            }
            b = nb;
            cap *= 2;
        }
        r = read(fd, b + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            e = errno;
            goto fail;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    *buf = b;
    *len = n;
    return 0;
fail:
    close(fd);
    free(b);
    return e;
}

struct files {
    uint8_t *data[3]; /* CA, certificate, key */
    size_t len[3];
    uint8_t sum[32];
};

static void files_free(struct files *f)
{
    for (int i = 0; i < 3; i++) {
        if (f->data[i])
            OPENSSL_cleanse(f->data[i], f->len[i]); /* the key */
        free(f->data[i]);
    }
}

/* Reads the files named (NULL: none) and hashes them. 0, or -1 with err. */
static int read_files(const struct tls_ctx *c, struct files *f, char *err, size_t errlen)
{
    const char *path[3] = {c->ca_file, c->cert_file, c->key_file};
    static const char *const key[3] = {"tls.ca_file", "tls.cert_file", "tls.key_file"};
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned sl = 0;

    memset(f, 0, sizeof(*f));
    if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
        EVP_MD_CTX_free(md);
        snprintf(err, errlen, "TLS: out of memory");
        return -1;
    }
    for (int i = 0; i < 3; i++) {
        uint64_t l;
        int e;

        if (!path[i])
            continue;
        if ((e = read_file(path[i], &f->data[i], &f->len[i]))) {
            snprintf(err, errlen, "TLS: cannot read %s %s: %s", key[i], path[i], strerror(e));
            EVP_MD_CTX_free(md);
            files_free(f);
            return -1;
        }
        l = f->len[i];
        EVP_DigestUpdate(md, &i, sizeof(i));
        EVP_DigestUpdate(md, &l, sizeof(l));
        EVP_DigestUpdate(md, f->data[i], f->len[i]);
    }
    EVP_DigestFinal_ex(md, f->sum, &sl);
    EVP_MD_CTX_free(md);
    return 0;
}

static int no_password(char *buf, int size, int rw, void *u)
{
    (void)buf;
    (void)size;
    (void)rw;
    (void)u;
    return 0; /* an encrypted key does not load */
}

/* The CA certificates of f into s's store. */
static int load_ca(SSL_CTX *s, const struct tls_ctx *c, const struct files *f, char *err,
                   size_t errlen)
{
    BIO *b;
    STACK_OF(X509_INFO) * inf;
    X509_STORE *st = SSL_CTX_get_cert_store(s);
    int n = 0;

    if (!c->ca_file)
        return SSL_CTX_set_default_verify_paths(s) ? 0 : -1; /* the system trust store */
    b = BIO_new_mem_buf(f->data[0], (int)f->len[0]);
    inf = b ? PEM_X509_INFO_read_bio(b, NULL, no_password, NULL) : NULL;
    BIO_free(b);
    for (int i = 0; inf && i < sk_X509_INFO_num(inf); i++) {
        X509_INFO *x = sk_X509_INFO_value(inf, i);

        if (x->x509 && X509_STORE_add_cert(st, x->x509))
            n++;
        if (x->crl)
            X509_STORE_add_crl(st, x->crl);
    }
    sk_X509_INFO_pop_free(inf, X509_INFO_free);
    if (!n) {
        snprintf(err, errlen, "tls.ca_file %s holds no PEM certificate", c->ca_file);
        return -1;
    }
    return 0;
}

/* Unix seconds of an ASN1_TIME, 0 when unreadable. */
static int64_t unix_time(const ASN1_TIME *at)
{
    struct tm tm;

    if (!at || !ASN1_TIME_to_tm(at, &tm))
        return 0;
    return (int64_t)timegm(&tm);
}

/* The client certificate (and its chain) and the key of f into s. */
static int load_cert(SSL_CTX *s, const struct tls_ctx *c, const struct files *f, int64_t *nafter,
                     char *err, size_t errlen)
{
    BIO *b = BIO_new_mem_buf(f->data[1], (int)f->len[1]);
    X509 *x = b ? PEM_read_bio_X509_AUX(b, NULL, no_password, NULL) : NULL;
    EVP_PKEY *k = NULL;

    if (!x || !SSL_CTX_use_certificate(s, x)) {
        bool cut = memmem(f->data[1], f->len[1], "-----BEGIN", 10) &&
                   !memmem(f->data[1], f->len[1], "-----END", 8);

        snprintf(err, errlen, "tls.cert_file %s: %s", c->cert_file,
                 x     ? ssl_reason()
                 : cut ? "no PEM certificate in it (cut short: no \"-----END\" line, "
                         "half-written?)"
                       : "no PEM certificate in it");
        goto fail;
    }
    *nafter = unix_time(X509_get0_notAfter(x));
    for (;;) { /* the intermediate certificates that follow */
        X509 *ca = PEM_read_bio_X509(b, NULL, no_password, NULL);

        if (!ca)
            break;
        if (!SSL_CTX_add0_chain_cert(s, ca)) {
            X509_free(ca);
            snprintf(err, errlen, "tls.cert_file %s: %s", c->cert_file, ssl_reason());
            goto fail;
        }
    }
    ERR_clear_error(); /* the end of the file */
    BIO_free(b);
    b = BIO_new_mem_buf(f->data[2], (int)f->len[2]);
    k = b ? PEM_read_bio_PrivateKey(b, NULL, no_password, NULL) : NULL;
    if (!k) {
        bool cut = memmem(f->data[2], f->len[2], "-----BEGIN", 10) &&
                   !memmem(f->data[2], f->len[2], "-----END", 8);

        snprintf(err, errlen, "tls.key_file %s: no usable PEM private key in it (%s)", c->key_file,
                 cut ? "cut short: no \"-----END\" line, half-written?" : ssl_reason());
        goto fail;
    }
    if (!SSL_CTX_use_PrivateKey(s, k) || !SSL_CTX_check_private_key(s)) {
        snprintf(err, errlen, "tls.key_file %s does not match tls.cert_file %s (%s)", c->key_file,
                 c->cert_file, ssl_reason());
        goto fail;
    }
    EVP_PKEY_free(k);
    X509_free(x);
    BIO_free(b);
    return 0;
fail:
    EVP_PKEY_free(k);
    X509_free(x);
    BIO_free(b);
    return -1;
}

/* A new SSL_CTX from the options of tc and the bytes of f. NULL with err. */
static SSL_CTX *build(struct tls_ctx *c, const struct relay_tls_config *tc, const struct files *f,
                      int64_t *nafter, char *err, size_t errlen)
{
    SSL_CTX *s = new_ctx(tc, err, errlen);

    *nafter = 0;
    if (!s)
        return NULL;
    if (load_ca(s, c, f, err, errlen) < 0 ||
        (c->cert_file && load_cert(s, c, f, nafter, err, errlen) < 0)) {
        ERR_clear_error();
        SSL_CTX_free(s);
        return NULL;
    }
    SSL_CTX_set_app_data(s, c);
    SSL_CTX_set_info_callback(s, info_cb);
    SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(s, new_session_cb);
    if (c->keylog_file)
        SSL_CTX_set_keylog_callback(s, keylog_cb);
    return s;
}

static struct tls_ctx *find_or_add(struct relay_transport *t, const struct relay_tls_config *tc)
{
    struct tls_ctx *c;
    bool oom = false;

    for (c = t->tls_ctxs; c; c = c->next)
        if (same(c->ca_file, tc->ca_file) && same(c->cert_file, tc->cert_file) &&
            same(c->key_file, tc->key_file) && same(c->ciphers, tc->ciphers) &&
            same(c->ciphersuites, tc->ciphersuites) && same(c->keylog_file, tc->keylog_file) &&
            c->min_version == tc->min_version)
            return c;
    c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->t = t;
    c->keylog_fd = -1;
    c->min_version = tc->min_version;
    c->ca_file = dup_or_null(tc->ca_file, &oom);
    c->cert_file = dup_or_null(tc->cert_file, &oom);
    c->key_file = dup_or_null(tc->key_file, &oom);
    c->ciphers = dup_or_null(tc->ciphers, &oom);
    c->ciphersuites = dup_or_null(tc->ciphersuites, &oom);
    c->keylog_file = dup_or_null(tc->keylog_file, &oom);
    if (oom) {
        ctx_free(c);
        return NULL;
    }
    c->next = t->tls_ctxs;
    t->tls_ctxs = c;
    return c;
}

struct tls_ctx *io_tls_ctx_get(struct relay_transport *t, const struct relay_tls_config *tc,
                               const char *who, char *err, size_t errlen)
{
    struct tls_ctx *c = find_or_add(t, tc);
    struct files f;
    int64_t nafter;
    SSL_CTX *s;
    char why[WHY_LEN];

    if (!c) {
        snprintf(err, errlen, "TLS: out of memory");
        return NULL;
    }
    if (read_files(c, &f, why, sizeof(why)) < 0) {
        if (!c->ctx) {
            snprintf(err, errlen, "%s", why);
            return NULL;
        }
        if (!c->unreadable_said)
            io_log(t, RELAY_LOG_WARN, who, "%s: keeping the TLS files read before", why);
        c->unreadable_said = true;
        return c;
    }
    c->unreadable_said = false;
    if (c->ctx && !memcmp(f.sum, c->sum, sizeof(f.sum))) {
        files_free(&f);
        return c; /* unchanged */
    }
    if (c->bad_known && !memcmp(f.sum, c->bad, sizeof(f.sum))) {
        files_free(&f); /* said already */
        if (!c->ctx)
            snprintf(err, errlen, "TLS: the files do not load (see above)");
        return c->ctx ? c : NULL;
    }
    s = build(c, tc, &f, &nafter, why, sizeof(why));
    if (!s) {
        memcpy(c->bad, f.sum, sizeof(c->bad));
        c->bad_known = true;
        files_free(&f);
        if (!c->ctx) {
            snprintf(err, errlen, "TLS: %s", why);
            return NULL;
        }
        io_log(t, RELAY_LOG_WARN, who,
               "TLS files changed but do not load (%s): keeping the previous certificate, key "
               "and CA",
               why);
        return c;
    }
    if (c->ctx)
        io_log(t, RELAY_LOG_INFO, who,
               "TLS files changed: new context in use (ca %s, certificate %s)",
               c->ca_file ? c->ca_file : "system store", c->cert_file ? c->cert_file : "none");
    drop_sessions(c);     /* made with the old certificate */
    SSL_CTX_free(c->ctx); /* live SSLs keep their own reference */
    c->ctx = s;
    c->not_after = nafter;
    memcpy(c->sum, f.sum, sizeof(c->sum));
    files_free(&f);
    return c;
}

int relay_transport_check_tls(const struct relay_config *cfg, char *err, size_t errlen)
{
    for (size_t i = 0; i < cfg->n_brokers; i++) {
        const struct relay_broker_config *b = &cfg->brokers[i];
        char why[WHY_LEN];

        if (!b->has_tls || io_tls_check_options(&b->tls, why, sizeof(why)) == 0)
            continue;
        snprintf(err, errlen, "%s:%d: broker \"%s\": %s", cfg->path, b->line, b->name, why);
        return -EINVAL;
    }
    return 0;
}
