"""Tiny random Hugging Face models written to disk, and small data around them (training pairs, BEIR directories),
for tests that need no download."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

BERT_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + [
    "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "hello", "world", ".", ",", "##s", "##ing"]


def write_bert_tokenizer(path: Path) -> None:
    from transformers import BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab = path / "vocab.txt"
    vocab.write_text("\n".join(BERT_VOCAB) + "\n")
    BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True).save_pretrained(str(path))
    _rebuild_from_vocab(path)


def _rebuild_from_vocab(path: Path) -> None:
    """transformers 5 builds a fast tokenizer constructed from `vocab_file` without the vocabulary, and saves
    that broken tokenizer.json; without the file, loading rebuilds it correctly from vocab.txt."""
    (path / "tokenizer.json").unlink(missing_ok=True)


def tiny_bert(path: Path, seed: int = 0, safetensors: bool = True, **overrides) -> Path:
    """A random BertModel with the tiny tokenizer above, saved with save_pretrained."""
    import torch
    from transformers import BertConfig, BertModel

    cfg = dict(vocab_size=len(BERT_VOCAB), hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
               intermediate_size=40, max_position_embeddings=64, type_vocab_size=2)
    cfg.update(overrides)
    torch.manual_seed(seed)
    model = BertModel(BertConfig(**cfg)).eval()
    model.save_pretrained(str(path))
    if not safetensors:  # transformers 5 always writes safetensors; emulate an older checkpoint
        torch.save(model.state_dict(), path / "pytorch_model.bin")
        (path / "model.safetensors").unlink()
    write_bert_tokenizer(path)
    return path


# Special-token layouts per family: (pad, unk, cls, sep, mask) placed at the start of the vocabulary, so each
# tiny model pads with the id its real counterpart uses (0 for BERT, 1 for RoBERTa/MPNet).
_SPECIALS = {
    "bert": ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
    "roberta": ["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
}


def write_wordpiece_tokenizer(path: Path, style: str, padding_side: str = "right") -> int:
    """A WordPiece tokenizer over the tiny vocabulary with `style`'s special tokens; returns its pad id."""
    from transformers import BertTokenizerFast

    specials = _SPECIALS[style]
    path.mkdir(parents=True, exist_ok=True)
    vocab = path / "vocab.txt"
    vocab.write_text("\n".join(specials + BERT_VOCAB[5:]) + "\n")
    if style == "bert":
        tok = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    else:
        tok = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True, bos_token="<s>", cls_token="<s>",
                                eos_token="</s>", sep_token="</s>", pad_token="<pad>", unk_token="<unk>",
                                mask_token="<mask>")
    tok.padding_side = padding_side
    tok.save_pretrained(str(path))
    _rebuild_from_vocab(path)
    return tok.pad_token_id


QWEN2_VOCAB_SIZE = 300


def write_qwen2_tokenizer(path: Path, padding_side: str = "right") -> None:
    """A byte-level BPE (Qwen2Tokenizer) of QWEN2_VOCAB_SIZE tokens trained on the tiny words; pad = eos =
    <|endoftext|> (id 0). Written as vocab.json + merges.txt, from which transformers builds it."""
    from tokenizers import ByteLevelBPETokenizer

    path.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    text = " ".join(WORDS + BERT_VOCAB[31:] + ["query", "document", "yes", "no"])
    bpe.train_from_iterator([text] * 50, vocab_size=QWEN2_VOCAB_SIZE, special_tokens=["<|endoftext|>"],
                            show_progress=False)
    bpe.save_model(str(path))
    (path / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "Qwen2Tokenizer", "pad_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
        "model_max_length": 128, "padding_side": padding_side}))


def tiny_family(path: Path, family: str, seed: int = 0, padding_side: str = "right", **overrides) -> Path:
    """A random XLM-R, MPNet or Qwen2 model (transformers' own classes) plus a tokenizer, saved to `path`."""
    import torch
    import transformers

    vocab_size = len(BERT_VOCAB)
    common = dict(vocab_size=vocab_size, hidden_size=24, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=40)
    if family == "xlm-roberta":
        cfg = transformers.XLMRobertaConfig(**{**common, "max_position_embeddings": 70, "type_vocab_size": 1,
                                               "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2, **overrides})
        model, style = transformers.XLMRobertaModel, "roberta"
    elif family == "mpnet":
        cfg = transformers.MPNetConfig(**{**common, "max_position_embeddings": 70, "pad_token_id": 1,
                                          "bos_token_id": 0, "eos_token_id": 2, **overrides})
        model, style = transformers.MPNetModel, "roberta"
    elif family == "qwen2":
        cfg = transformers.Qwen2Config(**{**common, "vocab_size": QWEN2_VOCAB_SIZE, "num_key_value_heads": 2,
                                          "max_position_embeddings": 128, "rope_theta": 1000.0, "pad_token_id": 0,
                                          **overrides})
        model, style = transformers.Qwen2Model, "qwen2"
    else:
        raise ValueError(family)
    torch.manual_seed(seed)
    model(cfg).eval().save_pretrained(str(path))
    if style == "qwen2":
        write_qwen2_tokenizer(path, padding_side)
    else:
        write_wordpiece_tokenizer(path, style, padding_side)
    return path


def make_sentence_transformers_dir(path: Path, pooling: dict, normalize: bool, prompts: dict | None = None,
                                   max_seq_length: int = 32) -> None:
    """Add the sentence-transformers files (modules.json, Pooling, Normalize) to an HF directory."""
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
    (path / "modules.json").write_text(json.dumps(modules))
    (path / "1_Pooling").mkdir(exist_ok=True)
    (path / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length}))
    if prompts:
        (path / "config_sentence_transformers.json").write_text(json.dumps({"prompts": prompts}))


def tiny_embedder_dir(path: Path, seed: int = 7, **overrides) -> Path:
    """A tiny random BERT in sentence-transformers layout: mean pooling, normalized, query prompt 'the '."""
    tiny_bert(path, seed=seed, **overrides)
    make_sentence_transformers_dir(path, {"pooling_mode_mean_tokens": True}, normalize=True,
                                   prompts={"query": "the ", "document": ""})
    return path


WORDS = ["quick", "brown", "fox", "jumps", "over", "lazy", "dog", "hello", "world"]


def tiny_pairs_jsonl(path: Path, rows: int = 24, negatives: int = 3, seed: int = 0) -> Path:
    """{query, pos, neg} records over the tiny vocabulary, with some shared documents."""
    import random

    rng = random.Random(seed)
    lines = []
    for i in range(rows):
        words = lambda n: " ".join(rng.choice(WORDS) for _ in range(n))
        lines.append(json.dumps({"query": words(rng.randint(1, 4)), "pos": [words(rng.randint(3, 12))],
                                 "neg": [words(rng.randint(2, 20)) for _ in range(negatives)]}))
    path.write_text("\n".join(lines) + "\n")
    return path


def tiny_beir(root: Path, corpus: list[dict], queries: list[dict], qrels: list[tuple], split: str = "test") -> Path:
    """A BEIR directory: corpus.jsonl, queries.jsonl and qrels/<split>.tsv from (query id, doc id, score) rows."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (root / "qrels").mkdir(exist_ok=True)
    rows = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{s}" for q, d, s in qrels]
    (root / "qrels" / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    return root


def tiny_fox_beir(root: Path, split: str = "test") -> Path:
    """Six documents over the tiny vocabulary and two judged queries."""
    docs = [f"{w} fox dog" for w in ["quick", "brown", "lazy", "hello", "world", "over"]]
    return tiny_beir(root, [{"_id": f"d{i}", "text": t} for i, t in enumerate(docs)],
                     [{"_id": "q0", "text": "quick"}, {"_id": "q1", "text": "lazy dog"}],
                     [("q0", "d0", 1), ("q1", "d2", 1)], split)


def tiny_train_beir(root: Path, num_train: int = 32, num_test: int = 4) -> Path:
    """A BEIR directory with a train split (num_train judged queries, one document each) and a test split of other
    queries over the same corpus, every query text distinct: data to carve a dev split from."""
    pairs = [f"{a} {b}" for a in WORDS for b in WORDS if a != b]
    n = num_train + num_test
    docs = [{"_id": f"d{i}", "text": f"{pairs[i]} {WORDS[i % len(WORDS)]} fox"} for i in range(n)]
    queries = [{"_id": f"q{i}", "text": pairs[i]} for i in range(n)]
    tiny_beir(root, docs, queries, [(f"q{i}", f"d{i}", 1) for i in range(num_train, n)], "test")
    rows = ["query-id\tcorpus-id\tscore"] + [f"q{i}\td{i}\t1" for i in range(num_train)]
    (root / "qrels" / "train.tsv").write_text("\n".join(rows) + "\n")
    return root


def tiny_colbert_dir(path: Path) -> Path:
    """tiny_embedder_dir with ColBERT's marker tokens [unused0] / [unused1] in its vocabulary, as BERT's has them."""
    model = tiny_embedder_dir(path)
    vocab = (model / "vocab.txt").read_text().splitlines()
    vocab[5:7] = ["[unused0]", "[unused1]"]
    (model / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (model / "tokenizer.json").unlink(missing_ok=True)  # rebuilt from vocab.txt
    return model


def padded_batch(rng, pad_id, batch=4, length=15, left=False, low=5, high=44):
    """Random ids int64[batch, length] padded with pad_id right (or left) to random lengths, and their mask."""
    ids = rng.integers(low, high, size=(batch, length))
    lengths = rng.integers(2, length + 1, size=batch)
    lengths[0] = length
    pos = np.arange(length)[None, :]
    mask = (pos >= length - lengths[:, None]) if left else (pos < lengths[:, None])
    mask = mask.astype(np.int64)
    return np.where(mask == 1, ids, pad_id), mask


def hidden_state_diff(path, ids, mask) -> float:
    """Max abs difference of our encoder's last hidden state from transformers' eager model at the real tokens."""
    import torch
    from transformers import AutoModel

    from jaxretrieval.convert.hf_format import load_hf_encoder

    ref_model = AutoModel.from_pretrained(str(path), attn_implementation="eager").eval()
    with torch.no_grad():
        ref = ref_model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state.numpy()
    encoder, _ = load_hf_encoder(path)
    ours = np.asarray(encoder(ids.astype(np.int32), mask.astype(np.int32)))
    real = mask.astype(bool)
    return np.abs(ours[real] - ref[real]).max()


def tiny_distill_data(root: Path) -> tuple[Path, Path, Path, Path]:
    """(student, teacher, texts, teacher vectors): a tiny BERT student, a tiny MPNet teacher, training pairs whose
    texts are distilled, and the teacher's float16 vectors of them from `jaxretrieval encode`."""
    from jaxretrieval.cli import main

    student = tiny_embedder_dir(root / "student")
    teacher = tiny_family(root / "teacher", "mpnet", seed=2)
    make_sentence_transformers_dir(teacher, {"pooling_mode_mean_tokens": True}, normalize=True)
    texts = tiny_pairs_jsonl(root / "pairs.jsonl", rows=10)  # {query,pos,neg}: flattened into texts
    vectors = root / "teacher.npy"
    assert main(["encode", "--model", str(teacher), "--input", str(texts), "--output", str(vectors),
                 "--dtype", "float16"]) == 0
    return student, teacher, texts, vectors


def distill_config(out: Path, student: Path, texts: Path, *extra: str):
    """A tiny distillation config: batch 8, 3 steps, every step logged."""
    from jaxretrieval.config import load_config

    return load_config(None, [f"output_dir={out}", "task=distill", f"model.path={student}", f"data.train={texts}",
                              "batch_size=8", "steps=3", "learning_rate=1e-2", "log_every=1", "save_every=3",
                              "distill.max_length=24", *extra])


def tiny_prepared_shards(root: Path) -> tuple[Path, Path, Path]:
    """(model, pairs jsonl, prepared directory): 37 tiny pairs `jaxretrieval prepare`d into 4 shards at query/doc
    lengths 16/24."""
    from jaxretrieval.cli import main

    model = tiny_embedder_dir(root / "model")
    data = tiny_pairs_jsonl(root / "data.jsonl", rows=37, negatives=3)
    out = root / "shards"
    assert main(["prepare", "--model", str(model), "--data", str(data), "--out", str(out), "--shards", "4",
                 "--max-query-length", "16", "--max-doc-length", "24"]) == 0
    return model, data, out


def qwen2_1p5b_dir(path: Path, layers: int = 28) -> Path:
    """A sentence-transformers directory of Qwen2-1.5B's shape (gte-Qwen2-1.5B, stella_en_1.5B_v5: last-token
    pooling, normalized; `layers` of its 28) with the tiny Qwen2 tokenizer and no weights: for compiles of shapes
    only."""
    import transformers

    path.mkdir(parents=True, exist_ok=True)
    transformers.Qwen2Config(vocab_size=151936, hidden_size=1536, num_hidden_layers=layers, num_attention_heads=12,
                             num_key_value_heads=2, intermediate_size=8960, max_position_embeddings=32768,
                             rope_theta=1e6, pad_token_id=0).save_pretrained(str(path))
    write_qwen2_tokenizer(path)
    tok_cfg = json.loads((path / "tokenizer_config.json").read_text())
    (path / "tokenizer_config.json").write_text(json.dumps({**tok_cfg, "model_max_length": 32768}))
    make_sentence_transformers_dir(path, {"pooling_mode_lasttoken": True}, normalize=True, max_seq_length=512)
    return path
