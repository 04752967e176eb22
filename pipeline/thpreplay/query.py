"""`thpreplay query`: DuckDB SQL over one or more datasets, in process.

Every table of a dataset is a view of the same name over its Parquet parts, with a `dataset` column
(the dataset directory's name) so that several datasets (`-d A -d B`) can be compared in one query.
The simulation tables (outcomes, outcome_summary, memory_series) come from DATASET/simulation/. A table
a dataset lacks is an empty view with its declared columns, so queries do not depend on which steps ran.
Convenience views are declared in CONVENIENCE_VIEWS below; `thpreplay schema` documents every column.

A sweep directory (thpreplay sweep; recognised by its sweep.json) is queried alone: its simulation
tables are views over every partition, read lazily by DuckDB with hive partitioning (columns
`capture`, `policy`, `settings`; a filter on them skips the other partitions' files), and the
ingest tables of the captures it ingested (SWEEP/datasets/) have a `capture` column. File access is
locked to the sweep directory.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

import duckdb
import polars as pl

from thpreplay import schemas
from thpreplay.atomic import write_output, write_parquet
from thpreplay.dataset import check_simulation, locate_damage, reading
from thpreplay.errors import InputError, OutputError, ThpreplayError
from thpreplay.simulate import SIM_DIR, check_dataset
from thpreplay.sweep import DATASETS, is_sweep

_DUCK_TYPES = {"bool": "BOOLEAN", "int16": "SMALLINT", "int32": "INTEGER", "int64": "BIGINT", "uint64": "UBIGINT",
               "float64": "DOUBLE", "string": "VARCHAR", "list<int64>": "BIGINT[]", "list<int32>": "INTEGER[]"}

# name -> (description, SQL). Built on the table views, so they work over several datasets at once.
CONVENIENCE_VIEWS = {
    "policy_coverage": (
        "Per dataset and policy: THP coverage and where the pages went (from outcome_summary; kernel: the "
        "--kernel versions that chose the policy)",
        """SELECT dataset, policy, kernel, faults, huge_local, huge_remote, base_local + base_remote AS base, failed,
                  thp_coverage, local_share FROM outcome_summary""",
    ),
    "policy_costs": (
        "Per dataset and policy: latency, compaction, reclaim and swap (from outcome_summary; kernel: the "
        "--kernel versions that chose the policy)",
        """SELECT dataset, policy, kernel, latency_mean_us, latency_p50_us, latency_p99_us, compact_stall,
                  pages_migrated, pgsteal_direct, pswpout, access_cost_mean FROM outcome_summary""",
    ),
    "captured_summary": (
        "Per dataset: what the capturing kernel did, in outcome_summary's columns ('as captured'; what "
        "thpreplay simulate and report print first): THP outcomes and measured fault latency from thp_faults, "
        "the vmstat deltas validate compares with; local_share only on one node (a fallback's node is not "
        "traced), null where the capture lacks a counter",
        """WITH f AS (SELECT dataset, count(*) AS faults,
                         count(*) FILTER (WHERE outcome = 'huge_local') AS huge_local,
                         count(*) FILTER (WHERE outcome = 'huge_remote') AS huge_remote,
                         count(*) FILTER (WHERE outcome = 'fallback') AS fallback,
                         avg(latency_ns) / 1000 AS latency_mean_us, quantile_cont(latency_ns, 0.5) / 1000 AS latency_p50_us,
                         quantile_cont(latency_ns, 0.99) / 1000 AS latency_p99_us
                  FROM thp_faults GROUP BY dataset),
                v AS (SELECT dataset,
                         max(delta) FILTER (WHERE counter = 'compact_stall') AS compact_stall,
                         max(delta) FILTER (WHERE counter = 'compact_success') AS compact_success,
                         max(delta) FILTER (WHERE counter = 'compact_fail') AS compact_fail,
                         sum(delta) FILTER (WHERE counter LIKE 'allocstall%') AS allocstall,
                         max(delta) FILTER (WHERE counter = 'pgsteal_direct') AS pgsteal_direct,
                         max(delta) FILTER (WHERE counter = 'pswpout') AS pswpout,
                         max(delta) FILTER (WHERE counter = 'numa_miss') AS numa_miss
                  FROM vmstat WHERE scope = 'system' AND delta IS NOT NULL GROUP BY dataset),
                n AS (SELECT dataset, count(DISTINCT node) AS nodes FROM topology WHERE spanned > 0 GROUP BY dataset)
           SELECT f.dataset, 'as captured' AS policy, faults, huge_local, huge_remote, fallback,
                  (huge_local + huge_remote) / faults AS thp_coverage,
                  CASE WHEN nodes = 1 THEN (huge_local + fallback) / faults END AS local_share,
                  latency_mean_us, latency_p50_us, latency_p99_us, compact_stall, compact_success, compact_fail,
                  allocstall, pgsteal_direct, pswpout, numa_miss
           FROM f LEFT JOIN v USING (dataset) LEFT JOIN n USING (dataset) ORDER BY f.dataset""",
    ),
    "stall_percentiles": (
        "Per dataset and policy: allocation stall percentiles (µs, stall_ns) over the faults that compacted or "
        "reclaimed, the capture's own first ('as captured', from thp_faults)",
        """SELECT dataset, 'as captured' AS policy, count(*) AS stalled_faults,
                  round(quantile_cont(stall_ns, 0.5) / 1000, 1) AS p50_us, round(quantile_cont(stall_ns, 0.9) / 1000, 1) AS p90_us,
                  round(quantile_cont(stall_ns, 0.99) / 1000, 1) AS p99_us, round(max(stall_ns) / 1000, 1) AS max_us
           FROM thp_faults WHERE compaction_calls > 0 OR reclaim_calls > 0 GROUP BY dataset
           UNION ALL
           SELECT dataset, policy, count(*) AS stalled_faults,
                  round(quantile_cont(stall_ns, 0.5) / 1000, 1) AS p50_us, round(quantile_cont(stall_ns, 0.9) / 1000, 1) AS p90_us,
                  round(quantile_cont(stall_ns, 0.99) / 1000, 1) AS p99_us, round(max(stall_ns) / 1000, 1) AS max_us
           FROM outcomes WHERE compaction_attempted > 0 OR reclaim_calls > 0 GROUP BY dataset, policy
           ORDER BY dataset, policy <> 'as captured', policy""",
    ),
    "latency_by_outcome": (
        "Per dataset, policy and placement (huge_local, huge_remote, fallback): fault latency percentiles (µs, "
        "latency_ns: the page-fault event to the allocation's return) over the faults whose page-fault event "
        "the trace has, the capture's own first ('as captured', from thp_faults)",
        """WITH timed AS (SELECT dataset, fault_id, outcome, latency_ns FROM thp_faults
                          WHERE latency_ns IS NOT NULL),
                model AS (SELECT o.dataset, o.policy,
                                 CASE WHEN o.result LIKE 'huge%' THEN o.result ELSE 'fallback' END AS outcome,
                                 o.latency_ns
                          FROM outcomes o SEMI JOIN timed t ON o.dataset = t.dataset AND o.fault_id = t.fault_id),
                both_sides AS (SELECT dataset, 'as captured' AS policy, outcome, latency_ns FROM timed
                               UNION ALL SELECT * FROM model)
           SELECT dataset, policy, outcome AS placement, count(*) AS faults,
                  round(quantile_cont(latency_ns, 0.5) / 1000, 1) AS p50_us, round(quantile_cont(latency_ns, 0.9) / 1000, 1) AS p90_us,
                  round(quantile_cont(latency_ns, 0.99) / 1000, 1) AS p99_us, round(max(latency_ns) / 1000, 1) AS max_us
           FROM both_sides GROUP BY dataset, policy, outcome
           ORDER BY dataset, policy <> 'as captured', policy, placement""",
    ),
    "fragmentation": (
        "Per dataset, policy and node over time: free pages, free huge pages (order-9 blocks), the unusable free "
        "space index for order 9, free blocks per order 0..9 and the pageblocks by migratetype; the capture's own "
        "rows first ('as captured': the before and after snapshots, order-10 blocks counted as two order-9 ones; "
        "its pageblock mix is not in a table, so null)",
        """WITH fl AS (SELECT dataset, snapshot, node, least("order", 9) AS o,
                             sum(free_blocks * CASE WHEN "order" = 10 THEN 2 ELSE 1 END) AS n
                      FROM free_lists WHERE "order" <= 10 GROUP BY ALL),
                snap AS (SELECT dataset, snapshot, node, sum(n * (1 << o)) AS free_pages,
                                sum(n) FILTER (WHERE o = 9) AS free_huge_pages,
                                list(n ORDER BY o) AS free_blocks,
                                sum(n * (1 << o)) FILTER (WHERE o = 9) AS usable
                         FROM fl GROUP BY ALL),
                span AS (SELECT dataset, max(CASE WHEN key = 'ts_min_ns' THEN TRY_CAST(value AS BIGINT) END) AS t0,
                                max(CASE WHEN key = 'ts_max_ns' THEN TRY_CAST(value AS BIGINT) END) AS t1
                         FROM metadata GROUP BY dataset)
           SELECT s.dataset, 'as captured' AS policy, CASE s.snapshot WHEN 'before' THEN span.t0 ELSE span.t1 END AS ts_ns,
                  s.node, s.free_pages, coalesce(s.free_huge_pages, 0) AS free_huge_pages,
                  CASE WHEN s.free_pages > 0 THEN (s.free_pages - coalesce(s.usable, 0)) / s.free_pages ELSE 0 END
                      AS unusable_index,
                  s.free_blocks, NULL::BIGINT AS unmovable_blocks, NULL::BIGINT AS movable_blocks,
                  NULL::BIGINT AS reclaimable_blocks
           FROM snap s LEFT JOIN span USING (dataset)
           UNION ALL
           SELECT dataset, policy, ts_ns, node, free_pages, free_huge_pages, unusable_index, free_blocks,
                  unmovable_blocks, movable_blocks, reclaimable_blocks
           FROM memory_series
           ORDER BY dataset, policy <> 'as captured', policy, node, ts_ns""",
    ),
    "outcome_by_process": (
        "Per dataset, policy and command: faults and results",
        """SELECT dataset, policy, comm, count(*) AS faults,
                  count(*) FILTER (WHERE result LIKE 'huge%') AS huge,
                  count(*) FILTER (WHERE result = 'huge_remote') AS huge_remote,
                  avg(latency_ns) / 1000 AS latency_mean_us
           FROM outcomes GROUP BY ALL ORDER BY ALL""",
    ),
}


# Views of a sweep, over the partitions' outcome_summary rows (one per capture, policy and setting).
SWEEP_VIEWS = {
    "fleet_settings": (
        "Sweep: per policy and setting, over every capture: faults, THP coverage and local share (pooled, and "
        "the median and worst capture), compaction stalls and swap-outs summed",
        """SELECT policy, settings, count(*) AS captures, sum(faults) AS faults,
                  sum(huge_local + huge_remote) / sum(faults) AS thp_coverage,
                  sum(huge_local + base_local) / sum(faults) AS local_share,
                  median(thp_coverage) AS thp_coverage_p50, min(thp_coverage) AS thp_coverage_min,
                  median(local_share) AS local_share_p50, sum(compact_stall) AS compact_stall,
                  sum(pgsteal_direct) AS pgsteal_direct, sum(pswpout) AS pswpout,
                  median(latency_p99_us) AS latency_p99_us_p50
           FROM outcome_summary WHERE faults > 0 GROUP BY ALL ORDER BY ALL""",
    ),
}


class QueryError(ThpreplayError):
    """The SQL failed (DuckDB's message, on one line)."""


MAX_SQL_BYTES = 16 << 20  # --file and stdin: past this it is not a query (/dev/zero)


def _view_sql(table: str, parts: list[tuple[str, list[Path]]]) -> str:
    schema = schemas.load(table)
    selects = []
    for name, files in parts:
        if files:
            paths = ", ".join(_sql_str(_glob_literal(str(f))) for f in files)
            selects.append(f"SELECT *, '{name.replace(chr(39), chr(39) * 2)}' AS dataset FROM read_parquet([{paths}])")
    if not selects:
        cols = ", ".join(f"CAST(NULL AS {_DUCK_TYPES[c.type]}) AS \"{c.name}\"" for c in schema.columns)
        return f"SELECT {cols}, CAST(NULL AS VARCHAR) AS dataset WHERE false"
    return " UNION ALL BY NAME ".join(selects)


# Table macros. what_changed('local-only-4.8', 'relaxed-5.3-rc5'): the faults whose result differs.
MACROS = {
    "what_changed": (
        "what_changed(a, b): fault by fault, where policy a and policy b disagree, and why (each side's path)",
        """CREATE MACRO what_changed(a, b) AS TABLE
           SELECT x.dataset, x.fault_id, x.ts_ns, x.comm, x.result AS result_a, y.result AS result_b,
                  x.node AS node_a, y.node AS node_b, x.latency_ns AS latency_ns_a, y.latency_ns AS latency_ns_b,
                  x.why AS why_a, y.why AS why_b
           FROM outcomes x JOIN outcomes y USING (dataset, fault_id)
           WHERE x.policy = a AND y.policy = b AND x.result IS DISTINCT FROM y.result
           ORDER BY x.dataset, x.fault_id""",
    ),
}


# Tables computed from each dataset's simulation record when the query opens (not Parquet parts).
COMPUTED = {
    "kernel_changes": (
        "Per dataset, from each policy to the next in era order: both figures (huge_local, huge_remote, fallback, "
        "compact_stall, allocstall, pgsteal_direct, pswpout, latency_p99_us), the change, each policy's p5..p95 "
        "over simulate --samples, the paired change's p5..p95, and beyond_spread: the two intervals apart "
        "(null without samples; changes.py)"
    ),
}


def _kernel_changes(names: list[str], dirs: list[Path]) -> pl.DataFrame:
    from thpreplay.changes import COLUMNS, kernel_changes
    from thpreplay.report_text import in_era_order

    frames = []
    for name, d in zip(names, dirs):
        info = check_simulation(d)
        parts = sorted((d / SIM_DIR / "outcome_summary").glob("*.parquet"))
        if info is None or not parts:
            continue
        summary = in_era_order(pl.read_parquet(parts, glob=False))   # a name such as run[1] is itself
        frames.append(kernel_changes(summary, info.get("sample_figures")).with_columns(pl.lit(name).alias("dataset")))
    return pl.concat(frames) if frames else pl.DataFrame(schema={**COLUMNS, "dataset": pl.String})


# Statements a query may run. Anything else (COPY, CREATE, INSERT, ATTACH, SET, INSTALL, ...) is refused
# before it reaches DuckDB; results are written by --format/-o, never by the SQL.
READ_STATEMENTS = {"SELECT", "EXPLAIN", "PRAGMA", "CALL"}


_TMP_HINT = "set TMPDIR to a directory with space"


class _Session:
    """The views built in a throw-away database file, reopened read-only with file access locked to the
    datasets' Parquet parts: user SQL can read them and nothing else, and can change nothing."""

    def __init__(self, datasets: list[str | Path]):
        where = os.environ.get("TMPDIR") or "/tmp"
        try:
            self._tmp = tempfile.TemporaryDirectory(prefix="thpreplay-query-")
            where = str(Path(self._tmp.name).parent)
        except OSError as e:
            raise OutputError(f"{where}: cannot make the query's scratch directory: {e.strerror}", hint=_TMP_HINT) from None
        try:
            self._open(datasets)
        except BaseException as e:
            self._tmp.cleanup()
            if isinstance(e, duckdb.IOException) and self._tmp.name in str(e):  # a full /tmp, a size limit
                reason = _one_line(e).rsplit(": ", 1)[-1]
                raise OutputError(f"{where}: cannot write the query's scratch database: {reason}", hint=_TMP_HINT) from None
            raise

    def _open(self, datasets: list[str | Path]) -> None:
        path = str(Path(self._tmp.name) / "views.duckdb")
        if any(is_sweep(d) for d in datasets):
            files, dirs = [], _build_sweep_views(path, datasets)
        else:
            files, dirs = _build_views(path, datasets), []
        self.con = duckdb.connect(path, read_only=True)
        if files:
            self.con.execute("SET allowed_paths = $files", {"files": files})
        if dirs:  # the views glob the partitions at query time (a sweep grows while it runs)
            self.con.execute("SET allowed_directories = $dirs", {"dirs": dirs})
        self.con.execute("SET enable_external_access = false")
        self.con.execute("SET autoinstall_known_extensions = false")
        self.con.execute("SET lock_configuration = true")

    def close(self) -> None:
        self.con.close()
        self._tmp.cleanup()

    def __enter__(self) -> duckdb.DuckDBPyConnection:
        return self.con

    def __exit__(self, *exc) -> None:
        self.close()


def _build_views(path: str, datasets: list[str | Path]) -> list[str]:
    """Create a view per table, the convenience views and the macros in the database at path; returns
    every Parquet file the views read."""
    if not datasets:
        raise ThpreplayError("give at least one dataset")
    dirs = [Path(d) for d in datasets]
    names = []
    for d in dirs:
        check_dataset(d)
        check_simulation(d)
        names.append(d.resolve().name)
    if len(set(names)) != len(names):
        raise InputError(str(dirs[0]), "two datasets have the same directory name; the dataset column could not tell them apart")
    con = duckdb.connect(path)
    files: list[str] = []
    try:
        for table in schemas.all_tables():
            sub = SIM_DIR + "/" if table in schemas.SIMULATION_TABLES else ""
            parts = [(n, sorted(p.resolve() for p in (d / f"{sub}{table}").glob("*.parquet"))) for n, d in zip(names, dirs)]
            files += [str(f) for _, fs in parts for f in fs]
            # DuckDB checks the path as written (a file's glob characters escaped) and the file it names
            files += [_glob_literal(str(f)) for _, fs in parts for f in fs if _glob_literal(str(f)) != str(f)]
            con.execute(f'CREATE VIEW "{table}" AS {_view_sql(table, parts)}')
        for view, (_, sql) in CONVENIENCE_VIEWS.items():
            con.execute(f'CREATE VIEW "{view}" AS {sql}')
        for _, sql in MACROS.values():
            con.execute(sql)
        changes = _kernel_changes(names, dirs).to_arrow()
        con.register("_kernel_changes", changes)
        con.execute('CREATE TABLE kernel_changes AS SELECT * FROM _kernel_changes')
        con.unregister("_kernel_changes")
    finally:
        con.close()
    return files


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _empty_sql(table: str, extra: tuple[str, ...]) -> str:
    cols = [f"CAST(NULL AS VARCHAR) AS {c}" for c in extra]
    cols += [f"CAST(NULL AS {_DUCK_TYPES[c.type]}) AS \"{c.name}\"" for c in schemas.load(table).columns
             if c.name not in extra]
    return f"SELECT {', '.join(cols)} WHERE false"


def _glob_literal(path: str) -> str:
    """A path DuckDB's read_parquet reads as itself: its glob characters each in a class of one
    (`run[1]` -> `run[[]1]`), so a directory named run[1] never reads its neighbour run1."""
    return re.sub(r"[\[*?]", lambda m: f"[{m.group(0)}]", path)


def _build_sweep_views(path: str, sweeps: list[str | Path]) -> list[str]:
    """Views over a sweep's partitions and ingested captures; returns the directory they read (as a path,
    and as the views' patterns write it when it has glob characters)."""
    if len(sweeps) != 1:
        raise ThpreplayError("a sweep is queried alone (its capture column already compares captures)")
    root = Path(sweeps[0]).resolve()
    con = duckdb.connect(path)
    try:
        for table in schemas.all_tables():
            if table in schemas.SIMULATION_TABLES:
                pattern = f"{_glob_literal(str(root))}/capture=*/policy=*/settings=*/{table}.parquet"
                sql = (f"SELECT capture, settings, * EXCLUDE (capture, settings) FROM read_parquet({_sql_str(pattern)}, "
                       "hive_partitioning=true, hive_types={'capture': VARCHAR, 'policy': VARCHAR, 'settings': VARCHAR})")
                extra = ("capture", "settings")
            else:
                pattern = f"{_glob_literal(str(root))}/{DATASETS}/*/{table}/*.parquet"
                sql = (f"SELECT regexp_extract(filename, '/{DATASETS}/([^/]+)/[^/]+/[^/]+$', 1) AS capture, "
                       f"* EXCLUDE (filename) FROM read_parquet({_sql_str(pattern)}, filename=true, union_by_name=true)")
                extra = ("capture",)
            if not next(iter(root.glob(pattern.removeprefix(f"{_glob_literal(str(root))}/"))), None):
                sql = _empty_sql(table, extra)
            con.execute(f'CREATE VIEW "{table}" AS {sql}')
        for view, (_, sql) in SWEEP_VIEWS.items():
            con.execute(f'CREATE VIEW "{view}" AS {sql}')
    finally:
        con.close()
    return sorted({str(root) + "/", _glob_literal(str(root)) + "/"})


def connect(datasets: list[str | Path]) -> _Session:
    """A read-only DuckDB session over the datasets' tables (use as a context manager)."""
    return _Session(datasets)


def _one_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def run(datasets: list[str | Path], sql: str) -> pl.DataFrame:
    """Run the SQL's statements in order; the last one's result is returned. Each dataset is read-locked
    meanwhile (dataset.py): none is replaced while the query reads it."""
    with contextlib.ExitStack() as stack:
        for d in datasets:
            if not is_sweep(d):
                stack.enter_context(reading(d))
        return _run(datasets, sql)


def _run(datasets: list[str | Path], sql: str) -> pl.DataFrame:
    try:
        sql.encode("utf-8")
    except UnicodeEncodeError as e:  # bytes of the command line that are not UTF-8
        raise QueryError(f"SQL: not UTF-8 text (byte 0x{ord(sql[e.start]) & 0xFF:02x})") from None
    with connect(datasets) as con:
        try:
            statements = con.extract_statements(sql)
        except duckdb.Error as e:
            raise QueryError(f"SQL: {_one_line(e)}") from None
        for st in statements:
            kind = st.type.name
            if kind not in READ_STATEMENTS:
                raise QueryError(f"SQL: {kind} statements are not run; queries are read-only "
                                 "(write results with --format and -o)")
        result = pl.DataFrame()
        try:
            for st in statements:
                rel = con.sql(st.query)
                result = rel.pl() if rel is not None else pl.DataFrame()
        except duckdb.Error as e:
            if not isinstance(e, (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException)):
                # failed while reading: a part damaged behind a whole footer is named, not blamed on the SQL
                for d in datasets:
                    damage = None if is_sweep(d) else locate_damage(Path(d), e)
                    if damage is not None:
                        raise damage from None
            raise QueryError(f"SQL: {_one_line(e)}") from None
        return result


def check_output(output: Path, datasets: list[str | Path]) -> None:
    """-o may not write into a dataset or sweep the query reads: the file would replace one of its files
    (dataset.json) or become part of a table."""
    out = Path(output).resolve()
    for d in datasets:
        root = Path(d).resolve()
        if out == root or root in out.parents:
            raise OutputError(f"{output}: is inside {d}, which the query reads; choose another -o")


def write(frame: pl.DataFrame, fmt: str, output: Path | None) -> str | None:
    """Render the result; returns text for stdout, or None when it went to a file."""
    if fmt == "parquet":
        if output is None:
            raise ThpreplayError("--format parquet needs -o FILE")
        write_output(output, lambda path: write_parquet(frame, path))
        return None
    if fmt == "csv":
        text = frame.write_csv()
    elif fmt == "json":
        text = frame.write_json() + "\n"
    else:
        with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=10_000, fmt_str_lengths=200,
                       tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True, tbl_formatting="MARKDOWN"):
            text = str(frame) + "\n"
    if output is not None:
        write_output(output, lambda path: Path(path).write_text(text, encoding="utf-8"))
        return None
    return text


def describe(table: str | None = None) -> str:
    """Every table and view with its columns (from schemas/), or one table."""
    lines = []
    tables = [table] if table else schemas.all_tables()
    for t in tables:
        if t in CONVENIENCE_VIEWS or t in SWEEP_VIEWS:
            desc, sql = {**CONVENIENCE_VIEWS, **SWEEP_VIEWS}[t]
            lines += [f"{t} (view): {desc}", "    " + " ".join(sql.split()), ""]
            continue
        if t not in schemas.all_tables():
            known = ", ".join(schemas.all_tables() + list(CONVENIENCE_VIEWS) + list(SWEEP_VIEWS))
            raise ThpreplayError(f"unknown table '{t}' (known: {known})")
        s = schemas.load(t)
        lines.append(f"{t} ({s.id}): {s.description}")
        for c in s.columns:
            unit = f" [{c.unit}]" if c.unit else ""
            lines.append(f"    {c.name:<24} {c.type:<12}{' null' if c.nullable else '     '}  {c.description}{unit}")
        lines.append(f"    {'dataset':<24} {'string':<12}       the dataset directory's name (added by query)")
        lines.append("")
    if not table:
        for v, (desc, _) in CONVENIENCE_VIEWS.items():
            lines.append(f"{v} (view): {desc}")
        for _, (desc, _) in MACROS.items():
            lines.append(f"{desc} (table macro)")
        for t, desc in COMPUTED.items():
            lines.append(f"{t} (computed): {desc}")
        lines += ["", "In a sweep (thpreplay query SWEEP): outcomes, outcome_summary and memory_series cover every "
                  "partition, with the columns capture, policy and settings (<enabled>-<defrag>); the ingest tables "
                  "of the captures the sweep ingested have a capture column; the views above are replaced by:"]
        for v, (desc, _) in SWEEP_VIEWS.items():
            lines.append(f"{v} (view): {desc}")
    return "\n".join(lines).rstrip() + "\n"
