"""A table as a PNG: our cells, and the published numbers its title claims, beside them.

- `lines` (plot.x maps measured columns to x positions): one curve per row of the table;
  `scatter` (plot.x, plot.y: measured columns): one point per row.
- Every row's label names its data and budget ("cifar10-official, 100 epochs"), and a row outside
  the paper's setting says so and is dashed and hollow.
- Published numbers are drawn as stars, in the colour of our row with the same row keys, at the
  x of their column (lines), or at the published x (scatter; else our row's x).
- Nothing hides anything: our series have distinct markers, and series whose points would
  cover each other are shifted sideways by a few points (a display offset; the values are not
  changed). Series that cover nothing stay where their values are.
"""

from __future__ import annotations

import io
import math
import textwrap
from dataclasses import dataclass, field

import matplotlib
import pandas as pd

matplotlib.use("Agg")  # files only, never a window

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
from matplotlib.transforms import ScaledTranslation  # noqa: E402

from ..humanize import n_epochs  # noqa: E402
from .cells import PAPER  # noqa: E402

MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "p", "d"]
DODGE_POINTS = 6.0  # sideways shift between series that would cover each other, in points


@dataclass
class Series:
    label: str
    xs: list
    ys: list
    yerr: list = field(default_factory=list)
    published: bool = False
    in_paper_setting: bool = True
    color_key: tuple = ()
    marker: str = "o"
    dodge: float = 0.0  # points


def epochs_text(epochs) -> str:
    if epochs is None or (isinstance(epochs, float) and math.isnan(epochs)):
        return "epochs unknown"
    return n_epochs(int(epochs))


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _row_name(row, spec: dict) -> str:
    """The row keys: names as they are, numbers as key=value, empty ones left out."""
    parts = []
    for key in spec["rows"]:
        text = "" if _missing(row[key]) else str(row[key])
        if text:
            parts.append(f"{key}={text}" if text[:1].isdigit() else text)
    return " / ".join(parts)


def plot_series(spec: dict, table: pd.DataFrame) -> list[Series]:
    """Our rows with runs (n > 0) and the published points, with markers and sideways shifts
    that keep every point visible."""
    plot = spec["plot"]
    compared = set(spec.get("published", {}).get("columns", []))
    ours = table[table["n"] > 0]
    series = []
    for _, row in ours.iterrows():
        in_paper = row["setting"] in (PAPER, "")
        label = f"{_row_name(row, spec)}: {row['data']}, {epochs_text(row['epochs'])}"
        if row["variant"]:
            label += f", {row['variant']}"
        if not in_paper:
            label += " (not the paper's setting)"
        xs, ys, errors = [], [], []
        for x, y_column in _points(plot, row):
            if _missing(row[y_column]) or _missing(x):
                continue
            xs.append(x)
            ys.append(row[y_column])
            std = row.get(f"{y_column}_std")
            errors.append(0.0 if _missing(std) else std)
        if xs:
            series.append(Series(label, xs, ys, errors, False, in_paper, tuple(row[k] for k in spec["rows"])))
    for _, row in table[table["setting"] == PAPER].drop_duplicates(subset=list(spec["rows"])).iterrows():
        xs, ys = [], []
        for x, y_column in _points(plot, row):
            if y_column not in compared or _missing(row.get(f"{y_column}_paper")):
                continue
            if plot.get("kind", "lines") != "lines":
                x = _published_x(plot["x"], row, table, spec, compared)
            if not _missing(x):
                xs.append(x)
                ys.append(row[f"{y_column}_paper"])
        if xs:
            series.append(Series(f"published: {_row_name(row, spec)}", xs, ys, [], True, True,
                                 tuple(row[k] for k in spec["rows"]), "*"))
    for i, item in enumerate(series):
        if not item.published:
            item.marker = MARKERS[i % len(MARKERS)]
    _dodge(series)
    return series


def overlapping(a: Series, b: Series, x_span: float, y_span: float) -> bool:
    """Whether two series have a point drawn in the same place (within 2% of each axis' range)."""
    return any(abs(xa - xb) <= 0.02 * x_span and abs(ya - yb) <= 0.02 * y_span
               for xa, ya in zip(a.xs, a.ys) for xb, yb in zip(b.xs, b.ys))


def _dodge(series: list[Series]) -> None:
    """Shift series that would cover each other sideways (0, +1, -1, +2, ... steps), each to the
    nearest slot no overlapping series holds; the others stay where their values are."""
    xs = [x for item in series for x in item.xs]
    ys = [y for item in series for y in item.ys]
    x_span = (max(xs) - min(xs)) or 1.0 if xs else 1.0
    y_span = (max(ys) - min(ys)) or 1.0 if ys else 1.0
    slots = [0] + [sign * k for k in range(1, len(series) + 1) for sign in (1, -1)]
    placed: list[Series] = []
    for item in series:
        taken = {round(other.dodge / DODGE_POINTS) for other in placed if overlapping(item, other, x_span, y_span)}
        item.dodge = next(slot for slot in slots if slot not in taken) * DODGE_POINTS
        placed.append(item)


def _points(plot: dict, row) -> list[tuple]:
    """(x, y column) of each point a row contributes."""
    if plot.get("kind", "lines") == "lines":
        return [(x, column) for column, x in plot["x"].items()]
    return [(row[plot["x"]], plot["y"])]


def _published_x(x_column: str, row, table: pd.DataFrame, spec: dict, compared: set):
    """A published scatter point's x: the published x if the paper gives it, else ours for the
    same row keys (the paper setting's first, then any)."""
    if x_column in compared and not _missing(row.get(f"{x_column}_paper")):
        return row[f"{x_column}_paper"]
    same = table
    for key in spec["rows"]:
        same = same[same[key] == row[key]]
    values = same.sort_values("setting", key=lambda s: s != PAPER, kind="stable")[x_column].dropna()
    return values.iloc[0] if len(values) else float("nan")


def draw(spec: dict, table: pd.DataFrame, name: str) -> bytes:
    """The PNG bytes of the table's plot."""
    plot = spec["plot"]
    series = plot_series(spec, table)
    keys = list(dict.fromkeys(item.color_key for item in series))
    palette = plt.get_cmap("tab10" if len(keys) <= 10 else "tab20")
    colors = {key: palette(i % palette.N) for i, key in enumerate(keys)}
    figure, axes = plt.subplots(figsize=(10, 5))
    for item in series:
        shift = axes.transData + ScaledTranslation(item.dodge / 72, 0, figure.dpi_scale_trans)
        color = colors[item.color_key]
        if item.published:
            axes.plot(item.xs, item.ys, linestyle="none", marker="*", markersize=13, markerfacecolor="none",
                      markeredgecolor=color, markeredgewidth=1.5, transform=shift, label=item.label, zorder=3)
            continue
        line = "-" if plot.get("kind", "lines") == "lines" else "none"
        if not item.in_paper_setting and line == "-":
            line = "--"
        axes.errorbar(item.xs, item.ys, yerr=item.yerr, marker=item.marker, color=color, capsize=3, linestyle=line,
                      markerfacecolor=color if item.in_paper_setting else "none", transform=shift, label=item.label)
    # Shifted artists do not widen the data limits by themselves: every point (and error bar) does.
    points = [(x, y + sign * err) for item in series for x, y, err in zip(item.xs, item.ys, item.yerr or [0] * len(item.xs))
              for sign in (-1, 1)]
    axes.update_datalim(points)
    axes.autoscale_view()
    unplaced = _unplaced(spec, table, series)
    axes.set_xlabel(plot.get("xlabel", ""))
    axes.set_ylabel(plot.get("ylabel", ""))
    title = textwrap.fill(spec["title"], 90)
    title += "\nours: mean ± std over seeds (label: data, budget); ☆ published"
    axes.set_title(title, fontsize=9)
    if unplaced:
        figure.text(0.01, 0.01, f"published, not drawn (no x to place them at): {', '.join(unplaced)}", fontsize=7)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    figure.tight_layout()
    _make_room_for_dodges(axes, figure, max((abs(item.dodge) for item in series), default=0.0))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    plt.close(figure)
    return buffer.getvalue()


def _make_room_for_dodges(axes, figure, max_dodge: float) -> None:
    """Widen the x range so that the points shifted furthest sideways stay inside the axes."""
    width_points = axes.get_window_extent().width * 72 / figure.dpi
    low, high = axes.get_xlim()
    pad = (max_dodge + 8) / max(width_points, 1.0) * (high - low)
    axes.set_xlim(low - pad, high + pad)


def _unplaced(spec: dict, table: pd.DataFrame, series: list[Series]) -> list[str]:
    """Published rows with a value the plot would draw but no x to draw it at."""
    compared = set(spec.get("published", {}).get("columns", []))
    drawn = {item.label.removeprefix("published: ") for item in series if item.published}
    plot = spec["plot"]
    y_columns = list(plot["x"]) if plot.get("kind", "lines") == "lines" else [plot["y"]]
    names = []
    for _, row in table[table["setting"] == PAPER].iterrows():
        has_value = any(c in compared and not _missing(row.get(f"{c}_paper")) for c in y_columns)
        if has_value and _row_name(row, spec) not in drawn:
            names.append(_row_name(row, spec))
    return sorted(set(names))
