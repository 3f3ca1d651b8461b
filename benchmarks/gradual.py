"""gradual: GMP, FGGP and magfirst, a masked step and one pruning event."""

from __future__ import annotations

import statistics

import torch
from omegaconf import OmegaConf

from prune_bench.engine.loop import train_step
from prune_bench.pruning import (
    NoPruner,
    TrainContext,
    build_pruner,
    fggp_masks,
    gmp_masks,
    magfirst_masks,
)

from .timing import seconds_per_call
from .workload import data_and_model, endless_batches, runtime_for


def gradual_pruner(name: str, model, optimizer, device: torch.device, sparsity: float):
    """A GMP/FGGP pruner whose masks are already at `sparsity` (an ERK start) and whose events
    lie beyond the timed steps, so a timed step is the per-step masking cost alone."""
    cfg = OmegaConf.create({
        "name": name, "sparsity": sparsity, "init_sparsity": sparsity, "t_start": 0, "t_end": 10**9,
        "interval": None, "events": 1, "layers": ["conv", "linear"], "skip_first_conv": True,
        "skip_last_linear": False, "scope": "global", "rate": 0.5, "rate_schedule": "fixed", "rate_final": 0.005,
    })
    pruner = build_pruner(cfg)
    pruner.start(TrainContext(model, optimizer, None, 1, 10**9, 0, device))
    return pruner


def run(args) -> None:
    """GMP/FGGP/magfirst: a training step with the mask set active (90% sparse) against no
    pruner, and the cost of one pruning event (50% -> 60% sparsity) in training steps."""
    device, runtime = args.device, runtime_for(args.device)
    data, model = data_and_model(args)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    batches = endless_batches(data, args.batch_size)

    def step_with(pruner):
        def step():
            images, labels = next(batches)
            train_step(model, optimizer, pruner, images, labels, 0, runtime)
        return step

    # plain and masked steps in alternating blocks, so drift in machine load hits both alike
    plain_step = step_with(NoPruner())
    masked_step = step_with(gradual_pruner("fggp", model, optimizer, device, 0.9))
    blocks = {plain_step: [], masked_step: []}
    for _ in range(3):
        for step, times in blocks.items():
            times.append(seconds_per_call(step, device, args.steps, warmup=1, repeats=1))
    dense_s, masked_s = (statistics.median(times) for times in blocks.values())

    # One event from a 50%-sparse state to 60%: the copy of the pre-step weights (and, for FGGP and
    # magfirst, of the gradient) that after_backward keeps at event steps, the selection over all
    # prunable weights, the new masks, the fused multiplies on weights and optimizer state.
    pruner = gradual_pruner("fggp", model, optimizer, device, 0.5)
    masks, params = pruner.masks, pruner.prunable
    before = {name: m.clone() for name, m in masks.masks.items()}
    n_prune = round(0.1 * masks.n_total())
    step_with(pruner)()  # fills .grad

    def event(select):
        def run():
            weights = {n: p.detach().clone() for n, p in params.items()}
            masks.set_masks(select(weights, before))
            masks.apply_()
            masks.zero_optimizer_state_(optimizer)
        return run

    def grads():
        return {n: p.grad.detach().clone() for n, p in params.items()}

    seconds = {
        "GMP": event(lambda w, m: gmp_masks(w, m, n_prune)),
        "FGGP": event(lambda w, m: fggp_masks(w, grads(), m, n_prune, 0.5)),
        "magfirst": event(lambda w, m: magfirst_masks(w, grads(), m, n_prune, 0.5)),
    }
    seconds = {name: seconds_per_call(fn, device, max(1, args.steps // 2)) for name, fn in seconds.items()}
    n_total = masks.n_total()
    events = ", ".join(f"{name} {1e3 * s:.1f} ms = {s / dense_s:.2f} steps" for name, s in seconds.items())
    print(f"gradual [{args.model}, batch {args.batch_size}, {device}, {n_total} prunable weights]: "
          f"step without pruner {1e3 * dense_s:.1f} ms, with masks (90% sparse) {1e3 * masked_s:.1f} ms; "
          f"masked / plain = {masked_s / dense_s:.3f}. One event (prune {n_prune}): {events}")
