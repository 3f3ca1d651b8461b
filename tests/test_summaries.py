"""Run summaries (report/summaries.py): a table's records without their bulk, from which the same
table is made again."""

import json

import pandas as pd
from test_tables import run_record

from prune_bench import cli
from prune_bench.report import summaries
from prune_bench.report import tables as results

SPEC = {"title": "one-shot", "where": {"config.pruner.name": "magnitude"}, "rows": {"model": "config.model.name"},
        "columns": {"acc": "metrics.test_acc", "p50": "metrics.levels.p50.test_acc"}}


def write_run(runs, folder, record):
    path = runs / folder / "record.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({**record, "run_dir": str(path.parent)}))


def test_summaries_leave_out_the_bulk_keep_the_rest_and_make_the_same_table(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "summaries"
    for seed, acc in ((1, 50.0), (2, 52.0)):
        record = run_record(["+exp=resnet56_sga", "model=resnet20", f"seed={seed}"], acc, data="cifar10-jpeg-n5000",
                            metrics={"levels": {"p50": {"test_acc": acc - 10}}})
        record.update(history=[{"epoch": 1, "train_loss": 2.0}] * 50, git_sha="abc", versions={"torch": "2.13.0"})
        record["sparsity"]["per_layer"] = {"conv1.weight": 0.5}
        record["pruner"].update(event_log=[{"step": 1}], channels={"conv1": [3, 16]}, levels=[0.5])
        write_run(runs, f"resnet20_sga_magnitude-{seed}", record)
    write_run(runs, "resnet20_sgd_none-9", run_record(["+exp=smoke"], 99.0, data="cifar10-synthetic"))  # not this table's

    written = summaries.write_summaries(SPEC, runs, out)
    assert sorted(p.parent.name for p in written) == ["resnet20_sga_magnitude-1", "resnet20_sga_magnitude-2"]
    summary = json.loads(written[0].read_text())
    assert "history" not in summary and "per_layer" not in summary["sparsity"]
    assert "event_log" not in summary["pruner"] and "channels" not in summary["pruner"]
    assert summary["pruner"]["levels"] == [0.5] and summary["git_sha"] == "abc"
    assert summary["versions"] == {"torch": "2.13.0"} and summary["config"]["seed"] == 1
    assert summary["summary"]["left_out"] == list(summaries.LEFT_OUT) and summary["summary"]["machine"]["cpus"] >= 1

    from_runs = results.build_table("one-shot", SPEC, results.collect_records(runs))
    from_summaries = results.build_table("one-shot", SPEC, results.collect_records(out))
    assert from_runs.loc[0, "n"] == 2 and from_runs.loc[0, "acc"] == 51.0
    pd.testing.assert_frame_equal(from_runs, from_summaries)


def test_table_summaries_from_the_command_line_make_the_same_table_again(tmp_path, capsys):
    runs = tmp_path / "runs"
    for seed, acc in ((1, 50.0), (2, 52.0)):
        for optimizer in ("adam", "sga"):
            record = run_record([f"+exp=resnet56_{optimizer}", "model=resnet20", f"seed={seed}"], acc,
                                data="cifar10-jpeg-n5000", metrics={"test_acc_trained": acc, "levels": {
                                    "p50": {"test_acc": acc - 10}}})
            record["history"] = [{"epoch": 1}] * 20
            write_run(runs, f"resnet20_{optimizer}_magnitude-{seed}", record)
    assert cli.main(["table", "sga2024", "--runs", str(runs), "--results-dir", str(tmp_path / "out"), "--summaries"]) == 0
    assert capsys.readouterr().out.strip().endswith(f"wrote 4 run summaries under {tmp_path / 'out' / 'runs'}")
    assert cli.main(["table", "sga2024", "--runs", str(tmp_path / "out" / "runs"),
                     "--results-dir", str(tmp_path / "again")]) == 0
    for name in ("sga2024.csv", "sga2024.claims.csv", "sga2024.md"):
        assert (tmp_path / "out" / name).read_text() == (tmp_path / "again" / name).read_text()
