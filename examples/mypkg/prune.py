"""RandomPruner: random unstructured pruning at the start of training, the mask held to the end.
The baseline a pruning criterion should beat; here, an example of a pruner prune-bench does not
ship (docs/extending.md). It declares its config keys (`schema`) and their checks (`check`),
and uses the documented Pruner hooks."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from prune_bench.pruning import MaskSet, Pruner, TrainContext, select_prunable


@dataclass
class RandomSection:
    """The keys of pruner=random (examples/conf/pruner/random.yaml holds the values)."""

    sparsity: float  # the fraction of each prunable layer's weights pruned
    layers: list[str]  # conv, linear
    skip_first_conv: bool
    skip_last_linear: bool


class RandomPruner(Pruner):
    """Prunes floor(sparsity x n) weights of every prunable layer of n weights, chosen at random
    (seeded by the run's seed) before the first step, and keeps them at zero."""

    name = "random"
    schema = RandomSection

    @staticmethod
    def check(section) -> list[str]:
        """One line per bad value (types are checked already, and sparsity is in [0, 1))."""
        layers = list(section.layers)
        if not layers or set(layers) - {"conv", "linear"}:
            return [f"pruner.layers: must be a non-empty list of conv, linear; got {layers}"]
        return []

    def __init__(self, section):
        self.sparsity = float(section.sparsity)
        self.selection = {"layers": tuple(section.layers), "skip_first_conv": section.skip_first_conv,
                          "skip_last_linear": section.skip_last_linear}
        self.masks: MaskSet | None = None

    def start(self, ctx: TrainContext) -> None:
        super().start(ctx)
        self.prunable = select_prunable(ctx.model, **self.selection)
        generator = torch.Generator().manual_seed(ctx.seed)
        masks = {}
        for name, weight in self.prunable.items():
            pruned = torch.randperm(weight.numel(), generator=generator)[:math.floor(self.sparsity * weight.numel())]
            mask = torch.ones(weight.numel(), dtype=torch.bool)
            mask[pruned] = False
            masks[name] = mask.view(weight.shape)
        self.masks = MaskSet(self.prunable, masks)
        self.masks.apply_()
        self.masks.zero_optimizer_state_(ctx.optimizer)

    def after_backward(self, step: int) -> None:
        self.masks.mask_grads_()

    def after_step(self, step: int) -> None:
        self.masks.apply_()

    def report(self) -> dict:
        return {"target": self.sparsity, "achieved": self.masks.sparsity(), "per_layer": self.masks.per_layer_sparsity()}

    def state_dict(self) -> dict:
        return {"masks": self.masks.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.masks.load_state_dict(state["masks"])
        self.masks.apply_()
