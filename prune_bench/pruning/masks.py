"""A mask set over prunable tensors: boolean masks (True = kept) keyed by parameter name,
applied after every optimizer step with one fused multiply, saved in checkpoints."""

from __future__ import annotations

import torch
import torch.nn as nn


def select_prunable(
    model: nn.Module,
    layers=("conv", "linear"),
    skip_first_conv: bool = False,
    skip_last_linear: bool = False,
) -> dict[str, nn.Parameter]:
    """The weights a pruner may touch, by parameter name, in model order.
    Biases and BN parameters are never selected."""
    kinds = {"conv": nn.Conv2d, "linear": nn.Linear}
    unknown = set(layers) - set(kinds)
    if unknown:
        raise ValueError(f"unknown layer kinds {sorted(unknown)}; allowed: conv, linear")
    selected = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, tuple(kinds[k] for k in layers))
    ]
    convs = [name for name, m in selected if isinstance(m, nn.Conv2d)]
    linears = [name for name, m in selected if isinstance(m, nn.Linear)]
    skipped = set()
    if skip_first_conv and convs:
        skipped.add(convs[0])
    if skip_last_linear and linears:
        skipped.add(linears[-1])
    return {f"{name}.weight": m.weight for name, m in selected if name not in skipped}


def smallest_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """True at the k smallest entries of the flat `scores`, found with kthvalue (linear time, no
    sort). Ties at the k-th value go to the lowest indices, so exactly k entries are True."""
    if k <= 0:
        return torch.zeros_like(scores, dtype=torch.bool)
    if k >= scores.numel():
        return torch.ones_like(scores, dtype=torch.bool)
    threshold = scores.kthvalue(k).values
    below = scores < threshold
    at = scores == threshold
    room = k - below.sum()
    return below | (at & (at.cumsum(0) <= room))


class MaskSet:
    """Masks over named parameters. `apply_()` zeroes pruned weights, `mask_grads_()` zeroes
    their gradients, `zero_optimizer_state_()` zeroes their momentum / Adam moments, so a pruned
    weight stays exactly zero whatever the optimizer does."""

    def __init__(self, params: dict[str, nn.Parameter], masks: dict[str, torch.Tensor] | None = None):
        self.params = dict(params)
        if masks is None:
            masks = {name: torch.ones_like(p, dtype=torch.bool) for name, p in self.params.items()}
        self.set_masks(masks)

    def set_masks(self, masks: dict[str, torch.Tensor]) -> None:
        if set(masks) != set(self.params):
            raise ValueError("masks must cover exactly the prunable parameters")
        self.masks = {
            name: masks[name].to(device=p.device, dtype=torch.bool) for name, p in self.params.items()
        }
        for name, p in self.params.items():
            if self.masks[name].shape != p.shape:
                raise ValueError(f"mask for {name} has shape {tuple(self.masks[name].shape)}, weight {tuple(p.shape)}")
        # Float copies for the fused multiply (torch._foreach_mul_ needs matching dtypes), laid
        # out like their weights (e.g. channels_last) so the multiply is a plain elementwise pass.
        self._factors = [torch.empty_like(p).copy_(self.masks[name]) for name, p in self.params.items()]

    @torch.no_grad()
    def apply_(self) -> None:
        torch._foreach_mul_(list(self.params.values()), self._factors)

    @torch.no_grad()
    def mask_grads_(self) -> None:
        pairs = [(p.grad, f) for p, f in zip(self.params.values(), self._factors) if p.grad is not None]
        if pairs:
            grads, factors = zip(*pairs)
            torch._foreach_mul_(list(grads), list(factors))

    @torch.no_grad()
    def zero_optimizer_state_(self, optimizer: torch.optim.Optimizer) -> None:
        """Zero the pruned entries of every per-weight state tensor (momentum, Adam moments)."""
        pairs = [
            (value, factor)
            for p, factor in zip(self.params.values(), self._factors)
            for value in optimizer.state.get(p, {}).values()
            if isinstance(value, torch.Tensor) and value.is_floating_point() and value.shape == p.shape
        ]
        if pairs:
            states, factors = zip(*pairs)
            torch._foreach_mul_(list(states), list(factors))

    def n_total(self) -> int:
        return sum(m.numel() for m in self.masks.values())

    def n_kept(self) -> int:
        return int(sum(m.sum() for m in self.masks.values()))  # one read from the device

    def sparsity(self) -> float:
        total = self.n_total()
        return 1.0 - self.n_kept() / total if total else 0.0

    def per_layer_sparsity(self) -> dict[str, float]:
        return {name: 1.0 - float(m.float().mean()) for name, m in self.masks.items()}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: m.detach().cpu().clone() for name, m in self.masks.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.set_masks(state)
