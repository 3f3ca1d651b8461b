"""prune-bench: reproduce and combine CIFAR pruning results from Hydra configs."""

__version__ = "0.2.0"
