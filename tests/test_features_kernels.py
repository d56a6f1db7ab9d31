"""Classic kernels through conv2d equal scipy's correlate2d, channel by channel."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scipy.signal import correlate2d

from vizcnn.cli.main import app
from vizcnn.core.errors import VizError
from vizcnn.features.kernels import apply_kernel, apply_kernels, classic_kernels, pick_kernels


@pytest.fixture
def image() -> torch.Tensor:
    return torch.rand(3, 13, 17, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


@pytest.mark.parametrize("name", list(classic_kernels()))
def test_every_kernel_equals_correlate2d(image: torch.Tensor, name: str) -> None:
    kernel = classic_kernels(torch.float64)[name]
    k = kernel.numpy()
    zeros = apply_kernel(image, kernel, "zeros")
    valid = apply_kernel(image, kernel, "valid")
    replicate = apply_kernel(image, kernel, "replicate")
    for c in range(3):
        x = image[c].numpy()
        np.testing.assert_allclose(
            zeros[c].numpy(), correlate2d(x, k, mode="same", boundary="fill"), atol=1e-12
        )
        np.testing.assert_allclose(valid[c].numpy(), correlate2d(x, k, mode="valid"), atol=1e-12)
        padded = np.pad(x, 1, mode="edge")
        np.testing.assert_allclose(
            replicate[c].numpy(), correlate2d(padded, k, mode="valid"), atol=1e-12
        )


def test_kernel_is_not_flipped_and_batches(image: torch.Tensor) -> None:
    # an asymmetric kernel tells correlation from convolution
    kernel = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    out = apply_kernel(image, kernel, "valid")
    torch.testing.assert_close(out, image[:, 1:-1, :-2])  # output[y, x] = image[y, x - 1]
    batch = torch.stack([image, image.flip(-1)])
    batched = apply_kernel(batch, kernel, "zeros")
    torch.testing.assert_close(batched[1], apply_kernel(image.flip(-1), kernel, "zeros"))
    assert set(apply_kernels(image)) == set(classic_kernels())


def test_kernel_names_and_bad_input() -> None:
    assert pick_kernels(None)[0] == "identity" and len(pick_kernels([])) == 7
    with pytest.raises(VizError, match="did you mean"):
        pick_kernels(["sharpn"])
    with pytest.raises(VizError, match="odd"):
        apply_kernel(torch.rand(1, 5, 5), torch.ones(2, 2))


def test_kernels_command(tmp_path) -> None:
    out = tmp_path / "k.png"
    result = CliRunner().invoke(
        app,
        [
            "kernels",
            "sample:camera",
            "--size",
            "64",
            "-k",
            "sharpen",
            "-k",
            "identity",
            "--device",
            "cpu",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["provenance"]["technique"] == "kernels"
    assert data["provenance"]["options"]["kernels"] == ["sharpen", "identity"]
    assert set(data["result"]) == {"sharpen", "identity"}
    assert data["result"]["identity"]["output_range"][0] >= 0


@pytest.mark.parametrize(
    "args,message",
    [
        (["missing.png"], "not found"),
        (["sample:cofee"], "did you mean"),
        (["sample:coffee", "-k", "blur"], "unknown kernel"),
        (["sample:coffee", "-o", "k.gif"], ".png"),
    ],
)
def test_kernels_command_one_line_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["kernels", *args])
    assert result.exit_code == 1, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
