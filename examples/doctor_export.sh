#!/usr/bin/env bash
# A raw word-vector file through doctor, the fix it names, and out to other trainers, in seconds:
#   1. a word2vec text file at a pretrained table's scale (σ ≈ 0.3) and a vocabulary for it;
#   2. extract → doctor (exit 1: σ far from Xavier's, position encoding drowned) → standardize →
#      doctor (exit 0); the histograms of both tables (stats --plot);
#   3. resize to a model's width; export as word2vec (gensim reads it back) and for fairseq.
set -euo pipefail
out=${EXAMPLE_DIR:-doctor_export}
mkdir -p "$out"

echo "== 1. a word2vec file and its vocabulary"
python - "$out" <<'PY'
import sys
import numpy as np
out = sys.argv[1]
words = [f"w{i}" for i in range(400)]
rows = np.random.default_rng(0).standard_normal((len(words), 32)) * 0.3
with open(f"{out}/w2v.txt", "w") as f:
    f.write(f"{len(words)} 32\n" + "".join(w + " " + " ".join(f"{v:.6f}" for v in r) + "\n" for w, r in zip(words, rows)))
with open(f"{out}/w2v.vocab", "w") as f:
    f.write("#embtool tokenizer=whitespace\n" + "".join(f"{w}\t{400 - i}\n" for i, w in enumerate(words)))
PY

echo "== 2. doctor, the fix, doctor again"
embtool extract "word2vec:$out/w2v.txt" --vocab "$out/w2v.vocab" -o "$out/w2v.safetensors"
if embtool doctor "$out/w2v.safetensors"; then echo "expected findings" >&2; exit 1; fi
embtool standardize "$out/w2v.safetensors" --to xavier -o "$out/w2v_x.safetensors"
embtool doctor "$out/w2v_x.safetensors" --vocab "$out/w2v.vocab"
embtool stats "$out/w2v.safetensors" "$out/w2v_x.safetensors" --plot "$out/w2v.png" > /dev/null

echo "== 3. another width, and out to other trainers"
embtool resize "$out/w2v.safetensors" --dim 48 --method pad | embtool standardize --to xavier > "$out/w2v48_x.safetensors"
embtool doctor "$out/w2v48_x.safetensors" --dim 48
embtool export "$out/w2v_x.safetensors" --format word2vec -o "$out/w2v_x.vec"
embtool export "$out/w2v_x.safetensors" --format fairseq -o "$out/w2v_x.fairseq.txt"
python -c "from gensim.models import KeyedVectors as K; print(len(K.load_word2vec_format('$out/w2v_x.vec')), 'vectors read back by gensim')"
