"""Locks of a batch's output folder: one run at a time per set of jobs, and whole ledger appends.

**The run lock.** A running batch holds ``OUTDIR/.sr4zct-batch-<scope>.lock`` (:class:`OutdirLock`), where the
scope is ``all`` or the shard (``shard1of4``). A second run whose jobs overlap (the same scope, ``all``
against anything, shards of another count) refuses to start with a message naming the running one (process
id, host, start time); shards of one count (``--shard K/N``) are disjoint and may run together.

**How a stale lock is detected.** The lock is the operating system's lock on the open lock file
(``flock`` on Linux and macOS, ``msvcrt.locking`` on Windows; both also work on network file systems that
support locks), not the file's existence: the system releases it when the process ends in any way (a crash,
``kill -9``, a reboot). A lock file left by a dead process is therefore unlocked, and the next run simply
takes it over. Only where the file system has no locks at all does the lock fall back to the process id it
records: on the same host a process that no longer exists holds nothing; a lock from another host is then
refused with the file's name, to be removed by hand once no batch runs there.

**Ledger appends** are taken under the same kind of lock (:func:`locked`), so shards and concurrent readers
never see half a record.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from sr4zct.errors import OutputError

__all__ = ["LOCK_PREFIX", "OutdirLock", "locked", "scopes_overlap"]

LOCK_PREFIX = ".sr4zct-batch-"
LOCK_SUFFIX = ".lock"
#: Windows locks bytes, and a locked byte cannot be read: lock one far beyond any content instead.
_LOCK_OFFSET = 0x7FFF_FFF0  # within a 32-bit offset: every CRT locks there
_BUSY = (errno.EACCES, errno.EAGAIN, errno.EWOULDBLOCK, errno.EDEADLK)


class _NoLocks(Exception):
    """The file system does not support locks."""


def _os_lock(fd: int, blocking: bool) -> bool:
    """Lock ``fd`` exclusively; False when another process holds it (non-blocking); raises _NoLocks."""
    try:
        if os.name == "nt":
            return _windows_lock(fd, blocking)
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        return True
    except OSError as exc:
        if exc.errno in _BUSY and not blocking:
            return False
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise _NoLocks from exc
        raise


def _windows_lock(fd: int, blocking: bool) -> bool:
    import msvcrt

    os.lseek(fd, _LOCK_OFFSET, os.SEEK_SET)
    while True:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError as exc:
            if exc.errno not in _BUSY:
                raise
            if not blocking:
                return False
            time.sleep(0.05)


def _os_unlock(fd: int) -> None:
    with contextlib.suppress(OSError, _NoLocks):
        if os.name == "nt":
            import msvcrt

            os.lseek(fd, _LOCK_OFFSET, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_UN)


@contextlib.contextmanager
def locked(fd: int) -> Iterator[None]:
    """Hold an exclusive lock on the open file ``fd`` (waiting for it); without file-system locks, none."""
    try:
        held = _os_lock(fd, blocking=True)
    except _NoLocks:
        held = False
    try:
        yield
    finally:
        if held:
            _os_unlock(fd)


def scopes_overlap(a: str, b: str) -> bool:
    """Whether runs of scope ``a`` and ``b`` (``all`` or ``shardKofN``) may share jobs."""
    if a == "all" or b == "all" or a == b:
        return True
    count_a, count_b = a.rpartition("of")[2], b.rpartition("of")[2]
    return count_a != count_b  # shards of one count are disjoint; of two counts they overlap


def _open_no_follow(path: Path, flags: int) -> int:
    if path.is_symlink():
        raise OutputError(
            f"The lock file {path} is a symbolic link; remove it (SR4ZCT never writes through a link)."
        )
    return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0), 0o644)


def _record(path: Path) -> dict:
    """What a lock file says about its holder (empty when unreadable)."""
    try:
        if path.is_symlink() or not path.is_file():
            return {}
        data = json.loads(path.read_text(encoding="utf-8", errors="replace")[:4096] or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _holder_text(path: Path) -> str:
    data = _record(path)
    started = data.get("started")
    when = (
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
        if isinstance(started, (int, float))
        else "?"
    )
    return f"process {data.get('pid', '?')} on {data.get('host', '?')}, started {when}"


def _dead_on_this_host(path: Path) -> bool:
    """Without file-system locks: the lock's process is known to be gone (same host, no such process)."""
    from sr4zct.system import pid_exists

    data = _record(path)
    pid = data.get("pid")
    return data.get("host") == socket.gethostname() and isinstance(pid, int) and not pid_exists(pid)


class OutdirLock:
    """The run lock of ``outdir`` for ``scope`` (``all`` or ``shardKofN``); see the module docstring.

    Use as a context manager or with :meth:`acquire` / :meth:`release`.
    """

    def __init__(self, outdir: str | os.PathLike, scope: str = "all"):
        self.outdir = Path(outdir)
        self.scope = scope or "all"
        self.path = self.outdir / f"{LOCK_PREFIX}{self.scope}{LOCK_SUFFIX}"
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> OutdirLock:
        """Take the lock, or raise :class:`OutputError` naming the batch that holds an overlapping one."""
        if self._fd is not None:
            return self
        self.outdir.mkdir(parents=True, exist_ok=True)
        for _ in range(8):
            fd = self._open_and_lock()
            if _same_file(fd, self.path):
                break
            os.close(fd)  # removed and recreated by its holder meanwhile: lock the file that is there now
        else:
            raise OutputError(f"Cannot take the lock {self.path}: it keeps being replaced.")
        self._fd = fd
        try:
            self._write_record()
            self._check_other_scopes()
        except BaseException:
            self.release()
            raise
        return self

    def _open_and_lock(self) -> int:
        try:
            fd = _open_no_follow(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NONBLOCK", 0))
        except OSError as exc:
            raise OutputError(f"Cannot create the lock file {self.path}: {exc.strerror or exc}.") from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OutputError(
                f"The lock file {self.path} is not a regular file (a pipe or device); remove it."
            )
        try:
            got = _os_lock(fd, blocking=False)
        except _NoLocks:
            got = _dead_on_this_host(self.path) or not _record(self.path)
        except OSError as exc:
            os.close(fd)
            raise OutputError(f"Cannot lock {self.path}: {exc.strerror or exc}.") from exc
        if not got:
            os.close(fd)
            raise self._busy(self.path)
        return fd

    def _busy(self, path: Path) -> OutputError:
        return OutputError(
            f"Another sr4zct batch is running in {self.outdir} ({_holder_text(path)}; lock {path.name}); two "
            "runs on one output folder would run the same jobs twice. Wait for it to end, or stop it, and run "
            "the command again (a lock left by a process that has ended is taken over by itself)."
        )

    def _write_record(self) -> None:
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.time(),
            "scope": self.scope,
        }
        data = (json.dumps(record) + "\n").encode("ascii", "backslashreplace")
        os.lseek(self._fd, 0, os.SEEK_SET)
        os.ftruncate(self._fd, 0)
        os.write(self._fd, data)

    def _check_other_scopes(self) -> None:
        """Refuse when another scope whose jobs overlap ours is locked by a live run."""
        for entry in sorted(self.outdir.glob(f"{LOCK_PREFIX}*{LOCK_SUFFIX}")):
            scope = entry.name[len(LOCK_PREFIX) : -len(LOCK_SUFFIX)]
            if entry == self.path or not scopes_overlap(self.scope, scope):
                continue
            if _is_held(entry):
                raise self._busy(entry)

    def release(self) -> None:
        """Give the lock back (a no-op when not held). The lock file stays, emptied: removing it could let a
        run that opened it a moment earlier lock a file that is no longer there while a third creates a new
        one."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        _os_unlock(fd)
        os.close(fd)

    def __enter__(self) -> OutdirLock:
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _is_held(path: Path) -> bool:
    """Whether a live process holds the lock file ``path`` (probed by trying to lock it for a moment)."""
    try:
        fd = os.open(path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        if _os_lock(fd, blocking=False):
            _os_unlock(fd)
            return False
        return True
    except _NoLocks:
        return bool(_record(path)) and not _dead_on_this_host(path)
    except OSError:
        return True
    finally:
        os.close(fd)
