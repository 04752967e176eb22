"""Everything that writes, as a user meets it when writing fails: a full disk (a small tmpfs), a file-size
limit (RLIMIT_FSIZE in the child), stdout on /dev/full, odd output paths; and Ctrl-C in a sweep.

Each case checks the exact stderr line and exit status through the console script, that no half-written
output or hidden temporary file or directory is left, and that the inputs are untouched.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DATA

THP = str(Path(sys.executable).parent / "thpreplay")
HAND = DATA / "bundles" / "qemu61-hand"
BIG_SQL = "select i, md5(i::varchar) as h from range(100000) t(i)"  # about 4 MB of csv


def run(*args, stdout=subprocess.PIPE, fsize: int | None = None, env: dict | None = None,
        stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """The console script; fsize: the child's file-size limit in bytes (a write past it fails EFBIG)."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    e = {k: v for k, v in os.environ.items() if k != "THPREPLAY_DEBUG"}
    e.update(env or {})
    r = subprocess.run([THP, *args], stdout=stdout, stderr=subprocess.PIPE, input=stdin, env=e, timeout=300,
                       preexec_fn=limit if fsize is not None else None)
    assert "Traceback" not in r.stderr.decode(errors="replace"), r.stderr.decode(errors="replace")
    return r


def err(r: subprocess.CompletedProcess) -> str:
    return r.stderr.decode(errors="replace")


def tree(d: Path) -> dict[str, bytes]:
    """Every file under d, hidden ones included, with its bytes."""
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def hidden(d: Path) -> list[str]:
    """What a failed writer could leave: hidden .NAME.tmp-* / .NAME.old-* files and directories."""
    return sorted(str(p.relative_to(d)) for p in d.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> Path:
    ds = tmp_path_factory.mktemp("w") / "ds"
    assert run("ingest", str(HAND), "-o", str(ds), "-q").returncode == 0
    assert run("simulate", str(ds), "--policy", "two-step-5.4", "-q").returncode == 0
    assert run("report", str(ds), "-q").returncode == 0
    return ds


@pytest.fixture
def dataset(simulated, tmp_path) -> Path:
    """A copy of the simulated dataset that a test may write into."""
    ds = tmp_path / "ds"
    shutil.copytree(simulated, ds)
    return ds


def full_device(tmp_path: Path) -> Path:
    """A character device whose every write fails with ENOSPC: /dev/full, or one made here (root)."""
    dev = Path("/dev/full")
    if dev.is_char_device() and os.stat(dev).st_rdev == os.makedev(1, 7):
        return dev
    mine = tmp_path / "full"
    try:
        os.mknod(mine, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    except OSError:
        pytest.skip("no /dev/full here")
    return mine


# --- stdout --------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [["query", "DS", "select 1"], ["query", "DS", BIG_SQL, "--format", "csv"],
                                  ["report", "DS"], ["schema"], ["policies"], ["--help"]])
def test_stdout_on_a_full_device_is_one_line(dataset, tmp_path, args):
    args = [str(dataset) if a == "DS" else a for a in args]
    with open(full_device(tmp_path), "wb") as full:
        r = run(*args, stdout=full)
    assert (r.returncode, err(r)) == (1, "thpreplay: stdout: No space left on device\n")


def test_stdout_past_the_file_size_limit_is_one_line(dataset, tmp_path):
    with open(tmp_path / "out.txt", "wb") as f:
        r = run("query", str(dataset), BIG_SQL, "--format", "csv", stdout=f, fsize=100_000)
    assert (r.returncode, err(r)) == (1, "thpreplay: stdout: File too large\n")


def test_a_closed_pipe_is_a_quiet_failure(dataset):
    """`thpreplay query ... | head -1`: the reader chose to stop; exit 1, nothing said."""
    p = subprocess.Popen([THP, "query", str(dataset), BIG_SQL, "--format", "csv"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    p.stdout.readline()
    p.stdout.close()
    assert p.wait(timeout=120) == 1
    assert p.stderr.read() == b""


# --- a file-size limit (EFBIG) -------------------------------------------------------------------

def test_ingest_past_the_file_size_limit(tmp_path):
    before = tree(HAND)
    out = tmp_path / "new"
    r = run("ingest", str(HAND), "-o", str(out), "-q", fsize=2000)
    assert (r.returncode, err(r)) == (1, f"thpreplay: {out}: write failed: File too large\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert tree(HAND) == before


def test_simulate_past_the_file_size_limit_keeps_the_old_simulation(dataset):
    before = tree(dataset)
    r = run("simulate", str(dataset), "-q", fsize=2000, env={"THPREPLAY_TMPDIR": str(dataset.parent)})
    assert (r.returncode, err(r)) == (1, f"thpreplay: {dataset}: writing the simulation failed: File too large\n")
    assert tree(dataset) == before and hidden(dataset) == []


def test_report_past_the_file_size_limit_keeps_the_old_page(dataset):
    before = tree(dataset)
    r = run("report", str(dataset), "-q", fsize=5000)
    assert (r.returncode, err(r)) == (1, f"thpreplay: {dataset}/report.html: cannot write: File too large\n")
    assert tree(dataset) == before and hidden(dataset) == []


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_query_output_past_the_file_size_limit_keeps_the_old_file(dataset, tmp_path, fmt):
    out = tmp_path / f"out.{fmt}"
    out.write_text("old contents\n")
    r = run("query", str(dataset), BIG_SQL, "--format", fmt, "-o", str(out), fsize=200_000)
    assert (r.returncode, err(r)) == (1, f"thpreplay: {out}: cannot write: File too large\n")
    assert out.read_text() == "old contents\n" and hidden(tmp_path) == []


def test_query_scratch_database_past_the_file_size_limit(dataset, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    r = run("query", str(dataset), "select 1", fsize=100, env={"TMPDIR": str(scratch)})
    assert (r.returncode, err(r)) == (1, f"thpreplay: {scratch}: cannot write the query's scratch database: "
                                         "File too large\nhint: set TMPDIR to a directory with space\n")
    assert list(scratch.iterdir()) == []


# --- a full file system (ENOSPC) -----------------------------------------------------------------

@pytest.fixture
def small_fs(tmp_path):
    """A 1 MiB tmpfs (root only; skipped where mounting is refused)."""
    d = tmp_path / "small"
    d.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(d)],
                                           capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield d
    subprocess.run(["umount", "-l", str(d)], check=False)


def fill(d: Path) -> None:
    """Take every free byte of d's file system."""
    with open(d / "filler", "wb", buffering=0) as f:
        try:
            while f.write(b"\0" * 4096):
                pass
        except OSError:
            pass


def test_ingest_on_a_full_disk(small_fs):
    sample = DATA.parents[1] / "sample_traces" / "host-6.18-pagecache-defrag-always"  # its dataset: 2.3 MB
    r = run("ingest", str(sample), "-o", str(small_fs / "ds"), "-q")
    assert (r.returncode, err(r)) == (1, f"thpreplay: {small_fs}/ds: write failed: No space left on device\n")
    assert list(small_fs.iterdir()) == []


def test_simulate_and_report_on_a_full_disk_keep_what_was_there(simulated, small_fs, tmp_path):
    ds = small_fs / "ds"
    shutil.copytree(simulated, ds)
    fill(small_fs)
    before = tree(ds)
    r = run("simulate", str(ds), "-q", env={"THPREPLAY_TMPDIR": str(tmp_path)})
    assert (r.returncode, err(r)) == (1, f"thpreplay: {ds}: writing the simulation failed: No space left on device\n")
    r = run("report", str(ds), "-q")
    assert (r.returncode, err(r)) == (1, f"thpreplay: {ds}/report.html: cannot write: No space left on device\n")
    assert tree(ds) == before and hidden(small_fs) == []


# --- output paths --------------------------------------------------------------------------------

def test_query_output_paths(dataset, tmp_path):
    before = tree(dataset)
    cases = [
        ("/proc/version", "thpreplay: /proc/version: cannot write in /proc: No such file or directory"),
        (str(dataset / "dataset.json"), f"thpreplay: {dataset}/dataset.json: is inside {dataset}, which the "
                                        "query reads; choose another -o"),
        (str(tmp_path), f"thpreplay: {tmp_path}: cannot write: Is a directory"),
        (str(tmp_path / ("x" * 300)), f"thpreplay: {tmp_path}/{'x' * 300}: cannot write: File name too long"),
    ]
    for path, line in cases:
        r = run("query", str(dataset), "select 1 as n", "-o", path)
        assert (r.returncode, err(r)) == (1, line + "\n"), path
    # a path longer than PATH_MAX, and one with bytes that are not UTF-8 and a newline: shown as \xNN
    deep = "/".join(["d" * 200] * 25)
    r = run("query", str(dataset), "select 1 as n", "-o", str(tmp_path / deep / "out.csv"))
    assert (r.returncode, err(r)) == (1, f"thpreplay: {tmp_path}/{deep}/out.csv: cannot write: File name too long\n")
    odd = os.fsencode(tmp_path) + b"/missing/r\xff\nx.csv"
    r = run(b"query", os.fsencode(dataset), b"select 1 as n", b"-o", odd)
    assert (r.returncode, err(r)) == (1, f"thpreplay: {tmp_path}/missing/r\\xff\\x0ax.csv: cannot write in "
                                         f"{tmp_path}/missing: No such file or directory\n")
    assert tree(dataset) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_query_output_names_are_taken_as_written(dataset, tmp_path):
    """Glob characters, bytes that are not UTF-8: the file is made with exactly that name."""
    for name in (b"out[1]*?.csv", b"r\xff.csv"):
        r = run(b"query", os.fsencode(dataset), b"select 1 as n", b"--format", b"csv", b"-o",
                os.fsencode(tmp_path) + b"/" + name)
        assert r.returncode == 0, err(r)
    assert sorted(os.listdir(os.fsencode(tmp_path))) == [b"ds", b"out[1]*?.csv", b"r\xff.csv"]


def test_query_output_through_links_and_streams(dataset, tmp_path):
    """-o /dev/stdout writes to stdout (and /dev/stdout stays what it is); a symbolic link stays and the
    file it names gets the result."""
    link = os.readlink("/dev/stdout")
    with open(tmp_path / "captured", "wb") as f:
        r = run("query", str(dataset), "select 1 as n", "--format", "csv", "-o", "/dev/stdout", stdout=f)
    assert r.returncode == 0, err(r)
    assert (tmp_path / "captured").read_text() == "n\n1\n"
    assert os.readlink("/dev/stdout") == link  # not replaced by a regular file
    target = tmp_path / "target.csv"
    target.write_text("old\n")
    (tmp_path / "link.csv").symlink_to(target)
    r = run("query", str(dataset), "select 2 as n", "--format", "csv", "-o", str(tmp_path / "link.csv"))
    assert r.returncode == 0, err(r)
    assert (tmp_path / "link.csv").is_symlink() and target.read_text() == "n\n2\n"


def test_report_output_inside_the_dataset_is_an_html_file(dataset):
    before = tree(dataset)
    r = run("report", str(dataset), "-q", "-o", str(dataset / "dataset.json"))
    assert (r.returncode, err(r)) == (1, f"thpreplay: {dataset}/dataset.json: is inside {dataset}; a report "
                                         "written there must be an .html file\n")
    assert tree(dataset) == before
    assert run("report", str(dataset), "-q", "-o", str(dataset / "second.html")).returncode == 0


def test_outputs_have_the_umasks_permissions(tmp_path):
    ds = tmp_path / "ds"
    r = subprocess.run(["sh", "-c", f"umask 027 && {THP} ingest {HAND} -o {ds} -q && {THP} simulate {ds} -q "
                                    f"--policy two-step-5.4 && {THP} query {ds} 'select 1' -o {tmp_path}/q.csv"],
                       capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert [stat.S_IMODE(p.stat().st_mode) for p in (ds, ds / "page_alloc", ds / "simulation")] == [0o750] * 3
    assert stat.S_IMODE((tmp_path / "q.csv").stat().st_mode) == 0o640


# --- SQL and parameter files ---------------------------------------------------------------------

def test_sql_and_params_that_are_not_text(dataset, tmp_path):
    (tmp_path / "q.sql").write_bytes(b"select 1 as \xff")
    (tmp_path / "p.toml").write_bytes(b"# costs\nseed = \xfe\n")
    cases = [
        ([b"--file", os.fsencode(tmp_path / "q.sql")], None, f"thpreplay: {tmp_path}/q.sql:1: not UTF-8 text (byte 0xff)"),
        ([b"--file", b"/dev/zero"], None, "thpreplay: /dev/zero: more than 16 MiB: too large for SQL"),
        ([b"-"], b"select 1 as \xff", "thpreplay: -:1: not UTF-8 text (byte 0xff)"),
        ([b"select 1 as \xff"], None, "thpreplay: SQL: not UTF-8 text (byte 0xff)"),
    ]
    for args, stdin, line in cases:
        r = run(b"query", os.fsencode(dataset), *args, stdin=stdin)
        assert (r.returncode, err(r)) == (1, line + "\n"), args
    r = run("simulate", str(dataset), "--params", str(tmp_path / "p.toml"))
    assert (r.returncode, err(r)) == (1, f"thpreplay: {tmp_path}/p.toml:2: not UTF-8 text (byte 0xfe)\n")
    r = run("simulate", str(dataset), "--params", "/dev/zero")
    assert (r.returncode, err(r)) == (1, "thpreplay: /dev/zero: more than 1 MiB: too large for a --params file\n")


def test_messages_are_one_printable_line():
    from thpreplay.cli import printable

    assert printable("a/b\udcff\nc\td\x7f") == "a/b\\xff\\x0ac\\x09d\\x7f"
    assert printable("naïve \U0001f600") == "naïve \U0001f600"
    assert printable("\ud800") == "\\ud800"


# --- sweep: how many workers, and Ctrl-C ---------------------------------------------------------

def test_local_workers_are_bounded_by_memory_too(monkeypatch, tmp_path):
    from thpreplay import sweep as sw
    from thpreplay.errors import ThpreplayError

    monkeypatch.setattr(sw, "_available_memory", lambda: 3 * sw.WORKER_MEMORY + 100)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert sw.local_worker_limit() == (3, "1.5 GiB of memory available")
    with pytest.raises(ThpreplayError) as e:
        sw.sweep([str(tmp_path)], tmp_path / "S", workers=4)
    assert e.value.message == ("--workers 4: this machine has 1.5 GiB of memory available, so a local cluster "
                               "takes 1 to 3 worker processes (use --scheduler for a larger cluster)")
    monkeypatch.setattr(sw, "_available_memory", lambda: None)
    assert sw.local_worker_limit() == (64, "16 CPUs")


def _session(sid: int) -> list[int]:
    """The processes of a session (a Ctrl-C at its terminal would reach all of them)."""
    pids = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid:
            pids.append(int(stat_file.parent.name))
    return pids


def test_ctrl_c_in_a_sweep_is_one_line_and_130(sample_dataset, tmp_path):
    """SIGINT to the whole process group, as a terminal sends it, while the local workers run tasks: one
    line, exit 130, no worker's traceback, no worker left running; finished partitions are whole."""
    ds = sample_dataset("qemu-6.1-2node-kpf")
    out = tmp_path / "S"
    p = subprocess.Popen([THP, "sweep", str(ds), "--defrag", "madvise", "--defrag", "never", "-o", str(out), "-q"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not list(out.glob("capture=*/policy=*/settings=*")) and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.1)
    assert p.poll() is None, "the sweep ended before it could be interrupted"
    os.killpg(p.pid, signal.SIGINT)
    t = time.monotonic()
    stdout, stderr = p.communicate(timeout=30)
    assert time.monotonic() - t < 10
    assert (p.returncode, stderr.decode(), stdout) == (
        130, "thpreplay: interrupted; finished partitions are kept (run the same sweep again to resume)\n", b"")
    deadline = time.monotonic() + 5
    while _session(p.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _session(p.pid) == []
    for part in out.glob("capture=*/policy=*/settings=*"):
        assert sorted(f.name for f in part.iterdir()) == ["memory_series.parquet", "outcome_summary.parquet",
                                                          "outcomes.parquet", "task.json"]
