/*
 * mm/compaction.c, in the replay core (included by _engine.c, one translation unit: see engine.h).
 * compaction_suitable with fragmentation_index of mm/vmstat.c (suitable, frag_index);
 * compaction_deferred, defer_compaction, compaction_defer_reset (deferred, defer, defer_reset);
 * reset_cached_positions, __reset_isolation_suitable (reset_isolation_suitable), compaction_restarting,
 * update_cached_migrate; the free scanner: isolate_freepages_block, suitable_migration_target,
 * isolate_freepages, fast_isolate_freepages, compaction_alloc; the migrate scanner:
 * isolate_migratepages_block, isolate_migratepages; migrate_pages of mm/migrate.c (move_page);
 * __compact_finished (compact_finished); compact_zone (cc_init, cc_run, cc_finish, compact_zone);
 * try_to_compact_pages (direct_compact); kcompactd: kcompactd_node_suitable, wakeup_kcompactd,
 * kcompactd_do_work (kcompactd_work); proactive compaction (5.9+): extfrag_for_order of mm/vmstat.c
 * (extfrag_score), fragmentation_score_node (node_score), fragmentation_score_wmark
 * (proactive_low_high), should_proactive_compact_node (proactive), proactive_compact_node
 * (proactive_work).
 */
#include "engine.h"

/* ---------- compaction ---------- */

/* fragmentation_index() in thousandths; -1000 when a free block of the order exists. */
static int64_t frag_index(const Zone *z, int order) {
    int64_t blocks = 0, suitable = 0;
    for (int j = 0; j < NORD; j++) { blocks += z->nr_free[j]; if (j >= order) suitable += z->nr_free[j]; }
    if (blocks == 0) return 0;
    if (suitable) return -1000;
    return 1000 - (1000 + z->free_pages * 1000 / (1LL << order)) / blocks;
}

/* compaction_suitable(): SKIPPED unless the zone has low watermark + compact_gap(order) free pages;
   NOT_SUITABLE when the fragmentation index says the failure is lack of memory. */
static int suitable(Engine *e, const Zone *z, int order) {
    int64_t gap = 2LL << order;
    if (!wmark_ok(z, 0, mark_of(z, 1) + gap)) return C_SKIPPED;
    if (frag_lack_of_memory(e, z, order)) return C_NOT_SUITABLE;
    return C_CONTINUE;
}

/* compaction_suitable()'s fragmentation test for a costly order: an index in [0, extfrag_threshold]
   says an allocation would fail for lack of memory, not fragmentation, so compaction would not help. */
static int frag_lack_of_memory(Engine *e, const Zone *z, int order) {
    if (order <= 3) return 0;   /* PAGE_ALLOC_COSTLY_ORDER */
    int64_t fi = frag_index(z, order);
    return fi >= 0 && fi <= (int64_t)e->p[P_EXTFRAG_THRESHOLD];
}

/* compaction_deferred() / defer_compaction() / compaction_defer_reset(), mm/compaction.c */
static int deferred(Zone *z, int order) {
    if (order < z->order_failed) return 0;
    if (++z->considered >= (1 << z->defer_shift)) { z->considered = 1 << z->defer_shift; return 0; }
    return 1;
}
static void defer(Zone *z, int order) {
    z->considered = 0;
    if (++z->defer_shift > 6) z->defer_shift = 6;
    if (order < z->order_failed) z->order_failed = order;
}
static void defer_reset(Zone *z, int order, int success) {
    if (success) { z->considered = 0; z->defer_shift = 0; }
    if (order >= z->order_failed) z->order_failed = order + 1;
}

/* Move one migratable page from (b, off) to a free page of block t (migrate_pages()). The traced
   page's key follows it through the fwd/rev maps. */
static void move_page(Engine *e, int64_t b, int off, int64_t t, int toff) {
    Block *B = &e->blocks[b];
    int kind = bit_get(B->anon, off) ? PK_ANON : bit_get(B->file, off) ? PK_FILE : PK_MLOCK;
    int traced = bit_get(B->traced, off);
    int64_t from = pfn_of(e, b, off), to = pfn_of(e, t, toff);
    if (traced) {
        int64_t *kp = map_find(&e->rev, from);
        int64_t key = kp ? *kp : from;
        if (kp) map_del(&e->rev, from);
        if (key == to) map_del(&e->fwd, key);
        else { map_put(&e->fwd, key, to); map_put(&e->rev, to, key); }
    }
    Block *T = &e->blocks[t];
    bit_set(T->used, toff);
    if (traced) bit_set(T->traced, toff);
    bit_set(kind == PK_ANON ? T->anon : kind == PK_FILE ? T->file : T->mlock, toff);
    if (kind == PK_MLOCK) { T->nmlock++; B->nmlock--; }
    else { lru_add(e, t, kind, 1); lru_add(e, b, kind, -1); }
    bit_clr(B->anon, off); bit_clr(B->file, off); bit_clr(B->mlock, off); bit_clr(B->traced, off);
    /* the old page is freed (putback of the migrated source, free_unref_page): onto the per-cpu list */
    if (pcp_on(e, B)) pcp_add(e, b, off);
    else bit_clr(B->used, off);
}

/* compact_zone() of mm/compaction.c, page by page. The state it keeps across calls is the kernel's:
   one skip bit per pageblock (PB_migrate_skip, shared by both scanners), cached migrate positions for
   async and sync (compact_cached_migrate_pfn[2]), the cached free position and compact_blockskip_flush.
   Positions are page indices from base_pfn (block * 512 + offset). */


static inline int64_t zone_start_pidx(const Zone *z) { return z->b0 * PB_PAGES; }
static inline int64_t zone_end_pidx(const Zone *z) { return z->b1 * PB_PAGES; }
static inline int in_zone(Engine *e, const Zone *z, int64_t b) {
    return b >= z->b0 && b < z->b1 && e->blocks[b].zone >= 0 && &e->zones[e->blocks[b].zone] == z;
}

/* reset_cached_positions() */
static void reset_cached_positions(Zone *z) {
    z->cmig[0] = z->cmig[1] = zone_start_pidx(z);
    z->cfree = (z->b1 - 1) * PB_PAGES;
}

static inline int is_lru(const Block *B, int off);
static inline int free_order_at(const Levels *L, int off);

/* __reset_isolation_pfn() (5.1+, e332f741a8dd "mm, compaction: be selective about what pageblocks to
   clear skip hints"): a block keeps its skip bit unless a sample of its pages, one every
   1 << PAGE_ALLOC_COSTLY_ORDER from its start, shows an LRU page (check_source) or a free buddy head
   (check_target); a block holding a huge page keeps it (pageblock_skip_persistent); with both checks a
   block without the bit counts as found, and the free side alone takes only MOVABLE blocks. */
static int reset_isolation_pfn(Engine *e, const Zone *z, int64_t b, int check_source, int check_target) {
    Block *B = &e->blocks[b];
    if (!in_zone(e, z, b) || B->huge) return 0;
    if (check_source && check_target && !B->skip) return 1;
    if (!check_source && check_target && B->mt != MT_MOVABLE) return 0;
    Levels L; int have_levels = 0;
    for (int off = 0; off < PB_PAGES; off += 8) {
        int used = bit_get(B->used, off), hit = check_source && used && is_lru(B, off);
        if (!hit && check_target && !used) {
            if (!have_levels) { levels_of(B->used, &L); have_levels = 1; }
            int k = free_order_at(&L, off);
            hit = (off & ((1 << k) - 1)) == 0;   /* PageBuddy(): the head of its free block */
        }
        if (hit) { B->skip = 0; return 1; }
    }
    return 0;
}

/* __reset_isolation_suitable(). 5.1+ (e332f741a8dd): only when compact_blockskip_flush says a direct
   compaction's scanners met since the last reset; walks the zone from both ends at once (the migrate
   side looking for LRU pages, the free side for free pages, each side also for the other once it has
   found one), clears the skip bit of the blocks whose sample passes, and starts the cached migrate and
   free positions at the first such block from below and the last from above (compact_init_*_pfn).
   Before 5.1: every skip bit goes and the positions go back to the zone's ends. */
static void reset_isolation_suitable(Engine *e, Zone *z) {
    if (e->p[P_FREE_STRIDE] == 0) {   /* before 5.1 */
        for (int64_t b = z->b0; b < z->b1 && b < e->nblocks; b++) e->blocks[b].skip = 0;
        z->blockskip_flush = 0;
        reset_cached_positions(z);
        z->init_migrate = zone_start_pidx(z);
        z->init_free = z->cfree;
        return;
    }
    if (!z->blockskip_flush) return;
    z->blockskip_flush = 0;
    int64_t mb = z->b0, fb = z->b1 - 1, reset_migrate = fb, reset_free = mb;
    int source_set = 0, free_set = 0;
    for (; mb < fb && fb < e->nblocks; mb++, fb--) {
        if (reset_isolation_pfn(e, z, mb, 1, source_set) && mb < reset_migrate) {
            source_set = 1;
            reset_migrate = mb;
            z->init_migrate = z->cmig[0] = z->cmig[1] = mb * PB_PAGES;
        }
        if (reset_isolation_pfn(e, z, fb, free_set, 1) && fb > reset_free) {
            free_set = 1;
            reset_free = fb;
            z->init_free = z->cfree = fb * PB_PAGES;
        }
    }
    if (reset_migrate >= reset_free) {   /* leave no distance if no suitable block was found */
        z->cmig[0] = z->cmig[1] = mb * PB_PAGES;
        z->cfree = fb * PB_PAGES;
    }
}

/* compaction_restarting(): deferred to the limit and considered that often, so the skip bits go. */
static int compaction_restarting(const Zone *z, int order) {
    return order >= z->order_failed && z->defer_shift == 6 && z->considered >= (1 << 6);
}

/* update_cached_migrate(): the cached migrate position only moves forward; async and sync each. */
static void update_cached_migrate(CompactControl *cc, int64_t pidx) {
    Zone *z = cc->z;
    if (pidx > z->cmig[0]) z->cmig[0] = pidx;
    if (!cc->async && pidx > z->cmig[1]) z->cmig[1] = pidx;
}

/* Can the used page at (b, off) be isolated for migration (isolate_migratepages_block)? LRU pages
   can; mlocked ones only with vm.compact_unevictable_allowed (isolate_migratepages_block: ISOLATE_UNEVICTABLE);
   kernel memory, slab, page tables and huge pages cannot. */
static inline int isolatable(const Engine *e, const Block *B, int off) {
    return bit_get(B->anon, off) || bit_get(B->file, off) || (bit_get(B->mlock, off) && e->p[P_UNEV_ALLOWED] != 0);
}

/* PageLRU() of a used page: anon, page cache and mlocked (the unevictable list) pages are on an LRU. */
static inline int is_lru(const Block *B, int off) {
    return bit_get(B->anon, off) || bit_get(B->file, off) || bit_get(B->mlock, off);
}

/* The order of the largest free aligned chunk of the block that contains page off (which is free). */
static inline int free_order_at(const Levels *L, int off) {
    int k = 0;
    while (k < NORD - 1 && level_bit(L, k + 1, off >> (k + 1))) k++;
    return k;
}

/* isolate_freepages_block(): the kernel scans a block upward from
   isolate_start_pfn, sampling every stride-th page (4fca9730c51d, 5.1: async compaction samples 1 in
   COMPACT_CLUSTER_MAX until a block yields); a page that is the head of a free buddy is isolated
   whole. Stops once enough free pages are isolated. Returns pages isolated; *pos is where it stopped. */
/* The first free page of the block at or after off, or PB_PAGES. */
static inline int next_free(const uint64_t used[8], int off) {
    for (int w = off >> 6; w < 8; w++) {
        uint64_t x = ~used[w];
        if (w == off >> 6) x &= ~0ULL << (off & 63);
        if (x) return w * 64 + __builtin_ctzll(x);
    }
    return PB_PAGES;
}

/* Free pages isolated and not yet migrated into (still in the model's free count). */
static int64_t cc_pending(const CompactControl *cc) {
    int64_t n = 0;
    for (int i = 0; i < cc->nchunks; i++) n += cc->fn[i];
    return n;
}

/* __isolate_free_page() (mm/page_alloc.c) of the free block (b, off, n): isolated only while the zone
   keeps its min watermark (unboosted) plus the block, counted without the pages already isolated (the
   model keeps isolated pages in its free count until it migrates into them); -1 when that fails, which
   ends the search early: compaction_alloc() finds nothing and migrate_pages() fails with -ENOMEM
   before the scanners meet, COMPACT_CONTENDED. Only the pages the trace never allocates count as
   targets (compaction_alloc passes the others): 0 when there are none. Else the usable pages. */
static int isolate_chunk(CompactControl *cc, const Block *B, int64_t b, int off, int n) {
    if (!(cc->z->free_pages - cc_pending(cc) > cc->z->wmin + n)) return -1;
    int usable = 0;
    for (int i = off; i < off + n; i++) usable += !bit_get(B->hint, i);
    if (!usable) return 0;
    cc->fb[cc->nchunks] = b; cc->foff[cc->nchunks] = (int16_t)off; cc->fn[cc->nchunks] = (int16_t)n; cc->nchunks++;
    cc->nr_freepages += usable;
    return usable;
}

static int isolate_freepages_block(Engine *e, CompactControl *cc, int64_t b, int *pos, int stride) {
    Block *B = &e->blocks[b];
    int isolated = 0, off = *pos, have_levels = 0;
    Levels L;
    if (B->nfree == 0) {                                   /* every position looked at is in use */
        if (off < PB_PAGES) cc->fscanned += (PB_PAGES - off + stride - 1) / stride;
        *pos = PB_PAGES;
        return 0;
    }
    while (off < PB_PAGES) {
        if (stride == 1) {                                 /* the used pages up to the next free one */
            int nxt = next_free(B->used, off);
            cc->fscanned += nxt - off;
            off = nxt;
            if (off >= PB_PAGES) break;
        } else if (bit_get(B->used, off)) { cc->fscanned++; off += stride; continue; }
        cc->fscanned++;
        /* PageBuddy is set on the head of a free block only: the maximal free order at off, if aligned */
        if (!have_levels) { levels_of(B->used, &L); have_levels = 1; }
        int k = free_order_at(&L, off);
        if (off & ((1 << k) - 1)) { off += stride; continue; }   /* inside a free block: not PageBuddy */
        if (cc->nchunks == CC_FREE_MAX) break;
        int n = 1 << k;
        int usable = isolate_chunk(cc, B, b, off, n);
        if (usable < 0) break;   /* the free scanner stops early (see isolate_chunk) */
        if (!usable) { off += n - 1 + stride; continue; }
        isolated += usable;
        if (cc->nr_freepages >= cc->nr_migratepages) { off += n; break; }
        off += n - 1 + stride;
    }
    if (off > PB_PAGES) off = PB_PAGES;
    *pos = off;
    return isolated;
}

/* suitable_migration_target(): not a free pageblock (a buddy of pageblock order), and MOVABLE unless
   ignore_block_suitable (MIN_COMPACT_PRIORITY). */
static int suitable_migration_target(Engine *e, CompactControl *cc, int64_t b) {
    Block *B = &e->blocks[b];
    if (B->nfree == PB_PAGES) return 0;
    return cc->ignore_block_suitable || B->mt == MT_MOVABLE;
}

/* isolate_freepages(): the free scanner walks blocks down from free_pfn to the block above the migrate
   scanner; a block fully scanned gets its skip bit (update_pageblock_skip, which also moves the cached
   free position down). fast_isolate_freepages (5.1+) is not modelled. */
static void isolate_freepages(Engine *e, CompactControl *cc, int stride_sampling) {
    Zone *z = cc->z;
    int64_t low_b = cc->migrate_pfn / PB_PAGES + 1;          /* pageblock_end_pfn(migrate_pfn) */
    int64_t b = cc->free_pfn / PB_PAGES;
    int start = (int)(cc->free_pfn % PB_PAGES);
    int stride = (cc->async && stride_sampling) ? COMPACT_CLUSTER_MAX : 1;
    int64_t next = b * PB_PAGES;
    for (; b >= low_b; b--, start = 0) {
        next = (b - 1) * PB_PAGES;
        if (!in_zone(e, z, b) || !suitable_migration_target(e, cc, b)) continue;
        if (!cc->ignore_skip && e->blocks[b].skip) continue;
        int pos = start;
        int got = isolate_freepages_block(e, cc, b, &pos, stride);
        if (pos >= PB_PAGES) {
            e->blocks[b].skip = 1;
            if (b * PB_PAGES < z->cfree) z->cfree = b * PB_PAGES;
        }
        if (cc->nr_freepages >= cc->nr_migratepages) {
            next = pos >= PB_PAGES ? (b - 1) * PB_PAGES : b * PB_PAGES + pos;
            break;
        } else if (pos < PB_PAGES) { next = b * PB_PAGES + pos; break; }   /* isolation failed early */
        /* 4fca9730c51d (5.1): a block that yields nothing doubles the stride up to COMPACT_CLUSTER_MAX
           in every mode; only the starting stride depends on the mode (1 for sync and sync-light) */
        stride = got ? 1 : (stride * 2 > COMPACT_CLUSTER_MAX ? COMPACT_CLUSTER_MAX : stride * 2);
        if (!stride_sampling) stride = 1;
    }
    cc->free_pfn = next;
}

/* The first maximal free block of exactly this order in block b that holds a page the trace does not
   allocate later (Block.hint), or -1: one the kernel's search could have taken. A free block whose
   every page the workload takes later was not taken by the kernel's compaction, so the model's
   searches pass it as if the kernel's had not come to it (rather than take it and fail). */
static int usable_free_block(const Engine *e, int64_t b, int order) {
    const Block *B = &e->blocks[b];
    Levels L; levels_of(B->used, &L);
    int n = 1 << order;
    for (int i = 0; i < level_words(order); i++) {
        uint64_t w = L.w[order][i];
        while (w) {
            int idx = i * 64 + __builtin_ctzll(w);
            w &= w - 1;
            if (order < NORD - 1 && level_bit(&L, order + 1, idx >> 1)) continue;   /* not maximal */
            int off = idx << order;
            for (int k = off; k < off + n; k++) if (!bit_get(B->hint, k)) return off;
        }
    }
    return -1;
}

/* One free block of the order in block b, isolated as isolate_chunk() allows. 1 if done. */
static int isolate_one_free(Engine *e, CompactControl *cc, int64_t b, int order) {
    Block *B = &e->blocks[b];
    if (cc->nchunks == CC_FREE_MAX) return 0;
    int off = usable_free_block(e, b, order);
    if (off < 0 || isolate_chunk(cc, B, b, off, 1 << order) <= 0) return 0;
    cc->fscanned += 1 << order;
    return 1;
}

/* fast_isolate_freepages() (5.1+), as mm/compaction.c has it: before the linear scan, walk the
   MOVABLE free list of each order below the request (from cc->search_order down, wrapping as
   next_search_order() does) from its tail, up to `limit` entries (freelist_scan_limit(): 16, halved
   at each failed search of this compaction; 256 when the free scanner starts at the zone's
   compact_init_free_pfn), for a free block at or above the top quarter of the range left between the
   scanners (else the highest seen in the top half), and isolate it; sync compaction and kcompactd then
   isolate around it in its pageblock (fast_isolate_around(); async direct compaction does not). The
   zone's cached free position moves up to the highest pageblock seen. When nothing is found at the
   start of a scan, the free scanner jumps down to the highest pageblock seen, or for direct compaction
   to the middle of the range.
   The model's free lists hold blocks, not free pages: a block enters the head of a list when it gains
   its first free block of that order (as a freed page enters the kernel's), so the tail holds the
   blocks that have had one longest; its chunks count as that many entries. The kernel turns the list
   after each search (move_freelist_head()) so the next one resumes past it; the model keeps where to
   resume instead. A block whose free blocks of the order are all pages the trace allocates later is
   passed over (usable_free_block()): the kernel's __isolate_free_page() fails only on the min
   watermark, so its search cannot have stopped there, or the workload would not have had those pages.
   The order of the free lists at the start of the trace is in no capture: the initial
   lists hold the blocks in pfn order, the highest at the head, or in a seeded random order
   (params.shuffled_free_lists, shuffle_free_lists()). */
static void fast_isolate_freepages(Engine *e, CompactControl *cc) {
    if (cc->order <= 0 || cc->order >= NORD) return;
    Zone *z = cc->z;
    int scan_start = z->init_free < 0 || cc->free_pfn >= z->init_free;
    int fail = cc->fast_search_fail < 31 ? cc->fast_search_fail : 31;
    int limit = scan_start ? PB_PAGES / 2 : (((COMPACT_CLUSTER_MAX >> fail) + 1) >> 1);
    if (limit < 1) limit = 1;
    int64_t distance = cc->free_pfn - cc->migrate_pfn;
    int64_t low_b = (cc->free_pfn - distance / 4) / PB_PAGES;
    int64_t min_b = (cc->free_pfn - distance / 2) / PB_PAGES;
    if (min_b > low_b) low_b = min_b;
    int64_t highest = -1, found = -1;
    if (cc->search_order > cc->order - 1) cc->search_order = cc->order - 1;
    int order = cc->search_order;
    while (found < 0 && order >= 0) {
        int scanned = 0;
        int64_t high = -1;
        if (z->tail[MT_MOVABLE][order] >= 0) {
            /* move_freelist_head() left the list turned so that a search resumes after the entry the
               last one stopped at: the model keeps that entry (fcur) and walks on from it, around */
            int64_t start = z->fcur[order];
            if (start < 0 || e->blocks[start].cnt[order] == 0 || e->blocks[start].mt != MT_MOVABLE
                || e->blocks[start].zone != (int)(z - e->zones)) start = z->tail[MT_MOVABLE][order];
            int64_t b = start, last = start;
            do {
                last = b;
                scanned += e->blocks[b].cnt[order] ? e->blocks[b].cnt[order] : 1;
                if (b > highest) highest = b;
                int candidate = b >= min_b && (b >= low_b || b > high) && usable_free_block(e, b, order) >= 0;
                if (candidate && b >= low_b) {
                    cc->fast_search_fail = 0; cc->search_order = order;
                    found = b; break;
                }
                if (candidate && b > high) { high = b; limit >>= 1; }
                if (scanned >= limit) break;
                b = e->blocks[b].prev[order] >= 0 ? e->blocks[b].prev[order] : z->tail[MT_MOVABLE][order];
            } while (b != start);
            int64_t stop = found >= 0 ? found : high >= 0 ? high : last;
            z->fcur[order] = e->blocks[stop].prev[order];
            if (found < 0 && high >= 0) found = high;
            if (found >= 0) {
                /* isolate it; fast_isolate_around() takes the rest of its pageblock too, but not for
                   async direct compaction */
                int ok;
                if (cc->direct && cc->async) ok = isolate_one_free(e, cc, found, order);
                else { int pos = 0; ok = isolate_freepages_block(e, cc, found, &pos, 1) > 0;
                       if (pos >= PB_PAGES) e->blocks[found].skip = 1; }
                if (!ok) { found = -2; break; }   /* isolation failed: the search ends */
            }
            if (scanned >= limit) limit = limit >> 1 > 1 ? limit >> 1 : 1;
        }
        if (found >= 0) break;
        /* next_search_order() */
        order--;
        if (order < 0) order = cc->order - 1;
        if (order == cc->search_order) {
            if (--cc->search_order < 0) cc->search_order = cc->order - 1;
            break;
        }
    }
    if (found < 0) {
        cc->fast_search_fail++;
        if (scan_start) {
            if (highest >= min_b) cc->free_pfn = highest * PB_PAGES;
            else if (cc->direct) cc->free_pfn = min_b * PB_PAGES;
        }
    }
    if (highest >= 0 && highest * PB_PAGES >= z->cfree) z->cfree = (highest - 1) * PB_PAGES;
}

/* compaction_alloc(): one isolated free page, isolating more when none is left. -1 when the free
   scanner has met the migrate scanner (migrate_pages then fails with -ENOMEM). */
static int64_t compaction_alloc(Engine *e, CompactControl *cc, int stride_sampling, int *toff) {
    for (;;) {
        if (cc->nchunks == 0) {
            if (cc->free_pfn / PB_PAGES > cc->migrate_pfn / PB_PAGES) {
                if (stride_sampling) fast_isolate_freepages(e, cc);
                if (cc->nchunks == 0) isolate_freepages(e, cc, stride_sampling);
            }
            if (cc->nchunks == 0) return -1;
        }
        while (cc->nchunks > 0) {
            int i = cc->nchunks - 1;
            int64_t t = cc->fb[i];
            int off = cc->foff[i];
            cc->foff[i]++; cc->fn[i]--;
            if (cc->fn[i] == 0) cc->nchunks--;
            /* a page the trace allocates at some time (Block.hint) was never counted: the kernel did not
               migrate into a page its workload then took, and the model's own placements avoid them */
            if (bit_get(e->blocks[t].hint, off)) continue;
            cc->nr_freepages--;
            /* isolated pages are not taken in the model: one a trace allocation used since is passed */
            if (bit_get(e->blocks[t].used, off)) continue;
            *toff = off;
            return t;
        }
    }
}

/* isolate_migratepages_block(): up to COMPACT_CLUSTER_MAX pages of one block from migrate_pfn. Free
   pages are passed over (one scanned page per buddy); a page that cannot be isolated is passed over,
   or, with skip_on_failure, ends the order-aligned chunk (the pages isolated from it are put back). A
   block scanned to its end with nothing isolated gets its skip bit and moves the cached position. */
static void isolate_migratepages_block(Engine *e, CompactControl *cc, int64_t b) {
    Block *B = &e->blocks[b];
    int off = (int)(cc->migrate_pfn - b * PB_PAGES);
    int chunk = 1 << (cc->order >= 0 && cc->order < PB_ORDER ? cc->order : PB_ORDER);
    int next_skip = (off & ~(chunk - 1)) + chunk;
    cc->nr_migratepages = 0; cc->mig_b = b;
    Levels L; int have_levels = 0;
    while (off < PB_PAGES) {
        if (cc->skip_on_failure && off >= next_skip) {
            if (cc->nr_migratepages) break;
            next_skip += chunk;
        }
        cc->mscanned++;
        if (!bit_get(B->used, off)) {                       /* a free buddy: skip it whole */
            if (!have_levels) { levels_of(B->used, &L); have_levels = 1; }
            int k = free_order_at(&L, off);
            off = (off & ~((1 << k) - 1)) + (1 << k);
            continue;
        }
        if (isolatable(e, B, off)) {
            cc->mig_off[cc->nr_migratepages++] = (int16_t)off;
            off++;
            /* isolate_migratepages_block(): a batch stops at COMPACT_CLUSTER_MAX unless the block is
               being finished or a lock was contended */
            if (cc->nr_migratepages >= COMPACT_CLUSTER_MAX && !cc->finish_pageblock && !cc->contended) break;
            continue;
        }
        /* isolate_fail */
        off++;
        if (!cc->skip_on_failure) continue;
        cc->nr_migratepages = 0;                               /* putback */
        if (off < next_skip) { off = next_skip; next_skip += chunk; }
    }
    cc->migrate_pfn = b * PB_PAGES + off;
    if (off >= PB_PAGES && cc->nr_migratepages == 0) {
        if (!cc->ignore_skip) B->skip = 1;
        update_cached_migrate(cc, (b + 1) * PB_PAGES);
    } else if (off >= PB_PAGES && cc->finish_pageblock) {
        /* a finished block moves the cached position past it; its scan began inside the block (no
           valid_page), so it gets no skip bit */
        update_cached_migrate(cc, (b + 1) * PB_PAGES);
    }
}

/* fast_find_migrateblock() (5.1+), as mm/compaction.c has it: at a pageblock boundary, for a costly
   order (and for direct compaction a MOVABLE request) without ignore_skip_hint, walk the MOVABLE free
   lists of orders cc->order - 1 down to PAGE_ALLOC_COSTLY_ORDER from their heads, up to
   freelist_scan_limit() entries in all (33, halved at each failed search of this compaction), for a free
   block below the first half of the range between the scanners (the first eighth once the migrate
   scanner has left the zone's start) in a pageblock without the skip bit: that pageblock is scanned
   next (and gets the skip bit). A failed search restarts the linear scan at the lowest block an
   earlier search found (reinit_migrate_pfn()). The lists are the model's (fast_isolate_freepages()):
   the kernel moves the entries it looked at to the tail (move_freelist_tail()); the model keeps where
   the next search resumes. Returns the block, or -1. */
static int64_t fast_find_migrateblock(Engine *e, CompactControl *cc) {
    Zone *z = cc->z;
    if (cc->ignore_skip || cc->order <= 3 || cc->order >= NORD) return -1;
    if (cc->migrate_pfn % PB_PAGES) return -1;
    int fail = cc->fast_search_fail < 31 ? cc->fast_search_fail : 31;
    int limit = (COMPACT_CLUSTER_MAX >> fail) + 1, scanned = 0;
    int64_t distance = (cc->free_pfn - cc->migrate_pfn) >> 1;
    if (cc->migrate_pfn != zone_start_pidx(z)) distance >>= 2;
    int64_t high_b = (cc->migrate_pfn + distance) / PB_PAGES;
    for (int order = cc->order - 1; order >= 3 && scanned < limit; order--) {   /* PAGE_ALLOC_COSTLY_ORDER */
        int64_t head = z->head[MT_MOVABLE][order];
        if (head < 0) continue;
        int64_t start = z->mcur[order];
        if (start < 0 || e->blocks[start].cnt[order] == 0 || e->blocks[start].mt != MT_MOVABLE
            || e->blocks[start].zone != (int)(z - e->zones)) start = head;
        int64_t b = start;
        do {
            if (scanned >= limit) { z->mcur[order] = (int32_t)b; break; }
            scanned += e->blocks[b].cnt[order] ? e->blocks[b].cnt[order] : 1;
            int64_t nxt = e->blocks[b].next[order] >= 0 ? e->blocks[b].next[order] : z->head[MT_MOVABLE][order];
            if (b < high_b && !e->blocks[b].skip) {
                z->mcur[order] = (int32_t)nxt;
                cc->fast_search_fail = 0;
                e->blocks[b].skip = 1;
                if (cc->fast_start != -2 && (cc->fast_start < 0 || b < cc->fast_start)) cc->fast_start = b;
                return b;
            }
            b = nxt;
        } while (b != start);
    }
    cc->fast_search_fail++;
    if (cc->fast_start >= 0) { cc->migrate_pfn = cc->fast_start * PB_PAGES; cc->fast_start = -2; }
    return -1;
}

/* isolate_migratepages(): the next block with pages to migrate, from where fast_find_migrateblock()
   points or migrate_pfn, up to the free scanner. Blocks with the skip bit (but the one the fast search
   found), and (async direct compaction) blocks that are not MOVABLE (suitable_migration_source), are
   passed by. */
static int isolate_migratepages(Engine *e, CompactControl *cc) {
    Zone *z = cc->z;
    cc->nr_migratepages = 0;
    int64_t fast = e->p[P_FREE_STRIDE] != 0 ? fast_find_migrateblock(e, cc) : -1;
    if (fast >= 0) cc->migrate_pfn = fast * PB_PAGES;
    while (cc->migrate_pfn / PB_PAGES < cc->free_pfn / PB_PAGES) {
        int64_t b = cc->migrate_pfn / PB_PAGES;
        int64_t block_end = (b + 1) * PB_PAGES;
        int fast_block = b == fast;
        fast = -1;
        if (!in_zone(e, z, b) || (!cc->ignore_skip && e->blocks[b].skip && !fast_block)) { cc->migrate_pfn = block_end; continue; }
        if (cc->async && cc->direct && e->blocks[b].mt != MT_MOVABLE) {
            update_cached_migrate(cc, block_end);
            cc->migrate_pfn = block_end;
            continue;
        }
        isolate_migratepages_block(e, cc, b);
        if (cc->nr_migratepages) return 1;
        /* the kernel returns to compact_zone() after each block it tries (ISOLATE_NONE), so
           __compact_finished() sees a contended lock at the block's end */
        if (cc->contended) return 0;
    }
    return 0;
}

/* __compact_finished(): scanners met (reset the cached positions; a direct compactor asks kswapd to
   flush the skip bits when it sleeps): COMPLETE for a whole-zone run, else PARTIAL_SKIPPED. Proactive
   compaction runs until the zone's fragmentation score is at the low mark. Otherwise success once the
   zone has a free block of the order (any migratetype: for order >= pageblock_order/2 a fallback list
   can be stolen, find_suitable_fallback). */
static int64_t extfrag_score(const Zone *z, int order);
static int compact_finished(Engine *e, CompactControl *cc, int64_t proactive_low) {
    Zone *z = cc->z;
    if (cc->free_pfn / PB_PAGES <= cc->migrate_pfn / PB_PAGES) {
        reset_cached_positions(z);
        if (cc->direct) z->blockskip_flush = 1;
        return cc->whole_zone ? C_COMPLETE : C_PARTIAL_SKIPPED;
    }
    if (cc->proactive) {   /* kswapd_is_running(): proactive compaction backs off */
        if (e->daemon[z->node].ksw_active) return C_PARTIAL_SKIPPED;
        return extfrag_score(z, PB_ORDER) > proactive_low ? C_CONTINUE : C_SUCCESS;
    }
    for (int j = cc->order; j < NORD; j++) if (z->nr_free[j] > 0) return C_SUCCESS;
    /* the kernel finishes the pageblock first, then a contended lock ends the run */
    if (cc->contended && cc->migrate_pfn % PB_PAGES == 0) return C_CONTENDED;
    return C_CONTINUE;
}

static void move_page(Engine *e, int64_t b, int off, int64_t t, int toff);

/* compact_zone()'s check_drain: once the migrate scanner has left the cc->order-aligned block it
   migrated from, the pages freed there are flushed from the per-cpu lists (lru_add_drain_cpu_zone ->
   drain_local_pages) so that they merge and compact_finished() sees them. Only with an order
   (direct compaction, kcompactd's wake-ups); proactive compaction (order -1) never drains. */
static void check_drain(Engine *e, CompactControl *cc) {
    if (cc->order <= 0 || cc->last_migrated < 0) return;
    int64_t chunk = 1LL << (cc->order < PB_ORDER ? cc->order : PB_ORDER);
    if (cc->last_migrated < cc->migrate_pfn / chunk * chunk) {
        pcp_drain(e, cc->z);
        cc->last_migrated = -1;
    }
}

/* compact_zone(): isolate a batch, migrate it into isolated free pages (migrate_pages with
   compaction_alloc), until compact_finished says otherwise. A batch that runs out of free pages
   fails (-ENOMEM) and the scanners have met; async direct compaction then skips the rest of the
   block. Pages already migrated stay migrated. Unused isolated free pages go back, and the cached free
   position moves back up to them (release_freepages). */
/* compact_zone()'s set-up: the scanners start at the cached positions (a whole-zone run at the zone's
   ends), and the skip bits go first when deferral restarts. */
static void cc_init(Engine *e, CompactControl *cc, Zone *z, int order, int prio, int direct, int proactive) {
    memset(cc, 0, sizeof(*cc));
    cc->z = z; cc->order = order; cc->async = prio == PRIO_ASYNC; cc->direct = direct; cc->proactive = proactive;
    cc->search_order = order; cc->fast_start = -1; cc->last_migrated = -1;
    /* MIN_COMPACT_PRIORITY ignores the skip bits and walks the whole zone; so does proactive compaction
       (proactive_compact_node: ignore_skip_hint, whole_zone) */
    cc->ignore_skip = cc->whole_zone = prio == PRIO_SYNC_FULL || proactive;
    cc->ignore_block_suitable = prio == PRIO_SYNC_FULL;
    cc->skip_on_failure = direct && cc->async && order < NORD;
    if (order >= 0 && compaction_restarting(z, order)) reset_isolation_suitable(e, z);
    int sync = !cc->async;
    if (cc->whole_zone) { cc->migrate_pfn = zone_start_pidx(z); cc->free_pfn = (z->b1 - 1) * PB_PAGES; return; }
    cc->migrate_pfn = z->cmig[sync]; cc->free_pfn = z->cfree;
    if (cc->free_pfn < zone_start_pidx(z) || cc->free_pfn >= zone_end_pidx(z)) cc->free_pfn = z->cfree = (z->b1 - 1) * PB_PAGES;
    if (cc->migrate_pfn < zone_start_pidx(z) || cc->migrate_pfn >= zone_end_pidx(z)) cc->migrate_pfn = z->cmig[0] = z->cmig[1] = zone_start_pidx(z);
    /* a run from where the last skip-bit reset left the migrate scanner covers the whole zone: its
       scanners meeting is COMPLETE, else PARTIAL_SKIPPED (before any reset there is no such start) */
    if (z->init_migrate >= 0 && cc->migrate_pfn <= z->init_migrate) cc->whole_zone = 1;
}

/* compact_zone()'s loop: isolate a batch, migrate it into isolated free pages (migrate_pages with
   compaction_alloc), until compact_finished says otherwise. A batch that runs out of free pages fails
   (-ENOMEM) and the scanners have met; async direct compaction then skips the rest of the block.
   Pages already migrated stay migrated. With max_batches, it stops after that many batches with
   C_CONTINUE: the daemons run it in slices of their own time, the control kept between slices. */
static int cc_run(Engine *e, CompactControl *cc, int64_t proactive_low, int max_batches, int64_t *captured) {
    int stride_sampling = e->p[P_FREE_STRIDE] != 0;
    int64_t m0 = cc->migrated, f0 = cc->failed, ms0 = cc->mscanned, fs0 = cc->fscanned;
    int ret, batches = 0;
    while ((ret = compact_finished(e, cc, proactive_low)) == C_CONTINUE) {
        if (max_batches && batches++ >= max_batches) break;
        int64_t iteration_start = cc->migrate_pfn;
        /* compact_zone() (5.1+, 804d3121ba5f "avoid rescanning the same pageblock multiple times";
           cc->rescan, named finish_pageblock from 6.3): an iteration that starts in the pageblock of the
           last isolated batch (last_migrated_pfn, cleared by a drain) takes the rest of the block in one
           batch (the captures' migratepages events: 32, then the block's remaining 200-480, then 32 of
           the next block). last_migrated_pfn is the batch's iteration start up to 6.2 and the start of
           the pageblock the batch ended in from 6.3 (kernel/compaction.py FINISH_PAGEBLOCK_FORMS). */
        int finish_form = (int)e->p[P_FINISH_FORM];
        cc->finish_pageblock = finish_form != 0 && cc->last_migrated >= 0
                               && cc->last_migrated / PB_PAGES == iteration_start / PB_PAGES;
        if (!isolate_migratepages(e, cc)) { check_drain(e, cc); continue; }   /* reached the free scanner */
        cc->last_migrated = finish_form == 2 ? (cc->migrate_pfn - 1) / PB_PAGES * PB_PAGES : iteration_start;
        if (finish_form == 2 && cc->last_migrated < zone_start_pidx(cc->z)) cc->last_migrated = zone_start_pidx(cc->z);
        int64_t b = cc->mig_b;
        int failed = 0;
        int64_t touched[PB_PAGES]; int ntouched = 0;   /* target blocks, refreshed once a batch */
        for (int i = 0; i < cc->nr_migratepages; i++) {
            int toff;
            int64_t t = compaction_alloc(e, cc, stride_sampling, &toff);
            if (t < 0) { failed = cc->nr_migratepages - i; break; }
            move_page(e, b, cc->mig_off[i], t, toff);
            cc->migrated++;
            if (!ntouched || touched[ntouched - 1] != t) touched[ntouched++] = t;
        }
        for (int i = 0; i < ntouched; i++) {
            int seen = 0;
            for (int j = 0; j < i; j++) if (touched[j] == touched[i]) { seen = 1; break; }
            if (!seen) refresh(e, touched[i]);
        }
        refresh(e, b);
        cc->failed += failed;
        cc->nr_migratepages = 0;
        if (failed) {
            if (cc->free_pfn / PB_PAGES > cc->migrate_pfn / PB_PAGES) { ret = C_CONTENDED; break; }
            if (cc->direct && cc->async) {                      /* skip the rest of the order-aligned block */
                int64_t chunk = 1LL << (cc->order < PB_ORDER ? cc->order : PB_ORDER);
                cc->migrate_pfn = ((cc->migrate_pfn - 1) / chunk + 1) * chunk;
                cc->last_migrated = -1;   /* "draining pcplists is useless in this case" */
            }
        }
        check_drain(e, cc);
        /* compact_lock_irqsave(): async compaction's spin_trylock of the zone or LRU lock failed in
           this batch, at the capture's own rate (params.compact_contention) */
        if (cc->async && cc->direct && e->p[P_CONTENTION] > 0
            && (double)(rnd(e) >> 11) * (1.0 / 9007199254740992.0) < e->p[P_CONTENTION]) cc->contended = 1;
        /* page capture (5.1+) or the free list: a block of the order freed by this batch */
        if (captured && !cc->proactive && e->blocks[b].nfree == PB_PAGES) *captured = b;
    }
    /* vmstat: every compaction counts, direct or kcompactd */
    e->k[K_PGMIGRATE] += cc->migrated - m0; e->k[K_PGMIGRATE_FAIL] += cc->failed - f0;
    e->k[K_COMPACT_SCANNED] += cc->mscanned - ms0; e->k[K_COMPACT_FREE_SCANNED] += cc->fscanned - fs0;
    return ret;
}

/* compact_zone()'s end: release_freepages() (unused isolated pages were never taken in the model; the
   cached free position moves back up to the highest of them, only up) and the cached migrate position. */
static void cc_finish(Engine *e, CompactControl *cc, int ret) {
    Zone *z = cc->z;
    int64_t hi = -1;
    for (int i = 0; i < cc->nchunks; i++) if (cc->fb[i] > hi) hi = cc->fb[i];
    if (hi >= 0 && hi * PB_PAGES > z->cfree) z->cfree = hi * PB_PAGES;
    if (ret == C_SUCCESS || ret == C_CONTENDED) update_cached_migrate(cc, cc->migrate_pfn);
    cc->nchunks = 0; cc->nr_freepages = 0;
}

/* compact_zone() in one go (direct compaction, and tests). */
static int compact_zone(Engine *e, Zone *z, int order, int prio, int direct,
                        int64_t *migrated, int64_t *mscanned, int64_t *fscanned, int64_t *captured) {
    CompactControl cc;
    cc_init(e, &cc, z, order, prio, direct, 0);
    *captured = -1;
    int ret = cc_run(e, &cc, 0, 0, captured);
    cc_finish(e, &cc, ret);
    *migrated += cc.migrated; *mscanned += cc.mscanned; *fscanned += cc.fscanned;
    return ret;
}

/* try_to_compact_pages() over the attempt's zones; on success the block is allocated (captured, or
   the first free block of the order in the zone's lists). */
static int direct_compact(Engine *e, int pref, int only_node, int order, int prio, int64_t *migrated,
                          int64_t *scanned, int64_t *pfn_out) {
    int rc = C_SKIPPED;
    *pfn_out = -1;
    e->k[K_COMPACT_CALLS]++;
    for (int i = 0; i < e->zl_len[pref]; i++) {
        Zone *z = &e->zones[e->zonelist[pref][i]];
        if (only_node >= 0 && z->node != only_node) continue;
        if (prio > PRIO_SYNC_FULL && deferred(z, order)) {
            if (rc < C_DEFERRED) rc = C_DEFERRED;
            e->k[K_COMPACT_DEFERRED]++;
            continue;
        }
        int st = suitable(e, z, order);
        if (st == C_CONTINUE) {
            int64_t cap = -1, fs = 0;
            st = compact_zone(e, z, order, prio, 1, migrated, scanned, &fs, &cap);
            *scanned += fs;
            if (st == C_SUCCESS) {
                int64_t pfn = -1;
                if (cap >= 0) {
                    take(e, cap, 0, 1 << order, PK_PINNED, 0);
                    set_mt(e, cap, MT_MOVABLE);
                    pfn = pfn_of(e, cap, 0);
                } else {
                    pfn = rmqueue(e, z, order, MT_MOVABLE, PK_PINNED, 0);
                }
                defer_reset(z, order, 0);
                if (pfn >= 0) {
                    *pfn_out = pfn;
                    defer_reset(z, order, 1);
                    return C_SUCCESS;
                }
            }
        } else {
            e->k[K_COMPACT_SKIPPED]++;
        }
        if (st == C_NOT_SUITABLE) st = C_SKIPPED;   /* callers see NOT_SUITABLE_ZONE as SKIPPED */
        if (st > rc) rc = st;
        if (prio != PRIO_ASYNC && (st == C_COMPLETE || st == C_PARTIAL_SKIPPED)) defer(z, order);
    }
    return rc;
}

/* ---------- kcompactd (mm/compaction.c), in trace time ---------- */

/* kcompactd_node_suitable(): a zone where compaction is suitable and the order is not already there
   (compaction_suitable() with alloc_flags 0, i.e. the min watermark). */
static int kcompactd_node_suitable(Engine *e, int node, int order) {
    for (int i = 0; i < e->nzones; i++) {
        Zone *z = &e->zones[i];
        if (z->node == node && !wmark_ok(z, order, mark_of(z, 0)) && suitable(e, z, order) == C_CONTINUE) return 1;
    }
    return 0;
}

/* wakeup_kcompactd(): raise kcompactd_max_order; wake it if it sleeps and a zone is suitable. */
static void wakeup_kcompactd(Engine *e, int node, int order) {
    Daemon *d = &e->daemon[node];
    if (!e->p[P_KCOMPACTD]) return;
    if (d->kcd_order < order) d->kcd_order = order;
    if (d->kcd_active || !kcompactd_node_suitable(e, node, d->kcd_order)) return;
    d->kcd_active = 1; d->kcd_zone = 0; d->kcd_ns = (double)e->now;
    e->k[K_KCOMPACTD_WAKE]++;
}

/* kcompactd_do_work(), one migrate batch at a time at its pace (kcompactd_us_per_page), up to trace
   time ts: each zone of the node in turn, skipping deferred ones, those where compaction is not
   suitable and those that already have the order; sync-light compact_zone; success resets the
   deferral (compaction_defer_reset), COMPLETE or PARTIAL_SKIPPED defers the zone. */
static void kcompactd_work(Engine *e, int64_t ts) {
    for (int n = 0; n < e->nnodes; n++) {
        Daemon *d = &e->daemon[n];
        while (d->kcd_active && d->kcd_ns <= (double)ts) {
            if (d->kcd_zone >= e->nzones) { d->kcd_active = 0; d->kcd_order = 0; break; }
            Zone *z = &e->zones[d->kcd_zone];
            int order = d->kcd_order;
            if (!d->kcd_started) {
                if (z->node != n || wmark_ok(z, order, mark_of(z, 0)) || deferred(z, order) || suitable(e, z, order) != C_CONTINUE) {
                    d->kcd_zone++; continue;
                }
                cc_init(e, &d->kcd_cc, z, order, PRIO_SYNC_LIGHT, 0, 0);
                d->kcd_started = 1;
            }
            int64_t m0 = d->kcd_cc.migrated, s0 = d->kcd_cc.mscanned + d->kcd_cc.fscanned;
            int st = cc_run(e, &d->kcd_cc, 0, 1, NULL);
            d->kcd_ns += 1000.0 * (d->kcd_cc.migrated - m0) * e->p[P_KCOMPACTD_US]
                         + (d->kcd_cc.mscanned + d->kcd_cc.fscanned - s0) * e->p[P_SCAN_NS] + 1000.0;
            if (st == C_CONTINUE) continue;
            cc_finish(e, &d->kcd_cc, st);
            /* kcompactd_do_work(): a run that fails drains the zone's per-cpu lists (8fff8b6f8d0e, 4.17)
               before deferring, so that stranded buddies can merge */
            if (st == C_COMPLETE || st == C_PARTIAL_SKIPPED) pcp_drain(e, z);
            if (st == C_SUCCESS) defer_reset(z, order, 0); else defer(z, order);
            d->kcd_started = 0; d->kcd_zone++;
        }
    }
}

/* ---------- proactive compaction (5.9+, vm.compaction_proactiveness) ---------- */

/* extfrag_for_order(): the share (percent) of a zone's free memory not in blocks of the order. */
static int64_t extfrag_score(const Zone *z, int order) {
    if (z->free_pages <= 0) return 0;
    int64_t suitable = 0;
    for (int j = order; j < NORD; j++) suitable += z->nr_free[j] << j;
    return (z->free_pages - suitable) * 100 / z->free_pages;
}

static int64_t node_score(Engine *e, int node) {   /* fragmentation_score_node(): present-weighted */
    int64_t present = 0, score = 0;
    for (int i = 0; i < e->nzones; i++) if (e->zones[i].node == node) present += (e->zones[i].b1 - e->zones[i].b0) * PB_PAGES;
    for (int i = 0; i < e->nzones; i++) {
        Zone *z = &e->zones[i];
        if (z->node == node) score += (z->b1 - z->b0) * PB_PAGES * extfrag_score(z, PB_ORDER) / (present + 1);
    }
    return score;
}

static void proactive_low_high(Engine *e, int64_t *low, int64_t *high) {   /* fragmentation_score_wmark() */
    *low = 100 - (int64_t)e->p[P_PROACTIVENESS];
    if (*low < 5) *low = 5;
    *high = *low + 10 > 100 ? 100 : *low + 10;
}

/* kcompactd's periodic check (every HPAGE_FRAG_CHECK_INTERVAL_MSEC = 500 ms of trace time): a node
   whose fragmentation score is above the high mark (100 - proactiveness + 10) starts a proactive
   compaction (should_proactive_compact_node). */
static void proactive(Engine *e, int64_t ts) {
    int64_t low, high;
    proactive_low_high(e, &low, &high);
    for (int n = 0; n < e->nnodes; n++) {
        Daemon *d = &e->daemon[n];
        /* should_proactive_compact_node(): not while kswapd runs; kcompactd busy with a wake-up's work
           does not look at its timer */
        if (d->pro_active || d->kcd_active || d->ksw_active || ts < e->proactive_defer_until[n]) continue;
        int64_t before = node_score(e, n);
        if (before <= high) continue;
        d->pro_active = 1; d->pro_before = before; d->pro_ns = (double)ts; d->pro_zone = 0; d->pro_started = 0;
    }
}

/* proactive_compact_node(), in slices of one migrate batch at kcompactd's pace up to trace time ts:
   every zone of the node once, sync-light, whole zone, skip bits ignored, until the zone's score is at
   the low mark (__compact_finished) or the scanners meet. A pass that did not lower the node's score
   defers the next check by 64 intervals (kcompactd: default_timeout << COMPACT_MAX_DEFER_SHIFT). */
static void proactive_work(Engine *e, int64_t ts) {
    int64_t low, high;
    proactive_low_high(e, &low, &high);
    for (int n = 0; n < e->nnodes; n++) {
        Daemon *d = &e->daemon[n];
        while (d->pro_active && d->pro_ns <= (double)ts) {
            if (d->pro_zone >= e->nzones) {
                d->pro_active = 0;
                if (node_score(e, n) >= d->pro_before) e->proactive_defer_until[n] = ts + 64 * 500000000LL;
                break;
            }
            Zone *z = &e->zones[d->pro_zone];
            if (!d->pro_started) {
                if (z->node != n || z->b1 <= z->b0) { d->pro_zone++; continue; }
                cc_init(e, &d->pro_cc, z, -1, PRIO_SYNC_LIGHT, 0, 1);
                d->pro_started = 1;
            }
            int64_t m0 = d->pro_cc.migrated, s0 = d->pro_cc.mscanned + d->pro_cc.fscanned;
            int st = cc_run(e, &d->pro_cc, low, 1, NULL);
            d->pro_ns += 1000.0 * (d->pro_cc.migrated - m0) * e->p[P_KCOMPACTD_US]
                         + (d->pro_cc.mscanned + d->pro_cc.fscanned - s0) * e->p[P_SCAN_NS] + 1000.0;
            if (st == C_CONTINUE) continue;
            cc_finish(e, &d->pro_cc, st);
            d->pro_started = 0; d->pro_zone++;
        }
    }
}
