/*
 * mm/page_alloc.c, in the replay core (included by _engine.c, one translation unit: see engine.h).
 * The buddy allocator on each pageblock's bitmap: __free_one_page merging and expand() splitting
 * (refresh, adjust, take, release), set_pageblock_migratetype with move_freepages_block (set_mt);
 * __zone_watermark_ok (wmark_ok), wmark_pages (mark_of); __rmqueue, __rmqueue_fallback and
 * steal_suitable_fallback over the fallbacks[] table (rmqueue; rmqueue_unhinted is the model's choice
 * of pages for its own placements); get_page_from_freelist (alloc_zonelist); wake_all_kswapds
 * (wake_kswapds); boost_watermark; __alloc_pages for a small allocation: the fast path, then
 * __alloc_pages_slowpath's kswapd wake, min-watermark retry and order-0 direct reclaim (alloc_small);
 * a fallback the trace shows, mm_page_alloc_extfrag (trace_steal). lru_add keeps the LRU counts that
 * lruvec_add_folio / lruvec_del_folio (include/linux/mm_inline.h) keep.
 */
#include "engine.h"

/* ---------- pageblock free structure ---------- */

/* Keep the even bits of x (bit 2i) packed into the low 32 bits (bit i). */
static inline uint64_t pack_even(uint64_t x) {
    x &= 0x5555555555555555ULL;
    x = (x | (x >> 1)) & 0x3333333333333333ULL;
    x = (x | (x >> 2)) & 0x0F0F0F0F0F0F0F0FULL;
    x = (x | (x >> 4)) & 0x00FF00FF00FF00FFULL;
    x = (x | (x >> 8)) & 0x0000FFFF0000FFFFULL;
    x = (x | (x >> 16)) & 0x00000000FFFFFFFFULL;
    return x;
}

static void levels_of(const uint64_t used[8], Levels *L) {
    for (int i = 0; i < 8; i++) L->w[0][i] = ~used[i];
    int words = 8;
    for (int j = 1; j < NORD; j++) {
        int nbits_prev = PB_PAGES >> (j - 1);
        if (nbits_prev >= 128) {            /* two words of level j-1 make one of level j */
            int nw = words / 2;
            for (int i = 0; i < nw; i++) {
                uint64_t a = L->w[j - 1][2 * i], b = L->w[j - 1][2 * i + 1];
                L->w[j][i] = pack_even(a & (a >> 1)) | (pack_even(b & (b >> 1)) << 32);
            }
            words = nw;
        } else {                            /* one word, nbits_prev bits -> nbits_prev/2 bits */
            uint64_t a = L->w[j - 1][0];
            L->w[j][0] = pack_even(a & (a >> 1)) & ((nbits_prev / 2 >= 64) ? ~0ULL : ((1ULL << (nbits_prev / 2)) - 1));
            words = 1;
        }
    }
}

static inline int level_words(int j) { int n = (PB_PAGES >> j) / 64; return n ? n : 1; }

static int popcount_level(const Levels *L, int j) {
    int c = 0;
    for (int i = 0; i < level_words(j); i++) c += __builtin_popcountll(L->w[j][i]);
    return c;
}

/* Offset (in pages) of the first maximal free block of exactly order j, or -1. */
static int find_maximal(const Levels *L, int j) {
    for (int i = 0; i < level_words(j); i++) {
        uint64_t w = L->w[j][i];
        while (w) {
            int bit = __builtin_ctzll(w);
            int idx = i * 64 + bit;
            if (j == NORD - 1 || !level_bit(L, j + 1, idx >> 1)) return idx << j;
            w &= w - 1;
        }
    }
    return -1;
}

static void list_del(Engine *e, int64_t b, int mt, int j) {
    Block *B = &e->blocks[b];
    Zone *z = &e->zones[B->zone];
    if (B->prev[j] >= 0) e->blocks[B->prev[j]].next[j] = B->next[j]; else z->head[mt][j] = B->next[j];
    if (B->next[j] >= 0) e->blocks[B->next[j]].prev[j] = B->prev[j]; else z->tail[mt][j] = B->prev[j];
    B->next[j] = B->prev[j] = -1;
}
static void list_add(Engine *e, int64_t b, int mt, int j) {
    Block *B = &e->blocks[b];
    Zone *z = &e->zones[B->zone];
    B->prev[j] = -1; B->next[j] = z->head[mt][j];
    if (z->head[mt][j] >= 0) e->blocks[z->head[mt][j]].prev[j] = (int32_t)b; else z->tail[mt][j] = (int32_t)b;
    z->head[mt][j] = (int32_t)b;
}

/* The free lists' order at the start of the trace is in no capture (pages join a list as they are
   freed, over the machine's whole uptime): each list starts in a seeded random order. */
static void shuffle_free_lists(Engine *e) {
    int32_t *ids = NULL; int64_t cap = 0;
    for (int zi = 0; zi < e->nzones; zi++) {
        Zone *z = &e->zones[zi];
        for (int mt = 0; mt < NMT; mt++) for (int j = 0; j < NORD; j++) {
            int64_t n = 0;
            for (int64_t b = z->head[mt][j]; b >= 0; b = e->blocks[b].next[j]) {
                if (n == cap) { cap = cap ? 2 * cap : 1024; ids = realloc(ids, cap * sizeof(int32_t)); }
                ids[n++] = (int32_t)b;
            }
            if (n < 2) continue;
            for (int64_t i = n - 1; i > 0; i--) {
                int64_t k = (int64_t)(rnd(e) % (uint64_t)(i + 1));
                int32_t t = ids[i]; ids[i] = ids[k]; ids[k] = t;
            }
            for (int64_t i = 0; i < n; i++) {
                Block *B = &e->blocks[ids[i]];
                B->prev[j] = i ? ids[i - 1] : -1;
                B->next[j] = i + 1 < n ? ids[i + 1] : -1;
            }
            z->head[mt][j] = ids[0]; z->tail[mt][j] = ids[n - 1];
        }
    }
    free(ids);
}

/* Recompute a block's free-block histogram after its used bitmap changed (what the buddy allocator's
   merging in __free_one_page and splitting in expand() maintain incrementally). */
static void refresh(Engine *e, int64_t b) {
    Block *B = &e->blocks[b];
    Zone *z = &e->zones[B->zone];
    Levels L;
    levels_of(B->used, &L);
    int pc[NORD];
    for (int j = 0; j < NORD; j++) pc[j] = popcount_level(&L, j);
    int nfree = pc[0];
    z->free_pages += nfree - B->nfree;
    B->nfree = (int16_t)nfree;
    for (int j = 0; j < NORD; j++) {
        int c = (j == NORD - 1) ? pc[j] : pc[j] - 2 * pc[j + 1];
        if (c == B->cnt[j]) continue;
        z->nr_free[j] += c - B->cnt[j];
        if (B->cnt[j] == 0) list_add(e, b, B->mt, j);
        else if (c == 0) list_del(e, b, B->mt, j);
        B->cnt[j] = (uint16_t)c;
    }
}

static void set_mt(Engine *e, int64_t b, int mt) {
    Block *B = &e->blocks[b];
    if (B->mt == mt) return;
    for (int j = 0; j < NORD; j++) if (B->cnt[j]) list_del(e, b, B->mt, j);
    B->mt = (int8_t)mt;
    for (int j = 0; j < NORD; j++) if (B->cnt[j]) list_add(e, b, B->mt, j);
    e->zones[B->zone].hfail[mt] = NORD;
}

static int range_free(const Block *B, int off, int n) {
    for (int i = off; i < off + n; i++) if (bit_get(B->used, i)) return 0;
    return 1;
}

static void lru_add(Engine *e, int64_t b, int kind, int delta) {
    Block *B = &e->blocks[b];
    int node = node_of_block(e, b);
    if (kind == PK_ANON) {
        if (B->nanon == 0 && delta > 0) set_add(&e->anonset[node], (int32_t)b, &B->apos);
        B->nanon += delta; e->node_anon[node] += delta;
        if (B->nanon == 0 && B->apos >= 0) {   /* swap-remove */
            IdxSet *s = &e->anonset[node];
            int32_t last = s->ids[--s->n];
            s->ids[B->apos] = last; e->blocks[last].apos = B->apos; B->apos = -1;
        }
    } else if (kind == PK_FILE) {
        if (B->nfile == 0 && delta > 0) set_add(&e->fileset[node], (int32_t)b, &B->fpos);
        B->nfile += delta; e->node_file[node] += delta;
        if (B->nfile == 0 && B->fpos >= 0) {
            IdxSet *s = &e->fileset[node];
            int32_t last = s->ids[--s->n];
            s->ids[B->fpos] = last; e->blocks[last].fpos = B->fpos; B->fpos = -1;
        }
    }
}

/* Mark [off, off+n) of block b used (caller checked it is free). */
/* Whether the aligned 2^j-page chunk at off is all free (all used). */
static inline int chunk_is(const uint64_t used[8], int off, int j, int want_used) {
    uint64_t full = want_used ? ~0ULL : 0;
    if (j >= 6) {
        for (int w = off >> 6; w < (off >> 6) + (1 << (j - 6)); w++) if (used[w] != full) return 0;
        return 1;
    }
    uint64_t mask = ((1ULL << (1 << j)) - 1) << (off & 63);
    return (used[off >> 6] & mask) == (full & mask);
}

/* cnt[j] += d for a block, with its zone's count and free-list membership. */
static void adjust(Engine *e, int64_t b, int j, int d) {
    Block *B = &e->blocks[b];
    int old = B->cnt[j];
    B->cnt[j] = (uint16_t)(old + d);
    e->zones[B->zone].nr_free[j] += d;
    if (old == 0 && B->cnt[j] > 0) list_add(e, b, B->mt, j);
    else if (old > 0 && B->cnt[j] == 0) list_del(e, b, B->mt, j);
}

/* Mark [off, off+n) of block b used (caller checked it is free). An aligned power-of-two run is
   accounted as the buddy allocator's expand() does: the free block of order m around it loses it and
   leaves one free buddy per order between; anything else is recounted from the bitmap. */
static void take(Engine *e, int64_t b, int off, int n, int kind, int traced) {
    Block *B = &e->blocks[b];
    int k = __builtin_ctz((unsigned)n), m = k;
    int fast = (n & (n - 1)) == 0 && !(off & (n - 1)) && chunk_is(B->used, off, k, 0);
    if (fast)
        while (m < NORD - 1 && chunk_is(B->used, off & ~((2 << m) - 1), m + 1, 0)) m++;
    for (int i = off; i < off + n; i++) {
        if (bit_get(B->used, i)) e->k[K_BUG_DOUBLE_ALLOC]++;   /* never: the tests watch this counter */
        bit_set(B->used, i);
        if (traced) bit_set(B->traced, i);
        if (kind == PK_ANON) bit_set(B->anon, i);
        else if (kind == PK_FILE) bit_set(B->file, i);
        else if (kind == PK_MLOCK) bit_set(B->mlock, i);
    }
    if (kind == PK_MLOCK) B->nmlock += n;
    else if (kind != PK_PINNED) lru_add(e, b, kind, n);
    if (!fast) { refresh(e, b); return; }
    adjust(e, b, m, -1);
    for (int j = k; j < m; j++) adjust(e, b, j, +1);
    B->nfree -= n;
    e->zones[B->zone].free_pages -= n;
}

static inline void unhinted_freed(Engine *e, int64_t b);

/* Free [off, off+n) of block b. An aligned power-of-two run that was all in use merges with its free
   buddies as __free_one_page() does; anything else is recounted from the bitmap. */
static void release(Engine *e, int64_t b, int off, int n) {
    Block *B = &e->blocks[b];
    int k = __builtin_ctz((unsigned)n);
    int fast = (n & (n - 1)) == 0 && !(off & (n - 1)) && chunk_is(B->used, off, k, 1);
    int na = 0, nf = 0;
    for (int i = off; i < off + n; i++) {
        if (!bit_get(B->used, i)) e->k[K_BUG_DOUBLE_FREE]++;   /* never: the tests watch this counter */
        if (bit_get(B->anon, i)) na++;
        if (bit_get(B->file, i)) nf++;
        if (bit_get(B->mlock, i)) B->nmlock--;
        bit_clr(B->used, i); bit_clr(B->anon, i); bit_clr(B->file, i); bit_clr(B->mlock, i); bit_clr(B->traced, i);
    }
    if (na) lru_add(e, b, PK_ANON, -na);
    if (nf) lru_add(e, b, PK_FILE, -nf);
    for (int i = off; i < off + n; i++) if (!bit_get(B->hint, i)) { unhinted_freed(e, b); break; }
    if (!fast) { refresh(e, b); return; }
    int m = k;
    while (m < NORD - 1) {
        int buddy = (off & ~((1 << m) - 1)) ^ (1 << m);
        if (!chunk_is(B->used, buddy, m, 0)) break;
        adjust(e, b, m, -1);
        m++;
    }
    adjust(e, b, m, +1);
    B->nfree += n;
    e->zones[B->zone].free_pages += n;
}

/* ---------- per-cpu lists (mm/page_alloc.c: free_unref_page, free_pcppages_bulk, drain_pages) ----------

   An order-0 page freed goes to the freeing CPU's pcp list, not to the buddy allocator: it does not merge
   with its buddies and is not in NR_FREE_PAGES until free_unref_page_commit() finds the list at its high
   mark and free_pcppages_bulk() returns the oldest pages (how many: thpreplay.kernel.page_alloc), or a
   drain returns them all. So a pageblock that compaction (or kcompactd) has just emptied is not yet a
   free order-9 page. The model keeps one list per zone for the CPUs of the zone's node, with their
   summed high mark and the start's count from /proc/zoneinfo; the pages on it at the start are held
   elsewhere by the model, and flushing them frees nothing. Simplified: one list per zone, not per CPU;
   only order-0 frees (5.13+ also keeps orders 1-3 and THPs on the lists); the model's own allocations
   never take from it (the trace's do, where they take such a page). */

static inline int pcp_on(Engine *e, const Block *B) {
    return e->p[P_PCP_FORM] > 0 && e->zones[B->zone].pcp_high > 0;
}

/* free_pcppages_bulk(): the n oldest pages go to the buddy allocator. */
static void pcp_flush(Engine *e, Zone *z, int64_t n) {
    int64_t k = n < z->pcp_phantom ? n : z->pcp_phantom;
    z->pcp_phantom -= k; z->pcp_count -= k; n -= k;
    while (n > 0 && z->pcp_head < z->pcp_tail) {
        int64_t pidx = z->pcpq[z->pcp_head++];
        int64_t b = pidx / PB_PAGES;
        int off = (int)(pidx % PB_PAGES);
        Block *B = &e->blocks[b];
        if (!bit_get(B->pcp, off)) continue;   /* an allocation took it since */
        bit_clr(B->pcp, off);
        z->pcp_count--; n--;
        release(e, b, off, 1);
    }
    if (z->pcp_head == z->pcp_tail) z->pcp_head = z->pcp_tail = 0;
}

/* drain_pages_zone() / drain_all_pages(zone) */
static void pcp_drain(Engine *e, Zone *z) {
    if (z->pcp_count > 0) pcp_flush(e, z, z->pcp_count);
}
static void pcp_drain_all(Engine *e) {
    for (int i = 0; i < e->nzones; i++) pcp_drain(e, &e->zones[i]);
}

/* nr_pcp_free(): how many pages an overflow returns, by the kernel's form (P_PCP_FORM). */
static int64_t pcp_nr_free(Engine *e, Zone *z) {
    int64_t batch = z->pcp_batch, lo = batch, hi = z->pcp_high - batch, n;
    int form = (int)e->p[P_PCP_FORM];
    if (z->pcp_high < batch) return 1;
    if (form == 1) return batch;
    if (form == 2) {   /* 5.14+ 3b12e7e97938: batch << free_factor, free_factor grows while below the max */
        n = batch << (z->pcp_factor < 30 ? z->pcp_factor : 30);
        if (n < hi) z->pcp_factor++;
    } else {           /* 6.7+: free_count, the pages freed since the last allocation */
        n = z->pcp_factor;
    }
    return n < lo ? lo : n > hi ? hi : n;
}

/* free_unref_page_commit() for a page already marked used and stripped of its kind: on the list. */
static void pcp_add(Engine *e, int64_t b, int off) {
    Block *B = &e->blocks[b];
    Zone *z = &e->zones[B->zone];
    if (z->pcp_tail == z->pcp_cap) {
        if (z->pcp_head > 0) {
            memmove(z->pcpq, z->pcpq + z->pcp_head, (z->pcp_tail - z->pcp_head) * sizeof(int64_t));
            z->pcp_tail -= z->pcp_head; z->pcp_head = 0;
        }
        if (z->pcp_tail == z->pcp_cap) {
            int64_t cap = z->pcp_cap ? z->pcp_cap * 2 : 4096;
            int64_t *q = realloc(z->pcpq, cap * sizeof(int64_t));
            if (!q) { release(e, b, off, 1); return; }   /* no memory for the list: straight to the buddy */
            z->pcpq = q; z->pcp_cap = cap;
        }
    }
    z->pcpq[z->pcp_tail++] = b * PB_PAGES + off;
    bit_set(B->pcp, off);
    z->pcp_count++;
    if ((int)e->p[P_PCP_FORM] == 3 && z->pcp_factor < (z->pcp_batch << 5)) z->pcp_factor++;  /* CONFIG_PCP_BATCH_SCALE_MAX 5 */
    if (z->pcp_count >= z->pcp_high) pcp_flush(e, z, pcp_nr_free(e, z));
}

/* free_unref_page() of one used page: off the LRU, onto the list (the buddy when there is none). */
static void pcp_free(Engine *e, int64_t b, int off) {
    Block *B = &e->blocks[b];
    if (!pcp_on(e, B)) { release(e, b, off, 1); return; }
    if (!bit_get(B->used, off)) { e->k[K_BUG_DOUBLE_FREE]++; return; }
    if (bit_get(B->anon, off)) lru_add(e, b, PK_ANON, -1);
    if (bit_get(B->file, off)) lru_add(e, b, PK_FILE, -1);
    if (bit_get(B->mlock, off)) B->nmlock--;
    bit_clr(B->anon, off); bit_clr(B->file, off); bit_clr(B->mlock, off); bit_clr(B->traced, off);
    pcp_add(e, b, off);
}

/* rmqueue_pcplist() handing out a page of the list (the trace allocates it): free for the caller to
   take (the allocation's halving of free_factor / free_count is the caller's, once per allocation). */
static void pcp_take(Engine *e, int64_t b, int off) {
    Block *B = &e->blocks[b];
    Zone *z = &e->zones[B->zone];
    bit_clr(B->pcp, off);
    z->pcp_count--;
    release(e, b, off, 1);
}

/* ---------- the allocator ---------- */

/* __zone_watermark_ok(): free pages above mark + lowmem reserve after the request, and a free block of
   at least the order (highatomic and CMA reserves not modelled). */
static int wmark_ok(const Zone *z, int order, int64_t mark) {
    int64_t free = z->free_pages - ((1LL << order) - 1);
    if (free <= mark + z->reserve) return 0;
    if (order == 0) return 1;
    for (int j = order; j < NORD; j++) if (z->nr_free[j] > 0) return 1;
    return 0;
}

static void boost_watermark(Engine *e, Zone *z);

/* fallbacks[] of mm/page_alloc.c */
static const int FALLBACK[NMT][2] = {{MT_RECLAIMABLE, MT_MOVABLE}, {MT_RECLAIMABLE, MT_UNMOVABLE},
                                     {MT_UNMOVABLE, MT_MOVABLE}};

/* __rmqueue(): the smallest free block of the migratetype, else steal the largest of a fallback type
   (__rmqueue_fallback; the whole pageblock changes type when the block is at least half free or the
   order is >= pageblock_order/2, as steal_suitable_fallback()). Returns a pfn or -1. */
static int64_t rmqueue(Engine *e, Zone *z, int order, int mt, int kind, int traced) {
    for (int j = order; j < NORD; j++) {
        int64_t b = z->head[mt][j];
        if (b < 0) continue;
        Levels L; levels_of(e->blocks[b].used, &L);
        int off = find_maximal(&L, j);
        take(e, b, off, 1 << order, kind, traced);
        return pfn_of(e, b, off);
    }
    for (int j = NORD - 1; j >= order; j--) {
        for (int f = 0; f < 2; f++) {
            int fmt = FALLBACK[mt][f];
            int64_t b = z->head[fmt][j];
            if (b < 0) continue;
            Block *B = &e->blocks[b];
            if (j >= PB_ORDER / 2 || mt != MT_MOVABLE || B->nfree >= PB_PAGES / 2) {
                set_mt(e, b, mt);
                e->k[K_STEALS]++;
            }
            /* steal_suitable_fallback(): a fallback that can steal boosts the watermarks */
            if (j < PB_ORDER && (j >= PB_ORDER / 2 || mt != MT_MOVABLE)) boost_watermark(e, z);
            Levels L; levels_of(B->used, &L);
            int off = find_maximal(&L, j);
            take(e, b, off, 1 << order, kind, traced);
            return pfn_of(e, b, off);
        }
    }
    return -1;
}

/* First aligned free run of the order that avoids the trace's pages, or -1. Bit tricks per word: after
   x &= x >> 2^s for s < k, bit i is set when pages i .. i+2^k-1 are all free. */
static const uint64_t ALIGNED[6] = {~0ULL, 0x5555555555555555ULL, 0x1111111111111111ULL,
                                    0x0101010101010101ULL, 0x0001000100010001ULL, 0x0000000100000001ULL};
static int find_unhinted(const Block *B, int order) {
    if (order < 6) {
        for (int w = 0; w < 8; w++) {
            uint64_t x = ~(B->used[w] | B->hint[w]);
            for (int sh = 0; sh < order && x; sh++) x &= x >> (1 << sh);
            x &= ALIGNED[order];
            if (x) return w * 64 + __builtin_ctzll(x);
        }
        return -1;
    }
    int words = 1 << (order - 6);
    for (int w = 0; w < 8; w += words) {
        int ok = 1;
        for (int i = w; i < w + words; i++) if (B->used[i] | B->hint[i]) { ok = 0; break; }
        if (ok) return w * 64;
    }
    return -1;
}

/* Where the model places a page itself (a relocated or synthesized page, a huge page), it prefers free
   pages the trace never allocates: otherwise each such placement would take a page the trace uses
   later and push that allocation elsewhere too, a cascade that is an artefact of replay. The search
   walks the zone's blocks of the migratetype from where it last succeeded; a sweep that finds nothing
   is remembered (per order) until a page the trace never uses is freed. Else __rmqueue as usual. */
static int64_t rmqueue_unhinted(Engine *e, Zone *z, int order, int mt, int kind, int traced) {
    if (order < z->hfail[mt]) {
        for (int64_t step = 0, n = z->b1 - z->b0; step < n; step++) {
            Block *B = &e->blocks[z->hcur[mt]];
            if (B->zone >= 0 && &e->zones[B->zone] == z && B->mt == mt && B->nfree >= (1 << order)) {
                int off = find_unhinted(B, order);
                if (off >= 0) {
                    take(e, z->hcur[mt], off, 1 << order, kind, traced);
                    return pfn_of(e, z->hcur[mt], off);
                }
            }
            if (++z->hcur[mt] >= z->b1) z->hcur[mt] = z->b0;
        }
        z->hfail[mt] = order;
    }
    return rmqueue(e, z, order, mt, kind, traced);
}

/* A page the trace never uses became free (or a block changed type): the search may succeed again. */
static inline void unhinted_freed(Engine *e, int64_t b) {
    Zone *z = &e->zones[e->blocks[b].zone];
    z->hfail[e->blocks[b].mt] = NORD;
}

/* wmark_pages(): the zone's watermark plus its boost (5.0+, boost_watermark) */
static int64_t mark_of(const Zone *z, int which) { return (which == 0 ? z->wmin : which == 1 ? z->wlow : z->whigh) + z->boost; }

/* get_page_from_freelist() over a zonelist (node scope: -1 all nodes, else that node only). */
static int64_t alloc_zonelist(Engine *e, int pref, int only_node, int order, int mt, int kind, int traced, int which) {
    for (int i = 0; i < e->zl_len[pref]; i++) {
        Zone *z = &e->zones[e->zonelist[pref][i]];
        if (only_node >= 0 && z->node != only_node) continue;
        if (!wmark_ok(z, order, mark_of(z, which))) continue;
        int64_t pfn = rmqueue_unhinted(e, z, order, mt, kind, traced);
        if (pfn >= 0) return pfn;
    }
    return -1;
}

/* ---------- waking kswapd, the watermark boost, small allocations ---------- */

/* wake_all_kswapds(): every node of the attempt's zonelist. */
static void wake_kswapds(Engine *e, int pref, int only_node, int order, int direct) {
    int seen[MAXNODES] = {0};
    for (int i = 0; i < e->zl_len[pref]; i++) {
        Zone *z = &e->zones[e->zonelist[pref][i]];
        if (only_node >= 0 && z->node != only_node) continue;
        if (seen[z->node]) continue;
        seen[z->node] = 1;
        wakeup_kswapd(e, z->node, order, direct);
    }
}

/* boost_watermark() (5.0+, watermark_boost_factor): a fallback steal of a pageblock raises the zone's
   watermarks by a pageblock, up to factor/10000 of the high watermark, and wakes kswapd (rmqueue(),
   ZONE_BOOSTED_WATERMARK; the allocation is taken to have ALLOC_KSWAPD, as user and GFP_KERNEL ones do). */
static void boost_watermark(Engine *e, Zone *z) {
    double factor = e->p[P_BOOST_FACTOR];
    if (factor <= 0) return;
    int64_t max_boost = (int64_t)(z->whigh * factor / 10000.0);
    if (max_boost < PB_PAGES) max_boost = PB_PAGES;
    z->boost = z->boost + PB_PAGES < max_boost ? z->boost + PB_PAGES : max_boost;
    e->k[K_BOOSTS]++;
    wakeup_kswapd(e, z->node, 0, 1);
}


/* A small allocation, as __alloc_pages() does it. The fast path takes the first zone of the zonelist
   above its low watermark (get_page_from_freelist with ALLOC_WMARK_LOW), so a full local node spills to
   the next node and nobody is woken. Only when every zone is below low does the slowpath wake kswapd on
   the zonelist's nodes (wake_all_kswapds) and retry down to the min watermark. When that fails too, it
   enters direct reclaim: SWAP_CLUSTER_MAX (32) pages per pass from the zonelist's nodes in order, up to
   MAX_RECLAIM_RETRIES (16) passes, retrying the free lists after each (should_reclaim_retry simplified). */
static int64_t alloc_small(Engine *e, int pref, int order, int mt, int kind, int traced) {
    int64_t p = alloc_zonelist(e, pref, -1, order, mt, kind, traced, 1);
    if (p >= 0) return p;
    wake_kswapds(e, pref, -1, order, 1);
    p = alloc_zonelist(e, pref, -1, order, mt, kind, traced, 0);
    if (p >= 0) return p;
    e->k[K_ALLOCSTALL]++;
    for (int pass = 0; pass < 16 && p < 0; pass++) {
        int64_t got = 0;
        for (int i = 0; i < e->zl_len[pref] && got < 32; i++) {
            int node = e->zones[e->zonelist[pref][i]].node;
            while (got < 32) {
                int r = reclaim_one(e, node);
                if (!r) break;
                got += reclaimed_pages(r);
                e->k[K_PSWPOUT] += swapped_pages(r);
            }
        }
        e->k[K_PGSTEAL_DIRECT] += got;
        if (!got) break;
        p = alloc_zonelist(e, pref, -1, order, mt, kind, traced, 0);
    }
    return p;
}

/* A fallback of the trace's own small allocation (mm_page_alloc_extfrag, emitted by __rmqueue_fallback):
   the kernel took a free block of order `order` from another migratetype's list for an allocation of
   type mt. steal_suitable_fallback() boosts the watermarks when the fallback could steal
   (can_steal_fallback: order >= pageblock_order / 2, or an unmovable or reclaimable allocation) and the
   block is smaller than a pageblock; change_ownership says the pageblock became mt's. */
static void trace_steal(Engine *e, int64_t pfn, int order, int mt, int change_ownership) {
    int64_t b = block_of(e, pfn);
    if (b < 0 || mt < 0 || mt >= NMT) return;
    if (change_ownership && e->blocks[b].mt != mt) set_mt(e, b, mt);
    e->k[K_STEALS]++;
    if (order < PB_ORDER && (order >= PB_ORDER / 2 || mt != MT_MOVABLE)) boost_watermark(e, &e->zones[e->blocks[b].zone]);
}
