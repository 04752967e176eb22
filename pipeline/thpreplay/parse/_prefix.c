/*
 * The fixed-width line prefix of perf script / ftrace text, cut in one pass over a chunk's bytes.
 *
 * cut(data, ob, cb, tc, ec, is_perf, lat_width, frac_digits, partial_tail) walks the lines of
 * `data` and, for every line whose separators sit at the offsets the sampled lines showed
 * (text.Layout.fixed), converts pid, cpu and timestamp and records where comm, latency flags,
 * event and payload are. It returns bytes objects holding little-endian arrays, which the Python
 * side wraps as Arrow buffers without copying:
 *   index   int64   0-based line index within the chunk of each line that fits
 *   pid     int32,  cpu int64,  ts_ns int64
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

/* Unsigned decimal in [a, b) padded with spaces on either side; -1 if anything else. */
static int64_t padded_digits(const unsigned char *s, Py_ssize_t a, Py_ssize_t b)
{
	while (a < b && s[a] == ' ')
		a++;
	while (b > a && s[b - 1] == ' ')
		b--;
	if (a == b || b - a > 18)
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
		Py_ssize_t ev_end = 0;
		if (fits) {
			const unsigned char *L = d + s;
			fits = L[ob] == ' ' && L[ob + 1] == '[' && L[cb] == ']' && L[tc] == ':' && L[tc + 1] == ' ';
			if (fits && ec >= 0)
				fits = L[ec] == ':' && L[ec + 1] == ' ';
			if (fits && !is_perf)
				fits = L[16] == '-';
			if (fits) {
				v_cpu = padded_digits(L, ob + 2, cb);
				v_pid = is_perf ? padded_digits(L, 16, ob) : padded_digits(L, 17, ob);
				Py_ssize_t t0 = cb + 2 + (lat_width ? lat_width + 1 : 0);
				Py_ssize_t dot = tc - frac_digits - 1;
				if (frac_digits > 0 && dot > t0 && L[dot] == '.') {
					int64_t sec = padded_digits(L, t0, dot), frac = padded_digits(L, dot + 1, tc);
					if (sec >= 0 && frac >= 0 && L[dot + 1] != ' ')
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
		}
		if (fits) {
			int64_t li = line;
			int32_t p32 = (int32_t)v_pid;
			Py_ssize_t lead = 0;
			while (lead < 15 && d[s + lead] == ' ')
				lead++;
			Py_ssize_t ev_a = s + tc + 2, ev_b = ec >= 0 ? s + ec : s + ev_end;
			Py_ssize_t pay = ec >= 0 ? s + ec + 2 : s + ev_end + 2;
			err = buf_put(&index, &li, 8) || buf_put(&pid, &p32, 4) || buf_put(&cpu, &v_cpu, 8) ||
			      buf_put(&ts, &v_ts, 8) || put_view(&comm, d, s + lead, 16 - lead) ||
			      put_view(&event, d, ev_a, ev_b - ev_a) || put_view(&payload, d, pay, e - pay) ||
			      (lat_width && put_view(&lat, d, s + cb + 2, lat_width));
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
