"""What may share a table cell, what may sit beside a published number, and what a plot shows:
records from real composed configs, tables from the shipped conf/table specs."""

import json
import math

import pandas as pd
import pytest
from omegaconf import OmegaConf

from conftest import make_config, run_cli
from prune_bench.errors import ConfigError
from prune_bench.report import tables as results

DATA = {
    "cifar10-official": {"dataset": "cifar10", "format": "official", "n_train": 50000, "n_test": 10000},
    "cifar10-jpeg": {"dataset": "cifar10", "format": "jpeg", "n_train": 50000, "n_test": 10000},
    "cifar10-jpeg-n5000": {"dataset": "cifar10", "format": "jpeg", "n_train": 5000, "n_test": 10000},
    "cifar10-synthetic": {"dataset": "cifar10", "format": "synthetic", "n_train": 2000, "n_test": 500},
}


def run_record(overrides: list[str], acc: float, data: str = "cifar10-official", path: str | None = None,
               metrics: dict | None = None) -> dict:
    """A finished record as experiment.run writes it, for the config `prune-bench run OVERRIDES` composes."""
    config = OmegaConf.to_container(make_config(overrides), resolve=True)
    record = {
        "status": "finished",
        "config": config,
        "data": {**DATA[data], "label": data},
        "metrics": {"test_acc": acc, "best_test_acc": acc, **(metrics or {})},
        "params": 1000,
        "sparsity": {"prunable": 0.0, "all": 0.0},
        "pruner": {"start": "dense"},
        "timing": {"train_s": 1.0, "images_per_s": 1.0},
        "device": {"type": "cpu", "bf16": False},
    }
    if path is not None:
        record["_path"] = path
    return record


HE = ["+exp=resnet_sgd_baseline", "model=resnet20"]  # He et al.'s recipe: the baselines table's paper setting


def rows(table: pd.DataFrame, **keys) -> pd.DataFrame:
    for key, value in keys.items():
        table = table[table[key].astype(str) == str(value)]
    return table


# ----------------------------------------------------------------------------- item 5: one config per cell


PLAIN = {"title": "dense runs", "where": {"config.pruner.name": "none"}, "rows": {"model": "config.model.name"},
         "columns": {"acc": "metrics.test_acc"}}  # no published numbers, so no paper setting either


def test_a_cell_holds_only_records_whose_configs_differ_in_the_seed():
    records = [run_record(["+exp=smoke", "seed=1"], 90.0, data="cifar10-synthetic"),
               run_record(["+exp=smoke", "seed=2"], 92.0, data="cifar10-synthetic"),
               run_record(["+exp=smoke", "seed=1", "optimizer.lr=0.05"], 50.0, data="cifar10-synthetic")]
    table = results.build_table("plain", PLAIN, records)
    assert sorted(table["variant"]) == ["optimizer.lr=0.05", "optimizer.lr=0.1"]  # not one cell of n = 3
    same_lr = rows(table, variant="optimizer.lr=0.1").iloc[0]
    assert same_lr["n"] == 2 and same_lr["acc"] == 91.0
    other_lr = rows(table, variant="optimizer.lr=0.05").iloc[0]
    assert other_lr["n"] == 1 and other_lr["acc"] == 50.0
    assert "| optimizer.lr=0.05 |" in results.to_markdown(table, PLAIN)  # the row says how it differs
    # a key the paper's setting pins splits the rows the same way, named in the setting column
    spec = results.load_table_spec("baselines")
    table = results.build_table("baselines", spec, [run_record([*HE, "seed=1"], 91.0),
                                                    run_record([*HE, "seed=2", "optimizer.lr=0.2"], 50.0)])
    ours = rows(table, model="resnet20", data="cifar10-official")
    assert sorted(ours["setting"]) == ["other: optimizer.lr=0.2", "paper"] and list(ours["n"]) == [1, 1]


def test_a_bf16_gpu_run_and_an_fp32_cpu_run_never_share_a_cell():
    # precision `auto` computes in bf16 on CUDA and in fp32 on a CPU: judged by where the run ran
    gpu, cpu = (run_record(["+exp=smoke", f"seed={seed}"], acc, data="cifar10-synthetic")
                for seed, acc in ((1, 90.0), (2, 92.0)))
    gpu["device"] = {"type": "cuda", "bf16": True}
    table = results.build_table("plain", PLAIN, [gpu, cpu])
    assert sorted(table["variant"]) == ["trainer.precision=bf16", "trainer.precision=fp32"]
    assert list(table["n"]) == [1, 1]


def test_a_duplicate_of_the_same_config_and_seed_counts_once_with_a_warning_naming_both(capsys):
    spec = results.load_table_spec("baselines")
    records = [run_record([*HE, "seed=1"], 90.0, path="runs/a/record.json"),
               run_record([*HE, "seed=1"], 90.5, path="copy/a/record.json"),
               run_record([*HE, "seed=2"], 92.0, path="runs/b/record.json")]
    row = rows(results.build_table("baselines", spec, records), model="resnet20", setting="paper").iloc[0]
    assert row["n"] == 2 and row["acc"] == 91.0  # seed 1 once (the first record read), seed 2
    warning = capsys.readouterr().err
    assert "runs/a/record.json" in warning and "copy/a/record.json" in warning and "counted once" in warning


def test_keys_a_table_merges_by_design_make_runs_that_share_one_training_one_sample():
    # sga2024: resnet56_sga (levels 0..90%) and resnet56_sga_p50 (level 50% only) share one trained
    # model per seed; the table declares pruner.sparsity and pruner.sparsity_levels merged.
    spec = results.load_table_spec("sga2024")
    assert set(spec["merged"]) == {"pruner.sparsity", "pruner.sparsity_levels"}
    levels = {"test_acc_trained": 80.0, "levels": {"p10": {"test_acc": 79.0}, "p50": {"test_acc": 60.0}}}
    records = [
        run_record(["+exp=resnet56_sga", "seed=1"], 60.0, metrics=levels),
        run_record(["+exp=resnet56_sga_p50", "seed=1"], 60.0,
                   metrics={"test_acc_trained": 80.0, "levels": {"p50": {"test_acc": 60.0}}}),
        run_record(["+exp=resnet56_sga_p50", "seed=2"], 64.0,
                   metrics={"test_acc_trained": 82.0, "levels": {"p50": {"test_acc": 64.0}}}),
        run_record(["+exp=resnet56_sga_p50", "seed=2", "pruner.ties=threshold"], 1.0,
                   metrics={"test_acc_trained": 82.0, "levels": {"p50": {"test_acc": 1.0}}}),  # not merged by design
    ]
    table = results.build_table("sga2024", spec, records)
    ours = rows(table, model="resnet56", optimizer="sga", setting="paper")
    merged = ours[ours["variant"] == "pruner.ties=exact_k"].iloc[0]
    assert merged["n"] == 2 and merged["acc_p50"] == 62.0 and merged["acc_p10"] == 79.0  # seed 1 is one sample
    assert merged["acc_p50_paper"] == 62.84
    threshold = ours[ours["variant"] == "pruner.ties=threshold"].iloc[0]
    assert threshold["n"] == 1 and threshold["acc_p50"] == 1.0


# ----------------------------------------------------------------------------- item 6: the paper's setting


def test_synthetic_and_reduced_budget_runs_never_meet_a_published_number():
    spec = results.load_table_spec("baselines")
    records = [run_record(["+exp=smoke"], 100.0, data="cifar10-synthetic"),
               run_record(["+exp=resnet20_sgd_quick"], 67.0, data="cifar10-jpeg-n5000"),
               run_record([*HE, "seed=1"], 91.0)]
    table = results.build_table("baselines", spec, records)
    smoke = rows(table, data="cifar10-synthetic").iloc[0]
    assert smoke["setting"].startswith("other") and "data.label=cifar10-synthetic" in smoke["setting"]
    assert math.isnan(smoke["acc_paper"]) and math.isnan(smoke["acc_diff"])
    quick = rows(table, data="cifar10-jpeg-n5000").iloc[0]
    assert quick["setting"].startswith("other") and "trainer.epochs=3" in quick["setting"]
    assert math.isnan(quick["acc_paper"]) and math.isnan(quick["acc_diff"])
    he = rows(table, data="cifar10-official", model="resnet20").iloc[0]
    assert he["setting"] == "paper" and he["acc_paper"] == 91.25 and he["acc_diff"] == pytest.approx(-0.25)
    text = results.to_markdown(table, spec)
    paper_part, other_part = text.split("Other runs")
    assert "cifar10-synthetic" not in paper_part and "+8.75" not in text  # the old smoke-run difference
    assert "cifar10-synthetic" in other_part and "(paper)" not in other_part


def test_sga2024_holds_adam_and_stochgradadam_only_and_keeps_reduced_budgets_apart():
    spec = results.load_table_spec("sga2024")
    p50 = lambda acc: {"test_acc_trained": acc + 10, "levels": {"p50": {"test_acc": acc}}}  # noqa: E731
    records = [
        run_record(["+exp=smoke", "pruner=magnitude"], 58.8, data="cifar10-synthetic", metrics=p50(58.8)),  # plain SGD
        run_record(["+exp=resnet56_adam_p50", "model=resnet20", "trainer.epochs=6", "data=cifar10_jpeg"], 50.1,
                   data="cifar10-jpeg-n5000", metrics=p50(50.1)),
        run_record(["+exp=resnet56_adam_p50"], 35.0, metrics=p50(35.0)),
    ]
    table = results.build_table("sga2024", spec, records)
    assert "sgd" not in set(table["optimizer"])
    quick = rows(table, model="resnet20").iloc[0]
    assert quick["setting"].startswith("other") and math.isnan(quick["acc_p50_paper"])
    full = rows(table, model="resnet56", optimizer="adam", setting="paper").iloc[0]
    assert full["n"] == 1 and full["acc_p50_paper"] == 33.12 and full["acc_p50_diff"] == pytest.approx(1.88)


def test_a_full_budget_run_on_the_jpeg_copy_meets_the_paper_in_a_row_of_its_own():
    spec = results.load_table_spec("sga2024")
    p50 = lambda acc: {"test_acc_trained": acc + 10, "levels": {"p50": {"test_acc": acc}}}  # noqa: E731
    records = [run_record(["+exp=resnet56_adam_p50"], 35.0, metrics=p50(35.0)),
               run_record(["+exp=resnet56_adam_p50", "data=cifar10_jpeg"], 34.0, data="cifar10-jpeg", metrics=p50(34.0))]
    table = results.build_table("sga2024", spec, records)
    official, jpeg = (rows(table, model="resnet56", optimizer="adam", data=label).iloc[0]
                      for label in ("cifar10-official", "cifar10-jpeg"))
    assert official["setting"] == jpeg["setting"] == "paper" and official["n"] == jpeg["n"] == 1
    assert jpeg["acc_p50"] == 34.0 and jpeg["acc_p50_paper"] == 33.12 and jpeg["acc_p50_diff"] == pytest.approx(0.88)


def test_fggp2024_puts_fggp_gmp_and_the_annealed_baseline_side_by_side():
    spec = results.load_table_spec("fggp2024")
    assert [str(v) for v in spec["compare"]["values"]] == ["fggp", "gmp", "magfirst"]
    grid = ["pruner.sparsity=0.9", "pruner.init_sparsity=0.0"]
    records = [
        run_record(["+exp=fggp2024_vgg19_bn_fggp", *grid, "seed=1"], 93.0),
        run_record(["+exp=fggp2024_vgg19_bn_fggp", *grid, "seed=2"], 93.4),
        run_record(["+exp=fggp2024_vgg19_bn_gmp", *grid, "seed=1"], 92.5),
        run_record(["+exp=fggp2024_vgg19_bn_magfirst", *grid, "seed=1"], 92.8),
        run_record(["+exp=fggp2024_vgg19_bn_fggp", *grid, "pruner.rate_schedule=cosine"], 92.0),  # the ablation
    ]
    for record in records:
        record["pruner"]["start"] = "dense"
    table = results.build_table("fggp2024", spec, records)
    paper = rows(table, model="vgg19_bn", sparsity="0.9", start="dense", setting="paper").iloc[0]
    assert (paper["n_fggp"], paper["n_gmp"], paper["n_magfirst"]) == (2, 1, 1)
    assert paper["acc_fggp"] == pytest.approx(93.2)
    assert paper["acc_fggp_minus_gmp"] == pytest.approx(0.7)
    assert paper["acc_fggp_minus_magfirst"] == pytest.approx(0.4)
    ablation = table[table["setting"].str.contains("pruner.rate_schedule=cosine")].iloc[0]
    assert ablation["n_fggp"] == 1 and ablation["acc_fggp"] == 92.0 and ablation["n_gmp"] == 0
    assert "acc fggp − magfirst" in results.to_markdown(table, spec)


# ----------------------------------------------------------------------------- item 7: no runs, plots


def write_records(folder, records):
    for i, record in enumerate(records):
        (folder / f"r{i}").mkdir(parents=True)
        (folder / f"r{i}" / "record.json").write_text(json.dumps(record))


@pytest.mark.slow
def test_a_table_without_matching_runs_says_so_in_one_line_and_writes_nothing(tmp_path):
    write_records(tmp_path / "runs", [run_record(["+exp=smoke"], 100.0, data="cifar10-synthetic")])
    with pytest.raises(ConfigError) as error:
        results.write_table("grda2020", tmp_path / "runs", tmp_path / "out")
    assert str(error.value) == f"table: no finished runs under {tmp_path / 'runs'} match table 'grda2020'"
    assert not (tmp_path / "out").exists()
    done = run_cli(["table", "grda2020", "--runs", "runs", "--results-dir", "out"], cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")  # as `plot` does
    assert done.stderr == "prune-bench: error: table: no finished runs under runs match table 'grda2020'\n"
