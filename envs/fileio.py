"""Durable file writes, shared by every writer in both packages (datasets, checkpoints, replays, CSVs).

``atomic_path(path)`` yields a temp path beside ``path`` (``<stem>.tmp-<pid><suffix>``, so writers that
add or check a suffix still see theirs); the caller writes it by any means (h5py, torch.save, zip); on a
normal exit the temp file is flushed to disk (fsync), renamed over ``path`` and the directory entry is
synced, so a crash at any moment leaves either the old file or the new one, never a torn one. On an error
the temp file is removed and ``path`` is untouched.

``remove_stale_temps(folder)`` deletes the temp files that no live writer owns: this process's own and those
of processes that no longer run (a writer killed mid-save); another live process's temp file is kept.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_TEMP = re.compile(r"\.tmp-(\d+)(\.|$)")


def temp_path(path: Path, pid: int | None = None) -> Path:
    return path.with_name(f"{path.stem}.tmp-{os.getpid() if pid is None else pid}{path.suffix}")


def _fsync(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on directories; the rename itself is still atomic
        if not directory:
            raise
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Write to the yielded temp path; it replaces ``path`` durably on a normal exit (module docstring)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent, directory=True)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete temp files in ``folder`` left by this process or by writers that no longer run; return them."""
    removed = []
    for candidate in Path(folder).glob("*.tmp-*"):
        match = _TEMP.search(candidate.name)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or not _running(pid):
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed
