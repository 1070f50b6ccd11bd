#!/usr/bin/env bash
# Everything the GPU path needs, checked at once on a machine with CUDA (≤ 8 minutes on one GPU):
# a CUDA train smoke (bf16 autocast, SDPA's fused kernels, --compile), DDP over all visible GPUs
# against one process, and the paper's Multi30k model's target tokens/s against a plain
# nn.Transformer (ratio; goal ≥ 1.5×) with peak GPU memory; one summary table at the end (put it in
# the README). On a machine without CUDA it says so and exits 0.
#
#   bash bench/gpu_check.sh [--data ../shared/data/multi30k] [--steps 60]      (or: make gpu-check)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-$here/.venv/bin/python}"
[ -x "$py" ] || py="$(command -v python3)"
export PYTHONPATH="$here/src${PYTHONPATH:+:$PYTHONPATH}"
if ! "$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: no CUDA device here (or torch without CUDA); nothing to check. Run it on a GPU machine."
    exit 0
fi
exec timeout 480 "$py" "$here/bench/gpu_check.py" "$@"
