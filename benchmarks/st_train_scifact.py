"""Reference run: sentence-transformers trains the same recipe as configs/scifact_mnrl.yaml, then is evaluated
with the same search and metrics as `jaxretrieval eval`.

    python benchmarks/st_train_scifact.py [--out runs/st_scifact]
Recipe: MultipleNegativesRankingLoss (scale 20 = temperature 0.05), 1 epoch over SciFact train's judged pairs,
batch 32, lr 2e-5, linear decay with 10% warmup, weight decay 0.01, max_seq_length 256, seed 0.
Prints one JSON line with the test metrics and the training time.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MINILM, SCIFACT  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(MINILM))
    ap.add_argument("--data", default=str(SCIFACT))
    ap.add_argument("--out", default="runs/st_scifact")
    args = ap.parse_args()

    from datasets import Dataset
    from sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                       SentenceTransformerTrainingArguments, losses)

    from jaxretrieval.data.beir import load_beir
    from jaxretrieval.data.train_pairs import read_pairs_beir
    from st_scifact_eval import evaluate_st

    pairs = read_pairs_beir(args.data, "train")
    train = Dataset.from_dict({"anchor": [pairs.query_texts[q] for q in pairs.query],
                               "positive": [pairs.doc_texts[p[0]] for p in pairs.positives]})
    model = SentenceTransformer(args.model, device="cpu")
    model.max_seq_length = 256
    targs = SentenceTransformerTrainingArguments(
        output_dir=args.out, num_train_epochs=1, per_device_train_batch_size=32, learning_rate=2e-5,
        warmup_ratio=0.1, lr_scheduler_type="linear", weight_decay=0.01, seed=0, logging_steps=1,
        save_strategy="no", report_to="none", dataloader_drop_last=True, use_cpu=True)
    trainer = SentenceTransformerTrainer(model=model, args=targs, train_dataset=train,
                                         loss=losses.MultipleNegativesRankingLoss(model, scale=20.0))
    t0 = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t0
    metrics = evaluate_st(model, load_beir(args.data, "test"))
    metrics.update(engine="sentence-transformers", train_seconds=train_s, steps=trainer.state.global_step,
                   pairs_per_s=trainer.state.global_step * 32 / train_s)
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
