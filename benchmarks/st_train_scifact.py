"""Reference run: sentence-transformers trains the same recipe as configs/scifact_mnrl.yaml, then is evaluated
with the same search and metrics as `jaxretrieval eval`.

    python benchmarks/st_train_scifact.py [--out runs/st_scifact]
Recipe: MultipleNegativesRankingLoss (scale 20 = temperature 0.05), 1 epoch over SciFact train's judged pairs,
batch 32, lr 2e-5, linear decay with 10% warmup, weight decay 0.01, max_seq_length 256, seed 0 (--seed).
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
    ap.add_argument("--out", default="runs/st_scifact", help="where the trained model is saved")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer, losses
    from transformers import get_linear_schedule_with_warmup

    from jaxretrieval.data.beir import load_beir
    from jaxretrieval.data.train_pairs import read_pairs_beir
    from st_scifact_eval import evaluate_st

    # The loop SentenceTransformerTrainer runs, written out (no `datasets` dependency): seeded shuffle,
    # drop-last batches, MNRL, AdamW without decay on biases/LayerNorm, warmup + linear decay, clip at 1.0.
    torch.manual_seed(args.seed)
    pairs = read_pairs_beir(args.data, "train")
    anchors = [pairs.query_texts[q] for q in pairs.query]
    positives = [pairs.doc_texts[p[0]] for p in pairs.positives]
    model = SentenceTransformer(args.model, device="cpu")
    model.max_seq_length = 256
    model.train()
    loss_fn = losses.MultipleNegativesRankingLoss(model, scale=20.0)
    no_decay = ("bias", "LayerNorm.weight")
    groups = [{"params": [p for n, p in model.named_parameters() if not any(k in n for k in no_decay)],
               "weight_decay": 0.01},
              {"params": [p for n, p in model.named_parameters() if any(k in n for k in no_decay)],
               "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=2e-5)
    order = torch.randperm(len(anchors), generator=torch.Generator().manual_seed(args.seed)).tolist()
    steps = len(order) // 32
    sched = get_linear_schedule_with_warmup(opt, int(0.1 * steps), steps)
    t0 = time.perf_counter()
    for step in range(steps):
        rows = order[step * 32:(step + 1) * 32]
        feats = [model.tokenize([anchors[i] for i in rows]), model.tokenize([positives[i] for i in rows])]
        loss = loss_fn(feats, None)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        print(f"step {step + 1}/{steps} loss {loss.item():.4f}", file=sys.stderr, flush=True)
    train_s = time.perf_counter() - t0
    model.save(args.out)  # the trained model, for inspecting or re-evaluating with `jaxretrieval eval`
    model.eval()
    metrics = evaluate_st(model, load_beir(args.data, "test"))
    metrics.update(engine="sentence-transformers", train_seconds=train_s, steps=steps,
                   pairs_per_s=steps * 32 / train_s)
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
