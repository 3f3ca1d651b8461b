"""Run summaries: a table's records without their bulk, small enough to commit beside the table
they make (results/quick/). A summary is a record: the same keys, less the per-epoch history, the
per-layer sparsity and a pruner's event log and channel counts, plus `summary`, which says what
was left out and on what machine the run trained. `prune-bench table NAME --runs DIR` reads a
folder of summaries as it reads a runs folder, so a shipped table can be made again from them."""

from __future__ import annotations

import copy
import json
import os
import platform
from pathlib import Path

from ..fileio import atomic_write_text
from ..layout import RECORD
from .tables import collect_records, matching_records

LEFT_OUT = ("history", "sparsity.per_layer", "pruner.event_log", "pruner.channels")


def run_summary(record: dict) -> dict:
    """The record less the keys in LEFT_OUT; `summary` names them and the run's machine."""
    summary = copy.deepcopy({key: value for key, value in record.items() if not key.startswith("_")})
    for dotted in LEFT_OUT:
        *parents, leaf = dotted.split(".")
        section = summary
        for key in parents:
            section = section.get(key) if isinstance(section, dict) else None
        if isinstance(section, dict):
            section.pop(leaf, None)
    summary["summary"] = {"left_out": list(LEFT_OUT),
                          "machine": record.get("machine") or {**machine(), "noted": "where the summary was written"}}
    return summary


def machine() -> dict:
    """The machine's system, architecture, processor and CPU count."""
    return {"system": platform.system(), "machine": platform.machine(), "processor": platform.processor(),
            "cpus": os.cpu_count()}


def write_summaries(spec: dict, runs_dir: Path, out_dir: Path) -> list[Path]:
    """One summary per finished record the table `spec` is about, at out_dir/<run folder>/record.json
    (the run folder's name: its identity)."""
    written = []
    for record in matching_records(spec, collect_records(runs_dir)):
        folder = Path(record.get("run_dir") or Path(record["_path"]).parent).name
        path = Path(out_dir) / folder / RECORD
        atomic_write_text(path, json.dumps(run_summary(record), indent=1, sort_keys=True) + "\n")
        written.append(path)
    return written

