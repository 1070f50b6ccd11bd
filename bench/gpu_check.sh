#!/usr/bin/env bash
# The GPU check (bench/gpu_check.py: environment, speed against nn.Transformer, attention kernels,
# DDP, the CLI end to end, peak memory; each section within its time budget, ≤ 8 minutes on one
# GPU, one JSON entry a section with --json-out). `make gpu-check` runs it. Without CUDA it says so
# and exits 0, unless given --smoke (every section at toy size on the CPU, as CI runs it).
#
#   bash bench/gpu_check.sh [--data data/multi30k] [--json-out gpu.json] [--only 2,3] [--smoke]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-$here/.venv/bin/python}"
[ -x "$py" ] || py="$(command -v python3)"
export PYTHONPATH="$here/src${PYTHONPATH:+:$PYTHONPATH}"
case " $* " in
*" --smoke "*) exec timeout 240 "$py" "$here/bench/gpu_check.py" "$@" ;;
esac
if ! "$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: no CUDA device here (or torch without CUDA); nothing to check at full size." \
        "--smoke runs every section at toy size on the CPU."
    exit 0
fi
# the sections' budgets add up to 430 s; this stops a run whose budgets failed to
exec timeout 500 "$py" "$here/bench/gpu_check.py" "$@"
