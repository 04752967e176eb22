/*
 * thpreplay.sim._engine: the replay core. A model of the Linux buddy allocator (zones, pageblocks with
 * migratetypes, free blocks per order), direct compaction with deferral, direct reclaim and kswapd,
 * driven by a demand (small allocations and frees, THP faults, region releases) and a policy plan
 * (the THP attempts of one fault, decided in Python by thpreplay.policy). The Python side
 * (thpreplay.sim.engine) documents the model; comments here cite the kernel function each step mirrors.
 *
 * The model is split along the kernel's own files; each names at its top the functions it follows:
 *   engine.h       the structs (pageblock, zone, compact_control, a node's daemons), small helpers,
 *                  and the functions each file offers the others
 *   page_alloc.c   mm/page_alloc.c: the buddy structure, watermarks, __rmqueue and its fallback,
 *                  get_page_from_freelist, boost_watermark, small allocations (__alloc_pages)
 *   vmscan.c       mm/vmscan.c: page reclaim, try_to_free_pages, wakeup_kswapd, balance_pgdat
 *   compaction.c   mm/compaction.c: compaction_suitable, deferral, compact_zone and its scanners,
 *                  try_to_compact_pages, kcompactd, proactive compaction
 *   _engine.c      this file: the replay, i.e. a THP fault (the policy's __alloc_pages_slowpath
 *                  attempts), the trace's small allocations and frees, the kernel's own migrations,
 *                  the memory series, and the Python glue
 * They make one translation unit: this file includes the others (a unity build: every function stays
 * static and the compiler inlines across files as before); setup.py lists them in `depends`.
 *
 * State is proportional to memory in pageblocks (struct block, ~400 bytes per 2 MiB) plus the trace's
 * live pages that are not where the trace put them (hash maps), never to trace length.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "engine.h"
#include "page_alloc.c"
#include "vmscan.c"
#include "compaction.c"

/* ---------- one THP fault ---------- */

typedef struct {
    int8_t result; int16_t node; int8_t attempts; int16_t compact_calls; int8_t compact_ok;
    int64_t migrated, scanned, reclaimed, swapped, stall_ns; double access;
    int8_t last_rc;               /* the last direct compaction's result (C_*), -1 when none ran */
    int16_t reclaim_calls;        /* direct reclaim calls (allocstall) of the fault */
    int32_t steps[MAX_STEPS];     /* the path the fault took (engine.h ST_*; engine.py formats `why`) */
    int nsteps;
} Outcome;

/* One step of the fault's path: kind (ST_*), code (a result or reason), node (-1: none). The last slot
   says ST_MORE when the path is longer than the log. */
static void step(Outcome *o, int kind, int code, int node) {
    if (o->nsteps >= MAX_STEPS) return;
    if (o->nsteps == MAX_STEPS - 1) kind = ST_MORE, code = 0, node = -1;
    o->steps[o->nsteps++] = STEP(kind, code, node);
}

static int node_of_pfn(Engine *e, int64_t pfn) { return node_of_block(e, block_of(e, pfn)); }

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

/* Try the plan's attempts (one __alloc_pages_slowpath() each) until one succeeds. Each decision is
   logged as a step (why the fault went where it went). */
static int64_t thp_attempts(Engine *e, int local, int madvised, Outcome *o) {
    double us = 0;
    for (int a = 0; a < e->nplan[madvised]; a++) {
        int32_t *at = e->plan[madvised][a];
        int order = at[0], only = at[1] ? local : -1, direct = at[2], ksw = at[3], noretry = at[4];
        int64_t pfn, m = 0, s = 0, swp = 0;
        o->attempts++;
        step(o, ST_ATTEMPT, (only >= 0 ? 1 : 0) | (direct ? 2 : 0) | (noretry ? 4 : 0), order);
        /* fast path at the low watermark */
        pfn = alloc_zonelist(e, local, only, order, MT_MOVABLE, PK_PINNED, 0, 1);
        step(o, ST_FAST, pfn >= 0, pfn >= 0 ? node_of_pfn(e, pfn) : -1);
        if (pfn >= 0) goto done;
        if (ksw) { wake_kswapds(e, local, only, order, direct); step(o, ST_WAKE, 0, -1); }
        if (e->sp_thisnode_nowait && only >= 0 && !direct) { step(o, ST_BAIL, B_THISNODE_NOWAIT, -1); continue; }
        if (e->sp_min_retry) {
            pfn = alloc_zonelist(e, local, only, order, MT_MOVABLE, PK_PINNED, 0, 0);
            step(o, ST_MIN, pfn >= 0, pfn >= 0 ? node_of_pfn(e, pfn) : -1);
            if (pfn >= 0) goto done;
        }
        if (!direct) { step(o, ST_BAIL, B_NO_DIRECT, -1); continue; }
        int rc = direct_compact(e, local, only, order, PRIO_ASYNC, &m, &s, &pfn);
        o->last_rc = (int8_t)rc;
        us += e->p[P_COMPACT_CALL_US] + s * e->p[P_SCAN_NS] / 1000.0 + m * e->p[P_MIGRATE_US];
        o->migrated += m; o->scanned += s;
        count_stall(e, rc, pfn >= 0, o);
        step(o, ST_COMPACT, rc | PRIO_ASYNC << 4, pfn >= 0 ? node_of_pfn(e, pfn) : -1);
        if (pfn >= 0) { o->compact_ok = 1; goto done; }
        int skip_or_def = rc == C_SKIPPED || rc == C_DEFERRED;
        if (e->sp_bail_skip_mode == 1 && skip_or_def) { step(o, ST_BAIL, B_COSTLY_SKIPPED, -1); continue; }  /* 5.4 b39d0ee2632d */
        if (e->sp_bail_skip_mode == 2 && noretry && skip_or_def) { step(o, ST_BAIL, B_NORETRY_SKIPPED, -1); continue; }  /* 5.6+ cc638f329ef6 */
        if (e->sp_bail_thisnode && noretry && only >= 0) { step(o, ST_BAIL, B_THISNODE_NORETRY, -1); continue; }  /* 9c9828d3ead6 */
        if (e->sp_bail_deferred_noretry && noretry && rc == C_DEFERRED) { step(o, ST_BAIL, B_NORETRY_DEFERRED, -1); continue; }
        int prio = (e->sp_second_sync && !noretry) ? PRIO_SYNC_LIGHT : PRIO_ASYNC;
        int64_t returned = 0;
        int64_t got = direct_reclaim(e, local, only, order, &swp, &returned);
        o->reclaim_calls++;
        o->reclaimed += returned; o->swapped += swp;   /* as the trace's nr_reclaimed counts */
        us += (got - swp) * e->p[P_RECLAIM_US] + swp * e->p[P_SWAP_OUT_US];
        step(o, ST_RECLAIM, swp > 0, -1);
        pfn = alloc_zonelist(e, local, only, order, MT_MOVABLE, PK_PINNED, 0, 0);
        /* __alloc_pages_direct_reclaim(): after progress, a failed attempt drains the per-cpu lists
           (drain_all_pages) and tries once more */
        if (pfn < 0 && returned > 0) { pcp_drain_all(e); pfn = alloc_zonelist(e, local, only, order, MT_MOVABLE, PK_PINNED, 0, 0); }
        step(o, ST_AFTER_RECLAIM, pfn >= 0, pfn >= 0 ? node_of_pfn(e, pfn) : -1);
        if (pfn >= 0) goto done;
        m = s = 0;
        rc = direct_compact(e, local, only, order, prio, &m, &s, &pfn);
        o->last_rc = (int8_t)rc;
        us += (e->p[P_COMPACT_CALL_US] + s * e->p[P_SCAN_NS] / 1000.0 + m * e->p[P_MIGRATE_US])
              * (prio == PRIO_ASYNC ? 1.0 : e->p[P_SYNC_FACTOR]);
        o->migrated += m; o->scanned += s;
        count_stall(e, rc, pfn >= 0, o);
        step(o, ST_COMPACT, rc | prio << 4, pfn >= 0 ? node_of_pfn(e, pfn) : -1);
        if (pfn >= 0) { o->compact_ok = 1; goto done; }
        step(o, ST_BAIL, noretry ? B_NORETRY_GIVE_UP : B_COSTLY_GIVE_UP, -1);
        continue;   /* NORETRY, or a costly order without __GFP_RETRY_MAYFAIL: give up */
    done:
        o->stall_ns = (int64_t)(us * 1000.0);
        return pfn;
    }
    /* the slowpath's time only: engine.py adds the fault's entry cost (the same span as the trace's
       thp_faults.latency_ns; zeroing is after the allocation and in neither) */
    o->stall_ns = (int64_t)(us * 1000.0);
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
        if (off + n <= PB_PAGES) {   /* pages the model still has on a per-cpu list: handed out from it */
            for (int i = off; i < off + n; i++) if (bit_get(B->pcp, i)) pcp_take(e, b, i);
            if (order == 0 && pcp_on(e, B)) e->zones[B->zone].pcp_factor >>= 1;   /* rmqueue_pcplist() */
        }
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
    for (int i = off; i < off + n; i++) inuse += bit_get(B->used, i) && !bit_get(B->pcp, i);
    if (inuse == 0) {
        /* the kernel put something here the trace never showed: a migration target */
        for (int i = 0; i < n; i++) free_a_migrated_page(e);
        e->k[K_FREE_UNKNOWN]++;
        return;
    }
    if (inuse < n) {   /* part of it was already free (a page the kernel had migrated): free the rest */
        for (int i = off; i < off + n; i++) if (bit_get(B->used, i) && !bit_get(B->pcp, i)) release(e, b, i, 1);
        e->k[K_FREE_UNKNOWN]++;
        return;
    }
    if (n == 1) pcp_free(e, b, off);   /* free_unref_page(): onto the per-cpu list */
    else release(e, b, off, n);
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

/* One memory_series row per node: ts, node, free pages, free pageblocks, free blocks of each order
   0..NORD-1 (nr_free summed over the node's zones), and the node's pageblocks by migratetype
   (unmovable, movable, reclaimable): SERIES_W int64 each (engine.py SERIES_COLUMNS). */
static void sample(Engine *e, int64_t ts) {
    for (int n = 0; n < e->nnodes; n++) {
        if (e->nseries + SERIES_W > e->capseries) {
            int64_t cap = e->capseries ? e->capseries * 2 : 4096 * SERIES_W;
            int64_t *s = realloc(e->series, cap * sizeof(int64_t));
            if (!s) return;
            e->series = s; e->capseries = cap;
        }
        int64_t *row = &e->series[e->nseries];
        memset(row, 0, SERIES_W * sizeof(int64_t));
        row[0] = ts; row[1] = n;
        for (int i = 0; i < e->nzones; i++) {
            Zone *z = &e->zones[i];
            if (z->node != n) continue;
            row[2] += z->free_pages; row[3] += z->nr_free[NORD - 1];
            for (int j = 0; j < NORD; j++) row[4 + j] += z->nr_free[j];
            for (int64_t b = z->b0; b < z->b1 && b < e->nblocks; b++) {
                if (e->blocks[b].zone < 0 || &e->zones[e->blocks[b].zone] != z) continue;
                int mt = e->blocks[b].mt;
                if (mt >= 0 && mt <= MT_RECLAIMABLE) row[4 + NORD + mt]++;
            }
        }
        e->nseries += SERIES_W;
    }
}

/* ---------- Python glue ---------- */

static void engine_free(PyObject *cap) {
    Engine *e = PyCapsule_GetPointer(cap, "thpreplay.engine");
    if (!e) return;
    for (int i = 0; i < e->nzones; i++) free(e->zones[i].pcpq);
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

/* new(zones:int64[nz*16], zonelist:int32[nn*64], dist:int32[nn*nn], block_zone:int16[nb], block_mt:int8[nb],
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
    e->nzones = (int)(zb.buf.len / 8 / ZONE_ROW);
    int nn = 0;
    e->zones = calloc(e->nzones, sizeof(Zone));
    for (int i = 0; i < e->nzones; i++) {
        Zone *z = &e->zones[i];
        int64_t *r = &zz[i * ZONE_ROW];
        z->node = (int)r[0]; z->type = (int)r[1]; z->b0 = r[2]; z->b1 = r[3];
        z->wmin = r[4]; z->wlow = r[5]; z->whigh = r[6]; z->reserve = r[7];
        z->defer_shift = (int)r[8]; z->considered = (int)r[9]; z->order_failed = (int)r[10];
        z->pcp_count = z->pcp_phantom = r[12]; z->pcp_high = r[13]; z->pcp_batch = r[14];
        z->cmig[0] = z->cmig[1] = z->b0 * PB_PAGES; z->cfree = (z->b1 - 1) * PB_PAGES; z->init_migrate = -1; z->init_free = -1;
        /* compact_cached_*_pfn and compact_init_*_pfn where the trace's first compaction of the zone
           shows a skip-bit reset's (state.py, _with_cached_positions), else the zone's ends */
        if (r[16] >= 0 && r[17] >= 0) { z->cmig[0] = z->cmig[1] = r[16]; z->cfree = r[17]; }
        if (r[18] >= 0 && r[19] >= 0) { z->init_migrate = r[18]; z->init_free = r[19]; }
        for (int m = 0; m < NMT; m++) {
            z->hcur[m] = z->b0; z->hfail[m] = NORD;
            for (int j = 0; j < NORD; j++) z->head[m][j] = z->tail[m][j] = -1;
            for (int j = 0; j < NORD; j++) z->fcur[j] = z->mcur[j] = -1;
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
    if (e->p[P_SHUFFLE_LISTS] != 0) shuffle_free_lists(e);
    e->next_sample = INT64_MIN;
    e->next_proactive = INT64_MIN;
    e->next_key = -(nregions * PB_PAGES) - 16;
    if (map_init(&e->fwd, 1 << 16) || map_init(&e->rev, 1 << 16)) { PyErr_NoMemory(); goto fail; }
    for (int i = 0; i < 15; i++) relbuf(all[i]);
    return PyCapsule_New(e, "thpreplay.engine", engine_free);
fail:
    for (int i = 0; i < 15; i++) relbuf(all[i]);
    if (e) { for (int i = 0; i < e->nzones; i++) free(e->zones[i].pcpq); free(e->zones); free(e->blocks); free(e->regions); free(e); }
    return NULL;
}

/* run(engine, kind:int8, ts:int64, pfn:int64, order:int8, mt:int8, pkind:int8, node:int16, region:int64,
       madvised:int8, out_result:int8, out_node:int16, out_attempts:int8, out_compact:int16, out_compact_ok:int8,
       out_migrated:int64, out_scanned:int64, out_reclaimed:int64, out_swapped:int64, out_stall:int64,
       out_access:float64, out_compact_result:int8, out_reclaim_calls:int16, out_steps:int32[nfaults*MAX_STEPS]).
       Outputs are indexed by region (= fault) number. */
static PyObject *py_run(PyObject *self, PyObject *args) {
    PyObject *cap, *o[23];
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOOOOOOOOOOOOOOO", &cap, &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6],
                          &o[7], &o[8], &o[9], &o[10], &o[11], &o[12], &o[13], &o[14], &o[15], &o[16], &o[17],
                          &o[18], &o[19], &o[20], &o[21], &o[22]))
        return NULL;
    Engine *e = PyCapsule_GetPointer(cap, "thpreplay.engine");
    if (!e) return NULL;
    static const int sizes[23] = {1, 8, 8, 1, 1, 1, 2, 8, 1, 1, 2, 1, 2, 1, 8, 8, 8, 8, 8, 8, 1, 2, 4};
    Buf b[23];
    for (int i = 0; i < 23; i++) b[i].ok = 0;
    for (int i = 0; i < 23; i++)
        if (getbuf(o[i], &b[i], sizes[i], i >= 9)) { for (int k = 0; k < 23; k++) relbuf(&b[k]); return NULL; }
    /* every per-fault output holds as many faults as the first (the steps MAX_STEPS each) */
    for (int i = 10; i < 23; i++)
        if (b[i].buf.len / sizes[i] != b[9].buf.len * (i == 22 ? MAX_STEPS : 1)) {
            PyErr_SetString(PyExc_ValueError, "per-fault outputs of different lengths");
            for (int k = 0; k < 23; k++) relbuf(&b[k]);
            return NULL;
        }
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
            ((int64_t *)b[18].buf.buf)[r] = oc.stall_ns;
            ((double *)b[19].buf.buf)[r] = oc.access;
            ((int8_t *)b[20].buf.buf)[r] = oc.last_rc;
            ((int16_t *)b[21].buf.buf)[r] = oc.reclaim_calls;
            memcpy((int32_t *)b[22].buf.buf + r * MAX_STEPS, oc.steps, sizeof(oc.steps));
            break;
        }
        case OP_RELEASE: if (region[i] >= 0 && region[i] < e->nregions) region_release(e, region[i]); break;
        case OP_MIGRATE: for (int j = 0; j < (1 << order[i]) && j < PB_PAGES; j++) kernel_migrated(e, pfn[i] + j); break;
        case OP_STEAL: trace_steal(e, pfn[i], order[i], mt[i], pk[i]); break;
        }
    }
    Py_END_ALLOW_THREADS
    for (int k = 0; k < 23; k++) relbuf(&b[k]);
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
    int64_t zfree[256] = {0}, znr[256][NORD], zpcp[256] = {0};
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
            /* a page on a per-cpu list is in use for the buddy allocator and belongs to no LRU */
            if (B->pcp[i] & ~B->used[i]) return PyUnicode_FromFormat("block %lld: a per-cpu list page is free in the buddy", (long long)b);
            if (B->pcp[i] & (B->anon[i] | B->file[i] | B->mlock[i] | B->traced[i])) return PyUnicode_FromFormat("block %lld: a per-cpu list page is on an LRU", (long long)b);
            zpcp[B->zone] += __builtin_popcountll(B->pcp[i]);
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
        if (z->pcp_count - z->pcp_phantom != zpcp[i] || z->pcp_phantom < 0) return PyUnicode_FromFormat("zone %d: per-cpu list counts %lld (%lld phantoms), blocks say %lld", i, (long long)z->pcp_count, (long long)z->pcp_phantom, (long long)zpcp[i]);
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

/* per zone: (pages on the per-cpu list, of them phantoms) (tests) */
static PyObject *py_pcp(PyObject *self, PyObject *args) {
    PyObject *cap;
    if (!PyArg_ParseTuple(args, "O", &cap)) return NULL;
    Engine *e = PyCapsule_GetPointer(cap, "thpreplay.engine");
    if (!e) return NULL;
    PyObject *l = PyList_New(e->nzones);
    if (!l) return NULL;
    for (int i = 0; i < e->nzones; i++)
        PyList_SET_ITEM(l, i, Py_BuildValue("(LL)", (long long)e->zones[i].pcp_count, (long long)e->zones[i].pcp_phantom));
    return l;
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
    {"pcp", py_pcp, METH_VARARGS, "Per zone: (pages on the per-cpu list, of them phantoms)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_engine", "thpreplay replay core", -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__engine(void) { return PyModule_Create(&module); }
