/*
 * trace.dat ring-buffer pages to `trace-cmd report -t` text, in C (parse/tracedat.py drives it).
 *
 * Renderer(cpus, long_size, big_endian, page_size, plans, pids, comms) takes one buffer per CPU (the
 * uncompressed flyrecord data: whole ring-buffer pages), one compiled print fmt per event id
 * (parse/tpformat.py: int64 words, tables, strings) and the saved cmdlines. render(max_bytes) returns
 * the next lines as bytes (at least one line unless the data is done: b""), records merged across
 * CPUs by timestamp as trace-cmd does (the lowest CPU first on a tie), one line per record:
 *
 *   "%16s-%-5d [%03d] %lu.%09lu: %s:" padded, then the payload
 *
 * and before the first record of a page that says the kernel dropped events, trace-cmd's line
 * "CPU:%d [%lld EVENTS DROPPED]" (or "CPU:%d [EVENTS DROPPED]" when the page does not store how many).
 *
 * Ring-buffer page (kernel/trace/ring_buffer.c, libtraceevent kbuffer-parse.c): u64 timestamp, a
 * long `commit` (data bytes in the low 27 bits; bit 31: events were missed before this page, bit 30:
 * their count is stored after the data), the data. Each entry starts with a u32: type_len (5 bits)
 * and time_delta (27 bits). type_len 29: padding (next u32: its length), 30: time extend (next u32
 * << 27 + delta added), 31: absolute time stamp (same, replacing the clock; its top 5 bits kept),
 * 0: a record whose length is in the next u32, 1..28: a record of type_len*4 bytes.
 *
 * Every read is checked against the page and the record; a page or a record that does not fit is an
 * error naming the CPU and the page, never a read past the buffer. No recursion; the print programs
 * were checked when loaded (forward jumps only, operands inside the program, bounded stack).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <stdio.h>
#include <stdarg.h>
#include <stdlib.h>
#include "tpprog.h"   /* the numeric programs' arithmetic and the check of a printed value */

enum { OP_CONST = 1, OP_FIELD, OP_UN, OP_BIN, OP_CAST, OP_SELECT, OP_JZ, OP_JMP,
       OP_LIT, OP_NUM, OP_SYM, OP_FLAGS, OP_STRFIELD, OP_DATALOC };
enum { CONV_D, CONV_U, CONV_X, CONV_XU, CONV_P, CONV_O };
enum { FLAG_LEFT = 1, FLAG_ZERO = 2, FLAG_ALT = 4, FLAG_PLUS = 8, FLAG_SPACE = 16 };
#define STACK_MAX 64
#define MISSING_EVENTS (1ULL << 31)
#define MISSING_STORED (1ULL << 30)
#define COMMIT_MASK ((1ULL << 27) - 1)
#define TS_MSB (0xf8ULL << 56)
#define TS_SHIFT 27

typedef struct {
	char *p;
	Py_ssize_t len, cap;
} buf_t;

static int buf_grow(buf_t *b, Py_ssize_t n)
{
	if (b->len + n <= b->cap)
		return 0;
	Py_ssize_t cap = b->cap ? b->cap : 1 << 16;
	while (cap < b->len + n) {
		if (cap > PY_SSIZE_T_MAX / 2)
			return -1;
		cap *= 2;
	}
	char *p = realloc(b->p, cap);
	if (!p)
		return -1;
	b->p = p;
	b->cap = cap;
	return 0;
}

static int buf_put(buf_t *b, const void *src, Py_ssize_t n)
{
	if (n <= 0)
		return 0;
	if (buf_grow(b, n))
		return -1;
	memcpy(b->p + b->len, src, n);
	b->len += n;
	return 0;
}

static int buf_pad(buf_t *b, char c, Py_ssize_t n)
{
	if (n <= 0)
		return 0;
	if (buf_grow(b, n))
		return -1;
	memset(b->p + b->len, c, n);
	b->len += n;
	return 0;
}

/* a string with printf's %-Ns / %Ns padding */
static int put_padded(buf_t *b, const char *s, Py_ssize_t n, int flags, int width)
{
	Py_ssize_t pad = width > n ? width - n : 0;
	if (!(flags & FLAG_LEFT) && buf_pad(b, ' ', pad))
		return -1;
	if (buf_put(b, s, n))
		return -1;
	if ((flags & FLAG_LEFT) && buf_pad(b, ' ', pad))
		return -1;
	return 0;
}

typedef struct {
	int64_t *code;
	Py_ssize_t ncode;
	int64_t *tables;
	Py_ssize_t ntables;
	char **strs;
	Py_ssize_t *lens;
	Py_ssize_t nstrs;
	char *name;
	Py_ssize_t name_len;
	int pid_off, pid_size;
} plan_t;

typedef struct {
	const unsigned char *data;
	Py_ssize_t len;
	Py_ssize_t page;       /* index of the loaded page */
	Py_ssize_t pos, size;  /* within the loaded page's data: next entry, data bytes */
	uint64_t ts;
	int loaded, done;
	long long missed;      /* of the loaded page, told before its first record */
	/* the next record, when have */
	int have;
	uint64_t rts;
	const unsigned char *rec;
	Py_ssize_t rlen;
	long long rmissed;
	int cpu_id;
} cpu_t;

/* The typed route (render_typed, parse/tracedat.py): an event with a typed plan is not printed; its
   printed keys' values are computed (slots: parse/perfdata.py plan, the same tpformat programs the
   text comes from) and returned as int64 columns numbered with the line of the text. */
#define MAX_SLOTS 8
#define VERIFY 64
typedef struct { int64_t *code; Py_ssize_t ncode; int interp; int64_t lo, hi; char key[64]; } tslot_t;
typedef struct { int nslots; tslot_t slots[MAX_SLOTS]; int verify_left, dropped; char reason[200]; } tplan_t;
typedef struct { int64_t *v; Py_ssize_t n, cap; } i64buf_t;
typedef struct { int64_t key; uint64_t value; int used; } gfpkey_t;
typedef struct { int64_t pid, id; int used; } commkey_t;

typedef struct {
	PyObject_HEAD
	PyObject *keep;      /* the buffers, kept alive */
	Py_buffer *views;
	int ncpu;
	cpu_t *cpus;
	int long_size, swap;
	Py_ssize_t page_size;
	plan_t *plans[65536];
	int64_t *pids;
	char **comms;
	Py_ssize_t *comm_lens;
	Py_ssize_t ncomms;
	long long records, pages, lost_known, lost_pages_unknown, lines;
	int error;
	int need;         /* an event id whose plan the caller must add (add_plan) before render goes on */
	char known[65536];  /* ids a format in the file describes (plans are compiled when first met) */
	char msg[256];  /* the error, set without the GIL and raised with it */
	/* the typed route */
	tplan_t *typed[65536];
	int typed_mode, max_slots;
	long long text_first, tlines;  /* tlines: lines of the text so far (the "cpus=N" line is 1) */
	i64buf_t t_line, t_id, t_pid, t_cpu, t_ts, t_comm, t_slot[MAX_SLOTS], x_line;
	commkey_t *cmap; Py_ssize_t ncmap, cmap_cap;
	char *new_comms; Py_ssize_t new_comms_len, new_comms_cap; int64_t ncomm_ids;
	gfpkey_t *gfp; Py_ssize_t ngfp, gfp_cap;
	struct { int64_t key; uint64_t value; char text[512]; } *gfp_new; Py_ssize_t ngfp_new, gfp_new_cap;
	int64_t c_min, c_max, c_first, c_last, c_prev; long long c_back; int c_any;
} Renderer;

static uint32_t rd32(const Renderer *r, const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return r->swap ? __builtin_bswap32(v) : v;
}

static uint64_t rd64(const Renderer *r, const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return r->swap ? __builtin_bswap64(v) : v;
}

static uint64_t rdlong(const Renderer *r, const unsigned char *p)
{
	return r->long_size == 8 ? rd64(r, p) : rd32(r, p);
}

static uint64_t rdn(const Renderer *r, const unsigned char *p, int size)
{
	switch (size) {
	case 1: return p[0];
	case 2: { uint16_t v; memcpy(&v, p, 2); return r->swap ? __builtin_bswap16(v) : v; }
	case 4: return rd32(r, p);
	default: return rd64(r, p);
	}
}

static void fail(Renderer *r, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	r->error = 1;
	memcpy(r->msg, msg, sizeof msg);
}

/* Advance a CPU to its next data record (c->have). 0 ok (have or done), -1 error. */
static int next_record(Renderer *r, cpu_t *c)
{
	Py_ssize_t hdr = 8 + r->long_size;
	c->have = 0;
	while (!c->done) {
		if (!c->loaded) {
			int rc;
			long long carry = 0;
			/* empty pages are skipped here, without recursion; a missed flag on one carries forward */
			for (;;) {
				Py_ssize_t off = c->page * r->page_size;
				if (off >= c->len) {
					rc = 1;
					break;
				}
				if (c->len - off < r->page_size) {
					fail(r, "cpu %d: data ends inside page %zd (%zd of %zd bytes)", c->cpu_id, c->page,
					     c->len - off, r->page_size);
					return -1;
				}
				const unsigned char *pg = c->data + off;
				uint64_t commit = rdlong(r, pg + 8);
				uint64_t size = commit & COMMIT_MASK;
				r->pages++;
				if ((Py_ssize_t)size > r->page_size - hdr) {
					fail(r, "cpu %d page %zd: page header says %llu data bytes, past the %zd-byte page",
					     c->cpu_id, c->page, (unsigned long long)size, r->page_size);
					return -1;
				}
				long long missed = 0;
				if (commit & MISSING_EVENTS) {
					missed = -1;
					if ((commit & MISSING_STORED) && (Py_ssize_t)size + r->long_size <= r->page_size - hdr) {
						uint64_t n = rdlong(r, pg + hdr + size);
						missed = n > (uint64_t)INT64_MAX ? INT64_MAX : (long long)n;
					}
				}
				if (missed)
					carry = carry > 0 && missed > 0 ? carry + missed : (carry ? carry : missed);
				if (size) {
					c->ts = rd64(r, pg);
					c->pos = 0;
					c->size = (Py_ssize_t)size;
					c->missed = carry;
					c->loaded = 1;
					rc = 0;
					break;
				}
				c->page++;
			}
			if (rc == 1) {
				c->done = 1;
				break;
			}
		}
		const unsigned char *d = c->data + c->page * r->page_size + hdr;
		if (c->pos >= c->size) {
			c->page++;
			c->loaded = 0;
			continue;
		}
		if (c->size - c->pos < 4) {
			fail(r, "cpu %d page %zd: entry header at byte %zd runs past the page data (%zd bytes)", c->cpu_id,
			     c->page, c->pos, c->size);
			return -1;
		}
		uint32_t w = rd32(r, d + c->pos);
		unsigned type_len = r->swap ? (w >> 27) : (w & 31);
		uint64_t delta = r->swap ? (w & ((1u << 27) - 1)) : (w >> 5);
		Py_ssize_t p = c->pos + 4;
		Py_ssize_t length;
		if (type_len == 29) {  /* padding */
			if (c->size - p < 4) {
				c->pos = c->size;  /* padding to the end of the page */
				continue;
			}
			length = rd32(r, d + p);
			c->ts += delta;
			if (length > c->size - p) {
				c->pos = c->size;
				continue;
			}
			c->pos = p + length;
			continue;
		}
		if (type_len == 30 || type_len == 31) {
			if (c->size - p < 4) {
				fail(r, "cpu %d page %zd: time stamp entry at byte %zd runs past the page data", c->cpu_id,
				     c->page, c->pos);
				return -1;
			}
			uint64_t ext = ((uint64_t)rd32(r, d + p) << TS_SHIFT) + delta;
			if (type_len == 31)
				c->ts = ext | (c->ts & TS_MSB);
			else
				c->ts += ext;
			c->pos = p + 4;
			continue;
		}
		if (type_len == 0) {
			if (c->size - p < 4) {
				fail(r, "cpu %d page %zd: record length at byte %zd runs past the page data", c->cpu_id, c->page,
				     c->pos);
				return -1;
			}
			uint32_t l = rd32(r, d + p);
			if (l < 4) {
				fail(r, "cpu %d page %zd: record at byte %zd has length %u", c->cpu_id, c->page, c->pos, l);
				return -1;
			}
			length = ((Py_ssize_t)(l - 4) + 3) & ~(Py_ssize_t)3;
			p += 4;
		} else {
			length = (Py_ssize_t)type_len * 4;
		}
		if (length > c->size - p) {
			fail(r, "cpu %d page %zd: record at byte %zd is %zd bytes, past the page data (%zd bytes)", c->cpu_id,
			     c->page, c->pos, length, c->size);
			return -1;
		}
		c->ts += delta;
		c->have = 1;
		c->rts = c->ts;
		c->rec = d + p;
		c->rlen = length;
		c->rmissed = c->missed;
		c->missed = 0;
		c->pos = p + length;
		return 0;
	}
	return 0;
}

/* --- print programs ------------------------------------------------------------------------------ */

static int put_num(buf_t *b, uint64_t v, int conv, int flags, int width, int prec)
{
	char digits[40], out[320];
	int n = 0, neg = 0;
	const char *prefix = "";
	if (conv == CONV_P) {
		if (v == 0)
			return put_padded(b, "(nil)", 5, flags, width);
		conv = CONV_X;
		flags |= FLAG_ALT;
	}
	if (conv == CONV_D && (int64_t)v < 0) {
		neg = 1;
		v = (uint64_t)0 - v;
	}
	const char *hex = conv == CONV_XU ? "0123456789ABCDEF" : "0123456789abcdef";
	if (conv == CONV_X || conv == CONV_XU) {
		do { digits[n++] = hex[v & 15]; v >>= 4; } while (v);
		if ((flags & FLAG_ALT) && !(n == 1 && digits[0] == '0'))
			prefix = conv == CONV_XU ? "0X" : "0x";
	} else if (conv == CONV_O) {
		do { digits[n++] = (char)('0' + (v & 7)); v >>= 3; } while (v);
		if ((flags & FLAG_ALT) && digits[n - 1] != '0')
			digits[n++] = '0';
	} else {
		do { digits[n++] = (char)('0' + v % 10); v /= 10; } while (v);
	}
	if (prec == 0 && n == 1 && digits[0] == '0')
		n = 0;
	int zeros = prec > n ? prec - n : 0;
	if (neg)
		prefix = "-";
	else if (conv == CONV_D && (flags & FLAG_PLUS))
		prefix = "+";
	else if (conv == CONV_D && (flags & FLAG_SPACE))
		prefix = " ";
	int plen = (int)strlen(prefix);
	int body = plen + zeros + n;
	if ((flags & FLAG_ZERO) && !(flags & FLAG_LEFT) && prec < 0 && width > body) {
		zeros += width - body;
		body = width;
	}
	int k = 0;
	if (body > (int)sizeof out)
		return -1;
	memcpy(out, prefix, plen);
	k = plen;
	memset(out + k, '0', zeros);
	k += zeros;
	while (n)
		out[k++] = digits[--n];
	return put_padded(b, out, k, flags, width);
}

static int put_str(buf_t *b, const plan_t *pl, int64_t sid, int flags, int width)
{
	return put_padded(b, pl->strs[sid], pl->lens[sid], flags, width);
}

/* Run a plan on one record. -1: error set (or memory). */
static int run(Renderer *r, const plan_t *pl, const unsigned char *rec, Py_ssize_t rlen, buf_t *b, int cpu_id)
{
	int64_t st[STACK_MAX];
	int sp = 0;
	const int64_t *c = pl->code;
	Py_ssize_t pc = 0, n = pl->ncode;
#define POP() (st[--sp])
	while (pc < n) {
		int64_t op = c[pc];
		switch (op) {
		case OP_CONST:
			st[sp++] = c[pc + 1];
			pc += 2;
			break;
		case OP_FIELD: {
			int64_t off = c[pc + 1], size = c[pc + 2], sign = c[pc + 3];
			if (off + size > rlen) {
				fail(r, "cpu %d: a %.*s record of %zd bytes is shorter than its format (a field at %lld..%lld)",
				     cpu_id, (int)pl->name_len, pl->name, rlen, (long long)off, (long long)(off + size));
				return -1;
			}
			uint64_t v = rdn(r, rec + off, (int)size);
			st[sp++] = sign ? cast_bits((int64_t)v, size * 8, 1) : (int64_t)v;
			pc += 4;
			break;
		}
		case OP_UN: {
			int64_t a = POP();
			st[sp++] = c[pc + 1] == 0 ? (int64_t)(0 - (uint64_t)a) : c[pc + 1] == 1 ? !a : ~a;
			pc += 2;
			break;
		}
		case OP_BIN: {
			int64_t bb = POP(), a = POP();
			st[sp++] = binop(c[pc + 1], a, bb);
			pc += 2;
			break;
		}
		case OP_CAST: {
			int64_t a = POP();
			st[sp++] = cast_bits(a, c[pc + 1], c[pc + 2]);
			pc += 3;
			break;
		}
		case OP_SELECT: {
			int64_t e = POP(), t = POP(), cond = POP();
			st[sp++] = cond ? t : e;
			pc += 1;
			break;
		}
		case OP_JZ: {
			int64_t a = POP();
			pc = a ? pc + 2 : c[pc + 1];
			break;
		}
		case OP_JMP:
			pc = c[pc + 1];
			break;
		case OP_LIT:
			if (put_str(b, pl, c[pc + 1], (int)c[pc + 2], (int)c[pc + 3]))
				return -1;
			pc += 4;
			break;
		case OP_NUM: {
			int64_t a = POP();
			if (put_num(b, (uint64_t)a, (int)c[pc + 1], (int)c[pc + 2], (int)c[pc + 3], (int)c[pc + 4]))
				return -1;
			pc += 5;
			break;
		}
		case OP_SYM: {
			int64_t v = POP();
			const int64_t *t = pl->tables + c[pc + 1];
			int64_t cnt = t[0], i;
			for (i = 0; i < cnt; i++)
				if (t[1 + 2 * i] == v)
					break;
			if (i < cnt) {
				if (put_str(b, pl, t[2 + 2 * i], (int)c[pc + 2], (int)c[pc + 3]))
					return -1;
			} else {
				char tmp[24];
				int k = snprintf(tmp, sizeof tmp, "0x%llx", (unsigned long long)v);
				if (buf_put(b, tmp, k))
					return -1;
			}
			pc += 4;
			break;
		}
		case OP_FLAGS: {
			/* libtraceevent's __print_flags: names of the flags wholly set, in table order, the rest as 0x.. */
			uint64_t v = (uint64_t)POP();
			const int64_t *t = pl->tables + c[pc + 1];
			int64_t cnt = t[0], i, delim = c[pc + 2];
			int flags = (int)c[pc + 3], width = (int)c[pc + 4], printed = 0;
			for (i = 0; i < cnt; i++) {
				int64_t fv = t[1 + 2 * i];
				if (!v && fv < 0) {
					if (put_str(b, pl, t[2 + 2 * i], flags, width))
						return -1;
					break;
				}
				if (fv > 0 && (v & (uint64_t)fv) == (uint64_t)fv) {
					if (printed && put_str(b, pl, delim, 0, 0))
						return -1;
					if (put_str(b, pl, t[2 + 2 * i], flags, width))
						return -1;
					printed = 1;
					v &= ~(uint64_t)fv;
				}
			}
			if (v) {
				char tmp[24];
				if (printed && put_str(b, pl, delim, 0, 0))
					return -1;
				int k = snprintf(tmp, sizeof tmp, "0x%llx", (unsigned long long)v);
				if (buf_put(b, tmp, k))
					return -1;
			}
			pc += 5;
			break;
		}
		case OP_STRFIELD:
		case OP_DATALOC: {
			int64_t off = c[pc + 1], size = c[pc + 2];
			const unsigned char *s;
			Py_ssize_t len;
			if (off + size > rlen) {
				fail(r, "cpu %d: a %.*s record of %zd bytes is shorter than its format (a field at %lld..%lld)",
				     cpu_id, (int)pl->name_len, pl->name, rlen, (long long)off, (long long)(off + size));
				return -1;
			}
			if (op == OP_DATALOC) {
				uint32_t loc = rd32(r, rec + off);
				Py_ssize_t soff = loc & 0xffff, slen = loc >> 16;
				if (soff + slen > rlen) {
					fail(r, "cpu %d: a %.*s record's string (%zd bytes at %zd) runs past the record (%zd bytes)",
					     cpu_id, (int)pl->name_len, pl->name, slen, soff, rlen);
					return -1;
				}
				s = rec + soff;
				len = slen;
			} else {
				s = rec + off;
				len = size;
			}
			const unsigned char *z = memchr(s, 0, len);
			if (z)
				len = z - s;
			if (put_padded(b, (const char *)s, len, (int)c[pc + 3], (int)c[pc + 4]))
				return -1;
			pc += 5;
			break;
		}
		default:
			fail(r, "bad print program");
			return -1;
		}
	}
#undef POP
	return 0;
}

/* Check a program once, so that run() needs no checks: operands inside the program and its tables,
 * jumps forward onto instruction starts, the same stack depth on every path, at most STACK_MAX. */
static int check_plan(const plan_t *pl)
{
	static const int width[] = {0, 2, 4, 2, 2, 3, 1, 2, 2, 4, 5, 4, 5, 5, 5};
	static const int pops[] = {0, 0, 0, 1, 2, 1, 3, 1, 0, 0, 1, 1, 1, 0, 0};
	static const int pushes[] = {0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0};
	const int64_t *c = pl->code;
	Py_ssize_t pc = 0, n = pl->ncode;
	int sp = 0, after_jmp = 0, ok = 1;
	int *expect = PyMem_Malloc(sizeof(int) * (n + 1));
	char *start = PyMem_Calloc(n + 1, 1);
	if (!expect || !start) {
		PyMem_Free(expect);
		PyMem_Free(start);
		return -1;
	}
	for (Py_ssize_t i = 0; i <= n; i++)
		expect[i] = -1;
	while (pc < n && ok) {
		start[pc] = 1;
		if (expect[pc] >= 0) {
			if (after_jmp)
				sp = expect[pc];
			else if (expect[pc] != sp)
				ok = 0;
		} else if (after_jmp) {
			ok = 0;  /* code no path reaches */
		}
		after_jmp = 0;
		int64_t op = c[pc];
		if (!ok || op < OP_CONST || op > OP_DATALOC || pc + width[op] > n || sp < pops[op]) {
			ok = 0;
			break;
		}
		sp = sp - pops[op] + pushes[op];
		if (sp > STACK_MAX) {
			ok = 0;
			break;
		}
		const int64_t *a = c + pc + 1;
		switch (op) {
		case OP_FIELD:
			ok = a[0] >= 0 && a[0] <= 0xffff && (a[1] == 1 || a[1] == 2 || a[1] == 4 || a[1] == 8);
			break;
		case OP_UN:
			ok = a[0] >= 0 && a[0] <= 2;
			break;
		case OP_BIN:
			ok = a[0] >= 0 && a[0] <= 17;
			break;
		case OP_STRFIELD:
		case OP_DATALOC:
			ok = a[0] >= 0 && a[0] <= 0xffff && a[1] >= 0 && a[1] <= 0xffff && (op != OP_DATALOC || a[1] == 4) &&
			     a[3] >= 0 && a[3] <= 256;
			break;
		case OP_JZ:
		case OP_JMP:
			ok = a[0] > pc && a[0] <= n && (expect[a[0]] < 0 || expect[a[0]] == sp);
			if (ok)
				expect[a[0]] = sp;
			after_jmp = op == OP_JMP;
			break;
		case OP_LIT:
			ok = a[0] >= 0 && a[0] < pl->nstrs && a[2] >= 0 && a[2] <= 256;
			break;
		case OP_NUM:
			ok = a[0] >= CONV_D && a[0] <= CONV_O && a[2] >= 0 && a[2] <= 256 && a[3] >= -1 && a[3] <= 64;
			break;
		case OP_SYM:
		case OP_FLAGS: {
			int64_t t = a[0];
			ok = t >= 0 && t < pl->ntables && pl->tables[t] >= 0 && pl->tables[t] <= (pl->ntables - t - 1) / 2;
			for (int64_t i = 0; ok && i < pl->tables[t]; i++)
				ok = pl->tables[t + 2 + 2 * i] >= 0 && pl->tables[t + 2 + 2 * i] < pl->nstrs;
			if (op == OP_FLAGS)
				ok = ok && a[1] >= 0 && a[1] < pl->nstrs;
			int64_t w = op == OP_SYM ? a[2] : a[3];
			ok = ok && w >= 0 && w <= 256;
			break;
		}
		}
		pc += width[op];
	}
	if (ok) {
		start[n] = 1;
		if (after_jmp)
			sp = expect[n] >= 0 ? expect[n] : sp;
		else if (expect[n] >= 0 && expect[n] != sp)
			ok = 0;
		ok = ok && sp == 0;
		for (Py_ssize_t i = 0; ok && i <= n; i++)
			if (expect[i] >= 0 && !start[i])
				ok = 0;
	}
	PyMem_Free(expect);
	PyMem_Free(start);
	return ok ? 0 : 1;
}

static void plan_free(plan_t *pl)
{
	if (!pl)
		return;
	PyMem_Free(pl->code);
	PyMem_Free(pl->tables);
	for (Py_ssize_t i = 0; i < pl->nstrs; i++)
		PyMem_Free(pl->strs[i]);
	PyMem_Free(pl->strs);
	PyMem_Free(pl->lens);
	PyMem_Free(pl->name);
	PyMem_Free(pl);
}

static char *copy_bytes(PyObject *o, Py_ssize_t *len)
{
	char *s;
	if (PyBytes_AsStringAndSize(o, &s, len) < 0)
		return NULL;
	char *p = PyMem_Malloc(*len + 1);
	if (!p) {
		PyErr_NoMemory();
		return NULL;
	}
	memcpy(p, s, *len);
	p[*len] = 0;
	return p;
}

/* (id, name, code, tables, strings, pid_off, pid_size) */
static plan_t *plan_new(PyObject *t, int *id)
{
	PyObject *name, *code, *tables, *strings;
	int pid_off, pid_size;
	if (!PyArg_ParseTuple(t, "iSSSO!ii", id, &name, &code, &tables, &PyList_Type, &strings, &pid_off, &pid_size))
		return NULL;
	if (*id < 0 || *id > 65535 || pid_off < 0 || pid_off > 0xffff || !(pid_size == 2 || pid_size == 4 || pid_size == 8)) {
		PyErr_SetString(PyExc_ValueError, "bad plan header");
		return NULL;
	}
	plan_t *pl = PyMem_Calloc(1, sizeof *pl);
	if (!pl)
		return (plan_t *)PyErr_NoMemory();
	pl->pid_off = pid_off;
	pl->pid_size = pid_size;
	Py_ssize_t n;
	if (!(pl->name = copy_bytes(name, &pl->name_len)))
		goto bad;
	char *raw;
	if (PyBytes_AsStringAndSize(code, &raw, &n) < 0 || n % 8)
		goto badv;
	pl->ncode = n / 8;
	if (!(pl->code = PyMem_Malloc(n + 8)))
		goto nomem;
	memcpy(pl->code, raw, n);
	if (PyBytes_AsStringAndSize(tables, &raw, &n) < 0 || n % 8)
		goto badv;
	pl->ntables = n / 8;
	if (!(pl->tables = PyMem_Malloc(n + 8)))
		goto nomem;
	memcpy(pl->tables, raw, n);
	pl->nstrs = PyList_GET_SIZE(strings);
	pl->strs = PyMem_Calloc(pl->nstrs + 1, sizeof(char *));
	pl->lens = PyMem_Calloc(pl->nstrs + 1, sizeof(Py_ssize_t));
	if (!pl->strs || !pl->lens)
		goto nomem;
	for (Py_ssize_t i = 0; i < pl->nstrs; i++) {
		PyObject *s = PyList_GET_ITEM(strings, i);
		if (!PyBytes_Check(s))
			goto badv;
		if (!(pl->strs[i] = copy_bytes(s, &pl->lens[i])))
			goto bad;
	}
	int rc = check_plan(pl);
	if (rc < 0)
		goto nomem;
	if (rc)
		goto badv;
	return pl;
nomem:
	PyErr_NoMemory();
	goto bad;
badv:
	if (!PyErr_Occurred())
		PyErr_SetString(PyExc_ValueError, "bad print program");
bad:
	plan_free(pl);
	return NULL;
}

static void Renderer_dealloc(Renderer *self)
{
	for (int i = 0; i < 65536; i++) {
		plan_free(self->plans[i]);
		if (self->typed[i]) {
			for (int j = 0; j < self->typed[i]->nslots; j++)
				free(self->typed[i]->slots[j].code);
			free(self->typed[i]);
		}
	}
	free(self->t_line.v); free(self->t_id.v); free(self->t_pid.v); free(self->t_cpu.v); free(self->t_ts.v);
	free(self->t_comm.v); free(self->x_line.v);
	for (int j = 0; j < MAX_SLOTS; j++)
		free(self->t_slot[j].v);
	free(self->cmap); free(self->new_comms); free(self->gfp); free(self->gfp_new);
	if (self->views) {
		for (int i = 0; i < self->ncpu; i++)
			if (self->views[i].obj)
				PyBuffer_Release(&self->views[i]);
		PyMem_Free(self->views);
	}
	PyMem_Free(self->cpus);
	for (Py_ssize_t i = 0; i < self->ncomms; i++)
		PyMem_Free(self->comms[i]);
	PyMem_Free(self->comms);
	PyMem_Free(self->comm_lens);
	PyMem_Free(self->pids);
	Py_XDECREF(self->keep);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Renderer_init(Renderer *self, PyObject *args, PyObject *kw)
{
	PyObject *cpus, *plans, *comms;
	int long_size, big;
	Py_ssize_t page_size;
	if (!PyArg_ParseTuple(args, "O!iinO!O!", &PyList_Type, &cpus, &long_size, &big, &page_size, &PyList_Type, &plans,
			      &PyList_Type, &comms))
		return -1;
	if (self->cpus) {
		PyErr_SetString(PyExc_RuntimeError, "Renderer initialised twice");
		return -1;
	}
	if (!(long_size == 4 || long_size == 8) || page_size < 64 || page_size > (1 << 24)) {
		PyErr_SetString(PyExc_ValueError, "bad long size or page size");
		return -1;
	}
	int host_big = 0;
	{ uint16_t one = 1; unsigned char b0; memcpy(&b0, &one, 1); host_big = b0 == 0; }
	self->swap = (big != 0) != host_big;
	self->long_size = long_size;
	self->page_size = page_size;
	Py_ssize_t ncpu = PyList_GET_SIZE(cpus);
	if (ncpu > 65536) {
		PyErr_SetString(PyExc_ValueError, "too many CPUs");
		return -1;
	}
	self->ncpu = (int)ncpu;
	self->keep = cpus;
	Py_INCREF(cpus);
	self->views = PyMem_Calloc(ncpu + 1, sizeof(Py_buffer));
	self->cpus = PyMem_Calloc(ncpu + 1, sizeof(cpu_t));
	if (!self->views || !self->cpus) {
		PyErr_NoMemory();
		return -1;
	}
	for (Py_ssize_t i = 0; i < ncpu; i++) {
		PyObject *t = PyList_GET_ITEM(cpus, i);
		int cpu_id;
		PyObject *data;
		if (!PyArg_ParseTuple(t, "iO", &cpu_id, &data))
			return -1;
		if (PyObject_GetBuffer(data, &self->views[i], PyBUF_SIMPLE) < 0)
			return -1;
		self->cpus[i].data = self->views[i].buf;
		self->cpus[i].len = self->views[i].len;
		self->cpus[i].cpu_id = cpu_id;
	}
	/* plans: the ids of the event formats in the file (their programs come through add_plan) */
	for (Py_ssize_t i = 0; i < PyList_GET_SIZE(plans); i++) {
		long id = PyLong_AsLong(PyList_GET_ITEM(plans, i));
		if (id == -1 && PyErr_Occurred())
			return -1;
		if (id < 0 || id > 65535) {
			PyErr_SetString(PyExc_ValueError, "event id outside 0..65535");
			return -1;
		}
		self->known[id] = 1;
	}
	self->need = -1;
	/* comms: a list of (pid, bytes) sorted by pid */
	Py_ssize_t nc = PyList_GET_SIZE(comms);
	self->pids = PyMem_Calloc(nc + 1, sizeof(int64_t));
	self->comms = PyMem_Calloc(nc + 1, sizeof(char *));
	self->comm_lens = PyMem_Calloc(nc + 1, sizeof(Py_ssize_t));
	if (!self->pids || !self->comms || !self->comm_lens) {
		PyErr_NoMemory();
		return -1;
	}
	for (Py_ssize_t i = 0; i < nc; i++) {
		long long pid;
		PyObject *name;
		if (!PyArg_ParseTuple(PyList_GET_ITEM(comms, i), "LS", &pid, &name))
			return -1;
		if (i && pid <= self->pids[i - 1]) {
			PyErr_SetString(PyExc_ValueError, "comms not sorted by pid");
			return -1;
		}
		self->pids[i] = pid;
		if (!(self->comms[i] = copy_bytes(name, &self->comm_lens[i])))
			return -1;
		self->ncomms = i + 1;
	}
	return 0;
}

static void comm_of(const Renderer *r, int64_t pid, const char **s, Py_ssize_t *n)
{
	Py_ssize_t lo = 0, hi = r->ncomms;
	while (lo < hi) {
		Py_ssize_t mid = (lo + hi) / 2;
		if (r->pids[mid] < pid)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < r->ncomms && r->pids[lo] == pid) {
		*s = r->comms[lo];
		*n = r->comm_lens[lo];
	} else if (pid == 0) {
		*s = "<idle>";
		*n = 6;
	} else {
		*s = "<...>";
		*n = 5;
	}
}

/* ---- the typed route ---- */
static int i64_grow(i64buf_t *b, Py_ssize_t cap)
{
	if (b->cap >= cap)
		return 0;
	int64_t *p = realloc(b->v, cap * sizeof(int64_t));
	if (!p)
		return -1;
	b->v = p;
	b->cap = cap;
	return 0;
}

static int i64_push(i64buf_t *b, int64_t v)
{
	if (b->n == b->cap && i64_grow(b, b->cap ? b->cap * 2 : 4096))
		return -1;
	b->v[b->n++] = v;
	return 0;
}

/* A slot's value (its program: numeric ops only, checked by check_tslot); 0: a field past the record. */
static int eval_tslot(const Renderer *r, const tslot_t *sl, const unsigned char *rec, Py_ssize_t rlen, int64_t *out)
{
	int64_t st[STACK_MAX];
	int sp = 0;
	const int64_t *c = sl->code;
	Py_ssize_t pc = 0;
	while (pc < sl->ncode) {
		switch (c[pc]) {
		case OP_CONST: st[sp++] = c[pc + 1]; pc += 2; break;
		case OP_FIELD: {
			int64_t off = c[pc + 1], size = c[pc + 2];
			if (off + size > rlen)
				return 0;
			uint64_t v = rdn(r, rec + off, (int)size);
			st[sp++] = c[pc + 3] ? cast_bits((int64_t)v, size * 8, 1) : (int64_t)v;
			pc += 4;
			break;
		}
		case OP_UN: { int64_t a = st[--sp]; st[sp++] = c[pc + 1] == 0 ? (int64_t)(0 - (uint64_t)a) : c[pc + 1] == 1 ? !a : ~a; pc += 2; break; }
		case OP_BIN: { int64_t bb = st[--sp], a = st[--sp]; st[sp++] = binop(c[pc + 1], a, bb); pc += 2; break; }
		case OP_CAST: { int64_t a = st[--sp]; st[sp++] = cast_bits(a, c[pc + 1], c[pc + 2]); pc += 3; break; }
		case OP_SELECT: { int64_t e = st[--sp], t = st[--sp], cond = st[--sp]; st[sp++] = cond ? t : e; pc += 1; break; }
		default: return 0;
		}
	}
	*out = st[0];
	return 1;
}

static int check_tslot(const tslot_t *sl)
{
	int sp = 0;
	Py_ssize_t pc = 0;
	const int64_t *c = sl->code;
	while (pc < sl->ncode) {
		int64_t op = c[pc];
		int width = op == OP_CONST ? 2 : op == OP_FIELD ? 4 : op == OP_UN || op == OP_BIN ? 2 : op == OP_CAST ? 3 : op == OP_SELECT ? 1 : 0;
		int pops = op == OP_UN || op == OP_CAST ? 1 : op == OP_BIN ? 2 : op == OP_SELECT ? 3 : 0;
		if (!width || pc + width > sl->ncode || sp < pops)
			return 0;
		if (op == OP_FIELD && (c[pc + 1] < 0 || c[pc + 1] > 0xffff || (c[pc + 2] != 1 && c[pc + 2] != 2 && c[pc + 2] != 4 && c[pc + 2] != 8)))
			return 0;
		if ((op == OP_UN && (c[pc + 1] < 0 || c[pc + 1] > 2)) || (op == OP_BIN && (c[pc + 1] < 0 || c[pc + 1] > 17)))
			return 0;
		sp += 1 - pops;
		if (sp > STACK_MAX)
			return 0;
		pc += width;
	}
	return sp == 1;
}

static int find_token(const char *pay, Py_ssize_t n, const char *key, const char **tok, Py_ssize_t *tlen)
{
	Py_ssize_t k = (Py_ssize_t)strlen(key);
	for (Py_ssize_t i = 0; i + k < n; i++) {
		if ((i == 0 || pay[i - 1] == ' ') && memcmp(pay + i, key, k) == 0 && pay[i + k] == '=') {
			Py_ssize_t j = i + k + 1, e = j;
			while (e < n && pay[e] != ' ')
				e++;
			*tok = pay + j;
			*tlen = e - j;
			return 1;
		}
	}
	return 0;
}

/* The slots as the text parser would read them from the printed line; 0: leave it to the parser. */
static int typed_values(const Renderer *r, const tplan_t *tp, const unsigned char *rec, Py_ssize_t rlen, int64_t pid,
			int cpu, uint64_t ts, int64_t *v)
{
	/* the text parser rejects pids past PID_MAX_LIMIT, cpus past NR_CPUS (kernel/events.py), times past int64 */
	if (pid < -1 || pid > 4 * 1024 * 1024 || cpu >= 8192 || ts > (uint64_t)INT64_MAX)
		return 0;
	for (int j = 0; j < tp->nslots; j++) {
		const tslot_t *sl = &tp->slots[j];
		int64_t x;
		if (!eval_tslot(r, sl, rec, rlen, &x))
			return 0;
		uint64_t u = (uint64_t)x;
		switch (sl->interp) {
		case I_SIGNED: if (x < sl->lo || x > sl->hi) return 0; break;
		case I_PFN: if (u == UINT64_MAX) { x = 0; break; }
			/* fall through */
		case I_UNSIGNED: if (u > (uint64_t)INT64_MAX || x < sl->lo || x > sl->hi) return 0; break;
		case I_PTR: if (!u) return 0;
			/* fall through */
		case I_HEX: case I_GFP: if (u < (uint64_t)sl->lo || u > (uint64_t)sl->hi) return 0; break;
		default: break;
		}
		v[j] = x;
	}
	return 1;
}

/* The payload as the renderer prints it, in b (reset). -1: error. */
static int payload_text(Renderer *r, const plan_t *pl, const unsigned char *rec, Py_ssize_t rlen, buf_t *b, int cpu_id)
{
	b->len = 0;
	return run(r, pl, rec, rlen, b, cpu_id) ? -1 : 0;
}

/* A gfp mask's printed names: kept the first time the mask is met (the record's payload printed). 1 known,
   0 not found (the record goes the text way), -1 error. */
static int gfp_known(Renderer *r, const plan_t *pl, const tplan_t *tp, int id, int j, uint64_t value, const unsigned char *rec,
		     Py_ssize_t rlen, int cpu_id)
{
	int64_t key = (int64_t)id * MAX_SLOTS + j;
	if (r->ngfp * 2 >= r->gfp_cap) {
		Py_ssize_t cap = r->gfp_cap ? r->gfp_cap * 2 : 256;
		gfpkey_t *g = calloc(cap, sizeof(gfpkey_t));
		if (!g)
			return -1;
		for (Py_ssize_t i = 0; i < r->gfp_cap; i++) {
			if (!r->gfp[i].used)
				continue;
			size_t h = (size_t)((r->gfp[i].value * 0x9E3779B97F4A7C15ull) ^ (uint64_t)r->gfp[i].key) & (size_t)(cap - 1);
			while (g[h].used)
				h = (h + 1) & (size_t)(cap - 1);
			g[h] = r->gfp[i];
		}
		free(r->gfp);
		r->gfp = g;
		r->gfp_cap = cap;
	}
	size_t h = (size_t)((value * 0x9E3779B97F4A7C15ull) ^ (uint64_t)key) & (size_t)(r->gfp_cap - 1);
	while (r->gfp[h].used) {
		if (r->gfp[h].value == value && r->gfp[h].key == key)
			return 1;
		h = (h + 1) & (size_t)(r->gfp_cap - 1);
	}
	buf_t b = {0};
	const char *tok;
	Py_ssize_t tlen;
	int found = 0;
	if (payload_text(r, pl, rec, rlen, &b, cpu_id)) {
		free(b.p);
		return -1;
	}
	found = find_token(b.p, b.len, tp->slots[j].key, &tok, &tlen) && tlen < 512;
	if (found) {
		if (r->ngfp_new == r->gfp_new_cap) {
			Py_ssize_t cap = r->gfp_new_cap ? r->gfp_new_cap * 2 : 64;
			void *q = realloc(r->gfp_new, cap * sizeof *r->gfp_new);
			if (!q) {
				free(b.p);
				return -1;
			}
			r->gfp_new = q;
			r->gfp_new_cap = cap;
		}
		r->gfp_new[r->ngfp_new].key = key;
		r->gfp_new[r->ngfp_new].value = value;
		memcpy(r->gfp_new[r->ngfp_new].text, tok, tlen);
		r->gfp_new[r->ngfp_new].text[tlen] = 0;
		r->ngfp_new++;
		r->gfp[h] = (gfpkey_t){key, value, 1};
		r->ngfp++;
	}
	free(b.p);
	return found;
}

/* The comm id of a pid for typed rows (its string, leading blanks off as the text parser reads the
   right-aligned %16s, sent once); -2: a comm the text parser should read (a byte outside printable
   ASCII, a blank, or '[' or ']', which the line's prefix uses for the cpu). -1: error. A '-' or ':' is
   typed: the text parser's fixed columns take the comm as the first 16 bytes and the pid after the '-'
   in column 16; its regex (text._FTRACE_RE) ends the comm at the last "-digits" before the blank and the
   cpu's '[', and a comm has no blank; the ": " after the time cannot be in "comm-pid". (polars-1,
   kworker/1:0, tokio-rt-worker: their samples as text cost the text parser's work in most chunks.) */
static int64_t typed_comm(Renderer *r, int64_t pid, const char *comm, Py_ssize_t clen)
{
	if (r->ncmap * 2 >= r->cmap_cap) {
		Py_ssize_t cap = r->cmap_cap ? r->cmap_cap * 2 : 1024;
		commkey_t *m = calloc(cap, sizeof(commkey_t));
		if (!m)
			return -1;
		for (Py_ssize_t i = 0; i < r->cmap_cap; i++) {
			if (!r->cmap[i].used)
				continue;
			size_t h = (size_t)((uint64_t)r->cmap[i].pid * 0x9E3779B97F4A7C15ull) & (size_t)(cap - 1);
			while (m[h].used)
				h = (h + 1) & (size_t)(cap - 1);
			m[h] = r->cmap[i];
		}
		free(r->cmap);
		r->cmap = m;
		r->cmap_cap = cap;
	}
	size_t h = (size_t)((uint64_t)pid * 0x9E3779B97F4A7C15ull) & (size_t)(r->cmap_cap - 1);
	while (r->cmap[h].used) {
		if (r->cmap[h].pid == pid)
			return r->cmap[h].id;
		h = (h + 1) & (size_t)(r->cmap_cap - 1);
	}
	int64_t id;
	int odd = clen == 0;
	for (Py_ssize_t i = 0; i < clen; i++) {
		unsigned char ch = (unsigned char)comm[i];
		if (ch <= 0x20 || ch > 0x7e || ch == '[' || ch == ']')
			odd = 1;
	}
	if (odd) {
		id = -2;
	} else {
		if (r->new_comms_len + clen + 1 > r->new_comms_cap) {
			Py_ssize_t cap = r->new_comms_cap ? r->new_comms_cap * 2 : 4096;
			while (cap < r->new_comms_len + clen + 1)
				cap *= 2;
			char *q = realloc(r->new_comms, cap);
			if (!q)
				return -1;
			r->new_comms = q;
			r->new_comms_cap = cap;
		}
		memcpy(r->new_comms + r->new_comms_len, comm, clen);
		r->new_comms[r->new_comms_len + clen] = 0;
		r->new_comms_len += clen + 1;
		id = r->ncomm_ids++;
	}
	r->cmap[h] = (commkey_t){pid, id, 1};
	r->ncmap++;
	return id;
}

static void chunk_ts(Renderer *r, uint64_t time)
{
	int64_t ts = (int64_t)time;
	if (!r->c_any) {
		r->c_min = r->c_max = r->c_first = ts;
		r->c_any = 1;
	} else {
		if (ts < r->c_prev)
			r->c_back++;
		if (ts < r->c_min)
			r->c_min = ts;
		if (ts > r->c_max)
			r->c_max = ts;
	}
	r->c_prev = r->c_last = ts;
}

/* the text lines printed from b->p + from: numbered on, one x_line entry each */
static int number_text(Renderer *r, buf_t *b, Py_ssize_t from)
{
	for (Py_ssize_t i = from; i < b->len; i++)
		if (b->p[i] == '\n' && i64_push(&r->x_line, ++r->tlines))
			return -1;
	return 0;
}

/* The typed values of a printed record against its payload text; a difference drops the plan. */
static void verify_typed(Renderer *r, tplan_t *tp, const int64_t *v, const char *pay, Py_ssize_t n)
{
	for (int j = 0; j < tp->nslots && !tp->dropped; j++) {
		const tslot_t *sl = &tp->slots[j];
		const char *tok;
		Py_ssize_t tlen;
		char t[80];
		if (sl->interp == I_GFP)
			continue;
		if (!find_token(pay, n, sl->key, &tok, &tlen) || tlen >= (Py_ssize_t)sizeof t) {
			snprintf(tp->reason, sizeof tp->reason, "%s= is not where its print fmt puts it", sl->key);
			tp->dropped = 1;
			break;
		}
		memcpy(t, tok, tlen);
		t[tlen] = 0;
		int same = printed_as(sl->interp, t, (size_t)tlen, v[j]);
		if (!same) {
			snprintf(tp->reason, sizeof tp->reason, "%s: the value computed from its print fmt (%lld) is not what is printed (%s)",
				 sl->key, (long long)v[j], t);
			tp->dropped = 1;
		}
	}
}

/* 1: the record is a typed row; 0: print it; -1: error (memory, set in msg). */
static int deliver_typed(Renderer *r, const plan_t *pl, tplan_t *tp, int id, cpu_t *c, int64_t pid, const char *comm,
			 Py_ssize_t clen)
{
	int64_t v[MAX_SLOTS];
	int cpu = c->cpu_id < 0 ? 0 : c->cpu_id;
	if (!typed_values(r, tp, c->rec, c->rlen, pid, cpu, c->rts, v))
		return 0;
	for (int j = 0; j < tp->nslots; j++) {
		if (tp->slots[j].interp != I_GFP)
			continue;
		int k = gfp_known(r, pl, tp, id, j, (uint64_t)v[j], c->rec, c->rlen, c->cpu_id);
		if (k <= 0)
			return k;
	}
	int64_t cid = typed_comm(r, pid, comm, clen);
	if (cid == -1)
		return -1;
	if (cid < 0)
		return 0;
	Py_ssize_t n = r->t_line.n;
	if (n == r->t_line.cap) {
		Py_ssize_t cap = n ? n * 2 : 65536;
		if (i64_grow(&r->t_line, cap) || i64_grow(&r->t_id, cap) || i64_grow(&r->t_pid, cap) || i64_grow(&r->t_cpu, cap)
		    || i64_grow(&r->t_ts, cap) || i64_grow(&r->t_comm, cap))
			return -1;
		for (int j = 0; j < r->max_slots; j++)
			if (i64_grow(&r->t_slot[j], cap))
				return -1;
	}
	r->t_line.v[n] = ++r->tlines;
	r->t_id.v[n] = id;
	r->t_pid.v[n] = pid;
	r->t_cpu.v[n] = cpu;
	r->t_ts.v[n] = (int64_t)c->rts;
	r->t_comm.v[n] = cid;
	for (int j = 0; j < r->max_slots; j++)
		r->t_slot[j].v[n] = j < tp->nslots ? v[j] : 0;
	r->t_line.n = r->t_id.n = r->t_pid.n = r->t_cpu.n = r->t_ts.n = r->t_comm.n = n + 1;
	for (int j = 0; j < r->max_slots; j++)
		r->t_slot[j].n = n + 1;
	return 1;
}

static int emit_record(Renderer *r, cpu_t *c, buf_t *b)
{
	char tmp[128];
	int k;
	if (c->rlen < 2) {
		fail(r, "cpu %d page %zd: a %zd-byte record has no event type", c->cpu_id, c->page, c->rlen);
		return -1;
	}
	unsigned id = (unsigned)rdn(r, c->rec, 2);
	const plan_t *pl = r->plans[id];
	if (!pl) {
		if (r->known[id]) {
			r->need = (int)id;
			return 1;
		}
		fail(r, "cpu %d page %zd: a record of event type %u, which no event format in the file describes",
		     c->cpu_id, c->page, id);
		return -1;
	}
	Py_ssize_t line_start = b->len;
	if (c->rmissed) {
		if (c->rmissed > 0) {
			k = snprintf(tmp, sizeof tmp, "CPU:%d [%lld EVENTS DROPPED]\n", c->cpu_id, c->rmissed);
			r->lost_known += c->rmissed;
		} else {
			k = snprintf(tmp, sizeof tmp, "CPU:%d [EVENTS DROPPED]\n", c->cpu_id);
			r->lost_pages_unknown++;
		}
		if (buf_put(b, tmp, k))
			return -1;
		r->lines++;
		c->rmissed = 0;
		if (r->typed_mode && number_text(r, b, line_start)) {  /* the lost-events line is text */
			fail(r, "out of memory");
			return -1;
		}
		line_start = b->len;
	}
	if (pl->pid_off + pl->pid_size > c->rlen) {
		fail(r, "cpu %d: a %.*s record of %zd bytes is shorter than its format (common_pid)", c->cpu_id,
		     (int)pl->name_len, pl->name, c->rlen);
		return -1;
	}
	int64_t pid = cast_bits((int64_t)rdn(r, c->rec + pl->pid_off, pl->pid_size), pl->pid_size * 8, 1);
	const char *comm;
	Py_ssize_t clen;
	comm_of(r, pid, &comm, &clen);
	tplan_t *tp = r->typed_mode ? r->typed[id] : NULL;
	int verify = 0;
	if (r->typed_mode) {
		chunk_ts(r, c->rts);
		if (r->text_first > 0) {
			r->text_first--;
		} else if (tp && !tp->dropped) {
			if (tp->verify_left > 0) {
				verify = 1;
			} else {
				int k = deliver_typed(r, pl, tp, (int)id, c, pid, comm, clen);
				if (k < 0) {
					fail(r, "out of memory");
					return -1;
				}
				if (k) {
					r->records++;
					r->lines++;
					return 0;
				}
			}
		}
	}
	if (put_padded(b, comm, clen, 0, 16))
		return -1;
	/* "-%-5lld [%03d] %5llu.%09llu: " without printf (a fifth of the renderer's time went to it) */
	{
		char *o = tmp, num[24];
		int n = 0;
		uint64_t u = pid < 0 ? (uint64_t)0 - (uint64_t)pid : (uint64_t)pid;
		*o++ = '-';
		if (pid < 0)
			*o++ = '-';
		do { num[n++] = (char)('0' + u % 10); u /= 10; } while (u);
		int w = n + (pid < 0);
		while (n)
			*o++ = num[--n];
		for (; w < 5; w++)
			*o++ = ' ';
		*o++ = ' ';
		*o++ = '[';
		u = (uint64_t)(c->cpu_id < 0 ? 0 : c->cpu_id);
		do { num[n++] = (char)('0' + u % 10); u /= 10; } while (u);
		for (w = n; w < 3; w++)
			*o++ = '0';
		while (n)
			*o++ = num[--n];
		*o++ = ']';
		*o++ = ' ';
		u = c->rts / 1000000000ULL;
		do { num[n++] = (char)('0' + u % 10); u /= 10; } while (u);
		for (w = n; w < 5; w++)
			*o++ = ' ';
		while (n)
			*o++ = num[--n];
		*o++ = '.';
		u = c->rts % 1000000000ULL;
		for (int i = 8; i >= 0; i--) {
			o[i] = (char)('0' + u % 10);
			u /= 10;
		}
		o += 9;
		*o++ = ':';
		*o++ = ' ';
		if (buf_put(b, tmp, o - tmp))
			return -1;
	}
	Py_ssize_t start = b->len;
	if (buf_put(b, pl->name, pl->name_len) || buf_put(b, ":", 1))
		return -1;
	/* trace-cmd pads "name:" to 21 columns, then a blank */
	if (buf_pad(b, ' ', 21 - (b->len - start)) || buf_put(b, " ", 1))
		return -1;
	Py_ssize_t pay = b->len;
	if (run(r, pl, c->rec, c->rlen, b, c->cpu_id))
		return -1;
	if (verify) {
		int64_t v[MAX_SLOTS];
		tp->verify_left--;
		if (typed_values(r, tp, c->rec, c->rlen, pid, c->cpu_id < 0 ? 0 : c->cpu_id, c->rts, v))
			verify_typed(r, tp, v, b->p + pay, b->len - pay);
	}
	if (buf_put(b, "\n", 1))
		return -1;
	if (r->typed_mode && number_text(r, b, line_start)) {
		fail(r, "out of memory");
		return -1;
	}
	r->records++;
	r->lines++;
	return 0;
}

/* The CPUs' records merged in time order (the earliest next record first), each emitted, until
   enough(self, &b, want), the end, or a record that needs a plan (it stays next: 0). Without the GIL;
   nonzero: an error (self->error: self->msg; else out of memory). */
static int merge_records(Renderer *self, buf_t *b, int (*enough)(Renderer *, buf_t *, Py_ssize_t), Py_ssize_t want)
{
	int rc = 0;
	for (int i = 0; i < self->ncpu && !rc; i++)  /* prime */
		if (!self->cpus[i].have && !self->cpus[i].done)
			rc = next_record(self, &self->cpus[i]);
	while (!rc && !enough(self, b, want)) {
		cpu_t *best = NULL;
		for (int i = 0; i < self->ncpu; i++) {
			cpu_t *c = &self->cpus[i];
			if (c->have && (!best || c->rts < best->rts))
				best = c;
		}
		if (!best)
			break;
		rc = emit_record(self, best, b);
		if (rc == 1) {  /* a plan is needed: return what is done, the record stays next */
			rc = 0;
			break;
		}
		if (!rc)
			rc = next_record(self, best);
	}
	return rc;
}

/* merge_records()'s error as Python's (the buffer freed) */
static PyObject *merge_failed(Renderer *self, buf_t *b)
{
	free(b->p);
	if (self->error)
		PyErr_SetString(PyExc_ValueError, self->msg);
	else
		PyErr_NoMemory();
	return NULL;
}

static int text_enough(Renderer *self, buf_t *b, Py_ssize_t max_bytes)
{
	(void)self;
	return b->len >= max_bytes;
}

/* the chunk's typed rows and text lines, or 64 MiB of text */
static int typed_enough(Renderer *self, buf_t *b, Py_ssize_t max_rows)
{
	return self->t_line.n + self->x_line.n >= max_rows || b->len >= (64 << 20);
}

static PyObject *Renderer_render(Renderer *self, PyObject *args)
{
	Py_ssize_t max_bytes;
	if (!PyArg_ParseTuple(args, "n", &max_bytes))
		return NULL;
	self->need = -1;
	if (self->error) {
		PyErr_SetString(PyExc_ValueError, self->msg);
		return NULL;
	}
	buf_t b = {0};
	int rc = 0;
	if (max_bytes > 0 && max_bytes < (1 << 30)) {  /* one allocation: the block plus a last line */
		b.p = malloc(max_bytes + (1 << 16));
		b.cap = b.p ? max_bytes + (1 << 16) : 0;
	}
	Py_BEGIN_ALLOW_THREADS
	rc = merge_records(self, &b, text_enough, max_bytes);
	Py_END_ALLOW_THREADS
	if (rc)
		return merge_failed(self, &b);
	PyObject *out = PyBytes_FromStringAndSize(b.p ? b.p : "", b.len);
	free(b.p);
	return out;
}

static PyObject *Renderer_add_plan(Renderer *self, PyObject *args)
{
	PyObject *t;
	int id;
	if (!PyArg_ParseTuple(args, "O!", &PyTuple_Type, &t))
		return NULL;
	plan_t *pl = plan_new(t, &id);
	if (!pl)
		return NULL;
	plan_free(self->plans[id]);
	self->plans[id] = pl;
	Py_RETURN_NONE;
}

static PyObject *Renderer_needed(Renderer *self, PyObject *unused)
{
	return PyLong_FromLong(self->need);
}

static PyObject *Renderer_stats(Renderer *self, PyObject *unused)
{
	return Py_BuildValue("{s:L,s:L,s:L,s:L}", "records", self->records, "pages", self->pages, "lost_events",
			     self->lost_known, "lost_pages_unknown", self->lost_pages_unknown);
}

/* set_typed(id, [(code bytes, interp, lo, hi, key), ...]): that event's records become typed rows */
static PyObject *Renderer_set_typed(Renderer *self, PyObject *args)
{
	int id;
	PyObject *slots;
	if (!PyArg_ParseTuple(args, "iO!", &id, &PyList_Type, &slots))
		return NULL;
	Py_ssize_t ns = PyList_GET_SIZE(slots);
	if (id < 0 || id > 65535 || ns > MAX_SLOTS || self->typed[id]) {
		PyErr_SetString(PyExc_ValueError, "set_typed: no such event id, a plan already, or too many slots");
		return NULL;
	}
	tplan_t *tp = calloc(1, sizeof(tplan_t));
	if (!tp)
		return PyErr_NoMemory();
	for (Py_ssize_t j = 0; j < ns; j++) {
		const char *code, *key;
		Py_ssize_t clen, klen;
		int interp;
		long long lo, hi;
		tslot_t *sl = &tp->slots[j];
		if (!PyArg_ParseTuple(PyList_GET_ITEM(slots, j), "y#iLLs#", &code, &clen, &interp, &lo, &hi, &key, &klen))
			goto bad;
		if (clen % 8 || clen == 0 || clen > 8 * 4096 || interp < I_SIGNED || interp > I_GFP || klen < 1 || klen >= 64) {
			PyErr_SetString(PyExc_ValueError, "set_typed: a slot's program or interpretation is not one");
			goto bad;
		}
		sl->code = malloc(clen);
		if (!sl->code) {
			PyErr_NoMemory();
			goto bad;
		}
		memcpy(sl->code, code, clen);
		sl->ncode = clen / 8;
		sl->interp = interp;
		sl->lo = lo;
		sl->hi = hi;
		memcpy(sl->key, key, klen);
		sl->key[klen] = 0;
		tp->nslots = (int)j + 1;
		if (!check_tslot(sl)) {
			PyErr_SetString(PyExc_ValueError, "set_typed: a slot's program does not run");
			goto bad;
		}
	}
	tp->verify_left = VERIFY;
	self->typed[id] = tp;
	if (tp->nslots > self->max_slots)
		self->max_slots = tp->nslots;
	Py_RETURN_NONE;
bad:
	for (int j = 0; j < tp->nslots; j++)
		free(tp->slots[j].code);
	free(tp);
	return NULL;
}

static PyObject *take_i64(i64buf_t *b)
{
	PyObject *o = PyBytes_FromStringAndSize((const char *)b->v, b->n * (Py_ssize_t)sizeof(int64_t));
	b->n = 0;
	return o;
}

/* render_typed(max_rows, text_first[, lines_before]) -> (lines, typed, text, line of each text line, new comms, new gfp
   texts, ts stats), as _perfdata.c read_typed; lines == 0: done or a plan needed (needed()). */
static PyObject *Renderer_render_typed(Renderer *self, PyObject *args)
{
	Py_ssize_t max_rows, text_first;
	long long lines_before = 1;
	if (!PyArg_ParseTuple(args, "nn|L", &max_rows, &text_first, &lines_before))
		return NULL;
	self->need = -1;
	if (self->error) {
		PyErr_SetString(PyExc_ValueError, self->msg);
		return NULL;
	}
	if (!self->typed_mode) {
		self->typed_mode = 1;
		self->tlines = lines_before;  /* the "cpus=N" line, and what render() printed before */
	}
	if (text_first > 0)
		self->text_first = text_first;
	self->c_any = 0;
	self->c_back = 0;
	long long lines0 = self->tlines;
	buf_t b = {0};
	int rc = 0;
	Py_BEGIN_ALLOW_THREADS
	rc = merge_records(self, &b, typed_enough, max_rows);
	Py_END_ALLOW_THREADS
	if (rc)
		return merge_failed(self, &b);
	PyObject *slots = PyList_New(self->max_slots);
	if (!slots) {
		free(b.p);
		return NULL;
	}
	for (int j = 0; j < self->max_slots; j++)
		PyList_SET_ITEM(slots, j, take_i64(&self->t_slot[j]));
	Py_ssize_t rows = self->t_line.n;
	PyObject *typed = Py_BuildValue("(nNNNNNNN)", rows, take_i64(&self->t_line), take_i64(&self->t_id), take_i64(&self->t_pid),
					take_i64(&self->t_cpu), take_i64(&self->t_ts), take_i64(&self->t_comm), slots);
	PyObject *text = PyBytes_FromStringAndSize(b.p ? b.p : "", b.len);
	free(b.p);
	PyObject *xl = take_i64(&self->x_line);
	PyObject *comms = PyList_New(0);
	PyObject *gfps = PyList_New(0);
	if (!typed || !text || !xl || !comms || !gfps)
		goto bad;
	for (Py_ssize_t p = 0; p < self->new_comms_len;) {
		Py_ssize_t k = (Py_ssize_t)strlen(self->new_comms + p);
		PyObject *c = PyUnicode_DecodeASCII(self->new_comms + p, k, "replace");
		if (!c || PyList_Append(comms, c) < 0) {
			Py_XDECREF(c);
			goto bad;
		}
		Py_DECREF(c);
		p += k + 1;
	}
	self->new_comms_len = 0;
	for (Py_ssize_t i = 0; i < self->ngfp_new; i++) {
		PyObject *g = Py_BuildValue("(LKN)", (long long)self->gfp_new[i].key, (unsigned long long)self->gfp_new[i].value,
					    PyUnicode_DecodeUTF8(self->gfp_new[i].text, (Py_ssize_t)strlen(self->gfp_new[i].text), "replace"));
		if (!g || PyList_Append(gfps, g) < 0) {
			Py_XDECREF(g);
			goto bad;
		}
		Py_DECREF(g);
	}
	self->ngfp_new = 0;
	PyObject *stats = self->c_any ? Py_BuildValue("(LLLLL)", (long long)self->c_min, (long long)self->c_max,
						      (long long)self->c_first, (long long)self->c_last, self->c_back)
				      : (Py_INCREF(Py_None), Py_None);
	if (!stats)
		goto bad;
	return Py_BuildValue("(LNNNNNN)", self->tlines - lines0, typed, text, xl, comms, gfps, stats);
bad:
	Py_XDECREF(typed); Py_XDECREF(text); Py_XDECREF(xl); Py_XDECREF(comms); Py_XDECREF(gfps);
	return NULL;
}

/* typed_dropped() -> {event id: why}: the typed plans the printed text contradicted */
static PyObject *Renderer_typed_dropped(Renderer *self, PyObject *unused)
{
	PyObject *d = PyDict_New();
	if (!d)
		return NULL;
	for (int i = 0; i < 65536; i++) {
		if (!self->typed[i] || !self->typed[i]->dropped)
			continue;
		PyObject *k = PyLong_FromLong(i), *v = PyUnicode_DecodeUTF8(self->typed[i]->reason, (Py_ssize_t)strlen(self->typed[i]->reason), "replace");
		if (!k || !v || PyDict_SetItem(d, k, v) < 0) {
			Py_XDECREF(k); Py_XDECREF(v); Py_DECREF(d);
			return NULL;
		}
		Py_DECREF(k); Py_DECREF(v);
	}
	return d;
}

static PyMethodDef Renderer_methods[] = {
	{"set_typed", (PyCFunction)Renderer_set_typed, METH_VARARGS, "set_typed(id, slots): that event's records as typed rows"},
	{"render_typed", (PyCFunction)Renderer_render_typed, METH_VARARGS, "render_typed(max_rows, text_first) -> typed rows and text"},
	{"typed_dropped", (PyCFunction)Renderer_typed_dropped, METH_NOARGS, "typed_dropped() -> {id: why}"},
	{"render", (PyCFunction)Renderer_render, METH_VARARGS, "render(max_bytes) -> bytes of whole lines (b'': done)"},
	{"stats", (PyCFunction)Renderer_stats, METH_NOARGS, "counts so far"},
	{"add_plan", (PyCFunction)Renderer_add_plan, METH_VARARGS, "add_plan((id, name, code, tables, strings, pid_off, pid_size))"},
	{"needed", (PyCFunction)Renderer_needed, METH_NOARGS, "the event id render() stopped at for want of its plan, or -1"},
	{NULL},
};

static PyTypeObject RendererType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "thpreplay.parse._tracedat.Renderer",
	.tp_basicsize = sizeof(Renderer),
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_new = PyType_GenericNew,
	.tp_init = (initproc)Renderer_init,
	.tp_dealloc = (destructor)Renderer_dealloc,
	.tp_methods = Renderer_methods,
};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "_tracedat", "trace.dat ring-buffer pages to text", -1, NULL};

PyMODINIT_FUNC PyInit__tracedat(void)
{
	if (PyType_Ready(&RendererType) < 0)
		return NULL;
	PyObject *m = PyModule_Create(&moddef);
	if (!m)
		return NULL;
	Py_INCREF(&RendererType);
	if (PyModule_AddObject(m, "Renderer", (PyObject *)&RendererType) < 0) {
		Py_DECREF(&RendererType);
		Py_DECREF(m);
		return NULL;
	}
	return m;
}
