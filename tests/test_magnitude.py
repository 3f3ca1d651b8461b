import json

import pytest
import torch
import torch.nn as nn
import torch.nn.utils.prune as torch_prune

from conftest import make_config, run_cli
from prune_bench.engine import run as experiment
from prune_bench.pruning import magnitude_masks
from prune_bench.pruning.magnitude import level_key, n_to_prune, smallest_k_mask


def test_hand_computed_global_and_layer_masks():
    tensors = {"a": torch.tensor([0.5, -0.1, 0.3, 2.0]), "b": torch.tensor([[-0.2, 0.05], [1.0, -0.4]])}
    # |w| sorted: 0.05(b01) 0.1(a1) 0.2(b00) 0.3(a2) 0.4(b11) 0.5(a0) 1.0(b10) 2.0(a3); prune 4 of 8.
    kept = magnitude_masks(tensors, 0.5)
    assert kept["a"].tolist() == [True, False, False, True]
    assert kept["b"].tolist() == [[False, False], [True, True]]
    per_layer = magnitude_masks(tensors, 0.5, scope="layer")
    assert per_layer["a"].tolist() == [True, False, False, True]
    assert per_layer["b"].tolist() == [[False, False], [True, True]]
    # 3 of 8 globally (ceil(0.375 * 8) = 3): 0.05, 0.1, 0.2.
    kept = magnitude_masks(tensors, 0.375)
    assert kept["a"].tolist() == [True, False, True, True] and kept["b"].tolist() == [[False, False], [True, True]]


def test_k_is_the_ceiling_of_p_times_n_without_float_noise():
    assert n_to_prune(1000, 0.3) == 300  # 0.3 * 1000 = 300.00000000000006 in floats
    assert n_to_prune(7, 0.5) == 4 and n_to_prune(10, 0.0) == 0


def test_ties_exact_k_versus_threshold():
    scores = torch.tensor([1.0, 1.0, 1.0, 2.0, 0.5])
    exact = smallest_k_mask(scores, 2)  # 0.5 then the first tied 1.0
    assert exact.tolist() == [False, True, True, True, False]
    literal = smallest_k_mask(scores, 2, ties="threshold")  # psi = sorted[2] = 1.0: only 0.5 < psi
    assert literal.tolist() == [True, True, True, True, False]


@pytest.mark.parametrize("sparsity", [0.1, 0.5, 0.9])
def test_global_masks_equal_torch_global_unstructured(sparsity):
    torch.manual_seed(0)
    layers = nn.ModuleList([nn.Conv2d(4, 4, 3), nn.Conv2d(4, 8, 3), nn.Linear(71, 8)])  # 144 + 288 + 568 = 1000
    weights = {f"{i}.weight": layer.weight for i, layer in enumerate(layers)}
    ours = magnitude_masks(weights, sparsity)
    torch_prune.global_unstructured([(layer, "weight") for layer in layers],
                                    pruning_method=torch_prune.L1Unstructured, amount=sparsity)
    for i, layer in enumerate(layers):
        assert torch.equal(ours[f"{i}.weight"], layer.weight_mask.bool())
    pruned = sum(int((~m).sum()) for m in ours.values())
    assert pruned / 1000 == sparsity  # achieved == target exactly


def test_the_papers_ceiling_where_torch_rounds():
    # 10% of 904 weights: psi's index ceil(90.4) = 91 weights go; torch's amount rounds to 90.
    weights = {"w": torch.randn(904, generator=torch.Generator().manual_seed(0))}
    assert int((~magnitude_masks(weights, 0.1)["w"]).sum()) == 91


def test_level_keys():
    assert [level_key(s) for s in (0.0, 0.1, 0.5, 0.125)] == ["p0", "p10", "p50", "p12.5"]


def test_one_shot_run_records_every_level_and_prunes_the_model(tiny_overrides):
    cfg = make_config([*tiny_overrides, "pruner=magnitude", "pruner.sparsity=0.5",
                       "pruner.sparsity_levels=[0.0,0.3,0.9]"])
    record = experiment.run(cfg, log=lambda line: None)
    levels = record["metrics"]["levels"]
    assert list(levels) == ["p0", "p30", "p50", "p90"]
    assert levels["p0"]["test_acc"] == record["metrics"]["test_acc_trained"]
    n = record["pruner"]["n_prunable"]
    for key, level in levels.items():  # exactly ceil(P * n) pruned: within one weight of P
        assert 0 <= (level["achieved"] - level["sparsity"]) * n < 1, key
    assert record["metrics"]["test_acc"] == levels["p50"]["test_acc"]  # the run's model is pruned at 50%
    assert record["sparsity"]["target"] == 0.5 and 0 <= (record["sparsity"]["prunable"] - 0.5) * n < 1
    assert record["trained_in"] and record["params_nonzero"] < record["params"]


def test_finetuning_holds_the_mask(tiny_overrides):
    cfg = make_config([*tiny_overrides, "pruner=magnitude", "pruner.sparsity=0.7",
                       "pruner.sparsity_levels=[]", "pruner.finetune_epochs=1"])
    record = experiment.run(cfg, log=lambda line: None)
    assert record["stages"]["prune"]["epochs"] == 1 and len(record["history"]) == 1  # the fine-tuning epoch
    n = record["pruner"]["n_prunable"]
    assert 0 <= (record["sparsity"]["prunable"] - 0.7) * n < 1  # still exactly pruned
    weights = torch.load(f"{record['run_dir']}/model.pt", weights_only=True)["model"]
    assert weights["fc.weight"].count_nonzero() < weights["fc.weight"].numel()


@pytest.mark.slow
def test_a_sweep_over_levels_trains_once(tmp_path):
    args = ["run", "-m", "+exp=resnet56_sga", "model=resnet20", "data=synthetic", "data.synthetic.train_size=100",
            "data.synthetic.test_size=50", "trainer.epochs=1", "trainer.batch_size=50", "trainer.progress=none",
            "pruner.sparsity_levels=[]", "pruner.sparsity=0.3,0.5,0.7", f"paths.runs_dir={tmp_path / 'runs'}"]
    result = run_cli(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert sum(line.startswith("pretrain stage in") for line in lines) == 1
    assert sum(line.startswith("reusing the pretrain stage") for line in lines) == 2
    records = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("resnet20_sga_magnitude-*/record.json")]
    assert sorted(r["config"]["pruner"]["sparsity"] for r in records) == [0.3, 0.5, 0.7]
    assert len({r["trained_in"] for r in records}) == 1
    assert len({r["metrics"]["test_acc_trained"] for r in records}) == 1
    for r in records:
        assert 0 <= (r["sparsity"]["prunable"] - r["sparsity"]["target"]) * r["pruner"]["n_prunable"] < 1


@pytest.mark.slow
def test_concurrent_jobs_of_one_sweep_train_once(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    def launch(sparsity):
        args = ["run", "+exp=resnet56_adam", "model=resnet20", "data=synthetic", "data.synthetic.train_size=200",
                "data.synthetic.test_size=50", "trainer.epochs=1", "trainer.batch_size=50",
                "trainer.progress=none", "pruner.sparsity_levels=[]", f"pruner.sparsity={sparsity}",
                f"paths.runs_dir={tmp_path / 'runs'}"]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
        return subprocess.Popen([sys.executable, "-m", "prune_bench.cli", *args], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    jobs = [launch(0.4), launch(0.6)]
    outputs = [job.communicate(timeout=300) for job in jobs]
    assert all(job.returncode == 0 for job in jobs), [err for _, err in outputs]
    stdout = "".join(out for out, _ in outputs)
    lines = stdout.splitlines()
    assert sum(line.startswith("pretrain stage in") for line in lines) == 1
    assert sum(line.startswith("reusing the pretrain stage") for line in lines) == 1
