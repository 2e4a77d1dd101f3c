#!/usr/bin/env bash
# The issue-5 real run: all-mpnet-base-v2 -> all-MiniLM-L6-v2 through the three Stella stages, stage 3 with three
# seeds, then a summary table. Each step's log is under runs/distill/. Takes about an hour on a 2-core CPU.
#   bash benchmarks/stella_distill_run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
JR=.venv/bin/jaxretrieval
D=runs/distill
mkdir -p $D
MPNET=$($PY benchmarks/assemble_mpnet.py)
[ -f $D/texts.jsonl ] || $PY benchmarks/build_distill_texts.py --out $D/texts.jsonl
[ -f $D/teacher.npy ] || $JR encode --model "$MPNET" --input $D/texts.jsonl --output $D/teacher.npy --max-length 256
STS=../shared/data/stsbenchmark/sts-test.csv
[ -f $D/teacher_sts.json ] || $JR eval --model "$MPNET" --sts $STS > $D/teacher_sts.json 2> $D/teacher_sts.log
[ -f $D/student_sts.json ] || $JR eval --model ../shared/models/all-MiniLM-L6-v2 --sts $STS > $D/student_sts.json 2> $D/student_sts.log
for stage in 1 2; do
  [ -f $D/stage$stage/metrics.png ] || $JR train configs/stella_stage$stage.yaml > $D/stage$stage.json 2> $D/stage$stage.log
done
for seed in 0 1 2; do
  out=$D/stage3_seed$seed
  [ -f $out/metrics.png ] || $JR train configs/stella_stage3.yaml output_dir=$out seed=$seed > $out.json 2> $out.log
done
$PY benchmarks/stella_distill_report.py $D
