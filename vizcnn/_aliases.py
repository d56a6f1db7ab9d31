"""Old flat import paths (`vizcnn.imaging`, `vizcnn.rendering`, ...) kept working after the move.

The package was a flat folder of modules before it was arranged by technique; scripts written
against the old paths (the README once documented several) import the same module objects
through these aliases, resolved lazily so that importing vizcnn stays cheap.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

# old flat module -> its home in the technique layout
ALIASES: dict[str, str] = {
    "vizcnn.errors": "vizcnn.core.errors",
    "vizcnn.devices": "vizcnn.core.devices",
    "vizcnn.progress": "vizcnn.core.progress",
    "vizcnn.channels": "vizcnn.core.channels",
    "vizcnn.distributed": "vizcnn.core.distributed",
    "vizcnn.zoo": "vizcnn.models.zoo",
    "vizcnn.lenet": "vizcnn.models.lenet",
    "vizcnn.layertable": "vizcnn.receptive.table",
    "vizcnn.datasets": "vizcnn.data.datasets",
    "vizcnn.imaging": "vizcnn.io.imaging",
    "vizcnn.video": "vizcnn.io.video",
    "vizcnn.objectives": "vizcnn.optvis.objectives",
    "vizcnn.param": "vizcnn.optvis.param",
    "vizcnn.transforms": "vizcnn.optvis.transforms",
    "vizcnn.rendering": "vizcnn.optvis.rendering",
    "vizcnn.tiling": "vizcnn.deepdream.tiling",
    "vizcnn.topk": "vizcnn.mining.topk",
    "vizcnn.patches": "vizcnn.mining.patches",
}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        """The target module is already executed; nothing to do."""


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in ALIASES:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(ALIASES[fullname]))


def install() -> None:
    """Make the old paths importable (idempotent)."""
    if not any(isinstance(finder, _AliasFinder) for finder in sys.meta_path):
        sys.meta_path.append(_AliasFinder())
