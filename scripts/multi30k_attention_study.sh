#!/usr/bin/env bash
# What attention buys on real data (issue 9): RNN variants on Multi30k English-German, the
# same size and training settings, 3 seeds each, each trained until validation BLEU stops
# improving (train.patience validations, at most train.epochs epochs), then one mt compare
# on test 2016 with the no-attention model as the bootstrap baseline.
#
#   scripts/multi30k_attention_study.sh OUT_DIR [MODELS] [SEEDS] [EXTRA OVERRIDES...]
#   scripts/multi30k_attention_study.sh runs/m30k_study "rnn_noattn rnn_bahdanau" "1 2 3"
#
# Jobs run two at a time with one thread each (both cores of a 2-core machine); set JOBS
# and THREADS for a bigger one. SIZE holds the model and vocabulary settings shared by all
# variants (here a half-width RNN with 4,000-piece vocabularies, so that six models fit in
# about an hour on 2 CPU cores; drop it for the presets' full size).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: $0 OUT_DIR [MODELS] [SEEDS] [OVERRIDES...]}
models=${2:-"rnn_noattn rnn_bahdanau"}
seeds=${3:-"1 2 3"}
shift $(( $# < 3 ? $# : 3 ))
data=${MULTI30K:-../shared/data/multi30k}
jobs=${JOBS:-2}
threads=${THREADS:-1}
SIZE=${SIZE:-"model.emb_dim=128 model.hidden_dim=128 model.enc_hidden_dim=64 model.attention.dim=128 data.tokenizer.src_vocab_size=4000 data.tokenizer.tgt_vocab_size=4000"}
common="data=multi30k data.dir=$data train.epochs=${EPOCHS:-12} train.patience=${PATIENCE:-2} train.threads=$threads $SIZE $*"
mkdir -p "$out"
# One tokenizer for all: train it once before the jobs start in parallel.
.venv/bin/mt train $common model=rnn_noattn train.max_steps=1 hydra.run.dir="$out/.tokenizer" > "$out/tokenizer.log" 2>&1
rm -rf "$out/.tokenizer"
run() {  # model seed
  local dir="$out/$1_seed$2"
  if [ -f "$dir/model/model.safetensors" ] && [ -f "$dir/done" ]; then echo "skip $dir (done)"; return; fi
  echo "$(date +%T) start $dir"
  .venv/bin/mt train $common model=$1 train.seed=$2 hydra.run.dir="$dir" > "$out/$1_seed$2.log" 2>&1 && touch "$dir/done"
  echo "$(date +%T) end   $dir: $(tail -n 2 "$dir/metrics.jsonl" | head -n 1 | cut -c1-160)"
}
export -f run
export out common
for seed in $seeds; do for model in $models; do echo "$model $seed"; done; done \
  | xargs -P "$jobs" -L 1 bash -c 'run "$0" "$1"'
.venv/bin/mt compare "$out" --split test --beam 5 --out "$out/compare" --no-progress --explore "$out/compare/explore.html" \
  | tee "$out/compare.txt"
