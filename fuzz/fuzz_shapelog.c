/* libFuzzer target: the streaming shape-log reader (tr_shapelog_* in csrc/lib/shapelog.c), driven
 * as lshape.c drives it (spec/c/shapelog_drive.h: each message parsed with the bytes there are).
 *
 * The first two bytes of the input choose the pieces; the rest is the body. Checks, beyond the
 * sanitizers:
 *   - any chunking gives what the body fed at once gives: the same messages (their bytes), the
 *     same end, the same failure (text and byte) or the same body kept whole; so does the body
 *     borrowed and read a few messages a call (reader:parse);
 *   - bounded: a message is parsed again only once the tail has doubled (a byte-by-byte feed
 *     parses each message O(log n) times), and the reader never holds more than the message
 *     coming (twice over, by that rule) and one piece, besides the white space before the
 *     array opens (a body not known to be an array yet may be kept whole: it is held as it is);
 *   - a failure names a byte within the body; a body kept whole does not start with '['. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../spec/c/shapelog_drive.h"
#include "fuzz_assert.h"

static int log2_ceil(size_t n) {
    int k = 0;
    while (((size_t)1 << k) < n && k < 62)
        k++;
    return k;
}

/* Fed in pieces (piece sizes from a small generator seeded by `seed`; max: the largest). */
static void run_pieces(drive *d, const char *body, size_t n, unsigned seed, size_t max,
                       size_t *held) {
    drive_init(d);
    size_t most = 0;
    for (size_t i = 0; i < n;) {
        seed = seed * 1103515245u + 12345u;
        size_t k = 1 + (seed >> 16) % max;
        if (k > n - i) k = n - i;
        drive_feed(d, body + i, k);
        if (d->r.state != TR_SHAPELOG_WHOLE && d->r.tail.len > most) most = d->r.tail.len;
        i += k;
    }
    drive_advance(d, 1);
    if (held) *held = most;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    unsigned seed = data[0];
    size_t max = 1 + data[1] % 64;
    const char *body = (const char *)data + 2;
    size_t n = size - 2;

    drive ref;
    drive_init(&ref);
    drive_feed(&ref, body, n);
    drive_advance(&ref, 1);
    FUZZ_ASSERT(!ref.oom, "out of memory");
    if (ref.r.state == TR_SHAPELOG_FAILED && ref.r.what)
        FUZZ_ASSERT(ref.r.at <= n, "a failure names a byte within the body");
    if (ref.r.state == TR_SHAPELOG_WHOLE) {
        size_t i = 0;
        while (i < n && (body[i] == ' ' || body[i] == '\t' || body[i] == '\n' || body[i] == '\r'))
            i++;
        FUZZ_ASSERT(i < n && body[i] != '[', "a body kept whole is not an array");
    }
    FUZZ_ASSERT(ref.r.state == TR_SHAPELOG_END || ref.r.state == TR_SHAPELOG_FAILED ||
                    ref.r.state == TR_SHAPELOG_WHOLE,
                "a finished body is at its end, refused or kept whole");

    drive d;
    size_t held = 0;
    run_pieces(&d, body, n, seed, max, &held);
    FUZZ_ASSERT(drive_same(&ref, &d), "pieces give what the whole body gives");
    if (ref.r.state == TR_SHAPELOG_END) {
        /* Until the array opens the body may yet be kept whole, so what comes before its '['
         * (white space only, in a body that ends as an array) is held as it is. */
        size_t lead = 0;
        while (lead < n && body[lead] != '[')
            lead++;
        FUZZ_ASSERT(held <= 2 * ref.max_msg + max + 1 + lead,
                    "holds no more than the message coming and one piece (and what came before "
                    "the array opened)");
    }
    drive_free(&d);

    if (n <= 512) {
        run_pieces(&d, body, n, seed, 1, NULL);
        FUZZ_ASSERT(drive_same(&ref, &d), "byte by byte gives what the whole body gives");
        long bound = (long)(d.kept + 1) * (log2_ceil(n + 1) + 3);
        FUZZ_ASSERT(d.handed <= bound, "a message is parsed a bounded number of times");
        drive_free(&d);
    }

    drive_init(&d);
    FUZZ_ASSERT(tr_shapelog_borrow(&d.r, body, n) == 0, "a fresh reader borrows");
    int per_call = 1 + (int)(seed % 3);
    for (int calls = 0; calls <= (int)n + 2; calls++) {
        d.r.budget = per_call;
        drive_advance(&d, 1);
        d.r.budget = -1;
        if (d.r.state == TR_SHAPELOG_END || d.r.state == TR_SHAPELOG_WHOLE ||
            d.r.state == TR_SHAPELOG_FAILED)
            break;
    }
    FUZZ_ASSERT(drive_same(&ref, &d), "borrowed, a few messages a call, gives the same");
    drive_free(&d);
    drive_free(&ref);
    return 0;
}
