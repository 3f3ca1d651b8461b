"""The run engine: the loop body, the stage runner, checkpoints, one run end to end, its record."""
