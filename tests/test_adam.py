"""vizcnn's Adam against torch.optim.Adam (the oracle): the same trajectory, step by step.

Building a torch.optim optimizer imports torch._dynamo (1-2 s quiet, more under load); these
tests pay it once, and most of the suite has imported it already through torchvision.
"""

from __future__ import annotations

import pytest
import torch

from vizcnn.core.adam import Adam, cosine_lr


def _loss(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # non-quadratic, so the moments differ from step to step
    return ((x - target) ** 4).sum() + torch.sin(3 * x).sum()


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_adam_follows_torch_optim_adam(schedule: str) -> None:
    generator = torch.Generator().manual_seed(0)
    start = torch.randn(2, 3, 16, 9, generator=generator)
    target = torch.randn(start.shape, generator=generator)
    ours = start.clone().requires_grad_(True)
    theirs = start.clone().requires_grad_(True)
    mine = Adam([ours], lr=0.05)
    reference = torch.optim.Adam([theirs], lr=0.05)
    steps = 40
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(reference, steps)
    for step in range(steps):
        if schedule == "cosine":
            mine.lr = cosine_lr(0.05, step, steps)
        for x, optimizer in ((ours, mine), (theirs, reference)):
            optimizer.zero_grad()
            _loss(x, target).backward()
            optimizer.step()
        if schedule == "cosine":
            cosine.step()
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    assert not torch.equal(ours, start)  # it moved


def test_cosine_lr_matches_torch_scheduler() -> None:
    x = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([x], lr=0.1)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 10)
    for step in range(10):
        assert cosine_lr(0.1, step, 10) == pytest.approx(optimizer.param_groups[0]["lr"], abs=1e-12)
        optimizer.step()
        scheduler.step()


def test_adam_refuses_an_empty_parameter_list() -> None:
    with pytest.raises(ValueError, match="no tensors"):
        Adam([torch.ones(2)], lr=0.1)  # requires_grad False: nothing to optimize


def test_adam_skips_tensors_without_gradient() -> None:
    x = torch.ones(3, requires_grad=True)
    y = torch.ones(3, requires_grad=True)
    optimizer = Adam([x, y], lr=0.1)
    (2 * y).sum().backward()  # x gets no gradient
    optimizer.step()
    assert torch.equal(x, torch.ones(3))
    assert torch.allclose(y, torch.full((3,), 0.9))  # Adam's first step moves by lr * sign
