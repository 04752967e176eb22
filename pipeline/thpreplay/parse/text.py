"""Vectorised parsing of text traces: ftrace (`trace`, `trace_pipe`), `trace-cmd report`, `perf script`.

A chunk of whole lines becomes one polars frame per event table, with no per-line Python. The line
prefix (task, pid, cpu, latency flags, timestamp, event name) is cut with literal `find`s and slices,
which is several times faster than a capturing regex; every row is then checked, and the few rows
the fast path cannot read (a comm containing " [" or ": ", odd column widths) go through the
generic ftrace/perf line regular expressions. Rows that neither reads are rejects.

Payload fields are read by name (`pfn=`, `order=`, ...) wherever they are, so every era's print
format and libtraceevent's `[FAILED TO PARSE] name=value` fallback read the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import polars as pl

from thpreplay.errors import InputError
from thpreplay.kernel.events import (
    COLUMN_BOUNDS, CPU_MAX, EVENTS, GFP_BITS, PAGE_BOUNDS, PAGE_TABLES, PID_MAX_LIMIT, EventSpec,
)
from thpreplay.parse import extra, stacks  # lines and fields beside the events

FORMATS = ("ftrace", "trace-cmd", "perf", "events")

# Fallback regexes, slightly widened: trace-cmd widths vary.
_FTRACE_RE = (
    r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+(?:\(\s*(?P<tgid>[\d-]+)\)\s+)?\[(?P<cpu>\d+)\]\s+"
    r"(?:(?P<lat>[.a-zA-Z][^\s]{3,4})\s+)?(?P<ts>\d+(?:\.\d+)?):\s+(?P<event>[\w:]+):(?:\s(?P<payload>.*))?$"
)
# perf script prints, of comm, tid (or pid, or pid/tid), cpu and time, the columns its -F list names, in
# this order (perf_sample__fprintf_start, tools/perf/builtin-script.c): comm %16s, pid %5d or
# %5d/%-5d, cpu [%03d], time %5lu.%09llu (--ns) or %lu.%06lu, each followed by a blank; the time by
# ": ". A file's columns are detected once (detect_layout); a column it lacks is null in every row.
# "events" is the case with none of them: event lines as people paste them (`name: fields`).
PERF_COLUMNS = ("comm", "pid", "cpu", "time")
_PERF_PARTS = {
    "comm": r"(?P<comm>.*?)",
    "pid": r"(?:(?P<tgid>-?\d+)/)?(?P<pid>-?\d+)",
    "cpu": r"\[(?P<cpu>\d+)\]",
    "time": r"(?P<ts>\d+(?:\.\d+)?):?",
}


def _perf_re(columns: tuple[str, ...]) -> str:
    head = r"\s+".join(_PERF_PARTS[c] for c in columns)
    return r"^\s*" + (head + r"\s+" if head else "") + r"(?P<event>[\w:]+):(?:\s(?P<payload>.*))?$"


# Every subset of the columns, most columns first (the first that reads the most sample lines wins).
_PERF_VARIANTS = sorted(
    (tuple(c for i, c in enumerate(PERF_COLUMNS) if mask >> i & 1) for mask in range(1 << len(PERF_COLUMNS))),
    key=lambda cols: -len(cols),
)
_PERF_RE = _perf_re(PERF_COLUMNS)
_EVENTS_RE = _perf_re(())
_HEADER_RE = {"ftrace": _FTRACE_RE, "trace-cmd": _FTRACE_RE, "perf": _PERF_RE, "events": _EVENTS_RE}


# The patterns above run in polars (Rust's regex, linear time) over every line. Format and layout
# detection also match sample lines with Python's backtracking engine, where the same patterns are cubic
# in a run of blanks (a 1,000-blank line took 80 s under the perf pattern; the fuzzer found it). For
# that engine: blanks and digits are taken possessively (nothing after them can start with one, so no
# match is lost), comm ends in a non-blank (a lazy comm never ends in one where the pattern matches),
# and only a line's first _SCAN characters are looked at (every prefix is far shorter; the payload is
# `.*`, so a cut line matches as the whole one does).
_SCAN = 512


def _for_python(pattern: str) -> re.Pattern:
    safe = (pattern.replace(r"^\s*", r"^\s*+").replace(r"\s+", r"\s++").replace(r"\d+", r"\d++")
            .replace(r"(?P<comm>.*?)", r"(?P<comm>.*?\S)"))
    return re.compile(safe)


class _SampleRegex:
    """A compiled _for_python pattern whose match looks at the first _SCAN characters only."""

    def __init__(self, pattern: str):
        self.rx = _for_python(pattern)

    def match(self, line: str) -> re.Match | None:
        return self.rx.match(line[:_SCAN])


_PERF_VARIANT_RE = {cols: _SampleRegex(_perf_re(cols)) for cols in _PERF_VARIANTS}
_PY_RE = {k: _SampleRegex(v) for k, v in _HEADER_RE.items()}


def _perf_reads(cols: tuple[str, ...], line: str) -> bool:
    """Whether perf variant cols reads the line. comm is %16s: nothing, or a bare number, ending before
    column 16 is no comm (` 9779 [000] ...` under -F tid,cpu,... is a pid and no comm)."""
    m = _PERF_VARIANT_RE[cols].match(line)
    if not m:
        return False
    if "time" not in cols and m.group("event").rsplit(":", 1)[-1] not in EVENTS:
        return False  # without a timestamp, only a tracepoint thpreplay reads (not any "key: value" text)
    if "comm" not in cols:
        return True
    comm = m.group("comm").strip()
    return bool(comm) and not (re.fullmatch(r"-?\d+(?:/-?\d+)?", comm) and m.end("comm") < 16)


def _perf_columns(lines: list[str]) -> tuple[tuple[str, ...], int]:
    """The perf columns that read the most lines, and how many they read. Lines the ftrace regex reads
    do not count: a comm column absorbs "comm-pid [cpu] flags" when the variant has no pid or cpu."""
    # 100 lines: a variant that does not read a line can take a millisecond to say so (comm's .*?)
    lines = [ln for ln in lines if not _PY_RE["ftrace"].match(ln)][:100]
    best, score = PERF_COLUMNS, -1
    for cols in _PERF_VARIANTS:
        n = sum(1 for ln in lines if _perf_reads(cols, ln))
        if n > score:
            best, score = cols, n
        if score == len(lines):  # none with fewer columns can read more
            break
    return best, score


# Lines that are not events but are part of a well-formed trace.
# trace-cmd prints "CPU:0 [EVENTS DROPPED]" where the ring-buffer page does not store how many: a mark, no count
_LOST_RE = r"^\s*CPU:?\s*(\d+)\s*\[\s*(?:LOST\s+(\d+)\s+EVENTS|(\d+)\s+EVENTS\s+DROPPED|EVENTS\s+DROPPED)\s*\]"
_NOISE_RE = r"^\s*(#|$|cpus=\d+\s*$|version\s*=|CPU\s*\d+\s+is\s+empty|CPU:?\d+\s+\[LOST)"

RAW_MAX = 4096


def detect_format(sample_lines: list[str], path: str) -> str:
    """Pick the text format matching most of the first event-looking lines."""
    candidates = [ln for ln in sample_lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not candidates:
        raise InputError(path, "empty trace (no event lines)")
    scores = {"ftrace": sum(1 for ln in candidates if _PY_RE["ftrace"].match(ln))}
    columns, scores["perf"] = _perf_columns(candidates)
    best = max(scores, key=lambda k: scores[k])
    if best == "perf" and scores[best] and not columns:
        return "events"
    if best == "perf" and scores[best] and "time" not in columns:
        first = next(i for i, ln in enumerate(sample_lines, 1) if _perf_reads(columns, ln))
        raise InputError(path, "perf script output without the time column: thpreplay replays events in time "
                               "order; print it again with perf script -F comm,tid,cpu,time,event,trace --ns",
                         line=first)
    if scores[best] == 0:
        for i, ln in enumerate(sample_lines, 1):   # another ftrace tracer's output (function_graph, ...)
            m = re.match(r"^#\s*tracer:\s*(\S+)", ln)
            if m and m.group(1) != "nop":
                raise InputError(path, f"the output of ftrace's {m.group(1)} tracer, which thpreplay does not read: "
                                       "record the kmem, compaction and vmscan events with the nop tracer "
                                       "(thpreplay record, perf record, trace-cmd record -e)", line=i)
        first = next(i for i, ln in enumerate(sample_lines, 1) if ln.strip() and not ln.lstrip().startswith("#"))
        raise InputError(
            path,
            "not a recognised trace format (expected ftrace, trace-cmd report or perf script text)",
            line=first,
        )
    if best == "ftrace" and any(re.match(r"^\s*cpus=\d+\s*$", ln) for ln in sample_lines[:50]):
        return "trace-cmd"
    return best


@dataclass
class ChunkResult:
    tables: dict[str, pl.DataFrame]
    rejects: pl.DataFrame
    lines: int = 0
    lost_events: int = 0
    lost_markers: int = 0
    fallback_rows: int = 0
    failed_to_parse: int = 0  # event lines libtraceevent printed as `[FAILED TO PARSE] name=value`
    ts_min: int | None = None
    ts_max: int | None = None
    first_ts: int | None = None
    backwards: int = 0
    last_ts: int | None = None
    has_tgid: bool = False
    untimed: int = 0  # event rows without a timestamp (event lines without the task/cpu/time prefix)
    stacks: pl.DataFrame | None = None  # the stacks table's rows (parse/stacks.py)
    extra_fields: pl.DataFrame | None = None  # the extra_fields table's rows (parse/extra.py)


def _int_expr(e: pl.Expr) -> pl.Expr:
    """Decimal or 0x-hex text to Int64 (null when not a number)."""
    is_hex = e.str.starts_with("0x")
    return (
        pl.when(is_hex)
        .then(e.str.slice(2).str.to_integer(base=16, strict=False))
        .otherwise(e.str.to_integer(base=10, strict=False))
    )


@dataclass(frozen=True)
class Layout:
    """What the first lines of a file show about its columns; the fast path relies on it, and rows
    that do not fit are read by the regex fallback."""

    fmt: str
    lat_width: int  # 0: no latency column
    tgid: bool
    # Byte offsets of " [", "] ", the ": " after the timestamp and (perf, whose event names are
    # padded to one width) the ": " after the event, when the sampled lines all agree on them.
    fixed: tuple[int, int, int, int] | None = None
    frac_digits: int | None = None  # digits after the timestamp's '.', when the sample agrees
    columns: tuple[str, ...] = PERF_COLUMNS  # perf: the prefix columns its lines have (() for "events")

    @property
    def generic(self) -> bool:
        """perf script with other columns than comm,tid,cpu,time, or event lines: the regex reads every line."""
        return self.fmt in ("perf", "events") and self.columns != PERF_COLUMNS

    @property
    def regex(self) -> str:
        return _perf_re(self.columns) if self.fmt in ("perf", "events") else _HEADER_RE[self.fmt]


def detect_layout(sample_lines: list[str], fmt: str) -> Layout:
    columns = PERF_COLUMNS
    if fmt == "perf":
        columns = _perf_columns([ln for ln in sample_lines if ln.strip() and not ln.lstrip().startswith("#")])[0]
    elif fmt == "events":
        columns = ()
    rx = _PERF_VARIANT_RE[columns] if fmt in ("perf", "events") else _PY_RE[fmt]
    lat_widths: dict[int, int] = {}
    tgid = 0
    for ln in sample_lines:
        m = rx.match(ln)
        if not m:
            continue
        lat = m.groupdict().get("lat")
        w = len(lat) if lat else 0
        lat_widths[w] = lat_widths.get(w, 0) + 1
        tgid += 1 if m.groupdict().get("tgid") else 0
    width = max(lat_widths, key=lambda k: lat_widths[k]) if lat_widths else 0
    offsets = set()
    for ln in sample_lines:
        if rx.match(ln) and ln.isascii():
            tc = ln.find(": ")
            ec = ln.find(": ", tc + 2) if fmt == "perf" else -1
            offsets.add((ln.find(" ["), ln.find("] "), tc, ec))
    fixed = offsets.pop() if len(offsets) == 1 else None
    fracs = set()
    for ln in sample_lines:
        m = rx.match(ln)
        if m and m.groupdict().get("ts"):
            ts = m.group("ts")
            fracs.add(len(ts) - ts.index(".") - 1 if "." in ts else -1)
    frac = fracs.pop() if len(fracs) == 1 else None
    frac_digits = frac if frac is not None and 0 < frac <= 9 else None
    layout = Layout(fmt, width, tgid > 0 and fmt != "perf", fixed, frac_digits, columns)
    # the fixed-width paths read comm, tid, cpu, time followed by ": " only
    if layout.generic or (fmt == "perf" and (tgid or (fixed and fixed[3] < 0))):
        layout = Layout(fmt, width, layout.tgid, None, frac_digits, columns)
    return layout


def _header(lines: pl.DataFrame, layout: Layout, fixed: bool) -> pl.DataFrame:
    """Cut the line prefix without regex: at the sampled offsets (fixed: constant slices, the common
    case) or at the separators each line shows (literal finds)."""
    s = pl.col("text")
    if fixed:
        assert layout.fixed is not None
        ob, cb, tc, ec = layout.fixed
        df = lines.with_columns(  # satisfy _valid_header's order checks
            pl.lit(1, dtype=pl.UInt32).alias("_ob"), pl.lit(2, dtype=pl.UInt32).alias("_cb"),
            pl.lit(3, dtype=pl.UInt32).alias("_tc"),
        )
    else:
        df = lines.with_columns(
            s.str.find(" [", literal=True).alias("_ob"),
            s.str.find("] ", literal=True).alias("_cb"),
            s.str.find(": ", literal=True).alias("_tc"),
        )
        ob, cb, tc, ec = pl.col("_ob"), pl.col("_cb"), pl.col("_tc"), -1
    mid = s.str.slice(cb + 2, _len(tc - cb - 2)).str.strip_chars_start()
    if layout.lat_width:
        lat = mid.str.slice(0, layout.lat_width)
        # seconds are %5lu, after a blank (a digit there would be read as part of the seconds)
        ts = pl.when(mid.str.slice(layout.lat_width, 1) == " ").then(
            mid.str.slice(layout.lat_width + 1).str.strip_chars_start())
    else:
        lat = pl.lit(None, dtype=pl.String)
        ts = mid
    if ec >= 0:  # fixed perf layout: the event name is padded to one width
        event = s.str.slice(tc + 2, _len(ec - tc - 2))
        payload = s.str.slice(ec + 2)
        sep = s.str.slice(ec, 2) == ": "
    else:
        rest = s.str.slice(tc + 2)
        end = rest.str.find(": ", literal=True)
        event = rest.str.slice(0, end)
        payload = rest.str.slice(end + 2)
        sep = end.is_not_null()
    if layout.fmt == "perf":
        pid = s.str.slice(16, _len(ob - 16)).str.strip_chars_start()
        tgid = pl.lit(None, dtype=pl.String)
    else:
        pidpart = s.str.slice(17, _len(ob - 17))
        sep = sep & (s.str.slice(16, 1) == "-")
        if layout.tgid:
            paren = pidpart.str.find("(", literal=True)
            pid = pl.when(paren.is_null()).then(pidpart).otherwise(pidpart.str.slice(0, paren)).str.strip_chars_end()
            tgid = pidpart.str.slice(paren + 1).str.strip_chars().str.strip_suffix(")").str.strip_chars()
        else:
            pid = pidpart.str.strip_chars_end()
            tgid = pl.lit(None, dtype=pl.String)
    if fixed:
        # The cpu, pid and timestamp conversions fail on a shifted line; the separators they do not
        # read are compared (as parse/_prefix.c does: both read a line alike or not at all).
        sep = sep & (s.str.slice(tc, 2) == ": ") & (s.str.slice(ob, 2) == " [") & (s.str.slice(cb, 1) == "]")
    return df.with_columns(
        s.str.slice(0, 16).str.strip_chars_start().alias("comm"),
        s.str.slice(ob + 2, _len(cb - ob - 2)).str.to_integer(strict=False).alias("cpu"),
        event.alias("event"),
        payload.alias("payload"),
        lat.alias("lat"),
        ts.alias("_ts"),
        pid.alias("_pid"),
        tgid.alias("_tgid"),
        sep.alias("_sep_ok"),
    )


def _len(n):
    """A slice length that is never negative: on a garbled line the brackets and colons the header is
    cut at can come in any order (found by fuzzing: a perf line whose '[' is left of column 16)."""
    return n.clip(lower_bound=0) if isinstance(n, pl.Expr) else max(n, 0)


def _finish_header(df: pl.DataFrame, frac_digits: int | None = None) -> pl.DataFrame:
    """Timestamps to ns, pid and tgid to integers. frac_digits: every line's timestamp has this many
    digits after its '.' (the sample says so): then only that is checked per row."""
    ts = pl.col("_ts")
    whole = ts.str.replace(".", "", literal=True).str.to_integer(strict=False)
    # seconds of up to 9 digits (31 years of uptime) fit int64 nanoseconds; more would wrap: no value,
    # and the line is rejected
    if frac_digits is not None:
        ok = (ts.str.slice(-(frac_digits + 1), 1) == ".") & (ts.str.len_bytes() <= frac_digits + 1 + 9)
        ts_ns = pl.when(ok).then(whole * 10 ** (9 - frac_digits))
    else:
        dot = ts.str.find(".", literal=True)
        digits = ts.str.len_bytes().cast(pl.Int64) - dot - 1
        scale = pl.lit(10, dtype=pl.Int64).pow(pl.lit(9, dtype=pl.Int64) - digits)
        # A timestamp without a fraction is a raw counter clock (trace_clock=counter, x86-tsc): kept as is.
        ts_ns = pl.when(dot.is_null()).then(whole).when((digits <= 9) & (dot <= 9)).then(whole * scale)
    # The event column stays as cut (perf pads it and adds "subsys:"); parse_lines names each
    # distinct value once instead of cleaning every row.
    return df.with_columns(
        ts_ns.alias("ts_ns"),
        # Int64 here: a pid past 32 bits is rejected with its value (_range_problems), not an error
        pl.col("_pid").str.to_integer(strict=False).alias("pid"),
        pl.col("_tgid").str.to_integer(strict=False).alias("tgid"),
    )


_EVENT_NAME = re.compile(r"\s*(?:[\w:]*:)?(\w+)\s*")


def _event_name(raw: str) -> str | None:
    """'   kmem:mm_page_alloc' -> 'mm_page_alloc'; None if it is not an event name."""
    m = _EVENT_NAME.fullmatch(raw)
    return m.group(1) if m else None


# The raw text is not carried past the header: rejects look it up by line number.
_HEADER_COLS = ["line", "comm", "pid", "tgid", "cpu", "lat", "ts_ns", "event", "payload"]
# what the C helper adds to its rows (parse/prefix.py): read by _typed and extra.collect only
_HELPER_COLS = frozenset({"_spec", "_clean", "_more", *(f"_s{t}{j}" for t in "vi" for j in range(16))})


def _valid_header() -> pl.Expr:
    return (
        pl.col("_sep_ok").fill_null(False)
        & (pl.col("_ob") > 0)
        & (pl.col("_cb") > pl.col("_ob"))
        & (pl.col("_tc") > pl.col("_cb"))
        & pl.col("cpu").is_not_null()
        & pl.col("pid").is_not_null()
        & pl.col("ts_ns").is_not_null()
        & pl.col("event").is_not_null()
        & (pl.col("lat").is_null() | pl.col("lat").str.contains(r"^[.a-zA-Z]\S{3,4}$"))
        & pl.col("payload").is_not_null()
    )


_HEADER_SCHEMA = {"line": pl.Int64, "comm": pl.String, "pid": pl.Int64, "tgid": pl.Int64, "cpu": pl.Int64,
                  "lat": pl.String, "ts_ns": pl.Int64, "event": pl.String, "payload": pl.String}


def _mismatch_reason(layout: Layout) -> pl.Expr:
    """Why the regex did not read a line: a value out of range (_why), a line of another format, an
    event line without the prefix the file's other lines have, or not an event line at all."""
    text, fmt = pl.col("text"), layout.fmt
    if fmt == "events":
        expected, others = "event lines", [("ftrace", _FTRACE_RE), ("perf script", _PERF_RE)]
    else:
        expected = f"{fmt} text"
        others = [("perf script", _PERF_RE)] if fmt != "perf" else [("ftrace", _FTRACE_RE)]
    reason = pl.when(pl.col("_why").is_not_null()).then(pl.col("_why"))
    for name, rx in others:
        reason = reason.when(text.str.contains(rx)).then(pl.lit(f"{name} line inside a {fmt} trace (mixed formats)"))
    if fmt != "events":
        known = text.str.extract(r"^\s*(?:[\w:]*:)?(\w+):(?:\s|$)", 1).is_in(list(EVENTS))
        reason = reason.when(known).then(pl.lit(
            "event line without the task/cpu/time prefix the other lines have: it cannot be placed in time"))
    return reason.otherwise(pl.lit(f"not an event line (expected {expected})"))


def _regex_header(lines: pl.DataFrame, layout: Layout) -> pl.DataFrame:
    g = pl.col("text").str.extract_groups(layout.regex)
    df = lines.with_columns(g.alias("_g")).unnest("_g")
    # a column the layout does not have is null (perf script -F without comm, cpu, ...)
    df = df.with_columns([pl.lit(None, dtype=pl.String).alias(c)
                          for c in ("comm", "pid", "tgid", "cpu", "lat", "ts") if c not in df.columns])
    df = df.rename({"pid": "_pid", "tgid": "_tgid", "ts": "_ts", "cpu": "_cpu"}).with_columns(
        pl.col("_cpu").str.to_integer(strict=False).alias("cpu"),
        pl.col("comm").str.strip_chars(),
        pl.col("payload").fill_null(""),
    )
    df = _finish_header(df)
    # A line the regex reads whose pid, cpu or timestamp does not convert is out of range: say which.
    name = pl.col("event").str.extract(r"(\w+)$")
    why = pl.coalesce(
        pl.when(pl.col("_ts").is_not_null() & pl.col("ts_ns").is_null())
        .then(pl.format("{}: timestamp {} past the int64 nanosecond range", name, pl.col("_ts"))),
        pl.when(pl.col("_pid").is_not_null() & pl.col("pid").is_null())
        .then(pl.format(f"{{}}: pid {{}} outside -1..{PID_MAX_LIMIT} (PID_MAX_LIMIT)", name, pl.col("_pid"))),
        pl.when(pl.col("_tgid").is_not_null() & pl.col("tgid").is_null())
        .then(pl.format(f"{{}}: tgid {{}} outside -1..{PID_MAX_LIMIT} (PID_MAX_LIMIT)", name, pl.col("_tgid"))),
        pl.when(pl.col("_cpu").is_not_null() & pl.col("cpu").is_null())
        .then(pl.format(f"{{}}: cpu {{}} outside 0..{CPU_MAX - 1} (NR_CPUS)", name, pl.col("_cpu"))),
    )
    ok = pl.col("event").is_not_null() & why.is_null()
    return df.with_columns(ok.alias("_ok"), why.alias("_why"))


def parse_lines(
    lines: pl.DataFrame,
    layout: Layout,
    source: str,
    unterminated_last: bool,
    all_ascii: bool = False,
    cut=None,
    context: stacks.Context | None = None,
) -> ChunkResult:
    """Parse a frame of (line, text) into typed event frames and rejects.

    all_ascii: the caller checked that the chunk has no byte above 0x7f (bytes.isascii is far cheaper
    than a per-row check). cut: a parse.prefix.Cut whose header rows are already read; `lines` then
    holds only the lines it did not accept. context: the lines before the chunk, for stack traces
    whose event is there.
    """
    fmt = layout.fmt
    n = lines.height + (cut.header.height if cut is not None else 0)
    text = pl.col("text")
    all_lines = lines

    def texts(rows: pl.DataFrame) -> pl.DataFrame:
        """(line, text, reason) for reject rows that have only their line number."""
        found = rows.join(all_lines.select("line", "text"), on="line", how="left")
        if cut is not None and found.get_column("text").null_count():
            missing = found.filter(pl.col("text").is_null())
            looked = cut.text_of(missing.get_column("line"))
            found = pl.concat([found.filter(pl.col("text").is_not_null()),
                               missing.drop("text").join(looked, on="line", how="left")])
        return found.select("line", "text", "reason")
    bad_row = text.str.contains("\x00", literal=True)
    if unterminated_last and n:
        bad_row = bad_row | (pl.col("line") == lines.get_column("line").max())
    flagged = lines.filter(bad_row)
    reject_parts = []
    if flagged.height:
        reject_parts.append(
            flagged.select(
                "line",
                "text",
                pl.when(text.str.contains("\x00", literal=True))
                .then(pl.lit("NUL byte in line (binary data in a text trace)"))
                .otherwise(pl.lit("line cut mid-way (input does not end with a newline)"))
                .alias("reason"),
            )
        )
        lines = lines.filter(~bad_row)

    # Offsets are bytes and slices are characters: lines with non-ASCII bytes take the regex path.
    ascii_ = pl.lit(True) if all_ascii else text.str.len_bytes() == text.str.len_chars()
    valid = _valid_header() & pl.col("_ascii")
    lines = lines.with_columns(ascii_.alias("_ascii"))
    # Select before filtering: filtering a frame copies every column, and `text` is the big one.
    if cut is not None:  # with the payload fields the C helper read (parse/prefix.py), for _typed
        ok = cut.header.select(_HEADER_COLS + [c for c in cut.header.columns if c.startswith("_")])
    elif layout.fixed is not None:
        fast = _finish_header(_header(lines, layout, fixed=True), layout.frac_digits)
        mask = fast.select(valid).to_series()
        ok = fast.select(_HEADER_COLS).filter(mask)
        lines = fast.select("line", "text", "_ascii").filter(~mask)
    else:
        ok = None
    if layout.generic:  # perf script -F with other columns, event lines: the regex reads every line
        ok, bad = pl.DataFrame(schema=_HEADER_SCHEMA), lines.select("line", "text")
    else:
        fast = _finish_header(_header(lines, layout, fixed=False))
        mask = fast.select(valid).to_series()
        ok2 = fast.select(_HEADER_COLS).filter(mask)
        ok = ok2 if ok is None else pl.concat([ok, ok2], how="diagonal").sort("line") if ok2.height else ok
        bad = fast.select("line", "text").filter(~mask)
    names = {raw: _event_name(raw) for raw in ok.get_column("event").unique().to_list()}
    not_events = [raw for raw, name in names.items() if name is None]
    if not_events:  # what was cut as the event name is not one: let the regex read these lines
        rows = ok.filter(pl.col("event").is_in(not_events)).select("line", pl.lit("").alias("reason"))
        bad = pl.concat([bad, texts(rows).select("line", "text")]).sort("line")
        ok = ok.filter(~pl.col("event").is_in(not_events))
    result = ChunkResult(tables={}, rejects=pl.DataFrame(), lines=n)
    stack_lines = None
    if bad.height:
        # Not every line that the fast path cannot read is bad: headers, blank lines, lost-event marks.
        is_noise = text.str.contains(_NOISE_RE) | text.str.contains(_LOST_RE)
        noise = bad.filter(is_noise)
        lost = noise.filter(text.str.contains(_LOST_RE))
        if lost.height:
            # Python integers: a mark's count can be past the int64 range ([LOST 99999999999999999999
            # EVENTS]), and must not become 0
            counts = lost.select(pl.coalesce(text.str.extract(_LOST_RE, 2), text.str.extract(_LOST_RE, 3))).to_series()
            result.lost_markers = lost.height
            result.lost_events = sum(int(c) for c in counts.to_list() if c is not None)
        bad = bad.filter(~is_noise)
        # --- stacks (parse/stacks.py): stack-trace lines are not rejects; attached below ---
        bad, stack_lines = stacks.take_lines(bad, fmt)
        result.fallback_rows = bad.height
    if bad.height:
        slow = _regex_header(bad, layout)
        ok = pl.concat([ok, slow.filter(pl.col("_ok")).select(_HEADER_COLS)], how="diagonal_relaxed").sort("line")
        mismatch = slow.filter(~pl.col("_ok")).select("line", "text", "_why")
        if mismatch.height:
            reject_parts.append(mismatch.select("line", "text", _mismatch_reason(layout).alias("reason")))

    # --- stacks (parse/stacks.py): frames joined to their events (trace-cmd's kernel_stack lines leave ok) ---
    first_line = cut.first_line if cut is not None else (all_lines.get_column("line").min() if all_lines.height else None)
    attached = stacks.attach(ok, stack_lines, fmt, first_line, context)
    ok = attached.events
    reject_parts += attached.rejects
    if attached.stacks is not None:
        result.stacks = stacks.table_rows(attached.stacks, source)
    # ---
    if ok.height:
        result.failed_to_parse = int(ok.get_column("payload").str.starts_with("[FAILED TO PARSE]").sum())
        ts = ok.get_column("ts_ns")
        result.untimed = ts.null_count()  # event lines without a prefix (Layout "events")
        ts = ts.drop_nulls() if result.untimed else ts
        if len(ts):
            result.ts_min, result.ts_max = int(ts.min()), int(ts.max())  # type: ignore[arg-type]
            result.backwards = int((ts.diff() < 0).sum())
            result.first_ts, result.last_ts = int(ts[0]), int(ts[-1])
        result.has_tgid = ok.get_column("tgid").null_count() < ok.height

    common = ok.with_columns(pl.lit(source).alias("source"))
    by_event = common.partition_by("event", as_dict=True, maintain_order=True)
    by_table: dict[str, list[pl.DataFrame]] = {}
    extras: list[pl.DataFrame | None] = []
    others = []
    for raw, rows in sorted(by_event.items(), key=lambda kv: (_event_name(kv[0][0]) or "", kv[0][0])):
        name = _event_name(raw[0])
        if name is None:  # a regex-read line whose event field is not a name, e.g. "kmem:"
            reject_parts.append(rows.select("line", pl.lit("no event name").alias("reason")))
            continue
        rows = rows.with_columns(pl.lit(name).alias("event"))
        spec = EVENTS.get(name)
        if spec is None:
            others.append(rows.drop("lat", *_HELPER_COLS.intersection(rows.columns)))
            continue
        typed, rejected = _typed(rows, name, spec)
        extras.append(extra.collect(rows, name, spec, typed))  # parse/extra.py: fields no column holds
        by_table.setdefault(spec.table, []).append(typed)
        if rejected.height:
            reject_parts.append(rejected)
    if others:
        by_table["other_events"] = others
    result.extra_fields = extra.table_rows(extras, source)
    for table, frames in by_table.items():
        frame = pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]
        result.tables[table] = frame.sort("line") if len(frames) > 1 else frame

    if reject_parts:
        reject_parts = [r if "text" in r.columns else texts(r) for r in reject_parts]
        result.rejects = (
            pl.concat(reject_parts)
            .select(
                pl.lit(source).alias("source"),
                pl.col("line"),
                pl.col("reason"),
                pl.col("text").str.slice(0, RAW_MAX).alias("raw"),
            )
            .sort("line")
        )
    return result


def _field_value(key: str) -> pl.Expr:
    return pl.col("payload").str.extract(rf"(?:^|\s){re.escape(key)}=(\S*)", 1)


def _raw_fields(rows: pl.DataFrame, spec: EventSpec) -> pl.DataFrame:
    """Add a _raw_<key> column per spec field: the value after the first `key=` that starts the payload or
    follows a blank, up to the next blank (_field_value). Fast path: split the payload on spaces at the
    positions the first row shows, for the rows whose tokens line up the same way, that have no other
    blank than ' ', and that print each key of the first row once and no other key (so the value is
    the same whatever the first row is); the others use a regex per field. parse/_prefix.c reads the
    same values (tests/test_parse_properties.py compares)."""
    keys = list(spec.fields)
    first = rows.get_column("payload")[0] or ""
    tokens = first.split(" ")
    positions = {}
    for i, tok in enumerate(tokens):
        k = tok.split("=", 1)[0]
        if "=" in tok and k in spec.fields and k not in positions:
            positions[k] = i
    fast = None
    if positions and all(k in positions for k in spec.required):
        parts = pl.col("payload").str.split(" ")
        df = rows.with_columns(parts.alias("_parts"))
        payload = pl.col("payload")
        ok = (pl.col("_parts").list.len() == len(tokens)) & ~payload.str.contains(r"[\t\n\x0b\x0c\r]")
        for k in keys:  # printed once where the first row prints it, else not at all
            printed = payload.str.starts_with(f"{k}=").cast(pl.UInt32) + payload.str.count_matches(f" {k}=", literal=True)
            ok = ok & (printed == (1 if k in positions else 0))
        exprs = []
        for k in keys:
            if k in positions:
                tok = pl.col("_parts").list.get(positions[k], null_on_oob=True)
                ok = ok & tok.str.starts_with(f"{k}=")
                exprs.append(tok.str.slice(len(k) + 1).alias(f"_raw_{k}"))
            else:
                exprs.append(pl.lit(None, dtype=pl.String).alias(f"_raw_{k}"))
        df = df.with_columns(exprs + [ok.fill_null(False).alias("_fast")]).drop("_parts")
        mask = df.get_column("_fast")
        fast = df.drop("_fast").filter(mask)
        rows = df.drop([f"_raw_{k}" for k in keys] + ["_fast"]).filter(~mask)
        if rows.height == 0:
            return fast
    slow = rows.with_columns([_field_value(k).alias(f"_raw_{k}") for k in keys])
    if fast is None:
        return slow
    return pl.concat([fast, slow]).sort("line")


def _out_of(col: str, lo: int, hi: int, what: str, event: str, dtype: pl.DataType | None = None) -> pl.Expr | None:
    """The reason for a value outside lo..hi; None when the column's type cannot hold one anyway."""
    c = pl.col(col)
    info = _DTYPE_RANGE.get(dtype) if dtype is not None else None
    cond = [c < lo if info is None or lo > info[0] else None, c > hi if info is None or hi < info[1] else None]
    cond = [x for x in cond if x is not None]
    if not cond:
        return None
    return pl.when(pl.any_horizontal(cond) if len(cond) > 1 else cond[0]).then(
        pl.format(f"{event}: {col} {{}} outside {lo}..{hi} ({what})", c))


_DTYPE_RANGE = {pl.Int64: (-(1 << 63), (1 << 63) - 1), pl.UInt64: (0, (1 << 64) - 1), pl.Boolean: (0, 1)}
# A printed number: decimal or 0x-hex, maybe negative, maybe with the ',' some formats put after it.
_NUMBER = r"^-?(?:0x[0-9a-fA-F]+|\d+),?$"


def _range_problems(df: pl.DataFrame, event: str, spec: EventSpec) -> list[pl.Expr]:
    """Values no kernel prints (kernel/events.py): the line is rejected with the reason."""
    out = []
    for col in ("pid", "tgid"):
        if col in df.columns:
            out.append(_out_of(col, -1, PID_MAX_LIMIT, "PID_MAX_LIMIT", event))
    if "cpu" in df.columns:
        out.append(_out_of("cpu", 0, CPU_MAX - 1, "NR_CPUS", event))
    if "ts_ns" in df.columns:
        out.append(pl.when(pl.col("ts_ns") < 0).then(pl.lit(f"{event}: timestamp past the int64 nanosecond range")))
    bounds = {**COLUMN_BOUNDS, **(PAGE_BOUNDS if spec.table in PAGE_TABLES else {})}
    for column in dict.fromkeys(c for c, kind in spec.fields.values() if kind in ("int", "pfn", "hex")):
        if column in bounds and column in df.columns:
            out.append(_out_of(column, *bounds[column], event, df.schema[column]))
    return [e for e in out if e is not None]


def _gfp_too_wide(printed: str) -> bool:
    """A printed gfp mask with a number past the kernel's gfp_t (GFP_BITS); checked on the text, so that
    a hostile 5000-digit number is never handed to int()."""
    for token in printed.split("|"):
        token = token.strip()
        if re.fullmatch(r"0x[0-9a-fA-F]+", token):
            hexdigits = token[2:].lstrip("0")
            if len(hexdigits) > GFP_BITS // 4 or (hexdigits and int(hexdigits, 16) >> GFP_BITS):
                return True
        elif token.isascii() and token.isdigit():
            if len(token.lstrip("0")) > 10 or int(token) >> GFP_BITS:
                return True
    return False


def _too_big(rejected: pl.DataFrame, event: str, spec: EventSpec) -> pl.DataFrame:
    """A field rejected as a bad value that is a number too big for the integer it is read into (past
    int64, say) is out of range: say so with the kernel's bound. Run on the rejected rows only."""
    if rejected.height == 0:
        return rejected
    bounds = {**COLUMN_BOUNDS, **(PAGE_BOUNDS if spec.table in PAGE_TABLES else {})}
    fixes = []
    for key, (column, _kind) in spec.fields.items():
        if column in bounds:
            lo, hi, what = bounds[column]
            raw = pl.col(f"_raw_{key}")
            shown = raw.str.strip_suffix(",")
            shown = pl.when(shown.str.len_chars() > 40).then(shown.str.slice(0, 37) + "...").otherwise(shown)
            fixes.append(pl.when((pl.col("_problem") == f"{event}: bad value for {key}") & raw.str.contains(_NUMBER))
                         .then(pl.format(f"{event}: {column} {{}} outside {lo}..{hi} ({what})", shown)))
    if not fixes:
        return rejected
    return rejected.with_columns(pl.coalesce(*fixes, pl.col("_problem")).alias("_problem"))


def _from_slots(rows: pl.DataFrame, spec: EventSpec) -> pl.DataFrame:
    """_raw_ and _v_ columns of rows whose payload the C helper read (parse/prefix.py): slot j holds the
    spec's j-th field, as printed (_sv) and as a number (_si); the conversions are _converted's."""
    cols = []
    for j, (key, (_column, kind)) in enumerate(spec.fields.items()):
        raw, num = pl.col(f"_sv{j}"), pl.col(f"_si{j}")
        v = (raw.str.strip_suffix(",") if kind == "str" else raw if kind == "gfp" else num.cast(pl.UInt64)
             if kind == "hex" else num != 0 if kind == "bool" else num)
        cols += [raw.alias(f"_raw_{key}"), v.alias(f"_v_{key}")]
    return rows.with_columns(cols)


def _fields(rows: pl.DataFrame, spec: EventSpec) -> pl.DataFrame:
    """The rows with a _raw_<key> (as printed) and a _v_<key> (converted) column per spec field: from the
    C helper where it read the line (_clean), else from the payload here."""
    if "_clean" in rows.columns:
        clean = rows.get_column("_clean").fill_null(False)
        k = int(clean.sum())
        if k == rows.height:
            return _from_slots(rows, spec)
        if k:
            return pl.concat([_from_slots(rows.filter(clean), spec), _converted(_raw_fields(rows.filter(~clean), spec), spec)],
                             how="diagonal_relaxed").sort("line")
    return _converted(_raw_fields(rows, spec), spec)


def _converted(df: pl.DataFrame, spec: EventSpec) -> pl.DataFrame:
    """A _v_<key> column per spec field from its _raw_<key> (the one place values are converted)."""
    # Convert each printed field once (eager polars does not share common subexpressions).
    numeric = [k for k, (_, kind) in spec.fields.items() if kind in ("int", "pfn", "bool")]
    # How each numeric field is printed in this chunk: a kernel prints a field one way (pfn is %lu
    # before 5.14 and 0x%lx after), so usually one parse per value is enough.
    radix = df.select(
        [pl.col(f"_raw_{k}").str.starts_with("0x").mean().alias(k) for k in numeric]
    ).row(0, named=True) if numeric else {}
    converted = []
    for key, (_column, kind) in spec.fields.items():
        raw = pl.col(f"_raw_{key}")
        if kind in ("str", "gfp"):
            v = raw.str.strip_suffix(",") if kind == "str" else raw
        elif kind == "hex":
            v = raw.str.strip_prefix("0x").str.to_integer(base=16, dtype=pl.UInt64, strict=False)
        else:
            share = radix.get(key)
            if share == 1.0:
                v = raw.str.slice(2).str.strip_suffix(",").str.to_integer(base=16, strict=False)
            elif share == 0.0:
                v = raw.str.strip_suffix(",").str.to_integer(base=10, strict=False)
            else:
                v = _int_expr(raw.str.strip_suffix(","))
            if kind == "pfn":
                # pfn -1UL (FAILED TO PARSE prints the stored field) means "no page", like pfn=0.
                v = pl.when(raw.is_in(["0xffffffffffffffff", "18446744073709551615"])).then(0).otherwise(v)
            elif kind == "bool":
                v = v != 0
        converted.append(v.alias(f"_v_{key}"))
    return df.with_columns(converted)


def _typed(rows: pl.DataFrame, event: str, spec: EventSpec) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Extract the spec's fields from the payload; rows missing a required field are rejected."""
    df = _fields(rows, spec)
    by_column: dict[str, list[tuple[str, str]]] = {}
    for key, (column, kind) in spec.fields.items():
        by_column.setdefault(column, []).append((f"_raw_{key}", kind))

    raw_all = [pl.col(f"_raw_{k}") for k in spec.fields]
    # take the column (first present source) and the problems from the converted values
    typed = []
    for column, sources in by_column.items():
        values = [pl.col(alias.replace("_raw_", "_v_", 1)) for alias, _ in sources]
        typed.append((pl.coalesce(values) if len(values) > 1 else values[0]).alias(column))
    problems = [pl.when(pl.col(f"_raw_{k}").is_null()).then(pl.lit(f"{event}: missing field {k}")) for k in spec.required]
    problems.append(pl.when(pl.all_horizontal([c.is_null() for c in raw_all])).then(pl.lit(f"{event}: no known fields")))
    for key, (column, kind) in spec.fields.items():
        # A field that is present but does not convert is a bad value (or, _too_big, out of range).
        raw = pl.col(f"_raw_{key}")
        problems.append(pl.when(raw.is_not_null() & pl.col(f"_v_{key}").is_null()).then(
            pl.lit(f"{event}: bad value for {key}")))
        if kind == "gfp":
            wide = [v for v in df.get_column(f"_raw_{key}").drop_nulls().unique().to_list() if _gfp_too_wide(v)]
            if wide:
                shown = pl.when(raw.str.len_chars() > 40).then(raw.str.slice(0, 37) + "...").otherwise(raw)
                problems.append(pl.when(raw.is_in(wide)).then(
                    pl.format(f"{event}: {key} {{}} out of range (the kernel's gfp_t is {GFP_BITS} bits)", shown)))
    df = df.with_columns(typed)
    problems += _range_problems(df, event, spec)
    df = df.with_columns(pl.coalesce(problems).alias("_problem"))
    bad = df.get_column("_problem").is_not_null()
    rejected = _too_big(df.filter(bad), event, spec).select("line", pl.col("_problem").alias("reason"))
    good = df.select(["ts_ns", "cpu", "pid", "tgid", "comm", "event", "source", "line", *by_column]).filter(~bad)
    if spec.constants:
        good = good.with_columns([pl.lit(v).alias(k) for k, v in spec.constants.items()])
    return good, rejected
