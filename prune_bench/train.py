"""The training loop, its pruner hook points, evaluation, and checkpoint/resume.

One step: forward -> loss -> backward -> pruner.after_backward -> optimizer.step ->
pruner.after_step -> scheduler.step. Evaluation and a checkpoint after every epoch.
Nothing in a step waits on the device: loss, accuracy and a divergence flag accumulate there
and are read once per epoch (and at progress-bar refreshes).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from .config import resolve_precision
from .data import DeviceData, steps_per_epoch, test_batches, train_batches
from .errors import CheckpointError
from .fileio import atomic_torch_save
from .metrics import zero_fraction
from .pruning import Pruner, TrainContext

CHECKPOINT_FORMAT = 1
REFRESH_EVERY = 50  # steps between progress-bar refreshes (each one syncs with the device)


@dataclass
class FitState:
    """Everything about progress that a checkpoint must carry besides the tensors."""

    epoch: int = 0  # completed epochs
    step: int = 0  # completed optimizer steps
    history: list = field(default_factory=list)
    train_seconds: float = 0.0
    images_seen: int = 0
    diverged_step: int | None = None


@dataclass
class Runtime:
    """How to execute (not what to compute)."""

    device: torch.device
    bf16: bool
    channels_last: bool
    eval_batch_size: int
    progress: str  # bar | lines | none

    @classmethod
    def from_config(cls, trainer, device: torch.device) -> Runtime:
        cuda = device.type == "cuda"
        bf16 = resolve_precision(trainer.precision, device) == "bf16"
        # channels_last is faster on CUDA and, measured here, on CPU too (ResNet-20 training
        # +23% on 2 cores with oneDNN).
        channels_last = True if trainer.channels_last == "auto" else bool(trainer.channels_last)
        # Large evaluation batches suit a GPU; on CPU small ones stay in cache (ResNet-20:
        # 2200 img/s at 128 vs 1500 at 1000, channels_last, 2 cores).
        eval_batch_size = trainer.eval_batch_size
        if eval_batch_size == "auto":
            eval_batch_size = 1000 if cuda else 128
        progress = trainer.progress
        if progress == "auto":
            progress = "bar" if sys.stderr.isatty() else "lines"
        return cls(device, bf16, channels_last, eval_batch_size, progress)

    def autocast(self):
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)


def configure_cuda_kernels(trainer) -> None:
    """cuDNN autotuning (trainer.cudnn_benchmark: the fastest kernels, chosen anew in every
    process), or with trainer.deterministic, deterministic cuDNN and cuBLAS kernels and no
    autotuning: the same seed then computes the same bits on the same GPU and software."""
    deterministic = bool(trainer.deterministic)
    torch.backends.cudnn.benchmark = bool(trainer.cudnn_benchmark) and not deterministic
    torch.backends.cudnn.deterministic = deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # what cuBLAS needs for it
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


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


def save_checkpoint(path: Path, model, optimizer, scheduler, pruner: Pruner, state: FitState,
                    run_id: str) -> None:
    payload = {
        "format": CHECKPOINT_FORMAT,
        "run_id": run_id,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "pruner": pruner.state_dict(),
        "architecture": pruner.architecture(),
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        },
        "state": asdict(state),
    }
    atomic_torch_save(payload, path)


def load_checkpoint(path: Path, run_id: str) -> dict:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(error).__name__}); delete it to start the run again"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path} has an unknown format; delete it to start the run again")
    if payload.get("run_id") != run_id:
        raise CheckpointError(f"checkpoint {path} belongs to run {payload.get('run_id')}, not {run_id}")
    return payload


def restore(payload: dict, model, optimizer, scheduler, pruner: Pruner) -> FitState:
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    pruner.load_state_dict(payload["pruner"])
    torch.set_rng_state(payload["rng"]["torch"])
    if payload["rng"]["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["rng"]["cuda"])
    return FitState(**payload["state"])


def train_step(model, optimizer, pruner: Pruner, images, labels, step: int, runtime: Runtime,
               label_smoothing: float = 0.0):
    """forward -> loss -> backward -> pruner.after_backward -> optimizer.step -> pruner.after_step.
    Returns the logits, the loss and whatever after_step handed back (a new model or None)."""
    with runtime.autocast():
        logits = model(images)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    pruner.after_backward(step)
    optimizer.step()
    return logits, loss, pruner.after_step(step)


def rebuild_keeping_state(rebuild, model, optimizer, scheduler, pruner: Pruner):
    """A new optimizer and scheduler for a model whose shapes changed: same hyperparameters, the
    scheduler at the same step, and the optimizer state (momentum, Adam moments) of the surviving
    entries, which the pruner cuts out of the old state."""
    optimizer_state, scheduler_state = optimizer.state_dict(), scheduler.state_dict()
    optimizer, scheduler = rebuild(model)
    optimizer.load_state_dict(pruner.carry_optimizer_state(optimizer_state))
    scheduler.load_state_dict(scheduler_state)
    return optimizer, scheduler


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    pruner: Pruner,
    ctx: TrainContext,
    data: DeviceData,
    trainer,
    seed: int,
    augment: bool,
    runtime: Runtime,
    state: FitState,
    checkpoint: Callable[[nn.Module, torch.optim.Optimizer, object, FitState], None] | None = None,
    rebuild: Callable[[nn.Module], tuple] | None = None,
    log: Callable[[str], None] = print,
    monitor=None,
) -> tuple[nn.Module, FitState]:
    """Train from `state` to `trainer.epochs`. Returns the (possibly replaced) model and state.
    `monitor` (progress.Monitor) hears of the progress within each epoch (progress lines and
    progress.json; one device sync per report, at most every 10% of an epoch) and of each epoch."""
    epochs = trainer.epochs
    n_steps = steps_per_epoch(data.n_train, trainer.batch_size)
    train_model = torch.compile(model) if trainer.compile else model
    bad_step = torch.full((), -1, dtype=torch.long, device=runtime.device)
    model.train()
    for epoch in range(state.epoch, epochs):
        started = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]  # the lr this epoch starts with
        loss_sum = torch.zeros((), device=runtime.device)
        correct = torch.zeros((), dtype=torch.long, device=runtime.device)
        seen = 0
        bar = tqdm(total=n_steps, desc=f"epoch {epoch + 1}/{epochs}", leave=False,
                   disable=runtime.progress != "bar", file=sys.stderr)
        if monitor is not None:
            monitor.start_epoch(epoch, epochs, n_steps, state)
        done = 0
        for images, labels in train_batches(data, trainer.batch_size, seed, epoch, augment,
                                            runtime.channels_last):
            logits, loss, replaced = train_step(train_model, optimizer, pruner, images, labels,
                                                state.step, runtime, trainer.label_smoothing)
            if replaced is not None:  # a structural pruner changed the shapes
                model = train_model = replaced
                optimizer, scheduler = rebuild_keeping_state(rebuild, model, optimizer, scheduler, pruner)
                ctx.model, ctx.optimizer = model, optimizer
            scheduler.step()
            detached = loss.detach()
            bad_step = torch.where((bad_step < 0) & ~torch.isfinite(detached), state.step, bad_step)
            loss_sum += detached * labels.numel()
            correct += (logits.detach().argmax(1) == labels).sum()
            seen += labels.numel()
            state.step += 1
            done += 1
            bar.update(1)
            if runtime.progress == "bar" and state.step % REFRESH_EVERY == 0:
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.3f}")
                if bad_step.item() >= 0:
                    break
            if monitor is not None and monitor.due(done):  # host-side counters and clock only
                monitor.during_epoch(done, loss_sum.item() / seen, seen)
                if bad_step.item() >= 0:
                    break
        bar.close()
        diverged = bad_step.item() >= 0  # waits for the epoch's queued device work, so elapsed holds it
        elapsed = time.perf_counter() - started
        if diverged:
            state.diverged_step = int(bad_step.item())
            log(f"diverged: non-finite loss at step {state.diverged_step} (epoch {epoch + 1}); stopping")
            break
        state.train_seconds += elapsed
        state.images_seen += seen
        entry = {
            "epoch": epoch + 1,
            "step": state.step,
            "lr": lr,
            "train_loss": loss_sum.item() / seen,
            "train_acc": 100.0 * correct.item() / seen,
            "images_per_s": seen / elapsed,
        }
        if (epoch + 1) % trainer.eval_every == 0 or epoch + 1 == epochs:
            entry.update(evaluate(train_model, data, runtime))
        achieved = pruner.report().get("achieved")
        if achieved is not None:
            entry["sparsity"] = achieved
        # Exact zeros over all parameters, whatever made them (a pruner, or gRDA's thresholding).
        entry["zeros_all"] = zero_fraction(p.detach() for p in model.parameters())
        entry["seconds"] = time.perf_counter() - started
        state.history.append(entry)
        state.epoch = epoch + 1
        log(_epoch_line(entry, epochs))
        if checkpoint is not None:
            checkpoint(model, optimizer, scheduler, state)
        if monitor is not None:
            monitor.after_epoch(entry, state, pruner.report())
    return model, state


def _epoch_line(entry: dict, epochs: int) -> str:
    parts = [
        f"epoch {entry['epoch']}/{epochs}",
        f"loss {entry['train_loss']:.4f}",
        f"train {entry['train_acc']:.2f}%",
    ]
    if "test_acc" in entry:
        parts.append(f"test {entry['test_acc']:.2f}%")
    if "sparsity" in entry:
        parts.append(f"sparsity {100 * entry['sparsity']:.2f}%")
    elif entry["zeros_all"] > 0:
        parts.append(f"zeros {100 * entry['zeros_all']:.2f}%")
    parts += [f"lr {entry['lr']:.4g}", f"{entry['images_per_s']:.0f} img/s", f"{entry['seconds']:.1f}s"]
    return "  ".join(parts)

