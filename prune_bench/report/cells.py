"""Which run records may share a table cell, and which sit in the paper's own setting.

A table (conf/table/<name>.yaml, see results.py) turns records into samples and samples into
cells. The rules here keep a cell honest:

- One sample per seed. Records whose semantic configs (identity.semantic_config: the resolved
  config minus execution details, plus the data fingerprint and the sha256 of a custom
  component's source file) are equal but for the seed keys
  (SEED_KEYS) are different seeds of one setting. Records that also differ in the keys a table
  declares `merged` (runs that share one training by design, e.g. sga2024's pruner.sparsity)
  and have the same seed are one sample, merged column by column (the first non-empty value).
- A duplicate (the same semantic config and seed twice, e.g. a copied runs folder) counts once;
  a warning names both record files.
- A cell holds the samples of one setting only. Samples of a cell that differ in any other key
  go to separate rows, and their `variant` column names the differing keys and values.
- `paper:` declares the paper's own setting: `match` (dotted record keys -> a value or a list of
  allowed values, all must hold) and optionally `any` (a list of such maps, one must hold). A
  row in it has setting "paper"; any other row has "other: <key=value of what differs>" and is
  never joined with a published number. A table without `paper:` has no published numbers and
  leaves the setting empty.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass

from omegaconf import OmegaConf

from ..identity import data_fingerprint, semantic_config

# The run seed, and keys that default to it (StochGradAdam's mask stream is `${seed}`).
SEED_KEYS = ("seed", "optimizer.seed")
PAPER = "paper"
IMPLICIT_KEYS = {"data": "data.label", "epochs": "config.trainer.epochs"}  # cell keys of every table


def lookup(record: dict, dotted: str):
    value = record
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def allows(allowed, value) -> bool:
    """A `where` / `paper` entry: one value, or a list of allowed values (null: the key is absent)."""
    return value in (allowed if isinstance(allowed, list) else [allowed])


def matches(record: dict, wanted: dict) -> bool:
    return all(allows(allowed, lookup(record, key)) for key, allowed in wanted.items())


def key_text(value) -> str:
    """A cell key as join text: missing (None, NaN) is "", whole floats lose their ".0"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(float(value))
    return str(value)


def natural_key(value) -> tuple:
    """Sort resnet56 before resnet110 and 0.501 before 0.51: numbers inside strings (decimals
    too) compare as numbers."""
    text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    parts = re.split(r"(\d+(?:\.\d+)?)", text)
    return tuple((0, float(part), "") if part[:1].isdigit() else (1, 0, part) for part in parts)


def value_text(value) -> str:
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    if value is None:
        return "null"
    return str(value)


def record_path(record: dict) -> str:
    """Where a record was read from (collect_records notes it), else where its run lived."""
    return record.get("_path") or f"{record.get('run_dir', '?')}/record.json"


def semantic(record: dict, drop: tuple[str, ...] = ()) -> dict:
    """The record's semantic config (without the `drop` keys) and data fingerprint, flattened to
    dotted keys. The device the record ran on stands in for `auto`, so the precision a run
    computed in is judged by where it ran, not by where the table is made."""
    config = json.loads(json.dumps(record["config"]))
    trainer = config.setdefault("trainer", {})
    trainer["device"] = (record.get("device") or {}).get("type", trainer.get("device", "cpu"))
    trainer.setdefault("precision", "auto")
    tree = semantic_config(OmegaConf.create(config), drop=drop)
    flat = _flatten(tree)
    data = record.get("data", {})
    flat.update({f"data_info.{key}": value for key, value in data_fingerprint(data).items()})
    flat["data_info.label"] = data.get("label")  # a table's cell key, whatever the fingerprint holds
    for section, target in (record.get("targets") or {}).items():  # part of the run's identity
        flat[f"sources.{section}"] = target.get("sha256")
    return flat


def _flatten(tree, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def paper_setting(record: dict, paper: dict | None) -> str:
    """"paper" when the record is in the paper's own setting, else "other: <what differs>"
    (against the closest `any` alternative); "" when the table declares none."""
    if not paper:
        return ""
    missed = None
    for alternative in paper.get("any") or [{}]:
        wanted = {**paper.get("match", {}), **alternative}
        misses = [key for key, allowed in wanted.items() if not allows(allowed, lookup(record, key))]
        if missed is None or len(misses) < len(missed):
            missed = misses
    if not missed:
        return PAPER
    # another component (scheduler.name=constant) says enough: not each of its keys again
    missed = [key for key in missed if key.endswith(".name") or f"{key.rsplit('.', 1)[0]}.name" not in missed]
    shown = [key.removeprefix("config.") for key in missed]
    return "other: " + ", ".join(f"{name}={value_text(lookup(record, key))}" for name, key in zip(shown, missed))


@dataclass
class Sample:
    records: list[dict]  # one, or several merged by design (same seed)
    setting: str  # "paper", "other: ...", or "" (the table declares no paper setting)
    variant: str  # the keys that set this sample apart from others in its cell, or ""
    config: dict  # its semantic config less the seed and merged keys, flattened (one per table row)


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def table_samples(spec: dict, records: list[dict], cell_of: Callable[[dict], tuple], name: str = "table",
                  warn: Callable[[str], None] = _warn) -> list[Sample]:
    """The samples of the matched `records` (already filtered by the table's `where`), each with
    its setting and variant. `cell_of(record)` gives the record's cell keys (data, epochs, rows)."""
    merged = tuple(spec.get("merged", []))
    seen: dict[str, dict] = {}
    groups: dict[tuple, list[dict]] = {}
    settings: dict[tuple, dict] = {}
    for record in records:
        identity = json.dumps(semantic(record), sort_keys=True, default=str)
        if identity in seen:
            warn(f"{name}: {record_path(seen[identity])} and {record_path(record)} are the same config and seed; "
                 "counted once")
            continue
        seen[identity] = record
        setting = semantic(record, drop=SEED_KEYS + merged)
        setting_key = json.dumps(setting, sort_keys=True, default=str)
        seeds = tuple(value_text(lookup(record["config"], key)) for key in SEED_KEYS)
        group = (setting_key, seeds)
        groups.setdefault(group, []).append(record)
        settings[group] = setting
    samples = [Sample(group_records, paper_setting(group_records[0], spec.get("paper")), "", settings[group])
               for group, group_records in groups.items()]
    _name_variants(samples, [settings[group] for group in groups], cell_of)
    return samples


def _name_variants(samples: list[Sample], settings: list[dict], cell_of) -> None:
    """Within each cell (cell keys and setting), samples of different settings get a variant
    naming the keys they differ in."""
    cells: dict[tuple, list[int]] = {}
    for index, sample in enumerate(samples):
        cells.setdefault((cell_of(sample.records[0]), sample.setting), []).append(index)
    for members in cells.values():
        distinct = {json.dumps(settings[i], sort_keys=True, default=str) for i in members}
        if len(distinct) < 2:
            continue
        keys = []
        for i in members:
            keys += [key for key in settings[i] if key not in keys]
        differing = [key for key in keys if len({_text(settings[i], key) for i in members}) > 1]
        for i in members:
            samples[i].variant = ", ".join(f"{key}={_text(settings[i], key)}" for key in differing)


def _text(setting: dict, key: str) -> str:
    return value_text(setting[key]) if key in setting else "(absent)"
