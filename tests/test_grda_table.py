"""The grda2020 table: cells keyed by model, dataset, optimizer, c and mu (SGD rows have neither),
joined with the published numbers; and the generic join and column rules it relies on."""

import math

import pandas as pd
import pytest

from prune_bench.report import tables as results


def record(optimizer: dict, acc: float, sparsity: float, seed: int, model="wrn28_10", dataset="cifar10",
           label="cifar10-official", epochs=200):
    return {
        "status": "finished",
        "config": {"model": {"name": model}, "data": {"name": dataset, "augment": True}, "optimizer": optimizer,
                   "pruner": {"name": "none"},
                   "scheduler": {"name": "grda_piecewise", "hold": 0.5, "end": 0.9, "final_factor": 0.01},
                   "trainer": {"epochs": epochs, "batch_size": 128, "label_smoothing": 0.0}, "seed": seed},
        "data": {"label": label},
        "metrics": {"test_acc": acc, "best_test_acc": acc},
        "sparsity": {"all": sparsity, "prunable": sparsity},
        "timing": {"train_s": 1.0},
    }


SGD = {"name": "sgd", "lr": 0.1, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0}


def grda(mu: float, c: float = 1e-3) -> dict:
    return {"name": "grda", "lr": 0.1, "c": c, "mu": mu}


def cell(table: pd.DataFrame, **keys) -> pd.Series:
    rows = table
    for key, value in keys.items():
        rows = rows[rows[key] == value]
    assert len(rows) == 1, keys
    return rows.iloc[0]


def test_grda2020_joins_sgd_rows_without_mu_and_scales_sparsity_to_percent():
    records = [
        record(SGD, 94.0, 0.0, 1), record(SGD, 94.2, 0.0, 2),
        record(grda(0.501), 94.5, 0.90, 1), record(grda(0.501), 94.3, 0.92, 2),
        record(grda(0.6, c=0.025), 80.0, 0.5, 1, label="cifar10-jpeg-n10000", epochs=5),  # not the paper's c
        record({**SGD, "momentum": 0.9}, 95.0, 0.0, 1),  # not the paper's baseline: left out
    ]
    spec = results.load_table_spec("grda2020")
    table = results.build_table("grda2020", spec, records)
    sgd = cell(table, model="wrn28_10", dataset="cifar10", optimizer="sgd", data="cifar10-official")
    assert (sgd["c"], sgd["mu"], sgd["n"]) == ("", "", 2)
    assert sgd["acc"] == pytest.approx(94.1) and sgd["acc_paper"] == 94.17 and sgd["acc_diff"] == pytest.approx(-0.07)
    assert sgd["sparsity"] == 0.0 and sgd["sparsity_paper"] == 0.0
    ours = cell(table, dataset="cifar10", mu="0.501", data="cifar10-official")
    assert ours["c"] == "0.001" and ours["n"] == 2 and ours["acc_paper"] == 94.46
    assert ours["sparsity"] == pytest.approx(91.0) and ours["sparsity_std"] == pytest.approx(math.sqrt(2))
    assert ours["sparsity_paper"] == 90.17 and ours["sparsity_diff"] == pytest.approx(0.83)
    quick = cell(table, c="0.025")  # not the paper's setting: apart, without the paper's numbers
    assert quick["n"] == 1 and math.isnan(quick["acc_paper"]) and quick["sparsity"] == 50.0
    assert quick["setting"] == "other: data.label=cifar10-jpeg-n10000, trainer.epochs=5, optimizer.c=0.025"
    assert table["n"].sum() == 5 and len(table) == 15 + 1  # the 15 published cells and ours
    wrn10 = table[(table["model"] == "wrn28_10") & (table["dataset"] == "cifar10") & (table["c"] != "0.025")]
    assert list(wrn10["mu"]) == ["", "0.501", "0.55", "0.6", "0.65"]  # SGD first, then mu in order
    text = results.to_markdown(table, spec)
    assert "| cifar10-official | 200 | wrn28_10 | cifar10 | sgd |  |  | 94.10 ± 0.14 | 94.17 | -0.07 |" in text


def test_key_text_makes_missing_keys_empty_and_whole_floats_plain():
    assert [results.key_text(v) for v in (None, float("nan"), 1.0, 1, 0.0005, 5e-4, "vgg16")] == \
        ["", "", "1", "1", "0.0005", "0.0005", "vgg16"]


def test_a_key_missing_from_records_meets_an_empty_csv_cell(tmp_path, monkeypatch):
    folder = tmp_path / "published"
    folder.mkdir()
    (folder / "demo.csv").write_text("model,mu,acc,source\nnet,,90.0,paper\nnet,1.0,80.0,paper\n")
    monkeypatch.setattr(results, "published_dir", lambda: folder)
    spec = {"title": "t", "rows": {"model": "config.model.name", "mu": "config.optimizer.mu"},
            "columns": {"acc": "metrics.test_acc"}, "published": {"columns": ["acc"]},
            "paper": {"match": {"data.label": "x"}}}

    def run(mu, acc):
        optimizer = {} if mu is None else {"mu": mu}
        return {"status": "finished", "config": {"model": {"name": "net"}, "optimizer": optimizer,
                                                 "trainer": {"epochs": 1}, "seed": 1},
                "data": {"label": "x"}, "metrics": {"test_acc": acc}}

    only_missing = results.build_table("demo", spec, [run(None, 89.0)])  # an all-None column
    assert cell(only_missing, mu="", data="x")["acc_paper"] == 90.0
    mixed = results.build_table("demo", spec, [run(None, 89.0), run(1, 81.0)])  # int 1 meets CSV 1.0
    assert cell(mixed, mu="", data="x")["acc_diff"] == pytest.approx(-1.0)
    assert cell(mixed, mu="1", data="x")["acc_diff"] == pytest.approx(1.0)
    assert len(mixed) == 2


def test_column_value_scales_numbers_only():
    rec = {"sparsity": {"all": 0.25}, "name": "x"}
    assert results.column_value(rec, "sparsity.all") == 0.25
    assert results.column_value(rec, {"key": "sparsity.all", "scale": 100}) == 25.0
    assert results.column_value(rec, {"key": "missing", "scale": 100}) is None


def test_natural_sort_compares_decimals_as_numbers():
    values = pd.Series(["0.51", "0.501", "", "0.6", "resnet110", "resnet56", "0.0005", "0.001"])
    ordered = values.iloc[results._natural_key(values).argsort(kind="stable")]
    assert list(ordered) == ["", "0.0005", "0.001", "0.501", "0.51", "0.6", "resnet56", "resnet110"]
