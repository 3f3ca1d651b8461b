"""gpu: epoch time per model and mode, the usual DataLoader loop, packed runs (written for CUDA;
runs on the CPU at small sizes to check its logic)."""

from __future__ import annotations

import platform
import queue as queue_module
import time
from dataclasses import dataclass, replace

import torch
from omegaconf import OmegaConf

from prune_bench.config.compose import compose_config
from prune_bench.data import Augment, DeviceData, load_arrays, load_data, steps_per_epoch
from prune_bench.engine.loop import FitState, Training, evaluate, train_epoch
from prune_bench.engine.runtime import Runtime, configure_cuda_kernels
from prune_bench.models import build_model
from prune_bench.optim import build_optimizer, build_scheduler
from prune_bench.pruning import NoPruner, TrainContext

from .reference_loop import time_reference
from .timing import synchronize
from .workload import runtime_for, synthetic_device_data


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


def run(args) -> dict:
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
