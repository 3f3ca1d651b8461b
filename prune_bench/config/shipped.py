"""The shipped files: the Hydra config tree and the published numbers. Both live at the top of
the repository and are installed inside the package (see pyproject.toml). A user's config
folders add to them (user.py); catalog.py finds a named file in either."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent


def _first_existing(*candidates: Path) -> Path:
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return candidates[0]


def conf_dir() -> Path:
    """Installed: prune_bench/conf. Source checkout (editable or on sys.path): <repo>/conf."""
    return _first_existing(PACKAGE / "conf", PACKAGE.parent / "conf")


def published_dir() -> Path:
    return _first_existing(PACKAGE / "published", PACKAGE.parent / "results" / "published")


def shipped_names(group: str) -> list[str]:
    """The names of the yaml files in one folder of the config tree (e.g. table, reproduce)."""
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))
