#!/usr/bin/env bash
# A raw word-vector file through doctor, the fix it names, and out to other trainers, in seconds:
#   1. a word2vec text file at a pretrained table's scale (σ ≈ 0.3) and a vocabulary for it;
#   2. extract → doctor (exit 1: σ far from Xavier's, position encoding drowned) → standardize →
#      doctor (exit 0); the histograms of both tables (stats --plot);
#   3. resize to a model's width; export as word2vec (gensim reads it back) and for fairseq.
# With GloVe on disk: VECTORS=glove:glove.840B.300d.txt (a .zip or .gz is read as it is) runs the
# same steps on the file's first 400 words (GloVe lists the most frequent first) in place of step 1's.
set -euo pipefail
out=${EXAMPLE_DIR:-doctor_export}
vectors=${VECTORS:-}
mkdir -p "$out"

if [ -z "$vectors" ]; then
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
  vectors="word2vec:$out/w2v.txt"
else
  echo "== 1. the vocabulary: the first 400 words of ${vectors#*:}"
  python - "$out" "${vectors#*:}" <<'PY'
import sys
from itertools import islice

from embtool.formats.sources.archives import open_stream, split_member

out, (path, member) = sys.argv[1], split_member(sys.argv[2])
with open_stream(path, member) as f:
    lines = [line.decode("utf-8", "replace") for line in islice(f, 401)]
if len(lines[0].split()) == 2:  # a word2vec/.vec "count dim" header
    lines = lines[1:]
words = list(dict.fromkeys(line.split(" ", 1)[0] for line in lines[:400]))
with open(f"{out}/w2v.vocab", "w", encoding="utf-8") as f:
    f.write("#embtool tokenizer=whitespace\n" + "".join(f"{w}\t{len(words) - i}\n" for i, w in enumerate(words)))
PY
fi

echo "== 2. doctor, the fix, doctor again"
embtool extract "$vectors" --vocab "$out/w2v.vocab" -o "$out/w2v.safetensors"
if embtool doctor "$out/w2v.safetensors"; then echo "expected findings" >&2; exit 1; fi
embtool standardize "$out/w2v.safetensors" --to xavier -o "$out/w2v_x.safetensors"
embtool doctor "$out/w2v_x.safetensors" --vocab "$out/w2v.vocab"
embtool stats "$out/w2v.safetensors" "$out/w2v_x.safetensors" --plot "$out/w2v.png" > /dev/null

echo "== 3. another width (half as wide again: 32 → 48, GloVe's 300 → 450), and out to other trainers"
dim=$(python -c 'import sys; from embtool import load; print(load(sys.argv[1]).dim)' "$out/w2v.safetensors")
wide=$((dim * 3 / 2))
embtool resize "$out/w2v.safetensors" --dim "$wide" --method pad | embtool standardize --to xavier > "$out/w2v${wide}_x.safetensors"
embtool doctor "$out/w2v${wide}_x.safetensors" --dim "$wide"
embtool export "$out/w2v_x.safetensors" --format word2vec -o "$out/w2v_x.vec"
embtool export "$out/w2v_x.safetensors" --format fairseq -o "$out/w2v_x.fairseq.txt"
python -c "from gensim.models import KeyedVectors as K; print(len(K.load_word2vec_format('$out/w2v_x.vec')), 'vectors read back by gensim')"
