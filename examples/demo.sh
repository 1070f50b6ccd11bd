#!/usr/bin/env bash
# The main job, end to end on Multi30k (German→English), in a few CPU minutes:
#   1. vocabularies from the training split (spaCy tokens, min-freq 2, as the paper);
#   2. a pretrained table per side: word2vec trained with gensim on the training text (its values
#      spread far wider than Xavier's, like GloVe's), pulled into tables by `extract`;
#   3. its variants: Xavier-standardized (Eq. 1) and shuffled; their statistics (Tables 2 and 6);
#   4. the paper's transformer trained from Xavier / pretrained / standardized / shuffled tables;
#   5. a Table-1-style comparison of test BLEU, and the validation curves (Figure 1).
# Data: $EMBTOOL_DATA_DIR (the Makefile points it at ../shared/data when that exists), else the
# Hugging Face hub. Budget knobs: DEMO_TRAIN_EXAMPLES, DEMO_EPOCHS, DEMO_DIM, DEMO_LAYERS.
set -euo pipefail
out=${DEMO_DIR:-demo}
n_train=${DEMO_TRAIN_EXAMPLES:-4000}
epochs=${DEMO_EPOCHS:-3}
dim=${DEMO_DIM:-64}
layers=${DEMO_LAYERS:-2}
data=()
if [ -n "${EMBTOOL_DATA_DIR:-}" ]; then data=(--data-dir "$EMBTOOL_DATA_DIR"); fi
rm -rf "$out/runs"
mkdir -p "$out/runs"

echo "== 1. vocabularies"
embtool vocab multi30k "${data[@]}" --side src --tokenizer spacy:de --min-freq 2 -o "$out/de.vocab"
embtool vocab multi30k "${data[@]}" --side tgt --tokenizer spacy:en --min-freq 2 -o "$out/en.vocab"

echo "== 2. word2vec (gensim) on the training text, one model per language"
python - "$out" "$dim" "${EMBTOOL_DATA_DIR:-}" <<'PY'
import sys
from gensim.models import Word2Vec
from embtool.tasks import load_task
from embtool.text.tokenizer import load_tokenizer

out, dim, data_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3] or None
pairs = load_task("multi30k", "train", data_dir)
for lang, lines in (("de", pairs.src), ("en", pairs.tgt)):
    sentences = list(load_tokenizer(f"spacy:{lang}").tokenize_lines(lines))
    model = Word2Vec(sentences, vector_size=dim, window=5, min_count=2, sg=1, epochs=5, seed=1, workers=1)
    model.wv.save_word2vec_format(f"{out}/w2v.{lang}.txt")
PY
for lang in de en; do
  embtool extract "word2vec:$out/w2v.$lang.txt" --vocab "$out/$lang.vocab" -o "$out/w2v.$lang.safetensors"
done

echo "== 3. variants: Xavier-standardized (Eq. 1) and shuffled; their statistics"
for lang in de en; do
  embtool standardize --to xavier < "$out/w2v.$lang.safetensors" > "$out/w2v_x.$lang.safetensors"
  embtool shuffle --seed 1 < "$out/w2v.$lang.safetensors" > "$out/w2v_shuf.$lang.safetensors"
done
embtool stats "$out/w2v.de.safetensors" "$out/w2v_x.de.safetensors" "$out/w2v_shuf.de.safetensors"

echo "== 4. training (${n_train} pairs, ${epochs} epochs, D=${dim}, ${layers}+${layers} layers)"
common=(multi30k "${data[@]}" --max-train-examples "$n_train" --epochs "$epochs" --layers "$layers"
        --batch-size 64 --lr 1e-3 --max-eval-examples 500 --seed 1 --device cpu)
embtool train "${common[@]}" --d-model "$dim" -o "$out/runs/xavier"
for variant in w2v w2v_x w2v_shuf; do
  embtool train "${common[@]}" --src-emb "$out/$variant.de.safetensors" --tgt-emb "$out/$variant.en.safetensors" \
    -o "$out/runs/$variant"
done

echo "== 5. comparison (Table 1 style: test BLEU on test_2016_flickr's first 500 sentences)"
embtool report "$out/runs" -o "$out/report.md" --plot "$out/curves.png"
cat "$out/report.md"
echo "validation curves: $out/curves.png"
