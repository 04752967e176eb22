"""The promise of issue 14 as one test: every command, given hostile paths and damaged inputs, answers
with one line on stderr and exit 1 (2 for a usage error), never a traceback or an "internal error",
never a half-written output, never a changed input.

Two parts:
- a matrix: every command x every kind of hostile argument (a missing path, a file where a directory
  is expected, a directory that is not a dataset, a name with glob characters, a path past PATH_MAX, a
  path that is not UTF-8, a device, a /proc file, damaged datasets of every kind), checked for the
  invariants above, in-process (fast);
- the index of the issue's findings (FINDINGS): each names the test that gives its exact answer, and
  a test checks that every one of those tests exists, so a finding cannot lose its test silently.
The count of both parts is in the README's "Reliability" section.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from conftest import DATA, ROOT
from thpreplay.cli import app

HAND = DATA / "bundles" / "qemu61-hand"


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    try:
        path.exists()
    except OSError:  # a name the system refuses (past PATH_MAX): nothing there to change
        return "unnamable"
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file():
                h.update(str(p.relative_to(path)).encode() + p.read_bytes())
    elif path.is_file():
        h.update(path.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """A small real dataset (the hand-cut qemu 6.1 bundle), ingested and simulated under two policies."""
    ds = tmp_path_factory.mktemp("good") / "ds"
    runner = CliRunner()
    res = runner.invoke(app, ["ingest", str(HAND), "-o", str(ds), "-q"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["simulate", str(ds), "-q", "--policy", "no-local-reclaim-7.0",
                              "--policy", "thisnode-noretry-5.6"])
    assert res.exit_code == 0, res.output
    return ds


def _damaged(good: Path, tmp: Path, how: str) -> Path:
    ds = tmp / "damaged"
    shutil.copytree(good, ds)
    part = sorted((ds / "page_alloc").glob("*.parquet"))[0]
    if how == "truncated-part":
        part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    elif how == "foreign-part":
        part.write_bytes(b"PAR1" + b"\0" * 64 + b"PAR1")
    elif how == "text-part":
        part.write_text("not parquet\n")
    elif how == "no-dataset-json":
        (ds / "dataset.json").unlink()
    elif how == "dataset-json-garbage":
        (ds / "dataset.json").write_bytes(b"\xff{not json")
    elif how == "dataset-json-list":
        (ds / "dataset.json").write_text("[1, 2]\n")
    elif how == "table-missing":
        shutil.rmtree(ds / "page_alloc")
    elif how == "simulation-json-garbage":
        sim = next(ds.rglob("simulation.json"))
        sim.write_text("{\"policies\": ")
    elif how == "outcomes-truncated":
        out = sorted(ds.rglob("outcomes/**/*.parquet"))[0]
        out.write_bytes(out.read_bytes()[:100])
    else:
        raise AssertionError(how)
    return ds


PATH_KINDS = ["missing", "regular-file", "not-a-dataset", "glob-name", "past-path-max", "not-utf8",
              "dev-null", "proc-file"]
DAMAGE = ["truncated-part", "foreign-part", "text-part", "no-dataset-json", "dataset-json-garbage",
          "dataset-json-list", "table-missing", "simulation-json-garbage", "outcomes-truncated"]


def _hostile_path(tmp: Path, kind: str, good: Path) -> Path | str:
    if kind == "missing":
        return tmp / "nothing-here"
    if kind == "regular-file":
        f = tmp / "plain.txt"
        f.write_text("hello\n")
        return f
    if kind == "not-a-dataset":
        d = tmp / "somedir"
        d.mkdir()
        (d / "notes.txt").write_text("mine\n")
        return d
    if kind == "glob-name":
        shutil.copytree(good, tmp / "run1")  # a neighbour that `run[1]` would match as a glob
        return tmp / "run[1]"
    if kind == "past-path-max":
        return str(tmp) + ("/" + "x" * 250) * 20
    if kind == "not-utf8":
        return str(tmp / "caf\udce9")  # the bytes b"caf\xe9" as Python passes them from argv
    if kind == "dev-null":
        return "/dev/null"
    if kind == "proc-file":
        return "/proc/self/status"
    if kind in DAMAGE:
        return _damaged(good, tmp, kind)
    raise AssertionError(kind)


# every command that reads a dataset, with the dataset's place marked
DATASET_COMMANDS = {
    "simulate": ["simulate", "{ds}", "-q", "--policy", "no-local-reclaim-7.0"],
    "validate": ["validate", "{ds}"],
    "explain": ["explain", "{ds}", "0"],
    "query": ["query", "{ds}", "select count(*) from page_alloc"],
    "query-outcomes": ["query", "{ds}", "select count(*) from outcomes"],
    "report": ["report", "{ds}", "-o", "{tmp}/r.html", "-q"],
    "ingest-input": ["ingest", "{ds}", "-o", "{tmp}/out", "-q"],
}
# every command that writes, with its output's place marked
OUTPUT_COMMANDS = {
    "ingest-output": ["ingest", str(HAND), "-o", "{out}", "-q"],
    "ingest-output-force": ["ingest", str(HAND), "-o", "{out}", "-q", "--force"],
    "query-output": ["query", "{good}", "select 1 as x", "-o", "{out}"],
    "report-output": ["report", "{good}", "-o", "{out}", "-q"],
    "sweep-output": ["sweep", "{good}", "-o", "{out}", "--policy", "no-local-reclaim-7.0", "--workers", "1"],
}
# cells where the hostile value is a fine argument: the command succeeds (and the matrix checks that the
# inputs were still left untouched)
SUCCEEDS = {
    ("ingest-output", "missing"), ("ingest-output-force", "missing"), ("query-output", "missing"),
    ("report-output", "missing"), ("sweep-output", "missing"),
    ("ingest-output", "glob-name"), ("ingest-output-force", "glob-name"),
    ("query-output", "glob-name"), ("report-output", "glob-name"), ("sweep-output", "glob-name"),
    ("query-output", "not-utf8"), ("report-output", "not-utf8"),  # a file: any name (datasets need UTF-8)
    ("query-output", "regular-file"), ("report-output", "regular-file"),  # replaces a file, as -o does
    ("query-output", "dev-null"), ("report-output", "dev-null"),
    ("validate", "simulation-json-garbage"), ("validate", "outcomes-truncated"),  # validate re-simulates
    ("simulate", "simulation-json-garbage"), ("simulate", "outcomes-truncated"),  # and simulate rewrites
}
# validate's exit status is 1 when a figure is out of tolerance (the hand-cut bundle has such figures):
# an answer, printed as its table on stdout, not an error
ANSWERS_WITH_1 = {"validate"}


def _invoke(argv: list[str]):
    """In-process through Typer's runner; a path that is not UTF-8 goes to the real console script as the
    bytes a shell would pass (the runner's captured streams cannot carry such a path, a terminal can)."""
    if not any("\udce9" in a for a in argv):
        return CliRunner().invoke(app, argv)
    script = Path(sys.executable).parent / "thpreplay"
    env = {k: v for k, v in os.environ.items() if k != "THPREPLAY_DEBUG"}
    proc = subprocess.run([str(script), *map(os.fsencode, argv)], capture_output=True, env=env, timeout=300)
    return SimpleNamespace(exit_code=proc.returncode, exception=None, stdout=proc.stdout.decode(errors="replace"),
                           stderr=proc.stderr.decode(errors="replace"))


def _fill(argv: list[str], **values) -> list[str]:
    return [a.format(**{k: str(v) for k, v in values.items()}) for a in argv]


def _check_answer(res, cell) -> None:
    """The invariants every answer keeps: no exception escaped the command line, exit 0/1/2, and a
    failure is one thpreplay line (or click's usage block)."""
    assert res.exception is None or isinstance(res.exception, SystemExit), (cell, repr(res.exception))
    assert res.exit_code in (0, 1, 2), (cell, res.exit_code, res.stderr)
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr, (cell, res.stderr)
    if res.exit_code == 1 and not (cell[0] in ANSWERS_WITH_1 and cell in SUCCEEDS and not res.stderr):
        lines = [s for s in res.stderr.splitlines() if not s.startswith("hint: ")]
        assert len(lines) == 1 and lines[0].startswith("thpreplay: "), (cell, res.stderr)
    if cell in SUCCEEDS:
        assert res.exit_code == 0 or (cell[0] in ANSWERS_WITH_1 and not res.stderr), (cell, res.stderr)
    else:
        assert res.exit_code != 0, (cell, res.stdout)


@pytest.mark.parametrize("kind", PATH_KINDS + DAMAGE)
@pytest.mark.parametrize("command", sorted(DATASET_COMMANDS))
def test_every_dataset_command_answers_a_hostile_dataset_in_one_line(command, kind, good, tmp_path):
    ds = _hostile_path(tmp_path, kind, good)
    before = _digest(Path(ds)) if kind not in ("dev-null", "proc-file") else None
    res = _invoke(_fill(DATASET_COMMANDS[command], ds=ds, tmp=tmp_path))
    _check_answer(res, (command, kind))
    if before is not None and command not in ("simulate", "validate"):  # those two write results into it
        assert _digest(Path(ds)) == before, "the input changed"


@pytest.mark.parametrize("kind", PATH_KINDS)
@pytest.mark.parametrize("command", sorted(OUTPUT_COMMANDS))
def test_every_writing_command_answers_a_hostile_output_in_one_line(command, kind, good, tmp_path):
    out = _hostile_path(tmp_path, kind, good)
    good_before = _digest(good)
    neighbours_before = {p.name: _digest(p) for p in tmp_path.iterdir()}
    res = _invoke(_fill(OUTPUT_COMMANDS[command], out=out, good=good))
    _check_answer(res, (command, kind))
    assert _digest(good) == good_before, "the input dataset changed"
    if kind == "glob-name":
        assert _digest(tmp_path / "run1") == neighbours_before["run1"], "a glob neighbour was written"
    if res.exit_code != 0 and kind in ("not-a-dataset", "regular-file"):
        assert _digest(Path(out)) == neighbours_before[Path(out).name], "a refused output was changed"
    leftovers = [p.name for p in tmp_path.iterdir() if ".tmp" in p.name or ".old" in p.name]
    assert leftovers == [], leftovers


# --------------------------------------------------------------------------------------------------
# The findings, each with the test that shows its answer (module::function).

FINDINGS = {
    # data loss
    "ingest --force over a directory that is not a dataset": "test_cli::test_force_replaces_only_a_dataset",
    "ingest BUNDLE -o BUNDLE --force": "test_cli::test_force_never_replaces_its_own_input",
    "query -o half-written on a failed write": "test_cli::test_query_output_on_a_full_disk_keeps_the_old_file",
    # silently wrong data
    "LOST count past int64": "test_parse::test_a_lost_count_past_int64_is_counted_not_zeroed",
    "swapped vmstat snapshots": "test_cli::test_swapped_vmstat_snapshots_are_named_and_left_out",
    "zoneinfo without the nodes the cpulists name": "test_cli::test_a_node_with_cpus_but_no_zones_is_warned_about",
    "dataset name with glob characters": "test_query::test_a_directory_name_with_glob_characters_is_a_name",
    "pipe read once": "test_cli::test_a_pipe_is_read_once_and_whole",
    "values no kernel prints (order 11..64 and -1, negative pfn, timestamps that wrap)":
        "test_parse::test_values_no_kernel_prints_are_rejects_with_the_reason",
    "--params NaN, negative, 1e308, seed inf": "test_simulate::test_params_out_of_range_are_refused",
    "[FAILED TO PARSE] lines": "test_bad_input::test_failed_to_parse_payload",
    # internal errors
    "non-UTF-8 kernel_release, manifest of wrong types": "test_cli::test_damaged_bundle_files_are_one_line",
    "Node 99999 in zoneinfo, cpulist 0-99999999": "test_cli::test_snapshots_past_the_kernels_bounds_are_one_line",
    "/dev/zero as input": "test_cli::test_an_endless_line_is_refused_not_read_into_memory",
    "SIGINT during start-up": "test_cli::test_ctrl_c_while_starting_is_one_line",
    "SIGINT in a command": "test_cli::test_ctrl_c_is_one_line_and_130",
    "record --buffer-kb -1, --duration -1, -- /nonexistent": "test_cli::test_record_checks_its_options_before_writing",
    # unhelpful
    "a FIFO whose writer exited / stalled input": "test_hostile::test_a_silent_fifo_times_out_only_when_asked",
    "an inferred topology of terabytes (fuzz-asan)": "test_hostile::test_a_topology_the_model_cannot_hold_is_one_line",
    "an allocation line that lost its migratetype (fuzz-asan)": "test_hostile::test_an_allocation_without_migratetype_is_a_reject",
    "node distances that contradict the bundle": "test_hostile::test_node_distances_that_contradict_the_bundle_are_one_line",
    "3,000 candidate trace files": "test_cli::test_a_bundle_with_many_traces_is_one_short_line",
    "function_graph traces": "test_parse::test_another_tracers_output_is_named",
    "sweep --workers 1000, --scheduler garbage": "test_sweep::test_cli_errors",
    "perf script -F without comm, pid/tid, without cpu or time": "test_prefix_forms::test_perf_field_lists",
    "perf script without the time column": "test_prefix_forms::test_perf_without_time_is_refused",
    "a pid wider than its column (4294967396 stored as 100)": "test_prefix_forms::test_pid_wider_than_the_column",
    "order 40000, gfp 0xffffffffffffffff, numbers past their columns":
        "test_prefix_forms::test_numbers_past_their_columns_are_rejects",
    "every typed field of every event, hostile numbers":
        "test_prefix_forms::test_every_typed_field_of_every_event_survives_hostile_numbers",
    "a timestamp past the int64 nanosecond range": "test_prefix_forms::test_timestamp_past_int64_names_the_value",
    "C cutter and polars path read mutated lines alike": "test_prefix_forms::test_c_cutter_and_polars_read_mutated_lines_alike",
    "event-only lines (no task/cpu/time prefix)": "test_prefix_forms::test_event_lines_without_prefix",
    "2.6.33 mm_page_free_direct is a free": "test_kernel_eras::test_2_6_33_mm_page_free_direct_is_a_free",
    "4.4 gfp names pick the 4.4 table": "test_kernel_eras::test_4_4_gfp_names_pick_the_4_4_table",
    "4.9 masks need the release (4.8 vs 4.10 bit layouts)":
        "test_kernel_eras::test_4_9_needs_the_kernel_release_to_tell_4_8_from_4_10",
    "raw hex masks say which gfp table was assumed": "test_kernel_eras::test_raw_hex_masks_say_which_table_was_assumed",
    "ftrace stack traces kept as a table": "test_stacks::test_ftrace_sym_offset_and_user_stacks_on_two_cpus",
    "perf callchains kept as a table": "test_stacks::test_perf_callchains_kernel_and_user",
    "stack frames with no event are counted rejects": "test_stacks::test_frames_with_no_event_before_them_are_rejects",
    "vendor extra fields kept": "test_stacks::test_extra_fields_are_kept",
    "a truncated Parquet part": "test_datasets::test_a_part_cut_short",
    "a foreign Parquet part": "test_datasets::test_a_part_of_another_table",
    "a dropped column": "test_datasets::test_a_dropped_column",
    "a retyped column": "test_datasets::test_a_retyped_column",
    "a corrupt simulation.json": "test_datasets::test_a_damaged_simulation_is_refused_by_its_readers_and_replaced_by_simulate",
    "ingest --force while simulate runs":
        "test_datasets::test_ingest_force_is_refused_while_a_simulate_uses_the_dataset_and_waits_with_wait",
    "a simulation never written into a dataset replaced meanwhile":
        "test_datasets::test_simulate_does_not_write_into_a_dataset_moved_away_meanwhile",
    "stdout on a full device": "test_writers::test_stdout_on_a_full_device_is_one_line",
    "ENOSPC on every writer": "test_writers::test_simulate_and_report_on_a_full_disk_keep_what_was_there",
    "EIO in writeback (fsync before the rename)": "test_hostile::test_a_write_that_fails_in_writeback_is_one_line_and_no_dataset",
    "EFBIG on every writer": "test_writers::test_query_output_past_the_file_size_limit_keeps_the_old_file",
    "query -o to a directory or a /proc file": "test_writers::test_query_output_paths",
    "--file, SQL and --params that are not UTF-8": "test_writers::test_sql_and_params_that_are_not_text",
    "record interrupted by Ctrl-C": "test_record::test_ctrl_c_ends_the_recording_and_keeps_the_bundle",
    "Ctrl-C in a sweep (119 tracebacks)": "test_writers::test_ctrl_c_in_a_sweep_is_one_line_and_130",
    # every command, hostile paths and damaged datasets
    "every command: hostile datasets": "test_hostile::test_every_dataset_command_answers_a_hostile_dataset_in_one_line",
    "every command: hostile outputs": "test_hostile::test_every_writing_command_answers_a_hostile_output_in_one_line",
}


@pytest.mark.parametrize("finding", sorted(FINDINGS))
def test_every_finding_has_its_test(finding):
    module, function = FINDINGS[finding].split("::")
    assert callable(getattr(importlib.import_module(module), function, None)), FINDINGS[finding]


# --------------------------------------------------------------------------------------------------
# A stalled input: waited for like cat, unless the user bounds the silence with --input-timeout.

def _cli_path() -> str:
    return str(Path(sys.executable).parent / "thpreplay")


def test_a_silent_fifo_times_out_only_when_asked(tmp_path):
    fifo = tmp_path / "trace.fifo"
    os.mkfifo(fifo)
    # no writer at all: with --input-timeout, one line and no dataset
    r = subprocess.run([_cli_path(), "ingest", str(fifo), "-o", str(tmp_path / "ds"), "--input-timeout", "1"],
                       capture_output=True, timeout=60)
    assert (r.returncode, r.stderr.decode()) == (
        1, f"thpreplay: {fifo}: no data for 1 s (--input-timeout); nothing written\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trace.fifo"]
    # a writer that sends part of a trace and then stalls: the same, after the part
    p = subprocess.Popen([_cli_path(), "ingest", str(fifo), "-o", str(tmp_path / "ds"), "--input-timeout", "1"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with open(fifo, "wb") as w:
        w.write(b"".join((DATA / "bad" / "fragment-6.18.txt").read_bytes().splitlines(keepends=True)[:20]))
        w.flush()
        _, err = p.communicate(timeout=60)  # the writer is still open: the reader gives up by itself
    assert (p.returncode, err.decode()) == (1, f"thpreplay: {fifo}: no data for 1 s (--input-timeout); nothing written\n")
    # without the option a FIFO is waited for: the writer comes late and the trace is read whole
    p = subprocess.Popen([_cli_path(), "ingest", str(fifo), "-o", str(tmp_path / "ds"), "-q"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    import time
    time.sleep(2)
    assert p.poll() is None, "ingest gave up on a FIFO nobody had opened yet"
    with open(fifo, "wb") as w:
        w.write((DATA / "bad" / "fragment-6.18.txt").read_bytes())
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err.decode()
    assert (tmp_path / "ds" / "dataset.json").exists()


def test_input_timeout_must_be_seconds_above_0(tmp_path):
    res = CliRunner().invoke(app, ["ingest", "-", "-o", str(tmp_path / "ds"), "--input-timeout", "-1"])
    assert (res.exit_code, res.stderr) == (1, "thpreplay: --input-timeout -1: give a number of seconds above 0\n")


# --------------------------------------------------------------------------------------------------
# Findings of `make fuzz-asan` beyond the parsers.

def _fragment_with(tmp: Path, line: int, old: str, new: str) -> Path:
    lines = (DATA / "bad" / "fragment-6.18.txt").read_text().splitlines(keepends=True)
    assert old in lines[line - 1]
    lines[line - 1] = lines[line - 1].replace(old, new)
    path = tmp / "trace.txt"
    path.write_text("".join(lines))
    return path


def test_a_topology_the_model_cannot_hold_is_one_line(tmp_path):
    """A pfn no kernel of this machine's size has (here 0xffffff0000, 4 PiB up) in a trace without
    zoneinfo: the inferred node spans it, and simulate says what that would take instead of asking
    numpy for terabytes (MemoryError) or the kernel (the OOM killer)."""
    trace = _fragment_with(tmp_path, 15, "pfn=0x2283c8", "pfn=0xffffff0000")
    ds = tmp_path / "ds"
    assert CliRunner().invoke(app, ["ingest", str(trace), "-o", str(ds), "-q"]).exit_code == 0
    res = CliRunner().invoke(app, ["simulate", str(ds), "-q", "--policy", "no-local-reclaim-7.0"])
    assert res.exit_code == 1
    first = res.stderr.splitlines()[0]
    assert first.startswith(f"thpreplay: {ds}/topology: the zones span 1,099,510,"), first
    assert "inferred from the trace's pfns (" in first and "pass --topology" in first, first
    assert "GiB is available" in first and len(res.stderr.splitlines()) == 1


def test_an_allocation_without_migratetype_is_a_reject(tmp_path):
    """Every kernel since the event came (2.6.33) prints migratetype; a line that lost it (here to
    bytes that are not UTF-8, as the fuzzer made it) is a reject, not a null the replay would cast to
    a silently wrong number."""
    trace = _fragment_with(tmp_path, 17, " migratetype=1 ", " \ufffd\ufffdmigratetype=1 ")
    ds = tmp_path / "ds"
    assert CliRunner().invoke(app, ["ingest", str(trace), "-o", str(ds), "-q"]).exit_code == 0
    import polars as pl
    rejects = pl.read_parquet(str(ds / "rejects" / "*.parquet"))
    assert rejects.select("line", "reason").rows() == [(17, "mm_page_alloc: missing field migratetype")]


def test_the_readme_counts_these_cases():
    """README's Reliability section gives the size of the matrix and of the findings' index: keep it true."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    matrix = len(DATASET_COMMANDS) * len(PATH_KINDS + DAMAGE) + len(OUTPUT_COMMANDS) * len(PATH_KINDS)
    text = " ".join(readme.split())
    assert f"damaged dataset ({matrix} cases), and an index of the {len(FINDINGS)} findings of issue 14" in text
    assert f"| `tests/test_hostile.py` (matrix) | {matrix} |" in readme


@pytest.mark.parametrize("node0, message", [
    ("10 20 30\n", "node0.distance:1: 3 distances for the bundle's 2 nodes (0, 1)"),
    ("10 -5\n", "node0.distance:1: node distance -5: distances are 0..255"),
    ("20 20\n", "node0.distance:1: node 0's distance to itself is 20, not 10 (LOCAL_DISTANCE)"),
])
def test_node_distances_that_contradict_the_bundle_are_one_line(tmp_path, node0, message):
    """Distances are the kernel's u8 node_distance(), one per node, 10 to itself: a file that says
    otherwise would silently change which node is nearer (the remote-node order of the zonelists)."""
    bundle = tmp_path / "b"
    shutil.copytree(HAND, bundle)
    (bundle / "node0.distance").write_text(node0)
    res = CliRunner().invoke(app, ["ingest", str(bundle), "-o", str(tmp_path / "ds"), "-q"])
    assert (res.exit_code, res.stderr) == (1, f"thpreplay: {bundle}/{message}\n")
    assert not (tmp_path / "ds").exists()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("losetup") or not shutil.which("mkfs.ext4"),
                    reason="needs root, losetup and mkfs.ext4")
def test_a_write_that_fails_in_writeback_is_one_line_and_no_dataset(tmp_path):
    """An ext4 on a loop device whose backing file sits on a 1 MiB tmpfs: the data is taken into the page
    cache, and fails only when the loop device writes it back (the block layer's I/O error, which ext4
    logs as error -5). Every table part is fsynced before the dataset is renamed into place, so ingest
    hears of it: one line, exit 1, no dataset, nothing left behind."""
    back, mnt = tmp_path / "back", tmp_path / "mnt"
    back.mkdir()
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(back)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    loop = None
    try:
        subprocess.run(["truncate", "-s", "32M", str(back / "img")], check=True)
        r = subprocess.run(["losetup", "-f", "--show", str(back / "img")], capture_output=True, text=True)
        if r.returncode:
            pytest.skip(f"no loop device: {r.stderr.strip()}")
        loop = r.stdout.strip()
        subprocess.run(["mkfs.ext4", "-q", "-O", "^has_journal", "-E", "lazy_itable_init=1", loop], check=True)
        subprocess.run(["mount", "-o", "errors=continue", loop, str(mnt)], check=True)
        ds = mnt / "ds"
        sample = ROOT / "sample_traces" / "host-6.18-pagecache-defrag-always"  # a 2.3 MB dataset: past 1 MiB
        r = subprocess.run([_cli_path(), "ingest", str(sample), "-o", str(ds), "-q"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 1, r.stderr
        assert r.stderr in (f"thpreplay: {ds}: write failed: No space left on device\n",
                            f"thpreplay: {ds}: write failed: Input/output error\n"), r.stderr
        assert sorted(p.name for p in mnt.iterdir()) == ["lost+found"]
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
        if loop:
            subprocess.run(["losetup", "-d", loop], capture_output=True)
        subprocess.run(["umount", str(back)], capture_output=True)
