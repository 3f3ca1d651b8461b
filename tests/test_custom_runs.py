"""Runs of a model that lives outside prune-bench (tests/custom_parts.py): every built-in pruner and
optimizer works on it where it can, a custom pruner, optimizer and scheduler run beside them, and
the record names the targets, counts params and MACs, and the model loads back."""

import hashlib
import sys
from pathlib import Path

import pytest
import torch

from conftest import make_config
from custom_parts import SmallNet
from prune_bench.engine import run as experiment
from prune_bench.engine.checkpoint import load_pruned_model
from prune_bench.metrics import count_params_macs

TINY = ["data=synthetic", "data.synthetic.train_size=100", "data.synthetic.test_size=50", "scheduler=constant",
        "trainer.epochs=2", "trainer.batch_size=25", "trainer.eval_batch_size=50", "trainer.progress=none",
        "model=custom", "model.target=custom_parts:SmallNet", "+model.kwargs.width=6"]
GRADUAL = ["pruner.sparsity=0.8", "pruner.events=2"]
DPM = ["pruner=dpm", "pruner.speedup=1.5", "pruner.sparse.epochs=1", "pruner.finetune.epochs=2",
       "pruner.prune_epochs=1", "pruner.prune_steps=2", "pruner.sp_steps=2", "pruner.sr_cooldown=2",
       "latency.batch_sizes=[1]", "latency.min_repeats=3", "latency.max_seconds=0.2"]


def run(tmp_path, *overrides):
    cfg = make_config([*TINY, f"paths.runs_dir={tmp_path / 'runs'}", f"paths.data_root={tmp_path / 'data'}",
                       *overrides])
    return experiment.run(cfg, log=lambda line: None)


def dense_counts() -> tuple[int, int]:
    return count_params_macs(SmallNet(10, width=6))


def check_named(record: dict, pruner_label: str) -> None:
    """The record names the model's target, kwargs and source file, and what each part is called."""
    source = Path(sys.modules["custom_parts"].__file__).resolve()
    assert record["targets"]["model"] == {"target": "custom_parts:SmallNet", "kwargs": {"width": 6},
                                          "file": str(source), "sha256": hashlib.sha256(source.read_bytes()).hexdigest()}
    assert record["labels"]["model"] == "SmallNet" and record["labels"]["pruner"] == pruner_label
    assert Path(record["run_dir"]).name.startswith(f"SmallNet_{record['labels']['optimizer']}_{pruner_label}-")


ALL_LAYERS = ["features.0.weight", "features.3.weight", "head.weight"]


@pytest.mark.parametrize("overrides, target, layers", [
    (["pruner=gmp", *GRADUAL], 0.8, ALL_LAYERS[1:]),  # skip_first_conv: true
    (["pruner=fggp", *GRADUAL], 0.8, ALL_LAYERS[1:]),
    (["pruner=magnitude", "pruner.sparsity=0.7", "pruner.sparsity_levels=[0.5]"], 0.7, ALL_LAYERS),
], ids=["gmp", "fggp", "one-shot magnitude"])
def test_a_built_in_mask_pruner_reaches_its_target_on_an_external_model(tmp_path, one_thread, overrides, target,
                                                                         layers):
    record = run(tmp_path, *overrides)
    assert record["status"] == "finished"
    check_named(record, overrides[0].split("=")[1])
    assert sorted(record["sparsity"]["per_layer"]) == layers
    params, macs = dense_counts()
    assert (record["params"], record["macs"]) == (params, macs) and record["macs_sparse"] < macs
    model = load_pruned_model(record["run_dir"])  # the saved weights: the target's zeros are there
    weights = dict(model.named_parameters())
    zeros = sum(int((weights[name] == 0).sum()) for name in layers) / sum(weights[name].numel() for name in layers)
    assert isinstance(model, SmallNet) and zeros == pytest.approx(record["sparsity"]["prunable"])
    assert zeros == pytest.approx(target, abs=len(layers) / sum(weights[name].numel() for name in layers))


@pytest.mark.parametrize("overrides", [
    ["optimizer=grda", "optimizer.lr=0.05", "optimizer.c=0.05"],
    ["optimizer=sga", "optimizer.lr=0.01", "optimizer.sampling_rate=0.5"],
], ids=["grda", "sga"])
def test_grda_and_sga_train_any_parameters(tmp_path, one_thread, overrides):
    record = run(tmp_path, *overrides)
    assert record["status"] == "finished" and record["labels"]["optimizer"] == overrides[0].split("=")[1]
    assert record["params"] == dense_counts()[0]
    if overrides[0] == "optimizer=grda":  # its soft threshold zeroes weights of every kind of parameter
        assert record["history"][-1]["zeros_all"] > 0


def test_dpm_slims_an_external_model_and_it_loads_back_in_its_slimmed_shapes(tmp_path, one_thread):
    record = run(tmp_path, *DPM)
    assert record["status"] == "finished"
    check_named(record, "dpm")
    assert record["pruner"]["speedup_achieved"] >= 1.5
    model = load_pruned_model(record["run_dir"])
    assert isinstance(model, SmallNet) and model.head.in_features < 6
    assert sum(p.numel() for p in model.parameters()) == record["params"] < dense_counts()[0]
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_a_custom_pruner_optimizer_and_scheduler_run_together(tmp_path, one_thread):
    record = run(tmp_path, "pruner=custom", "pruner.target=custom_parts:HalfOfEachLayer", "+pruner.sparsity=0.5",
                 "+pruner.layers=[conv]", "optimizer=custom", "optimizer.target=torch.optim.RMSprop",
                 "optimizer.lr=0.001", "+optimizer.kwargs.alpha=0.9", "scheduler=custom",
                 "scheduler.target=custom_parts:warmup_constant", "+scheduler.kwargs.warmup_epochs=2")
    assert record["status"] == "finished"
    assert record["labels"] == {"model": "SmallNet", "optimizer": "RMSprop", "scheduler": "warmup_constant",
                                "pruner": "HalfOfEachLayer"}
    assert record["targets"]["optimizer"]["kwargs"] == {"alpha": 0.9}
    assert "kwargs" not in record["targets"]["pruner"]  # its keys are in the config's pruner section
    assert record["config"]["pruner"] == {"name": "custom", "target": "custom_parts:HalfOfEachLayer",
                                          "sparsity": 0.5, "layers": ["conv"]}
    # both convs half pruned, the linear layer (not among its layers) dense
    assert record["sparsity"]["per_layer"] == {"features.0.weight": 0.5, "features.3.weight": 0.5}
    # warmup over both epochs of 4 steps: the lr of each epoch's first step, 1/8 and 5/8 of lr
    assert [entry["lr"] for entry in record["history"]] == pytest.approx([0.001 / 8, 0.001 * 5 / 8])
