#!/usr/bin/env bash
# The paper's Table 3 on Multi30k de→en: embeddings trained or frozen × position encodings on or off,
# for Xavier, the pretrained (GloVe-style word2vec) table and its Xavier-standardized version (Eq. 1).
# One `embtool experiment` grid per (train, pos.) setting, then one report over all of them: the
# report labels each cell with its setting ("word2vec_Xavier [frozen, no posenc]").
#
#   SIZE=cpu (default) the CPU-sized setting of reproduce_table1_multi30k.sh, 3 variants × 2 seeds × 4
#            settings = 24 short runs (about 2–3 hours on two CPU cores, estimated from Table 1's 8 runs)
#   SIZE=gpu the paper's: Table 5 settings on CUDA, 3 seeds
#   SIZE=tiny a smoke test
#
# The tables come from reproduce_table1_multi30k.sh (STEP=tables), in $OUT/ (default table3-multi30k/):
# word2vec trained there, or the paper's GloVe with SRC_VECTORS=glove:vectors_de.txt
# TGT_VECTORS=glove:glove.840B.300d.txt (SIZE=gpu then runs the paper's Table 3 as it was).
set -euo pipefail
SIZE=${SIZE:-cpu}
out=${OUT:-table3-multi30k}
here=$(cd "$(dirname "$0")" && pwd)
case "$SIZE" in
  tiny) seeds=1; variants=${VARIANTS:-xavier,standardized}
        train=(--epochs 1 --layers 1 --batch-size 32 --max-train-examples 200 --max-eval-examples 20 --device cpu) ;;
  cpu)  seeds=2; variants=${VARIANTS:-xavier,pretrained,standardized}
        train=(--epochs 5 --layers 1 --lr 1e-3 --batch-size 64 --max-train-examples 10000 --max-eval-examples 300 --device cpu) ;;
  gpu)  seeds=3; variants=${VARIANTS:-xavier,pretrained,standardized}
        train=(--device cuda) ;;  # Table 5 / A.2: train's defaults
  *) echo "SIZE must be tiny, cpu or gpu, not '$SIZE'" >&2; exit 2 ;;
esac

SIZE=$SIZE OUT=$out STEP=tables bash "$here/reproduce_table1_multi30k.sh"

# Table 3's four rows per initialisation: Train/Pos. = no/no, yes/no, no/yes, yes/yes
for setting in "frozen nopos" "trained nopos" "frozen pos" "trained pos"; do
  set -- $setting
  flags=()
  [ "$1" = frozen ] && flags+=(--freeze-emb)
  [ "$2" = nopos ] && flags+=(--no-posenc)
  embtool experiment multi30k --src-emb "$out/src.safetensors" --tgt-emb "$out/tgt.safetensors" \
    --variants "$variants" --seeds "$seeds" "${train[@]}" ${flags[@]+"${flags[@]}"} -o "$out/$1-$2"
done

embtool report "$out"/*-*/runs -o "$out/report.md" --plot "$out/curves.png" --csv "$out/table3.csv"
cat "$out/report.md"
