/*
 * fuzz_json.c - libFuzzer target: json_depth_check() (json_depth.h), the
 * bound in front of every JSON parse of outside input, and so of the CLI's
 * reply parser, against json-glib itself.
 *
 * Input: any bytes.  What the check accepts is parsed by json-glib: it
 * must parse (or fail) without a crash, and what it builds must nest no
 * deeper than JSON_DEPTH_MAX.  A refusal is one INVALID_DATA line.  The
 * parse runs on a thread with a small stack (PARSE_STACK): a text the
 * check lets through too deep crashes it even when it does not parse.
 */
#include "json_depth.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <gio/gio.h>

/* Room for JSON_DEPTH_MAX levels, not for thousands (about 150 B each). */
#define PARSE_STACK (256u << 10)

struct parse {
    const char *text;
    size_t size;
};

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
    return 0;
}

static unsigned depth_of(JsonNode *n);

static unsigned deeper(unsigned deepest, JsonNode *child)
{
    unsigned d = depth_of(child);

    return d > deepest ? d : deepest;
}

static unsigned depth_of(JsonNode *n)
{
    unsigned deepest = 0;

    if (JSON_NODE_HOLDS_ARRAY(n)) {
        JsonArray *a = json_node_get_array(n);

        for (guint i = 0; i < json_array_get_length(a); i++) {
            deepest = deeper(deepest, json_array_get_element(a, i));
        }
        return deepest + 1;
    }
    if (JSON_NODE_HOLDS_OBJECT(n)) {
        g_autoptr(GList) values =
            json_object_get_values(json_node_get_object(n));

        for (GList *l = values; l; l = l->next) {
            deepest = deeper(deepest, l->data);
        }
        return deepest + 1;
    }
    return 0;
}

static void *parse_thread(void *opaque)
{
    struct parse *in = opaque;
    g_autoptr(JsonParser) p = json_parser_new_immutable();

    if (json_parser_load_from_data(p, in->text, in->size, NULL) &&
        json_parser_get_root(p) &&
        depth_of(json_parser_get_root(p)) > JSON_DEPTH_MAX) {
        fprintf(stderr, "accepted JSON nested deeper than %d\n",
                JSON_DEPTH_MAX);
        abort();
    }
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct parse in = {(const char *)data, size};
    g_autoptr(GError) err = NULL;
    pthread_attr_t attr;
    pthread_t th;

    if (!json_depth_check(in.text, size, &err)) {
        if (!g_error_matches(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA) ||
            strchr(err->message, '\n')) {
            abort();
        }
        return 0;
    }
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, PARSE_STACK);
    if (pthread_create(&th, &attr, parse_thread, &in)) {
        abort();
    }
    pthread_join(th, NULL);
    pthread_attr_destroy(&attr);
    return 0;
}
