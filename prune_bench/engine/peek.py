"""What a checkpoint saved, read without torch: `prune-bench status` reads every run folder
without loading torch (which takes longer to import than the whole listing takes).

A checkpoint (engine/checkpoint.py) is torch.save's zip archive: the payload's pickle in
`<archive>/data.pkl`, each tensor's bytes in a file of its own. The pickle is read with every
class it names replaced by an empty stand-in (a tensor, a storage, a dtype, a numpy array), so
the plain containers and numbers around them, `state.epoch` among them, come back as saved;
nothing a file names is ever imported or called."""

from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path

CONTAINERS = {("collections", "OrderedDict"): collections.OrderedDict}  # a state_dict: filled item by item


class StandIn(dict):
    """Whatever the pickle builds besides plain containers: made from any arguments, filled
    with nothing."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()

    def __setstate__(self, state) -> None:
        pass

    def append(self, item) -> None:
        pass

    def extend(self, items) -> None:
        pass


class PayloadReader(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        return CONTAINERS.get((module, name), StandIn)

    def persistent_load(self, pid):
        return None  # a tensor's storage: its bytes stay in the archive


def checkpoint_epoch(path: Path) -> int | None:
    """Completed epochs saved in a checkpoint, or None when it is unreadable."""
    try:
        with zipfile.ZipFile(path) as archive:
            (name,) = [entry for entry in archive.namelist() if entry.endswith("/data.pkl")]
            with archive.open(name) as handle:
                payload = PayloadReader(handle).load()
        return int(payload["state"]["epoch"])
    except Exception:
        return None
