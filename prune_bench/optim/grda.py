"""gRDA, generalized regularized dual averaging (Chao, Wang, Xing, Cheng, NeurIPS 2020,
"Directional Pruning of Deep Neural Networks", arXiv 2006.09358; docs/methods/grda2020.md).

Per parameter tensor, as in the authors' PyTorch optimizer: an accumulator a_0 = w_0 (a copy
of the weights at the first step), and each step with the current learning rate gamma

    n += 1
    a -= gamma * grad
    lambda += c * gamma^(mu + 1/2) * (n^mu - (n - 1)^mu)
    w = sign(a) * max(|a| - lambda, 0)

With a constant gamma the threshold is lambda_n = c * gamma^(1/2) * (n * gamma)^mu. The update
acts on every parameter it is given, with no momentum and no weight decay; c = 0 is plain SGD.

Where this differs from the authors' code only in speed: the accumulator update and the
soft-thresholding are foreach ops over all tensors of a group, and n and lambda are kept once
per group on the host (n is the same for every tensor of a group). lambda is a float32 value
accumulated with float32 rounding, as the authors' float32 tensor is; it reaches the device as
a kernel scalar argument, which is exact for a float32 value and needs no copy or sync. Each
increment is computed in float64 before rounding to float32 (the authors compute it in float32,
where n^mu - (n-1)^mu loses most of its digits to cancellation once n is large).
"""

from __future__ import annotations

import numpy as np
import torch

from .groupwise import GroupwiseOptimizer


def threshold_increment(c: float, lr: float, mu: float, n: int) -> float:
    """c * lr^(mu + 1/2) * (n^mu - (n-1)^mu): what the threshold grows by at step n (from 1)."""
    return c * lr ** (mu + 0.5) * (n**mu - (n - 1) ** mu)


def float32_add(total: float, increment: float) -> float:
    """total + increment rounded as float32 arithmetic rounds it (float32 operands and result)."""
    return float(np.float32(total) + np.float32(increment))


class GRDA(GroupwiseOptimizer):
    """gRDA with soft-thresholding (l1 penalty). `c` scales the threshold, `mu` its growth;
    0.5 < mu < 1 and 0 < c < 0.005 are the paper's guidance, larger is sparser.

    Group state besides the hyperparameters: `n_steps` (n) and `threshold` (lambda, a float32
    value held as a Python float so that state_dict() loads with weights_only=True).
    Parameter state: `accumulator` (a)."""

    def __init__(self, params, lr: float = 0.01, c: float = 0.0, mu: float = 0.7):
        if not lr > 0:
            raise ValueError(f"GRDA: lr must be > 0, got {lr}")
        if not c >= 0:
            raise ValueError(f"GRDA: c must be >= 0, got {c}")
        if not mu > 0:
            raise ValueError(f"GRDA: mu must be > 0, got {mu}")
        super().__init__(params, dict(lr=lr, c=c, mu=mu))

    def add_param_group(self, param_group: dict) -> None:
        param_group.setdefault("n_steps", 0)
        param_group.setdefault("threshold", 0.0)
        super().add_param_group(param_group)

    def update_group(self, group: dict, params: list[torch.Tensor]) -> None:
        grads = [p.grad for p in params]
        if any(g.is_sparse for g in grads):
            raise RuntimeError("GRDA does not support sparse gradients")
        accumulators = [self._accumulator(p) for p in params]
        lr = group["lr"]
        group["n_steps"] += 1
        group["threshold"] = float32_add(
            group["threshold"], threshold_increment(group["c"], lr, group["mu"], group["n_steps"]))
        threshold = group["threshold"]

        torch._foreach_add_(accumulators, grads, alpha=-lr)
        # sign(a) * max(|a| - lambda, 0) written as a - clamp(a, -lambda, lambda): the same
        # float32 value (|a| - lambda is rounded alike), in fewer passes over memory.
        inside = torch._foreach_clamp_min(accumulators, -threshold)
        torch._foreach_clamp_max_(inside, threshold)
        torch._foreach_copy_(params, accumulators)
        torch._foreach_sub_(params, inside)

    def _accumulator(self, param: torch.Tensor) -> torch.Tensor:
        state = self.state[param]
        if "accumulator" not in state:  # a_0 = w_0: the weights when training starts
            state["accumulator"] = param.detach().clone()
        return state["accumulator"]
