"""Putting finished outputs in place: never over an existing file unless asked, and no empty folders left.

Checking that a target does not exist and then renaming onto it leaves a window in which another
process (a second ``stemtf separate`` with the same outputs, a user saving a file) can create the
target, and ``os.replace`` would then silently destroy it. :func:`place` closes the window: the
final move itself refuses to replace (``renameat2(RENAME_NOREPLACE)`` on Linux, else a hard link
or an exclusively created placeholder), so whoever comes second fails and the first's files survive.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterator, Sequence

from stemtf.errors import OutputError

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


def _load_renameat2():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):  # not glibc >= 2.28 (macOS, musl): use the fallbacks below
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_renameat2 = _load_renameat2()


def exists_error(target: os.PathLike | str) -> OutputError:
    """The one-line error for an output that is already there."""
    return OutputError(f"Output {str(target)!r} already exists; pass {{option:overwrite}} to replace it.")


def place(source: os.PathLike | str, target: os.PathLike | str, *, overwrite: bool) -> pathlib.Path:
    """Move the finished file or folder ``source`` to ``target`` (same file system).

    Args:
        source: A complete temporary file or folder next to ``target``.
        target: The final path.
        overwrite: Replace what is at ``target`` (a file or a folder); otherwise never touch it.

    Returns:
        ``target``.

    Raises:
        OutputError: ``target`` exists and ``overwrite`` is false (``source`` is left in place for
            the caller to delete).
    """
    source, target = pathlib.Path(source), pathlib.Path(target)
    if overwrite:
        if target.is_dir() and not target.is_symlink() and source.is_dir():
            shutil.rmtree(target)
        os.replace(source, target)
        return target
    if _renameat2 is not None:
        if _renameat2(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), _RENAME_NOREPLACE) == 0:
            return target
        code = ctypes.get_errno()
        if code == errno.EEXIST:
            raise exists_error(target)
        if code not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):  # a file system without the flag: fall back
            raise OSError(code, os.strerror(code), str(target))
    if source.is_dir():
        # An empty folder created exclusively reserves the name; renaming a folder onto an empty one is allowed.
        try:
            os.mkdir(target)
        except FileExistsError:
            raise exists_error(target) from None
        os.replace(source, target)
        return target
    try:
        os.link(source, target)  # fails with EEXIST instead of replacing
    except FileExistsError:
        raise exists_error(target) from None
    except OSError:  # no hard links here (some network/FAT file systems): reserve the name exclusively
        try:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            raise exists_error(target) from None
        os.replace(source, target)
        return target
    os.unlink(source)
    return target


@contextlib.contextmanager
def staged(
    target: os.PathLike | str, *, overwrite: bool, companions: Sequence[os.PathLike | str] = ()
) -> Iterator[pathlib.Path]:
    """Yield a temporary path next to ``target`` to write a file or folder at; on success, :func:`place` it.

    Nothing appears at ``target`` until the body has finished; a body that fails leaves nothing
    (the staging folder is deleted either way).

    Args:
        target: The final file or folder.
        overwrite: Replace what is at ``target`` (and the companions); otherwise refuse, before the
            body runs and again at the move.
        companions: Files that go with ``target`` in its folder (e.g. its JSON description), written
            by the body next to the yielded path under their own names and placed after it; if
            one cannot be placed, what was placed goes back, so ``target`` never stands without them.

    Raises:
        OutputError: ``target`` or a companion exists (and ``overwrite`` is false), or the folder
            cannot be created.
    """
    target = pathlib.Path(target)
    companions = [pathlib.Path(companion) for companion in companions]
    if not overwrite:
        for path in (target, *companions):
            if path.exists():
                raise exists_error(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as error:
        raise OutputError(f"Cannot write to {str(target.parent)!r}: {error.strerror}.") from error
    try:
        temporary = staging / target.name
        yield temporary
        # The moves themselves refuse to replace (unless overwrite): an output another process
        # wrote meanwhile survives, and this one fails with one line.
        placed = [(temporary, place(temporary, target, overwrite=overwrite))]
        try:
            for companion in companions:
                placed.append((staging / companion.name, place(staging / companion.name, companion, overwrite=overwrite)))
        except BaseException:
            for source, final in reversed(placed):
                place(final, source, overwrite=True)  # back into staging, deleted below
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def make_folders(folder: os.PathLike | str) -> list[pathlib.Path]:
    """Create ``folder`` and its missing parents; the folders created, deepest first (see :func:`remove_folders`)."""
    folder = pathlib.Path(folder)
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    created = []
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:  # created meanwhile by someone else: not ours to remove
            continue
        created.append(path)
    return created[::-1]


def remove_folders(folders: list[pathlib.Path]) -> None:
    """Remove the folders :func:`make_folders` created, deepest first, if they are empty (never anything else)."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return  # not empty (someone else's file, or ours that was kept): its parents stay too


def disk_error(path: os.PathLike | str, error: BaseException | None = None) -> OutputError:
    """A one-line error for a write to ``path`` that failed (disk full, file too large, I/O error)."""
    path = pathlib.Path(path)
    reason = getattr(error, "strerror", None)
    if reason is None:
        try:
            stats = os.statvfs(path.parent)
            reason = "the disk is full" if stats.f_bavail * stats.f_frsize < (1 << 20) else "the write failed"
        except OSError:
            reason = "the write failed"
    return OutputError(f"Cannot write {str(path)!r}: {reason}; free some space or choose another {{option:output_dir}}.")


def _open_files() -> set[str] | None:
    """Every file some process of this machine holds open (Linux's /proc), or None where that cannot be known."""
    proc = pathlib.Path("/proc")
    if not (proc / "self" / "fd").is_dir():
        return None
    held = set()
    for fd_dir in proc.glob("[0-9]*/fd"):
        try:
            for fd in fd_dir.iterdir():
                try:
                    held.add(os.readlink(fd))
                except OSError:
                    continue
        except OSError:  # a process that ended, or another user's
            continue
    return held


def remove_stale_temporaries(targets) -> list[pathlib.Path]:
    """Delete the hidden temporary files (``.NAME.*.tmp``) that a killed run left next to ``targets``.

    A temporary file that any process holds open (a run writing the same outputs right now) is
    kept; where open files cannot be listed (no /proc), only those untouched for a day go.

    Returns:
        The files deleted.
    """
    import glob
    import time

    candidates = []
    for target in map(pathlib.Path, targets):
        try:
            candidates += target.parent.glob(f".{glob.escape(target.name)}.*.tmp")
        except OSError:
            continue
    if not candidates:  # the usual case: no need to list open files
        return []
    held = _open_files()
    removed = []
    for leftover in candidates:
        try:
            if (str(leftover.resolve()) in held) if held is not None else time.time() - leftover.stat().st_mtime < 86400:
                continue
            leftover.unlink()
            removed.append(leftover)
        except OSError:
            continue
    return removed
