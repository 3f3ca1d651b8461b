"""grda: gRDA against plain SGD on ResNet-56."""

from __future__ import annotations

import torch

from prune_bench.engine.loop import train_step
from prune_bench.models import build_model
from prune_bench.optim import GRDA
from prune_bench.pruning import NoPruner

from .timing import interleaved_seconds
from .workload import endless_batches, runtime_for, synthetic_device_data


def run(args) -> None:
    """gRDA against plain SGD (momentum 0), ResNet-56: whole training step and optimizer step alone.
    The two take turns step by step; each figure is the fastest of 3 x --steps steps."""
    device, runtime = args.device, runtime_for(args.device)
    data = synthetic_device_data(2048, device)
    models, optimizers = {}, {}
    for name in ("sgd", "grda"):
        torch.manual_seed(0)
        models[name] = build_model("resnet56").to(device, memory_format=torch.channels_last)
    optimizers["sgd"] = torch.optim.SGD(models["sgd"].parameters(), lr=0.1, momentum=0)
    optimizers["grda"] = GRDA(models["grda"].parameters(), lr=0.1, c=5e-4, mu=0.6)
    batches = endless_batches(data, args.batch_size)
    pruner = NoPruner()

    def train(name):
        def step():
            images, labels = next(batches)
            train_step(models[name], optimizers[name], pruner, images, labels, 0, runtime)
        return step

    train_s = interleaved_seconds({name: train(name) for name in models}, device, 1, 3 * args.steps)
    step_s = interleaved_seconds({name: optimizers[name].step for name in models}, device, 20, 3 * args.steps)
    n_params = sum(p.numel() for p in models["sgd"].parameters())
    print(f"grda [resnet56, {n_params / 1e6:.2f}M params, batch {args.batch_size}, {device}]: "
          f"train step SGD {1e3 * train_s['sgd']:.1f} ms, gRDA {1e3 * train_s['grda']:.1f} ms; "
          f"gRDA / SGD = {train_s['grda'] / train_s['sgd']:.3f} (target <= 1.15). "
          f"Optimizer step alone: SGD {1e3 * step_s['sgd']:.2f} ms, gRDA {1e3 * step_s['grda']:.2f} ms; "
          f"gRDA / SGD = {step_s['grda'] / step_s['sgd']:.2f}")
