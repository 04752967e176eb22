"""The command line as users see it: exact messages and exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from conftest import DATA

THP = str(Path(sys.executable).parent / "thpreplay")
HAND = str(DATA / "bundles" / "qemu61-hand")


def run(*args: str, env: dict | None = None, input: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([THP, *args], capture_output=True, env=env, input=input, timeout=120)


def test_ingest_prints_what_it_read(tmp_path):
    r = run("ingest", HAND, "-o", str(tmp_path / "ds"))
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr.decode()
    assert "page_alloc" in out and "thp_faults" in out
    assert "format ftrace  gfp table 6.1" in out
    assert "THP faults: 1 huge local, 6 huge remote, 1 fallback" in out
    assert "nodes [0, 1] (bundle zoneinfo.before)" in out


def test_existing_dataset_is_refused_then_replaced_with_force(tmp_path):
    out = tmp_path / "ds"
    assert run("ingest", HAND, "-o", str(out), "-q").returncode == 0
    r = run("ingest", HAND, "-o", str(out), "-q")
    assert r.returncode == 1
    assert r.stderr.decode() == f"thpreplay: {out}: already exists; use --force to replace it\n"
    assert run("ingest", HAND, "-o", str(out), "-q", "--force").returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temporary directories left


def _tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_force_replaces_only_a_dataset(tmp_path):
    """A directory that is not a thpreplay dataset is never replaced, --force or not: nothing in it is
    touched, and nothing is left beside it."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("not a dataset\n")
    r = run("ingest", HAND, "-o", str(mine), "-q", "--force")
    assert r.returncode == 1
    assert r.stderr.decode() == (f"thpreplay: {mine}: exists and is not a thpreplay dataset (no dataset.json); "
                                 "--force replaces only a dataset: remove it yourself or choose another -o\n")
    assert _tree(mine) == {"notes.txt": b"not a dataset\n"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_force_never_replaces_its_own_input(tmp_path):
    """The bundle given as the input, or a dataset that holds the input trace, is refused as the output."""
    bundle = tmp_path / "bundle"
    shutil.copytree(HAND, bundle)
    before = _tree(bundle)
    r = run("ingest", str(bundle), "-o", str(bundle), "-q", "--force")
    assert r.returncode == 1
    assert r.stderr.decode() == (f"thpreplay: {bundle}: is the input {bundle}, or holds it; --force would "
                                 "replace it: choose another -o\n")
    assert _tree(bundle) == before
    ds = tmp_path / "ds"
    assert run("ingest", HAND, "-o", str(ds), "-q").returncode == 0
    trace = next(p for p in bundle.iterdir() if p.name.startswith("trace"))
    inside = ds / trace.name
    shutil.copy(trace, inside)
    r = run("ingest", str(inside), "-o", str(ds), "-q", "--force")
    assert r.returncode == 1
    assert r.stderr.decode() == (f"thpreplay: {ds}: is the input {inside}, or holds it; --force would "
                                 "replace it: choose another -o\n")
    assert inside.read_bytes() == trace.read_bytes() and (ds / "dataset.json").is_file()


def test_query_output_is_whole_or_untouched(tmp_path):
    """query -o writes a temporary file beside the target and renames it: a write that fails leaves the
    old file as it was and no temporary file behind; a directory is a one-line error."""
    ds = tmp_path / "ds"
    assert run("ingest", HAND, "-o", str(ds), "-q").returncode == 0
    out = tmp_path / "out.csv"
    out.write_text("old contents\n")
    r = run("query", str(ds), "select count(*) as n from page_alloc", "--format", "csv", "-o", str(out))
    assert r.returncode == 0, r.stderr.decode()
    assert out.read_text().splitlines()[0] == "n"
    r = run("query", str(ds), "select 1 as n", "-o", str(tmp_path))
    assert r.returncode == 1
    assert r.stderr.decode() == f"thpreplay: {tmp_path}: cannot write: Is a directory\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "out.csv"]


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs")
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_query_output_on_a_full_disk_keeps_the_old_file(tmp_path, fmt):
    """A result larger than the file system: the write fails midway (ENOSPC), the old file stays whole,
    no temporary file is left, and the error names the file."""
    ds = tmp_path / "ds"
    assert run("ingest", HAND, "-o", str(ds), "-q").returncode == 0
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        out = small / f"out.{fmt}"
        out.write_text("old contents\n")
        r = run("query", str(ds), "select i, md5(i::varchar) as h from range(200000) t(i)", "--format", fmt,
                "-o", str(out))
        assert r.returncode == 1
        assert r.stderr.decode() == f"thpreplay: {out}: cannot write: No space left on device\n"
        assert out.read_text() == "old contents\n"
        assert sorted(p.name for p in small.iterdir()) == [out.name]
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_usage_errors_exit_2():
    assert run("ingest").returncode == 2
    r = run("record")
    assert r.returncode == 2
    assert r.stderr.decode() == "thpreplay: give -- COMMAND ... or --duration SECONDS\n"


def test_record_refuses_an_existing_bundle(tmp_path):
    r = run("record", "-o", str(tmp_path), "--duration", "0.1")
    assert r.returncode == 1
    assert r.stderr.decode() == f"thpreplay: {tmp_path}: already exists; record never overwrites a bundle\n"


@pytest.mark.parametrize("args, message", [
    (["--", "/nonexistent"], "/nonexistent: command not found (not an executable file, nor on PATH); nothing recorded"),
    (["--duration", "-1"], "--duration -1.0: give a number of seconds above 0"),
    (["--duration", "nan"], "--duration nan: give a number of seconds above 0"),
    (["--duration", "1", "--buffer-kb", "-1"],
     "--buffer-kb -1: give the ring buffer per CPU in KiB, 1 to 16777216 (16 GiB)"),
])
def test_record_checks_its_options_before_writing(tmp_path, args, message):
    out = tmp_path / "bundle"
    r = run("record", "-o", str(out), *args)
    assert r.returncode == 1
    assert r.stderr.decode() == f"thpreplay: {message}\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/sys/kernel/tracing/events/kmem").is_dir(),
                    reason="needs root and tracefs")
def test_record_without_perf_says_so(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    r = run("record", "-o", str(tmp_path / "b"), "--", "/bin/true", env={**os.environ, "PATH": str(empty)})
    assert r.returncode == 1
    assert r.stderr.decode().splitlines() == [
        "thpreplay: perf is not installed",
        "hint: install perf (Debian: linux-perf) or use --backend ftrace",
    ]
    assert not (tmp_path / "b").exists()


def test_ingest_from_stdin(tmp_path):
    text = (Path(HAND) / "trace.txt").read_bytes()
    r = run("ingest", "-", "-o", str(tmp_path / "ds"), "-q", input=text)
    assert r.returncode == 0, r.stderr.decode()
    meta = {}
    import polars as pl

    for k, v in pl.read_parquet(str(tmp_path / "ds" / "metadata" / "*.parquet")).iter_rows():
        meta[k] = json.loads(v)
    assert meta["inputs"] == ["-"] and meta["events"]["page_alloc"] > 0
    assert meta["topology_source"] == "inferred"


@pytest.mark.skipif(shutil.which("perf") is None, reason="perf not installed")
def test_help_does_not_import_heavy_modules():
    code = "import sys, thpreplay.cli; print('polars' in sys.modules, 'pyarrow' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "False False"


def test_swapped_vmstat_snapshots_are_named_and_left_out(tmp_path):
    """A bundle whose vmstat.before and vmstat.after are swapped: event counters fall, which they never do
    within a boot. ingest says which file and which counters, and leaves the pair's deltas out, so
    validate compares no vmstat figure instead of negative ones."""
    src = Path(__file__).resolve().parents[1] / "sample_traces" / "qemu-6.1-2node"
    bundle = tmp_path / "bundle"
    shutil.copytree(src, bundle)
    (bundle / "vmstat.before").rename(bundle / "x")
    (bundle / "vmstat.after").rename(bundle / "vmstat.before")
    (bundle / "x").rename(bundle / "vmstat.after")
    ds = tmp_path / "ds"
    r = run("ingest", str(bundle), "-o", str(ds))
    assert r.returncode == 0, r.stderr.decode()
    warning = next(s for s in (r.stdout + r.stderr).decode().splitlines() if "event counters are lower" in s)
    assert warning.startswith(f"warning: {bundle / 'vmstat.after'}: 22 event counters are lower than in vmstat.before "
                              "(allocstall_movable 184 -> 0, ")
    assert warning.endswith("the snapshots are swapped or span a reboot; their deltas are left out "
                            "(validate skips those figures)")
    r = run("validate", str(ds), "--tolerance", "100")
    assert r.returncode == 0, r.stderr.decode()
    assert not any("│ vmstat │" in s for s in r.stdout.decode().splitlines())


def test_a_bundle_with_many_traces_is_one_short_line(tmp_path):
    bundle = tmp_path / "b"
    bundle.mkdir()
    for i in range(3000):
        (bundle / f"trace{i:04d}.txt").write_text("")
    r = run("ingest", str(bundle), "-o", str(tmp_path / "ds"))
    assert r.returncode == 1
    assert r.stderr.decode() == (f"thpreplay: {bundle}: several trace files in bundle: trace0000.txt, trace0001.txt, "
                                 "trace0002.txt, trace0003.txt, trace0004.txt and 2,995 more; keep one\n")


def test_a_node_with_cpus_but_no_zones_is_warned_about(tmp_path):
    """The bundle's cpulists name node 1, its zoneinfo has no zone of node 1 (from another machine, or a
    memoryless node): the local/remote split rests on it, so ingest says so."""
    import re as _re
    bundle = tmp_path / "b"
    shutil.copytree(HAND, bundle)
    zi = bundle / "zoneinfo.before"
    parts = _re.split(r"(?m)^(?=Node \d+, zone)", zi.read_text())
    zi.write_text("".join(x for x in parts if not x.startswith("Node 1,")))
    r = run("ingest", str(bundle), "-o", str(tmp_path / "ds"))
    assert r.returncode == 0, r.stderr.decode()
    assert ("warning: node 1 has CPUs (nodeN.cpulist) but no memory in the zoneinfo (bundle zoneinfo.before): a "
            "memoryless node, or a zoneinfo from another machine; the faults on those CPUs have no local memory, "
            "which decides local and remote") in (r.stdout + r.stderr).decode().splitlines()


@pytest.mark.parametrize("compressed", [False, True])
def test_a_pipe_is_read_once_and_whole(tmp_path, compressed):
    """A trace from a pipe (process substitution, a FIFO): nothing is read ahead and lost, so the tables
    and line numbers are those of the same trace read from its file."""
    import zstandard
    trace = tmp_path / ("trace.txt.zst" if compressed else "trace.txt")
    text = (Path(HAND) / "trace.txt").read_bytes()
    trace.write_bytes(zstandard.ZstdCompressor().compress(text) if compressed else text)
    assert run("ingest", str(trace), "-o", str(tmp_path / "file"), "-q").returncode == 0
    r = subprocess.run(["bash", "-c", f'"{THP}" ingest <(cat "{trace}") -o "{tmp_path / "pipe"}" -q'],
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    for table in ("page_alloc", "page_free"):
        a = pl.read_parquet(sorted((tmp_path / "file" / table).glob("*.parquet")), glob=False).select("line", "pfn")
        b = pl.read_parquet(sorted((tmp_path / "pipe" / table).glob("*.parquet")), glob=False).select("line", "pfn")
        assert a.height > 0 and a.equals(b), table


def test_an_endless_line_is_refused_not_read_into_memory(tmp_path):
    r = run("ingest", "/dev/zero", "-o", str(tmp_path / "ds"))
    assert r.returncode == 1
    assert r.stderr.decode() == "thpreplay: /dev/zero:1: no newline in 64 MiB: not a text trace\n"
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("file, text, message", [
    ("node1.cpulist", "0-99999999\n", "node1.cpulist:1: cpulist range 0-99999999: CPUs are 0..8191 (NR_CPUS)"),
    ("zoneinfo.before", None, "zoneinfo.before:{line}: node 99999: past MAX_NUMNODES (1024)"),
])
def test_snapshots_past_the_kernels_bounds_are_one_line(tmp_path, file, text, message):
    """A cpulist or zoneinfo no kernel writes (a damaged copy, a hostile one) is a one-line error naming
    the file and line, not a table of a hundred million CPUs."""
    bundle = tmp_path / "b"
    shutil.copytree(HAND, bundle)
    if text is None:
        lines = (bundle / file).read_text().splitlines(keepends=True)
        line = next(i for i, s in enumerate(lines, 1) if s.startswith("Node 1,"))
        lines[line - 1] = lines[line - 1].replace("Node 1,", "Node 99999,")
        (bundle / file).write_text("".join(lines))
        message = message.format(line=line)
    else:
        (bundle / file).write_text(text)
    r = run("ingest", str(bundle), "-o", str(tmp_path / "ds"))
    assert r.returncode == 1
    assert r.stderr.decode() == f"thpreplay: {bundle / message}\n"


@pytest.mark.parametrize("file, content, message", [
    ("kernel_release", b"6.1.0\xff\xfe-amd64\n", "kernel_release:1: not UTF-8 text (byte 0xff)"),
    ("kernel_release", b"a\nb\n", "kernel_release: not a kernel release (one line of printable ASCII, as uname -r "
                                  "prints): 'a\\nb'"),
    ("manifest.json", b"[1, 2]\n", "manifest.json: not a record manifest (a JSON object), but a JSON list"),
    ("manifest.json", b'{"thp": ["x"]}\n', "manifest.json: 'thp' is not an object of setting names to values"),
    ("manifest.json", b'{"kernel_release": 5}\n', "manifest.json: 'kernel_release' is not a string"),
    ("node0.cpulist", b"0\xc0\n", "node0.cpulist:1: not UTF-8 text (byte 0xc0)"),
])
def test_damaged_bundle_files_are_one_line(tmp_path, file, content, message):
    bundle = tmp_path / "b"
    shutil.copytree(HAND, bundle)
    (bundle / file).write_bytes(content)
    r = run("ingest", str(bundle), "-o", str(tmp_path / "ds"))
    assert r.returncode == 1
    assert r.stderr.decode() == f"thpreplay: {bundle}/{message}\n"


def test_ctrl_c_while_starting_is_one_line(monkeypatch, capsys):
    """A Ctrl-C that lands while the command line is still being imported: exit 130 and one line."""
    import types
    from thpreplay import _entry

    class Interrupting(types.ModuleType):
        def __getattr__(self, name):
            raise KeyboardInterrupt

    monkeypatch.setitem(sys.modules, "thpreplay.cli", Interrupting("thpreplay.cli"))
    with pytest.raises(SystemExit) as e:
        _entry.main()
    assert e.value.code == 130
    assert capsys.readouterr().err == "thpreplay: interrupted\n"


def test_the_console_script_starts_openblas_with_one_thread_unless_told(monkeypatch):
    """numpy's OpenBLAS reads OPENBLAS_NUM_THREADS as numpy is imported: the entry point sets it first (one
    thread: thpreplay does no linear algebra), and keeps a value the user gave."""
    import types
    from thpreplay import _entry

    seen = []
    cli = types.ModuleType("thpreplay.cli")
    cli.main = lambda: seen.append(os.environ.get("OPENBLAS_NUM_THREADS"))
    monkeypatch.setitem(sys.modules, "thpreplay.cli", cli)
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    _entry.main()
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    _entry.main()
    assert seen == ["1", "2"]


def test_only_the_named_command_is_built_and_all_are_kept(monkeypatch, capsys):
    """typer builds the commands it has registered before it runs one: main() registers only the command
    named (its help is as before), and every command again afterwards, whatever the outcome."""
    import typer.main

    from thpreplay import cli

    built = []
    get_command = typer.main.get_command
    monkeypatch.setattr(typer.main, "get_command", lambda app: built.append(len(app.registered_commands))
                        or get_command(app))
    before = list(cli.app.registered_commands)
    for argv, code in ((["schema", "page_alloc"], 0), (["simulate", "--help"], 0), (["simulat"], 2)):
        monkeypatch.setattr(sys, "argv", ["thpreplay", *argv])
        with pytest.raises(SystemExit) as e:
            cli.main()
        assert e.value.code == code
        assert cli.app.registered_commands == before
    assert built == [1, 1, len(before)]
    out = capsys.readouterr()
    assert "thpreplay simulate [OPTIONS]" in out.out
    assert "No such command 'simulat'" in out.err


def test_ctrl_c_is_one_line_and_130(tmp_path):
    """SIGINT to a running command (here a query waiting for its SQL on stdin): exit 130, no traceback."""
    import signal
    import time
    ds = tmp_path / "ds"
    assert run("ingest", HAND, "-o", str(ds), "-q").returncode == 0
    p = subprocess.Popen([THP, "query", str(ds), "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    time.sleep(3)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err.decode()
    assert "Traceback" not in err.decode() and len(err.decode().splitlines()) <= 1


def test_version_is_the_installed_distributions():
    from importlib.metadata import version
    r = run("--version")
    assert (r.returncode, r.stdout.decode(), r.stderr) == (0, f"thpreplay {version('thpreplay')}\n", b"")
