"""The Python API: thpreplay from a notebook or a script, as thin wrappers over the functions the command
line calls (ingest.py, simulate.py, validate.py, report.py, query.py, sweep.py). Nothing here decides
anything the commands do not: the same checks, the same locks, the same named errors (thpreplay.errors).

    import thpreplay as tp
    ds = tp.ingest("sample_traces/qemu-6.1-2node", "out/qemu-6.1-2node", force=True)
    ds.simulate(policies=["local-only-4.8", "relaxed-5.3-rc5"])
    ds.sql("select policy, thp_coverage from outcome_summary")        # a polars DataFrame
    ds.table("thp_faults").filter(pl.col("outcome") == "fallback")    # a polars LazyFrame

docs/python-api.md is the user's guide.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from thpreplay import schemas
from thpreplay.dataset import RESIMULATE, REINGEST, SIM_DIR, check, check_parts, check_simulation, reading
from thpreplay.errors import InputError, ThpreplayError

__all__ = ["Dataset", "Sweep", "open", "ingest", "open_sweep", "sweep", "policies"]

PathLike = str | Path


def _known() -> str:
    return ", ".join(schemas.all_tables())


class Dataset:
    """A dataset made by `thpreplay ingest` (checked when opened, as every command checks it).

    >>> ds = thpreplay.open("out/qemu-6.1-2node")
    """

    def __init__(self, path: PathLike, ingest_summary=None):
        from thpreplay.sweep import is_sweep

        self.path = Path(path)
        if is_sweep(self.path):
            raise InputError(str(self.path), "a sweep directory: open it with thpreplay.open_sweep()")
        with reading(self.path):
            self.info: dict = check(self.path)
        #: what `ingest` printed, when this Dataset was made by thpreplay.ingest() (an IngestSummary)
        self.ingest_summary = ingest_summary

    def __repr__(self) -> str:
        try:
            sim = self.simulation
            done = f"simulated: {', '.join(sim['policies'])}" if sim else "not simulated"
        except ThpreplayError as e:  # a repr never raises: it says what simulation.* would
            done = f"simulation unreadable: {e}"
        return f"<thpreplay.Dataset {str(self.path)!r} ({done})>"

    # -- reading -----------------------------------------------------------------------------------

    @property
    def tables(self) -> list[str]:
        """The tables `table()` reads: every ingest table, and the simulation's once simulated.

        >>> ds.tables[:3]
        ['page_alloc', 'page_free', 'extfrag']
        """
        sim = list(schemas.SIMULATION_TABLES) if (self.path / SIM_DIR).is_dir() else []
        return [*schemas.ingest_tables(), *sim]

    def table(self, name: str) -> pl.LazyFrame:
        """One table as a polars LazyFrame over its Parquet parts (checked first: a damaged part is an
        InputError naming it). The frame reads when collected.

        >>> ds.table("thp_faults").group_by("outcome").len().collect()
        """
        if name in schemas.SIMULATION_TABLES:
            if check_simulation(self.path) is None:
                raise InputError(str(self.path), f"no simulation in this dataset, so no table '{name}'; run "
                                 "Dataset.simulate() (thpreplay simulate) first")
            directory, remedy = self.path / SIM_DIR / name, RESIMULATE
        elif name in schemas.ingest_tables():
            directory, remedy = self.path / name, REINGEST
        else:
            raise InputError(name, f"not a table of a dataset (tables: {_known()}; views such as policy_coverage "
                             "are read with Dataset.sql())")
        with reading(self.path):
            check_parts(directory, name, remedy)
            parts = [str(p) for p in sorted(directory.glob("*.parquet"))]
        return pl.scan_parquet(parts, glob=False)  # a path is a path, not a pattern

    def sql(self, query: str, *others: Dataset | PathLike) -> pl.DataFrame:
        """DuckDB SQL over the same views as `thpreplay query` (every table, policy_coverage,
        what_changed(a, b), ...; read-only), with other datasets beside this one.

        >>> ds.sql("select policy, thp_coverage from policy_coverage order by policy")
        """
        from thpreplay import query as q

        return q.run([self.path, *(o.path if isinstance(o, Dataset) else Path(o) for o in others)], query)

    @contextlib.contextmanager
    def connect(self) -> Iterator:
        """A read-only DuckDB connection with the views of `thpreplay query`, for DuckDB relations; closed
        (and its scratch database removed) when the block ends. The dataset is read-locked meanwhile.

        >>> with ds.connect() as con: con.sql("select * from outcome_summary").pl()
        """
        from thpreplay import query as q

        with reading(self.path), q.connect([self.path]) as con:
            yield con

    @property
    def metadata(self) -> dict:
        """The dataset's metadata table as a dict (kernel, THP settings, counts, warnings, ...).

        >>> ds.metadata["kernel_release"]
        '6.1.0-50-amd64'
        """
        from thpreplay.simulate import _metadata

        with reading(self.path):
            return _metadata(self.path)

    @property
    def simulation(self) -> dict | None:
        """The simulation record (policies, settings, notes, ...), or None before simulate().

        >>> ds.simulation["policies"]
        """
        with reading(self.path):
            return check_simulation(self.path)

    @property
    def summary(self) -> pl.DataFrame:
        """outcome_summary: one row per simulated policy.

        >>> ds.summary.select("policy", "thp_coverage")
        """
        return self.table("outcome_summary").collect()

    # -- commands ----------------------------------------------------------------------------------

    def simulate(self, *, policies: list[str] | None = None, kernels: list[str] | None = None, **options):
        """Replay under the policies (names) and kernels' eras (versions); default every built-in. Writes
        DATASET/simulation as `thpreplay simulate` does (other policies' stored results are kept when
        they were made the same way; replace=True drops them); returns its SimulationResult (.summary:
        a DataFrame of every stored policy, .inputs.notes: what the model assumed). options: those of
        simulate.simulate() (enabled, defrag, madvised, params_file, wait, replace, ...).

        >>> ds.simulate(policies=["local-only-4.8", "relaxed-5.3-rc5"]).summary
        """
        from thpreplay.simulate import simulate

        return simulate(self.path, policies=policies, kernels=kernels, **options)

    def validate(self, *, policy: str | None = None, kernel: str | None = None, tolerance: float = 0.10,
                 small: int = 5, **options):
        """Replay under the capturing kernel's policy and compare with what that kernel did, as
        `thpreplay validate`; returns its Validation (.table(): the figures as a DataFrame, .failures,
        .agreement, .paths, .cost_table()).

        >>> ds.validate().table()
        """
        from thpreplay.validate import validate

        return validate(self.path, policy=policy, kernel=kernel, tolerance=tolerance, small=small, **options)

    def report(self, path: PathLike | None = None) -> Path:
        """Write the HTML report (default DATASET/report.html), as `thpreplay report`; returns its path.

        >>> ds.report("out/qemu.html")
        """
        from thpreplay.report import build

        return build(self.path, path).path


class Sweep:
    """A sweep directory made by `thpreplay sweep` (queried alone, read-only).

    >>> sw = thpreplay.open_sweep("out/fleet")
    """

    def __init__(self, path: PathLike):
        from thpreplay.sweep import SWEEP_FILE, is_sweep

        self.path = Path(path)
        if not is_sweep(self.path):
            raise InputError(str(self.path), f"not a sweep (no {SWEEP_FILE}); make one with thpreplay.sweep() or "
                             "thpreplay sweep")

    def __repr__(self) -> str:
        return f"<thpreplay.Sweep {str(self.path)!r}>"

    @property
    def tables(self) -> list[str]:
        """The tables and views of a sweep (outcomes, outcome_summary, memory_series over every partition,
        the captures' ingest tables, fleet_settings)."""
        from thpreplay.query import SWEEP_VIEWS

        return [*schemas.all_tables(), *SWEEP_VIEWS]

    def sql(self, query: str) -> pl.DataFrame:
        """DuckDB SQL over the sweep's views, as `thpreplay query SWEEP`.

        >>> sw.sql("select * from fleet_settings")
        """
        from thpreplay import query as q

        return q.run([self.path], query)

    def table(self, name: str) -> pl.LazyFrame:
        """One table or view of the sweep (read now through its DuckDB view: the partitions' hive columns
        capture, policy and settings included), as a LazyFrame.

        >>> sw.table("outcome_summary").filter(pl.col("policy") == "relaxed-5.3-rc5").collect()
        """
        if name not in self.tables:
            raise InputError(name, f"not a table of a sweep (tables: {', '.join(self.tables)})")
        return self.sql(f'SELECT * FROM "{name}"').lazy()

    def report(self, path: PathLike | None = None) -> Path:
        """Write the fleet page (default SWEEP/report.html), as `thpreplay report SWEEP`."""
        from thpreplay.report import build

        return build(self.path, path).path


def open(path: PathLike) -> Dataset:  # noqa: A001 (thpreplay.open, as a notebook says it)
    """Open a dataset made by `thpreplay ingest`; an InputError names what is wrong with it.

    >>> ds = thpreplay.open("out/qemu-6.1-2node")
    """
    return Dataset(path)


def ingest(paths: PathLike | list[PathLike], output: PathLike, *, force: bool = False, **options) -> Dataset:
    """Ingest a capture (a bundle directory, perf.data or trace text; several files of one capture as a
    list) into the dataset `output`, as `thpreplay ingest`; returns it opened (.ingest_summary holds
    what ingest printed). options: topology_file, kernel_release, wait, input_timeout.

    >>> ds = thpreplay.ingest("sample_traces/qemu-6.1-2node", "out/qemu-6.1-2node", force=True)
    """
    from thpreplay.ingest import ingest as run

    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    summary = run([str(p) for p in items], Path(output), force=force, **options)
    return Dataset(output, ingest_summary=summary)


def open_sweep(path: PathLike) -> Sweep:
    """Open a sweep directory made by `thpreplay sweep`.

    >>> sw = thpreplay.open_sweep("out/fleet")
    """
    return Sweep(path)


def sweep(inputs: list[PathLike], output: PathLike, **options) -> Sweep:
    """Run a sweep (every capture x policy x THP setting on Dask), as `thpreplay sweep`; returns it opened.
    Failed tasks do not raise: see the summary with thpreplay.sweep.sweep() for them. options: policies,
    kernels, enabled, defrag, params_file, scheduler, workers.

    >>> sw = thpreplay.sweep(["out/qemu-6.1-2node"], "out/fleet", defrag=["madvise", "never"])
    """
    from thpreplay.sweep import sweep as run

    run([str(p) for p in inputs], output, **options)
    return Sweep(output)


def policies() -> pl.DataFrame:
    """Every THP fault policy (built-in and plugins) as `thpreplay policies` lists them: name, kernels,
    builtin, commits.

    >>> thpreplay.policies()["name"].to_list()[:2]
    ['prefer-local-4.0', 'thisnode-4.1']
    """
    from thpreplay.policy import all_policies
    from thpreplay.policy.registry import is_builtin

    found = all_policies()
    return pl.DataFrame({"name": [p.name for p in found], "kernels": [p.kernels for p in found],
                         "builtin": [is_builtin(p) for p in found], "commits": [list(p.commits) for p in found]},
                        schema={"name": pl.String, "kernels": pl.String, "builtin": pl.Boolean,
                                "commits": pl.List(pl.String)})
