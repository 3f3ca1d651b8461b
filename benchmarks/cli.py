"""Speed benchmarks. Each prints absolute figures and ratios measured in this one run (same
process, same machine), so a ratio holds even where absolute speed differs.

    python -m benchmarks                    # all benchmarks on the default device (gpu: only on CUDA)
    python -m benchmarks loop --device cuda # one benchmark
    python -m benchmarks gpu                # epoch time per mode, DataLoader loop, packing (see gpu.py)
    python -m benchmarks gpu --device cpu --models resnet20 --train-images 1024 --test-images 256 \
        --epoch-steps 4 --pack 1,2 --workers 0 # the same logic, CPU-sized
    python -m benchmarks latency --run runs/NAME # dense vs slimmed forward ms, batch 1 and 256
    python -m benchmarks startup            # each CLI command's start time against `python -c pass`
    python -m benchmarks --list

Add a benchmark: a module in benchmarks/ with `run(args)` (its docstring's first line is what
--list shows), named in BENCHMARKS below; the shared timing helpers are in timing.py.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from . import dpm, gpu, gradual, grda, latency, loop, sga, startup
from .gpu import DEFAULT_GPU_MODES, GPU_MODES, GPU_PARTS

BENCHMARKS = {"loop": loop, "sga": sga, "gradual": gradual, "grda": grda, "dpm": dpm, "latency": latency,
              "gpu": gpu, "startup": startup}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
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
    startup = parser.add_argument_group("startup (the CLI's start time)")
    startup.add_argument("--repeats", type=int, default=7, help="rounds of every command (default 7)")
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
    if min(args.pack, default=1) < 1 or min(args.epoch_steps, args.workers + 1, args.batch_size, args.repeats) < 1:
        parser.error("--pack, --epoch-steps, --batch-size and --repeats must be positive, --workers >= 0")
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
        for name, module in BENCHMARKS.items():
            print(f"{name:<16} {(module.run.__doc__ or '').strip().splitlines()[0]}")
        return
    names = args.names or [name for name in BENCHMARKS if name != "gpu" or args.device.type == "cuda"]
    if not args.names and args.device.type != "cuda":
        print("gpu: left out on CPU (full-size epochs); name it to run it: python -m benchmarks gpu --device cpu ...")
    for name in names:
        BENCHMARKS[name].run(args)
