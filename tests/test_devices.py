"""The file-locked device pool, on CPU with simulated devices: jobs in separate worker processes
(joblib's loky backend, the engine under hydra/launcher=joblib) never share a device, wait when
none is free, and free their devices when they crash; and the joblib launcher end to end."""

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor

import pytest
from joblib import Parallel, delayed

from conftest import run_cli
from prune_bench.config.resolvers import pool_jobs
from prune_bench.scale.devices import DevicePool, pool_devices, validate_pool

DEVICES = ["gpu0", "gpu1", "gpu2", "gpu3"]


def _job(lock_dir: str, log_dir: str, number: int, seconds: float, crash: str | None,
         devices=DEVICES, runs_per_device: int = 1, n: int = 1):
    """One job: hold devices from the pool for `seconds`, logging when it held which."""
    pool = DevicePool(devices, runs_per_device, lock_dir)
    with pool.acquire(n, log=lambda line: None) as held:
        start = time.time()
        if crash == "exception":
            raise RuntimeError(f"job {number} crashed")
        if crash == "killed":
            os._exit(1)  # the worker dies holding the lock: the kernel frees it
        time.sleep(seconds)
        entry = {"job": number, "devices": held, "start": start, "end": time.time(), "pid": os.getpid()}
    with open(os.path.join(log_dir, f"{number}.json"), "w") as handle:
        json.dump(entry, handle)
    return entry


def _overlaps(a, b) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


def _safe(*args):
    try:
        return _job(*args)
    except RuntimeError as error:
        return str(error)


@pytest.mark.slow
def test_four_devices_eight_uneven_jobs_never_share_and_crashes_free_devices(tmp_path):
    """8 jobs of 0.2 to 1.6 s on 4 simulated GPUs with 6 workers, so some jobs wait for a device;
    job 2 raises while holding one. Then a worker is killed while holding one."""
    lengths = [1.6, 0.2, 0.3, 1.2, 0.2, 0.4, 0.9, 0.3]
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    results = Parallel(n_jobs=6, backend="loky")(
        delayed(_safe)(str(tmp_path / "locks"), str(log_dir), i, lengths[i], "exception" if i == 2 else None)
        for i in range(8))
    assert results[2] == "job 2 crashed"
    entries = [json.loads(p.read_text()) for p in sorted(log_dir.glob("*.json"))]
    assert sorted(e["job"] for e in entries) == [0, 1, 3, 4, 5, 6, 7]  # the others went on
    for i, a in enumerate(entries):
        assert len(a["devices"]) == 1 and a["devices"][0] in DEVICES
        for b in entries[i + 1:]:
            if _overlaps(a, b):
                assert a["devices"] != b["devices"], (a, b)
    concurrent = max(sum(b["start"] <= a["start"] < b["end"] for b in entries) for a in entries)
    assert 2 <= concurrent <= 4  # side by side, but never more jobs than devices (6 workers)
    pool = DevicePool(DEVICES, 1, tmp_path / "locks")
    held = pool.try_acquire(4)  # after the exception, every device is free
    assert held is not None and sorted(DEVICES[i] for i, _ in held) == DEVICES
    for _, lock in held:
        lock.release()
    # a worker that dies holding a device (os._exit: no cleanup runs) frees it too
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    with pytest.raises(TerminatedWorkerError):
        Parallel(n_jobs=2, backend="loky")(
            delayed(_job)(str(tmp_path / "locks"), str(log_dir), 10 + i, 0.1, "killed") for i in range(2))
    held = pool.try_acquire(4)
    assert held is not None and sorted(DEVICES[i] for i, _ in held) == DEVICES


def test_a_job_waits_until_a_device_is_freed_and_takes_that_one(tmp_path):
    pool = DevicePool(DEVICES, 1, tmp_path / "locks")
    held = pool.try_acquire(4)  # this process holds all four
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    with ProcessPoolExecutor(1) as executor:
        job = executor.submit(_job, str(tmp_path / "locks"), str(log_dir), 0, 0.0, None)
        time.sleep(1.5)
        assert not job.done()  # waiting: no device is free
        index, lock = held[2]
        lock.release()
        assert job.result(timeout=30)["devices"] == [DEVICES[index]]


def test_packing_k_runs_per_device_spreads_first(tmp_path):
    """runs_per_gpu=2 on 2 devices: 4 slots; the first two jobs get different devices."""
    pool = DevicePool(["cuda:0", "cuda:1"], 2, tmp_path)
    first, second, third, fourth = (pool.try_acquire(1) for _ in range(4))
    assert [pool.devices[h[0][0]] for h in (first, second, third, fourth)] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert pool.try_acquire(1) is None  # full
    for _, lock in third:
        lock.release()
    assert pool.devices[pool.try_acquire(1)[0][0]] == "cuda:0"
    # two devices for one job: distinct ones; a simulated list may repeat a name
    both = DevicePool(["cpu", "cpu"], 1, tmp_path / "sim").try_acquire(2)
    assert both is not None and [i for i, _ in both] == [0, 1]


def test_pool_keys_and_auto():
    from omegaconf import OmegaConf

    trainer = OmegaConf.create({"device": "auto", "device_pool": "auto", "gpus_per_job": 1, "runs_per_gpu": 1})
    assert pool_devices(trainer, parallel_launcher=True, cuda_count=3) == ["cuda:0", "cuda:1", "cuda:2"]
    assert pool_devices(trainer, parallel_launcher=False, cuda_count=3) == []  # basic launcher: one job at a time
    assert pool_devices(trainer, parallel_launcher=True, cuda_count=0) == []
    assert pool_jobs(["a", "b", "c", "d"], 2, 1) == 8 and pool_jobs(["a", "b", "c", "d"], 1, 2) == 2
    assert pool_jobs("off", 1, 1) == 1
    bad = OmegaConf.create({"device": "auto", "device_pool": ["cpu"], "gpus_per_job": 2, "runs_per_gpu": 0})
    assert validate_pool(bad) == ["trainer.runs_per_gpu: must be a positive integer, got 0",
                                  "trainer.gpus_per_job: 2 but trainer.device_pool has 1 devices"]


@pytest.mark.slow
def test_joblib_launcher_end_to_end_with_a_simulated_pool(tmp_path):
    """`run -m hydra/launcher=joblib` with trainer.device_pool=[cpu,cpu]: 2 workers (the pool's
    size), 3 jobs, each told which pool device it holds; 3 records."""
    common = ["data=synthetic", "data.synthetic.train_size=100", "data.synthetic.test_size=50", "model=resnet20",
              "trainer.epochs=1", "trainer.batch_size=50", "scheduler=constant", "trainer.progress=none",
              f"paths.runs_dir={tmp_path / 'runs'}", f"paths.data_root={tmp_path / 'data'}",
              f"paths.device_locks={tmp_path / 'locks'}", "trainer.device_pool=[cpu,cpu]"]
    result = run_cli(["run", "-m", "hydra/launcher=joblib", *common, "seed=1,2,3"], cwd=tmp_path, timeout=400)
    assert result.returncode == 0, result.stderr
    assert "Joblib.Parallel(n_jobs=2," in result.stdout + result.stderr
    assert (result.stdout + result.stderr).count("device pool: this job holds cpu") == 3
    assert len(list((tmp_path / "runs").glob("*/record.json"))) == 3
