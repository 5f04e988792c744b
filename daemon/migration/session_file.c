/* session_file.c - see session_file.h. */
#include "session_file.h"

#include <errno.h>
#include <gio/gio.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "errno_error.h"

#define GROUP "migration"

static const char *suffix(enum migration_role role)
{
    return role == ROLE_SOURCE ? ".source" : ".dest";
}

static char *path_of(const char *state_dir, const char *id,
                     enum migration_role role)
{
    return g_strdup_printf("%s/%s%s", state_dir, id, suffix(role));
}

static char *tmp_of(const char *state_dir, const char *id,
                    enum migration_role role)
{
    g_autofree char *path = path_of(state_dir, id, role);

    return g_strconcat(path, ".tmp", NULL);
}

bool session_file_prepare(const char *state_dir, const struct session_file *f,
                          GError **err)
{
    g_autoptr(GKeyFile) kf = g_key_file_new();
    g_autofree char *tmp = tmp_of(state_dir, f->id, f->role);
    g_autofree char *data = NULL;
    gsize len;

    g_key_file_set_string(kf, GROUP, "id", f->id);
    g_key_file_set_string(kf, GROUP, "vm", f->vm_name);
    g_key_file_set_string(kf, GROUP, "mode", migration_mode_name(f->mode));
    g_key_file_set_string(kf, GROUP, "peer", f->peer_uri);
    if (f->domain[0]) {
        g_key_file_set_string(kf, GROUP, "domain", f->domain);
        g_key_file_set_string(kf, GROUP, "connect", f->connect);
    }
    data = g_key_file_to_data(kf, &len, NULL);
    /*
     * The file must outlive the daemon, not the host: the VM dies with the
     * host.  So no fsync (1.2-3 ms on ext4 here, inside the downtime for
     * the destination's); written beside and renamed, so a daemon killed
     * meanwhile leaves the old file or none (the loaders look only at
     * names ending in the role's suffix, and session_file_clean_orphans()
     * removes the temporary at start-up).
     */
    return g_file_set_contents_full(tmp, data, len, G_FILE_SET_CONTENTS_NONE,
                                    0600, err);
}

bool session_file_commit(const char *state_dir, const char *id,
                         enum migration_role role, GError **err)
{
    g_autofree char *tmp = tmp_of(state_dir, id, role);
    g_autofree char *path = path_of(state_dir, id, role);

    if (rename(tmp, path) < 0) {
        int e = errno;

        unlink(tmp);
        return errno_error(err, e, "renaming %s", tmp);
    }
    return true;
}

/* Gone already is fine: either way nothing is left to carry on from. */
static void unlink_warn(const char *path)
{
    if (unlink(path) && errno != ENOENT) {
        g_warning("removing %s: %s", path, g_strerror(errno));
    }
}

void session_file_discard(const char *state_dir, const char *id,
                          enum migration_role role)
{
    g_autofree char *tmp = tmp_of(state_dir, id, role);

    unlink_warn(tmp);
}

bool session_file_write(const char *state_dir, const struct session_file *f,
                        GError **err)
{
    return session_file_prepare(state_dir, f, err) &&
           session_file_commit(state_dir, f->id, f->role, err);
}

void session_file_remove(const char *state_dir, const char *id,
                         enum migration_role role)
{
    g_autofree char *path = path_of(state_dir, id, role);

    unlink_warn(path);
}

static bool parse_id(const char *hex, struct session_file *f)
{
    if (strlen(hex) != 32) {
        return false;
    }
    for (int i = 0; i < 32; i++) {
        /* sscanf's %x alone takes " f", "+f" and "0x": hex digits only. */
        if (!g_ascii_isxdigit(hex[i])) {
            return false;
        }
    }
    for (int i = 0; i < 16; i++) {
        f->id_bytes[i] = g_ascii_xdigit_value(hex[2 * i]) << 4 |
                         g_ascii_xdigit_value(hex[2 * i + 1]);
    }
    g_strlcpy(f->id, hex, sizeof(f->id));
    return true;
}

/* Optional: absent for a VMM that is no libvirt domain. */
static bool load_domain(GKeyFile *kf, const char *path, struct session_file *f)
{
    g_autofree char *domain = g_key_file_get_string(kf, GROUP, "domain", NULL);
    g_autofree char *connect =
        g_key_file_get_string(kf, GROUP, "connect", NULL);

    if (!domain) {
        return true;
    }
    if (!domain[0] || !connect || strlen(domain) >= sizeof(f->domain) ||
        strlen(connect) >= sizeof(f->connect)) {
        g_warning("ignoring session file %s: bad domain or connect", path);
        return false;
    }
    g_strlcpy(f->domain, domain, sizeof(f->domain));
    g_strlcpy(f->connect, connect, sizeof(f->connect));
    return true;
}

static bool load(const char *path, enum migration_role role,
                 struct session_file *f)
{
    g_autoptr(GKeyFile) kf = g_key_file_new();
    g_autoptr(GError) err = NULL;
    g_autofree char *id = NULL, *vm = NULL, *mode = NULL, *peer = NULL;

    if (!g_key_file_load_from_file(kf, path, G_KEY_FILE_NONE, &err) ||
        !(id = g_key_file_get_string(kf, GROUP, "id", &err)) ||
        !(vm = g_key_file_get_string(kf, GROUP, "vm", &err)) ||
        !(mode = g_key_file_get_string(kf, GROUP, "mode", &err)) ||
        !(peer = g_key_file_get_string(kf, GROUP, "peer", &err))) {
        g_warning("ignoring session file %s: %s", path, err->message);
        return false;
    }
    memset(f, 0, sizeof(*f));
    f->role = role;
    if (!parse_id(id, f) || !migration_mode_parse(mode, &f->mode)) {
        g_warning("ignoring session file %s: bad id or mode", path);
        return false;
    }
    g_strlcpy(f->vm_name, vm, sizeof(f->vm_name));
    g_strlcpy(f->peer_uri, peer, sizeof(f->peer_uri));
    return load_domain(kf, path, f);
}

/* "<32 hex digits><@suffix>": a file of migration <id>. */
static bool id_file(const char *name, const char *suffix, char id[33])
{
    if (strlen(name) != 32 + strlen(suffix) ||
        !g_str_has_suffix(name, suffix)) {
        return false;
    }
    for (int i = 0; i < 32; i++) {
        if (!g_ascii_isxdigit(name[i])) {
            return false;
        }
    }
    g_strlcpy(id, name, 33);
    return true;
}

/* Why @name in @state_dir is left over, or NULL when it is not. */
static const char *leftover(const char *state_dir, const char *name)
{
    g_autofree char *session = NULL;
    char id[33];

    if (id_file(name, ".dest.tmp", id) || id_file(name, ".source.tmp", id)) {
        return "a session file write that never finished";
    }
    if (!id_file(name, ".pages", id)) {
        return NULL;
    }
    session = path_of(state_dir, id, ROLE_DESTINATION);
    if (g_file_test(session, G_FILE_TEST_EXISTS)) {
        return NULL;
    }
    return "its migration ended before the VM ran at the destination";
}

unsigned session_file_clean_orphans(const char *state_dir)
{
    g_autoptr(GDir) dir = g_dir_open(state_dir, 0, NULL);
    const char *name;
    unsigned n = 0;

    while (dir && (name = g_dir_read_name(dir))) {
        g_autofree char *path = NULL;
        const char *why = leftover(state_dir, name);

        if (!why) {
            continue;
        }
        path = g_build_filename(state_dir, name, NULL);
        if (unlink(path) < 0) {
            g_warning("removing %s: %s", path, g_strerror(errno));
            continue;
        }
        g_message("removed %s: %s", path, why);
        n++;
    }
    return n;
}

bool session_file_find(const char *state_dir, const char *vm_name,
                       enum migration_role role, struct session_file *out)
{
    g_autoptr(GDir) dir = g_dir_open(state_dir, 0, NULL);
    const char *name;

    while (dir && (name = g_dir_read_name(dir))) {
        g_autofree char *path = NULL;

        if (!g_str_has_suffix(name, suffix(role))) {
            continue;
        }
        path = g_build_filename(state_dir, name, NULL);
        if (load(path, role, out) && !strcmp(out->vm_name, vm_name)) {
            return true;
        }
    }
    return false;
}

GArray *session_file_list(const char *state_dir)
{
    static const enum migration_role roles[] = {ROLE_SOURCE, ROLE_DESTINATION};
    g_autoptr(GDir) dir = g_dir_open(state_dir, 0, NULL);
    GArray *list = g_array_new(FALSE, FALSE, sizeof(struct session_file));
    const char *name;

    while (dir && (name = g_dir_read_name(dir))) {
        for (size_t i = 0; i < G_N_ELEMENTS(roles); i++) {
            g_autofree char *path = NULL;
            struct session_file f;

            if (!g_str_has_suffix(name, suffix(roles[i]))) {
                continue;
            }
            path = g_build_filename(state_dir, name, NULL);
            if (load(path, roles[i], &f)) {
                g_array_append_val(list, f);
            }
        }
    }
    return list;
}
