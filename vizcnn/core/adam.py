"""Adam, written out, and a cosine-decayed learning rate: what render and ablate optimize with.

The same update as `torch.optim.Adam` (default betas and eps, no weight decay, no amsgrad; a test
checks the two trajectories agree), written out because `torch.optim` is expensive to *start*:
the first optimizer built in a process imports `torch._dynamo` (its `add_param_group` is wrapped
by `torch._disable_dynamo`): about 1.8 CPU s on a quiet 2-core machine and 5-25 s on a busy one,
a third of a 32-step render of 8 channels and more than a digits ablation. The moments have the
parameters' dtype: float32 for the image parameters, whatever precision the network runs in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


def cosine_lr(lr: float, step: int, steps: int) -> float:
    """The rate for `step` (0-based) of `steps`, decayed from `lr` to 0 along half a cosine.

    Equals `torch.optim.lr_scheduler.CosineAnnealingLR(T_max=steps, eta_min=0)` at each step.
    """
    return lr * (1 + math.cos(math.pi * step / steps)) / 2


class Adam:
    """Adam (Kingma & Ba) over a fixed list of tensors; `step()` reads their `.grad`.

    Example:
        >>> x = torch.zeros(3, requires_grad=True)
        >>> opt = Adam([x], lr=0.1)
        >>> (x - 1).square().sum().backward(); opt.step()
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError("Adam got no tensors that require grad")
        self.lr = lr
        self.betas = betas
        self.eps = eps
        self.steps_taken = 0
        self.first = [torch.zeros_like(p) for p in self.params]  # moment estimates
        self.second = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.steps_taken += 1
        beta1, beta2 = self.betas
        t = self.steps_taken
        step_size = self.lr / (1 - beta1**t)
        root_correction = math.sqrt(1 - beta2**t)
        for p, m, v in zip(self.params, self.first, self.second, strict=True):
            if p.grad is None:
                continue
            m.lerp_(p.grad, 1 - beta1)
            v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            p.addcdiv_(m, (v.sqrt() / root_correction).add_(self.eps), value=-step_size)
