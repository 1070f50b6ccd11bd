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
#
# The GloVe box of the same column (GloVe 28.7, GloVe_Xavier 31.9, Xavier 31.6 BLEU) with GloVe on disk:
#   SRC_VECTORS=glove:vectors_de.txt TGT_VECTORS=glove:glove.840B.300d.txt bash examples/mt5_iwslt2017.sh
# (deepset's German GloVe for the encoder, Common Crawl 840B for the decoder, §3.2): the vocabularies
# are then spaCy words (the task's lower-cased spaCy tokenizer, min-freq 5; A.2), the model Table 5's
# GloVe column (D=300, 10 heads, batch 128), and MODEL is not read. Both variables are needed.
set -euo pipefail
out=${OUT:-mt5-iwslt2017}
seeds=${SEEDS:-4}
variants=${VARIANTS:-xavier,pretrained,standardized,shuffled}
device=${DEVICE:-cuda}
model=${MODEL:-mt5}
mkdir -p "$out"

# word vectors per side (SRC_VECTORS/TGT_VECTORS, e.g. glove:FILE) in place of the checkpoint's rows
declare -A vectors=([src]=${SRC_VECTORS:-} [tgt]=${TGT_VECTORS:-})
if [ -n "${vectors[src]}${vectors[tgt]}" ] && { [ -z "${vectors[src]}" ] || [ -z "${vectors[tgt]}" ]; }; then
  echo "give both SRC_VECTORS and TGT_VECTORS (word vectors for each side), or neither (MODEL's rows)" >&2
  exit 2
fi

# 1. vocabularies: the training split cut into mT5's SentencePiece pieces, min-freq 5 (A.2); with
#    word vectors, spaCy words (the task's tokenizer)
for side in src tgt; do
  if [ -n "${vectors[$side]}" ]; then tok=(); else tok=(--tokenizer "hf:$model"); fi
  [ -s "$out/$side.vocab" ] || embtool vocab iwslt2017 --side "$side" ${tok[@]+"${tok[@]}"} --min-freq 5 -o "$out/$side.vocab"
done

# 2. mT5's rows for those pieces (alias mt5 = google/mt5-base); σ ≈ 11–23, far above Xavier's ≈ 0.01
#    (or the word vectors' rows: GloVe σ ≈ 0.33)
for side in src tgt; do
  [ -s "$out/$side.emb.safetensors" ] ||
    embtool extract "${vectors[$side]:-$model}" --vocab "$out/$side.vocab" -o "$out/$side.emb.safetensors"
done
embtool stats "$out/src.emb.safetensors" "$out/tgt.emb.safetensors"

# 3. Xavier, mT5, mT5_Xavier (Eq. 1), mT5_Shuffled × seeds; bf16 autocast; resumable; the text is
# tokenized once (the cache in $EMBTOOL_CACHE), not once per run
# shellcheck disable=SC2086  # EXTRA and WHERE are lists of options
embtool experiment iwslt2017 --src-emb "$out/src.emb.safetensors" --tgt-emb "$out/tgt.emb.safetensors" \
  --variants "$variants" --seeds "$seeds" --device "$device" ${WHERE:-} ${EXTRA:-} -o "$out/grid"

# 4. Table 1 / Table 2 / Figure 1 for the grid (also written to $out/grid/report.md and curves.png)
embtool report "$out/grid/runs" --plot "$out/curves.png" --csv "$out/table1.csv"
