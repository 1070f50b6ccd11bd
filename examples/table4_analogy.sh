#!/usr/bin/env bash
# The paper's Table 4 (Kim et al. 2024, §5): how much word-analogy structure a word2vec table keeps
# as a transformer's input layer sees it — the table; scaled by √D; scaled plus sinusoidal
# position encodings; standardized to Xavier (Eq. 1); standardized, scaled, plus position encodings.
# Scaling alone cannot change the accuracy (analogy normalises every vector); position encodings
# added to a table whose values are small next to them (after standardizing) destroy most of it.
#
# word2vec is trained here with gensim on the English side of Multi30k ($EMBTOOL_DATA_DIR, else
# ../shared/data), or on any whitespace-tokenized text file given as TEXT (plain or .gz); with
# neither, on the small corpus that gensim ships. Analogy questions: Mikolov's questions-words.txt.
#
#   SIZE=full (default) D=300, 10 epochs: a minute or two on a CPU
#   SIZE=tiny the smoke test the test suite runs: D=32, 1 epoch
#
# Output: $OUT (default table4/): w2v.txt, vocab.txt, w2v.safetensors, one JSON per row, and the
# table printed at the end.
set -euo pipefail
SIZE=${SIZE:-full}
out=${OUT:-table4}
case "$SIZE" in
  tiny) dim=32; epochs=1 ;;
  full) dim=300; epochs=10 ;;
  *) echo "SIZE must be tiny or full, not '$SIZE'" >&2; exit 2 ;;
esac
data=${EMBTOOL_DATA_DIR:-../shared/data}
text=${TEXT:-$data/multi30k/train.en.gz}
mkdir -p "$out"

# 1. a word2vec table: gensim trains it, `embtool extract` reads its vectors for its vocabulary
#    (most frequent word first, as analogy's --restrict expects)
if [ ! -s "$out/w2v.safetensors" ]; then
  python - "$text" "$out" "$dim" "$epochs" <<'PY'
import gzip
import sys
from pathlib import Path

from gensim.models import Word2Vec
from gensim.test.utils import datapath

from embtool.text.vocabfile import Vocabulary, write_vocab

text, out, dim, epochs = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if not text.is_file():
    print(f"{text} not found: training on gensim's Lee corpus instead", file=sys.stderr)
    text = Path(datapath("lee_background.cor"))
opener = gzip.open if text.suffix == ".gz" else open
with opener(text, "rt", encoding="utf-8") as f:
    sentences = [line.split() for line in f]
model = Word2Vec(sentences, vector_size=dim, min_count=2, epochs=epochs, seed=1, workers=2)
model.wv.save_word2vec_format(f"{out}/w2v.txt")
words = list(model.wv.index_to_key)
counts = [int(model.wv.get_vecattr(w, "count")) for w in words]
write_vocab(Vocabulary(words, counts, {"tokenizer": "whitespace", "min_freq": "2"}), f"{out}/vocab.txt")
print(f"word2vec: {len(words)} words × {dim} from {text.name}", file=sys.stderr)
PY
  embtool extract "word2vec:$out/w2v.txt" --vocab "$out/vocab.txt" -o "$out/w2v.safetensors"
fi

# 2. the five rows, each a pipe into `embtool analogy` (3CosAdd, gensim's answers)
w2v="$out/w2v.safetensors"
embtool analogy "$w2v" --json > "$out/1-table.json"
embtool scale --by sqrt-dim < "$w2v" | embtool analogy --json > "$out/2-scaled.json"
embtool scale --by sqrt-dim < "$w2v" | embtool posenc --seed 1 | embtool analogy --json > "$out/3-scaled+posenc.json"
embtool standardize --to xavier < "$w2v" | embtool analogy --json > "$out/4-standardized.json"
embtool standardize --to xavier < "$w2v" | embtool scale --by sqrt-dim | embtool posenc --seed 1 \
  | embtool analogy --json > "$out/5-standardized+posenc.json"

# 3. Table 4
python - "$out" <<'PY'
import json
import sys
from pathlib import Path

rows = [
    ("1-table", "word2vec table"),
    ("2-scaled", "× √D"),
    ("3-scaled+posenc", "× √D + position encodings"),
    ("4-standardized", "standardized to Xavier (Eq. 1)"),
    ("5-standardized+posenc", "standardized × √D + position encodings"),
]
print(f"{'Table 4: word analogies (3CosAdd)':44} {'correct/answered (%)':>24}")
for name, label in rows:
    total = json.loads((Path(sys.argv[1]) / f"{name}.json").read_text())["total"]
    cell = f"{total['correct']}/{total['answered']} ({100 * total['accuracy']:.1f})"
    print(f"{label:44} {cell:>24}")
print(f"(questions with a word outside the table, skipped: {total['skipped']})")
PY
