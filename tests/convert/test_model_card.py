"""The model card every export writes: training settings and the newest evaluation for a run's model, 'converted'
for a plain directory, and the lines that load the format."""

import json

from hf_tiny import tiny_embedder_dir
from jaxretrieval.convert.export import export
from jaxretrieval.convert.model_card import model_card
from jaxretrieval.convert.st_format import load_embedder
from jaxretrieval.door import _last_eval
from jaxretrieval.files import upath

CONFIG = {"task": "dense", "model": {"path": "../shared/models/all-MiniLM-L6-v2", "matryoshka_dims": [128]},
          "data": {"train": "../shared/data/scifact"}, "loss": {"name": "infonce", "temperature": 0.05},
          "batch_size": 32, "learning_rate": 2e-5, "seed": 0,
          "eval": {"data": "../shared/data/scifact", "split": "test"}}


def test_a_trained_models_card_names_its_training_and_scores(tmp_path):
    loaded = load_embedder(tiny_embedder_dir(tmp_path / "m"))
    loaded.trained = {"config": CONFIG, "step": 28, "eval": {"step": 28, "metrics": {"ndcg@10": 0.65432}}}
    card = model_card(loaded, "sentence-transformers")
    for text in ("`../shared/models/all-MiniLM-L6-v2`", "| steps | 28 |", "| batch size | 32 |",
                 "infonce (temperature 0.05); Matryoshka dims 128", "`../shared/data/scifact`",
                 "| ndcg@10 | 0.6543 |", "split test", "SentenceTransformer(\"MODEL_DIR\")", "jaxretrieval "):
        assert text in card, text
    out = export(loaded, tmp_path / "out")
    assert (out / "README.md").read_text() == card


def test_a_converted_models_card_says_so(tmp_path):
    loaded = load_embedder(tiny_embedder_dir(tmp_path / "m"))
    card = model_card(loaded, "hf")
    assert "Converted from" in card and "## Training" not in card and "AutoModel.from_pretrained" in card


def test_the_newest_evaluation_at_or_before_the_step(tmp_path):
    records = [{"step": 0, "eval/ndcg@10": 0.1}, {"step": 5, "loss": 1.0}, {"step": 10, "eval/ndcg@10": 0.3},
               {"step": 20, "eval/ndcg@10": 0.5}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert _last_eval(upath(tmp_path), 15) == {"step": 10, "metrics": {"ndcg@10": 0.3}}
    assert _last_eval(upath(tmp_path / "none"), 15) is None


def test_a_card_of_several_sources_and_eval_datasets_has_a_row_per_dataset(tmp_path):
    loaded = load_embedder(tiny_embedder_dir(tmp_path / "m"))
    sources = [{"path": "a.jsonl", "name": "a", "weight": 2.0}, {"path": "b/sts.csv"}]
    config = {**CONFIG, "data": {"sampling": "weights", "train": sources},
              "eval": {"data": ["x/scifact"], "sts": ["y/sts-test.csv"], "split": "test"}}
    metrics = {"scifact/ndcg@10": 0.5, "sts-test/sts_spearman": 0.8, "ndcg@10": 0.5, "sts_spearman": 0.8}
    loaded.trained = {"config": config, "step": 5, "eval": {"step": 5, "metrics": metrics}}
    card = model_card(loaded, "sentence-transformers")
    for text in ("`a` (weight 2.0), `b/sts.csv`, sampled by weights, one source per batch",
                 "| dataset | ndcg@10 | sts_spearman |",
                 "| scifact | 0.5000 |  |", "| sts-test |  | 0.8000 |", "| mean | 0.5000 | 0.8000 |"):
        assert text in card, text
