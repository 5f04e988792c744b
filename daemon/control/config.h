/*
 * config.h - postcopyd's configuration: built-in defaults, then the config
 * file (GKeyFile; /etc/postcopyd/postcopyd.conf or --config PATH), then
 * command-line flags, each overriding the one before.
 *
 * Contract:
 *  - Every setting is one row of config_keys[]: the same row gives its
 *    file group/key, its --flag, its type and validation, its default and
 *    its help text.  Adding a setting = a struct field + one row.
 *  - A missing default file is fine; a missing --config file is an error.
 *  - Anything invalid (unknown group or key, bad value, relative path,
 *    stray argument) fails the whole load with one line naming the file
 *    and line, or the flag; nothing is half-applied to the caller.
 *  - The docs/postcopyd.conf.example file documents every key.
 *
 * Not to be confused with the generated BUILD/config.h (build options).
 */
#ifndef POSTCOPYD_DAEMON_CONFIG_H
#define POSTCOPYD_DAEMON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <glib.h>

#define CONFIG_DEFAULT_FILE "/etc/postcopyd/postcopyd.conf"

#define CONFIG_ERROR config_error_quark()

/* postcopyd's exit statuses, as --help and postcopyd(8) state them. */
enum {
    POSTCOPYD_EXIT_OK = 0,    /* stopped by SIGTERM or SIGINT */
    POSTCOPYD_EXIT_START = 1, /* could not start: the reason is logged */
    POSTCOPYD_EXIT_USAGE = 2, /* bad command line or configuration */
};

#define CONFIG_EXIT_STATUS_HELP                                                \
    "Exit status:\n"                                                           \
    "  0  stopped by SIGTERM or SIGINT\n"                                      \
    "  1  could not start (the reason is logged)\n"                            \
    "  2  bad command line or configuration file\n"

typedef enum {
    CONFIG_ERROR_FILE,        /* the config file cannot be read or parsed */
    CONFIG_ERROR_UNKNOWN_KEY, /* unknown group or key in the file */
    CONFIG_ERROR_INVALID,     /* a bad value, in the file or a flag */
    CONFIG_ERROR_USAGE,       /* bad command line */
} ConfigError;

struct postcopyd_config {
    char *config_file;         /* the file that was read; NULL if none was */
    char *listen;              /* peer listen address, HOST:PORT */
    char *transport;           /* peer transport: tcp */
    int keepalive_s;           /* peer connection keepalive; 0 = off */
    int peer_timeout_ms;       /* TCP_USER_TIMEOUT on peer connections */
    int busy_poll_us;          /* source requests: poll, then sleep */
    int fault_priority;        /* SCHED_FIFO of the fault path, 0: off */
    char *fault_cpus;          /* the fault path's CPU list; NULL = any */
    char *psk_file;            /* peer pre-shared key; NULL = none */
    char *tls;                 /* off|psk|x509 */
    char *tls_cert_file;       /* x509: ours; NULL = none */
    char *tls_key_file;        /* x509: its key; NULL = none */
    char *tls_ca_file;         /* x509: signs every peer; NULL = none */
    char *tls_peer_name;       /* x509: required peer name; NULL = derived */
    int insecure;              /* network listener without authentication */
    char *control_socket;      /* absolute path */
    char *attach_socket;       /* absolute path */
    char *control_allow_user;  /* besides root; NULL = nobody */
    char *control_allow_group; /* besides root; NULL = none */
    char *attach_allow_user;   /* besides root; NULL = nobody */
    char *attach_allow_group;  /* besides root; NULL = none */
    char *state_dir;           /* absolute path */
    char *log_level;           /* error|warning|info|debug */
    char *prealloc;            /* on|off: incoming RAM at attach */
};

enum config_type {
    CONFIG_STRING,       /* any non-empty string */
    CONFIG_PATH,         /* an absolute path */
    CONFIG_OPT_PATH,     /* an absolute path, or empty for none (NULL) */
    CONFIG_HOSTPORT,     /* HOST:PORT, IPv6 as [ADDR]:PORT */
    CONFIG_CHOICE,       /* one of the '|'-separated words of .choices */
    CONFIG_INT,          /* a decimal integer from .min to .max */
    CONFIG_OPT_NAME,     /* a user or group name, or empty for none (NULL) */
    CONFIG_OPT_NAME_ANY, /* any UTF-8 name (a host), or empty for none */
    CONFIG_BOOL,         /* true|false in the file, a flag without value */
    CONFIG_OPT_CPUS,     /* a CPU list (cpu_list.h), or empty for none */
};

struct config_key {
    const char *group;
    const char *key;
    const char *flag; /* long option name, without "--" */
    enum config_type type;
    size_t offset;       /* of the char * or int in struct postcopyd_config */
    const char *dflt;    /* default, written as in the file */
    const char *choices; /* CONFIG_CHOICE */
    int min, max;        /* CONFIG_INT */
    const char *help;
};

extern const struct config_key config_keys[];
extern const size_t config_nkeys;

GQuark config_error_quark(void);

/*
 * Fill @cfg (its previous contents are ignored) from the defaults,
 * CONFIG_DEFAULT_FILE or --config, and the flags in @argv (argv[0] is the
 * program name; --help prints the flags and exits).  On failure @cfg
 * holds nothing that needs freeing, but config_free() is still safe.
 */
bool config_load(struct postcopyd_config *cfg, int argc, char **argv,
                 GError **err);

/* config_load() with another default file, e.g. for tests. */
bool config_load_from(struct postcopyd_config *cfg, const char *default_file,
                      int argc, char **argv, GError **err);

/* Free what config_load() put in @cfg (not @cfg itself) and zero it. */
void config_free(struct postcopyd_config *cfg);

/*
 * The "group.key" names of the settings whose values differ between @a
 * and @b, comma-separated; NULL when none does.  g_free() it.
 */
char *config_diff(const struct postcopyd_config *a,
                  const struct postcopyd_config *b);

/* The GLib log levels that cfg->log_level lets through. */
GLogLevelFlags config_log_levels(const struct postcopyd_config *cfg);

#endif /* POSTCOPYD_DAEMON_CONFIG_H */
