#!/bin/bash
# Driver of the 2026-12-07 serve robustness figures: before (1438ea8, /tmp/mt_before) and after (4f5feee + bench, /work/main), alternating.
PY=/work/main/.venv/bin/python
OUT=/work/main/studies/serving_load/results/2026-12-07_serve_robust
M=/tmp/bench_serve_runs/rnn_bahdanau/model
LOG=/tmp/bench_serve_runs/drive.log
cp /work/main/studies/serving_load/bench_serve.py /tmp/mt_before/scripts/bench_serve_new.py
wait_quiet() {  # other CPU-heavy work (mt train, pytest, bench_markup, a bench of someone else): wait, polling every minute
  for i in $(seq 1 8); do
    others=$(ps -eo pid,args | grep -E "mt train|pytest|bench_markup|bench_deploy|bench_detect" | grep -v grep | grep -v bench_serve | wc -l)
    [ "$others" = 0 ] && break
    echo "$(date +%T) busy ($others others), load $(cut -d' ' -f1-3 /proc/loadavg): waiting" >> $LOG; sleep 60
  done
  echo "== $(date +%T) $1: load $(cut -d' ' -f1-3 /proc/loadavg)" >> $LOG
}
old() { (cd /tmp/mt_before && PYTHONPATH=/tmp/mt_before $PY "$@") >> $LOG 2>&1; }
new() { (cd /work/main && $PY "$@") >> $LOG 2>&1; }
LEVELS="--clients 1 8 32 128 --seconds 30 --unbatched-at --no-offline"
SLOW="--clients 32 --seconds 30 --unbatched-at --no-offline --slow-clients 200 --slow-rounds 3"
FLOOD="--clients --unbatched-at --no-offline --overload 45 --overload-clients 256 --overload-lines 8 --overload-timeout 2 --overload-rounds 3"
case "$1" in
levels)
  wait_quiet "levels before 1"; old studies/serving_load/bench_serve.py rnn_bahdanau=$M $LEVELS --label before --json $OUT/levels.jsonl
  wait_quiet "levels after 1";  new studies/serving_load/bench_serve.py rnn_bahdanau=$M $LEVELS --label after --json $OUT/levels.jsonl
  wait_quiet "levels after 2";  new studies/serving_load/bench_serve.py rnn_bahdanau=$M $LEVELS --label after --json $OUT/levels.jsonl
  wait_quiet "levels before 2"; old studies/serving_load/bench_serve.py rnn_bahdanau=$M $LEVELS --label before --json $OUT/levels.jsonl ;;
slow)
  wait_quiet "slow after";  new studies/serving_load/bench_serve.py rnn_bahdanau=$M $SLOW --label after --json $OUT/slow_clients.jsonl
  wait_quiet "slow before"; old scripts/bench_serve_new.py rnn_bahdanau=$M $SLOW --label before --json $OUT/slow_clients.jsonl ;;
flood)
  wait_quiet "overload before"; old scripts/bench_serve_new.py rnn_bahdanau=$M $FLOOD --label before --json $OUT/overload.jsonl
  wait_quiet "overload after";  new studies/serving_load/bench_serve.py rnn_bahdanau=$M $FLOOD --label after --json $OUT/overload.jsonl ;;
extra)
  wait_quiet "levels after 3";  new studies/serving_load/bench_serve.py rnn_bahdanau=$M $LEVELS --label after --json $OUT/levels.jsonl
  wait_quiet "levels before 3"; old studies/serving_load/bench_serve.py rnn_bahdanau=$M $LEVELS --label before --json $OUT/levels.jsonl
  wait_quiet "slow body after"; new studies/serving_load/bench_serve.py rnn_bahdanau=$M --clients 32 --seconds 30 --unbatched-at --no-offline --slow-clients 200 --slow-part body --label "after, body slow" --json $OUT/slow_clients.jsonl
  wait_quiet "slow cap after"; new studies/serving_load/bench_serve.py rnn_bahdanau=$M --clients 32 --seconds 30 --unbatched-at --no-offline --slow-clients 200 --server-args "--max-connections 150" --label "after, --max-connections 150" --json $OUT/slow_clients.jsonl ;;
drain)
  cp /work/main/studies/serving_load/bench_serve.py /tmp/mt_before/scripts/bench_serve_new.py
  F1="--clients --unbatched-at --no-offline --overload 45 --overload-clients 256 --overload-lines 8 --overload-timeout 2 --overload-rounds 1"
  wait_quiet "drain before"; old scripts/bench_serve_new.py rnn_bahdanau=$M $F1 --label before --json $OUT/overload.jsonl
  wait_quiet "drain after";  new studies/serving_load/bench_serve.py rnn_bahdanau=$M $F1 --label after --json $OUT/overload.jsonl ;;
esac
echo "== $(date +%T) $1 done, load $(cut -d' ' -f1-3 /proc/loadavg)" >> $LOG
