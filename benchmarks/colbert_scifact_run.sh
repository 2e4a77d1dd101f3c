#!/usr/bin/env bash
# ColBERT against dense on SciFact: mine SciFact train hard negatives with the fine-tuned dense model (runs/scifact_mnrl, from
# configs/scifact_mnrl.yaml), train ColBERT from all-MiniLM-L6-v2 on them, and train the dense model on the same
# data for the same steps; both are evaluated on SciFact test at the end of training (see each run's metrics.jsonl).
set -euo pipefail
cd "$(dirname "$0")/.."
JR=.venv/bin/jaxretrieval
D=runs/colbert
mkdir -p $D
[ -d runs/scifact_mnrl/checkpoints ] || $JR train configs/scifact_mnrl.yaml > $D/dense_mnrl.json 2> $D/dense_mnrl.log
[ -f $D/scifact_mined.jsonl ] || $JR mine --model runs/scifact_mnrl --data ../shared/data/scifact \
    --out $D/scifact_mined.jsonl --top-k 20 --skip-top 3 --max-score-ratio 0.95 --num-negatives 8 2> $D/mine.log
[ -f $D/contrastive/metrics.png ] || $JR train configs/colbert_contrastive.yaml > $D/contrastive.json 2> $D/contrastive.log
[ -f $D/dense_same_data/metrics.png ] || $JR train configs/scifact_mnrl.yaml output_dir=$D/dense_same_data \
    data.train=$D/scifact_mined.jsonl data.num_negatives=1 epochs=2 learning_rate=5e-5 log_every=5 \
    save_every=100 > $D/dense_same_data.json 2> $D/dense_same_data.log
for run in contrastive dense_same_data; do
  echo "$run: $(grep '"eval/ndcg@10"' $D/$run/metrics.jsonl | tail -1)"
done
