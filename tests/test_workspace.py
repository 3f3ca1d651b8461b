"""A failed run takes back what it created under the runs folder, and only that."""

import json

import pytest

from conftest import make_config
from prune_bench.engine import run as experiment
from prune_bench.engine import stages
from prune_bench.engine.workspace import Created
from prune_bench.errors import ConfigError
from prune_bench.scale.status import inspect_run


def listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_only_what_was_created_and_holds_nothing_worth_keeping_is_removed(tmp_path):
    runs = tmp_path / "runs"
    (runs / "earlier").mkdir(parents=True)  # was there before: stays
    created = Created()
    created.lock(runs / ".locks" / "a.lock")
    (runs / ".locks" / "a.lock").touch()
    (created.folder(runs / "a") / "config.yaml").write_text("x")  # nothing to resume: goes
    (created.folder(runs / "b") / "checkpoint.pt").write_text("x")  # resumable: stays
    (created.folder(runs / ".trained" / "c") / "trained.pt").write_text("x")  # a trained model: stays
    created.folder(runs / "earlier")  # existed: not this process's
    created.remove_unfinished()
    assert listing(runs) == [".trained", ".trained/c", ".trained/c/trained.pt", "b", "b/checkpoint.pt", "earlier"]


def test_a_container_made_by_this_process_goes_only_when_empty(tmp_path):
    created = Created()
    created.container(tmp_path / "runs" / ".locks")
    (tmp_path / "runs" / "someone-elses").mkdir()  # a concurrent run's folder appeared meanwhile
    created.remove_unfinished()
    assert listing(tmp_path) == ["runs", "runs/someone-elses"]


class Boom(Exception):
    pass


@pytest.mark.parametrize("pruner", ["none", "magnitude"])  # magnitude: the shared .trained folder too
def test_bad_input_found_before_the_first_checkpoint_leaves_nothing(tiny_overrides, tmp_path, monkeypatch, pruner):
    def fail(*args, **kwargs):
        raise ConfigError("pruner.x: found late")

    monkeypatch.setattr(stages, "train_epoch", fail)
    with pytest.raises(ConfigError):
        experiment.run(make_config([*tiny_overrides, f"pruner={pruner}"]), log=lambda *a: None)
    assert not (tmp_path / "runs").exists()


def test_a_crash_before_the_first_checkpoint_keeps_its_folder_and_says_why(tiny_overrides, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise Boom("out of memory")

    monkeypatch.setattr(stages, "train_epoch", fail)
    with pytest.raises(Boom):
        experiment.run(make_config(tiny_overrides), log=lambda *a: None)
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if not p.name.startswith(".")]
    assert json.loads((run_dir / "failed.json").read_text())["reason"] == "Boom: out of memory"
    assert inspect_run(run_dir).state == "failed"
