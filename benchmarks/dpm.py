"""dpm: a training step while DPM's picked channel groups decay, and one host selection."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf

from prune_bench.config.shipped import conf_dir
from prune_bench.engine.loop import train_step
from prune_bench.models import build_model
from prune_bench.pruning import NoPruner, TrainContext, build_pruner

from .timing import interleaved_seconds, seconds_per_call
from .workload import endless_batches, runtime_for, synthetic_device_data


def dpm_pruner(model, optimizer, device: torch.device, events: int, decaying_events: int):
    """A DPM pruner (DepGraph host, SP+SR) that picks, after the first step, the channels of
    `decaying_events` of the recipe's `events` selection events; they decay for the rest of the
    benchmark (N is huge), so every timed step rescales them and runs SR's checks."""
    cfg = OmegaConf.load(conf_dir() / "pruner" / "dpm.yaml")
    reduction = decaying_events / events * (1 - 1 / 2.11)  # of the MACs, as in the 2.11x recipe
    OmegaConf.update(cfg, "speedup", 1 / (1 - reduction))
    for key, value in {"decay": "sp+sr", "prune_epochs": 1, "prune_steps": 1, "sp_steps": 10**6,
                       "finetune.epochs": 10**7}.items():
        OmegaConf.update(cfg, key, value)
    pruner = build_pruner(cfg)
    pruner.start(TrainContext(model, optimizer, None, 1, 10**7, 0, device))
    return pruner


def run(args) -> None:
    """DPM: a training step while picked groups decay (SP rescaling + SR checks) against a plain
    step, and the cost of one host selection (DepGraph ranking + greedy picks to a MACs target).
    Two decaying sets: the picks of 2 of the recipe's 20 events (N is about one event interval
    there), and every pick of a 2.11x run at once (prune_steps: 1, the worst case)."""
    device, runtime = args.device, runtime_for(args.device)
    data = synthetic_device_data(2048, device)
    options = {"shortcut": "B"} if args.model.startswith("resnet") else {}
    cases = {"plain": None, "2 of 20 events": 2, "all at once": 20}
    models, optimizers, pruners, steps = {}, {}, {}, {}
    for name, decaying_events in cases.items():
        torch.manual_seed(0)
        models[name] = build_model(args.model, **options).to(device, memory_format=torch.channels_last)
        optimizers[name] = torch.optim.SGD(models[name].parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        pruners[name] = (NoPruner() if decaying_events is None else
                         dpm_pruner(models[name], optimizers[name], device, 20, decaying_events))
        steps[name] = 0
    batches = endless_batches(data, args.batch_size)

    def train(name):
        def step():
            images, labels = next(batches)
            _, _, replaced = train_step(models[name], optimizers[name], pruners[name], images, labels, steps[name],
                                        runtime)
            assert replaced is None  # nothing finishes decaying within the benchmark
            steps[name] += 1
        return step

    for name in cases:
        train(name)()  # the selection happens after this first step
    decaying = {name: len(pruners[name].pending) for name in cases if name != "plain"}
    train_s = interleaved_seconds({name: train(name) for name in cases}, device, 1, 3 * args.steps)
    pruner = pruners["2 of 20 events"]

    def one_selection():
        pruner.pending, pruner.cooldown = [], []
        pruner.project()
        pruner.select(steps["2 of 20 events"])

    select_s = seconds_per_call(one_selection, device, calls=max(1, args.steps // 2))
    plain = train_s["plain"]
    ratios = ", ".join(f"{name} ({decaying[name]} channels) {1e3 * train_s[name]:.1f} ms = {train_s[name] / plain:.3f}x"
                       for name in decaying)
    print(f"dpm [{args.model}, batch {args.batch_size}, {device}, {len(pruner.host.groups)} groups]: train step plain "
          f"{1e3 * plain:.1f} ms; while decaying: {ratios} (target <= 1.10). One host selection "
          f"({decaying['2 of 20 events']} picks): {1e3 * select_s:.1f} ms = {select_s / plain:.2f} steps")
