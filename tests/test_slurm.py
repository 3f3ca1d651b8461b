"""hydra/launcher=slurm on a real SLURM cluster (scripts/slurm_local.sh start brings up one on
this machine): a 3-job sweep gives 3 records; a job cancelled with scancel and submitted again
resumes from its checkpoint; a pre-empted job (SIGUSR2, as SLURM sends before a time limit or a
pre-emption) is requeued by submitit and resumes.

Skipped with the reason when no cluster answers, except where PRUNE_BENCH_REQUIRE_SLURM=1 (CI),
where that is a failure."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import run_cli

pytestmark = pytest.mark.slurm
REPO = Path(__file__).resolve().parents[1]


def _cluster_problem() -> str | None:
    if not shutil.which("sbatch"):
        return "no sbatch on PATH (scripts/slurm_local.sh start installs and starts a local cluster)"
    try:
        import hydra_plugins.hydra_submitit_launcher  # noqa: F401
    except ImportError:
        return "hydra-submitit-launcher is not installed (pip install -e '.[dev]')"
    probe = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0 or not any(s in probe.stdout for s in ("idle", "mix", "alloc")):
        said = (probe.stderr or probe.stdout).strip().splitlines() or ["nothing"]
        return f"no SLURM cluster answers (sinfo: {said[-1][:200]}); set SLURM_CONF (scripts/slurm_local.sh start)"
    return None


@pytest.fixture(scope="module")
def cluster():
    problem = _cluster_problem()
    if problem:
        if os.environ.get("PRUNE_BENCH_REQUIRE_SLURM") == "1":
            pytest.fail(f"PRUNE_BENCH_REQUIRE_SLURM=1 but {problem}")
        pytest.skip(problem)


def _sweep(tmp_path, *extra):
    return ["run", "-m", "hydra/launcher=slurm", "hydra.launcher.gpus_per_node=null", "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=20", "hydra.launcher.signal_delay_s=30",
            "+exp=smoke", "model=resnet20", "data.synthetic.test_size=50", "trainer.progress=lines",
            f"paths.runs_dir={tmp_path / 'runs'}", f"paths.data_root={tmp_path / 'data'}", *extra]


def _long(tmp_path, seed):
    """One job of 12 epochs on 400 images: caught in its third epoch, it has about ten seconds of
    training left on one quiet thread, twice the cluster's KillWait (scripts/slurm_local.sh: the
    SIGKILL that follows a scancel's SIGTERM, which submitit lets pass) and more when loaded."""
    return _sweep(tmp_path, "data.synthetic.train_size=400", "trainer.batch_size=50", "trainer.epochs=12", f"seed={seed}")


def _finish(args, cwd, timeout=600):
    process = _popen(args, cwd)
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-4000:]
    return output


def _popen(args, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "prune_bench.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _wait_for_checkpoint(runs: Path, timeout: float = 240) -> dict:
    """Wait until some run has a checkpoint after epoch >= 1 and is training further; returns
    its progress.json (which names the SLURM job)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for path in runs.glob("*/progress.json"):
            try:
                progress = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if progress.get("phase") == "training" and progress.get("epoch", 0) >= 2 and progress.get("slurm_job"):
                progress["run_dir"] = str(path.parent)
                return progress
        time.sleep(0.5)
    raise AssertionError(f"no run reached its second epoch under {runs} in {timeout} s")


def _wait_gone(job: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        queue = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout.split()
        if job not in queue:
            return
        time.sleep(0.5)
    raise AssertionError(f"SLURM job {job} still queued after {timeout} s")


def test_three_job_sweep_through_slurm(cluster, tmp_path):
    _finish(_sweep(tmp_path, "data.synthetic.train_size=100", "trainer.batch_size=50", "trainer.epochs=1", "seed=1,2,3"),
            tmp_path)
    records = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/record.json")]
    assert sorted(r["config"]["seed"] for r in records) == [1, 2, 3]
    assert all(r["status"] == "finished" for r in records)
    # each ran as its own SLURM array task
    assert len(list((tmp_path / "runs" / ".multirun" / ".submitit").glob("*_[0-2]"))) == 3


def test_scancel_then_resubmit_resumes_from_the_checkpoint(cluster, tmp_path):
    launcher = _popen(_long(tmp_path, 1), tmp_path)
    try:
        progress = _wait_for_checkpoint(tmp_path / "runs")
        subprocess.run(["scancel", progress["slurm_job"]], check=True)
        _wait_gone(progress["slurm_job"])
    finally:
        # without SLURM accounting (sacct) the launcher cannot see that a cancelled job ended:
        # stop waiting, as a user would
        os.killpg(launcher.pid, signal.SIGTERM)
        launcher.communicate(timeout=60)
    run_dir = Path(progress["run_dir"])
    assert not (run_dir / "record.json").exists()
    status = run_cli(["status", "--runs", str(tmp_path / "runs")], cwd=tmp_path)
    assert "interrupted" in status.stdout and "checkpoint after epoch" in status.stdout, status.stdout
    _finish(_long(tmp_path, 1), tmp_path)
    record = json.loads((run_dir / "record.json").read_text())
    assert record["status"] == "finished" and record["metrics"]["epochs_run"] == 12
    assert record["timing"]["resumed_after_epoch"] >= 1  # resumed, not restarted


def test_preempted_job_is_requeued_and_resumes(cluster, tmp_path):
    """SIGUSR2 is what SLURM sends `signal_delay_s` before a time limit, and what a pre-emption
    looks like to submitit: it calls the launcher's checkpoint hook, requeues the job, and the
    requeued job resumes the run from its last checkpoint. The launcher just waits."""
    launcher = _popen(_long(tmp_path, 2), tmp_path)
    progress = _wait_for_checkpoint(tmp_path / "runs")
    job = progress["slurm_job"]
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    # SLURM holds a requeued job for about two minutes before it may start again; let it start now
    deadline = time.time() + 120
    while time.time() < deadline:
        state = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T %r"], capture_output=True, text=True).stdout
        if state.startswith("PENDING"):
            subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)
            break
        time.sleep(0.5)
    output, _ = launcher.communicate(timeout=600)
    assert launcher.returncode == 0, output[-3000:]
    record = json.loads((Path(progress["run_dir"]) / "record.json").read_text())
    assert record["status"] == "finished" and record["metrics"]["epochs_run"] == 12
    assert record["timing"]["resumed_after_epoch"] >= 1
    logs = "".join(p.read_text() for p in (tmp_path / "runs" / ".multirun" / ".submitit").glob("*/*_log.*"))
    assert "this job is preempted" in logs and "Requeued job" in logs
