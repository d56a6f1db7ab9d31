"""Reading checkpoint files and fitting their state dicts to a network, with one-line errors.

What users hand over in practice: a plain state dict; a training checkpoint that nests it
(`{'model': ..., 'optimizer': ...}`, also under `state_dict`, `model_state_dict`, `net`, `ema`);
keys prefixed by `module.` (DataParallel) or `_orig_mod.` (torch.compile); a whole pickled
module; a `.safetensors` file (timm's and Hugging Face's format, read with the `safetensors`
package where installed); or a file that is no checkpoint at all. Each is loaded or refused with one line that
says what was found and what to do; nothing is loaded leniently (`strict=False` would leave a
network half random without a word).
"""

from __future__ import annotations

import pickle
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vizcnn.core.errors import VizError

CHECKPOINT_SUFFIXES = {".pt", ".pth", ".ckpt", ".bin", ".tar", ".safetensors"}
# keys under which training scripts nest the model's state dict, most specific first
WRAPPER_KEYS = (
    "state_dict",
    "model_state_dict",
    "model",
    "net",
    "network",
    "ema",
    "state_dict_ema",
    "model_ema",
)
# prefixes wrappers add to every key: DataParallel/DDP, torch.compile, Lightning's `self.model`
KEY_PREFIXES = ("module.", "_orig_mod.", "model.")
_PICKLE_PROTO = 0x80  # first byte of a pickle of protocol 2 or later (torch's legacy format)


def looks_like_checkpoint(text: str) -> bool:
    """Whether a spec or `--weights` value names a checkpoint file rather than a name."""
    path = Path(text)
    return path.suffix.lower() in CHECKPOINT_SUFFIXES or path.is_file()


def read_checkpoint(path: str | Path, trust: bool = False) -> Any:
    """The object saved in `path` (on the CPU), refusing pickled code unless `trust`.

    Raises VizError naming the problem for a missing file, a file that is no PyTorch
    checkpoint, or a checkpoint that holds pickled objects (which can run code on loading).
    """
    path = Path(path)
    if path.is_dir():
        raise VizError(f"checkpoint {str(path)!r} is a folder; give the .pt/.pth file")
    if not path.is_file():
        raise VizError(f"checkpoint {str(path)!r} not found")
    if _is_safetensors(path):
        return _read_safetensors(path)
    _check_format(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc).lower()
        # torch reports damaged bytes as an "unsupported operand" of its safe unpickler too
        if "weights only load failed" not in text or "unsupported operand" in text:
            raise VizError(f"{path} is not a PyTorch checkpoint ({_unpickling(exc)})") from exc
        if not trust:
            raise VizError(
                f"{path} holds pickled objects, not only tensors (loading it can run code); "
                "load it only if you trust its source, with trust_checkpoint=True"
            ) from exc
    except Exception as exc:  # a damaged file fails in many ways (KeyError, RuntimeError, EOF)
        raise VizError(f"{path} is not a PyTorch checkpoint ({_first_line(exc)})") from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=False)  # noqa: S614 - user opted in
    except Exception as exc:  # unpickling runs arbitrary code: any exception can come out
        raise VizError(
            f"{path} could not be unpickled ({_first_line(exc)}); a saved module needs its class "
            "importable (its package installed, or run from its folder)"
        ) from exc


def _is_safetensors(path: Path) -> bool:
    """A safetensors file by name, or by content: an 8-byte little-endian header length, then
    that much JSON."""
    if path.suffix.lower() == ".safetensors":
        return True
    with path.open("rb") as file:
        head = file.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return 2 <= length <= path.stat().st_size - 8


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file (it holds tensors only: nothing to trust)."""
    try:
        from safetensors.torch import load_file
    except ImportError as exc:
        raise VizError(
            f"{path} is a safetensors file; reading it needs the safetensors package "
            "(pip install safetensors)"
        ) from exc
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # SafetensorError, OSError, ...: a damaged file fails in many ways
        raise VizError(f"{path} is a damaged safetensors file ({_first_line(exc)})") from exc


def _check_format(path: Path) -> None:
    """Refuse, before unpickling, a file in neither of torch's formats (zip or legacy pickle)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if not any(name.endswith("data.pkl") for name in archive.namelist()):
                raise VizError(
                    f"{path} is not a PyTorch checkpoint (a zip archive without data.pkl)"
                )
        return
    with path.open("rb") as file:
        head = file.read(8)
    if not head or head[0] != _PICKLE_PROTO:
        raise VizError(
            f"{path} is not a PyTorch checkpoint (neither torch.save's zip nor a pickle; "
            f"it starts with {head!r})"
        )


def _unpickling(exc: BaseException) -> str:
    """The line of torch's long safe-unpickler message that says what went wrong."""
    lines = [line.strip() for line in str(exc).splitlines()]
    found = next((line for line in lines if line.startswith("Unsupported operand")), None)
    return f"unreadable pickle: {found}" if found else _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def is_state_dict(value: Any) -> bool:
    """A non-empty mapping of string keys to tensors."""
    return (
        isinstance(value, Mapping)
        and len(value) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())
    )


def unwrap_state_dict(saved: Any, source: str) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict inside a checkpoint, and where it was found (`""` or `"['model']"`).

    Training checkpoints nest the weights next to optimizer state and epoch counters; a known
    wrapper key (`WRAPPER_KEYS`), or the only entry that is a state dict, is followed (up to
    three levels). Anything else gets a one-line error listing the keys found.
    """
    where = ""
    for _ in range(4):
        if isinstance(saved, nn.Module):
            saved = saved.state_dict()
        if is_state_dict(saved):
            return dict(saved), where
        if not isinstance(saved, Mapping):
            break
        key = next(
            (k for k in WRAPPER_KEYS if isinstance(saved.get(k), (Mapping, nn.Module))), None
        )
        if key is None:
            nested = [k for k, v in saved.items() if is_state_dict(v)]
            if len(nested) != 1:
                keys = ", ".join(repr(k) for k in list(saved)[:8])
                more = ", ..." if len(saved) > 8 else ""
                hint = (
                    f"several entries hold weights ({', '.join(map(repr, nested))}); "
                    "save the one you want alone: torch.save(checkpoint[KEY], 'weights.pt')"
                    if nested
                    else "no entry holds a state dict of tensors"
                )
                raise VizError(f"{source} holds a dict with keys {keys}{more}: {hint}")
            key = nested[0]
        saved = saved[key]
        where += f"[{key!r}]"
    raise VizError(
        f"{source} holds a {type(saved).__name__}, not a state dict (name -> tensor) or module"
    )


def _strip_prefixes(
    state: dict[str, torch.Tensor], expected: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Drop a wrapper's prefix (`module.`, ...) shared by every key when the network lacks it."""
    for _ in range(len(KEY_PREFIXES)):
        if any(k in expected for k in state):
            break
        prefix = next((p for p in KEY_PREFIXES if all(k.startswith(p) for k in state)), None)
        if prefix is None:
            break
        state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def fit_state_dict(
    module: nn.Module, state: Mapping[str, torch.Tensor], source: str, target: str, hint: str
) -> None:
    """Load `state` into `module` exactly, or raise one line naming what does not fit.

    Args:
        source: the file, for messages.
        target: the network's name, for messages.
        hint: what to try when the keys do not match (e.g. "name its architecture with arch=...").
    """
    expected = module.state_dict()
    given = _strip_prefixes(dict(state), expected)
    # BatchNorm fills in a missing counter itself (checkpoints from before torch 0.4.1 lack it)
    missing = [k for k in expected if k not in given and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in given if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (first: {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (first: {unexpected[0]})")
        raise VizError(f"{source} does not fit {target}: {', '.join(parts)}; {hint}")
    for key, value in given.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise VizError(
                f"{source} does not fit {target}: {key} has shape {tuple(value.shape)} in the "
                f"file but {tuple(expected[key].shape)} in the network; {hint}"
            )
    # keys and shapes are checked above; strict=False only lets BatchNorm's missing counters by
    module.load_state_dict(given, strict=False)


def load_weights_file(
    module: nn.Module, path_text: str, target: str, trust: bool = False, hint: str = ""
) -> str:
    """Read a checkpoint, unwrap its state dict and load it into `module`; returns a source text.

    Example:
        >>> source = load_weights_file(net, "lenet.pt", "lenet5_digits")  # 'state dict lenet.pt'
    """
    saved = read_checkpoint(path_text, trust)
    state, where = unwrap_state_dict(saved, path_text)
    fit_state_dict(
        module, state, path_text, target, hint or f"give a state dict saved from {target}"
    )
    return f"state dict {Path(path_text).name}{where}"
