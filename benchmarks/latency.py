"""latency: dense against slimmed forward time (prune_bench.latency's measurement)."""

from __future__ import annotations

import copy

import torch

from prune_bench.engine.checkpoint import ModelPair, model_pair_from_run
from prune_bench.latency import compare_latency
from prune_bench.models import build_model
from prune_bench.pruning.dpm.slim import slim


def latency_pairs(args) -> list[ModelPair]:
    """The (dense, slimmed) pairs to time: a finished run's (--run DIR), and a model slimmed by the
    product's own DepGraph slimming (--slim MODEL: to --speedup; without --run, ResNet-56 at 2.11x, the
    paper's speed-up by Torch-Pruning's counter; the weights are seeded random, which the timing
    does not depend on)."""
    pairs = []
    if args.run:
        pairs.append(model_pair_from_run(args.run, args.device))
    model = args.slim if args.slim is not None else ("" if args.run else "resnet56")
    if model:
        options = {"shortcut": "B"} if model.startswith("resnet") and model != "resnet50" else {}
        torch.manual_seed(0)
        dense = build_model(model, **options).eval()
        slimmed, report = slim(copy.deepcopy(dense), torch.zeros(1, 3, 32, 32), speedup=args.speedup)
        label = (f"{model} slimmed to {report['speedup_achieved']:.3f}x FLOPs ({report['counter']}), "
                 f"params {report['params_pct']:.1f}%")
        pairs.append(ModelPair(label, dense.to(args.device), slimmed.eval().to(args.device)))
    return pairs


def print_latency(pair: ModelPair, args) -> dict:
    """Dense and slimmed forward ms of one pair at each --latency-batches size, timed in turns,
    and the speed-up dense / slimmed with the range the medians' 95% intervals allow. On CUDA the
    pair runs as it trained (bf16 autocast, channels_last); on CPU in fp32, default layout."""
    cuda = args.device.type == "cuda"
    bf16, channels_last = pair.bf16 and cuda, pair.channels_last and cuda
    comparisons = compare_latency(pair.dense, pair.slimmed, pair.image_shape, args.device,
                                  batch_sizes=tuple(args.latency_batches), threads=args.threads, bf16=bf16,
                                  channels_last=channels_last, max_seconds=args.latency_seconds)
    for batch_size, c in comparisons.items():
        dense, slimmed = c.dense, c.slimmed

        def figure(m):
            return (f"{m.median_ms:.3f} ms (95% {m.ci_low_ms:.3f}-{m.ci_high_ms:.3f}, p10-p90 {m.p10_ms:.3f}-"
                    f"{m.p90_ms:.3f}, {m.repeats} passes{'' if m.stable else ', NOT STABLE: ' + m.stop})")

        print(f"latency [{pair.label}, batch {batch_size}, {dense.device}, {dense.threads} threads, {dense.precision}"
              f"{', channels_last' if channels_last else ''}]: dense {figure(dense)}, slimmed {figure(slimmed)}; "
              f"dense / slimmed = {c.speedup:.3f}x (range {c.speedup_low:.3f}-{c.speedup_high:.3f})"
              f"{'' if c.stable else ' (unstable: see the warnings)'}")
    return comparisons


def run(args) -> dict:
    """Forward latency, dense vs slimmed (--slim MODEL slimmed by the product's DepGraph slimming;
    --run DIR: a finished run's model.pt and its unpruned spec), at each --latency-batches size
    (default 1 and 256)."""
    pairs = latency_pairs(args)
    if not pairs:
        print("latency: left out (needs --run DIR or --slim MODEL)")
        return {}
    return {pair.label: print_latency(pair, args) for pair in pairs}
