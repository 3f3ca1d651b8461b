#!/usr/bin/env bash
# Kept for old notes: the sga2024 grid is now `prune-bench reproduce sga2024` (conf/reproduce/sga2024.yaml).
exec prune-bench reproduce sga2024 ${SEEDS:+--seeds "$SEEDS"} "$@"
