#!/bin/sh
# Full report for the task log, then one summary line (the job's result).
set -eu
if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "nvidia-smi not found: the container got no GPU (NVIDIA_VISIBLE_DEVICES=${NVIDIA_VISIBLE_DEVICES:-unset})" >&2
  exit 2
fi
nvidia-smi
count=$(nvidia-smi --query-gpu=uuid --format=csv,noheader | wc -l)
first=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -n 1)
echo "gpus=$count first=\"$first\""
