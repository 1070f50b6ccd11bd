#!/usr/bin/env bash
# The paper's Table 4 (Kim et al. 2024, §6): how much word-analogy structure a pretrained table keeps
# as a transformer's input layer sees it, in the paper's seven rows and order:
#   1 the table                      2 & scaled (× √D)          3 & position encodings
#   4 & Xavier-std. (Eq. 1)          5 & Xavier-std. & scaled   6 & Xavier-std. & position encodings
#   7 & (position encodings × σ_p/σ_x)
# Modifications apply left to right. Scaling alone cannot change the accuracy (analogy normalises
# every vector); position encodings added to a table whose values are small next to them (after
# standardizing, or scaled up by σ_p/σ_x) destroy most of it; added to the wide table, nothing.
#
# The table: word2vec (gensim) on the English side of Multi30k ($EMBTOOL_DATA_DIR, else
# ../shared/data), tokenized as the paper's vocabulary (spaCy, lower-cased, min-freq 2: `embtool
# vocab multi30k --side tgt`, 5,888 words besides the specials), so that the questions answered are
# the paper's 1,631; without the data, gensim's small Lee corpus (whitespace tokens). Questions:
# Mikolov's questions-words.txt, 3CosAdd (gensim's answers).
#
#   SIZE=full (default) D=300, 10 epochs: a few CPU minutes
#   SIZE=tiny the smoke test the test suite runs: D=32, 1 epoch
#
# The paper's own rows, with GloVe on disk: VECTORS=glove:glove.840B.300d.txt (the decoder's table,
# Common Crawl 840B, §3.2; a .zip or .gz is read as it is) takes the table from that file in place of
# word2vec, for the same vocabulary (without the Multi30k data: the vocabulary of TEXT or the Lee
# corpus, whitespace tokens). SIZE is then not read.
#
# Output: $OUT (default table4/): w2v.txt, vocab.txt, w2v.safetensors (with VECTORS:
# vectors.safetensors), one JSON per row, and the table printed at the end.
set -euo pipefail
SIZE=${SIZE:-full}
out=${OUT:-table4}
case "$SIZE" in
  tiny) dim=32; epochs=1 ;;
  full) dim=300; epochs=10 ;;
  *) echo "SIZE must be tiny or full, not '$SIZE'" >&2; exit 2 ;;
esac
data=${EMBTOOL_DATA_DIR:-../shared/data}
mkdir -p "$out"

# 1. a word2vec table: gensim trains it on the vocabulary's tokens, `embtool extract` reads its
#    vectors for the vocabulary (most frequent word first, as analogy's --restrict expects); with
#    VECTORS, `embtool extract` reads that file's vectors for the vocabulary instead
vectors=${VECTORS:-}
if [ -n "$vectors" ]; then table="$out/vectors.safetensors"; else table="$out/w2v.safetensors"; fi
if [ ! -s "$table" ]; then
  if [ -f "$data/multi30k/train.en.gz" ] && [ -z "${TEXT:-}" ]; then
    embtool vocab multi30k --data-dir "$data/multi30k" --side tgt --specials '' -o "$out/vocab.txt"
    spec=$(head -1 "$out/vocab.txt" | sed -e 's/.*tokenizer=\([^ ]*\).*/\1/')
  else
    spec=whitespace
    text=${TEXT:-}
  fi
  python - "$spec" "$out" "$dim" "$epochs" "${text:-}" "$data" "$vectors" <<'PY'
import gzip
import sys
from collections import Counter
from pathlib import Path

from gensim.models import Word2Vec
from gensim.test.utils import datapath

from embtool.text.tokenizer import load_tokenizer
from embtool.text.vocabfile import Vocabulary, write_vocab

spec, out, dim, epochs, text, data = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
vectors = sys.argv[7]
if spec != "whitespace" and vectors:
    sys.exit(0)  # the vocabulary is `embtool vocab`'s, the rows VECTORS': nothing to train
if spec != "whitespace":  # the paper's tokens: the vocabulary file is `embtool vocab`'s
    path = Path(data) / "multi30k" / "train.en.gz"
    with gzip.open(path, "rt", encoding="utf-8") as f:
        sentences = list(load_tokenizer(spec).tokenize_lines([line.rstrip("\n") for line in f]))
else:
    path = Path(text) if text else Path(datapath("lee_background.cor"))
    if not path.is_file():
        print(f"{path} not found: training on gensim's Lee corpus instead", file=sys.stderr)
        path = Path(datapath("lee_background.cor"))
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        sentences = [line.split() for line in f]
if vectors:  # the corpus's vocabulary, most frequent first as word2vec's (min count 2); rows from VECTORS
    counted = [(w, c) for w, c in Counter(w for s in sentences for w in s).most_common() if c >= 2]
    write_vocab(Vocabulary([w for w, _ in counted], [c for _, c in counted],
                           {"tokenizer": "whitespace", "min_freq": "2"}), f"{out}/vocab.txt")
    sys.exit(0)
model = Word2Vec(sentences, vector_size=dim, min_count=2, epochs=epochs, seed=1, workers=2)
model.wv.save_word2vec_format(f"{out}/w2v.txt")
if spec == "whitespace":
    words = list(model.wv.index_to_key)
    counts = [int(model.wv.get_vecattr(w, "count")) for w in words]
    write_vocab(Vocabulary(words, counts, {"tokenizer": "whitespace", "min_freq": "2"}), f"{out}/vocab.txt")
print(f"word2vec: {len(model.wv.index_to_key)} words × {dim} from {path.name} ({spec})", file=sys.stderr)
PY
  embtool extract "${vectors:-word2vec:$out/w2v.txt}" --vocab "$out/vocab.txt" -o "$table"
fi

# 2. the seven rows, each a pipe into `embtool analogy` (3CosAdd, gensim's answers)
w2v=$table
std() { embtool standardize --to xavier < "$w2v"; }
embtool analogy "$w2v" --json > "$out/1-table.json"
embtool scale --by sqrt-dim < "$w2v" | embtool analogy --json > "$out/2-scaled.json"
embtool posenc --seed 1 < "$w2v" | embtool analogy --json > "$out/3-posenc.json"
std | embtool analogy --json > "$out/4-standardized.json"
std | embtool scale --by sqrt-dim | embtool analogy --json > "$out/5-standardized+scaled.json"
std | embtool posenc --seed 1 | embtool analogy --json > "$out/6-standardized+posenc.json"
embtool posenc --seed 1 --factor sigma-ratio < "$w2v" | embtool analogy --json > "$out/7-posenc-x-ratio.json"

# 3. Table 4
python - "$out" <<'PY'
import json
import sys
from pathlib import Path

rows = [
    ("1-table", "table", ""),
    ("2-scaled", "& scaled (× √D)", ""),
    ("3-posenc", "& position encodings", "1424/1631 (87.3)"),
    ("4-standardized", "& Xavier-std. (Eq. 1)", ""),
    ("5-standardized+scaled", "& Xavier-std. & scaled", ""),
    ("6-standardized+posenc", "& Xavier-std. & position encodings", "210/1631 (12.9)"),
    ("7-posenc-x-ratio", "& (position encodings × σ_p/σ_x)", "181/1631 (11.1)"),
]
print(f"{'Table 4: word analogies (3CosAdd)':40} {'correct/answered (%)':>22} {'paper (GloVe)':>18}")
for name, label, paper in rows:
    total = json.loads((Path(sys.argv[1]) / f"{name}.json").read_text())["total"]
    cell = f"{total['correct']}/{total['answered']} ({100 * total['accuracy']:.1f})"
    print(f"{label:40} {cell:>22} {paper:>18}")
print(f"(questions with a word outside the table, skipped: {total['skipped']})")
PY
