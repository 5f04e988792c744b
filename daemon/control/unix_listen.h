/*
 * unix_listen.h - a listening Unix stream socket at a path, the way a
 * daemon's control and attach sockets want it.
 *
 * Contract: the parent directory is created if missing (mode 0755); a
 * stale socket file (nobody accepting) is replaced, but a socket someone
 * still listens on, or a file that is not a socket, is an error; the
 * socket gets @mode before listen(), so no one connects through wider
 * permissions.  The fd is non-blocking and close-on-exec.
 */
#ifndef POSTCOPYD_UNIX_LISTEN_H
#define POSTCOPYD_UNIX_LISTEN_H

#include <stdbool.h>
#include <sys/stat.h>
#include <glib.h>

/*
 * Returns the listening fd, or -1 with @err set.  @bound (may be NULL)
 * receives the socket file's stat, for unix_listen_unlink().
 */
int unix_listen(const char *path, mode_t mode, struct stat *bound,
                GError **err);

/*
 * Remove the socket file at @path if it is still the one we bound (a
 * successor daemon may have replaced it since).
 */
void unix_listen_unlink(const char *path, const struct stat *bound);

#endif /* POSTCOPYD_UNIX_LISTEN_H */
