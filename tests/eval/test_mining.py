"""Hard-negative mining: positives never appear as negatives, skip-top and the score-ratio filter apply."""

import json

import numpy as np

from hf_tiny import tiny_embedder_dir, tiny_pairs_jsonl
from jaxretrieval.cli import main
from jaxretrieval.convert.st_format import load_embedder
from jaxretrieval.eval.mining import mine_negatives
from jaxretrieval.inference import encode_texts


def test_mining_excludes_positives_and_applies_filters(tmp_path):
    model = tiny_embedder_dir(tmp_path / "m")
    data = tiny_pairs_jsonl(tmp_path / "d.jsonl", rows=12, negatives=2)
    out = tmp_path / "mined.jsonl"
    assert main(["mine", "--model", str(model), "--data", str(data), "--out", str(out), "--top-k", "5"]) == 0
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert records and all(not set(r["neg"]) & set(r["pos"]) for r in records)
    assert all(len(r["neg"]) == 5 for r in records)
    loaded = load_embedder(model)
    skipped = mine_negatives(loaded, data, top_k=3, skip_top=2, progress=False)
    for full, part in zip(records, skipped):
        assert part["neg"] == full["neg"][2:5]
    strict = mine_negatives(loaded, data, top_k=5, max_score_ratio=0.5, progress=False)
    for r in strict:
        q = encode_texts(loaded, [r["query"]], "query")[0]
        floor = min(encode_texts(loaded, r["pos"]) @ q)
        if r["neg"]:
            assert (encode_texts(loaded, r["neg"]) @ q <= 0.5 * floor + 1e-6).all()
    assert sum(len(r["neg"]) for r in strict) < sum(len(r["neg"]) for r in records)
    np.testing.assert_equal(len(strict), len(records))
