"""The state folder is private: it holds personal data (docs/state.md), so only its owner may read it.

Folders are 0700 and files 0600. Polars, SQLite and the CSV writer create files with the process umask,
so a run sets the umask to 077 when it opens a state folder, and tightens what an older version left
readable. Failures to write it (no space left, read-only, another owner) become `StateUnusable`: one line
naming the path and what to do, never "export it again", since the export is not what is wrong.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
UMASK = 0o077
_FULL = (errno.ENOSPC, errno.EDQUOT)
_DENIED = (errno.EACCES, errno.EPERM)
# How Polars (Rust) and SQLite spell the same failures in their messages.
_FULL_TEXT = ("no space left on device", "os error 28", "database or disk is full", "disk quota exceeded")
_IO = (errno.EFBIG, errno.EIO)
_IO_TEXT = ("file too large", "os error 27", "disk i/o error", "input/output error", "os error 5")
_DENIED_TEXT = ("permission denied", "os error 13", "readonly database", "read-only file system", "os error 30",
                "unable to open database file")


_TIGHTENED: set[Path] = set()


class StateUnusable(Exception):
    """The state folder cannot be written; nothing acknowledged is lost and the same command resumes."""


def open_private(state: Path) -> Path:
    """Create the state folder 0700 if needed, set the umask to 077 for what this process writes, and make
    what is already there private (folders 0700, files 0600). Returns the folder."""
    state = Path(state)
    os.umask(UMASK)
    try:
        state.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        if state.resolve() not in _TIGHTENED:  # once per process: a run opens its folder at every stage
            _tighten(state)
            _TIGHTENED.add(state.resolve())
    except OSError as exc:
        raise (unusable(exc, state) or StateUnusable(f"cannot use {state} as the state folder: {exc.strerror}")) \
            from None
    return state


def _tighten(root: Path) -> None:
    """chmod what is wider than private; only what needs it, so an unchanged folder costs a stat per entry."""
    _chmod(root, DIR_MODE)
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            _chmod(Path(folder, name), DIR_MODE)
        for name in files:
            _chmod(Path(folder, name), FILE_MODE)


def _chmod(path: Path, mode: int) -> None:
    current = stat.S_IMODE(path.lstat().st_mode)
    if not stat.S_ISLNK(path.lstat().st_mode) and current & ~mode:
        path.chmod(current & mode)


def unusable(exc: BaseException, state: Path | None = None) -> StateUnusable | None:
    """The StateUnusable an OS, Polars or SQLite failure to write means, or None if it is something else."""
    code = exc.errno if isinstance(exc, OSError) else None
    text = str(exc).lower()
    where = getattr(exc, "filename", None) or (str(state) if state is not None else "the state folder")
    if code in _FULL or any(t in text for t in _FULL_TEXT):
        return StateUnusable(
            f"no space left for {where}: free space on that disk or move the state folder (--state); nothing "
            "acknowledged is lost, and the same command resumes"
        )
    if code in _DENIED or code == errno.EROFS or any(t in text for t in _DENIED_TEXT):
        return StateUnusable(
            f"cannot write {where}: it is read-only or belongs to another user; give this user write access "
            "(chmod -R u+rwX on the state folder) or choose another --state; the same command then resumes"
        )
    if code in _IO or any(t in text for t in _IO_TEXT):
        return StateUnusable(
            f"cannot write {where}: {'a file size limit was reached' if code == errno.EFBIG or 'too large' in text else 'the disk answered an I/O error'}"
            " (ulimit -f, a quota, a failing disk); fix it or choose another --state; nothing acknowledged is "
            "lost, and the same command resumes"
        )
    if code in (errno.ENOTDIR, errno.EEXIST):
        return StateUnusable(f"cannot create {where}: a file is in the way of a folder; choose another --state")
    return None


PROBE = ".write-probe"
PROBE_BYTES = 1 << 20  # a commit writes files of this order: a size limit below it fails here, not mid-commit


def prove_writable(folders: list[Path], state: Path) -> None:
    """Create, fill, fsync and remove a probe file in each folder (creating the folder as a run would):
    StateUnusable, before anything is sent, if the commit could not write there."""
    for folder in folders:
        probe = Path(folder) / PROBE
        try:
            Path(folder).mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
            try:
                data = memoryview(b"\0" * PROBE_BYTES)
                while data:  # a size limit first shortens a write; the next one fails (EFBIG)
                    data = data[os.write(fd, data):]
                os.fsync(fd)
            finally:
                os.close(fd)
            probe.unlink()
        except OSError as exc:
            with contextlib.suppress(OSError):
                probe.unlink(missing_ok=True)
            raise (unusable(exc, state) or StateUnusable(f"cannot write {folder}: {exc.strerror}; choose another "
                                                         "--state, then run the same command")) from None
