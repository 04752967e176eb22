/* The arithmetic of parse/tpformat.py's numeric programs, shared by the perf.data and trace.dat readers
   (_perfdata.c, _tracedat.c), which run the same programs over raw records: libtraceevent's, on 64-bit
   values, with no trap (a division by zero, or INT64_MIN / -1, gives 0). */
#ifndef THPREPLAY_TPPROG_H
#define THPREPLAY_TPPROG_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* How a typed slot's value is printed (parse/perfdata.py's interp numbers) */
enum { I_SIGNED = 0, I_UNSIGNED = 1, I_PFN = 2, I_HEX = 3, I_PTR = 4, I_RAW = 5, I_GFP = 6 };

/* A value cast to a field of `bits` bits, sign-extended when `sign`. */
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

/* Binary operator `op`, in tpformat.py's numbering. */
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

/* Whether the printed token t (tlen bytes, NUL-terminated, writable: a trailing ',' is cut) is how a
   slot printed as `interp` prints v (the readers' check of their first records against the text; the
   gfp names are checked by each reader). */
static int printed_as(int interp, char *t, size_t tlen, int64_t v)
{
	char *end;
	if (interp == I_RAW) {
		int null = !strcmp(t, "(nil)") || !strcmp(t, "(null)") || !strcmp(t, "0") || !strcmp(t, "0x0") || !t[0];
		return null == (v == 0);
	}
	if (interp == I_HEX || interp == I_PTR) {
		const char *d = strncmp(t, "0x", 2) ? t : t + 2;
		errno = 0;
		uint64_t u = strtoull(d, &end, 16);
		return *d && !*end && !errno && u == (uint64_t)v;
	}
	int64_t x;
	if (tlen && t[tlen - 1] == ',')
		t[--tlen] = 0;
	errno = 0;
	if (!strcmp(t, "0xffffffffffffffff") || !strcmp(t, "18446744073709551615")) {
		x = interp == I_PFN ? 0 : -1;
		end = t + tlen;
	} else if (!strncmp(t, "0x", 2)) {
		x = (int64_t)strtoull(t + 2, &end, 16);
	} else {
		x = strtoll(t, &end, 10);
	}
	return tlen && !*end && !errno && x == v;
}

#endif
