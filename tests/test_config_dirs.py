"""A user's config folders (`--config-dir DIR`, $PRUNE_BENCH_CONFIG_DIR): their exp/, reproduce/,
table/ and group options add to the shipped ones, `list` says where each comes from, a name that
shadows another is an error, and a user's table meets its own published numbers."""

import json
import os
import sys

import pytest

from prune_bench import cli
from prune_bench.config import catalog
from prune_bench.config.catalog import check_group_overrides
from prune_bench.config.compose import compose_config
from prune_bench.config.user import (
    CONFIG_DIR_VARIABLE,
    config_dirs,
    search_path_overrides,
    take_config_dir_options,
)
from prune_bench.errors import ConfigError
from prune_bench.report.tables import load_table_spec, write_table

TABLE = """title: "Mine against gmp"
where: {config.pruner.name: [gmp, fggp]}
paper:
  match: {data.label: cifar10-synthetic}
rows: {model: config.model.name, method: config.pruner.name}
columns: {acc: metrics.test_acc}
published: {columns: [acc]}
"""


def folder_with(tmp_path, name: str, files: dict[str, str]):
    folder = tmp_path / name
    for relative, text in files.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(text)
    return folder


@pytest.fixture
def mine(tmp_path):
    return folder_with(tmp_path, "mine", {
        "exp/my_smoke.yaml": "# @package _global_\n# my smoke run, two epochs\ndefaults:\n  - /exp/smoke\n  - _self_\n"
                             "trainer:\n  epochs: 3\n",
        "model/wide20.yaml": "# ResNet-20 with projection shortcuts\nname: resnet20\nshortcut: B\n",
        "reproduce/mine.yaml": "table: mine\nseeds: [1]\nbudgets:\n  quick:\n    grid:\n      - ['+exp=my_smoke']\n",
        "table/mine.yaml": TABLE,
        "published/mine.csv": "model,method,acc,source\nresnet20,gmp,50.0,my paper\n",
    })


def test_the_option_adds_the_folder_for_this_process_and_those_it_starts(mine, tmp_path):
    rest = take_config_dir_options(["--config-dir", str(mine), "list", "exp"])
    assert rest == ["list", "exp"] and os.environ[CONFIG_DIR_VARIABLE] == str(mine)
    other = folder_with(tmp_path, "other", {"exp/other.yaml": "# @package _global_\n"})
    take_config_dir_options([f"--config-dir={other}", "list"])  # before those the variable held
    assert os.environ[CONFIG_DIR_VARIABLE] == os.pathsep.join([str(other), str(mine)])
    assert config_dirs() == [other, mine]
    assert search_path_overrides() == [f"hydra.searchpath=['file://{other}','file://{mine}']"]


def test_the_option_may_follow_the_command(mine, capsys):
    assert take_config_dir_options(["run", "--config-dir", str(mine), "+exp=my_smoke"]) == ["run", "+exp=my_smoke"]
    assert os.environ[CONFIG_DIR_VARIABLE] == str(mine)
    assert cli.main(["list", "exp", f"--config-dir={mine}"]) == 0
    assert "my_smoke" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="--config-dir: needs a folder"):
        take_config_dir_options(["list", "--config-dir"])


def test_a_users_files_are_named_runs_compose_them_and_list_says_where_they_come_from(mine, monkeypatch, capsys):
    monkeypatch.setenv(CONFIG_DIR_VARIABLE, str(mine))
    assert catalog.names("exp")[-1] == "smoke" and "my_smoke" in catalog.names("exp")
    check_group_overrides(["+exp=my_smoke", "model=wide20"])  # both known
    with pytest.raises(ConfigError) as caught:  # a far-off name: the listing, now with the user's folder in it
        check_group_overrides(["model=xyz"])
    assert str(caught.value) == f"model=xyz: unknown option; run prune-bench list model to see all {len(catalog.names('model'))}"
    cfg = compose_config(["+exp=my_smoke", "model=wide20"])
    assert cfg.trainer.epochs == 3 and cfg.name == "smoke" and cfg.model.shortcut == "B"
    assert cli.main(["list"]) == 0
    listed = capsys.readouterr().out
    assert f"  {'my_smoke':<32} my smoke run, two epochs  [{mine}]" in listed
    assert f"  {'mine':<32} Mine against gmp  [{mine}]" in listed and f"  mine  [{mine}]" in listed
    assert f"resnet20, resnet32, resnet44, resnet50, resnet56, vgg16, vgg16_bn, vgg16_bn_mlp, vgg19_bn, wrn28_10, " \
           f"wide20  [{mine}]" in listed
    assert "  smoke                            " in listed and "  smoke  [" not in listed  # shipped: no folder


@pytest.mark.parametrize("files, shadowed", [
    ({"exp/smoke.yaml": "# @package _global_\n"}, "exp 'smoke' in the shipped config"),
    ({"table/fggp2024.yaml": TABLE}, "table 'fggp2024' in the shipped config"),
    ({"model/resnet20.yaml": "name: resnet20\nshortcut: A\n"}, "model 'resnet20' in the shipped config"),
], ids=["exp", "table", "model option"])
def test_a_name_that_shadows_a_shipped_one_is_an_error(tmp_path, capsys, files, shadowed):
    folder = folder_with(tmp_path, "mine", files)
    with pytest.raises(SystemExit) as caught:
        cli.main(["--config-dir", str(folder), "list"])
    assert caught.value.code == 2
    (path,) = files
    assert capsys.readouterr().err == (f"prune-bench: error: --config-dir: {folder / path} has the name of {shadowed}; "
                                       "rename it (a name may not shadow another)\n")


def test_two_user_folders_may_not_shadow_each_other_and_each_must_exist(tmp_path, monkeypatch):
    first = folder_with(tmp_path, "first", {"exp/mine.yaml": "# @package _global_\n"})
    second = folder_with(tmp_path, "second", {"exp/mine.yaml": "# @package _global_\n"})
    monkeypatch.setenv(CONFIG_DIR_VARIABLE, os.pathsep.join([str(first), str(second)]))
    with pytest.raises(ConfigError) as caught:
        config_dirs()
    assert str(caught.value) == (f"--config-dir: {second / 'exp/mine.yaml'} has the name of exp 'mine' in {first}; "
                                 "rename it (a name may not shadow another)")
    monkeypatch.setenv(CONFIG_DIR_VARIABLE, str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError) as caught:
        config_dirs()
    assert str(caught.value) == f"--config-dir: {tmp_path / 'nowhere'} is not a folder (--config-dir or " \
                                f"${CONFIG_DIR_VARIABLE})"


def record(method: str, acc: float) -> dict:
    return {"status": "finished", "data": {"label": "cifar10-synthetic"}, "metrics": {"test_acc": acc},
            "config": {"model": {"name": "resnet20"}, "pruner": {"name": method}, "seed": 1,
                       "trainer": {"epochs": 2}}}


def write_records(runs, *records):
    for index, content in enumerate(records):
        (runs / f"run{index}").mkdir(parents=True)
        (runs / f"run{index}" / "record.json").write_text(json.dumps(content))


def test_a_users_table_meets_its_published_numbers_by_the_same_rules(mine, tmp_path, monkeypatch):
    monkeypatch.setenv(CONFIG_DIR_VARIABLE, str(mine))
    assert load_table_spec("mine")["published"]["file"] == str(mine / "published" / "mine.csv")
    runs = tmp_path / "runs"
    write_records(runs, record("gmp", 47.0), record("fggp", 52.0))
    table, path, text = write_table("mine", runs, tmp_path / "results")
    gmp = table[table["method"] == "gmp"].iloc[0]
    assert gmp["acc_paper"] == 50.0 and gmp["acc_diff"] == pytest.approx(-3.0) and gmp["source"] == "my paper"
    assert "published: my paper" in text and path == tmp_path / "results" / "mine.csv"
    # `published.file` puts the numbers elsewhere in the folder
    (mine / "table" / "mine.yaml").write_text(TABLE.replace("published: {columns: [acc]}",
                                                            "published: {columns: [acc], file: numbers/mine.csv}"))
    assert load_table_spec("mine")["published"]["file"] == str(mine / "numbers" / "mine.csv")
    with pytest.raises(ConfigError) as caught:
        write_table("mine", runs, tmp_path / "results")
    assert str(caught.value) == f"table: mine compares with published numbers but {mine / 'numbers/mine.csv'} is missing"


def test_a_sweep_of_a_users_experiment_runs_every_job(mine, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # `run` hands Hydra its own command line
    monkeypatch.chdir(tmp_path)
    assert cli.main(["--config-dir", str(mine), "run", "-m", "+exp=my_smoke", "data.synthetic.train_size=50",
                     "data.synthetic.test_size=50", "trainer.epochs=1", "trainer.progress=none", "seed=1,2",
                     f"paths.runs_dir={tmp_path / 'runs'}", f"paths.data_root={tmp_path / 'data'}"]) == 0
    records = [json.loads(path.read_text()) for path in sorted((tmp_path / "runs").glob("*/record.json"))]
    assert sorted(record["config"]["seed"] for record in records) == [1, 2]
    assert all(record["config"]["name"] == "smoke" and record["config"]["trainer"]["epochs"] == 1 for record in records)
