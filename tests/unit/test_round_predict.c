/*
 * test_round_predict.c - hybrid's judgement of whether another precopy
 * round pays: a round that left at most half of what it sent dirty says
 * yes, one that watched its pages only from their read on counts its
 * dirty set twice, and a round that sent nothing never ends precopy.
 */
#include <glib.h>

#include "round_predict.h"

static void test_next_pays(void)
{
    static const struct {
        uint64_t sent, dirty;
        bool from_read, pays;
    } cases[] = {
        /* watched throughout (round 2 on): its own share predicts */
        {1000, 0, false, true},
        {1000, 400, false, true},
        {1000, 500, false, true},
        {1000, 501, false, false},
        {1000, 1000, false, false},
        {1000, 5000, false, false}, /* dirty beyond what it sent */
        {1, 0, false, true},
        {1, 1, false, false},
        {3, 1, false, true},
        {3, 2, false, false},
        /* round 1, watched from each read on: half the round */
        {1048576, 295494, true, false}, /* the bench's 28%: it left 79% */
        {1048576, 72615, true, true},   /* 7% */
        {1000, 250, true, true},
        {1000, 251, true, false},
        {1000, 400, true, false},
        {1000, 1000, true, false},
        {UINT64_MAX, UINT64_MAX / 2, true, false},
        {UINT64_MAX, UINT64_MAX - 1, false, false},
        /* nothing sent: nothing to judge by */
        {0, 0, false, true},
        {0, 7, true, true},
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        bool got = round_predict_next_pays(cases[i].sent, cases[i].dirty,
                                           cases[i].from_read);

        g_test_message("sent %" G_GUINT64_FORMAT " dirty %" G_GUINT64_FORMAT
                       "%s: %s",
                       cases[i].sent, cases[i].dirty,
                       cases[i].from_read ? " (from read)" : "",
                       got ? "pays" : "does not pay");
        g_assert_cmpint(got, ==, cases[i].pays);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/round-predict/next-pays", test_next_pays);
    return g_test_run();
}
