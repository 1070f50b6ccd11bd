#!/usr/bin/env bash
# Beyond the vanilla transformer (issue 12): does standardizing a pretrained table (Kim et al. 2024,
# Eq. 1) still matter under Pre-LN or Admin (Liu et al. 2020), or with a projected input embedding
# (Chung et al. 2021)? On Multi30k de→en: variants Xavier / pretrained (word2vec) / standardized ×
# --norm post / pre / admin, one `embtool experiment` grid, plus one row per variant that feeds the
# D-wide table through a learned --input-dim projection into a model twice as wide (Post-LN). Then
# one report (Table 1 with "diverged" where a run diverged), validation curves and the embedding
# dynamics per variant.
#
#   SIZE=cpu  (default) a 10,000-pair slice, D=64, 2+2 layers, 4 heads, FFN 256, lr 2e-3, 3 epochs
#             (make demo's setting), 3 seeds: (3 norms + 1 --input-dim row) × 3 variants × 3 seeds =
#             36 runs, two at a time with one thread each: 33.5 min on 2 idle cores (README: the table)
#   SIZE=gpu  the paper's setting (Table 5) on CUDA, 3 seeds
#   SIZE=tiny a smoke test (seconds of training per run)
#
# The tables come from reproduce_table1_multi30k.sh (STEP=tables), in $OUT/ (default beyond-vanilla/):
# word2vec trained there, or GloVe with SRC_VECTORS=glove:vectors_de.txt TGT_VECTORS=glove:glove.840B.300d.txt
# (the paper's; either alone replaces one side). The --input-dim row projects the tables' width,
# whatever it is (GloVe: 300 → 600).
# JOBS=N runs N trainings at once (cpu: 2, else 1); THREADS=N gives each N CPU threads (default 1
# when JOBS > 1, else every core); SEEDS=N (cpu) runs fewer or more seeds. Running it again resumes
# the grids.
set -euo pipefail
SIZE=${SIZE:-cpu}
out=${OUT:-beyond-vanilla}
here=$(cd "$(dirname "$0")" && pwd)
case "$SIZE" in
  tiny) seeds=1; variants=${VARIANTS:-xavier,standardized}
        train=(--epochs 1 --layers 1 --batch-size 32 --max-train-examples 200 --max-eval-examples 20 --device cpu) ;;
  cpu)  seeds=${SEEDS:-3}; variants=${VARIANTS:-xavier,pretrained,standardized}
        train=(--epochs 3 --layers 2 --heads 4 --ff 256 --lr 2e-3 --batch-size 64 --max-train-examples 10000
               --max-eval-examples 300 --device cpu) ;;
  gpu)  seeds=3; variants=${VARIANTS:-xavier,pretrained,standardized}
        train=(--batch-size 64 --device cuda) ;;
  *) echo "SIZE must be tiny, cpu or gpu, not '$SIZE'" >&2; exit 2 ;;
esac

SIZE=$SIZE OUT=$out STEP=tables bash "$here/reproduce_table1_multi30k.sh"
tables=(--src-emb "$out/src.safetensors" --tgt-emb "$out/tgt.safetensors")
# the tables' width: the SIZE's word2vec D, or the vectors' (GloVe: 300)
dim=$(python -c 'import sys; from embtool import load; print(load(sys.argv[1]).dim)' "$out/src.safetensors")
if [ "$SIZE" = cpu ]; then jobs=${JOBS:-2}; else jobs=${JOBS:-1}; fi
if [ "$jobs" -gt 1 ]; then threads=${THREADS:-1}; else threads=${THREADS:-0}; fi  # 0: every core
train+=(--threads "$threads" --jobs "$jobs")

# variants × norms: the grid's cells are labelled "word2vec_Xavier [norm=admin]"
embtool experiment multi30k "${tables[@]}" --variants "$variants" --seeds "$seeds" "${train[@]}" \
  --grid norm=post,pre,admin -o "$out/norms"

# decoupled input embedding: each variant's D-wide table through a learned D → 2D projection
embtool experiment multi30k "${tables[@]}" --variants "$variants" --seeds "$seeds" "${train[@]}" \
  --input-dim "$dim" --d-model $((2 * dim)) -o "$out/input-dim"

embtool report "$out/norms/runs" "$out/input-dim/runs" -o "$out/report.md" --plot "$out/curves.png" \
  --plot-dynamics "$out/dynamics.png" --csv "$out/beyond_vanilla.csv"
cat "$out/report.md"
