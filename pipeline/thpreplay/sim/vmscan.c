/*
 * mm/vmscan.c, in the replay core (included by _engine.c, one translation unit: see engine.h).
 * Reclaim a page at a time: shrink_node / shrink_lruvec with the file/anon balance simplified to page
 * cache first, anon to swap while swap lasts (reclaim_one), a whole anon THP swapped out, add_to_swap
 * of a PMD folio (reclaim_huge); do_try_to_free_pages for a costly order (direct_reclaim), with
 * shrink_zones, compaction_ready, shrink_node (shrink_node_direct) and should_continue_reclaim;
 * pgdat_balanced (node_balanced), pgdat_watermark_boosted (node_boosted), wakeup_kswapd, and kswapd's
 * balance_pgdat, kswapd_shrink_node (kswapd_pass_pages) and kswapd_try_to_sleep in trace time
 * (kswapd_work).
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
    pcp_free(e, b, off);   /* free_unref_page_list() */
    if (kind == PK_ANON) { e->swap_left--; return RC_ANON; }
    return RC_FILE;
}

/* ---------- direct reclaim ---------- */

#define SWAP_CLUSTER_MAX 32

/* compaction_ready() for a costly order, in the captured kernel's form (thpreplay.kernel.vmscan):
   the order is already free at the min watermark, or order-0 free pages reach the high watermark plus
   compact_gap() and compaction_suitable() would let compaction run. */
static int compaction_ready(Engine *e, const Zone *z, int order) {
    int64_t gap = 2LL << order;
    if (wmark_ok(z, order, mark_of(z, 0))) return 1;              /* COMPACT_SUCCESS */
    int form = (int)e->p[P_READY_FORM];
    if (form == 2)   /* 6.15+: compaction_suitable() at high, plus the costly-order margin (low - min) */
        return wmark_ok(z, 0, mark_of(z, 2) + gap + (z->wlow - z->wmin)) && !frag_lack_of_memory(e, z, order);
    if (!wmark_ok(z, 0, mark_of(z, 1) + gap)) return 0;            /* COMPACT_SKIPPED: reclaim */
    if (form == 1 && frag_lack_of_memory(e, z, order)) return 0;   /* 6.5+: not suitable, reclaim */
    return wmark_ok(z, 0, mark_of(z, 2) + gap);
}

static int64_t huge_anon_pages(Engine *e, int node) {   /* anon THPs are on the LRU too */
    int64_t n = 0;
    for (int64_t b = 0; b < e->nblocks; b++)
        if (e->blocks[b].huge && e->blocks[b].zone >= 0 && e->zones[e->blocks[b].zone].node == node) n += PB_PAGES;
    return n;
}

/* should_continue_reclaim() (5.4+) after a shrink_node() round that freed `round` pages: stop when the
   round freed nothing, or some zone of the node has the order free at min or is suitable for
   compaction (low watermark + compact_gap, and a fragmentation index that does not say "lack of
   memory"); continue while the node's reclaimable LRU pages exceed compact_gap(). The kernel counts
   inactive pages only; the model has no active/inactive split and counts them all. */
static int should_continue_reclaim(Engine *e, int node, int order, int64_t round) {
    int64_t gap = 2LL << order;
    if (!round) return 0;
    for (int i = 0; i < e->nzones; i++) {
        const Zone *z = &e->zones[i];
        if (z->node != node) continue;
        if (wmark_ok(z, order, mark_of(z, 0))) return 0;
        if (wmark_ok(z, 0, mark_of(z, 1) + gap) && !frag_lack_of_memory(e, z, order)) return 0;
    }
    int64_t lru = e->node_file[node] + (e->swap_left > 0 ? e->node_anon[node] + huge_anon_pages(e, node) : 0);
    return lru > gap;
}

/* shrink_node() for direct reclaim: rounds of reclaim_round_pages (sc->nr_to_reclaim, SWAP_CLUSTER_MAX,
   unless the capture shows its own: sim/calibrate.py; the kernel's per-priority scan targets are not
   modelled) while should_continue_reclaim() says so. Returns pages freed; *swapped counts the anon ones. */
static int64_t shrink_node_direct(Engine *e, int node, int order, int64_t *swapped) {
    int64_t total = 0, round;
    do {
        round = 0;
        while (round < (int64_t)e->p[P_RECLAIM_ROUND]) {
            int r = reclaim_one(e, node);
            if (!r) break;
            round += reclaimed_pages(r);
            *swapped += swapped_pages(r); e->k[K_PSWPOUT] += swapped_pages(r);
        }
        total += round;
    } while (should_continue_reclaim(e, node, order, round));
    if (total) e->daemon[node].ksw_failures = 0;   /* shrink_node: reclaimable */
    return total;
}

/* __perform_reclaim -> try_to_free_pages -> do_try_to_free_pages for a costly order: per priority
   (DEF_PRIORITY 12 down to 0), shrink_zones() walks the zonelist, skipping a zone that is
   compaction_ready() and shrinking each other zone's node once; it stops once SWAP_CLUSTER_MAX pages
   are freed or some zone was compaction ready. The return value, which mm_vmscan_direct_reclaim_end
   traces as nr_reclaimed, is the pages freed, or 1 when none were but compaction was ready ("aborted
   reclaim to try compaction? don't OOM, then"). Slab pages freed by the shrinkers count in the kernel's
   nr_reclaimed; the model has no slab. Returns pages freed; *returned gets the kernel's return value. */
static int64_t direct_reclaim(Engine *e, int pref, int only_node, int order, int64_t *swapped, int64_t *returned) {
    int64_t total = 0;
    int ready = 0;
    e->k[K_ALLOCSTALL]++;
    for (int priority = 12; priority >= 0; priority--) {
        int shrunk[MAXNODES] = {0};
        for (int i = 0; i < e->zl_len[pref]; i++) {
            Zone *z = &e->zones[e->zonelist[pref][i]];
            if (only_node >= 0 && z->node != only_node) continue;
            if (order > 3 && compaction_ready(e, z, order)) { ready = 1; continue; }  /* PAGE_ALLOC_COSTLY_ORDER */
            if (shrunk[z->node]) continue;
            shrunk[z->node] = 1;
            total += shrink_node_direct(e, z->node, order, swapped);
        }
        if (total >= SWAP_CLUSTER_MAX || ready) break;
    }
    e->k[K_PGSTEAL_DIRECT] += total;
    *returned = total ? total : ready;
    e->k[K_RECLAIM_RETURNED] += *returned;
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
    /* woken now, running once the scheduler picks it (kswapd_wake_us: 0 in the deterministic run) */
    d->ksw_active = 1; d->ksw_order = order; d->ksw_reclaimed = 0;
    d->ksw_ns = (double)e->now + e->p[P_KSWAPD_WAKE_US] * 1000.0;
    d->ksw_boost_left = 0; d->ksw_pass_left = 0;
    for (int i = 0; i < e->nzones; i++) if (e->zones[i].node == node) d->ksw_boost_left += e->zones[i].boost;
    d->ksw_boosted = d->ksw_boost_left > 0;
    e->k[K_KSWAPD_WAKE]++;
}

/* kswapd_shrink_node(): a pass of balance_pgdat() aims at the sum over the node's zones of
   max(high watermark (boost included), SWAP_CLUSTER_MAX) pages. */
static int64_t kswapd_pass_pages(Engine *e, int node) {
    int64_t n = 0;
    for (int i = 0; i < e->nzones; i++) {
        Zone *z = &e->zones[i];
        if (z->node == node) n += mark_of(z, 2) > SWAP_CLUSTER_MAX ? mark_of(z, 2) : SWAP_CLUSTER_MAX;
    }
    return n;
}

/* kswapd's balance_pgdat(), page by page at its own pace (kswapd_us_per_page, swap_out_us_per_page for
   an anon page), up to trace time ts, in passes of kswapd_shrink_node(): whether the node is balanced
   is asked only between passes, so a pass can reclaim past the high watermark as the kernel's does. It
   reclaims until the node is balanced at the order, which drops to 0 once compact_gap(order) pages are
   reclaimed (kswapd_shrink_node). With boosted watermarks it first reclaims the boost's worth of pages
   (nr_boost_reclaim, page cache only: may_swap is off), even on a balanced node, unless the node is not
   balanced (then the boost is ignored); at the end the boosts are cleared and kcompactd is woken at
   pageblock order. Then kswapd_try_to_sleep(): the skip bits of zones whose direct compaction asked for
   it go (reset_isolation_suitable) and kcompactd is woken for the order kswapd was woken for. A run
   that reclaims nothing counts a kswapd_failure; 16 make the node hopeless until reclaim frees
   something. The kernel's scan priorities, and its passes that reclaim less than their aim, are not
   modelled. */
static void kswapd_work(Engine *e, int64_t ts) {
    for (int n = 0; n < e->nnodes; n++) {
        Daemon *d = &e->daemon[n];
        while (d->ksw_active && d->ksw_ns <= (double)ts) {
            int order = d->ksw_reclaimed >= (2LL << d->ksw_order) ? 0 : d->ksw_order;
            int r = RC_NONE, balanced = 0, done = 0;
            if (d->ksw_pass_left <= 0) {                    /* between passes: balanced yet? */
                balanced = node_balanced(e, n, order);
                if (d->ksw_boost_left > 0 && !balanced) d->ksw_boost_left = 0;
                if (d->ksw_boost_left > 0 || !balanced) d->ksw_pass_left = kswapd_pass_pages(e, n);
                else done = 1;
            }
            if (!done) {
                r = d->ksw_boost_left > 0 && e->fileset[n].n == 0 ? RC_NONE : reclaim_one(e, n);
                if (r == RC_NONE && d->ksw_boost_left > 0) { d->ksw_boost_left = 0; d->ksw_pass_left = 0; continue; }
                if (r == RC_NONE) { balanced = node_balanced(e, n, order); done = 1; }   /* nothing left */
            }
            if (done) {
                if (!balanced && !d->ksw_reclaimed) d->ksw_failures++;
                d->ksw_active = 0; d->ksw_pass_left = 0;
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
            d->ksw_pass_left -= got;
            if (d->ksw_boost_left > 0) d->ksw_boost_left -= got < d->ksw_boost_left ? got : d->ksw_boost_left;
            e->k[K_PGSTEAL_KSWAPD] += got; e->k[K_PSWPOUT] += swp;
            d->ksw_failures = 0;
            d->ksw_ns += 1000.0 * ((got - swp) * e->p[P_KSWAPD_US] + swp * e->p[P_SWAP_OUT_US]);
        }
    }
}
