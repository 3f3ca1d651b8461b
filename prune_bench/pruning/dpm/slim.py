"""Slim any model Torch-Pruning can trace, outside the runner: the host ranks its channel groups and
removes the lowest-ranked until the paper's counter says the model is `speedup` times cheaper,
exactly as one selection event of DPM's pruning phase does (decay none). No training: fine-tune
the slimmed model afterwards, or run `prune-bench run` with pruner=dpm for the whole method.

    from prune_bench.pruning.dpm.slim import slim
    slimmed, report = slim(my_model, torch.zeros(1, 3, 32, 32), speedup=2.11)
    report["speedup_achieved"], report["params_pct"]      # by Torch-Pruning's counter
"""

from __future__ import annotations

import torch
import torch.nn as nn
from omegaconf import OmegaConf

from ...config.shipped import conf_dir
from ..base import TrainContext
from .pruner import DPMPruner


def slim(model: nn.Module, example_input: torch.Tensor, speedup: float = 2.11, host: str = "depgraph",
         normalizer: str = "auto", group_reduction: str = "mean", criterion: str = "gamma") -> tuple[nn.Module, dict]:
    """`model` slimmed in place to `speedup` x fewer FLOPs (the host's paper's counter), with
    the report a DPM record holds (params and FLOPs by both counters, channels per layer, the
    picks). `example_input`: one input batch of the model's shape, on its device. Hosts:
    depgraph (group L2 magnitude), bnscale (BN scales; `criterion` gamma)."""
    cfg = OmegaConf.to_container(OmegaConf.load(conf_dir() / "pruner" / "dpm.yaml"), resolve=True)
    cfg.update(host=host, decay="none", speedup=float(speedup), sparse_learning=False, prune_epochs=1, prune_steps=1)
    cfg["importance"] = {"criterion": criterion, "group_reduction": group_reduction, "normalizer": normalizer}
    pruner = DPMPruner(cfg)
    data = _ExampleShape(example_input)
    was_training = model.training
    pruner.start(TrainContext(model, None, data, 1, 1, 0, example_input.device))
    slimmed = pruner.after_step(0) or model  # the one selection event, at the first step
    pruner.finish(lambda candidate: {})
    model.train(was_training)
    return slimmed, pruner.report()


class _ExampleShape:
    """What the pruner reads of the data: the shape of one image."""

    def __init__(self, example_input: torch.Tensor):
        self.train_images = example_input
