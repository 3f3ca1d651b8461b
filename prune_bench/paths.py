"""Where the shipped files are: the Hydra config tree and the published numbers. Both live at
the top of the repository and are installed inside the package (see pyproject.toml)."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _first_existing(*candidates: Path) -> Path:
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return candidates[0]


def conf_dir() -> Path:
    """Installed: prune_bench/conf. Source checkout (editable or on sys.path): <repo>/conf."""
    return _first_existing(_PACKAGE / "conf", _PACKAGE.parent / "conf")


def published_dir() -> Path:
    return _first_existing(_PACKAGE / "published", _PACKAGE.parent / "results" / "published")
