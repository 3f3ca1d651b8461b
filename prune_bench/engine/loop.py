"""The one loop body every run, every stage and the benchmarks use: `train_epoch` and `evaluate`.

One step: forward -> loss -> backward -> hooks.after_backward -> optimizer.step ->
hooks.after_step -> scheduler.step. A structural pruner may hand back a smaller model from
after_step; `Training.replace` then places it on the device in the run's memory format, compiles
it again when compilation is on, and rebuilds optimizer and scheduler keeping the surviving
entries' state. Nothing in a step waits on the device: loss, accuracy and a divergence flag
accumulate there and are read at the end of the epoch and at progress reports.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import Augment, DeviceData, steps_per_epoch, test_batches, train_batches
from ..pruning import Pruner, TrainContext
from .runtime import Runtime


@dataclass
class FitState:
    """Everything about a stage's progress that a checkpoint carries besides the tensors."""

    epoch: int = 0  # completed epochs
    step: int = 0  # completed optimizer steps
    history: list = field(default_factory=list)
    train_seconds: float = 0.0
    images_seen: int = 0
    diverged_step: int | None = None


class Training:
    """What one stage trains and what steps it: the model, the forward callable (the model,
    compiled when trainer.compile is on), the optimizer and scheduler (`build` makes both for a
    model), the hooks, and the context the hooks read."""

    def __init__(self, model: nn.Module, build: Callable[[nn.Module], tuple], hooks: Pruner,
                 ctx: TrainContext, runtime: Runtime):
        self.model, self.build, self.hooks, self.ctx, self.runtime = model, build, hooks, ctx, runtime
        self.optimizer, self.scheduler = build(model)
        self.forward = runtime.compiled(model)
        ctx.model, ctx.optimizer = model, self.optimizer

    def replace(self, model: nn.Module) -> None:
        """Take a model whose shapes a structural pruner changed: the same device, memory format
        and compilation as before; a new optimizer and scheduler with the same hyperparameters,
        the scheduler at the same step, and the optimizer state (momentum, Adam moments) of the
        surviving entries, which the hooks cut out of the old state."""
        optimizer_state, scheduler_state = self.optimizer.state_dict(), self.scheduler.state_dict()
        self.model = self.runtime.place(model)
        self.optimizer, self.scheduler = self.build(self.model)
        carried = self.hooks.carry_optimizer_state(optimizer_state)
        if carried is not None:
            self.optimizer.load_state_dict(carried)
        self.scheduler.load_state_dict(scheduler_state)
        self.forward = self.runtime.compiled(self.model)
        self.ctx.model, self.ctx.optimizer = self.model, self.optimizer


def train_step(model, optimizer, hooks: Pruner, images, labels, step: int, runtime: Runtime,
               label_smoothing: float = 0.0):
    """forward -> loss -> backward -> hooks.after_backward -> optimizer.step -> hooks.after_step.
    Returns the logits, the loss and whatever after_step handed back (a new model or None)."""
    with runtime.autocast():
        logits = model(images)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    hooks.after_backward(step)
    optimizer.step()
    return logits, loss, hooks.after_step(step)


class QuietProgress:
    """Progress hooks that show nothing (benchmarks, probes)."""

    def start_epoch(self, epoch: int, epochs: int, n_steps: int, state: FitState, n_images: int | None = None) -> None:
        pass

    def due(self, done: int) -> bool:
        return False

    def during_epoch(self, done: int, loss: float, seen: int) -> None:
        pass


def train_epoch(training: Training, data: DeviceData, trainer, seed: int, augment: Augment, state: FitState,
                progress=None) -> dict | None:
    """One epoch of training from `state` (its epoch and step advance). Returns the epoch's entry
    (lr, train loss and accuracy, images/s, training seconds), or None when the loss became
    non-finite (state.diverged_step says where). `progress` (engine/progress.Monitor) hears of the
    epoch's start and, when it asks (`due`), of the loss so far: one device read per report."""
    runtime = training.runtime
    progress = progress or QuietProgress()
    epoch = state.epoch
    n_steps = steps_per_epoch(data.n_train, trainer.batch_size)
    started = time.perf_counter()
    lr = training.optimizer.param_groups[0]["lr"]  # the lr this epoch starts with
    loss_sum = torch.zeros((), device=runtime.device)
    correct = torch.zeros((), dtype=torch.long, device=runtime.device)
    bad_step = torch.full((), -1, dtype=torch.long, device=runtime.device)
    seen = done = 0
    progress.start_epoch(epoch, trainer.epochs, n_steps, state, n_images=data.n_train)
    for images, targets in train_batches(data, trainer.batch_size, seed, epoch, augment, runtime.channels_last):
        logits, loss, replaced = train_step(training.forward, training.optimizer, training.hooks, images, targets,
                                            state.step, runtime, trainer.label_smoothing)
        labels = targets if targets.dim() == 1 else targets.argmax(1)  # mixup: the larger share
        if replaced is not None:  # a structural pruner changed the shapes
            training.replace(replaced)
        training.scheduler.step()
        detached = loss.detach()
        bad_step = torch.where((bad_step < 0) & ~torch.isfinite(detached), state.step, bad_step)
        loss_sum += detached * labels.numel()
        correct += (logits.detach().argmax(1) == labels).sum()
        seen += labels.numel()
        state.step += 1
        done += 1
        if progress.due(done):
            progress.during_epoch(done, loss_sum.item() / seen, seen)
            if bad_step.item() >= 0:
                break
    if bad_step.item() >= 0:  # waits for the epoch's queued device work, so the clock below holds it
        state.diverged_step = int(bad_step.item())
        return None
    elapsed = time.perf_counter() - started
    state.train_seconds += elapsed
    state.images_seen += seen
    return {
        "epoch": epoch + 1,
        "step": state.step,
        "lr": lr,
        "train_loss": loss_sum.item() / seen,
        "train_acc": 100.0 * correct.item() / seen,
        "images_per_s": seen / elapsed,
    }


@torch.inference_mode()
def evaluate(model: nn.Module, data: DeviceData, runtime: Runtime) -> dict:
    """Test loss and accuracy (%) in large batches, without gradients."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=runtime.device)
    correct = torch.zeros((), device=runtime.device, dtype=torch.long)
    for images, labels in test_batches(data, runtime.eval_batch_size, runtime.channels_last):
        with runtime.autocast():
            logits = model(images)
        loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum")
        correct += (logits.argmax(1) == labels).sum()
    model.train(was_training)
    n = data.test_labels.numel()
    return {"test_loss": loss_sum.item() / n, "test_acc": 100.0 * correct.item() / n}
