"""startup: how soon the CLI answers. Each command runs as a user types it (the installed
`prune-bench` script, a new process) and is timed from its start to its exit; the commands take
turns, round after round, and each figure is the median of its rounds, as a ratio to a Python
that does nothing (`python -c pass`), measured in the same rounds."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from .timing import interleaved_blocks

BASELINE = "python -c pass"
COMMANDS = {  # what the user types -> (prune-bench's arguments, the exit status it ends with)
    "--help": (["--help"], 0),
    "list": (["list"], 0),
    "status": (["status", "--runs", "runs"], 0),  # an empty runs folder
    "run model=nope": (["run", "model=nope"], 2),  # a config error
}


def command_call(argv: list[str], status: int, cwd: Path) -> Callable[[], None]:
    """A call that runs `argv` in `cwd`, output discarded, and checks its exit status."""
    def call() -> None:
        code = subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        if code != status:
            raise RuntimeError(f"{' '.join(argv)} exited with {code}, not {status}")
    return call


def start_times(commands: dict[str, tuple[list[str], int]], rounds: int, cwd: Path) -> dict[str, float]:
    """Median wall seconds of each command over `rounds` rounds in turns, after one run of each
    (which fills the file cache)."""
    calls = {name: command_call(argv, status, cwd) for name, (argv, status) in commands.items()}
    blocks = interleaved_blocks(calls, torch.device("cpu"), calls=1, rounds=rounds, warmup=0)
    return {name: statistics.median(times) for name, times in blocks.items()}


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def run(args) -> dict:
    """CLI start time: `prune-bench --help`, `list`, `status` (an empty runs folder) and a config
    error (`run model=nope`), each as a ratio to `python -c pass` (medians of --repeats rounds)."""
    script = Path(sys.executable).with_name("prune-bench")
    if not script.is_file():
        print(f"startup: left out (no prune-bench script beside {sys.executable}: pip install -e .)")
        return {}
    commands = {BASELINE: ([sys.executable, "-c", "pass"], 0),
                **{f"prune-bench {name}": ([str(script), *argv], status) for name, (argv, status) in COMMANDS.items()}}
    load_before = load()
    with tempfile.TemporaryDirectory(prefix="prune-bench-startup-") as folder:
        (Path(folder) / "runs").mkdir()
        seconds = start_times(commands, args.repeats, Path(folder))
    base = seconds[BASELINE]
    figures = ", ".join(f"{name} {1e3 * s:.0f} ms = {s / base:.1f}x" for name, s in seconds.items() if name != BASELINE)
    print(f"startup [{os.cpu_count()} CPUs, load {load_before} before, {load()} after; median of {args.repeats} "
          f"rounds in turns]: {BASELINE} {1e3 * base:.0f} ms; {figures}")
    return seconds
