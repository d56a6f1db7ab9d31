"""The any-model matrix: which models, which techniques, and what each refuses (and why).

`tests/test_model_matrix.py` runs every technique of `TECHNIQUES` on every model of
`TIMM_MODELS` and `TORCHVISION_FAMILIES` (random weights, small inputs) through the CLI, and
`docs/models.md`'s matrix table is checked against `REFUSALS`, so the table cannot drift from
what the tests saw.
"""

from __future__ import annotations

# timm architectures, one or more per family the issue names (all `pretrained=False`)
TIMM_MODELS: dict[str, str] = {
    "resnet50": "ResNet (zero-initialized last BatchNorm per block)",
    "resnext26ts": "ResNeXt (grouped convs, SiLU)",
    "regnety_002": "RegNetY (squeeze-excitation)",
    "efficientnet_b0": "EfficientNet (SiLU, squeeze-excitation)",
    "mobilenetv3_small_050": "MobileNetV3 (Hardswish, hard-sigmoid gates)",
    "convnext_atto": "ConvNeXt (LayerNorm, GELU, 7x7 depthwise)",
    "densenet121": "DenseNet (concatenation)",
    "vgg11": "VGG (ConvMlp head)",
    "inception_v3": "Inception (parallel branches)",
    "xception41": "Xception (separable convs)",
    "cspresnet50": "CSPNet (cross-stage partial, LeakyReLU)",
    "ghostnet_050": "GhostNet (ghost modules)",
    "repvgg_a0": "RepVGG (re-parameterizable branches)",
    "dla34": "DLA (tree aggregation)",
}

# every torchvision classification CNN family, by its smallest member
TORCHVISION_FAMILIES: dict[str, str] = {
    "alexnet": "AlexNet",
    "vgg11_bn": "VGG with BatchNorm",
    "resnet18": "ResNet",
    "resnext50_32x4d": "ResNeXt",
    "wide_resnet50_2": "Wide ResNet",
    "squeezenet1_1": "SqueezeNet",
    "densenet121": "DenseNet",
    "googlenet": "GoogLeNet (aux heads unused in eval)",
    "inception_v3": "Inception v3",
    "shufflenet_v2_x0_5": "ShuffleNetV2 (channel shuffle)",
    "mobilenet_v2": "MobileNetV2",
    "mobilenet_v3_small": "MobileNetV3",
    "mnasnet0_5": "MNASNet",
    "efficientnet_b0": "EfficientNet",
    "efficientnet_v2_s": "EfficientNetV2",
    "regnet_x_400mf": "RegNetX",
    "regnet_y_400mf": "RegNetY",
    "convnext_tiny": "ConvNeXt",
}

TECHNIQUES = (
    "layers",
    "render",
    "dream",
    "mine",
    "attribute",
    "filters",
    "featuremaps",
    "neighbors",
    "equivariance",
    "lesion",
    "report",
)

# (spec, technique) -> the refusal's text (a substring of its one line); the rest succeed
_NO_BLOCKS = (
    "has no blocks (composite modules that a Sequential, a ModuleList or a module calls one "
    "after another)"
)
REFUSALS: dict[tuple[str, str], str] = {
    # lesions remove one residual block at a time; these networks have none (plain stacks of
    # layers, Fire modules between pools, concatenating dense blocks, inception modules, DLA's
    # trees)
    **{
        (spec, "lesion"): _NO_BLOCKS
        for spec in (
            "timm:densenet121",
            "timm:vgg11",
            "timm:inception_v3",
            "timm:dla34",
            "alexnet",
            "vgg11_bn",
            "squeezenet1_1",
            "densenet121",
            "inception_v3",
        )
    },
}


def matrix_markdown() -> str:
    """The docs' table of the matrix: every model with its family, then every refusal."""
    lines = [
        "| model (`-m`) | family | refused |",
        "|---|---|---|",
    ]
    families = {f"timm:{k}": v for k, v in TIMM_MODELS.items()} | TORCHVISION_FAMILIES
    for spec, family in families.items():
        refused = [t for (s, t) in REFUSALS if s == spec]
        lines.append(f"| `{spec}` | {family} | {', '.join(refused) or 'nothing'} |")
    lines += ["", "| model | technique | the one-line refusal says |", "|---|---|---|"]
    lines += [f"| `{s}` | {t} | {why} |" for (s, t), why in REFUSALS.items()]
    return "\n".join(lines) + "\n"


def model_specs() -> list[str]:
    """Every model of the matrix as a `-m` spec."""
    return [f"timm:{name}" for name in TIMM_MODELS] + list(TORCHVISION_FAMILIES)


def input_size(spec: str) -> int:
    """The input side the matrix runs a model at: small, but what the model can take."""
    return 96 if "inception" in spec else 64


def command(spec: str, technique: str, out: str, image: str, data: str) -> list[str]:
    """The `vizcnn` command line of one cell: random weights, tiny sizes, default layers.

    `image` is a small picture file, `data` a folder of a few small pictures.
    """
    model = ["-m", spec, "--weights", "none", "--input-size", str(input_size(spec)), "-q"]
    model += ["--device", "cpu"] if technique != "layers" else []
    return {
        "layers": ["layers", *model],
        "render": ["render", *model, "-c", "0", "--steps", "2", "--image-size",
                   str(input_size(spec) // 2 if "inception" not in spec else 96), "-o", out],
        "dream": ["dream", image, *model, "--octaves", "1", "--steps", "2",
                  "-o", f"{out}/dream.png"],
        "mine": ["mine", data, *model, "--channels", "0-1", "-k", "2", "--projections",
                 "deconv", "-o", out],
        "attribute": ["attribute", image, *model, "--all", "--ig-steps", "2",
                      "--smoothgrad-samples", "2", "--occlusion-window", "32",
                      "--occlusion-stride", "32", "-o", out],
        "filters": ["filters", *model, "-o", f"{out}/filters.png"],
        "featuremaps": ["featuremaps", image, *model, "--top", "4", "-o", out],
        "neighbors": ["neighbors", image, data, *model, "-k", "2", "--no-cache",
                      "-o", f"{out}/nn.png"],
        "equivariance": ["equivariance", image, *model, "--shifts", "1,2", "-o", out],
        "lesion": ["ablate", data, *model, "--blocks", "-o", out],
        "report": ["report", *model, "--data", data, "--units-per-layer", "1", "--steps", "2",
                   "--image-size", str(input_size(spec) // 2 if "inception" not in spec else 96), "-k", "2", "--dream-octaves", "1", "--dream-steps", "1",
                   "--methods", "gradcam", "--images", image, "-o", out],
    }[technique]  # fmt: skip


def write_inputs(folder: str, count: int = 4, side: int = 96) -> tuple[str, str]:
    """A small picture and a folder of `count` small pictures (crops of the bundled photos)."""
    from pathlib import Path

    import torch.nn.functional as F

    from vizcnn.data.samples import sample_image, sample_names
    from vizcnn.io.imaging import save_png

    root = Path(folder)
    for index, name in enumerate(sample_names()[: count + 1]):
        picture = F.interpolate(sample_image(name)[None], size=(side, side), mode="area")[0]
        save_png(picture, root / ("image.png" if index == 0 else f"data/{name}.png"))
    return str(root / "image.png"), str(root / "data")
