/* A native reader of perf.data files (perf record's output) for `thpreplay ingest`.

   It prints the lines `perf script -F comm,tid,cpu,time,event,trace --ns` prints for the same file,
   so the text parser (parse/text.py) builds the tables exactly as it does from perf's text, without
   running perf. What it reads follows tools/perf/Documentation/perf.data-file-format.txt and, for
   the details that decide what perf prints, perf 6.1's own code:
   - the file header, the attrs and their ids (util/header.c perf_session__read_header): which event a
     sample belongs to comes from its id (PERF_SAMPLE_IDENTIFIER or PERF_SAMPLE_ID);
   - the feature sections HEADER_TRACING_DATA (util/trace-event-read.c: the tracepoints' format files),
     HEADER_OSRELEASE, HEADER_NRCPUS, HEADER_EVENT_DESC (the event names perf prints) and
     HEADER_COMPRESSED (the zstd buffer size);
   - the records: samples (PERF_SAMPLE_TID/TIME/CPU/RAW ...), COMM and FORK (the task name printed at a
     sample is its thread's latest comm, a forked thread starts with its parent's: util/thread.c),
     LOST and LOST_SAMPLES (counted), COMPRESSED (zstd, one stream over the file: util/session.c),
     FINISHED_ROUND (util/ordered-events.c: events are queued and, at each round's end, those up to
     the previous round's newest timestamp are delivered in time order, equal times in file order;
     records without a timestamp are delivered at once).
   The trace text of a sample (the tracepoint's print fmt applied to its raw data) is printed by
   libtraceevent, the library perf and trace-cmd print it with, loaded at run time (libtraceevent.so.1).
   zstd is loaded at run time too (libzstd.so.1): the extension builds without either's headers.

   The typed route (read_typed, parse/perfdata.py) prints only what it has to: for an event with a plan
   (slots: a printed key's value as a tpformat program over the raw fields) the values are computed and
   returned as int64 columns with the sample's line number; the rest, and a sample whose values the text
   parser would judge (bounds, an odd comm), is printed as above and numbered line by line.

   Anything this reader does not handle (pipe-mode files, another byte order, AUX data, a
   directory-format file, tracepoint samples without raw data) is reported as unsupported with the
   reason, and ingest falls back to perf script. A malformed file is an error with the reason.
   Every length is checked against the buffer it describes; no size field makes it allocate more
   than the caps below; nothing recurses on the file's data. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tpprog.h"   /* the numeric programs' arithmetic and the check of a printed value */

/* ---- caps ---- */
#define MAX_ATTRS 4096                 /* events in one file (perf record -e ... lists far fewer) */
#define MAX_IDS (1u << 22)             /* sample ids over all attrs (one per event per cpu/thread) */
#define MAX_FEATURE_BYTES (256u << 20) /* a feature section read into memory (tracing data ~ 1-20 MB) */
#define MAX_QUEUE_BYTES (2048ull << 20) /* events held for ordering between two round ends */
#define MAX_COMM 4096
#define SCRATCH_BYTES ((64u << 10) + (128u << 10) + 8)  /* a record's most, and past it what a __data_loc can reach */

/* ---- perf ABI constants (include/uapi/linux/perf_event.h, tools/lib/perf/include/perf/event.h) ---- */
enum {
    S_IP = 1 << 0, S_TID = 1 << 1, S_TIME = 1 << 2, S_ADDR = 1 << 3, S_READ = 1 << 4,
    S_CALLCHAIN = 1 << 5, S_ID = 1 << 6, S_CPU = 1 << 7, S_PERIOD = 1 << 8, S_STREAM_ID = 1 << 9,
    S_RAW = 1 << 10, S_IDENTIFIER = 1 << 16,
};
enum { RF_TOTAL_TIME_ENABLED = 1, RF_TOTAL_TIME_RUNNING = 2, RF_ID = 4, RF_GROUP = 8, RF_LOST = 16 };
enum {
    R_MMAP = 1, R_LOST = 2, R_COMM = 3, R_EXIT = 4, R_FORK = 7, R_SAMPLE = 9, R_LOST_SAMPLES = 13,
    R_HEADER_ATTR = 64, R_HEADER_EVENT_TYPE = 65, R_HEADER_TRACING_DATA = 66, R_FINISHED_ROUND = 68,
    R_AUXTRACE = 71, R_COMPRESSED = 81,
};
enum {
    F_TRACING_DATA = 1, F_OSRELEASE = 4, F_NRCPUS = 7, F_EVENT_DESC = 12, F_DIR_FORMAT = 24,
    F_COMPRESSED = 27, F_LAST_KNOWN = 31, F_BITS = 256,
};
#define PERF_TYPE_TRACEPOINT 2

/* ---- libtraceevent and libzstd, loaded at run time ---- */
struct trace_seq { char *buffer; unsigned int buffer_size, len, readpos; int state; };
struct tep_record {  /* libtraceevent's event-parse.h */
    unsigned long long ts, offset;
    long long missed_events;
    int record_size, size;
    void *data;
    int cpu, ref_count, locked;
    void *priv;
    char spare[64];  /* room for debug fields of other builds, never read */
};
static struct {
    int tried, ok;
    char why[200];
    void *(*alloc)(void);
    void (*free_)(void *);
    int (*parse_event)(void *, const char *, unsigned long, const char *);
    void *(*find_event)(void *, int);
    void (*print_event)(void *, struct trace_seq *, struct tep_record *, const char *, ...);
    void (*set_long_size)(void *, int);
    void (*set_page_size)(void *, int);
    void (*set_file_bigendian)(void *, int);
    void (*seq_init)(struct trace_seq *);
    void (*seq_reset)(struct trace_seq *);
    void (*seq_destroy)(struct trace_seq *);
} tep;

typedef struct { const void *src; size_t size, pos; } ZIn;
typedef struct { void *dst; size_t size, pos; } ZOut;
static struct {
    int tried, ok;
    void *(*create)(void);
    size_t (*init)(void *);
    size_t (*decompress)(void *, ZOut *, ZIn *);
    unsigned (*is_error)(size_t);
    const char *(*error_name)(size_t);
    size_t (*free_)(void *);
} zstd;

static int load_tep(void) {
    if (tep.tried) return tep.ok;
    tep.tried = 1;
    void *h = dlopen("libtraceevent.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(tep.why, sizeof tep.why, "libtraceevent.so.1 (Debian: libtraceevent1) is not installed");
        return 0;
    }
#define SYM(field, name) if (!(*(void **)&tep.field = dlsym(h, name))) { \
        snprintf(tep.why, sizeof tep.why, "libtraceevent.so.1 has no %s", name); return 0; }
    SYM(alloc, "tep_alloc") SYM(free_, "tep_free") SYM(parse_event, "tep_parse_event")
    SYM(find_event, "tep_find_event") SYM(print_event, "tep_print_event")
    SYM(set_long_size, "tep_set_long_size") SYM(set_page_size, "tep_set_page_size")
    SYM(set_file_bigendian, "tep_set_file_bigendian") SYM(seq_init, "trace_seq_init")
    SYM(seq_reset, "trace_seq_reset") SYM(seq_destroy, "trace_seq_destroy")
#undef SYM
    tep.ok = 1;
    return 1;
}

static int load_zstd(void) {
    if (zstd.tried) return zstd.ok;
    zstd.tried = 1;
    void *h = dlopen("libzstd.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) return 0;
#define SYM(field, name) if (!(*(void **)&zstd.field = dlsym(h, name))) return 0;
    SYM(create, "ZSTD_createDStream") SYM(init, "ZSTD_initDStream")
    SYM(decompress, "ZSTD_decompressStream") SYM(is_error, "ZSTD_isError")
    SYM(error_name, "ZSTD_getErrorName") SYM(free_, "ZSTD_freeDStream")
#undef SYM
    zstd.ok = 1;
    return 1;
}

/* ---- the reader ---- */
/* A typed route plan slot: one printed key's value, computed from the raw record by a tpformat
   program (parse/perfdata.py builds it), with what the text parser would make of the printed value. */
#define MAX_SLOTS 8
typedef struct {
    int64_t *code; int ncode; int interp; int64_t lo, hi; char key[64];
    int fast;  /* the program is one field, maybe cast: read it directly (most are) */
    int64_t f_off, f_size, f_sign, f_bits, f_bsign;
} Slot;
/* VERIFY samples of each typed event are printed by libtraceevent too and the typed values compared with
   what it printed (verify_sample): a difference drops the plan, before any typed row of the event */
#define VERIFY 64
/* a gfp mask's printed names, as libtraceevent printed them for the first sample with that mask */
typedef struct { int64_t attr_slot; uint64_t value; int used; } GfpKey;
typedef struct { int nslots; Slot slots[MAX_SLOTS]; } Plan;
typedef struct { int64_t *v; size_t n, cap; } I64Buf;

typedef struct {
    uint32_t type;
    uint64_t config, sample_type, read_format, flags;
    int sample_id_all;
    char name[256];
    void *event;  /* libtraceevent's tep_event, tracepoints only */
    Plan *plan;   /* the typed route's, NULL: its samples are printed as text */
    int verify_left, dropped;
    char drop_reason[200];
    int raw_size_min;  /* the format's fields end here: a shorter raw record cannot be one of this event */
} Attr;

typedef struct { uint64_t id; int attr; } IdMap;

typedef struct { int32_t tid; int32_t pid; char *comm; int set; int64_t comm_id; } Thread;  /* comm_id: -1 none yet, -2 odd */


typedef struct { uint64_t ts, seq; uint64_t off; uint32_t len; } Queued;

typedef struct {
    PyObject_HEAD
    FILE *f;
    uint64_t file_size, data_off, data_size, data_pos;
    Attr *attrs; int nattrs;
    IdMap *ids; size_t nids;
    IdMap id_cache[256];
    int id_from_identifier;  /* id is the first u64 of a sample (PERF_SAMPLE_IDENTIFIER) */
    int id_pos;              /* else its u64 index in a sample, -1: no ids (one attr) */
    int trailer_id_pos;      /* u64 index of the id from the end of a non-sample record, -1: none */
    void *tep;
    struct trace_seq seq;
    int name_width;
    char osrelease[256];
    long nr_cpus_online, nr_cpus_avail;
    int unknown_features[8], nunknown;  /* feature bits past the ones perf 6.1 knows: skipped */
    uint64_t comp_mmap_len;
    /* zstd */
    void *zds;
    unsigned char *zout; size_t zout_len, zout_cap;  /* decompressed bytes not yet processed */
    /* ordering */
    unsigned char *arena; size_t arena_len, arena_cap;
    unsigned char *spare; size_t spare_cap;
    unsigned char *scratch; size_t scratch_dirty;  /* a sample's raw data, zeros after it (SCRATCH_BYTES) */
    Queued *queue; size_t nqueue, queue_cap;
    uint64_t seq_no, max_ts, next_flush, last_flush;
    /* threads */
    Thread *threads; size_t nthreads, threads_cap;
    /* output */
    char *out; size_t out_len, out_cap;
    uint64_t lines, samples, lost, lost_samples, lost_records, unordered, skipped_records;
    uint64_t compressed_records, no_raw_samples;
    struct { long id; int end; char name[128]; char *text; size_t len; } *fmt_ends; size_t nfmt, fmt_cap;  /* each format's fields end, sys:name, text */
    /* the typed route (read_typed): per chunk, the typed rows' columns, and the other samples as text */
    int typed_mode, max_slots;
    int64_t text_first;  /* samples still to print as text whatever their plan (the first chunk's sample of lines) */
    GfpKey *gfp; size_t ngfp, gfp_cap;   /* masks met (open addressing) */
    struct { int64_t attr_slot; uint64_t value; char text[512]; } *gfp_new; size_t ngfp_new, gfp_new_cap;
    I64Buf t_line, t_attr, t_tid, t_cpu, t_ts, t_comm, t_slot[MAX_SLOTS], x_line;
    int64_t ncomms;
    char *new_comms; size_t new_comms_len, new_comms_cap;  /* comm strings named since the last read, NUL-separated */
    int64_t c_min, c_max, c_first, c_last, c_prev; uint64_t c_back; int c_any;
    int eof, seq_inited;
    char error[400];
    int unsupported;
} Reader;

static void fail(Reader *r, int unsupported, const char *fmt, ...) {
    if (r->error[0]) return;  /* the first problem is the one reported */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof r->error, fmt, ap);
    va_end(ap);
    r->unsupported = unsupported;
}

static int read_at(Reader *r, uint64_t off, void *buf, size_t n) {
    if (off > r->file_size || n > r->file_size - off) {
        fail(r, 0, "truncated: %zu bytes at offset %llu run past the end of the file (%llu bytes)",
             n, (unsigned long long)off, (unsigned long long)r->file_size);
        return 0;
    }
    if (fseeko(r->f, (off_t)off, SEEK_SET) != 0 || fread(buf, 1, n, r->f) != n) {
        fail(r, 0, "read error at offset %llu: %s", (unsigned long long)off, strerror(errno));
        return 0;
    }
    return 1;
}

static uint64_t u64_at(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t u32_at(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }

/* ---- output buffer ---- */
static int out_reserve(Reader *r, size_t n) {
    if (r->out_len + n <= r->out_cap) return 1;
    size_t cap = r->out_cap ? r->out_cap : (1 << 20);
    while (cap < r->out_len + n) cap *= 2;
    char *p = realloc(r->out, cap);
    if (!p) { fail(r, 0, "out of memory"); return 0; }
    r->out = p; r->out_cap = cap;
    return 1;
}

/* ---- threads (util/machine.c, util/thread.c) ---- */
static size_t thread_slot(Reader *r, int32_t tid) {
    size_t mask = r->threads_cap - 1, i = ((uint32_t)tid * 2654435761u) & mask;
    while (r->threads[i].comm != NULL) {
        if (r->threads[i].tid == tid) return i;
        i = (i + 1) & mask;
    }
    return i;
}

static Thread *find_thread(Reader *r, int32_t tid) {
    if (!r->threads_cap) return NULL;
    size_t i = thread_slot(r, tid);
    return r->threads[i].comm ? &r->threads[i] : NULL;
}

static int set_comm(Thread *t, const char *comm, size_t n) {
    char *c = malloc(n + 1);
    if (!c) return 0;
    memcpy(c, comm, n);
    c[n] = 0;
    free(t->comm);
    t->comm = c;
    t->comm_id = -1;
    return 1;
}

/* perf's machine__findnew_thread: a thread first seen is named ":tid" until a COMM names it. */
static Thread *findnew_thread(Reader *r, int32_t pid, int32_t tid) {
    if (r->nthreads * 2 >= r->threads_cap) {
        size_t cap = r->threads_cap ? r->threads_cap * 2 : 1024;
        Thread *old = r->threads;
        size_t oldcap = r->threads_cap;
        r->threads = calloc(cap, sizeof(Thread));
        if (!r->threads) { r->threads = old; fail(r, 0, "out of memory"); return NULL; }
        r->threads_cap = cap;
        for (size_t i = 0; i < oldcap; i++)
            if (old[i].comm) r->threads[thread_slot(r, old[i].tid)] = old[i];
        free(old);
    }
    size_t i = thread_slot(r, tid);
    Thread *t = &r->threads[i];
    if (!t->comm) {
        char name[24];
        int n = snprintf(name, sizeof name, ":%d", (int)tid);
        t->tid = tid;
        t->pid = pid;
        t->set = 0;
        if (!set_comm(t, name, (size_t)n)) { fail(r, 0, "out of memory"); return NULL; }
        r->nthreads++;
    } else if (t->pid == -1 && pid != -1) {
        t->pid = pid;
    }
    return t;
}

/* ---- event lookup ---- */
static int attr_of_id(Reader *r, uint64_t id) {
    /* a direct-mapped cache in front of the binary search: ids repeat (one per event and cpu) */
    IdMap *c = &r->id_cache[(id ^ (id >> 8)) & 255];
    if (c->attr > 0 && c->id == id) return c->attr - 1;
    size_t lo = 0, hi = r->nids;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (r->ids[mid].id < id) lo = mid + 1;
        else hi = mid;
    }
    int a = lo < r->nids && r->ids[lo].id == id ? r->ids[lo].attr : -1;
    if (a >= 0) { c->id = id; c->attr = a + 1; }  /* attr + 1: 0 is an empty entry */
    return a;
}

/* The attr of a sample (its id) or of a non-sample record's trailer (sample_id_all). */
static int sample_attr(Reader *r, const unsigned char *body, size_t n) {
    if (r->nattrs == 1) return 0;
    uint64_t id;
    if (r->id_from_identifier) {
        if (n < 8) return -1;
        id = u64_at(body);
    } else if (r->id_pos >= 0) {
        if (n < (size_t)(r->id_pos + 1) * 8) return -1;
        id = u64_at(body + r->id_pos * 8);
    } else {
        return 0;
    }
    return attr_of_id(r, id);
}

static int trailer_attr(Reader *r, const unsigned char *body, size_t n) {
    if (r->nattrs == 1) return 0;
    if (r->trailer_id_pos < 0) return -1;
    if (n < (size_t)(r->trailer_id_pos + 1) * 8) return -1;
    return attr_of_id(r, u64_at(body + n - (size_t)(r->trailer_id_pos + 1) * 8));
}

/* The time in a non-sample record's trailer; 0: none (delivered at once, as perf does). */
static uint64_t trailer_time(Reader *r, const unsigned char *body, size_t n) {
    int a = trailer_attr(r, body, n);
    if (a < 0) return 0;
    Attr *at = &r->attrs[a];
    if (!at->sample_id_all || !(at->sample_type & S_TIME)) return 0;
    /* from the end: IDENTIFIER, CPU, STREAM_ID, ID, TIME (perf_evsel__parse_id_sample) */
    size_t back = 1;
    if (at->sample_type & S_IDENTIFIER) back++;
    if (at->sample_type & S_CPU) back++;
    if (at->sample_type & S_STREAM_ID) back++;
    if (at->sample_type & S_ID) back++;
    if (n < back * 8) return 0;
    return u64_at(body + n - back * 8);
}

typedef struct { uint32_t pid, tid, cpu; uint64_t time; const unsigned char *raw; uint32_t raw_size; int attr; } Sample;

/* Parse a sample's fields up to its raw data (perf_evsel__parse_sample). 0: malformed. */
static int parse_sample(Reader *r, const unsigned char *body, size_t n, Sample *s) {
    memset(s, 0, sizeof *s);
    s->attr = sample_attr(r, body, n);
    if (s->attr < 0) { fail(r, 0, "a sample's id matches no event of the file"); return 0; }
    Attr *a = &r->attrs[s->attr];
    uint64_t t = a->sample_type;
    size_t p = 0;
#define NEED(k) if (n - p < (size_t)(k)) { fail(r, 0, "a sample record is shorter than its fields"); return 0; }
    if (t & S_IDENTIFIER) { NEED(8) p += 8; }
    if (t & S_IP) { NEED(8) p += 8; }
    if (t & S_TID) { NEED(8) s->pid = u32_at(body + p); s->tid = u32_at(body + p + 4); p += 8; }
    if (t & S_TIME) { NEED(8) s->time = u64_at(body + p); p += 8; }
    if (t & S_ADDR) { NEED(8) p += 8; }
    if (t & S_ID) { NEED(8) p += 8; }
    if (t & S_STREAM_ID) { NEED(8) p += 8; }
    if (t & S_CPU) { NEED(8) s->cpu = u32_at(body + p); p += 8; }
    if (t & S_PERIOD) { NEED(8) p += 8; }
    if (t & S_READ) {
        uint64_t rf = a->read_format;
        size_t per = 8 + ((rf & RF_ID) ? 8 : 0) + ((rf & RF_LOST) ? 8 : 0);
        size_t fixed = ((rf & RF_TOTAL_TIME_ENABLED) ? 8 : 0) + ((rf & RF_TOTAL_TIME_RUNNING) ? 8 : 0);
        if (rf & RF_GROUP) {
            NEED(8)
            uint64_t nr = u64_at(body + p);
            p += 8;
            NEED(fixed)
            p += fixed;
            if (nr > (n - p) / per) { fail(r, 0, "a sample's read group runs past its record"); return 0; }
            p += nr * per;
        } else {
            NEED(fixed + per)
            p += fixed + per;
        }
    }
    if (t & S_CALLCHAIN) {
        NEED(8)
        uint64_t nr = u64_at(body + p);
        p += 8;
        if (nr > (n - p) / 8) { fail(r, 0, "a sample's callchain runs past its record"); return 0; }
        p += nr * 8;
    }
    if (t & S_RAW) {
        NEED(4)
        uint32_t size = u32_at(body + p);
        p += 4;
        if (size > n - p) { fail(r, 0, "a sample's raw data runs past its record"); return 0; }
        s->raw = body + p;
        s->raw_size = size;
    }
#undef NEED
    return 1;
}

/* ---- delivery (in time order) ---- */
static void print_u(char **p, uint64_t v, int width, int zero) {
    char tmp[24];
    int n = 0;
    do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    for (int i = n; i < width; i++) *(*p)++ = zero ? '0' : ' ';
    while (n) *(*p)++ = tmp[--n];
}

/* ---- the typed route: a sample's printed keys computed from its raw data, no text ---- */
/* Opcodes of parse/tpformat.py's numeric programs (the subset a typed slot uses; _tracedat.c runs all). */
enum { OP_CONST = 1, OP_FIELD, OP_UN, OP_BIN, OP_CAST, OP_SELECT };

/* 1: the value in *out; 0: a field past the record (the sample then goes the text way). The program
   was checked when set (check_slot): every op is known and the stack stays within 0..64. */
static int eval_slot(const Slot *sl, const unsigned char *raw, uint32_t rlen, int64_t *out) {
    if (sl->fast) {
        if (sl->f_off + sl->f_size > (int64_t)rlen) return 0;
        const unsigned char *q = raw + sl->f_off;
        uint64_t v;
        if (sl->f_size == 1) v = q[0];
        else if (sl->f_size == 2) { uint16_t x; memcpy(&x, q, 2); v = x; }
        else if (sl->f_size == 4) { uint32_t x; memcpy(&x, q, 4); v = x; }
        else memcpy(&v, q, 8);
        int64_t x = sl->f_sign ? cast_bits((int64_t)v, sl->f_size * 8, 1) : (int64_t)v;
        *out = cast_bits(x, sl->f_bits, sl->f_bsign);
        return 1;
    }
    int64_t st[64];
    int sp = 0, pc = 0;
    const int64_t *c = sl->code;
    while (pc < sl->ncode) {
        switch (c[pc]) {
        case OP_CONST: st[sp++] = c[pc + 1]; pc += 2; break;
        case OP_FIELD: {
            int64_t off = c[pc + 1], size = c[pc + 2];
            if (off + size > (int64_t)rlen) return 0;
            const unsigned char *q = raw + off;
            uint64_t v;
            if (size == 1) v = q[0];
            else if (size == 2) { uint16_t x; memcpy(&x, q, 2); v = x; }
            else if (size == 4) { uint32_t x; memcpy(&x, q, 4); v = x; }
            else { memcpy(&v, q, 8); }
            st[sp++] = c[pc + 3] ? cast_bits((int64_t)v, size * 8, 1) : (int64_t)v;
            pc += 4;
            break;
        }
        case OP_UN: {
            int64_t a = st[--sp];
            st[sp++] = c[pc + 1] == 0 ? (int64_t)(0 - (uint64_t)a) : c[pc + 1] == 1 ? !a : ~a;
            pc += 2;
            break;
        }
        case OP_BIN: { int64_t b = st[--sp], a = st[--sp]; st[sp++] = binop(c[pc + 1], a, b); pc += 2; break; }
        case OP_CAST: { int64_t a = st[--sp]; st[sp++] = cast_bits(a, c[pc + 1], c[pc + 2]); pc += 3; break; }
        case OP_SELECT: { int64_t e = st[--sp], t = st[--sp], cond = st[--sp]; st[sp++] = cond ? t : e; pc += 1; break; }
        default: return 0;
        }
    }
    *out = st[0];
    return 1;
}

/* A slot's program: known ops, operands in range, the stack within 1..64 and one value at the end. */
static int check_slot(const Slot *sl) {
    int sp = 0, pc = 0;
    const int64_t *c = sl->code;
    while (pc < sl->ncode) {
        int64_t op = c[pc];
        int width = op == OP_CONST ? 2 : op == OP_FIELD ? 4 : op == OP_UN || op == OP_BIN ? 2 : op == OP_CAST ? 3 : op == OP_SELECT ? 1 : 0;
        int pops = op == OP_UN || op == OP_CAST ? 1 : op == OP_BIN ? 2 : op == OP_SELECT ? 3 : 0;
        if (!width || pc + width > sl->ncode || sp < pops) return 0;
        if (op == OP_FIELD && (c[pc + 1] < 0 || c[pc + 1] > 0xffff || (c[pc + 2] != 1 && c[pc + 2] != 2 && c[pc + 2] != 4 && c[pc + 2] != 8)))
            return 0;
        if ((op == OP_UN && (c[pc + 1] < 0 || c[pc + 1] > 2)) || (op == OP_BIN && (c[pc + 1] < 0 || c[pc + 1] > 17))) return 0;
        sp += 1 - pops;
        if (sp > 64) return 0;
        pc += width;
    }
    return sp == 1;
}

static int grow(Reader *r, I64Buf *b, size_t cap) {
    if (b->cap >= cap) return 1;
    int64_t *p = realloc(b->v, cap * sizeof(int64_t));
    if (!p) { fail(r, 0, "out of memory"); return 0; }
    b->v = p; b->cap = cap;
    return 1;
}

/* The comm of a typed row: an id for the Python side, whose string (leading blanks removed, as the text
   parser reads perf's right-aligned %16s) is sent once. -2: a comm the typed route leaves to the text
   parser (a byte outside printable ASCII, '[' or ']', which the line's prefix uses for the cpu, or a ':'
   that ends the comm or comes before a blank: the ": " after the time, where the text parser's cut of a
   line that is not at fixed columns looks for it first, text._header). Another ':' is typed: the fixed
   columns take the comm as the first 16 bytes, and the regex ends it at the pid before the cpu's '['
   (text._PERF_RE). kworker/1:2 and memfd:... are in every capture: leaving their samples to the text
   parser put a few lines of text, and the text parser's cost per chunk, in almost every typed chunk. */
static int64_t comm_id(Reader *r, Thread *t) {
    if (t->comm_id != -1) return t->comm_id;
    const unsigned char *c = (const unsigned char *)t->comm;
    size_t n = strlen(t->comm);
    for (size_t i = 0; i < n; i++)
        if (c[i] < 0x20 || c[i] > 0x7e || c[i] == '[' || c[i] == ']' || (c[i] == ':' && (i + 1 == n || c[i + 1] == ' ')))
            return t->comm_id = -2;
    while (*c == ' ') { c++; n--; }
    if (r->new_comms_len + n + 1 > r->new_comms_cap) {
        size_t cap = r->new_comms_cap ? r->new_comms_cap * 2 : 4096;
        while (cap < r->new_comms_len + n + 1) cap *= 2;
        char *p = realloc(r->new_comms, cap);
        if (!p) { fail(r, 0, "out of memory"); return -2; }
        r->new_comms = p; r->new_comms_cap = cap;
    }
    memcpy(r->new_comms + r->new_comms_len, c, n);
    r->new_comms[r->new_comms_len + n] = 0;
    r->new_comms_len += n + 1;
    return t->comm_id = r->ncomms++;
}

static void chunk_ts(Reader *r, uint64_t time) {
    int64_t ts = (int64_t)time;
    if (!r->c_any) { r->c_min = r->c_max = r->c_first = ts; r->c_any = 1; }
    else {
        if (ts < r->c_prev) r->c_back++;
        if (ts < r->c_min) r->c_min = ts;
        if (ts > r->c_max) r->c_max = ts;
    }
    r->c_prev = r->c_last = ts;
}

/* libtraceevent's payload text of the sample, in r->seq. */
static void tep_render(Reader *r, const Sample *s) {
    struct tep_record rec;
    memset(&rec, 0, sizeof rec);
    rec.ts = s->time;
    rec.cpu = (int)s->cpu;
    rec.size = (int)s->raw_size;
    rec.record_size = (int)s->raw_size;
    /* libtraceevent reads a __data_loc field at the offset (16 bits) and length (16 bits) the record
       gives, and a %s field up to its NUL, without comparing them with the record's size: the raw data
       is copied into a scratch buffer with 128 KiB of zeros after it, so no such read leaves it */
    memcpy(r->scratch, s->raw, s->raw_size);
    if (r->scratch_dirty > s->raw_size) memset(r->scratch + s->raw_size, 0, r->scratch_dirty - s->raw_size);
    r->scratch_dirty = s->raw_size;
    rec.data = r->scratch;
    tep.seq_reset(&r->seq);
    tep.print_event(r->tep, &r->seq, &rec, "%s", "INFO");
}

/* The value printed after "key=" (at the start or after a blank) up to the next blank, as the text
   parser reads a field (parse/text.py _field_value). */
static int find_token(const char *pay, size_t n, const char *key, const char **tok, size_t *tlen) {
    size_t k = strlen(key);
    for (size_t i = 0; i + k < n; i++) {
        if ((i == 0 || pay[i - 1] == ' ') && memcmp(pay + i, key, k) == 0 && pay[i + k] == '=') {
            size_t j = i + k + 1, e = j;
            while (e < n && pay[e] != ' ') e++;
            *tok = pay + j;
            *tlen = e - j;
            return 1;
        }
    }
    return 0;
}

/* The slots' values as the text parser would read them from the printed line: 1, or 0 when the sample
   needs the text parser's judgement (a value it rejects or reads otherwise). */
static int typed_values(Reader *r, const Sample *s, Attr *a, int64_t *v) {
    Plan *pl = a->plan;
    int32_t tid = (int32_t)s->tid;
    /* the text parser rejects pids past PID_MAX_LIMIT, cpus past NR_CPUS (kernel/events.py) and times
       past int64 nanoseconds */
    if (tid < -1 || tid > 4 * 1024 * 1024 || s->cpu >= 8192 || s->time > (uint64_t)INT64_MAX) return 0;
    for (int j = 0; j < pl->nslots; j++) {
        const Slot *sl = &pl->slots[j];
        int64_t x;
        if (!eval_slot(sl, s->raw, s->raw_size, &x)) return 0;
        uint64_t u = (uint64_t)x;
        switch (sl->interp) {
        case I_SIGNED: if (x < sl->lo || x > sl->hi) return 0; break;
        case I_PFN: if (u == UINT64_MAX) { x = 0; break; }  /* printed -1UL: "no page", as pfn=0 */
            /* fall through */
        case I_UNSIGNED: if (u > (uint64_t)INT64_MAX || x < sl->lo || x > sl->hi) return 0; break;
        case I_PTR: if (!u) return 0;  /* %p prints (nil) */
            /* fall through */
        case I_HEX: case I_GFP: if (u < (uint64_t)sl->lo || u > (uint64_t)sl->hi) return 0; break;
        default: break;
        }
        v[j] = x;
    }
    return 1;
}

/* Is a gfp mask's printed text known? If not, libtraceevent prints this sample and the text is kept:
   1 known or kept, 0 not found in the text (the sample goes the text way). */
static int gfp_known(Reader *r, const Sample *s, Attr *a, int j, uint64_t value) {
    int64_t key = (int64_t)(a - r->attrs) * MAX_SLOTS + j;
    if (r->ngfp * 2 >= r->gfp_cap) {
        size_t cap = r->gfp_cap ? r->gfp_cap * 2 : 256;
        GfpKey *g = calloc(cap, sizeof(GfpKey));
        if (!g) { fail(r, 0, "out of memory"); return 0; }
        for (size_t i = 0; i < r->gfp_cap; i++) {
            if (!r->gfp[i].used) continue;
            size_t h = (size_t)((r->gfp[i].value * 0x9E3779B97F4A7C15ull) ^ (uint64_t)r->gfp[i].attr_slot) & (cap - 1);
            while (g[h].used) h = (h + 1) & (cap - 1);
            g[h] = r->gfp[i];
        }
        free(r->gfp);
        r->gfp = g; r->gfp_cap = cap;
    }
    size_t h = (size_t)((value * 0x9E3779B97F4A7C15ull) ^ (uint64_t)key) & (r->gfp_cap - 1);
    while (r->gfp[h].used) {
        if (r->gfp[h].value == value && r->gfp[h].attr_slot == key) return 1;
        h = (h + 1) & (r->gfp_cap - 1);
    }
    tep_render(r, s);
    const char *tok;
    size_t tlen;
    if (!find_token(r->seq.buffer, r->seq.len, a->plan->slots[j].key, &tok, &tlen) || tlen >= 512) return 0;
    if (r->ngfp_new == r->gfp_new_cap) {
        size_t cap = r->gfp_new_cap ? r->gfp_new_cap * 2 : 64;
        void *q = realloc(r->gfp_new, cap * sizeof *r->gfp_new);
        if (!q) { fail(r, 0, "out of memory"); return 0; }
        r->gfp_new = q; r->gfp_new_cap = cap;
    }
    r->gfp_new[r->ngfp_new].attr_slot = key;
    r->gfp_new[r->ngfp_new].value = value;
    memcpy(r->gfp_new[r->ngfp_new].text, tok, tlen);
    r->gfp_new[r->ngfp_new].text[tlen] = 0;
    r->ngfp_new++;
    r->gfp[h] = (GfpKey){key, value, 1};
    r->ngfp++;
    return 1;
}

/* The typed values of a sample libtraceevent printed (r->seq) against what it printed, as the text parser
   reads it; a difference drops the event's plan (its samples are text from then on), with the reason. */
static void verify_sample(Reader *r, const Sample *s, Attr *a) {
    int64_t v[MAX_SLOTS];
    if (!typed_values(r, s, a, v)) return;  /* text anyway */
    Plan *pl = a->plan;
    static const char failed[] = "[FAILED TO PARSE]";  /* libtraceevent could not read the print fmt */
    if (r->seq.len >= sizeof failed - 1 && !memcmp(r->seq.buffer, failed, sizeof failed - 1)) {
        snprintf(a->drop_reason, sizeof a->drop_reason, "libtraceevent prints it as [FAILED TO PARSE]");
        a->dropped = 1;
        return;
    }
    for (int j = 0; j < pl->nslots && !a->dropped; j++) {
        const Slot *sl = &pl->slots[j];
        const char *tok;
        size_t tlen;
        char t[80];
        if (sl->interp == I_GFP) continue;  /* its text is libtraceevent's own (gfp_known) */
        if (!find_token(r->seq.buffer, r->seq.len, sl->key, &tok, &tlen) || tlen >= sizeof t) {
            snprintf(a->drop_reason, sizeof a->drop_reason, "%s= is not where its print fmt puts it in libtraceevent's text", sl->key);
            a->dropped = 1;
            break;
        }
        memcpy(t, tok, tlen);
        t[tlen] = 0;
        int same = printed_as(sl->interp, t, tlen, v[j]);
        if (!same) {
            snprintf(a->drop_reason, sizeof a->drop_reason, "%s: the value computed from its print fmt (%lld) is not what libtraceevent prints (%s)",
                     sl->key, (long long)v[j], t);
            a->dropped = 1;
        }
    }
}

/* The sample as a typed row, if its event has a plan and nothing in it needs the text parser's
   judgement: 1 done, 0 print it as text. */
static int deliver_typed(Reader *r, const Sample *s, Attr *a, Thread *t) {
    Plan *pl = a->plan;
    int64_t v[MAX_SLOTS];
    if (!typed_values(r, s, a, v)) return 0;
    for (int j = 0; j < pl->nslots; j++)
        if (pl->slots[j].interp == I_GFP && !gfp_known(r, s, a, j, (uint64_t)v[j])) return 0;
    int64_t cid = comm_id(r, t);
    if (cid < 0) return 0;
    size_t n = r->t_line.n;
    if (n == r->t_line.cap) {
        size_t cap = n ? n * 2 : 65536;
        if (!grow(r, &r->t_line, cap) || !grow(r, &r->t_attr, cap) || !grow(r, &r->t_tid, cap) || !grow(r, &r->t_cpu, cap)
            || !grow(r, &r->t_ts, cap) || !grow(r, &r->t_comm, cap)) return 0;
        for (int j = 0; j < r->max_slots; j++) if (!grow(r, &r->t_slot[j], cap)) return 0;
    }
    r->lines++;
    r->t_line.v[n] = (int64_t)r->lines;
    r->t_attr.v[n] = (int64_t)(a - r->attrs);
    r->t_tid.v[n] = (int32_t)s->tid;
    r->t_cpu.v[n] = (int64_t)s->cpu;
    r->t_ts.v[n] = (int64_t)s->time;
    r->t_comm.v[n] = cid;
    for (int j = 0; j < r->max_slots; j++) r->t_slot[j].v[n] = j < pl->nslots ? v[j] : 0;
    r->t_line.n = r->t_attr.n = r->t_tid.n = r->t_cpu.n = r->t_ts.n = r->t_comm.n = n + 1;
    for (int j = 0; j < r->max_slots; j++) r->t_slot[j].n = n + 1;
    return 1;
}

static void deliver_sample(Reader *r, const unsigned char *body, size_t n) {
    Sample s;
    if (!parse_sample(r, body, n, &s)) return;
    Attr *a = &r->attrs[s.attr];
    if (!a->event || !s.raw) {
        r->no_raw_samples++;
        fail(r, 1, "a sample of event %s has no tracepoint raw data", a->name);
        return;
    }
    if ((int)s.raw_size < a->raw_size_min) {
        fail(r, 0, "a sample of %s has %u bytes of raw data, its format's fields need %d",
             a->name, s.raw_size, a->raw_size_min);
        return;
    }
    Thread *t = findnew_thread(r, (int32_t)s.pid, (int32_t)s.tid);
    if (!t) return;
    int verify = 0;
    if (r->typed_mode) {
        chunk_ts(r, s.time);
        if (r->text_first > 0) r->text_first--;
        else if (a->plan && !a->dropped) {
            if (a->verify_left > 0) verify = 1;
            else if (deliver_typed(r, &s, a, t)) { r->samples++; return; }
        }
        if (r->error[0]) return;
    }
    tep_render(r, &s);
    if (verify) {
        a->verify_left--;
        verify_sample(r, &s, a);
    }
    size_t clen = strlen(t->comm), nlen = strlen(a->name);
    size_t need = (clen > 16 ? clen : 16) + 1 + 12 + 16 + 32 + (nlen > (size_t)r->name_width ? nlen : (size_t)r->name_width)
                  + 2 + r->seq.len + 2;
    if (!out_reserve(r, need)) return;
    char *p = r->out + r->out_len;
    /* perf_sample__fprintf_start: "%16s %5d [%03d] %5lu.%09llu: ", then "%*s: " the event name */
    for (size_t i = clen; i < 16; i++) *p++ = ' ';
    memcpy(p, t->comm, clen); p += clen;
    *p++ = ' ';
    int32_t tid = (int32_t)s.tid;
    if (tid < 0) {
        p += sprintf(p, "%5d", (int)tid);
    } else {
        print_u(&p, (uint64_t)tid, 5, 0);
    }
    *p++ = ' ';
    *p++ = '[';
    print_u(&p, s.cpu, 3, 1);
    *p++ = ']';
    *p++ = ' ';
    print_u(&p, s.time / 1000000000ull, 5, 0);
    *p++ = '.';
    print_u(&p, s.time % 1000000000ull, 9, 1);
    *p++ = ':';
    *p++ = ' ';
    for (size_t i = nlen; i < (size_t)r->name_width; i++) *p++ = ' ';
    memcpy(p, a->name, nlen); p += nlen;
    *p++ = ':';
    *p++ = ' ';
    memcpy(p, r->seq.buffer, r->seq.len); p += r->seq.len;
    *p++ = '\n';
    /* a newline in the comm or the payload makes perf script's line two: the numbers follow its text */
    size_t start = r->out_len;
    r->out_len = (size_t)(p - r->out);
    for (const char *q = r->out + start; (q = memchr(q, '\n', (size_t)(p - q))) != NULL; q++) {
        r->lines++;
        if (r->typed_mode) {  /* the typed route numbers each text line itself */
            if (r->x_line.n == r->x_line.cap && !grow(r, &r->x_line, r->x_line.cap ? r->x_line.cap * 2 : 4096)) return;
            r->x_line.v[r->x_line.n++] = (int64_t)r->lines;
        }
    }
    r->samples++;
}

static void deliver(Reader *r, uint32_t type, const unsigned char *body, size_t n) {
    if (type == R_SAMPLE) {
        deliver_sample(r, body, n);
    } else if (type == R_COMM) {
        if (n < 8) { fail(r, 0, "a COMM record is shorter than its fields"); return; }
        int32_t pid = (int32_t)u32_at(body), tid = (int32_t)u32_at(body + 4);
        size_t maxn = n - 8;
        const unsigned char *c = body + 8;
        size_t len = 0;
        while (len < maxn && len < MAX_COMM && c[len]) len++;
        Thread *t = findnew_thread(r, pid, tid);
        if (!t) return;
        if (!set_comm(t, (const char *)c, len)) { fail(r, 0, "out of memory"); return; }
        t->set = 1;
    } else if (type == R_FORK) {
        if (n < 16) { fail(r, 0, "a FORK record is shorter than its fields"); return; }
        int32_t pid = (int32_t)u32_at(body), ppid = (int32_t)u32_at(body + 4);
        int32_t tid = (int32_t)u32_at(body + 8), ptid = (int32_t)u32_at(body + 12);
        /* machine__process_fork_event: the child replaces any thread of its tid and takes its
           parent's comm if the parent has one set (thread__fork) */
        Thread *parent = findnew_thread(r, ppid, ptid);
        if (!parent) return;
        char *pcomm = parent->set ? strdup(parent->comm) : NULL;
        if (parent->set && !pcomm) { fail(r, 0, "out of memory"); return; }
        Thread *old = find_thread(r, tid);
        if (old && tid != ptid) {
            char name[24];
            int k = snprintf(name, sizeof name, ":%d", (int)tid);
            if (!set_comm(old, name, (size_t)k)) { free(pcomm); fail(r, 0, "out of memory"); return; }
            old->set = 0;
            old->pid = pid;
        }
        Thread *t = findnew_thread(r, pid, tid);
        if (t && pcomm && tid != ptid) {
            if (!set_comm(t, pcomm, strlen(pcomm))) fail(r, 0, "out of memory");
            t->set = 1;
        }
        free(pcomm);
    }
}

/* ---- ordering (util/ordered-events.c) ---- */
static int cmp_queued(const void *a, const void *b) {
    const Queued *x = a, *y = b;
    if (x->ts != y->ts) return x->ts < y->ts ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int queue_record(Reader *r, uint64_t ts, const unsigned char *rec, size_t len) {
    if (ts < r->last_flush) r->unordered++;
    if (r->arena_len + len > MAX_QUEUE_BYTES) {
        fail(r, 0, "more than %llu MiB of events between two round ends: not a file perf record writes",
             (unsigned long long)(MAX_QUEUE_BYTES >> 20));
        return 0;
    }
    if (r->arena_len + len > r->arena_cap) {
        size_t cap = r->arena_cap ? r->arena_cap : (4 << 20);
        while (cap < r->arena_len + len) cap *= 2;
        unsigned char *p = realloc(r->arena, cap);
        if (!p) { fail(r, 0, "out of memory"); return 0; }
        r->arena = p; r->arena_cap = cap;
    }
    if (r->nqueue == r->queue_cap) {
        size_t cap = r->queue_cap ? r->queue_cap * 2 : 65536;
        Queued *q = realloc(r->queue, cap * sizeof(Queued));
        if (!q) { fail(r, 0, "out of memory"); return 0; }
        r->queue = q; r->queue_cap = cap;
    }
    memcpy(r->arena + r->arena_len, rec, len);
    r->queue[r->nqueue++] = (Queued){ts, r->seq_no++, r->arena_len, (uint32_t)len};
    r->arena_len += len;
    if (ts > r->max_ts) r->max_ts = ts;
    return 1;
}

/* The queue is mostly runs already in time order: what the last flush kept, then each CPU's ring-buffer
   data of the round (perf record writes each CPU's buffer in time order). With few runs, merge them
   pairwise, the left run first on equal times (so (time, seq) order, as the radix sort below gives):
   a few passes in memory order instead of the radix sort's scattered writes (which were 16 % of the
   reader's time). Returns 0 when the radix sort is to do it (many runs, or no memory). */
#define MAX_RUNS 64
static int merge_runs(Reader *r) {
    size_t n = r->nqueue, bounds[MAX_RUNS + 1], nb = 0;
    Queued *q = r->queue;
    bounds[nb++] = 0;
    for (size_t i = 1; i < n; i++)
        if (q[i].ts < q[i - 1].ts) {
            if (nb == MAX_RUNS) return 0;
            bounds[nb++] = i;
        }
    if (nb == 1) return 1;  /* in order already */
    bounds[nb] = n;
    Queued *tmp = malloc(n * sizeof(Queued));
    if (!tmp) return 0;
    Queued *src = q, *dst = tmp;
    size_t runs = nb;
    while (runs > 1) {
        size_t out = 0;
        for (size_t k = 0; k < runs; k += 2) {
            size_t a = bounds[k], m = bounds[k + 1], b = k + 2 <= runs ? bounds[k + 2] : m;
            size_t i = a, j = m, o = a;
            if (k + 1 == runs) {  /* an odd run out: copied as it is */
                memcpy(dst + a, src + a, (m - a) * sizeof(Queued));
                bounds[out++] = a;
                continue;
            }
            while (i < m && j < b) dst[o++] = src[j].ts < src[i].ts ? src[j++] : src[i++];
            memcpy(dst + o, src + i, (m - i) * sizeof(Queued));
            o += m - i;
            memcpy(dst + o, src + j, (b - j) * sizeof(Queued));
            bounds[out++] = a;
        }
        bounds[out] = n;
        runs = out;
        Queued *t = src; src = dst; dst = t;
    }
    if (src != q) memcpy(q, src, n * sizeof(Queued));
    free(tmp);
    return 1;
}

/* The queue in (time, seq) order. It holds what the last flush kept, already in that order, then the
   records queued since, in seq order, every one of them after the kept ones: so a stable sort by time
   alone gives (time, seq) order. merge_runs() when the queue is a few runs, else an LSD radix sort, 16
   bits a pass, skipping the bits no time differs in (a round spans a few seconds): a few linear passes
   instead of qsort's n log n calls. */
static void sort_queue(Reader *r) {
    size_t n = r->nqueue;
    if (merge_runs(r)) return;
    Queued *tmp = n >= 1024 ? malloc(n * sizeof(Queued)) : NULL;
    size_t *count = tmp ? malloc(65536 * sizeof(size_t)) : NULL;
    if (!count) {
        free(tmp);
        qsort(r->queue, n, sizeof(Queued), cmp_queued);
        return;
    }
    uint64_t any = 0, all = ~0ull;
    for (size_t i = 0; i < n; i++) { any |= r->queue[i].ts; all &= r->queue[i].ts; }
    uint64_t varies = any ^ all;
    Queued *src = r->queue, *dst = tmp;
    for (int shift = 0; shift < 64; shift += 16) {
        if (!((varies >> shift) & 0xffff)) continue;
        memset(count, 0, 65536 * sizeof(size_t));
        for (size_t i = 0; i < n; i++) count[(src[i].ts >> shift) & 0xffff]++;
        size_t sum = 0;
        for (size_t d = 0; d < 65536; d++) { size_t c = count[d]; count[d] = sum; sum += c; }
        for (size_t i = 0; i < n; i++) dst[count[(src[i].ts >> shift) & 0xffff]++] = src[i];
        Queued *t = src; src = dst; dst = t;
    }
    if (src != r->queue) memcpy(r->queue, src, n * sizeof(Queued));
    free(count);
    free(tmp);
}

/* Deliver the queued events up to limit (all: final), in time order, equal times in queue order. */
static void flush(Reader *r, uint64_t limit, int all) {
    if (!r->nqueue) return;
    sort_queue(r);
    size_t i = 0;
    for (; i < r->nqueue && !r->error[0]; i++) {
        Queued *q = &r->queue[i];
        if (!all && q->ts > limit) break;
        const unsigned char *rec = r->arena + q->off;
        deliver(r, u32_at(rec), rec + 8, q->len - 8);
        r->last_flush = q->ts;
    }
    /* keep the rest, copied in queue order into the spare arena (sorted entries are not in arena
       order: compacting in place would overwrite some) */
    size_t keep = r->nqueue - i, off = 0;
    if (keep && r->spare_cap < r->arena_len) {
        unsigned char *p = realloc(r->spare, r->arena_len);
        if (!p) { fail(r, 0, "out of memory"); return; }
        r->spare = p; r->spare_cap = r->arena_len;
    }
    for (size_t j = 0; j < keep; j++) {
        Queued q = r->queue[i + j];
        memcpy(r->spare + off, r->arena + q.off, q.len);
        q.off = off;
        off += q.len;
        r->queue[j] = q;
    }
    unsigned char *t = r->arena; size_t tc = r->arena_cap;
    if (keep) { r->arena = r->spare; r->arena_cap = r->spare_cap; r->spare = t; r->spare_cap = tc; }
    r->nqueue = keep;
    r->arena_len = off;
}

/* One record from the data section or a decompressed buffer. len: its whole size, header included. */
static void process_compressed(Reader *r, const unsigned char *data, size_t n);

static void process_record(Reader *r, const unsigned char *rec, size_t len, int nested) {
    uint32_t type = u32_at(rec);
    const unsigned char *body = rec + 8;
    size_t n = len - 8;
    switch (type) {
    case R_SAMPLE: {
        int a = sample_attr(r, body, n);
        if (a < 0) { fail(r, 0, "a sample's id matches no event of the file"); return; }
        Attr *at = &r->attrs[a];
        uint64_t ts = 0;
        if (at->sample_type & S_TIME) {
            Sample s;
            if (!parse_sample(r, body, n, &s)) return;
            ts = s.time;
        }
        if (ts == 0) deliver(r, type, body, n);  /* no timestamp: at once (ordered_events__queue -ETIME) */
        else queue_record(r, ts, rec, len);
        break;
    }
    case R_COMM: case R_FORK: {
        uint64_t ts = trailer_time(r, body, n);
        if (ts == 0 || ts == ~0ull) deliver(r, type, body, n);
        else queue_record(r, ts, rec, len);
        break;
    }
    case R_LOST:
        if (n >= 16) r->lost += u64_at(body + 8);
        r->lost_records++;
        break;
    case R_LOST_SAMPLES:
        if (n >= 8) r->lost_samples += u64_at(body);
        r->lost_records++;
        break;
    case R_FINISHED_ROUND:
        /* ordered_events__flush(OE_FLUSH__ROUND): up to the newest time of the round before */
        flush(r, r->next_flush, 0);
        r->next_flush = r->max_ts;
        break;
    case R_COMPRESSED:
        if (nested) { fail(r, 0, "a COMPRESSED record inside compressed data"); return; }
        r->compressed_records++;
        process_compressed(r, body, n);
        break;
    case R_AUXTRACE:
        fail(r, 1, "AUX area data (PERF_RECORD_AUXTRACE), which thpreplay does not read");
        break;
    case R_HEADER_ATTR: case R_HEADER_EVENT_TYPE: case R_HEADER_TRACING_DATA:
        fail(r, 1, "pipe-mode records (perf record -o -)");
        break;
    default:
        r->skipped_records++;  /* MMAP, EXIT, SWITCH, ...: nothing perf script prints for tracepoints */
        break;
    }
}

/* Complete records at the start of buf; returns the bytes used. */
static size_t process_records(Reader *r, const unsigned char *buf, size_t n, int nested) {
    size_t p = 0;
    while (n - p >= 8 && !r->error[0]) {
        uint16_t size;
        memcpy(&size, buf + p + 6, 2);
        if (size < 8) { fail(r, 0, "a record of size %u (smaller than its header)", size); break; }
        if (size > n - p) break;
        process_record(r, buf + p, size, nested);
        p += size;
    }
    return p;
}

static void process_compressed(Reader *r, const unsigned char *data, size_t n) {
    if (!r->zds) {
        if (!load_zstd()) { fail(r, 1, "zstd-compressed records (perf record -z) and libzstd.so.1 is not installed"); return; }
        r->zds = zstd.create();
        if (!r->zds) { fail(r, 0, "out of memory"); return; }
        zstd.init(r->zds);
    }
    ZIn in = {data, n, 0};
    /* decompress in pieces of at most 1 MiB past what is pending: a small record cannot make this
       allocate more than that, whatever it decompresses to */
    while (!r->error[0]) {
        size_t want = r->zout_len + (1 << 20);
        if (want > r->zout_cap) {
            unsigned char *p = realloc(r->zout, want);
            if (!p) { fail(r, 0, "out of memory"); return; }
            r->zout = p; r->zout_cap = want;
        }
        ZOut out = {r->zout + r->zout_len, r->zout_cap - r->zout_len, 0};
        size_t ret = zstd.decompress(r->zds, &out, &in);
        if (zstd.is_error(ret)) {
            fail(r, 0, "a compressed record does not decompress (zstd: %s)", zstd.error_name(ret));
            return;
        }
        r->zout_len += out.pos;
        size_t used = process_records(r, r->zout, r->zout_len, 1);
        memmove(r->zout, r->zout + used, r->zout_len - used);
        r->zout_len -= used;
        if (r->zout_len >= 65536) { fail(r, 0, "compressed data holds a record past 64 KiB"); return; }
        if (in.pos == in.size && out.pos < out.size) break;
    }
}

/* ---- the header ---- */
static int read_string(const unsigned char *b, size_t n, size_t *p, char *dst, size_t dstn) {
    if (n - *p < 4) return 0;
    uint32_t len = u32_at(b + *p);
    *p += 4;
    if (len > n - *p) return 0;
    size_t k = strnlen((const char *)b + *p, len);
    if (k >= dstn) k = dstn - 1;
    memcpy(dst, b + *p, k);
    dst[k] = 0;
    *p += len;
    return 1;
}

static int cmp_ids(const void *a, const void *b) {
    const IdMap *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int format_fields_end(const char *text, size_t n);

/* Where the fields of a format file end, by its tracepoint ID: libtraceevent reads a field where the
   format puts it, so a raw record shorter than that is refused before it is printed. */
static int note_format(Reader *r, const char *text, size_t n, const char *sys) {
    long id = -1;
    char ename[96] = "";
    if (n > 6 && memcmp(text, "name: ", 6) == 0) {
        size_t k = 0;
        for (size_t j = 6; j < n && k < sizeof ename - 1 && text[j] != '\n'; j++) ename[k++] = text[j];
        ename[k] = 0;
    }
    for (size_t i = 0; i + 4 <= n; i++) {
        if ((i == 0 || text[i - 1] == '\n') && memcmp(text + i, "ID: ", 4) == 0) {
            char tmp[24];
            size_t k = 0;
            for (size_t j = i + 4; j < n && k < sizeof tmp - 1 && text[j] >= '0' && text[j] <= '9'; j++) tmp[k++] = text[j];
            tmp[k] = 0;
            if (k) id = strtol(tmp, NULL, 10);
            break;
        }
    }
    if (id < 0) return 1;
    if (r->nfmt == r->fmt_cap) {
        size_t cap = r->fmt_cap ? r->fmt_cap * 2 : 256;
        void *q = realloc(r->fmt_ends, cap * sizeof *r->fmt_ends);
        if (!q) { fail(r, 0, "out of memory"); return 0; }
        r->fmt_ends = q; r->fmt_cap = cap;
    }
    r->fmt_ends[r->nfmt].id = id;
    r->fmt_ends[r->nfmt].end = format_fields_end(text, n);
    r->fmt_ends[r->nfmt].text = malloc(n ? n : 1);  /* for the typed route's plans (parse/perfdata.py) */
    if (!r->fmt_ends[r->nfmt].text) { fail(r, 0, "out of memory"); return 0; }
    memcpy(r->fmt_ends[r->nfmt].text, text, n);
    r->fmt_ends[r->nfmt].len = n;
    /* evsel__name of a tracepoint without a HEADER_EVENT_DESC name */
    snprintf(r->fmt_ends[r->nfmt].name, sizeof r->fmt_ends[r->nfmt].name, "%.30s:%.96s", sys, ename);
    r->nfmt++;
    return 1;
}

/* The tracing data (util/trace-event-read.c trace_report): the tracepoints' format files. */
static int read_tracing_data(Reader *r, const unsigned char *b, size_t n) {
    size_t p = 0;
#define NEED(k) if (n - p < (size_t)(k)) { fail(r, 0, "truncated tracing data (HEADER_TRACING_DATA)"); return 0; }
    NEED(10)
    if (memcmp(b, "\027\010\104tracing", 10) != 0) { fail(r, 0, "HEADER_TRACING_DATA does not start with its magic"); return 0; }
    p = 10;
    size_t vlen = strnlen((const char *)b + p, n - p);
    NEED(vlen + 1)
    char version[16] = {0};
    memcpy(version, b + p, vlen < 15 ? vlen : 15);
    p += vlen + 1;
    NEED(6)
    int bigendian = b[p], long_size = b[p + 1];
    uint32_t page_size = u32_at(b + p + 2);
    p += 6;
    if (bigendian) { fail(r, 1, "big-endian tracing data"); return 0; }
    r->tep = tep.alloc();
    if (!r->tep) { fail(r, 0, "out of memory"); return 0; }
    tep.set_file_bigendian(r->tep, 0);
    tep.set_long_size(r->tep, long_size);
    tep.set_page_size(r->tep, (int)page_size);
    /* header_page, header_event */
    NEED(12)
    if (memcmp(b + p, "header_page", 12) != 0) { fail(r, 0, "tracing data without header_page"); return 0; }
    p += 12;
    NEED(8)
    uint64_t sz = u64_at(b + p); p += 8;
    NEED(sz) p += sz;
    NEED(13)
    if (memcmp(b + p, "header_event", 13) != 0) { fail(r, 0, "tracing data without header_event"); return 0; }
    p += 13;
    NEED(8)
    sz = u64_at(b + p); p += 8;
    NEED(sz) p += sz;
    /* ftrace's own formats */
    NEED(4)
    uint32_t count = u32_at(b + p); p += 4;
    for (uint32_t i = 0; i < count; i++) {
        NEED(8)
        sz = u64_at(b + p); p += 8;
        NEED(sz) p += sz;
    }
    /* the events' formats, by system */
    NEED(4)
    uint32_t systems = u32_at(b + p); p += 4;
    for (uint32_t s = 0; s < systems; s++) {
        size_t slen = strnlen((const char *)b + p, n - p);
        NEED(slen + 1)
        char sys[256];
        if (slen >= sizeof sys) { fail(r, 0, "a tracing data system name past 255 bytes"); return 0; }
        memcpy(sys, b + p, slen + 1);
        p += slen + 1;
        NEED(4)
        uint32_t events = u32_at(b + p); p += 4;
        for (uint32_t e = 0; e < events; e++) {
            NEED(8)
            sz = u64_at(b + p); p += 8;
            NEED(sz)
            /* libtraceevent reads the text with its length; a failed parse marks the event, which
               then prints as perf prints it ([FAILED TO PARSE] and its fields) */
            tep.parse_event(r->tep, (const char *)b + p, (unsigned long)sz, sys);
            if (!note_format(r, (const char *)b + p, (size_t)sz, sys)) return 0;
            p += sz;
        }
    }
    (void)version;
#undef NEED
    return 1;
}

/* The end of the fields of a format file ("field:... offset:N; size:M;"), 0 if none is read. */
static int format_fields_end(const char *text, size_t n) {
    int end = 0;
    const char *p = text, *stop = text + n;
    while (p < stop) {
        const char *nl = memchr(p, '\n', (size_t)(stop - p));
        const char *eol = nl ? nl : stop;
        const char *o = NULL;
        for (const char *q = p; q + 7 <= eol; q++)
            if (memcmp(q, "offset:", 7) == 0) { o = q + 7; break; }
        if (o) {
            long off = strtol(o, NULL, 10), size = -1;
            for (const char *q = o; q + 5 <= eol; q++)
                if (memcmp(q, "size:", 5) == 0) { size = strtol(q + 5, NULL, 10); break; }
            if (off >= 0 && size >= 0 && off + size > end && off + size < (1 << 20)) end = (int)(off + size);
        }
        p = eol + 1;
    }
    return end;
}

static int read_header(Reader *r) {
    unsigned char h[104];
    if (r->file_size < 16) { fail(r, 0, "truncated: %llu bytes, too short for a perf.data header", (unsigned long long)r->file_size); return 0; }
    size_t hn = r->file_size < sizeof h ? (size_t)r->file_size : sizeof h;
    if (!read_at(r, 0, h, hn)) return 0;
    if (memcmp(h, "2ELIFREP", 8) == 0) { fail(r, 1, "a perf.data file of the other byte order"); return 0; }
    if (memcmp(h, "PERFILE2", 8) != 0) {
        if (memcmp(h, "PERFFILE", 8) == 0) fail(r, 1, "a version 1 perf.data file (PERFFILE)");
        else fail(r, 0, "not a perf.data file (no PERFILE2 magic)");
        return 0;
    }
    uint64_t hsize = u64_at(h + 8);
    if (hsize == 16) { fail(r, 1, "a pipe-mode perf.data (perf record -o -)"); return 0; }
    if (hn < sizeof h || hsize < sizeof h) { fail(r, 0, "truncated header (%llu bytes)", (unsigned long long)hsize); return 0; }
    uint64_t attr_size = u64_at(h + 16), attrs_off = u64_at(h + 24), attrs_size = u64_at(h + 32);
    r->data_off = u64_at(h + 40);
    r->data_size = u64_at(h + 48);
    uint64_t features[4];
    memcpy(features, h + 72, 32);
    if (r->data_off > r->file_size || r->data_size > r->file_size - r->data_off) {
        fail(r, 0, "truncated: the data section (%llu bytes at %llu) runs past the end of the file (%llu bytes)",
             (unsigned long long)r->data_size, (unsigned long long)r->data_off, (unsigned long long)r->file_size);
        return 0;
    }
    /* attrs: perf_event_attr (attr.size bytes, at least the 64 of version 0) + the ids' section */
    if (attr_size < 64 + 16 || attr_size > 4096) { fail(r, 0, "attr entry size %llu is not a perf_event_attr's", (unsigned long long)attr_size); return 0; }
    if (attrs_size % attr_size || attrs_size / attr_size > MAX_ATTRS || attrs_size == 0) {
        fail(r, 0, "the attrs section (%llu bytes) is not a whole number of %llu-byte entries, or is empty",
             (unsigned long long)attrs_size, (unsigned long long)attr_size);
        return 0;
    }
    r->nattrs = (int)(attrs_size / attr_size);
    r->attrs = calloc((size_t)r->nattrs, sizeof(Attr));
    unsigned char *ab = malloc(attr_size);
    if (!r->attrs || !ab) { free(ab); fail(r, 0, "out of memory"); return 0; }
    size_t ids_total = 0;
    struct { uint64_t off, size; } *idsec = calloc((size_t)r->nattrs, 16);
    if (!idsec) { free(ab); fail(r, 0, "out of memory"); return 0; }
    for (int i = 0; i < r->nattrs; i++) {
        if (!read_at(r, attrs_off + (uint64_t)i * attr_size, ab, attr_size)) { free(ab); free(idsec); return 0; }
        Attr *a = &r->attrs[i];
        a->type = u32_at(ab);
        a->config = u64_at(ab + 8);
        a->sample_type = u64_at(ab + 24);
        a->read_format = u64_at(ab + 32);
        a->flags = u64_at(ab + 40);
        a->sample_id_all = (a->flags >> 18) & 1;
        idsec[i].off = u64_at(ab + attr_size - 16);
        idsec[i].size = u64_at(ab + attr_size - 8);
        if (idsec[i].size % 8 || idsec[i].size / 8 > MAX_IDS - ids_total) {
            unsigned long long bad = (unsigned long long)idsec[i].size;
            free(ab); free(idsec);
            fail(r, 0, "event %d's id section (%llu bytes) is not a list of ids", i, bad);
            return 0;
        }
        ids_total += idsec[i].size / 8;
    }
    free(ab);
    r->ids = calloc(ids_total ? ids_total : 1, sizeof(IdMap));
    if (!r->ids) { free(idsec); fail(r, 0, "out of memory"); return 0; }
    for (int i = 0; i < r->nattrs; i++) {
        size_t k = idsec[i].size / 8;
        unsigned char *v = malloc(k ? k * 8 : 1);  /* at most MAX_IDS ids in all */
        if (!v) { free(idsec); fail(r, 0, "out of memory"); return 0; }
        if (!read_at(r, idsec[i].off, v, k * 8)) { free(v); free(idsec); return 0; }
        for (size_t j = 0; j < k; j++) r->ids[r->nids++] = (IdMap){u64_at(v + j * 8), i};
        free(v);
    }
    free(idsec);
    qsort(r->ids, r->nids, sizeof(IdMap), cmp_ids);
    /* where a sample's id is: perf needs every event to put it in one place (evlist__valid_sample_type) */
    uint64_t t0 = r->attrs[0].sample_type;
    r->id_from_identifier = (t0 & S_IDENTIFIER) != 0;
    r->id_pos = -1;
    r->trailer_id_pos = -1;
    if (!r->id_from_identifier && (t0 & S_ID)) {
        r->id_pos = 0;
        if (t0 & S_IP) r->id_pos++;
        if (t0 & S_TID) r->id_pos++;
        if (t0 & S_TIME) r->id_pos++;
        if (t0 & S_ADDR) r->id_pos++;
    }
    if (t0 & S_IDENTIFIER) r->trailer_id_pos = 0;
    else if (t0 & S_ID) r->trailer_id_pos = ((t0 & S_CPU) ? 1 : 0) + ((t0 & S_STREAM_ID) ? 1 : 0);
    for (int i = 1; i < r->nattrs; i++) {
        uint64_t t = r->attrs[i].sample_type;
        if (((t ^ t0) & S_IDENTIFIER) || (!(t0 & S_IDENTIFIER) && ((t ^ t0) & (S_ID | S_IP | S_TID | S_TIME | S_ADDR | S_CPU | S_STREAM_ID)))) {
            fail(r, 1, "events whose samples carry their ids in different places");
            return 0;
        }
    }
    if (r->nattrs > 1 && !(t0 & (S_IDENTIFIER | S_ID))) { fail(r, 0, "several events and samples without ids"); return 0; }

    /* feature sections: one perf_file_section per set bit, in bit order, after the data */
    uint64_t fpos = r->data_off + r->data_size;
    int have_tracing = 0;
    for (int bit = 0; bit < F_BITS; bit++) {
        if (!((features[bit / 64] >> (bit % 64)) & 1)) continue;
        unsigned char sec[16];
        if (!read_at(r, fpos, sec, 16)) return 0;
        fpos += 16;
        uint64_t off = u64_at(sec), size = u64_at(sec + 8);
        if (bit > F_LAST_KNOWN && r->nunknown < 8) r->unknown_features[r->nunknown++] = bit;
        if (bit == F_DIR_FORMAT) { fail(r, 1, "a directory-format perf.data (perf record --threads)"); return 0; }
        if (bit != F_TRACING_DATA && bit != F_OSRELEASE && bit != F_NRCPUS && bit != F_EVENT_DESC && bit != F_COMPRESSED)
            continue;
        if (size > MAX_FEATURE_BYTES) { fail(r, 0, "feature section %d is %llu bytes", bit, (unsigned long long)size); return 0; }
        unsigned char *b = malloc(size ? size : 1);
        if (!b) { fail(r, 0, "out of memory"); return 0; }
        if (!read_at(r, off, b, size)) { free(b); return 0; }
        size_t p = 0;
        if (bit == F_TRACING_DATA) {
            if (!load_tep()) { free(b); fail(r, 1, "%s", tep.why); return 0; }
            int ok = read_tracing_data(r, b, size);
            free(b);
            if (!ok) return 0;
            have_tracing = 1;
            continue;
        } else if (bit == F_OSRELEASE) {
            if (!read_string(b, size, &p, r->osrelease, sizeof r->osrelease)) r->osrelease[0] = 0;
        } else if (bit == F_NRCPUS) {
            if (size >= 8) { r->nr_cpus_avail = u32_at(b); r->nr_cpus_online = u32_at(b + 4); }
        } else if (bit == F_EVENT_DESC) {
            if (size >= 8) {
                uint32_t nre = u32_at(b), sz = u32_at(b + 4);
                p = 8;
                for (uint32_t i = 0; i < nre && i < (uint32_t)r->nattrs; i++) {
                    if (sz > size - p) break;
                    p += sz;
                    if (size - p < 4) break;
                    uint32_t nr = u32_at(b + p); p += 4;
                    if (!read_string(b, size, &p, r->attrs[i].name, sizeof r->attrs[i].name)) { r->attrs[i].name[0] = 0; break; }
                    if (nr > (size - p) / 8) break;
                    p += (size_t)nr * 8;
                }
            }
        } else if (bit == F_COMPRESSED) {
            if (size >= 20) r->comp_mmap_len = u32_at(b + 16);  /* version, type, level, ratio, mmap_len */
        }
        free(b);
    }
    /* the events: tracepoints print their raw data with their format */
    int tracepoints = 0;
    for (int i = 0; i < r->nattrs; i++) {
        Attr *a = &r->attrs[i];
        if (a->type == PERF_TYPE_TRACEPOINT) {
            tracepoints++;
            if (!have_tracing) { fail(r, 0, "tracepoint events and no tracing data (HEADER_TRACING_DATA)"); return 0; }
            a->event = tep.find_event(r->tep, (int)a->config);
            if (!a->event) { fail(r, 0, "event %d (tracepoint id %llu) has no format in the tracing data", i, (unsigned long long)a->config); return 0; }
            for (size_t k = 0; k < r->nfmt; k++)
                if ((uint64_t)r->fmt_ends[k].id == a->config) {
                    a->raw_size_min = r->fmt_ends[k].end;
                    if (!a->name[0]) snprintf(a->name, sizeof a->name, "%s", r->fmt_ends[k].name);
                }
            if (!(a->sample_type & S_RAW)) { fail(r, 1, "tracepoint event %s is sampled without its raw data (PERF_SAMPLE_RAW)", a->name[0] ? a->name : "?"); return 0; }
            if (a->sample_type & S_CALLCHAIN) { fail(r, 1, "events sampled with callchains (perf record -g), whose frames perf resolves to symbols"); return 0; }
            if ((a->sample_type & (S_TID | S_TIME | S_CPU)) != (S_TID | S_TIME | S_CPU)) {
                fail(r, 1, "event %s samples lack the tid, time or cpu perf script prints", a->name[0] ? a->name : "?");
                return 0;
            }
        }
        if (!a->name[0]) snprintf(a->name, sizeof a->name, "event%d", i);
        int len = (int)strlen(a->name);
        if (len > r->name_width) r->name_width = len;
    }
    if (!tracepoints) { fail(r, 1, "no tracepoint events"); return 0; }
    return 1;
}

/* ---- Python object ---- */
static PyObject *ReaderError, *Unsupported;

static void Reader_dealloc(Reader *r) {
    if (r->f) fclose(r->f);
    for (size_t i = 0; i < r->nfmt; i++) free(r->fmt_ends[i].text);
    for (int i = 0; i < r->nattrs; i++) {
        if (!r->attrs[i].plan) continue;
        for (int j = 0; j < r->attrs[i].plan->nslots; j++) free(r->attrs[i].plan->slots[j].code);
        free(r->attrs[i].plan);
    }
    free(r->t_line.v); free(r->t_attr.v); free(r->t_tid.v); free(r->t_cpu.v); free(r->t_ts.v); free(r->t_comm.v);
    for (int j = 0; j < MAX_SLOTS; j++) free(r->t_slot[j].v);
    free(r->x_line.v); free(r->new_comms); free(r->gfp); free(r->gfp_new);
    free(r->attrs); free(r->ids); free(r->fmt_ends); free(r->zout); free(r->arena); free(r->spare); free(r->scratch); free(r->queue); free(r->out);
    for (size_t i = 0; i < r->threads_cap; i++) free(r->threads[i].comm);
    free(r->threads);
    if (r->zds) zstd.free_(r->zds);
    if (r->seq_inited) tep.seq_destroy(&r->seq);
    if (r->tep) tep.free_(r->tep);
    Py_TYPE(r)->tp_free((PyObject *)r);
}

static PyObject *raise_error(Reader *r) {
    PyErr_SetString(r->unsupported ? Unsupported : ReaderError, r->error);
    return NULL;
}

static int Reader_init(Reader *r, PyObject *args, PyObject *kw) {
    const char *path;
    if (!PyArg_ParseTuple(args, "s", &path)) return -1;
    r->f = fopen(path, "rb");
    if (!r->f) { PyErr_SetFromErrnoWithFilename(PyExc_OSError, path); return -1; }
    if (fseeko(r->f, 0, SEEK_END) != 0) { PyErr_SetFromErrno(PyExc_OSError); return -1; }
    r->file_size = (uint64_t)ftello(r->f);
    int ok;
    Py_BEGIN_ALLOW_THREADS
    ok = read_header(r);
    Py_END_ALLOW_THREADS
    if (!ok) { raise_error(r); return -1; }
    tep.seq_init(&r->seq);
    r->seq_inited = 1;
    r->data_pos = 0;
    r->scratch = calloc(1, SCRATCH_BYTES);
    if (!r->scratch) { PyErr_NoMemory(); return -1; }
    /* perf_session__register_idle_thread: task 0 is "swapper" */
    Thread *idle = findnew_thread(r, 0, 0);
    if (!idle || !set_comm(idle, "swapper", 7)) { fail(r, 0, "out of memory"); raise_error(r); return -1; }
    idle->set = 1;
    return 0;
}

/* The data section's records, read and processed (process_records) until enough(r, want) or the end
   or an error; a record cut at the end of the buffer (bufcap >= 64 KiB, the largest record) goes back to
   the next call. Runs without the GIL. */
static void read_records(Reader *r, int (*enough)(Reader *, Py_ssize_t), Py_ssize_t want) {
    size_t bufcap = 1 << 20, buflen = 0;
    unsigned char *buf = malloc(bufcap);
    if (!buf) fail(r, 0, "out of memory");
    while (!r->error[0] && !r->eof && !enough(r, want)) {
        size_t room = bufcap - buflen;
        uint64_t left = r->data_size - r->data_pos;
        size_t take = left < room ? (size_t)left : room;
        if (take) {
            if (!read_at(r, r->data_off + r->data_pos, buf + buflen, take)) break;
            buflen += take;
            r->data_pos += take;
        }
        size_t used = process_records(r, buf, buflen, 0);
        memmove(buf, buf + used, buflen - used);
        buflen -= used;
        if (r->data_pos == r->data_size && !r->error[0]) {
            if (buflen) {
                fail(r, 0, "truncated: the last record (%zu of its bytes present) runs past the data section", buflen);
                break;
            }
            flush(r, 0, 1);
            r->eof = 1;
        }
    }
    if (buflen && !r->error[0]) r->data_pos -= buflen;
    free(buf);
}

static int text_enough(Reader *r, Py_ssize_t want) { return r->out_len >= (size_t)want; }

/* typed rows and text lines of the chunk, or 64 MiB of text */
static int typed_enough(Reader *r, Py_ssize_t want) {
    return r->t_line.n + r->x_line.n >= (size_t)want || r->out_len >= (64u << 20);
}

/* Read on until at least `want` bytes of text are ready (or the end); returns (bytes, lines). */
static PyObject *Reader_read(Reader *r, PyObject *args) {
    Py_ssize_t want;
    if (!PyArg_ParseTuple(args, "n", &want)) return NULL;
    if (r->error[0]) return raise_error(r);
    uint64_t lines0 = r->lines;
    r->typed_mode = 0;
    Py_BEGIN_ALLOW_THREADS
    read_records(r, text_enough, want);
    Py_END_ALLOW_THREADS
    if (r->error[0]) return raise_error(r);
    PyObject *data = PyBytes_FromStringAndSize(r->out, (Py_ssize_t)r->out_len);
    if (!data) return NULL;
    r->out_len = 0;
    return Py_BuildValue("(NK)", data, (unsigned long long)(r->lines - lines0));
}

static PyObject *Reader_info(Reader *r, PyObject *unused) {
    PyObject *names = PyList_New(0);
    if (!names) return NULL;
    for (int i = 0; i < r->nattrs; i++) {
        PyObject *s = PyUnicode_DecodeUTF8(r->attrs[i].name, (Py_ssize_t)strlen(r->attrs[i].name), "replace");
        if (!s || PyList_Append(names, s) < 0) { Py_XDECREF(s); Py_DECREF(names); return NULL; }
        Py_DECREF(s);
    }
    PyObject *unknown = PyList_New(0);
    if (!unknown) { Py_DECREF(names); return NULL; }
    for (int i = 0; i < r->nunknown; i++) {
        PyObject *v = PyLong_FromLong(r->unknown_features[i]);
        if (!v || PyList_Append(unknown, v) < 0) { Py_XDECREF(v); Py_DECREF(names); Py_DECREF(unknown); return NULL; }
        Py_DECREF(v);
    }
    /* the release as the file has it: bytes that are not UTF-8 replaced, never an exception */
    PyObject *release = PyUnicode_DecodeUTF8(r->osrelease, (Py_ssize_t)strlen(r->osrelease), "replace");
    if (!release) { Py_DECREF(names); Py_DECREF(unknown); return NULL; }
    return Py_BuildValue(
        "{s:N,s:N,s:N,s:l,s:l,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K}",
        "events", names, "unknown_features", unknown, "osrelease", release, "nr_cpus_online", r->nr_cpus_online,
        "nr_cpus_available", r->nr_cpus_avail, "samples", (unsigned long long)r->samples,
        "lines", (unsigned long long)r->lines, "lost", (unsigned long long)r->lost,
        "lost_samples", (unsigned long long)r->lost_samples, "lost_records", (unsigned long long)r->lost_records,
        "unordered", (unsigned long long)r->unordered, "compressed_records", (unsigned long long)r->compressed_records,
        "comp_mmap_len", (unsigned long long)r->comp_mmap_len);
}

/* formats() -> [(attr index, event name, system, format text)] of the tracepoint events */
static PyObject *Reader_formats(Reader *r, PyObject *unused) {
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    for (int i = 0; i < r->nattrs; i++) {
        Attr *a = &r->attrs[i];
        if (a->type != PERF_TYPE_TRACEPOINT) continue;
        for (size_t k = 0; k < r->nfmt; k++) {
            if ((uint64_t)r->fmt_ends[k].id != a->config) continue;
            const char *colon = strchr(r->fmt_ends[k].name, ':');
            Py_ssize_t slen = colon ? (Py_ssize_t)(colon - r->fmt_ends[k].name) : 0;
            PyObject *t = Py_BuildValue("(iNNN)", i,
                PyUnicode_DecodeUTF8(a->name, (Py_ssize_t)strlen(a->name), "replace"),
                PyUnicode_DecodeUTF8(r->fmt_ends[k].name, slen, "replace"),
                PyUnicode_DecodeUTF8(r->fmt_ends[k].text, (Py_ssize_t)r->fmt_ends[k].len, "replace"));
            if (!t || PyList_Append(out, t) < 0) { Py_XDECREF(t); Py_DECREF(out); return NULL; }
            Py_DECREF(t);
            break;
        }
    }
    return out;
}

/* set_plan(attr, [(code bytes, interp, lo, hi, key), ...]): that event's samples become typed rows */
static PyObject *Reader_set_plan(Reader *r, PyObject *args) {
    int ai;
    PyObject *slots;
    if (!PyArg_ParseTuple(args, "iO!", &ai, &PyList_Type, &slots)) return NULL;
    Py_ssize_t ns = PyList_GET_SIZE(slots);
    if (ai < 0 || ai >= r->nattrs || !r->attrs[ai].event || ns > MAX_SLOTS || r->attrs[ai].plan) {
        PyErr_SetString(PyExc_ValueError, "set_plan: no such tracepoint event, a plan already, or too many slots");
        return NULL;
    }
    Plan *pl = calloc(1, sizeof(Plan));
    if (!pl) return PyErr_NoMemory();
    for (Py_ssize_t j = 0; j < ns; j++) {
        const char *code, *key;
        Py_ssize_t clen, klen;
        int interp;
        long long lo, hi;
        Slot *sl = &pl->slots[j];
        if (!PyArg_ParseTuple(PyList_GET_ITEM(slots, j), "y#iLLs#", &code, &clen, &interp, &lo, &hi, &key, &klen)) goto bad;
        if (clen % 8 || clen == 0 || clen > 8 * 4096 || interp < I_SIGNED || interp > I_GFP || klen < 1 || klen >= 64) {
            PyErr_SetString(PyExc_ValueError, "set_plan: a slot's program or interpretation is not one");
            goto bad;
        }
        sl->code = malloc((size_t)clen);
        if (!sl->code) { PyErr_NoMemory(); goto bad; }
        memcpy(sl->code, code, (size_t)clen);
        sl->ncode = (int)(clen / 8);
        sl->interp = interp; sl->lo = lo; sl->hi = hi;
        memcpy(sl->key, key, (size_t)klen);
        sl->key[klen] = 0;
        pl->nslots = (int)j + 1;
        if (!check_slot(sl)) { PyErr_SetString(PyExc_ValueError, "set_plan: a slot's program does not run"); goto bad; }
        if (sl->code[0] == OP_FIELD && (sl->ncode == 4 || (sl->ncode == 7 && sl->code[4] == OP_CAST))) {
            sl->fast = 1;
            sl->f_off = sl->code[1]; sl->f_size = sl->code[2]; sl->f_sign = sl->code[3];
            sl->f_bits = sl->ncode == 7 ? sl->code[5] : 64;
            sl->f_bsign = sl->ncode == 7 ? sl->code[6] : 0;
        }
    }
    r->attrs[ai].plan = pl;
    r->attrs[ai].verify_left = VERIFY;
    if (pl->nslots > r->max_slots) r->max_slots = pl->nslots;
    Py_RETURN_NONE;
bad:
    for (int j = 0; j < pl->nslots; j++) free(pl->slots[j].code);
    free(pl);
    return NULL;
}

static PyObject *take_buf(I64Buf *b) {
    PyObject *o = PyBytes_FromStringAndSize((const char *)b->v, (Py_ssize_t)(b->n * sizeof(int64_t)));
    b->n = 0;
    return o;
}

/* read_typed(want_rows[, text_first]) -> (lines, typed, text, the line number of each text line, new comms,
   new gfp texts [(attr * 8 + slot, mask, printed)], ts stats):
   typed = (rows, line, attr, tid, cpu, ts, comm id, [slot j's values]) as int64 bytes; text = the
   other samples as perf script prints them; ts stats = (min, max, first, last, backwards) over every
   sample of the chunk in line order, None if none. At the end: lines == 0. text_first: print the next
   so many samples as text whatever their plan (ingest detects the text's layout from the first lines). */
static PyObject *Reader_read_typed(Reader *r, PyObject *args) {
    Py_ssize_t want, text_first = 0;
    if (!PyArg_ParseTuple(args, "n|n", &want, &text_first)) return NULL;
    if (text_first > 0) r->text_first = text_first;
    if (r->error[0]) return raise_error(r);
    uint64_t lines0 = r->lines;
    r->typed_mode = 1;
    r->c_any = 0; r->c_back = 0;
    Py_BEGIN_ALLOW_THREADS
    read_records(r, typed_enough, want);
    Py_END_ALLOW_THREADS
    if (r->error[0]) return raise_error(r);
    PyObject *slots = PyList_New(r->max_slots);
    if (!slots) return NULL;
    for (int j = 0; j < r->max_slots; j++) {
        PyObject *b = take_buf(&r->t_slot[j]);
        if (!b) { Py_DECREF(slots); return NULL; }
        PyList_SET_ITEM(slots, j, b);
    }
    Py_ssize_t rows = (Py_ssize_t)r->t_line.n;
    PyObject *typed = Py_BuildValue("(nNNNNNNN)", rows, take_buf(&r->t_line), take_buf(&r->t_attr), take_buf(&r->t_tid),
                                    take_buf(&r->t_cpu), take_buf(&r->t_ts), take_buf(&r->t_comm), slots);
    if (!typed) return NULL;
    PyObject *text = PyBytes_FromStringAndSize(r->out, (Py_ssize_t)r->out_len);
    r->out_len = 0;
    PyObject *xl = take_buf(&r->x_line);
    PyObject *comms = PyList_New(0);
    if (!text || !xl || !comms) { Py_DECREF(typed); Py_XDECREF(text); Py_XDECREF(xl); Py_XDECREF(comms); return NULL; }
    for (size_t p = 0; p < r->new_comms_len;) {
        size_t k = strlen(r->new_comms + p);
        PyObject *c = PyUnicode_DecodeASCII(r->new_comms + p, (Py_ssize_t)k, "replace");
        if (!c || PyList_Append(comms, c) < 0) { Py_XDECREF(c); Py_DECREF(typed); Py_DECREF(text); Py_DECREF(xl); Py_DECREF(comms); return NULL; }
        Py_DECREF(c);
        p += k + 1;
    }
    r->new_comms_len = 0;
    PyObject *gfps = PyList_New(0);
    if (!gfps) { Py_DECREF(typed); Py_DECREF(text); Py_DECREF(xl); Py_DECREF(comms); return NULL; }
    for (size_t i = 0; i < r->ngfp_new; i++) {
        PyObject *g = Py_BuildValue("(LKN)", (long long)r->gfp_new[i].attr_slot, (unsigned long long)r->gfp_new[i].value,
                                    PyUnicode_DecodeUTF8(r->gfp_new[i].text, (Py_ssize_t)strlen(r->gfp_new[i].text), "replace"));
        if (!g || PyList_Append(gfps, g) < 0) { Py_XDECREF(g); Py_DECREF(gfps); Py_DECREF(typed); Py_DECREF(text); Py_DECREF(xl); Py_DECREF(comms); return NULL; }
        Py_DECREF(g);
    }
    r->ngfp_new = 0;
    PyObject *stats = r->c_any ? Py_BuildValue("(LLLLK)", (long long)r->c_min, (long long)r->c_max, (long long)r->c_first,
                                               (long long)r->c_last, (unsigned long long)r->c_back)
                               : (Py_INCREF(Py_None), Py_None);
    if (!stats) { Py_DECREF(typed); Py_DECREF(text); Py_DECREF(xl); Py_DECREF(comms); Py_DECREF(gfps); return NULL; }
    return Py_BuildValue("(KNNNNNN)", (unsigned long long)(r->lines - lines0), typed, text, xl, comms, gfps, stats);
}

/* dropped() -> {attr: why}: the events whose plan libtraceevent's text contradicted (verify_sample) */
static PyObject *Reader_dropped(Reader *r, PyObject *unused) {
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    for (int i = 0; i < r->nattrs; i++) {
        if (!r->attrs[i].dropped) continue;
        PyObject *k = PyLong_FromLong(i);
        PyObject *v = PyUnicode_DecodeUTF8(r->attrs[i].drop_reason, (Py_ssize_t)strlen(r->attrs[i].drop_reason), "replace");
        if (!k || !v || PyDict_SetItem(d, k, v) < 0) { Py_XDECREF(k); Py_XDECREF(v); Py_DECREF(d); return NULL; }
        Py_DECREF(k); Py_DECREF(v);
    }
    return d;
}

static PyMethodDef Reader_methods[] = {
    {"formats", (PyCFunction)Reader_formats, METH_NOARGS, "formats() -> [(attr, name, system, format text)]"},
    {"set_plan", (PyCFunction)Reader_set_plan, METH_VARARGS, "set_plan(attr, slots): that event's samples as typed rows"},
    {"read_typed", (PyCFunction)Reader_read_typed, METH_VARARGS, "read_typed(want_rows) -> typed rows and the text of the others"},
    {"dropped", (PyCFunction)Reader_dropped, METH_NOARGS, "dropped() -> {attr: why its plan was dropped}"},
    {"read", (PyCFunction)Reader_read, METH_VARARGS, "read(want) -> (text bytes of whole lines, line count); b'' at the end"},
    {"info", (PyCFunction)Reader_info, METH_NOARGS, "what the header says, and counts so far"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "thpreplay.parse._perfdata.Reader",
    .tp_basicsize = sizeof(Reader),
    .tp_dealloc = (destructor)Reader_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Reader(path): a perf.data file printed as perf script prints it",
    .tp_methods = Reader_methods,
    .tp_init = (initproc)Reader_init,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_perfdata", NULL, -1, NULL};

PyMODINIT_FUNC PyInit__perfdata(void) {
    if (PyType_Ready(&ReaderType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    ReaderError = PyErr_NewException("thpreplay.parse._perfdata.Error", PyExc_ValueError, NULL);
    Unsupported = PyErr_NewException("thpreplay.parse._perfdata.Unsupported", PyExc_ValueError, NULL);
    Py_INCREF(&ReaderType);
    PyModule_AddObject(m, "Reader", (PyObject *)&ReaderType);
    PyModule_AddObject(m, "Error", ReaderError);
    PyModule_AddObject(m, "Unsupported", Unsupported);
    return m;
}
