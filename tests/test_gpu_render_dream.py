"""CUDA smoke tests of render and dream: deterministic repeats and the memory estimate.

Skipped without a GPU (this project's CI has none); run them where a CUDA device is lent.
"""

from __future__ import annotations

import pytest
import torch
from _render_models import tiny_loaded

from vizcnn.core.devices import make_generator
from vizcnn.core.run_options import RunOptions
from vizcnn.deepdream.dreaming import DreamConfig, dream, dream_memory
from vizcnn.optvis.config import RenderConfig
from vizcnn.optvis.rendering import render

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def test_deterministic_render_repeats_bit_for_bit_and_restores_the_flag() -> None:
    loaded = tiny_loaded(size=32).to("cuda")
    config = RenderConfig(steps=20, size=24)
    units = ["features.0:0-3", "features.2:0"]
    first = render(loaded, units, config, seed=1, run=RunOptions(batch=4, deterministic=True))
    second = render(loaded, units, config, seed=1, run=RunOptions(batch=4, deterministic=True))
    assert torch.equal(first.images, second.images)
    assert not torch.are_deterministic_algorithms_enabled()  # scoped to the call
    # the same pictures as without the switch, up to the nondeterministic sums' noise
    loose = render(loaded, units, RenderConfig(steps=20, size=24), seed=1, run=RunOptions(batch=4))
    torch.testing.assert_close(loose.images, first.images, atol=1e-3, rtol=0)


def test_deterministic_dream_repeats_and_estimate_bounds_the_peak() -> None:
    loaded = tiny_loaded(size=32).to("cuda")
    loaded.default_layers["dream"] = ["features.2"]
    image = torch.rand(3, 256, 256, generator=torch.Generator().manual_seed(0)).cuda()
    config = DreamConfig(octaves=2, steps=3, tile=0)
    a = dream(loaded, image, config, seed=0, run=RunOptions(deterministic=True))
    b = dream(
        loaded, image, config, seed=make_generator(0), run=RunOptions(deterministic=True)
    )  # an int is a CPU generator
    assert torch.equal(a, b)
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    dream(loaded, image, config, seed=0, run=RunOptions(deterministic=True))
    peak = torch.cuda.max_memory_allocated() - base
    estimate = dream_memory(loaded, (256, 256), config).total
    assert estimate / 3 < peak < estimate * 3  # the estimate is within a factor of a few


def test_techniques_on_cuda_leave_the_global_generators_alone() -> None:
    loaded = tiny_loaded(size=32).to("cuda")
    loaded.default_layers["dream"] = ["features.2"]
    image = torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(0)).cuda()
    cpu, cuda = torch.get_rng_state(), torch.cuda.get_rng_state()
    render(loaded, ["features.0:0-1"], RenderConfig(steps=2, size=24), seed=3)
    render(loaded, ["features.0:0"], RenderConfig(steps=2, size=24), seed=make_generator(3, "cuda"))
    dream(loaded, image, DreamConfig(octaves=1, steps=2), seed=make_generator(1, "cuda"))
    dream(loaded, image, DreamConfig(octaves=1, steps=2), seed=1)
    assert torch.equal(torch.get_rng_state(), cpu)
    assert torch.equal(torch.cuda.get_rng_state(), cuda)


def test_an_int_seed_gives_the_same_dream_rolls_on_cpu_and_cuda() -> None:
    """The rolls come from a CPU generator: the CUDA dream equals the CPU one up to the
    network's float rounding (TF32 off), never by chance of a device generator."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        image = torch.rand(3, 48, 48, generator=torch.Generator().manual_seed(2))
        config = DreamConfig(octaves=1, steps=3, jitter=8)
        outs = []
        for device in ("cpu", "cuda"):
            loaded = tiny_loaded(size=32).to(device)
            loaded.default_layers["dream"] = ["features.2"]
            outs.append(
                dream(loaded, image.to(device), config, seed=4, run=RunOptions(amp=False)).cpu()
            )
        torch.testing.assert_close(outs[1], outs[0], atol=1e-4, rtol=0)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
