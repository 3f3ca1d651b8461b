"""A run is a list of stages; one runner executes any list.

The pruner declares the stages (Pruner.stages): a plain run or a gradual pruner has one; a
one-shot pruner trains a shared dense model, then prunes (and may fine-tune); DPM pretrains,
optionally trains with a sparsity regulariser, then fine-tunes while it prunes. `plan_stages`
gives each stage its folder and identity (layout.py names them):

- the last stage trains in the run's own folder, under the run's identity;
- every stage before it is shared: its identity hashes what it computes from -- the first stage
  the run's config less its pruner section, a later one the stage before it (name and identity)
  plus the settings it adds -- so every run whose stages begin alike shares those folders
  (train once, prune many; DPM's variants share pretraining and the sparse stage).

For each stage the runner: a finished shared stage is loaded (trained.pt); otherwise it resumes
the stage's checkpoint or starts it, trains its epochs through engine/loop.train_epoch with the
stage's hooks, evaluates, and checkpoints after every epoch; a shared stage then writes its
output and drops the checkpoint. The RNG is seeded at each stage's start, so a stage computes the
same whether the stages before it trained in this process or were loaded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from omegaconf import DictConfig

from .. import layout
from ..data import Augment, DeviceData, steps_per_epoch
from ..errors import ConfigError
from ..humanize import n_epochs
from ..identity import config_hash, run_identity
from ..metrics import zero_fraction
from ..models import ModelSpec
from ..optim import OPTIMIZERS, build_optimizer, build_scheduler
from ..pruning import Pruner, TrainContext
from ..pruning.dpm.shapes import layer_shapes, restore_shapes
from .checkpoint import (
    load_checkpoint,
    load_stage_output,
    restore,
    save_checkpoint,
    save_stage_output,
)
from .loop import FitState, Training, evaluate, train_epoch
from .progress import Monitor, StagePlan
from .runtime import Runtime


@dataclass
class Stage:
    """A stage with its place: what to train with, where, and under which identity."""

    name: str
    kind: str  # train | sparse | prune
    directory: Path
    identity: str
    shared: bool  # every stage but the last: its output (trained.pt) serves other runs
    optimizer: DictConfig
    scheduler: DictConfig
    trainer: DictConfig
    seed: int
    hooks: object  # a callable building the stage's hooks (a Pruner)

    @property
    def epochs(self) -> int:
        return int(self.trainer.epochs)

    def finished(self) -> bool:
        return self.shared and (self.directory / layout.STAGE_OUTPUT).is_file()


@dataclass
class StageResult:
    stage: Stage
    model: torch.nn.Module
    state: FitState
    reused: bool  # a finished shared stage, loaded
    resumed_after: int  # epochs already done when this process started the stage
    architecture: dict | None  # the slimmed shapes, when the hooks change shapes
    hooks: Pruner | None = None
    runtime: Runtime | None = None  # what the stage ran with (a CPU shape-changing stage: no channels_last)


def plan_stages(cfg: DictConfig, data_info: dict, pruner: Pruner) -> list[Stage]:
    """The run's stages, first to last, each with its folder and identity; the pruner's schedule
    is checked against the stage it acts in (Pruner.plan raises ConfigError when it does not fit),
    so every job of a sweep is checked before any trains."""
    specs = pruner.stages(cfg)
    problems = [f"the {spec.name} stage's {problem}" for spec in specs
                for problem in OPTIMIZERS[spec.optimizer.name].validate(spec.optimizer)]
    if problems:  # a stage's own lr or weight decay given to the run's optimizer (stage_sections)
        raise ConfigError("\n".join(problems))
    runs_dir = layout.runs_root(cfg)
    stages: list[Stage] = []
    for index, spec in enumerate(specs):
        last = index == len(specs) - 1
        if last:
            identity = run_identity(cfg, data_info)
            directory = layout.run_dir(cfg, identity)
        else:
            if not spec.shared_as:
                raise ValueError(f"stage {spec.name} comes before the last one but names no shared folder")
            if not stages:
                identity = run_identity(cfg, data_info, drop=("pruner",))
            else:
                identity = config_hash({stages[-1].name: stages[-1].identity, **(spec.key or {})})
            directory = layout.shared_dir(runs_dir, spec.shared_as, identity)
        stages.append(Stage(spec.name, spec.kind, directory, identity, not last, spec.optimizer, spec.scheduler,
                            spec.trainer, spec.seed, spec.hooks))
    last = stages[-1]
    pruner.plan(steps_per_epoch(data_info["n_train"], last.trainer.batch_size), last.epochs)
    return stages


def stage_runtime(runtime: Runtime, hooks: Pruner, log) -> Runtime:
    """torch 2.13 on CPU (oneDNN): the backward pass of a 1x1 stride-2 convolution in channels_last
    with fewer than 16 input channels crashes (SIGSEGV) with 2 or more threads, and slimmed
    ResNets have such shortcuts: a stage that changes shapes runs in the default format there."""
    if hooks.changes_shapes and runtime.device.type == "cpu" and runtime.channels_last:
        log("this stage changes shapes: on CPU it runs in the default memory format "
            "(channels_last crashes torch's slimmed convolutions)")
        return replace(runtime, channels_last=False)
    return runtime


class StageRunner:
    """Runs a run's stages in order on one device with one data set."""

    def __init__(self, spec: ModelSpec, data: DeviceData, runtime: Runtime, augment: Augment, log, monitor: Monitor):
        self.spec, self.data, self.runtime, self.augment = spec, data, runtime, augment
        self.log, self.monitor = log, monitor

    def run(self, stages: list[Stage], created) -> list[StageResult]:
        """Every stage, each shared one under its folder's lock (concurrent runs train it once).
        Stops after a stage whose loss diverged. The monitor hears the plan first (every stage's
        steps, for the run's ETA)."""
        self.monitor.set_plan([StagePlan(stage.name, stage.epochs,
                                         steps_per_epoch(self.data.n_train, stage.trainer.batch_size), stage.finished())
                               for stage in stages])
        results: list[StageResult] = []
        for index, stage in enumerate(stages):
            if stage.shared:
                with created.lock(layout.lock_path(stage.directory)):
                    created.folder(stage.directory)
                    result = self.run_stage(stage, results[-1] if results else None, index, stages)
            else:
                result = self.run_stage(stage, results[-1] if results else None, index, stages)
            results.append(result)
            if result.state.diverged_step is not None:
                break
        return results

    def _fresh_model(self, runtime: Runtime, start: StageResult | None, seed: int) -> torch.nn.Module:
        """The stage's starting model: from the seed (the first stage), else the previous stage's
        weights (and shapes)."""
        if start is None:
            torch.manual_seed(seed)  # the initial weights depend on the seed only
            return runtime.place(self.spec.build())
        model = self.spec.build()
        if start.architecture:
            restore_shapes(model, start.architecture["layers"])
        model = runtime.place(model)
        model.load_state_dict(start.model.state_dict())
        return model

    def run_stage(self, stage: Stage, start: StageResult | None, index: int, stages: list[Stage]) -> StageResult:
        data, log = self.data, self.log
        hooks = stage.hooks()
        runtime = stage_runtime(self.runtime, hooks, log) if stage.epochs else self.runtime
        output = stage.directory / layout.STAGE_OUTPUT
        if stage.shared and output.is_file():
            payload = load_stage_output(output, stage.identity)
            architecture = payload.get("architecture")
            model = self.spec.build()
            if architecture:
                restore_shapes(model, architecture["layers"])
            model = runtime.place(model)
            model.load_state_dict(payload["model"])
            log(f"reusing the {stage.name} stage in {stage.directory}")
            return StageResult(stage, model, FitState(**payload["state"]), True, 0, architecture)

        checkpoint_path = stage.directory / layout.CHECKPOINT
        payload = load_checkpoint(checkpoint_path, stage.identity) if checkpoint_path.is_file() else None
        model = self._fresh_model(runtime, start, stage.seed)
        if payload is not None and payload.get("architecture"):
            model = runtime.place(restore_shapes(model, payload["architecture"]["layers"]))
        n_steps = steps_per_epoch(data.n_train, stage.trainer.batch_size)

        ctx = TrainContext(model, None, data, n_steps, n_steps * stage.epochs, stage.seed, runtime.device, self.spec)

        def build(new_model):
            optimizer = (hooks.optimizer(new_model, ctx, stage.optimizer)
                         or build_optimizer(stage.optimizer, new_model.parameters()))
            return optimizer, build_scheduler(stage.scheduler, optimizer, n_steps, stage.epochs)

        training = Training(model, build, hooks, ctx, runtime)
        if start is not None:
            torch.manual_seed(stage.seed)
        hooks.start(ctx)
        state = FitState()
        if payload is not None:
            state = restore(payload, training)
        else:
            hooks.begin(lambda candidate: evaluate(candidate, data, runtime))
        resumed_after = state.epoch
        stage.directory.mkdir(parents=True, exist_ok=True)
        self._announce(stage, state, len(stages) > 1)
        self.monitor.start(stage.directory, index)
        self._train(stage, training, state, runtime)
        architecture = self._architecture(training)
        if stage.shared:
            save_stage_output(output, training.model, state, stage.identity, architecture)
            checkpoint_path.unlink(missing_ok=True)
        return StageResult(stage, training.model, state, False, resumed_after, architecture, hooks, runtime)

    def _architecture(self, training: Training) -> dict | None:
        """What rebuilds a slimmed model: the model spec and every layer's channel counts."""
        if not training.hooks.changes_shapes:
            return None
        return {"model": self.spec.as_dict(), "layers": layer_shapes(training.model)}

    def _announce(self, stage: Stage, state: FitState, staged: bool) -> None:
        where = f"the {stage.name} stage in {stage.directory}" if staged else str(stage.directory)
        if state.epoch:
            self.log(f"resuming {where} after epoch {state.epoch} of {stage.epochs}")
        elif stage.epochs and staged:
            self.log(f"{stage.name} stage in {stage.directory}: {n_epochs(stage.epochs)} at lr {stage.optimizer.lr:g}")

    def _train(self, stage: Stage, training: Training, state: FitState, runtime: Runtime) -> None:
        data, trainer, hooks = self.data, stage.trainer, training.hooks
        training.model.train()
        for epoch in range(state.epoch, stage.epochs):
            started = time.perf_counter()
            entry = train_epoch(training, data, trainer, stage.seed, self.augment, state, self.monitor)
            if entry is None:
                self.log(f"diverged: non-finite loss at step {state.diverged_step} (epoch {epoch + 1}); stopping")
                return
            if (epoch + 1) % trainer.eval_every == 0 or epoch + 1 == stage.epochs:
                entry.update(evaluate(training.forward, data, runtime))
            achieved = hooks.report().get("achieved")
            if achieved is not None:
                entry["sparsity"] = achieved
            # Exact zeros over all parameters, whatever made them (a pruner, or gRDA's thresholding).
            entry["zeros_all"] = zero_fraction(p.detach() for p in training.model.parameters())
            entry["seconds"] = time.perf_counter() - started
            state.history.append(entry)
            state.epoch = epoch + 1
            if trainer.checkpoint:
                save_checkpoint(stage.directory / layout.CHECKPOINT, training, state, stage.identity,
                                self._architecture(training))
            self.monitor.after_epoch(entry, state, hooks.report())  # the epoch line, progress.json, loggers
