#!/bin/bash
# Alternates the old runner (/tmp/b/main = 881ea8f) and the new one (/tmp/iso = 881ea8f + this change).
PY=/work/main/.venv/bin/python
for i in 1 2 3; do
  for side in before after; do
    R=/tmp/b/main; [ $side = after ] && R=/tmp/iso
    echo "== $i $side $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
    (cd $R && $PY studies/deployment_speed/bench_deploy.py /tmp/bench/tf/model --exports "mt int8=/tmp/bench/tf_int8" --no-bf16 --rounds 1 --label "$side" --json /tmp/bench/deploy_tf_$side.jsonl | tail -6)
    echo "-- $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
    (cd $R && $PY studies/deployment_speed/bench_deploy.py /tmp/bench/rnn/model --exports "mt int8=/tmp/bench/rnn_int8" --no-bf16 --rounds 1 --label "$side" --json /tmp/bench/deploy_rnn_$side.jsonl | tail -6)
    echo "-- $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
    (cd $R && $PY studies/deployment_speed/int8_engines.py /tmp/bench/rnn/model /tmp/bench/tf/model --threads 1 --rounds 1 --lines 300 --json /tmp/bench/engines_$side.jsonl 2>&1 | grep -v torchao)
  done
done
echo "== done $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
