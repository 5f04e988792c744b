/* config.c - see config.h. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_list.h"
#include "hostport.h"
#include "version.h"

#define OFF(field) offsetof(struct postcopyd_config, field)

const struct config_key config_keys[] = {
    {"peer", "listen", "listen", CONFIG_HOSTPORT, OFF(listen), "0.0.0.0:4444",
     .help = "Address the peer daemon connects to"},
    {"peer", "transport", "transport", CONFIG_CHOICE, OFF(transport), "tcp",
     .choices = "tcp|rdma|rdma-test-double",
     .help = "How peer channels travel: tcp, or rdma (a build with RDMA, "
             "a host with an RDMA device; both daemons must agree); "
             "rdma-test-double is for tests only (docs/rdma.md)"},
    {"peer", "keepalive", "keepalive", CONFIG_INT, OFF(keepalive_s), "15",
     .min = 0, .max = 3600,
     .help = "Seconds of peer silence before a keepalive probe (0: off)"},
    {"peer", "timeout", "peer-timeout", CONFIG_INT, OFF(peer_timeout_ms),
     "30000", .min = 0, .max = 3600000,
     .help = "Milliseconds unacknowledged data may wait before the peer "
             "counts as gone (TCP_USER_TIMEOUT; 0: the kernel's)"},
    {"peer", "busy-poll", "busy-poll", CONFIG_INT, OFF(busy_poll_us), "200",
     .min = 0, .max = 10000,
     .help = "Source, postcopy: microseconds to poll for the next page "
             "request before sleeping (0: never poll)"},
    {"peer", "fault-priority", "fault-priority", CONFIG_INT,
     OFF(fault_priority), "1", .min = 0, .max = 99,
     .help = "SCHED_FIFO priority of the threads a faulting vCPU waits "
             "for, and of the downtime's path (0: normal priority)"},
    {"peer", "fault-cpus", "fault-cpus", CONFIG_OPT_CPUS, OFF(fault_cpus), "",
     .help = "CPUs the threads a faulting vCPU waits for run on, e.g. "
             "those that take the NIC's interrupts (empty: any)"},
    {"peer", "psk-file", "psk-file", CONFIG_OPT_PATH, OFF(psk_file), "",
     .help = "File with the key shared with the peer (empty: none)"},
    {"peer", "tls", "tls", CONFIG_CHOICE, OFF(tls), "off",
     .choices = "off|psk|x509",
     .help = "TLS 1.3 on peer channels: off, psk (key from psk-file) or "
             "x509 (mutual certificates)"},
    {"peer", "tls-cert-file", "tls-cert-file", CONFIG_OPT_PATH,
     OFF(tls_cert_file), "",
     .help = "tls = x509: this daemon's certificate (PEM)"},
    {"peer", "tls-key-file", "tls-key-file", CONFIG_OPT_PATH, OFF(tls_key_file),
     "", .help = "tls = x509: the certificate's private key (PEM)"},
    {"peer", "tls-ca-file", "tls-ca-file", CONFIG_OPT_PATH, OFF(tls_ca_file),
     "", .help = "tls = x509: the CA that signs every peer's certificate"},
    {"peer", "tls-peer-name", "tls-peer-name", CONFIG_OPT_NAME_ANY,
     OFF(tls_peer_name), "",
     .help = "tls = x509: the name a peer's certificate must carry "
             "(empty: the host a source dials, the address a source "
             "connects from)"},
    {"peer", "insecure", "insecure", CONFIG_BOOL, OFF(insecure), "false",
     .help = "Listen on a network address with no psk-file and no x509 "
             "TLS: peers are not authenticated (trusted networks only)"},
    {"control", "socket", "control-socket", CONFIG_PATH, OFF(control_socket),
     "/run/postcopyd/control.sock", .help = "Control socket (JSON commands)"},
    {"control", "allow-user", "control-allow-user", CONFIG_OPT_NAME,
     OFF(control_allow_user), "",
     .help = "User allowed on the control socket besides root"},
    {"control", "allow-group", "control-allow-group", CONFIG_OPT_NAME,
     OFF(control_allow_group), "",
     .help = "Group allowed on the control socket besides root"},
    {"attach", "socket", "attach-socket", CONFIG_PATH, OFF(attach_socket),
     "/run/postcopyd/attach.sock", .help = "Socket VMMs attach to"},
    {"attach", "allow-user", "attach-allow-user", CONFIG_OPT_NAME,
     OFF(attach_allow_user), "",
     .help = "User allowed on the attach socket besides root"},
    {"attach", "allow-group", "attach-allow-group", CONFIG_OPT_NAME,
     OFF(attach_allow_group), "",
     .help = "Group allowed on the attach socket besides root"},
    {"daemon", "state-dir", "state-dir", CONFIG_PATH, OFF(state_dir),
     "/run/postcopyd", .help = "Directory for migration state files"},
    {"daemon", "log-level", "log-level", CONFIG_CHOICE, OFF(log_level), "info",
     .choices = "error|warning|info|debug", .help = "Least severe to log"},
    {"daemon", "prealloc", "prealloc", CONFIG_CHOICE, OFF(prealloc), "on",
     .choices = "on|off",
     .help = "Allocate an incoming VM's shmem/hugetlbfs RAM when its VMM "
             "attaches (on), or as pages arrive (off)"},
};
const size_t config_nkeys = G_N_ELEMENTS(config_keys);

/* Held in an int field rather than a char *. */
static bool config_is_int(const struct config_key *k)
{
    return k->type == CONFIG_INT || k->type == CONFIG_BOOL;
}

G_DEFINE_QUARK(postcopyd - config - error - quark, config_error)

/* What the command line said, applied after the file. */
struct flag_values {
    char *config_file;
    char *values[G_N_ELEMENTS(config_keys)];
};

static bool invalid(GError **err, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static bool invalid(GError **err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    g_propagate_error(
        err, g_error_new_valist(CONFIG_ERROR, CONFIG_ERROR_INVALID, fmt, ap));
    va_end(ap);
    return false;
}

static bool is_choice(const char *choices, const char *v)
{
    g_auto(GStrv) words = g_strsplit(choices, "|", -1);

    return *v && g_strv_contains((const char *const *)words, v);
}

static bool parse_int(const struct config_key *k, const char *v, int *out,
                      GError **err)
{
    char *end;
    long n;

    errno = 0;
    n = strtol(v, &end, 10);
    if (!*v || *end || errno == ERANGE) {
        return invalid(err, "'%s' is not an integer", v);
    }
    if (n < k->min || n > k->max) {
        return invalid(err, "%ld is out of range (%d to %d)", n, k->min,
                       k->max);
    }
    *out = n;
    return true;
}

/*
 * The portable user/group name set (POSIX: letters, digits, '.', '_',
 * '-', not starting with '-'); whether it exists is checked where it is
 * resolved, when the socket is created.
 */
static bool is_name(const char *v)
{
    if (!*v || *v == '-') {
        return false;
    }
    for (const char *c = v; *c; c++) {
        if (!g_ascii_isalnum(*c) && *c != '.' && *c != '_' && *c != '-') {
            return false;
        }
    }
    return true;
}

static bool check_hostport(const char *v, GError **err)
{
    g_autoptr(GError) local = NULL;
    uint16_t port;

    return hostport_parse(v, 0, 0, NULL, &port, &local) ||
           invalid(err, "%s", local->message);
}

static bool check_cpus(const char *v, GError **err)
{
    g_autoptr(GError) local = NULL;
    cpu_set_t set;

    return !*v || cpu_list_parse(v, &set, &local) ||
           invalid(err, "%s", local->message);
}

/* Check a string-valued setting against its type. */
static bool check_string(const struct config_key *k, const char *v,
                         GError **err)
{
    switch (k->type) {
    case CONFIG_STRING:
        return *v || invalid(err, "empty value");
    case CONFIG_OPT_PATH:
        return !*v || g_path_is_absolute(v) ||
               invalid(err, "'%s' is not an absolute path", v);
    case CONFIG_PATH:
        return g_path_is_absolute(v) ||
               invalid(err, "'%s' is not an absolute path", v);
    case CONFIG_HOSTPORT:
        return check_hostport(v, err);
    case CONFIG_CHOICE:
        return is_choice(k->choices, v) ||
               invalid(err, "invalid value '%s' (expected %s)", v, k->choices);
    case CONFIG_OPT_NAME:
        return !*v || is_name(v) ||
               invalid(err, "'%s' is not a user or group name", v);
    case CONFIG_OPT_NAME_ANY:
        return !*v || g_utf8_validate(v, -1, NULL) ||
               invalid(err, "'%s' is not valid UTF-8", v);
    case CONFIG_BOOL:
        return is_choice("true|false", v) ||
               invalid(err, "invalid value '%s' (expected true|false)", v);
    case CONFIG_OPT_CPUS:
        return check_cpus(v, err);
    case CONFIG_INT:
        break;
    }
    g_assert_not_reached();
}

static bool set_value(struct postcopyd_config *cfg, const struct config_key *k,
                      const char *v, GError **err)
{
    char **field = (char **)((char *)cfg + k->offset);

    if (k->type == CONFIG_INT) {
        return parse_int(k, v, (int *)((char *)cfg + k->offset), err);
    }
    if (!check_string(k, v, err)) {
        return false;
    }
    if (k->type == CONFIG_BOOL) {
        *(int *)((char *)cfg + k->offset) = !strcmp(v, "true");
        return true;
    }
    g_free(*field);
    *field = (k->type == CONFIG_OPT_PATH || k->type == CONFIG_OPT_NAME ||
              k->type == CONFIG_OPT_NAME_ANY || k->type == CONFIG_OPT_CPUS) &&
                     !*v
                 ? NULL
                 : g_strdup(v);
    return true;
}

static const struct config_key *find_key(const char *group, const char *key)
{
    for (size_t i = 0; i < config_nkeys; i++) {
        if (!strcmp(config_keys[i].group, group) &&
            !strcmp(config_keys[i].key, key)) {
            return &config_keys[i];
        }
    }
    return NULL;
}

static bool group_known(const char *group)
{
    for (size_t i = 0; i < config_nkeys; i++) {
        if (!strcmp(config_keys[i].group, group)) {
            return true;
        }
    }
    return false;
}

/*
 * GKeyFile does not say where a key was: find the line of @key in
 * @group (or of the group header when @key is NULL) for the message.
 * The last occurrence wins, as it does in GKeyFile.
 */
static int find_line(const char *text, const char *group, const char *key)
{
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    g_autofree char *header = g_strdup_printf("[%s]", group);
    bool in_group = false;
    int found = 0;

    for (int i = 0; lines[i]; i++) {
        char *l = g_strstrip(lines[i]);
        char *eq = strchr(l, '=');

        if (l[0] == '[') {
            in_group = !strcmp(l, header);
            found = !key && in_group ? i + 1 : found;
        } else if (key && in_group && eq && l[0] != '#') {
            *eq = '\0';
            found = !strcmp(g_strchomp(l), key) ? i + 1 : found;
        }
    }
    return found;
}

static void prefix_where(GError **err, const char *path, const char *text,
                         const char *group, const char *key)
{
    int line = find_line(text, group, key);

    if (line) {
        g_prefix_error(err, "%s:%d: ", path, line);
    } else {
        g_prefix_error(err, "%s: ", path);
    }
}

static bool apply_group(struct postcopyd_config *cfg, GKeyFile *kf,
                        const char *path, const char *text, const char *group,
                        GError **err)
{
    g_auto(GStrv) keys = g_key_file_get_keys(kf, group, NULL, NULL);

    if (!group_known(group)) {
        g_set_error(err, CONFIG_ERROR, CONFIG_ERROR_UNKNOWN_KEY,
                    "unknown group [%s]", group);
        prefix_where(err, path, text, group, NULL);
        return false;
    }
    for (size_t i = 0; keys && keys[i]; i++) {
        const struct config_key *k = find_key(group, keys[i]);
        g_autofree char *v = NULL;

        if (!k) {
            g_set_error(err, CONFIG_ERROR, CONFIG_ERROR_UNKNOWN_KEY,
                        "unknown key '%s' in group [%s]", keys[i], group);
            prefix_where(err, path, text, group, keys[i]);
            return false;
        }
        v = g_key_file_get_string(kf, group, keys[i], err);
        if (!v || !set_value(cfg, k, g_strstrip(v), err)) {
            g_prefix_error(err, "[%s] %s: ", group, keys[i]);
            prefix_where(err, path, text, group, keys[i]);
            return false;
        }
    }
    return true;
}

static bool apply_file(struct postcopyd_config *cfg, const char *path,
                       bool explicit, GError **err)
{
    g_autoptr(GKeyFile) kf = g_key_file_new();
    g_autoptr(GError) local = NULL;
    g_autofree char *text = NULL;
    g_auto(GStrv) groups = NULL;
    gsize len;

    if (!g_file_get_contents(path, &text, &len, &local)) {
        if (!explicit &&
            g_error_matches(local, G_FILE_ERROR, G_FILE_ERROR_NOENT)) {
            return true;
        }
        g_set_error(err, CONFIG_ERROR, CONFIG_ERROR_FILE,
                    "cannot read config file: %s", local->message);
        return false;
    }
    if (!g_key_file_load_from_data(kf, text, len, G_KEY_FILE_NONE, &local)) {
        g_set_error(err, CONFIG_ERROR, CONFIG_ERROR_FILE, "%s: %s", path,
                    local->message);
        return false;
    }
    groups = g_key_file_get_groups(kf, NULL);
    for (size_t i = 0; groups[i]; i++) {
        if (!apply_group(cfg, kf, path, text, groups[i], err)) {
            return false;
        }
    }
    cfg->config_file = g_strdup(path);
    return true;
}

static gboolean flag_cb(const char *name, const char *value, gpointer data,
                        GError **err)
{
    struct flag_values *fv = data;

    for (size_t i = 0; i < config_nkeys; i++) {
        if (g_str_has_prefix(name, "--") &&
            !strcmp(name + 2, config_keys[i].flag)) {
            g_free(fv->values[i]);
            /* A CONFIG_BOOL flag takes no value: saying it means true. */
            fv->values[i] = g_strdup(value ? value : "true");
            return TRUE;
        }
    }
    g_set_error(err, G_OPTION_ERROR, G_OPTION_ERROR_UNKNOWN_OPTION,
                "unknown option %s", name);
    return FALSE;
}

static const char *arg_description(const struct config_key *k)
{
    switch (k->type) {
    case CONFIG_PATH:
    case CONFIG_OPT_PATH:
        return "PATH";
    case CONFIG_HOSTPORT:
        return "HOST:PORT";
    case CONFIG_CHOICE:
        return k->choices;
    case CONFIG_INT:
        return "N";
    case CONFIG_OPT_NAME:
    case CONFIG_OPT_NAME_ANY:
        return "NAME";
    case CONFIG_BOOL:
        return NULL;
    case CONFIG_OPT_CPUS:
        return "CPUS";
    case CONFIG_STRING:
        break;
    }
    return "VALUE";
}

/* Exits, as --help does: nothing else on that command line matters. */
static gboolean version_cb(const gchar *name, const gchar *value, gpointer data,
                           GError **err)
{
    printf("postcopyd %s\n", POSTCOPYD_VERSION);
    exit(0);
}

static GOptionContext *option_context(struct flag_values *fv)
{
    GOptionContext *ctx = g_option_context_new("- postcopy live migration");
    GOptionGroup *grp = g_option_group_new(NULL, NULL, NULL, fv, NULL);
    GOptionEntry e[G_N_ELEMENTS(config_keys) + 3] = {
        {.long_name = "config",
         .short_name = 'c',
         .arg = G_OPTION_ARG_FILENAME,
         .arg_data = &fv->config_file,
         .description = "Config file (default " CONFIG_DEFAULT_FILE ")",
         .arg_description = "PATH"},
        {.long_name = "version",
         .flags = G_OPTION_FLAG_NO_ARG,
         .arg = G_OPTION_ARG_CALLBACK,
         .arg_data = (gpointer)version_cb,
         .description = "Print the version and exit"},
    };

    for (size_t i = 0; i < config_nkeys; i++) {
        e[i + 2] = (GOptionEntry){
            .long_name = config_keys[i].flag,
            .flags =
                config_keys[i].type == CONFIG_BOOL ? G_OPTION_FLAG_NO_ARG : 0,
            .arg = G_OPTION_ARG_CALLBACK,
            .arg_data = (gpointer)flag_cb,
            .description = config_keys[i].help,
            .arg_description = arg_description(&config_keys[i]),
        };
    }
    g_option_group_add_entries(grp, e);
    g_option_context_set_main_group(ctx, grp);
    g_option_context_set_description(ctx, CONFIG_EXIT_STATUS_HELP);
    return ctx;
}

static bool parse_flags(struct flag_values *fv, int argc, char **argv,
                        GError **err)
{
    g_autoptr(GOptionContext) ctx = option_context(fv);
    g_auto(GStrv) args = g_new0(char *, argc + 1);
    g_autoptr(GError) local = NULL;

    /* parse_strv() rearranges the vector: leave the caller's alone. */
    for (int i = 0; i < argc; i++) {
        args[i] = g_strdup(argv[i]);
    }
    if (!g_option_context_parse_strv(ctx, &args, &local)) {
        g_set_error(err, CONFIG_ERROR, CONFIG_ERROR_USAGE, "command line: %s",
                    local->message);
        return false;
    }
    if (args[0] && args[1]) {
        g_set_error(err, CONFIG_ERROR, CONFIG_ERROR_USAGE,
                    "command line: unexpected argument '%s'", args[1]);
        return false;
    }
    return true;
}

static bool apply_flags(struct postcopyd_config *cfg, struct flag_values *fv,
                        GError **err)
{
    for (size_t i = 0; i < config_nkeys; i++) {
        if (fv->values[i] &&
            !set_value(cfg, &config_keys[i], fv->values[i], err)) {
            g_prefix_error(err, "--%s: ", config_keys[i].flag);
            return false;
        }
    }
    return true;
}

static void apply_defaults(struct postcopyd_config *cfg)
{
    for (size_t i = 0; i < config_nkeys; i++) {
        g_autoptr(GError) err = NULL;

        if (!set_value(cfg, &config_keys[i], config_keys[i].dflt, &err)) {
            g_error("config: bad default for %s: %s", config_keys[i].key,
                    err->message);
        }
    }
}

static void flag_values_clear(struct flag_values *fv)
{
    g_free(fv->config_file);
    for (size_t i = 0; i < config_nkeys; i++) {
        g_free(fv->values[i]);
    }
}

bool config_load_from(struct postcopyd_config *cfg, const char *default_file,
                      int argc, char **argv, GError **err)
{
    struct flag_values fv = {0};
    bool ok = false;

    memset(cfg, 0, sizeof(*cfg));
    if (!parse_flags(&fv, argc, argv, err)) {
        goto out;
    }
    apply_defaults(cfg);
    if (!apply_file(cfg, fv.config_file ? fv.config_file : default_file,
                    fv.config_file != NULL, err)) {
        goto out;
    }
    ok = apply_flags(cfg, &fv, err);
out:
    flag_values_clear(&fv);
    if (!ok) {
        config_free(cfg);
    }
    return ok;
}

bool config_load(struct postcopyd_config *cfg, int argc, char **argv,
                 GError **err)
{
    return config_load_from(cfg, CONFIG_DEFAULT_FILE, argc, argv, err);
}

void config_free(struct postcopyd_config *cfg)
{
    g_free(cfg->config_file);
    for (size_t i = 0; i < config_nkeys; i++) {
        if (!config_is_int(&config_keys[i])) {
            g_free(*(char **)((char *)cfg + config_keys[i].offset));
        }
    }
    memset(cfg, 0, sizeof(*cfg));
}

static bool key_differs(const struct config_key *k,
                        const struct postcopyd_config *a,
                        const struct postcopyd_config *b)
{
    const void *va = (const char *)a + k->offset;
    const void *vb = (const char *)b + k->offset;

    if (config_is_int(k)) {
        return *(const int *)va != *(const int *)vb;
    }
    return g_strcmp0(*(char *const *)va, *(char *const *)vb) != 0;
}

char *config_diff(const struct postcopyd_config *a,
                  const struct postcopyd_config *b)
{
    g_autoptr(GString) s = g_string_new(NULL);

    for (size_t i = 0; i < config_nkeys; i++) {
        if (key_differs(&config_keys[i], a, b)) {
            g_string_append_printf(s, "%s%s.%s", s->len ? ", " : "",
                                   config_keys[i].group, config_keys[i].key);
        }
    }
    return s->len ? g_string_free(g_steal_pointer(&s), FALSE) : NULL;
}

GLogLevelFlags config_log_levels(const struct postcopyd_config *cfg)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};
    static const GLogLevelFlags upto[] = {
        G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL,
        G_LOG_LEVEL_WARNING,
        G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO,
        G_LOG_LEVEL_DEBUG,
    };
    GLogLevelFlags mask = 0;

    for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
        mask |= upto[i];
        if (cfg->log_level && !strcmp(cfg->log_level, names[i])) {
            break;
        }
    }
    return mask;
}
