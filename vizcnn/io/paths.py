"""Output paths: check that a result can be written before the work that makes it starts."""

from __future__ import annotations

import errno
import os
import re
import tempfile
from pathlib import Path

from vizcnn.core.errors import VizError

KINDS = ("folder", "file")


def safe_stem(text: str, fallback: str = "x") -> str:
    """A file-name part that keeps a layer's or image's own name: `_blocks.9` stays `_blocks.9`.

    The one rule for every file a run names after something: letters, digits, `.`, `_` and `-`
    stay; any other run of characters (`/`, spaces, `#`, `:`) becomes one `_`; leading and
    trailing dots go (no hidden files, no `..`); an empty result is `fallback`.

    Example:
        >>> safe_stem("layer4.1#2"), safe_stem("../x y"), safe_stem("..", "unit")
        ('layer4.1_2', '_x_y', 'unit')
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip(".") or fallback


def unique_stems(texts: list[str], fallback: str = "x") -> list[str]:
    """`safe_stem` of each text, made unique in order: `photo`, `photo_2`, `photo_3`, ..."""
    stems: list[str] = []
    for text in texts:
        stem = safe_stem(text, fallback)
        name, k = stem, 2
        while name in stems:
            name, k = f"{stem}_{k}", k + 1
        stems.append(name)
    return stems


def os_reason(exc: OSError) -> str:
    """A file-system error's cause in a few words ("permission denied", "no space left ...")."""
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return (exc.strerror or str(exc)).lower()


def ensure_writable(path: str | Path, kind: str = "folder", *, flag: str = "output") -> Path:
    """Check that `path` (a folder to write into, or a file to write) can be written.

    Missing folders are created for a test write of a temporary file and removed again, so a
    check that passes, or fails, leaves the file system as it was; the writers create the
    folders they need (`atomic_write`).

    Args:
        path: the output folder, or the output file.
        kind: "folder" (files go inside `path`) or "file" (`path` itself is written).
        flag: the argument that named `path`, for the message (the CLI maps it to its flag).

    Returns:
        `path` as a `Path`.

    Raises:
        VizError: one line, e.g. "cannot write to out/: permission denied; choose another output".

    Example:
        >>> ensure_writable("mined/")  # before a long run
        PosixPath('mined')
    """
    if kind not in KINDS:
        raise VizError(f"unknown kind {kind!r}; use folder or file")
    path = Path(path)
    folder = path if kind == "folder" else path.parent
    if kind == "folder" and path.exists() and not path.is_dir():
        raise VizError(
            f"cannot write to {str(path)!r}: it is a file, not a folder; choose another {flag}"
        )
    if kind == "file" and path.is_dir():
        raise VizError(
            f"cannot write to {str(path)!r}: it is a folder; give a file name with {flag}"
        )
    missing: list[Path] = []
    probe = folder
    while not probe.exists():  # exists() is False for a path under a file, too
        if probe.parent == probe:
            break
        missing.append(probe)
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise VizError(
            f"cannot write to {str(path)!r}: {str(probe)!r} is a file, not a folder; "
            f"choose another {flag}"
        )
    created: list[Path] = []
    try:
        for part in reversed(missing):
            part.mkdir()
            created.append(part)
        handle, name = tempfile.mkstemp(prefix=".vizcnn-write-test.", dir=folder)
        os.close(handle)
        os.unlink(name)
    except OSError as exc:
        raise VizError(
            f"cannot write to {str(path)!r}: {os_reason(exc)}; choose another {flag}"
        ) from None
    finally:
        for part in reversed(created):
            try:
                part.rmdir()
            except OSError:
                pass  # something else wrote into it meanwhile: leave it
    return path
