#!/usr/bin/env bash
# The paper's GloVe experiment in miniature (Kim et al., Table 1 and §4), on CPU, German→English:
#   1. the training slice the demo trains on, and its vocabularies (spaCy tokens, min-freq 2, as the
#      paper): the tables are built for exactly these tokens, so each table is the model's N × D;
#   2. a pretrained table per side: word2vec (gensim CBOW) trained on the whole Multi30k training
#      text, pulled into tables by `extract`. Its values spread far wider than Xavier's (σ ≈ 0.5–0.6
#      against Xavier's 0.02), as GloVe's do (σ 0.37 in the paper's Table 2);
#   3. its variants: Xavier-standardized (Eq. 1; Xavier's σ for this model's N and D) and shuffled;
#      their statistics beside a Xavier table's (Table 2);
#   4. the paper's transformer trained from Xavier / word2vec / standardized / shuffled tables;
#   5. a Table-1-style comparison of test BLEU, and the validation curves (Figure 1).
# GloVe (the paper's tables) instead of word2vec: SRC_VECTORS=glove:vectors_de.txt (the encoder's,
# German: the paper took deepset's) and TGT_VECTORS=glove:glove.840B.300d.txt (the decoder's,
# English); either alone replaces that side only (word2vec stays on the other). Every run then
# trains at the vectors' width (300 for GloVe, in place of DEMO_DIM) and the runs are named after the
# vectors' prefix (glove, glove_x, glove_shuf).
# Data: $EMBTOOL_DATA_DIR (the Makefile points it at ../shared/data when that exists), else the
# Hugging Face hub. Everything is written under $DEMO_DIR (demo/). The budget knobs below are the
# defaults that show the paper's ordering in about 5 minutes on 2 cores; the tests turn them down.
set -euo pipefail
out=${DEMO_DIR:-demo}
n_train=${DEMO_TRAIN_EXAMPLES:-10000}  # training pairs (the first N of 29,000)
n_eval=${DEMO_EVAL_EXAMPLES:-500}      # validation and test sentences (the first N)
epochs=${DEMO_EPOCHS:-3}
dim=${DEMO_DIM:-64}
layers=${DEMO_LAYERS:-2}
heads=${DEMO_HEADS:-4}
ff=${DEMO_FF:-256}                     # feed-forward width (4·D; the paper preset's 512 is slower here)
lr=${DEMO_LR:-2e-3}
batch=${DEMO_BATCH:-64}
max_len=${DEMO_MAX_LEN:-40}
seed=${DEMO_SEED:-1}
w2v_epochs=${DEMO_W2V_EPOCHS:-40}      # word2vec's epochs: more epochs, longer (wider) vectors
w2v_text=${DEMO_W2V_EXAMPLES:-0}       # word2vec's corpus: the first N training sentences (0: all)
jobs=${DEMO_JOBS:-2}                   # trainings at a time: 2 (one thread each) or 1 (all threads)
data=()
if [ -n "${EMBTOOL_DATA_DIR:-}" ]; then data=(--data-dir "$EMBTOOL_DATA_DIR"); fi
rm -rf "$out/runs" "$out/logs"
mkdir -p "$out/runs" "$out/logs"
SECONDS=0

echo "== 1. the training slice (${n_train} pairs) and its vocabularies"
python - "$out" "$n_train" "${EMBTOOL_DATA_DIR:-}" <<'PY'
import sys
from embtool.tasks import load_task

out, n, data_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3] or None
pairs = load_task("multi30k", "train", data_dir)
for lang, lines in (("de", pairs.src), ("en", pairs.tgt)):
    with open(f"{out}/train.{lang}", "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines[:n])
PY
for lang in de en; do
  embtool vocab --text "$out/train.$lang" --tokenizer "spacy:$lang" --min-freq 2 -o "$out/$lang.vocab"
done

# SRC_VECTORS/TGT_VECTORS (glove:FILE, word2vec:FILE, fasttext:FILE) replace a side's word2vec;
# the tables and runs are then named after the vectors' prefix (glove, glove_x, …), else w2v
declare -A vectors=([de]=${SRC_VECTORS:-} [en]=${TGT_VECTORS:-})
pre=w2v w2v_langs=() given=()
for lang in de en; do
  spec=${vectors[$lang]}
  if [ -z "$spec" ]; then w2v_langs+=("$lang"); continue; fi
  case "$spec" in glove:* | word2vec:* | fasttext:*) pre=${spec%%:*} ;; *) pre=vectors ;; esac
done
for lang in de en; do
  [ -n "${vectors[$lang]}" ] || continue
  echo "== 2. $lang: the vectors in ${vectors[$lang]}"
  embtool extract "${vectors[$lang]}" --vocab "$out/$lang.vocab" -o "$out/$pre.$lang.safetensors"
  given+=("$out/$pre.$lang.safetensors")
done
if [ "${#given[@]}" -gt 0 ]; then  # the vectors' width (GloVe: 300) is every run's, word2vec's too
  dims=$(python -c 'import sys; from embtool import load; print(*sorted({load(p).dim for p in sys.argv[1:]}))' "${given[@]}")
  case "$dims" in *" "*) echo "SRC_VECTORS and TGT_VECTORS differ in width ($dims); give vectors of one width" >&2; exit 2 ;; esac
  dim=$dims
fi
if [ "${#w2v_langs[@]}" -gt 0 ]; then
  if [ "$w2v_text" = 0 ]; then corpus="all the training text"; else corpus="the first $w2v_text training sentences"; fi
  echo "== 2. word2vec (gensim CBOW, ${w2v_epochs} epochs, D=${dim}) on $corpus, one model per language: ${w2v_langs[*]}"
  python - "$out" "$dim" "$w2v_epochs" "$w2v_text" "${EMBTOOL_DATA_DIR:-}" "${w2v_langs[@]}" <<'PY'
import sys
from gensim.models import Word2Vec
from embtool.tasks import load_task
from embtool.text.tokenizer import load_tokenizer

out, dim, epochs, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]) or None
data_dir, langs = sys.argv[5] or None, sys.argv[6:]
pairs = load_task("multi30k", "train", data_dir)
for lang, lines in (("de", pairs.src), ("en", pairs.tgt)):
    if lang not in langs:
        continue
    sentences = list(load_tokenizer(f"spacy:{lang}").tokenize_lines(lines[:n]))
    model = Word2Vec(sentences, vector_size=dim, min_count=2, sg=0, epochs=epochs, seed=1, workers=2)
    model.wv.save_word2vec_format(f"{out}/w2v.{lang}.txt")
PY
  for lang in "${w2v_langs[@]}"; do
    embtool extract "word2vec:$out/w2v.$lang.txt" --vocab "$out/$lang.vocab" -o "$out/$pre.$lang.safetensors"
  done
fi

echo "== 3. variants: Xavier-standardized (Eq. 1) and shuffled; statistics beside Xavier's (Table 2)"
for lang in de en; do
  embtool standardize --to xavier < "$out/$pre.$lang.safetensors" > "$out/${pre}_x.$lang.safetensors"
  embtool shuffle --seed 1 < "$out/$pre.$lang.safetensors" > "$out/${pre}_shuf.$lang.safetensors"
done
# the Xavier run starts from these: the same vocabularies (N × D) as the pretrained runs
for lang in de en; do
  embtool init xavier --vocab "$out/$lang.vocab" --dim "$dim" --seed 1 -o "$out/xavier.$lang.safetensors"
done
embtool stats "$out/xavier.de.safetensors" "$out/$pre.de.safetensors" "$out/${pre}_x.de.safetensors" \
  "$out/${pre}_shuf.de.safetensors" | tee "$out/stats.txt"

echo "== 4. training (${n_train} pairs, ${epochs} epochs, D=${dim}, ${layers}+${layers} layers, ${heads} heads, seed ${seed})"
# fp32 (--amp off): --amp auto picks bf16 autocast on CPUs with AVX512-BF16, where it halves the
# training speed unless the CPU also has AMX (issue 16); here, with neither, auto is off anyway.
common=(multi30k "${data[@]}" --max-train-examples "$n_train" --max-eval-examples "$n_eval"
        --max-len "$max_len" --epochs "$epochs" --d-model "$dim" --layers "$layers" --heads "$heads"
        --ff "$ff" --batch-size "$batch" --lr "$lr" --seed "$seed" --device cpu --amp off)
if [ "$jobs" -gt 1 ]; then common+=(--threads 1); fi
train() {  # NAME [TABLE PREFIX]: one run, its progress in logs/NAME.log
  local name=$1 emb=()
  if [ -n "${2:-}" ]; then emb=(--src-emb "$out/$2.de.safetensors" --tgt-emb "$out/$2.en.safetensors"); fi
  local TIMEFORMAT="%R s wall, %U s CPU"
  if { time embtool train "${common[@]}" "${emb[@]}" -o "$out/runs/$name" >"$out/logs/$name.log" 2>&1; } \
      2>"$out/logs/$name.time"; then
    echo "  $name: $(cat "$out/logs/$name.time") (the demo so far: ${SECONDS} s)"
  else
    echo "  $name: failed; its log $out/logs/$name.log ends:" >&2
    tail -n 20 "$out/logs/$name.log" >&2
    return 1
  fi
}
pids=() failed=0
for spec in xavier:xavier "$pre:$pre" "${pre}_x:${pre}_x" "${pre}_shuf:${pre}_shuf"; do  # NAME:TABLE
  train "${spec%%:*}" "${spec#*:}" &
  pids+=($!)
  if [ "${#pids[@]}" -ge "$jobs" ]; then
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    pids=()
  fi
done
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
if [ "$failed" != 0 ]; then exit 1; fi

echo "== 5. comparison (Table 1 style: test BLEU on test_2016_flickr's first ${n_eval} sentences)"
embtool report "$out/runs" -o "$out/report.md" --plot "$out/curves.png"
cat "$out/report.md"
echo "validation curves: $out/curves.png; the demo took ${SECONDS} s"
