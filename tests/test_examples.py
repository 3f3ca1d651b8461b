"""The worked example (examples/, docs/extending.md) as a user runs it: the folder copied outside
the repository, its package on PYTHONPATH, its grid reproduced on tiny synthetic data; the table
puts the example's pruner beside GMP and FGGP, and its run's ONNX export gives PyTorch's logits."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pandas as pd
import pytest
import torch

from prune_bench.engine.checkpoint import load_pruned_model

REPO = Path(__file__).resolve().parents[1]
TINY = ["data.synthetic.train_size=200", "data.synthetic.test_size=100", "trainer.epochs=2", "trainer.batch_size=25",
        "trainer.progress=none"]


def prune_bench(args: list[str], cwd: Path, examples: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(examples), str(REPO)]), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "prune_bench.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
    """examples/ copied to a folder outside the repository; its quick grid reproduced there."""
    root = tmp_path_factory.mktemp("newcomer")
    examples = root / "examples"
    shutil.copytree(REPO / "examples", examples, ignore=shutil.ignore_patterns("__pycache__"))
    work = root / "work"
    work.mkdir()
    result = prune_bench(["--config-dir", str(examples / "conf"), "reproduce", "mymethod", "--budget", "quick",
                          "--seeds", "1", *TINY, f"paths.runs_dir={work / 'runs'}",
                          f"paths.results_dir={work / 'results'}", f"paths.data_root={work / 'data'}"], work, examples)
    assert result.returncode == 0, result.stdout + result.stderr
    return examples, work, result.stdout


@pytest.mark.slow
def test_the_table_lists_the_examples_pruner_beside_gmp_and_fggp(reproduced):
    examples, work, printed = reproduced
    assert "| data | epochs | model | sparsity | method | acc | achieved | n |" in printed
    for sparsity in ("0.8", "0.95"):
        for method in ("RandomPruner", "fggp", "gmp"):
            assert f"| cifar10-synthetic | 2 | TinyNet | {sparsity} | {method} | " in printed
    table = pd.read_csv(work / "results" / "mymethod.csv")
    assert sorted(zip(table["sparsity"], table["method"])) == [
        (0.8, "RandomPruner"), (0.8, "fggp"), (0.8, "gmp"), (0.95, "RandomPruner"), (0.95, "fggp"), (0.95, "gmp")]
    assert (table["model"] == "TinyNet").all() and (table["n"] == 1).all()
    assert table["achieved"].round(1).tolist() == (table["sparsity"] * 100).round(1).tolist()
    assert (work / "results" / "mymethod.png").stat().st_size > 0 and "all 6 runs finished" in printed
    claims = pd.read_csv(work / "results" / "mymethod.claims.csv")  # the user's claim, decided as ours
    assert list(claims["claim"]) == ["gmp_beats_random"] * 2
    assert list(claims["verdict"]) == ["not resolved at n = 1"] * 2
    runs = {path.name.split("-")[0] for path in (work / "runs").iterdir() if not path.name.startswith(".")}
    assert runs == {"TinyNet_sgd_RandomPruner", "TinyNet_sgd_fggp", "TinyNet_sgd_gmp"}


@pytest.mark.slow
def test_the_examples_run_exports_to_onnx_with_pytorchs_logits(reproduced, tmp_path, monkeypatch):
    examples, work, _ = reproduced
    run_dir = sorted((work / "runs").glob("TinyNet_sgd_RandomPruner-*"))[0]
    result = prune_bench(["export", str(run_dir), "--format", "onnx", "--out", str(tmp_path / "onnx")], work, examples)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"exported TinyNet (unpruned, 0.02M params) from {run_dir}")
    monkeypatch.syspath_prepend(str(examples))  # the model's package, for PyTorch's side
    model = load_pruned_model(run_dir)
    assert type(model).__module__ == "mypkg.nets"
    images = np.random.default_rng(0).normal(size=(5, 3, 32, 32)).astype(np.float32)
    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"images": images})
    with torch.no_grad():
        expected = model(torch.from_numpy(images)).numpy()
    assert logits.shape == (5, 10) and np.abs(logits - expected).max() < 1e-4
