"""The speed benchmarks: one module per benchmark, each timing the project's own code paths
(`python -m benchmarks --list`; cli.py says how to run them)."""
