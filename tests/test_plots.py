"""What a table's figure shows, checked on the plot's data and on the drawn figure: our points at
their true x with the std as error bars, every published cell named at its true (x, y), legends
that name things, and nothing clipped or covered."""

import copy
import io
import math
import re

import pandas as pd
import pytest
from matplotlib.image import imread
from omegaconf import OmegaConf

from conftest import make_config
from prune_bench.errors import ConfigError
from prune_bench.report import plots
from prune_bench.report import tables as results

DATA = {"cifar10-official": {"dataset": "cifar10", "format": "official", "n_train": 50000, "n_test": 10000},
        "cifar10-jpeg-n5000": {"dataset": "cifar10", "format": "jpeg", "n_train": 5000, "n_test": 10000}}
SHIPPED_PLOTS = ["baselines", "dpm2024", "fggp2024", "grda2020", "sga2024"]
BARE = re.compile(r"(?<![\w.])(True|False|nan|NaN|None)(?![\w.])")


def records(overrides: list[str], seeds, values, data: str = "cifar10-official") -> list[dict]:
    """Finished records of `prune-bench run OVERRIDES seed=S`, one per seed: the config is composed
    once; `values(seed)` gives the record's measured parts (metrics, pruner, params, ...)."""
    config = OmegaConf.to_container(make_config(overrides), resolve=True)
    made = []
    for seed in seeds:
        seeded = copy.deepcopy(config)
        seeded["seed"] = seed
        if seeded.get("optimizer", {}).get("seed") is not None:
            seeded["optimizer"]["seed"] = seed
        record = {"status": "finished", "config": seeded, "data": {**DATA[data], "label": data},
                  "metrics": {}, "params": 1000, "sparsity": {"prunable": 0.0, "all": 0.0}, "pruner": {},
                  "timing": {"train_s": 1.0, "images_per_s": 1.0}, "device": {"type": "cpu", "bf16": False}}
        for key, value in values(seed).items():
            record[key] = {**record.get(key, {}), **value} if isinstance(value, dict) else value
        made.append(record)
    return made


def sga_levels(dense: float, slope: float):
    return lambda seed: {"metrics": {"test_acc": dense, "test_acc_trained": dense + seed, "levels": {
        f"p{p}": {"test_acc": dense + seed - slope * p} for p in range(10, 100, 10)}}}


def sga_records() -> list[dict]:
    return (records(["+exp=resnet56_sga"], [1, 2], sga_levels(80.0, 0.3))
            + records(["+exp=resnet56_adam"], [1, 2], sga_levels(80.0, 0.3))  # equal curves: both must show
            + records(["+exp=resnet110_adam"], [1, 2, 3], sga_levels(85.0, 0.5))
            + records(["+exp=resnet56_adam", "model=resnet20", "trainer.epochs=1", "data=cifar10_jpeg"], [1],
                      sga_levels(40.0, 0.2), data="cifar10-jpeg-n5000"))


def dpm_values(acc: float, flops: float, params: float, stage_epochs=(200, 100, 100)):
    pretrain, sparse, finetune = stage_epochs
    return lambda seed: {"metrics": {"test_acc": acc + 0.1 * seed},
                         "pruner": {"flops_pct": flops + 0.05 * seed, "params_pct": params,
                                    "groups": {"released": seed}},
                         "stages": {"pretrain": {"test_acc": 93.5, "epochs": pretrain}, "sparse": {"epochs": sparse},
                                    "finetune": {"epochs": finetune}}}


def dpm_records() -> list[dict]:
    made = []
    for k, decay in enumerate(["none", "sp", "sp+sr"]):
        made += records(["+exp=dpm2024_resnet56_depgraph", f"pruner.decay={decay}"], [1, 2],
                        dpm_values(93.8 + 0.1 * k, 46.8 - 0.3 * k, 50.0))
        made += records(["+exp=dpm2024_resnet56_bnscale", f"pruner.decay={decay}"], [1, 2],
                        dpm_values(93.2 + 0.1 * k, 47.5, 60.0))  # Torch-Pruning's row has no FLOPs
    made += records(["+exp=dpm2024_quick", "pruner.decay=sp", "data=cifar10_jpeg"], [1, 2, 3],
                    dpm_values(70.0, 47.2, 55.0, (15, 3, 10)), data="cifar10-jpeg-n5000")
    return made


def baselines_records() -> list[dict]:
    made = []
    for model, acc, params in (("resnet20", 91.5, 272474), ("resnet56", 93.1, 855770)):
        made += records(["+exp=resnet_sgd_baseline", f"model={model}"], [1, 2],
                        lambda seed, acc=acc, params=params: {"metrics": {"test_acc": acc + 0.1 * seed,
                                                                          "best_test_acc": acc}, "params": params})
    return made


def grda_records() -> list[dict]:
    return records(["+exp=grda2020_wrn28_10", "optimizer.mu=0.55"], [1, 2],
                   lambda seed: {"metrics": {"test_acc": 94.2 + 0.1 * seed, "best_test_acc": 94.4},
                                 "sparsity": {"all": 0.93 + 0.01 * seed}})


def fggp_records() -> list[dict]:
    made = []
    for method, acc in (("fggp", 93.2), ("gmp", 92.5)):
        for start, init in (("dense", 0.0), ("erk50", 0.5)):
            made += records([f"+exp=fggp2024_vgg19_bn_{method}", "pruner.sparsity=0.9", f"pruner.init_sparsity={init}"],
                            [1, 2], lambda seed, acc=acc, start=start: {
                                "metrics": {"test_acc": acc + 0.1 * seed}, "pruner": {"start": start},
                                "sparsity": {"prunable": 0.9, "all": 0.88}})
    return made


RECORDS = {"baselines": baselines_records, "dpm2024": dpm_records, "fggp2024": fggp_records, "grda2020": grda_records,
           "sga2024": sga_records}


@pytest.fixture(scope="module")
def shipped():
    """name -> (spec, table) of every shipped table with a plot, from synthetic records."""
    made = {}
    for name in SHIPPED_PLOTS:
        spec = results.load_table_spec(name)
        made[name] = spec, results.table_of_samples(name, spec, results.records_frame(spec, RECORDS[name]()), split=False)
    return made


def ours(data: plots.PlotData) -> list[plots.Series]:
    return [item for item in data.series if not item.published]


def published(data: plots.PlotData) -> list[plots.Series]:
    return [item for item in data.series if item.published]


# ----------------------------------------------------------------------------- our points, where they are


def test_our_points_sit_at_the_columns_x_with_the_std_as_error_bars(shipped):
    spec, table = shipped["sga2024"]
    data = plots.plot_data(spec, table)
    columns = spec["plot"]["x"]
    ours_rows = table[table["n"] > 0]
    assert len(ours(data)) == len(ours_rows) == 4
    for (_, row), item in zip(ours_rows.iterrows(), ours(data)):
        assert item.label.startswith(f"{row['model']}, ")
        drawn = [column for column in columns if not math.isnan(row[column])]
        assert item.xs == tuple(float(columns[c]) for c in drawn)  # exactly the column's x, no shift
        assert item.ys == pytest.approx(tuple(row[c] for c in drawn))
        stds = [row[f"{c}_std"] for c in drawn]
        assert item.yerrs == pytest.approx(tuple(0.0 if math.isnan(s) else s for s in stds))
    adam, sga = (next(s for s in ours(data) if s.label.startswith(f"resnet56, {o}:")) for o in ("Adam", "StochGradAdam"))
    assert adam.xs == sga.xs and adam.ys == sga.ys  # equal values drawn at equal places ...
    assert adam.marker != sga.marker  # ... told apart by their markers
    assert any(err > 0 for err in next(s for s in ours(data) if s.label.startswith("resnet110")).yerrs)


def test_our_scatter_points_sit_at_the_rows_values(shipped):
    spec, table = shipped["dpm2024"]
    data = plots.plot_data(spec, table)
    ours_rows = table[table["n"] > 0]
    assert len(ours(data)) == len(ours_rows) == 7
    for (_, row), item in zip(ours_rows.iterrows(), ours(data)):
        assert item.panel == row["model"]
        assert item.xs == (row["flops_pct"],) and item.ys == (row["acc"],) and item.yerrs == (row["acc_std"],)
        assert f"params {row['params_pct']:.1f}%" in item.label  # the plot's `show`


def test_the_drawn_points_and_error_bars_are_the_data_not_shifted(shipped):
    spec, table = shipped["sga2024"]
    data = plots.plot_data(spec, table)
    fig = plots.figure(data)
    axes = fig.axes[0]
    drawn = {}
    for line in axes.lines:
        if line.get_marker() in plots.OUR_MARKERS and len(line.get_xdata()) > 1:
            pixels = line.get_transform().transform(line.get_xydata())  # where it lands on the canvas
            drawn[line.get_marker()] = pixels
    assert len(drawn) == len(ours(data))  # one curve per row, each its own marker
    for item in ours(data):
        expected = axes.transData.transform(list(zip(item.xs, item.ys)))
        assert drawn[item.marker] == pytest.approx(expected)
    bars = [collection for collection in axes.collections if len(collection.get_segments()) == 10]
    spans = sorted(tuple(round(abs(seg[1][1] - seg[0][1]) / 2, 6) for seg in c.get_segments()) for c in bars)
    expected = sorted(tuple(round(e, 6) for e in item.yerrs) for item in ours(data) if any(item.yerrs))
    assert spans == expected  # error bars: mean ± std, nothing else
    for collection in bars:
        for segment in collection.get_segments():
            assert segment[0][0] == segment[1][0] and segment[0][0] in spec["plot"]["x"].values()


# ----------------------------------------------------------------------------- published cells


def test_every_published_cell_is_drawn_at_its_true_x_and_y_with_its_own_label(shipped):
    spec, table = shipped["sga2024"]
    data = plots.plot_data(spec, table)
    csv = pd.read_csv(results.published_dir() / "sga2024.csv")
    names = {"adam": "Adam", "sga": "StochGradAdam"}
    by_label = {item.label: item for item in published(data)}
    assert len(by_label) == len(published(data)) == len(csv)
    for _, row in csv.iterrows():
        item = by_label[f"published: {row['model']}, {names[row['optimizer']]}"]
        assert item.xs == (50.0,) and item.ys == (row["acc_p50"],) and item.tag == f"{row['model']}, {names[row['optimizer']]}"
        assert item.marker == plots.PUBLISHED_MARKER and item.marker not in plots.OUR_MARKERS

    spec, table = shipped["dpm2024"]
    data = plots.plot_data(spec, table)
    csv = pd.read_csv(results.published_dir() / "dpm2024.csv")
    assert len(published(data)) == len(csv) and len({item.label for item in published(data)}) == len(csv)
    points = {(item.panel, item.xs, item.ys) for item in published(data)}
    for _, row in csv.iterrows():
        if math.isnan(row["flops_pct"]):  # no x given: a line at its y, said so
            line = next(item for item in published(data) if not item.xs)
            assert line.ys == (row["acc"],) and line.panel == row["model"] and "no FLOPs given" in line.tag
        elif math.isnan(row["acc"]):  # no y given: a line at its x, said so
            line = next(item for item in published(data) if not item.ys)
            assert line.xs == (row["flops_pct"],) and line.panel == row["model"] and "no top-1 test accuracy given" in line.tag
        else:
            assert (row["model"], (row["flops_pct"],), (row["acc"],)) in points


@pytest.mark.slow
def test_each_published_point_is_labelled_at_its_point_and_labels_never_overlap(shipped):
    for name in SHIPPED_PLOTS:
        spec, table = shipped[name]
        data = plots.plot_data(spec, table)
        fig = plots.figure(data)
        renderer = fig.canvas.get_renderer()
        for panel, axes in zip(data.panels, fig.axes):
            wanted = [item for item in published(data) if item.panel == panel]
            tags = list(axes.texts)
            assert sorted(t.get_text().replace("\n", " ") for t in tags) == sorted(
                item.tag for item in wanted for _ in (item.xs or [None])), (name, panel)
            at_points = sorted((x, y) for item in wanted for x, y in zip(item.xs, item.ys))
            named = {item.tag for item in wanted if item.xs and item.ys}
            labelled = sorted(tuple(t.xy) for t in tags if t.get_text().replace("\n", " ") in named)
            assert len(labelled) == len(at_points), (name, panel)
            for (x, y), (px, py) in zip(labelled, at_points):  # every point labelled, at the point itself
                assert x == pytest.approx(px) and y == pytest.approx(py), (name, panel, (x, y), (px, py))
            panel_box = axes.get_window_extent(renderer).padded(1)
            boxes = [tag.get_bbox_patch().get_window_extent(renderer) for tag in tags]  # the label's white box
            for i, box in enumerate(boxes):
                assert panel_box.contains(box.x0, box.y0) and panel_box.contains(box.x1, box.y1), (name, i)
                for j in range(i + 1, len(boxes)):
                    assert not box.overlaps(boxes[j]), (name, tags[i].get_text(), tags[j].get_text())


def test_published_points_that_coincide_are_both_drawn_there_and_told_apart(shipped):
    spec, table = shipped["sga2024"]
    table = table.copy()
    same = table["model"].isin(["resnet110", "resnet152"]) & (table["optimizer"] == "sga")
    table.loc[same, "acc_p50_paper"] = 76.5  # two published cells at one point
    data = plots.plot_data(spec, table)
    twins = [item for item in published(data) if item.ys == (76.5,)]
    assert len(twins) == 2 and twins[0].xs == twins[1].xs == (50.0,) and twins[0].tag != twins[1].tag
    fig = plots.figure(data)
    renderer = fig.canvas.get_renderer()
    tags = [text for text in fig.axes[0].texts if text.get_text().replace("\n", " ") in {t.tag for t in twins}]
    assert len(tags) == 2 and tuple(tags[0].xy) == tuple(tags[1].xy) == (50.0, 76.5)  # the data are not moved
    assert not tags[0].get_bbox_patch().get_window_extent(renderer).overlaps(
        tags[1].get_bbox_patch().get_window_extent(renderer))


def test_place_labels_puts_labels_of_one_point_apart_and_inside():
    anchors = [(100.0, 100.0)] * 3
    sizes = [(60.0, 12.0)] * 3
    star = (94.0, 94.0, 106.0, 106.0)
    bounds = (0.0, 0.0, 300.0, 200.0)
    offsets = plots.place_labels(anchors, sizes, [star], bounds, clearance=7.0, step=8.0)
    boxes = [(100 + dx - 30, 100 + dy - 6, 100 + dx + 30, 100 + dy + 6) for dx, dy in offsets]
    for i, box in enumerate(boxes):
        assert plots.boxes_overlap(box, star) == 0
        assert bounds[0] <= box[0] and box[2] <= bounds[2] and bounds[1] <= box[1] and box[3] <= bounds[3]
        assert all(plots.boxes_overlap(box, other) == 0 for other in boxes[i + 1:])
    corner = plots.place_labels([(295.0, 195.0)], [(60.0, 12.0)], [], bounds, clearance=7.0, step=8.0)[0]
    assert corner[0] < 0 and corner[1] < 0  # at the top right corner: below and to the left


# ----------------------------------------------------------------------------- words


def test_labels_name_every_row_key_the_data_the_budget_and_no_bare_values(shipped):
    spec, table = shipped["dpm2024"]
    data = plots.plot_data(spec, table)
    labels = [item.label for item in data.series]
    assert ("resnet56, depgraph, with SL, SP+SR: cifar10-official, 200+100+100 epochs, 2 seeds, params 50.0%" in labels)
    assert ("resnet20, depgraph, with SL, SP: cifar10-jpeg-n5000, 15+3+10 epochs, 3 seeds, params 55.0% "
            "(not the paper's setting)") in labels
    assert "published: vgg16_bn_mlp, otov2, without SL, no DPM (params 4.8%)" in labels
    spec, table = shipped["sga2024"]
    labels = [item.label for item in plots.plot_data(spec, table).series]
    assert "resnet20, Adam: cifar10-jpeg-n5000, 1 epoch, 1 seed (not the paper's setting)" in labels
    assert "resnet110, Adam: cifar10-official, 100 epochs, 3 seeds" in labels
    for name in SHIPPED_PLOTS:
        spec, table = shipped[name]
        data = plots.plot_data(spec, table)
        fig = plots.figure(data)
        words = [item.label for item in data.series] + [item.tag for item in data.series] + list(data.panels)
        words += [text.get_text() for text in fig.legends[0].get_texts()]
        words += [text.get_text() for axes in fig.axes for text in axes.texts]
        assert not [w for w in words if BARE.search(w)], name
        assert not any("1 epochs" in w or "1 seeds" in w for w in words)


def test_a_row_keys_default_words_name_the_key():
    labels = {"model": "{}", "sl": {True: "sparse learning"}}
    assert plots.key_phrase("sl", "True", labels) == "sparse learning"  # a yaml true key meets "True"
    assert plots.key_phrase("sl", "False", labels) == "sl: no"
    assert plots.key_phrase("decay", "sp+sr", labels) == "decay sp+sr"
    assert plots.key_phrase("model", "resnet56", labels) == "resnet56"
    assert plots.key_phrase("sl", float("nan"), labels) == plots.key_phrase("host", "", labels) == ""
    assert plots.key_phrase("epochs", 164.0, {}) == "epochs 164"


def test_a_run_of_several_stages_names_each_stages_epochs():
    spec = results.load_table_spec("dpm2024")
    spec["columns"].update(sparse_epochs="stages.sparse.epochs", finetune_epochs="stages.finetune.epochs")
    spec["plot"]["budget"] = {"epochs": "pretrain", "sparse_epochs": "sparse", "finetune_epochs": "fine-tune"}
    made = records(["+exp=dpm2024_quick", "pruner.decay=sp", "data=cifar10_jpeg"], [1], lambda seed: {
        "metrics": {"test_acc": 70.0}, "pruner": {"flops_pct": 47.0, "params_pct": 55.0},
        "stages": {"pretrain": {"epochs": 15}, "sparse": {"epochs": 3}, "finetune": {"epochs": 10}}},
        data="cifar10-jpeg-n5000")
    data = plots.plot_data(spec, results.build_table("dpm2024", spec, made))
    assert "cifar10-jpeg-n5000, 15+3+10 epochs, 1 seed" in ours(data)[0].label
    assert "budget: pretrain+sparse+fine-tune epochs" in data.notes
    assert plots.budget_text({"epochs": 15, "sparse_epochs": float("nan"), "finetune_epochs": 10.0},
                             {"epochs": "", "sparse_epochs": "", "finetune_epochs": ""}) == "15+10 epochs"


def test_a_plot_section_with_unknown_keys_or_columns_fails_in_one_line_each():
    spec = results.load_table_spec("dpm2024")
    spec["plot"] = {**spec["plot"], "colour": ["host"], "x": "latency_ms", "panels": ["arch"]}
    with pytest.raises(ConfigError) as error:
        plots.plot_data(spec, pd.DataFrame())
    lines = str(error.value).splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("plot: unknown key 'colour'")
    assert lines[1].startswith("plot: 'latency_ms' is not a measured column of the table")
    assert lines[2].startswith("plot: panels names 'arch', not a row key")


def test_a_table_that_compares_side_by_side_is_plotted_in_its_long_form():
    """fggp2024 splits its cells by method for the table; the plot draws one point per method."""
    spec = results.load_table_spec("fggp2024")
    samples = results.records_frame(spec, fggp_records())
    assert "acc_fggp" in results.table_of_samples("fggp2024", spec, samples).columns
    data = plots.plot_data(spec, results.table_of_samples("fggp2024", spec, samples, split=False))
    drawn = sorted((item.panel, item.label.split(":")[0], item.ys) for item in ours(data))
    assert drawn == [("vgg19_bn, ERK 50% start", "vgg19_bn, sparsity 0.9, ERK 50% start, FGGP", (93.35,)),
                     ("vgg19_bn, ERK 50% start", "vgg19_bn, sparsity 0.9, ERK 50% start, GMP", (92.65,)),
                     ("vgg19_bn, dense start", "vgg19_bn, sparsity 0.9, dense start, FGGP", (93.35,)),
                     ("vgg19_bn, dense start", "vgg19_bn, sparsity 0.9, dense start, GMP", (92.65,))]


# ----------------------------------------------------------------------------- nothing clipped


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED_PLOTS)
def test_the_whole_title_legend_and_labels_lie_inside_the_figure(shipped, name):
    spec, table = shipped[name]
    data = plots.plot_data(spec, table)
    fig = plots.figure(data)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    inside = fig.bbox.padded(0.5)
    titles = [text for text in fig.texts if " ".join(text.get_text().split()) == spec["title"]]
    assert len(titles) == 1  # the whole title, wrapped at most
    legend = fig.legends[0]
    assert {item.label for item in ours(data)} <= {text.get_text() for text in legend.get_texts()}
    artists = [titles[0], legend]
    for axes in fig.axes:
        (x0, x1), (y0, y1) = axes.get_xlim(), axes.get_ylim()
        shown = [label for label in axes.get_xticklabels() if x0 <= label.get_position()[0] <= x1]
        shown += [label for label in axes.get_yticklabels() if y0 <= label.get_position()[1] <= y1]
        artists += [axes.title, axes.xaxis.label, axes.yaxis.label, *shown, *axes.texts]
    for artist in artists:
        box = artist.get_window_extent(renderer)
        assert inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1), (name, artist)
    for panel, axes in zip(data.panels, fig.axes):  # every point within its panel's view
        (x0, x1), (y0, y1) = axes.get_xlim(), axes.get_ylim()
        for item in data.series:
            if item.panel == panel:
                assert all(x0 <= x <= x1 for x in item.xs) and all(y0 <= y <= y1 for y in item.ys), item.label
    png = plots.draw(spec, table)
    height, width = imread(io.BytesIO(png)).shape[:2]
    assert width >= fig.bbox.width * 0.9 and height >= fig.bbox.height * 0.9  # the saved image is the figure


def test_a_panel_with_values_on_one_axis_only_shows_no_scale_on_the_other(shipped):
    spec, table = shipped["dpm2024"]
    data = plots.plot_data(spec, table)
    fig = plots.figure(data)
    for panel, axes in zip(data.panels, fig.axes):
        in_panel = [item for item in data.series if item.panel == panel]
        has_x, has_y = any(item.xs for item in in_panel), any(item.ys for item in in_panel)
        assert bool(len(axes.get_yticks())) == has_y and bool(len(axes.get_xticks())) == has_x, panel
    assert [panel for panel in data.panels if not any(item.ys for item in data.series if item.panel == panel)] == [
        "resnet50"]  # the paper gives ResNet-50's FLOPs without its top-1


def test_a_panel_per_model_and_one_colour_per_host(shipped):
    spec, table = shipped["dpm2024"]
    data = plots.plot_data(spec, table)
    assert set(data.panels) == {"resnet20", "resnet56", "vgg16_bn", "vgg16_bn_mlp", "resnet50"}
    assert all(item.panel == item.label.removeprefix("published: ").split(", ")[0] for item in data.series)
    colours = {item.color_key for item in data.series if item.panel == "resnet56"}
    assert colours == {("depgraph", "True"), ("depgraph", "False"), ("bnscale", "True")}
    shapes = {item.label.split(": ")[0].rsplit(", ", 1)[1]: item.marker for item in ours(data)}
    assert len(set(shapes.values())) == len(shapes)  # one shape per decay
