#!/usr/bin/env bash
# The GPU figures of docs/lab/benchmarks.md: run on a machine with one CUDA GPU.
#
#   bench/gpu.sh OUT_DIR [MULTI30K_DIR] [train|throughput|capacity|all]
#
# train:    each precision (auto, fp32, bf16, fp16) trains the Multi30k en-de Transformer
#           for 40 updates (a smoke test of the CUDA paths), then one run trains it until
#           validation BLEU stops improving (patience 8, at most 300 s) and is scored on
#           test 2016, greedy and beam 5.
# throughput: Multi30k training tokens/s by precision (fp32, bf16, fp16) and batch size (4,096
#           and 16,384 tokens), 4 epochs each; the last epoch's rate goes into throughput.txt.
# capacity: bench/gpu_capacity.py, the largest model and batch that fit.
# Data: Multi30k en-de (MULTI30K_DIR, default ../shared/data/multi30k). Everything lands in
# OUT_DIR (logs, metrics.jsonl, JSON scores); what docs/lab/benchmarks.md quotes was copied from there
# into bench/results/ (DATE_gpu_GPU_*).
set -u
out=${1:?usage: bench/gpu.sh OUT_DIR [MULTI30K_DIR] [train|throughput|capacity|all]}
data=${2:-../shared/data/multi30k}
what=${3:-all}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HYDRA_FULL_ERROR=1
mt() { python3 -m mt "$@"; }
# The Transformer preset's recipe of 2026-11, when the figures in bench/results were measured (issue 51 changed it)
common=(data=multi30k "data.dir=$data" data.tokenizer.joint=true data.tokenizer.src_vocab_size=8000
        model=transformer model.share_embeddings=true cache_dir=/tmp/mt_cache
        train.schedule=constant train.lr=0.001 train.warmup_steps=100 train.decay_from=0 'train.betas=[0.9,0.999]'
        model.dropout=0.1 model.attention_dropout=null)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, sys; print('torch', torch.__version__, 'python', sys.version.split()[0])" | tee -a "$out/gpu.txt"

if [[ $what == train || $what == all ]]; then
    for p in auto fp32 bf16 fp16; do
        mt train "${common[@]}" train.precision=$p train.max_steps=40 train.valid_max_sentences=100 \
            train.log_seconds=5 "hydra.run.dir=/tmp/smoke_$p" > "$out/smoke_$p.log" 2>&1
        echo "precision=$p: exit $? $(grep -m1 -E 'fp32|bf16|fp16' "$out/smoke_$p.log")" \
            "| $(tail -1 /tmp/smoke_$p/metrics.jsonl 2>/dev/null)" | tee -a "$out/smoke.txt"
    done
    run=/tmp/gpu_run
    start=$(date +%s)
    mt train "${common[@]}" train.epochs=100 train.patience=8 train.max_seconds=300 train.valid_max_sentences=0 \
        train.log_seconds=10 "hydra.run.dir=$run" > "$out/train.log" 2>&1
    echo "train: exit $? in $(( $(date +%s) - start )) s" | tee -a "$out/train.txt"
    cp "$run/metrics.jsonl" "$out/metrics.jsonl"
    for beam in 1 5; do
        t0=$(date +%s.%N)
        mt evaluate "$run/model" --device cuda --beam $beam --src "$data/test_2016_flickr.en.gz" \
            --ref "$data/test_2016_flickr.de.gz" --json "$out/test2016_beam$beam.json" 2>&1 | tee -a "$out/train.txt"
        echo "beam $beam: $(python3 -c "print(round($(date +%s.%N) - $t0, 1))") s with start-up" | tee -a "$out/train.txt"
    done
fi
if [[ $what == throughput || $what == all ]]; then
    for tokens in 4096 16384; do
        for p in fp32 bf16 fp16; do
            mt train "${common[@]}" train.precision=$p train.max_tokens=$tokens train.epochs=4 \
                train.valid_max_sentences=100 "hydra.run.dir=/tmp/tp_${p}_$tokens" > "/tmp/tp_${p}_$tokens.log" 2>&1
            echo "precision=$p max_tokens=$tokens exit $?: $(tail -1 "/tmp/tp_${p}_$tokens/metrics.jsonl")" \
                | tee -a "$out/throughput.txt"
        done
    done
fi
if [[ $what == capacity || $what == all ]]; then
    python3 bench/gpu_capacity.py --json "$out/capacity.json" 2>&1 | tee "$out/capacity.txt"
fi
