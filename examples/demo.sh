#!/usr/bin/env bash
# The main job on an embedded default: a vocabulary from a corpus that gensim ships, a Xavier
# table for it, then the standardize step of the paper's Eq. 1 and the statistics before and after.
set -euo pipefail
out=${DEMO_DIR:-demo}
mkdir -p "$out"
corpus=$(python -c "from gensim.test.utils import datapath; print(datapath('lee_background.cor'))")
python - "$corpus" "$out/vocab.txt" <<'PY'
import collections, sys
from embtool.vocabfile import Vocabulary, write_vocab
counts = collections.Counter(w for line in open(sys.argv[1], encoding="utf-8") for w in line.lower().split())
kept = [(w, c) for w, c in counts.most_common() if c >= 2]
write_vocab(Vocabulary([w for w, _ in kept], [c for _, c in kept], {"tokenizer": "whitespace+lower", "min_freq": "2"}), sys.argv[2])
PY
embtool init xavier --vocab "$out/vocab.txt" --dim 300 --seed 1 -o "$out/xavier.safetensors"
# a "pretrained-like" wide table (σ = 0.37, GloVe's), then Eq. 1 back to Xavier's σ
embtool standardize --to normal:0.37 < "$out/xavier.safetensors" > "$out/wide.safetensors"
embtool stats "$out/xavier.safetensors" "$out/wide.safetensors"
embtool standardize --to xavier < "$out/wide.safetensors" > "$out/wide_x.safetensors"
embtool stats "$out/wide.safetensors" "$out/wide_x.safetensors"
