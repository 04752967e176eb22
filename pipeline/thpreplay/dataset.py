"""A dataset checked before it is read, and the locks that keep concurrent commands on it apart.

Checks (`check`, `check_simulation`), cheap: the JSON records and each Parquet part's footer, no table
data. dataset.json must be a JSON object of the right types naming this format and these schema
versions; every table must have parts, and each part must be a whole Parquet file (its footer is at
the end: a cut file has none) stamped with its table's schema id and holding exactly the declared
columns with the declared types. The same for DATASET/simulation/ and its simulation.json. A failure is
one line naming the file and what to do (ingest again, or simulate again).

Locks (flock, advisory, released by the kernel however the process ends):

- Every command that reads a dataset holds a shared lock on the dataset directory itself while it
  reads. `ingest` replaces a dataset by renaming a new directory over it; it takes the exclusive lock of
  the old directory for that step, so it waits for the readers that began before, and a reader that
  opened the old directory just then finds, once it has its lock, that the path now names another
  directory, and locks that one instead. So no command reads half an old and half a new dataset, and
  a simulation is written into the dataset it was computed from.
- `simulate` also holds the exclusive lock of DATASET/.simulate.lock while it runs (a second simulate
  of the same dataset is refused, or waits with --wait), and checks before it puts its results in place
  that the dataset directory is still the one it read (a dataset moved away by hand is not written to).
- `ingest --force` refuses at once to replace a dataset that a command is using (or waits, --wait); a
  command that began using it during the ingest is waited for before the replacement.

Who holds a lock is read from /proc/locks, to name the process in the message.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from thpreplay import schemas
from thpreplay.atomic import dataset_path_problem
from thpreplay.errors import InputError, OutputError

RECORD = "dataset.json"
SIM_DIR = "simulation"
SIM_RECORD = "simulation.json"
SIM_LOCK = ".simulate.lock"
REINGEST = "ingest the capture again"
RESIMULATE = "run thpreplay simulate again"


# ------------------------------------------------------------------------------------------- checks


def check(dataset: Path) -> dict:
    """The dataset's record, after checking it and every ingest table's parts; InputError otherwise."""
    dataset = Path(dataset)
    if problem := dataset_path_problem(dataset):
        raise InputError(str(dataset), problem)
    path = dataset / RECORD
    if not path.is_file():
        raise InputError(str(dataset), "not a thpreplay dataset (no dataset.json); make one with thpreplay ingest")
    info = _read_json(path, "dataset record", REINGEST)
    if info.get("format") != "thpreplay-dataset":
        raise InputError(str(path), "not a thpreplay dataset record")
    version = info.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise InputError(str(path), f"damaged dataset record ('version' is not a number); {REINGEST}")
    if version != schemas.DATASET_FORMAT:
        raise InputError(str(dataset), f"dataset format version {version}; this thpreplay reads version "
                         f"{schemas.DATASET_FORMAT}: {REINGEST}")
    made = info.get("schemas")
    if not isinstance(made, dict) or not all(isinstance(v, str) for v in made.values()):
        raise InputError(str(path), f"damaged dataset record ('schemas' is not an object of schema ids); {REINGEST}")
    for table, sid in sorted(made.items()):
        if table in schemas.all_tables() and sid != schemas.load(table).id:
            raise InputError(str(dataset), f"made with schema {sid}; this thpreplay reads {schemas.load(table).id}: "
                             f"{REINGEST}")
    for table in schemas.ingest_tables():
        if table not in made:
            raise InputError(str(dataset), f"made without table '{table}', which this thpreplay reads: {REINGEST}")
        check_parts(dataset / table, table, REINGEST)
    return info


# simulation.json: the keys a reader of the simulation uses, and their JSON types
_SIM_KEYS = {"policies": list, "settings": dict, "demand": dict, "initial_state": dict, "notes": list,
             "schemas": dict}


def check_simulation(dataset: Path) -> dict | None:
    """The dataset's simulation record after checking it and the simulation tables' parts; None when the
    dataset has no simulation."""
    sim = Path(dataset) / SIM_DIR
    if not sim.is_dir():
        return None
    path = sim / SIM_RECORD
    if not path.is_file():
        raise InputError(str(sim), f"incomplete simulation (no {SIM_RECORD}); {RESIMULATE}")
    info = _read_json(path, "simulation record", RESIMULATE)
    for key, kind in _SIM_KEYS.items():
        if not isinstance(info.get(key), kind):
            raise InputError(str(path), f"damaged simulation record ('{key}' is not {_JSON_KIND[kind]}); {RESIMULATE}")
    for key in ("enabled", "defrag"):
        if not isinstance(info["settings"].get(key), str):
            raise InputError(str(path), f"damaged simulation record ('settings.{key}' is not a string); {RESIMULATE}")
    for table in schemas.SIMULATION_TABLES:
        check_parts(sim / table, table, RESIMULATE)
    return info


_JSON_KIND = {list: "a list", dict: "an object"}


def _read_json(path: Path, what: str, remedy: str) -> dict:
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as e:
        raise InputError(str(path), f"cannot read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(str(path), f"damaged {what} (not UTF-8 text); {remedy}") from None
    try:
        info = json.loads(text)
    except ValueError as e:
        where = f": line {e.lineno} column {e.colno}" if isinstance(e, json.JSONDecodeError) else ""
        raise InputError(str(path), f"damaged {what} (not JSON{where}); {remedy}") from None
    if not isinstance(info, dict):
        raise InputError(str(path), f"damaged {what} (not a JSON object); {remedy}")
    return info


def _type_name(t) -> str:
    """A column's polars type in the schemas' words (Arrow's string, large_string and string_view are
    all polars' String, as a list and a large list are its List)."""
    import polars as pl

    for name, dtype in schemas._POLARS.items():
        if t == dtype:
            return name
    if isinstance(t, pl.List):
        return f"list<{_type_name(t.inner)}>"
    return type(t).__name__.lower()


def check_parts(directory: Path, table: str, remedy: str) -> None:
    """Every Parquet part of one table: a whole file (footer), this schema's stamp and its columns. The
    footers are read by polars (pyarrow would add its import to every command that reads a dataset)."""
    import polars as pl

    declared = schemas.load(table)
    try:
        parts = sorted(p for p in directory.glob("*.parquet"))
    except OSError as e:
        raise InputError(str(directory), f"cannot read: {e.strerror}") from None
    if not directory.is_dir() or not parts:
        raise InputError(str(directory), f"table missing from the dataset; {remedy}")
    want = [(c.name, c.type) for c in declared.columns]
    expected = list(declared.polars().items())
    for part in parts:
        try:
            with open(part, "rb"):  # the system's reason for a part that cannot be read (polars' has none)
                pass
            meta = pl.read_parquet_metadata(part)   # the file's key/value metadata
            actual = pl.scan_parquet(part, glob=False).collect_schema()
        except OSError as e:
            raise InputError(str(part), f"cannot read: {e.strerror or _first_line(e)}") from None
        # no footer (cut short), a bad one, not Parquet at all (a few damaged footers make polars panic)
        except (pl.exceptions.PolarsError, pl.exceptions.PanicException):
            raise InputError(str(part), f"not a whole Parquet file (cut short or damaged); {remedy}") from None
        stamp = meta.get(schemas.META_KEY.decode())
        if stamp is not None and stamp != declared.id:
            raise InputError(str(part), f"holds table {stamp}, not {declared.id}; {remedy}")
        if list(actual.items()) != expected:  # then in the schemas' words, for the message
            got = [(name, _type_name(t)) for name, t in actual.items()]
            if got != want:
                have = dict(got)
                for name, kind in want:
                    if name not in have:
                        raise InputError(str(part), f"column '{name}' missing ({declared.id} declares it); {remedy}")
                    if have[name] != kind:
                        raise InputError(str(part), f"column '{name}' is {have[name]}, {declared.id} declares {kind}; "
                                         f"{remedy}")
                extra = [name for name, _ in got if name not in dict(want)]
                if extra:
                    raise InputError(str(part), f"column '{extra[0]}' is not in {declared.id}; {remedy}")
                raise InputError(str(part), f"columns not in {declared.id}'s order; {remedy}")
        if stamp is None:
            raise InputError(str(part), f"not written by thpreplay (no {declared.id} stamp); {remedy}")


def damaged_part(files: list[Path], columns: list[str] | None, error: Exception, remedy: str = REINGEST) -> InputError:
    """The error for a read of several parts that failed although their footers were checked: the first
    part that fails alone, named (or, if none does, the read's own first line)."""
    import polars as pl

    for f in files:
        try:
            pl.read_parquet(str(f), columns=columns, glob=False)
        except Exception as e:  # noqa: BLE001 (whatever the reader raises for damaged data)
            return InputError(str(f), f"damaged Parquet data ({_first_line(e)}); {remedy}")
    where = files[0].parent if files else Path(".")
    return InputError(str(where), f"cannot be read ({_first_line(error)}); {remedy}")


def locate_damage(dataset: Path, error: Exception) -> InputError | None:
    """After a read of the dataset failed in the reader (its footers were whole): the error naming the
    first part (ingest tables, then the simulation's) that cannot be read in full, or None when every
    part reads (the failure was not damaged data)."""
    import polars as pl

    tables = [(t, Path(dataset) / t, REINGEST) for t in schemas.ingest_tables()]
    tables += [(t, Path(dataset) / SIM_DIR / t, RESIMULATE) for t in schemas.SIMULATION_TABLES]
    for _, directory, remedy in tables:
        for f in sorted(directory.glob("*.parquet")):
            try:
                pl.read_parquet(str(f), glob=False)
            except Exception as e:  # noqa: BLE001 (whatever the reader raises for damaged data)
                return InputError(str(f), f"damaged Parquet data ({_first_line(e)}); {remedy}")
    return None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


# -------------------------------------------------------------------------------------------- locks


def _holders(path: Path) -> list[int]:
    """The pids holding (not waiting for) a flock on path, from /proc/locks (empty when unknown)."""
    try:
        ino = os.stat(path).st_ino
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return []
    pids = []
    for line in lines:
        f = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:2285771 0 EOF"; a waiter's line has "->" after the number
        if len(f) >= 6 and f[1] == "FLOCK" and f[5].rsplit(":", 1)[-1] == str(ino) and f[4].isdigit():
            if int(f[4]) not in (0, os.getpid()) and int(f[4]) not in pids:
                pids.append(int(f[4]))
    return pids


def _command(pid: int) -> str | None:
    """'thpreplay simulate' when pid runs a thpreplay command, else None."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    for i, arg in enumerate(argv[:-1]):
        if os.path.basename(arg) == "thpreplay" or (arg == "-m" and argv[i + 1] == "thpreplay"):
            rest = [a for a in argv[i + 1:] if a and a != "thpreplay" and not a.startswith("-")]
            return f"thpreplay {rest[0]}" if rest else "thpreplay"
    return None


def who(path: Path) -> str:
    """The process(es) holding a lock on path, for a message."""
    pids = _holders(path)
    if not pids:
        return "another process"
    named = []
    for pid in pids[:3]:
        cmd = _command(pid)
        named.append(f"pid {pid} ({cmd})" if cmd else f"pid {pid}")
    return ", ".join(named) + (f" and {len(pids) - 3} more" if len(pids) > 3 else "")


def _open_dir(path: Path) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None


def _same(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


UNLOCKED = -1  # lock_dir on a file system that cannot lock a directory (e.g. NFS's emulated flock)


def lock_dir(path: Path, exclusive: bool, wait: bool = True) -> int | None:
    """An fd holding a flock on the directory that path names when the lock is granted (re-locking when
    the path was given another directory meanwhile); None when path is not a directory, or when
    not waiting and another process holds a lock that conflicts; UNLOCKED when the file system has no
    such locks (the command then goes on without)."""
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    for _ in range(100):
        fd = _open_dir(path)
        if fd is None:
            return None
        try:
            fcntl.flock(fd, mode if wait else mode | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except OSError:
            os.close(fd)
            return UNLOCKED
        except BaseException:
            os.close(fd)
            raise
        if _same(fd, path):
            return fd
        os.close(fd)  # replaced while we waited: lock the one there now
        time.sleep(0.001)
    return None


def _release(fd: int | None) -> None:
    if fd is not None and fd >= 0:
        os.close(fd)


@contextmanager
def reading(dataset: str | Path) -> Iterator[int | None]:
    """Hold a shared lock on the dataset while it is read, so that it is not replaced meanwhile. A path
    that is not a directory is not locked (the check that follows says what it is)."""
    fd = lock_dir(Path(dataset), exclusive=False)
    try:
        yield fd
    finally:
        _release(fd)


@contextmanager
def simulating(dataset: Path, wait: bool = False) -> Iterator[Callable[[], None]]:
    """The locks of a simulate: the dataset read-locked, and DATASET/.simulate.lock exclusive (refused
    with who holds it, unless wait). Yields a check to call just before the results are put in place:
    it raises if the dataset directory is no longer the one that was read (moved away by hand)."""
    with reading(dataset) as dfd:
        path = dataset / SIM_LOCK
        try:
            fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise OutputError(f"{dataset}: cannot write: {e.strerror}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise OutputError(f"{dataset}: being simulated by {who(path)}; wait for it to finish, or pass "
                                  "--wait") from None

            def still_there() -> None:
                if dfd is not None and dfd >= 0 and not _same(dfd, dataset):
                    raise OutputError(f"{dataset}: the dataset was replaced or moved while it was simulated; "
                                      f"the simulation was not written: {RESIMULATE}")

            yield still_there
        finally:
            os.close(fd)


def check_replaceable(output: Path, wait: bool) -> None:
    """Before an ingest --force: refuse at once when a command is using the dataset at output (unless
    wait: the replacement then waits for it)."""
    if wait or not output.is_dir():
        return
    fd = lock_dir(output, exclusive=True, wait=False)
    if fd is None and output.is_dir():
        raise OutputError(f"{output}: in use by {who(output)}; wait for it to finish before replacing the "
                          "dataset, or pass --wait")
    _release(fd)


def publish(tmp: Path, output: Path, force: bool, replace: Callable[[Path, Path], None],
            on_wait: Callable[[str], None] | None = None) -> None:
    """Put the finished dataset tmp at output. A dataset there is replaced (force) under its exclusive
    lock, waiting for the commands using it; a new one is renamed into place, and when another process
    put one there meanwhile, that one exists (refused without force)."""
    while True:
        if output.is_dir():
            if not force:
                raise OutputError(f"{output}: already exists; use --force to replace it")
            fd = lock_dir(output, exclusive=True, wait=False)
            if fd is None and output.is_dir():
                if on_wait is not None:
                    on_wait(f"waiting for {who(output)} to finish with {output}")
                fd = lock_dir(output, exclusive=True, wait=True)
            if fd is None:
                continue  # gone meanwhile: put it in place as new
            try:
                replace(tmp, output)
            finally:
                _release(fd)
            return
        try:
            os.rename(tmp, output)  # fails when a non-empty directory appeared there meanwhile
            return
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not output.is_dir():
                raise
