/*
 * fuzz_session_file.c - libFuzzer target: the files a restarted daemon
 * reads back from its state dir (daemon/migration/session_file.h): a
 * migration's session file ("<id>.source" / "<id>.dest", a GKeyFile), and
 * the orphan sweep that decides from the file names which page-state
 * files ("<id>.pages") no session claims.
 *
 * Input: byte 0 bit 0 picks the role (dest, source); bit 1 adds a pages
 * file of the same id; the rest is the session file's contents.  They are
 * written into a scratch state dir, then session_file_find() looks for
 * VM "vm" and session_file_clean_orphans() sweeps.
 *
 * Checked besides the sanitizers: a session found is VM "vm", its id is
 * 32 lower-case hex digits matching its 16 bytes, its mode and role are
 * known, its strings are terminated; a pages file survives the sweep
 * exactly when a destination session file names it.
 */
#include "session_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ID "0123456789abcdef0123456789abcdef"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *state_dir;

/* Quiet (a file that does not parse is logged), but criticals crash. */
static void log_handler(const char *domain, GLogLevelFlags level,
                        const char *message, gpointer data)
{
    if (level & (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_ERROR)) {
        fprintf(stderr, "%s: %s\n", domain ? domain : "GLib", message);
        abort();
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    g_log_set_default_handler(log_handler, NULL);
    state_dir = g_dir_make_tmp("fuzz-session-XXXXXX", NULL);
    return state_dir ? 0 : 1;
}

static void check(const struct session_file *f, enum migration_role role)
{
    char hex[33];

    for (int i = 0; i < 16; i++) {
        snprintf(hex + 2 * i, 3, "%02x", f->id_bytes[i]);
    }
    if (strcmp(f->vm_name, "vm") || f->role != role ||
        !memchr(f->id, '\0', sizeof(f->id)) ||
        !memchr(f->peer_uri, '\0', sizeof(f->peer_uri)) ||
        g_ascii_strcasecmp(f->id, hex) ||
        !strcmp(migration_mode_name(f->mode), "?")) {
        fprintf(stderr, "fuzz_session_file: a session file half-parsed\n");
        abort();
    }
}

static void put(const char *name, const uint8_t *data, size_t size)
{
    g_autofree char *path = g_build_filename(state_dir, name, NULL);

    if (!g_file_set_contents(path, (const char *)data, size, NULL)) {
        abort();
    }
}

static void wipe(void)
{
    g_autoptr(GDir) dir = g_dir_open(state_dir, 0, NULL);
    const char *name;

    while (dir && (name = g_dir_read_name(dir))) {
        g_autofree char *path = g_build_filename(state_dir, name, NULL);

        unlink(path);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enum migration_role role;
    struct session_file f;
    g_autofree char *pages = NULL;
    bool found, pages_left;

    if (size < 1) {
        return -1;
    }
    role = data[0] & 1 ? ROLE_SOURCE : ROLE_DESTINATION;
    put(role == ROLE_DESTINATION ? ID ".dest" : ID ".source", data + 1,
        size - 1);
    if (data[0] & 2) {
        put(ID ".pages", (const uint8_t *)"", 0);
    }
    memset(&f, 0xa5, sizeof(f));
    found = session_file_find(state_dir, "vm", role, &f);
    if (found) {
        check(&f, role);
    }
    session_file_clean_orphans(state_dir);
    pages = g_build_filename(state_dir, ID ".pages", NULL);
    pages_left = g_file_test(pages, G_FILE_TEST_EXISTS);
    /* The sweep goes by file names: a .dest of that id keeps it. */
    if ((data[0] & 2) && pages_left != (role == ROLE_DESTINATION)) {
        fprintf(stderr, "fuzz_session_file: the sweep got the pages file "
                        "wrong\n");
        abort();
    }
    wipe();
    return 0;
}
