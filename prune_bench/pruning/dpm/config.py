"""pruner=dpm: the keys of conf/pruner/dpm.yaml and their types, and the checks of its values
(one line per problem), including those that need the model (built on the meta device)."""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn as nn

from ...errors import ConfigError, first_line
from ...models.cifar_resnet import ZeroPadShortcut
from ...optim import SCHEDULERS
from ...registry import boolean, choice, in_range, integer, number, positive
from ...targets import CUSTOM, label
from .groups import classifier
from .hosts import CRITERIA, HOSTS_ALLOWED, build_host
from .zig import build_zigs

DECAYS = ("none", "sp", "sp+sr")
SP_SCHEDULES = ("linear", "cosine")
SR_LOGICS = ("and", "or")
SR_RATE_BASELINES = ("auto", "zero", "decay")
REPLACEMENTS = ("score", "cost")
NORMALIZERS = ("auto", "max", "mean", "sum", "none")
REDUCTIONS = ("mean", "sum", "max")
STAGE_SCHEDULERS = ("multistep", "cosine")

@dataclass
class StageSchedulerSection:
    """A stage's scheduler: multistep or cosine (the keys of both; each reads its own)."""

    name: str
    milestones: list[float]
    milestones_unit: str
    gamma: float
    final_factor: float


@dataclass
class StageSection:
    epochs: int
    lr: float
    weight_decay: float
    scheduler: StageSchedulerSection


@dataclass
class SparseStageSection(StageSection):
    reg: float


@dataclass
class ImportanceSection:
    criterion: str
    group_reduction: str
    normalizer: str


@dataclass
class OTOv2Section:
    variant: str
    target_group_sparsity: float
    tolerance_group_sparsity: float
    lmbda: float
    lmbda_amplify: float
    hat_lmbda_coeff: float
    epsilon: float
    partition_step: int
    replacement: str


@dataclass
class DPMSection:
    """pruner=dpm: the keys of conf/pruner/dpm.yaml and their types."""

    name: str
    host: str
    decay: str
    speedup: float
    importance: ImportanceSection
    sparse_learning: bool
    sparse: SparseStageSection
    finetune: StageSection
    prune_epochs: int
    prune_steps: int
    sp_steps: int
    sp_schedule: str
    T_rate: float
    sr_rate_baseline: str
    T_len: float
    sr_logic: str
    sr_cooldown: int
    otov2: OTOv2Section


def _check_stage(cfg, section: str) -> list[str]:
    problems = integer(cfg, "epochs", section) + positive(cfg, "lr", section)
    problems += in_range(cfg, "weight_decay", section, 0.0, math.inf)
    scheduler_problems = choice(cfg.scheduler, "name", f"{section}.scheduler", STAGE_SCHEDULERS)
    if scheduler_problems:
        return problems + scheduler_problems
    return problems + [p.replace("scheduler.", f"{section}.scheduler.", 1)
                       for p in SCHEDULERS[cfg.scheduler.name].validate(cfg.scheduler)]


def check_dpm(cfg) -> list[str]:
    """One line per bad value of the pruner=dpm section."""
    problems = choice(cfg, "host", "pruner", HOSTS_ALLOWED) + choice(cfg, "decay", "pruner", DECAYS)
    speedup = cfg.get("speedup")
    if not isinstance(speedup, (int, float)) or isinstance(speedup, bool) or not speedup > 1:
        problems.append(f"pruner.speedup: must be a number > 1 (original MACs / pruned MACs), got {speedup!r}")
    importance = cfg.importance
    problems += choice(importance, "criterion", "pruner.importance", CRITERIA)
    if importance.get("criterion") == "taylor" and cfg.get("host") != "bnscale":
        problems.append("pruner.importance.criterion: taylor is a bnscale criterion; depgraph ranks by group L2 magnitude (use gamma)")
    problems += choice(importance, "group_reduction", "pruner.importance", REDUCTIONS)
    problems += choice(importance, "normalizer", "pruner.importance", NORMALIZERS)
    problems += boolean(cfg, "sparse_learning", "pruner")
    if cfg.get("sparse_learning") is True:
        problems += _check_stage(cfg.sparse, "pruner.sparse")
        problems += in_range(cfg.sparse, "reg", "pruner.sparse", 0.0, math.inf)
    problems += _check_stage(cfg.finetune, "pruner.finetune")
    problems += integer(cfg, "prune_epochs", "pruner") + integer(cfg, "prune_steps", "pruner")
    ft_epochs, prune_epochs = cfg.finetune.get("epochs"), cfg.get("prune_epochs")
    if cfg.get("host") != "otov2" and isinstance(ft_epochs, int) and isinstance(prune_epochs, int) \
            and prune_epochs > ft_epochs:  # OTOv2: DHSPG picks during the whole prune stage
        problems.append(f"pruner.prune_epochs: the pruning phase ({prune_epochs} epochs) is part of the fine-tune "
                        f"stage and cannot be longer than pruner.finetune.epochs ({ft_epochs})")
    problems += integer(cfg, "sp_steps", "pruner") + choice(cfg, "sp_schedule", "pruner", SP_SCHEDULES)
    problems += number(cfg, "T_rate", "pruner") + number(cfg, "T_len", "pruner")
    problems += choice(cfg, "sr_rate_baseline", "pruner", SR_RATE_BASELINES)
    problems += choice(cfg, "sr_logic", "pruner", SR_LOGICS)
    problems += integer(cfg, "sr_cooldown", "pruner", low=0)
    if cfg.get("host") == "otov2":
        problems += check_otov2(cfg)
    return problems


def check_otov2(cfg) -> list[str]:
    section, name = cfg.otov2, "pruner.otov2"
    problems = choice(section, "variant", name, ("sgd", "adam"))
    problems += in_range(section, "target_group_sparsity", name, 0, 1, closed_low=False)
    problems += in_range(section, "tolerance_group_sparsity", name, 0, 1)
    problems += in_range(section, "lmbda", name, 0.0, math.inf) + positive(section, "lmbda_amplify", name)
    problems += in_range(section, "hat_lmbda_coeff", name, 1, math.inf) + in_range(section, "epsilon", name, 0, 1)
    problems += integer(section, "partition_step", name, low=0)
    problems += choice(section, "replacement", name, REPLACEMENTS)
    if cfg.get("sparse_learning") is True:
        problems.append("pruner.sparse_learning: otov2 trains its group sparsity with DHSPG in the prune stage; "
                        "set pruner.sparse_learning=false")
    return problems


def check_dpm_model(cfg, model: nn.Module) -> list[str]:
    """Checks that need the model (built on the meta device): Torch-Pruning cannot prune the
    residual channels of a zero-pad (shortcut A) ResNet, bnscale needs BatchNorm layers, and the
    classifier (whose outputs are never pruned) is the last linear layer. A custom model is
    also traced: the host builds and scores its channel groups (host_problem)."""
    problems = []
    if any(isinstance(m, ZeroPadShortcut) for m in model.modules()):
        problems.append(f"model.shortcut: '{cfg.model.get('shortcut')}' (zero-pad) leaves the residual channels "
                        "unprunable by Torch-Pruning; pruner=dpm needs model.shortcut=B")
    if cfg.pruner.host == "bnscale" and not any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        problems.append(f"pruner.host: bnscale needs BatchNorm layers and {label(cfg.model)} has none; use depgraph")
    try:
        classifier(model)
    except ConfigError as error:
        problems.append(f"{error}; {label(cfg.model)} has no nn.Linear")
    if not problems and cfg.model.name == CUSTOM:
        problems += host_problem(cfg, model)
    return problems


def host_problem(cfg, model: nn.Module) -> list[str]:
    """The host attached to a zero-filled CPU copy of the meta-device model: a model Torch-Pruning
    cannot trace, a layer coupled to channels that dpm cannot slice, or a group the host cannot
    score is one line before any training (Torch-Pruning's own warnings are not shown)."""
    traced = copy.deepcopy(model).to_empty(device="cpu")
    with torch.no_grad():
        for tensor in [*traced.parameters(), *traced.buffers()]:
            tensor.zero_()
    example = torch.zeros(1, 3, 32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if cfg.pruner.host == "otov2":  # its groups come with its optimizer: the zero-invariant groups
                build_zigs(traced, example)
            else:
                importance = cfg.pruner.importance
                build_host(cfg.pruner.host, importance.group_reduction, importance.criterion).attach(traced, example)
        except ConfigError as error:
            return [str(error)]
        except Exception as error:
            return [f"pruner.host: {cfg.pruner.host} cannot build the channel groups of {label(cfg.model)} "
                    f"(Torch-Pruning: {first_line(error)})"]
    return []
