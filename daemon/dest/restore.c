/*
 * restore.c - carrying on after a restart: a VMM re-attaches whose
 * incoming migration a dead daemon left in postcopy.  The page state
 * table is reloaded from the state dir, in-doubt installs are settled
 * from the VMM's pagemap, and the session waits, paused, for the source.
 *
 * Contract: the uffd registrations live in the VMM's mm and survived the
 * old daemon; anonymous copies lived in its memory and did not (only zero
 * pages stay current); a page it was installing either is in the VMM
 * (pagemap) or goes back to be fetched; the faults it had read died with
 * it, so every blocked vCPU is woken once to fault again.
 */
#include "dest_session.h"

#include <fcntl.h>
#include <unistd.h>

#include "daemon.h"
#include "session_file.h"

/* Is the VMM's page at @addr mapped (pagemap bit 63)? */
static bool vmm_page_present(int pagemap, uint64_t addr, uint64_t page_size)
{
    uint64_t entry = 0;

    if (pread(pagemap, &entry, sizeof(entry), addr / 4096 * 8) !=
        sizeof(entry)) {
        return false;
    }
    (void)page_size;
    return entry & (1ULL << 63);
}

/*
 * The dead daemon's table: requests died with it (the faulting vCPUs still
 * wait, so their pages are requested again first), anonymous copies lived
 * in its memory, and a page it was installing either made it into the
 * VMM (pagemap says) or not.
 */
static bool reload_table(struct dest_session *s, GError **err)
{
    struct page_state_layout layout;
    struct page_state_reload reload;
    g_autofree char *pm_path =
        g_strdup_printf("/proc/%d/pagemap", s->m->vm->info.pid);
    int pm;

    if (!page_state_layout_init(&layout, s->m->id, s->regions, err)) {
        return false;
    }
    s->pst = page_state_resume(s->pst_path, &layout, &reload, err);
    if (!s->pst) {
        return false;
    }
    pm = open(pm_path, O_RDONLY | O_CLOEXEC);
    for (size_t i = 0; i < s->regions->n; i++) {
        const struct region *r = &s->regions->regions[i];
        uint64_t p = 0;

        while ((p = page_state_next(s->pst, i, p, PAGE_MASK(PAGE_INSTALLING))) <
               region_pages(r)) {
            if (pm >= 0 && vmm_page_present(pm, r->base + p * r->page_size,
                                            r->page_size)) {
                page_state_finish_install(s->pst, i, p);
            } else {
                page_state_abort_install(s->pst, i, p);
            }
            p++;
        }
        if (!backing_copy_holds(&s->copies[i])) {
            page_state_forget_copies(s->pst, i);
        }
        for (p = 0; (p = page_state_next(
                         s->pst, i, p,
                         PAGE_MASK(PAGE_ABSENT) | PAGE_MASK(PAGE_STALE) |
                             PAGE_MASK_WANTED)) < region_pages(r);
             p++) {
            page_state_try_request(s->pst, i, p);
        }
    }
    if (pm >= 0) {
        close(pm);
    }
    g_message("migration %s: page state reloaded: %" G_GUINT64_FORMAT
              " request(s) to send again, %" G_GUINT64_FORMAT
              " torn write(s), %" G_GUINT64_FORMAT
              " install(s) checked, %" G_GUINT64_FORMAT
              " copies fetched again (the last dirty set "
              "never came)",
              s->m->id, reload.requests_dropped, reload.writes_torn,
              reload.installs_uncertain, reload.copies_distrusted);
    return true;
}

static bool restore_uffd(struct dest_session *s, GError **err)
{
    struct vm_entry *vm = s->m->vm;

    memset(&s->u, 0, sizeof(s->u));
    s->u.fd = vm->info.uffd;
    if (!uffd_read_features(vm->info.uffd, &s->u.features, err)) {
        return false;
    }
    vm->api_done = true;
    vm->info.uffd_features = s->u.features;
    dest_events_init(s);
    /* The registrations live in the VMM's mm: they survived us. */
    for (size_t i = 0; i < s->regions->n; i++) {
        struct region *r = &s->regions->regions[i];

        if (!region_map_alias(r, err)) {
            return false;
        }
        s->limits[i].size = r->size;
        s->limits[i].page_size = r->page_size;
        atomic_fetch_add(&s->m->stats.pages_total, region_pages(r));
    }
    s->registered = s->regions->n;
    dest_installer_reopen(s);
    return true;
}

/*
 * Faults the dead daemon had read but not yet recorded as REQUESTED are
 * known to no one now: the kernel queues a fault once, and its vCPU
 * waits for a wake that only an install of its page would give, which,
 * with no background stream, may never come.  Wake every vCPU blocked on
 * guest RAM once: each touches its page again and faults anew, to us.
 * (A wake with no waiter does nothing; a vCPU whose page is here runs.)
 */
static void wake_blocked_vcpus(struct dest_session *s)
{
    for (size_t i = 0; i < s->regions->n; i++) {
        const struct region *r = &s->regions->regions[i];
        int rc = uffd_wake(&s->u, r->base, r->size);

        if (rc < 0) {
            g_warning("migration %s: region %zu: waking its blocked vCPUs: %s",
                      s->m->id, i, g_strerror(-rc));
        }
    }
}

static gpointer restored_thread(gpointer opaque)
{
    struct dest_session *s = opaque;
    struct migration *m = s->m;

    dest_postcopy(s);
    dest_stop_threads(s);
    daemon_release_vm(m->daemon, m->vm);
    g_free(s->pst_path);
    return NULL;
}

void dest_restore(struct daemon *d, struct vm_entry *vm,
                  const struct session_file *f)
{
    g_autoptr(GError) err = NULL;
    struct migration *m = migration_new(d, ROLE_DESTINATION, vm, &d->engine);
    struct dest_session *s = dest_session_new(m);

    migration_set_id(m, f->id_bytes);
    m->params.mode = m->mode = f->mode;
    s->pst_path = g_strdup_printf("%s/%s.pages", m->engine.state_dir, m->id);
    daemon_add_migration(d, m);
    atomic_store(&s->running, true);
    atomic_store(&s->paused, true);
    if (!restore_uffd(s, &err) || !reload_table(s, &err)) {
        migration_fail(m, MIG_FAILED, "carrying on after a restart: %s",
                       err->message);
        daemon_release_vm(d, vm);
        return;
    }
    migration_set_status(m, MIG_NONE, MIG_POSTCOPY_PAUSED);
    g_message("migration %s (%s): carried on after a restart, waiting for "
              "the source to reconnect",
              m->id, m->vm_name);
    s->fault_thread = g_thread_new("dst-faults", dest_fault_thread, s);
    wake_blocked_vcpus(s);
    dest_start_sweep(s);
    m->thread = g_thread_new("dest", restored_thread, s);
}
