"""A failed run takes back what it created under the runs folder, and only that."""

import pytest

from conftest import make_config
from prune_bench import experiment
from prune_bench.workspace import Created


def listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_only_what_was_created_and_holds_nothing_worth_keeping_is_removed(tmp_path):
    runs = tmp_path / "runs"
    (runs / "earlier").mkdir(parents=True)  # was there before: stays
    created = Created()
    created.lock(runs / ".locks", "a")
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
def test_a_run_that_fails_before_its_first_checkpoint_leaves_nothing(tiny_overrides, tmp_path, monkeypatch, pruner):
    def fail(*args, **kwargs):
        raise Boom()

    monkeypatch.setattr(experiment, "fit", fail)
    with pytest.raises(Boom):
        experiment.run(make_config([*tiny_overrides, f"pruner={pruner}"]), log=lambda *a: None)
    assert not (tmp_path / "runs").exists()
