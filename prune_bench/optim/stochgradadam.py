"""StochGradAdam (Yun 2024, arXiv 2312.16020; docs/methods/sga2024.md): Adam on a sampled gradient.

Each step draws a fresh per-element mask Omega ~ Bernoulli(keep = sampling_rate) and runs Adam
on phi = Omega * grad: m and v are the moments of phi, bias-corrected as in Adam, and
theta -= lr * m_hat / (sqrt(v_hat) + eps). No 1/rate rescaling. At sampling_rate = 1 no mask is
drawn and the update is torch.optim.Adam's.

Open choices (docs/methods/sga2024.md), as options:
- masked_moments="decay" (default): a masked coordinate's moments still decay (phi = 0 there)
  and it still moves by the decayed momentum. "hold": its moments and weight are left untouched
  that step (bias correction keeps the global step count).
- The mask stream comes from `generator` (the runner seeds it from the run seed). Its state is
  saved in state_dict(), so a resumed run draws the same masks as an uninterrupted one.
- weight_decay: L2 (added to the gradient before sampling, as the gradient of the regularised
  objective) or, with decoupled_weight_decay=True, AdamW-style decay of every weight.
"""

from __future__ import annotations

import math

import torch

from .groupwise import GroupwiseOptimizer

MASKED_MOMENTS = ("decay", "hold")


class StochGradAdam(GroupwiseOptimizer):
    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        sampling_rate: float = 0.8,
        weight_decay: float = 0.0,
        generator: torch.Generator | None = None,
        decoupled_weight_decay: bool = False,
        masked_moments: str = "decay",
    ):
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not 0 < sampling_rate <= 1:
            raise ValueError(f"sampling_rate must be in (0, 1], got {sampling_rate}")
        if masked_moments not in MASKED_MOMENTS:
            raise ValueError(f"masked_moments must be one of {MASKED_MOMENTS}, got {masked_moments!r}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, sampling_rate=sampling_rate,
                        weight_decay=weight_decay, decoupled_weight_decay=decoupled_weight_decay,
                        masked_moments=masked_moments)
        super().__init__(params, defaults)
        if generator is None:
            device = self.param_groups[0]["params"][0].device
            generator = torch.Generator(device=device)
            generator.manual_seed(torch.initial_seed())
        self.generator = generator

    def state_dict(self):
        state = super().state_dict()
        state["sampling_generator"] = self.generator.get_state()
        return state

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        generator_state = state_dict.pop("sampling_generator", None)
        super().load_state_dict(state_dict)
        if generator_state is not None:
            self.generator.set_state(generator_state)

    def _sampling_masks(self, grads: list[torch.Tensor], rate: float) -> list[torch.Tensor]:
        """One uniform draw for all coordinates of the group, split per tensor: Omega = u < rate."""
        sizes = [g.numel() for g in grads]
        uniform = torch.rand(sum(sizes), generator=self.generator, device=self.generator.device)
        kept = (uniform < rate).to(device=grads[0].device, dtype=grads[0].dtype)
        return [part.view_as(g) for part, g in zip(kept.split(sizes), grads)]

    def update_group(self, group: dict, params: list[torch.Tensor]) -> None:
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        rate, weight_decay = group["sampling_rate"], group["weight_decay"]
        grads = [p.grad for p in params]
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] += 1
        exp_avgs = [self.state[p]["exp_avg"] for p in params]
        exp_avg_sqs = [self.state[p]["exp_avg_sq"] for p in params]
        step = self.state[params[0]]["step"]

        if weight_decay and group["decoupled_weight_decay"]:
            torch._foreach_mul_(params, 1 - lr * weight_decay)
        elif weight_decay:
            grads = torch._foreach_add(grads, params, alpha=weight_decay)
        masks = self._sampling_masks(grads, rate) if rate < 1 else None
        hold = masks is not None and group["masked_moments"] == "hold"
        if hold:
            # Masked coordinates keep their moments: lerp with weight Omega * (1 - beta).
            torch._foreach_lerp_(exp_avgs, grads, torch._foreach_mul(masks, 1 - beta1))
            torch._foreach_lerp_(exp_avg_sqs, torch._foreach_mul(grads, grads),
                                 torch._foreach_mul(masks, 1 - beta2))
        else:
            phis = torch._foreach_mul(grads, masks) if masks is not None else grads
            # Adam's moment updates, in torch.optim.Adam's operation order (bitwise Adam at rate 1).
            torch._foreach_lerp_(exp_avgs, phis, 1 - beta1)
            torch._foreach_mul_(exp_avg_sqs, beta2)
            torch._foreach_addcmul_(exp_avg_sqs, phis, phis, value=1 - beta2)
        bias_correction1 = 1 - beta1**step
        bias_correction2_sqrt = math.sqrt(1 - beta2**step)
        denominators = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denominators, bias_correction2_sqrt)
        torch._foreach_add_(denominators, eps)
        if hold:  # ... and do not move this step
            updates = torch._foreach_div(exp_avgs, denominators)
            torch._foreach_mul_(updates, masks)
            torch._foreach_add_(params, updates, alpha=-lr / bias_correction1)
        else:
            torch._foreach_addcdiv_(params, exp_avgs, denominators, value=-lr / bias_correction1)
