/*
 * daemon_proc.h - the real postcopyd binary under test: start it on
 * loopback with its sockets and state in a temporary directory and its
 * log in a file, talk to its control socket, read its log, stop it; and
 * postcopy-guest processes attached to it.
 *
 * Failures to set things up return false / NULL with the reason (the
 * caller decides whether that is a skip or a failure); nothing here
 * asserts, so a test may use non-fatal assertions around it.
 */
#ifndef POSTCOPYD_DAEMON_PROC_H
#define POSTCOPYD_DAEMON_PROC_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>
#include <json-glib/json-glib.h>

#define DAEMON_PROC_WAIT_MS 10000

struct daemon_proc {
    GPid pid;
    bool reaped;
    int status; /* wait status once reaped */
    char *dir;
    char *control_path;
    char *attach_path;
    char *state_dir;
    char *log_path;
    char *address; /* the peer listener, "127.0.0.1:PORT" */
    char **extra;  /* more command-line flags, kept for a restart */
};

/* Start postcopyd (log level debug); false with @why (g_free it). */
bool daemon_proc_start(struct daemon_proc *dp, const char *name, char **why);
/* The same with more flags (NULL-terminated @extra, may be NULL). */
bool daemon_proc_start_args(struct daemon_proc *dp, const char *name,
                            const char *const *extra, char **why);
/*
 * SIGKILL it, now, as a crash would; its directory stays (state dir,
 * sockets), for daemon_proc_restart().
 */
void daemon_proc_kill(struct daemon_proc *dp);
/*
 * Start a killed daemon again with the same flags, paths, state dir and
 * address; its earlier log moves to "daemon.log.old".
 */
bool daemon_proc_restart(struct daemon_proc *dp, char **why);
/* SIGTERM, then SIGKILL after a grace period; remove the directory. */
void daemon_proc_stop(struct daemon_proc *dp);
bool daemon_proc_alive(struct daemon_proc *dp);
/* Everything the daemon wrote to stderr so far. */
char *daemon_proc_log(struct daemon_proc *dp);
/*
 * The last @max lines of its log on stderr, as "# NAME: line" (a failed
 * test); a line repeating one of the few before it (digits aside: a retry
 * loop) is counted, not shown.
 */
void daemon_proc_dump_log(struct daemon_proc *dp, const char *name,
                          unsigned max);
/*
 * The first log line holding every string of the NULL-terminated
 * @needles, waiting up to @timeout_ms for it; NULL if none came.
 */
char *daemon_proc_wait_line(struct daemon_proc *dp, const char *const *needles,
                            int timeout_ms);

/*
 * Send one request line (without the newline) on a fresh control
 * connection and return the reply object, events skipped; NULL with
 * @why when the daemon did not answer.
 */
JsonObject *daemon_proc_request(struct daemon_proc *dp, const char *line,
                                char **why);
/* The same for {"execute": @cmd, "arguments": @args_json or none}. */
JsonObject *daemon_proc_execute(struct daemon_proc *dp, const char *cmd,
                                const char *args_json, char **why);
/* An error reply's "desc" ("" for none): what a refusal said. */
const char *daemon_proc_error_desc(JsonObject *reply);
/* query-migrate's string @field for VM @vm, or "" (g_free it). */
char *daemon_proc_migrate_field(struct daemon_proc *dp, const char *vm,
                                const char *field);
/*
 * Poll @vm's migration status every 50 ms until it is one of @want
 * ("a|b|c") or @ms pass; the last status seen (g_free it).
 */
char *daemon_proc_wait_status(struct daemon_proc *dp, const char *vm,
                              const char *want, int ms);

/* A postcopy-guest attached to a daemon's attach socket. */
struct daemon_guest {
    GPid pid;
    bool reaped;
    int status; /* its wait status, once reaped */
    int out_fd; /* its stdout */
    GString *out;
};

/*
 * Spawn "postcopy-guest --attach ... --name @name" with @extra arguments
 * (NULL-terminated) and wait for its ready line.
 */
bool daemon_guest_spawn(struct daemon_guest *g, struct daemon_proc *dp,
                        const char *name, const char *const *extra, char **why);
/* The guest's stdout line holding @needle, waiting up to @timeout_ms. */
char *daemon_guest_wait_line(struct daemon_guest *g, const char *needle,
                             int timeout_ms);
bool daemon_guest_alive(struct daemon_guest *g);
/* "running", "exited with status 1", "killed by signal 7 (Bus error)". */
char *daemon_guest_describe(struct daemon_guest *g);
void daemon_guest_stop(struct daemon_guest *g);

#endif /* POSTCOPYD_DAEMON_PROC_H */
