"""Numbers in words for logs, status lines and plot labels."""

from __future__ import annotations


def duration(seconds: float | None) -> str:
    """1h02m, 4m05s, 12s."""
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def n_epochs(epochs: int) -> str:
    """1 epoch, 3 epochs."""
    return "1 epoch" if epochs == 1 else f"{epochs} epochs"
