"""The benchmarks' logic (the figures themselves are the benchmarks', never a test's): gpu.py at
tiny sizes, on the CPU everywhere and, where a GPU is present, with a CUDA-graph mode (marker
`cuda`); the timing in turns (timing.py); the CLI's start times (startup.py)."""

import re
import sys

import numpy as np
import pytest
import torch

from benchmarks import gpu, reference_loop
from benchmarks.cli import parse_args
from benchmarks.startup import start_times
from benchmarks.timing import interleaved_blocks

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (run on a GPU machine)")
TINY = ["gpu", "--models", "resnet20", "--train-images", "200", "--test-images", "48", "--batch-size", "16",
        "--epoch-steps", "2", "--pack", "1,2", "--workers", "0"]


@pytest.mark.slow
@pytest.mark.parametrize("device, modes", [
    ("cpu", "auto"),
    pytest.param("cuda", "fp32,bf16_cl,reduce_overhead", marks=[pytest.mark.cuda, CUDA]),
])
def test_gpu_bench_measures_every_mode_reference_and_packing(device, modes, capsys, one_thread):
    args = parse_args([*TINY, "--device", device, "--modes", modes])
    figures = gpu.run(args)
    out = capsys.readouterr().out

    eager = ["fp32", "bf16_cl"]
    compiled = [m for m in args.modes if m not in eager]
    for name in eager:
        assert re.search(rf"^resnet20 {name} \[.*\]: warm-up .* img/s .* epoch [\d.]+ s", out, re.M), out
    for name in compiled:
        line = f"resnet20 {name}: skipped on CPU: " if device == "cpu" else f"resnet20 {name} ["
        assert line in out, out
    assert set(figures["epochs"]) == {f"resnet20 {m}" for m in (eager if device == "cpu" else args.modes)}

    # epoch = train seconds per step x steps per epoch (200 images / 16 -> 13) + the test pass
    for result in figures["epochs"].values():
        assert result["steps_per_epoch"] == 13 and result["finite"]
        expected = result["train_s"] / result["steps"] * 13 + result["test_s"]
        assert result["epoch_s"] == pytest.approx(expected) and result["images_per_s"] > 0
        assert result["images_per_s"] == pytest.approx(2 * 16 / result["train_s"])

    ratios = re.findall(r"project loop \((\w+)\) / reference loop: ([\d.]+)x images/s, ([\d.]+)x epoch time", out)
    assert ratios and ratios[0][0] == "bf16_cl", out
    assert all(float(a) > 0 and float(b) > 0 for _, a, b in ratios)
    reference = figures["reference"]
    assert reference["steps"] == 2 and reference["images_per_s"] > 0 and reference["epoch_s"] > reference["test_s"]

    assert set(figures["packing"]) == {1, 2}
    for k, packed in figures["packing"].items():
        assert len(packed["per_process"]) == k and min(packed["per_process"]) > 0
        assert re.search(rf"^resnet20 packing k={k}: total [\d.]+ img/s", out, re.M), out
    assert "ResNet-56" not in out  # the goal line names only a measured ResNet-56


def test_pil_reference_transform_is_a_zero_padded_crop_maybe_flipped_then_normalised():
    rng = np.random.default_rng(0)
    image = rng.integers(1, 256, size=(32, 32, 3), dtype=np.uint8)  # no zeros: padding is recognisable
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    padded = np.pad(image, ((4, 4), (4, 4), (0, 0)))
    windows = {(top, left, flip): (padded[top:top + 32, left:left + 32, :][:, ::-1] if flip else
                                   padded[top:top + 32, left:left + 32, :])
               for top in range(9) for left in range(9) for flip in (False, True)}
    from PIL import Image

    def back_to_uint8(x):
        x = x * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)
        return np.rint(x.numpy().transpose(1, 2, 0) * 255).astype(np.uint8)

    train = reference_loop.PilTransform(mean, std, augment=True)
    torch.manual_seed(0)
    seen = set()
    for _ in range(60):
        out = train(Image.fromarray(image))
        assert out.shape == (3, 32, 32) and out.dtype == torch.float32
        matches = [key for key, window in windows.items() if np.array_equal(back_to_uint8(out), window)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert {flip for _, _, flip in seen} == {False, True} and len({(top, left) for top, left, _ in seen}) > 10
    test = reference_loop.PilTransform(mean, std, augment=False)(Image.fromarray(image))
    assert np.array_equal(back_to_uint8(test), image)


@pytest.mark.parametrize("option", [["--modes", "fp32,eager"], ["--parts", "epochs,speed"], ["--pack", "0"]])
def test_gpu_bench_options_refuse_bad_values(option, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["gpu", *option])
    assert exit_info.value.code == 2 and option[0] in capsys.readouterr().err


def test_interleaved_blocks_time_the_calls_in_turns_after_a_warm_up():
    calls = []
    fns = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
    blocks = interleaved_blocks(fns, torch.device("cpu"), calls=2, rounds=3, warmup=1)
    assert calls == ["a", "a", "b", "b", "c", "c"] + ["a", "a", "b", "b", "c", "c"] * 3  # warm-up + 1, then turns
    assert {name: len(times) for name, times in blocks.items()} == {"a": 3, "b": 3, "c": 3}
    assert min(min(times) for times in blocks.values()) > 0


def test_a_start_time_lasts_until_the_command_exits_and_a_wrong_exit_status_stops_the_benchmark(tmp_path):
    commands = {"pass": ([sys.executable, "-c", "pass"], 0),
                "sleep": ([sys.executable, "-c", "import time; time.sleep(0.3)"], 0),
                "config error": ([sys.executable, "-c", "raise SystemExit(2)"], 2)}
    seconds = start_times(commands, rounds=2, cwd=tmp_path)
    assert seconds["sleep"] >= 0.3 and 0 < seconds["pass"] and 0 < seconds["config error"]
    with pytest.raises(RuntimeError, match="exited with 0, not 2"):
        start_times({"pass": ([sys.executable, "-c", "pass"], 2)}, rounds=1, cwd=tmp_path)
