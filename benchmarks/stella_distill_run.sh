#!/usr/bin/env bash
# The Stella recipe's real run: all-mpnet-base-v2 -> all-MiniLM-L6-v2 through the three stages, stage 3 with three
# seeds, then a summary table (docs/results.md records what it gave). Each step's log is under $D (default runs/distill4).
#   bash benchmarks/stella_distill_run.sh                      # the shipped configs as they are
#   D=runs/x RECIPE="distill.cosine_weight=0" S1="epochs=1" bash benchmarks/stella_distill_run.sh
# RECIPE: config overrides for every stage; S1, S2, S3: for one stage.
# EXTRA_TEACHER (default: the student, all-MiniLM-L6-v2): a second teacher model directory; its vectors
# ($D/teacher2.npy) join all-mpnet-base-v2's as distill.teacher_vectors=[teacher.npy, teacher2.npy] (Jasper's
# multi-teacher target). The student itself anchors the target: the mean of the two models' similarities (see
# configs/stella_stage1.yaml). EXTRA_TEACHER=none distills from MPNet alone. A multi-teacher target is wider than
# the 768-d head, which the similarity terms allow (distill.cosine_weight 0).
# The text set is built in two parts, so the first (809 SciFact train queries, 600 corpus documents, 3,000 STS-B
# train sentences; ~11 min of teacher encoding here) can be reused when the second (documents up to $DOCS, STS-B
# train sentences up to $STS_N) is added: 12,973 texts, 1,600 of them SciFact documents. Larger sets (more
# documents, or the documents' titles as extra texts) did not help, so the set stays at this size.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
JR=.venv/bin/jaxretrieval
D=${D:-runs/distill4}
DOCS=${DOCS:-1600}
STS_N=${STS_N:-100000}
read -r -a RECIPE <<< "${RECIPE:-}"
read -r -a S1 <<< "${S1:-}"; read -r -a S2 <<< "${S2:-}"; read -r -a S3 <<< "${S3:-}"
mkdir -p $D
MPNET=$($PY benchmarks/assemble_mpnet.py)
# Each teacher encodes at its own max length (MPNet: 384): truncated to the student's 256, MPNet ranks SciFact
# below the student and is no longer a teacher there.
teacher() { [ -f "$2" ] || $JR encode --model "$MPNET" --input "$1" --output "$2"; }
[ -f $D/part1.jsonl ] || $PY benchmarks/build_distill_texts.py --out $D/part1.jsonl
[ -f $D/part2.jsonl ] || $PY benchmarks/build_distill_texts.py --out $D/part2.jsonl --docs $DOCS --sts $STS_N \
  --exclude $D/part1.jsonl
teacher $D/part1.jsonl $D/part1.npy
teacher $D/part2.jsonl $D/part2.npy
if [ ! -f $D/teacher.npy ]; then
  cat $D/part1.jsonl $D/part2.jsonl > $D/texts.jsonl
  $PY -c "import numpy as np, sys; np.save(sys.argv[3], np.concatenate([np.load(sys.argv[1]), np.load(sys.argv[2])]))" \
    $D/part1.npy $D/part2.npy $D/teacher.npy
fi
VECTORS=$D/teacher.npy
EXTRA_TEACHER=${EXTRA_TEACHER:-../shared/models/all-MiniLM-L6-v2}
if [ "$EXTRA_TEACHER" != none ]; then
  [ -f $D/teacher2.npy ] || $JR encode --model "$EXTRA_TEACHER" --input $D/texts.jsonl --output $D/teacher2.npy
  VECTORS="[$D/teacher.npy,$D/teacher2.npy]"
fi
DATA=(data.train=$D/texts.jsonl "distill.teacher_vectors=$VECTORS")
STS=../shared/data/stsbenchmark/sts-test.csv
[ -f $D/teacher_sts.json ] || $JR eval --model "$MPNET" --sts $STS > $D/teacher_sts.json 2> $D/teacher_sts.log
[ -f $D/student_sts.json ] || $JR eval --model ../shared/models/all-MiniLM-L6-v2 --sts $STS > $D/student_sts.json 2> $D/student_sts.log
prev=""
for stage in 1 2; do
  init=(); [ -n "$prev" ] && init=(init_from=$prev)
  own=S$stage[@]
  [ -f $D/stage$stage/metrics.png ] || $JR train configs/stella_stage$stage.yaml output_dir=$D/stage$stage \
    "${init[@]}" "${DATA[@]}" "${RECIPE[@]}" "${!own}" > $D/stage$stage.json 2> $D/stage$stage.log
  prev=$D/stage$stage
done
for seed in 0 1 2; do
  out=$D/stage3_seed$seed
  [ -f $out/metrics.png ] || $JR train configs/stella_stage3.yaml output_dir=$out seed=$seed init_from=$prev \
    "${DATA[@]}" "${RECIPE[@]}" "${S3[@]}" > $out.json 2> $out.log
done
$PY benchmarks/stella_distill_report.py $D
