"""One module per command: `prune-bench NAME ARGS` imports prune_bench/commands/NAME.py, and no
other command's module, and calls its `main(ARGS)`. Each module imports what its command needs
at its top, so a command never waits for what only another one needs: `list` and `status` load
no torch, pandas or matplotlib, `run` no pandas or matplotlib."""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import NoReturn


def command_module(name: str) -> ModuleType:
    """The module of the command `name`, imported now (with what that command needs)."""
    return importlib.import_module(f"{__name__}.{name}")


def fail(message: str, code: int = 2) -> NoReturn:
    """A user error as `prune-bench: error: <line>` on stderr (one per line of `message`), then exit."""
    for line in str(message).splitlines() or ["error"]:
        print(f"prune-bench: error: {line}", file=sys.stderr)
    sys.exit(code)
