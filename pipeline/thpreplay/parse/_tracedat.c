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
#include <stdint.h>
#include <string.h>
#include <stdio.h>
#include <stdarg.h>
#include <stdlib.h>

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

static int64_t cast_bits(int64_t v, int64_t bits, int64_t sign)
{
	if (bits >= 64 || bits <= 0)
		return v;
	uint64_t m = (1ULL << bits) - 1;
	uint64_t u = (uint64_t)v & m;
	if (sign && (u >> (bits - 1)))
		u |= ~m;
	return (int64_t)u;
}

static int64_t binop(int64_t op, int64_t a, int64_t b)
{
	uint64_t ua = (uint64_t)a, ub = (uint64_t)b;
	switch (op) {
	case 0: return (int64_t)(ua + ub);
	case 1: return (int64_t)(ua - ub);
	case 2: return (int64_t)(ua * ub);
	case 3: return (b == 0 || (a == INT64_MIN && b == -1)) ? 0 : a / b;
	case 4: return (b == 0 || (a == INT64_MIN && b == -1)) ? 0 : a % b;
	case 5: return (int64_t)(ua << (ub & 63));
	case 6: return (int64_t)(ua >> (ub & 63));
	case 7: return a & b;
	case 8: return a | b;
	case 9: return a ^ b;
	case 10: return a < b;
	case 11: return a <= b;
	case 12: return a > b;
	case 13: return a >= b;
	case 14: return a == b;
	case 15: return a != b;
	case 16: return a && b;
	case 17: return a || b;
	}
	return 0;
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
	for (int i = 0; i < 65536; i++)
		plan_free(self->plans[i]);
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
	if (run(r, pl, c->rec, c->rlen, b, c->cpu_id))
		return -1;
	if (buf_put(b, "\n", 1))
		return -1;
	r->records++;
	r->lines++;
	return 0;
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
	/* prime */
	for (int i = 0; i < self->ncpu && !rc; i++)
		if (!self->cpus[i].have && !self->cpus[i].done)
			rc = next_record(self, &self->cpus[i]);
	while (!rc && b.len < max_bytes) {
		cpu_t *best = NULL;
		for (int i = 0; i < self->ncpu; i++) {
			cpu_t *c = &self->cpus[i];
			if (c->have && (!best || c->rts < best->rts))
				best = c;
		}
		if (!best)
			break;
		rc = emit_record(self, best, &b);
		if (rc == 1) {  /* a plan is needed: return what is done, the record stays next */
			rc = 0;
			break;
		}
		if (!rc)
			rc = next_record(self, best);
	}
	Py_END_ALLOW_THREADS
	if (rc) {
		free(b.p);
		if (self->error)
			PyErr_SetString(PyExc_ValueError, self->msg);
		else
			PyErr_NoMemory();
		return NULL;
	}
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

static PyMethodDef Renderer_methods[] = {
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
