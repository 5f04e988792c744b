/*
 * test_config.c - postcopyd's configuration: defaults, the file, flags
 * over the file, every validation error with its message, and the
 * installed example file.
 */
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "testlib.h"

struct tmp {
    char *dir;
    char *file;
};

static void tmp_init(struct tmp *t, const char *contents)
{
    t->dir = g_dir_make_tmp("test-config-XXXXXX", NULL);
    g_assert_nonnull(t->dir);
    t->file = g_build_filename(t->dir, "postcopyd.conf", NULL);
    if (contents) {
        g_assert_true(g_file_set_contents(t->file, contents, -1, NULL));
    }
}

static void tmp_clear(struct tmp *t)
{
    g_unlink(t->file);
    g_rmdir(t->dir);
    g_free(t->file);
    g_free(t->dir);
}

/* Load with @default_file and the flags in the NULL-terminated @argv. */
static bool load(struct postcopyd_config *cfg, const char *default_file,
                 const char *const *argv, GError **err)
{
    g_autoptr(GPtrArray) a = g_ptr_array_new();

    g_ptr_array_add(a, (char *)"postcopyd");
    for (size_t i = 0; argv && argv[i]; i++) {
        g_ptr_array_add(a, (char *)argv[i]);
    }
    return config_load_from(cfg, default_file, a->len, (char **)a->pdata, err);
}

static void assert_defaults(const struct postcopyd_config *cfg)
{
    g_assert_cmpstr(cfg->listen, ==, "0.0.0.0:4444");
    g_assert_cmpstr(cfg->transport, ==, "tcp");
    g_assert_cmpint(cfg->keepalive_s, ==, 15);
    g_assert_null(cfg->psk_file);
    g_assert_cmpstr(cfg->control_socket, ==, "/run/postcopyd/control.sock");
    g_assert_cmpstr(cfg->attach_socket, ==, "/run/postcopyd/attach.sock");
    g_assert_cmpstr(cfg->state_dir, ==, "/run/postcopyd");
    g_assert_cmpstr(cfg->log_level, ==, "info");
    g_assert_null(cfg->fault_cpus);
}

static void test_defaults(void)
{
    struct postcopyd_config cfg;
    g_autoptr(GError) err = NULL;
    struct tmp t;

    tmp_init(&t, NULL); /* the default file does not exist: fine */
    g_assert_true(load(&cfg, t.file, NULL, &err));
    g_assert_no_error(err);
    assert_defaults(&cfg);
    g_assert_null(cfg.config_file);
    config_free(&cfg);
    tmp_clear(&t);
}

static const char full_file[] = "# every key\n"
                                "[peer]\n"
                                "listen = [::]:5555\n"
                                "keepalive = 0\n"
                                "fault-cpus = 0,2-3\n"
                                "psk-file = /etc/postcopyd/psk\n"
                                "[control]\n"
                                "socket=/tmp/c.sock\n"
                                "[attach]\n"
                                "socket=/tmp/a.sock\n"
                                "[daemon]\n"
                                "state-dir = /var/lib/postcopyd\n"
                                "log-level = debug\n";

static void test_default_file(void)
{
    struct postcopyd_config cfg;
    g_autoptr(GError) err = NULL;
    struct tmp t;

    tmp_init(&t, full_file);
    g_assert_true(load(&cfg, t.file, NULL, &err));
    g_assert_no_error(err);
    g_assert_cmpstr(cfg.config_file, ==, t.file);
    g_assert_cmpstr(cfg.listen, ==, "[::]:5555");
    g_assert_cmpint(cfg.keepalive_s, ==, 0);
    g_assert_cmpstr(cfg.fault_cpus, ==, "0,2-3");
    g_assert_cmpstr(cfg.psk_file, ==, "/etc/postcopyd/psk");
    g_assert_cmpstr(cfg.control_socket, ==, "/tmp/c.sock");
    g_assert_cmpstr(cfg.attach_socket, ==, "/tmp/a.sock");
    g_assert_cmpstr(cfg.state_dir, ==, "/var/lib/postcopyd");
    g_assert_cmpstr(cfg.log_level, ==, "debug");
    config_free(&cfg);
    tmp_clear(&t);
}

static void test_flags_override_file(void)
{
    struct postcopyd_config cfg;
    g_autoptr(GError) err = NULL;
    g_autofree char *opt = NULL;
    struct tmp t;

    tmp_init(&t, full_file);
    opt = g_strconcat("--config=", t.file, NULL);
    {
        const char *argv[] = {opt,
                              "--listen",
                              "10.0.0.1:4000",
                              "--log-level=warning",
                              "--keepalive=30",
                              "--psk-file=",
                              "--fault-cpus=",
                              "--control-socket=/run/x.sock",
                              NULL};

        g_assert_true(load(&cfg, "/nonexistent/postcopyd.conf", argv, &err));
    }
    g_assert_no_error(err);
    g_assert_cmpstr(cfg.config_file, ==, t.file);
    g_assert_cmpstr(cfg.listen, ==, "10.0.0.1:4000");
    g_assert_cmpstr(cfg.log_level, ==, "warning");
    g_assert_cmpint(cfg.keepalive_s, ==, 30);
    g_assert_null(cfg.psk_file);
    g_assert_null(cfg.fault_cpus); /* emptied by the flag */
    g_assert_cmpstr(cfg.control_socket, ==, "/run/x.sock");
    /* Not given as flags: still from the file. */
    g_assert_cmpstr(cfg.attach_socket, ==, "/tmp/a.sock");
    g_assert_cmpstr(cfg.state_dir, ==, "/var/lib/postcopyd");
    config_free(&cfg);
    tmp_clear(&t);
}

static void test_missing_explicit_config(void)
{
    const char *argv[] = {"--config", "/nonexistent/dir/my.conf", NULL};
    struct postcopyd_config cfg;
    g_autoptr(GError) err = NULL;

    g_assert_false(load(&cfg, "/nonexistent/postcopyd.conf", argv, &err));
    g_assert_error(err, CONFIG_ERROR, CONFIG_ERROR_FILE);
    g_assert_nonnull(strstr(err->message, "/nonexistent/dir/my.conf"));
    g_assert_null(strchr(err->message, '\n'));
    g_assert_null(cfg.listen); /* nothing half-applied */
    config_free(&cfg);
}

struct bad_file {
    const char *contents;
    int code;
    const char *message; /* after "FILE:" */
};

static const struct bad_file bad_files[] = {
    {"[peer]\ntransport = udp\n", CONFIG_ERROR_INVALID,
     ":2: [peer] transport: invalid value 'udp' (expected "
     "tcp|rdma|rdma-test-double)"},
    {"[daemon]\n\nlog-level = loud\n", CONFIG_ERROR_INVALID,
     ":3: [daemon] log-level: invalid value 'loud' "
     "(expected error|warning|info|debug)"},
    {"[peer]\nlisten = nohost\n", CONFIG_ERROR_INVALID,
     ":2: [peer] listen: invalid address 'nohost': missing ':PORT'"},
    {"[peer]\nlisten = 1.2.3.4:0\n", CONFIG_ERROR_INVALID,
     ":2: [peer] listen: invalid address '1.2.3.4:0': the port must be a "
     "number from 1 to 65535"},
    {"[peer]\nlisten = host:http\n", CONFIG_ERROR_INVALID,
     ":2: [peer] listen: invalid address 'host:http': the port must be a "
     "number from 1 to 65535"},
    {"[peer]\nlisten = ::1:4444\n", CONFIG_ERROR_INVALID,
     ":2: [peer] listen: invalid address '::1:4444': write an IPv6 address "
     "in brackets, as [::1]:4444"},
    {"[peer]\nlisten = [::1]\n", CONFIG_ERROR_INVALID,
     ":2: [peer] listen: invalid address '[::1]': expected ':PORT' after "
     "']'"},
    {"[peer]\nlisten = [1.2.3.4]:1\n", CONFIG_ERROR_INVALID,
     ":2: [peer] listen: invalid address '[1.2.3.4]:1': not an IPv6 address "
     "between the brackets"},
    {"[peer]\nkeepalive = soon\n", CONFIG_ERROR_INVALID,
     ":2: [peer] keepalive: 'soon' is not an integer"},
    {"[peer]\nkeepalive = 99999\n", CONFIG_ERROR_INVALID,
     ":2: [peer] keepalive: 99999 is out of range (0 to 3600)"},
    {"[peer]\nfault-cpus = 3-1\n", CONFIG_ERROR_INVALID,
     ":2: [peer] fault-cpus: '3-1' is not a CPU list (a range is LOW-HIGH, "
     "LOW <= HIGH;"},
    {"[peer]\npsk-file = key.txt\n", CONFIG_ERROR_INVALID,
     ":2: [peer] psk-file: 'key.txt' is not an absolute path"},
    {"[control]\nsocket = run/control.sock\n", CONFIG_ERROR_INVALID,
     ":2: [control] socket: 'run/control.sock' is not an absolute path"},
    {"[attach]\nsocket =\n", CONFIG_ERROR_INVALID,
     ":2: [attach] socket: '' is not an absolute path"},
    {"[daemon]\nstate-dir = .\n", CONFIG_ERROR_INVALID,
     ":2: [daemon] state-dir: '.' is not an absolute path"},
    {"[daemon]\nlog-level = info\nbogus = 1\n", CONFIG_ERROR_UNKNOWN_KEY,
     ":3: unknown key 'bogus' in group [daemon]"},
    {"# c\n[peer]\nlisten = 0.0.0.0:1\n[nope]\nx = 1\n",
     CONFIG_ERROR_UNKNOWN_KEY, ":4: unknown group [nope]"},
    {"[daemon]\njust words\n", CONFIG_ERROR_FILE, ": "},
    {"log-level = info\n", CONFIG_ERROR_FILE, ": "},
};

static void test_bad_file(gconstpointer data)
{
    const struct bad_file *b = data;
    struct postcopyd_config cfg;
    g_autoptr(GError) err = NULL;
    g_autofree char *expected = NULL;
    struct tmp t;

    tmp_init(&t, b->contents);
    g_assert_false(load(&cfg, t.file, NULL, &err));
    g_assert_error(err, CONFIG_ERROR, b->code);
    expected = g_strconcat(t.file, b->message, NULL);
    g_test_message("error: %s", err->message);
    g_assert_true(g_str_has_prefix(err->message, expected));
    g_assert_null(strchr(err->message, '\n'));
    g_assert_null(cfg.listen);
    config_free(&cfg);
    tmp_clear(&t);
}

struct bad_flag {
    const char *argv[3];
    int code;
    const char *message;
};

static const struct bad_flag bad_flags[] = {
    {{"--log-level=loud"},
     CONFIG_ERROR_INVALID,
     "--log-level: invalid value 'loud' (expected error|warning|info|debug)"},
    {{"--state-dir", "run"},
     CONFIG_ERROR_INVALID,
     "--state-dir: 'run' is not an absolute path"},
    {{"--listen=4444"},
     CONFIG_ERROR_INVALID,
     "--listen: invalid address '4444': missing ':PORT'"},
    {{"--keepalive=-1"},
     CONFIG_ERROR_INVALID,
     "--keepalive: -1 is out of range (0 to 3600)"},
    {{"--fault-cpus=0;1"},
     CONFIG_ERROR_INVALID,
     "--fault-cpus: '0;1' is not a CPU list (CPUs and ranges are separated "
     "by commas;"},
    {{"--bogus"}, CONFIG_ERROR_USAGE, "command line: "},
    {{"--listen"}, CONFIG_ERROR_USAGE, "command line: "},
    {{"extra"},
     CONFIG_ERROR_USAGE,
     "command line: unexpected argument 'extra'"},
};

static void test_bad_flag(gconstpointer data)
{
    const struct bad_flag *b = data;
    struct postcopyd_config cfg;
    g_autoptr(GError) err = NULL;

    g_assert_false(load(&cfg, "/nonexistent/postcopyd.conf", b->argv, &err));
    g_assert_error(err, CONFIG_ERROR, b->code);
    g_test_message("error: %s", err->message);
    g_assert_true(g_str_has_prefix(err->message, b->message));
    g_assert_null(cfg.listen);
    config_free(&cfg);
}

/* The installed example restates the defaults and names every key. */
static void test_example_file(void)
{
    g_autofree char *path =
        testlib_build_path("../docs/postcopyd.conf.example");
    g_autofree char *opt = g_strconcat("--config=", path, NULL);
    const char *argv[] = {opt, NULL};
    g_autoptr(GKeyFile) kf = g_key_file_new();
    struct postcopyd_config cfg;
    g_autoptr(GError) err = NULL;

    g_assert_true(load(&cfg, "/nonexistent/postcopyd.conf", argv, &err));
    g_assert_no_error(err);
    assert_defaults(&cfg);
    config_free(&cfg);

    g_assert_true(g_key_file_load_from_file(kf, path, 0, &err));
    for (size_t i = 0; i < config_nkeys; i++) {
        g_autofree char *v = g_key_file_get_value(kf, config_keys[i].group,
                                                  config_keys[i].key, &err);

        g_assert_no_error(err);
        g_assert_cmpstr(g_strstrip(v), ==, config_keys[i].dflt);
    }
}

/* insecure: false by default, a flag without value, true|false in a file. */
static void test_insecure(void)
{
    const char *flag[] = {"--insecure", NULL};
    struct postcopyd_config cfg;
    g_autoptr(GError) err = NULL;
    struct tmp t;

    g_assert_true(load(&cfg, "/nonexistent/postcopyd.conf", NULL, &err));
    g_assert_cmpint(cfg.insecure, ==, 0);
    config_free(&cfg);
    g_assert_true(load(&cfg, "/nonexistent/postcopyd.conf", flag, &err));
    g_assert_no_error(err);
    g_assert_cmpint(cfg.insecure, ==, 1);
    config_free(&cfg);
    tmp_init(&t, "[peer]\ninsecure = true\n");
    g_assert_true(load(&cfg, t.file, NULL, &err));
    g_assert_cmpint(cfg.insecure, ==, 1);
    config_free(&cfg);
    tmp_clear(&t);
    tmp_init(&t, "[peer]\ninsecure = maybe\n");
    g_assert_false(load(&cfg, t.file, NULL, &err));
    g_assert_nonnull(strstr(err->message, "true|false"));
    tmp_clear(&t);
}

static void test_log_levels(void)
{
    struct postcopyd_config cfg = {.log_level = (char *)"warning"};
    GLogLevelFlags m = config_log_levels(&cfg);

    g_assert_true(m & G_LOG_LEVEL_CRITICAL);
    g_assert_true(m & G_LOG_LEVEL_WARNING);
    g_assert_false(m & G_LOG_LEVEL_MESSAGE);
    cfg.log_level = (char *)"debug";
    g_assert_true(config_log_levels(&cfg) & G_LOG_LEVEL_DEBUG);
    cfg.log_level = (char *)"error";
    g_assert_false(config_log_levels(&cfg) & G_LOG_LEVEL_WARNING);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/config/defaults", test_defaults);
    g_test_add_func("/config/default-file", test_default_file);
    g_test_add_func("/config/flags-override-file", test_flags_override_file);
    g_test_add_func("/config/missing-explicit-config",
                    test_missing_explicit_config);
    for (size_t i = 0; i < G_N_ELEMENTS(bad_files); i++) {
        g_autofree char *name = g_strdup_printf("/config/bad-file/%zu", i);

        g_test_add_data_func(name, &bad_files[i], test_bad_file);
    }
    for (size_t i = 0; i < G_N_ELEMENTS(bad_flags); i++) {
        g_autofree char *name = g_strdup_printf("/config/bad-flag/%zu", i);

        g_test_add_data_func(name, &bad_flags[i], test_bad_flag);
    }
    g_test_add_func("/config/example-file", test_example_file);
    g_test_add_func("/config/log-levels", test_log_levels);
    g_test_add_func("/config/insecure", test_insecure);
    return g_test_run();
}
