"""loop: the project's training step against a bare PyTorch step."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prune_bench.engine.loop import train_step
from prune_bench.pruning import NoPruner

from .timing import seconds_per_call
from .workload import data_and_model, endless_batches, runtime_for


def run(args) -> None:
    """Our training step (device-side augmentation + train_step with no pruner) against a bare
    PyTorch step on one fixed, pre-normalised batch: the loop's own overhead."""
    device, runtime = args.device, runtime_for(args.device)
    data, model = data_and_model(args)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    batches = endless_batches(data, args.batch_size)
    fixed_images, fixed_labels = next(batches)
    pruner = NoPruner()

    def bare():
        with runtime.autocast():
            loss = F.cross_entropy(model(fixed_images).float(), fixed_labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def ours():
        images, labels = next(batches)
        train_step(model, optimizer, pruner, images, labels, 0, runtime)

    bare_s = seconds_per_call(bare, device, args.steps)
    ours_s = seconds_per_call(ours, device, args.steps)
    print(f"loop [{args.model}, batch {args.batch_size}, {device}]: bare step {1e3 * bare_s:.1f} ms "
          f"({args.batch_size / bare_s:.0f} img/s), ours {1e3 * ours_s:.1f} ms "
          f"({args.batch_size / ours_s:.0f} img/s); ours / bare = {ours_s / bare_s:.3f}")
