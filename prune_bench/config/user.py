"""The user's config folders: `prune-bench --config-dir DIR <command>` or $PRUNE_BENCH_CONFIG_DIR
(folders separated by os.pathsep). Each folder is laid out like the shipped tree (conf/): exp/,
reproduce/ and table/, options of any config group (model/, pruner/, ...), and published/ for
the published numbers of its tables. Its files add to the shipped ones; a file that would
shadow a shipped one (or one of another user folder) is an error, never a silent override.

The option is kept in the environment variable, so every process the command starts (a
launcher's jobs) sees the same folders. Hydra finds the folders' files through its search path
(`hydra.searchpath`, added to every composition by `search_path_overrides`)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError
from .shipped import conf_dir

CONFIG_DIR_VARIABLE = "PRUNE_BENCH_CONFIG_DIR"
OPTION = "--config-dir"


def take_config_dir_options(argv: list[str]) -> list[str]:
    """The command line without its `--config-dir DIR` (or `--config-dir=DIR`) options, before
    the command or after it (`prune-bench run --config-dir DIR ...` too: Hydra's own option of
    that name would add the folder to the same search path). The folders go before those
    $PRUNE_BENCH_CONFIG_DIR already names (absolute, so jobs started in another folder find
    them), and are checked (`config_dirs`)."""
    given, rest, position = [], [], 0
    while position < len(argv):
        arg = argv[position]
        if arg == OPTION:
            if position + 1 == len(argv):
                raise ConfigError(f"{OPTION}: needs a folder, e.g. {OPTION} my_configs")
            given.append(argv[position + 1])
            position += 2
            continue
        if arg.startswith(OPTION + "="):
            given.append(arg.split("=", 1)[1])
        else:
            rest.append(arg)
        position += 1
    if given:
        earlier = os.environ.get(CONFIG_DIR_VARIABLE, "")
        folders = [str(Path(folder).expanduser().resolve()) for folder in given]
        os.environ[CONFIG_DIR_VARIABLE] = os.pathsep.join([*folders, *([earlier] if earlier else [])])
    config_dirs()
    return rest


def config_dirs() -> list[Path]:
    """The user's config folders, in order; each must be a folder, and no config file in one may
    have the path of a shipped one or of one in an earlier folder."""
    text = os.environ.get(CONFIG_DIR_VARIABLE, "")
    folders = []
    for part in text.split(os.pathsep):
        if not part.strip():
            continue
        folder = Path(part).expanduser().resolve()
        if not folder.is_dir():
            raise ConfigError(f"{OPTION}: {part} is not a folder ({OPTION} or ${CONFIG_DIR_VARIABLE})")
        if folder not in folders and folder != conf_dir().resolve():
            folders.append(folder)
    seen = {path.relative_to(conf_dir()): "the shipped config" for path in conf_dir().rglob("*.yaml")}
    for folder in folders:
        for path in sorted(folder.rglob("*.yaml")):
            relative = path.relative_to(folder)
            if relative in seen:
                group, name = relative.parent.as_posix(), relative.stem
                what = f"{group} '{name}'" if group != "." else f"'{relative}'"
                raise ConfigError(f"{OPTION}: {path} has the name of {what} in {seen[relative]}; "
                                  "rename it (a name may not shadow another)")
            seen[relative] = str(folder)
    return folders


def search_path_overrides() -> list[str]:
    """The override that puts the user's folders on Hydra's search path (none without them)."""
    folders = config_dirs()
    if not folders:
        return []
    return ["hydra.searchpath=[" + ",".join(f"'file://{folder}'" for folder in folders) + "]"]
