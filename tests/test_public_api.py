"""What docs/extending.md calls public is there: each documented name imports from its documented
path, each documented hook is a Pruner method, and a run's record holds each documented field
(and no undocumented one)."""

import importlib
import re
import sys
from pathlib import Path

import pytest

from conftest import make_config
from prune_bench.engine import run as experiment

DOC = (Path(__file__).resolve().parents[1] / "docs" / "extending.md").read_text()
PUBLIC = DOC.split("## What is public", 1)[1]
IMPORTS = re.findall(r"`from (prune_bench[\w.]*) import (\w+)`", PUBLIC)
HOOKS_TEXT = PUBLIC.split("The `Pruner` hooks", 1)[1].split("\n\n", 1)[0]
FIELDS_TEXT = PUBLIC.split("The record's fields", 1)[1].split("\n\n", 1)[0]
ISSUE_NAMES = {"Pruner", "TrainContext", "build_model", "slim", "load_pruned_model"}  # what must be public


def test_the_documented_list_holds_at_least_what_extending_needs():
    assert ISSUE_NAMES <= {name for _, name in IMPORTS}


@pytest.mark.parametrize("module, name", IMPORTS, ids=[f"{m}.{n}" for m, n in IMPORTS])
def test_each_public_name_imports_from_its_documented_path(module, name):
    assert getattr(importlib.import_module(module), name) is not None


def test_each_documented_hook_and_attribute_is_the_pruners():
    from prune_bench.pruning import Pruner

    hooks = re.findall(r"`(\w+)\(", HOOKS_TEXT)
    attributes = re.findall(r"`(\w+)`", HOOKS_TEXT.split("class attributes", 1)[1])
    assert len(hooks) == 12 and attributes == ["name", "stage_kind", "changes_shapes"]
    for name in hooks:
        assert callable(getattr(Pruner, name)), name
    for name in attributes:
        assert hasattr(Pruner, name), name


def test_a_records_fields_are_the_documented_ones(tmp_path, one_thread, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    cfg = make_config(["data=synthetic", "data.synthetic.train_size=50", "data.synthetic.test_size=50",
                       "trainer.epochs=1", "trainer.batch_size=50", "trainer.progress=none", "scheduler=constant",
                       "model=custom", "model.target=custom_parts:SmallNet", "pruner=gmp", "pruner.events=1",
                       f"paths.runs_dir={tmp_path / 'runs'}", f"paths.data_root={tmp_path / 'data'}"])
    record = experiment.run(cfg, log=lambda line: None)
    assert sorted(record) == sorted(re.findall(r"`(\w+)`", FIELDS_TEXT))
