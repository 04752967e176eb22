"""Directories that appear whole or not at all.

An output is built in a hidden sibling `.NAME.tmp-PID-XXXX` and put in place by `replace_dir`: with
renameat2(RENAME_EXCHANGE) (Linux 3.15+, glibc 2.28+) the old and new directories swap in one atomic
step, so a reader, or a process killed at any instant, sees the old dataset or the complete new one.
Where the exchange is not available (another OS, a file system without it) two renames are used and
the old directory is briefly absent. The hidden directories of a process that was killed are removed
by the next run that writes the same output (`clean_stale`).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import io
import os
import re
import shutil
import tempfile
from functools import cache
from pathlib import Path

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_libc = None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically; False when the system cannot."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        fn = _libc.renameat2
    except (OSError, AttributeError):
        return False
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def exclusive_lock(path: Path) -> int | None:
    """An open fd holding a non-blocking exclusive flock on path (created if needed), or None when
    another process holds it. The lock goes with the process, however it ends."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def make_tmp(final: Path) -> Path:
    """A hidden directory beside final to build it in (named after this process, see clean_stale), with
    the permissions of an ordinary new directory (the umask's), not mkdtemp's owner-only 0700."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=final.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


@cache
def _umask() -> int:
    """The process's umask (read once: reading it means setting it for an instant)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def replace_dir(tmp: Path, final: Path) -> None:
    """Put the finished directory tmp at final, replacing what is there."""
    if final.exists() and _exchange(tmp, final):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old content
        return
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        os.rename(final, old)
    os.rename(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# a process's own open files by name: written in place, never replaced (what they name is not a path)
_STREAM = re.compile(r"/dev/(?:stdout|stderr|fd/\d+)|/proc/(?:self|thread-self|\d+)/fd/\d+")


def write_file(final: Path, write) -> None:
    """Write the file final through write(path): into a temporary file beside it, flushed to disk, then
    renamed over final, so that a write that fails or is interrupted leaves final as it was. A symbolic
    link stays and the file it names is replaced. The standard streams by name (/dev/stdout, /dev/fd/N)
    and a target that exists and is not a regular file (a FIFO, a device) are written in place: they
    have no contents to keep. Raises OSError (or what write raises), whose filename is final's directory
    when no file can be made there (/proc, /sys); the temporary file never stays."""
    final = Path(final)
    if _STREAM.fullmatch(str(final.absolute())):
        write(final)
        return
    if final.is_symlink():
        final = Path(os.path.realpath(final))
    if final.exists() and not final.is_file():
        if final.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(final))
        write(final)
        return
    parent = final.absolute().parent
    try:
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=parent)
    except OSError as e:  # nothing can be created there (/proc, /sys, a read-only or missing directory)
        raise OSError(e.errno, e.strerror, str(final if e.errno == errno.ENAMETOOLONG else parent)) from None
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # as an ordinary new file, not mkstemp's 0600
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def io_error_reason(e: BaseException, where: Path | None = None) -> str | None:
    """The system's reason when e is a failed write: an OSError, or a library error that wraps one
    (polars and Arrow report a full disk as "... (os error 28)", or only as a broken Parquet stream, so
    the file system at `where` is also asked whether it is full). None for anything else."""
    if isinstance(e, OSError):
        return e.strerror or str(e)
    m = re.search(r"\(os error (\d+)\)", str(e))
    if m:
        return os.strerror(int(m.group(1)))
    if where is not None:
        try:
            st = os.statvfs(where)
        except OSError:
            return None
        if st.f_bavail * st.f_frsize < 1 << 20 or st.f_favail == 0:
            return os.strerror(errno.ENOSPC)
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(final: Path) -> list[Path]:
    """Remove the hidden build and old directories of final left by processes that no longer run."""
    pattern = re.compile(rf"^\.{re.escape(final.name)}\.(?:tmp|old)-(\d+)(?:-.*)?$")
    removed = []
    try:
        entries = list(final.parent.iterdir())
    except OSError:
        return removed
    for p in entries:
        m = pattern.match(p.name)
        if m and p.is_dir() and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def write_parquet(frame, path: Path, **options) -> None:
    """The polars frame as a Parquet file at path: encoded in memory by polars and written by Python, so
    that a failed write is an OSError naming path with the system's reason. (polars' own file writer
    reports a full disk or a file-size limit as a broken Parquet stream, or as a bare os error number.)
    The file is on disk before the dataset that holds it is renamed into place."""
    buf = io.BytesIO()
    frame.write_parquet(buf, **options)
    _write_synced(path, buf)


def write_arrow_parquet(table, path: Path, **options) -> None:
    """write_parquet for an Arrow table, encoded by pyarrow (options: pyarrow.parquet.write_table's)."""
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf, **options)
    _write_synced(path, buf)


def _write_synced(path: Path, buf: io.BytesIO) -> None:
    with open(path, "wb") as f:
        f.write(buf.getbuffer())
        f.flush()
        os.fsync(f.fileno())  # an I/O error in writeback (EIO) is reported here, not lost after the rename


def write_output(final: Path, write) -> None:
    """write_file for a file the user named (query -o, report): a failed write is a one-line OutputError
    naming it with the system's reason (a full disk, a file-size limit, an I/O error, /proc)."""
    from thpreplay.errors import OutputError

    final = Path(final)
    parent = final.absolute().parent
    try:
        write_file(final, write)
    except Exception as e:
        reason = io_error_reason(e, parent)
        if reason is None:
            raise
        if isinstance(e, OSError) and e.filename == str(parent):
            raise OutputError(f"{final}: cannot write in {parent}: {reason}") from None
        raise OutputError(f"{final}: cannot write: {reason}") from None


def dataset_path_problem(path: Path) -> str | None:
    """Why a directory thpreplay writes tables into (a dataset, a sweep) cannot be used, or None: its name
    must be UTF-8 (polars and DuckDB open tables by name, as text) and one the system accepts (not past
    PATH_MAX, no component past NAME_MAX)."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        byte = os.fsencode(text[e.start:e.start + 1])[0]
        return (f"not a UTF-8 name (byte {byte:#x}); datasets and sweeps need UTF-8 names (their tables are "
                "opened by name): choose another")
    try:
        path.exists()
        path.absolute().parent.exists()
    except OSError as e:
        return f"cannot use it: {e.strerror}"
    return None
