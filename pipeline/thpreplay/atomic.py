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
import os
import re
import shutil
import tempfile
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
    """A hidden directory beside final to build it in (named after this process, see clean_stale)."""
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=final.parent))


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


def write_file(final: Path, write) -> None:
    """Write the file final through write(path): into a temporary file beside it, flushed to disk, then
    renamed over final, so that a write that fails or is interrupted leaves final as it was. A target
    that exists and is not a regular file (a FIFO, a device, /dev/stdout) is written in place: it has
    no contents to keep. Raises OSError (or what write raises); the temporary file never stays."""
    final = Path(final)
    if final.exists() and not final.is_file():
        if final.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(final))
        write(final)
        return
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=final.absolute().parent)
    os.close(fd)
    tmp = Path(name)
    try:
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # as an ordinary new file, not mkstemp's 0600
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
