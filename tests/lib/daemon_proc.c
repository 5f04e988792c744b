/* daemon_proc.c - see daemon_proc.h. */
#include "daemon_proc.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <glib/gstdio.h>

#include "testlib.h"

#define POLL_MS        20
#define STOP_GRACE_MS  3000
#define START_ATTEMPTS 5
#define READY_LINE     "postcopyd: info: ready: control socket"

static bool set_why(char **why, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static bool set_why(char **why, const char *fmt, ...)
{
    va_list ap;

    if (why) {
        va_start(ap, fmt);
        g_free(*why);
        *why = g_strdup_vprintf(fmt, ap);
        va_end(ap);
    }
    return false;
}

/*
 * In the child, before exec: a test killed by its timeout must not leave
 * a daemon or a guest behind.
 */
static void die_with_parent(gpointer unused)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
}

/* Did @pid exit?  Reaps it once and remembers its status. */
static bool reap_if_exited(GPid pid, bool *reaped, int *status)
{
    if (!*reaped && waitpid(pid, status, WNOHANG) == pid) {
        *reaped = true;
        g_spawn_close_pid(pid);
    }
    return *reaped;
}

static void stop_pid(GPid pid, bool *reaped, int *status)
{
    if (reap_if_exited(pid, reaped, status)) {
        return;
    }
    kill(pid, SIGTERM);
    for (int waited = 0; waited < STOP_GRACE_MS; waited += POLL_MS) {
        if (reap_if_exited(pid, reaped, status)) {
            return;
        }
        g_usleep(POLL_MS * 1000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, status, 0);
    *reaped = true;
    g_spawn_close_pid(pid);
}

/* The first line of @text holding every one of @needles, or NULL. */
static char *find_line(const char *text, const char *const *needles)
{
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);

    for (char **l = lines; *l; l++) {
        bool all = true;

        for (const char *const *n = needles; *n && all; n++) {
            all = strstr(*l, *n) != NULL;
        }
        if (all) {
            return g_strdup(*l);
        }
    }
    return NULL;
}

/* ---- the daemon ---- */

/* A loopback port free right now: the daemon does not take port 0. */
static int free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int port = -1;

    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0) {
        port = ntohs(sa.sin_port);
    }
    if (fd >= 0) {
        close(fd);
    }
    return port;
}

static bool spawn_daemon(struct daemon_proc *dp, char **why)
{
    g_autofree char *bin = testlib_build_path("postcopyd");
    g_autoptr(GPtrArray) args = g_ptr_array_new();
    const char *argv[] = {bin,
                          "--listen",
                          dp->address,
                          "--control-socket",
                          dp->control_path,
                          "--attach-socket",
                          dp->attach_path,
                          "--state-dir",
                          dp->state_dir,
                          "--log-level",
                          "debug",
                          NULL};
    g_autoptr(GError) err = NULL;
    int log_fd =
        open(dp->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool ok;

    for (const char *const *a = argv; *a; a++) {
        g_ptr_array_add(args, (char *)*a);
    }
    for (char **a = dp->extra; a && *a; a++) {
        g_ptr_array_add(args, *a);
    }
    g_ptr_array_add(args, NULL);

    if (log_fd < 0) {
        return set_why(why, "%s: %s", dp->log_path, g_strerror(errno));
    }
    ok = g_spawn_async_with_fds(
        NULL, (char **)args->pdata, NULL,
        G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_STDIN_FROM_DEV_NULL,
        die_with_parent, NULL, &dp->pid, -1, log_fd, log_fd, &err);
    close(log_fd);
    dp->reaped = false;
    return ok || set_why(why, "spawning %s: %s", bin, err->message);
}

/* 1: ready; 0: it exited; -1: it did not say it was ready in time. */
static int wait_ready(struct daemon_proc *dp)
{
    for (int waited = 0; waited < DAEMON_PROC_WAIT_MS; waited += POLL_MS) {
        g_autofree char *log = daemon_proc_log(dp);

        if (strstr(log, READY_LINE)) {
            return 1;
        }
        if (reap_if_exited(dp->pid, &dp->reaped, &dp->status)) {
            return 0;
        }
        g_usleep(POLL_MS * 1000);
    }
    return -1;
}

static void paths_init(struct daemon_proc *dp, const char *dir)
{
    dp->dir = g_strdup(dir);
    dp->control_path = g_build_filename(dir, "control.sock", NULL);
    dp->attach_path = g_build_filename(dir, "attach.sock", NULL);
    dp->state_dir = g_build_filename(dir, "state", NULL);
    dp->log_path = g_build_filename(dir, "daemon.log", NULL);
}

bool daemon_proc_start(struct daemon_proc *dp, const char *name, char **why)
{
    return daemon_proc_start_args(dp, name, NULL, why);
}

bool daemon_proc_start_args(struct daemon_proc *dp, const char *name,
                            const char *const *extra, char **why)
{
    g_autofree char *tmpl = g_strdup_printf("postcopyd-%s-XXXXXX", name);
    g_autoptr(GError) err = NULL;
    g_autofree char *dir = g_dir_make_tmp(tmpl, &err);

    memset(dp, 0, sizeof(*dp));
    dp->reaped = true; /* nothing to reap until spawned */
    if (!dir) {
        return set_why(why, "%s", err->message);
    }
    paths_init(dp, dir);
    dp->extra = g_strdupv((char **)extra);
    /* Another process may take the port between our probe and its bind. */
    for (int i = 0; i < START_ATTEMPTS; i++) {
        g_autofree char *log = NULL;
        int ready;

        g_free(dp->address);
        dp->address = g_strdup_printf("127.0.0.1:%d", free_port());
        if (!spawn_daemon(dp, why)) {
            return false;
        }
        ready = wait_ready(dp);
        if (ready > 0) {
            return true;
        }
        log = daemon_proc_log(dp);
        if (ready < 0 || !strstr(log, "Address already in use")) {
            return set_why(why, "postcopyd %s did not start: %s", name,
                           g_strstrip(log));
        }
    }
    return set_why(why, "postcopyd %s: no free port after %d attempts", name,
                   START_ATTEMPTS);
}

void daemon_proc_kill(struct daemon_proc *dp)
{
    if (dp->reaped) {
        return;
    }
    kill(dp->pid, SIGKILL);
    waitpid(dp->pid, &dp->status, 0);
    g_spawn_close_pid(dp->pid);
    dp->reaped = true;
}

bool daemon_proc_restart(struct daemon_proc *dp, char **why)
{
    g_autofree char *old = g_strconcat(dp->log_path, ".old", NULL);

    daemon_proc_kill(dp);
    g_rename(dp->log_path, old);
    g_unlink(dp->control_path);
    g_unlink(dp->attach_path);
    if (!spawn_daemon(dp, why)) {
        return false;
    }
    if (wait_ready(dp) <= 0) {
        g_autofree char *log = daemon_proc_log(dp);

        return set_why(why, "postcopyd did not start again: %s",
                       g_strstrip(log));
    }
    return true;
}

static void remove_tree(const char *path)
{
    g_autoptr(GDir) d = g_dir_open(path, 0, NULL);
    const char *name;

    while (d && (name = g_dir_read_name(d))) {
        g_autofree char *child = g_build_filename(path, name, NULL);

        if (g_file_test(child, G_FILE_TEST_IS_DIR) &&
            !g_file_test(child, G_FILE_TEST_IS_SYMLINK)) {
            remove_tree(child);
        } else {
            g_unlink(child);
        }
    }
    g_rmdir(path);
}

void daemon_proc_stop(struct daemon_proc *dp)
{
    if (!dp->dir) {
        return;
    }
    stop_pid(dp->pid, &dp->reaped, &dp->status);
    if (!g_getenv("POSTCOPYD_KEEP_LOGS")) {
        remove_tree(dp->dir);
    }
    g_free(dp->dir);
    g_free(dp->control_path);
    g_free(dp->attach_path);
    g_free(dp->state_dir);
    g_free(dp->log_path);
    g_free(dp->address);
    g_strfreev(dp->extra);
    memset(dp, 0, sizeof(*dp));
}

bool daemon_proc_alive(struct daemon_proc *dp)
{
    return !reap_if_exited(dp->pid, &dp->reaped, &dp->status);
}

char *daemon_proc_log(struct daemon_proc *dp)
{
    char *text = NULL;

    if (!g_file_get_contents(dp->log_path, &text, NULL, NULL)) {
        return g_strdup("");
    }
    return text;
}

char *daemon_proc_migrate_field(struct daemon_proc *dp, const char *vm,
                                const char *field)
{
    g_autofree char *why = NULL;
    g_autofree char *args = g_strdup_printf("{\"vm\": \"%s\"}", vm);
    g_autoptr(JsonObject) r =
        daemon_proc_execute(dp, "query-migrate", args, &why);
    JsonNode *ret = r ? json_object_get_member(r, "return") : NULL;

    if (!ret || !JSON_NODE_HOLDS_OBJECT(ret)) {
        return g_strdup("");
    }
    return g_strdup(json_object_get_string_member_with_default(
        json_node_get_object(ret), field, ""));
}

char *daemon_proc_wait_status(struct daemon_proc *dp, const char *vm,
                              const char *want, int ms)
{
    g_autofree char *pattern = g_strdup_printf("|%s|", want);
    int64_t end = g_get_monotonic_time() + ms * 1000LL;

    for (;;) {
        g_autofree char *st = daemon_proc_migrate_field(dp, vm, "status");
        g_autofree char *key = g_strdup_printf("|%s|", st);

        if (strstr(pattern, key) || g_get_monotonic_time() >= end) {
            return g_steal_pointer(&st);
        }
        g_usleep(50 * 1000);
    }
}

/*
 * A line's text with its digits dropped: retries that differ only in a
 * port or a count read the same.
 */
static char *line_shape(const char *line)
{
    GString *g = g_string_new(NULL);

    for (const char *c = line; *c; c++) {
        if (!g_ascii_isdigit(*c)) {
            g_string_append_c(g, *c);
        }
    }
    return g_string_free(g, false);
}

#define DUMP_RECENT 4 /* a retry loop logs at most this many lines a turn */

void daemon_proc_dump_log(struct daemon_proc *dp, const char *name,
                          unsigned max)
{
    g_autofree char *log = NULL;
    g_auto(GStrv) lines = NULL;
    g_autoptr(GPtrArray) keep = g_ptr_array_new_with_free_func(g_free);
    char *recent[DUMP_RECENT] = {0};
    guint next = 0, same = 0;

    if (!dp->dir) {
        return;
    }
    log = daemon_proc_log(dp);
    lines = g_strsplit(log, "\n", -1);
    /* A retry loop's lines once each, so that what came before shows. */
    for (guint i = 0; lines[i]; i++) {
        char *shape = line_shape(lines[i]);
        bool seen = false;

        for (guint k = 0; k < DUMP_RECENT; k++) {
            seen = seen || (recent[k] && g_str_equal(recent[k], shape));
        }
        if (!*lines[i] || seen) {
            same += seen;
            g_free(shape);
            continue;
        }
        if (same) {
            g_ptr_array_add(keep,
                            g_strdup_printf("(%u more like those)", same));
            same = 0;
        }
        g_ptr_array_add(keep, g_strdup(lines[i]));
        g_free(recent[next]);
        recent[next] = shape;
        next = (next + 1) % DUMP_RECENT;
    }
    if (same) {
        g_ptr_array_add(keep, g_strdup_printf("(%u more like those)", same));
    }
    for (guint k = 0; k < DUMP_RECENT; k++) {
        g_free(recent[k]);
    }
    for (guint i = keep->len > max ? keep->len - max : 0; i < keep->len; i++) {
        fprintf(stderr, "# %s: %s\n", name, (char *)keep->pdata[i]);
    }
}

char *daemon_proc_wait_line(struct daemon_proc *dp, const char *const *needles,
                            int timeout_ms)
{
    int64_t deadline = g_get_monotonic_time() + timeout_ms * 1000LL;

    for (;;) {
        g_autofree char *log = daemon_proc_log(dp);
        char *line = find_line(log, needles);

        if (line || g_get_monotonic_time() >= deadline) {
            return line;
        }
        g_usleep(POLL_MS * 1000);
    }
}

/* ---- the control socket ---- */

static int connect_unix(const char *path, char **why)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        set_why(why, "socket path too long: %s", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        set_why(why, "connecting to %s: %s", path, g_strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    return fd;
}

/* The next line from @fd (buffered in @in), or NULL at EOF or timeout. */
static char *read_line(int fd, GString *in, int64_t deadline)
{
    for (;;) {
        char *nl = memchr(in->str, '\n', in->len);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int64_t left = (deadline - g_get_monotonic_time()) / 1000;
        char buf[4096];
        ssize_t n;

        if (nl) {
            char *line = g_strndup(in->str, nl - in->str);

            g_string_erase(in, 0, nl - in->str + 1);
            return line;
        }
        if (left <= 0 || poll(&p, 1, left) <= 0) {
            return NULL;
        }
        n = read(fd, buf, sizeof(buf));
        if (n <= 0) {
            return NULL;
        }
        g_string_append_len(in, buf, n);
    }
}

static JsonObject *parse_object(const char *line)
{
    g_autoptr(JsonParser) p = json_parser_new();
    JsonNode *root;

    if (!json_parser_load_from_data(p, line, -1, NULL)) {
        return NULL;
    }
    root = json_parser_get_root(p);
    if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
        return NULL;
    }
    return json_object_ref(json_node_get_object(root));
}

/* Lines until the reply: the greeting and events are not it. */
static JsonObject *read_reply(int fd, GString *in, char **why)
{
    int64_t deadline =
        g_get_monotonic_time() + DAEMON_PROC_WAIT_MS * G_TIME_SPAN_MILLISECOND;

    for (;;) {
        g_autofree char *line = read_line(fd, in, deadline);
        JsonObject *o;

        if (!line) {
            set_why(why, "no reply from the control socket");
            return NULL;
        }
        o = parse_object(line);
        if (!o) {
            set_why(why,
                    "control socket sent a line that is not a JSON "
                    "object: %s",
                    line);
            return NULL;
        }
        if (json_object_has_member(o, "return") ||
            json_object_has_member(o, "error")) {
            return o;
        }
        json_object_unref(o);
    }
}

JsonObject *daemon_proc_request(struct daemon_proc *dp, const char *line,
                                char **why)
{
    g_autoptr(GString) in = g_string_new(NULL);
    g_autofree char *req = g_strconcat(line, "\n", NULL);
    JsonObject *reply = NULL;
    int fd = connect_unix(dp->control_path, why);

    if (fd < 0) {
        return NULL;
    }
    if (send(fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t)strlen(req)) {
        set_why(why, "writing to the control socket: %s", g_strerror(errno));
    } else {
        reply = read_reply(fd, in, why);
    }
    close(fd);
    return reply;
}

JsonObject *daemon_proc_execute(struct daemon_proc *dp, const char *cmd,
                                const char *args_json, char **why)
{
    g_autofree char *line =
        args_json ? g_strdup_printf("{\"execute\": \"%s\", \"arguments\": %s}",
                                    cmd, args_json)
                  : g_strdup_printf("{\"execute\": \"%s\"}", cmd);

    return daemon_proc_request(dp, line, why);
}

const char *daemon_proc_error_desc(JsonObject *reply)
{
    JsonNode *e = reply ? json_object_get_member(reply, "error") : NULL;

    if (!e || !JSON_NODE_HOLDS_OBJECT(e)) {
        return "";
    }
    return json_object_get_string_member_with_default(json_node_get_object(e),
                                                      "desc", "");
}

/* ---- guests ---- */

/* Pull in what the guest wrote; false at EOF or timeout. */
static bool guest_read_more(struct daemon_guest *g, int timeout_ms)
{
    struct pollfd p = {.fd = g->out_fd, .events = POLLIN};
    char buf[4096];
    ssize_t n;

    if (poll(&p, 1, timeout_ms) <= 0) {
        return false;
    }
    n = read(g->out_fd, buf, sizeof(buf));
    if (n <= 0) {
        return false;
    }
    g_string_append_len(g->out, buf, n);
    return true;
}

char *daemon_guest_wait_line(struct daemon_guest *g, const char *needle,
                             int timeout_ms)
{
    const char *const needles[] = {needle, NULL};
    int64_t deadline = g_get_monotonic_time() + timeout_ms * 1000LL;

    for (;;) {
        char *line = find_line(g->out->str, needles);
        int64_t left = (deadline - g_get_monotonic_time()) / 1000;

        if (line || left <= 0) {
            return line;
        }
        if (!guest_read_more(g, MIN(left, POLL_MS * 10))) {
            /* What a dead guest wrote is all read once read_more fails. */
            if (!daemon_guest_alive(g)) {
                return find_line(g->out->str, needles);
            }
            g_usleep(POLL_MS * 1000);
        }
    }
}

bool daemon_guest_spawn(struct daemon_guest *g, struct daemon_proc *dp,
                        const char *name, const char *const *extra, char **why)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GError) err = NULL;
    g_autofree char *ready = NULL;
    g_autofree char *pid_text = NULL;
    g_autofree char *attached = NULL;
    g_autofree char *attached_line = NULL;

    memset(g, 0, sizeof(*g));
    g->out = g_string_new(NULL);
    g->out_fd = -1;
    g_ptr_array_add(argv, testlib_build_path("postcopy-guest"));
    g_ptr_array_add(argv, g_strdup("--attach"));
    g_ptr_array_add(argv, g_strdup(dp->attach_path));
    g_ptr_array_add(argv, g_strdup("--name"));
    g_ptr_array_add(argv, g_strdup(name));
    for (; extra && *extra; extra++) {
        g_ptr_array_add(argv, g_strdup(*extra));
    }
    g_ptr_array_add(argv, NULL);
    if (!g_spawn_async_with_pipes(
            NULL, (char **)argv->pdata, NULL, G_SPAWN_DO_NOT_REAP_CHILD,
            die_with_parent, NULL, &g->pid, NULL, &g->out_fd, NULL, &err)) {
        g->reaped = true;
        return set_why(why, "spawning postcopy-guest: %s", err->message);
    }
    ready =
        daemon_guest_wait_line(g, "postcopy-guest: ready", DAEMON_PROC_WAIT_MS);
    if (!ready) {
        return set_why(why, "postcopy-guest %s did not get ready: %s", name,
                       g->out->str);
    }
    /* Attached is when the daemon says so, not when the guest sent it. */
    pid_text = g_strdup_printf("pid %d,", g->pid);
    attached = g_strdup_printf("vm %s: attached", name);
    attached_line = daemon_proc_wait_line(
        dp, (const char *const[]){attached, pid_text, NULL},
        DAEMON_PROC_WAIT_MS);
    return attached_line != NULL ||
           set_why(why, "postcopyd did not log the attach of %s", name);
}

bool daemon_guest_alive(struct daemon_guest *g)
{
    return !reap_if_exited(g->pid, &g->reaped, &g->status);
}

char *daemon_guest_describe(struct daemon_guest *g)
{
    if (daemon_guest_alive(g)) {
        return g_strdup("running");
    }
    if (WIFSIGNALED(g->status)) {
        return g_strdup_printf("killed by signal %d (%s)", WTERMSIG(g->status),
                               g_strsignal(WTERMSIG(g->status)));
    }
    return g_strdup_printf("exited with status %d", WEXITSTATUS(g->status));
}

void daemon_guest_stop(struct daemon_guest *g)
{
    int status;

    if (!g->out) {
        return;
    }
    if (g->pid) {
        stop_pid(g->pid, &g->reaped, &status);
    }
    if (g->out_fd >= 0) {
        close(g->out_fd);
    }
    g_string_free(g->out, TRUE);
    memset(g, 0, sizeof(*g));
}
