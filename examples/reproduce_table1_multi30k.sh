#!/usr/bin/env bash
# The paper's Table 1, GloVe box, on Multi30k de→en (Kim et al. 2024, §4–5): Xavier, the pretrained
# table, the table standardized to Xavier (Eq. 1) and the table shuffled, each over several seeds,
# with Table 2 (the tables' range, mean and σ) and Figure 1 (validation BLEU per epoch).
#
# The "GloVe-style" tables are word2vec vectors trained here with gensim on each side's training
# text (spaCy-tokenized like the vocabularies): word vectors with a spread far wider than Xavier's,
# as GloVe's. With GloVe on disk, the paper's own rows are one setting away:
#   SRC_VECTORS=glove:vectors_de.txt TGT_VECTORS=glove:glove.840B.300d.txt SIZE=gpu bash examples/reproduce_table1_multi30k.sh
# (the paper: deepset's German GloVe for the encoder, Common Crawl 840B for the decoder, §3.2; .zip
# and .gz files are read as they are). Either variable alone replaces that side's word2vec only
# (the other side's is then trained at the vectors' width); the runs train at the tables' width
# (GloVe: 300). Tables already in $OUT are kept: a new OUT (or deleting $OUT/*.safetensors) makes
# them anew.
#
#   SIZE=cpu  (default) a 10,000-pair slice, D=64, 1+1 layers, lr 1e-3, 10 epochs, 3 seeds × 4 variants,
#             two runs at a time. Measured on 2 idle cores: 19.5 min wall (23 s of it the tables), 37
#             CPU-minutes; test BLEU mean (σ) Xavier 28.4 (0.6), word2vec 15.3 (1.6), word2vec_Xavier
#             28.5 (0.1), word2vec_Shuffled 25.9 (1.7) — the paper's pattern (a wide table trains far
#             worse; standardizing it recovers; shuffling costs).
#   SIZE=gpu  the paper's exact setting, with no overrides: `train`'s defaults are Table 5's GloVe
#             column (all 29k pairs, D=300, 10 heads, FFN 512, 3+3 layers, 20 epochs, batch 64, lr 2e-4)
#             and the lower-cased vocabularies; 4 seeds, on CUDA — about an hour on one GPU
#   SIZE=tiny the smoke test the test suite runs (seconds of training)
#
# JOBS=N runs N trainings at once (cpu: 2, else 1); THREADS=N gives each N CPU threads (default 1
# when JOBS > 1, else every core).
#
# Data: $EMBTOOL_DATA_DIR (a folder holding multi30k/ in ../shared/data's layout), else the
# Hugging Face hub. Output: $OUT (default table1-multi30k/): tables, grid/runs/…, grid/report.md,
# grid/curves.png. Running it again resumes an interrupted grid. STEP=tables stops after the tables.
set -euo pipefail
SIZE=${SIZE:-cpu}
out=${OUT:-table1-multi30k}
case "$SIZE" in
  tiny) dim=16; w2v_epochs=1; seeds=1; variants=xavier,standardized
        train=(--epochs 1 --layers 1 --batch-size 32 --max-train-examples 200 --max-eval-examples 20 --device cpu) ;;
  cpu)  dim=64; w2v_epochs=5; seeds=3; variants=xavier,pretrained,standardized,shuffled
        train=(--epochs 10 --layers 1 --lr 1e-3 --batch-size 64 --max-train-examples 10000 --max-eval-examples 300 --device cpu) ;;
  gpu)  dim=300; w2v_epochs=10; seeds=4; variants=xavier,pretrained,standardized,shuffled
        train=(--device cuda) ;;  # everything else: Table 5 / A.2, train's defaults
  *) echo "SIZE must be tiny, cpu or gpu, not '$SIZE'" >&2; exit 2 ;;
esac
if [ "$SIZE" = cpu ]; then jobs=${JOBS:-2}; else jobs=${JOBS:-1}; fi
if [ "$jobs" -gt 1 ]; then threads=${THREADS:-1}; else threads=${THREADS:-0}; fi  # 0: every core
train+=(--threads "$threads" --jobs "$jobs")
mkdir -p "$out"

# 1. vocabularies of the training split (lower-cased spaCy de/en, min-freq 2: the paper's 7,851/5,892)
for side in src tgt; do
  [ -s "$out/$side.vocab" ] || embtool vocab multi30k --side "$side" --min-freq 2 -o "$out/$side.vocab"
done

# 2. each side's table from SRC_VECTORS/TGT_VECTORS where given (GloVe: the paper's); word2vec is
#    trained at their width for a side without (so both sides have one D)
w2v_sides=()
for side in src tgt; do
  var=${side^^}_VECTORS
  if [ -s "$out/$side.safetensors" ]; then continue; fi
  if [ -n "${!var:-}" ]; then
    embtool extract "${!var}" --vocab "$out/$side.vocab" -o "$out/$side.safetensors"
  else
    w2v_sides+=("$side")
  fi
done
for side in src tgt; do
  if [ -s "$out/$side.safetensors" ]; then
    dim=$(python -c 'import sys; from embtool import load; print(load(sys.argv[1]).dim)' "$out/$side.safetensors")
    break
  fi
done
if [ "${#w2v_sides[@]}" -gt 0 ]; then
  python - "$out" "$dim" "$w2v_epochs" "${w2v_sides[@]}" <<'PY'
import sys

from gensim.models import Word2Vec

from embtool.tasks import load_task, task_texts
from embtool.text.tokenizer import load_tokenizer
from embtool.text.vocabfile import read_vocab

out, dim, epochs, sides = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
data = load_task("multi30k", "train")
for side in sides:
    spec = read_vocab(f"{out}/{side}.vocab").tokenizer  # tokenize as the vocabulary was
    sentences = list(load_tokenizer(spec).tokenize_lines(task_texts(data, side)))
    model = Word2Vec(sentences, vector_size=dim, min_count=2, epochs=epochs, seed=1, workers=2)
    model.wv.save_word2vec_format(f"{out}/{side}.w2v.txt")
    print(f"word2vec {side}: {len(model.wv)} words × {dim}", file=sys.stderr)
PY
  # 3. tables for the vocabularies (tokens the vectors lack are filled at the table's own scale)
  for side in "${w2v_sides[@]}"; do
    embtool extract "word2vec:$out/$side.w2v.txt" --vocab "$out/$side.vocab" -o "$out/$side.safetensors"
  done
fi
embtool stats "$out/src.safetensors" "$out/tgt.safetensors"
[ "${STEP:-}" = tables ] && exit 0

# 4. the grid: every variant × every seed, then report.md / curves.png / table1.csv in $out/grid
embtool experiment multi30k --src-emb "$out/src.safetensors" --tgt-emb "$out/tgt.safetensors" \
  --variants "$variants" --seeds "$seeds" "${train[@]}" -o "$out/grid"

# the same report, from the run folders alone (any set of runs can be reported this way)
embtool report "$out/grid/runs" --csv "$out/table1.csv" > "$out/report.md"
echo "report: $out/report.md, $out/grid/curves.png" >&2
