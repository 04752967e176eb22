"""Command line: thin wrappers over the library. Library errors become one line on stderr and exit 1."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import sys
from pathlib import Path
from typing import Annotated

import typer

from thpreplay import _cli_values
from thpreplay.errors import ThpreplayError

_cli_values.install()  # strings, paths and flags converted without importing pydantic

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Replay Linux page-allocation traces through per-kernel-era THP policies.",
)

BIG_INPUT = 64 << 20


def _version(value: bool) -> None:
    if value:
        from thpreplay import __version__

        typer.echo(f"thpreplay {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print thpreplay's version and exit")] = False,
) -> None:
    """Replay Linux page-allocation traces through per-kernel-era THP policies."""


def printable(text: str) -> str:
    """text as one printable line: bytes of a path that are not UTF-8 (Python's surrogate escapes) and
    control characters, a newline in a file name included, are shown as \\xNN."""
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that no file name gave
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\x{ord(m.group()):02x}", text)


def _fail(err: ThpreplayError) -> None:
    typer.echo(f"thpreplay: {printable(err.message)}", err=True)
    if err.hint:
        typer.echo(f"hint: {printable(err.hint)}", err=True)
    raise typer.Exit(1)


@app.command()
def ingest(
    inputs: Annotated[list[str], typer.Argument(help="Bundle dir, perf.data, perf script / ftrace / trace-cmd text (.gz/.zst/.xz), or -")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Dataset directory to write")],
    topology: Annotated[str | None, typer.Option("--topology", help="A saved /proc/zoneinfo giving nodes and pfn spans")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing dataset")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="--force: wait for commands using the dataset instead of refusing")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Print nothing on success")] = False,
    kernel_release: Annotated[str | None, typer.Option(
        "--kernel-release", help="Kernel that made the trace (e.g. 3.2, 4.4.0-21), when no bundle says: picks "
        "the gfp table")] = None,
    input_timeout: Annotated[float | None, typer.Option(
        "--input-timeout", help="Seconds a pipe, FIFO or stdin may stay silent before ingest gives up "
        "(default: wait, as cat does)")] = None,
) -> None:
    """Read traces into typed Parquet tables (one per event kind) plus topology, metadata and rejects."""
    from thpreplay.ingest import ingest as run
    from thpreplay.report_text import print_ingest_summary, progress_for

    try:
        with progress_for(inputs, BIG_INPUT, enabled=not quiet) as advance:
            summary = run(inputs, output, topology_file=topology, force=force, progress=advance, wait=wait,
                          on_wait=lambda msg: typer.echo(f"thpreplay: {msg}", err=True), kernel_release=kernel_release,
                          input_timeout=input_timeout)
    except ThpreplayError as e:
        _fail(e)
    except KeyboardInterrupt:
        typer.echo("thpreplay: interrupted; no dataset written", err=True)
        raise typer.Exit(130) from None
    if not quiet:
        print_ingest_summary(summary)


@app.command()
def record(
    command: Annotated[list[str] | None, typer.Argument(help="Command to trace (after --)")] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="Bundle directory to create")] = Path("capture"),
    duration: Annotated[float | None, typer.Option("--duration", help="Seconds to record when no command is given")] = None,
    backend: Annotated[str, typer.Option("--backend", help="perf (perf.data) or ftrace (tracefs text)")] = "perf",
    buffer_kb: Annotated[int, typer.Option("--buffer-kb", help="ftrace: ring buffer per CPU, KiB")] = 131072,
    pid: Annotated[str | None, typer.Option("-p", "--pid", metavar="PID[,PID]", help="Only these processes' "
                                            "allocations, frees and page faults (and the kernel's daemons'); "
                                            "until they exit unless --duration or a COMMAND")] = None,
    cgroup: Annotated[str | None, typer.Option("--cgroup", metavar="PATH", help="Only this cgroup's tasks' "
                                               "allocations, frees and page faults (perf)")] = None,
    workload_only: Annotated[bool, typer.Option("--workload-only", help="Only COMMAND's process tree's "
                                                "allocations, frees and page faults (perf)")] = False,
) -> None:
    """Record page-allocation events into a capture bundle (needs root): system-wide, or limited to a
    workload with -p, --cgroup or --workload-only (the daemons' and the zone-wide events stay system-wide)."""
    from thpreplay.record import record as run

    if not command and duration is None and pid is None:
        typer.echo("thpreplay: give -- COMMAND ... or --duration SECONDS", err=True)
        raise typer.Exit(2)
    if backend not in ("perf", "ftrace"):
        typer.echo("thpreplay: --backend is perf or ftrace", err=True)
        raise typer.Exit(2)
    try:
        result = run(output, command=command or None, duration=duration, backend=backend, buffer_kb=buffer_kb,
                     log=lambda msg: typer.echo(msg, err=True), pids=pid, cgroup=cgroup, workload_only=workload_only)
    except ThpreplayError as e:
        _fail(e)
    except KeyboardInterrupt:  # before the recording began
        typer.echo("thpreplay: interrupted; no bundle written", err=True)
        raise typer.Exit(130) from None
    if result.interrupted_after is not None:
        typer.echo(f"bundle: {result.path}  ({result.trace_name}, interrupted after {result.interrupted_after:.1f} s)")
        typer.echo(f"thpreplay: interrupted; the bundle keeps the {result.interrupted_after:.1f} s recorded before it",
                   err=True)
        raise typer.Exit(130)
    typer.echo(f"bundle: {result.path}  ({result.trace_name}, command exit {result.exit_code})")
    if result.exit_code not in (0, None):
        raise typer.Exit(result.exit_code if result.exit_code > 0 else 128 - result.exit_code)  # a signal: 128+N


@app.command()
def policies(
    resolve: Annotated[str | None, typer.Option("--resolve", metavar="VERSION",
                                                help="The policy of this kernel (a release such as 6.1.0-50-amd64 or "
                                                "6.12.75, a /proc/version line, or a bundle, dataset or file naming "
                                                "it) and why")] = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="--resolve: print only the policy name (warnings "
                                        "go to stderr)")] = False,
) -> None:
    """List the THP fault policies (built-in and plugins): name, kernels, commits."""
    from thpreplay.policy import all_policies
    from thpreplay.policy.registry import explain_kernel

    try:
        if resolve is not None:
            r = explain_kernel(resolve)
            typer.echo(r.policy)
            if quiet:
                for w in r.warnings:
                    typer.echo(f"thpreplay: warning: {printable(w)}", err=True)
            else:
                typer.echo("\n".join(printable(line) for line in r.lines()))
            return
        found = all_policies()
    except ThpreplayError as e:
        _fail(e)
    width = max(len(p.name) for p in found)
    for p in found:
        typer.echo(f"{p.name:<{width}}  {p.kernels}")
        for commit in p.commits:
            typer.echo(f"{'':<{width}}    {commit}")


def _madvised_option(value: str) -> bool | None:
    if value not in ("auto", "yes", "no"):
        typer.echo("thpreplay: --madvised is auto, yes or no", err=True)
        raise typer.Exit(2)
    return None if value == "auto" else value == "yes"


def _samples_options(samples: int | None, seed: int | None) -> None:
    """--samples and --seed as usage errors (exit 2), in the library's words (params.check_samples)."""
    from thpreplay.sim.params import check_samples

    try:
        check_samples(samples, seed)
    except ThpreplayError as e:
        typer.echo(f"thpreplay: {e.message}", err=True)
        raise typer.Exit(2) from None


@app.command()
def simulate(
    dataset: Annotated[Path, typer.Argument(help="Dataset directory made by thpreplay ingest")],
    policy: Annotated[list[str] | None, typer.Option("--policy", help="Policy name (repeatable)")] = None,
    kernel: Annotated[list[str] | None, typer.Option("--kernel", help="Kernel version; its era's policy (repeatable)")] = None,
    enabled: Annotated[str | None, typer.Option("--enabled", help="THP enabled setting (default: the capture's)")] = None,
    defrag: Annotated[str | None, typer.Option("--defrag", help="THP defrag setting (default: the capture's)")] = None,
    madvised: Annotated[str, typer.Option("--madvised", help="auto (from the capture), yes or no")] = "auto",
    params: Annotated[str | None, typer.Option("--params", help="TOML file overriding cost/model parameters")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for a simulate running on the dataset instead of refusing")] = False,
    replace: Annotated[bool, typer.Option("--replace", help="Drop the stored results of the policies not simulated "
                                          "now (default: keep them when made with the same settings and params)")] = False,
    samples: Annotated[int | None, typer.Option("--samples", metavar="N", help="Also replay N times, each drawing "
                                               "what the capture cannot pin down, for p5/p50/p95 of every figure")] = None,
    seed: Annotated[int | None, typer.Option("--seed", metavar="S", help="Seed of the samples (default 1)")] = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Print nothing on success")] = False,
) -> None:
    """Replay the dataset's demand under each policy (default: every built-in) and write the outcomes; the
    stored results of other policies are kept when made with the same settings and params."""
    madv = _madvised_option(madvised)
    _samples_options(samples, seed)   # before the replay's imports: a usage error is quick
    from thpreplay.simulate import simulate as run

    if quiet:  # no bar and no table: the terminal module (rich, ingest's summary) is not imported
        bar = contextlib.nullcontext((lambda total: None, None))
    else:
        from thpreplay.report_text import progress_counter

        bar = progress_counter("replaying")
    try:
        with bar as (start, advance):
            result = run(dataset, policies=policy, kernels=kernel, enabled=enabled, defrag=defrag, madvised=madv,
                         params_file=params, progress=advance, on_start=start, wait=wait, replace=replace,
                         samples=samples, seed=seed)
    except ThpreplayError as e:
        _fail(e)
    except KeyboardInterrupt:
        typer.echo("thpreplay: interrupted; the dataset's simulation is unchanged", err=True)
        raise typer.Exit(130) from None
    if not quiet:
        from thpreplay.report_text import print_simulation

        print_simulation(result)
        if result.kept:
            typer.echo(f"kept the stored results of {', '.join(result.kept)} (same settings and params; --replace "
                       "drops them)")
        if result.replaced:
            typer.echo(f"note: {printable(result.replaced)}")


@app.command()
def sweep(
    inputs: Annotated[list[str], typer.Argument(help="Capture bundles, trace files or datasets (one capture each)")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Sweep directory to write (or resume)")],
    policy: Annotated[list[str] | None, typer.Option("--policy", help="Policy name (repeatable; default every built-in)")] = None,
    kernel: Annotated[list[str] | None, typer.Option("--kernel", help="Kernel version; its era's policy (repeatable)")] = None,
    enabled: Annotated[list[str] | None, typer.Option("--enabled", help="THP enabled setting (repeatable; default each capture's)")] = None,
    defrag: Annotated[list[str] | None, typer.Option("--defrag", help="THP defrag setting (repeatable; default each capture's)")] = None,
    params: Annotated[str | None, typer.Option("--params", help="TOML file overriding cost/model parameters")] = None,
    scheduler: Annotated[str | None, typer.Option("--scheduler", metavar="ADDRESS", help="Dask scheduler, e.g. tcp://10.0.0.5:8786 (default: a local cluster)")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Worker processes of the local cluster")] = min(2, os.cpu_count() or 1),
    samples: Annotated[int | None, typer.Option("--samples", metavar="N", help="Also replay each partition N "
                                               "times, as simulate --samples, for p5/p50/p95 of every figure")] = None,
    seed: Annotated[int | None, typer.Option("--seed", metavar="S", help="Seed of the samples (default 1)")] = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress bar and no summary on success")] = False,
) -> None:
    """Replay every capture under every policy and THP setting as tasks on Dask distributed; resumable.
    Exit status 1 when any task failed (each is printed; the others still run)."""
    _samples_options(samples, seed)   # before the replay's imports: a usage error is quick
    import logging

    from thpreplay.report_text import print_sweep, sweep_progress
    from thpreplay.sweep import sweep as run

    import distributed  # noqa: F401  (it sets its loggers' levels when imported: quieten them after)

    # Dask's client logs what it recovers from (a lost worker's results rescheduled) on stderr; a task
    # that still fails is reported by the sweep in its own line
    for name in [n for n in logging.root.manager.loggerDict if n.split(".")[0] == "distributed"]:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with sweep_progress(enabled=not quiet) as on_event:
            summary = run(inputs, output, policies=policy, kernels=kernel, enabled=enabled, defrag=defrag,
                          params_file=params, scheduler=scheduler, workers=workers, on_event=on_event,
                          samples=samples, seed=seed)
    except ThpreplayError as e:
        _fail(e)
    except KeyboardInterrupt:
        typer.echo("thpreplay: interrupted; finished partitions are kept (run the same sweep again to resume)", err=True)
        raise typer.Exit(130) from None
    if not quiet:
        print_sweep(summary)
    if summary.failures:
        typer.echo(f"thpreplay: sweep: {len(summary.failures)} failed (see above); run again to retry them", err=True)
        raise typer.Exit(1)


@app.command()
def validate(
    dataset: Annotated[Path, typer.Argument(help="Dataset directory made by thpreplay ingest (from a bundle)")],
    tolerance: Annotated[float, typer.Option("--tolerance", help="Largest relative error allowed")] = 0.10,
    small: Annotated[int, typer.Option("--small", help="Absolute difference always allowed (small counts)")] = 5,
    policy: Annotated[str | None, typer.Option("--policy", help="Policy to validate (default: the capture's kernel's)")] = None,
    kernel: Annotated[str | None, typer.Option("--kernel", help="Kernel version that made the capture, if the bundle lacks it")] = None,
    params: Annotated[str | None, typer.Option("--params", help="TOML file overriding cost/model parameters")] = None,
    samples: Annotated[int | None, typer.Option("--samples", metavar="N", help="Also replay N times as simulate "
                                               "--samples does; say which observed figures lie in p5..p95 (default: "
                                               "the stored simulation's)")] = None,
    seed: Annotated[int | None, typer.Option("--seed", metavar="S", help="Seed of the samples (default 1)")] = None,
) -> None:
    """Replay under the capturing kernel's policy and compare with what that kernel did."""
    _samples_options(samples, seed)   # before the replay's imports: a usage error is quick
    from thpreplay.report_text import print_validation
    from thpreplay.validate import validate as run

    try:
        result = run(dataset, policy=policy, kernel=kernel, tolerance=tolerance, small=small, params_file=params,
                     samples=samples, seed=seed)
    except ThpreplayError as e:
        _fail(e)
    print_validation(result)
    from thpreplay.thp_faults import has_no_demand

    if result.failures or has_no_demand(result.result.inputs.notes):  # nothing validated is no success either
        raise typer.Exit(1)


@app.command()
def explain(
    dataset: Annotated[Path, typer.Argument(help="Dataset directory made by thpreplay ingest")],
    fault: Annotated[int, typer.Argument(help="thp_faults.fault_id of the fault")],
    policy: Annotated[list[str] | None, typer.Option("--policy", help="Replay this policy for the fault (repeatable; default: the stored simulation, else the capture's kernel)")] = None,
    kernel: Annotated[list[str] | None, typer.Option("--kernel", help="Replay the policy of this kernel version (repeatable)")] = None,
) -> None:
    """One THP fault's story: the captured kernel's events beside each policy's path, and why."""
    from thpreplay.explain import explain as run, lines

    try:
        result = run(dataset, fault, policies=policy, kernels=kernel)
    except ThpreplayError as e:
        _fail(e)
    for line in lines(result):
        print(printable(line))


@app.command()
def query(
    dataset: Annotated[Path, typer.Argument(help="Dataset directory, or a sweep directory (queried alone)")],
    sql: Annotated[str | None, typer.Argument(help="SQL; '-' reads it from stdin")] = None,
    file: Annotated[Path | None, typer.Option("--file", help="Read the SQL from a file")] = None,
    more: Annotated[list[Path] | None, typer.Option("-d", "--dataset", help="Another dataset (repeatable)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv, json or parquet")] = "table",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write the result to a file")] = None,
) -> None:
    """DuckDB SQL over the dataset's tables (a view each, with a `dataset` column); see `thpreplay schema`."""
    from thpreplay import query as q
    from thpreplay.inputs import read_small_text

    if fmt not in ("table", "csv", "json", "parquet"):
        typer.echo("thpreplay: --format is table, csv, json or parquet", err=True)
        raise typer.Exit(2)
    if (sql is None) == (file is None):
        typer.echo("thpreplay: give the SQL as an argument, '-' for stdin, or --file", err=True)
        raise typer.Exit(2)
    datasets = [dataset, *(more or [])]
    try:
        if file is not None or sql == "-":
            sql = read_small_text(file if file is not None else "-", q.MAX_SQL_BYTES, "SQL")
        if output is not None:
            q.check_output(output, datasets)
        text = q.write(q.run(datasets, sql), fmt, output)
    except ThpreplayError as e:
        _fail(e)
    if text:
        sys.stdout.write(text)


@app.command()
def report(
    dataset: Annotated[Path, typer.Argument(help="Dataset directory with a simulation, or a sweep directory")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="HTML file (default DATASET/report.html)")] = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Print only where the report is")] = False,
) -> None:
    """One self-contained HTML page comparing every simulated policy (and the terminal summary); for a
    sweep, the fleet page comparing every policy and setting over the captures."""
    from thpreplay.report import build
    from thpreplay.report_text import print_report_summary

    try:
        result = build(dataset, output)
    except ThpreplayError as e:
        _fail(e)
    if not quiet:
        print_report_summary(result)
    typer.echo(f"report: {result.path}")


@app.command()
def schema(table: Annotated[str | None, typer.Argument(help="One table or view")] = None) -> None:
    """Every table and view `thpreplay query` offers, with its columns (from schemas/)."""
    from thpreplay.query import describe

    try:
        typer.echo(describe(table), nl=False)
    except ThpreplayError as e:
        _fail(e)


class StdoutFailed(Exception):
    """Writing to stdout failed (a full disk, a file-size limit, an I/O error, a closed pipe)."""


class _Stdout(io.RawIOBase):
    """File descriptor 1 under sys.stdout. The first write that fails is kept and raised as StdoutFailed
    (not an OSError, so that no library code takes it for its own file); later writes are dropped, so
    that nothing retries them or reports them again when Python exits."""

    def __init__(self) -> None:
        super().__init__()
        self.error: OSError | None = None

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return 1

    def isatty(self) -> bool:
        return os.isatty(1)

    def write(self, data) -> int:
        if self.error is not None:
            return len(data)
        try:
            return os.write(1, data)
        except OSError as e:
            self.error = e
            raise StdoutFailed(e.strerror) from None


def _guard_stdout() -> _Stdout | None:
    """Put sys.stdout over a _Stdout (same encoding and buffering), when it writes to fd 1."""
    try:
        if sys.stdout.fileno() != 1:
            return None
        sys.stdout.flush()
    except (AttributeError, OSError, ValueError):
        return None
    raw = _Stdout()
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(raw), encoding=sys.stdout.encoding, errors=sys.stdout.errors,
                                  line_buffering=sys.stdout.line_buffering)
    return raw


def _named_command() -> list:
    """The registered command that the command line names (thpreplay NAME ...), if any."""
    name = sys.argv[1] if len(sys.argv) > 1 else None
    return [c for c in app.registered_commands if (c.name or c.callback.__name__.lower().replace("_", "-")) == name]


def _run() -> int | str | None:
    """The command; its exit status."""
    # typer builds every command's click parameters (evaluating each signature's annotations) before it
    # runs one: 20-25 ms for the ten. Only the command named is registered while it runs; its help,
    # usage and errors do not show the others. Without a command name (--help, --version, a typo) all are.
    registered = app.registered_commands[:]
    try:
        app.registered_commands[:] = _named_command() or registered
        app()
    except SystemExit as e:
        # typer turns a Ctrl-C that no command handled into exit status 130 without a word
        if isinstance(getattr(e.__context__, "__cause__", None), KeyboardInterrupt):
            print("thpreplay: interrupted", file=sys.stderr)
        return e.code
    except StdoutFailed:  # reported by main
        return 1
    except BrokenPipeError:  # stderr, or a stream of the library's own
        return 1
    except KeyboardInterrupt:  # a command without its own handler, or before it began
        print("thpreplay: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: still one line, with a way to get the traceback
        if os.environ.get("THPREPLAY_DEBUG"):
            raise
        print(f"thpreplay: internal error: {type(e).__name__}: {printable(str(e))} (set THPREPLAY_DEBUG=1 for a "
              "traceback)", file=sys.stderr)
        return 1
    finally:
        app.registered_commands[:] = registered
    return 0


def main() -> None:
    """The console script. Output that could not be written to stdout (a full disk, `| head` closing the
    pipe) is never a success: one line, `thpreplay: stdout: No space left on device` (nothing for a
    closed pipe, whose reader chose to stop), and exit status 1 unless the command already failed."""
    stdout = _guard_stdout()
    code = _run()
    if stdout is not None:
        try:
            sys.stdout.flush()
        except StdoutFailed:
            pass
        if stdout.error is not None:
            if stdout.error.errno != errno.EPIPE:
                print(f"thpreplay: stdout: {stdout.error.strerror}", file=sys.stderr)
            code = code if code not in (0, None) else 1
    sys.exit(code)
