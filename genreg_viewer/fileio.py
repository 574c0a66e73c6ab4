"""Small file helpers shared by the CLI, training and the GUI: atomic writes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import stat
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterator


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: read once at import (os.umask is process-global; changing it later from worker threads would race)
_UMASK = _read_umask()


def _mode_for(target: Path) -> int:
    """The permission bits of the file ``target`` replaces, or the default for a new file."""
    try:
        return os.stat(target).st_mode & 0o777  # not set-user-ID and the like
    except OSError:  # no file yet (or unreadable metadata): normal permissions
        return 0o666 & ~_UMASK


class NotRegularFileError(OSError, ValueError):
    """A path the program would write (or read by itself) exists but is not a regular file: a device, a FIFO, a
    socket. Both an ``OSError`` and a ``ValueError`` (like :class:`io.UnsupportedOperation`), so every caller that
    reports either shows its one line."""


def _kind(mode: int) -> str:
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_not_special(path: str | os.PathLike, what: str = "output") -> None:
    """Refuse an existing ``path`` (followed through links) that is neither a regular file nor a folder: a device
    node (``/dev/null``, a copy of ``/dev/zero``), a FIFO or a socket. Replacing it would turn a device into a
    file; reading it may never end. A missing path or a dangling link passes (nothing is there to replace)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # missing, dangling, unreadable: callers that need it report that themselves
        return
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise NotRegularFileError(f"{what} {os.fspath(path)} is {_kind(mode)}, not a regular file; give a file name")


def check_regular_file(path: str | os.PathLike, what: str = "file") -> Path:
    """``path`` as a ``Path`` when it is an existing regular file (links followed); ``FileNotFoundError`` when it is
    missing or a dangling link, :class:`NotRegularFileError` for a folder, device, FIFO or socket. For the files
    the program opens by itself (a session's ``session.json``, a calibration mask), which must never block."""
    target = Path(path)
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {target} does not exist") from None
    except OSError as exc:
        raise FileNotFoundError(f"{what} {target} cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(mode):
        raise NotRegularFileError(f"{what} {target} is a folder, not a file")
    if not stat.S_ISREG(mode):
        raise NotRegularFileError(f"{what} {target} is {_kind(mode)}, not a regular file")
    return target


#: temporaries are named ``.<target name>.genreg-<host>-<pid>-<random><suffix>``: a later run on the same machine
#: removes those whose process no longer runs (killed with ``kill -9``, which leaves no chance to clean up)
_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
_TEMPORARY = re.compile(r"^\..+\.genreg-([0-9a-f]{6})-(\d+)-")
_SWEPT: set[str] = set()
_SWEPT_LOCK = threading.Lock()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but another user's
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporaries :func:`atomic_path` left in ``folder`` from processes of this machine that no longer
    run; returns them. Only regular files named as this module names its temporaries are touched."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(os.fspath(folder)))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMPORARY.match(str(entry.name))
        if not match or match.group(1) != _HOST:
            continue
        pid = int(match.group(2))
        if pid == os.getpid() or _alive(pid):
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


def _sweep_once(folder: Path) -> None:
    """:func:`remove_stale_temporaries` the first time this process writes into ``folder``."""
    key = os.path.abspath(folder)
    with _SWEPT_LOCK:
        if key in _SWEPT:
            return
        _SWEPT.add(key)
    remove_stale_temporaries(folder)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    A crash or exception while writing leaves any existing file at ``path`` untouched. The temporary name keeps
    ``path``'s suffix (or ``suffix``) so that libraries choosing a format by extension still work. A replaced file
    keeps its permission bits (a private 0600 output stays private); a new one gets the usual ``0666 & ~umask``.
    A ``path`` that is a device, FIFO or socket is refused (:class:`NotRegularFileError`) before anything is
    written: renaming over it would replace, say, ``/dev/null`` by a regular file. Temporaries of killed processes
    in the folder are removed the first time a process writes there (:func:`remove_stale_temporaries`).
    """
    target = Path(path)
    check_not_special(target, "output")
    target.parent.mkdir(parents=True, exist_ok=True)
    _sweep_once(target.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.genreg-{_HOST}-{os.getpid()}-",
                                    suffix=suffix or target.suffix or ".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, _mode_for(target))  # mkstemp creates 0600
        check_not_special(target, "output")  # made a device or FIFO while we wrote
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp_path)`` and move the result onto ``path`` atomically."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def check_writable(path: str | os.PathLike, what: str = "output") -> Path:
    """Refuse, before any long computation, an output ``path`` that :func:`atomic_path` could not write: an existing
    folder, a device, FIFO or socket (never replaced by a file), a read-only existing file, a folder on the way that
    is a file, or a folder that is not writable (tried with a temporary file, so read-only file systems are caught
    too). ``ValueError`` naming ``what``."""
    if not str(path).strip():
        raise ValueError(f"{what} is empty; give a file name")
    target = Path(path)
    if target.is_dir():
        raise ValueError(f"{what} {str(target)!r} is a folder; give a file name")
    check_not_special(target, what)
    if target.exists() and not os.access(target, os.W_OK):
        raise ValueError(f"{what} {target} is read-only")
    _check_folder_writable(target.absolute().parent, what, target, "write")  # atomic_path creates missing folders
    return target


def _check_folder_writable(folder: Path, what: str, shown: Path, verb: str) -> None:
    """The nearest existing folder at or above ``folder`` must be a folder that a temporary file can be created in
    (so read-only file systems are caught too); ``ValueError`` "cannot ``verb`` ``what`` ``shown``: ..." otherwise."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"cannot {verb} {what} {shown}: {folder} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".genreg-write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ValueError(f"cannot write {what} {shown}: the folder {folder} is not writable "
                         f"({exc.strerror or exc})") from None


def check_output_folder(path: str | os.PathLike, what: str = "--out") -> Path:
    """Refuse, before any long computation, an output *folder* that cannot be created or written: a file, device or
    FIFO in its place (``/dev/null`` is never a folder), a file on the way, a read-only folder (tried with a
    temporary file). A missing folder is fine: the writer creates it. ``ValueError`` naming ``what``."""
    if not str(path).strip():
        raise ValueError(f"{what} is empty; give a folder")
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        kind = "a file" if folder.is_file() else _kind(os.stat(folder).st_mode)
        raise ValueError(f"{what} {folder} is {kind}, not a folder; give a folder")
    _check_folder_writable(folder.absolute(), what, folder, "create")
    return folder
