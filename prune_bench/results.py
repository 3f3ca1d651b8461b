"""Run records -> DataFrames -> paper tables (ours beside the published numbers) and plots.

A table is described by conf/table/<name>.yaml:

    title: ...                 # one line
    note: ...                  # printed under the table (recipe, what is not comparable)
    where: {config.pruner.name: magnitude}      # keep records whose dotted keys match
    rows: {model: config.model.name}            # cell keys: column -> dotted record key
    columns: {acc: metrics.test_acc}            # measured values, mean ± std over a cell's runs
                                                # (or {key: sparsity.all, scale: 100}: times 100)
    unique: [config.seed]      # optional: a cell's records that agree on these keys are one
                               # sample (merged column by column), e.g. runs sharing one training
    published: {columns: [acc]}                 # compare with results/published/<name>.csv
    compare: {key: method, values: [fggp, gmp], columns: [acc]}   # optional, see below
    plot: {kind: lines, x: {acc_p0: 0, ...}, xlabel: ..., ylabel: ...}   # or kind: scatter, x: col, y: col

Every table also keys cells by `data` (dataset, format, subset) and `epochs`, so runs on the
JPEG copy, on subsets or at reduced budgets are never averaged with full official-format runs.
Published rows join on the `rows` keys only and appear even before any run exists. The join
compares keys as text: a key a record lacks (None) meets an empty CSV cell, and 1 meets 1.0.

`compare` puts the cells that differ only in one row key (`key`, e.g. the pruner) side by side:
every value column gets one copy per listed value (`acc_fggp`, `acc_std_fggp`, `n_fggp`, ...)
and each column in `compare.columns` gets the difference of the first value and each other one
(`acc_fggp_minus_gmp`, a difference of means). Published rows carry the key too.
"""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from .errors import ConfigError
from .fileio import atomic_write_bytes, atomic_write_text
from .paths import conf_dir, published_dir

IMPLICIT_KEYS = {"data": "data.label", "epochs": "config.trainer.epochs"}


def table_names() -> list[str]:
    return sorted(p.stem for p in (conf_dir() / "table").glob("*.yaml"))


def load_table_spec(name: str):
    path = conf_dir() / "table" / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"table: unknown table '{name}'; allowed: {', '.join(table_names()) or 'none'}")
    spec = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    for key in ("title", "rows", "columns"):
        if key not in spec:
            raise ConfigError(f"table: {path} has no '{key}'")
    return spec


def collect_records(runs_dir: Path) -> list[dict]:
    """Every readable record.json under `runs_dir` (unreadable ones are reported and skipped)."""
    records = []
    for path in sorted(Path(runs_dir).glob("**/record.json")):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as error:
            print(f"warning: skipping unreadable {path} ({error})")
    return records


def lookup(record: dict, dotted: str):
    value = record
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _matches(record: dict, where: dict) -> bool:
    for key, wanted in where.items():
        value = lookup(record, key)
        allowed = wanted if isinstance(wanted, list) else [wanted]
        if value not in allowed:
            return False
    return True


def column_value(record: dict, source):
    """A measured value: `source` is a dotted key, or {key: dotted key, scale: factor}."""
    if not isinstance(source, dict):
        return lookup(record, source)
    value = lookup(record, source["key"])
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value * source.get("scale", 1)
    return value


def key_text(value) -> str:
    """A cell key as join text: missing (None, NaN) is "", whole floats lose their ".0"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(float(value))
    return str(value)


def records_frame(spec: dict, records: list[dict]) -> pd.DataFrame:
    """One row per finished record that matches the table: cell keys and measured values."""
    rows = []
    for record in records:
        if record.get("status") != "finished" or not _matches(record, spec.get("where", {})):
            continue
        row = {name: lookup(record, key) for name, key in {**IMPLICIT_KEYS, **spec["rows"]}.items()}
        row.update({name: column_value(record, source) for name, source in spec["columns"].items()})
        row.update({f"unique:{key}": lookup(record, key) for key in spec.get("unique", [])})
        rows.append(row)
    unique = [f"unique:{key}" for key in spec.get("unique", [])]
    frame = pd.DataFrame(rows, columns=[*IMPLICIT_KEYS, *spec["rows"], *spec["columns"], *unique])
    if unique:  # one sample per unique key: the first non-empty value of each column
        frame = frame.groupby([*IMPLICIT_KEYS, *spec["rows"], *unique], dropna=False, sort=False).first().reset_index()
    return frame.drop(columns=unique)


def load_published(name: str, spec: dict) -> pd.DataFrame | None:
    if not spec.get("published"):
        return None
    path = published_dir() / f"{name}.csv"
    if not path.is_file():
        raise ConfigError(f"table: {name} compares with published numbers but {path} is missing")
    published = pd.read_csv(path)
    missing = [k for k in [*spec["rows"], "source"] if k not in published.columns]
    if missing:
        raise ConfigError(f"table: {path} lacks the columns {missing}")
    return published


def build_table(name: str, spec: dict, records: list[dict]) -> pd.DataFrame:
    """Cells (row keys + data + epochs) with mean, std and n of every measured column, and the
    published value and the difference (ours - published) beside the compared columns."""
    keys = [*IMPLICIT_KEYS, *spec["rows"]]
    measured = list(spec["columns"])
    frame = records_frame(spec, records)
    for column in measured:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    grouped = frame.groupby(keys, dropna=False, sort=False)
    table = grouped[measured].mean()
    stds = grouped[measured].std(ddof=1).add_suffix("_std")
    table = pd.concat([table, stds], axis=1)
    table["n"] = grouped.size()
    table = table.reset_index()
    published = load_published(name, spec)
    compared = list(spec.get("published", {}).get("columns", []))
    if published is not None:
        row_keys = list(spec["rows"])
        paper = published[[*row_keys, *compared, "source"]].rename(columns={c: f"{c}_paper" for c in compared})
        for key in row_keys:  # join on text: "resnet56" in a CSV must meet "resnet56" in a record
            paper[key] = paper[key].map(key_text)
            table[key] = table[key].map(key_text)
        table = table.merge(paper, on=row_keys, how="outer")
        for column in compared:
            table[f"{column}_diff"] = table[column] - table[f"{column}_paper"]
        table["n"] = table["n"].fillna(0).astype(int)
    order = [*keys]
    for column in measured:
        order += [column, f"{column}_std"]
        if column in compared:
            order += [f"{column}_paper", f"{column}_diff"]
    order += ["n"] + (["source"] if published is not None else [])
    table = table[order]
    sort_keys = [k for k in spec.get("sort", list(spec["rows"]))]
    table = table.sort_values(sort_keys, kind="stable", key=_natural_key).reset_index(drop=True)
    if spec.get("compare"):
        table = side_by_side(table, spec)
        sort_keys = [k for k in sort_keys if k != spec["compare"]["key"]]
        table = table.sort_values(sort_keys, kind="stable", key=_natural_key).reset_index(drop=True)
    return table


def side_by_side(table: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """Split the cells along the row key `compare.key` into one set of columns per value in
    `compare.values`, plus first-value-minus-other differences of `compare.columns`."""
    compare = spec["compare"]
    key, values = compare["key"], [str(v) for v in compare["values"]]
    if key not in spec["rows"] or len(values) < 2:
        raise ConfigError(f"table: compare needs a key among the rows ({', '.join(spec['rows'])}) "
                          f"and at least two values; got key {key!r}, values {values}")
    keys = [k for k in (*IMPLICIT_KEYS, *spec["rows"]) if k != key]
    per_value = [c for c in table.columns if c not in keys and c != key]
    merged = None
    for value in values:
        side = table[table[key].astype(str) == value].drop(columns=key)
        side = side.rename(columns={c: f"{c}_{value}" for c in per_value})
        merged = side if merged is None else merged.merge(side, on=keys, how="outer")
    first = values[0]
    for value in values:
        merged[f"n_{value}"] = merged[f"n_{value}"].fillna(0).astype(int)
    for column in compare.get("columns", list(spec["columns"])):
        for other in values[1:]:
            merged[f"{column}_{first}_minus_{other}"] = merged[f"{column}_{first}"] - merged[f"{column}_{other}"]
    return merged


def _natural_key(series: pd.Series) -> pd.Series:
    """Sort resnet56 before resnet110 and 0.501 before 0.51: numbers inside strings (decimals
    too) compare as numbers."""
    import re

    def key(value):
        text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
        parts = re.split(r"(\d+(?:\.\d+)?)", text)
        return tuple((0, float(part), "") if part[:1].isdigit() else (1, 0, part) for part in parts)

    return series.map(key)


def _fmt(value, digits: int = 2, key: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        if key and value.is_integer():  # e.g. epochs, after a join made the column float
            return str(int(value))
        return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.{digits}f}"
    return str(value)


def _signed(value) -> str:
    text = _fmt(value)
    return ("+" + text) if text and not text.startswith("-") else text


def _cell(mean, std) -> str:
    cell = _fmt(mean)
    if cell and not (isinstance(std, float) and math.isnan(std)):
        cell += f" ± {_fmt(std)}"
    return cell


def to_markdown(table: pd.DataFrame, spec: dict) -> str:
    """A readable rendering: mean ± std (n), published, difference."""
    if spec.get("compare"):
        return _compare_markdown(table, spec)
    keys = [*IMPLICIT_KEYS, *spec["rows"]]
    compared = set(spec.get("published", {}).get("columns", []))
    headers = list(keys)
    for column in spec["columns"]:
        headers.append(column)
        if column in compared:
            headers += [f"{column} (paper)", f"{column} (diff)"]
    headers.append("n")
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for _, row in table.iterrows():
        cells = [_fmt(row[k], key=True) for k in keys]
        for column in spec["columns"]:
            cells.append(_cell(row[column], row[f"{column}_std"]))
            if column in compared:
                cells += [_fmt(row[f"{column}_paper"]), _signed(row[f"{column}_diff"])]
        cells.append(str(int(row["n"])))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _compare_markdown(table: pd.DataFrame, spec: dict) -> str:
    """Side-by-side rendering: per compared value its columns (mean ± std, paper) and n, then
    the differences."""
    compare = spec["compare"]
    values = [str(v) for v in compare["values"]]
    keys = [k for k in (*IMPLICIT_KEYS, *spec["rows"]) if k != compare["key"]]
    published = set(spec.get("published", {}).get("columns", []))
    diffs = [(c, other) for c in compare.get("columns", list(spec["columns"])) for other in values[1:]]
    headers = list(keys)
    for value in values:
        for column in spec["columns"]:
            headers.append(f"{column} {value}")
            if column in published:
                headers.append(f"{column} {value} (paper)")
        headers.append(f"n {value}")
    headers += [f"{column} {values[0]} − {other}" for column, other in diffs]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for _, row in table.iterrows():
        cells = [_fmt(row[k], key=True) for k in keys]
        for value in values:
            for column in spec["columns"]:
                cells.append(_cell(row[f"{column}_{value}"], row[f"{column}_std_{value}"]))
                if column in published:
                    cells.append(_fmt(row[f"{column}_paper_{value}"]))
            cells.append(str(int(row[f"n_{value}"])))
        cells += [_signed(row[f"{column}_{values[0]}_minus_{other}"]) for column, other in diffs]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_table(name: str, runs_dir: Path, results_dir: Path) -> tuple[pd.DataFrame, Path, str]:
    spec = load_table_spec(name)
    table = build_table(name, spec, collect_records(runs_dir))
    out = Path(results_dir) / f"{name}.csv"
    atomic_write_text(out, table.to_csv(index=False, float_format="%.4f"))
    text = f"## {spec['title']}\n\n{to_markdown(table, spec)}\n"
    if spec.get("note"):
        text += f"\n{spec['note'].strip()}\n"
    source_columns = [c for c in table.columns if c == "source" or c.startswith("source_")]
    if source_columns:
        sources = sorted({s for c in source_columns for s in table[c].dropna()})
        text += "".join(f"\npublished: {s}" for s in sources) + ("\n" if sources else "")
    return table, out, text


def write_plot(name: str, runs_dir: Path, results_dir: Path) -> Path:
    """A PNG of the table: `lines` draws one curve per cell over the columns named in plot.x;
    `scatter` draws plot.y against plot.x (both measured columns), one point per cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spec = load_table_spec(name)
    plot = spec.get("plot")
    if not plot:
        raise ConfigError(f"plot: table '{name}' has no plot section")
    table = build_table(name, spec, collect_records(runs_dir))
    table = table[table["n"] > 0]
    if table.empty:
        raise ConfigError(f"plot: no finished runs under {runs_dir} match table '{name}'")
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for _, row in table.iterrows():
        label = " / ".join(_fmt(row[k], key=True) for k in spec["rows"])
        label += f" ({row['data']}, {_fmt(row['epochs'], key=True)} epochs)"
        if plot.get("kind", "lines") == "lines":
            xs = [x for column, x in plot["x"].items() if not _isnan(row[column])]
            ys = [row[c] for c in plot["x"] if not _isnan(row[c])]
            errors = [0 if _isnan(row[f"{c}_std"]) else row[f"{c}_std"] for c in plot["x"] if not _isnan(row[c])]
            axes.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, label=label)
        else:
            axes.errorbar(row[plot["x"]], row[plot["y"]], yerr=0 if _isnan(row[f"{plot['y']}_std"]) else row[f"{plot['y']}_std"],
                          marker="o", capsize=3, linestyle="none", label=label)
    axes.set_xlabel(plot.get("xlabel", ""))
    axes.set_ylabel(plot.get("ylabel", ""))
    axes.set_title(textwrap.fill(spec["title"], 80), fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    out = Path(results_dir) / f"{name}.png"
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    plt.close(figure)
    atomic_write_bytes(out, buffer.getvalue())
    return out


def _isnan(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
