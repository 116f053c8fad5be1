#!/usr/bin/env bash
# What attention buys on real data (issue 9): the attention variants on Multi30k
# English-German, the same size and training settings, 3 seeds each, each trained until
# validation BLEU stops improving (PATIENCE validations without a better one, default 4; at
# most EPOCHS epochs, default 50, a safety cap that no run should reach), then one mt compare
# on test 2016, bootstrapped against the median seed of the no-attention model.
#
#   studies/multi30k_attention/run.sh OUT_DIR [VARIANTS|all] [SEEDS] [EXTRA OVERRIDES...]
#   studies/multi30k_attention/run.sh runs/m30k_study "rnn_noattn rnn_bahdanau" "1 2 3"
#   studies/multi30k_attention/run.sh runs/m30k_study all "1 2 3"
#   studies/multi30k_attention/run.sh --params all       # parameter counts only, nothing trained
#   studies/multi30k_attention/run.sh --compare runs/m30k_study   # only the last step, on the runs done so far
#
# Variants (names of the run folders): rnn_noattn rnn_bahdanau rnn_bahdanau_sparsemax
# rnn_luong_dot rnn_luong_general rnn_luong_concat rnn_luong_scaled_dot rnn_luong_cosine
# rnn_luong_local transformer; and the rest of the family (issue 33): rnn_luong_euclidean
# rnn_luong_pearson rnn_bahdanau_sigmoid rnn_bahdanau_max rnn_bahdanau_top3 rnn_bahdanau_hard
# ("family" names these six). The RNNs share SIZE, so their parameter counts stay within a
# few percent; the Transformer keeps its preset's training settings at SIZE's width.
#
# Jobs run two at a time with one thread each (both cores of a 2-core machine); set JOBS
# and THREADS for a bigger one. SIZE holds the model and vocabulary settings shared by all
# variants (here a half-width RNN with 4,000-piece vocabularies, so that a model trains in
# about 20-40 minutes on one core; drop it for the presets' full size). Finished runs (a
# `done` marker) are skipped, so the command can be rerun to add variants or seeds; a run
# stopped part-way continues from its last checkpoint (`train.resume`, with this EPOCHS and
# PATIENCE: so a run that reached the cap is continued by deleting its `done` marker and record).
#
# The whole study takes longer than one session on a 2-core machine, and its models do not
# belong in the repository, so it keeps what the comparison needs of each finished model as a
# record in RECORDS (default studies/multi30k_attention/results/m30k_study: translations of test 2016 with beam 5, run
# record, attention statistics; `mt compare --save-systems`). A run whose record is there is not
# trained again, and the final `mt compare` sets the records beside the models trained now
# (`--systems`). So a later session (a fresh checkout) goes on where the last one stopped, and
# `--compare OUT` at any point compares what is finished and writes the new records. Each run
# also writes its own record as soon as it ends, so a session cut off loses only the runs in progress.
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository's root
out=${1:?usage: $0 OUT_DIR [VARIANTS|all] [SEEDS] [OVERRIDES...]}
variants=${2:-"rnn_noattn rnn_bahdanau"}
seeds=${3:-"1 2 3"}
compare_dir=${2:-}  # of --compare OUT_DIR
shift $(( $# < 3 ? $# : 3 ))
data=${MULTI30K:-../shared/data/multi30k}
jobs=${JOBS:-2}
records=${RECORDS:-studies/multi30k_attention/results/m30k_study}
threads=${THREADS:-1}
SIZE=${SIZE:-"model.emb_dim=128 model.hidden_dim=128 model.enc_hidden_dim=64 model.attention.dim=128 data.tokenizer.src_vocab_size=4000 data.tokenizer.tgt_vocab_size=4000"}
epochs=${EPOCHS:-50}
patience=${PATIENCE:-4}
# fp32 on every CPU: the first ten variants were trained on an AVX2-only machine, where `auto`
# is fp32; on a CPU with native bf16 `auto` would train the later ones in bf16 (PRECISION=auto).
precision=${PRECISION:-fp32}
# The presets as they were when the study ran (2026-11): a tokenizer per side, and the Transformer's
# constant 1e-3 with dropout 0.1 (its recipe changed with issue 51; conf/model/transformer.yaml).
TRANSFORMER_2026_11="train.schedule=constant train.lr=0.001 train.warmup_steps=100 train.decay_from=0 train.betas=[0.9,0.999] model.dropout=0.1 model.attention_dropout=null model.share_embeddings=false"
common="data=multi30k data.dir=$data data.tokenizer.joint=false train.epochs=$epochs train.patience=$patience train.threads=$threads train.precision=$precision $SIZE $*"

compare() {  # the finished runs of $out beside the records, new records written
  local done_runs=() systems=()
  for marker in "$out"/*/done; do [ -e "$marker" ] && done_runs+=("$(dirname "$marker")"); done
  compgen -G "$records/*.system.json.gz" > /dev/null && systems=(--systems "$records")
  if [ ${#done_runs[@]} -eq 0 ] && [ ${#systems[@]} -eq 0 ]; then echo "nothing finished to compare yet" >&2; return 1; fi
  .venv/bin/mt compare "${done_runs[@]}" "${systems[@]}" --save-systems "$records" --split test --beam 5 \
    --out "$out/compare" --no-progress --explore "$out/compare/explore.html" | tee "$out/compare.txt"
}
if [ "$out" = --compare ]; then
  out=${compare_dir:?usage: $0 --compare OUT_DIR}
  compare
  exit
fi

overrides() {  # variant -> its mt train overrides
  case $1 in
    rnn_noattn|rnn_bahdanau|rnn_luong_dot|rnn_luong_general|rnn_luong_concat|rnn_luong_local)
      echo "model=$1" ;;
    transformer) echo "model=transformer $TRANSFORMER_2026_11" ;;
    rnn_bahdanau_sparsemax) echo "model=rnn_bahdanau model.attention.normalizer=sparsemax" ;;
    rnn_luong_scaled_dot) echo "model=rnn_luong_dot model.attention.score=scaled_dot" ;;
    rnn_luong_cosine) echo "model=rnn_luong_dot model.attention.score=cosine" ;;
    rnn_luong_euclidean) echo "model=rnn_luong_dot model.attention.score=euclidean" ;;
    rnn_luong_pearson) echo "model=rnn_luong_dot model.attention.score=pearson" ;;
    rnn_bahdanau_sigmoid) echo "model=rnn_bahdanau model.attention.normalizer=sigmoid" ;;
    rnn_bahdanau_max) echo "model=rnn_bahdanau model.attention.normalizer=max" ;;
    rnn_bahdanau_top3) echo "model=rnn_bahdanau model.attention.top_k=3" ;;
    rnn_bahdanau_hard) echo "model=rnn_bahdanau model.attention.hard=true" ;;
    *) echo "unknown variant '$1'" >&2; return 1 ;;
  esac
}
family="rnn_luong_euclidean rnn_luong_pearson rnn_bahdanau_sigmoid rnn_bahdanau_max rnn_bahdanau_top3 rnn_bahdanau_hard"
[ "$variants" = family ] && variants=$family
[ "$variants" = all ] && variants="rnn_noattn rnn_bahdanau rnn_bahdanau_sparsemax rnn_luong_dot rnn_luong_general rnn_luong_concat rnn_luong_scaled_dot rnn_luong_cosine rnn_luong_local transformer $family"
for v in $variants; do overrides "$v" > /dev/null; done  # fail before training anything
if [ "$out" = --params ]; then  # each variant's size at SIZE (4,000-piece vocabularies), no training
  for v in $variants; do
    .venv/bin/python - "$v" $(overrides "$v") $SIZE <<'PY'
import sys
from mt.api import build_model, compose
cfg = compose(["data=multi30k", "data.tokenizer.joint=false", *sys.argv[2:]])  # as $common trains
model = build_model(cfg.model, cfg.data.tokenizer.src_vocab_size, cfg.data.tokenizer.tgt_vocab_size)
print(f"{sys.argv[1]:24s} {model.num_parameters():>10,d}")
PY
  done
  exit 0
fi

mkdir -p "$out"
# One tokenizer for all: train it once before the jobs start in parallel.
.venv/bin/mt train $common model=rnn_noattn train.max_steps=1 hydra.run.dir="$out/.tokenizer" > "$out/tokenizer.log" 2>&1
rm -rf "$out/.tokenizer"
run() {  # variant seed overrides...
  local name=$1 seed=$2 dir="$out/$1_seed$2"
  shift 2
  if [ -f "$dir/model/model.safetensors" ] && [ -f "$dir/done" ]; then echo "skip $dir (done)"; return; fi
  if [ -f "$records/${name}_seed$seed.system.json.gz" ]; then echo "skip $dir (its record is in $records)"; return; fi
  if [ -d "$dir/checkpoints/last" ]; then  # stopped part-way (a kill, the end of a session): continue it
    echo "$(date +%T) resume $dir"
    .venv/bin/mt train train.resume="$dir" train.threads="$threads" train.epochs="$epochs" \
      train.patience="$patience" hydra.run.dir="$out/.resume/${name}_seed$seed" \
      >> "$out/${name}_seed$seed.log" 2>&1 && touch "$dir/done"
  else
    echo "$(date +%T) start $dir"
    .venv/bin/mt train $common "$@" train.seed="$seed" hydra.run.dir="$dir" > "$out/${name}_seed$seed.log" 2>&1 \
      && touch "$dir/done"
  fi
  local last best  # the last epoch trained, and the epoch and validation BLEU of the model kept
  last=$(tail -n 1 "$dir/metrics.jsonl" | grep -o '"epoch": [0-9]*' | tr -d '"')
  best=$(grep '"best": true' "$dir/metrics.jsonl" | tail -n 1 | grep -o '"epoch": [0-9]*\|"valid_bleu": [0-9.]*' | paste -sd' ' | tr -d '"')
  echo "$(date +%T) end   $dir: stopped at ${last:-?}; best ${best:-?}"
  # Its record now, not only at the final compare: a session cut off later keeps this run.
  [ -f "$dir/done" ] || return 0
  if .venv/bin/mt compare "$dir" --save-systems "$records" --split test --beam 5 --out "$dir/record" \
      --no-progress > "$out/${name}_seed$seed.record.log" 2>&1; then
    echo "$(date +%T) record $records/${name}_seed$seed.system.json.gz"
  else  # the run is kept: the final compare records it
    echo "$(date +%T) no record for $dir (see $out/${name}_seed$seed.record.log); the final compare writes it"
  fi
}
export -f run
export out common records threads epochs patience
for seed in $seeds; do for v in $variants; do echo "$v $seed $(overrides "$v")"; done; done \
  | xargs -P "$jobs" -L 1 bash -c 'run "$@"' _
compare
