#!/usr/bin/env bash
# The design card's recipe: mT5's embedding rows into a transformer trained from scratch on
# IWSLT2017 de→en — the paper's Table 1, T5 box, IWSLT2017 column (mT5 15.7 BLEU, mT5_Xavier 32.9,
# Xavier 32.4) and Figure 1 (centre). For users with a GPU and the Hugging Face hub: it reads
# google/mt5-base's tokenizer and only its embedding tensor (never the whole model), and the
# IWSLT 2017 de-en data through `datasets` (or $EMBTOOL_DATA_DIR/iwslt2017 in ../shared/data's layout).
#
# Table 5's settings: D=768 (mT5-base's), 3+3 layers, 20 epochs, batch 112, lr 2e-4, min-freq 5,
# 4 seeds; about 10 min an epoch on one GPU (the paper's 9.5), so the grid (4 variants × 4 seeds)
# takes about 2 days. Fewer: SEEDS=1 VARIANTS=xavier,pretrained,standardized. MODEL=mbert gives the
# BERT box (mBERT), MODEL=PATH any local checkpoint; EXTRA="--epochs 2 …" adds training options.
# With several GPUs, WHERE="--devices 0,1,2,3" trains one run per GPU at once; on a Slurm cluster
# WHERE="--launcher slurm --partition gpu --time 4:00:00" submits the runs as one job array.
set -euo pipefail
out=${OUT:-mt5-iwslt2017}
seeds=${SEEDS:-4}
variants=${VARIANTS:-xavier,pretrained,standardized,shuffled}
device=${DEVICE:-cuda}
model=${MODEL:-mt5}
mkdir -p "$out"

# 1. vocabularies: the training split cut into mT5's SentencePiece pieces, min-freq 5 (A.2)
for side in src tgt; do
  [ -s "$out/$side.vocab" ] || embtool vocab iwslt2017 --side "$side" --tokenizer "hf:$model" --min-freq 5 -o "$out/$side.vocab"
done

# 2. mT5's rows for those pieces (alias mt5 = google/mt5-base); σ ≈ 11–23, far above Xavier's ≈ 0.01
for side in src tgt; do
  [ -s "$out/$side.emb.safetensors" ] || embtool extract "$model" --vocab "$out/$side.vocab" -o "$out/$side.emb.safetensors"
done
embtool stats "$out/src.emb.safetensors" "$out/tgt.emb.safetensors"

# 3. Xavier, mT5, mT5_Xavier (Eq. 1), mT5_Shuffled × seeds; bf16 autocast; resumable; the text is
# tokenized once (the cache in $EMBTOOL_CACHE), not once per run
# shellcheck disable=SC2086  # EXTRA and WHERE are lists of options
embtool experiment iwslt2017 --src-emb "$out/src.emb.safetensors" --tgt-emb "$out/tgt.emb.safetensors" \
  --variants "$variants" --seeds "$seeds" --device "$device" ${WHERE:-} ${EXTRA:-} -o "$out/grid"

# 4. Table 1 / Table 2 / Figure 1 for the grid (also written to $out/grid/report.md and curves.png)
embtool report "$out/grid/runs" --plot "$out/curves.png" --csv "$out/table1.csv"
