"""An example of a network and a pruner that live outside prune-bench (docs/extending.md)."""
