"""Stack traces kept beside their events: the `stacks` table, one row per frame.

Forms read (real examples in tests/data/bad/, described in its README):

* ftrace (`trace`, `trace_pipe`) with options/stacktrace or userstacktrace, or a `stacktrace` trigger:
  the stack is its own ring-buffer entry, printed by kernel/trace/trace_output.c (trace_stack_print,
  trace_user_stack_print) as a `<stack trace>` / `<user stack trace>` line with the usual prefix, then
  one ` => ` line per frame: `do_sys_open`, `func+0x1a/0x40 [module]` (sym-offset), `0xffffffffc0..`
  (no symbol), `... <ffffffff81234567>` (sym-addr); user frames ` =>  <00007f325b4ce45b>` or
  ` => /lib/libc.so.6[+0xb3c8c]` (sym-userobj). ` => 0` is the unused rest of the entry (kernels
  around 5.6 print it): not a frame.
* trace-cmd report: `kernel_stack:         <stack trace >` then `=> func (ffffffff8121a0db)` or
  `=> ffffffff8121a0db` (trace-cmd's trace-ftrace.c); `user_stack:` printed through the event's format,
  its first frame on the event's own line: `user_stack:           \\t=> 0x7fd77245b687`, then
  `\\t=> 0x0` lines (the zero-filled rest: not frames).
* perf script of a `perf record -g` capture: the callchain right after the event line, one frame a
  line, a blank line after it: `\\tffffffff8163bffb __alloc_frozen_pages_noprof+0x26b ([kernel.kallsyms])`;
  with `-F ip` only the address, `ip,sym` without `+off`, `ip,dso` without the symbol, `[unknown]`
  where perf has no symbol; `-F srcline` adds the frame's source line on the next line (two spaces).

Which event a stack belongs to. perf prints a sample's callchain right after it: a frame belongs to
the event line before it. ftrace records a stack right after its event, on the same CPU, as another
entry, so in a merged trace other CPUs' lines can come between: a stack trace belongs to the latest
event before it on its CPU. When an event and its stack (an interrupt's, say) come between an event
and that event's stack (E1 E2 S2 S1 on one CPU), the second stack of a kind after the same event
belongs to the event before it, and so on. The stack's pid must be its event's (the same task
recorded both); otherwise its lines are rejects with the reason, as are frames with no event or no
stack-trace line before them. A chunk's frames whose event is in the previous chunk are resolved by
reading the end of that chunk again (Context).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

# The event prefix of ftrace and trace-cmd lines (task-pid, optional tgid, [cpu], optional latency
# flags, timestamp), as text.py reads it; perf's (comm, [pid/]tid, [cpu], time).
_FTRACE_PREFIX = (r"^\s*.*?-(?P<pid>\d+)\s+(?:\(\s*[\d-]+\)\s+)?\[(?P<cpu>\d+)\]\s+(?:[.a-zA-Z]\S{3,4}\s+)?"
                  r"\d+(?:\.\d+)?:\s+")
_HEADER = _FTRACE_PREFIX + r"<(?P<user>user )?stack trace>\s*$"
_EVENT = {
    "ftrace": _FTRACE_PREFIX + r"(?P<event>[\w:]+):",
    "perf": r"^\s*.*?\s+(?:-?\d+/)?(?P<pid>-?\d+)\s+\[(?P<cpu>\d+)\]\s+\d+(?:\.\d+)?:\s+(?P<event>[\w:]+):",
}
_FRAME = {"ftrace": r"^\s*=>(?:\s|$)", "perf": r"^\t\s*[0-9a-fA-F]+(?:\s|$)"}
_SRCLINE = r"^  \S"  # perf -F srcline: under its frame, indented by two spaces
# trace-cmd report prints the stack entries as events of these names
_PSEUDO = {"kernel_stack": "kernel", "user_stack": "user"}
_KERNEL_HALF = 1 << 63  # perf frames without a kernel dso: kernel when in the upper half of the address space
CONTEXT_BYTES = 1 << 20

NO_EVENT = "stack frame with no event before it"
NO_HEADER = "stack frame after an event line, with no <stack trace> line before it"

_E = {"line": pl.Int64, "cpu": pl.Int64, "pid": pl.Int64}
_H = {"line": pl.Int64, "cpu": pl.Int64, "pid": pl.Int64, "kind": pl.String, "text": pl.String}
_T = {"line": pl.Int64, "text": pl.String}


def _flavour(fmt: str) -> str:
    return "perf" if fmt == "perf" else "ftrace"


@dataclass
class Context:
    """The lines before a chunk (the end of the previous chunk), read only when a frame or stack
    trace of the chunk has no event in it."""

    data: bytes
    last_line: int

    def frame(self) -> pl.DataFrame:
        parts = self.data.decode("utf-8", errors="replace").split("\n")
        if parts and parts[-1] == "":
            parts.pop()
        first = self.last_line - len(parts) + 1
        return pl.DataFrame({"line": list(range(first, self.last_line + 1)), "text": [p.rstrip("\r") for p in parts]},
                            schema=_T)


def tail_of(data: bytes, partial_tail: bool = False, size: int = CONTEXT_BYTES) -> bytes:
    """The whole lines at the end of a chunk (at most `size` bytes), the next chunk's Context."""
    if partial_tail:
        data = data[: data.rfind(b"\n") + 1]
    if len(data) <= size:
        return data
    tail = data[-size:]
    return tail[tail.find(b"\n") + 1:]


def take_lines(bad: pl.DataFrame, fmt: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split the stack-trace lines (frames, `<stack trace>` lines, perf srclines) off the lines the
    event parser did not read: (other lines, stack lines), both (line, text, ...)."""
    f = _flavour(fmt)
    text = pl.col("text")
    if f == "ftrace":
        mask = bad.select(text.str.contains(_FRAME[f]) | text.str.contains(_HEADER)).to_series()
    else:
        frame = bad.select(text.str.contains(_FRAME[f])).to_series()
        after = bad.filter(frame).get_column("line") + 1
        mask = frame | bad.select(text.str.contains(_SRCLINE) & pl.col("line").is_in(after.implode())).to_series()
    if not mask.any():
        return bad, bad.clear()
    return bad.filter(~mask), bad.filter(mask)


@dataclass
class Attached:
    events: pl.DataFrame  # the event rows, without trace-cmd's kernel_stack/user_stack lines
    stacks: pl.DataFrame | None  # rows of the stacks table (schemas/stacks.v1.json), without source
    rejects: list[pl.DataFrame]  # (line, text, reason), or (line, reason) for lines read as events


def attach(ok: pl.DataFrame, lines: pl.DataFrame | None, fmt: str, first_line: int | None,
           context: Context | None = None) -> Attached:
    """Join the stack lines of a chunk to their events. ok: the event rows (text._HEADER_COLS);
    lines: what take_lines took."""
    f = _flavour(fmt)
    ok, pseudo = _split_pseudo(ok, f)
    if (lines is None or lines.height == 0) and pseudo.height == 0:
        return Attached(ok, None, [])
    if lines is None:
        lines = pl.DataFrame(schema=_T)
    e, h, fr, s = _items(ok, lines.select("line", "text"), pseudo, f)
    frames, rejects, orphans = _resolve(e, h, fr, s, f)
    if orphans and context is not None and first_line is not None:
        ce, ch, cf, cs = _items_from_text(context.frame(), f)
        frames, rejects, _ = _resolve(pl.concat([ce, e]), pl.concat([ch, h]), pl.concat([cf, fr]), pl.concat([cs, s]), f)
        frames = frames.filter(pl.col("frame_line") >= first_line)
        rejects = rejects.filter(pl.col("line") >= first_line)
    # one reject per line (trace-cmd's user_stack line is a stack trace line and a frame)
    rejects = rejects.unique("line", keep="first", maintain_order=True)
    out = []
    if rejects.height:
        with_text = rejects.filter(pl.col("text").is_not_null())
        if with_text.height:
            out.append(with_text.select("line", "text", "reason"))
        read_as_events = rejects.filter(pl.col("text").is_null())
        if read_as_events.height:
            out.append(read_as_events.select("line", "reason"))
    return Attached(ok, frames if frames.height else None, out)


def _event_names(raw: pl.Series) -> dict[str, str | None]:
    return {r: (r.strip().rsplit(":", 1)[-1] if r else r) for r in raw.unique().to_list()}


def _split_pseudo(ok: pl.DataFrame, f: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """trace-cmd's kernel_stack / user_stack lines: stack-trace lines, not events."""
    if f != "ftrace" or ok.height == 0:
        return ok, ok.clear()
    names = _event_names(ok.get_column("event"))
    raws = [r for r, n in names.items() if n in _PSEUDO]
    if not raws:
        return ok, ok.clear()
    is_pseudo = pl.col("event").is_in(raws)
    return ok.filter(~is_pseudo), ok.filter(is_pseudo)


def _items(ok: pl.DataFrame, lines: pl.DataFrame, pseudo: pl.DataFrame, f: str):
    """Events (line, cpu, pid), stack-trace lines (line, cpu, pid, kind, text), frames and srclines
    (line, text) of a chunk."""
    events = ok.select(pl.col("line").cast(pl.Int64), pl.col("cpu").cast(pl.Int64), pl.col("pid").cast(pl.Int64))
    text = pl.col("text")
    if f == "perf":
        frames = lines.filter(text.str.contains(_FRAME[f]))
        srclines = lines.filter(~text.str.contains(_FRAME[f]))
        return events, pl.DataFrame(schema=_H), _with_inline(frames), srclines
    frames = lines.filter(text.str.contains(_FRAME[f]))
    g = lines.filter(~text.str.contains(_FRAME[f])).with_columns(text.str.extract_groups(_HEADER).alias("_g")).unnest("_g")
    headers = g.select(
        "line", pl.col("cpu").cast(pl.Int64), pl.col("pid").cast(pl.Int64),
        pl.when(pl.col("user").is_not_null()).then(pl.lit("user")).otherwise(pl.lit("kernel")).alias("kind"), "text",
    )
    if pseudo.height:
        names = _event_names(pseudo.get_column("event"))
        ph = pseudo.select(
            pl.col("line").cast(pl.Int64), pl.col("cpu").cast(pl.Int64), pl.col("pid").cast(pl.Int64),
            pl.col("event").replace_strict({r: _PSEUDO[n] for r, n in names.items()}, return_dtype=pl.String).alias("kind"),
            pl.lit(None, dtype=pl.String).alias("text"),
        )
        headers = pl.concat([headers, ph]).sort("line")
        # user_stack prints its first frame on its own line
        inline = pseudo.filter(pl.col("payload").str.contains(_FRAME[f])).select(pl.col("line").cast(pl.Int64),
                                                                                 pl.col("payload").alias("text"))
        if inline.height:
            frames = pl.concat([frames.with_columns(pl.lit(False).alias("_inline")),
                                inline.with_columns(pl.lit(True).alias("_inline"))]).sort("line")
    return events, headers, _with_inline(frames), pl.DataFrame(schema=_T)


def _items_from_text(lines: pl.DataFrame, f: str):
    """The same items read from raw text (a Context), with regular expressions only."""
    stack, rest = take_lines(lines, "perf" if f == "perf" else "ftrace")[::-1]
    g = rest.with_columns(pl.col("text").str.extract_groups(_EVENT[f]).alias("_g")).unnest("_g")
    g = g.filter(pl.col("event").is_not_null()).with_columns(
        pl.col("event").str.extract(r"(\w+)$").alias("_name"), pl.col("cpu").cast(pl.Int64), pl.col("pid").cast(pl.Int64))
    if f == "ftrace":
        pseudo = g.filter(pl.col("_name").is_in(list(_PSEUDO))).with_columns(
            pl.col("text").str.replace(_EVENT[f], "").alias("payload"))
        g = g.filter(~pl.col("_name").is_in(list(_PSEUDO)))
    else:
        pseudo = pl.DataFrame(schema={**_E, "event": pl.String, "payload": pl.String})
    ok = g.select("line", "cpu", "pid", "event")
    return _items(ok, stack.select("line", "text"), pseudo.select("line", "cpu", "pid", "event", "payload"), f)


def _with_inline(frames: pl.DataFrame) -> pl.DataFrame:
    return frames if "_inline" in frames.columns else frames.with_columns(pl.lit(False).alias("_inline"))


def _resolve(events, headers, frames, srclines, f):
    """(frames with their event, rejects (line, text, reason), whether some lines had no event in
    the lines given)."""
    parsed = _parse_frames(frames, f)
    if f == "perf":
        owned, rejects = _owners_perf(events, parsed, srclines)
    else:
        owned, rejects = _owners_ftrace(events, headers, parsed)
    orphans = rejects.height > 0 and bool(
        rejects.select(pl.col("reason").str.contains("no event before it").any()).item())
    return owned, rejects, orphans


def _owners_perf(events, frames, srclines):
    ev = events.select(pl.col("line").alias("owner")).sort("owner")
    frames = frames.sort("frame_line").join_asof(ev, left_on="frame_line", right_on="owner", strategy="backward")
    src = srclines.select((pl.col("line") - 1).alias("frame_line"), pl.col("text").str.strip_chars().alias("srcline"),
                          pl.col("line").alias("_src_line"), pl.col("text").alias("_src_text"))
    frames = frames.join(src, on="frame_line", how="left")
    bad = frames.filter(pl.col("owner").is_null())
    rejects = pl.concat([
        bad.select(pl.col("frame_line").alias("line"), "text", pl.lit(NO_EVENT).alias("reason")),
        bad.filter(pl.col("_src_line").is_not_null()).select(
            pl.col("_src_line").alias("line"), pl.col("_src_text").alias("text"), pl.lit(NO_EVENT).alias("reason")),
    ]) if bad.height else _no_rejects()
    good = frames.filter(pl.col("owner").is_not_null()).with_columns(
        pl.int_range(pl.len()).over("owner", "kind").cast(pl.Int32).alias("depth"))
    return good, rejects


def _owners_ftrace(events, headers, frames):
    ev = events.sort("line").with_columns(pl.int_range(pl.len()).over("cpu").alias("idx"))
    h = headers.sort("line").join_asof(ev.select("cpu", pl.col("line").alias("_after"), "idx"),
                                       left_on="line", right_on="_after", by="cpu", strategy="backward",
                                       check_sortedness=False)
    # nested events: the n-th stack trace of a kind after the same event belongs to the n-th event back
    h = h.with_columns((pl.col("idx") - pl.int_range(pl.len()).over("cpu", "_after", "kind")).alias("_target"))
    h = h.join(ev.select("cpu", pl.col("idx").alias("_target"), pl.col("line").alias("owner"),
                         pl.col("pid").alias("_owner_pid")), on=["cpu", "_target"], how="left")
    h = h.with_columns(
        pl.when(pl.col("owner").is_null()).then(pl.format("stack trace with no event before it on CPU {}", "cpu"))
        .when(pl.col("pid") != pl.col("_owner_pid"))
        .then(pl.format("stack trace of pid {} after an event of pid {} on CPU {} (line {})",
                        "pid", "_owner_pid", "cpu", "owner"))
        .alias("reason"))
    anchors = pl.concat([
        ev.select("line", pl.lit(False).alias("_is_header")),
        h.select("line", pl.lit(True).alias("_is_header")),
    ]).sort("line").unique("line", keep="last", maintain_order=True).rename({"line": "block"})
    fr = frames.sort("frame_line").join_asof(anchors, left_on="frame_line", right_on="block", strategy="backward")
    fr = fr.join(h.select(pl.col("line").alias("block"), "owner", "kind", pl.col("reason").alias("_h_reason")),
                 on="block", how="left")
    fr = fr.with_columns(
        pl.when(pl.col("block").is_null()).then(pl.lit(NO_EVENT))
        .when(~pl.col("_is_header")).then(pl.lit(NO_HEADER))
        .otherwise(pl.col("_h_reason")).alias("reason"))
    bad_h = h.filter(pl.col("reason").is_not_null())
    bad_f = fr.filter(pl.col("reason").is_not_null())
    parts = [r for r in (
        bad_h.select("line", "text", "reason"),
        bad_f.select(pl.col("frame_line").alias("line"),
                     pl.when(pl.col("_inline")).then(None).otherwise(pl.col("text")).alias("text"), "reason"),
    ) if r.height]
    rejects = pl.concat(parts).sort("line") if parts else _no_rejects()
    # address 0: the unused rest of the stack entry
    good = fr.filter(pl.col("reason").is_null() & ~((pl.col("address") == 0) & pl.col("symbol").is_null()
                                                    & pl.col("dso").is_null()))
    good = good.with_columns(pl.int_range(pl.len()).over("block").cast(pl.Int32).alias("depth"),
                             pl.lit(None, dtype=pl.String).alias("srcline"))
    return good, rejects


def _no_rejects() -> pl.DataFrame:
    return pl.DataFrame(schema={"line": pl.Int64, "text": pl.String, "reason": pl.String})


def _hex(e: pl.Expr) -> pl.Expr:
    return e.str.to_integer(base=16, dtype=pl.UInt64, strict=False)


def _parse_frames(frames: pl.DataFrame, f: str) -> pl.DataFrame:
    """Frame lines (line, text) -> frame_line, text, _inline, address, symbol, offset, size, dso, and
    kind for perf. Stacks repeat the same frames: each distinct text is read once."""
    frames = _with_inline(frames).rename({"line": "frame_line"})
    distinct = _read_frames(frames.select("text").unique(), f)
    return frames.select("frame_line", "text", "_inline").join(distinct, on="text", how="left", maintain_order="left")


def _read_frames(frames: pl.DataFrame, f: str) -> pl.DataFrame:
    if f == "perf":
        g = pl.col("text").str.extract_groups(r"^\t\s*(?P<addr>[0-9a-fA-F]+)(?: +(?P<rest>.*?))?\s*$")
        df = frames.with_columns(g.alias("_g")).unnest("_g")
        d = pl.col("rest").str.extract_groups(r"^(?:(?P<sym>.*?) )?\((?P<dso>[\[/][^()]*)\)$")
        df = df.with_columns(d.alias("_d")).unnest("_d")
        sym = pl.when(pl.col("dso").is_not_null()).then(pl.col("sym")).otherwise(pl.col("rest"))
        df = df.with_columns(sym.alias("_sym"))
        so = pl.col("_sym").str.extract_groups(r"^(?P<s>.+)\+0x(?P<o>[0-9a-fA-F]+)$")
        df = df.with_columns(so.alias("_so")).unnest("_so")
        symbol = pl.coalesce("s", "_sym")
        address = _hex(pl.col("addr"))
        kernel = (pl.col("dso").str.starts_with("[kernel.kallsyms").fill_null(False)
                  | pl.col("dso").str.starts_with("[guest.kernel").fill_null(False)
                  | (address >= pl.lit(_KERNEL_HALF, dtype=pl.UInt64)).fill_null(False))
        return df.select(
            "text", address.alias("address"),
            pl.when(symbol.is_in(["[unknown]", ""])).then(None).otherwise(symbol).alias("symbol"),
            _hex(pl.col("o")).cast(pl.Int64, strict=False).alias("offset"), pl.lit(None, dtype=pl.Int64).alias("size"),
            pl.when(pl.col("dso") == "[unknown]").then(None).otherwise(pl.col("dso")).alias("dso"),
            pl.when(kernel).then(pl.lit("kernel")).otherwise(pl.lit("user")).alias("kind"),
        )
    t = pl.col("text").str.replace(r"^\s*=>\s?", "").str.strip_chars()
    df = frames.with_columns(t.alias("_t"))
    df = df.with_columns(
        pl.col("_t").str.extract(r"<([0-9a-fA-F]+)>$").alias("_angle"),
        pl.col("_t").str.replace(r"\s*<[0-9a-fA-F]+>$", "").alias("_t1"),
    )
    t1 = pl.col("_t1")
    df = df.with_columns(
        t1.str.extract_groups(r"^(?P<_psym>\S+) \((?P<_paddr>[0-9a-fA-F]+)\)$").alias("_p"),        # trace-cmd
        t1.str.extract_groups(r"^(?P<_obj>.+)\[\+0x(?P<_uoff>[0-9a-fA-F]+)\]$").alias("_u"),        # sym-userobj
        t1.str.extract_groups(r"^(?P<_ksym>[^\s+]+)(?:\+0x(?P<_koff>[0-9a-fA-F]+)/0x(?P<_ksize>[0-9a-fA-F]+))?"
                              r"(?: (?P<_mod>\[[^\]]+\]))?$").alias("_k"),
        t1.str.contains(r"^0x[0-9a-fA-F]+$|^[0-9a-fA-F]{8,}$|^0$").alias("_bare"),
    ).unnest("_p", "_u", "_k")
    paren, bare, user = pl.col("_paddr").is_not_null(), pl.col("_bare"), pl.col("_obj").is_not_null()
    ksym = pl.col("_ksym").is_not_null()
    address = pl.coalesce(_hex(pl.col("_angle")), _hex(pl.col("_paddr")),
                          pl.when(bare).then(_hex(t1.str.strip_prefix("0x"))))
    symbol = (pl.when(paren).then(pl.col("_psym")).when(bare | user).then(None).when(ksym).then(pl.col("_ksym"))
              .when(t1 != "").then(t1))
    offset = pl.when(paren | bare).then(None).when(user).then(_hex(pl.col("_uoff"))).when(ksym).then(_hex(pl.col("_koff")))
    size = pl.when(paren | bare | user).then(None).when(ksym).then(_hex(pl.col("_ksize")))
    dso = pl.when(paren | bare).then(None).when(user).then(pl.col("_obj")).when(ksym).then(pl.col("_mod"))
    # an offset or size past 2^63 is no symbol's (a damaged line): unknown, as unreadable hex is (_hex)
    return df.select("text", address.alias("address"), symbol.alias("symbol"),
                     offset.cast(pl.Int64, strict=False).alias("offset"), size.cast(pl.Int64, strict=False).alias("size"),
                     dso.alias("dso"))


def table_rows(stacks: pl.DataFrame, source: str) -> pl.DataFrame:
    """The stacks table's columns (schemas/stacks.v1.json)."""
    return stacks.sort("owner", "frame_line").select(
        pl.lit(source).alias("source"), pl.col("owner").alias("line"), "frame_line", "kind", "depth", "address",
        "symbol", "offset", "size", "dso", "srcline")
