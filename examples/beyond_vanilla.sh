#!/usr/bin/env bash
# Beyond the vanilla transformer (issue 12): does standardizing a pretrained table (Kim et al. 2024,
# Eq. 1) still matter under Pre-LN or Admin (Liu et al. 2020), or with a projected input embedding
# (Chung et al. 2021)? On Multi30k de→en: variants Xavier / pretrained (word2vec) / standardized ×
# --norm post / pre / admin, one `embtool experiment` grid, plus one row that feeds the D-wide table
# through a learned --input-dim projection into a model twice as wide. Then one report (Table 1 with
# "diverged" where a run diverged), validation curves and the embedding dynamics per variant.
#
#   SIZE=cpu  (default) a 4,000-pair slice, D=64, 2+2 layers, lr 1e-3, 4 epochs, 2 seeds:
#             3 variants × 3 norms × 2 seeds + 1 × 2 (--input-dim) = 20 runs, estimated at about an
#             hour on two idle cores (not yet measured end to end; see the README)
#   SIZE=gpu  the paper's setting (Table 5) on CUDA, 3 seeds
#   SIZE=tiny a smoke test (seconds of training per run)
#
# The tables come from reproduce_table1_multi30k.sh (STEP=tables), in $OUT/ (default beyond-vanilla/).
# THREADS=N limits each run to N CPU threads; SEEDS=N (cpu) runs fewer seeds. Running it again
# resumes the grids.
set -euo pipefail
SIZE=${SIZE:-cpu}
out=${OUT:-beyond-vanilla}
here=$(cd "$(dirname "$0")" && pwd)
case "$SIZE" in
  tiny) seeds=1; variants=${VARIANTS:-xavier,standardized}; dim=16
        train=(--epochs 1 --layers 1 --batch-size 32 --max-train-examples 200 --max-eval-examples 20 --device cpu) ;;
  cpu)  seeds=${SEEDS:-2}; variants=${VARIANTS:-xavier,pretrained,standardized}; dim=64
        train=(--epochs 4 --layers 2 --lr 1e-3 --batch-size 64 --max-train-examples 4000 --max-eval-examples 300 --device cpu) ;;
  gpu)  seeds=3; variants=${VARIANTS:-xavier,pretrained,standardized}; dim=300
        train=(--batch-size 64 --device cuda) ;;
  *) echo "SIZE must be tiny, cpu or gpu, not '$SIZE'" >&2; exit 2 ;;
esac

SIZE=$SIZE OUT=$out STEP=tables bash "$here/reproduce_table1_multi30k.sh"
tables=(--src-emb "$out/src.safetensors" --tgt-emb "$out/tgt.safetensors")
train+=(--threads "${THREADS:-0}")  # 0: PyTorch's default (every core)

# variants × norms: the grid's cells are labelled "word2vec_Xavier [norm=admin]"
embtool experiment multi30k "${tables[@]}" --variants "$variants" --seeds "$seeds" "${train[@]}" \
  --grid norm=post,pre,admin -o "$out/norms"

# decoupled input embedding: the D-wide standardized table through a learned D → 2D projection
embtool experiment multi30k "${tables[@]}" --variants standardized --seeds "$seeds" "${train[@]}" \
  --input-dim "$dim" --d-model $((2 * dim)) -o "$out/input-dim"

embtool report "$out/norms/runs" "$out/input-dim/runs" -o "$out/report.md" --plot "$out/curves.png" \
  --plot-dynamics "$out/dynamics.png" --csv "$out/beyond_vanilla.csv"
cat "$out/report.md"
