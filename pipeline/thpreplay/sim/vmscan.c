/*
 * mm/vmscan.c, in the replay core (included by _engine.c, one translation unit: see engine.h).
 * Reclaim a page at a time: shrink_node / shrink_lruvec with the file/anon balance simplified to page
 * cache first, anon to swap while swap lasts (reclaim_one), a whole anon THP swapped out, add_to_swap
 * of a PMD folio (reclaim_huge); try_to_free_pages for a costly order, with compaction_ready and
 * should_continue_reclaim (direct_reclaim); pgdat_balanced (node_balanced), pgdat_watermark_boosted
 * (node_boosted), wakeup_kswapd, and kswapd's balance_pgdat, kswapd_shrink_node and
 * kswapd_try_to_sleep in trace time (kswapd_work).
 */
#include "engine.h"

/* ---------- reclaim ---------- */

static int nth_set(const uint64_t m[8], int n) {
    for (int i = 0; i < 8; i++) {
        int c = __builtin_popcountll(m[i]);
        if (n < c) {
            uint64_t w = m[i];
            while (n--) w &= w - 1;
            return i * 64 + __builtin_ctzll(w);
        }
        n -= c;
    }
    return -1;
}

/* A traced page the model reclaimed: its trace free (or region release) must not free the pfn again. */
static void forget_traced(Engine *e, int64_t pfn) {
    int64_t *key = map_find(&e->rev, pfn);
    int64_t k = key ? *key : pfn;
    if (key) map_del(&e->rev, pfn);
    map_put(&e->fwd, k, LOC_GONE);
}

/* One page (or one huge page) of reclaim on a node: page cache first, then anon pages if swap is left
   (shrink_node's file/anon balance simplified to "file first"), and when the node has no small LRU
   page left, its oldest anon THP, swapped out whole (6.1+ with THP_SWAP: add_to_swap of a PMD folio;
   older kernels split it first, which frees the same pages). Small pages are taken at random: LRU order
   is unrelated to physical address. Returns RC_FILE, RC_ANON (one page each), RC_HUGE (512 anon pages)
   or RC_NONE when nothing is left. */
enum { RC_NONE, RC_FILE, RC_ANON, RC_HUGE };

static int reclaim_huge(Engine *e, int node) {
    if (e->swap_left < PB_PAGES) return RC_NONE;
    int64_t best = -1;
    for (int64_t b = 0; b < e->nblocks; b++) {
        Block *B = &e->blocks[b];
        if (B->huge && B->zone >= 0 && e->zones[B->zone].node == node
            && (best < 0 || B->huge_region < e->blocks[best].huge_region)) best = b;
    }
    if (best < 0) return RC_NONE;
    Block *B = &e->blocks[best];
    e->regions[B->huge_region].state = 4;
    B->huge = 0;
    release(e, best, 0, PB_PAGES);
    e->swap_left -= PB_PAGES;
    e->k[K_THP_SWPOUT]++;
    return RC_HUGE;
}

static int reclaimed_pages(int rc) { return rc == RC_HUGE ? PB_PAGES : rc != RC_NONE; }
static int swapped_pages(int rc) { return rc == RC_HUGE ? PB_PAGES : rc == RC_ANON; }

static int reclaim_one(Engine *e, int node) {
    IdxSet *s = &e->fileset[node];
    int kind = PK_FILE;
    if (s->n == 0) {
        if (e->swap_left <= 0) return RC_NONE;
        s = &e->anonset[node]; kind = PK_ANON;
        if (s->n == 0) return reclaim_huge(e, node);
    }
    int64_t b = s->ids[rnd(e) % (uint64_t)s->n];
    Block *B = &e->blocks[b];
    const uint64_t *m = kind == PK_FILE ? B->file : B->anon;
    int cnt = kind == PK_FILE ? B->nfile : B->nanon;
    int off = nth_set(m, (int)(rnd(e) % (uint64_t)cnt));
    if (bit_get(B->traced, off)) forget_traced(e, pfn_of(e, b, off));
    release(e, b, off, 1);
    if (kind == PK_ANON) { e->swap_left--; return RC_ANON; }
    return RC_FILE;
}

static Zone *top_zone(Engine *e, int node) {   /* the node's highest populated zone */
    Zone *best = NULL;
    for (int i = 0; i < e->nzones; i++)
        if (e->zones[i].node == node && (!best || e->zones[i].type > best->type)) best = &e->zones[i];
    return best;
}

/* ---------- direct reclaim ---------- */

/* __perform_reclaim -> try_to_free_pages for a costly order: per node of the attempt, reclaim until
   compact_gap(order) pages are freed or compaction becomes suitable (should_continue_reclaim); a node
   already "compaction ready" (free >= high + gap, compaction_ready()) is skipped. */
static int64_t direct_reclaim(Engine *e, int pref, int only_node, int order, int64_t *swapped) {
    int64_t total = 0, gap = 2LL << order;
    int seen[MAXNODES] = {0};
    e->k[K_ALLOCSTALL]++;
    for (int i = 0; i < e->zl_len[pref]; i++) {
        Zone *z = &e->zones[e->zonelist[pref][i]];
        if (only_node >= 0 && z->node != only_node) continue;
        if (seen[z->node]) continue;
        seen[z->node] = 1;
        Zone *top = top_zone(e, z->node);
        if (top->free_pages >= mark_of(top, 2) + gap + top->reserve) continue;
        int64_t got = 0;
        while (got < gap && !(top->free_pages > mark_of(top, 1) + gap + top->reserve)) {
            int r = reclaim_one(e, z->node);
            if (!r) break;
            got += reclaimed_pages(r);
            *swapped += swapped_pages(r); e->k[K_PSWPOUT] += swapped_pages(r);
        }
        total += got;
        if (got) e->daemon[z->node].ksw_failures = 0;   /* shrink_node: reclaimable */
    }
    e->k[K_PGSTEAL_DIRECT] += total;
    return total;
}

/* ---------- kswapd (mm/vmscan.c), in trace time ---------- */

/* pgdat_balanced(): some zone of the node passes its high watermark (boost included) at the order. */
static int node_balanced(Engine *e, int node, int order) {
    for (int i = 0; i < e->nzones; i++) {
        Zone *z = &e->zones[i];
        if (z->node == node && wmark_ok(z, order, mark_of(z, 2))) return 1;
    }
    return 0;
}

static int node_boosted(Engine *e, int node) {   /* pgdat_watermark_boosted() */
    for (int i = 0; i < e->nzones; i++) if (e->zones[i].node == node && e->zones[i].boost) return 1;
    return 0;
}

/* wakeup_kswapd(): raise kswapd_order; a running kswapd just takes the order. A hopeless node
   (kswapd_failures >= MAX_RECLAIM_RETRIES) or one balanced at the order and not boosted is left alone,
   and then kcompactd is woken unless the caller will compact itself (no __GFP_DIRECT_RECLAIM). */
static void wakeup_kswapd(Engine *e, int node, int order, int direct) {
    Daemon *d = &e->daemon[node];
    if (!e->p[P_KSWAPD]) return;
    if (d->ksw_active) { if (d->ksw_order < order) d->ksw_order = order; return; }
    if (d->ksw_failures >= 16 || (node_balanced(e, node, order) && !node_boosted(e, node))) {
        if (!direct) wakeup_kcompactd(e, node, order);
        return;
    }
    d->ksw_active = 1; d->ksw_order = order; d->ksw_reclaimed = 0; d->ksw_ns = (double)e->now;
    d->ksw_boost_left = 0;
    for (int i = 0; i < e->nzones; i++) if (e->zones[i].node == node) d->ksw_boost_left += e->zones[i].boost;
    d->ksw_boosted = d->ksw_boost_left > 0;
    e->k[K_KSWAPD_WAKE]++;
}

/* kswapd's balance_pgdat(), page by page at its own pace (kswapd_us_per_page, swap_out_us_per_page for
   an anon page), up to trace time ts. It reclaims until the node is balanced at the order, which drops
   to 0 once compact_gap(order) pages are reclaimed (kswapd_shrink_node). With boosted watermarks it
   first reclaims the boost's worth of pages (nr_boost_reclaim, page cache only: may_swap is off), even
   on a balanced node, unless the node is not balanced (then the boost is ignored); at the end the
   boosts are cleared and kcompactd is woken at pageblock order. Then kswapd_try_to_sleep(): the skip
   bits of zones whose direct compaction asked for it go (reset_isolation_suitable) and kcompactd is
   woken for the order kswapd was woken for. A run that reclaims nothing counts a kswapd_failure; 16
   make the node hopeless until reclaim frees something. */
static void kswapd_work(Engine *e, int64_t ts) {
    for (int n = 0; n < e->nnodes; n++) {
        Daemon *d = &e->daemon[n];
        while (d->ksw_active && d->ksw_ns <= (double)ts) {
            int order = d->ksw_reclaimed >= (2LL << d->ksw_order) ? 0 : d->ksw_order;
            int balanced = node_balanced(e, n, order);
            if (d->ksw_boost_left > 0 && !balanced) d->ksw_boost_left = 0;
            int r = RC_NONE;
            if (d->ksw_boost_left > 0 || !balanced) {
                r = d->ksw_boost_left > 0 && e->fileset[n].n == 0 ? RC_NONE : reclaim_one(e, n);
                if (r == RC_NONE && d->ksw_boost_left > 0) { d->ksw_boost_left = 0; continue; }
            }
            if (r == RC_NONE) {                             /* balanced, or nothing left to reclaim */
                if (!balanced && !d->ksw_reclaimed) d->ksw_failures++;
                d->ksw_active = 0;
                if (d->ksw_boosted) {
                    for (int i = 0; i < e->nzones; i++) if (e->zones[i].node == n) e->zones[i].boost = 0;
                    d->ksw_boosted = 0;
                    wakeup_kcompactd(e, n, PB_ORDER);
                }
                if (balanced) {
                    for (int i = 0; i < e->nzones; i++)
                        if (e->zones[i].node == n && e->zones[i].blockskip_flush) reset_isolation_suitable(e, &e->zones[i]);
                    if (d->ksw_order > 0) wakeup_kcompactd(e, n, d->ksw_order);
                }
                d->ksw_order = 0;
                break;
            }
            int got = reclaimed_pages(r), swp = swapped_pages(r);
            d->ksw_reclaimed += got;
            if (d->ksw_boost_left > 0) d->ksw_boost_left -= got < d->ksw_boost_left ? got : d->ksw_boost_left;
            e->k[K_PGSTEAL_KSWAPD] += got; e->k[K_PSWPOUT] += swp;
            d->ksw_failures = 0;
            d->ksw_ns += 1000.0 * ((got - swp) * e->p[P_KSWAPD_US] + swp * e->p[P_SWAP_OUT_US]);
        }
    }
}
