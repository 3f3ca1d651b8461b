"""`python -m benchmarks [NAME ...] [options]`: see cli.py."""

from .cli import main

main()
