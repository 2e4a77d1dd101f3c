"""Length buckets bound the compiled shapes; batches come sorted by length, padded, with prompts applied."""

import jax
import numpy as np

from hf_tiny import tiny_bert, tiny_embedder_dir, write_qwen2_tokenizer
from jaxretrieval.convert.st_format import load_embedder
from jaxretrieval.data.tokenize import bucket_for, ensure_eos, inference_length_buckets, length_buckets, pad_ragged


def test_buckets_cover_every_length_with_bounded_waste():
    buckets = length_buckets(256, per_octave=4)
    assert buckets[0] == 16 and buckets[-1] == 256 and list(buckets) == sorted(set(buckets))
    for n in range(1, 257):
        b = bucket_for(n, buckets)
        assert b >= n and (n <= 16 or b - n <= n / 4)
    assert length_buckets(256, per_octave=1) == (16, 32, 64, 128, 256)
    assert bucket_for(999, buckets) == 256


def test_inference_padding_lengths_follow_the_backend(monkeypatch):
    assert inference_length_buckets(256) == length_buckets(256, per_octave=4)  # CPU: less padding
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert inference_length_buckets(256) == (16, 32, 64, 128, 256)  # accelerator: fewer compiled shapes


def test_pad_ragged():
    ids, mask = pad_ragged([[5, 6, 7], [8]], rows=3, length=4, pad_value=0)
    np.testing.assert_array_equal(ids, [[5, 6, 7, 0], [8, 0, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(mask, [[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])


def test_batches_are_sorted_padded_and_prompted(tmp_path):
    tok = load_embedder(tiny_embedder_dir(tmp_path / "m")).tokenizer  # query prompt "the "
    texts = ["quick brown fox jumps over", "dog", "hello world"]
    batches = list(tok.batches(texts, 2, "query", buckets=(4, 8, 16)))
    assert [b.index.tolist() for b in batches] == [[1, 2], [0, -1]]
    assert batches[0].input_ids.shape == (2, 8) and batches[1].input_ids.shape == (2, 8)
    plain = tok.tokenize(["dog"], "doc")["input_ids"][0]
    prompted = tok.tokenize(["dog"], "query")["input_ids"][0]
    assert len(prompted) == len(plain) + 1 and tok.prompt_length("query") == 2  # [CLS] the


def test_ensure_eos_appends_a_decoders_eos_once_and_leaves_encoders_alone(tmp_path):
    from transformers import AutoTokenizer

    write_qwen2_tokenizer(tmp_path / "q")
    qwen = AutoTokenizer.from_pretrained(str(tmp_path / "q"))
    before = qwen("quick fox")["input_ids"]
    ensure_eos(qwen)
    assert qwen("quick fox")["input_ids"] == before + [qwen.eos_token_id]
    ensure_eos(qwen)  # already appended: unchanged
    assert qwen("quick fox")["input_ids"] == before + [qwen.eos_token_id]
    bert = AutoTokenizer.from_pretrained(str(tiny_bert(tmp_path / "b")))
    ids = bert("quick fox")["input_ids"]
    ensure_eos(bert)  # no EOS token: its [SEP] ends the text, as sentence-transformers pools it
    assert bert("quick fox")["input_ids"] == ids
