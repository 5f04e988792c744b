/*
 * test_session_file.c - what a restarted daemon finds in its state dir:
 * page-state files of migrations that died in precopy and unfinished
 * session writes (<id>.dest.tmp) are removed, page-state files a session
 * file still names are kept, and nothing else is touched; a libvirt
 * domain's session names its domain and connection; a rewrite replaces
 * the file whole.
 */
#include <glib/gstdio.h>
#include <gio/gio.h>

#include "session_file.h"

#define ORPHAN "0123456789abcdef0123456789abcdef"
#define KEPT   "fedcba9876543210fedcba9876543210"

static void touch(const char *dir, const char *name)
{
    g_autofree char *path = g_build_filename(dir, name, NULL);

    g_assert_true(g_file_set_contents(path, "x", 1, NULL));
}

static bool exists(const char *dir, const char *name)
{
    g_autofree char *path = g_build_filename(dir, name, NULL);

    return g_file_test(path, G_FILE_TEST_EXISTS);
}

static void test_clean_orphans(void)
{
    static const char *const kept[] = {
        KEPT ".pages", KEPT ".dest", ORPHAN ".source", "notes.pages",
        "0123.pages",  "README",     "notes.dest.tmp",
    };
    g_autoptr(GError) err = NULL;
    g_autofree char *dir = g_dir_make_tmp("session-file-XXXXXX", &err);

    g_assert_no_error(err);
    touch(dir, ORPHAN ".pages");
    touch(dir, KEPT ".dest.tmp");
    touch(dir, ORPHAN ".source.tmp");
    for (size_t i = 0; i < G_N_ELEMENTS(kept); i++) {
        touch(dir, kept[i]);
    }
    g_assert_cmpuint(session_file_clean_orphans(dir), ==, 3);
    g_assert_false(exists(dir, ORPHAN ".pages"));
    g_assert_false(exists(dir, KEPT ".dest.tmp"));
    g_assert_false(exists(dir, ORPHAN ".source.tmp"));
    for (size_t i = 0; i < G_N_ELEMENTS(kept); i++) {
        g_assert_true(exists(dir, kept[i]));
    }
    /* Nothing left to do the second time. */
    g_assert_cmpuint(session_file_clean_orphans(dir), ==, 0);
    for (size_t i = 0; i < G_N_ELEMENTS(kept); i++) {
        g_autofree char *path = g_build_filename(dir, kept[i], NULL);

        g_unlink(path);
    }
    g_rmdir(dir);
}

/* A session file is found by its VM, with an id of 32 hex digits only. */
static void test_find_id(void)
{
    static const char *const ids[] = {
        "0123456789abcdef0123456789abcdef", /* found */
        " 123456789abcdef0123456789abcdef", /* sscanf's %x took these */
        "+123456789abcdef0123456789abcdef",
        "0x23456789abcdef0123456789abcdef",
    };
    g_autoptr(GError) err = NULL;
    g_autofree char *dir = g_dir_make_tmp("session-file-XXXXXX", &err);
    g_autofree char *path = g_build_filename(dir, KEPT ".dest", NULL);
    struct session_file f;
    /* A file ignored is a warning in the log, not a failed test. */
    GLogLevelFlags fatal =
        g_log_set_always_fatal(G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL);

    g_assert_no_error(err);
    for (size_t i = 0; i < G_N_ELEMENTS(ids); i++) {
        g_autofree char *text = g_strdup_printf(
            "[migration]\nid=%s\nvm=vm\nmode=hybrid\npeer=10.0.0.2:4444\n",
            ids[i]);

        g_assert_true(g_file_set_contents(path, text, -1, NULL));
        g_assert_true(session_file_find(dir, "vm", ROLE_DESTINATION, &f) ==
                      (i == 0));
        if (i == 0) {
            g_assert_cmpuint(f.id_bytes[0], ==, 0x01);
            g_assert_cmpuint(f.id_bytes[15], ==, 0xef);
        }
    }
    g_log_set_always_fatal(fatal);
    g_unlink(path);
    g_rmdir(dir);
}

/*
 * A libvirt domain's session keeps its domain and connection, and
 * session_file_list() finds it with the others; a file whose domain is
 * empty is ignored, not carried on through the wrong way to QEMU.
 */
static void test_domain(void)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *dir = g_dir_make_tmp("session-file-XXXXXX", &err);
    g_autofree char *bad = g_build_filename(dir, ORPHAN ".dest", NULL);
    g_autofree char *src = g_build_filename(dir, KEPT ".source", NULL);
    struct session_file f = {.role = ROLE_SOURCE, .mode = MODE_POSTCOPY};
    struct session_file got;
    g_autoptr(GArray) all = NULL;
    GLogLevelFlags fatal;

    g_assert_no_error(err);
    g_strlcpy(f.id, KEPT, sizeof(f.id));
    g_strlcpy(f.vm_name, "vm1", sizeof(f.vm_name));
    g_strlcpy(f.peer_uri, "10.0.0.2:4444", sizeof(f.peer_uri));
    g_strlcpy(f.domain, "dom1", sizeof(f.domain));
    g_strlcpy(f.connect, "qemu:///system", sizeof(f.connect));
    g_assert_true(session_file_write(dir, &f, &err));
    g_assert_true(session_file_find(dir, "vm1", ROLE_SOURCE, &got));
    g_assert_cmpstr(got.domain, ==, "dom1");
    g_assert_cmpstr(got.connect, ==, "qemu:///system");
    g_assert_true(g_file_set_contents(bad,
                                      "[migration]\nid=" ORPHAN
                                      "\nvm=vm2\nmode=hybrid\npeer=\n"
                                      "domain=\nconnect=\n",
                                      -1, NULL));
    fatal = g_log_set_always_fatal(G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL);
    all = session_file_list(dir);
    g_log_set_always_fatal(fatal);
    g_assert_cmpuint(all->len, ==, 1);
    g_assert_cmpstr(g_array_index(all, struct session_file, 0).domain, ==,
                    "dom1");
    g_unlink(bad);
    g_unlink(src);
    g_rmdir(dir);
}

/*
 * A write replaces the file whole and leaves nothing beside it; what a
 * daemon killed mid-write leaves (ID.dest.tmp) is never taken for a
 * session.
 */
static void test_rewrite(void)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *dir = g_dir_make_tmp("session-file-XXXXXX", &err);
    g_autofree char *path = g_build_filename(dir, KEPT ".dest", NULL);
    g_autofree char *torn = g_build_filename(dir, ORPHAN ".dest.tmp", NULL);
    struct session_file f = {.role = ROLE_DESTINATION, .mode = MODE_HYBRID};
    struct session_file got;
    g_autoptr(GArray) all = NULL;
    g_autoptr(GDir) d = NULL;
    const char *name;
    unsigned files = 0;

    g_assert_no_error(err);
    g_strlcpy(f.id, KEPT, sizeof(f.id));
    g_strlcpy(f.vm_name, "vm1", sizeof(f.vm_name));
    g_assert_true(session_file_write(dir, &f, &err));
    g_strlcpy(f.peer_uri, "10.0.0.2:4444", sizeof(f.peer_uri));
    g_assert_true(session_file_write(dir, &f, &err));
    g_assert_no_error(err);
    g_assert_true(session_file_find(dir, "vm1", ROLE_DESTINATION, &got));
    g_assert_cmpstr(got.peer_uri, ==, "10.0.0.2:4444");
    d = g_dir_open(dir, 0, NULL);
    while ((name = g_dir_read_name(d))) {
        files++;
        g_assert_cmpstr(name, ==, KEPT ".dest");
    }
    g_assert_cmpuint(files, ==, 1);
    g_assert_true(g_file_set_contents(
        torn, "[migration]\nid=" ORPHAN "\nvm=vm2\n", -1, NULL));
    g_assert_false(session_file_find(dir, "vm2", ROLE_DESTINATION, &got));
    all = session_file_list(dir);
    g_assert_cmpuint(all->len, ==, 1);
    g_unlink(torn);
    g_unlink(path);
    g_rmdir(dir);
}

/*
 * The destination's two steps: a prepared file is no session until its
 * commit (a restart must not carry on a VM that never ran there), and a
 * discarded one leaves nothing behind.
 */
static void test_prepare_commit(void)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *dir = g_dir_make_tmp("session-file-XXXXXX", &err);
    g_autofree char *path = g_build_filename(dir, KEPT ".dest", NULL);
    g_autofree char *tmp = g_build_filename(dir, KEPT ".dest.tmp", NULL);
    struct session_file f = {.role = ROLE_DESTINATION, .mode = MODE_HYBRID};
    struct session_file got;
    g_autoptr(GArray) none = NULL;

    g_assert_no_error(err);
    g_strlcpy(f.id, KEPT, sizeof(f.id));
    g_strlcpy(f.vm_name, "vm1", sizeof(f.vm_name));
    g_assert_true(session_file_prepare(dir, &f, &err));
    g_assert_no_error(err);
    g_assert_true(g_file_test(tmp, G_FILE_TEST_EXISTS));
    g_assert_false(session_file_find(dir, "vm1", ROLE_DESTINATION, &got));
    none = session_file_list(dir);
    g_assert_cmpuint(none->len, ==, 0);

    session_file_discard(dir, KEPT, ROLE_DESTINATION);
    g_assert_false(g_file_test(tmp, G_FILE_TEST_EXISTS));
    g_assert_false(session_file_commit(dir, KEPT, ROLE_DESTINATION, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
    g_clear_error(&err);

    g_assert_true(session_file_prepare(dir, &f, &err));
    g_assert_true(session_file_commit(dir, KEPT, ROLE_DESTINATION, &err));
    g_assert_no_error(err);
    g_assert_false(g_file_test(tmp, G_FILE_TEST_EXISTS));
    g_assert_true(session_file_find(dir, "vm1", ROLE_DESTINATION, &got));
    g_assert_cmpstr(got.id, ==, KEPT);
    session_file_discard(dir, KEPT, ROLE_DESTINATION); /* nothing to do */
    g_assert_true(g_file_test(path, G_FILE_TEST_EXISTS));
    g_unlink(path);
    g_rmdir(dir);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/session-file/clean-orphans", test_clean_orphans);
    g_test_add_func("/session-file/find-id", test_find_id);
    g_test_add_func("/session-file/domain", test_domain);
    g_test_add_func("/session-file/rewrite", test_rewrite);
    g_test_add_func("/session-file/prepare-commit", test_prepare_commit);
    return g_test_run();
}
