#!/bin/bash
PY=/work/main/.venv/bin/python; M=/tmp/bench_serve_runs/rnn_bahdanau/model; LOG=/tmp/bench_serve_runs/cpu_split.log
for i in 1 2; do
  for side in before after; do
    R=/work/main; [ $side = before ] && R=/tmp/mt_before
    echo "== $side $i $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" >> $LOG
    (cd $R && PYTHONPATH=$R $PY studies/serving_load/cpu_split.py $M --threads 1 --clients 128 --seconds 20) >> $LOG 2>&1
  done
done
