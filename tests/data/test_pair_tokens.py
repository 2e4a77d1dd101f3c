"""Pair tokenization for rerankers: encoders truncate the document only; decoders get one formatted sequence."""

from transformers import AutoTokenizer

from hf_tiny import tiny_bert
from jaxretrieval.data.pair_tokens import PairTokenizer


def test_encoder_pairs_truncate_the_document_only(tmp_path):
    tok = PairTokenizer(AutoTokenizer.from_pretrained(str(tiny_bert(tmp_path / "m"))), max_length=10)
    enc = tok.encode(["quick fox"], ["the lazy dog " * 10])
    ids, types = enc["input_ids"][0], enc["token_type_ids"][0]
    assert len(ids) == 10 and types[:4] == [0, 0, 0, 0] and set(types[4:]) == {1}
    batch = tok.batch(["quick fox", "dog"], ["hello", "world"], length=12, rows=3)
    assert batch["ids"].shape == (3, 12) and batch["mask"][2].sum() == 0 and batch["mask"][0].sum() == 6


def test_decoder_pairs_are_one_formatted_sequence(tmp_path):
    hf = AutoTokenizer.from_pretrained(str(tiny_bert(tmp_path / "m")))
    tok = PairTokenizer(hf, 32, "q: {} ", "d: {}", special_token=" fox", decoder=True)
    enc = tok.encode(["dog"], ["hello"])
    expect = hf(["q: dog d: hello fox"], truncation=True, max_length=32)["input_ids"][0]
    assert enc["input_ids"][0] == expect and set(enc["token_type_ids"][0]) == {0}
