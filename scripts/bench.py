"""Speed benchmarks. Each prints absolute figures and ratios measured in this one run (same
process, same machine), so a ratio holds even where absolute speed differs.

    python scripts/bench.py                    # all benchmarks on the default device
    python scripts/bench.py loop --device cuda # one benchmark
    python scripts/bench.py --list

Add a benchmark: a function `bench_<name>(args)` decorated with @benchmark.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from prune_bench.data import DeviceData, synthetic_arrays, train_batches
from prune_bench.models import build_model
from prune_bench.optim import GRDA
from prune_bench.pruning import (
    NoPruner,
    TrainContext,
    build_pruner,
    fggp_masks,
    gmp_masks,
    magfirst_masks,
)
from prune_bench.train import Runtime, train_step

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
    from prune_bench.optim import StochGradAdam

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
    from omegaconf import OmegaConf

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
    from omegaconf import OmegaConf

    from prune_bench.paths import conf_dir

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
        pruner._project()
        pruner._select(steps["2 of 20 events"])

    select_s = seconds_per_call(one_selection, device, calls=max(1, args.steps // 2))
    plain = train_s["plain"]
    ratios = ", ".join(f"{name} ({decaying[name]} channels) {1e3 * train_s[name]:.1f} ms = {train_s[name] / plain:.3f}x"
                       for name in decaying)
    print(f"dpm [{args.model}, batch {args.batch_size}, {device}, {len(pruner.host.groups)} groups]: train step plain "
          f"{1e3 * plain:.1f} ms; while decaying: {ratios} (target <= 1.10). One host selection "
          f"({decaying['2 of 20 events']} picks): {1e3 * select_s:.1f} ms = {select_s / plain:.2f} steps")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per block")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args()
    if args.list:
        for name, fn in BENCHMARKS.items():
            print(f"{name:<16} {(fn.__doc__ or '').strip().splitlines()[0]}")
        return
    args.device = torch.device(args.device)
    unknown = set(args.names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmarks {sorted(unknown)}; allowed: {', '.join(BENCHMARKS)}")
    for name in args.names or BENCHMARKS:
        BENCHMARKS[name](args)


if __name__ == "__main__":
    main()
