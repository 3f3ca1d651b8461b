"""Every named config file a command can use: the shipped tree's (conf/) and the user's config
folders' (user.py), by group (exp, reproduce, table, model, ...) and name, with where each
comes from. `prune-bench list` prints them; grids and tables are loaded from here."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from ..errors import ConfigError, suggest
from .shipped import conf_dir
from .user import config_dirs

SHIPPED = "shipped"
OWN_SECTIONS = ("exp", "reproduce", "table", "hydra")  # groups that are no option of a run


@dataclass(frozen=True)
class Entry:
    name: str
    path: Path
    origin: str  # "shipped", or the user's config folder it comes from

    @property
    def folder(self) -> Path:
        """The config tree it belongs to (conf/ or a user's folder)."""
        return conf_dir() if self.origin == SHIPPED else Path(self.origin)


def entries(group: str) -> dict[str, Entry]:
    """The group's files by name: the shipped ones, then the user's (which never shadow them)."""
    found = {path.stem: Entry(path.stem, path, SHIPPED) for path in sorted((conf_dir() / group).glob("*.yaml"))}
    for folder in config_dirs():
        found.update({path.stem: Entry(path.stem, path, str(folder)) for path in sorted((folder / group).glob("*.yaml"))})
    return found


def names(group: str) -> list[str]:
    return sorted(entries(group))


def groups() -> list[str]:
    """Every folder of the trees (nested groups such as hydra/launcher not separately)."""
    trees = [conf_dir(), *config_dirs()]
    return sorted({path.name for tree in trees for path in tree.iterdir() if path.is_dir() and path.name != "published"})


def option_groups() -> list[str]:
    """The config groups a run selects an option of (model=..., data=...)."""
    return [group for group in groups() if group not in OWN_SECTIONS]


def load_entry(group: str, name: str, kind: str, required: tuple[str, ...], resolve: bool) -> tuple[Entry, dict]:
    """(entry, content) of <group>/<name>.yaml, which must hold the `required` keys; any problem
    is one line naming `kind` (the config key a user would have mistyped)."""
    found = entries(group)
    if name not in found:
        listing = f"allowed: {', '.join(sorted(found)) or 'none'}"
        raise ConfigError(f"{kind}: unknown {kind} '{name}'; {suggest(name, sorted(found), listing)}")
    entry = found[name]
    spec = OmegaConf.to_container(OmegaConf.load(entry.path), resolve=resolve)
    for key in required:
        if key not in spec:
            raise ConfigError(f"{kind}: {entry.path} has no '{key}'")
    return entry, spec


def published_file(entry: Entry, published: dict) -> Path | None:
    """Where the published numbers of the table `entry` are: `published.file` in the table
    (relative to its config tree), else published/<name>.csv in a user's config folder; None for
    a shipped table (its numbers are in results/published/<name>.csv)."""
    if published.get("file"):
        return entry.folder / published["file"]
    return None if entry.origin == SHIPPED else entry.folder / "published" / f"{entry.name}.csv"


def description(path: Path) -> str:
    """The first comment line of a config file that is no `@package` line."""
    for line in path.read_text().splitlines():
        text = line.strip()
        if text.startswith("#") and "@package" not in text:
            return text.lstrip("# ").strip()
    return ""


def origin_note(entry: Entry) -> str:
    return "" if entry.origin == SHIPPED else f"  [{entry.origin}]"


def listing(shown: list[str]) -> str:
    """`prune-bench list`'s text for the groups `shown` (exp, option groups, reproduce, table).
    A user's entry names the folder it comes from."""
    sections = []
    if "exp" in shown:
        lines = [f"  {entry.name:<32} {description(entry.path)}{origin_note(entry)}" for entry in entries("exp").values()]
        sections.append(["experiments (prune-bench run +exp=NAME):", *lines])
    chosen = [group for group in option_groups() if group in shown]
    if chosen:
        lines = [f"  {group:<12} {', '.join(entry.name + origin_note(entry) for entry in entries(group).values())}"
                 for group in chosen]
        sections.append(["config groups (prune-bench run GROUP=NAME):", *lines])
    if "reproduce" in shown:
        lines = [f"  {entry.name}{origin_note(entry)}" for entry in entries("reproduce").values()]
        sections.append(["papers and grids (prune-bench reproduce NAME):", *lines])
    if "table" in shown:
        lines = [f"  {entry.name:<32} {load_entry('table', entry.name, 'table', ('title',), True)[1]['title']}"
                 f"{origin_note(entry)}" for entry in entries("table").values()]
        sections.append(["tables (prune-bench table NAME):", *lines])
    if config_dirs():
        sections.append(["config folders: the shipped one and, in [brackets] above, yours:",
                         f"  {conf_dir()}", *(f"  {folder}" for folder in config_dirs())])
    return "\n\n".join("\n".join(section) for section in sections)


def check_group_overrides(overrides: list[str]) -> None:
    """Catch `model=resnet57` or `+exp=typo` before Hydra does (its message spans many lines),
    from the config folders alone: the dispatcher calls it before it imports torch."""
    for override in overrides:
        if override.startswith("-") or "=" not in override:
            continue
        key, value = override.split("=", 1)
        group = key.lstrip("+~")
        if "/" in group or "." in group or group not in groups():
            continue
        if not re.fullmatch(r"[\w\-,]+", value):  # sweep syntax like choice(...): leave to Hydra
            continue
        options = names(group)
        for choice in value.split(","):
            if choice not in options:
                hint = f"run prune-bench list {group} to see all {len(options)}"
                if not config_dirs():
                    hint += " (one of your own: prune-bench --config-dir DIR ...)"
                raise ConfigError(f"{group}={choice}: unknown option; {suggest(choice, options, hint)}")
