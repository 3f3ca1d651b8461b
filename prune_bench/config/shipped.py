"""The shipped files: the Hydra config tree and the published numbers. Both live at the top of
the repository and are installed inside the package (see pyproject.toml)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from ..errors import ConfigError, suggest

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


def load_shipped(group: str, name: str, kind: str, required: tuple[str, ...], resolve: bool):
    """(path, content) of conf/<group>/<name>.yaml, which must hold the `required` keys; any
    problem is one line naming `kind` (the config key a user would have mistyped)."""
    path = conf_dir() / group / f"{name}.yaml"
    if not path.is_file():
        names = shipped_names(group)
        listing = f"allowed: {', '.join(names) or 'none'}"
        raise ConfigError(f"{kind}: unknown {kind} '{name}'; {suggest(name, names, listing)}")
    spec = OmegaConf.to_container(OmegaConf.load(path), resolve=resolve)
    for key in required:
        if key not in spec:
            raise ConfigError(f"{kind}: {path} has no '{key}'")
    return path, spec
