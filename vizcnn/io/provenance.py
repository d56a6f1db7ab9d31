"""One provenance block: how a picture or table was made, recorded the same way everywhere.

Every PNG (text chunks), JSON manifest and report page carries the block that `provenance`
returns: model, weights and their digest, data, every option, seed, device, dtype, versions, the
exact command and the time taken. Readers (the report, a resumed run) compare blocks with
`differing_options` to decide what is stale.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import platform
import re
import shlex
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vizcnn._version import __version__

FORMAT = 1  # bump when the block's keys change meaning


def weights_digest(module: nn.Module) -> str:
    """A short SHA-256 over every parameter and buffer (names, shapes, dtypes, bytes).

    Two modules with equal digests compute the same function; a randomly initialized network
    gets a different digest for every seed, which is what resume checks need.
    """
    digest = hashlib.sha256()
    for name, tensor in (*module.named_parameters(), *module.named_buffers()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        data = tensor.detach().to("cpu").contiguous()
        if data.dtype == torch.bfloat16:  # numpy has no bfloat16: hash the raw 16-bit words
            data = data.view(torch.int16)
        digest.update(data.numpy().tobytes())
    return digest.hexdigest()[:16]


def files_digest(paths: Iterable[str | Path]) -> str:
    """A short digest of a set of files by name, size and modification time (no reading)."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        try:
            stat = path.stat()
            digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        except OSError:
            digest.update(f"{path}:missing".encode())
    return digest.hexdigest()[:16]


def tensor_digest(tensor: torch.Tensor) -> str:
    """A short digest of a tensor's shape, dtype and bytes."""
    data = tensor.detach().to("cpu").contiguous()
    if data.dtype == torch.bfloat16:
        data = data.view(torch.int16)
    digest = hashlib.sha256(f"{tuple(data.shape)}:{data.dtype}".encode())
    digest.update(data.numpy().tobytes())
    return digest.hexdigest()[:16]


def _plain(value: Any) -> Any:
    """JSON-friendly form of an option value (tuples to lists, paths and dtypes to text)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _torchvision_version() -> str | None:
    """torchvision's version as its module reports it (`0.29.1+cu130`), without importing it.

    `import torchvision` costs about 1.5 s (it loads torch._dynamo); a render that never touches
    torchvision should not pay that for one line of provenance. The module's own `version.py`
    holds the same string as `torchvision.__version__` (a test checks it).
    """
    if "torchvision" in sys.modules:
        return str(sys.modules["torchvision"].__version__)
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    version_file = Path(next(iter(spec.submodule_search_locations))) / "version.py"
    try:
        found = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", version_file.read_text(), re.M)
    except OSError:
        found = None
    if found:
        return found.group(1)
    try:
        return importlib.metadata.version("torchvision")
    except importlib.metadata.PackageNotFoundError:
        return None


def provenance(
    *,
    technique: str,
    model_name: str,
    weights: str,
    module: nn.Module | None = None,
    normalization: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    data: str | None = None,
    seed: int | str | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
    seconds: float | None = None,
    command: list[str] | None = None,
) -> dict[str, Any]:
    """The provenance block for one result.

    Args:
        technique: `dream`, `render`, `mine`, ... (what made the result).
        model_name, weights: the model's spec and where its weights came from.
        module: when given, its `weights_digest` is recorded (the weights actually used).
        normalization: the model's mean/std and whether they were defaulted
            (`LoadedModel.normalization`).
        options: every option of the technique, as the user set them or as defaulted.
        data: the data set or image the result was made from.
        seed, device, dtype: how it ran (a generator as seed: `core.devices.seed_record`).
        seconds: wall time taken (None while unknown).
        command: the command line (default: this process's `sys.argv`).

    Example:
        >>> block = provenance(technique="dream", model_name="efficientnet_lite0",
        ...                    weights="ImageNet", options={"steps": 10}, seed=0)
    """
    argv = list(sys.argv if command is None else command)
    if argv:  # `python -m vizcnn.cli.main` runs the same program as the `vizcnn` script
        name = Path(argv[0]).name
        argv[0] = "vizcnn" if name in {"main.py", "__main__.py"} else name
    return {
        "provenance": FORMAT,
        "technique": technique,
        "model": model_name,
        "weights": weights,
        "weights_digest": weights_digest(module) if module is not None else None,
        "normalization": _plain(dict(normalization)) if normalization is not None else None,
        "data": data,
        "options": _plain(dict(options or {})),
        "seed": seed,
        "device": str(device) if device is not None else None,
        "dtype": str(dtype).replace("torch.", "") if dtype is not None else None,
        "versions": {
            "vizcnn": __version__,
            "torch": torch.__version__,
            "torchvision": _torchvision_version(),
            "python": platform.python_version(),
        },
        "command": shlex.join(argv),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(seconds, 3) if seconds is not None else None,
    }


# keys that say how a result was made; the rest (time, command, versions) only describe a run
_DEFINING = ("technique", "model", "weights_digest", "normalization", "data", "seed", "dtype")


def differing_options(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """Names of the settings in which two provenance blocks differ (empty: same result).

    Options are compared one by one (`options.steps`); of the other keys only those that change
    the result count. A block without a key (older files) differs in it.
    """
    differ = [key for key in _DEFINING if stored.get(key) != wanted.get(key)]
    old = stored.get("options") or {}
    new = wanted.get("options") or {}
    differ += [f"options.{k}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return differ
