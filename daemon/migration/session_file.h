/*
 * session_file.h - what a daemon must remember of a migration in postcopy
 * to carry it on after a restart: a small key file per migration in the
 * state dir, "<id>.source" or "<id>.dest", written when the VM starts to
 * run at the destination and removed when the migration completes.
 *
 * Contract: written atomically (temporary file + rename), mode 0600; a
 * file that does not parse is reported and ignored, never half-used.
 */
#ifndef POSTCOPYD_SESSION_FILE_H
#define POSTCOPYD_SESSION_FILE_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "migration.h"

struct session_file {
    char id[40];
    uint8_t id_bytes[16];
    enum migration_role role;
    enum migration_mode mode;
    char vm_name[64];
    char peer_uri[256]; /* source: where the destination listens */
    /*
     * A libvirt domain's VM: its name and connection URI ("": libvirt's
     * default), so that a restarted daemon attaches it again through
     * libvirt (reattach.c).  domain is "" for any other VMM.
     */
    char domain[256];
    char connect[512];
};

bool session_file_write(const char *state_dir, const struct session_file *f,
                        GError **err);
/*
 * session_file_write() in two steps, for a file that must appear at a
 * moment that costs (the destination's, inside the downtime):
 * session_file_prepare() writes "<id>.<role>.tmp" ahead of it,
 * session_file_commit() renames that into place; session_file_discard()
 * removes a prepared one that is not needed.
 */
bool session_file_prepare(const char *state_dir, const struct session_file *f,
                          GError **err);
bool session_file_commit(const char *state_dir, const char *id,
                         enum migration_role role, GError **err);
void session_file_discard(const char *state_dir, const char *id,
                          enum migration_role role);
void session_file_remove(const char *state_dir, const char *id,
                         enum migration_role role);
/*
 * At start-up: remove the page-state files ("<id>.pages", dest.c) that no
 * destination session file ("<id>.dest") names, those of migrations that
 * died before their VM ran at the destination, which no VMM re-attaching
 * can claim; and "<id>.dest.tmp" / "<id>.source.tmp", writes a daemon
 * killed midway left (session_file_write()).  Returns how many went; each
 * is logged.
 */
unsigned session_file_clean_orphans(const char *state_dir);

/* Every session file left in @state_dir that parses, in no order. */
GArray *session_file_list(const char *state_dir);

/* The session of @role for VM @vm_name, if one was left; false if none. */
bool session_file_find(const char *state_dir, const char *vm_name,
                       enum migration_role role, struct session_file *out);

#endif /* POSTCOPYD_SESSION_FILE_H */
