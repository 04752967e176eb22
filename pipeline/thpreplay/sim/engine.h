/*
 * The replay core's shared definitions. The structs stand for the kernel's: Block for a pageblock's
 * struct pages and its pageblock flags (migratetype, PB_migrate_skip), Zone for struct zone
 * (include/linux/mmzone.h: free_area counts, watermarks and watermark_boost, lowmem_reserve, the
 * compact_* deferral state and cached scanner positions), CompactControl for struct compact_control
 * (mm/internal.h), Daemon for a node's kswapd_* and kcompactd_* state in pglist_data. Then the small
 * helpers (hash map, index sets, bit operations) and the functions each file offers the others.
 *
 * One translation unit: _engine.c includes this and the model's files (page_alloc.c, vmscan.c,
 * compaction.c), so every function is static and inlines across files as in one file.
 */
#ifndef THPREPLAY_ENGINE_H
#define THPREPLAY_ENGINE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PB_ORDER 9
#define PB_PAGES 512
#define ZONE_ROW 20            /* int64 fields per zone row from engine.py (_zones) */
#define NORD 10            /* orders 0..9 inside a pageblock; order 10 (two blocks) is not modelled */
#define SERIES_W (4 + NORD + 3)   /* int64 per memory_series row (sample() in _engine.c) */
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
       K_RELOC_OUTSIDE, K_MIGRATED_OUT, K_FREE_OF_MIGRATED, K_THP_SWPOUT, K_COMPACT_FREE_SCANNED, K_PGMIGRATE_FAIL, K_BOOSTS, K_RECLAIM_RETURNED, K_NCOUNTERS };

/* the path of a THP fault, step by step (thpreplay.sim.engine.STEP_KINDS, BAIL_REASONS format them):
   kind in the low byte, code in the next, node + 1 in the upper half (0: no node) */
#define MAX_STEPS 24
#define STEP(kind, code, node) ((int32_t)((kind) | ((code) << 8) | (((node) + 1) << 16)))
enum { ST_NONE = 0, ST_ATTEMPT, ST_FAST, ST_WAKE, ST_MIN, ST_COMPACT, ST_RECLAIM, ST_AFTER_RECLAIM, ST_BAIL, ST_MORE };
/* why an attempt ended without a page (ST_BAIL codes) */
enum { B_THISNODE_NOWAIT = 1, B_NO_DIRECT, B_COSTLY_SKIPPED, B_NORETRY_SKIPPED, B_THISNODE_NORETRY,
       B_NORETRY_DEFERRED, B_NORETRY_GIVE_UP, B_COSTLY_GIVE_UP };

/* params, in the order of thpreplay.sim.engine.PARAMS */
enum { P_COMPACT_CALL_US, P_SCAN_NS, P_MIGRATE_US, P_SYNC_FACTOR,
       P_RECLAIM_US, P_SWAP_OUT_US, P_M_LOCAL_HUGE, P_M_LOCAL_BASE, P_M_HOP1_HUGE, P_M_HOP1_BASE,
       P_M_HOP2_HUGE, P_M_HOP2_BASE, P_EXTFRAG_THRESHOLD, P_SWAP_PAGES, P_SAMPLE_NS, P_KSWAPD,
       P_KCOMPACTD, P_STALL_EVERY_CALL, P_SEED, P_PROACTIVENESS, P_FREE_STRIDE, P_KSWAPD_US, P_KCOMPACTD_US,
       P_PROACTIVE_PHASE, P_BOOST_FACTOR, P_READY_FORM, P_RECLAIM_ROUND, P_SHUFFLE_LISTS, P_CONTENTION, P_UNEV_ALLOWED, P_PCP_FORM,
       P_KSWAPD_WAKE_US, P_FINISH_FORM, P_NPARAMS };

typedef struct {
    uint64_t used[8], anon[8], file[8], mlock[8], traced[8];
    uint64_t hint[8];     /* pages the trace allocates at some time: the model's own placements avoid them */
    uint64_t kmig[8];     /* pages the kernel migrated away (the trace freed them inside compaction) */
    uint64_t pcp[8];      /* freed pages still on a per-cpu list: in use for the buddy allocator (no
                             merging, not in free_pages), no LRU page either (see pcp_free) */
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
    int32_t head[NMT][NORD], tail[NMT][NORD];   /* per migratetype and order: blocks holding such a free block, newest first */
    int defer_shift, considered, order_failed;
    int64_t cmig[2], cfree;       /* compact_cached_migrate_pfn[async, sync], compact_cached_free_pfn (page index) */
    int blockskip_flush;          /* compact_blockskip_flush: kswapd clears the skip bits when it sleeps */
    int64_t init_migrate;         /* compact_init_migrate_pfn: set by a skip-bit reset, -1 before any */
    int64_t init_free;            /* compact_init_free_pfn: set by a skip-bit reset, -1 before any */
    int32_t fcur[NORD];           /* MOVABLE free list entry the next fast_isolate_freepages() search starts at */
    int32_t mcur[NORD];           /* ... and the next fast_find_migrateblock() search */
    int64_t boost;                /* watermark_boost (5.0+), added to every watermark */
    int64_t hcur[NMT];            /* where the search for free pages the trace never uses resumes */
    int hfail[NMT];               /* smallest order a whole sweep found none of (NORD: none failed) */
    /* the per-cpu list of the node's CPUs for this zone (struct per_cpu_pages), oldest first: page
       indices in a ring; pcp_phantom of the oldest are the pages on it at the start, which the model
       holds elsewhere (flushing them frees nothing); pcp_high 0: no list, frees go to the buddy */
    int64_t *pcpq; int64_t pcp_head, pcp_tail, pcp_cap, pcp_count, pcp_phantom, pcp_high, pcp_batch, pcp_factor;
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
    int64_t mig_b; int16_t mig_off[PB_PAGES]; int nr_migratepages;
    int finish_pageblock;       /* cc->finish_pageblock (cc->rescan up to 6.2): take the rest of the block in one batch */
    int search_order, fast_search_fail;   /* fast_isolate_freepages() / fast_find_migrateblock() state */
    int contended;              /* cc->contended: a lock was contended (async), the run ends at a block boundary */
    int64_t fast_start;         /* fast_start_pfn (block): -1 unset, -2 used (ULONG_MAX) */
    int64_t last_migrated;      /* last_migrated_pfn: where the batch last migrated began, -1 none (drain) */
    int64_t migrated, failed, mscanned, fscanned;
} CompactControl;

/* A node's kswapd and kcompactd: each works on its own CPU, in trace time (kswapd_work, kcompactd_work). */
typedef struct {
    int ksw_active, ksw_order, ksw_failures, ksw_boosted; int64_t ksw_reclaimed, ksw_boost_left, ksw_pass_left; double ksw_ns;
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

/* ---------- bits, pages and blocks ---------- */

/* L[j] holds one bit per aligned 2^j-page chunk of the block: set when the chunk is all free.
   Level j has 512>>j bits, stored in (512>>j)/64 words (at least one). */
typedef struct { uint64_t w[10][8]; } Levels;

static inline int level_bit(const Levels *L, int j, int idx) { return (L->w[j][idx >> 6] >> (idx & 63)) & 1; }

static inline int bit_get(const uint64_t *m, int off) { return (m[off >> 6] >> (off & 63)) & 1; }
static inline void bit_set(uint64_t *m, int off) { m[off >> 6] |= 1ULL << (off & 63); }
static inline void bit_clr(uint64_t *m, int off) { m[off >> 6] &= ~(1ULL << (off & 63)); }

static inline int node_of_block(Engine *e, int64_t b) { return e->zones[e->blocks[b].zone].node; }

static inline int64_t block_of(Engine *e, int64_t pfn) {
    if (pfn < e->base_pfn) return -1;
    int64_t b = (pfn - e->base_pfn) >> PB_ORDER;
    return (b < e->nblocks && e->blocks[b].zone >= 0) ? b : -1;
}
static inline int64_t pfn_of(Engine *e, int64_t b, int off) { return e->base_pfn + (b << PB_ORDER) + off; }

/* ---------- what each file offers the others ---------- */

/* page_alloc.c (mm/page_alloc.c) */
static void levels_of(const uint64_t used[8], Levels *L);
static int popcount_level(const Levels *L, int j);
static void refresh(Engine *e, int64_t b);
static void set_mt(Engine *e, int64_t b, int mt);
static int range_free(const Block *B, int off, int n);
static void lru_add(Engine *e, int64_t b, int kind, int delta);
static void take(Engine *e, int64_t b, int off, int n, int kind, int traced);
static void release(Engine *e, int64_t b, int off, int n);
static int wmark_ok(const Zone *z, int order, int64_t mark);
static int64_t mark_of(const Zone *z, int which);
static int64_t rmqueue(Engine *e, Zone *z, int order, int mt, int kind, int traced);
static int64_t alloc_zonelist(Engine *e, int pref, int only_node, int order, int mt, int kind, int traced, int which);
static void wake_kswapds(Engine *e, int pref, int only_node, int order, int direct);
static int64_t alloc_small(Engine *e, int pref, int order, int mt, int kind, int traced);
static void trace_steal(Engine *e, int64_t pfn, int order, int mt, int change_ownership);
static void pcp_free(Engine *e, int64_t b, int off);
static void pcp_take(Engine *e, int64_t b, int off);
static void pcp_drain(Engine *e, Zone *z);
static void pcp_drain_all(Engine *e);

/* vmscan.c (mm/vmscan.c) */
static int reclaim_one(Engine *e, int node);
static int reclaimed_pages(int rc);
static int swapped_pages(int rc);
static int64_t direct_reclaim(Engine *e, int pref, int only_node, int order, int64_t *swapped, int64_t *returned);
static void wakeup_kswapd(Engine *e, int node, int order, int direct);
static void kswapd_work(Engine *e, int64_t ts);

/* compaction.c (mm/compaction.c) */
static int frag_lack_of_memory(Engine *e, const Zone *z, int order);
static void reset_isolation_suitable(Engine *e, Zone *z);
static int direct_compact(Engine *e, int pref, int only_node, int order, int prio, int64_t *migrated,
                          int64_t *scanned, int64_t *pfn_out);
static void wakeup_kcompactd(Engine *e, int node, int order);
static void kcompactd_work(Engine *e, int64_t ts);
static void proactive(Engine *e, int64_t ts);
static void proactive_work(Engine *e, int64_t ts);

#endif /* THPREPLAY_ENGINE_H */
