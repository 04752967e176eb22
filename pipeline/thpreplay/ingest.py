"""`thpreplay ingest`: traces and capture bundles into a dataset of typed Parquet tables.

Data flow: inputs -> chunks of whole lines -> parse.text (one frame per event table) -> enrich
(gfp decoding, pfn -> node, THP attempt flag) -> Parquet row groups, plus the few rows thp_faults
needs. Everything is written into a temporary directory beside the output, which is renamed into
place only when complete: an interrupted or failed ingest leaves no partial dataset.
"""

from __future__ import annotations

import contextlib
import gc
import json
import re
import shutil
import subprocess
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from thpreplay import __version__, procfs, schemas
from thpreplay.atomic import (clean_stale, dataset_path_problem, io_error_reason, make_tmp, replace_dir,
                              write_arrow_parquet)
from thpreplay.bundle import Bundle, open_bundle, read_text
from thpreplay.dataset import check_replaceable, publish
from thpreplay.errors import InputError, OutputError, ThpreplayError
from thpreplay.inputs import Chunk, decompress_to, describe_container, describe_kind, read_chunks
from thpreplay.kernel import counters, gfp
from thpreplay.kernel.counters import compact_stall_rule
from thpreplay.kernel.events import EVENT_TABLES, NULL_POINTERS
from thpreplay.parse import perfdata, prefix, stacks
from thpreplay.parse.text import ChunkResult, Layout, detect_format, detect_layout, parse_lines
from thpreplay.record import filter_warning
from thpreplay.thp_faults import ChunkMarkers, MarkerCollector, reduce_chunk, vmstat_view
from thpreplay.topology import Topology

DATASET_FORMAT = schemas.DATASET_FORMAT
# Three chunks parse at once on two cores: while one waits on the GIL or the disk, two compute.
WORKERS = 3
# The C helper reads the typed events' payload fields too (parse/_prefix.c), leaving to polars the lines it
# does not read plainly; both give the same tables (tests/test_parse_properties.py
# test_c_payload_fields_read_as_polars_reads_them, tests/test_samples.py). False: the C helper cuts the
# prefix only, and polars reads every payload.
PAYLOAD_FIELDS_IN_C = True
# perf script fields: exactly what the perf text parser reads, whatever perf's defaults are.
PERF_SCRIPT_ARGS = ["script", "-F", "comm,tid,cpu,time,event,trace", "--ns", "-i"]
# ... and, when every event of the file samples its callchain (perf record -g), the frames (stacks table)
PERF_CALLCHAIN_FIELDS = "ip,sym,symoff,dso"


@dataclass
class Source:
    name: str  # as given (path or '-'), used in messages and the `source` column
    kind: str  # text, perf.data, trace.dat
    path: str
    stall_timeout: float | None = None  # a pipe, FIFO or stdin silent this long is an error (--input-timeout)
    notes: list[str] = field(default_factory=list)  # warnings its reader gave (trace.dat: fallback, lost pages)
    perf_info: dict | None = None  # perf.data read by thpreplay's reader: its header and counts (parse/perfdata.py)


@dataclass
class IngestSummary:
    output: Path
    events: dict[str, int]
    rejects: int
    lines: int
    ts_min_ns: int | None
    ts_max_ns: int | None
    nodes: list[int]
    formats: dict[str, str]
    gfp_table: str
    topology_source: str
    lost_events: int
    thp_faults: dict[str, int]
    vmstat_deltas: dict[str, int]
    warnings: list[str] = field(default_factory=list)
    beside: dict[str, int] = field(default_factory=dict)  # rows of stacks and extra_fields
    gfp_table_basis: str = ""  # why that gfp table, in a few words (metadata gfp_table_reason has it all)


ProgressFn = Callable[[int], None]


def _resolve_inputs(inputs: list[str]) -> tuple[list[Source], Bundle | None]:
    sources: list[Source] = []
    bundle: Bundle | None = None
    for item in inputs:
        if item == "-":
            sources.append(Source("-", "text", "-"))
            continue
        p = Path(item)
        try:
            exists = p.exists()
        except OSError as e:  # a name the system refuses (past PATH_MAX, a component past NAME_MAX)
            raise InputError(item, f"cannot open: {e.strerror}") from None
        if not exists:
            raise InputError(item, "no such file or directory")
        if p.is_dir():
            if bundle is not None:
                raise InputError(item, "ingest one capture bundle at a time (a second bundle was given)")
            bundle = open_bundle(p)
            trace = str(bundle.trace)
            sources.append(Source(trace, describe_kind(trace), trace))
            continue
        if not p.is_file():
            # a pipe, FIFO or device (process substitution, /dev/stdin): read once, as stdin is; looking
            # at its first bytes first would consume them
            sources.append(Source(item, "text", item))
            continue
        sources.append(Source(item, describe_kind(item), item))
    return sources, bundle


def _topology(bundle: Bundle | None, topology_file: str | None) -> Topology:
    cpus = bundle.cpus_by_node() if bundle else {}
    distances = bundle.distances() if bundle else {}
    if topology_file:
        p = Path(topology_file)
        if not p.is_file():
            raise InputError(topology_file, "no such file (--topology takes a saved /proc/zoneinfo)")
        zones = procfs.parse_zoneinfo(p.read_text(errors="replace"), topology_file)
        return Topology(zones, cpus, distances, source=f"--topology {p.name}")
    if bundle:
        snap = bundle.snapshot("zoneinfo")
        if snap:
            zones = procfs.parse_zoneinfo(snap.read_text(errors="replace"), str(snap))
            return Topology(zones, cpus, distances, source=f"bundle {snap.name}")
    return Topology.single_node()


def _perf_script_stream(path: str, stderr) -> subprocess.Popen:
    perf = shutil.which("perf")
    if perf is None:
        raise InputError(
            path,
            "is a perf.data file and perf is not installed to decode it",
            hint="install perf (Debian: linux-perf), or run `perf script` where it is and ingest the text",
        )
    args = list(PERF_SCRIPT_ARGS)
    if _perf_callchains(perf, path):
        args[2] += "," + PERF_CALLCHAIN_FIELDS
    return subprocess.Popen([perf, *args, path], stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL)


def _perf_callchains(perf: str, path: str) -> bool:
    """Every event of the perf.data samples its callchain (`perf evlist -v`: sample_type ...|CALLCHAIN|...).
    Only then are ip and sym asked for: perf prints them on the event's own line for a sample without one."""
    try:
        out = subprocess.run([perf, "evlist", "-v", "-i", path], capture_output=True, text=True, timeout=120,
                             stdin=subprocess.DEVNULL).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    types = [t.rstrip(",").split("|") for t in re.findall(r"sample_type: (\S+)", out)]
    return bool(types) and all("CALLCHAIN" in t for t in types)


def _lines_frame(chunk: Chunk, first_line: int) -> pl.DataFrame:
    data = chunk.data
    if not data:
        return pl.DataFrame(schema={"line": pl.Int64, "text": pl.String})
    try:
        frame = pl.read_lines(data, name="text", row_index_name="line", row_index_offset=first_line)
    except pl.exceptions.ComputeError:
        # Non-UTF-8 bytes (e.g. a comm set by a program) are replaced, not dropped: the line stays.
        data = data.decode("utf-8", errors="replace").encode("utf-8")
        frame = pl.read_lines(data, name="text", row_index_name="line", row_index_offset=first_line)
    if chunk.partial_tail:
        frame = frame.slice(0, frame.height - 1)
    return frame.with_columns(pl.col("line").cast(pl.Int64))


class _LineNumbers:
    """First line numbers of consecutive chunks, when the reader did not count them: chunk i's
    worker learns its first line from chunk i-1's row count (workers start in chunk order)."""

    def __init__(self) -> None:
        self._next = Future()
        self._next.set_result(1)

    def claim(self, chunk: Chunk) -> tuple[Future, Future]:
        mine, self._next = self._next, Future()
        if chunk.first_line is not None:
            mine = Future()
            mine.set_result(chunk.first_line)
        return mine, self._next

    @staticmethod
    def frame(chunk: Chunk, mine: Future, following: Future) -> pl.DataFrame:
        first = mine.result()
        frame = _lines_frame(chunk, first)
        following.set_result(first + frame.height)
        return frame


def _parse_chunk(chunk: Chunk, numbers: tuple[Future, Future], layout: Layout, name: str,
                 before: bytes = b"") -> ChunkResult:
    """Fixed-width files have their line prefix cut by the C helper when it is built (parse.prefix);
    the lines it does not accept, and other files, go through polars. before: the end of the previous
    chunk (stacks.tail_of), for stack traces whose event is there."""
    mine, following = numbers
    if isinstance(chunk, perfdata.TypedChunk):  # a perf.data's typed columns (parse/perfdata.py)
        following.set_result(mine.result() + chunk.typed.lines)
        return perfdata.parse_typed(chunk, layout, name)
    if prefix.AVAILABLE and layout.fixed is not None and not layout.tgid and chunk.data:
        first = mine.result()
        cut = prefix.cut(chunk.data, first, chunk.partial_tail, layout, fields=PAYLOAD_FIELDS_IN_C)
        following.set_result(first + cut.lines)
        return parse_lines(cut.rest, layout, name, _unterminated(chunk), chunk.data.isascii(), cut=cut,
                           context=stacks.Context(before, first - 1) if before else None)
    lines = _LineNumbers.frame(chunk, mine, following)
    context = stacks.Context(before, mine.result() - 1) if before else None
    return parse_lines(lines, layout, name, _unterminated(chunk), chunk.data.isascii(), context=context)


def _unterminated(chunk: Chunk) -> bool:
    return chunk.final and bool(chunk.data) and not chunk.data.endswith(b"\n")


def _sample_lines(chunk: Chunk, limit: int = 400) -> list[str]:
    """The first lines of a chunk, for format detection (cheap: no frame is built)."""
    head = chunk.data[: 1 << 16].decode("utf-8", errors="replace").split("\n")
    if len(head) > 1 and len(chunk.data) > 1 << 16:
        head = head[:-1]  # the last piece may be cut
    return head[:limit]


class _Enricher:
    """Turns parsed event frames into schema-shaped ones: gfp decoding, pfn -> node, THP flag."""

    def __init__(self, topology: Topology, table_name: str | None):
        self.topology = topology
        self.table_name = table_name
        self.basis = ""
        self.warn = False  # the table was assumed and masks were decoded with it
        self.unknown_gfp: set[str] = set()
        self._gfp_cache: dict[str, tuple] = {}

    def choose_table(self, result: ChunkResult, layout: Layout) -> tuple[str, str]:
        """No kernel release: the gfp table from the event names that date the trace and the gfp names it
        prints (kernel/gfp.py choose; docs/kernel-eras.md)."""
        printed: list[str] = []
        events: set[str] = set()
        for t, f in result.tables.items():
            if t in ("page_alloc", "compaction", "reclaim") and "gfp_flags" in f.columns:
                printed += f.get_column("gfp_flags").drop_nulls().unique().to_list()
            if "event" in f.columns:
                events.update(f.get_column("event").drop_nulls().unique().to_list())
        choice = gfp.choose(printed, events, older_layout=layout.lat_width == 4)  # 4 latency chars: before 6.1
        self.basis, self.warn = choice.basis, choice.warn
        return choice.table, choice.reason

    def _gfp_frame(self, values: list[str]) -> pl.DataFrame:
        table = gfp.TABLES[self.table_name or gfp.NEWEST]
        rows = []
        for v in values:
            if v not in self._gfp_cache:
                mask, unknown = gfp.decode(v, table)
                self.unknown_gfp.update(unknown)
                flags = gfp.flag_values(mask, table)
                self._gfp_cache[v] = (mask, flags)
            mask, flags = self._gfp_cache[v]
            rows.append({"gfp_flags": v, "gfp_mask": mask, **{f"gfp_{k}": flags[k] for k in flags}})
        return pl.DataFrame(
            rows,
            schema={"gfp_flags": pl.String, "gfp_mask": pl.Int64,
                    **{f"gfp_{k}": pl.Boolean for k in gfp.FLAGS + ("nomemalloc", "hardwall")}},
        )

    def _with_gfp(self, frame: pl.DataFrame, keep_flags: bool) -> pl.DataFrame:
        if "gfp_flags" not in frame.columns:
            return frame
        values = frame.get_column("gfp_flags").drop_nulls().unique().sort().to_list()
        lookup = self._gfp_frame(values)
        idx = pl.col("gfp_flags").replace_strict(
            lookup.get_column("gfp_flags"), pl.int_range(0, lookup.height, eager=True), default=None,
            return_dtype=pl.Int64,
        )
        frame = frame.with_columns(idx.alias("_gi"))
        cols = ["gfp_mask"] + ([c for c in lookup.columns if c.startswith("gfp_") and c not in
                                ("gfp_flags", "gfp_mask")] if keep_flags else [])
        gi = frame.get_column("_gi")
        new = [lookup.get_column(c).gather(gi).alias(c) for c in cols] if lookup.height else [
            pl.Series(c, [None] * frame.height, dtype=lookup.schema[c]) for c in cols]
        return frame.with_columns(new).drop("_gi")

    def _fill_node(self, frame: pl.DataFrame, pfn: str) -> pl.DataFrame:
        """Where an event names no node/zone itself, take them from a pfn it prints."""
        if pfn not in frame.columns:
            return frame
        located = self.topology.locate(frame.select(pl.col(pfn).cast(pl.Int64).alias("pfn")))
        fills = []
        for col in ("node", "zone"):
            found = located.get_column(col)
            fills.append(pl.coalesce(pl.col(col), found).alias(col) if col in frame.columns else found.alias(col))
        return frame.with_columns(fills)

    def enrich(self, tables: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
        out = {}
        for name, frame in tables.items():
            if name == "page_alloc":
                frame = self._with_gfp(frame, keep_flags=True)
                if "page" in frame.columns:  # kernels before the NULL check print page_to_pfn(NULL) (events.py)
                    frame = frame.with_columns(
                        pl.when(pl.col("page").str.strip_chars().is_in(list(NULL_POINTERS))).then(0)
                        .otherwise(pl.col("pfn")).alias("pfn"))
                frame = frame.with_columns(
                    (pl.col("pfn") != 0).alias("success"),
                    pl.when(pl.col("pfn") != 0).then(pl.col("pfn")).alias("pfn"),
                )
                frame = frame.with_columns(
                    (
                        (pl.col("order") >= 2)
                        & pl.col("gfp_comp").fill_null(False)
                        & pl.col("gfp_movable").fill_null(False)
                        & pl.col("gfp_nomemalloc").fill_null(False)
                        & pl.col("gfp_hardwall").fill_null(False)
                        & (pl.col("comm") != "khugepaged").fill_null(True)  # no comm column: see ingest's warning
                    ).alias("thp_attempt")
                )
                frame = self.topology.locate(frame)
            elif name in ("page_free", "extfrag"):
                frame = self.topology.locate(frame)
            elif name == "reclaim":
                frame = self._with_gfp(frame, keep_flags=False)
                if "flags" in frame.columns:
                    frame = frame.with_columns(pl.col("flags").str.contains("RECLAIM_WB_ANON").alias("anon"))
                frame = self._fill_node(frame, "pfn")
            elif name == "compaction":
                frame = self._with_gfp(frame, keep_flags=False)
                frame = self._fill_node(frame, "zone_start")  # begin/end print the zone's pfn span
            elif name == "page_fault":
                frame = frame.with_columns((pl.col("address") // (2 << 20) * (2 << 20)).alias("region"))
            out[name] = frame
        return out


class _Writers:
    """Each table is a directory of Parquet parts, one per input chunk (written by the worker that
    parsed the chunk, so writing runs in parallel too); part names follow input order."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def write(self, table: str, frame: pl.DataFrame, part: int) -> None:
        if frame.height == 0:
            return
        folder = self.directory / table
        folder.mkdir(exist_ok=True)
        write_part(schemas.load(table), frame, folder / f"part-{part:06d}.parquet")
        with self._lock:
            self.counts[table] = self.counts.get(table, 0) + frame.height

    def close(self, tables: list[str]) -> None:
        """Tables that got no rows still get one empty part, so every table has a schema on disk."""
        for table in tables:
            folder = self.directory / table
            if not folder.exists():
                folder.mkdir()
                schema = schemas.load(table)
                schema.write(schema.empty(), folder / "part-000000.parquet")
                self.counts.setdefault(table, 0)


# The parts of the tables that grow with the trace are encoded by pyarrow, whose encodings are chosen per
# column (polars' writer chooses them itself and took about a third of a typed ingest's CPU time): strings
# and integers of few values as a dictionary, other integers (times, lines, pfns, addresses) as deltas,
# then zstd at level 1. Against polars' zstd (level 3): about 20 % less CPU per part and a third fewer
# bytes, and reading them back is no slower (BENCHMARKS.md, "Parquet parts encoded per column").
ZSTD_LEVEL = 1
ROW_GROUP_ROWS = 1 << 18  # polars' default row group size, kept (sim/demand.py reads a part at a time)
DICTIONARY_SAMPLE = 4096  # an integer column is dictionary encoded when its first rows hold at most
DICTIONARY_VALUES = 256   # this many values


def write_part(schema: schemas.TableSchema, frame: pl.DataFrame, path: Path) -> None:
    """One part of a table, with the declared schema and its stamp (as TableSchema.write writes it): the
    same values, encoded per column. A failed write is an OSError naming the file."""
    import pyarrow as pa

    frame = schema.validated(frame)
    arrow = schema.arrow()
    dictionary, delta = [], {}
    head = frame.head(DICTIONARY_SAMPLE)
    for f in arrow:
        if pa.types.is_large_string(f.type):
            dictionary.append(f.name)  # pyarrow falls back to plain when a part's dictionary grows past 1 MiB
        elif pa.types.is_integer(f.type):
            if head.get_column(f.name).n_unique() <= DICTIONARY_VALUES:
                dictionary.append(f.name)
            else:
                delta[f.name] = "DELTA_BINARY_PACKED"
    table = frame.to_arrow(compat_level=pl.CompatLevel.oldest()).cast(arrow)
    write_arrow_parquet(table, path, compression="zstd", compression_level=ZSTD_LEVEL, use_dictionary=dictionary,
                        column_encoding=delta, row_group_size=ROW_GROUP_ROWS)


def _chunks_of(source: Source) -> Iterator[Chunk]:
    if source.kind == "trace.dat":  # rendered as `trace-cmd report -t` text by the native reader
        from thpreplay.parse import tracedat
        yield from tracedat.chunks(source.path, source.name, source.notes)
        return
    if source.kind != "perf.data":
        yield from read_chunks(source.path, stall_timeout=source.stall_timeout)
        return
    with contextlib.ExitStack() as stack:
        path = source.path
        if describe_container(path) != "perf.data":  # perf.data.xz etc.: perf needs a plain file
            plain = stack.enter_context(tempfile.NamedTemporaryFile(prefix="thpreplay-", suffix=".perf.data"))
            decompress_to(path, plain)
            plain.flush()
            path = plain.name
        # thpreplay's own reader prints what perf script prints (parse/perfdata.py); what it does not
        # read goes to perf script, with the reason in one warning
        native, why = perfdata.open_native(path, source.name)
        if native is not None:
            source.notes += native.notes
            source.perf_info = native.info  # the header's now (kernel release), the counts at the end
            yield from native.chunks()
            source.perf_info = native.info
            return
        if why:
            if shutil.which("perf") is None:
                raise InputError(source.name, f"perf.data: {why}: thpreplay's reader does not read that, and "
                                              f"perf is not installed to decode it",
                                 hint="install perf (Debian: linux-perf)")
            source.notes.append(f"{source.name}: {why}: thpreplay's perf.data reader does not read that; "
                                f"decoded with perf script")
        # perf's messages go to a file: a pipe nobody reads while perf writes could fill and stall it
        errfile = stack.enter_context(tempfile.TemporaryFile())
        proc = _perf_script_stream(path, errfile)
        assert proc.stdout is not None
        try:
            yield from read_chunks(source.name, stream=proc.stdout)
        finally:
            proc.stdout.close()
            code = proc.wait()
            errfile.seek(0)
            err = errfile.read().decode(errors="replace")
    if code != 0:
        last = [ln for ln in err.splitlines() if ln.strip()]
        raise InputError(source.name, f"perf script failed (exit {code}): {last[-1] if last else 'no message'}")


def _write_small(directory: Path, table: str, frame: pl.DataFrame) -> None:
    (directory / table).mkdir()
    schemas.load(table).write(frame, directory / table / "part-000000.parquet")


def _snapshot_tables(bundle: Bundle | None, warnings: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    vm_rows = []
    fl_rows = []
    if bundle:
        scopes = {"system": "vmstat"}
        for key in bundle.node_files:
            if ".vmstat" in key:
                scopes[key.split(".")[0]] = key.split(".")[0] + ".vmstat"
        for scope, base in sorted(scopes.items()):
            files = {**bundle.snapshots, **bundle.node_files}
            before_p = files.get(f"{base}.before")
            after_p = files.get(f"{base}.after")
            if not before_p and not after_p:
                continue
            before = procfs.parse_vmstat(read_text(before_p), str(before_p)) if before_p else {}
            after = procfs.parse_vmstat(read_text(after_p), str(after_p)) if after_p else {}
            # event counters only grow within a boot: one that fell means the pair is swapped or spans a
            # reboot, and no delta of the pair can be trusted
            fell = [c for c in sorted(set(before) & set(after)) if counters.is_event_counter(c) and after[c] < before[c]]
            if fell:
                shown = ", ".join(f"{c} {before[c]:,} -> {after[c]:,}" for c in fell[:3])
                warnings.append(f"{after_p}: {len(fell)} event counters are lower than in {before_p.name} ({shown}"
                                f"{', ...' if len(fell) > 3 else ''}): the snapshots are swapped or span a reboot; "
                                f"their deltas are left out (validate skips those figures)")
            for counter in sorted(set(before) | set(after)):
                b, a = before.get(counter), after.get(counter)
                vm_rows.append(dict(scope=scope, counter=counter, before=b, after=a,
                                    delta=(a - b) if a is not None and b is not None and not fell else None))
        for when in ("before", "after"):
            p = bundle.snapshots.get(f"pagetypeinfo.{when}")
            b = bundle.snapshots.get(f"buddyinfo.{when}")
            rows = procfs.parse_pagetypeinfo(read_text(p), str(p)) if p else []
            buddy = procfs.parse_buddyinfo(read_text(b), str(b)) if b else []
            if not rows:
                rows = buddy
            rows = procfs.complete_capped(rows, buddy)
            fl_rows += [dict(snapshot=when, **r) for r in rows]
    vmstat = schemas.load("vmstat")
    free = schemas.load("free_lists")
    vm = vmstat.conform(pl.DataFrame(vm_rows, schema_overrides=vmstat.polars())) if vm_rows else vmstat.empty()
    fl = free.conform(pl.DataFrame(fl_rows, schema_overrides=free.polars())) if fl_rows else free.empty()
    return vm, fl


def _prepare_output(output: Path, force: bool, inputs: list[str] = ()) -> Path:
    if problem := dataset_path_problem(output):
        raise OutputError(f"{output}: {problem}")
    if output.exists() and not force:
        raise OutputError(f"{output}: already exists; use --force to replace it")
    if output.exists() and not output.is_dir():
        raise OutputError(f"{output}: exists and is not a directory")
    # --force replaces a thpreplay dataset, never a directory that is something else, and never an input
    out = output.resolve()
    for given in inputs:
        src = Path(given).resolve()
        if src == out or out in src.parents:
            raise OutputError(f"{output}: is the input {given}, or holds it; --force would replace it: "
                              f"choose another -o")
    if output.exists() and not (output / "dataset.json").is_file():
        raise OutputError(f"{output}: exists and is not a thpreplay dataset (no dataset.json); --force "
                          f"replaces only a dataset: remove it yourself or choose another -o")
    parent = output.absolute().parent
    if parent.exists() and not parent.is_dir():
        raise OutputError(f"{output}: parent {parent} is not a directory")
    if not parent.is_dir():
        raise OutputError(f"{output}: parent directory {parent} does not exist")
    clean_stale(output)  # what a killed ingest left beside it
    try:
        return make_tmp(output)
    except OSError as e:
        raise OutputError(f"{output}: cannot write in {parent}: {e.strerror}") from None


def ingest(
    inputs: list[str],
    output: str | Path,
    *,
    topology_file: str | None = None,
    force: bool = False,
    progress: ProgressFn | None = None,
    wait: bool = False,
    on_wait: Callable[[str], None] | None = None,
    kernel_release: str | None = None,
    input_timeout: float | None = None,
) -> IngestSummary:
    """Ingest into output. A dataset there that a command is using is not replaced: refused at once
    (unless wait), and a command that began using it meanwhile is waited for before the replacement
    (on_wait is told whom); see dataset.py. kernel_release: the kernel that made the trace, for a trace
    without a bundle (or to overrule the bundle's); it picks the gfp table (docs/kernel-eras.md)."""
    if not inputs:
        raise ThpreplayError("no input given")
    output = Path(output)
    if input_timeout is not None and not (0 < input_timeout < float("inf")):
        raise ThpreplayError(f"--input-timeout {input_timeout:g}: give a number of seconds above 0")
    sources, bundle = _resolve_inputs(inputs)
    for source in sources:
        source.stall_timeout = input_timeout
    topology = _topology(bundle, topology_file)
    release = bundle.kernel_release if bundle else None
    table_name = gfp.table_for_release(release) if release else None
    table_reason = f"kernel release {release}" if table_name else ""
    if kernel_release is not None:
        table_name = gfp.table_for_release(kernel_release)
        if table_name is None:
            raise ThpreplayError(f"--kernel-release {kernel_release!r}: not a kernel release (e.g. 3.2 or 4.4.0-21)")
        table_reason = f"--kernel-release {kernel_release}"

    tmp = _prepare_output(output, force, inputs)
    try:
        check_replaceable(output, wait)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    gc_was_enabled = gc.isenabled()
    gc.disable()  # the loop makes no reference cycles; collections only cost time here
    try:
        summary = _ingest_into(tmp, output, sources, bundle, topology, table_name, table_reason, progress,
                               kernel_release)
        publish(tmp, output, force, replace_dir, on_wait)
        return summary
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        reason = io_error_reason(e, output.absolute().parent) if isinstance(e, Exception) and not isinstance(e, ThpreplayError) else None
        if reason is None:
            raise
        raise OutputError(f"{output}: write failed: {reason}") from None
    finally:
        if gc_was_enabled:
            gc.enable()


def _ingest_into(tmp, output, sources, bundle, topology, table_name, table_reason, progress,
                 release_option=None) -> IngestSummary:
    writers = _Writers(tmp)
    collector = MarkerCollector()
    enricher = _Enricher(topology, table_name)
    enricher.basis = table_reason
    formats: dict[str, str] = {}
    stats = dict(lines=0, lost_events=0, lost_markers=0, backwards=0, fallback_rows=0, rejects=0, failed_to_parse=0,
                 untimed=0)
    ts_min = ts_max = None
    pfn_min = pfn_max = None
    tgid_seen = False
    warnings: list[str] = []
    perf_data: dict[str, dict] = {}  # perf.data files thpreplay's reader read (the others: perf script)

    def absorb(result: ChunkResult, reduced: ChunkMarkers, pfns: tuple, state: dict) -> None:
        nonlocal ts_min, ts_max, pfn_min, pfn_max, tgid_seen
        collector.add(reduced)
        lo, hi = pfns
        if lo is not None:
            pfn_min = lo if pfn_min is None else min(pfn_min, lo)
            pfn_max = hi if pfn_max is None else max(pfn_max, hi)
        stats["lines"] += result.lines
        stats["lost_events"] += result.lost_events
        stats["lost_markers"] += result.lost_markers
        stats["backwards"] += result.backwards
        if state["last_ts"] is not None and result.first_ts is not None and result.first_ts < state["last_ts"]:
            stats["backwards"] += 1
        stats["fallback_rows"] += result.fallback_rows
        stats["failed_to_parse"] += result.failed_to_parse
        stats["rejects"] += result.rejects.height
        state["untimed"] += result.untimed
        tgid_seen = tgid_seen or result.has_tgid
        if result.ts_min is not None:
            ts_min = result.ts_min if ts_min is None else min(ts_min, result.ts_min)
            ts_max = result.ts_max if ts_max is None else max(ts_max, result.ts_max)
            state["last_ts"] = result.last_ts

    def work(chunk: Chunk, numbers: tuple[Future, Future], layout: Layout, name: str, part: int,
             result: ChunkResult | None = None, before: bytes = b""):
        if result is None:
            result = _parse_chunk(chunk, numbers, layout, name, before)
        tables = enricher.enrich(result.tables)
        for table, frame in tables.items():
            writers.write(table, frame, part)
        writers.write("rejects", result.rejects, part)
        for table, frame in (("stacks", result.stacks), ("extra_fields", result.extra_fields)):
            if frame is not None:
                writers.write(table, frame, part)
        pfns = [tables[t].get_column("pfn") for t in ("page_alloc", "page_free") if t in tables]
        lows = [s.min() for s in pfns if s.null_count() < len(s)]
        highs = [s.max() for s in pfns if s.null_count() < len(s)]
        span = (min(lows), max(highs)) if lows else (None, None)
        # Only small, compact frames go back to the main thread; the chunk's frames die here.
        return result, reduce_chunk(tables), span

    # Chunks are split into lines, parsed and written WORKERS at a time (polars and pyarrow release the
    # GIL); the rows kept for thp_faults and the counts are taken in input order.
    part = 0
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        for source in sources:
            layout: Layout | None = None
            state: dict = {"last_ts": None, "untimed": 0}
            pending: deque = deque()
            numbering = _LineNumbers()
            tail = b""  # the end of the previous chunk (stack traces whose event is there)
            for chunk in _chunks_of(source):
                if progress:
                    progress(chunk.text_bytes if isinstance(chunk, perfdata.TypedChunk) else len(chunk.data))
                numbers = numbering.claim(chunk)
                before, tail = tail, stacks.tail_of(chunk.data, chunk.partial_tail)
                if layout is None:
                    sample = _sample_lines(chunk)
                    if not any(ln.strip() for ln in sample):
                        if chunk.final:
                            raise InputError(source.name, "empty trace (no event lines)")
                        _LineNumbers.frame(chunk, *numbers)  # blank: only its line count matters
                        continue
                    fmt = detect_format(sample, source.name)
                    layout = detect_layout(sample, fmt)
                    formats[source.name] = "trace.dat" if source.kind == "trace.dat" else fmt
                part += 1
                release = (source.perf_info or {}).get("osrelease")
                if enricher.table_name is None and release and gfp.table_for_release(release):
                    # a perf.data names its kernel (HEADER_OSRELEASE): its gfp table, as a bundle's would
                    enricher.table_name = gfp.table_for_release(release)
                    table_reason = enricher.basis = f"kernel release {release} (perf.data header)"
                    release_option = release_option or release
                if enricher.table_name is None:
                    # The first chunk decides the gfp table, so it is parsed before any other.
                    result = _parse_chunk(chunk, numbers, layout, source.name, before)
                    if result.tables:
                        enricher.table_name, table_reason = enricher.choose_table(result, layout)
                    absorb(*work(chunk, numbers, layout, source.name, part, result), state)
                    continue
                pending.append(pool.submit(work, chunk, numbers, layout, source.name, part, None, before))
                while len(pending) > WORKERS:
                    absorb(*pending.popleft().result(), state)
            while pending:
                absorb(*pending.popleft().result(), state)
            if layout is None:
                raise InputError(source.name, "empty trace (no event lines)")
            stats["untimed"] += state["untimed"]
            warnings.extend(source.notes)
            if source.perf_info is not None:  # PERF_RECORD_LOST and LOST_SAMPLES: events the kernel dropped
                stats["lost_events"] += source.perf_info["lost"] + source.perf_info["lost_samples"]
                perf_data[source.name] = {k: source.perf_info[k] for k in (
                    "osrelease", "nr_cpus_online", "samples", "lost", "lost_samples", "compressed_records")}
            if state["untimed"]:
                warnings.append(f"{source.name}: {state['untimed']:,} event lines without the task/cpu/time prefix: "
                                f"read in file order with null ts_ns, pid, cpu and comm; simulate and validate "
                                f"need timestamps and refuse this dataset")
            elif "comm" not in layout.columns:
                warnings.append(f"{source.name}: no comm column (perf script -F without comm): comm is null, and "
                                f"khugepaged's huge page allocations cannot be told from page faults'")

    writers.close(list(EVENT_TABLES) + ["rejects", "stacks", "extra_fields"])
    events = {t: writers.counts.get(t, 0) for t in EVENT_TABLES}
    beside = {t: writers.counts.get(t, 0) for t in ("stacks", "extra_fields")}
    if sum(events.values()) == 0:
        first = pl.read_parquet(sorted((tmp / "rejects").glob("*.parquet"))).sort("source", "line").head(1)
        why = "".join(f"; line {r['line']}: {r['reason']}" for r in first.iter_rows(named=True))
        raise InputError(sources[0].name, f"no events found (every line was rejected{why})")

    stall_rule = compact_stall_rule((bundle.kernel_release if bundle else None) or release_option)
    faults = collector.faults(topology, stall_rule)
    _write_small(tmp, "thp_faults", faults)
    topo_frame = topology.table(pfn_min, pfn_max)
    _write_small(tmp, "topology", topo_frame)
    vmstat, free_lists = _snapshot_tables(bundle, warnings)
    _write_small(tmp, "vmstat", vmstat)
    _write_small(tmp, "free_lists", free_lists)
    if bundle:
        snap_dir = tmp / "snapshots"
        snap_dir.mkdir()
        for p in list(bundle.snapshots.values()) + list(bundle.node_files.values()):
            shutil.copyfile(p, snap_dir / p.name)
        for extra in ("kernel_release", "kernel_version", "thp_settings", "vm_sysctl", "proc_version", "thp_policy",
                      "untraced_start", "manifest.json"):
            if (bundle.path / extra).exists():
                shutil.copyfile(bundle.path / extra, snap_dir / extra)

    trace_view = {**vmstat_view(faults), "compact_stall_all_tasks": collector.compact_stalls_all_tasks(stall_rule)}
    deltas = {}
    if vmstat.height:
        sys_rows = vmstat.filter(pl.col("scope") == "system")
        deltas = {r["counter"]: r["delta"] for r in sys_rows.iter_rows(named=True) if r["delta"] is not None}
    if topology.inferred:
        warnings.append("no zoneinfo: a single node was inferred (every pfn on node 0); pass --topology FILE")
    else:
        with_memory = {z["node"] for z in topology.zones if z.get("present", z.get("spanned", 0))}
        no_memory = sorted(n for n, cpus in topology.cpus.items() if cpus and n not in with_memory)
        if no_memory:
            warnings.append(f"node{'s' if len(no_memory) > 1 else ''} {', '.join(map(str, no_memory))} "
                            f"{'have' if len(no_memory) > 1 else 'has'} CPUs (nodeN.cpulist) but no memory in the "
                            f"zoneinfo ({topology.source}): a memoryless node, or a zoneinfo from another machine; "
                            f"the faults on those CPUs have no local memory, which decides local and remote")
    if stats["failed_to_parse"]:
        warnings.append(f"{stats['failed_to_parse']:,} event lines are [FAILED TO PARSE] (the tool that printed the "
                        f"trace could not format them): read from the raw fields they list, names as the kernel's "
                        f"format file gives them")
    if stats["lost_events"]:
        warnings.append(f"the kernel dropped {stats['lost_events']} events (ring buffer overrun): counts are low")
    if bundle and (limited := filter_warning(bundle.manifest)):  # record -p / --cgroup / --workload-only
        warnings.append(limited)
    if enricher.unknown_gfp:
        warnings.append(f"gfp names unknown to table {enricher.table_name}: {', '.join(sorted(enricher.unknown_gfp))}")
    if enricher.warn:
        warnings.append(table_reason)
    if stats["rejects"]:
        warnings.append(f"{stats['rejects']} lines rejected: see the rejects table")
    not_located = 0
    if not topology.inferred:
        outside = {}
        for table, located in (("page_alloc", pl.col("success")), ("page_free", pl.col("pfn") > 0)):
            parts = sorted(str(p) for p in (tmp / table).glob("*.parquet"))
            if parts:
                outside[table] = (pl.scan_parquet(parts, glob=False)
                                  .filter(located & pl.col("node").is_null()).select(pl.len()).collect().item())
        not_located = outside.get("page_alloc", 0)
        if not_located:
            warnings.append(f"{not_located} allocated pfns lie outside the topology's zones (node unknown)")
        if outside.get("page_free"):
            warnings.append(f"{outside['page_free']} freed pfns lie outside the topology's zones (node unknown)")
    assumptions = []
    if events.get("page_fault", 0) == 0:
        assumptions.append("no exceptions:page_fault_user events: faults have no virtual address")
    if topology.inferred:
        assumptions.append("single NUMA node inferred: every pfn on node 0, every CPU local to it")

    meta = {
        "dataset_format": DATASET_FORMAT,
        "thpreplay_version": __version__,
        "inputs": [s.name for s in sources],
        "bundle": str(bundle.path) if bundle else None,
        "trace_formats": formats,
        "kernel_release": (bundle.kernel_release if bundle else None) or release_option,
        "kernel_version": bundle.kernel_version if bundle else None,
        "thp_enabled": bundle.thp.get("enabled") if bundle else None,
        "thp_defrag": bundle.thp.get("defrag") if bundle else None,
        "khugepaged_defrag": bundle.thp.get("khugepaged_defrag") if bundle else None,
        "gfp_table": enricher.table_name,
        "gfp_table_reason": table_reason,
        "gfp_unknown_names": sorted(enricher.unknown_gfp),
        "topology_source": topology.source,
        "nodes": topology.nodes,
        "ts_min_ns": ts_min,
        "ts_max_ns": ts_max,
        "lines": stats["lines"],
        "events": events,
        "rejects": stats["rejects"],
        "stacks": beside["stacks"],
        "extra_fields": beside["extra_fields"],
        "lost_events": stats["lost_events"],
        "lost_markers": stats["lost_markers"],
        "ts_backwards": stats["backwards"],
        "header_fallback_rows": stats["fallback_rows"],
        "failed_to_parse_lines": stats["failed_to_parse"],
        "pfns_outside_topology": not_located,
        "has_tgid": tgid_seen,
        "perf_data_native": perf_data,
        "untimed_events": stats["untimed"],
        "thp_faults_trace_view": trace_view,
        "schemas": {t: schemas.load(t).id for t in schemas.ingest_tables()},
        "assumptions": assumptions,
        "warnings": warnings,
    }
    meta_frame = pl.DataFrame({"key": list(meta), "value": [json.dumps(v, sort_keys=True) for v in meta.values()]})
    _write_small(tmp, "metadata", meta_frame)
    (tmp / "dataset.json").write_text(
        json.dumps({"format": "thpreplay-dataset", "version": DATASET_FORMAT, "schemas": meta["schemas"]},
                   indent=1, sort_keys=True) + "\n"
    )
    return IngestSummary(
        output=output,
        events=events,
        beside=beside,
        rejects=stats["rejects"],
        lines=stats["lines"],
        ts_min_ns=ts_min,
        ts_max_ns=ts_max,
        nodes=topology.nodes,
        formats=formats,
        gfp_table=enricher.table_name or "-",
        gfp_table_basis=enricher.basis,
        topology_source=topology.source,
        lost_events=stats["lost_events"],
        thp_faults={**trace_view, "faults": faults.height,
                    **{o: faults.filter(pl.col("outcome") == o).height
                       for o in ("huge_local", "huge_remote", "fallback")}},
        vmstat_deltas={k: deltas[k] for k in ("thp_fault_alloc", "thp_fault_fallback", "compact_stall") if k in deltas},
        warnings=warnings,
    )
