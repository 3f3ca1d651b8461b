"""Bad input about a custom component, as a user meets it on the command line: one line
`prune-bench: error: <key>: <what is wrong>`, exit status 2, and no run folder left behind."""

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from custom_parts import FlatHead
from prune_bench import cli
from prune_bench.errors import in_words

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
CUSTOM_PARTS = TESTS / "custom_parts.py"


def tiny(tmp_path, *extra) -> list[str]:
    return ["run", "data=synthetic", "data.synthetic.train_size=100", "data.synthetic.test_size=50",
            "trainer.epochs=1", "trainer.batch_size=50", "scheduler=constant", "trainer.progress=none",
            f"paths.runs_dir={tmp_path / 'runs'}", f"paths.data_root={tmp_path / 'data'}", *extra]


def flat_head_error() -> str:
    """The first line of what the installed torch raises for FlatHead's forward on a CIFAR batch:
    the words are torch's and may change between versions (2.13: 'mat1 and mat2 shapes cannot be
    multiplied (2x3072 and 768x10)')."""
    try:
        FlatHead(10)(torch.zeros(2, 3, 32, 32))
    except RuntimeError as error:
        return str(error).strip().splitlines()[0]
    raise AssertionError("FlatHead's forward must fail on a CIFAR batch")


# torch.optim.SGD's parameters as the installed torch declares them (its keyword arguments change
# between versions)
SGD_TAKES = in_words(list(inspect.signature(torch.optim.SGD).parameters), "and")


@pytest.fixture(autouse=True)
def path_kept(monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))


@pytest.mark.parametrize("extra, message", [
    (["model=custom", "model.target=custom_parts:NOT_CALLABLE"],
     "model.target: custom_parts:NOT_CALLABLE is not a class or callable (it is of type int)"),
    (["model=custom", "model.target=custom_parts:Nothing"],
     f"model.target: module 'custom_parts' ({CUSTOM_PARTS}) has no 'Nothing'"),
    (["model=custom", "model.target=custom_parts:FlatHead"],
     "model.target: the forward pass of custom_parts:FlatHead fails on a CIFAR batch of shape [2, 3, 32, 32] "
     f"(RuntimeError: {flat_head_error()})"),
    (["pruner=custom", "pruner.target=custom_parts:NotAPruner"],
     "pruner.target: custom_parts:NotAPruner is not a subclass of prune_bench.pruning.Pruner (it is a class)"),
    (["model=custom", "model.target=custom_parts:SmallNet", "+model.kwargs.widht=4"],
     "model.kwargs.widht: custom_parts:SmallNet does not accept widht; it takes num_classes, width and depth"),
    (["optimizer=custom", "optimizer.target=torch.optim.SGD", "+optimizer.kwargs.momentm=0.9"],
     f"optimizer.kwargs.momentm: torch.optim.SGD does not accept momentm; it takes {SGD_TAKES}"),
    (["model=custom", "model.target=custom_parts:RefusesWide", "+model.kwargs.width=32"],
     "model.target: custom_parts:RefusesWide(num_classes=10, width=32) failed (ValueError: width 32 is too wide)"),
    (["model=custom"],
     "model.target: not set; give the import path of a class or function, e.g. model.target=mypkg.nets:TinyNet"),
    # DPM's stages give the run's optimizer their own weight decay: one that takes none cannot have it
    (["optimizer=custom", "optimizer.target=torch.optim.Rprop", "pruner=dpm", "model.shortcut=B"],
     "pruner.finetune.weight_decay: 0.0005, but optimizer.weight_decay is null (Rprop is given none); "
     "set pruner.finetune.weight_decay=0"),
], ids=["not callable", "no such name", "forward fails", "not a Pruner", "kwargs key", "optimizer kwargs key",
        "constructor fails", "no target", "stage weight decay"])
def test_a_bad_target_is_one_line_and_leaves_nothing(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as caught:
        cli.main(tiny(tmp_path, *extra))
    assert caught.value.code == 2
    assert capsys.readouterr().err == f"prune-bench: error: {message}\n"
    assert not (tmp_path / "runs").exists()


def test_a_target_that_does_not_import_names_the_module_it_tried(tmp_path):
    # a real process, started in a folder that holds no such package, as a user types it
    result = subprocess.run([sys.executable, "-m", "prune_bench.cli", *tiny(tmp_path, "model=custom",
                                                                            "model.target=mypkg.nets:TinyNet")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=240,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2, result.stderr
    assert result.stderr == ("prune-bench: error: model.target: cannot import module 'mypkg.nets' (no module named "
                             "'mypkg'); is its folder the working directory or on PYTHONPATH?\n")
    assert not (tmp_path / "runs").exists()


def test_a_module_that_fails_on_import_says_why(tmp_path, monkeypatch, capsys):
    (tmp_path / "broken_nets.py").write_text("import no_such_dependency\n")
    monkeypatch.chdir(tmp_path)  # the working directory is searched
    with pytest.raises(SystemExit):
        cli.main(tiny(tmp_path, "model=custom", "model.target=broken_nets:Net"))
    assert capsys.readouterr().err == ("prune-bench: error: model.target: cannot import module 'broken_nets' "
                                       "(no module named 'no_such_dependency')\n")
