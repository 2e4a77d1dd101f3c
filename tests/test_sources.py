"""Sources as a config names them: one path or a mixture, each entry resolved from the data.* defaults, the
single-source config a task builds it from, and dataset names."""

from jaxretrieval.config import load_config
from jaxretrieval.sources import TrainSource, dataset_names, source_config, source_name, train_sources


def test_a_mixture_of_sources_resolves_each_from_data_defaults(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("output_dir: /tmp/x\nmodel: {path: m}\ndata:\n  num_negatives: 2\n  sampling: weights\n"
                    "  train:\n    - a.jsonl\n    - {path: /d/scifact/, weight: 3, split: dev, num_negatives: 0}\n"
                    "eval: {data: /d/scifact, sts: [s1.csv, s2.csv]}\n")
    cfg = load_config(path)
    a, b = train_sources(cfg)
    assert (a.name, a.weight, a.num_negatives, a.split) == ("a", 1.0, 2, "train")
    assert (b.name, b.weight, b.num_negatives, b.split) == ("scifact", 3.0, 0, "dev")
    assert cfg.one_source_batches and cfg.eval.data == ["/d/scifact"] and cfg.eval.sts == ["s1.csv", "s2.csv"]
    child = source_config(cfg, b, 16)
    assert (child.data.train, child.data.split, child.data.num_negatives, child.batch_size) == (
        "/d/scifact/", "dev", 0, 16)
    assert load_config(None, ["output_dir=o", "model.path=m", "data.train=a.jsonl",
                              "task=reranker"]).one_source_batches is False


def test_one_path_is_one_source_named_after_it():
    cfg = load_config(None, ["output_dir=o", "model.path=m", "data.train=d/msmarco.jsonl", "data.prompt=q: "])
    assert train_sources(cfg) == [TrainSource(path="d/msmarco.jsonl", name="msmarco", prompt="q: ", num_negatives=0,
                                              split="train")]
    assert source_name("x/sts-train.csv") == "sts-train" and source_name("x/scifact/") == "scifact"


def test_dataset_names_are_numbered_when_they_repeat():
    assert dataset_names(["a/scifact", "b/scifact/", "c/sts-test.csv"]) == ["scifact.1", "scifact.2", "sts-test"]
