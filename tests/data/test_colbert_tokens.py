"""ColBERT tokenization as PyLate does it: a marker after [CLS], queries expanded with [MASK] to query_length
(attended or not), punctuation skiplisted out of document vectors but still attended."""

import pytest

from hf_tiny import tiny_colbert_dir
from jaxretrieval.data.colbert_tokens import ColBERTTokenizer
from jaxretrieval.data.tokenize import TextTokenizer
from jaxretrieval.errors import InputError


@pytest.fixture(scope="module")
def text_tokenizer(tmp_path_factory):
    return TextTokenizer(tiny_colbert_dir(tmp_path_factory.mktemp("colbert") / "m"), 64)


def test_tokenization_markers_expansion_and_skiplist(text_tokenizer):
    tok = ColBERTTokenizer(text_tokenizer, query_length=8, doc_length=24)
    vocab = text_tokenizer.tokenizer.get_vocab()
    assert tok.marker_ids == {"query": vocab["[unused0]"], "doc": vocab["[unused1]"]}
    q = tok.encode_batch(["the fox"], "query")
    assert q["ids"].shape == (1, 8) and q["ids"][0, 1] == vocab["[unused0]"]
    assert (q["ids"][0, 5:] == vocab["[MASK]"]).all()  # [CLS] [Q] the fox [SEP] + expansion
    assert q["attention"][0].tolist() == [1] * 5 + [0] * 3 and q["vectors"].all()
    d = tok.encode_batch(["hello , world ."], "doc")
    punct = [i for i, t in enumerate(d["ids"][0]) if t in (vocab[","], vocab["."])]
    assert punct and d["vectors"][0, punct].sum() == 0 and d["attention"][0, punct].all()
    table = tok.table(["the fox", "hello world dog"], "doc")
    assert table.lengths.tolist() == [len(x) for x in tok.token_ids(["the fox", "hello world dog"], "doc")]


def test_expansion_attended_and_missing_markers(text_tokenizer):
    tok = ColBERTTokenizer(text_tokenizer, query_length=8, attend_to_expansion_tokens=True)
    assert tok.encode_batch(["fox"], "query")["attention"].all()
    with pytest.raises(InputError, match=r"\[colbert.query_prefix\]"):
        ColBERTTokenizer(text_tokenizer, query_prefix="<query>")
    none = ColBERTTokenizer(text_tokenizer, query_prefix="", doc_prefix="")
    assert none.marker_ids == {"query": None, "doc": None}
