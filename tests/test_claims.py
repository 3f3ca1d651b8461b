"""Claims declared in a table file and decided from the records: Student t quantiles, paired and
Welch intervals, each verdict of each relation, side conditions, which rows are compared, which
budget a line names, the declaration's checks, and the lines `prune-bench table` prints and writes."""

import copy
import json
import math

import pandas as pd
import pytest
from omegaconf import OmegaConf

from conftest import make_config
from prune_bench import cli
from prune_bench.report import claims, specs, stats
from prune_bench.report import tables as results

# ----------------------------------------------------------------------------- Student t


@pytest.mark.parametrize("df, printed", [(1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (10, 2.228),
                                         (30, 2.042), (1e7, 1.960)])
def test_t_quantiles_match_the_printed_table(df, printed):
    assert stats.t_quantile(0.975, df) == pytest.approx(printed, abs=5e-4)
    assert stats.t_quantile(0.025, df) == pytest.approx(-printed, abs=5e-4)


def test_t_cdf_matches_the_closed_forms_of_one_and_two_degrees_of_freedom():
    for t in (-30.0, -2.5, -0.3, 0.0, 0.7, 4.0, 50.0):
        assert stats.t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)
        assert stats.t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)
    assert stats.t_quantile(0.9, 1) == pytest.approx(math.tan(math.pi * 0.4), rel=1e-10)


def test_the_incomplete_beta_is_a_binomial_tail_for_whole_parameters():
    # I_x(a, b) = P(Binomial(a + b - 1, x) >= a)
    for a in range(1, 7):
        for b in range(1, 7):
            for x in (0.05, 0.37, 0.5, 0.81, 0.99):
                n = a + b - 1
                tail = sum(math.comb(n, k) * x ** k * (1 - x) ** (n - k) for k in range(a, n + 1))
                assert stats.regularized_beta(x, a, b) == pytest.approx(tail, abs=1e-12)


def test_fractional_degrees_of_freedom_lie_between_their_neighbours_and_invert_the_cdf():
    for df in (1.3, 2.635, 7.5):
        quantile = stats.t_quantile(0.975, df)
        assert stats.t_quantile(0.975, math.ceil(df)) < quantile < stats.t_quantile(0.975, math.floor(df))
        assert stats.t_cdf(quantile, df) == pytest.approx(0.975, abs=1e-12)


def test_a_numerical_routine_that_does_not_converge_raises(monkeypatch):
    monkeypatch.setattr(stats, "MAX_TERMS", 2)
    with pytest.raises(ArithmeticError, match="did not converge"):
        stats.regularized_beta(0.3, 20.5, 0.5)
    monkeypatch.undo()
    monkeypatch.setattr(stats, "MAX_HALVINGS", 3)
    with pytest.raises(ArithmeticError, match="did not converge"):
        stats.t_quantile(0.975, 4)


# ----------------------------------------------------------------------------- intervals


def test_a_paired_interval_rests_on_the_per_seed_differences():
    # differences 1, 2, 0.5: mean 7/6, sd sqrt(7/12), half width t(0.975, 2) sd / sqrt(3) = 1.897291
    interval = stats.difference_interval([(1, 10.0), (2, 12.0), (3, 11.0)], [(1, 9.0), (2, 10.0), (3, 10.5)])
    assert interval.paired and interval.n == 3
    assert interval.diff == pytest.approx(7 / 6)
    assert (interval.low, interval.high) == (pytest.approx(-0.730624, abs=1e-6), pytest.approx(3.063958, abs=1e-6))


def test_seeds_that_only_one_side_has_are_left_out_of_the_pairs():
    interval = stats.difference_interval([(1, 10.0), (2, 12.0), (3, 11.0), (4, 99.0)],
                                         [(1, 9.0), (2, 10.0), (3, 10.5), (5, -99.0)])
    assert interval.paired and interval.n == 3 and interval.diff == pytest.approx(7 / 6)


def test_an_unpaired_interval_is_welchs():
    # means 12 and 9.5, variances 4 and 0.5: se^2 = 4/3 + 1/4 = 19/12,
    # df = (19/12)^2 / ((4/3)^2 / 2 + (1/4)^2 / 1) = 2.635036
    interval = stats.difference_interval([(1, 10.0), (2, 12.0), (3, 14.0)], [(4, 9.0), (5, 10.0)])
    assert not interval.paired and interval.n == 2 and interval.diff == pytest.approx(2.5)
    half = interval.high - interval.diff
    assert half == pytest.approx(interval.diff - interval.low)
    assert half == pytest.approx(stats.t_quantile(0.975, 2.635036) * math.sqrt(19 / 12), rel=1e-6)
    assert 3.182 < half / math.sqrt(19 / 12) < 4.303  # between t(0.975, 3) and t(0.975, 2)


def test_one_shared_seed_is_no_pairing_and_one_seed_on_a_side_is_no_interval():
    assert not stats.difference_interval([(1, 1.0), (2, 2.0)], [(1, 1.5), (3, 2.5)]).paired  # Welch
    assert stats.difference_interval([(1, 1.0)], [(1, 2.0)]) is None
    assert stats.difference_interval([(1, 1.0), (2, 2.0), (3, 3.0)], [(1, 2.0)]) is None


# ----------------------------------------------------------------------------- verdicts on constructed records

SPEC = {"title": "demo", "rows": {"model": "config.model.name", "optimizer": "config.optimizer.name"},
        "columns": {"acc": "metrics.test_acc", "flops": "metrics.flops"}}


def record(optimizer: str, seed: int, acc: float, flops: float = 50.0, lr: float = 0.1, data: dict | None = None,
           **optimizer_keys) -> dict:
    return {"status": "finished",
            "config": {"model": {"name": "m"}, "optimizer": {"name": optimizer, "lr": lr, **optimizer_keys},
                       "seed": seed, "trainer": {"epochs": 10}, "data": data or {}},
            "data": {"label": "demo-data"}, "metrics": {"test_acc": acc, "flops": flops}}


def side(optimizer: str, accs: list[float], seeds=(1, 2, 3), flops=None, **keys) -> list[dict]:
    flops = flops or [50.0] * len(accs)
    return [record(optimizer, seed, acc, f, **keys) for seed, acc, f in zip(seeds, accs, flops)]


def decided(records: list[dict], relation: str = "greater", **claim) -> list[claims.Line]:
    spec = {**SPEC, "claims": [{"name": "demo", "says": "x beats y.", "cite": "nowhere", "column": "acc",
                                "a": {"optimizer": "x"}, "b": {"optimizer": "y"}, "relation": relation,
                                **claim}]}
    assert claims.claim_problems(spec, "demo") == []
    return claims.decide_claims(spec, results.records_frame(spec, records), "demo")


def only(lines: list[claims.Line]) -> claims.Line:
    assert len(lines) == 1, [claims.line_text(line) for line in lines]
    return lines[0]


def test_greater_holds_when_the_interval_lies_above_zero_and_is_contradicted_below():
    a, b = [50.0, 52.0, 54.0], [48.0, 50.5, 52.2]  # differences 2, 1.5, 1.8: [1.14, 2.39]
    line = only(decided(side("x", a) + side("y", b)))
    assert line.verdict == "holds" and line.test.interval.paired and line.test.interval.low > 0
    flipped = only(decided(side("x", b) + side("y", a)))
    assert flipped.verdict == "contradicted" and flipped.test.interval.high < 0


def test_an_interval_across_zero_is_not_resolved_with_t_although_z_would_resolve_it():
    # differences 1, 2, 3: mean 2, sd 1; t(0.975, 2) gives [-0.48, 4.48], z's 1.96 would give [0.87, 3.13]
    line = only(decided(side("x", [11.0, 12.0, 13.0]) + side("y", [10.0, 10.0, 10.0])))
    assert line.verdict == "not resolved at n = 3"
    assert line.test.interval.low == pytest.approx(2 - 4.302653 / math.sqrt(3), abs=1e-5)
    below = only(decided(side("x", [10.0, 10.0, 10.0]) + side("y", [11.0, 12.0, 13.0])))
    assert below.test.interval.diff < 0 and below.verdict == "not resolved at n = 3"  # the mean alone is not enough


def test_seeds_pair_the_sides_and_disjoint_seeds_do_not():
    a, b = [10.0, 12.0, 14.0], [9.5, 11.5, 13.5]  # each seed 0.5 ahead, but the seeds spread by 2
    paired = only(decided(side("x", a) + side("y", b)))
    assert paired.verdict == "holds" and paired.test.interval.paired
    assert (paired.test.interval.low, paired.test.interval.high) == (pytest.approx(0.5), pytest.approx(0.5))
    unpaired = only(decided(side("x", a) + side("y", b, seeds=(4, 5, 6))))
    assert unpaired.verdict == "not resolved at n = 3" and not unpaired.test.interval.paired


def test_keys_that_come_with_the_compared_value_do_not_keep_rows_apart_other_one_sided_keys_do():
    """Comparing pruner.decay: the keys only sp+sr has (Self-Rectifying's) belong to the compared
    value; a key only one side has elsewhere (model.width) is a difference of its own."""
    spec = {"title": "demo", "rows": {"decay": "config.pruner.decay"}, "columns": {"acc": "metrics.test_acc"},
            "claims": [{"name": "sr", "says": "sr helps.", "cite": "nowhere", "column": "acc",
                        "a": {"decay": "sp+sr"}, "b": {"decay": "sp"}, "relation": "greater"}]}

    def run(decay, seed, acc, **extra):
        pruner = {"name": "dpm", "decay": decay, **({"sr_rate_baseline": "decay"} if decay == "sp+sr" else {})}
        return {"status": "finished", "config": {"model": {"name": "m", **extra}, "pruner": pruner, "seed": seed,
                                                 "trainer": {"epochs": 10}, "data": {}},
                "data": {"label": "demo-data"}, "metrics": {"test_acc": acc}}

    records = [run("sp+sr", s, 50.0 + s) for s in (1, 2, 3)] + [run("sp", s, 49.0 + s) for s in (1, 2, 3)]
    line = only(claims.decide_claims(spec, results.records_frame(spec, records), "demo"))
    assert line.test.interval.paired and line.verdict == "holds"
    wider = [run("sp+sr", s, 50.0 + s, width=2) for s in (1, 2, 3)] + [run("sp", s, 49.0 + s) for s in (1, 2, 3)]
    apart = claims.decide_claims(spec, results.records_frame(spec, wider), "demo")
    assert len(apart) == 2 and all(line.verdict == "not resolved at n = 0" for line in apart)


def test_one_seed_gives_no_interval_and_says_n_is_one():
    line = only(decided(side("x", [60.0], seeds=(1,)) + side("y", [30.0], seeds=(1,))))
    assert line.verdict == "not resolved at n = 1" and line.test.interval is None
    uneven = only(decided(side("x", [60.0, 61.0, 62.0]) + side("y", [30.0], seeds=(1,))))
    assert uneven.verdict == "not resolved at n = 1"


def test_at_least_holds_within_its_margin_and_is_contradicted_below_it():
    a, b = [10.0, 10.0, 10.0], [10.2, 10.1, 10.15]  # differences -0.2, -0.1, -0.15: [-0.274, -0.026]
    assert only(decided(side("x", a) + side("y", b), "at_least", margin=0.5, reason="r")).verdict == "holds"
    assert only(decided(side("x", a) + side("y", b), "at_least")).verdict == "contradicted"
    assert only(decided(side("x", a) + side("y", b), "at_least", margin=0.2, reason="r")).verdict == \
        "not resolved at n = 3"


@pytest.mark.parametrize("differences, verdict", [
    ([0.1, 0.2, 0.15], "holds"),  # [0.026, 0.274], inside [-0.5, 0.5]
    ([-1.1, -1.2, -1.15], "contradicted"),  # wholly below -0.5
    ([0.3, 0.5, 0.7], "not resolved at n = 3"),  # [0.003, 0.997] across 0.5
])
def test_comparable_holds_inside_the_margin_and_is_contradicted_wholly_outside(differences, verdict):
    b = [40.0, 45.0, 50.0]
    a = [y + d for y, d in zip(b, differences)]
    assert only(decided(side("x", a) + side("y", b), "comparable", margin=0.5, reason="r")).verdict == verdict


@pytest.mark.parametrize("flops_a, outcome, verdict", [
    ([50.5, 50.4, 50.6], "holds", "holds"),  # FLOPs within +-2: the accuracy's verdict stands
    ([40.1, 39.9, 40.0], "contradicted", "contradicted"),  # 10 points fewer FLOPs: not the paper's trade-off
    ([51.0, 52.0, 53.0], "not resolved", "not resolved at n = 3"),  # [-0.48, 4.48] across 2
])
def test_a_side_condition_must_hold_too(flops_a, outcome, verdict):
    a, b = [50.0, 52.0, 54.0], [48.0, 50.5, 52.2]  # the accuracy alone holds
    records = side("x", a, flops=flops_a) + side("y", b, flops=[50.0] * 3)
    line = only(decided(records, "at_least", condition={"column": "flops", "relation": "comparable", "margin": 2,
                                                        "reason": "r"}))
    assert line.test.outcome == "holds" and line.condition.outcome == outcome and line.verdict == verdict


def test_a_side_without_runs_is_said_and_a_claim_without_any_has_one_line():
    line = only(decided(side("x", [1.0, 2.0, 3.0])))
    assert line.verdict == "not resolved at n = 0" and line.test.b == []
    assert "y: no runs" in claims.line_text(line) and "x 2.00 ± 1.00 (n = 3)" in claims.line_text(line)
    nothing = only(decided(side("z", [1.0])))
    assert nothing.setting == claims.NO_RUNS and nothing.verdict == "not resolved at n = 0"


def test_rows_that_differ_in_another_key_are_not_compared():
    records = side("x", [50.0, 52.0, 54.0]) + side("y", [48.0, 50.5, 52.2], lr=0.05)
    lines = decided(records)
    assert [(bool(line.test.a), bool(line.test.b)) for line in lines] == [(True, False), (False, True)]
    # a key only one side has, outside the compared component (mixup is left out of a config at 0)
    records = side("x", [50.0, 52.0, 54.0], data={"mixup_alpha": 0.2}) + side("y", [48.0, 50.5, 52.2])
    assert [(bool(line.test.a), bool(line.test.b)) for line in decided(records)] == [(True, False), (False, True)]


def test_keys_of_a_compared_component_that_one_side_lacks_are_not_compared():
    records = side("x", [50.0, 52.0, 54.0], sampling_rate=0.8) + side("y", [48.0, 50.5, 52.2])
    assert only(decided(records)).verdict == "holds"
    both = side("x", [50.0, 52.0, 54.0], sampling_rate=0.8) + side("y", [48.0, 50.5, 52.2], sampling_rate=0.5)
    assert len(decided(both)) == 2  # a key both sides have must agree


# ----------------------------------------------------------------------------- the declaration


def claim_errors(**changes) -> list[str]:
    claim = {"name": "demo", "says": "x beats y.", "cite": "nowhere", "column": "acc", "a": {"optimizer": "x"},
             "b": {"optimizer": "y"}, "relation": "greater", **changes}
    return claims.claim_problems({**SPEC, "claims": [{k: v for k, v in claim.items() if v is not None}]}, "demo")


def test_a_bad_declaration_is_one_line_per_problem_naming_the_key():
    assert claim_errors(colum="acc") == ["table demo: claims.demo: unknown key 'colum'; did you mean column?"]
    assert claim_errors(column="top1") == [
        "table demo: claims.demo.column: 'top1' is not a measured column of the table (acc, flops)"]
    assert claim_errors(a={"optimiser": "x"}) == [
        "table demo: claims.demo.a.optimiser: not a row key of the table (model, optimizer)"]
    assert claim_errors(relation="better") == [
        "table demo: claims.demo.relation: 'better' is not one of greater, at_least, comparable"]
    assert claim_errors(relation="comparable") == [
        "table demo: claims.demo.margin: comparable needs a margin > 0 (|a - b| <= margin)"]
    assert claim_errors(relation="at_least", margin=0.5) == [
        "table demo: claims.demo.reason: say why the margin is what it is"]
    assert claim_errors(b={"model": "m"}) == [
        "table demo: claims.demo: a and b name no row key in common; name the compared key in both (e.g. optimizer)"]
    assert claim_errors(b={"optimizer": ["y", "x"]}) == ["table demo: claims.demo: a and b both allow optimizer=x"]
    assert claim_errors(cite=None) == ["table demo: claims.demo: 'cite' is missing"]
    assert claim_errors(condition={"column": "flops", "relation": "comparable"}) == [
        "table demo: claims.demo.condition.margin: comparable needs a margin > 0 (|a - b| <= margin)"]


def test_a_bad_claim_in_a_table_file_stops_table_with_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    load = specs.load_entry

    def with_a_typo(group, name, *args, **kwargs):
        entry, spec = load(group, name, *args, **kwargs)
        spec = copy.deepcopy(spec)
        spec["claims"][0]["column"] = "acc_p55"
        return entry, spec

    monkeypatch.setattr(specs, "load_entry", with_a_typo)
    (tmp_path / "runs").mkdir()
    with pytest.raises(SystemExit) as caught:
        cli.main(["table", "sga2024", "--runs", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "out")])
    assert caught.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("prune-bench: error: table sga2024: claims.pruned.column: 'acc_p55' is not a measured")
    assert error.count("\n") == 1 and not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- the shipped tables

DATA = {"cifar10-official": {"dataset": "cifar10", "format": "official", "n_train": 50000, "n_test": 10000},
        "cifar10-jpeg-n10000-test5000": {"dataset": "cifar10", "format": "jpeg", "n_train": 10000, "n_test": 5000}}


def run_records(overrides: list[str], seeds: list[int], data: str = "cifar10-official", **by_seed) -> list[dict]:
    """Finished records of the config `prune-bench run OVERRIDES` composes, one per seed; by_seed
    maps a dotted record key to its value per seed."""
    config = OmegaConf.to_container(make_config(overrides), resolve=True)
    made = []
    for index, seed in enumerate(seeds):
        run = copy.deepcopy(config)
        run["seed"] = seed
        if "seed" in run["optimizer"]:  # StochGradAdam's mask stream is ${seed}
            run["optimizer"]["seed"] = seed
        record = {"status": "finished", "config": run, "data": {**DATA[data], "label": data},
                  "device": {"type": "cpu"}, "pruner": {}, "metrics": {}}
        for dotted, values in by_seed.items():
            *parents, leaf = dotted.split(".")
            target = record
            for key in parents:
                target = target.setdefault(key, {})
            target[leaf] = values[index]
        made.append(record)
    return made


def sga(exp: str, p50: list[float], dense: list[float], *extra: str, data: str = "cifar10-official") -> list[dict]:
    return run_records([f"+exp={exp}", *extra], [1, 2, 3], data, **{
        "metrics.levels.p50.test_acc": p50, "metrics.test_acc_trained": dense, "metrics.test_acc": p50})


QUICK = ["model=resnet20", "data=cifar10_jpeg", "data.train_per_class=1000", "data.test_per_class=500",
         "trainer.epochs=4"]  # conf/reproduce/sga2024.yaml, budget quick


def write(folder, records: list[dict]) -> None:
    for index, one in enumerate(records):
        (folder / f"r{index}").mkdir(parents=True)
        (folder / f"r{index}" / "record.json").write_text(json.dumps(one))


def test_a_line_names_the_paper_setting_or_the_budget_it_ran_at(tmp_path):
    records = (sga("resnet56_sga", [61.0, 62.0, 63.0], [90.0, 91.0, 92.0])
               + sga("resnet56_adam", [32.0, 33.5, 33.5], [90.5, 91.0, 91.5])
               + sga("resnet56_sga", [33.0, 34.0, 35.0], [50.0, 51.0, 52.0], *QUICK, data="cifar10-jpeg-n10000-test5000")
               + sga("resnet56_adam", [34.0, 35.0, 36.0], [50.0, 51.0, 52.0], *QUICK, data="cifar10-jpeg-n10000-test5000")
               + sga("resnet56_sga", [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], *QUICK[:-1], "trainer.epochs=5",
                     data="cifar10-jpeg-n10000-test5000")
               + sga("resnet56_adam", [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], *QUICK[:-1], "trainer.epochs=5",
                     data="cifar10-jpeg-n10000-test5000"))
    spec = results.load_table_spec("sga2024")
    lines = claims.decide_claims(spec, results.records_frame(spec, records), "sga2024")
    pruned = [line for line in lines if line.claim["name"] == "pruned"]
    assert [(line.setting, line.where, line.verdict) for line in pruned] == [
        ("paper's setting", "cifar10-official, 100 epochs, model=resnet56", "holds"),
        ("budget quick", "cifar10-jpeg-n10000-test5000, 4 epochs, model=resnet20", "contradicted"),
        ("other runs", "cifar10-jpeg-n10000-test5000, 5 epochs, model=resnet20", "not resolved at n = 3"),
    ]
    # the CLI: the table, then the claims, one line per setting; the same lines in the CSV and the .md
    write(tmp_path / "runs", records)
    text = results.write_table("sga2024", tmp_path / "runs", tmp_path / "out")[2]
    assert ("- paper's setting · cifar10-official, 100 epochs, model=resnet56: sga 62.00 ± 1.00 (n = 3), "
            "adam 33.00 ± 0.87 (n = 3); diff +29.00 [+27.76, +30.24], paired, n = 3 → **holds**") in text.splitlines()
    table_part, claims_part = text.split("### Claims")
    assert "budget quick" not in table_part and "**pruned**: After 50% one-shot" in claims_part
    assert (tmp_path / "out" / "sga2024.md").read_text() == text.split("\nwrote ")[0]
    written = pd.read_csv(tmp_path / "out" / "sga2024.claims.csv")
    paper = written[(written["claim"] == "pruned") & (written["setting"] == "paper's setting")].iloc[0]
    assert (paper["a"], paper["a_n"], paper["b"], paper["b_n"], paper["n"]) == ("sga", 3, "adam", 3, 3)
    assert (paper["diff"], paper["ci_low"], paper["ci_high"]) == (29.0, pytest.approx(27.7579), pytest.approx(30.2421))
    assert paper["paired"] and paper["verdict"] == "holds" and paper["cite"].startswith("Yun 2024")
    dense = written[(written["claim"] == "dense") & (written["setting"] == "paper's setting")].iloc[0]
    assert dense["verdict"] == "not resolved at n = 3"  # differences -0.5, 0, 0.5


def test_table_prints_the_claims_of_every_paper(tmp_path, capsys):
    fggp = ["pruner.sparsity=0.9", "pruner.init_sparsity=0.0"]
    made = {
        "sga2024": sga("resnet56_sga", [61.0, 62.0, 63.0], [90.0, 91.0, 92.0])
        + sga("resnet56_adam", [32.0, 33.5, 33.5], [90.5, 91.0, 91.5]),
        "fggp2024": run_records(["+exp=fggp2024_vgg19_bn_fggp", *fggp], [1, 2], **{
            "metrics.test_acc": [92.0, 92.1], "pruner.start": ["dense"] * 2})
        + run_records(["+exp=fggp2024_vgg19_bn_gmp", *fggp], [1, 2], **{
            "metrics.test_acc": [93.0, 93.2], "pruner.start": ["dense"] * 2}),
        "grda2020": run_records(["+exp=grda2020_vgg16", "optimizer.mu=0.6"], [1, 2, 3], **{
            "metrics.test_acc": [90.8, 90.9, 91.0], "sparsity.all": [0.95, 0.951, 0.952]})
        + run_records(["+exp=grda2020_vgg16_sgd"], [1, 2, 3], **{
            "metrics.test_acc": [90.8, 90.85, 91.0], "sparsity.all": [0.0] * 3}),
        "dpm2024": [one for decay, acc, flops in (("none", [93.0, 93.2, 93.4], [46.8, 46.9, 47.0]),
                                                  ("sp", [93.6, 93.7, 94.0], [46.3, 46.4, 46.5]),
                                                  ("sp+sr", [94.0, 94.1, 94.3], [40.0, 40.1, 40.2]))
                    for one in run_records(["+exp=dpm2024_resnet56_depgraph", f"pruner.decay={decay}"], [1, 2, 3], **{
                        "metrics.test_acc": acc, "pruner.flops_pct": flops})],
    }
    verdicts = {}
    for paper, records in made.items():
        write(tmp_path / paper, records)
        cli.main(["table", paper, "--runs", str(tmp_path / paper), "--results-dir", str(tmp_path / "out")])
        printed = capsys.readouterr().out
        assert "### Claims" in printed and f"wrote {tmp_path / 'out' / paper}.claims.csv" in printed
        written = pd.read_csv(tmp_path / "out" / f"{paper}.claims.csv")
        assert (written["setting"] == "paper's setting").all()
        verdicts.update({(paper, row["claim"]): row["verdict"] for _, row in written.iterrows()})
        for verdict in written["verdict"]:
            assert f"→ **{verdict}**" in printed
    assert verdicts == {
        ("sga2024", "pruned"): "holds", ("sga2024", "dense"): "not resolved at n = 3",
        ("fggp2024", "fggp_vs_gmp"): "contradicted",  # 1.0 and 1.1 points behind: [-1.685, -0.415]
        ("grda2020", "comparable_accuracy"): "holds", ("grda2020", "sparse_and_comparable"): "holds",
        ("dpm2024", "sp_vs_none"): "holds",
        ("dpm2024", "sr_vs_sp"): "contradicted",  # more accurate, at 6.3 points fewer FLOPs
    }
