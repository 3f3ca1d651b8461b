import math

import pandas as pd
import pytest

from prune_bench.errors import ConfigError
from prune_bench.report import tables as results

SPEC = {
    "title": "test table",
    "where": {"config.pruner.name": "none"},
    "rows": {"model": "config.model.name"},
    "columns": {"acc": "metrics.test_acc", "params": "params"},
    "published": {"columns": ["acc"]},
    "paper": {"match": {"data.label": "cifar10-official", "config.trainer.epochs": 164}},
    "plot": {"kind": "scatter", "x": "params", "y": "acc"},
}


def record(model, acc, seed, data="cifar10-official", epochs=164, pruner="none", status="finished"):
    return {
        "status": status,
        "config": {"model": {"name": model}, "pruner": {"name": pruner}, "seed": seed, "trainer": {"epochs": epochs}},
        "data": {"label": data},
        "metrics": {"test_acc": acc},
        "params": 1000,
    }


@pytest.fixture
def published(tmp_path, monkeypatch):
    folder = tmp_path / "published"
    folder.mkdir()
    pd.DataFrame({"model": ["resnet20", "resnet56"], "acc": [91.25, 93.03], "source": ["paper", "paper"]}).to_csv(
        folder / "demo.csv", index=False)
    monkeypatch.setattr(results, "published_dir", lambda: folder)
    return folder


def test_cells_aggregate_seeds_and_sit_beside_the_published_numbers(published):
    records = [
        record("resnet20", 90.0, 1), record("resnet20", 92.0, 2),  # one cell, n = 2
        record("resnet20", 80.0, 1, data="cifar10-jpeg"),  # another data source: its own row
        record("resnet20", 10.0, 3, status="diverged"),  # not finished: ignored
        record("resnet20", 10.0, 4, pruner="magnitude"),  # filtered out by `where`
    ]
    table = results.build_table("demo", SPEC, records)
    official = table[(table["model"] == "resnet20") & (table["data"] == "cifar10-official")].iloc[0]
    assert official["acc"] == 91.0 and official["acc_std"] == pytest.approx(math.sqrt(2))
    assert official["n"] == 2 and official["acc_paper"] == 91.25 and official["acc_diff"] == pytest.approx(-0.25)
    jpeg = table[table["data"] == "cifar10-jpeg"].iloc[0]  # not the paper's setting: no paper value
    assert jpeg["acc"] == 80.0 and math.isnan(jpeg["acc_std"]) and jpeg["n"] == 1
    assert jpeg["setting"] == "other: data.label=cifar10-jpeg" and math.isnan(jpeg["acc_paper"])
    paper_only = table[table["model"] == "resnet56"].iloc[0]  # published, no runs yet
    assert paper_only["n"] == 0 and paper_only["acc_paper"] == 93.03 and math.isnan(paper_only["acc"])
    text = results.to_markdown(table, SPEC)
    assert "| cifar10-official | 164 | resnet20 | 91.00 ± 1.41 | 91.25 | -0.25 |" in text


def test_write_table_and_plot(tmp_path, published, monkeypatch):
    runs = tmp_path / "runs"
    for i, (model, acc) in enumerate([("resnet20", 90.0), ("resnet56", 92.5)]):
        (runs / f"r{i}").mkdir(parents=True)
        (runs / f"r{i}" / "record.json").write_text(__import__("json").dumps(record(model, acc, 1)))
    (runs / "broken").mkdir()
    (runs / "broken" / "record.json").write_text("{not json")
    monkeypatch.setattr(results, "load_table_spec", lambda name: SPEC)
    table, path, text = results.write_table("demo", runs, tmp_path / "out")
    assert path.read_text().splitlines()[0].startswith("data,epochs,model,variant,setting,acc,acc_std,acc_paper,acc_diff")
    assert len(table) == 2 and "published: paper" in text
    png = results.write_plot("demo", runs, tmp_path / "out")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_table_names_the_known_ones():
    with pytest.raises(ConfigError, match="unknown table 'nope'; allowed: .*baselines"):
        results.load_table_spec("nope")


def test_merged_keys_make_runs_that_share_one_training_one_sample(published):
    spec = {**SPEC, "merged": ["pruner.sparsity"],
            "columns": {"acc": "metrics.test_acc", "acc_p10": "metrics.levels.p10"}}
    both_levels = record("resnet20", 90.0, 1)
    both_levels["config"]["pruner"]["sparsity"] = 0.1  # another level of the same training
    both_levels["metrics"]["levels"] = {"p10": 80.0}
    records = [record("resnet20", 90.0, 1), both_levels, record("resnet20", 92.0, 2)]
    row = results.build_table("demo", spec, records).query("model == 'resnet20'").iloc[0]
    assert row["n"] == 2  # seed 1's two records are one sample
    assert row["acc"] == 91.0 and row["acc_p10"] == 80.0  # merged column by column
    unmerged = results.build_table("demo", {**spec, "merged": []}, records).query("model == 'resnet20'")
    assert sorted(unmerged["variant"]) == ["pruner.sparsity=(absent)", "pruner.sparsity=0.1"]
    assert sorted(unmerged["n"]) == [1, 2]


COMPARE_SPEC = {
    "title": "side by side",
    "rows": {"model": "config.model.name", "method": "config.pruner.name"},
    "columns": {"acc": "metrics.test_acc"},
    "published": {"columns": ["acc"]},
    "paper": {"match": {"data.label": "cifar10-official"}},
    "compare": {"key": "method", "values": ["fggp", "gmp"], "columns": ["acc"]},
}


def test_compare_puts_one_key_side_by_side_with_the_difference(tmp_path, monkeypatch):
    folder = tmp_path / "published"
    folder.mkdir()
    pd.DataFrame({"model": ["vgg19_bn", "vgg19_bn"], "method": ["fggp", "gmp"], "acc": [None, None],
                  "source": ["not available", "not available"]}).to_csv(folder / "cmp.csv", index=False)
    monkeypatch.setattr(results, "published_dir", lambda: folder)
    records = [record("resnet20", acc, seed, pruner=pruner)
               for pruner, accs in (("fggp", [80.0, 84.0]), ("gmp", [79.0])) for seed, acc in enumerate(accs)]
    records.append(record("resnet56", 70.0, 1, pruner="gmp"))  # a cell with one side only
    table = results.build_table("cmp", COMPARE_SPEC, records)
    assert len(table) == 3 and "method" not in table.columns
    row = table[table["model"] == "resnet20"].iloc[0]
    assert row["acc_fggp"] == 82.0 and row["acc_std_fggp"] == pytest.approx(math.sqrt(8)) and row["n_fggp"] == 2
    assert row["acc_gmp"] == 79.0 and row["n_gmp"] == 1 and row["acc_fggp_minus_gmp"] == pytest.approx(3.0)
    one_side = table[table["model"] == "resnet56"].iloc[0]
    assert one_side["n_fggp"] == 0 and one_side["n_gmp"] == 1 and math.isnan(one_side["acc_fggp_minus_gmp"])
    waiting = table[table["model"] == "vgg19_bn"].iloc[0]  # published rows ready, values still empty
    assert waiting["n_fggp"] == waiting["n_gmp"] == 0 and waiting["source_fggp"] == "not available"
    text = results.to_markdown(table, COMPARE_SPEC)
    assert "| data | epochs | model | acc fggp | acc fggp (paper) | n fggp | acc gmp | acc gmp (paper) | n gmp | acc fggp − gmp |" in text
    assert "| cifar10-official | 164 | resnet20 | 82.00 ± 2.83 |  | 2 | 79.00 |  | 1 | +3.00 |" in text

    with pytest.raises(ConfigError, match="table: compare needs a key among the rows"):
        results.build_table("cmp", {**COMPARE_SPEC, "compare": {"key": "pruner", "values": ["a", "b"]}}, records)
