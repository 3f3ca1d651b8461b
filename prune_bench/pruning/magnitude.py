"""One-shot magnitude pruning after training, without fine-tuning (Yun 2024;
docs/methods/sga2024.md): psi = sorted(|W|)[ceil(P/100 * |W|)] and weights with |w| < psi are set to zero,
at each level P, on a copy of the trained weights, then the test accuracy is measured.

Options (the paper leaves them open; docs/methods/sga2024.md):
- scope: global (default; one threshold over all prunable tensors) | layer (per tensor);
- ties: exact_k (default: exactly k = ceil(P * n) weights pruned, ties at the threshold broken
  by position) | threshold (the literal rule: prune |w| < psi, so ties at psi survive);
- which tensors: conv and linear weights (default), no BN, no biases.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
from omegaconf import OmegaConf

from ..registry import Component, choice, integer
from .base import Pruner, StageSpec, pretrain_stage
from .masks import MaskSet, select_prunable, smallest_k

SCOPES = ("global", "layer")
TIES = ("exact_k", "threshold")


def n_to_prune(n: int, sparsity: float) -> int:
    """k = ceil(P * n): the index of psi in the sorted magnitudes (rounded first, so that
    0.3 * 1000 = 300.00000000000006 does not become 301)."""
    return min(n, math.ceil(round(sparsity * n, 6)))


def smallest_k_mask(scores: torch.Tensor, k: int, ties: str = "exact_k") -> torch.Tensor:
    """Boolean mask (True = kept) over a flat score vector with the k smallest scores pruned:
    exactly k (exact_k), or the literal rule, every score below psi = sorted(scores)[k]
    (threshold: ties at psi survive, so fewer may go)."""
    if ties == "exact_k":
        return ~smallest_k(scores, k)
    if k >= scores.numel():  # psi would lie past the end: everything goes
        return torch.zeros_like(scores, dtype=torch.bool)
    if k <= 0:
        return torch.ones_like(scores, dtype=torch.bool)
    psi = torch.kthvalue(scores, k + 1).values  # sorted(scores)[k], 0-based
    return scores >= psi


def magnitude_masks(tensors: dict[str, torch.Tensor], sparsity: float, scope: str = "global",
                    ties: str = "exact_k") -> dict[str, torch.Tensor]:
    """Masks (True = kept) pruning the `sparsity` fraction of smallest-|w| entries, over all
    tensors together (scope="global") or within each tensor (scope="layer")."""
    if not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
    magnitudes = {name: t.detach().abs() for name, t in tensors.items()}
    if scope == "layer":
        return {
            name: smallest_k_mask(m.flatten(), n_to_prune(m.numel(), sparsity), ties).view_as(m)
            for name, m in magnitudes.items()
        }
    flat = torch.cat([m.flatten() for m in magnitudes.values()])
    kept = smallest_k_mask(flat, n_to_prune(flat.numel(), sparsity), ties)
    sizes = [m.numel() for m in magnitudes.values()]
    return {name: part.view_as(m) for (name, m), part in zip(magnitudes.items(), kept.split(sizes))}


def level_key(sparsity: float) -> str:
    """Record key of a pruning level: 0.5 -> "p50", 0.125 -> "p12.5"."""
    return f"p{round(100 * sparsity, 4):g}"


class MagnitudePruner(Pruner):
    """Trains nothing itself. Its run has two stages: the shared dense training (every level and
    every pruner of this kind reuses it), then the prune stage: at its start every level is
    evaluated on a pruned copy and the model is pruned at `sparsity` (the run's result), then
    `finetune_epochs` of training with the mask held (none in the paper)."""

    name = "magnitude"

    def __init__(self, sparsity: float, sparsity_levels, scope: str, ties: str, layers,
                 skip_first_conv: bool, skip_last_linear: bool, finetune_epochs: int):
        self.sparsity = float(sparsity)
        self.levels = sorted({float(s) for s in sparsity_levels} | {self.sparsity})
        self.scope, self.ties = scope, ties
        self.selection = dict(layers=tuple(layers), skip_first_conv=skip_first_conv,
                              skip_last_linear=skip_last_linear)
        self.finetune_epochs = finetune_epochs
        self.masks: MaskSet | None = None

    def stages(self, cfg) -> list[StageSpec]:
        """The shared training, then pruning and fine-tuning at lr x finetune_lr_factor, constant."""
        optimizer = OmegaConf.merge(cfg.optimizer, {"lr": cfg.optimizer.lr * cfg.pruner.finetune_lr_factor})
        trainer = OmegaConf.merge(cfg.trainer, {"epochs": self.finetune_epochs, "eval_every": 1})
        return [pretrain_stage(cfg),
                StageSpec("prune", "prune", optimizer, OmegaConf.create({"name": "constant"}), trainer, cfg.seed + 1,
                          lambda: self)]

    def start(self, ctx) -> None:
        super().start(ctx)
        self.prunable = select_prunable(ctx.model, **self.selection)
        self.levels_measured: dict = {}

    def _pruned_copy(self, model: nn.Module, sparsity: float) -> tuple[nn.Module, MaskSet]:
        pruned = copy.deepcopy(model)
        prunable = select_prunable(pruned, **self.selection)
        masks = MaskSet(prunable, magnitude_masks(prunable, sparsity, self.scope, self.ties))
        masks.apply_()
        return pruned, masks

    def begin(self, evaluate: Callable[[nn.Module], dict]) -> None:
        for sparsity in self.levels:
            pruned, masks = self._pruned_copy(self.ctx.model, sparsity)
            self.levels_measured[level_key(sparsity)] = {"sparsity": sparsity, "achieved": masks.sparsity(),
                                                         **evaluate(pruned)}
        # The run's own model: pruned in place at `sparsity`.
        self.masks = MaskSet(self.prunable, magnitude_masks(self.prunable, self.sparsity, self.scope, self.ties))
        self.masks.apply_()

    def finish(self, evaluate: Callable[[nn.Module], dict]) -> dict:
        return {"levels": self.levels_measured}

    # While fine-tuning, the mask is held like any mask pruner's.
    def after_backward(self, step: int) -> None:
        if self.masks is not None:
            self.masks.mask_grads_()

    def after_step(self, step: int):
        if self.masks is not None:
            self.masks.apply_()
        return None

    def report(self) -> dict:
        if self.masks is None:
            return {}
        return {"target": self.sparsity, "achieved": self.masks.sparsity(), "scope": self.scope,
                "ties": self.ties, "n_prunable": self.masks.n_total(),
                "per_layer": self.masks.per_layer_sparsity()}

    def state_dict(self) -> dict:
        if self.masks is None:
            return {}
        return {"masks": self.masks.state_dict(), "levels": self.levels_measured}

    def load_state_dict(self, state: dict) -> None:
        if state.get("masks") is not None:
            self.masks = MaskSet(self.prunable, state["masks"])
            self.levels_measured = state["levels"]


def _build(cfg) -> MagnitudePruner:
    return MagnitudePruner(cfg.sparsity, cfg.sparsity_levels, cfg.scope, cfg.ties, cfg.layers,
                           cfg.skip_first_conv, cfg.skip_last_linear, cfg.finetune_epochs)


def _validate(cfg) -> list[str]:
    problems = choice(cfg, "scope", "pruner", SCOPES) + choice(cfg, "ties", "pruner", TIES)
    unknown = set(cfg.layers) - {"conv", "linear"}
    if unknown or not cfg.layers:
        problems.append(f"pruner.layers: {list(cfg.layers)} is not allowed; use a non-empty subset of [conv, linear]")
    return problems + integer(cfg, "finetune_epochs", "pruner", low=0)


@dataclass
class MagnitudeSection:
    """Keys and types of conf/pruner/magnitude.yaml (which holds the values)."""

    name: str
    sparsity: float
    sparsity_levels: list[float]
    scope: str
    ties: str
    layers: list[str]
    skip_first_conv: bool
    skip_last_linear: bool
    finetune_epochs: int
    finetune_lr_factor: float


MAGNITUDE = Component(_build, _validate, schema=MagnitudeSection)

