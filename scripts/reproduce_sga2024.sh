#!/usr/bin/env bash
# Reproduce sga2024 (Yun 2024): ResNet-56/110/152 x {Adam, StochGradAdam} x seeds, each trained
# once and pruned at 0, 10, ..., 90% without fine-tuning; then the table and the plot.
# A GPU is recommended (100 epochs per model). Extra arguments go to every run, e.g.
#   scripts/reproduce_sga2024.sh data=cifar10_jpeg      SEEDS=1,2 scripts/reproduce_sga2024.sh
set -euo pipefail
seeds=${SEEDS:-1,2,3}
prune-bench run -m \
  +exp=resnet56_adam,resnet56_sga,resnet110_adam,resnet110_sga,resnet152_adam,resnet152_sga \
  seed="$seeds" "$@"
prune-bench table sga2024
prune-bench plot sga2024
