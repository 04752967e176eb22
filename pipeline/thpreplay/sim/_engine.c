/*
 * thpreplay.sim._engine: the replay core. A model of the Linux buddy allocator (zones, pageblocks with
 * migratetypes, free blocks per order), direct compaction with deferral, direct reclaim and kswapd,
 * driven by a demand (small allocations and frees, THP faults, region releases) and a policy plan
 * (the THP attempts of one fault, decided in Python by thpreplay.policy). The Python side
 * (thpreplay.sim.engine) documents the model; comments here cite the kernel function each step mirrors.
 *
 * State is proportional to memory in pageblocks (struct block, ~400 bytes per 2 MiB) plus the trace's
 * live pages that are not where the trace put them (hash maps), never to trace length.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define PB_ORDER 9
#define PB_PAGES 512
#define NORD 10            /* orders 0..9 inside a pageblock; order 10 (two blocks) is not modelled */
#define NMT 3              /* MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE */
#define MT_UNMOVABLE 0
#define MT_MOVABLE 1
#define MT_RECLAIMABLE 2
#define MAXNODES 64
#define MAXATT 8

/* page kinds of a used page */
#define PK_PINNED 0   /* unmovable, slab, pinned, a simulated huge page: never migrated or reclaimed */
#define PK_ANON 1     /* LRU anon: migratable, reclaimable by swap-out */
#define PK_FILE 2     /* LRU page cache: migratable, reclaimable by dropping */
#define PK_MLOCK 3    /* mlocked (unevictable LRU): migratable, not reclaimable */

/* compaction results, in the kernel's order (include/linux/compaction.h); max() is taken over zones */
enum { C_NOT_SUITABLE = 0, C_SKIPPED, C_DEFERRED, C_NO_SUITABLE_PAGE, C_CONTINUE, C_COMPLETE,
       C_PARTIAL_SKIPPED, C_CONTENDED, C_SUCCESS };
enum { PRIO_SYNC_FULL = 0, PRIO_SYNC_LIGHT = 1, PRIO_ASYNC = 2 };

/* demand op kinds (thpreplay.sim.demand) */
enum { OP_ALLOC = 0, OP_FREE = 1, OP_THP = 2, OP_RELEASE = 3, OP_MIGRATE = 4, OP_STEAL = 5 };
/* fault results (schemas/outcomes) */
enum { R_HUGE_LOCAL = 0, R_HUGE_REMOTE, R_BASE_LOCAL, R_BASE_REMOTE, R_FAILED };

/* counters, in the order of thpreplay.sim.engine.COUNTERS */
enum { K_THP_FAULT_ALLOC, K_THP_FAULT_FALLBACK, K_COMPACT_STALL, K_COMPACT_SUCCESS, K_COMPACT_FAIL,
       K_COMPACT_CALLS, K_COMPACT_DEFERRED, K_COMPACT_SKIPPED, K_PGMIGRATE, K_COMPACT_SCANNED,
       K_ALLOCSTALL, K_PGSTEAL_DIRECT, K_PGSTEAL_KSWAPD, K_PSWPOUT, K_KSWAPD_WAKE, K_KCOMPACTD_WAKE,
       K_NUMA_MISS, K_FOLLOWED, K_RELOCATED, K_SMALL_FAILED, K_DROPPED, K_SYNTHESIZED,
       K_FREE_UNKNOWN, K_FREE_GONE, K_STEALS, K_ALLOCS, K_FREES, K_THP_FAULTS,
       K_BUG_DOUBLE_ALLOC, K_BUG_DOUBLE_FREE, K_RELOC_BY_HUGE, K_RELOC_BY_TRACED, K_RELOC_BY_OTHER,
       K_RELOC_OUTSIDE, K_MIGRATED_OUT, K_FREE_OF_MIGRATED, K_THP_SWPOUT, K_COMPACT_FREE_SCANNED, K_PGMIGRATE_FAIL, K_BOOSTS, K_NCOUNTERS };

/* params, in the order of thpreplay.sim.engine.PARAMS */
enum { P_THP_ZERO_US, P_BASE_FAULT_US, P_COMPACT_CALL_US, P_SCAN_NS, P_MIGRATE_US, P_SYNC_FACTOR,
       P_RECLAIM_US, P_SWAP_OUT_US, P_M_LOCAL_HUGE, P_M_LOCAL_BASE, P_M_HOP1_HUGE, P_M_HOP1_BASE,
       P_M_HOP2_HUGE, P_M_HOP2_BASE, P_EXTFRAG_THRESHOLD, P_SWAP_PAGES, P_SAMPLE_NS, P_KSWAPD,
       P_KCOMPACTD, P_STALL_EVERY_CALL, P_SEED, P_PROACTIVENESS, P_FREE_STRIDE, P_KSWAPD_US, P_KCOMPACTD_US,
       P_PROACTIVE_PHASE, P_FAST_ISOLATE, P_BOOST_FACTOR, P_NPARAMS };

typedef struct {
    uint64_t used[8], anon[8], file[8], mlock[8], traced[8];
    uint64_t hint[8];     /* pages the trace allocates at some time: the model's own placements avoid them */
    uint64_t kmig[8];     /* pages the kernel migrated away (the trace freed them inside compaction) */
    int32_t next[NORD], prev[NORD];
    uint16_t cnt[NORD];
    int16_t nfree, nanon, nfile, nmlock;
    int16_t zone;
    int8_t mt;
    int8_t huge;          /* holds a huge page the model allocated */
    int8_t skip;          /* PB_migrate_skip: compaction's scanners pass the block by until a reset */
    int32_t fpos, apos;   /* positions in the node's file / anon block sets, -1 when absent */
    int64_t huge_region;  /* the region whose huge page it holds */
} Block;

typedef struct {
    int node, type;
    int64_t b0, b1;               /* block index range [b0, b1) */
    int64_t wmin, wlow, whigh, reserve;
    int64_t free_pages;
    int64_t nr_free[NORD];        /* maximal free blocks per order, all migratetypes */
    int32_t head[NMT][NORD];
    int defer_shift, considered, order_failed;
    int64_t cmig[2], cfree;       /* compact_cached_migrate_pfn[async, sync], compact_cached_free_pfn (page index) */
    int blockskip_flush;          /* compact_blockskip_flush: kswapd clears the skip bits when it sleeps */
    int64_t init_migrate;         /* compact_init_migrate_pfn: set by a skip-bit reset, -1 before any */
    int64_t boost;                /* watermark_boost (5.0+), added to every watermark */
    int64_t hcur[NMT];            /* where the search for free pages the trace never uses resumes */
    int hfail[NMT];               /* smallest order a whole sweep found none of (NORD: none failed) */
} Zone;

typedef struct { int32_t *ids; int64_t n, cap; } IdxSet;

typedef struct { int64_t *keys; int64_t *vals; int64_t cap, n, used; } Map;   /* open addressing */
#define MAP_EMPTY INT64_MIN
#define MAP_TOMB (INT64_MIN + 1)
#define LOC_DROPPED (-1)          /* the model never allocated it (dropped or failed) */
#define LOC_GONE (-2)             /* reclaimed by the model */

typedef struct {
    int8_t observed_huge;         /* the capture backed the region with a huge page (demand, not a decision) */
    int8_t state;                 /* 0 untouched, 1 huge in the model, 2 base in the model, 3 released,
                                     4 its huge page swapped out by the model's reclaim */
    int64_t pfn;                  /* model pfn of the huge page */
} Region;

#define COMPACT_CLUSTER_MAX 32
#define CC_FREE_MAX 64

typedef struct {
    Zone *z;
    int order, async, direct, whole_zone, ignore_skip, ignore_block_suitable, proactive;
    int skip_on_failure;        /* async direct compaction: abandon an order-aligned block at the first failure */
    int64_t migrate_pfn;        /* page index the migrate scanner continues from */
    int64_t free_pfn;           /* page index the free scanner continues from (scans down) */
    /* isolated free pages: chunks (block, offset, pages) taken off the free lists by the free scanner */
    int64_t fb[CC_FREE_MAX]; int16_t foff[CC_FREE_MAX], fn[CC_FREE_MAX]; int nchunks, nr_freepages;
    int64_t mig_b; int16_t mig_off[COMPACT_CLUSTER_MAX]; int nr_migratepages;
    int64_t migrated, failed, mscanned, fscanned;
} CompactControl;

/* A node's kswapd and kcompactd: each works on its own CPU, in trace time (kswapd_work, kcompactd_work). */
typedef struct {
    int ksw_active, ksw_order, ksw_failures, ksw_boosted; int64_t ksw_reclaimed, ksw_boost_left; double ksw_ns;
    int kcd_active, kcd_order, kcd_zone, kcd_started; double kcd_ns;
    CompactControl kcd_cc;        /* kcompactd's compaction in progress, kept between slices */
    /* proactive compaction (5.9+): one pass over the node's zones, its score when it began */
    int pro_active, pro_zone, pro_started; int64_t pro_before; double pro_ns;
    CompactControl pro_cc;
} Daemon;

typedef struct {
    int nnodes, nzones;
    Zone *zones;
    int32_t zonelist[MAXNODES][64];
    int zl_len[MAXNODES];
    int32_t dist[MAXNODES][MAXNODES];
    int64_t base_pfn, nblocks;
    Block *blocks;
    IdxSet fileset[MAXNODES], anonset[MAXNODES];
    int64_t node_anon[MAXNODES], node_file[MAXNODES];
    Map fwd, rev;
    Region *regions;
    int64_t nregions;
    double p[P_NPARAMS];
    int64_t k[K_NCOUNTERS];
    int32_t plan[2][MAXATT][5];   /* [madvised][attempt] = order, scope_local, direct, kswapd, noretry */
    int nplan[2];
    int sp_second_sync, sp_bail_deferred_noretry, sp_bail_skip_mode, sp_bail_thisnode, sp_thisnode_nowait,
        sp_min_retry;
    uint64_t rng;
    int64_t next_sample;
    int64_t next_proactive, proactive_defer_until[MAXNODES];
    int64_t swap_left;
    /* time series: ts, node, free pages, free huge blocks */
    int64_t *series; int64_t nseries, capseries;
    /* pages the kernel migrated during the trace (keys), oldest first; a free of a page the model does
       not hold is taken as the free of one of them, at its unknown new place */
    int64_t *migrated; int64_t mig_head, mig_tail, mig_cap;
    int64_t next_key;             /* synthetic keys for migrated pages, below the regions' */
    Daemon daemon[MAXNODES];
    int64_t now;                  /* trace time of the op being replayed */
} Engine;

/* ---------- small helpers ---------- */

static inline uint64_t rnd(Engine *e) {   /* xorshift64*: deterministic for a seed */
    e->rng ^= e->rng >> 12; e->rng ^= e->rng << 25; e->rng ^= e->rng >> 27;
    return e->rng * 2685821657736338717ULL;
}

static uint64_t mhash(int64_t k) { uint64_t x = (uint64_t)k * 0x9E3779B97F4A7C15ULL; return x ^ (x >> 29); }

static int map_init(Map *m, int64_t cap) {
    m->cap = cap; m->n = m->used = 0;
    m->keys = malloc(cap * sizeof(int64_t)); m->vals = malloc(cap * sizeof(int64_t));
    if (!m->keys || !m->vals) return -1;
    for (int64_t i = 0; i < cap; i++) m->keys[i] = MAP_EMPTY;
    return 0;
}
static void map_free(Map *m) { free(m->keys); free(m->vals); }
static int64_t *map_find(Map *m, int64_t key) {
    uint64_t i = mhash(key) & (m->cap - 1);
    while (m->keys[i] != MAP_EMPTY) {
        if (m->keys[i] == key) return &m->vals[i];
        i = (i + 1) & (m->cap - 1);
    }
    return NULL;
}
static int map_put(Map *m, int64_t key, int64_t val);
/* Rehash: double when more than a quarter is live, else the same size (clears tombstones). */
static int map_grow(Map *m) {
    Map n;
    if (map_init(&n, m->n * 4 > m->cap ? m->cap * 2 : m->cap)) return -1;
    for (int64_t i = 0; i < m->cap; i++)
        if (m->keys[i] != MAP_EMPTY && m->keys[i] != MAP_TOMB) map_put(&n, m->keys[i], m->vals[i]);
    map_free(m); *m = n; return 0;
}
static int map_put(Map *m, int64_t key, int64_t val) {
    if ((m->used + 1) * 10 >= m->cap * 7 && map_grow(m)) return -1;
    uint64_t i = mhash(key) & (m->cap - 1);
    int64_t tomb = -1;
    while (m->keys[i] != MAP_EMPTY) {
        if (m->keys[i] == key) { m->vals[i] = val; return 0; }
        if (m->keys[i] == MAP_TOMB && tomb < 0) tomb = (int64_t)i;
        i = (i + 1) & (m->cap - 1);
    }
    if (tomb >= 0) i = (uint64_t)tomb; else m->used++;
    m->keys[i] = key; m->vals[i] = val; m->n++;
    return 0;
}
static void map_del(Map *m, int64_t key) {
    uint64_t i = mhash(key) & (m->cap - 1);
    while (m->keys[i] != MAP_EMPTY) {
        if (m->keys[i] == key) { m->keys[i] = MAP_TOMB; m->n--; return; }
        i = (i + 1) & (m->cap - 1);
    }
}

static int set_add(IdxSet *s, int32_t id, int32_t *pos) {
    if (s->n == s->cap) {
        int64_t cap = s->cap ? s->cap * 2 : 64;
        int32_t *ids = realloc(s->ids, cap * sizeof(int32_t));
        if (!ids) return -1;
        s->ids = ids; s->cap = cap;
    }
    *pos = (int32_t)s->n; s->ids[s->n++] = id; return 0;
}

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

/* L[j] holds one bit per aligned 2^j-page chunk of the block: set when the chunk is all free.
   Level j has 512>>j bits, stored in (512>>j)/64 words (at least one). */
typedef struct { uint64_t w[10][8]; } Levels;

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

static inline int level_bit(const Levels *L, int j, int idx) { return (L->w[j][idx >> 6] >> (idx & 63)) & 1; }

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
    if (B->next[j] >= 0) e->blocks[B->next[j]].prev[j] = B->prev[j];
    B->next[j] = B->prev[j] = -1;
}
static void list_add(Engine *e, int64_t b, int mt, int j) {
    Block *B = &e->blocks[b];
    Zone *z = &e->zones[B->zone];
    B->prev[j] = -1; B->next[j] = z->head[mt][j];
    if (z->head[mt][j] >= 0) e->blocks[z->head[mt][j]].prev[j] = (int32_t)b;
    z->head[mt][j] = (int32_t)b;
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

static inline int bit_get(const uint64_t *m, int off) { return (m[off >> 6] >> (off & 63)) & 1; }
static inline void bit_set(uint64_t *m, int off) { m[off >> 6] |= 1ULL << (off & 63); }
static inline void bit_clr(uint64_t *m, int off) { m[off >> 6] &= ~(1ULL << (off & 63)); }

static int range_free(const Block *B, int off, int n) {
    for (int i = off; i < off + n; i++) if (bit_get(B->used, i)) return 0;
    return 1;
}

static inline int node_of_block(Engine *e, int64_t b) { return e->zones[e->blocks[b].zone].node; }

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

static inline int64_t block_of(Engine *e, int64_t pfn) {
    if (pfn < e->base_pfn) return -1;
    int64_t b = (pfn - e->base_pfn) >> PB_ORDER;
    return (b < e->nblocks && e->blocks[b].zone >= 0) ? b : -1;
}
static inline int64_t pfn_of(Engine *e, int64_t b, int off) { return e->base_pfn + (b << PB_ORDER) + off; }

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
    int64_t fi = frag_index(z, order);
    if (fi >= 0 && fi <= (int64_t)e->p[P_EXTFRAG_THRESHOLD]) return C_NOT_SUITABLE;
    return C_CONTINUE;
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
    bit_clr(B->used, off); bit_clr(B->anon, off); bit_clr(B->file, off); bit_clr(B->mlock, off); bit_clr(B->traced, off);
    if (kind == PK_MLOCK) { T->nmlock++; B->nmlock--; }
    else { lru_add(e, t, kind, 1); lru_add(e, b, kind, -1); }
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

/* __reset_isolation_suitable(): clear the zone's skip bits (the kernel also moves the cached positions
   to the first/last block that looks suitable; the model restarts at the zone's ends). */
static void reset_isolation_suitable(Engine *e, Zone *z) {
    for (int64_t b = z->b0; b < z->b1 && b < e->nblocks; b++) e->blocks[b].skip = 0;
    z->blockskip_flush = 0;
    reset_cached_positions(z);
    z->init_migrate = zone_start_pidx(z);
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
   can; mlocked ones only with vm.compact_unevictable_allowed (state.py makes them pinned otherwise);
   kernel memory, slab, page tables and huge pages cannot. */
static inline int isolatable(const Block *B, int off) {
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
        cc->fb[cc->nchunks] = b; cc->foff[cc->nchunks] = (int16_t)off; cc->fn[cc->nchunks] = (int16_t)n; cc->nchunks++;
        cc->nr_freepages += n; isolated += n;
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
        stride = got ? 1 : (stride * 2 > COMPACT_CLUSTER_MAX ? COMPACT_CLUSTER_MAX : stride * 2);
        if (!(cc->async && stride_sampling)) stride = 1;
    }
    cc->free_pfn = next;
}

/* fast_isolate_freepages() (5.1+, with the sampling): before the linear scan, look on the free lists
   for a free page below the free scanner in the top quarter of the range left between the scanners
   (else the top half), and isolate around it: its block's free pages, stride 1 (fast_isolate_around);
   a block that does not give enough gets its skip bit. The kernel looks at a bounded number of list
   entries, in the lists' order, which no capture shows: the model takes the highest such block, as if
   the entries it looked at included it. */
static void fast_isolate_freepages(Engine *e, CompactControl *cc) {
    if (cc->order <= 0 || cc->order >= NORD) return;
    Zone *z = cc->z;
    int64_t distance = cc->free_pfn - cc->migrate_pfn;
    int64_t low_b = (cc->free_pfn - distance / 4) / PB_PAGES, min_b = (cc->free_pfn - distance / 2) / PB_PAGES;
    int64_t mig_b = cc->migrate_pfn / PB_PAGES;
    if (min_b <= mig_b) min_b = mig_b + 1;
    for (int64_t b = cc->free_pfn / PB_PAGES; b >= min_b; b--) {
        if (!in_zone(e, z, b)) continue;
        Block *B = &e->blocks[b];
        if (B->mt != MT_MOVABLE || B->skip || B->nfree == 0 || B->nfree == PB_PAGES) continue;
        int small = 0;
        for (int j = 0; j < cc->order; j++) if (B->cnt[j]) { small = 1; break; }
        if (!small) continue;
        int pos = 0;
        isolate_freepages_block(e, cc, b, &pos, 1);
        if (cc->nr_freepages < cc->nr_migratepages) B->skip = 1;
        (void)low_b;
        return;
    }
}

/* compaction_alloc(): one isolated free page, isolating more when none is left. -1 when the free
   scanner has met the migrate scanner (migrate_pages then fails with -ENOMEM). */
static int64_t compaction_alloc(Engine *e, CompactControl *cc, int stride_sampling, int *toff) {
    if (cc->nchunks == 0) {
        if (cc->free_pfn / PB_PAGES > cc->migrate_pfn / PB_PAGES) {
            if (stride_sampling && e->p[P_FAST_ISOLATE] != 0) fast_isolate_freepages(e, cc);
            if (cc->nchunks == 0) isolate_freepages(e, cc, stride_sampling);
        }
        if (cc->nchunks == 0) return -1;
    }
    while (cc->nchunks > 0) {
        int i = cc->nchunks - 1;
        int64_t t = cc->fb[i];
        int off = cc->foff[i];
        cc->foff[i]++; cc->fn[i]--; cc->nr_freepages--;
        if (cc->fn[i] == 0) cc->nchunks--;
        /* isolated pages are not taken in the model: one a trace allocation used since is passed */
        if (bit_get(e->blocks[t].used, off)) continue;
        *toff = off;
        return t;
    }
    return compaction_alloc(e, cc, stride_sampling, toff);
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
        if (isolatable(B, off)) {
            cc->mig_off[cc->nr_migratepages++] = (int16_t)off;
            off++;
            if (cc->nr_migratepages == COMPACT_CLUSTER_MAX) break;
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
    }
}

/* isolate_migratepages(): the next block with pages to migrate, from migrate_pfn up to the free
   scanner. Blocks with the skip bit, and (async direct compaction) blocks that are not MOVABLE
   (suitable_migration_source), are passed by. fast_find_migrateblock (5.1+) is not modelled. */
static int isolate_migratepages(Engine *e, CompactControl *cc) {
    Zone *z = cc->z;
    cc->nr_migratepages = 0;
    while (cc->migrate_pfn / PB_PAGES < cc->free_pfn / PB_PAGES) {
        int64_t b = cc->migrate_pfn / PB_PAGES;
        int64_t block_end = (b + 1) * PB_PAGES;
        if (!in_zone(e, z, b) || (!cc->ignore_skip && e->blocks[b].skip)) { cc->migrate_pfn = block_end; continue; }
        if (cc->async && cc->direct && e->blocks[b].mt != MT_MOVABLE) {
            update_cached_migrate(cc, block_end);
            cc->migrate_pfn = block_end;
            continue;
        }
        isolate_migratepages_block(e, cc, b);
        if (cc->nr_migratepages) return 1;
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
    return C_CONTINUE;
}

static void move_page(Engine *e, int64_t b, int off, int64_t t, int toff);

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
        if (!isolate_migratepages(e, cc)) continue;           /* reached the free scanner: finished says so */
        int64_t b = cc->mig_b;
        int failed = 0;
        int64_t touched[COMPACT_CLUSTER_MAX]; int ntouched = 0;   /* target blocks, refreshed once a batch */
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
            }
        }
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

/* ---------- kswapd and kcompactd (mm/vmscan.c, mm/compaction.c), in trace time ---------- */

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
            if (st == C_SUCCESS) defer_reset(z, order, 0); else defer(z, order);
            d->kcd_started = 0; d->kcd_zone++;
        }
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

/* ---------- one THP fault ---------- */

typedef struct {
    int8_t result; int16_t node; int8_t attempts; int16_t compact_calls; int8_t compact_ok;
    int64_t migrated, scanned, reclaimed, swapped, latency_ns; double access;
    int8_t last_rc;               /* the last direct compaction's result (C_*), -1 when none ran */
    int16_t reclaim_calls;        /* direct reclaim calls (allocstall) of the fault */
} Outcome;

static void count_stall(Engine *e, int rc, int success, Outcome *o) {
    /* kernel.counters.compact_stall_rule: before 5.12 every call counted, from 5.12 all but SKIPPED */
    int ran = e->p[P_STALL_EVERY_CALL] ? 1 : rc != C_SKIPPED;
    if (rc > C_DEFERRED) o->compact_calls++;
    if (!ran) return;
    e->k[K_COMPACT_STALL]++;
    e->k[success ? K_COMPACT_SUCCESS : K_COMPACT_FAIL]++;
}

/* A page taken where the trace put it: had the kernel found every zone of the zonelist below its low
   watermark, its slowpath would have woken kswapd; the model does the same. */
static void wake_if_all_low(Engine *e, int pref) {
    for (int i = 0; i < e->zl_len[pref]; i++) {
        Zone *z = &e->zones[e->zonelist[pref][i]];
        if (wmark_ok(z, 0, mark_of(z, 1))) return;
    }
    wake_kswapds(e, pref, -1, 0, 1);
}

static double access_mult(Engine *e, int local, int node, int huge) {
    int d = e->dist[local][node];
    if (node == local || d <= 10) return huge ? e->p[P_M_LOCAL_HUGE] : e->p[P_M_LOCAL_BASE];
    if (d <= 21) return huge ? e->p[P_M_HOP1_HUGE] : e->p[P_M_HOP1_BASE];
    return huge ? e->p[P_M_HOP2_HUGE] : e->p[P_M_HOP2_BASE];
}

/* Try the plan's attempts (one __alloc_pages_slowpath each, reference §6.2) until one succeeds. */
static int64_t thp_attempts(Engine *e, int local, int madvised, Outcome *o) {
    double us = 0;
    for (int a = 0; a < e->nplan[madvised]; a++) {
        int32_t *at = e->plan[madvised][a];
        int order = at[0], only = at[1] ? local : -1, direct = at[2], ksw = at[3], noretry = at[4];
        int64_t pfn, m = 0, s = 0, swp = 0;
        o->attempts++;
        /* fast path at the low watermark */
        pfn = alloc_zonelist(e, local, only, order, MT_MOVABLE, PK_PINNED, 0, 1);
        if (pfn >= 0) goto done;
        if (ksw) wake_kswapds(e, local, only, order, direct);
        if (e->sp_thisnode_nowait && only >= 0 && !direct) continue;
        if (e->sp_min_retry) {
            pfn = alloc_zonelist(e, local, only, order, MT_MOVABLE, PK_PINNED, 0, 0);
            if (pfn >= 0) goto done;
        }
        if (!direct) continue;
        int rc = direct_compact(e, local, only, order, PRIO_ASYNC, &m, &s, &pfn);
        o->last_rc = (int8_t)rc;
        us += e->p[P_COMPACT_CALL_US] + s * e->p[P_SCAN_NS] / 1000.0 + m * e->p[P_MIGRATE_US];
        o->migrated += m; o->scanned += s;
        count_stall(e, rc, pfn >= 0, o);
        if (pfn >= 0) { o->compact_ok = 1; goto done; }
        int skip_or_def = rc == C_SKIPPED || rc == C_DEFERRED;
        if (e->sp_bail_skip_mode == 1 && skip_or_def) continue;              /* 5.4 b39d0ee2632d */
        if (e->sp_bail_skip_mode == 2 && noretry && skip_or_def) continue;   /* 5.6+ cc638f329ef6 */
        if (e->sp_bail_thisnode && noretry && only >= 0) continue;           /* 9c9828d3ead6 */
        if (e->sp_bail_deferred_noretry && noretry && rc == C_DEFERRED) continue;
        int prio = (e->sp_second_sync && !noretry) ? PRIO_SYNC_LIGHT : PRIO_ASYNC;
        int64_t got = direct_reclaim(e, local, only, order, &swp);
        o->reclaim_calls++;
        o->reclaimed += got; o->swapped += swp;
        us += (got - swp) * e->p[P_RECLAIM_US] + swp * e->p[P_SWAP_OUT_US];
        pfn = alloc_zonelist(e, local, only, order, MT_MOVABLE, PK_PINNED, 0, 0);
        if (pfn >= 0) goto done;
        m = s = 0;
        rc = direct_compact(e, local, only, order, prio, &m, &s, &pfn);
        o->last_rc = (int8_t)rc;
        us += (e->p[P_COMPACT_CALL_US] + s * e->p[P_SCAN_NS] / 1000.0 + m * e->p[P_MIGRATE_US])
              * (prio == PRIO_ASYNC ? 1.0 : e->p[P_SYNC_FACTOR]);
        o->migrated += m; o->scanned += s;
        count_stall(e, rc, pfn >= 0, o);
        if (pfn >= 0) { o->compact_ok = 1; goto done; }
        continue;   /* NORETRY, or a costly order without __GFP_RETRY_MAYFAIL: give up */
    done:
        o->latency_ns = (int64_t)((us + e->p[P_THP_ZERO_US]) * 1000.0);
        return pfn;
    }
    o->latency_ns = (int64_t)((us + e->p[P_BASE_FAULT_US]) * 1000.0);
    return -1;
}

/* The node an order-0 movable page would come from now (for base_local / base_remote / failed). */
static int base_node(Engine *e, int local) {   /* where alloc_small() would put the fallback's pages */
    for (int which = 1; which >= 0; which--)
        for (int i = 0; i < e->zl_len[local]; i++) {
            Zone *z = &e->zones[e->zonelist[local][i]];
            if (wmark_ok(z, 0, mark_of(z, which))) return z->node;
        }
    return -1;
}

static void fault(Engine *e, int64_t r, int local, int madvised, Outcome *o) {
    memset(o, 0, sizeof(*o));
    o->last_rc = -1;
    Region *R = &e->regions[r];
    e->k[K_THP_FAULTS]++;
    int64_t pfn = thp_attempts(e, local, madvised, o);
    if (pfn >= 0) {
        int64_t b = block_of(e, pfn);
        int node = node_of_block(e, b);
        e->blocks[b].huge = 1;
        e->blocks[b].huge_region = r;
        R->state = 1; R->pfn = pfn;
        o->result = node == local ? R_HUGE_LOCAL : R_HUGE_REMOTE;
        o->node = (int16_t)node;
        o->access = access_mult(e, local, node, 1);
        if (node != local) e->k[K_NUMA_MISS]++;
        e->k[K_THP_FAULT_ALLOC]++;
        return;
    }
    e->k[K_THP_FAULT_FALLBACK]++;
    R->state = 2;
    int node = base_node(e, local);
    o->node = (int16_t)node;
    if (node < 0) { o->result = R_FAILED; o->access = 0; return; }
    o->result = node == local ? R_BASE_LOCAL : R_BASE_REMOTE;
    o->access = access_mult(e, local, node, 0);
    if (R->observed_huge) {
        /* The capture backed the region with a huge page, so its 4 KiB touches never faulted: assume
           the whole region is touched, now, as 512 order-0 pages (keys -(r*512+i)-2). */
        for (int i = 0; i < PB_PAGES; i++) {
            int64_t key = -(r * PB_PAGES + i) - 2;
            int64_t p = alloc_small(e, local, 0, MT_MOVABLE, PK_ANON, 1);
            if (p < 0) { map_put(&e->fwd, key, LOC_DROPPED); e->k[K_SMALL_FAILED]++; continue; }
            map_put(&e->fwd, key, p); map_put(&e->rev, p, key);
            int pnode = node_of_block(e, block_of(e, p));
            if (pnode != local) e->k[K_NUMA_MISS]++;
            e->k[K_SYNTHESIZED]++;
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

/* ---------- small allocations and frees ---------- */

static void move_out(Engine *e, int64_t p);

static void small_alloc(Engine *e, int64_t key, int order, int mt, int kind, int pref, int64_t region) {
    e->k[K_ALLOCS]++;
    if (region >= 0 && (e->regions[region].state == 1 || e->regions[region].state == 4)) {   /* huge in the model (or swapped out whole: its swap-in is not modelled) */
        map_put(&e->fwd, key, LOC_DROPPED);
        e->k[K_DROPPED]++;
        return;
    }
    int n = 1 << order;
    int64_t b = block_of(e, key);
    if (b >= 0) {
        int off = (int)((key - e->base_pfn) & (PB_PAGES - 1));
        Block *B = &e->blocks[b];
        if (off + n <= PB_PAGES && !range_free(B, off, n)) {
            /* pages here that the kernel migrated away: move them now (see move_out) */
            for (int i = off; i < off + n; i++)
                if (bit_get(B->kmig, i) && bit_get(B->used, i)) move_out(e, pfn_of(e, b, i));
        }
        if (off + n <= PB_PAGES && range_free(B, off, n)) {   /* follow the trace */
            for (int i = off; i < off + n; i++) bit_clr(B->kmig, i);   /* reused: forget it */
            if (B->nfree == PB_PAGES && B->mt != mt) set_mt(e, b, mt);
            take(e, b, off, n, kind, 1);
            map_del(&e->fwd, key);
            e->k[K_FOLLOWED]++;
            int node = node_of_block(e, b);
            if (pref >= 0 && node != pref) e->k[K_NUMA_MISS]++;
            wake_if_all_low(e, pref >= 0 && pref < e->nnodes ? pref : node);
            return;
        }
    }
    /* why the trace's place was taken in the model */
    if (b < 0) e->k[K_RELOC_OUTSIDE]++;
    else if (e->blocks[b].huge) e->k[K_RELOC_BY_HUGE]++;
    else if (bit_get(e->blocks[b].traced, (int)((key - e->base_pfn) & (PB_PAGES - 1)))) e->k[K_RELOC_BY_TRACED]++;
    else e->k[K_RELOC_BY_OTHER]++;
    int home = (pref >= 0 && pref < e->nnodes) ? pref : (b >= 0 ? node_of_block(e, b) : 0);
    int64_t p = alloc_small(e, home, order, mt, kind, 1);
    if (p < 0) {
        map_put(&e->fwd, key, LOC_DROPPED);
        e->k[K_SMALL_FAILED]++;
        return;
    }
    e->k[K_RELOCATED]++;
    if (p == key) map_del(&e->fwd, key);
    else { map_put(&e->fwd, key, p); map_put(&e->rev, p, key); }
    int node = node_of_block(e, block_of(e, p));
    if (node != home) e->k[K_NUMA_MISS]++;
}

/* A trace free (or a region release) of key: free the model page the key lives on. With no map entry
   the key is its own pfn; a page the model holds for another key, or a huge page of the model, is not
   the trace's to free (counted as unknown). */
static void free_a_migrated_page(Engine *e);

static void small_free(Engine *e, int64_t key, int order) {
    e->k[K_FREES]++;
    int64_t *loc = map_find(&e->fwd, key);
    int64_t p = key;
    if (loc) {
        p = *loc;
        map_del(&e->fwd, key);
        if (p == LOC_GONE) { e->k[K_FREE_GONE]++; return; }
        if (p < 0) return;                     /* dropped or failed: nothing to free */
        map_del(&e->rev, p);
    } else if (map_find(&e->rev, p)) {
        for (int i = 0; i < (1 << order); i++) free_a_migrated_page(e);
        e->k[K_FREE_UNKNOWN]++;
        return;
    }
    int64_t b = block_of(e, p);
    int n = 1 << order;
    if (b < 0 || e->blocks[b].huge) { e->k[K_FREE_UNKNOWN]++; return; }
    int off = (int)((p - e->base_pfn) & (PB_PAGES - 1));
    Block *B = &e->blocks[b];
    if (off + n > PB_PAGES) n = PB_PAGES - off;
    int inuse = 0;
    for (int i = off; i < off + n; i++) inuse += bit_get(B->used, i);
    if (inuse == 0) {
        /* the kernel put something here the trace never showed: a migration target */
        for (int i = 0; i < n; i++) free_a_migrated_page(e);
        e->k[K_FREE_UNKNOWN]++;
        return;
    }
    if (inuse < n) {   /* part of it was already free (a page the kernel had migrated): free the rest */
        for (int i = off; i < off + n; i++) if (bit_get(B->used, i)) release(e, b, i, 1);
        e->k[K_FREE_UNKNOWN]++;
        return;
    }
    release(e, b, off, n);
}

/* ---------- the kernel's own migrations ---------- */

/* The trace shows a page freed inside compaction (or by kcompactd): the kernel migrated it, to a place
   the trace does not show (compaction takes its target pages without mm_page_alloc). Migrations are the
   kernel's decisions, so the model does not replay them: it only marks the page (Block.kmig). If the
   trace later allocates that pfn while the model still holds the old page there, the model moves the
   old page then, to a free page the trace does not use, under a fresh key (move_out), and the
   workload's later free of the unknown target page frees one moved page (free_a_migrated_page). Free
   page counts stay as the demand makes them; only which pages are free differs. */
static void move_out(Engine *e, int64_t p) {
    int64_t b = block_of(e, p);
    if (b < 0 || e->blocks[b].huge) return;
    Block *B = &e->blocks[b];
    int off = (int)((p - e->base_pfn) & (PB_PAGES - 1));
    if (!bit_get(B->used, off)) return;
    int kind = bit_get(B->anon, off) ? PK_ANON : bit_get(B->file, off) ? PK_FILE : bit_get(B->mlock, off) ? PK_MLOCK : PK_PINNED;
    int64_t to = alloc_zonelist(e, node_of_block(e, b), -1, 0, B->mt, kind, 1, 0);
    if (to < 0) return;
    int64_t *owner = map_find(&e->rev, p);
    if (owner) { map_del(&e->fwd, *owner); map_del(&e->rev, p); }
    else if (!map_find(&e->fwd, p)) map_put(&e->fwd, p, LOC_DROPPED);   /* key p's page moved away */
    release(e, b, off, 1);
    bit_clr(B->kmig, off);
    int64_t fresh = e->next_key--;
    map_put(&e->fwd, fresh, to);
    map_put(&e->rev, to, fresh);
    if (e->mig_tail == e->mig_cap) {
        if (e->mig_head > 0) {   /* compact the queue before growing it */
            memmove(e->migrated, e->migrated + e->mig_head, (e->mig_tail - e->mig_head) * sizeof(int64_t));
            e->mig_tail -= e->mig_head; e->mig_head = 0;
        }
        if (e->mig_tail == e->mig_cap) {
            int64_t cap = e->mig_cap ? e->mig_cap * 2 : 4096;
            int64_t *q = realloc(e->migrated, cap * sizeof(int64_t));
            if (!q) return;
            e->migrated = q; e->mig_cap = cap;
        }
    }
    e->migrated[e->mig_tail++] = fresh;
    e->k[K_MIGRATED_OUT]++;
}

static void kernel_migrated(Engine *e, int64_t key) {
    int64_t *loc = map_find(&e->fwd, key);
    int64_t p = loc ? *loc : key;
    int64_t b = p >= 0 ? block_of(e, p) : -1;
    if (b >= 0) bit_set(e->blocks[b].kmig, (int)((p - e->base_pfn) & (PB_PAGES - 1)));
}

static void free_a_migrated_page(Engine *e) {
    while (e->mig_head < e->mig_tail) {
        int64_t key = e->migrated[e->mig_head++];
        int64_t *loc = map_find(&e->fwd, key);
        if (!loc) continue;
        if (*loc < 0) { map_del(&e->fwd, key); continue; }   /* reclaimed meanwhile */
        e->k[K_FREE_OF_MIGRATED]++;
        e->k[K_FREES]--;   /* small_free counts it again */
        small_free(e, key, 0);
        return;
    }
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

static void region_release(Engine *e, int64_t r) {
    Region *R = &e->regions[r];
    if (R->state == 1) {
        int64_t b = block_of(e, R->pfn);
        e->blocks[b].huge = 0;
        release(e, b, 0, PB_PAGES);
    } else if (R->state == 2 && R->observed_huge) {
        for (int i = 0; i < PB_PAGES; i++) small_free(e, -(r * PB_PAGES + i) - 2, 0);
    }
    R->state = 3;
}

static void sample(Engine *e, int64_t ts) {
    for (int n = 0; n < e->nnodes; n++) {
        int64_t free = 0, huge = 0;
        for (int i = 0; i < e->nzones; i++) {
            if (e->zones[i].node != n) continue;
            free += e->zones[i].free_pages; huge += e->zones[i].nr_free[NORD - 1];
        }
        if (e->nseries + 4 > e->capseries) {
            int64_t cap = e->capseries ? e->capseries * 2 : 4096;
            int64_t *s = realloc(e->series, cap * sizeof(int64_t));
            if (!s) return;
            e->series = s; e->capseries = cap;
        }
        int64_t *row = &e->series[e->nseries];
        row[0] = ts; row[1] = n; row[2] = free; row[3] = huge;
        e->nseries += 4;
    }
}

/* ---------- Python glue ---------- */

static void engine_free(PyObject *cap) {
    Engine *e = PyCapsule_GetPointer(cap, "thpreplay.engine");
    if (!e) return;
    free(e->zones); free(e->blocks); free(e->regions); free(e->series); free(e->migrated);
    for (int n = 0; n < MAXNODES; n++) { free(e->fileset[n].ids); free(e->anonset[n].ids); }
    map_free(&e->fwd); map_free(&e->rev);
    free(e);
}

typedef struct { Py_buffer buf; int ok; } Buf;

static int getbuf(PyObject *o, Buf *b, Py_ssize_t itemsize, int writable) {
    b->ok = 0;
    if (PyObject_GetBuffer(o, &b->buf, PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) < 0) return -1;
    b->ok = 1;
    if (b->buf.len % itemsize) {
        PyErr_SetString(PyExc_ValueError, "buffer has the wrong item size");
        return -1;
    }
    return 0;
}
static void relbuf(Buf *b) { if (b->ok) PyBuffer_Release(&b->buf); b->ok = 0; }

/* new(zones:int64[nz*12], zonelist:int32[nn*64], dist:int32[nn*nn], block_zone:int16[nb], block_mt:int8[nb],
       used:uint64[nb*8], anon:uint64[nb*8], file:uint64[nb*8], base_pfn, nregions, observed_huge:int8[nr],
       plan:int32[2*8*5], nplan:int32[2], slowpath:int32[6], params:float64[P_NPARAMS], mlock:uint64[nb*8], hint:uint64[nb*8]) */
static PyObject *py_new(PyObject *self, PyObject *args) {
    PyObject *o[17];
    long long base_pfn, nregions;
    if (!PyArg_ParseTuple(args, "OOOOOOOOLLOOOOOOO", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6], &o[7],
                          &base_pfn, &nregions, &o[10], &o[11], &o[12], &o[13], &o[14], &o[15], &o[16]))
        return NULL;
    Buf zb, zlb, db, bzb, bmb, ub, ab, fb, ohb, pb, npb, spb, parb, mb, hb;
    Buf *all[] = {&zb, &zlb, &db, &bzb, &bmb, &ub, &ab, &fb, &ohb, &pb, &npb, &spb, &parb, &mb, &hb};
    for (int i = 0; i < 15; i++) all[i]->ok = 0;
    Engine *e = NULL;
    if (getbuf(o[0], &zb, 8, 0) || getbuf(o[1], &zlb, 4, 0) || getbuf(o[2], &db, 4, 0) || getbuf(o[3], &bzb, 2, 0) ||
        getbuf(o[4], &bmb, 1, 0) || getbuf(o[5], &ub, 8, 0) || getbuf(o[6], &ab, 8, 0) || getbuf(o[7], &fb, 8, 0) ||
        getbuf(o[10], &ohb, 1, 0) || getbuf(o[11], &pb, 4, 0) || getbuf(o[12], &npb, 4, 0) ||
        getbuf(o[13], &spb, 4, 0) || getbuf(o[14], &parb, 8, 0) || getbuf(o[15], &mb, 8, 0) ||
        getbuf(o[16], &hb, 8, 0))
        goto fail;
    e = calloc(1, sizeof(Engine));
    if (!e) { PyErr_NoMemory(); goto fail; }
    int64_t *zz = zb.buf.buf;
    e->nzones = (int)(zb.buf.len / 8 / 12);
    int nn = 0;
    e->zones = calloc(e->nzones, sizeof(Zone));
    for (int i = 0; i < e->nzones; i++) {
        Zone *z = &e->zones[i];
        int64_t *r = &zz[i * 12];
        z->node = (int)r[0]; z->type = (int)r[1]; z->b0 = r[2]; z->b1 = r[3];
        z->wmin = r[4]; z->wlow = r[5]; z->whigh = r[6]; z->reserve = r[7];
        z->defer_shift = (int)r[8]; z->considered = (int)r[9]; z->order_failed = (int)r[10];
        z->cmig[0] = z->cmig[1] = z->b0 * PB_PAGES; z->cfree = (z->b1 - 1) * PB_PAGES; z->init_migrate = -1;
        for (int m = 0; m < NMT; m++) {
            z->hcur[m] = z->b0; z->hfail[m] = NORD;
            for (int j = 0; j < NORD; j++) z->head[m][j] = -1;
        }
        if (z->node + 1 > nn) nn = z->node + 1;
    }
    if (nn > MAXNODES) { PyErr_SetString(PyExc_ValueError, "too many nodes"); goto fail; }
    e->nnodes = nn;
    int32_t *zl = zlb.buf.buf;
    for (int n = 0; n < nn; n++) {
        e->zl_len[n] = 0;
        for (int i = 0; i < 64 && zl[n * 64 + i] >= 0; i++) e->zonelist[n][e->zl_len[n]++] = zl[n * 64 + i];
    }
    int32_t *dd = db.buf.buf;
    for (int a = 0; a < nn; a++) for (int b = 0; b < nn; b++) e->dist[a][b] = dd[a * nn + b];
    e->nblocks = bzb.buf.len / 2;
    e->base_pfn = base_pfn;
    e->blocks = calloc(e->nblocks ? e->nblocks : 1, sizeof(Block));
    if (!e->zones || !e->blocks) { PyErr_NoMemory(); goto fail; }
    int16_t *bz = bzb.buf.buf; int8_t *bm = bmb.buf.buf;
    uint64_t *U = ub.buf.buf, *A = ab.buf.buf, *F = fb.buf.buf, *M = mb.buf.buf, *H = hb.buf.buf;
    for (int64_t b = 0; b < e->nblocks; b++) {
        Block *B = &e->blocks[b];
        B->zone = bz[b]; B->mt = bm[b]; B->fpos = B->apos = -1;
        for (int j = 0; j < NORD; j++) B->next[j] = B->prev[j] = -1;
        if (B->zone < 0) { for (int i = 0; i < 8; i++) B->used[i] = ~0ULL; continue; }
        for (int i = 0; i < 8; i++) { B->used[i] = U[b * 8 + i]; B->anon[i] = A[b * 8 + i] & B->used[i]; B->file[i] = F[b * 8 + i] & B->used[i] & ~B->anon[i];
                                      B->mlock[i] = M[b * 8 + i] & B->used[i] & ~B->anon[i] & ~B->file[i];
                                      B->hint[i] = H[b * 8 + i]; }
        int na = 0, nf = 0;
        for (int i = 0; i < 8; i++) { na += __builtin_popcountll(B->anon[i]); nf += __builtin_popcountll(B->file[i]); B->nmlock += __builtin_popcountll(B->mlock[i]); }
        B->nfree = 0;
        if (na) lru_add(e, b, PK_ANON, na);
        if (nf) lru_add(e, b, PK_FILE, nf);
        refresh(e, b);
    }
    e->nregions = nregions;
    e->regions = calloc(nregions ? nregions : 1, sizeof(Region));
    int8_t *oh = ohb.buf.buf;
    for (int64_t r = 0; r < nregions; r++) e->regions[r].observed_huge = oh[r];
    int32_t *pl = pb.buf.buf, *np = npb.buf.buf, *sp = spb.buf.buf;
    for (int m = 0; m < 2; m++) {
        e->nplan[m] = np[m];
        for (int a = 0; a < MAXATT; a++) for (int f = 0; f < 5; f++) e->plan[m][a][f] = pl[(m * MAXATT + a) * 5 + f];
    }
    e->sp_second_sync = sp[0]; e->sp_bail_deferred_noretry = sp[1]; e->sp_bail_skip_mode = sp[2];
    e->sp_bail_thisnode = sp[3]; e->sp_thisnode_nowait = sp[4]; e->sp_min_retry = sp[5];
    double *pp = parb.buf.buf;
    for (int i = 0; i < P_NPARAMS; i++) e->p[i] = pp[i];
    e->rng = (uint64_t)(e->p[P_SEED] >= 0 ? e->p[P_SEED] : 1) * 0x2545F4914F6CDD1DULL + 0x9E3779B97F4A7C15ULL;
    e->swap_left = (int64_t)e->p[P_SWAP_PAGES];
    e->next_sample = INT64_MIN;
    e->next_proactive = INT64_MIN;
    e->next_key = -(nregions * PB_PAGES) - 16;
    if (map_init(&e->fwd, 1 << 16) || map_init(&e->rev, 1 << 16)) { PyErr_NoMemory(); goto fail; }
    for (int i = 0; i < 15; i++) relbuf(all[i]);
    return PyCapsule_New(e, "thpreplay.engine", engine_free);
fail:
    for (int i = 0; i < 15; i++) relbuf(all[i]);
    if (e) { free(e->zones); free(e->blocks); free(e->regions); free(e); }
    return NULL;
}

/* run(engine, kind:int8, ts:int64, pfn:int64, order:int8, mt:int8, pkind:int8, node:int16, region:int64,
       madvised:int8, out_result:int8, out_node:int16, out_attempts:int8, out_compact:int16, out_compact_ok:int8,
       out_migrated:int64, out_scanned:int64, out_reclaimed:int64, out_swapped:int64, out_latency:int64,
       out_access:float64, out_compact_result:int8, out_reclaim_calls:int16). Outputs are indexed by region
       (= fault) number. */
static PyObject *py_run(PyObject *self, PyObject *args) {
    PyObject *cap, *o[22];
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOOOOOOOOOOOOOO", &cap, &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6],
                          &o[7], &o[8], &o[9], &o[10], &o[11], &o[12], &o[13], &o[14], &o[15], &o[16], &o[17],
                          &o[18], &o[19], &o[20], &o[21]))
        return NULL;
    Engine *e = PyCapsule_GetPointer(cap, "thpreplay.engine");
    if (!e) return NULL;
    static const int sizes[22] = {1, 8, 8, 1, 1, 1, 2, 8, 1, 1, 2, 1, 2, 1, 8, 8, 8, 8, 8, 8, 1, 2};
    Buf b[22];
    for (int i = 0; i < 22; i++) b[i].ok = 0;
    for (int i = 0; i < 22; i++)
        if (getbuf(o[i], &b[i], sizes[i], i >= 9)) { for (int k = 0; k < 22; k++) relbuf(&b[k]); return NULL; }
    int64_t n = b[0].buf.len;
    int8_t *kind = b[0].buf.buf, *order = b[3].buf.buf, *mt = b[4].buf.buf, *pk = b[5].buf.buf, *madv = b[8].buf.buf;
    int64_t *ts = b[1].buf.buf, *pfn = b[2].buf.buf, *region = b[7].buf.buf;
    int16_t *node = b[6].buf.buf;
    int64_t nfaults = b[9].buf.len;
    Py_BEGIN_ALLOW_THREADS
    for (int64_t i = 0; i < n; i++) {
        if (e->p[P_SAMPLE_NS] > 0 && ts[i] >= e->next_sample) {
            if (e->next_sample == INT64_MIN) e->next_sample = ts[i];
            sample(e, ts[i]);
            int64_t step = (int64_t)e->p[P_SAMPLE_NS];
            while (e->next_sample <= ts[i]) e->next_sample += step;
        }
        if (e->p[P_PROACTIVENESS] > 0 && ts[i] >= e->next_proactive) {
            if (e->next_proactive == INT64_MIN) {
                /* kcompactd's timer runs on its own: where the trace shows its phase, the checks
                   keep it (P_PROACTIVE_PHASE, a trace time of one of its runs), else they start here */
                int64_t ph = (int64_t)e->p[P_PROACTIVE_PHASE];
                if (ph >= 0) { int64_t d = (ph - ts[i]) % 500000000LL; ph = ts[i] + (d < 0 ? d + 500000000LL : d); }
                e->next_proactive = ph >= 0 ? ph : ts[i];
            }
            proactive(e, ts[i]);
            while (e->next_proactive <= ts[i]) e->next_proactive += 500000000LL;
        }
        if (e->p[P_PROACTIVENESS] > 0) proactive_work(e, ts[i]);
        e->now = ts[i];
        kswapd_work(e, ts[i]);
        kcompactd_work(e, ts[i]);
        switch (kind[i]) {
        case OP_ALLOC: small_alloc(e, pfn[i], order[i], mt[i], pk[i], node[i], region[i]); break;
        case OP_FREE: small_free(e, pfn[i], order[i]); break;
        case OP_THP: {
            int64_t r = region[i];
            if (r < 0 || r >= e->nregions || r >= nfaults) break;
            Outcome oc;
            int local = (node[i] >= 0 && node[i] < e->nnodes) ? node[i] : 0;
            fault(e, r, local, madv[i] ? 1 : 0, &oc);
            ((int8_t *)b[9].buf.buf)[r] = oc.result;
            ((int16_t *)b[10].buf.buf)[r] = oc.node;
            ((int8_t *)b[11].buf.buf)[r] = oc.attempts;
            ((int16_t *)b[12].buf.buf)[r] = oc.compact_calls;
            ((int8_t *)b[13].buf.buf)[r] = oc.compact_ok;
            ((int64_t *)b[14].buf.buf)[r] = oc.migrated;
            ((int64_t *)b[15].buf.buf)[r] = oc.scanned;
            ((int64_t *)b[16].buf.buf)[r] = oc.reclaimed;
            ((int64_t *)b[17].buf.buf)[r] = oc.swapped;
            ((int64_t *)b[18].buf.buf)[r] = oc.latency_ns;
            ((double *)b[19].buf.buf)[r] = oc.access;
            ((int8_t *)b[20].buf.buf)[r] = oc.last_rc;
            ((int16_t *)b[21].buf.buf)[r] = oc.reclaim_calls;
            break;
        }
        case OP_RELEASE: if (region[i] >= 0 && region[i] < e->nregions) region_release(e, region[i]); break;
        case OP_MIGRATE: for (int j = 0; j < (1 << order[i]) && j < PB_PAGES; j++) kernel_migrated(e, pfn[i] + j); break;
        case OP_STEAL: trace_steal(e, pfn[i], order[i], mt[i], pk[i]); break;
        }
    }
    Py_END_ALLOW_THREADS
    for (int k = 0; k < 22; k++) relbuf(&b[k]);
    Py_RETURN_NONE;
}

static PyObject *py_counters(PyObject *self, PyObject *args) {
    PyObject *cap;
    if (!PyArg_ParseTuple(args, "O", &cap)) return NULL;
    Engine *e = PyCapsule_GetPointer(cap, "thpreplay.engine");
    if (!e) return NULL;
    PyObject *l = PyList_New(K_NCOUNTERS);
    for (int i = 0; i < K_NCOUNTERS; i++) PyList_SET_ITEM(l, i, PyLong_FromLongLong(e->k[i]));
    return l;
}

static PyObject *py_series(PyObject *self, PyObject *args) {
    PyObject *cap;
    if (!PyArg_ParseTuple(args, "O", &cap)) return NULL;
    Engine *e = PyCapsule_GetPointer(cap, "thpreplay.engine");
    if (!e) return NULL;
    return PyBytes_FromStringAndSize((const char *)e->series, e->nseries * (Py_ssize_t)sizeof(int64_t));
}

/* Per zone: free pages and nr_free by order (for tests and the initial-state report). */
static PyObject *py_zones(PyObject *self, PyObject *args) {
    PyObject *cap;
    if (!PyArg_ParseTuple(args, "O", &cap)) return NULL;
    Engine *e = PyCapsule_GetPointer(cap, "thpreplay.engine");
    if (!e) return NULL;
    PyObject *l = PyList_New(e->nzones);
    for (int i = 0; i < e->nzones; i++) {
        Zone *z = &e->zones[i];
        PyObject *t = PyTuple_New(2 + NORD);
        PyTuple_SET_ITEM(t, 0, PyLong_FromLongLong(z->free_pages));
        PyTuple_SET_ITEM(t, 1, PyLong_FromLong(z->defer_shift));
        for (int j = 0; j < NORD; j++) PyTuple_SET_ITEM(t, 2 + j, PyLong_FromLongLong(z->nr_free[j]));
        PyList_SET_ITEM(l, i, t);
    }
    return l;
}

/* Invariants, recomputed from scratch: every block's histogram and list membership, every zone's
   counts, the LRU sets. Returns None, or a string naming the first violation. */
static PyObject *py_check(PyObject *self, PyObject *args) {
    PyObject *cap;
    if (!PyArg_ParseTuple(args, "O", &cap)) return NULL;
    Engine *e = PyCapsule_GetPointer(cap, "thpreplay.engine");
    if (!e) return NULL;
    int64_t zfree[256] = {0}, znr[256][NORD];
    memset(znr, 0, sizeof(znr));
    for (int64_t b = 0; b < e->nblocks; b++) {
        Block *B = &e->blocks[b];
        if (B->zone < 0) continue;
        Levels L; levels_of(B->used, &L);
        int pc[NORD];
        for (int j = 0; j < NORD; j++) pc[j] = popcount_level(&L, j);
        if (pc[0] != B->nfree) return PyUnicode_FromFormat("block %lld: nfree %d, bitmap says %d", (long long)b, B->nfree, pc[0]);
        zfree[B->zone] += pc[0];
        for (int j = 0; j < NORD; j++) {
            int c = (j == NORD - 1) ? pc[j] : pc[j] - 2 * pc[j + 1];
            if (c != B->cnt[j]) return PyUnicode_FromFormat("block %lld: order %d count %d, bitmap says %d", (long long)b, j, B->cnt[j], c);
            znr[B->zone][j] += c;
        }
        int na = 0, nf = 0;
        for (int i = 0; i < 8; i++) {
            if ((B->anon[i] | B->file[i] | B->mlock[i] | B->traced[i]) & ~B->used[i]) return PyUnicode_FromFormat("block %lld: a free page is marked in use", (long long)b);
            if (B->anon[i] & B->file[i]) return PyUnicode_FromFormat("block %lld: a page is both anon and file", (long long)b);
            na += __builtin_popcountll(B->anon[i]); nf += __builtin_popcountll(B->file[i]);
        }
        int nm = 0;
        for (int i = 0; i < 8; i++) nm += __builtin_popcountll(B->mlock[i]);
        if (nm != B->nmlock) return PyUnicode_FromFormat("block %lld: mlock count differs", (long long)b);
        if (na != B->nanon || nf != B->nfile) return PyUnicode_FromFormat("block %lld: LRU counts differ", (long long)b);
        if ((na > 0) != (B->apos >= 0) || (nf > 0) != (B->fpos >= 0)) return PyUnicode_FromFormat("block %lld: LRU set membership", (long long)b);
    }
    for (int i = 0; i < e->nzones && i < 256; i++) {
        Zone *z = &e->zones[i];
        if (z->free_pages != zfree[i]) return PyUnicode_FromFormat("zone %d: free_pages %lld, blocks say %lld", i, (long long)z->free_pages, (long long)zfree[i]);
        for (int j = 0; j < NORD; j++) {
            if (z->nr_free[j] != znr[i][j]) return PyUnicode_FromFormat("zone %d: nr_free[%d] differs", i, j);
            int64_t inlist = 0;
            for (int m = 0; m < NMT; m++)
                for (int64_t b = z->head[m][j]; b >= 0; b = e->blocks[b].next[j]) {
                    Block *B = &e->blocks[b];
                    if (B->mt != m || B->cnt[j] == 0 || &e->zones[B->zone] != z) return PyUnicode_FromFormat("zone %d: list [%d][%d] holds a wrong block", i, m, j);
                    inlist++;
                    if (inlist > e->nblocks) return PyUnicode_FromFormat("zone %d: list loop", i);
                }
            int64_t want = 0;
            for (int64_t b = z->b0; b < z->b1 && b < e->nblocks; b++)
                if (e->blocks[b].zone == i && e->blocks[b].cnt[j]) want++;
            if (want != inlist) return PyUnicode_FromFormat("zone %d: order %d lists hold %lld blocks, %lld expected", i, j, (long long)inlist, (long long)want);
        }
    }
    Py_RETURN_NONE;
}

/* used bitmap of every block (tests: pages conserved, no double allocation) */
static PyObject *py_used(PyObject *self, PyObject *args) {
    PyObject *cap;
    if (!PyArg_ParseTuple(args, "O", &cap)) return NULL;
    Engine *e = PyCapsule_GetPointer(cap, "thpreplay.engine");
    if (!e) return NULL;
    PyObject *out = PyBytes_FromStringAndSize(NULL, e->nblocks * 64);
    if (!out) return NULL;
    char *p = PyBytes_AS_STRING(out);
    for (int64_t b = 0; b < e->nblocks; b++) memcpy(p + b * 64, e->blocks[b].used, 64);
    return out;
}

static PyMethodDef methods[] = {
    {"new", py_new, METH_VARARGS, "Create an engine from the initial state and a policy plan."},
    {"run", py_run, METH_VARARGS, "Replay a chunk of demand ops."},
    {"counters", py_counters, METH_VARARGS, "vmstat-like counters."},
    {"series", py_series, METH_VARARGS, "Time series rows (ts, node, free pages, free huge blocks) as int64 bytes."},
    {"zones", py_zones, METH_VARARGS, "Per-zone free pages, defer shift and free blocks by order."},
    {"check", py_check, METH_VARARGS, "Check the allocator invariants; None or the first violation."},
    {"used", py_used, METH_VARARGS, "The used bitmap of every pageblock, 64 bytes each."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_engine", "thpreplay replay core", -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__engine(void) { return PyModule_Create(&module); }
