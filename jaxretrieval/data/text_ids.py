"""Dataset-wide text identities without a table of texts: a 64-bit hash of the normalized text.

The contrastive losses mask a document out of a query's negatives when it is the same text as the query's positive,
which needs one id per distinct text across the whole dataset and every host. In memory that id is the row of an
interned text table; for data larger than RAM it is this hash, stored in the prepared shards. Normalization is
Unicode NFC, so the same text typed with composed or decomposed accents is one text, and nothing else: case and
spacing can change what a model sees.

In a batch the loss takes int32 ids, so the hash is folded to 31 bits there (`batch_id`): two distinct texts of
one batch then share an id with probability about 2^-31 per pair, which masks one negative when it happens.
"""

from __future__ import annotations

import hashlib
import unicodedata

import numpy as np


def text_id(text: str) -> int:
    """A signed 64-bit id of the NFC-normalized text (fits TFRecord int64 features)."""
    digest = hashlib.blake2b(unicodedata.normalize("NFC", text).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def batch_id(ids: np.ndarray) -> np.ndarray:
    """int32 ids for the loss's duplicate masks from 64-bit text ids: the two halves XORed, sign bit cleared."""
    ids = np.asarray(ids, np.int64).view(np.uint64)
    return ((ids ^ (ids >> np.uint64(32))) & np.uint64(0x7FFFFFFF)).astype(np.int32)
