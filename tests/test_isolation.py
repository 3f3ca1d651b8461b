"""Tests write only under temporary folders: nothing in HOME, nothing in the source tree
(conftest.py gives the session a HOME of its own and points every known tool's folder beside it)."""

import os
import pwd
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from test_cli import tiny

from conftest import CACHE_VARIABLES, isolated_environment

REPO = Path(__file__).resolve().parents[1]


def everything_under(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def source_tree_state() -> set[str]:
    """`git status` of the checkout, ignored files included (a test's runs/ would be one), less
    Python's bytecode caches."""
    result = subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all"], cwd=REPO,
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"not a git checkout: {result.stderr.strip()[:200]}")
    return {line for line in result.stdout.splitlines() if "__pycache__" not in line}


def test_the_session_has_a_home_of_its_own():
    home = Path(os.environ["HOME"])
    assert home != Path(pwd.getpwuid(os.getuid()).pw_dir)
    assert home.is_relative_to(tempfile.gettempdir())
    for name in CACHE_VARIABLES:
        assert Path(os.environ[name]).is_relative_to(home.parent) and not Path(os.environ[name]).is_relative_to(home)


@pytest.mark.slow
def test_a_run_with_every_logger_leaves_home_empty_and_the_source_tree_unchanged(tmp_path):
    pytest.importorskip("wandb")
    pytest.importorskip("tensorboard")
    session = tmp_path / "session"
    env = isolated_environment(session)  # what conftest.py gives the test session, afresh
    before = source_tree_state()
    # a wandb run earlier in this test process leaves its service's address in WANDB_* variables:
    # a CLI that inherited them would log through that service, into that test's folders
    inherited = {name: value for name, value in os.environ.items() if not name.startswith("WANDB_")}
    result = subprocess.run(  # from the checkout, as a user of a source checkout starts it
        [sys.executable, "-m", "prune_bench.cli", *tiny(tmp_path, "logger=[csv,tensorboard,wandb]")], cwd=REPO,
        env={**inherited, **env, "PYTHONPATH": str(REPO), "WANDB_SILENT": "true"},
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (record,) = (tmp_path / "runs").glob("*/record.json")
    assert {"wandb", "tensorboard", "metrics.csv"} <= {path.name for path in record.parent.iterdir()}

    def written() -> list[Path]:
        return [path for name in CACHE_VARIABLES for path in Path(env[name]).rglob("*") if path.is_file()]

    # wandb's service process writes its logs (into WANDB_CACHE_DIR) as it winds down, which may
    # be a moment after the run has exited on a busy machine: wait for them, then look at HOME
    deadline = time.monotonic() + 30
    while not written() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert written()  # the tools wrote, where they were told
    assert everything_under(Path(env["HOME"])) == []
    assert source_tree_state() == before
