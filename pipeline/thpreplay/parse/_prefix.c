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
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
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
		char *p = PyMem_Realloc(b->p, cap);
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

static PyObject *cut(PyObject *self, PyObject *args)
{
	Py_buffer in;
	Py_ssize_t ob, cb, tc, ec;
	int is_perf, lat_width, frac_digits, partial_tail;
	if (!PyArg_ParseTuple(args, "y*nnnniiip", &in, &ob, &cb, &tc, &ec, &is_perf, &lat_width, &frac_digits,
			      &partial_tail))
		return NULL;
	const unsigned char *d = in.buf;
	Py_ssize_t n = in.len, pos = 0, line = 0;
	buf_t index = {0}, pid = {0}, cpu = {0}, ts = {0}, comm = {0}, lat = {0}, event = {0}, payload = {0},
	      misfit = {0};
	int err = 0;
	int64_t scale = 1;
	for (int i = frac_digits; i < 9; i++)
		scale *= 10;
	Py_ssize_t payload_at = ec >= 0 ? ec + 2 : tc + 2;
	while (pos < n && !err) {
		const unsigned char *nl = memchr(d + pos, '\n', n - pos);
		Py_ssize_t end = nl ? nl - d : n;
		if (!nl && partial_tail)
			break; /* the next chunk holds this line whole */
		Py_ssize_t s = pos, e = end;
		if (e > s && d[e - 1] == '\r')
			e--;
		int fits = nl != NULL && e - s >= payload_at; /* a last line without newline is "cut" */
		for (Py_ssize_t i = s; fits && i < e; i++)
			if (d[i] >= 0x80 || d[i] == 0)
				fits = 0;
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
		} else {
			int64_t lse[3] = {line, s, e};
			err = buf_put(&misfit, lse, 24);
		}
		line++;
		pos = nl ? end + 1 : n;
	}
	PyBuffer_Release(&in);
	PyObject *out = NULL;
#define B(b) ((b).p ? (b).p : ""), (b).len /* y# turns a NULL pointer into None */
	if (!err)
		out = Py_BuildValue("y#y#y#y#y#y#y#y#y#n", B(index), B(pid), B(cpu), B(ts), B(comm), B(lat), B(event),
				    B(payload), B(misfit), line);
	else
		PyErr_NoMemory();
	buf_t *all[] = {&index, &pid, &cpu, &ts, &comm, &lat, &event, &payload, &misfit};
	for (size_t i = 0; i < sizeof all / sizeof *all; i++)
		PyMem_Free(all[i]->p);
	return out;
}

static PyMethodDef methods[] = {
	{"cut", cut, METH_VARARGS, "Cut the fixed-width prefix of the lines of a chunk (see the file comment)."},
	{NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_prefix", NULL, -1, methods};

PyMODINIT_FUNC PyInit__prefix(void) { return PyModule_Create(&module); }
