/* main.c: the command line, signals and the service loop: wires conf -> core -> io. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/load.h"
#include "conf/mosquitto.h"
#include "conf/plan.h"
#include "core/relay.h"
#include "io/transport.h"
#include "util/log.h"
#include "util/notify.h"

/* The only globals: what the signal handler tells the loop (SIGINT/SIGTERM, SIGHUP). */
static volatile sig_atomic_t stop, reload;

static void on_signal(int sig)
{
    if (sig == SIGHUP)
        reload = 1;
    else
        stop = sig;
}

static void usage(FILE *f)
{
    fputs("usage: mqtt-relay -c FILE            run with the configuration FILE\n"
          "       mqtt-relay -c FILE --check    validate FILE, print the resolved plan, exit\n"
          "       mqtt-relay --from-mosquitto FILE\n"
          "                                     print an mqtt-relay configuration equivalent to\n"
          "                                     the bridges in a Mosquitto configuration\n"
          "       mqtt-relay --version | --help\n",
          f);
}

static void install_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    /* no SA_RESTART: the signal interrupts the event loop's poll() so the loop sees it */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
}

/* What the reload hook needs: the running relay, its transport and the configuration it runs
 * (replaced by each successful reload). */
struct app {
    struct relay *r;
    struct relay_transport *t;
    struct relay_config **cfg;
};

/* The relay's reload hook (SIGHUP and POST /-/reload both come here, through
 * relay_request_reload): read the file again; a file that does not load, or a change that
 * needs a restart, is refused and the running configuration kept. On success *cfg is the new
 * one (the old one freed). */
static int do_reload(void *arg, uint64_t now_ms, char *msg, size_t msglen)
{
    struct app *a = arg;
    struct relay_config *ncfg = calloc(1, sizeof(*ncfg));
    char err[1024];
    int rc;

    if (!ncfg) {
        snprintf(msg, msglen, "out of memory; keeping the running configuration");
        return -ENOMEM;
    }
    rc = relay_config_load((*a->cfg)->path, ncfg, err, sizeof(err));
    if (rc) {
        snprintf(msg, msglen, "%s; keeping the running configuration", err);
        free(ncfg);
        return rc;
    }
    relay_notify("RELOADING=1");
    rc = relay_reload(a->r, ncfg, now_ms, err, sizeof(err));
    if (rc) {
        snprintf(msg, msglen, "%s: %s needs a restart; keeping the running configuration",
                 (*a->cfg)->path, err);
        relay_config_cleanup(ncfg);
        free(ncfg);
    } else {
        snprintf(msg, msglen, "%s", err);
        relay_transport_set_batch_wait(a->t, ncfg->batch_wait_us);
        relay_config_cleanup(*a->cfg);
        free(*a->cfg);
        *a->cfg = ncfg;
    }
    relay_notify("READY=1");
    return rc;
}

static int run(struct relay_config **cfgp)
{
    struct relay_config *cfg = *cfgp;
    struct relay_log log;
    struct relay_transport *t = NULL;
    struct relay *r = NULL;
    struct relay_transport_opts topts = {0};
    struct app app = {.cfg = cfgp};
    char err[512];
    int rc;
    uint64_t now;

    relay_log_init(&log, cfg->log_level);
    relay_log_set_format(&log, cfg->log_format);
    relay_log_set_default(&log); /* lws' lines and the transport's */
    install_signals();
    topts.metrics_host = cfg->metrics_host;
    topts.metrics_port = cfg->metrics_port;
    topts.log_level = cfg->log_level;
    topts.batch_wait_us = cfg->batch_wait_us;
    /* the core pointer is set once the relay exists; the transport keeps opts by value */
    rc = relay_transport_new(&topts, &t, err, sizeof(err));
    if (rc) {
        relay_log(&log, RELAY_LOG_ERROR, NULL, "%s", err);
        relay_log_set_default(NULL);
        return 2;
    }
    struct relay_env env = {
        .log = &log,
        .io = relay_transport_io(t),
        .now_ms = relay_now_ms(),
        .wall_offset_ms = relay_wall_offset_ms(),
        .seed = relay_now_ms() ^ (uint64_t)getpid() << 32,
        .hooks = {.arg = &app, .reload = do_reload},
    };
    rc = relay_new(cfg, &env, &r, err, sizeof(err));
    if (rc) {
        relay_log(&log, RELAY_LOG_ERROR, NULL, "%s: %s", cfg->path, err);
        relay_transport_free(t);
        relay_log_set_default(NULL);
        return rc == -EINVAL ? 1 : 2;
    }
    app.r = r;
    app.t = t;
    relay_transport_set_core(t, r);
    relay_log(&log, RELAY_LOG_INFO, NULL,
              "mqtt-relay %s starting as \"%s\": %zu brokers, %zu routes", RELAY_VERSION_STRING,
              cfg->id, cfg->n_brokers, cfg->n_routes);
    relay_start(r, relay_now_ms());
    /* systemd (notify.c): configured and connecting; watchdog pings at half WatchdogSec */
    relay_notify("READY=1");
    uint64_t wd_every = relay_notify_watchdog_ms(), wd_next = relay_now_ms() + wd_every;
    bool stopping = false;
    while (!relay_finished(r)) {
        now = relay_now_ms();
        if (wd_every && now >= wd_next) {
            relay_notify("WATCHDOG=1");
            wd_next = now + wd_every;
        }
        if (reload && !stopping) {
            char msg[1024];

            reload = 0;
            relay_request_reload(r, "SIGHUP", relay_now_ms(), msg, sizeof(msg));
        }
        if (stop) {
            if (!stopping)
                relay_notify("STOPPING=1");
            stopping = true;
            relay_stop(r, now);
            if (relay_overdue(r, now)) {
                relay_log(&log, RELAY_LOG_WARN, NULL, "links did not close in time; exiting");
                break;
            }
        }
        if (relay_transport_service(t, 1000) < 0) {
            relay_log(&log, RELAY_LOG_ERROR, NULL, "event loop failed");
            relay_free(r);
            relay_transport_free(t);
            relay_log_set_default(NULL);
            return 2;
        }
    }
    relay_log(&log, RELAY_LOG_INFO, NULL, "stopped");
    relay_transport_free(t);
    relay_free(r);
    relay_log_set_default(NULL);
    return 0;
}

int main(int argc, char **argv)
{
    const char *file = NULL;
    bool check = false;
    struct relay_config *cfg;
    char err[1024];
    int rc;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-c") && i + 1 < argc) {
            file = argv[++i];
        } else if (!strcmp(argv[i], "--check")) {
            check = true;
        } else if (!strcmp(argv[i], "--from-mosquitto") && i + 1 < argc) {
            /* prints the converted configuration (mosquitto.c); nothing else on this line */
            if (argc != 3) {
                usage(stderr);
                return 1;
            }
            return relay_from_mosquitto(argv[++i], stdout, stderr) == 0 ? 0 : 1;
        } else if (!strcmp(argv[i], "--version")) {
            printf("mqtt-relay %s\n", RELAY_VERSION_STRING);
            return 0;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "mqtt-relay: unexpected argument \"%s\"\n", argv[i]);
            usage(stderr);
            return 1;
        }
    }
    if (!file) {
        usage(stderr);
        return 1;
    }
    cfg = calloc(1, sizeof(*cfg)); /* replaced by each successful reload */
    if (!cfg) {
        fprintf(stderr, "mqtt-relay: out of memory\n");
        return 2;
    }
    rc = relay_config_load(file, cfg, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "%s\n", err);
        free(cfg);
        return 1;
    }
    if (check) {
        relay_config_print_plan(cfg, stdout);
        rc = 0;
    } else {
        rc = run(&cfg);
    }
    relay_config_cleanup(cfg);
    free(cfg);
    return rc;
}
