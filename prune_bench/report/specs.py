"""The shipped tables' specs (conf/table/<name>.yaml): their names and their content, read
without pandas or matplotlib (`prune-bench list` shows their titles)."""

from __future__ import annotations

from ..config.shipped import load_shipped, shipped_names
from ..errors import ConfigError


def table_names() -> list[str]:
    return shipped_names("table")


def load_table_spec(name: str):
    path, spec = load_shipped("table", name, "table", ("title", "rows", "columns"), resolve=True)
    if spec.get("published") and not spec.get("paper"):
        raise ConfigError(f"table: {path} compares with published numbers but declares no paper setting ('paper:')")
    return spec
