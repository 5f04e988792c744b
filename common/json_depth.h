/*
 * json_depth.h - every JSON text postcopyd parses from outside (control
 * requests, the Firecracker attach hello, the daemon's replies read by
 * postcopy-migrate) goes through json_load_bounded().
 *
 * json-glib's parser recurses once per array or object level, so a few
 * tens of thousands of '[' overflow the stack (SIGSEGV) long before any
 * size limit bites.  json_depth_check() refuses deeper nesting in one
 * pass over the bytes, before the parser sees them.  It reads the text as
 * json-glib 1.6's scanner does (double-quoted strings with backslash
 * escapes, single-quoted strings, comments from one '/' to the next), and
 * refuses what that scanner would read past a closing quote (a \u escape
 * without four hex digits, a surrogate escape not followed by another
 * \u escape) and NUL bytes, so that no bracket it skips is one the parser
 * counts.
 */
#ifndef POSTCOPYD_JSON_DEPTH_H
#define POSTCOPYD_JSON_DEPTH_H

#include <stdbool.h>
#include <glib.h>
#include <json-glib/json-glib.h>

/* Nothing postcopyd exchanges nests deeper than a handful of levels. */
#define JSON_DEPTH_MAX 64

/*
 * Whether @len bytes of @text (-1: up to its NUL) nest arrays and objects
 * at most JSON_DEPTH_MAX deep; else a one-line G_IO_ERROR_INVALID_DATA.
 * Text that is wrong in other ways is left to the parser.
 */
bool json_depth_check(const char *text, gssize len, GError **err);

/* json_parser_load_from_data() on text that json_depth_check() passed. */
bool json_load_bounded(JsonParser *parser, const char *text, gssize len,
                       GError **err);

#endif /* POSTCOPYD_JSON_DEPTH_H */
