"""prune_bench.latency: the logic of the measurement (thread count, modes, formats restored; the
fields and their consistency; stability said as reached; turns), never a timing threshold: the
models here sleep for known times, so only their order is asserted."""

import random
import time
import warnings

import pytest
import torch
import torch.nn as nn

from benchmarks import latency as latency_benchmark
from benchmarks.cli import parse_args
from prune_bench.engine.checkpoint import load_pruned_model, model_pair_from_run
from prune_bench.latency import (
    Latency,
    UnstableLatencyWarning,
    compare_latency,
    forward_latency,
    interleaved_latency,
    median_confidence_interval,
)
from prune_bench.pruning.dpm.shapes import layer_shapes

SHAPE = (3, 8, 8)
QUICK = {"warmup": 1, "min_repeats": 6, "max_seconds": 0.3, "turn_seconds": 0.005}


class Sleeper(nn.Module):
    """A 3x3 convolution that also sleeps `seconds` (uniform in [0, 2 x seconds] when jittery)
    and logs, per pass, its name, torch's thread count, its mode and the input's memory format."""

    def __init__(self, name: str, seconds: float, log: list | None = None, jitter: bool = False, fail: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.name, self.seconds, self.jitter, self.fail = name, seconds, jitter, fail
        self.log = log if log is not None else []
        self.random = random.Random(0)

    def forward(self, x):
        self.log.append({"name": self.name, "threads": torch.get_num_threads(), "training": self.training,
                         "channels_last": x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous(),
                         "weights_channels_last": not self.conv.weight.is_contiguous(),
                         "grad": torch.is_grad_enabled()})
        if self.fail:
            raise RuntimeError("forward failed")
        time.sleep(self.random.uniform(0, 2 * self.seconds) if self.jitter else self.seconds)
        return self.conv(x)


def quietly(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnstableLatencyWarning)
        return fn(*args, **kwargs)


def test_median_interval_is_the_binomial_order_statistics():
    # the textbook ranks at 95%: n=6 -> (1, 6), n=10 -> (2, 9), n=20 -> (6, 15), n=100 -> (40, 61)
    for n, ranks in {6: (1, 6), 10: (2, 9), 20: (6, 15), 100: (40, 61)}.items():
        values = [float(v) for v in range(1, n + 1)]
        random.Random(n).shuffle(values)
        assert median_confidence_interval(values) == ranks
    assert median_confidence_interval([1.0, 2.0, 3.0, 4.0, 5.0]) is None  # too few for 95%
    assert median_confidence_interval([float(v) for v in range(1, 11)], confidence=0.5) == (4, 7)


def test_threads_are_set_for_the_measurement_and_restored(one_thread):
    torch.set_num_threads(2)
    log = []
    result = quietly(forward_latency, Sleeper("m", 0.0005, log), SHAPE, 3, "cpu", threads=1, **QUICK)
    assert {entry["threads"] for entry in log} == {1} and result.threads == 1
    assert torch.get_num_threads() == 2
    # None: measured at the current count, which is reported
    assert quietly(forward_latency, Sleeper("m", 0.0005), SHAPE, 3, "cpu", **QUICK).threads == 2
    # restored when the forward pass fails too
    with pytest.raises(RuntimeError, match="forward failed"):
        forward_latency(Sleeper("m", 0.0, fail=True), SHAPE, 3, "cpu", threads=1, **QUICK)
    assert torch.get_num_threads() == 2


def test_eval_mode_inference_and_memory_format_for_the_measurement_then_restored(one_thread):
    log = []
    model = Sleeper("m", 0.0005, log).train()
    quietly(forward_latency, model, SHAPE, 2, "cpu", channels_last=True, **QUICK)
    assert log and not any(entry["training"] or entry["grad"] for entry in log)  # eval, inference mode
    assert all(entry["channels_last"] and entry["weights_channels_last"] for entry in log)
    assert model.training and model.conv.weight.is_contiguous()  # train mode and layout given back
    evaluated = Sleeper("m", 0.0, fail=True).eval()
    with pytest.raises(RuntimeError):
        forward_latency(evaluated, SHAPE, 2, "cpu", **QUICK)
    assert not evaluated.training


def test_fields_are_present_and_consistent(one_thread):
    result = quietly(forward_latency, Sleeper("m", 0.001), SHAPE, 5, "cpu", threads=1, **QUICK)
    assert isinstance(result, Latency)
    values = result.as_dict()
    assert "samples_ms" not in values and len(result.as_dict(samples=True)["samples_ms"]) == result.repeats
    for key in ("median_ms", "ci_low_ms", "ci_high_ms", "ci_half_width_pct", "min_ms", "p10_ms", "p90_ms", "max_ms",
                "repeats", "warmup", "batch_size", "device", "threads", "precision", "channels_last", "timer",
                "stable", "stop", "tolerance_pct", "seconds", "images_per_s"):
        assert key in values, key
    assert result.min_ms <= result.p10_ms <= result.median_ms <= result.p90_ms <= result.max_ms
    assert result.ci_low_ms <= result.median_ms <= result.ci_high_ms
    assert result.ci_half_width_pct == pytest.approx(100 * (result.ci_high_ms - result.ci_low_ms) / 2 / result.median_ms)
    assert result.stable == (result.ci_half_width_pct <= result.tolerance_pct) == (result.stop == "stable")
    assert result.repeats == len(result.samples_ms) >= 6 and result.warmup == 1
    assert (result.batch_size, result.device, result.precision, result.timer) == (5, "cpu", "fp32", "perf_counter")
    assert result.tolerance_pct == pytest.approx(2.0) and result.seconds > 0
    assert result.images_per_s == pytest.approx(1e3 * 5 / result.median_ms)
    assert quietly(forward_latency, Sleeper("m", 0.0), SHAPE, 1, "cpu", bf16=True, **QUICK).precision == "bf16-autocast"


def test_a_slower_model_measures_slower_at_every_batch_size(one_thread):
    comparisons = quietly(compare_latency, Sleeper("dense", 0.004), Sleeper("slimmed", 0.001), SHAPE, "cpu",
                          batch_sizes=(1, 4), **QUICK)
    assert list(comparisons) == [1, 4]
    for batch_size, c in comparisons.items():
        assert c.dense.batch_size == c.slimmed.batch_size == batch_size
        assert c.dense.median_ms > c.slimmed.median_ms and c.speedup > 1
        assert c.speedup == pytest.approx(c.dense.median_ms / c.slimmed.median_ms)
        assert c.speedup_low <= c.speedup <= c.speedup_high
        assert c.stable == (c.dense.stable and c.slimmed.stable)
        assert set(c.as_dict()) == {"batch_size", "dense", "slimmed", "speedup", "speedup_low", "speedup_high",
                                    "stable"}


def test_the_models_are_timed_in_turns_the_first_alternating(one_thread):
    log = []
    models = {"a": Sleeper("a", 0.001, log), "b": Sleeper("b", 0.001, log)}
    # turns far shorter than a pass: one pass a turn, so the order of the passes is the order of the turns
    results = quietly(interleaved_latency, models, SHAPE, 1, "cpu", warmup=1, min_repeats=6, max_repeats=6,
                      max_seconds=10, turn_seconds=1e-9)
    names = [entry["name"] for entry in log]
    assert names[:2] == ["a", "b"]  # one warm-up pass each
    assert names[2:] == ["a", "b", "b", "a"] * 3
    assert results["a"].repeats == results["b"].repeats == 6


def test_an_unstable_measurement_says_so_and_warns(one_thread):
    with pytest.warns(UnstableLatencyWarning, match="not stable"):
        result = forward_latency(Sleeper("noisy", 0.002, jitter=True), SHAPE, 1, "cpu", warmup=1, min_repeats=6,
                                 max_seconds=0.05, turn_seconds=0.002)
    assert not result.stable and result.stop == "time cap" and result.ci_half_width_pct > result.tolerance_pct
    with pytest.warns(UnstableLatencyWarning):
        capped = forward_latency(Sleeper("noisy", 0.002, jitter=True), SHAPE, 1, "cpu", warmup=1, min_repeats=6,
                                 max_repeats=6, max_seconds=60)
    assert not capped.stable and capped.stop == "repeat cap" and capped.repeats == 6


def test_bad_options_and_a_model_on_another_device_are_refused():
    with pytest.raises(ValueError, match="min_repeats"):
        forward_latency(Sleeper("m", 0.0), SHAPE, 1, "cpu", min_repeats=1)
    with pytest.raises(ValueError, match="threads"):
        forward_latency(Sleeper("m", 0.0), SHAPE, 1, "cpu", threads=0)
    with pytest.raises(ValueError, match="not meta"):
        forward_latency(Sleeper("m", 0.0), SHAPE, 1, "meta")


def test_a_run_gives_its_slimmed_model_and_the_dense_model_of_its_spec(slimmed_run):
    pair = model_pair_from_run(slimmed_run)
    slimmed = load_pruned_model(slimmed_run)
    assert layer_shapes(pair.slimmed) == layer_shapes(slimmed)
    assert all(torch.equal(a, b) for a, b in zip(pair.slimmed.state_dict().values(), slimmed.state_dict().values()))
    dense_shapes = layer_shapes(pair.dense)
    assert dense_shapes["conv1"] == [3, 16] and dense_shapes["fc"] == [64, 10]  # unpruned ResNet-20
    assert sum(p.numel() for p in pair.dense.parameters()) > sum(p.numel() for p in pair.slimmed.parameters())
    assert not pair.dense.training and not pair.slimmed.training
    assert (pair.bf16, pair.channels_last, pair.image_shape) == (False, True, (3, 32, 32))  # as the CPU run trained


def test_latency_benchmark_prints_dense_slimmed_and_ratio_per_batch(slimmed_run, capsys, one_thread):
    args = parse_args(["latency", "--run", str(slimmed_run), "--device", "cpu", "--latency-batches", "1,2",
                       "--threads", "1", "--latency-seconds", "0.2"])
    figures = quietly(latency_benchmark.run, args)
    out = capsys.readouterr().out
    for batch_size in (1, 2):
        c = figures[slimmed_run.name][batch_size]
        line = next(line for line in out.splitlines() if f"batch {batch_size}, cpu, 1 threads, fp32]" in line)
        assert f"dense {c.dense.median_ms:.3f} ms" in line and f"slimmed {c.slimmed.median_ms:.3f} ms" in line
        assert f"dense / slimmed = {c.speedup:.3f}x" in line
    assert list(figures) == [slimmed_run.name]  # --run alone times that run only
    assert latency_benchmark.run(parse_args(["latency", "--slim", "", "--device", "cpu"])) == {}
    assert "latency: left out (needs --run DIR" in capsys.readouterr().out
