"""Speed benchmarks. Each prints absolute figures and ratios measured in this one run (same
process, same machine), so a ratio holds even where absolute speed differs.

    python scripts/bench.py                    # all benchmarks on the default device (gpu: only on CUDA)
    python scripts/bench.py loop --device cuda # one benchmark
    python scripts/bench.py gpu                # epoch time per mode, DataLoader loop, packing (see bench_gpu)
    python scripts/bench.py gpu --device cpu --models resnet20 --train-images 1024 --test-images 256 \
        --epoch-steps 4 --pack 1,2 --workers 0 # the same logic, CPU-sized
    python scripts/bench.py latency --run runs/NAME # dense vs slimmed forward ms, batch 1 and 256
    python scripts/bench.py --list

Add a benchmark: a function `bench_<name>(args)` decorated with @benchmark.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import queue as queue_module
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from reference_loop import time_reference

from prune_bench.config.compose import compose_config
from prune_bench.config.shipped import conf_dir
from prune_bench.data import (
    Augment,
    DeviceData,
    load_arrays,
    load_data,
    steps_per_epoch,
    synthetic_arrays,
    train_batches,
)
from prune_bench.engine.checkpoint import ModelPair, model_pair_from_run
from prune_bench.engine.loop import FitState, Training, evaluate, train_epoch, train_step
from prune_bench.engine.runtime import Runtime, configure_cuda_kernels
from prune_bench.latency import compare_latency
from prune_bench.models import build_model
from prune_bench.optim import GRDA, StochGradAdam, build_optimizer, build_scheduler
from prune_bench.pruning import (
    NoPruner,
    TrainContext,
    build_pruner,
    fggp_masks,
    gmp_masks,
    magfirst_masks,
)
from prune_bench.pruning.dpm.slim import slim

BENCHMARKS: dict[str, Callable] = {}


def benchmark(fn: Callable) -> Callable:
    BENCHMARKS[fn.__name__.removeprefix("bench_")] = fn
    return fn


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_call(fn: Callable[[], object], device: torch.device, calls: int, warmup: int = 3,
                     repeats: int = 3) -> float:
    """Median over `repeats` blocks of `calls` calls, after `warmup` calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    blocks = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        synchronize(device)
        blocks.append((time.perf_counter() - started) / calls)
    return statistics.median(blocks)


def synthetic_device_data(n: int, device: torch.device) -> DeviceData:
    arrays = synthetic_arrays(10, n, 100, seed=0)
    mean, std = arrays.channel_stats()

    def tensor(images):
        return torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).to(device)

    return DeviceData(
        tensor(arrays.train_images), torch.from_numpy(arrays.train_labels).to(device),
        tensor(arrays.test_images), torch.from_numpy(arrays.test_labels).to(device),
        torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1),
        torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1),
        10, arrays.classes,
    )


def runtime_for(device: torch.device) -> Runtime:
    return Runtime(device, bf16=device.type == "cuda", channels_last=True, eval_batch_size=1000,
                   progress="none")


def data_and_model(args, n_images: int = 2048) -> tuple[DeviceData, torch.nn.Module]:
    """Synthetic data on the device and a seeded `args.model` in channels_last."""
    data = synthetic_device_data(n_images, args.device)
    torch.manual_seed(0)
    return data, build_model(args.model).to(args.device, memory_format=torch.channels_last)


def endless_batches(data: DeviceData, batch_size: int):
    epoch = 0
    while True:
        yield from train_batches(data, batch_size, seed=0, epoch=epoch, channels_last=True)
        epoch += 1


@benchmark
def bench_loop(args) -> None:
    """Our training step (device-side augmentation + train_step with no pruner) against a bare
    PyTorch step on one fixed, pre-normalised batch: the loop's own overhead."""
    device, runtime = args.device, runtime_for(args.device)
    data, model = data_and_model(args)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    batches = endless_batches(data, args.batch_size)
    fixed_images, fixed_labels = next(batches)
    pruner = NoPruner()

    def bare():
        with runtime.autocast():
            loss = F.cross_entropy(model(fixed_images).float(), fixed_labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def ours():
        images, labels = next(batches)
        train_step(model, optimizer, pruner, images, labels, 0, runtime)

    bare_s = seconds_per_call(bare, device, args.steps)
    ours_s = seconds_per_call(ours, device, args.steps)
    print(f"loop [{args.model}, batch {args.batch_size}, {device}]: bare step {1e3 * bare_s:.1f} ms "
          f"({args.batch_size / bare_s:.0f} img/s), ours {1e3 * ours_s:.1f} ms "
          f"({args.batch_size / ours_s:.0f} img/s); ours / bare = {ours_s / bare_s:.3f}")


@benchmark
def bench_sga(args) -> None:
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


def _gradual_pruner(name: str, model, optimizer, device: torch.device, sparsity: float):
    """A GMP/FGGP pruner whose masks are already at `sparsity` (an ERK start) and whose events
    lie beyond the timed steps, so a timed step is the per-step masking cost alone."""
    cfg = OmegaConf.create({
        "name": name, "sparsity": sparsity, "init_sparsity": sparsity, "t_start": 0, "t_end": 10**9,
        "interval": None, "events": 1, "layers": ["conv", "linear"], "skip_first_conv": True,
        "skip_last_linear": False, "scope": "global", "rate": 0.5, "rate_schedule": "fixed", "rate_final": 0.005,
    })
    pruner = build_pruner(cfg)
    pruner.start(TrainContext(model, optimizer, None, 1, 10**9, 0, device))
    return pruner


@benchmark
def bench_gradual(args) -> None:
    """GMP/FGGP/magfirst: a training step with the mask set active (90% sparse) against no
    pruner, and the cost of one pruning event (50% -> 60% sparsity) in training steps."""
    device, runtime = args.device, runtime_for(args.device)
    data, model = data_and_model(args)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    batches = endless_batches(data, args.batch_size)

    def step_with(pruner):
        def step():
            images, labels = next(batches)
            train_step(model, optimizer, pruner, images, labels, 0, runtime)
        return step

    # plain and masked steps in alternating blocks, so drift in machine load hits both alike
    plain_step = step_with(NoPruner())
    masked_step = step_with(_gradual_pruner("fggp", model, optimizer, device, 0.9))
    blocks = {plain_step: [], masked_step: []}
    for _ in range(3):
        for step, times in blocks.items():
            times.append(seconds_per_call(step, device, args.steps, warmup=1, repeats=1))
    dense_s, masked_s = (statistics.median(times) for times in blocks.values())

    # One event from a 50%-sparse state to 60%: the copy of the pre-step weights (and, for FGGP and
    # magfirst, of the gradient) that after_backward keeps at event steps, the selection over all
    # prunable weights, the new masks, the fused multiplies on weights and optimizer state.
    pruner = _gradual_pruner("fggp", model, optimizer, device, 0.5)
    masks, params = pruner.masks, pruner.prunable
    before = {name: m.clone() for name, m in masks.masks.items()}
    n_prune = round(0.1 * masks.n_total())
    step_with(pruner)()  # fills .grad

    def event(select):
        def run():
            weights = {n: p.detach().clone() for n, p in params.items()}
            masks.set_masks(select(weights, before))
            masks.apply_()
            masks.zero_optimizer_state_(optimizer)
        return run

    def grads():
        return {n: p.grad.detach().clone() for n, p in params.items()}

    seconds = {
        "GMP": event(lambda w, m: gmp_masks(w, m, n_prune)),
        "FGGP": event(lambda w, m: fggp_masks(w, grads(), m, n_prune, 0.5)),
        "magfirst": event(lambda w, m: magfirst_masks(w, grads(), m, n_prune, 0.5)),
    }
    seconds = {name: seconds_per_call(fn, device, max(1, args.steps // 2)) for name, fn in seconds.items()}
    n_total = masks.n_total()
    events = ", ".join(f"{name} {1e3 * s:.1f} ms = {s / dense_s:.2f} steps" for name, s in seconds.items())
    print(f"gradual [{args.model}, batch {args.batch_size}, {device}, {n_total} prunable weights]: "
          f"step without pruner {1e3 * dense_s:.1f} ms, with masks (90% sparse) {1e3 * masked_s:.1f} ms; "
          f"masked / plain = {masked_s / dense_s:.3f}. One event (prune {n_prune}): {events}")


def interleaved_seconds(fns: dict[str, Callable[[], object]], device: torch.device, calls: int,
                        rounds: int) -> dict[str, float]:
    """Seconds per call of each fn: the fastest of `rounds` blocks of `calls` calls, the fns taking
    turns block by block. Other work on a shared machine only ever adds time, so the fastest
    block is the best estimate of each fn's own cost, and turns keep slow drifts from favouring one."""
    blocks = {name: [] for name in fns}
    for fn in fns.values():
        seconds_per_call(fn, device, calls=1, warmup=2, repeats=1)
    for _ in range(rounds):
        for name, fn in fns.items():
            blocks[name].append(seconds_per_call(fn, device, calls, warmup=0, repeats=1))
    return {name: min(times) for name, times in blocks.items()}


@benchmark
def bench_grda(args) -> None:
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


def _dpm_pruner(model, optimizer, device: torch.device, events: int, decaying_events: int):
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


@benchmark
def bench_dpm(args) -> None:
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
                         _dpm_pruner(models[name], optimizers[name], device, 20, decaying_events))
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


# ----------------------------------------------------------------------------- latency: dense vs slimmed


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


@benchmark
def bench_latency(args) -> dict:
    """Forward latency, dense vs slimmed (--slim MODEL slimmed by the product's DepGraph slimming;
    --run DIR: a finished run's model.pt and its unpruned spec), at each --latency-batches size
    (default 1 and 256)."""
    pairs = latency_pairs(args)
    if not pairs:
        print("latency: left out (needs --run DIR or --slim MODEL)")
        return {}
    return {pair.label: print_latency(pair, args) for pair in pairs}


# ----------------------------------------------------------------------------- gpu: epoch time against the limit


@dataclass(frozen=True)
class Mode:
    """How `prune-bench run` executes: precision, memory format, and torch.compile's mode
    (None: eager; "default": torch.compile(model), as trainer.compile=true does)."""

    bf16: bool
    channels_last: bool
    compile: str | None
    label: str


GPU_MODES = {
    "fp32": Mode(False, False, None, "eager fp32, channels_last off"),
    "bf16_cl": Mode(True, True, None, "bf16 autocast + channels_last (the CUDA default)"),
    "compile": Mode(True, True, "default", "bf16 + channels_last + torch.compile"),
    "reduce_overhead": Mode(True, True, "reduce-overhead", "bf16 + channels_last + torch.compile(mode='reduce-overhead'), CUDA graphs"),
    "max_autotune": Mode(True, True, "max-autotune", "bf16 + channels_last + torch.compile(mode='max-autotune'), CUDA graphs"),
}
DEFAULT_GPU_MODES = ("fp32", "bf16_cl", "compile", "max_autotune")
GPU_PARTS = ("epochs", "reference", "packing")
EPOCH_GOAL_S = 2.0  # ResNet-56 on one H100/H200: 200 epochs in under 7 minutes
REFERENCE_GOAL = 5.0  # project loop / DataLoader loop, images/s


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


def bench_data(args) -> tuple[DeviceData, object]:
    """The device data through the project's loader (`load_data`) and the composed config whose
    optimizer, scheduler and trainer sections `prune-bench run` would use."""
    overrides = (["data=cifar10_jpeg"] if args.data == "jpeg" else
                 ["data=synthetic", f"data.synthetic.train_size={args.train_images}",
                  f"data.synthetic.test_size={args.test_images}"])
    cfg = compose_config(overrides)
    return load_data(cfg.data, args.device), cfg


def data_slice(data: DeviceData, n_steps: int, batch_size: int) -> DeviceData:
    """The first n_steps x batch_size training images (and every test image): one epoch of the
    project's loop over it is n_steps full steps."""
    n = min(data.n_train, n_steps * batch_size)
    return replace(data, train_images=data.train_images[:n], train_labels=data.train_labels[:n])


def loop_training(model, cfg, data: DeviceData, runtime: Runtime, batch_size: int) -> Training:
    """The Training a `prune-bench run` stage builds (the run's optimizer and scheduler, no pruner)."""
    n_steps = steps_per_epoch(data.n_train, batch_size)

    def build(new_model):
        optimizer = build_optimizer(cfg.optimizer, new_model.parameters())
        return optimizer, build_scheduler(cfg.scheduler, optimizer, n_steps, cfg.trainer.epochs)

    ctx = TrainContext(model, None, data, n_steps, n_steps * cfg.trainer.epochs, 0, runtime.device)
    return Training(model, build, NoPruner(), ctx, runtime)


def time_epoch(model_name: str, mode: Mode, data: DeviceData, cfg, args) -> dict:
    """Warm-up (compilation, cuDNN autotuning: some full steps, the epoch's last smaller batch and
    one test pass, the shapes every later epoch repeats), then one epoch of the project's loop
    (engine.loop.train_epoch) over `--epoch-steps` full batches and a timed full test pass
    (engine.loop.evaluate). The epoch is extrapolated: train seconds per step x steps per epoch +
    the test pass."""
    device, batch_size = args.device, args.batch_size
    trainer = OmegaConf.merge(cfg.trainer, {"precision": "bf16" if mode.bf16 else "fp32", "batch_size": batch_size,
                                            "channels_last": mode.channels_last, "progress": "none",
                                            "compile": mode.compile is not None})
    runtime = replace(Runtime.from_config(trainer, device),
                      compile_mode=None if mode.compile in (None, "default") else mode.compile)
    torch.manual_seed(0)
    model = runtime.place(build_model(model_name, num_classes=data.num_classes))
    n_steps = steps_per_epoch(data.n_train, batch_size)
    training = loop_training(model, cfg, data, runtime, batch_size)
    state = FitState()
    warm_steps = max(3, args.epoch_steps // 10)
    warm = replace(data_slice(data, warm_steps + 1, batch_size))
    tail = data.n_train % batch_size  # the last, smaller batch of a real epoch
    if tail:
        n = warm_steps * batch_size + tail
        warm = replace(data, train_images=data.train_images[:n], train_labels=data.train_labels[:n])

    started = time.perf_counter()
    train_epoch(training, warm, trainer, 0, Augment(), state)
    evaluate(training.forward, data, runtime)
    synchronize(device)
    warmup_s = time.perf_counter() - started

    timed = data_slice(data, args.epoch_steps, batch_size)
    started = time.perf_counter()
    entry = train_epoch(training, timed, trainer, 1, Augment(), state)
    synchronize(device)
    train_s = time.perf_counter() - started
    started = time.perf_counter()
    test = evaluate(training.forward, data, runtime)
    synchronize(device)
    test_s = time.perf_counter() - started
    result = {
        "warmup_s": warmup_s, "train_s": train_s, "test_s": test_s, "steps": args.epoch_steps,
        "steps_per_epoch": n_steps, "images_per_s": timed.n_train / train_s,
        "epoch_s": train_s / args.epoch_steps * n_steps + test_s,
        "train_loss": entry["train_loss"] if entry else float("nan"), "finite": entry is not None,
        "test_acc": test["test_acc"],
    }
    del training, model
    if mode.compile is not None:
        torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def _pack_worker(rank: int, model_name: str, device_name: str, batch_size: int, n_steps: int, threads: int,
                 barrier, results) -> None:
    """One packed training process: its own model and synthetic device data, the CUDA default
    runtime (bf16 + channels_last; fp32 on CPU); warms up, waits for the others, trains `n_steps`."""
    torch.set_num_threads(threads)
    device = torch.device(device_name)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # trainer.cudnn_benchmark's default
    runtime = runtime_for(device)
    cfg = compose_config([])
    trainer = OmegaConf.merge(cfg.trainer, {"batch_size": batch_size})
    data = synthetic_device_data(batch_size * n_steps, device)
    torch.manual_seed(rank)
    training = loop_training(runtime.place(build_model(model_name)), cfg, data, runtime, batch_size)
    state = FitState()
    train_epoch(training, data_slice(data, 3, batch_size), trainer, 0, Augment(), state)  # warm-up
    synchronize(device)
    barrier.wait(timeout=600)
    started = time.monotonic()  # one clock for every process (CLOCK_MONOTONIC)
    train_epoch(training, data, trainer, 1, Augment(), state)
    synchronize(device)
    results.put((rank, started, time.monotonic(), data.n_train))


def time_packing(model_name: str, k: int, args) -> dict:
    """k concurrent training processes (spawned) on one device. Total images/s over the common
    window (first start to last end: conservative) and each process's own rate."""
    context = torch.multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(k), context.Queue()
    threads = max(1, torch.get_num_threads() // k)
    processes = [context.Process(target=_pack_worker, daemon=True,
                                 args=(rank, model_name, str(args.device), args.batch_size, args.epoch_steps,
                                       threads, barrier, results)) for rank in range(k)]
    for process in processes:
        process.start()
    reports, failed = [], []
    try:
        while len(reports) < k and not failed:
            try:
                reports.append(results.get(timeout=2))
            except queue_module.Empty:
                failed = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
    finally:
        if len(reports) < k:
            barrier.abort()  # the others stop waiting for the one that is gone
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    if failed:
        return {"failed": f"a packed process exited with code {failed[0]} (its traceback is above)"}
    first_start = min(started for _, started, _, _ in reports)
    last_end = max(ended for _, _, ended, _ in reports)
    total = sum(seen for *_, seen in reports)
    return {"total_images_per_s": total / (last_end - first_start),
            "per_process": [seen / (ended - started) for _, started, ended, seen in sorted(reports)]}


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return (f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
                f"cuDNN {torch.backends.cudnn.version()}")
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads), torch {torch.__version__}"


def _print(line: str = "") -> None:
    print(line, flush=True)  # each figure as it is measured: a run cut short keeps what it had


@benchmark
def bench_gpu(args) -> dict:
    """Epoch time (train + test) per model and mode, the usual DataLoader loop, packed runs.

    What `prune-bench run` achieves per epoch on one device: for each of --models and --modes,
    the project's own loop (train_step, scheduler and device-side sums as in train.fit, on
    DeviceData from load_data) timed over --epoch-steps steps and extrapolated to a whole epoch,
    plus a timed full test pass (evaluate); warm-up (compile) time apart. Then the usual
    published CIFAR loop on the same device (per-image PIL transforms in DataLoader workers,
    fp32): the ratio of images/s measured in this run. Then 1, 2, 4, 8 concurrent training
    processes on the device (--pack): total images/s, which says trainer.runs_per_gpu.
    Everything runs on CPU too (small sizes) to check the logic; the CUDA figures come only from
    running it on a GPU. Returns the measured figures."""
    device = args.device
    if device.type == "cuda":
        configure_cuda_kernels(parse_trainer_defaults())
    data, cfg = bench_data(args)
    n_steps = steps_per_epoch(data.n_train, args.batch_size)
    _print(f"gpu bench on {device}: {device_description(device)}")
    _print(f"data: {args.data} ({data.n_train} train, {data.test_labels.numel()} test images on {device}), "
           f"batch {args.batch_size}; each epoch below is {args.epoch_steps} timed training steps "
           f"extrapolated to {n_steps} steps, plus a timed full test pass; warm-up timed apart")
    figures = {"device": device_description(device), "epochs": {}, "skipped": {}, "failed": {}}
    epoch_modes = [m for m in args.modes] if "epochs" in args.parts else []
    if "reference" in args.parts and "bf16_cl" not in epoch_modes:
        epoch_modes = epoch_modes + ["bf16_cl"]  # the reference ratio needs the project's default loop
    for model_name in args.models:
        for name in epoch_modes:
            if "epochs" not in args.parts and model_name != args.models[0]:
                continue
            mode = GPU_MODES[name]
            key = f"{model_name} {name}"
            if mode.compile is not None and device.type == "cpu" and args.modes_auto:
                figures["skipped"][key] = "inductor compilation takes minutes on this CPU"
                _print(f"{key}: skipped on CPU: {mode.label} (inductor compilation takes minutes here; "
                       f"name it in --modes to run it)")
                continue
            try:
                result = time_epoch(model_name, mode, data, cfg, args)
            except Exception as error:
                if mode.compile is None:
                    raise
                figures["failed"][key] = one_line(error)
                _print(f"{key}: failed: {mode.label}: {one_line(error)}")
                del error
                torch._dynamo.reset()
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            figures["epochs"][key] = result
            _print(f"{key} [{mode.label}]: warm-up {result['warmup_s']:.1f} s; train "
                   f"{result['images_per_s']:.0f} img/s ({1e3 * result['train_s'] / result['steps']:.2f} ms/step), "
                   f"test pass {result['test_s']:.2f} s; epoch {result['epoch_s']:.2f} s (extrapolated); "
                   f"loss {result['train_loss']:.3f}{'' if result['finite'] else ' NON-FINITE'}")
    first = args.models[0]
    if "reference" in args.parts:
        arrays, _ = load_arrays(cfg.data)
        reference = figures["reference"] = time_reference(first, arrays, args)
        _print(f"{first} reference loop [per-image {reference['library']} transforms, DataLoader workers "
               f"{reference['workers']}, fp32 eager]: train {reference['images_per_s']:.0f} img/s, workers' "
               f"start {reference['startup_s']:.2f} s, test pass {reference['test_s']:.2f} s; epoch "
               f"{reference['epoch_s']:.2f} s (extrapolated)")
    if "packing" in args.parts:
        figures["packing"] = {}
        for k in args.pack:
            packed = figures["packing"][k] = time_packing(first, k, args)
            if "failed" in packed:
                _print(f"{first} packing k={k}: failed: {packed['failed']}")
                continue
            rates = ", ".join(f"{rate:.0f}" for rate in packed["per_process"])
            _print(f"{first} packing k={k}: total {packed['total_images_per_s']:.0f} img/s; per process {rates}")
    print_summary(figures, args)
    return figures


def parse_trainer_defaults():
    """The trainer section `prune-bench run` uses by default (cudnn_benchmark, deterministic)."""
    return compose_config([]).trainer


def print_summary(figures: dict, args) -> None:
    first = args.models[0]
    _print()
    _print(f"summary ({figures['device']}; batch {args.batch_size}; epochs extrapolated from "
           f"{args.epoch_steps} steps + a full test pass)")
    _print("| model | mode | warm-up s | train img/s | test pass s | epoch s | vs fp32 |")
    _print("|---|---|---|---|---|---|---|")
    for key, result in figures["epochs"].items():
        model_name, name = key.split(" ")
        fp32 = figures["epochs"].get(f"{model_name} fp32")
        speedup = f"{fp32['epoch_s'] / result['epoch_s']:.2f}x" if fp32 else "-"
        _print(f"| {model_name} | {name} | {result['warmup_s']:.1f} | {result['images_per_s']:.0f} | "
               f"{result['test_s']:.2f} | {result['epoch_s']:.2f} | {speedup} |")
    for key, reason in {**figures["skipped"], **figures["failed"]}.items():
        model_name, name = key.split(" ")
        _print(f"| {model_name} | {name} | {'skipped' if key in figures['skipped'] else 'failed'}: {reason} | | | | |")
    ours = {name: figures["epochs"][f"{first} {name}"] for name in GPU_MODES if f"{first} {name}" in figures["epochs"]}
    reference = figures.get("reference")
    if reference and ours:
        best = max(ours, key=lambda name: ours[name]["images_per_s"])
        for name in dict.fromkeys(["bf16_cl", best]):
            if name in ours:
                ratio = ours[name]["images_per_s"] / reference["images_per_s"]
                epoch_ratio = reference["epoch_s"] / ours[name]["epoch_s"]
                _print(f"{first} project loop ({name}) / reference loop: {ratio:.2f}x images/s, "
                       f"{epoch_ratio:.2f}x epoch time (goal >= {REFERENCE_GOAL:g}x: "
                       f"{'met' if ratio >= REFERENCE_GOAL else 'not met'})")
    resnet56 = {key: r for key, r in figures["epochs"].items() if key.startswith("resnet56 ")}
    if resnet56:
        key = min(resnet56, key=lambda k: resnet56[k]["epoch_s"])
        seconds = resnet56[key]["epoch_s"]
        _print(f"ResNet-56 epoch, best mode ({key.split(' ')[1]}): {seconds:.2f} s on {figures['device'].split(',')[0]} "
               f"(goal <= {EPOCH_GOAL_S:g} s on one H100/H200: {'met' if seconds <= EPOCH_GOAL_S else 'not met'}); "
               f"200 epochs = {200 * seconds / 60:.1f} min")
    packing = {k: p for k, p in figures.get("packing", {}).items() if "failed" not in p}
    if packing:
        single = packing.get(1, {}).get("total_images_per_s")
        cells = ", ".join(f"k={k}: {p['total_images_per_s']:.0f} img/s"
                          + (f" ({p['total_images_per_s'] / single:.2f}x k=1)" if single else "")
                          for k, p in packing.items())
        _print(f"{first} packed processes, total: {cells}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per block")
    parser.add_argument("--list", action="store_true")
    latency = parser.add_argument_group("latency (dense vs slimmed forward time)")
    latency.add_argument("--run", help="a finished run's directory: its slimmed model against the dense one")
    latency.add_argument("--slim", help="a model to slim with DepGraph and time (default: resnet56 unless "
                         "--run is given; empty: none)")
    latency.add_argument("--speedup", type=float, default=2.11, help="--slim's FLOPs speed-up (default 2.11)")
    latency.add_argument("--latency-batches", default="1,256", help="batch sizes (default 1,256)")
    latency.add_argument("--threads", type=int, help="CPU threads to time at (default: torch's current count)")
    latency.add_argument("--latency-seconds", type=float, default=20.0,
                         help="at most this many seconds of timing per model and batch size before a "
                              "measurement is reported unstable (default 20)")
    gpu = parser.add_argument_group("gpu (epoch time, reference loop, packing)")
    gpu.add_argument("--models", default="resnet56,vgg16", help="models to time; the first one also "
                     "runs the reference loop and the packing")
    gpu.add_argument("--modes", default="auto", help=f"any of {', '.join(GPU_MODES)}; auto: "
                     f"{','.join(DEFAULT_GPU_MODES)} (compiled modes skipped on CPU unless named)")
    gpu.add_argument("--parts", default=",".join(GPU_PARTS), help=f"any of {', '.join(GPU_PARTS)}")
    gpu.add_argument("--data", choices=("synthetic", "jpeg"), default="synthetic",
                     help="jpeg: the real archive (data=cifar10_jpeg, $PRUNE_BENCH_CIFAR10_JPEG)")
    gpu.add_argument("--train-images", type=int, default=50000, help="synthetic training split size")
    gpu.add_argument("--test-images", type=int, default=10000, help="synthetic test split size")
    gpu.add_argument("--epoch-steps", type=int, default=100,
                     help="timed training steps per mode (extrapolated to a whole epoch); steps per packed process")
    gpu.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                     help="DataLoader workers of the reference loop")
    gpu.add_argument("--pack", default="1,2,4,8", help="numbers of concurrent training processes")
    args = parser.parse_args(argv)
    args.list_only = args.list
    args.modes_auto = args.modes == "auto"
    args.device = torch.device(args.device)
    unknown = set(args.names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmarks {sorted(unknown)}; allowed: {', '.join(BENCHMARKS)}")
    try:
        args.models = _names(args.models, None, "--models")
        args.modes = list(DEFAULT_GPU_MODES) if args.modes == "auto" else _names(args.modes, GPU_MODES, "--modes")
        args.parts = _names(args.parts, GPU_PARTS, "--parts")
        args.pack = [int(k) for k in _names(args.pack, None, "--pack")]
        args.latency_batches = [int(n) for n in _names(args.latency_batches, None, "--latency-batches")]
    except ValueError as error:
        parser.error(str(error))
    if min(args.latency_batches, default=0) < 1 or (args.threads is not None and args.threads < 1):
        parser.error("--latency-batches and --threads must be positive")
    if args.run and not (Path(args.run) / "model.pt").is_file():
        parser.error(f"--run: {args.run} has no model.pt (a finished run's directory)")
    if min(args.pack, default=1) < 1 or min(args.epoch_steps, args.workers + 1, args.batch_size) < 1:
        parser.error("--pack, --epoch-steps and --batch-size must be positive, --workers >= 0")
    return args


def _names(text: str, allowed, option: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    bad = [name for name in names if allowed is not None and name not in allowed]
    if bad:
        raise ValueError(f"{option}: unknown {', '.join(bad)}; allowed: {', '.join(allowed)}")
    return names


def main() -> None:
    args = parse_args()
    if args.list_only:
        for name, fn in BENCHMARKS.items():
            print(f"{name:<16} {(fn.__doc__ or '').strip().splitlines()[0]}")
        return
    names = args.names or [name for name in BENCHMARKS if name != "gpu" or args.device.type == "cuda"]
    if not args.names and args.device.type != "cuda":
        print("gpu: left out on CPU (full-size epochs); name it to run it: python scripts/bench.py gpu --device cpu ...")
    for name in names:
        BENCHMARKS[name](args)


if __name__ == "__main__":
    main()
