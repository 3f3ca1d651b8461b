"""A short measured probe of what runs cost on this device, for `reproduce --dry-run` and the time
left while a grid runs (plan.py turns it into each job's cost).

For each distinct setting that decides a step's speed -- the model (and its options), the data's
classes, the batch size, the device, the precision, channels_last and compile -- the probe, in
this process and through the project's own loop:

1. loads the data as a run loads it (timed: part of each run's fixed cost, with building the
   model and its optimizer);
2. trains with `engine.loop.train_epoch` (plain hooks) over a one-batch slice of it, a step at
   a time: WARMUP_STEPS steps, then at least MIN_STEPS and about PROBE_SECONDS of steps, each
   timed (seconds per step: their median);
3. evaluates one evaluation batch of the test set with `engine.loop.evaluate` to warm up, then
   again, timed (seconds per test image: the median);
4. saves a checkpoint of what it trained (timed: a run saves one per epoch).

The figures are what this device does now, under its present load; a pruner's own work inside a
step (masks, regularisers) is not in them.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from ..data import Augment, DeviceData, load_data
from ..engine.checkpoint import save_checkpoint
from ..engine.loop import FitState, Training, evaluate, train_epoch
from ..engine.runtime import Runtime, resolve_device, resolve_precision
from ..models import ModelSpec
from ..optim import build_optimizer, build_scheduler
from ..pruning import NoPruner, TrainContext
from ..targets import label

WARMUP_STEPS = 3  # steps before the clock starts (allocations, kernel choices, caches)
MIN_STEPS = 5  # steps timed at least ...
MAX_STEPS = 50  # ... and at most, aiming at ...
PROBE_SECONDS = 2.0  # ... this many seconds of timed steps
MIN_EVAL_BATCHES = 3  # evaluation batches timed at least ...
MIN_EVAL_IMAGES = 512  # ... and at least this many test images


@dataclass
class Probe:
    """What one setting measured on this device."""

    label: str  # e.g. "resnet20 at batch 128 on cpu fp32"
    seconds_per_step: float
    seconds_per_test_image: float
    seconds_per_checkpoint: float
    seconds_fixed: float  # per run: the data loaded, the model and its optimizer built
    steps_timed: int
    seconds: float  # what the probe took


def probe_key(cfg: DictConfig) -> str:
    """What decides a training step's speed (the model, classes, batch, device, precision, memory
    format, compilation): jobs with the same key share one probe."""
    device = resolve_device(str(cfg.trainer.device))
    trainer = cfg.trainer
    return OmegaConf.to_yaml(OmegaConf.create({
        "model": OmegaConf.to_container(cfg.model, resolve=True), "data": str(cfg.data.name),
        "batch_size": int(trainer.batch_size), "device": str(device),
        "precision": resolve_precision(trainer.precision, device),
        "channels_last": str(trainer.channels_last), "compile": bool(trainer.compile),
        "eval_batch_size": str(trainer.eval_batch_size)}))


def data_slice(data: DeviceData, n_train: int, n_test: int) -> DeviceData:
    """The first `n_train` training and `n_test` test images (labels, normalisation and info kept)."""
    return replace(data, train_images=data.train_images[:n_train], train_labels=data.train_labels[:n_train],
                   test_images=data.test_images[:n_test], test_labels=data.test_labels[:n_test])


def timed_step(training: Training, data: DeviceData, trainer, state: FitState, augment: Augment) -> float:
    """One step through engine.loop.train_epoch over a one-batch slice: its seconds, the device's
    queued work included (train_epoch reads its loss at the end)."""
    clock = time.perf_counter()
    train_epoch(training, data, trainer, seed=0, augment=augment, state=state)
    seconds = time.perf_counter() - clock
    state.epoch += 1
    state.diverged_step = None  # a non-finite loss on random weights: its time counts all the same
    return seconds


def run_probe(cfg: DictConfig) -> Probe:
    """Measure the setting of the job `cfg` (its first stage's optimizer) on the device it would
    run on here. Each figure is the median of its timings, so a moment of other load on a shared
    machine does not decide it."""
    started = time.perf_counter()
    device = resolve_device(str(cfg.trainer.device))
    runtime = replace(Runtime.from_config(cfg.trainer, device), progress="none")
    batch_size = int(cfg.trainer.batch_size)
    data = load_data(cfg.data, device)
    spec = ModelSpec.from_config(OmegaConf.to_container(cfg.model, resolve=True), data.num_classes)
    torch.manual_seed(0)
    model = runtime.place(spec.build())
    hooks = NoPruner()

    def build(new_model):
        optimizer = build_optimizer(cfg.optimizer, new_model.parameters())
        return optimizer, build_scheduler(OmegaConf.create({"name": "constant"}), optimizer, 1, 1)

    ctx = TrainContext(model, None, data, 1, 1, 0, device, spec)
    training = Training(model, build, hooks, ctx, runtime)
    hooks.start(ctx)
    fixed = time.perf_counter() - started

    trainer = OmegaConf.create({"epochs": 1, "batch_size": batch_size,
                                "label_smoothing": float(cfg.trainer.get("label_smoothing", 0.0))})
    state = FitState()
    augment = Augment.from_config(cfg.data)  # the run's own augmentation (mixup included)
    batch = data_slice(data, min(data.n_train, batch_size), 0)
    for _ in range(WARMUP_STEPS):
        timed_step(training, batch, trainer, state, augment)
    durations: list[float] = []
    while len(durations) < MIN_STEPS or (sum(durations) < PROBE_SECONDS and len(durations) < MAX_STEPS):
        durations.append(timed_step(training, batch, trainer, state, augment))
    seconds_per_step = statistics.median(durations)

    eval_batch = min(data.test_labels.numel(), runtime.eval_batch_size)
    test = data_slice(data, 0, eval_batch)
    evaluate(training.forward, test, runtime)  # warm-up
    eval_seconds = []
    while len(eval_seconds) < MIN_EVAL_BATCHES or len(eval_seconds) * eval_batch < MIN_EVAL_IMAGES:
        clock = time.perf_counter()
        evaluate(training.forward, test, runtime)
        eval_seconds.append(time.perf_counter() - clock)
    seconds_per_test_image = statistics.median(eval_seconds) / eval_batch

    with tempfile.TemporaryDirectory() as folder:
        clock = time.perf_counter()
        save_checkpoint(Path(folder) / "probe.pt", training, state, "probe", None)
        seconds_per_checkpoint = time.perf_counter() - clock
    precision = resolve_precision(cfg.trainer.precision, device)
    what = f"{label(cfg.model)} at batch {batch_size} on {device} {precision}"
    return Probe(what, seconds_per_step, seconds_per_test_image, seconds_per_checkpoint, fixed, len(durations),
                 time.perf_counter() - started)


def process_start_seconds() -> float:
    """Seconds a fresh process takes to start and import what a run needs (measured once, for
    launchers that start one process per job)."""
    clock = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import prune_bench.scale.launch"], check=False,
                   capture_output=True, timeout=300)
    return time.perf_counter() - clock
