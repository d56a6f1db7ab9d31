"""The artifact cache inside a report folder, and the folder's ownership manifest.

Layout of a report folder:

    SITE/vizcnn-report.json          ownership manifest (what wrote the folder, its pages)
    SITE/index.html, SITE/*.html     the pages
    SITE/artifacts/KIND-NAME-KEY/    one folder per artifact: its PNGs, then meta.json

An artifact's `meta.json` (key, kind, provenance block, numbers) is written last, atomically, so
an artifact counts as done only when all its files are; an interrupted run leaves at most
unfinished folders, which the next run redoes.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from vizcnn.core.errors import VizError
from vizcnn.io.imaging import atomic_write, save_json, save_png
from vizcnn.io.paths import ensure_writable
from vizcnn.microscope.plan import Artifact

MANIFEST = "vizcnn-report.json"
ARTIFACTS = "artifacts"
META = "meta.json"
FORMAT = 1

FileData = torch.Tensor | Image.Image | bytes


def _write_bytes(path: Path, content: bytes) -> None:
    atomic_write(path, lambda file: file.write(content))


class ArtifactStore:
    """Reads and writes a report folder: artifacts by key, pages, the ownership manifest.

    Args:
        root: the report folder (`-o`).
        force: allow a non-empty folder that no report wrote (its other files are left alone).

    Raises:
        VizError: the folder is not writable, or is non-empty and not a report's, without force.

    Example:
        >>> store = ArtifactStore("site/")
        >>> store.has(artifact)
        False
    """

    def __init__(self, root: str | Path, *, force: bool = False) -> None:
        self.root = Path(root)
        ensure_writable(self.root, "folder")
        manifest = self.root / MANIFEST
        if self.root.is_dir() and not manifest.is_file() and any(self.root.iterdir()) and not force:
            raise VizError(
                f"{str(self.root)!r} is not empty and was not made by `vizcnn report` "
                "(no vizcnn-report.json); choose an empty or new -o folder, or add --force"
            )
        self.computed: list[str] = []  # artifact folders made by this store's writes
        self.reused: list[str] = []  # artifact folders found done

    def folder(self, artifact: Artifact) -> Path:
        return self.root / ARTIFACTS / artifact.folder

    def relative(self, artifact: Artifact, name: str) -> str:
        """Path of one of an artifact's files relative to the site root (for pages)."""
        return f"{ARTIFACTS}/{artifact.folder}/{name}"

    def has(self, artifact: Artifact) -> bool:
        """Whether `artifact` is complete on disk with the same key."""
        meta = self.meta(artifact)
        return meta is not None and meta.get("key") == artifact.key

    def meta(self, artifact: Artifact) -> dict[str, Any] | None:
        path = self.folder(artifact) / META
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def write(
        self,
        artifact: Artifact,
        files: Mapping[str, FileData],
        block: dict[str, Any],
        data: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Write an artifact's files (PNGs get the provenance block), then its meta.json."""
        folder = self.folder(artifact)
        for name, content in files.items():
            if isinstance(content, bytes):
                _write_bytes(folder / name, content)
            else:
                save_png(content, folder / name, {"provenance": block})
        meta = {
            "format": FORMAT,
            "key": artifact.key,
            "kind": artifact.kind,
            "name": artifact.name,
            "params": artifact.params,
            "provenance": block,
            "files": sorted(files),
            "data": dict(data or {}),
        }
        save_json(meta, folder / META)
        self.computed.append(artifact.folder)
        return meta

    def claim(self, pages: Iterable[str] = ()) -> None:
        """Mark the folder as a report's (the manifest), listing the pages it holds."""
        save_json(
            {
                "vizcnn_report": FORMAT,
                "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "pages": sorted(pages),
            },
            self.root / MANIFEST,
        )

    def owned_pages(self) -> list[str]:
        try:
            data = json.loads((self.root / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        pages = data.get("pages", []) if isinstance(data, dict) else []
        return [p for p in pages if isinstance(p, str) and "/" not in p and p.endswith(".html")]

    def write_page(self, name: str, html: str) -> Path:
        return atomic_write(self.root / name, lambda f: f.write(html.encode("utf-8")))

    def prune(self, keep_artifacts: Iterable[Artifact], keep_pages: Iterable[str]) -> list[str]:
        """Remove artifact folders and pages of earlier runs that this report no longer uses."""
        keep = {a.folder for a in keep_artifacts}
        removed = []
        base = self.root / ARTIFACTS
        if base.is_dir():
            for folder in sorted(base.iterdir()):
                if folder.is_dir() and folder.name not in keep:
                    shutil.rmtree(folder, ignore_errors=True)
                    removed.append(f"{ARTIFACTS}/{folder.name}")
        pages = set(keep_pages)
        for page in self.owned_pages():
            if page not in pages and (self.root / page).is_file():
                (self.root / page).unlink()
                removed.append(page)
        return removed
