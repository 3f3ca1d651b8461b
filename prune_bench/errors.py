"""Errors a user can fix. The CLI prints them as one line each and exits with status 2 (130
for an interruption), and the wording helpers those lines share."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

MAX_SUGGESTIONS = 3
CLOSENESS = 0.6  # difflib's ratio a suggestion needs


class PruneBenchError(Exception):
    """Base class: the message names the config key (or file) and what is allowed."""


class ConfigError(PruneBenchError):
    pass


class DataError(PruneBenchError):
    pass


class CheckpointError(PruneBenchError):
    pass


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, told truthfully: `what` happened and what was saved ("interrupted after epoch 2
    of 5"), and what running the command `again` does. `run_dir`: the run it interrupted (None:
    none was under way); `resumes`: whether that run goes on from something it saved."""

    def __init__(self, what: str, again: str, run_dir=None, resumes: bool = False):
        super().__init__(f"{what}; {again}")
        self.what, self.again, self.run_dir, self.resumes = what, again, run_dir, resumes


def first_line(error: BaseException) -> str:
    """`Type: first line of the message` (at most 200 characters of it)."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:200]}" if lines else type(error).__name__


def in_words(names: list[str], last: str = "or") -> str:
    """a; a or b; a, b or c."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {last} {names[-1]}"


def close_matches(word: str, options: Iterable[str]) -> list[str]:
    """The options (at most three) that look like a mistyped `word`, closest first."""
    return difflib.get_close_matches(word, list(options), n=MAX_SUGGESTIONS, cutoff=CLOSENESS)


def suggest(word: str, options: Iterable[str], otherwise: str) -> str:
    """'did you mean a, b or c?' for the options close to `word`; else `otherwise`."""
    close = close_matches(word, options)
    return f"did you mean {in_words(close)}?" if close else otherwise
