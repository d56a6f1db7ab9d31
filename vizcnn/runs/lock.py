"""One run at a time per output folder: an OS lock on `FOLDER/.vizcnn-lock` holding its pid.

The lock is `fcntl.flock` on a file in the folder: the kernel releases it when the holding
process ends, however it ends (a crash, `kill -9`), so a lock left by a process that is gone is
taken over without any staleness guess. The file holds the holder's pid and start time, which
the refusal names, and is removed when the run ends; a process that locked a file another one
had just removed sees that the path no longer names its file and tries again.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from vizcnn.core.errors import VizError

LOCK_NAME = ".vizcnn-lock"
_POLL_SECONDS = 0.2

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not protected against a second run
    fcntl = None  # type: ignore[assignment]


def _try_lock(file: IO[str]) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return "another process"
    return (
        f"process {info.get('pid', '?')} on {info.get('host', '?')} since {info.get('since', '?')}"
    )


@contextmanager
def folder_lock(folder: str | Path, *, wait: float = 0.0) -> Iterator[Path]:
    """Hold `folder`'s run lock for the body (the folder is created if missing).

    Args:
        folder: the output folder of a run.
        wait: seconds to wait for another run to finish before refusing (0: refuse at once).

    Raises:
        VizError: one line naming the process that holds the folder.

    Example:
        >>> with folder_lock("out/"):
        ...     write_results("out/")
    """
    folder = Path(folder)
    with _made(folder), _locked(folder / LOCK_NAME, str(folder), wait) as path:
        yield path


@contextmanager
def file_lock(path: str | Path, *, wait: float = 0.0) -> Iterator[Path]:
    """Hold the run lock of one output file (`dream.png`): `.dream.png.vizcnn-lock` beside it.

    For runs whose result is a single file (with its sidecar): two runs writing the same file
    never leave one's picture with the other's sidecar, and runs writing other files of the
    same folder go on. Arguments and errors as for `folder_lock`.
    """
    path = Path(path)
    with (
        _made(path.parent),
        _locked(path.parent / f".{path.name}{LOCK_NAME}", str(path), wait) as lock,
    ):
        yield lock


@contextmanager
def _made(folder: Path) -> Iterator[None]:
    """Create `folder` (and missing parents) for the body; afterwards remove those it created
    that are still empty, so a run refused before it wrote anything (a corrupt image found
    mid-way, say) leaves the file system as it found it."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield
    finally:
        for made in missing:  # deepest first; a folder holding anything stays
            try:
                made.rmdir()
            except OSError:
                break


@contextmanager
def _locked(path: Path, what: str, wait: float) -> Iterator[Path]:
    deadline = time.monotonic() + max(0.0, wait)
    while True:
        file = path.open("a+", encoding="utf-8")
        if _try_lock(file) and _names(path, file):
            break
        file.close()
        if time.monotonic() >= deadline:
            raise VizError(
                f"{what} is being written by another vizcnn run ({_holder(path)}); "
                "wait for it to finish, or write to another folder"
            )
        time.sleep(_POLL_SECONDS)
    try:
        file.seek(0)
        file.truncate()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        file.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": stamp}))
        file.flush()
        yield path
    finally:
        path.unlink(missing_ok=True)  # while still locked: no one else holds this file
        file.close()  # closing the descriptor releases the flock


def _names(path: Path, file: IO[str]) -> bool:
    """Whether `path` still names the open `file` (not removed by the holder that just left)."""
    try:
        return os.stat(path).st_ino == os.fstat(file.fileno()).st_ino
    except FileNotFoundError:
        return False
