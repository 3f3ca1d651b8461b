"""Run records -> DataFrames -> paper tables (ours beside the published numbers) and plots.

A table is described by conf/table/<name>.yaml:

    title: ...                 # one line
    note: ...                  # printed under the table (recipe, what is not comparable)
    where: {config.pruner.name: magnitude}      # keep records whose dotted keys match (a value or a list)
    rows: {model: config.model.name}            # cell keys: column -> dotted record key
    columns: {acc: metrics.test_acc}            # measured values, mean ± std over a cell's samples
                                                # (or {key: sparsity.all, scale: 100}: times 100)
    merged: [pruner.sparsity]  # optional: config keys in which the runs of one sample may differ
                               # by design (runs sharing one training), merged column by column
    paper:                     # the paper's own setting (required with `published`):
      match: {data.label: cifar10-official, config.trainer.epochs: 160, ...}  # all must hold
      any: [{config.pruner.name: fggp, ...}, {config.pruner.name: gmp}]     # optional: one must hold
    published: {columns: [acc]}                 # compare with results/published/<name>.csv (a user's
                                                # table: published/<name>.csv in its config folder,
                                                # or `file: path` relative to that folder)
    compare: {key: method, values: [fggp, gmp, magfirst], columns: [acc]}   # optional, see below
    plot: {kind: lines, x: {acc_p0: 0, ...}, xlabel: ..., ylabel: ...}   # or kind: scatter, x: col, y: col
                               # (all its keys: prune_bench/report/plots.py)

What shares a cell (prune_bench/cells.py): the samples of one semantic config (the config minus
execution details, identity.semantic_config) that differ in the seed alone. Records that differ in
another key go to separate rows whose `variant` column names the differing keys; a duplicate
(same config and seed) counts once, with a warning naming both record files. Every table also
keys cells by `data` (dataset, format, subsets) and `epochs`.

How a table knows the paper's setting: its `paper:` section names the data, budget, models,
optimizers, pruners and hyperparameters of the paper's (or, where the paper's is not readable,
our documented) recipe as dotted record keys. Rows in it have setting "paper" and are the only
rows joined with the published numbers; every other row (synthetic data, subsets, fewer epochs,
other optimizers or rates) has setting "other: <what differs>", no published value and no
difference, and is printed in a separate "Other runs" section. Published rows join on the `rows`
keys and appear even before any run exists. The join compares keys as text: a key a record
lacks (None) meets an empty CSV cell, and 1 meets 1.0.

`compare` puts the cells that differ only in one row key (`key`, e.g. the pruner) side by side:
every value column gets one copy per listed value (`acc_fggp`, `acc_std_fggp`, `n_fggp`, ...)
and each column in `compare.columns` gets the difference of the first value and each other one
(`acc_fggp_minus_gmp`, `acc_fggp_minus_magfirst`: differences of means). Published rows carry
the key too.

`claims` (optional) lists the paper's claims; each is decided from the same samples and printed
under the table, and written to results/<name>.claims.csv (report/claims.py, docs/tables.md).

`table` with no finished run matching `where` is an error (one line), as `plot` is.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from ..config.shipped import published_dir
from ..engine.record import record_labels
from ..errors import ConfigError
from ..fileio import atomic_write_bytes, atomic_write_text
from ..layout import record_paths
from .cells import IMPLICIT_KEYS, PAPER, key_text, lookup, matches, natural_key, table_samples
from .claims import claim_problems, claims_frame, claims_markdown, decide_claims
from .plots import draw
from .specs import load_table_spec

SAMPLE_KEYS = ["variant", "setting"]  # cells.Sample: what sets a row apart beyond the cell keys
SAMPLE_DETAILS = ["seed", "config"]  # a sample's seed and semantic config (claims pair and compare by them)


def load_checked_spec(name: str) -> dict:
    """The table's spec (report/specs.py) with its claims checked: one line per problem."""
    spec = load_table_spec(name)
    problems = claim_problems(spec, name)
    if problems:
        raise ConfigError("\n".join(problems))
    return spec


def upgrade_record(record: dict) -> dict:
    """A record as this version writes it. Records of earlier versions (0.1) kept a staged run's
    stages under pruner.stages, and a DPM record's flops_pct and speed-up were conv + linear
    MACs, with Torch-Pruning's counter (the paper's) as tp_ops_pct beside them: that one is the
    paper's FLOPs now. Records before custom components (0.2) have no `labels`: their config's
    names."""
    record["labels"] = record_labels(record)
    pruner = record.get("pruner") or {}
    if "stages" not in record and isinstance(pruner.get("stages"), dict):
        record["stages"] = pruner["stages"]
    if pruner.get("method") == "dpm" and "counter" not in pruner and pruner.get("tp_ops_pct"):
        pruner["conv_linear"] = {"flops_pct": pruner.get("flops_pct"), "speedup": pruner.get("speedup_achieved")}
        pruner.update(flops_pct=pruner["tp_ops_pct"], speedup_achieved=100.0 / pruner["tp_ops_pct"],
                      counter="Torch-Pruning's counter")
    return record


def collect_records(runs_dir: Path) -> list[dict]:
    """Every readable record.json under `runs_dir` (unreadable ones are reported and skipped)."""
    records = []
    for path in record_paths(runs_dir):
        try:
            record = upgrade_record(json.loads(path.read_text()))
            record["_path"] = str(path)  # named in warnings about duplicates
            records.append(record)
        except (OSError, json.JSONDecodeError) as error:
            print(f"warning: skipping unreadable {path} ({error})")
    return records


def matching_records(spec: dict, records: list[dict]) -> list[dict]:
    """The finished records the table is about (its `where`)."""
    return [r for r in records if r.get("status") == "finished" and matches(r, spec.get("where", {}))]


def column_value(record: dict, source):
    """A measured value: `source` is a dotted key, or {key: dotted key, scale: factor}."""
    if not isinstance(source, dict):
        return lookup(record, source)
    value = lookup(record, source["key"])
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value * source.get("scale", 1)
    return value


def records_frame(spec: dict, records: list[dict], name: str = "table") -> pd.DataFrame:
    """One row per sample (cells.table_samples) of the finished records that match the table:
    cell keys, variant, setting, measured values (merged records: the first non-empty), seed and
    semantic config."""
    cell_keys = {**IMPLICIT_KEYS, **spec["rows"]}

    def cell_of(record: dict) -> tuple:
        return tuple(key_text(lookup(record, key)) for key in cell_keys.values())

    rows = []
    for sample in table_samples(spec, matching_records(spec, records), cell_of, name):
        first = sample.records[0]
        row = {column: lookup(first, key) for column, key in cell_keys.items()}
        row.update(variant=sample.variant, setting=sample.setting)
        for column, source in spec["columns"].items():
            values = [column_value(record, source) for record in sample.records]
            row[column] = next((v for v in values if v is not None), None)
        row.update(seed=lookup(first, "config.seed"), config=sample.config)
        rows.append(row)
    return pd.DataFrame(rows, columns=[*cell_keys, *SAMPLE_KEYS, *spec["columns"], *SAMPLE_DETAILS])


def load_published(name: str, spec: dict) -> pd.DataFrame | None:
    """The published numbers: `published.file`, else results/published/<name>.csv."""
    if not spec.get("published"):
        return None
    path = Path(spec["published"].get("file") or published_dir() / f"{name}.csv")
    if not path.is_file():
        raise ConfigError(f"table: {name} compares with published numbers but {path} is missing")
    published = pd.read_csv(path)
    missing = [k for k in [*spec["rows"], "source"] if k not in published.columns]
    if missing:
        raise ConfigError(f"table: {path} lacks the columns {missing}")
    return published


def build_table(name: str, spec: dict, records: list[dict]) -> pd.DataFrame:
    """The table of `records` (table_of_samples)."""
    return table_of_samples(name, spec, records_frame(spec, records, name))


def table_of_samples(name: str, spec: dict, samples: pd.DataFrame, split: bool = True) -> pd.DataFrame:
    """Cells (row keys + data + epochs, variant, setting) with mean, std and n of every measured
    column; rows in the paper's setting get the published value and the difference (ours -
    published) beside the compared columns, other rows neither. A table with `compare` is split
    side by side along the compared key unless `split` is False (the plot's long form)."""
    keys = [*IMPLICIT_KEYS, *spec["rows"], *SAMPLE_KEYS]
    measured = list(spec["columns"])
    frame = samples.copy()
    for column in measured:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    grouped = frame.groupby(keys, dropna=False, sort=False)
    table = grouped[measured].mean()
    stds = grouped[measured].std(ddof=1).add_suffix("_std")
    table = pd.concat([table, stds], axis=1)
    table["n"] = grouped.size()
    table = table.reset_index()
    for key in spec["rows"]:  # join and sort on text: "resnet56" in a CSV must meet "resnet56" in a record
        table[key] = table[key].map(key_text)
    published = load_published(name, spec)
    compared = list(spec.get("published", {}).get("columns", []))
    if published is not None:
        row_keys = list(spec["rows"])
        paper = published[[*row_keys, *compared, "source"]].rename(columns={c: f"{c}_paper" for c in compared})
        for key in row_keys:
            paper[key] = paper[key].map(key_text)
        in_paper = table["setting"] == PAPER
        joined = table[in_paper].merge(paper, on=row_keys, how="outer")
        joined["setting"] = PAPER
        joined["variant"] = joined["variant"].fillna("")
        table = pd.concat([joined, table[~in_paper]], ignore_index=True)  # others: no paper value
        for column in compared:
            table[f"{column}_diff"] = table[column] - table[f"{column}_paper"]
        table["n"] = table["n"].fillna(0).astype(int)
    order = [*IMPLICIT_KEYS, *spec["rows"], *SAMPLE_KEYS]
    for column in measured:
        order += [column, f"{column}_std"]
        if column in compared:
            order += [f"{column}_paper", f"{column}_diff"]
    order += ["n"] + (["source"] if published is not None else [])
    table = _sorted(table[order], spec)
    if spec.get("compare") and split:
        table = _sorted(side_by_side(table, spec), spec, drop=spec["compare"]["key"])
    return table


def _sorted(table: pd.DataFrame, spec: dict, drop: str | None = None) -> pd.DataFrame:
    """By the table's sort keys (natural order), the paper's setting first, then the others."""
    sort_keys = [k for k in spec.get("sort", list(spec["rows"])) if k != drop] + ["variant"]
    table = table.sort_values(sort_keys, kind="stable", key=_natural_key)
    table = table.sort_values("setting", kind="stable", key=lambda s: s.map(lambda v: v not in (PAPER, "")))
    return table.reset_index(drop=True)


def side_by_side(table: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """Split the cells along the row key `compare.key` into one set of columns per value in
    `compare.values`, plus first-value-minus-other differences of `compare.columns`."""
    compare = spec["compare"]
    key, values = compare["key"], [str(v) for v in compare["values"]]
    if key not in spec["rows"] or len(values) < 2:
        raise ConfigError(f"table: compare needs a key among the rows ({', '.join(spec['rows'])}) "
                          f"and at least two values; got key {key!r}, values {values}")
    keys = [k for k in (*IMPLICIT_KEYS, *spec["rows"], *SAMPLE_KEYS) if k != key]
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
    return series.map(natural_key)


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


OTHER_RUNS = "Other runs, not in the paper's setting (no published numbers, no differences):"


def to_markdown(table: pd.DataFrame, spec: dict) -> str:
    """A readable rendering: mean ± std (n), published, difference; the runs outside the paper's
    setting in a section of their own, without published numbers."""
    in_paper = table["setting"].isin([PAPER, ""])
    section = _compare_section if spec.get("compare") else _section
    text = section(table[in_paper], spec, paper=True)
    if not in_paper.all():
        text += f"\n\n{OTHER_RUNS}\n\n" + section(table[~in_paper], spec, paper=False)
    return text


def _lead(part: pd.DataFrame, keys: list[str], paper: bool) -> tuple[list[str], list]:
    """Headers and per-row cell functions for the keys, the variant (if any row has one) and,
    outside the paper's setting, what differs from it."""
    columns = ([] if paper else ["setting"]) + keys + (["variant"] if (part["variant"] != "").any() else [])
    headers = ["differs from the paper's setting" if c == "setting" else c for c in columns]

    def cells(row) -> list[str]:
        return [str(row[c]).removeprefix("other: ") if c == "setting" else _fmt(row[c], key=True) for c in columns]

    return headers, cells


def _section(part: pd.DataFrame, spec: dict, paper: bool) -> str:
    keys = [*IMPLICIT_KEYS, *spec["rows"]]
    compared = set(spec.get("published", {}).get("columns", [])) if paper else set()
    headers, lead = _lead(part, keys, paper)
    for column in spec["columns"]:
        headers.append(column)
        if column in compared:
            headers += [f"{column} (paper)", f"{column} (diff)"]
    headers.append("n")
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for _, row in part.iterrows():
        cells = lead(row)
        for column in spec["columns"]:
            cells.append(_cell(row[column], row[f"{column}_std"]))
            if column in compared:
                cells += [_fmt(row[f"{column}_paper"]), _signed(row[f"{column}_diff"])]
        cells.append(str(int(row["n"])))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _compare_section(part: pd.DataFrame, spec: dict, paper: bool) -> str:
    """Side-by-side rendering: per compared value its columns (mean ± std, paper) and n, then
    the differences."""
    compare = spec["compare"]
    values = [str(v) for v in compare["values"]]
    keys = [k for k in (*IMPLICIT_KEYS, *spec["rows"]) if k != compare["key"]]
    published = set(spec.get("published", {}).get("columns", [])) if paper else set()
    diffs = [(c, other) for c in compare.get("columns", list(spec["columns"])) for other in values[1:]]
    headers, lead = _lead(part, keys, paper)
    for value in values:
        for column in spec["columns"]:
            headers.append(f"{column} {value}")
            if column in published:
                headers.append(f"{column} {value} (paper)")
        headers.append(f"n {value}")
    headers += [f"{column} {values[0]} − {other}" for column, other in diffs]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for _, row in part.iterrows():
        cells = lead(row)
        for value in values:
            for column in spec["columns"]:
                cells.append(_cell(row[f"{column}_{value}"], row[f"{column}_std_{value}"]))
                if column in published:
                    cells.append(_fmt(row[f"{column}_paper_{value}"]))
            cells.append(str(int(row[f"n_{value}"])))
        cells += [_signed(row[f"{column}_{values[0]}_minus_{other}"]) for column, other in diffs]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _samples_of_runs(command: str, name: str, spec: dict, runs_dir: Path) -> pd.DataFrame:
    records = collect_records(runs_dir)
    if not matching_records(spec, records):
        raise ConfigError(f"{command}: no finished runs under {runs_dir} match table '{name}'")
    return records_frame(spec, records, name)


def write_table(name: str, runs_dir: Path, results_dir: Path) -> tuple[pd.DataFrame, Path, str]:
    """results/NAME.csv, the markdown (table, note, sources and, if the table declares claims, their
    lines) as NAME.md, and the claims' lines as NAME.claims.csv. Returns the table, the CSV's path
    and the text to print: the markdown, then a line for each other file written."""
    spec = load_checked_spec(name)
    samples = _samples_of_runs("table", name, spec, runs_dir)
    table = table_of_samples(name, spec, samples)
    text = f"## {spec['title']}\n\n{to_markdown(table, spec)}\n"
    if spec.get("note"):
        text += f"\n{spec['note'].strip()}\n"
    source_columns = [c for c in table.columns if c == "source" or c.startswith("source_")]
    if source_columns:
        sources = sorted({s for c in source_columns for s in table[c].dropna()})
        text += "".join(f"\npublished: {s}" for s in sources) + ("\n" if sources else "")
    lines = decide_claims(spec, samples, name)
    if spec.get("claims"):
        text += f"\n{claims_markdown(spec, lines)}\n"
    results_dir = Path(results_dir)
    out, markdown, claims = (results_dir / f"{name}{suffix}" for suffix in (".csv", ".md", ".claims.csv"))
    atomic_write_text(out, table.to_csv(index=False, float_format="%.4f"))
    atomic_write_text(markdown, text)
    written = [markdown]
    if spec.get("claims"):
        atomic_write_text(claims, claims_frame(lines).to_csv(index=False, float_format="%.4f"))
        written.append(claims)
    return table, out, text + "".join(f"\nwrote {path}" for path in written)


def write_plot(name: str, runs_dir: Path, results_dir: Path) -> Path:
    """A PNG of the table (report/plots.py): our cells, and the published numbers beside them."""
    spec = load_checked_spec(name)
    if not spec.get("plot"):
        raise ConfigError(f"plot: table '{name}' has no plot section")
    table = table_of_samples(name, spec, _samples_of_runs("plot", name, spec, runs_dir), split=False)
    out = Path(results_dir) / f"{name}.png"
    atomic_write_bytes(out, draw(spec, table))
    return out
