"""Rewrite an uncompressed trace.dat v7 as a zlib-compressed one (trace-cmd here is built with zstd only).

    python tests/data/tracedat/make_zlib.py IN.dat OUT.dat

Every section but the options is compressed with zlib (compress2 format, as trace-cmd's zlib
plugin writes: `<u32 compressed size><u32 size><data>` after the section header) and each CPU's
flyrecord data is written as trace-cmd writes compressed data: a u32 chunk count, then chunks of
ten pages, each `<u32 compressed size><u32 size><data>`, the BUFFER option giving its offset and its
size without the count. Options sections keep their length, so offsets are laid out first and
written after. Little-endian input only (the captures are).
"""

from __future__ import annotations

import struct
import sys
import zlib

CHUNK = 10


def sections(d: bytes, pos: int):
    while pos + 16 <= len(d):
        sid, flags, desc, size = struct.unpack_from("<HHIQ", d, pos)
        yield pos, sid, flags, desc, d[pos + 16:pos + 16 + size]
        pos += 16 + size


def options(body: bytes):
    i = 0
    while i < len(body):
        oid, size = struct.unpack_from("<HI", body, i)
        yield oid, body[i + 6:i + 6 + size]
        i += 6 + size
        if oid == 0:
            return


def main(src: str, dst: str) -> None:
    d = open(src, "rb").read()
    i = d.index(b"\0", 10) + 1
    if d[10:i - 1] != b"7" or d[i] != 0:
        sys.exit("input must be a little-endian v7 file")
    page = struct.unpack_from("<I", d, i + 2)[0]
    j = d.index(b"\0", i + 6)
    k = d.index(b"\0", j + 1)
    if d[i + 6:j] != b"none":
        sys.exit("input must be uncompressed (trace-cmd convert --compression none)")
    first_opt = struct.unpack_from("<Q", d, k + 1)[0]
    head = d[:i + 6] + b"zlib\0" + zlib.ZLIB_VERSION.encode() + b"\0"
    start = k + 9
    secs = list(sections(d, start))
    buffers = {}  # old flyrecord section offset -> [(cpu, old off, size)]
    for _pos, sid, _f, _desc, body in secs:
        if sid == 0:
            for oid, ob in options(body):
                if oid == 3:
                    off = struct.unpack_from("<Q", ob)[0]
                    p = ob.index(b"\0", 8) + 1
                    p = ob.index(b"\0", p) + 1
                    left = len(ob) - p
                    if (left - 8) % 20 == 0:
                        p += 4
                    n = struct.unpack_from("<I", ob, p)[0]
                    cpus = [struct.unpack_from("<IQQ", ob, p + 4 + 20 * c) for c in range(n)]
                    buffers[off] = cpus
    # pass 1: new bodies and offsets
    out_pos = len(head) + 8
    new_off, bodies, cpu_new = {}, [], {}
    for pos, sid, flags, desc, body in secs:
        new_off[pos] = out_pos
        if sid == 0:
            nb, nflags = body, flags
        elif sid == 3:
            nflags = flags | 1
            parts, cur = [], out_pos + 16
            for cpu, off, size in buffers[pos]:
                pad = (-cur) % page
                parts.append(b"\0" * pad)
                cur += pad
                raw = d[off:off + size]
                chunks = [raw[c:c + CHUNK * page] for c in range(0, len(raw), CHUNK * page)]
                blob = struct.pack("<I", len(chunks))
                for ch in chunks:
                    z = zlib.compress(ch, 9)
                    blob += struct.pack("<II", len(z), len(ch)) + z
                cpu_new[(pos, cpu)] = (cur, len(blob) - 4)
                parts.append(blob)
                cur += len(blob)
            nb = b"".join(parts)
        else:
            z = zlib.compress(body, 9)
            nb, nflags = struct.pack("<II", len(z), len(body)) + z, flags | 1
        bodies.append((sid, nflags, desc, nb))
        out_pos += 16 + len(nb)
    # pass 2: options with the new offsets
    out = [head, struct.pack("<Q", new_off[first_opt])]
    for (pos, sid, _flags, _desc, body), (_, nflags, desc, nb) in zip(secs, bodies):
        if sid == 0:
            opts = b""
            for oid, ob in options(body):
                if oid in (16, 17, 18, 19, 20, 21):
                    ob = struct.pack("<Q", new_off[struct.unpack_from("<Q", ob)[0]])
                elif oid == 0:
                    nxt = struct.unpack_from("<Q", ob)[0]
                    ob = struct.pack("<Q", new_off[nxt] if nxt else 0)
                elif oid == 3:
                    old = struct.unpack_from("<Q", ob)[0]
                    p = ob.index(b"\0", 8) + 1
                    p = ob.index(b"\0", p) + 1
                    if (len(ob) - p - 8) % 20 == 0:
                        p += 4
                    n = struct.unpack_from("<I", ob, p)[0]
                    cpus = b"".join(struct.pack("<IQQ", c, *cpu_new[(old, c)])
                                    for c, _o, _s in (struct.unpack_from("<IQQ", ob, p + 4 + 20 * x) for x in range(n)))
                    ob = struct.pack("<Q", new_off[old]) + ob[8:p + 4] + cpus
                opts += struct.pack("<HI", oid, len(ob)) + ob
            assert len(opts) == len(body)
            nb = opts
        out.append(struct.pack("<HHIQ", sid, nflags, desc, len(nb)) + nb)
    open(dst, "wb").write(b"".join(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
