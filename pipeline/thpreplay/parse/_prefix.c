/*
 * The fixed-width line prefix of perf script / ftrace text, cut in one pass over a chunk's bytes.
 *
 * cut(data, ob, cb, tc, ec, is_perf, lat_width, frac_digits, partial_tail) walks the lines of
 * `data` and, for every line whose separators sit at the offsets the sampled lines showed
 * (text.Layout.fixed), converts pid, cpu and timestamp and records where comm, latency flags,
 * event and payload are. It returns bytes objects holding little-endian arrays, which the Python
 * side wraps as Arrow buffers without copying:
 *   index   int64   0-based line index within the chunk of each line that fits
 *   pid     int64 (wider than the kernel's: a value past PID_MAX_LIMIT is rejected, not wrapped),
 *   cpu int64,  ts_ns int64
 *   comm, lat, event, payload   Arrow string-view structs (16 bytes each) into `data`
 *   misfit  int64 triples (line index, start, end) of the other lines (the regular path reads them)
 *   nlines  total lines in the chunk
 * Lines with bytes >= 0x80 or NUL are misfits, as are lines too short or with anything unexpected.
 * No allocation per line; nothing here is kernel-specific beyond the column layout.
 *
 * With a tenth argument, the events thpreplay types (kernel/events.py, passed in as data by
 * parse/prefix.py: per event its name, its fields' printed keys and kinds, and every key its
 * extra_fields pass knows), the payload fields are read too. Per line that fits it adds
 *   spec    int16   the event's index in that list, -1 for any other event
 *   clean   uint8   1 when the payload was read here: blanks are spaces only, no field printed twice,
 *                   every numeric field a plain number. parse/text.py reads every other line itself,
 *                   so a value here is always the one its polars path gives (tests compare both).
 *   more    uint8   more '=' than the known keys printed (parse/extra.py's first pass)
 *   slots   per field of the event (up to MAX_FIELDS): the value as printed (a string view after
 *           `key=`, up to the next blank), its number (int64: decimal or 0x-hex, a trailing ','
 *           allowed except for hex fields), and a validity bitmap (the key printed)
 * The GIL is released while the chunk is walked.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
	char *p;
	Py_ssize_t len, cap;
} buf_t;

static int buf_put(buf_t *b, const void *src, Py_ssize_t n)
{
	if (b->len + n > b->cap) {
		Py_ssize_t cap = b->cap ? b->cap * 2 : 1 << 16;
		while (cap < b->len + n)
			cap *= 2;
		char *p = realloc(b->p, cap); /* not PyMem: called without the GIL */
		if (!p)
			return -1;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, src, n);
	b->len += n;
	return 0;
}

/* An Arrow string view of data[start, start+len): inline when <= 12 bytes. */
static int put_view(buf_t *b, const unsigned char *data, Py_ssize_t start, Py_ssize_t len)
{
	unsigned char v[16];
	int32_t l = (int32_t)len;
	memset(v, 0, sizeof v);
	memcpy(v, &l, 4);
	if (len <= 12) {
		memcpy(v + 4, data + start, len);
	} else {
		int32_t idx = 0, off = (int32_t)start;
		memcpy(v + 4, data + start, 4);
		memcpy(v + 8, &idx, 4);
		memcpy(v + 12, &off, 4);
	}
	return buf_put(b, v, 16);
}

/* No byte >= 0x80 and no NUL in s[0, n): eight bytes at a time. */
static int plain(const unsigned char *s, Py_ssize_t n)
{
	const uint64_t high = 0x8080808080808080ULL, ones = 0x0101010101010101ULL;
	Py_ssize_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t w;
		memcpy(&w, s + i, 8);
		if ((w & high) || ((w - ones) & ~w & high))
			return 0;
	}
	for (; i < n; i++)
		if (s[i] >= 0x80 || s[i] == 0)
			return 0;
	return 1;
}

/* What polars' strip_chars trims (Rust's char::is_whitespace, on ASCII). */
static int is_ws(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* The unsigned decimal that is exactly [a, b): at least one digit, nothing else; -1 otherwise. At
 * most 18 digits, so the value fits int64 (the callers bound it further). */
static int64_t digits(const unsigned char *s, Py_ssize_t a, Py_ssize_t b)
{
	if (a >= b || b - a > 18)
		return -1;
	int64_t v = 0;
	for (Py_ssize_t i = a; i < b; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

#define MAX_EVENTS 64
#define MAX_FIELDS 8
#define MAX_KEYS 32
#define MAX_NAME 64
enum { K_STR, K_GFP, K_INT, K_PFN, K_BOOL, K_HEX }; /* parse/prefix.py KINDS */

typedef struct {
	char name[MAX_NAME];
	int name_len, nfields, nkeys;
	char key[MAX_KEYS][MAX_NAME];
	int key_len[MAX_KEYS];
	int kind[MAX_FIELDS]; /* keys 0..nfields-1 are the fields */
} spec_t;

/* The specs from Python: ((name, ((key, kind), ...), (known key, ...)), ...). -1 with an exception set. */
static int read_specs(PyObject *obj, spec_t *specs, int *nspecs)
{
	if (!PyTuple_Check(obj) || PyTuple_GET_SIZE(obj) > MAX_EVENTS) {
		PyErr_SetString(PyExc_ValueError, "specs: a tuple of at most 64 events");
		return -1;
	}
	*nspecs = (int)PyTuple_GET_SIZE(obj);
	for (int i = 0; i < *nspecs; i++) {
		spec_t *sp = &specs[i];
		const char *name, *k;
		Py_ssize_t nl, kl;
		PyObject *fields, *known;
		int kind;
		if (!PyArg_ParseTuple(PyTuple_GET_ITEM(obj, i), "s#O!O!", &name, &nl, &PyTuple_Type, &fields,
				      &PyTuple_Type, &known))
			return -1;
		Py_ssize_t nf = PyTuple_GET_SIZE(fields), nk = PyTuple_GET_SIZE(known);
		if (nl >= MAX_NAME || nf > MAX_FIELDS || nf + nk > MAX_KEYS) {
			PyErr_SetString(PyExc_ValueError, "specs: an event with too long a name or too many keys");
			return -1;
		}
		memcpy(sp->name, name, nl);
		sp->name_len = (int)nl;
		sp->nfields = (int)nf;
		sp->nkeys = (int)(nf + nk);
		for (Py_ssize_t j = 0; j < nf + nk; j++) {
			if (j < nf) {
				if (!PyArg_ParseTuple(PyTuple_GET_ITEM(fields, j), "s#i", &k, &kl, &kind))
					return -1;
				sp->kind[j] = kind;
			} else if (!PyArg_Parse(PyTuple_GET_ITEM(known, j - nf), "s#", &k, &kl)) {
				return -1;
			}
			if (kl >= MAX_NAME) {
				PyErr_SetString(PyExc_ValueError, "specs: a key too long");
				return -1;
			}
			memcpy(sp->key[j], k, kl);
			sp->key_len[j] = (int)kl;
		}
	}
	return 0;
}

static int is_word(unsigned char c)
{
	return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || c == '_';
}

/* The spec index of an event as cut: blanks around, then [\w:]*, the name after its last ':'
 * (parse/text.py _event_name); -1 for other events and anything else. */
static int spec_of(const unsigned char *s, Py_ssize_t n, const spec_t *specs, int nspecs)
{
	Py_ssize_t a = 0, b = n;
	while (a < b && is_ws(s[a]))
		a++;
	while (b > a && is_ws(s[b - 1]))
		b--;
	Py_ssize_t name = a;
	for (Py_ssize_t i = a; i < b; i++) {
		if (s[i] == ':')
			name = i + 1;
		else if (!is_word(s[i]))
			return -1;
	}
	for (int i = 0; i < nspecs; i++)
		if (specs[i].name_len == b - name && memcmp(specs[i].name, s + name, b - name) == 0)
			return i;
	return -1;
}

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* A field's number as polars reads it (parse/text.py _typed), for plain forms only: 0 on success.
 * int/pfn/bool: [-]digits (at most 18) or 0x + at most 15 hex digits, then at most one ','.
 * hex: [0x] + at most 16 hex digits, below 2**63 (stored in an int64, read as UInt64). */
static int number(const unsigned char *s, Py_ssize_t n, int kind, int64_t *out)
{
	if (kind == K_HEX) {
		if (n >= 2 && s[0] == '0' && s[1] == 'x')
			s += 2, n -= 2;
		if (n < 1 || n > 16)
			return -1;
		uint64_t v = 0;
		for (Py_ssize_t i = 0; i < n; i++) {
			int h = hexval(s[i]);
			if (h < 0)
				return -1;
			v = v << 4 | (uint64_t)h;
		}
		if (v >> 63)
			return -1;
		*out = (int64_t)v;
		return 0;
	}
	if (n > 0 && s[n - 1] == ',')
		n--;
	if (n >= 2 && s[0] == '0' && s[1] == 'x') {
		if (n < 3 || n > 17)
			return -1;
		int64_t v = 0;
		for (Py_ssize_t i = 2; i < n; i++) {
			int h = hexval(s[i]);
			if (h < 0)
				return -1;
			v = v << 4 | h;
		}
		*out = v;
		return 0;
	}
	int neg = n > 0 && s[0] == '-';
	int64_t v = digits(s, neg, n);
	if (v < 0)
		return -1;
	*out = neg ? -v : v;
	return 0;
}

/* Per line: spec, clean, more. Per slot: zeroed arrays of `cap` rows, allocated when an event with
 * that many fields is first seen (a zero row is a null: length 0, bit clear), so slots no event of
 * the chunk has cost nothing. */
typedef struct {
	buf_t spec, clean, more;
	Py_ssize_t cap;
	int used; /* slots allocated */
	unsigned char *view[MAX_FIELDS], *num[MAX_FIELDS], *valid[MAX_FIELDS];
} fields_t;

static int slots_up_to(fields_t *f, int n)
{
	for (; f->used < n; f->used++) {
		int k = f->used;
		f->view[k] = calloc(f->cap ? f->cap : 1, 16);
		f->num[k] = calloc(f->cap ? f->cap : 1, 8);
		f->valid[k] = calloc((f->cap + 7) / 8 + 1, 1);
		if (!f->view[k] || !f->num[k] || !f->valid[k])
			return -1;
	}
	return 0;
}

/* Read the payload [p, e) of a line of event `si` (-1: not typed) into row `row` of f. */
static int read_fields(fields_t *f, Py_ssize_t row, const unsigned char *d, Py_ssize_t p, Py_ssize_t e,
		       const spec_t *specs, int si)
{
	int16_t s16 = (int16_t)si;
	unsigned char clean = si >= 0, more = 0;
	int64_t num[MAX_FIELDS] = {0};
	Py_ssize_t at[MAX_FIELDS], len[MAX_FIELDS];
	uint32_t seen = 0, known = 0;
	if (si >= 0) {
		const spec_t *sp = &specs[si];
		int eqs = 0, printed = 0;
		Py_ssize_t i = p;
		while (i <= e && clean) {
			Py_ssize_t a = i, eq = -1;
			while (i < e && d[i] != ' ') {
				if (d[i] == '=') {
					eqs++;
					if (eq < 0)
						eq = i;
				} else if (is_ws(d[i])) {
					clean = 0; /* a tab or another blank: the polars path reads the line */
				}
				i++;
			}
			if (eq > a) {
				Py_ssize_t kl = eq - a;
				for (int k = 0; k < sp->nkeys; k++) {
					if (sp->key_len[k] != kl || memcmp(sp->key[k], d + a, kl))
						continue;
					if (!(known >> k & 1)) {
						known |= 1u << k;
						printed++;
					}
					if (k < sp->nfields) {
						if (seen >> k & 1)
							clean = 0; /* printed twice: which one counts is the polars path's */
						seen |= 1u << k;
						at[k] = eq + 1;
						len[k] = i - eq - 1;
						if (sp->kind[k] >= K_INT && number(d + at[k], len[k], sp->kind[k], &num[k]))
							clean = 0;
					}
					break;
				}
			}
			i++; /* past the blank */
		}
		more = eqs > printed;
	}
	if (buf_put(&f->spec, &s16, 2) || buf_put(&f->clean, &clean, 1) || buf_put(&f->more, &more, 1))
		return -1;
	if (!clean || !seen)
		return 0;
	if (slots_up_to(f, specs[si].nfields))
		return -1;
	for (int k = 0; k < specs[si].nfields; k++) {
		if (!(seen >> k & 1))
			continue;
		unsigned char *v = f->view[k] + row * 16;
		int32_t l = (int32_t)len[k];
		memcpy(v, &l, 4);
		if (len[k] <= 12) {
			memcpy(v + 4, d + at[k], len[k]);
		} else {
			int32_t off = (int32_t)at[k];
			memcpy(v + 4, d + at[k], 4);
			memcpy(v + 12, &off, 4); /* buffer index 0: bytes 8..11 stay zero */
		}
		memcpy(f->num[k] + row * 8, &num[k], 8);
		f->valid[k][row >> 3] |= (unsigned char)(1 << (row & 7));
	}
	return 0;
}

static PyObject *cut(PyObject *self, PyObject *args)
{
	Py_buffer in;
	Py_ssize_t ob, cb, tc, ec;
	int is_perf, lat_width, frac_digits, partial_tail;
	PyObject *spec_obj = Py_None;
	if (!PyArg_ParseTuple(args, "y*nnnniiip|O", &in, &ob, &cb, &tc, &ec, &is_perf, &lat_width, &frac_digits,
			      &partial_tail, &spec_obj))
		return NULL;
	spec_t *sp = NULL;
	int nspecs = 0, nslots = 0;
	if (spec_obj != Py_None) {
		sp = malloc(sizeof(spec_t) * MAX_EVENTS);
		if (!sp || read_specs(spec_obj, sp, &nspecs)) {
			free(sp);
			PyBuffer_Release(&in);
			return sp ? NULL : PyErr_NoMemory();
		}
		for (int i = 0; i < nspecs; i++)
			nslots = sp[i].nfields > nslots ? sp[i].nfields : nslots;
	}
	fields_t fl;
	memset(&fl, 0, sizeof fl);
	const unsigned char *d = in.buf;
	Py_ssize_t n = in.len, pos = 0, line = 0;
	buf_t index = {0}, pid = {0}, cpu = {0}, ts = {0}, comm = {0}, lat = {0}, event = {0}, payload = {0},
	      misfit = {0};
	int err = 0;
	int64_t scale = 1;
	for (int i = frac_digits; i < 9; i++)
		scale *= 10;
	Py_ssize_t payload_at = ec >= 0 ? ec + 2 : tc + 2;
	Py_ssize_t rows = 0;
	Py_BEGIN_ALLOW_THREADS
	/* every array is sized for all the chunk's lines at once: no copying as they grow */
	Py_ssize_t cap = 1;
	for (const unsigned char *q = d; (q = memchr(q, '\n', d + n - q)) != NULL; q++)
		cap++;
	fl.cap = cap;
	buf_t *sized[] = {&index, &pid, &cpu, &ts, &comm, &lat, &event, &payload, &fl.spec, &fl.clean, &fl.more};
	Py_ssize_t unit[] = {8, 8, 8, 8, 16, 16, 16, 16, 2, 1, 1};
	for (size_t i = 0; i < sizeof sized / sizeof *sized && !err; i++) {
		if (i == 5 && !lat_width)
			continue;
		if (i >= 8 && !sp)
			break;
		sized[i]->p = malloc(cap * unit[i]);
		sized[i]->cap = cap * unit[i];
		err = sized[i]->p == NULL;
	}
	while (pos < n && !err) {
		const unsigned char *nl = memchr(d + pos, '\n', n - pos);
		Py_ssize_t end = nl ? nl - d : n;
		if (!nl && partial_tail)
			break; /* the next chunk holds this line whole */
		Py_ssize_t s = pos, e = end;
		if (e > s && d[e - 1] == '\r')
			e--;
		int fits = nl != NULL && e - s >= payload_at; /* a last line without newline is "cut" */
		if (fits)
			fits = plain(d + s, e - s);
		int64_t v_pid = -1, v_cpu = -1, v_ts = -1;
		Py_ssize_t ev_end = 0, comm_at = 0, lat_at = 0;
		if (fits) {
			/* Every field is read exactly where, and as strictly as, text._header (fixed=True)
			 * reads it: a line this accepts gets the values the polars path gives it, and any
			 * other line goes to the polars path (tests/test_prefix_forms.py and test_samples.py compare). */
			const unsigned char *L = d + s;
			fits = ob > 17 && cb > ob + 2 && tc > cb && L[ob] == ' ' && L[ob + 1] == '[' && L[cb] == ']' &&
			       L[tc] == ':' && L[tc + 1] == ' ';
			if (fits && ec >= 0)
				fits = ec > tc + 2 && L[ec] == ':' && L[ec + 1] == ' ';
			if (fits && !is_perf)
				fits = L[16] == '-';
			if (fits) {
				v_cpu = digits(L, ob + 2, cb);
				if (is_perf) { /* comm is %16s: the pid (%5d) is right-aligned after it */
					Py_ssize_t a = 16;
					while (a < ob && is_ws(L[a]))
						a++;
					v_pid = digits(L, a, ob);
				} else { /* "comm-pid": the pid is left-aligned (%-5d) after the '-' */
					Py_ssize_t b = ob;
					while (b > 17 && is_ws(L[b - 1]))
						b--;
					v_pid = digits(L, 17, b);
				}
				Py_ssize_t t0 = cb + 2;
				while (t0 < tc && is_ws(L[t0]))
					t0++;
				if (lat_width) { /* latency flags: [.a-zA-Z] then non-blanks, then a space */
					int ok = t0 + lat_width < tc && L[t0 + lat_width] == ' ' &&
						 (L[t0] == '.' || ((L[t0] | 0x20) >= 'a' && (L[t0] | 0x20) <= 'z'));
					for (Py_ssize_t i = t0 + 1; ok && i < t0 + lat_width; i++)
						ok = !is_ws(L[i]);
					lat_at = t0;
					t0 = ok ? t0 + lat_width + 1 : tc;
					while (t0 < tc && is_ws(L[t0]))
						t0++;
				}
				/* seconds of 1 to 9 digits (31 years of uptime; more would wrap int64 ns) */
				Py_ssize_t dot = tc - frac_digits - 1;
				if (frac_digits > 0 && dot > t0 && dot - t0 <= 9 && L[dot] == '.') {
					int64_t sec = digits(L, t0, dot), frac = digits(L, dot + 1, tc);
					if (sec >= 0 && frac >= 0)
						v_ts = sec * 1000000000LL + frac * scale;
				}
				fits = v_cpu >= 0 && v_pid >= 0 && v_ts >= 0;
			}
			if (fits && ec < 0) { /* ftrace: the event ends at the first ": " after the timestamp */
				const unsigned char *c = L + tc + 2;
				ev_end = -1;
				for (Py_ssize_t i = tc + 2; i + 1 < e - s; i++, c++)
					if (c[0] == ':' && c[1] == ' ') {
						ev_end = i;
						break;
					}
				fits = ev_end > tc + 2;
			}
			while (comm_at < 16 && is_ws(L[comm_at]))
				comm_at++;
		}
		if (fits) {
			int64_t li = line;
			Py_ssize_t ev_a = s + tc + 2, ev_b = ec >= 0 ? s + ec : s + ev_end;
			Py_ssize_t pay = ec >= 0 ? s + ec + 2 : s + ev_end + 2;
			err = buf_put(&index, &li, 8) || buf_put(&pid, &v_pid, 8) || buf_put(&cpu, &v_cpu, 8) ||
			      buf_put(&ts, &v_ts, 8) || put_view(&comm, d, s + comm_at, 16 - comm_at) ||
			      put_view(&event, d, ev_a, ev_b - ev_a) || put_view(&payload, d, pay, e - pay) ||
			      (lat_width && put_view(&lat, d, s + lat_at, lat_width));
			if (!err && sp)
				err = read_fields(&fl, rows, d, pay, e, sp, spec_of(d + ev_a, ev_b - ev_a, sp, nspecs));
			rows++;
		} else {
			int64_t lse[3] = {line, s, e};
			err = buf_put(&misfit, lse, 24);
		}
		line++;
		pos = nl ? end + 1 : n;
	}
	Py_END_ALLOW_THREADS
	PyBuffer_Release(&in);
	PyObject *out = NULL;
#define B(b) ((b).p ? (b).p : ""), (b).len /* y# turns a NULL pointer into None */
	if (!err)
		out = Py_BuildValue("y#y#y#y#y#y#y#y#y#n", B(index), B(pid), B(cpu), B(ts), B(comm), B(lat), B(event),
				    B(payload), B(misfit), line);
	else
		PyErr_NoMemory();
	if (out && sp) { /* (prefix..., (spec, clean, more, ((view, num, valid) or None, ...))) */
		PyObject *slots = PyTuple_New(nslots), *more = NULL;
		for (int k = 0; slots && k < nslots; k++) {
			PyObject *t = k >= fl.used ? (Py_INCREF(Py_None), Py_None) :
				Py_BuildValue("y#y#y#", (char *)fl.view[k], rows * 16, (char *)fl.num[k], rows * 8,
					      (char *)fl.valid[k], (rows + 7) / 8);
			if (!t) {
				Py_CLEAR(slots);
				break;
			}
			PyTuple_SET_ITEM(slots, k, t);
		}
		if (slots)
			more = Py_BuildValue("y#y#y#N", B(fl.spec), B(fl.clean), B(fl.more), slots);
		PyObject *both = more ? PyTuple_Pack(2, out, more) : NULL;
		Py_XDECREF(more);
		Py_DECREF(out);
		out = both;
	}
	buf_t *all[] = {&index, &pid, &cpu, &ts, &comm, &lat, &event, &payload, &misfit, &fl.spec, &fl.clean, &fl.more};
	for (size_t i = 0; i < sizeof all / sizeof *all; i++)
		free(all[i]->p);
	for (int k = 0; k < fl.used; k++)
		free(fl.view[k]), free(fl.num[k]), free(fl.valid[k]);
	free(sp);
	return out;
}

static PyMethodDef methods[] = {
	{"cut", cut, METH_VARARGS, "Cut the fixed-width prefix of the lines of a chunk (see the file comment)."},
	{NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_prefix", NULL, -1, methods};

PyMODINIT_FUNC PyInit__prefix(void) { return PyModule_Create(&module); }
