"""DPM, the Decay Pruning Method, on structural hosts behind one interface (hosts.py)."""

from ...registry import Component
from .config import DPMSection, check_dpm, check_dpm_model
from .pruner import DPMPruner

DPM = Component(DPMPruner, check_dpm, schema=DPMSection)

__all__ = ["DPM", "DPMPruner", "check_dpm_model"]
