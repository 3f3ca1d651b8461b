"""The CLI's failures as a user meets them: one line `prune-bench: error: <key>: ...`, exit
status 2, no traceback, and nothing left behind that the failed command created. (Texts that
the CLI prints as they are raised are checked in-process where a subprocess adds nothing.)"""

import errno
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_cli import YOURS, tiny
from test_data import data_cfg

from conftest import make_config, run_cli
from prune_bench import cli
from prune_bench import export as export_module
from prune_bench.config.catalog import check_group_overrides
from prune_bench.config.compose import compose_config
from prune_bench.config.shipped import shipped_names
from prune_bench.config.validate import validate
from prune_bench.data import load_arrays
from prune_bench.data.sources import DATA_ROOT_VARIABLE, NO_DOWNLOAD_OPTIONS
from prune_bench.engine.run import run
from prune_bench.errors import ConfigError, DataError, PruneBenchError
from prune_bench.report import tables

REPO = Path(__file__).resolve().parents[1]


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    """The error lines of a failed command (asserting exit 2, no traceback, nothing else on stderr)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert lines and all(line.startswith("prune-bench: error: ") for line in lines), result.stderr
    return [line.removeprefix("prune-bench: error: ") for line in lines]


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one error line of a failed command."""
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr
    return lines[0]


def everything_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


# ----------------------------------------------------------------------------- typed config (8)


@pytest.mark.slow
@pytest.mark.parametrize("extra, messages", [
    (["data.augment=no", "optimizer.nesterov=maybe", "+trainer.epoch=3"],  # found by the schema
     ["data.augment: must be true or false, got 'no'", "optimizer.nesterov: must be true or false, got 'maybe'",
      "trainer.epoch: unknown key; did you mean trainer.epochs?"]),
    (["foo=bar", "optimizer.lrr=0.1", "optimzer=adam"],  # found by Hydra, named by us
     ["foo: unknown key; the top level has data, latency, logger, model, name, optimizer, paths, pruner, scheduler, seed, trainer",
      "optimizer.lrr: unknown key; did you mean optimizer.lr?", "optimzer: unknown key; did you mean optimizer?"]),
], ids=["types and added keys", "mistyped keys"])
def test_config_mistakes_are_one_line_each_and_nothing_runs(tmp_path, extra, messages):
    assert error_lines(run_cli(tiny(tmp_path, *extra), cwd=tmp_path)) == messages
    assert everything_under(tmp_path / "runs") == []


# ----------------------------------------------------------------------------- no data


def test_no_data_names_the_data_options_and_variables_that_exist(tmp_path):
    root = tmp_path / "data"
    with pytest.raises(DataError) as caught:
        load_arrays(make_config(["data.download=false", f"paths.data_root={root}"]).data)
    assert str(caught.value) == (
        f"data: {root / 'cifar-10-python.tar.gz'} not found and data.download=false; use data=cifar10_jpeg "
        f"(the JPEG copy, at $PRUNE_BENCH_CIFAR10_JPEG) or data=synthetic, or put cifar-10-python.tar.gz in {root} "
        "(paths.data_root, $PRUNE_BENCH_DATA), or set data.path to a copy (the tarball, its extracted "
        "cifar-10-batches-py folder or an image-folder tree)")
    with pytest.raises(DataError, match=r"not found and data.download=false; use data=synthetic, or put cifar-100"):
        load_arrays(make_config(["data=cifar100", "data.download=false", f"paths.data_root={root}"]).data)
    assert not root.exists()
    # what the hints name exists: the options in conf/data, the variables where those read them
    named = {option.split()[0].removeprefix("data=") for options in NO_DOWNLOAD_OPTIONS.values() for option in options}
    assert named <= set(shipped_names("data"))
    assert "${oc.env:PRUNE_BENCH_CIFAR10_JPEG," in (REPO / "conf" / "data" / "cifar10_jpeg.yaml").read_text()
    assert f"${{oc.env:{DATA_ROOT_VARIABLE}," in (REPO / "conf" / "paths" / "default.yaml").read_text()
    assert make_config(["data=synthetic"]).data.source == "synthetic"


# ----------------------------------------------------------------------------- mistyped names


@pytest.mark.parametrize("override, message", [
    ("+exp=resnet56_sgaa", "exp=resnet56_sgaa: unknown option; did you mean resnet56_sga, resnet56_adam or resnet152_sga?"),
    ("model=resnet57", "model=resnet57: unknown option; did you mean resnet56, resnet50 or resnet152?"),
    ("+exp=xyz", f"exp=xyz: unknown option; run prune-bench list exp to see all {len(shipped_names('exp'))}" + YOURS),
    ("model=wrn", f"model=wrn: unknown option; run prune-bench list model to see all {len(shipped_names('model'))}" + YOURS),
], ids=["experiment", "model", "experiment far off", "model far off"])
def test_a_mistyped_option_gets_at_most_three_suggestions_or_how_to_list_them(override, message):
    with pytest.raises(ConfigError) as caught:
        check_group_overrides([override])
    assert str(caught.value) == message


def test_the_listing_a_far_off_option_points_to_holds_every_option(capsys):
    assert cli.main(["list", "model"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in shipped_names("model")) and "experiments" not in listed
    assert cli.main(["list"]) == 0
    listed = capsys.readouterr().out
    for group in ("data", "model", "optimizer", "scheduler", "pruner", "logger"):
        assert f"  {group:<12} {', '.join(shipped_names(group))}\n" in listed


@pytest.mark.parametrize("override, message", [
    ("trainer.batchsize=64", "trainer.batchsize: unknown key; did you mean trainer.batch_size or trainer.eval_batch_size?"),
    ("+trainer.eval_size=64",
     "trainer.eval_size: unknown key; did you mean trainer.eval_batch_size, trainer.eval_every or trainer.batch_size?"),
], ids=["found by Hydra", "found by the schema"])
def test_a_mistyped_key_gets_up_to_three_suggestions(override, message):
    with pytest.raises(ConfigError) as caught:
        validate(compose_config([override]))
    assert str(caught.value) == message


@pytest.mark.parametrize("argv, message", [
    (["tabel"], "unknown command 'tabel'; did you mean table?"),
    (["exprot"], "unknown command 'exprot'; did you mean export or plot?"),
    (["frobnicate"], "unknown command 'frobnicate'; use run, reproduce, status, table, plot, list or export "
                     "(prune-bench --help says more)"),
    (["list", "modle"], "list: unknown group 'modle'; did you mean model?"),
])
def test_a_mistyped_command_gets_a_suggestion(capsys, argv, message):
    with pytest.raises(SystemExit) as caught:
        cli.main(argv)
    assert caught.value.code == 2
    assert capsys.readouterr().err == f"prune-bench: error: {message}\n"


# ----------------------------------------------------------------------------- nothing left behind (10)


def test_a_bad_model_option_leaves_no_run_folder(tmp_path):
    line = error_line(run_cli(tiny(tmp_path, "model.shortcut=C"), cwd=tmp_path))
    assert line == "model.shortcut: 'C' is not allowed; use A or B"
    assert everything_under(tmp_path / "runs") == []


@pytest.mark.slow
def test_a_pruner_that_fails_to_start_leaves_nothing_behind(tmp_path):
    # t_start = the whole run (2 steps) comes after t_end = step 1: found when the pruner starts,
    # i.e. after the run folder was made. What was there before stays (see also test_workspace.py).
    (tmp_path / "runs" / "earlier").mkdir(parents=True)
    result = run_cli(tiny(tmp_path, "pruner=gmp", "pruner.t_start=1.0", "pruner.t_end=1"), cwd=tmp_path)
    assert error_line(result).startswith("pruner.t_start: step 2 comes after pruner.t_end (step 1)")
    assert everything_under(tmp_path / "runs") == ["earlier"]


# ----------------------------------------------------------------------------- unwritable folders (11)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A folder holding one finished tiny run (runs/) and the arguments that made it."""
    folder = tmp_path_factory.mktemp("finished")
    args = tiny(folder)
    result = run_cli(args, cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder, args


@pytest.mark.slow
def test_a_runs_folder_that_cannot_be_made_is_one_line(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    line = error_line(run_cli(tiny(tmp_path, f"paths.runs_dir={tmp_path / 'file' / 'runs'}"), cwd=tmp_path))
    assert line.startswith(f"paths.runs_dir: cannot write in {tmp_path / 'file' / 'runs'}")


@pytest.mark.slow
def test_a_results_folder_that_cannot_be_made_is_one_line(tmp_path, finished):
    folder, _ = finished
    (tmp_path / "file").write_text("not a folder")
    result = run_cli(["table", "baselines", "--runs", str(folder / "runs"),
                      "--results-dir", str(tmp_path / "file" / "results")], cwd=tmp_path)
    assert error_line(result).startswith(f"--results-dir: cannot write {tmp_path / 'file' / 'results'}")


# Root ignores permission bits. As root, the command runs with the capabilities that bypass
# them dropped from its bounding set (util-linux setpriv), so a 0555 folder is read-only for it
# as for any user; as another user, it runs as it is.
NO_ROOT_POWERS = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--"]


def without_root_powers(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`prune-bench ARGS`, subject to permission bits even when run by root."""
    prefix = NO_ROOT_POWERS if os.geteuid() == 0 else []
    return subprocess.run([*prefix, sys.executable, "-m", "prune_bench.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=240, env={**os.environ, "PYTHONPATH": str(REPO)})


def _read_only_is_enforced(tmp_path: Path) -> bool:
    probe = tmp_path / "probe"
    probe.mkdir()
    probe.chmod(0o555)
    prefix = NO_ROOT_POWERS if os.geteuid() == 0 else []
    try:
        result = subprocess.run([*prefix, "touch", str(probe / "x")], capture_output=True)
    except FileNotFoundError:  # no setpriv
        return False
    finally:
        probe.chmod(0o755)
    return result.returncode != 0


@pytest.fixture
def read_only(tmp_path):
    """Makes a folder and everything in it read-only (like a read-only mount) for the test."""
    if not _read_only_is_enforced(tmp_path):
        pytest.skip("root without setpriv (or without CAP_SETPCAP): permission bits cannot be enforced")
    changed = []

    def make(folder: Path):
        for path in [folder, *folder.rglob("*")]:
            path.chmod(0o555 if path.is_dir() else 0o444)
            changed.append(path)

    yield make
    for path in changed:
        path.chmod(0o755 if path.is_dir() else 0o644)


@pytest.mark.slow
def test_a_finished_run_in_a_read_only_runs_folder_is_reported(finished, read_only):
    folder, args = finished
    read_only(folder / "runs")
    result = without_root_powers(args, cwd=folder)
    assert result.returncode == 0, result.stderr
    assert "already done: finished" in result.stdout


@pytest.mark.slow
def test_a_new_run_in_a_read_only_runs_folder_is_one_line(finished, read_only):
    folder, args = finished
    read_only(folder / "runs")
    line = error_line(without_root_powers([*args, "seed=7"], cwd=folder))
    assert line.startswith(f"paths.runs_dir: cannot write in {folder / 'runs'}")
    assert "Permission denied" in line


@pytest.mark.slow
def test_a_sweep_in_a_read_only_runs_folder_is_one_line(finished, read_only):
    # Hydra writes the sweep's multirun.yaml under the runs folder before any job runs
    folder, args = finished
    read_only(folder / "runs")
    line = error_line(without_root_powers(["run", "-m", *args[1:], "seed=1,2"], cwd=folder))
    assert line == (f"paths.runs_dir: cannot write in {folder / 'runs' / '.multirun'} (Permission denied); "
                    "set paths.runs_dir to a writable folder")


@pytest.mark.slow
def test_a_read_only_results_folder_is_one_line(tmp_path, finished, read_only):
    folder, _ = finished
    (tmp_path / "results").mkdir()
    read_only(tmp_path / "results")
    result = without_root_powers(["table", "baselines", "--runs", str(folder / "runs"),
                                  "--results-dir", str(tmp_path / "results")], cwd=tmp_path)
    line = error_line(result)
    assert line.startswith(f"--results-dir: cannot write {tmp_path / 'results'}") and "Permission denied" in line


# A read-only mount (EROFS, which even root meets) and a full disk (ENOSPC), for real: the command
# runs in a mount namespace of its own (util-linux unshare; for a user other than root, in a user
# namespace where it is root), where a folder is bound read-only or a 1 MiB tmpfs is mounted. The
# mounts vanish with the namespace; what a tmpfs held is listed before it does.
NAMESPACE = ["unshare", "--mount"] + (["--map-root-user"] if os.geteuid() != 0 else [])
LEFT = "--- left on the disk:"


def in_namespace(setup: str, args: list[str], cwd: Path, list_after: Path | None = None) -> subprocess.CompletedProcess:
    """`prune-bench ARGS` after the shell commands `setup` (mounts), in a new mount namespace;
    with `list_after`, what is under it afterwards follows LEFT on stdout."""
    listing = f"echo {LEFT}; cd {shlex.quote(str(list_after))} && find . -mindepth 1 | sort;" if list_after else ""
    script = f'{setup} || exit 99; "$@"; status=$?; {listing} exit $status'
    return subprocess.run([*NAMESPACE, "sh", "-c", script, "sh", sys.executable, "-m", "prune_bench.cli", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def bind_read_only(folder: Path) -> str:
    quoted = shlex.quote(str(folder))
    return f"mount --bind {quoted} {quoted} && mount -o remount,bind,ro {quoted}"


def small_disk(folder: Path, then: str = "") -> str:
    return f"mount -t tmpfs -o size=1m tmpfs {shlex.quote(str(folder))}" + (f" && {then}" if then else "")


@pytest.fixture
def mounts(tmp_path):
    """Skips the test where no mount namespace can be made here."""
    (tmp_path / "probe").mkdir()
    try:
        probe = subprocess.run([*NAMESPACE, "sh", "-c", small_disk(tmp_path / "probe")], capture_output=True)
    except FileNotFoundError:
        pytest.skip("no unshare (util-linux)")
    if probe.returncode != 0:
        pytest.skip(f"no mount namespace here: {probe.stderr.decode().strip()[:200]}")
    (tmp_path / "probe").rmdir()


def left_on_disk(result: subprocess.CompletedProcess) -> list[str]:
    return [line.removeprefix("./") for line in result.stdout.split(LEFT, 1)[1].split()]


@pytest.mark.slow
def test_a_new_run_in_a_read_only_mounted_runs_folder_with_locks_is_one_line(finished, mounts):
    folder, args = finished
    runs = folder / "runs"
    assert (runs / ".locks").is_dir()
    before = everything_under(runs)
    line = error_line(in_namespace(bind_read_only(runs), [*args, "seed=7"], cwd=folder))
    assert line.startswith(f"paths.runs_dir: cannot write in {runs} (Read-only file system: {runs / '.locks'}/")
    assert line.endswith(".lock); set paths.runs_dir to a writable folder")
    assert everything_under(runs) == before


@pytest.mark.slow
@pytest.mark.parametrize("runs_exists", [False, True], ids=["runs folder to make", "empty runs folder"])
def test_a_new_run_on_a_read_only_mount_without_locks_is_one_line(tmp_path, mounts, runs_exists):
    (tmp_path / "mount" / "runs" if runs_exists else tmp_path / "mount").mkdir(parents=True)
    runs = tmp_path / "mount" / "runs"
    missing = runs / ".locks" if runs_exists else runs
    line = error_line(in_namespace(bind_read_only(tmp_path / "mount"), tiny(tmp_path, f"paths.runs_dir={runs}"),
                                   cwd=tmp_path))
    assert line == (f"paths.runs_dir: cannot write in {runs} (Read-only file system: {missing}); "
                    "set paths.runs_dir to a writable folder")
    assert everything_under(tmp_path / "mount") == (["runs"] if runs_exists else [])


FULL = "free some space there or set paths.runs_dir to a folder with room"


@pytest.mark.slow
def test_a_disk_that_fills_during_a_run_is_one_line_and_leaves_nothing(tmp_path, mounts):
    # 1 MiB: the run's config and progress fit, its first checkpoint (2 MB) does not
    disk = tmp_path / "disk"
    disk.mkdir()
    result = in_namespace(small_disk(disk), tiny(tmp_path, f"paths.runs_dir={disk / 'runs'}", "trainer.epochs=2"),
                          cwd=tmp_path, list_after=disk)
    line = error_line(result)
    assert line.startswith(f"paths.runs_dir: cannot write in {disk / 'runs'} (No space left on device: {disk / 'runs'}/")
    assert line.endswith(f"/checkpoint.pt); {FULL}")
    assert left_on_disk(result) == []


@pytest.mark.slow
def test_a_full_disk_with_a_runs_folder_is_one_line_and_keeps_what_was_there(tmp_path, mounts):
    disk = tmp_path / "disk"
    disk.mkdir()
    fill = "mkdir -p runs/.locks && touch runs/.locks/other.lock && (dd if=/dev/zero of=filler bs=4k 2>/dev/null; true)"
    result = in_namespace(small_disk(disk, f"cd {shlex.quote(str(disk))} && {fill}"),
                          tiny(tmp_path, f"paths.runs_dir={disk / 'runs'}"), cwd=tmp_path, list_after=disk)
    line = error_line(result)
    assert line.startswith(f"paths.runs_dir: cannot write in {disk / 'runs'} (No space left on device: ")
    assert line.endswith(f"/config.yaml); {FULL}")
    assert left_on_disk(result) == ["filler", "runs", "runs/.locks", "runs/.locks/other.lock"]


def test_a_full_disk_at_the_first_checkpoint_is_one_line_in_process(tmp_path, monkeypatch):
    """The same, where no mount can be made: fsync of the checkpoint fails as on a full disk."""
    real_fsync = os.fsync

    def full_at_checkpoints(fd):
        if ".checkpoint.pt." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_at_checkpoints)
    runs = tmp_path / "runs"
    with pytest.raises(PruneBenchError) as caught:
        run(make_config([*tiny(tmp_path)[1:], "trainer.epochs=2"]), log=lambda line: None)
    assert str(caught.value).startswith(f"paths.runs_dir: cannot write in {runs} (No space left on device: {runs}/")
    assert str(caught.value).endswith(f"/checkpoint.pt); {FULL}")
    assert everything_under(tmp_path) == []


# ----------------------------------------------------------------------------- Ctrl-C


def interrupted_when(pattern: str, args: list[str], cwd: Path, count: int = 1) -> subprocess.CompletedProcess:
    """`prune-bench ARGS`, sent SIGINT (Ctrl-C) as soon as `count` paths matching the glob
    `pattern` (under `cwd`) exist."""
    process = subprocess.Popen([sys.executable, "-m", "prune_bench.cli", *args], cwd=cwd, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.time() + 180
    while len(list(cwd.glob(pattern))) < count and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, f"ended before {pattern} appeared: {process.communicate()}"
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def interruption_line(result: subprocess.CompletedProcess) -> str:
    """The one line of an interrupted command (exit status 130, no traceback)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 130, result.stdout + result.stderr
    assert len(lines) == 1 and lines[0].startswith("prune-bench: error: "), result.stderr
    return lines[0].removeprefix("prune-bench: error: ")


def slow(tmp_path, *extra):
    """A run whose epochs take a second or two (400 images), so Ctrl-C lands inside one."""
    return tiny(tmp_path, "data.synthetic.train_size=400", *extra)


@pytest.mark.slow
def test_ctrl_c_before_the_first_checkpoint_says_nothing_was_saved_and_leaves_nothing(tmp_path):
    result = interrupted_when("runs/*/progress.json", slow(tmp_path, "trainer.epochs=3"), tmp_path)
    assert interruption_line(result) == ("interrupted before the first checkpoint; nothing was saved; "
                                         "run the same command to start again")
    assert everything_under(tmp_path / "runs") == []


@pytest.mark.slow
def test_ctrl_c_after_a_checkpoint_names_its_epoch_and_the_same_command_resumes_from_it(tmp_path):
    args = slow(tmp_path, "trainer.epochs=3")
    result = interrupted_when("runs/*/checkpoint.pt", args, tmp_path)
    assert interruption_line(result) == "interrupted after epoch 1 of 3; run the same command to resume from it"
    again = run_cli(args, cwd=tmp_path)
    assert again.returncode == 0 and "after epoch 1 of 3" in again.stdout, again.stderr


@pytest.mark.slow
def test_ctrl_c_in_a_run_of_several_stages_names_the_stage(tmp_path):
    args = slow(tmp_path, "pruner=magnitude", "pruner.sparsity=0.5", "trainer.epochs=2", "pruner.finetune_epochs=2")
    result = interrupted_when("runs/.trained/*/checkpoint.pt", args, tmp_path)
    assert interruption_line(result) == ("interrupted after epoch 1 of 2 of stage pretrain; "
                                         "run the same command to resume from it")
    result = interrupted_when("runs/.trained/*/trained.pt", args, tmp_path)  # resumes, then Ctrl-C in prune
    assert "resuming the pretrain stage" in result.stdout
    assert interruption_line(result) == ("interrupted in stage prune before its first checkpoint; stage pretrain is "
                                         "saved; run the same command to start stage prune from it")
    (shared,) = (tmp_path / "runs" / ".trained").iterdir()
    assert everything_under(tmp_path / "runs") == [  # the run's own folder is gone, its locks too
        ".trained", f".trained/{shared.name}", f".trained/{shared.name}/trained.pt"]


@pytest.mark.slow
def test_ctrl_c_during_reproduce_counts_the_finished_runs_and_names_the_interrupted_one(tmp_path):
    args = ["reproduce", "smoke", "--seeds", "1", "data.synthetic.train_size=200", "data.synthetic.test_size=50",
            "trainer.batch_size=50", "trainer.progress=none", f"paths.runs_dir={tmp_path / 'runs'}",
            f"paths.results_dir={tmp_path / 'results'}", f"paths.data_root={tmp_path / 'data'}"]
    result = interrupted_when("runs/resnet32_*/checkpoint.pt", args, tmp_path)  # the second of its 2 runs
    assert interruption_line(result) == (
        "interrupted in run [model=resnet32] after epoch 1 of 2; 1 of 2 runs finished; "
        "run the same command to go on: finished runs are skipped, this one resumes")
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_ctrl_c_in_a_sweep_counts_the_finished_runs_and_names_the_interrupted_one(tmp_path):
    run, *overrides = slow(tmp_path, "trainer.epochs=2")
    result = interrupted_when("runs/*/progress.json", [run, "-m", *overrides, "seed=1,2"], tmp_path, count=2)
    assert interruption_line(result) == (
        "interrupted in run [seed=2] before it saved anything; 1 of 2 runs finished; "
        "run the same command to go on: finished runs are skipped, this one starts again")
    assert [path.parent.name for path in (tmp_path / "runs").glob("*/config.yaml")] == [
        path.parent.name for path in (tmp_path / "runs").glob("*/record.json")]  # the second run's folder is gone


def keyboard_interrupt(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("command, where", [
    (["table", "baselines"], (tables, "table_of_samples")),
    (["plot", "baselines"], (tables, "draw")),
    (["export", "{run}", "--format", "torchscript"], (export_module, "verify")),
], ids=["table", "plot", "export"])
def test_ctrl_c_in_table_plot_or_export_says_nothing_was_written(tmp_path, finished, monkeypatch, capsys,
                                                                 command, where):
    folder, _ = finished
    runs = folder / "runs"
    monkeypatch.setattr(*where, keyboard_interrupt)
    if command[0] == "export":
        (run_dir,) = runs.glob("*/record.json")
        argv = [command[0], str(run_dir.parent), "--out", str(tmp_path / "results"), *command[2:]]
    else:
        argv = [*command, "--runs", str(runs), "--results-dir", str(tmp_path / "results")]
    with pytest.raises(SystemExit) as caught:
        cli.main(argv)
    assert caught.value.code == 130
    assert capsys.readouterr().err == "prune-bench: error: interrupted; nothing was written\n"
    assert not (tmp_path / "results").exists()


# ----------------------------------------------------------------------------- error texts (12)


def test_a_file_that_is_no_archive_is_named_whole(tmp_path):
    with pytest.raises(DataError) as caught:
        load_arrays(data_cfg(tmp_path, path="/etc/passwd"))
    assert str(caught.value) == ("data.path: /etc/passwd is not a readable tarball or folder "
                                 "(not a tar file, plain or compressed with gzip, bzip2 or xz)")


@pytest.mark.slow
def test_plot_of_an_unknown_table_says_plot(tmp_path):
    (tmp_path / "runs").mkdir()
    line = error_line(run_cli(["plot", "nonexistent", "--runs", str(tmp_path / "runs")], cwd=tmp_path))
    assert line.startswith("plot: unknown table 'nonexistent'; allowed: ")


def test_sampling_rate_range_says_what_is_allowed():
    for rate in (0, 1.5, -0.1):
        with pytest.raises(ConfigError, match=rf"^optimizer.sampling_rate: must be in \(0, 1\], got {rate}$"):
            validate(make_config(["optimizer=sga", f"optimizer.sampling_rate={rate}"]))


def jpeg_data_path_error(monkeypatch, folder: Path) -> str:
    """The error of data=cifar10_jpeg's default path, started from `folder`."""
    monkeypatch.chdir(folder)
    with pytest.raises(DataError) as caught:
        load_arrays(make_config(["data=cifar10_jpeg", f"paths.data_root={folder}"]).data)
    return str(caught.value)


def test_an_empty_data_variable_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNE_BENCH_CIFAR10_JPEG", "")
    assert jpeg_data_path_error(monkeypatch, tmp_path) == (
        "data.path: empty (from $PRUNE_BENCH_CIFAR10_JPEG, which is set but empty); "
        "set it to the data's path, or unset it for the default")


def test_a_missing_data_path_says_where_it_came_from_and_what_it_was_resolved_against(tmp_path, monkeypatch):
    monkeypatch.delenv("PRUNE_BENCH_CIFAR10_JPEG", raising=False)
    assert jpeg_data_path_error(monkeypatch, tmp_path) == (
        f"data.path: {tmp_path}/cifar10-jpeg.tar.gz does not exist (the default of $PRUNE_BENCH_CIFAR10_JPEG); "
        "set $PRUNE_BENCH_CIFAR10_JPEG or data.path to where the data is")
    monkeypatch.setenv("PRUNE_BENCH_CIFAR10_JPEG", "data/cifar.tar.gz")
    assert jpeg_data_path_error(monkeypatch, tmp_path) == (
        f"data.path: data/cifar.tar.gz does not exist (relative to the current folder {tmp_path}; "
        "from $PRUNE_BENCH_CIFAR10_JPEG); set $PRUNE_BENCH_CIFAR10_JPEG or data.path to where the data is")
    monkeypatch.setenv("PRUNE_BENCH_CIFAR10_JPEG", "/nowhere/cifar.tar.gz")
    assert jpeg_data_path_error(monkeypatch, tmp_path) == (
        "data.path: /nowhere/cifar.tar.gz does not exist (from $PRUNE_BENCH_CIFAR10_JPEG); "
        "set $PRUNE_BENCH_CIFAR10_JPEG or data.path to where the data is")
