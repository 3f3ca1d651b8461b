"""The tables' specs (conf/table/<name>.yaml, shipped or in a user's config folder): their names
and their content, read without pandas or matplotlib (`prune-bench list` shows their titles)."""

from __future__ import annotations

from ..config.catalog import load_entry, names, published_file
from ..errors import ConfigError


def table_names() -> list[str]:
    return names("table")


def load_table_spec(name: str):
    """A table's file (shipped or in a user's config folder). A user's table gets the path of its
    published numbers in `published.file` (config.catalog.published_file)."""
    entry, spec = load_entry("table", name, "table", ("title", "rows", "columns"), resolve=True)
    if spec.get("published") and not spec.get("paper"):
        raise ConfigError(f"table: {entry.path} compares with published numbers but declares no paper setting ('paper:')")
    if spec.get("published") and published_file(entry, spec["published"]) is not None:
        spec["published"]["file"] = str(published_file(entry, spec["published"]))
    return spec
