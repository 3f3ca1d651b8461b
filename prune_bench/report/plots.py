"""A table as one figure: our cells (mean ± std over seeds) and the published numbers beside them.

The figure is plain data first: `plot_data(spec, table)` returns the panels and, per panel, the
series to draw (legend label, x values, y values, y errors, marker, colour key, published or
ours); the tests check that data. `figure(data)` only lays it out and draws it, `draw(spec,
table)` renders it as PNG bytes. Nothing is moved for display: every point sits at its value and
our error bars are the std over seeds. Only the short labels beside the published points are
placed (`place_labels`) so that they cover neither one another nor any point (nor, where they
can, our curves); a label that could not sit right beside its point has a thin line to it.

How to read a figure: our cells are filled markers with error bars (hollow and dotted: a row
outside the paper's setting), each row with its legend entry; published cells are hollow stars,
each named by a label beside it (one legend entry says so); a published cell with a y but no x
(the paper gives no value of the x column) is a dotted horizontal line at its y, named the same
way. Our rows and the published rows with the same colour keys share a colour. The title, the
panels and the legend below them are laid out inside the figure (constrained layout).

A table's `plot:` section (conf/table/<name>.yaml):

    kind: lines            # lines: one curve per row; x maps measured columns to x positions
    x: {acc_dense: 0, acc_p10: 10, ...}
    kind: scatter          # scatter: one point per row at (x column, y column)
    x: flops_pct
    y: acc
    xlabel: FLOPs (% of the original)      # axis titles, in the paper's units
    ylabel: top-1 test accuracy (%)
    xtick_scale: 1.0e-6    # optional: tick labels show x times this (the data are not changed),
                           #   e.g. parameters in millions
    labels:                # optional: how row-key values read in legends, panel titles and tags;
      model: "{}"          #   a format with one {} (the value), or a map value -> text
      sl: {"True": sparse learning, "False": no sparse learning}
                           #   default: "key value"; booleans "key: yes" / "key: no";
                           #   empty values are left out
    panels: [model]        # optional: one panel per value of these row keys (default: one panel)
    color: [model, host, sl]   # optional: the row keys that choose a colour (default: all of them)
    marker: [decay]        # optional: the row keys that choose our marker's shape
                           #   (default: one shape per series)
    tag: [decay]           # optional: the row keys of the short label beside each published point
                           #   (default: the row keys that are not panels)
    budget: {epochs: pretrain, sparse_epochs: sparse}   # optional: the columns that hold the epochs
                           #   of a run's stages, named: legends say "15+3 epochs" and the notes
                           #   "budget: pretrain+sparse epochs" (default: {epochs: ""}, the table's)
    show: {params_pct: "params {:.1f}%"}   # optional: more columns in our legend labels (the mean),
                           #   one format with {} each; a published series' label (its full name,
                           #   not drawn) holds the paper's value
    note: ...              # optional: one more line under the title
"""

from __future__ import annotations

import io
import math
import textwrap
from dataclasses import dataclass, field, replace

import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, NullLocator

from ..errors import ConfigError
from ..humanize import n_epochs
from .cells import PAPER

PLOT_KEYS = {"kind", "x", "y", "xlabel", "ylabel", "xtick_scale", "labels", "panels", "color", "marker", "tag",
             "budget", "show", "note"}
OUR_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "p", "d"]  # never "*": that is published
PUBLISHED_MARKER = "*"
PUBLISHED_SIZE = 12.0  # points
OUR_SIZE = 5.5  # points
MAX_PANEL_COLUMNS = 3
DPI = 150
FONT = 8.0  # points: tick labels, legend; titles a little larger
PANEL_WIDTH = 3.6  # inches
AXES_HEIGHT = 3.0  # inches
LABEL_STEP = 4.0  # points between the rings of candidate places of a published point's label
READING = "ours: mean ± std over seeds; hollow markers, dotted lines: not the paper's setting"
PUBLISHED_ENTRY = "published (named beside each star)"
PUBLISHED_LINE_ENTRY = "published with one value of the two (a line at it, named beside it)"
TAG_LINE = 30  # characters: a published point's label breaks between phrases beyond this
OTHER_SETTING = " (not the paper's setting)"
MIN_X_SPAN = 0.04  # a panel's x range spans at least this fraction of its largest |x|


@dataclass(frozen=True)
class Series:
    """What one legend entry draws in one panel."""
    label: str  # ours: the legend entry; published: the full name (drawn: the tag; the legend has one entry)
    panel: str  # the panel's title ("" with one panel)
    xs: tuple[float, ...]  # empty for a published value without an x (a horizontal line at ys[0])
    ys: tuple[float, ...]
    yerrs: tuple[float, ...]  # ours: the std over seeds of each point (0.0 with one seed); published: ()
    marker: str
    color_key: tuple[str, ...]  # the colour keys' values: ours and published with equal keys share a colour
    published: bool = False
    in_paper_setting: bool = True
    connect: bool = False  # a curve through the points (ours, kind lines)
    tag: str = ""  # published: the short label beside its point(s)


@dataclass(frozen=True)
class PlotData:
    """One figure: its text and its panels' series."""
    title: str
    notes: tuple[str, ...]  # lines under the title: how to read the figure, the budget, the plot's note
    xlabel: str
    ylabel: str
    panels: tuple[str, ...]
    series: tuple[Series, ...]
    xtick_scale: float = 1.0
    colors: dict = field(default_factory=dict)  # colour key -> index into the palette


# ----------------------------------------------------------------------------- text of values


def missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def value_text(value) -> str:
    """A row key's value as text: missing is "", whole floats lose their ".0"."""
    if missing(value):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def key_phrase(key: str, value, labels: dict) -> str:
    """How one row key's value reads: the plot's `labels`, else "key value" ("key: yes" / "key: no"
    for booleans); "" for an empty value."""
    text = value_text(value)
    if not text:
        return ""
    wanted = labels.get(key)
    if isinstance(wanted, dict):
        by_text = {value_text(k): v for k, v in wanted.items()}
        if text in by_text:
            return str(by_text[text])
    elif isinstance(wanted, str):
        return wanted.format(text)
    if text in ("True", "False"):
        return f"{key}: {'yes' if text == 'True' else 'no'}"
    return f"{key} {text}"


def keys_phrase(row, keys: list[str], labels: dict) -> str:
    return ", ".join(phrase for phrase in (key_phrase(key, row[key], labels) for key in keys) if phrase)


def budget_text(row, budget: dict) -> str:
    """The stage epochs of a row: "1 epoch", "15+3+10 epochs" (stages without a value left out)."""
    epochs = [int(row[column]) for column in budget if column in row and not missing(row[column])]
    if not epochs:
        return "epochs unknown"
    if len(epochs) == 1:
        return n_epochs(epochs[0])
    return "+".join(str(e) for e in epochs) + " epochs"


def seeds_text(n: int) -> str:
    return "1 seed" if n == 1 else f"{n} seeds"


def shown_text(row, show: dict, suffix: str = "") -> str:
    """The `show` columns' values of a row (published rows: the `<column>_paper` values)."""
    parts = []
    for column, form in show.items():
        value = row.get(f"{column}{suffix}")
        if not missing(value):
            parts.append(str(form).format(value))
    return ", ".join(parts)


# ----------------------------------------------------------------------------- the plot's data


def check_plot(spec: dict) -> dict:
    """The table's `plot:` section, its keys and columns checked (one line per problem)."""
    plot = spec.get("plot") or {}
    problems = [f"plot: unknown key '{key}'; allowed: {', '.join(sorted(PLOT_KEYS))}" for key in plot
                if key not in PLOT_KEYS]
    kind = plot.get("kind", "lines")
    columns = set(spec["columns"])
    row_keys = set(spec["rows"])
    if kind == "lines":
        if not isinstance(plot.get("x"), dict):
            problems.append("plot: kind lines needs x: {measured column: x position, ...}")
        wanted = list(plot.get("x") or {})
    elif kind == "scatter":
        wanted = [plot.get("x"), plot.get("y")]
    else:
        problems.append(f"plot: unknown kind '{kind}'; allowed: lines, scatter")
        wanted = []
    wanted += list(plot.get("show") or {})
    problems += [f"plot: '{column}' is not a measured column of the table ({', '.join(spec['columns'])})"
                 for column in wanted if column not in columns]
    for key in ("panels", "color", "marker", "tag"):
        problems += [f"plot: {key} names '{name}', not a row key ({', '.join(spec['rows'])})"
                     for name in plot.get(key) or [] if name not in row_keys]
    problems += [f"plot: budget names '{column}', neither 'epochs' nor a measured column"
                 for column in plot.get("budget") or {} if column != "epochs" and column not in columns]
    if problems:
        raise ConfigError("\n".join(problems))
    return plot


def points(plot: dict, row, suffix: str = "") -> list[tuple[float, float, str]]:
    """(x, y, y column) of each point a row has (published rows: suffix "_paper" on compared columns)."""
    if plot.get("kind", "lines") == "lines":
        found = [(x, row.get(f"{column}{suffix}"), column) for column, x in plot["x"].items()]
    else:
        found = [(row.get(plot["x"]), row.get(plot["y"]), plot["y"])]
    return [(float(x), float(y), column) for x, y, column in found if not missing(x) and not missing(y)]


def plot_data(spec: dict, table: pd.DataFrame) -> PlotData:
    """Everything the table's figure draws: our rows with runs (n > 0) and every published cell."""
    plot = check_plot(spec)
    row_keys = list(spec["rows"])
    labels = plot.get("labels") or {}
    panel_keys = list(plot.get("panels") or [])
    color_keys = list(plot.get("color") or row_keys)
    marker_keys = plot.get("marker")
    tag_keys = list(plot.get("tag") or [k for k in row_keys if k not in panel_keys])
    budget = dict(plot.get("budget") or {"epochs": ""})
    show = dict(plot.get("show") or {})
    lines = plot.get("kind", "lines") == "lines"

    def panel_of(row) -> str:
        return keys_phrase(row, panel_keys, labels)

    def color_of(row) -> tuple[str, ...]:
        return tuple(value_text(row[k]) for k in color_keys)

    ours = []
    for _, row in table[table["n"] > 0].iterrows():
        found = points(plot, row)
        if not found:
            continue
        in_paper = row["setting"] in (PAPER, "")
        details = [value_text(row["data"]), budget_text(row, budget), seeds_text(int(row["n"]))]
        details += [text for text in (value_text(row["variant"]), shown_text(row, show)) if text]
        label = f"{keys_phrase(row, row_keys, labels) or 'ours'}: {', '.join(details)}"
        if not in_paper:
            label += OTHER_SETTING
        yerrs = tuple(0.0 if missing(row.get(f"{c}_std")) else float(row[f"{c}_std"]) for _, _, c in found)
        ours.append((row, Series(label, panel_of(row), tuple(x for x, _, _ in found), tuple(y for _, y, _ in found),
                                 yerrs, "", color_of(row), False, in_paper, lines)))

    published = []
    compared = list(spec.get("published", {}).get("columns", []))
    paper_rows = table[table["setting"] == PAPER].drop_duplicates(subset=row_keys) if compared else table.iloc[:0]
    for _, row in paper_rows.iterrows():
        values = row.copy()
        for column in spec["columns"]:  # the published value where the paper gives one, else none
            values[column] = row.get(f"{column}_paper") if column in compared else float("nan")
        found = points(plot, values)
        name = keys_phrase(row, row_keys, labels) or "published"
        extra = shown_text(values, show)
        label = f"published: {name}" + (f" ({extra})" if extra else "")
        tag = keys_phrase(row, tag_keys, labels)
        if found:
            published.append(Series(label, panel_of(row), tuple(x for x, _, _ in found), tuple(y for _, y, _ in found),
                                    (), PUBLISHED_MARKER, color_of(row), True, True, False, tag))
        elif not lines and not missing(values[plot["y"]]):  # a y without an x: a line at the y
            x_name = (plot.get("xlabel") or plot["x"]).split(" (")[0]
            tag = f"{tag}: no {x_name} given" if tag else f"no {x_name} given"
            published.append(Series(label, panel_of(row), (), (float(values[plot["y"]]),), (), PUBLISHED_MARKER,
                                    color_of(row), True, True, False, tag))
        elif not lines and not missing(values[plot["x"]]):  # an x without a y: a line at the x
            y_name = (plot.get("ylabel") or plot["y"]).split(" (")[0]
            tag = f"{tag}: no {y_name} given" if tag else f"no {y_name} given"
            published.append(Series(label, panel_of(row), (float(values[plot["x"]]),), (), (), PUBLISHED_MARKER,
                                    color_of(row), True, True, False, tag))

    ours = name_other_settings(ours)
    ours_series = assign_markers(ours, marker_keys)
    series = tuple(ours_series + published)
    panels = tuple(dict.fromkeys(item.panel for item in series))
    colors = {key: i for i, key in enumerate(dict.fromkeys(item.color_key for item in series))}
    notes = [READING]
    if any(budget.values()):
        notes.append("budget: " + "+".join(name or column for column, name in budget.items()) + " epochs")
    if plot.get("note"):
        notes.append(str(plot["note"]))
    return PlotData(spec["title"], tuple(notes), plot.get("xlabel", ""), plot.get("ylabel", ""), panels, series,
                    float(plot.get("xtick_scale", 1.0)), colors)


def name_other_settings(ours: list[tuple]) -> list[tuple]:
    """Rows outside the paper's setting whose labels would be equal say what differs from it."""
    counts: dict[str, int] = {}
    for _, item in ours:
        counts[item.label] = counts.get(item.label, 0) + 1
    named = []
    for row, item in ours:
        if counts[item.label] > 1 and item.label.endswith(OTHER_SETTING):
            differs = str(row["setting"]).removeprefix("other: ")
            item = replace(item, label=item.label.removesuffix(OTHER_SETTING) + f" (not the paper's setting: {differs})")
        named.append((row, item))
    return named


def assign_markers(ours: list[tuple], marker_keys: list[str] | None) -> list[Series]:
    """Our series' markers: one shape per value of the marker keys (or per series); two series of
    one panel and colour never share a shape."""
    shapes: dict[tuple, int] = {}
    taken: set[tuple] = set()
    result = []
    for index, (row, item) in enumerate(ours):
        if marker_keys:
            key = tuple(value_text(row[k]) for k in marker_keys)
            start = shapes.setdefault(key, len(shapes))
        else:
            start = index
        for step in range(len(OUR_MARKERS)):
            marker = OUR_MARKERS[(start + step) % len(OUR_MARKERS)]
            if (item.panel, item.color_key, marker) not in taken:
                break
        taken.add((item.panel, item.color_key, marker))
        result.append(replace(item, marker=marker))
    return result


# ----------------------------------------------------------------------------- labels that cover nothing


def boxes_overlap(a: tuple, b: tuple) -> float:
    """The overlap area of two boxes (x0, y0, x1, y1)."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    return width * height if width > 0 and height > 0 else 0.0


def candidate_offsets(width: float, height: float, clearance: float, step: float,
                      rings: int = 12) -> list[tuple[float, float]]:
    """Offsets of a label's centre from its point, nearest first: right, left, above, below and the
    diagonals, the label's edge `clearance` from the point, then one ring `step` further out each time."""
    offsets = []
    for ring in range(rings):
        dx, dy = width / 2 + clearance + ring * step, height / 2 + clearance + ring * step
        offsets += [(dx, 0), (-dx, 0), (0, dy), (0, -dy), (dx, dy), (-dx, dy), (dx, -dy), (-dx, -dy)]
    return offsets


def segments_cross(a: tuple, b: tuple) -> bool:
    """Whether two segments ((x0, y0), (x1, y1)) cross (touching ends do not count)."""
    def side(p, q, r) -> float:
        return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])
    (p1, p2), (q1, q2) = a, b
    return side(p1, p2, q1) * side(p1, p2, q2) < 0 and side(q1, q2, p1) * side(q1, q2, p2) < 0


def leader(anchor: tuple, box: tuple) -> tuple:
    """The line from a point to the nearest point of its label's box."""
    end = (min(max(anchor[0], box[0]), box[2]), min(max(anchor[1], box[1]), box[3]))
    return (anchor, end)


def segment_in_box(segment: tuple, box: tuple, samples: int = 12) -> int:
    """How many of `samples` points along a segment lie inside a box."""
    (x0, y0), (x1, y1) = segment
    return sum(box[0] < x0 + (x1 - x0) * t / samples < box[2] and box[1] < y0 + (y1 - y0) * t / samples < box[3]
               for t in range(1, samples))


def place_labels(anchors: list[tuple[float, float]], sizes: list[tuple[float, float]], obstacles: list[tuple],
                 bounds: tuple, clearance: float, step: float, curves: tuple = ()) -> list[tuple[float, float]]:
    """Offsets (display units) of each label's centre from its anchor, so that labels lie inside
    `bounds` and cover neither one another nor the `obstacles` (boxes (x0, y0, x1, y1) of the drawn
    points) nor, where they can, the `curves` (segments ((x0, y0), (x1, y1)) of drawn lines), their
    lines to their points crossing no label and no other such line; among the free places the one
    nearest its point (right of it first), where none is free the least bad. The anchors never move."""
    placed: list[tuple] = []
    lines: list[tuple] = []
    offsets = []
    for anchor, (width, height) in zip(anchors, sizes):
        best, best_cost = None, math.inf
        for order, (dx, dy) in enumerate(candidate_offsets(width, height, clearance, step)):
            cx, cy = anchor[0] + dx, anchor[1] + dy
            box = (cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2)
            outside = max(0.0, bounds[0] - box[0]) + max(0.0, box[2] - bounds[2]) \
                + max(0.0, bounds[1] - box[1]) + max(0.0, box[3] - bounds[3])
            line = leader(anchor, box)
            on_labels = sum(boxes_overlap(box, other) for other in placed)
            on_points = sum(boxes_overlap(box, other) for other in obstacles)
            crossings = sum(segment_in_box(line, other) for other in placed) \
                + sum(segments_cross(line, other) for other in lines)
            on_curves = sum(segment_in_box(curve, box) for curve in curves)
            gap = math.hypot(line[1][0] - line[0][0], line[1][1] - line[0][1])
            cost = (1e6 * outside + 1e3 * on_labels + 20 * on_points + 300 * crossings + 30 * on_curves + gap
                    + 1e-3 * order)  # at equal cost, the first direction (right, left, above, below)
            if cost < best_cost:
                best, best_cost = (dx, dy, box, line), cost
        offsets.append(best[:2])
        placed.append(best[2])
        lines.append(best[3])
    return offsets


# ----------------------------------------------------------------------------- drawing


def palette(n_colors: int):
    return colormaps["tab10" if n_colors <= 10 else "tab20"]


def legend_columns(labels: list[str], width_in: float) -> int:
    """How many legend columns fit the figure's width (an estimate from the longest label)."""
    longest = max((len(label) for label in labels), default=1)
    entry_points = longest * FONT * 0.56 + 30
    return max(1, min(len(labels), int(width_in * 72 * 0.96 // entry_points)))


def figure(data: PlotData) -> Figure:
    """The figure of `data`, laid out (constrained: the title, panels and the legend below them all
    inside the figure) and drawn once, with the published points' labels placed."""
    n_panels = max(1, len(data.panels))
    grid_rows = math.ceil(n_panels / MAX_PANEL_COLUMNS)
    grid_columns = math.ceil(n_panels / grid_rows)
    width = max(6.5, PANEL_WIDTH * grid_columns + 0.8)
    labels = list(dict.fromkeys(item.label for item in data.series if not item.published))
    labels += [entry for entry, wanted in ((PUBLISHED_ENTRY, any(i.published and i.xs for i in data.series)),
                                           (PUBLISHED_LINE_ENTRY, any(i.published and not i.xs for i in data.series)))
               if wanted]
    columns = legend_columns(labels, width)
    wrap_chars = int(width * 72 / (FONT * 0.6))
    title = textwrap.fill(data.title, int(width * 72 / ((FONT + 1.5) * 0.55)))
    notes = "\n".join(textwrap.fill(note, wrap_chars) for note in data.notes)
    legend_rows = math.ceil(len(labels) / columns) + notes.count("\n") + 1
    height = (grid_rows * (AXES_HEIGHT + 0.9) + (title.count("\n") + 1) * (FONT + 1.5) * 1.5 / 72
              + legend_rows * FONT * 1.55 / 72 + (0.25 * grid_rows if any(data.panels) else 0))
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.subplots(grid_rows, grid_columns, squeeze=False).flatten()
    for unused in grid[n_panels:]:
        unused.remove()
    axes_of = dict(zip(data.panels, grid))
    colors = palette(len(data.colors))
    handles = {}
    for item in data.series:
        axes = axes_of[item.panel]
        color = colors(data.colors[item.color_key] % colors.N)
        if item.published and not (item.xs and item.ys):
            if item.ys:
                axes.axhline(item.ys[0], color=color, linestyle=(0, (1, 2)), linewidth=1.3, zorder=2)
            else:
                axes.axvline(item.xs[0], color=color, linestyle=(0, (1, 2)), linewidth=1.3, zorder=2)
            handles.setdefault(PUBLISHED_LINE_ENTRY, Line2D([], [], color="0.3", linestyle=(0, (1, 2)), linewidth=1.3))
            continue
        if item.published:
            axes.plot(item.xs, item.ys, linestyle="none", marker=PUBLISHED_MARKER, markersize=PUBLISHED_SIZE,
                      markerfacecolor="none", markeredgecolor=color, markeredgewidth=1.3, zorder=4)
            handles.setdefault(PUBLISHED_ENTRY, Line2D([], [], linestyle="none", marker=PUBLISHED_MARKER,
                                                       markersize=PUBLISHED_SIZE, markerfacecolor="none", markeredgecolor="0.3",
                                                       markeredgewidth=1.3))
            continue
        style = ("-" if item.in_paper_setting else ":") if item.connect else "none"
        yerr = item.yerrs if any(item.yerrs) else None
        handles[item.label] = axes.errorbar(item.xs, item.ys, yerr=yerr, marker=item.marker, markersize=OUR_SIZE,
                                            color=color, linestyle=style, linewidth=1.2, capsize=2.5, elinewidth=1.0,
                                            zorder=3, markerfacecolor=color if item.in_paper_setting else "white")
    ordered = [label for label in labels if label in handles]  # ours first, then the published entries
    for panel, axes in axes_of.items():
        if panel:
            axes.set_title(panel, fontsize=FONT + 0.5)
        axes.set_xlabel(data.xlabel, fontsize=FONT + 0.5)
        axes.set_ylabel(data.ylabel, fontsize=FONT + 0.5)
        axes.tick_params(labelsize=FONT)
        axes.grid(alpha=0.3)
        axes.margins(x=0.1, y=0.12)  # room for the labels beside the outermost points
        if data.xtick_scale != 1.0:
            axes.xaxis.set_major_formatter(FuncFormatter(scaled_tick(data.xtick_scale)))
        in_panel = [item for item in data.series if item.panel == panel]
        if not any(item.ys for item in in_panel):  # only lines at an x (no y given): no made-up y scale
            axes.yaxis.set_major_locator(NullLocator())
        if not any(item.xs for item in in_panel):
            axes.xaxis.set_major_locator(NullLocator())
    fig.suptitle(title, fontsize=FONT + 1.5)
    for axes in axes_of.values():
        widen_x(axes)
    fig.legend([handles[label] for label in ordered], ordered, loc="outside lower center", ncols=columns, fontsize=FONT,
               title=notes, title_fontsize=FONT, alignment="left", frameon=False)
    fig.canvas.draw()  # the layout: every panel's place is final
    for panel, axes in axes_of.items():
        label_published_points(fig, axes, [item for item in data.series if item.panel == panel], data, colors)
    fig.canvas.draw()  # with the labels: every artist where the PNG shows it
    return fig


def label_published_points(fig: Figure, axes, series: list[Series], data: PlotData, colors) -> None:
    """Each published point's tag beside it, placed so that tags cover no tag and no point; a tag
    moved away from its point has a thin line to it."""
    renderer = fig.canvas.get_renderer()
    to_pixels = axes.transData.transform
    bounds = tuple(axes.get_window_extent(renderer).extents)
    obstacles = []
    for item in series:
        half = (PUBLISHED_SIZE if item.published else OUR_SIZE) * DPI / 72 / 2
        for index, (x, y) in enumerate(zip(item.xs, item.ys)):
            px, py = to_pixels((x, y))
            obstacles.append((px - half, py - half, px + half, py + half))
            if item.yerrs and item.yerrs[index]:
                low, high = to_pixels((x, y - item.yerrs[index]))[1], to_pixels((x, y + item.yerrs[index]))[1]
                obstacles.append((px - 2, low, px + 2, high))
    anchors, wanted = [], []
    for item in series:
        if not (item.published and item.tag):
            continue
        if item.xs and item.ys:
            anchors += [tuple(to_pixels((x, y))) for x, y in zip(item.xs, item.ys)]
            wanted += [(item, (x, y)) for x, y in zip(item.xs, item.ys)]
        elif item.xs:  # a line at the x: its tag near the panel's top
            px, py = to_pixels((item.xs[0], 0))[0], bounds[3] - 0.08 * (bounds[3] - bounds[1])
            anchors.append((px, py))
            wanted.append((item, tuple(axes.transData.inverted().transform((px, py)))))
        else:  # a line at the y: its tag near the panel's right end
            px, py = bounds[2] - 0.08 * (bounds[2] - bounds[0]), to_pixels((0, item.ys[0]))[1]
            anchors.append((px, py))
            wanted.append((item, tuple(axes.transData.inverted().transform((px, py)))))
    sizes = []
    for item, xy in wanted:
        probe = axes.annotate(tag_lines(item.tag), xy, fontsize=FONT - 0.5)
        extent = probe.get_window_extent(renderer)
        sizes.append((extent.width + 5, extent.height + 5))  # and the white box around it
        probe.remove()
    step = LABEL_STEP * DPI / 72
    clearance = (PUBLISHED_SIZE / 2 + 1) * DPI / 72  # just clear of the star
    curves = [(tuple(to_pixels(a)), tuple(to_pixels(b))) for item in series if item.connect
              for a, b in zip(zip(item.xs, item.ys), zip(item.xs[1:], item.ys[1:]))]
    offsets = place_labels(anchors, sizes, obstacles, bounds, clearance, step, tuple(curves))
    for (item, xy), (width, height), (dx, dy) in zip(wanted, sizes, offsets):
        color = colors(data.colors[item.color_key] % colors.N)
        gap = math.hypot(max(0.0, abs(dx) - width / 2), max(0.0, abs(dy) - height / 2))
        far = gap > clearance + step / 2  # not beside its point: a line to it
        tag = axes.annotate(tag_lines(item.tag), xy, xytext=(dx * 72 / DPI, dy * 72 / DPI), textcoords="offset points",
                            ha="center", va="center", fontsize=FONT - 0.5, color=color, zorder=5,
                            bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none",
                                  "alpha": 0.85},
                            arrowprops={"arrowstyle": "-", "color": color, "linewidth": 0.6, "shrinkA": 0,
                                        "shrinkB": 5} if far else None)
        tag.set_in_layout(False)  # placed inside the panel, after the layout


def scaled_tick(scale: float):
    """A tick formatter that shows x times `scale` (e.g. parameters in millions)."""
    def text(value: float, _position) -> str:
        return f"{value * scale:g}"
    return text


def tag_lines(tag: str) -> str:
    """A published point's label in lines of about TAG_LINE characters, broken between phrases."""
    lines = [""]
    for phrase in tag.split(", "):
        if lines[-1] and len(lines[-1]) + len(phrase) + 2 > TAG_LINE:
            lines[-1] += ","
            lines.append(phrase)
        else:
            lines[-1] = f"{lines[-1]}, {phrase}" if lines[-1] else phrase
    return "\n".join(lines)


def widen_x(axes) -> None:
    """A panel whose points crowd a sliver of x (e.g. FLOPs 47.17 ... 47.23) spans at least
    MIN_X_SPAN of its largest |x|, centred on the points, so that noise does not look like a trend."""
    low, high = axes.get_xlim()
    wanted = MIN_X_SPAN * max(abs(low), abs(high))
    if high - low < wanted:
        middle = (low + high) / 2
        axes.set_xlim(middle - wanted / 2, middle + wanted / 2)


def draw(spec: dict, table: pd.DataFrame) -> bytes:
    """The PNG bytes of the table's figure."""
    fig = figure(plot_data(spec, table))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.05)
    return buffer.getvalue()
