"""InputError's one line names where the problem is: file, line, field."""

import pytest

from jaxretrieval.errors import InputError, require_one_batch


@pytest.mark.parametrize("kwargs, text", [
    ({"path": "data.jsonl", "line": 3, "field": "pos"}, "data.jsonl:3 [pos]: empty"),
    ({"path": "data.jsonl"}, "data.jsonl: empty"),
    ({"field": "batch_size"}, "[batch_size]: empty"),
    ({}, "empty"),
])
def test_message_names_file_line_and_field(kwargs, text):
    e = InputError("empty", **kwargs)
    assert str(e) == text and isinstance(e, ValueError)
    assert e.line == kwargs.get("line") and e.field == kwargs.get("field")


def test_fewer_examples_than_one_batch_is_an_input_error():
    require_one_batch(8, 8, "pairs", "x.jsonl")
    with pytest.raises(InputError, match=r"x.jsonl \[batch_size\]: 7 pairs are fewer than one batch of 8"):
        require_one_batch(7, 8, "pairs", "x.jsonl")
