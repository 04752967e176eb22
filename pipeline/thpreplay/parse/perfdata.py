"""perf.data files read without perf: the C reader (parse/_perfdata.c) prints the lines that
`perf script -F comm,tid,cpu,time,event,trace --ns` prints for the file, byte for byte, and ingest
parses them as it parses perf's text (same tables, same `line` numbers).

Past the first 400 samples (printed: ingest detects the text's layout from them; past the text
route's whole first chunk when the header's kernel release names no gfp table, since ingest then
chooses the table from the first chunk's gfp names), the typed route takes over: for each event thpreplay types whose print fmt prints its keys plainly (the
`key=` of each spec field followed by one number conversion of an expression over the raw fields, or
a gfp mask's __print_flags), the reader computes the numbers from the raw record with the format's
offsets and sizes (parse/tpformat.py compiles the expressions; `plan`) and hands them over as typed
columns, numbered with the line perf script's text would give the sample; a gfp mask's names are
libtraceevent's, printed once per mask. The first 64 samples of each typed event are printed by
libtraceevent too and their values checked against that text: a difference (or [FAILED TO PARSE])
leaves the event to the text parser from then on, before any typed row of it. A sample whose values the
text parser would reject or read another way (a pid, cpu, order ... outside the kernel's bounds, a
%p printing (nil), a comm outside printable ASCII, with "[" or "]", or a ":" at its end or before a
blank), and every sample of the other events (other_events,
the events whose print fmt is not plain), is printed as text as before and parsed by the text parser
in the same chunk; the two parts are merged by line. So the tables are those of the text route by
construction (tests/test_perfdata_typed.py compares them, column by column, on every bundled
perf.data). `Native.untyped` says, one line per event, why an event's samples go the text way.
THPREPLAY_PERF_TEXT=1 keeps the whole file on the text route (for comparing).

A file the reader does not handle (pipe mode, callchains, AUX data, libtraceevent missing, ...) is
`Unsupported` with the reason: ingest says so in one warning line and runs perf script instead. A
malformed file is an InputError naming it. THPREPLAY_PERF_SCRIPT=1 in the environment makes
ingest use perf script for every perf.data, e.g. to compare the two.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from thpreplay.errors import InputError
from thpreplay.inputs import CHUNK_BYTES, FIRST_CHUNK_BYTES, Chunk
from thpreplay.kernel import gfp
from thpreplay.kernel.events import COLUMN_BOUNDS, EVENTS, GFP_BITS, PAGE_BOUNDS, PAGE_TABLES, EventSpec
from thpreplay.parse import tpformat
from thpreplay.parse.extra import known_keys
from thpreplay.parse.text import ChunkResult, parse_lines, _event_name

try:
    from thpreplay.parse import _perfdata
except ImportError:  # not built (no compiler): perf script decodes every perf.data
    _perfdata = None

AVAILABLE = _perfdata is not None
FORCE_ENV = "THPREPLAY_PERF_SCRIPT"
TEXT_ENV = "THPREPLAY_PERF_TEXT"  # the reader's text for every sample (no typed route)
# Samples per typed chunk: about the events of one 32 MiB text chunk, so that memory is what it was.
TYPED_ROWS = 1 << 18
TEXT_FIRST = 400  # ingest's format detection reads the first 400 lines (ingest._sample_lines)


@dataclass
class Native:
    """An open perf.data and what its reading found (filled in as it is read)."""

    name: str
    reader: object
    info: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # warnings for the user
    plans: dict[int, tuple] = field(default_factory=dict)  # attr -> (event, spec, Plan): the typed route's

    untyped: dict[str, str] = field(default_factory=dict)  # event -> why its samples stay text
    comms: list[str] = field(default_factory=list)  # the typed rows' comm strings, by id
    gfp: dict = field(default_factory=dict)  # attr * 8 + slot -> {mask: printed}

    def chunks(self) -> Iterator[Chunk]:
        """Chunks of whole lines, numbered from 1 as perf script's output would be; typed chunks when some
        event has a plan (their first TEXT_FIRST samples printed as text all the same, for ingest's
        format detection)."""
        first_line = 1
        typed = not text_only() and self._plan()
        release = self.info.get("osrelease") or ""
        if typed and gfp.table_for_release(release):
            pending = self._read_typed(TEXT_FIRST)
        else:
            # without a release that names a gfp table, ingest may choose it from the first chunk: the
            # text route's own first chunk, so that it chooses from the same lines
            pending = self._read(FIRST_CHUNK_BYTES)
        lines = pending.lines if isinstance(pending, Typed) else pending[1]
        while lines:
            nxt = self._read_typed() if typed else self._read(CHUNK_BYTES)
            after = nxt.lines if typed else nxt[1]
            if isinstance(pending, Typed):
                yield TypedChunk(pending.text, first_line, final=not after, typed=pending,
                                 text_bytes=pending.lines * 150)
            else:
                yield Chunk(pending[0], first_line, final=not after)
            first_line += lines
            pending, lines = nxt, after
        self.info = self.reader.info()
        if typed:
            for attr, why in self.reader.dropped().items():
                self.untyped[self.plans[attr][0]] = f"typed values differ from libtraceevent's text, so its text is read: {why}"

    def _plan(self) -> bool:
        """Hand the reader a plan for each event the typed route reads; the others' reasons in untyped."""
        try:
            formats = self.reader.formats()
        except (AttributeError, ValueError):  # an older build of the reader
            return False
        for attr, event, system, text in formats:
            name = _event_name(event) or event
            spec = EVENTS.get(name)
            if spec is None:
                self.untyped[event] = "not an event thpreplay types (other_events keeps its text)"
                continue
            try:
                fmt = tpformat.parse(text, system)
                built = plan(fmt, spec)
            except (tpformat.FormatError, tpformat.Unsupported, RecursionError, ValueError, OverflowError,
                    IndexError) as e:
                built = str(e) or type(e).__name__
            if isinstance(built, str):
                self.untyped[event] = built
                continue
            try:
                self.reader.set_plan(attr, built.slots)
            except ValueError as e:
                self.untyped[event] = str(e)
                continue
            self.plans[attr] = (name, spec, built)
        return bool(self.plans)

    def _read_typed(self, text_first: int = 0) -> "Typed":
        try:
            lines, typed, text, xlines, comms, gfps, stats = self.reader.read_typed(TYPED_ROWS, text_first)
        except _perfdata.Unsupported as e:
            raise InputError(self.name, f"perf.data: {e}: thpreplay's reader does not read it; "
                                        f"ingest it with {FORCE_ENV}=1 (perf script)") from None
        except _perfdata.Error as e:
            raise InputError(self.name, f"malformed perf.data: {e}") from None
        self.comms += comms
        for key, mask, printed in gfps:
            self.gfp.setdefault(key, {})[mask] = printed
        return Typed(text, lines, typed, xlines, len(self.comms), self.gfp, stats, self)

    def _read(self, want: int) -> tuple[bytes, int]:
        try:
            return self.reader.read(want)
        except _perfdata.Unsupported as e:  # met past the header: too late to hand over to perf script
            raise InputError(self.name, f"perf.data: {e}: thpreplay's reader does not read it; "
                                        f"ingest it with {FORCE_ENV}=1 (perf script)") from None
        except _perfdata.Error as e:
            raise InputError(self.name, f"malformed perf.data: {e}") from None


def forced() -> bool:
    return os.environ.get(FORCE_ENV, "") not in ("", "0")


def text_only() -> bool:
    return os.environ.get(TEXT_ENV, "") not in ("", "0")


def open_native(path: str, name: str) -> tuple[Native | None, str]:
    """(reader, "") or (None, why perf script has to decode it). path: a plain perf.data file."""
    if forced():
        return None, ""
    if _perfdata is None:
        return None, "the native perf.data reader is not built"
    try:
        native = Native(name, _perfdata.Reader(path))
        native.info = native.reader.info()
        if native.info["unknown_features"]:  # a newer perf's header sections: each is found by its bit, so skipping is safe
            bits = ", ".join(map(str, native.info["unknown_features"]))
            native.notes.append(f"{name}: perf.data header feature bits thpreplay does not know ({bits}): skipped")
        return native, ""
    except _perfdata.Unsupported as e:
        return None, str(e)
    except _perfdata.Error as e:
        raise InputError(name, f"malformed perf.data: {e}") from None
    except OSError as e:
        raise InputError(name, f"cannot read: {e.strerror}") from None


# ---- the typed route ----

# How the reader turns a slot's value into the text parser's (_perfdata.c I_*): the number printed
# signed; printed unsigned (past int64: the parser cannot read it); the same, -1UL read as 0 (a pfn);
# a hex number read as UInt64; %p (0 prints "(nil)"); no check (a page pointer); a gfp mask (its text is
# libtraceevent's, printed once for each mask, _perfdata.c gfp_known).
I_SIGNED, I_UNSIGNED, I_PFN, I_HEX, I_PTR, I_RAW, I_GFP = range(7)
_INT64 = (-(1 << 63), (1 << 63) - 1)
_KEY_RE = re.compile(r"(?:^|(?<=\s))([A-Za-z_][\w.\-]*)=")
_DTYPES = {"int": pl.Int64, "pfn": pl.Int64, "bool": pl.Boolean, "hex": pl.UInt64, "gfp": pl.String, "str": pl.String}


@dataclass
class Plan:
    """One event's typed columns: slot j is spec key keys[j]'s value, computed by code (tpformat ops)."""
    slots: list[tuple[bytes, int, int, int, str]]  # (program, interp, lo, hi, key) as the reader takes them
    keys: list[str]  # the spec key of each slot
    columns: dict[str, str | None]  # column -> the printed key it comes from (None: not printed: null)
    page: str | None = None  # the key of a struct page * printed with %p (NULL makes pfn 0)


def _as_int64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _conversions(event: tpformat.EventFormat) -> list:
    """The print fmt as literals (str) and conversions (conv, flags, width, prec, bits, node), as
    tpformat._compile reads it."""
    toks = tpformat._tokens(event.print_fmt)
    if not toks or toks[0][0] != "str":
        raise tpformat.Unsupported("print fmt does not start with a string")
    fmt, i = "", 0
    while i < len(toks) and toks[i][0] == "str":
        fmt += tpformat._unescape(toks[i][1])
        i += 1
    rest = toks[i:]
    args = []
    if rest:
        if rest[0] != ("op", ","):
            raise tpformat.Unsupported("junk after the format string")
        args = tpformat._split_args(rest[1:])
    out: list = []
    pos = argi = 0
    for m in tpformat._CONV_RE.finditer(fmt):
        out.append(fmt[pos:m.start()])
        pos = m.end()
        conv, ext = m.group("conv"), m.group("ext")
        if conv == "%":
            out.append("%" + ext)
            continue
        if argi >= len(args):
            raise tpformat.Unsupported("fewer arguments than conversions")
        p = tpformat._Parser(args[argi], event)
        node = p.expr()
        if p.peek()[0] != "eof":
            raise tpformat.Unsupported("trailing tokens in an argument")
        argi += 1
        flags = m.group("flags") or ""
        width, prec = m.group("width") or "", m.group("prec")
        length = m.group("len") or ""
        if conv == "p":
            if ext in ("s", "S", "F", "f", "B"):
                conv, flags, length = "x", flags + "#", "ll"  # the address as 0x.. (no kallsyms)
            elif ext in ("", "K"):
                conv, length = "p", "ll"
            else:
                raise tpformat.Unsupported(f"%p{ext}")
            ext = ""
        bits = {"hh": 8, "h": 16, "": 32}.get(length, 64)
        out.append((conv, flags, width, prec, bits, node))
        if ext:
            out.append(ext)
    out.append(fmt[pos:])
    if argi != len(args) and not (argi == 0 and args == [[]]):
        raise tpformat.Unsupported("more arguments than conversions")
    return out


def plan(event: tpformat.EventFormat, spec: EventSpec) -> Plan | str:
    """The event's typed columns, or why the text parser has to read its lines. Only a print fmt whose
    every `key=` is a key the spec knows (so no extra_fields), printed once, and whose spec keys are each
    one plain conversion (`key=%d`, `key=0x%lx`, `key=%s` of __print_flags for a gfp mask, `page=%p`) is
    typed: then the printed value is a function of the number, which the reader computes."""
    parts = _conversions(event)
    shape = "".join(p if isinstance(p, str) else "\x01" for p in parts)
    convs = [p for p in parts if not isinstance(p, str)]
    if any(ch in shape for ch in "\t\n\r\x0b\x0c"):
        return "its print fmt prints a blank other than a space"
    keys = [m.group(1) for m in _KEY_RE.finditer(shape)]
    if shape.count("=") != len(keys) or len(set(keys)) != len(keys):
        return "its print fmt prints an '=' outside a key= or a key twice"
    unknown = sorted(set(keys) - known_keys(spec))
    if unknown:
        return f"its print fmt prints keys thpreplay does not type ({', '.join(unknown)}: extra_fields)"
    # each conversion's key: the key= whose value starts at it
    where = {}
    for m in _KEY_RE.finditer(shape):
        where[m.end()] = m.group(1)
    conv_key: list[tuple[str | None, bool]] = []  # (key, "0x" printed before it)
    for ch_i, ch in enumerate(shape):
        if ch == "\x01":
            key = where.get(ch_i)
            hexlit = False
            if key is None and shape[max(0, ch_i - 2):ch_i] == "0x" and (ch_i - 2) in where:
                key, hexlit = where[ch_i - 2], True
            conv_key.append((key, hexlit))
    slots, slot_keys, page = [], [], None
    bounds = {**COLUMN_BOUNDS, **(PAGE_BOUNDS if spec.table in PAGE_TABLES else {})}
    printed = set()
    for (conv, fl, width, prec, bits, node), (key, hexlit), at in zip(
            convs, conv_key, [i for i, ch in enumerate(shape) if ch == "\x01"]):
        if width or prec is not None or fl.replace("#", ""):
            return f"{key or 'a value'} is printed with a width, precision or flag"
        # a gfp mask: `mask ? __print_flags(mask, ...) : "none"` (5.x-6.x kmem.h) prints a function of the mask
        if conv == "s":
            kind = spec.fields[key][1] if key in spec.fields else None
            if kind == "gfp" and node[0] == "cond" and node[2][0] == "flags" and node[3][0] == "str" \
                    and node[1] == node[2][1]:
                node = node[2]
            if kind != "gfp" or node[0] != "flags":
                return f"{key or 'a value'} is printed with %s" + ("" if key else " without a key")
        if key is None:
            return "a value is printed without a key="
        after = shape[at + 1:at + 2]
        if after not in ("", " ") and not (after == "," and shape[at + 2:at + 3] in ("", " ")):
            return f"{key}'s value runs on past its conversion"
        if key not in spec.fields:
            continue  # a known key no column holds (page= of the frees): not read
        column, kind = spec.fields[key]
        if after == "," and kind in ("hex", "gfp"):
            return f"{key} is printed with a ',' after it"
        prog = tpformat.Program()
        if not _plain(node[1] if conv == "s" else node):
            return f"{key}'s expression compares or branches in a way libtraceevent may evaluate otherwise"
        if conv == "s":
            tpformat._emit_num(prog, node[1])
            slot = (I_GFP, 0, (1 << GFP_BITS) - 1)  # a bit past gfp_t: the text parser rejects the line
        else:
            tpformat._emit_num(prog, node)
            if bits < 64:
                prog.code += [tpformat.OP_CAST, bits, int(conv in "di")]
            lo, hi = bounds.get(column, (*_INT64, ""))[:2]
            if kind in ("int", "pfn", "bool"):
                if conv in "di":
                    interp = I_SIGNED
                elif conv == "u" or (conv == "x" and hexlit and not fl):
                    interp = I_PFN if kind == "pfn" and bits == 64 else I_UNSIGNED
                else:
                    return f"{key} is printed as {conv!r}{' with 0x' if hexlit else ''}, which the text parser reads otherwise"
                slot = (interp, max(lo, _INT64[0]), min(hi, _INT64[1]))
            elif kind == "hex":
                if conv == "x" and not (hexlit and fl):
                    interp = I_HEX
                elif conv == "p":
                    interp = I_PTR
                else:
                    return f"{key} is printed as {conv!r}, which the text parser reads otherwise"
                slot = (interp, _as_int64(max(lo, 0)), _as_int64(min(hi, (1 << 64) - 1)))
            elif kind == "str" and column == "page" and conv == "p":
                page = key
                slot = (I_RAW, 0, 0)
            else:
                return f"{key} ({kind}) is printed as a number"
        if len(prog.code) > 4096:
            return f"{key}'s expression is too long"
        slots.append((struct.pack(f"<{len(prog.code)}q", *prog.code), *slot, key))
        slot_keys.append(key)
        printed.add(key)
    if len(slots) > 8:
        return "more than 8 typed fields"
    missing = [k for k in spec.required if k not in printed]
    if missing:
        return f"its print fmt does not print {', '.join(missing)} (the text parser rejects every line)"
    if not printed:
        return "its print fmt prints none of the keys thpreplay reads"
    columns: dict[str, str | None] = {}
    for key, (column, _kind) in spec.fields.items():
        if column in columns and columns[column] is not None and key in printed:
            return f"{columns[column]} and {key} are both printed for column {column}"
        if columns.get(column) is None:
            columns[column] = key if key in printed else None
    if page is not None:
        columns.pop("page", None)
    return Plan(slots, slot_keys, columns, page)


_ARITH = {"+", "-", "*", "/", "%", "<<", ">>", "&", "|", "^"}


def _plain(node) -> bool:
    """Fields, constants, casts and arithmetic, and `x ==/!= y ? a : b` of those (the pfn's -1UL test): the
    expressions whose value libtraceevent computes as C does. A comparison inside an operand (the
    extfrag event's `fallback_order < min(...)`) it does not always: those are left to its text."""
    work = [node]
    while work:
        n = work.pop()
        k = n[0]
        if k in ("const", "field"):
            continue
        if k == "cast":
            work.append(n[3])
        elif k == "un" and n[1] in ("-", "~"):
            work.append(n[2])
        elif k == "bin" and n[1] in _ARITH:
            work += [n[2], n[3]]
        elif k == "cond" and n[1][0] == "bin" and n[1][1] in ("==", "!="):
            work += [n[1][2], n[1][3], n[2], n[3]]
        else:
            return False
    return True


@dataclass
class Typed:
    """One read_typed() answer."""
    text: bytes  # the samples left to the text parser, as perf script prints them
    lines: int  # lines of the chunk (typed rows and text lines)
    typed: tuple  # (rows, line, attr, tid, cpu, ts, comm, [slots]) as int64 bytes
    xlines: bytes  # the line number of each text line (int64)
    ncomms: int  # native.comms[:ncomms] hold every comm id of the chunk
    gfp: dict  # attr * 8 + slot -> {mask: text libtraceevent printed}; holds the chunk's masks
    stats: tuple | None  # (ts min, max, first, last, backwards) over the chunk's samples
    native: Native


@dataclass
class TypedChunk(Chunk):
    typed: Typed | None = None
    text_bytes: int = 0  # about the bytes perf script would print for it (150 a line: the progress bar counts bytes)


def _i64(raw: bytes, n: int) -> pl.Series:
    # through numpy: pl.from_arrow would import pyarrow.compute (0.05-0.1 s of start-up)
    return pl.Series(np.frombuffer(raw, dtype=np.int64, count=n))


def _text_frame(text: bytes, xlines: bytes) -> pl.DataFrame:
    """(line, text) of the text samples' lines (the reader numbered each)."""
    if not text:
        return pl.DataFrame(schema={"line": pl.Int64, "text": pl.String})
    rows = text.decode("utf-8", errors="replace").split("\n")[:-1]
    if "\r" in text.decode("latin-1"):  # pl.read_lines takes one CR before the LF off, as ingest reads text
        rows = [r[:-1] if r.endswith("\r") else r for r in rows]
    return pl.DataFrame({"line": _i64(xlines, len(xlines) // 8), "text": rows})


def parse_typed(chunk: TypedChunk, layout, source: str) -> ChunkResult:
    """The chunk's tables: the typed rows' columns, and the text samples through the text parser,
    merged by line."""
    t = chunk.typed
    assert t is not None
    if t.text:
        result = parse_lines(_text_frame(t.text, t.xlines), layout, source, False, t.text.isascii())
    else:
        result = ChunkResult(tables={}, rejects=pl.DataFrame(), lines=0)
    result.lines = t.lines
    rows, line, attr, tid, cpu, ts, comm, slots = t.typed
    by_table: dict[str, list[pl.DataFrame]] = {}
    for table, frame in result.tables.items():
        by_table.setdefault(table, []).append(frame)
    if rows:
        base = pl.DataFrame({
            "line": _i64(line, rows), "_attr": _i64(attr, rows), "pid": _i64(tid, rows), "cpu": _i64(cpu, rows),
            "ts_ns": _i64(ts, rows), "_comm": _i64(comm, rows),
            **{f"_s{j}": _i64(raw, rows) for j, raw in enumerate(slots)},
        })
        comms = pl.Series("comm", t.native.comms[:t.ncomms], dtype=pl.String)
        parts = base.partition_by("_attr", as_dict=True, maintain_order=True)
        named = sorted(((t.native.plans[a[0]], frame) for a, frame in parts.items()), key=lambda x: x[0][0])
        a_of = {id(frame): a[0] for a, frame in parts.items()}
        for (event, spec, p), frame in named:
            by_table.setdefault(spec.table, []).append(
                _event_frame(frame, event, spec, p, comms, source, t.gfp, a_of[id(frame)]))
    result.tables = {}
    for table, frames in by_table.items():
        frame = pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]
        result.tables[table] = frame.sort("line") if len(frames) > 1 else frame
    if t.stats is not None:
        result.ts_min, result.ts_max, result.first_ts, result.last_ts, result.backwards = t.stats
    result.untimed = 0
    result.has_tgid = False
    return result


def _event_frame(frame: pl.DataFrame, event: str, spec: EventSpec, p: Plan, comms: pl.Series,
                 source: str, gfp: dict, attr: int) -> pl.DataFrame:
    """One event's rows as parse.text._typed gives them: the header columns, then the spec's columns."""
    slot = {key: pl.col(f"_s{j}") for j, key in enumerate(p.keys)}
    cols = []
    for column, key in p.columns.items():
        kind = spec.fields[key][1] if key is not None else next(k for c, k in spec.fields.values() if c == column)
        if key is None:
            cols.append(pl.lit(None, dtype=_DTYPES[kind]).alias(column))
            continue
        v = slot[key]
        if kind == "bool":
            v = v != 0
        elif kind == "hex":
            v = v.reinterpret(signed=False)
        elif kind == "gfp":
            j = p.keys.index(key)
            values = frame.get_column(f"_s{j}").unique().to_list()
            printed = gfp[attr * 8 + j]
            names = [printed[x] for x in values]
            v = v.replace_strict(values, names, return_dtype=pl.String)
        if column == "pfn" and p.page is not None:  # a NULL struct page * means no page (ingest's enrich)
            v = pl.when(slot[p.page] == 0).then(0).otherwise(v)
        cols.append(v.alias(column))
    out = frame.select(
        "ts_ns", "cpu", "pid", pl.lit(None, dtype=pl.Int64).alias("tgid"),
        comms.gather(frame.get_column("_comm")).alias("comm"),
        pl.lit(event).alias("event"), pl.lit(source).alias("source"), "line", *cols)
    if spec.constants:
        out = out.with_columns([pl.lit(v).alias(k) for k, v in spec.constants.items()])
    return out
