"""Erdős–Rényi-kernel (ERK) random masks: the sparse starts of RigL and GraNet, and FGGP's
"50% sparse start" (docs/methods/fggp2024.md)."""

from __future__ import annotations

import math

import torch


def erk_densities(shapes: dict[str, tuple[int, ...]], density: float) -> dict[str, float]:
    """Per-layer densities d_l = min(1, eps * (sum of shape_l) / (prod of shape_l)), with eps
    chosen so that sum_l d_l * n_l = density * sum_l n_l (Evci et al. 2020, RigL). A layer whose
    d_l would exceed 1 is made dense and eps is solved again for the others, until none does."""
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    raw = {name: sum(shape) / sizes[name] for name, shape in shapes.items()}
    dense: set[str] = set()
    while True:
        sparse = [name for name in shapes if name not in dense]
        if not sparse:
            return {name: 1.0 for name in shapes}
        # kept weights the sparse layers must hold: the global budget minus the dense layers
        budget = density * sum(sizes.values()) - sum(sizes[name] for name in dense)
        epsilon = budget / sum(raw[name] * sizes[name] for name in sparse)
        largest = max(raw[name] for name in sparse)
        if epsilon * largest <= 1.0:
            break
        dense |= {name for name in sparse if raw[name] == largest}
    return {name: 1.0 if name in dense else epsilon * raw[name] for name in shapes}


def random_masks(shapes: dict[str, tuple[int, ...]], densities: dict[str, float],
                 generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Boolean masks (True = kept) with exactly round(d_l * n_l) kept entries per layer, at
    positions drawn uniformly by `generator` (on the CPU, so a seed gives the same masks on
    any device)."""
    masks = {}
    for name, shape in shapes.items():
        n = math.prod(shape)
        n_kept = round(densities[name] * n)
        kept = torch.zeros(n, dtype=torch.bool)
        kept[torch.randperm(n, generator=generator)[:n_kept]] = True
        masks[name] = kept.view(shape)
    return masks


def erk_masks(shapes: dict[str, tuple[int, ...]], density: float, seed: int) -> dict[str, torch.Tensor]:
    """Random ERK masks at global `density` over the given tensors, seeded."""
    generator = torch.Generator().manual_seed(seed)
    return random_masks(shapes, erk_densities(shapes, density), generator)
