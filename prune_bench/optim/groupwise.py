"""The step shared by the project's own optimizers: each parameter group's parameters that have a
gradient are updated together (foreach kernels), in one call per group."""

from __future__ import annotations

import torch


def closure_loss(closure):
    """torch.optim's closure convention: the loss of `closure()` with gradients on, or None."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


class GroupwiseOptimizer(torch.optim.Optimizer):
    """Subclasses implement `update_group(group, params)`: `params` are the group's parameters
    with a gradient (a group with none is skipped)."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self.update_group(group, params)
        return loss

    def update_group(self, group: dict, params: list[torch.Tensor]) -> None:
        raise NotImplementedError
