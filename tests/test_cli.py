"""The CLI as a new user meets it: one-line errors, no half-written runs, run/list/table."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from conftest import run_cli
from prune_bench.config.shipped import shipped_names
from prune_bench.engine.checkpoint import atomic_torch_save


def tiny(tmp_path, *extra):
    return ["run", "data=synthetic", "data.synthetic.train_size=100", "data.synthetic.test_size=50",
            "trainer.epochs=1", "trainer.batch_size=50", "scheduler=constant", "trainer.progress=none",
            f"paths.runs_dir={tmp_path / 'runs'}", f"paths.data_root={tmp_path / 'data'}", *extra]


@pytest.fixture(scope="module")
def bad_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    (folder / "junk.tar.gz").write_bytes(b"\x1f\x8b\x08 this is not a tarball")
    return folder


YOURS = " (one of your own: prune-bench --config-dir DIR ...)"  # said while no user folder is given
BAD_INPUTS = [
    (["model=resnet57"], "model=resnet57: unknown option; did you mean resnet56, resnet50 or resnet152?"),
    (["model.name=resnet57"], "model.name: 'resnet57' is not allowed; use one of resnet20"),
    (["optimizer=adamx"], "optimizer=adamx: unknown option; did you mean adam?"),
    (["data.name=cifar1000"], "data.name: 'cifar1000' is not allowed; use cifar10 or cifar100"),
    (["+exp=nope"], f"exp=nope: unknown option; run prune-bench list exp to see all {len(shipped_names('exp'))}" + YOURS),
    (["optimizer.lr=-0.1"], "optimizer.lr: must be a number > 0, got -0.1"),
    (["optimizer.lr=0"], "optimizer.lr: must be a number > 0, got 0"),
    (["trainer.epochs=0"], "trainer.epochs: must be a positive integer, got 0"),
    (["pruner=magnitude", "pruner.sparsity=1.0"], "pruner.sparsity: sparsity must be in [0, 1), got 1.0"),
    (["pruner=magnitude", "pruner.sparsity=-0.1"], "pruner.sparsity: sparsity must be in [0, 1), got -0.1"),
    (["data.source=auto", "data.path=/nonexistent/cifar.tar.gz"], "data.path: /nonexistent/cifar.tar.gz does not exist"),
    (["data.source=auto", "data.path={bad}/junk.tar.gz"], "is not a readable tarball"),
    (["data.source=official", "data.download=false"], "not found and data.download=false; use data=cifar10_jpeg"),
    (["trainer.device=cuda:0"], "trainer.device: 'cuda:0' requested but no CUDA device is available"),
]


@pytest.mark.slow
@pytest.mark.parametrize("extra, message", BAD_INPUTS, ids=[" ".join(e) for e, _ in BAD_INPUTS])
def test_bad_input_is_one_line_and_leaves_no_run(tmp_path, bad_data, extra, message):
    extra = [e.replace("{bad}", str(bad_data)) for e in extra]
    result = run_cli(tiny(tmp_path, *extra), cwd=tmp_path)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("prune-bench: error: "), result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    assert not list((tmp_path / "runs").glob("*/record.json")) and not list((tmp_path / "runs").glob("*/checkpoint.pt"))


@pytest.mark.slow
def test_checksum_mismatch_of_a_local_copy(tmp_path):
    import tarfile

    from PIL import Image

    for split in ("train", "test"):
        for label in range(10):
            (tmp_path / "imgs" / split / f"c{label}").mkdir(parents=True)
            Image.new("RGB", (32, 32)).save(tmp_path / "imgs" / split / f"c{label}" / "0.png")
    with tarfile.open(tmp_path / "imgs.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "imgs", arcname="imgs")
    result = run_cli(tiny(tmp_path, "data.source=folder", f"data.path={tmp_path / 'imgs.tar.gz'}",
                          "data.sha256=" + "0" * 64), cwd=tmp_path)
    assert result.returncode == 2 and "data.sha256: checksum mismatch" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_run_then_rerun_then_table(tmp_path):
    first = run_cli(tiny(tmp_path), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "finished resnet20 / sgd / none on cifar10-synthetic seed 1: test" in first.stdout
    again = run_cli(tiny(tmp_path), cwd=tmp_path)
    assert again.returncode == 0 and "already done: finished" in again.stdout and "epoch 1/1" not in again.stdout
    record = json.loads(next((tmp_path / "runs").glob("*/record.json")).read_text())
    assert record["status"] == "finished" and record["params"] == 269_722
    assert set(record["versions"]) >= {"torch", "python", "prune_bench"}
    table = run_cli(["table", "baselines", "--runs", str(tmp_path / "runs"),
                     "--results-dir", str(tmp_path / "results")], cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "| cifar10-synthetic | 1 | resnet20 |" in table.stdout
    assert (tmp_path / "results" / "baselines.csv").is_file()


def test_list_shows_experiments_and_tables(tmp_path):
    result = run_cli(["list"], cwd=tmp_path)
    assert result.returncode == 0
    assert "smoke" in result.stdout and "baselines" in result.stdout


@pytest.mark.slow
def test_unknown_command_and_table(tmp_path):
    result = run_cli(["frobnicate"], cwd=tmp_path)
    assert result.returncode == 2 and "unknown command 'frobnicate'" in result.stderr
    (tmp_path / "runs").mkdir()
    result = run_cli(["table", "nope", "--runs", str(tmp_path / "runs")], cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "unknown table 'nope'" in result.stderr


def test_the_wheel_ships_the_config_tree_and_published_numbers(tmp_path):
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    # built from a copy: a build in the checkout writes build/ and *.egg-info there
    repo = Path(__file__).resolve().parents[1]
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=repo,
                            capture_output=True, text=True)
    source = tmp_path / "source"
    if listed.returncode == 0:
        for name in listed.stdout.splitlines():
            if (repo / name).is_file():
                (source / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(repo / name, source / name)
    else:  # not a git checkout
        shutil.copytree(repo, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".*"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(source)], check=True, capture_output=True, timeout=300)
    wheel = next(tmp_path.glob("prune_bench-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"prune_bench/conf/config.yaml", "prune_bench/conf/exp/smoke.yaml",
            "prune_bench/conf/table/baselines.yaml", "prune_bench/published/baselines.csv"} <= names


@pytest.mark.slow
def test_a_sweep_is_validated_before_any_job_trains(tmp_path):
    # the bad value is in the last job: nothing may train, every bad job is named on its own line
    result = run_cli(tiny(tmp_path, "-m", "seed=1,2", "optimizer.lr=0.1,0"), cwd=tmp_path)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 2, result.stderr
    for seed, line in zip((1, 2), lines):
        assert line.startswith("prune-bench: error: [") and f"seed={seed} optimizer.lr=0]" in line
        assert line.endswith("] optimizer.lr: must be a number > 0, got 0")
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").glob("*/*"))


@pytest.mark.slow
def test_a_sweep_checks_every_pruning_schedule_against_its_data_before_any_job_trains(tmp_path):
    # the first job is fine; the second's interval outlasts its run, which only its data size shows
    result = run_cli(tiny(tmp_path, "-m", "pruner=gmp", "pruner.events=2,null"), cwd=tmp_path)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and "pruner.events=null" in lines[0]
    assert "pruner.interval: 2000 steps is not shorter than the pruning span" in lines[0]
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_a_runs_folder_under_home_given_with_a_tilde_holds_the_sweep(tmp_path, monkeypatch):
    home, elsewhere = tmp_path / "home", tmp_path / "cwd"
    home.mkdir(), elsewhere.mkdir()
    monkeypatch.setenv("HOME", str(home))
    run, *overrides = [arg for arg in tiny(tmp_path) if not arg.startswith("paths.runs_dir=")]
    result = run_cli([run, "-m", *overrides, 'paths.runs_dir="~/runs"'], cwd=elsewhere)  # Hydra's grammar wants ~ quoted
    assert result.returncode == 0, result.stderr
    assert len(list((home / "runs").glob("*/record.json"))) == 1
    assert (home / "runs" / ".multirun" / "multirun.yaml").is_file()  # Hydra's sweep log, beside the runs
    assert not list(elsewhere.iterdir())  # no folder named ~ where the command was started


# ----------------------------------------------------------------------------- what each command imports

LOADED = """
import sys
from prune_bench.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
sys.stdout.flush()
print("loaded:", *sorted(name for name in ("torch", "pandas", "matplotlib") if name in sys.modules), file=sys.stderr)
sys.exit(code)
"""


def loaded_by(args: list[str], cwd) -> tuple[subprocess.CompletedProcess, set[str]]:
    """`prune-bench ARGS` in a new process, and which of torch, pandas and matplotlib it imported."""
    result = subprocess.run([sys.executable, "-c", LOADED, *args], cwd=cwd, capture_output=True, text=True,
                            timeout=240, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    *_, last = result.stderr.splitlines()
    assert last.startswith("loaded:"), result.stderr
    return result, set(last.split()[1:])


def test_help_list_and_status_answer_without_importing_torch_pandas_or_matplotlib(tmp_path):
    runs = tmp_path / "runs"
    finished, interrupted = runs / "resnet20_sgd_none-aaaaaaaaaaaa", runs / "resnet20_sgd_none-bbbbbbbbbbbb"
    finished.mkdir(parents=True)
    (finished / "record.json").write_text(json.dumps(
        {"status": "finished", "config": {"seed": 1}, "metrics": {"test_acc": 91.5, "epochs_run": 3}}))
    interrupted.mkdir()
    (interrupted / "config.yaml").write_text("trainer:\n  epochs: 3\n")
    atomic_torch_save({"model": torch.nn.Linear(2, 2).state_dict(), "rng": {"torch": torch.get_rng_state()},
                       "state": {"epoch": 2, "step": 8, "history": [{"epoch": 1}]}}, interrupted / "checkpoint.pt")

    for args in (["--help"], ["list"], ["list", "model"]):
        result, loaded = loaded_by(args, tmp_path)
        assert result.returncode == 0 and result.stdout and loaded == set(), (args, result.stderr)
    result, loaded = loaded_by(["status", "--runs", str(runs)], tmp_path)
    assert result.returncode == 0 and loaded == set(), result.stderr
    assert [line.split() for line in result.stdout.splitlines()] == [
        ["finished", finished.name, "test", "91.50%,", "seed", "1"],
        ["interrupted", interrupted.name, "checkpoint", "after", "epoch", "2/3"],  # read from checkpoint.pt
        ["2", "runs:", "1", "finished,", "0", "running,", "1", "interrupted,", "0", "failed,", "0", "diverged,",
         "0", "pending"]]
    result, loaded = loaded_by(["status", "--runs", str(tmp_path / "none")], tmp_path)
    assert result.returncode == 2 and loaded == set() and "--runs: " in result.stderr
    result, loaded = loaded_by(["list", "modle"], tmp_path)
    assert result.returncode == 2 and loaded == set() and "did you mean model?" in result.stderr


def test_a_mistyped_choice_is_reported_before_torch_is_imported(tmp_path):
    for args in (["run", "model=nope"], ["reproduce", "sga2024", "--budget", "quick", "optimizer=adamm"]):
        result, loaded = loaded_by(args, tmp_path)
        assert result.returncode == 2 and loaded == set(), (args, result.stderr)
        assert result.stderr.startswith(f"prune-bench: error: {args[-1]}: unknown option"), result.stderr
    # a key's mistake needs the registries the config is checked against (models build to be checked)
    result, loaded = loaded_by(["run", "optimizer.lrr=0.1"], tmp_path)
    assert result.returncode == 2 and "optimizer.lrr" in result.stderr and loaded == {"torch"}, result.stderr
