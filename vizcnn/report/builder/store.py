"""A report folder: its artifacts (kept in the run store's way), its pages, its manifest.

Layout of a report folder:

    SITE/vizcnn-report.json          ownership manifest (what wrote the folder, its pages)
    SITE/index.html, SITE/*.html     the pages
    SITE/artifacts/KIND-NAME-KEY/    one folder per artifact: its PNGs, then meta.json

Whether an artifact is there, made with these settings, is the run store's question
(`vizcnn.runs.store`): its `meta.json` holds a provenance block carrying the artifact's settings
and their digest (the key), and is written after the artifact's files (`write_result`), so an
artifact counts as done only when all its files are; an interrupted run leaves at most unfinished
folders, which the next run redoes.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from vizcnn.core.errors import VizError
from vizcnn.io.imaging import atomic_write, save_json
from vizcnn.io.paths import ensure_writable
from vizcnn.report.builder.plan import Artifact
from vizcnn.runs.lock import LOCK_NAME
from vizcnn.runs.store import FileData, plan_results, settings_block, write_result

MANIFEST = "vizcnn-report.json"
ARTIFACTS = "artifacts"
META = "meta.json"
FORMAT = 1


def check_report_folder(root: str | Path, *, allow_nonempty: bool = False) -> Path:
    """Check that a report can be written to `root` (nothing is written).

    Args:
        root: the report folder.
        allow_nonempty: allow a non-empty folder that no report wrote (its other files are
            left alone).

    Raises:
        VizError: the folder is not writable, or is non-empty and not a report's.
    """
    root = Path(root)
    ensure_writable(root, "folder", flag="folder")
    if root.is_dir() and not (root / MANIFEST).is_file():
        others = [p for p in root.iterdir() if p.name != LOCK_NAME]
        if others and not allow_nonempty:
            raise VizError(
                f"{str(root)!r} is not empty and was not made by `vizcnn report` "
                f"(no {MANIFEST}); choose an empty or new folder, or pass allow_nonempty=True"
            )
    return root


class ArtifactStore:
    """Reads and writes a report folder: artifacts by key, pages, the ownership manifest.

    Args:
        root: the report folder.
        allow_nonempty: allow a non-empty folder that no report wrote (its other files are
            left alone).

    Raises:
        VizError: the folder is not writable, or is non-empty and not a report's
            (`check_report_folder`).

    Example:
        >>> store = ArtifactStore("site/")
        >>> store.has(artifact)
        False
    """

    def __init__(self, root: str | Path, *, allow_nonempty: bool = False) -> None:
        self.root = check_report_folder(root, allow_nonempty=allow_nonempty)
        self.computed: list[str] = []  # artifact folders made by this store's writes
        self.reused: list[str] = []  # artifact folders found done

    def folder(self, artifact: Artifact) -> Path:
        return self.root / ARTIFACTS / artifact.folder

    def relative(self, artifact: Artifact, name: str) -> str:
        """Path of one of an artifact's files relative to the site root (for pages)."""
        return f"{ARTIFACTS}/{artifact.folder}/{name}"

    def has(self, artifact: Artifact) -> bool:
        """Whether `artifact` is complete on disk, made with the same settings."""
        return bool(self.done([artifact]))

    def done(self, artifacts: Sequence[Artifact]) -> set[int]:
        """Positions of the `artifacts` already complete with the same settings (the run store
        decides; one made otherwise is redone, it never stops a report)."""
        results = [([self.folder(a) / META], settings_block(a.settings)) for a in artifacts]
        return plan_results(results, overwrite=True).done

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
        """Write an artifact's files (PNGs get the provenance block), then its meta.json.

        The block gets the artifact's settings and their digest, by which the next run knows it.
        """
        block = {**block, **settings_block(artifact.settings)}
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
        write_result(self.folder(artifact), files, meta, meta_name=META)
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
