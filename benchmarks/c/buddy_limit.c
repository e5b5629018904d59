/* The physical limit of a buddy allocator on this machine (issue 11's "C limit"): the least
 * code any Linux-faithful buddy needs, in C, with the operations run inside C.
 *
 * Intrusive doubly linked free lists per order (next/prev int32 per frame, heads after the
 * frames), a state byte per frame, split to the head, merge with the buddy. No checks, no
 * counters beyond nr_free, no locking. Prints ns per operation for fill+drain of N order-0
 * pages and for a mixed workload of orders 0-5 holding about half of memory.
 *
 * Usage: buddy_limit NR_PAGES OPS  (built by benchmarks/bench_core.py with gcc -O2)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define MAX_ORDER 10
#define FREE 0x40
#define USED 0x80

static uint8_t *state;
static int32_t *nxt, *prv;
static long nr_pages, heads;
static long nr_free[MAX_ORDER + 1];

static inline long head(int order) { return heads + order; }

static inline void add_head(long pfn, int order)
{
    long h = head(order), first = nxt[h];
    nxt[pfn] = (int32_t)first; prv[pfn] = (int32_t)h; prv[first] = (int32_t)pfn;
    nxt[h] = (int32_t)pfn; state[pfn] = (uint8_t)(FREE | order); nr_free[order]++;
}

static inline void del(long pfn, int order)
{
    long a = nxt[pfn], b = prv[pfn];
    nxt[b] = (int32_t)a; prv[a] = (int32_t)b; nr_free[order]--;
}

static long alloc_pages(int order)
{
    int o = order;
    while (o <= MAX_ORDER && nxt[head(o)] == head(o)) o++;
    if (o > MAX_ORDER) return -1;
    long pfn = nxt[head(o)];
    del(pfn, o);
    while (o > order) { o--; add_head(pfn + (1L << o), o); }
    state[pfn] = (uint8_t)(USED | order);
    return pfn;
}

static void free_pages(long pfn, int order)
{
    while (order < MAX_ORDER) {
        long buddy = pfn ^ (1L << order);
        if (buddy >= nr_pages || state[buddy] != (FREE | order)) break;
        del(buddy, order); state[buddy] = 0; pfn &= ~(1L << order); order++;
    }
    add_head(pfn, order);
}

static double now(void)
{
    struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    nr_pages = argc > 1 ? atol(argv[1]) : 16384;
    long ops = argc > 2 ? atol(argv[2]) : 1000000;
    heads = nr_pages;
    state = calloc(nr_pages, 1);
    nxt = malloc((nr_pages + MAX_ORDER + 1) * 4); prv = malloc((nr_pages + MAX_ORDER + 1) * 4);
    for (int o = 0; o <= MAX_ORDER; o++) nxt[head(o)] = prv[head(o)] = (int32_t)head(o);
    for (long pfn = 0; pfn < nr_pages; pfn += 1L << MAX_ORDER) add_head(pfn, MAX_ORDER);
    int32_t *pfns = malloc(nr_pages * 4);
    double t = now();
    for (long i = 0; i < nr_pages; i++) pfns[i] = (int32_t)alloc_pages(0);
    for (long i = 0; i < nr_pages; i++) free_pages(pfns[i], 0);
    double fill = (now() - t) / (2.0 * nr_pages) * 1e9;
    /* mixed: orders 0-5, about half of memory in use, random frees */
    int32_t *lp = malloc(nr_pages * 4); int8_t *lo = malloc(nr_pages);
    long live = 0, used = 0; uint64_t x = 88172645463325252ULL;
    t = now();
    for (long i = 0; i < ops; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        if (used < nr_pages / 2) {
            int o = (int)(x % 6); long p = alloc_pages(o);
            if (p >= 0) { lp[live] = (int32_t)p; lo[live++] = (int8_t)o; used += 1L << o; }
        } else {
            long j = (long)((x >> 8) % (uint64_t)live);
            free_pages(lp[j], lo[j]); used -= 1L << lo[j];
            lp[j] = lp[--live]; lo[j] = lo[live];
        }
    }
    double mixed = (now() - t) / ops * 1e9;
    printf("%.2f %.2f\n", fill, mixed);
    return 0;
}
