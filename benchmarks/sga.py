"""sga: StochGradAdam against torch.optim.Adam."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prune_bench.engine.loop import train_step
from prune_bench.models import build_model
from prune_bench.optim import StochGradAdam
from prune_bench.pruning import NoPruner

from .timing import seconds_per_call
from .workload import endless_batches, runtime_for, synthetic_device_data


def run(args) -> None:
    """StochGradAdam vs torch.optim.Adam: the optimizer step alone and the whole training step."""
    device, runtime = args.device, runtime_for(args.device)
    data = synthetic_device_data(1024, device)
    images, labels = next(endless_batches(data, args.batch_size))
    torch.manual_seed(0)
    model = build_model(args.model).to(device, memory_format=torch.channels_last)
    F.cross_entropy(model(images), labels).backward()  # gradients for the step-only timing
    generator = torch.Generator(device=device).manual_seed(0)
    optimizers = {
        "adam": torch.optim.Adam(model.parameters(), lr=1e-3, foreach=True),
        "sga": StochGradAdam(model.parameters(), lr=1e-3, sampling_rate=0.8, generator=generator),
    }
    pruner = NoPruner()
    step_s, full_s = {}, {}
    for name, optimizer in optimizers.items():
        step_s[name] = seconds_per_call(optimizer.step, device, args.steps * 5)
        full_s[name] = seconds_per_call(
            lambda o=optimizer: train_step(model, o, pruner, images, labels, 0, runtime), device, args.steps)
    print(f"sga [{args.model}, {device}]: optimizer step adam {1e3 * step_s['adam']:.2f} ms, "
          f"sga {1e3 * step_s['sga']:.2f} ms (sga / adam = {step_s['sga'] / step_s['adam']:.2f}); "
          f"training step sga / adam = {full_s['sga'] / full_s['adam']:.3f}")
