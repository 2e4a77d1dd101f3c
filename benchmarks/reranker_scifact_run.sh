#!/usr/bin/env bash
# Rerankers on SciFact, after benchmarks/colbert_scifact_run.sh (the fine-tuned dense model
# runs/scifact_mnrl and the negatives it mined, runs/colbert/scifact_mined.jsonl):
#   1. a cross-encoder from all-MiniLM-L6-v2, listwise CE over groups of 8; at the end of training it reranks the
#      dense model's top 100 on SciFact test (metrics.jsonl: eval/first_stage/ndcg@10 before, eval/ndcg@10 after);
#   2. the reranker scores every mined (query, document) pair (`jaxretrieval score`);
#   3. the dense model continues from its checkpoint with the per-query KL to those scores (loss.name=kl), and is
#      evaluated on SciFact test. About an hour on a 2-core CPU.
#   bash benchmarks/reranker_scifact_run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
JR=.venv/bin/jaxretrieval
D=runs/reranker
mkdir -p $D
[ -f runs/colbert/scifact_mined.jsonl ] || bash benchmarks/colbert_scifact_run.sh
[ -f $D/listwise/metrics.png ] || $JR train configs/reranker_listwise.yaml > $D/listwise.json 2> $D/listwise.log
[ -f $D/scored.jsonl ] || $JR score --model $D/listwise --input runs/colbert/scifact_mined.jsonl \
    --out $D/scored.jsonl 2> $D/score.log
[ -f $D/dense_kl/metrics.png ] || $JR train configs/scifact_mnrl.yaml output_dir=$D/dense_kl \
    init_from=runs/scifact_mnrl data.train=$D/scored.jsonl loss.name=kl data.num_negatives=3 batch_size=16 \
    save_every=100 log_every=5 > $D/dense_kl.json 2> $D/dense_kl.log
echo "dense before (runs/scifact_mnrl): $(grep '"eval/ndcg@10"' runs/scifact_mnrl/metrics.jsonl | tail -1)"
echo "reranker: $(grep '"eval/ndcg@10"' $D/listwise/metrics.jsonl | tail -1)"
echo "dense after KL: $(grep '"eval/ndcg@10"' $D/dense_kl/metrics.jsonl | tail -1)"
